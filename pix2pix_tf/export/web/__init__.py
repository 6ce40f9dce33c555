"""The static web page of an export, an export target (`TARGET`): the generator running in the
visitor's browser, no server.

`export.py --web` writes `<export_dir>/web/<model_name>/<version>/`:

    index.html, app.js, page.css      the page (sources beside this module)
    page.json                         what the page runs: model file, precision, size, drawing, examples
    <model_name>_<variant>.tflite     one TFLite file of the same version, as checked by the export
    examples/held_out_NNN.png         held-out inputs of the run at the model's size
    runtime/                          LiteRT.js (@litertjs/core) and its WebAssembly, from node_modules

Any static host serves it (`python -m http.server` in the folder). The runtime comes from npm
(`package.json` and `package-lock.json` beside this module; `npm ci` installs it), never from git
or a CDN: the page fetches nothing outside its own folder.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shlex
from typing import Mapping, Optional

import numpy as np
import tensorflow as tf

from pix2pix_tf import images, writing
from pix2pix_tf.demo.model import drawing_for
from pix2pix_tf.export import versions
from pix2pix_tf.export.config import ExportError
from pix2pix_tf.export.target import Job, Published, Run
from pix2pix_tf.export.tflite import TFLiteReport
from pix2pix_tf.export.web_target import PageOptions, web_base

SOURCE_DIR = os.path.dirname(os.path.abspath(__file__))
PAGE_FILES = ("index.html", "app.js", "page.css")
PAGE_CONFIG = "page.json"
RUNTIME_PACKAGE = "@litertjs/core"
# What the page loads from runtime/: the library, its one dependency, and the two WebAssembly
# builds LiteRT.js chooses between (relaxed SIMD or not). The threaded build needs
# cross-origin-isolation headers that a plain static host does not send; the JSPI build serves
# WebNN and mixed WebGPU/CPU graphs, which the page does not use.
RUNTIME_FILES = {
    "litert.js": ("@litertjs/core", "dist/index.js"),
    "wasm-utils.js": ("@litertjs/wasm-utils", "dist/index.js"),
    "litert_wasm_internal.js": ("@litertjs/core", "wasm/litert_wasm_internal.js"),
    "litert_wasm_internal.wasm": ("@litertjs/core", "wasm/litert_wasm_internal.wasm"),
    "litert_wasm_compat_internal.js": ("@litertjs/core", "wasm/litert_wasm_compat_internal.js"),
    "litert_wasm_compat_internal.wasm": ("@litertjs/core", "wasm/litert_wasm_compat_internal.wasm"),
}
PRECISIONS = {
    "float32": "float32 weights and activations",
    "float16": "float16 weights, float32 activations",
    "dynamic_int8": "int8 weights, float32 activations",
    "int8": "int8 weights and activations, float32 input and output",
}

def runtime_dir(node_modules: Optional[str] = None) -> str:
    return node_modules or os.path.join(SOURCE_DIR, "node_modules")


def install_hint() -> str:
    relative = os.path.relpath(SOURCE_DIR)
    return f"npm ci --prefix {SOURCE_DIR if relative.startswith('..') else relative}"


def runtime_version(node_modules: Optional[str] = None) -> str:
    """The installed LiteRT.js version; ExportError (one line, with the command that installs it)
    when it or one of the files the page loads is missing."""
    modules = runtime_dir(node_modules)
    missing = [os.path.join(package, path) for package, path in RUNTIME_FILES.values()
               if not os.path.isfile(os.path.join(modules, package, path))]
    if missing:
        raise _not_installed(f"no {os.path.join(modules, missing[0])}")
    manifest = os.path.join(modules, RUNTIME_PACKAGE, "package.json")
    try:
        with open(manifest) as f:
            record = json.load(f)
    except (OSError, ValueError, RecursionError) as e:  # ValueError: not JSON, or not UTF-8.
        raise _not_installed(f"{manifest} is unreadable: {type(e).__name__}: {e}") from e
    version = record.get("version") if isinstance(record, dict) else None
    if not isinstance(version, str) or not version:
        raise _not_installed(f"{manifest} names no version")
    return version


def _not_installed(why: str) -> ExportError:
    """The one message for a runtime that is missing or damaged: either way, installing it again
    is the cure, and the page must not ship a runtime of unknown version."""
    return ExportError(f"--web needs the web runtime LiteRT.js ({RUNTIME_PACKAGE}), which is not installed ({why}): "
                       f"run `{install_hint()}` (Node 20 and npm), or pass --web_runtime=<a node_modules folder "
                       "holding it>.")


@dataclasses.dataclass(frozen=True)
class PageFacts:
    """What the page states and needs about the model it runs."""

    model_name: str
    version: int
    variant: str
    image_size: int
    input_nc: int
    output_nc: int
    dataset: Optional[str]
    direction: Optional[str]
    checkpoint_step: Optional[int]
    psnr_db: float  # The TFLite file against the SavedModel, from the export's check.


def publish_page(export_dir: str, tflite_file: str, facts: PageFacts, examples: np.ndarray,
                 node_modules: Optional[str] = None) -> str:
    """The page written to a staging folder and renamed into `<web_base>/<version>`, as the
    TFLite files are; returns that folder."""
    folder, _ = versions.publish_staged(web_base(export_dir, facts.model_name), facts.version,
                                        lambda staging, _: write_page(staging, tflite_file, facts, examples,
                                                                      node_modules))
    return folder


def write_page(folder: str, tflite_file: str, facts: PageFacts, examples: np.ndarray,
               node_modules: Optional[str] = None) -> str:
    """Writes the page into `folder` (a staging folder: the caller publishes it) and returns
    page.json's path. `examples` are [N, S, S, C] inputs in [-1, 1], written as PNGs."""
    version = runtime_version(node_modules)
    os.makedirs(os.path.join(folder, "runtime"), exist_ok=True)
    for name in PAGE_FILES:
        writing.copy_file(os.path.join(SOURCE_DIR, name), os.path.join(folder, name))
    modules = runtime_dir(node_modules)
    for name, (package, path) in RUNTIME_FILES.items():
        writing.copy_file(os.path.join(modules, package, path), os.path.join(folder, "runtime", name))
    model_file = os.path.basename(tflite_file)
    writing.copy_file(tflite_file, os.path.join(folder, model_file))
    drawing = drawing_for(facts.dataset, facts.direction)
    config = {
        "model": {"file": model_file, "name": facts.model_name, "version": facts.version, "variant": facts.variant,
                  "precision": PRECISIONS[facts.variant], "size_bytes": os.path.getsize(tflite_file),
                  "psnr_db_vs_saved_model": _json_number(facts.psnr_db), "checkpoint_step": facts.checkpoint_step},
        "image_size": facts.image_size, "input_nc": facts.input_nc, "output_nc": facts.output_nc,
        "dataset": facts.dataset, "direction": facts.direction,
        "drawing": {"kind": drawing.kind, "colours": list(drawing.colours), "background": drawing.background,
                    "fixed": drawing.fixed, "legend": drawing.legend, "names": [list(n) for n in drawing.names]},
        "examples": _write_examples(os.path.join(folder, "examples"), examples),
        "runtime": {"package": RUNTIME_PACKAGE, "version": version},
    }
    path = os.path.join(folder, PAGE_CONFIG)
    writing.write_text(path, json.dumps(config, indent=2, allow_nan=False) + "\n")  # JSON a browser parses.
    return path


