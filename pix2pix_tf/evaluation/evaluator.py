"""Evaluates a trained generator: `python -m pix2pix_tf.evaluation.evaluator --workdir=runs/x`.

"How good is my model?" in numbers a reader of the paper knows: L1, PSNR, SSIM, the paper's
colour test (Lab histogram intersection with the ground truth), its FCN-score (a segmenter
trained on real photos segments the generated ones; the real photos' score beside it), and
FID when Inception-v3 weights are given as a local file. The model is the run's newest
checkpoint, or its SavedModel (`--saved_model`) or TFLite file (`--tflite`): the three give
the same numbers within the tolerance docs/evaluation.md states. The data is a split of the
run's own dataset, in its recorded direction and test-time preprocessing (config.json).

By default the generator runs as the paper tests it (dropout on, batch statistics); with
`--deterministic` without dropout; `--num_samples=N` draws N dropout samples per image and
reports each metric's mean and standard deviation over them. Everything is written to
`--output_dir` (default `<workdir>/eval/<split>_<model>_<mode>/`): metrics.json, index.html
(input | output | target with per-image metrics) and grid.png; a short table goes to stdout.
Also installed as `pix2pix-evaluate`. See docs/evaluation.md.

`evaluate(EvalConfig(...))` is the library call (the paper-reproduction script uses it);
`python -m pix2pix_tf.evaluate` is the program.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from typing import Any, Optional

import numpy as np
from absl import logging

from pix2pix_tf.errors import ConfigError, Pix2pixError
from pix2pix_tf.export import names
from pix2pix_tf.progress import Progress
from pix2pix_tf.workdir import Workdir

METRICS_FILE = "metrics.json"

# Agreement between the three forms of one model (checkpoint, SavedModel, float32 TFLite), in
# deterministic mode: the largest differences the tests accept (docs/evaluation.md).
FORM_TOLERANCE = {"l1": 1e-4, "psnr": 0.01, "ssim": 1e-4, "lab_histogram_intersection": 2e-3, "fcn": 2e-3}


@dataclasses.dataclass(frozen=True)
class EvalConfig:
    """What to evaluate and how; filled from the flags by `main` (library code reads no flags)."""

    workdir: Optional[str] = None  # The run (config.json); found from the export when omitted.
    checkpoint: Optional[str] = None  # None: the newest of the workdir.
    saved_model: Optional[str] = None
    tflite: Optional[str] = None
    split: Optional[str] = None  # None: the held-out split (test, else val).
    num_examples: Optional[int] = None  # None: the whole split.
    deterministic: bool = False
    batch_statistics: bool = True
    num_samples: int = 1
    seed: int = 0
    output_dir: Optional[str] = None
    data_dir: Optional[str] = None  # None: config.json's.
    fcn: Optional[bool] = None  # None: when the dataset has labels; True: required; False: skipped.
    segmenter: Optional[str] = None  # A segmentation SavedModel; None: the built-in one (shapes).
    segmenter_input: str = "signed"
    segmenter_cache: Optional[str] = None
    segmenter_steps: int = 800
    fid: bool = False
    inception_weights: Optional[str] = None
    html_examples: int = 50
    grid_examples: int = 6
    threads: int = 2
    progress: bool = True

    def validate(self) -> EvalConfig:
        given = [n for n in ("saved_model", "tflite") if getattr(self, n)]
        if len(given) > 1:
            raise ConfigError("Give at most one of --saved_model and --tflite (the default is the checkpoint).")
        if not self.workdir and not given:
            raise ConfigError("Give --workdir (the training run), and optionally --saved_model or --tflite.")
        if self.checkpoint and given:
            raise ConfigError(f"--checkpoint and --{given[0]} name two different models: give one.")
        for name in ("num_samples", "threads", "segmenter_steps"):
            if getattr(self, name) < 1:
                raise ConfigError(f"--{name} must be at least 1, got {getattr(self, name)}.")
        if self.num_examples is not None and self.num_examples < 1:
            raise ConfigError(f"--num_examples must be at least 1, got {self.num_examples}.")
        if self.html_examples < 0 or self.grid_examples < 0:
            raise ConfigError("--html_examples and --grid_examples must be non-negative.")
        if self.fcn is False and self.segmenter:
            raise ConfigError("--segmenter was given with --nofcn.")
        return self


@dataclasses.dataclass
class EvalResult:
    """metrics.json's content and where everything was written."""

    metrics: dict[str, Any]
    output_dir: str
    metrics_path: str
    html_path: Optional[str]
    grid_path: Optional[str]


