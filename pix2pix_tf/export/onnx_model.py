"""The generator as an ONNX file, an export target (`TARGET`, `--onnx`): converted from the
published SavedModel, checked against it with the runtime's own runner
(`inference.onnx_runner.OnnxModel`), and published beside it.

`python export.py --onnx` writes `<export_dir>/onnx/<model_name>/<version>/<model_name>.onnx`
with `report.json` and `MODEL_CARD.md`. tf2onnx converts the SavedModel's
`translate_float_deterministic` signature at opset `OPSET`, so the file computes what that
signature computes, with the same normalisation: input `images`, float32 NHWC
[batch, height, width, C_in] in [-1, 1] (pixel / 127.5 - 1); output `output`, float32
[batch, height, width, C_out] in [-1, 1]; batch, height and width are dynamic (named so in the
file); height and width must be multiples of the generator's size multiple. The file carries
this contract in its own `metadata_props` (JSON values), so that a copy that left its folder
still says how to feed it.

The conversion is refused unless onnxruntime reproduces the SavedModel on the held-out images,
at the export's square size and at a wider one, in batches of two (dynamic batch, height and
width), to within `MAX_ABS_DIFF` everywhere (docs/onnx.md). tf2onnx, onnx and onnxruntime are
the optional `onnx` extra: nothing here imports them before it is used.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from importlib import metadata
from typing import Any, Callable, Mapping

import numpy as np

from pix2pix_tf import writing
from pix2pix_tf.evaluation.metrics import pooled_psnr
from pix2pix_tf.export import model_card, versions
from pix2pix_tf.export.config import ExportError
from pix2pix_tf.export.onnx_target import OnnxOptions, onnx_base
from pix2pix_tf.export.saved_model import SavedModelReport
from pix2pix_tf.export.target import Job, Published
from pix2pix_tf.inference import artifacts
from pix2pix_tf.inference.onnx_runner import OnnxModel

OPSET = 17
# float32 from end to end, like the SavedModel: anything beyond rounding differences between two
# runtimes' kernels is a broken conversion.
MAX_ABS_DIFF = 1e-3
DYNAMIC_DIMS = ("batch", "height", "width")
REPORT = "report.json"  # Beside the .onnx file.
# The SavedModel metadata copied into the file's metadata_props (with the contract's own keys).
_COPIED = ("model_name", "version", "checkpoint", "image_size", "size_multiple", "input_nc", "output_nc",
           "direction", "generator", "norm")

# ----------------------------------------------------------------------------- the file


def contract(saved_model_metadata: dict[str, Any]) -> dict[str, Any]:
    """What the file's metadata_props say: the export's facts and how to feed the model."""
    facts = {key: saved_model_metadata[key] for key in _COPIED if key in saved_model_metadata}
    mode = dict(saved_model_metadata.get("mode", {}), dropout=False)
    return {**facts, "mode": mode, "source_signature": artifacts.SIGNATURE_FLOAT_DETERMINISTIC, "layout": "NHWC",
            "input_range": [-1, 1], "output_range": [-1, 1],
            "normalisation": "input = pixel / 127.5 - 1; pixel = (output + 1) * 127.5, clipped to 0..255"}


def set_contract(model: Any, saved_model_dir: str) -> None:
    """The ONNX `model`'s metadata_props become the contract of the SavedModel in `saved_model_dir`."""
    del model.metadata_props[:]
    for key, value in contract(artifacts.read_metadata(saved_model_dir)).items():
        model.metadata_props.add(key=key, value=json.dumps(value))


