"""The third stage of an evaluation: the measurements as metrics.json's content.

Each metric is averaged over the images of each dropout sample, then its mean and (with
several samples) standard deviation over the samples are reported; the settings that
produced the numbers are recorded beside them.
"""

from __future__ import annotations

import math
import os
from typing import Any, Optional

import numpy as np

from pix2pix_tf.evaluation import metrics
from pix2pix_tf.evaluation.per_image import Measurements
from pix2pix_tf.evaluation.plan import EvalPlan
from pix2pix_tf.inference.mode import InferenceMode


def mean_std(summaries: list[dict[str, Any]]) -> tuple[dict[str, Any], Optional[dict[str, Any]]]:
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


def finite(value: Any) -> Any:
    """NaN / inf -> None for JSON (a class absent from the split has no IoU)."""
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def mode_description(mode: InferenceMode, num_samples: int, norm: Optional[str]) -> str:
    """`mode` in words, its norm part as it applies to the model's `norm` (InferenceMode.describe_norm)."""
    return (("deterministic (no dropout)" if mode.deterministic else
             f"paper mode (dropout on, {num_samples} noise sample(s))") + ", " + mode.describe_norm(norm))


def summarize(plan: EvalPlan, found: Measurements) -> dict[str, Any]:
    """metrics.json's content (JSON-safe: non-finite numbers become null)."""
    class_names = None if plan.scheme is None else plan.scheme.class_names
    target_features = np.concatenate(found.target_features) if plan.feature_fn is not None else None
    mean, std = mean_std([s.summary(class_names, target_features) for s in found.stats])
    mode = plan.translator.mode
    result: dict[str, Any] = {
        "model": plan.translator.description,
        "source": plan.source.kind,
        "workdir": os.path.abspath(plan.workdir),
        "dataset": plan.dataset_name,
        "split": plan.split,
        "direction": plan.direction,
        "image_size": list(plan.image_hw),  # The first image's (each image's own with native_size).
        "native_size": plan.config.model.native_size,
        "num_examples": len(found.per_image),
        "num_samples": plan.num_samples,
        "mode": {"dropout": not mode.deterministic, "batch_statistics": mode.batch_statistics},
        "mode_description": mode_description(mode, plan.num_samples, plan.source.norm),
        "seed": plan.config.seed,
        "metrics": mean,
        "metrics_std": std,
        "ground_truth": None,
        "settings": {"psnr_cap_db": metrics.PSNR_CAP, "lab_bins": metrics.LAB_BINS, "ssim": "11x11 Gaussian, "
                     "sigma 1.5, K1 0.01, K2 0.03, [0, 1] scale", "fcn_segmenter": None,
                     "fid_network": "Inception-v3 pool3 (local weights)" if plan.feature_fn is not None else None},
        "seconds": round(found.seconds, 1),
        "per_image": [{k: v for k, v in e.items() if k != "images"} for e in found.per_image],
    }
    if plan.scheme is not None:
        truth = metrics.segmentation_scores(found.ground_truth_confusion, class_names)
        result["ground_truth"] = {"fcn": truth.summary(), "fcn_per_class": truth.per_class}
        result["settings"]["fcn_segmenter"] = os.path.abspath(plan.segmenter_path)
        result["settings"]["fcn_classes"] = list(class_names)
    return finite(result)
