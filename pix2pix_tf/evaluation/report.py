"""What an evaluation shows a person: a short stdout table, an HTML page and a PNG grid.

The numbers live in metrics.json (written by `python -m pix2pix_tf.evaluate`); this module only
presents them. The HTML page is static (no scripts, relative image paths), so an output
folder can be copied, zipped or served as it is: one row per image with input | output |
target and that image's metrics, worst L1 last so that failures are easy to find.
"""

from __future__ import annotations

import contextlib
import html
import io
import itertools
import math
import os
import re
from typing import Any, Optional, Sequence

import numpy as np
from absl import logging

from pix2pix_tf import regular_files, writing
from pix2pix_tf.errors import ConfigError
from pix2pix_tf.training.summaries import save_grid_png, to_uint8

IMAGES_DIR = "images"
METRICS_FILE = "metrics.json"
HTML_FILE = "index.html"
GRID_FILE = "grid.png"
COLUMNS = ("input", "output", "target")
# Written into index.html, grid.png and every picture: an evaluation replaces or removes only
# the files an earlier one wrote (they would describe another evaluation); a file of the same
# name without the mark is someone else's.
MARK = "pix2pix_tf evaluate"
PICTURE = "picture"  # `_ours`'s name for any of the pictures folder's PNGs.
_PNG_MARK = f"Software\x00{MARK}".encode()
_MARKS = {HTML_FILE: f'<meta name="generator" content="{MARK}">'.encode(), GRID_FILE: _PNG_MARK, PICTURE: _PNG_MARK}
_PICTURE_NAME = re.compile(rf"^[0-9]{{5}}_({'|'.join(COLUMNS)})\.png$")  # `picture_path`'s names.


def encode_png(image: np.ndarray) -> bytes:
    """A [-1, 1] image as an 8-bit PNG (PIL: no TensorFlow op per file)."""
    from PIL import Image, PngImagePlugin

    marked = PngImagePlugin.PngInfo()
    marked.add_text("Software", MARK)  # Before the pixels: `_ours` reads a file's first bytes.
    buffer = io.BytesIO()
    Image.fromarray(to_uint8(image)).save(buffer, format="PNG", pnginfo=marked)
    return buffer.getvalue()


def picture_path(index: int, column: str) -> str:
    """Where index.html finds an example's picture, relative to the output folder."""
    return f"{IMAGES_DIR}/{index:05d}_{column}.png"


def write_pictures(output_dir: str, pictures: dict[str, bytes]) -> None:
    """The page's PNGs (relative path -> bytes), written with the rest of the report once every
    image is measured: a stopped evaluation leaves an earlier report's pictures as they were,
    beside its page and numbers."""
    for relative, png in pictures.items():
        writing.write_file(os.path.join(output_dir, relative), png)


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        return f"{value:.{digits}f}"
    return str(value)


def summary_rows(result: dict) -> list[tuple[str, str]]:
    """(name, value) lines of the headline metrics of a metrics.json dict; value +- std over
    dropout samples when there were several."""
    metrics, std = result["metrics"], result.get("metrics_std") or {}

    def value(key: str, digits: int = 4, sub: Optional[str] = None) -> str:
        v = metrics.get(key) if sub is None else (metrics.get(key) or {}).get(sub)
        s = std.get(key) if sub is None else (std.get(key) or {}).get(sub)
        text = _fmt(v, digits)
        return text if s is None or v is None else f"{text} +- {_fmt(s, digits)}"

    rows = [("L1 (in [-1, 1])", value("l1")), ("PSNR (dB)", value("psnr", 2)), ("SSIM", value("ssim"))]
    for channel in ("L", "a", "b"):
        rows.append((f"Lab histogram intersection {channel}", value("lab_histogram_intersection", 3, channel)))
    if metrics.get("fcn"):
        truth = (result.get("ground_truth") or {}).get("fcn") or {}
        for key, name in (("per_pixel_accuracy", "per-pixel acc."), ("per_class_accuracy", "per-class acc."),
                          ("class_iou", "class IoU")):
            rows.append((f"FCN {name} (ground truth {_fmt(truth.get(key), 3)})", value("fcn", 3, key)))
    if metrics.get("fid") is not None:
        rows.append(("FID", value("fid", 2)))
    return rows