def convert(saved_model_dir: str, path: str) -> None:
    """The SavedModel's dropout-free float signature as an ONNX file at `path`, with named
    dynamic dimensions and the contract in its metadata."""
    # The `onnx` extra, imported only once a file is converted (`TARGET.check` asked for it).
    import onnx
    from tf2onnx import convert as tf2onnx_convert
    from tf2onnx import tf_loader

    try:
        graph_def, inputs, outputs, renames = tf_loader.from_saved_model(
            saved_model_dir, None, None, tag=["serve"], signatures=[artifacts.SIGNATURE_FLOAT_DETERMINISTIC],
            return_tensors_to_rename=True)
        model, _ = tf2onnx_convert.from_graph_def(graph_def, name=artifacts.SIGNATURE_FLOAT_DETERMINISTIC,
                                                  input_names=inputs, output_names=outputs, opset=OPSET,
                                                  tensors_to_rename=renames)
    except Exception as e:  # tf2onnx raises ValueError, KeyError, RuntimeError and its own errors.
        raise ExportError(f"ONNX conversion (tf2onnx, opset {OPSET}) failed: {e}") from e
    for value in (*model.graph.input, *model.graph.output):
        for dim, name in zip(value.type.tensor_type.shape.dim, DYNAMIC_DIMS):
            dim.dim_param = name
    set_contract(model, saved_model_dir)
    model.doc_string = ("pix2pix generator (pix2pix_tf export.py --onnx): images float32 NHWC in [-1, 1] -> "
                        "output float32 NHWC in [-1, 1]; see metadata_props.")
    onnx.checker.check_model(model)
    writing.write_file(path, model.SerializeToString())


# ----------------------------------------------------------------------------- the check


@dataclasses.dataclass
class OnnxReport:
    """The published ONNX file and how far onnxruntime's output is from the SavedModel's."""

    path: str
    size_bytes: int
    psnr_db: float
    max_abs_diff: float
    sizes_checked: list[list[int]]  # [height, width] of each size compared.
    ok: bool

    def line(self) -> str:
        sizes = ", ".join(f"{w}x{h}" for h, w in self.sizes_checked)
        status = "ok" if self.ok else f"ABOVE {MAX_ABS_DIFF:g}"
        return (f"{os.path.basename(self.path)}  {self.size_bytes / 2**20:.2f} MiB  opset {OPSET}  "
                f"PSNR {self.psnr_db:.2f} dB  max|diff| {self.max_abs_diff:.2g} at {sizes}  {status}")


def check(model: Callable[[np.ndarray], np.ndarray], reference: Callable[[np.ndarray], np.ndarray],
          images: np.ndarray, multiple: int, request_pixels: int) -> tuple[float, float, list[list[int]]]:
    """(PSNR, max abs diff, sizes) of `model` against `reference` on `images` [N, S, S, C] and on
    the same images widened by `multiple` columns (mirrored), in batches of two. Where a wider
    image would be over the reference's request cap `request_pixels` (which holds the square
    one), it is also shortened by `multiple` rows."""
    wide = np.concatenate([images, images[:, :, ::-1][:, :, :multiple]], axis=2)
    side = images.shape[1]
    if side * (side + multiple) > request_pixels and side > multiple:
        wide = wide[:, :side - multiple]
    got, expected = [], []
    for batch in (images, wide):
        for start in range(0, len(batch), 2):
            got.append(np.asarray(model(batch[start:start + 2])).ravel())
            expected.append(np.asarray(reference(batch[start:start + 2])).ravel())
    got, expected = np.concatenate(got), np.concatenate(expected)
    sizes = [list(images.shape[1:3]), list(wide.shape[1:3])]
    if not np.isfinite(got).all():
        return float("nan"), float("nan"), sizes
    return pooled_psnr(expected, got), float(np.max(np.abs(expected - got))), sizes