# ----------------------------------------------------------------------------- the model and its run


def find_workdir(config: EvalConfig) -> str:
    """The training run of the model: --workdir, or the run an export was made from (its
    metadata names the checkpoint, which lives in <workdir>/checkpoints/)."""
    if config.workdir:
        return config.workdir

    saved_model = config.saved_model
    if config.tflite:
        report = os.path.join(os.path.dirname(config.tflite), names.TFLITE_REPORT)
        if os.path.exists(report):
            with open(report) as f:
                saved_model = json.load(f).get("saved_model")
    checkpoint = None
    if saved_model:
        try:
            checkpoint = names.read_metadata(names.resolve_saved_model(saved_model)).get("checkpoint")
        except (Pix2pixError, OSError, ValueError):
            checkpoint = None
    if checkpoint:
        workdir = os.path.dirname(os.path.dirname(checkpoint))
        if os.path.exists(os.path.join(workdir, "config.json")):
            logging.info("Evaluating on the data of the run the model was exported from: %s", workdir)
            return workdir
    raise ConfigError("Cannot tell which training run this model comes from (its export does not name one that "
                      "still exists): pass --workdir, whose config.json gives the dataset, direction and "
                      "preprocessing.")


def _exported_batch_statistics(config: EvalConfig) -> bool:
    """Whether the model normalises with batch statistics: an export fixed it when it was made
    (its metadata says which); a checkpoint does what --batch_statistics asks."""

    mode = None
    if config.saved_model:
        mode = names.read_metadata(names.resolve_saved_model(config.saved_model)).get("mode")
    elif config.tflite:
        report_path = os.path.join(os.path.dirname(config.tflite), names.TFLITE_REPORT)
        if os.path.exists(report_path):
            with open(report_path) as f:
                mode = json.load(f).get("mode")
    if mode is None:
        return config.batch_statistics
    if not config.batch_statistics:
        logging.warning("--nobatch_statistics applies to checkpoints; the export was made with batch_statistics=%s.",
                        mode.get("batch_statistics", True))
    return bool(mode.get("batch_statistics", True))


def _model_label(config: EvalConfig, translator) -> str:
    if config.tflite:
        return "tflite-" + os.path.splitext(os.path.basename(config.tflite))[0]
    if config.saved_model:
        return "savedmodel-" + os.path.basename(os.path.normpath(translator.description.split()[1]))
    return os.path.basename(translator.description.split()[1])


# ----------------------------------------------------------------------------- data


def _split_pairs(dataset, data_config, split: str, input_nc: int, output_nc: int, limit: Optional[int],
                 multiple: int):
    """(input, target) of any split with the test-time preprocessing: `data.held_out_pairs` on a
    copy of the dataset whose held-out split is `split`."""
    from pix2pix_tf.data import pipeline as data

    return data.held_out_pairs(dataclasses.replace(dataset, held_out_split=split), data_config, input_nc, output_nc,
                               limit=limit, multiple=multiple)


def _with_labels(pairs, labels):
    """Zips pairs with their class maps, resized (nearest) to the pair's size."""
    import tensorflow as tf

    from pix2pix_tf.evaluation.segmentation import resize_labels

    def attach(pair, label):
        return pair[0], pair[1], resize_labels(label, tf.shape(pair[1])[:2])

    return tf.data.Dataset.zip((pairs, labels)).map(attach)


# ----------------------------------------------------------------------------- accumulation


class _SampleStats:
    """Everything accumulated for one dropout sample over the split."""

    def __init__(self, num_classes: Optional[int]):
        from pix2pix_tf.evaluation.metrics import ColourHistograms

        self.l1: list[float] = []
        self.psnr: list[float] = []
        self.ssim: list[float] = []
        self.colour = ColourHistograms()
        self.confusion = None if num_classes is None else np.zeros((num_classes, num_classes), np.int64)
        self.features: list[np.ndarray] = []

    def summary(self, class_names, target_features: Optional[np.ndarray]) -> dict[str, Any]:
        from pix2pix_tf.evaluation import metrics

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