def format_table(result: dict) -> str:
    """The short stdout table of an evaluation."""
    rows = summary_rows(result)
    width = max(len(name) for name, _ in rows)
    head = (f"{result['model']}\n{result['dataset']} / {result['split']}: {result['num_examples']} image(s) x "
            f"{result['num_samples']} sample(s), {result['mode_description']}")
    return head + "\n" + "\n".join(f"  {name:<{width}}  {value}" for name, value in rows)


def _per_image_cells(entry: dict) -> str:
    parts = [f"L1 {_fmt(entry.get('l1'))}", f"PSNR {_fmt(entry.get('psnr'), 2)} dB", f"SSIM {_fmt(entry.get('ssim'))}"]
    lab = entry.get("lab_histogram_intersection")
    if lab:
        parts.append("Lab HI " + " / ".join(_fmt(lab[c], 3) for c in ("L", "a", "b")))
    if entry.get("fcn_pixel_accuracy") is not None:
        real = _fmt(entry.get("fcn_pixel_accuracy_real"), 3)
        parts.append(f"FCN acc. {_fmt(entry['fcn_pixel_accuracy'], 3)} (real photo {real})")
    return "<br>".join(html.escape(p) for p in parts)


def write_html(output_dir: str, result: dict, examples: Sequence[dict]) -> str:
    """index.html: the summary table, then one row per example (`examples`: per-image metrics
    dicts with an `images` entry mapping column -> relative PNG path), sorted by L1."""
    rows = "\n".join(f"<tr><th>{html.escape(name)}</th><td>{html.escape(value)}</td></tr>"
                     for name, value in summary_rows(result))
    ordered = sorted(examples, key=lambda e: e.get("l1", 0.0))
    body = []
    for entry in ordered:
        cells = "".join(f'<td><img src="{html.escape(entry["images"][c])}" alt="{c}"></td>'
                        for c in COLUMNS if c in entry["images"])
        body.append(f"<tr><td>#{entry['index']}</td>{cells}<td class=m>{_per_image_cells(entry)}</td></tr>")
    header = "".join(f"<th>{c}</th>" for c in COLUMNS)
    page = f"""<!DOCTYPE html>
<html><head><meta charset="utf-8">
<meta name="generator" content="{MARK}">
<title>pix2pix evaluation: {html.escape(result['dataset'])}</title>
<style>
body {{ font-family: sans-serif; margin: 1.5em; }}
table {{ border-collapse: collapse; }}
td, th {{ padding: 4px 8px; border-bottom: 1px solid #ddd; text-align: left; vertical-align: middle; }}
img {{ width: 192px; image-rendering: pixelated; }}
td.m {{ font-size: 90%; font-family: monospace; }}
</style></head><body>
<h1>pix2pix evaluation</h1>
<p>{html.escape(result['model'])}<br>
{html.escape(result['dataset'])} / {html.escape(result['split'])}, direction {html.escape(str(result['direction']))},
{result['num_examples']} image(s) x {result['num_samples']} sample(s); {html.escape(result['mode_description'])}.</p>
<table>{rows}</table>
<h2>Images (best L1 first; first dropout sample)</h2>
<table><tr><th></th>{header}<th>metrics</th></tr>
{chr(10).join(body)}
</table></body></html>
"""
    return writing.write_text(os.path.join(output_dir, HTML_FILE), page)


def save_grid(path: str, rows: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray, str]], title: str) -> str:
    """A grid of input | output | target rows, each captioned with its metrics."""
    return save_grid_png(path, [row[:3] for row in rows], title, columns=COLUMNS, captions=[row[3] for row in rows],
                         metadata={"Software": MARK})


def remove_earlier_pictures(output_dir: str, kept: set[str]) -> list[str]:
    """Removes the pictures (`picture_path`'s names) in `output_dir`'s images folder that this
    evaluation did not write (`kept`, relative paths): an earlier evaluation's, of more examples
    (`check_replaceable` refused the folder where another file had such a name). Files of other
    names are not ours and stay."""
    removed = [path for path in _pictures_in(os.path.join(output_dir, IMAGES_DIR))
               if f"{IMAGES_DIR}/{os.path.basename(path)}" not in kept]
    for path in removed:
        with contextlib.suppress(OSError):
            os.remove(path)
    return removed


