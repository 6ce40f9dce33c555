"""Reading back what an experiment wrote: each variant's marker and its evaluation's metrics.json.

These files decide what a rerun skips and what the report shows, and they may have been
edited, truncated or replaced since they were written. So each is read bounded (a regular
file of at most `regular_files.MAX_JSON_BYTES`, never a device or a FIFO) and checked for the fields the
experiment reads: a damaged marker counts as not run (its variant runs again), and a
metrics file without the numbers the report shows makes its variant "incomplete", named,
instead of a traceback in the middle of the report.
"""

from __future__ import annotations

import math
import reprlib
from typing import Any, Optional

from absl import logging

from pix2pix_tf.errors import ConfigError
from pix2pix_tf.regular_files import read_json_object

STATUSES = ("done", "failed")
# The marker's fields that the experiments read, and what each must be when present.
_MARKER_FIELDS: dict[str, tuple[type | tuple[type, ...], str]] = {
    "status": (str, "text"), "setting": (dict, "an object"), "metrics": (str, "a path"), "error": (str, "text"),
    "step": (int, "an integer"), "train_seconds": ((int, float), "a number"),
    "eval_seconds": ((int, float), "a number"),
}
_FCN = dict.fromkeys(("per_pixel_accuracy", "per_class_accuracy", "class_iou"))
# The numbers the reports print from metrics.json (None: a number; a dict: an object holding these).
_METRICS = {"l1": None, "psnr": None, "ssim": None, "lab_histogram_intersection": dict.fromkeys("Lab")}


def _marker_problem(marker: dict[str, Any]) -> Optional[str]:
    """What makes `marker` unusable (a wrong or missing field), or None."""
    if marker.get("status") not in STATUSES:
        return f"its status is {reprlib.repr(marker.get('status'))}, not one of {', '.join(STATUSES)}"
    for key, (kind, description) in _MARKER_FIELDS.items():
        value = marker.get(key)
        if value is not None and (not isinstance(value, kind) or isinstance(value, bool)):
            return f"its {key} is {reprlib.repr(value)}, not {description}"
    if "setting" not in marker:
        return "it has no setting"
    if marker["status"] == "done" and "metrics" not in marker:
        return "it says done but names no metrics file"
    return None


def read_marker(path: str) -> Optional[dict[str, Any]]:
    """The variant's marker, or None when there is none or it is damaged (named in a warning):
    then the variant counts as not run, and a rerun runs it again rather than trusting it."""
    try:
        marker = read_json_object(path)
        problem = None if marker is None else _marker_problem(marker)
        problem = problem and f"{path}: {problem}"
    except ConfigError as e:
        marker, problem = None, str(e)
    if problem:
        logging.warning("%s; it is ignored: its variant counts as not run (rerunning the command runs it again).",
                        problem)
        return None
    return marker


def _shape_problem(value: Any, shape: dict[str, Any], where: str) -> Optional[str]:
    """The first key of `shape` missing from `value`, or whose value is not a finite number /
    not an object, as `where.key`; None when `value` has them all."""
    for key, inner in shape.items():
        name = f"{where}{key}"
        if key not in value:
            return f"has no {name}"
        item = value[key]
        if inner is None:
            if type(item) not in (int, float) or not math.isfinite(item):
                return f"has {name} = {reprlib.repr(item)}, not a number"
        elif not isinstance(item, dict):
            return f"has {name} = {reprlib.repr(item)}, not an object"
        else:
            problem = _shape_problem(item, inner, f"{name}.")
            if problem:
                return problem
    return None


def metrics_problem(metrics: dict[str, Any]) -> Optional[str]:
    """What the reports need from an evaluation's metrics.json and it lacks, or None. The
    FCN-scores are optional (a dataset without label maps has none), but checked when there."""
    shape: dict[str, Any] = {"metrics": dict(_METRICS)}
    if isinstance(metrics.get("metrics"), dict) and metrics["metrics"].get("fcn") is not None:
        shape["metrics"]["fcn"] = _FCN
    if metrics.get("ground_truth") is not None:
        shape["ground_truth"] = {"fcn": _FCN}
    return _shape_problem(metrics, shape, "")


def read_variant(marker_path: str) -> Optional[dict[str, Any]]:
    """{"marker": .., "metrics": metrics.json or None} of one variant; None when it has not run
    (or its marker is damaged). A done variant whose metrics file cannot be read or lacks a
    number is reported "incomplete", with why and how to evaluate it again."""
    marker = read_marker(marker_path)
    if marker is None or marker["status"] != "done":
        return None if marker is None else {"marker": marker, "metrics": None}
    try:
        metrics = read_json_object(marker["metrics"])
        if metrics is None:
            raise ConfigError(f"{marker['metrics']} does not exist")
        problem = metrics_problem(metrics)
        if problem:
            raise ConfigError(f"{marker['metrics']} {problem}")
    except ConfigError as e:
        error = f"{e}; delete {marker_path} and rerun the command to evaluate it again"
        logging.warning("%s", error)
        return {"marker": {**marker, "status": "incomplete", "error": error}, "metrics": None}
    return {"marker": marker, "metrics": metrics}


def recorded_command(results_path: str, default: str) -> str:
    """The command an earlier run recorded in results.json (so a rebuilt report keeps naming
    the command that produced its numbers), else `default`."""
    try:
        command = (read_json_object(results_path) or {}).get("command")
    except ConfigError as e:
        logging.warning("%s; the report names this command instead.", e)
        return default
    return command if isinstance(command, str) and command else default