def _mean_std(summaries: list[dict[str, Any]]) -> tuple[dict[str, Any], Optional[dict[str, Any]]]:
    """Mean and (with several samples) standard deviation of nested metric dicts."""
    def combine(values: list, reduce) -> Any:
        first = values[0]
        if isinstance(first, dict):
            return {k: combine([v[k] for v in values], reduce) for k in first}
        return float(reduce(np.asarray(values, np.float64)))

    mean = combine(summaries, lambda v: np.mean(v))
    if len(summaries) == 1:
        return mean, None
    std = combine(summaries, lambda v: np.std(v))
    std.pop("fcn_per_class", None)
    return mean, std


def _finite(value: Any) -> Any:
    """NaN / inf -> None for JSON (a class absent from the split has no IoU)."""
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


# ----------------------------------------------------------------------------- the evaluation


def evaluate(config: EvalConfig) -> EvalResult:
    """Runs the model on a split of its run's dataset and writes metrics.json, index.html and
    grid.png; see the module docstring."""
    from pix2pix_tf.config import TrainConfig
    from pix2pix_tf.evaluation import metrics

    # What a user can get wrong is checked before TensorFlow loads: the answer comes at once.
    config.validate()
    workdir = find_workdir(config)
    train = TrainConfig.load(workdir)
    use_fid = config.fid or bool(config.inception_weights)
    if use_fid and not config.inception_weights:
        metrics.inception_features(None)  # Raises the explanation.

    import tensorflow as tf

    from pix2pix_tf.data import pipeline as data
    from pix2pix_tf.evaluation import report, segmentation
    from pix2pix_tf.inference import generate as inference
    from pix2pix_tf.inference.translation import open_translator
    from pix2pix_tf.networks.generator import size_multiple

    data_config = dataclasses.replace(train.data, data_dir=config.data_dir or train.data.data_dir)
    direction = data_config.direction or data.default_direction(data_config.dataset)
    data_config = dataclasses.replace(data_config, direction=direction)
    input_nc, output_nc = train.model.input_nc, train.model.output_nc

    # The FCN-score's requirements are checked before anything slow happens.
    scheme = None
    if config.fcn is not False:
        try:
            scheme = segmentation.label_scheme(data_config.dataset)
            segmentation.check_direction(scheme, direction)
            if config.segmenter is None and scheme.palette is not None:
                raise segmentation.SegmentationError(
                    f"FCN-score on {data_config.dataset} needs a segmentation SavedModel trained on real photos "
                    f"(--segmenter=PATH; {segmentation.SEGMENTER_CONTRACT}); the package trains one itself only "
                    "for the embedded 'shapes' dataset.")
        except segmentation.SegmentationError as e:
            if config.fcn:
                raise
            logging.info("No FCN-score: %s", e)
            scheme = None
    feature_fn = metrics.inception_features(config.inception_weights) if use_fid else None

    mode = inference.InferenceMode(dropout=not config.deterministic, batch_statistics=config.batch_statistics)
    translator = open_translator(workdir=None if (config.saved_model or config.tflite) else workdir,
                                 checkpoint=config.checkpoint, saved_model=config.saved_model, tflite=config.tflite,
                                 mode=mode, seed=config.seed, threads=config.threads)
    deterministic = translator.deterministic
    batch_statistics = _exported_batch_statistics(config)
    if deterministic and not config.deterministic:
        logging.warning("%s has no dropout: evaluating it deterministically.", translator.description)
    num_samples = config.num_samples
    if deterministic and num_samples > 1:
        logging.warning("The model is deterministic here: --num_samples=%d would repeat one output; using 1.",
                        num_samples)
        num_samples = 1
    if translator.input_nc != input_nc or translator.output_nc != output_nc:
        raise ConfigError(f"The model takes {translator.input_nc} and gives {translator.output_nc} channel(s); the "
                          f"run in {workdir} has {input_nc} -> {output_nc}: is it the right --workdir?")

    dataset = data.load_paired_dataset(data_config)
    split = config.split or dataset.held_out_split
    if not dataset.split_sizes.get(split):
        raise ConfigError(f"--split={split}: {dataset.name} has splits "
                          f"{', '.join(f'{k} ({v})' for k, v in sorted(dataset.split_sizes.items()))}.")
    multiple = size_multiple(train.model.generator)
    pairs = _split_pairs(dataset, data_config, split, input_nc, output_nc, config.num_examples, multiple)
    first_input, _ = next(iter(pairs.take(1)))
    image_hw = tuple(int(d) for d in first_input.shape[:2])
    if config.tflite and image_hw != (translator.image_size, translator.image_size):
        raise ConfigError(f"{config.tflite} is fixed to {translator.image_size}x{translator.image_size} images; the "
                          f"run's test-time preprocessing gives {image_hw[0]}x{image_hw[1]}. Export it again with "
                          f"--image_size={image_hw[0]}.")

    segment = None
    gt_confusion = None
    if scheme is not None:
        labels = segmentation.split_labels(scheme, dataset, split, data_config.data_dir)
        if config.num_examples is not None:
            labels = labels.take(config.num_examples)
        examples = _with_labels(pairs, labels)
        if config.segmenter:
            segmenter_path = config.segmenter
        else:
            spec = segmentation.SegmenterSpec(dataset=data_config.dataset, image_size=image_hw, direction=direction,
                                              num_train=dataset.num_train, steps=config.segmenter_steps)

            def real_pairs():
                train_pairs = _split_pairs(dataset, data_config, dataset.train_split, input_nc, output_nc, None,
                                           multiple)
                train_labels = segmentation.split_labels(scheme, dataset, dataset.train_split, data_config.data_dir)
                return _with_labels(train_pairs, train_labels).map(lambda x, y, label: (y, label))

            segmenter_path = segmentation.ensure_segmenter(spec, real_pairs, scheme.num_classes,
                                                           config.segmenter_cache)
        segment = segmentation.load_segmenter(segmenter_path, config.segmenter_input)
        gt_confusion = np.zeros((scheme.num_classes, scheme.num_classes), np.int64)
    else:
        examples = pairs.map(lambda x, y: (x, y, tf.zeros([0, 0], tf.int32)))

    label = _model_label(config, translator)
    output_dir = config.output_dir or os.path.join(
        Workdir(workdir).evaluations, f"{split}_{label}_{'deterministic' if deterministic else 'paper'}")
    os.makedirs(output_dir, exist_ok=True)
    logging.info("Evaluating %s on %s/%s into %s.", translator.description, dataset.name, split, output_dir)

    stats = [_SampleStats(None if scheme is None else scheme.num_classes) for _ in range(num_samples)]
    target_features: list[np.ndarray] = []
    per_image: list[dict[str, Any]] = []
    grid_rows = []
    total = config.num_examples or dataset.split_sizes[split]
    total = min(total, dataset.split_sizes[split])
    progress = Progress(total, "image", config.progress and total > 1)
    start = time.perf_counter()
    for i, (input_image, target, label_map) in enumerate(examples.as_numpy_iterator()):
        entry: dict[str, Any] = {"index": i}
        real_prediction = None
        if segment is not None:
            real_prediction = segment(target[None])[0]
            gt_confusion += metrics.confusion_matrix(label_map, real_prediction, scheme.num_classes)
        if feature_fn is not None:
            target_features.append(feature_fn(target[None]))
        shown = None
        for k in range(num_samples):
            try:
                output = translator(input_image[None], i * num_samples + k)[0]
            except inference.InferenceError as e:
                raise ConfigError(f"The model cannot translate image {i} of {split}: {e}") from e
            if not np.isfinite(output).all():
                raise Pix2pixError(f"The model produced NaN/Inf on image {i} of {split}.")
            s = stats[k]
            values = {"l1": metrics.l1(output, target), "psnr": metrics.psnr(output, target),
                      "ssim": metrics.ssim(output, target)}
            s.l1.append(values["l1"])
            s.psnr.append(values["psnr"])
            s.ssim.append(values["ssim"])
            s.colour.add(output, target)
            if segment is not None:
                prediction = segment(output[None])[0]
                s.confusion += metrics.confusion_matrix(label_map, prediction, scheme.num_classes)
            if feature_fn is not None:
                s.features.append(feature_fn(output[None]))
            if k == 0:  # Per-image numbers and pictures: the first dropout sample.
                shown = output
                entry.update(values)
                entry["lab_histogram_intersection"] = metrics.lab_intersections(output, target)
                if segment is not None:
                    valid = (label_map >= 0) & (label_map < scheme.num_classes)
                    count = max(int(valid.sum()), 1)
                    entry["fcn_pixel_accuracy"] = float(((prediction == label_map) & valid).sum() / count)
                    entry["fcn_pixel_accuracy_real"] = float(((real_prediction == label_map) & valid).sum() / count)
        if i < config.html_examples:
            entry["images"] = report.save_example(output_dir, i, {"input": input_image, "output": shown,
                                                                  "target": target})
        if i < config.grid_examples:
            grid_rows.append((input_image, shown, target,
                              f"L1 {entry['l1']:.3f}  PSNR {entry['psnr']:.1f}  SSIM {entry['ssim']:.3f}"))
        per_image.append(entry)
        progress.update(i + 1)
    if not per_image:
        raise ConfigError(f"The split {split} of {dataset.name} gave no images to evaluate.")
    if feature_fn is not None and len(per_image) < 2:
        raise ConfigError("FID needs at least 2 images: raise --num_examples.")

    class_names = None if scheme is None else scheme.class_names
    all_target_features = np.concatenate(target_features) if feature_fn is not None else None
    mean, std = _mean_std([s.summary(class_names, all_target_features) for s in stats])
    result: dict[str, Any] = {
        "model": translator.description,
        "source": "tflite" if config.tflite else "saved_model" if config.saved_model else "checkpoint",
        "workdir": os.path.abspath(workdir),
        "dataset": dataset.name,
        "split": split,
        "direction": direction,
        "image_size": list(image_hw),
        "num_examples": len(per_image),
        "num_samples": num_samples,
        "mode": {"dropout": not deterministic, "batch_statistics": batch_statistics},
        "mode_description": ("deterministic (no dropout)" if deterministic else
                             f"paper mode (dropout on, {num_samples} noise sample(s))")
                            + (", batch statistics" if batch_statistics else ", moving averages"),
        "seed": config.seed,
        "metrics": mean,
        "metrics_std": std,
        "ground_truth": None,
        "settings": {"psnr_cap_db": metrics.PSNR_CAP, "lab_bins": metrics.LAB_BINS, "ssim": "11x11 Gaussian, "
                     "sigma 1.5, K1 0.01, K2 0.03, [0, 1] scale", "fcn_segmenter": None,
                     "fid_network": "Inception-v3 pool3 (local weights)" if feature_fn is not None else None},
        "seconds": round(time.perf_counter() - start, 1),
        "per_image": [{k: v for k, v in e.items() if k != "images"} for e in per_image],
    }
    if scheme is not None:
        truth = metrics.segmentation_scores(gt_confusion, class_names)
        result["ground_truth"] = {"fcn": truth.summary(), "fcn_per_class": truth.per_class}
        result["settings"]["fcn_segmenter"] = os.path.abspath(segmenter_path)
        result["settings"]["fcn_classes"] = list(class_names)
    result = _finite(result)

    metrics_path = os.path.join(output_dir, METRICS_FILE)
    with open(metrics_path + ".tmp", "w") as f:
        json.dump(result, f, indent=2)
        f.write("\n")
    os.replace(metrics_path + ".tmp", metrics_path)
    html_path = report.write_html(output_dir, result, [e for e in per_image if "images" in e]) \
        if config.html_examples else None
    grid_path = report.save_grid(os.path.join(output_dir, report.GRID_FILE), grid_rows,
                                 f"{dataset.name}/{split}: {label}, {result['mode_description']}") \
        if grid_rows else None
    return EvalResult(result, output_dir, metrics_path, html_path, grid_path)