def remove_earlier(output_dir: str, name: str) -> Optional[str]:
    """Removes `name` (HTML_FILE or GRID_FILE) from `output_dir` if an earlier evaluation wrote
    it (it carries MARK near its start); returns its path then, else None."""
    path = os.path.join(output_dir, name)
    if not _ours(path, name):
        return None
    os.remove(path)
    return path


def folder_for(output_dir: str, model: str, chosen: bool, writes: Sequence[str]) -> str:
    """The folder an evaluation of `model` (its description) writes into: `output_dir`, unless
    it is a default folder (not `chosen` by the user) holding another model's evaluation: then
    the first of `output_dir-2`, `-3`, ... that is free or holds this model's (a default name does
    not tell every model apart: two exports' TFLite files of one name). A folder the user chose
    is theirs to reuse: another model's report there is replaced, with a warning. The files this
    evaluation `writes` (HTML_FILE, GRID_FILE) where evaluate did not write them are refused
    (`check_replaceable`)."""
    candidate = output_dir
    for number in itertools.count(2):
        earlier = evaluated_model(candidate)
        if earlier is None or earlier == model or chosen:
            if earlier not in (None, model):
                logging.warning("%s holds another evaluation (of %s): replaced by this one's.", candidate, earlier)
            check_replaceable(candidate, writes, earlier_report=earlier is not None)
            return candidate
        candidate = f"{output_dir}-{number}"
    raise AssertionError("unreachable")


def evaluated_model(folder: str) -> Optional[str]:
    """The model an earlier evaluation in `folder` describes (its metrics.json's "model"); None
    where there is none. A metrics.json that evaluate did not write is refused."""
    path = os.path.join(folder, METRICS_FILE)
    try:
        recorded = regular_files.read_json_object(path)
    except ConfigError:
        recorded = {}
    if recorded is None:
        return None
    if not isinstance(recorded.get("model"), str) or not isinstance(recorded.get("metrics"), dict):
        raise ConfigError(f"{path} was not written by evaluate: it is not replaced. Choose another --output_dir, "
                          "or move it away.")
    return recorded["model"]


def check_replaceable(folder: str, writes: Sequence[str], earlier_report: bool = False) -> None:
    """Refuses a page or grid there (of `writes`) that evaluate did not write (it carries MARK);
    an images folder that is a symbolic link (the pictures would be written, and earlier ones
    removed, through it) or not a folder; and a file in it of a picture's name that evaluate did
    not write. An `earlier_report`'s pictures count as evaluate's where they carry no mark (an
    evaluation before pictures were marked wrote them)."""
    for name in writes:
        path = os.path.join(folder, name)
        if os.path.lexists(path) and not _ours(path, name):
            raise ConfigError(f"{path} was not written by evaluate: it is not replaced. Choose another "
                              "--output_dir, or move it away.")
    images = os.path.join(folder, IMAGES_DIR)
    if os.path.islink(images):
        raise ConfigError(f"{images} is a symbolic link (to {os.readlink(images)}): evaluate does not write its "
                          "pictures through it. Choose another --output_dir, or remove the link.")
    if os.path.lexists(images) and not os.path.isdir(images):
        raise ConfigError(f"{images} is a file where evaluate keeps its pictures' folder: move it away, or choose "
                          "another --output_dir.")
    others = [path for path in _pictures_in(images) if not _ours(path, PICTURE) and not
              (earlier_report and os.path.isfile(path) and not os.path.islink(path))]
    if others:
        raise ConfigError(f"{images} holds {len(others)} file(s) of the names of evaluate's pictures that evaluate "
                          f"did not write ({', '.join(os.path.basename(p) for p in others[:3])}"
                          f"{', ...' if len(others) > 3 else ''}): they are not replaced. Choose another "
                          "--output_dir, or move them away.")


def _pictures_in(images: str) -> list[str]:
    """The paths in the pictures' folder that have a picture's name (`picture_path`), sorted."""
    try:
        names = sorted(os.listdir(images))
    except OSError:  # No folder yet.
        return []
    return [os.path.join(images, name) for name in names if _PICTURE_NAME.match(name)]


def _ours(path: str, name: str) -> bool:
    try:
        with regular_files.opened_regular(path) as (f, _):
            return _MARKS[name] in f.read(4096)
    except OSError:  # Not a file to read (a folder, a FIFO, a link to nothing): not ours.
        return False