def publish_file(saved: SavedModelReport, export_dir: str, facts: model_card.CardFacts, images: np.ndarray,
                 compared_on: str, threads: int) -> OnnxReport:
    """Converts, checks and publishes the ONNX file of `facts.version`; a file that does not
    reproduce the SavedModel is refused and nothing is published."""

    def write(staging: str, final: str) -> OnnxReport:
        path = os.path.join(staging, f"{facts.model_name}.onnx")
        convert(saved.path, path)
        model = OnnxModel(path, threads=threads)
        psnr_db, max_abs, sizes = check(model, saved.reference, images, model.size_multiple or 1,
                                        saved.request_pixels)
        report = OnnxReport(os.path.join(final, os.path.basename(path)), os.path.getsize(path), psnr_db, max_abs,
                            sizes, math.isfinite(max_abs) and max_abs <= MAX_ABS_DIFF)
        _write_report(staging, report, saved.path, compared_on)
        model_card.write(staging, model_card.render(facts, "ONNX file", _card_lines(report, model)))
        if not report.ok:
            raise ExportError(f"The ONNX file does not reproduce the SavedModel on {compared_on} (max |diff| "
                              f"{max_abs:.3g} > {MAX_ABS_DIFF:g}, or NaN):\n  {report.line()}")
        return report

    _, report = versions.publish_staged(
        onnx_base(export_dir, facts.model_name), facts.version, write,
        f"The SavedModel {saved.path} (and any TFLite file) was published; no ONNX file was.")
    return report


def _write_report(directory: str, report: OnnxReport, saved_model_dir: str, compared_on: str) -> None:
    content = {
        "file": os.path.basename(report.path), "size_bytes": report.size_bytes, "opset": OPSET,
        "converted_from": {"saved_model": saved_model_dir, "signature": artifacts.SIGNATURE_FLOAT_DETERMINISTIC},
        "input": {"name": artifacts.INPUT_NAME, "dtype": "float32", "shape": list(DYNAMIC_DIMS) + ["C_in"],
                  "range": [-1, 1]},
        "output": {"name": artifacts.OUTPUT_FLOAT, "dtype": "float32", "shape": list(DYNAMIC_DIMS) + ["C_out"],
                   "range": [-1, 1]},
        "compared_on": compared_on, "sizes_checked": report.sizes_checked, "psnr_db": report.psnr_db,
        "max_abs_diff": report.max_abs_diff, "max_abs_diff_allowed": MAX_ABS_DIFF, "ok": report.ok,
        "tools": {name: metadata.version(name) for name in ("tf2onnx", "onnx", "onnxruntime")},
    }
    writing.write_text(os.path.join(directory, REPORT), json.dumps(content, indent=2, allow_nan=True) + "\n")


def _card_lines(report: OnnxReport, model: OnnxModel) -> list[str]:
    multiple = model.size_multiple
    return [
        f"`{os.path.basename(report.path)}`, opset {OPSET}, converted by tf2onnx from the SavedModel's "
        f"`{artifacts.SIGNATURE_FLOAT_DETERMINISTIC}` signature (dropout off). Input `{model.input.name}` float32 "
        f"[batch, height, width, {model.input_nc}] in [-1, 1] (pixel / 127.5 - 1), NHWC; output "
        f"`{model.output.name}` float32 [batch, height, width, {model.output_nc}] in [-1, 1] "
        "(pixel = (value + 1) * 127.5). Batch, height and width are dynamic"
        + (f"; height and width must be multiples of {multiple}." if multiple else "."),
        "",
        f"Checked with onnxruntime against the SavedModel: {report.line()}. docs/onnx.md shows how to run it.",
    ]


def publish(job: Job, options: OnnxOptions, published: Mapping[str, Published]) -> Published:
    """The ONNX file converted from the published SavedModel and checked against it; its card
    states the mode it computes (dropout off)."""
    facts = dataclasses.replace(job.card, mode=job.config.mode.without_dropout())
    report = publish_file(published["saved_model"].report, job.export_dir, facts, job.images, job.examples.source,
                          job.config.threads)
    card = os.path.join(os.path.dirname(report.path), artifacts.MODEL_CARD)
    return Published("onnx", report.path, report, (card,), lambda: [
        f"ONNX (onnxruntime against the SavedModel's translate_float_deterministic): {report.line()}"])
