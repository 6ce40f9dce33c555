"""The reproduction's report: our tables beside the paper's (results.md), every number
(results.json), and the same test images translated by every variant of a table (figures/)."""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Optional

from pix2pix_tf import writing
from pix2pix_tf.experiments.markers import read_variant
from pix2pix_tf.experiments.paper_variants import (
    COLOUR_ROWS,
    MARKER,
    PAPER_COLOUR,
    PAPER_FCN,
    TABLES,
    VARIANTS,
    Setting,
)
from pix2pix_tf.workdir import Workdir

FIGURE_EXAMPLES = 3  # Test images per figure row set.


def write_json(path: str, value: Any) -> None:
    writing.write_text(path, json.dumps(value, indent=2) + "\n")


def collect(root: str, names: list[str], setting: Setting) -> dict[str, dict]:
    """variant -> {"marker": .., "metrics": metrics.json or None} for the variants run so far
    (`markers.read_variant`: a damaged marker is left out, unusable metrics are "incomplete");
    a variant run at another setting has no metrics here: the report's header names `setting`."""
    entries = {name: read_variant(os.path.join(root, name, MARKER)) for name in names}
    return {name: _at(entry, setting) for name, entry in entries.items() if entry is not None}


def _at(entry: dict, setting: Setting) -> dict:
    """`entry` as reported under `setting`: its metrics only where it was run at that setting."""
    current, recorded = dataclasses.asdict(setting), entry["marker"].get("setting")
    if recorded == current:
        return entry
    recorded = recorded if isinstance(recorded, dict) else {}
    differs = ", ".join(f"{key} {recorded.get(key)!r} (here {value!r})" for key, value in current.items()
                        if recorded.get(key) != value)
    return {"marker": {**entry["marker"], "status": "run at another setting", "error": differs}, "metrics": None}


def _fcn(results: dict, name: str) -> Optional[tuple[float, float, float]]:
    if name == "ground_truth":
        for candidate in ("l1_cgan", *results):  # The real photos' score is the same in every evaluation.
            metrics = (results.get(candidate) or {}).get("metrics")
            if metrics and metrics.get("ground_truth"):
                truth = metrics["ground_truth"]["fcn"]
                return truth["per_pixel_accuracy"], truth["per_class_accuracy"], truth["class_iou"]
        return None
    metrics = (results.get(name) or {}).get("metrics")
    if not metrics or not metrics["metrics"].get("fcn"):
        return None
    fcn = metrics["metrics"]["fcn"]
    return fcn["per_pixel_accuracy"], fcn["per_class_accuracy"], fcn["class_iou"]


def _cells(values: Optional[tuple], digits: int = 2) -> list[str]:
    return ["-"] * 3 if values is None else [f"{v:.{digits}f}" for v in values]


def failure_cell(marker: dict) -> str:
    """A failed variant's status and error as one table cell: on one line, its pipes escaped (the
    error of a refused resume spans lines, and broke every table it was put in); the status alone
    where no error is recorded."""
    error = marker.get("error")
    text = f"{marker.get('status')}: {error}" if error else str(marker.get("status"))
    return " ".join(text.split()).replace("|", "\\|")


def _status(results: dict, name: str) -> str:
    marker = (results.get(name) or {}).get("marker") or {}
    return "" if marker.get("status", "done") == "done" else f" ({failure_cell(marker)})"