def _json_number(value: float) -> float | str:
    """Rounded, or "inf" / "nan": a browser's JSON has no Infinity or NaN."""
    return round(value, 2) if math.isfinite(value) else str(value)


def _write_examples(folder: str, examples: np.ndarray) -> list[str]:
    os.makedirs(folder, exist_ok=True)
    names = []
    for index, image in enumerate(examples):
        name = f"held_out_{index:03d}.png"
        writing.write_file(os.path.join(folder, name), tf.io.encode_png(images.to_uint8(tf.constant(image))).numpy())
        names.append(f"examples/{name}")
    return names


def check(options: PageOptions, run: Run) -> None:
    runtime_version(options.runtime)  # Refused before minutes of work when LiteRT.js is not installed.


def publish(job: Job, options: PageOptions, published: Mapping[str, Published]) -> Published:
    """The static page over the checked TFLite variant `options.variant`, as the export's version."""
    files: TFLiteReport = published["tflite"].report
    report = next(r for r in files.variants if r.variant == options.variant)
    train = job.train
    facts = PageFacts(
        model_name=job.config.model_name, version=job.version, variant=report.variant, image_size=job.image_size,
        input_nc=train.model.input_nc, output_nc=train.model.output_nc, dataset=train.data.dataset,
        direction=train.data.direction,
        checkpoint_step=job.card.step, psnr_db=report.psnr_db)
    held_out = job.images if job.examples.targets is not None else job.images[:0]  # Not synthetic noise.
    folder = publish_page(job.export_dir, report.path, facts, held_out, options.runtime)
    serve = f"python -m http.server -d {shlex.quote(folder)}"  # A command to paste: quoted where it must be.
    return Published("web", folder, facts, usage=(f"Web page: {folder} (serve it: {serve})",))
