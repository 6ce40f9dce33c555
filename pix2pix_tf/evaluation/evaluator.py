"""Evaluates a trained generator: what `python -m pix2pix_tf.evaluate --workdir=runs/x` runs.

"How good is my model?" in numbers a reader of the paper knows: L1, PSNR, SSIM, the paper's
colour test (Lab histogram intersection with the ground truth), its FCN-score (a segmenter
trained on real photos segments the generated ones; the real photos' score beside it), and
FID when Inception-v3 weights are given as a local file. The model is the run's newest
readable checkpoint, or its SavedModel (`--saved_model`), TFLite file (`--tflite`) or ONNX file
(`--onnx`): they give the same numbers within the tolerance docs/evaluation.md states. The data is a split of the
run's own dataset, in its recorded direction and test-time preprocessing (config.json).

By default the generator runs as the paper tests it (dropout on, batch statistics); with
`--deterministic` without dropout; `--num_samples=N` draws N dropout samples per image and
reports each metric's mean and standard deviation over them. Everything is written to
`--output_dir` (default `<workdir>/eval/<split>_<model>_<mode>/`): metrics.json, index.html
(input | output | target with per-image metrics) and grid.png; a short table goes to stdout.
Also installed as `pix2pix-evaluate`. See docs/evaluation.md.

`evaluate(EvalConfig(...))` is the library call (the paper-reproduction script uses it);
`python -m pix2pix_tf.evaluate` is the program. It runs in stages, each in its own module:
`plan` (what to evaluate: the model source, the run, its data and split, which metrics, the
output folder), `per_image` (every image through the model, measured), `summary` (means and
spreads: metrics.json's content) and the files (metrics.json here, index.html and grid.png
by `report`).
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Optional

from absl import logging

from pix2pix_tf import writing
from pix2pix_tf.evaluation import report
from pix2pix_tf.evaluation.config import EvalConfig
from pix2pix_tf.evaluation.per_image import Measurements, measure
from pix2pix_tf.evaluation.plan import EvalPlan, make_plan
from pix2pix_tf.evaluation.report import METRICS_FILE
from pix2pix_tf.evaluation.summary import summarize
from pix2pix_tf.workdir import check_writable

__all__ = ["FORM_TOLERANCE", "METRICS_FILE", "EvalConfig", "EvalResult", "evaluate"]


# Agreement between the forms of one model (checkpoint, SavedModel, float32 TFLite, ONNX), in
# deterministic mode: the largest differences the tests accept (docs/evaluation.md).
FORM_TOLERANCE = {"l1": 1e-4, "psnr": 0.01, "ssim": 1e-4, "lab_histogram_intersection": 2e-3, "fcn": 2e-3}


@dataclasses.dataclass
class EvalResult:
    """metrics.json's content and where everything was written."""

    metrics: dict[str, Any]
    output_dir: str
    metrics_path: str
    html_path: Optional[str]
    grid_path: Optional[str]


def evaluate(config: EvalConfig) -> EvalResult:
    """Runs the model on a split of its run's dataset and writes metrics.json, index.html and
    grid.png; see the module docstring."""
    plan = make_plan(config)
    # Before any image is measured: a default folder that is a file, or one that cannot be
    # written, is named now, not after the work.
    check_writable(plan.output_dir, "--output_dir" if config.output_dir else "--output_dir (its default)")
    writes = [name for name, count in ((report.HTML_FILE, config.html_examples),
                                       (report.GRID_FILE, config.grid_examples)) if count]
    folder = report.folder_for(plan.output_dir, plan.translator.description, bool(config.output_dir), writes)
    if folder != plan.output_dir:
        logging.warning("%s holds the evaluation of another model: this one goes to %s.", plan.output_dir, folder)
        check_writable(folder, "--output_dir (its default)")
        plan.output_dir = folder
    logging.info("Evaluating %s on %s/%s into %s.", plan.translator.description, plan.dataset_name, plan.split,
                 plan.output_dir)
    found = measure(plan)
    return _write_files(plan, summarize(plan, found), found)


def _write_files(plan: EvalPlan, result: dict[str, Any], found: Measurements) -> EvalResult:
    """The page's pictures, metrics.json, index.html and grid.png, after the last image is
    measured: all of them new, or (a write failed) all the earlier ones (`writing.together`)."""
    title = f"{plan.dataset_name}/{plan.split}: {plan.source.label}, {result['mode_description']}"
    with writing.together():
        report.write_pictures(plan.output_dir, found.pictures)
        metrics_path = writing.write_text(os.path.join(plan.output_dir, METRICS_FILE),
                                          json.dumps(result, indent=2) + "\n")
        html_path = report.write_html(plan.output_dir, result, [e for e in found.per_image if "images" in e]) \
            if plan.config.html_examples else None
        grid_path = report.save_grid(os.path.join(plan.output_dir, report.GRID_FILE), found.grid_rows, title) \
            if found.grid_rows else None
    for name, written in ((report.HTML_FILE, html_path), (report.GRID_FILE, grid_path)):
        if not written and (removed := report.remove_earlier(plan.output_dir, name)):
            logging.info("Removed %s: an earlier evaluation's, and this one writes none.", removed)
    if removed_pictures := report.remove_earlier_pictures(plan.output_dir, set(found.pictures)):
        logging.info("Removed %d picture(s) of an earlier evaluation in %s.", len(removed_pictures),
                     os.path.join(plan.output_dir, report.IMAGES_DIR))
    return EvalResult(result, plan.output_dir, metrics_path, html_path, grid_path)