def markdown_tables(results: dict, setting: Setting, command: str) -> str:
    """Our tables beside the paper's, as Markdown."""
    lines = [f"Setting `{setting.name}`: {json.dumps(dataclasses.asdict(setting))}", "", f"Command: `{command}`", ""]
    for _, title, rows in TABLES:
        lines += [f"### {title}", "",
                  "| | ours per-pixel acc. | ours per-class acc. | ours class IoU "
                  "| paper per-pixel acc. | paper per-class acc. | paper class IoU |",
                  "|---|---|---|---|---|---|---|"]
        for label, name, paper_key in rows:
            lines.append(f"| {label}{_status(results, name)} | " + " | ".join(_cells(_fcn(results, name), 3)
                                                                              + _cells(PAPER_FCN[paper_key])) + " |")
        lines.append("")
    lines += ["### Colour: Lab histogram intersection with the ground truth", "",
              "| | ours L | ours a | ours b | paper L | paper a | paper b |", "|---|---|---|---|---|---|---|"]
    for label, name in COLOUR_ROWS:
        metrics = (results.get(name) or {}).get("metrics")
        ours = None
        if metrics:
            hi = metrics["metrics"]["lab_histogram_intersection"]
            ours = (hi["L"], hi["a"], hi["b"])
        lines.append(f"| {label}{_status(results, name)} | " + " | ".join(_cells(ours, 3)
                                                                          + _cells(PAPER_COLOUR[name])) + " |")
    lines += ["", "### Every variant, every metric (test split)", "",
              "| variant | L1 | PSNR | SSIM | Lab HI L / a / b | FCN pixel / class / IoU | train s | eval s |",
              "|---|---|---|---|---|---|---|---|"]
    for name, variant in VARIANTS.items():
        entry = results.get(name)
        if not entry:
            continue
        marker, metrics = entry["marker"], entry["metrics"]
        if not metrics:
            lines.append(f"| {variant.title} | {failure_cell(marker)} | | | | | | |")
            continue
        m = metrics["metrics"]
        hi = m["lab_histogram_intersection"]
        fcn = " / ".join(_cells(_fcn(results, name), 3))
        lines.append(f"| {variant.title} | {m['l1']:.4f} | {m['psnr']:.2f} | {m['ssim']:.3f} | "
                     f"{hi['L']:.3f} / {hi['a']:.3f} / {hi['b']:.3f} | {fcn} | {marker.get('train_seconds', '-')} | "
                     f"{marker.get('eval_seconds', '-')} |")
    truth = _fcn(results, "ground_truth")
    if truth:
        lines.append(f"| Ground truth (real photos) | 0 | - | 1 | 1 / 1 / 1 | {' / '.join(_cells(truth, 3))} | | |")
    return "\n".join(lines) + "\n"


def _figure(results: dict, root: str, columns: list[tuple[str, str]], title: str, path: str) -> Optional[str]:
    """Rows of the same test images: input, each variant's output, target (from the eval PNGs)."""
    import numpy as np
    from PIL import Image

    def image(name: str, index: int, column: str) -> Optional[np.ndarray]:
        file = os.path.join(Workdir(os.path.join(root, name)).evaluations, "images", f"{index:05d}_{column}.png")
        if not os.path.exists(file):
            return None
        return np.asarray(Image.open(file).convert("RGB").resize((128, 128), Image.BICUBIC))

    available = [(label, name) for label, name in columns if (results.get(name) or {}).get("metrics")]
    if not available:
        return None
    source = available[0][1]
    panels = [("input", source, "input"), *[(label, name, "output") for label, name in available],
              ("ground truth", source, "target")]
    rows = [i for i in range(FIGURE_EXAMPLES) if image(source, i, "input") is not None]
    if not rows:
        return None
    from pix2pix_tf.training.summaries import offscreen_figure  # Loads TensorFlow and matplotlib: figures only.

    fig = offscreen_figure((1.45 * len(panels), 1.45 * len(rows) + 0.5))
    axes = fig.subplots(len(rows), len(panels), squeeze=False)
    for r, index in enumerate(rows):
        for c, (label, name, column) in enumerate(panels):
            picture = image(name, index, column)
            if picture is not None:
                axes[r, c].imshow(picture)
            axes[r, c].set_xticks([])
            axes[r, c].set_yticks([])
            if r == 0:
                axes[r, c].set_title(label, fontsize=7)
    fig.suptitle(title, fontsize=8)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.25 / fig.get_figheight()))
    return writing.write_figure(path, fig, dpi=100)


def write_report(results: dict, root: str, setting: Setting, command: str,
                 images_dir: Optional[str] = None) -> dict[str, str]:
    """results.json, results.md and the figures; returns what was written."""
    os.makedirs(os.path.join(root, "figures"), exist_ok=True)
    written = {}
    write_json(os.path.join(root, "results.json"), {"setting": dataclasses.asdict(setting), "command": command,
                                                     "paper_fcn": PAPER_FCN, "paper_colour": PAPER_COLOUR,
                                                     "variants": results})
    written["json"] = os.path.join(root, "results.json")
    writing.write_text(os.path.join(root, "results.md"), markdown_tables(results, setting, command))
    written["markdown"] = os.path.join(root, "results.md")
    figures = {
        "table1": [(label, name) for label, name, _ in TABLES[0][2] if name != "ground_truth"],
        "table2": [(label, name) for label, name, _ in TABLES[1][2]],
        "table3": [(label, name) for label, name, _ in TABLES[2][2]],
    }
    for key, columns in figures.items():
        title = dict((k, t) for k, t, _ in TABLES)[key]
        path = _figure(results, root, columns, title, os.path.join(root, "figures", f"{key}.png"))
        if path:
            written[key] = path
            if images_dir:
                with open(path, "rb") as f:
                    writing.write_file(os.path.join(images_dir, os.path.basename(path)), f.read())
    return written
