"""The second stage of an evaluation: every image of the split through the model, measured.

Each image is translated `num_samples` times (dropout samples, seeded by image and sample);
every sample adds to its own running statistics (`SampleStats`), so that the summary can
report each metric's spread over the noise z. The first sample's numbers and pictures are
the per-image entries of metrics.json and index.html.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Optional

import numpy as np

from pix2pix_tf.errors import ConfigError, InferenceError, Interrupted, Pix2pixError
from pix2pix_tf.evaluation import metrics, report
from pix2pix_tf.evaluation.plan import EvalPlan
from pix2pix_tf.progress import Progress


class SampleStats:
    """Everything accumulated for one dropout sample over the split."""

    def __init__(self, num_classes: Optional[int]):
        self.l1: list[float] = []
        self.psnr: list[float] = []
        self.ssim: list[float] = []
        self.colour = metrics.ColourHistograms()
        self.confusion = None if num_classes is None else np.zeros((num_classes, num_classes), np.int64)
        self.features: list[np.ndarray] = []

    def add(self, values: dict[str, float], output: np.ndarray, target: np.ndarray) -> None:
        self.l1.append(values["l1"])
        self.psnr.append(values["psnr"])
        self.ssim.append(values["ssim"])
        self.colour.add(output, target)

    def summary(self, class_names, target_features: Optional[np.ndarray]) -> dict[str, Any]:
        result: dict[str, Any] = {"l1": float(np.mean(self.l1)), "psnr": float(np.mean(self.psnr)),
                                  "ssim": float(np.mean(self.ssim)),
                                  "lab_histogram_intersection": self.colour.intersections()}
        if self.confusion is not None:
            scores = metrics.segmentation_scores(self.confusion, class_names)
            result["fcn"] = scores.summary()
            result["fcn_per_class"] = scores.per_class
        if target_features is not None:
            result["fid"] = metrics.fid_from_features(np.concatenate(self.features), target_features)
        return result


@dataclasses.dataclass
class Measurements:
    """What the loop gathered: per-sample statistics, per-image entries, the grid's rows, the page's pictures."""

    stats: list[SampleStats]
    per_image: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    grid_rows: list[tuple] = dataclasses.field(default_factory=list)
    pictures: dict[str, bytes] = dataclasses.field(default_factory=dict)  # index.html's PNGs, by relative path.
    target_features: list[np.ndarray] = dataclasses.field(default_factory=list)
    ground_truth_confusion: Optional[np.ndarray] = None  # The real photos' segmentation.
    seconds: float = 0.0


def measure(plan: EvalPlan) -> Measurements:
    """Runs the model over the plan's examples; pictures of the first images go to the output folder."""
    num_classes = None if plan.scheme is None else plan.scheme.num_classes
    found = Measurements([SampleStats(num_classes) for _ in range(plan.num_samples)])
    if num_classes is not None:
        found.ground_truth_confusion = np.zeros((num_classes, num_classes), np.int64)
    config = plan.config
    progress = Progress(plan.total, "image", config.progress and plan.total > 1)
    start = time.perf_counter()
    try:
        for i, (input_image, target, label_map) in enumerate(plan.examples.as_numpy_iterator()):
            entry, shown = _measure_image(plan, found, i, input_image, target, label_map)
            if i < config.html_examples:
                columns = {"input": input_image, "output": shown, "target": target}
                entry["images"] = {column: report.picture_path(i, column) for column in columns}
                found.pictures.update({report.picture_path(i, column): report.encode_png(image)
                                       for column, image in columns.items()})
            if i < config.grid_examples:
                found.grid_rows.append((input_image, shown, target,
                                        f"L1 {entry['l1']:.3f}  PSNR {entry['psnr']:.1f}  SSIM {entry['ssim']:.3f}"))
            found.per_image.append(entry)
            progress.update(i + 1)
    except Interrupted as stop:
        stop.done.append(f"measured {len(found.per_image)} of {plan.total} image(s); metrics.json is written only "
                         "once every image is measured")
        raise
    found.seconds = time.perf_counter() - start
    if not found.per_image:
        raise ConfigError(f"The split {plan.split} of {plan.dataset_name} gave no images to evaluate.")
    if plan.feature_fn is not None and len(found.per_image) < 2:
        raise ConfigError("FID needs at least 2 images: raise --num_examples.")
    return found


def _measure_image(plan: EvalPlan, found: Measurements, i: int, input_image: np.ndarray, target: np.ndarray,
                   label_map: np.ndarray) -> tuple[dict[str, Any], np.ndarray]:
    """Image i's samples added to `found`; returns its per-image entry and its first output."""
    entry: dict[str, Any] = {"index": i}
    real_prediction = None
    if plan.segment is not None:
        real_prediction = plan.segment(target[None])[0]
        found.ground_truth_confusion += metrics.confusion_matrix(label_map, real_prediction, plan.scheme.num_classes)
    if plan.feature_fn is not None:
        found.target_features.append(plan.feature_fn(target[None]))
    shown = None
    for k, stats in enumerate(found.stats):
        try:
            output = plan.translator(input_image[None], i * plan.num_samples + k)[0]
        except InferenceError as e:
            raise ConfigError(f"The model cannot translate image {i} of {plan.split}: {e}") from e
        if not np.isfinite(output).all():
            raise Pix2pixError(f"The model produced NaN/Inf on image {i} of {plan.split}.")
        values = {"l1": metrics.l1(output, target), "psnr": metrics.per_image_psnr(output, target),
                  "ssim": metrics.ssim(output, target)}
        stats.add(values, output, target)
        prediction = None
        if plan.segment is not None:
            prediction = plan.segment(output[None])[0]
            stats.confusion += metrics.confusion_matrix(label_map, prediction, plan.scheme.num_classes)
        if plan.feature_fn is not None:
            stats.features.append(plan.feature_fn(output[None]))
        if k == 0:  # Per-image numbers and pictures: the first dropout sample.
            shown = output
            entry.update(values)
            entry["lab_histogram_intersection"] = metrics.lab_intersections(output, target)
            if prediction is not None:
                valid = (label_map >= 0) & (label_map < plan.scheme.num_classes)
                count = max(int(valid.sum()), 1)
                entry["fcn_pixel_accuracy"] = float(((prediction == label_map) & valid).sum() / count)
                entry["fcn_pixel_accuracy_real"] = float(((real_prediction == label_map) & valid).sum() / count)
    return entry, shown
