"""TFLite files of the generator, an export target (`TARGET`, `--tflite`): conversion of each
variant with builtin ops only, their check against the SavedModel (run by
`inference.tflite_runner.TFLiteModel`), the report, and their publication as one version in
`<export_dir>/tflite/<model_name>/<version>/`.

Every variant is run by the LiteRT interpreter and compared with the published SavedModel on
held-out images; a variant below its PSNR floor (or with NaNs) is refused (docs/tflite.md).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import tempfile
from typing import Callable, Iterator, Mapping, Optional, Sequence

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from pix2pix_tf import writing
from pix2pix_tf.config import TrainConfig
from pix2pix_tf.evaluation.metrics import pooled_psnr
from pix2pix_tf.export import contents, model_card, versions
from pix2pix_tf.export.config import ExportConfig, ExportError
from pix2pix_tf.export.model_card import CardFacts
from pix2pix_tf.export.saved_model import Endpoints, SavedModelReport
from pix2pix_tf.export.target import Job, Published
from pix2pix_tf.export.tflite_target import Options, tflite_base
from pix2pix_tf.inference import generate
from pix2pix_tf.inference.artifacts import INPUT_NAME, OUTPUT_FLOAT, TFLITE_REPORT, TFLITE_VARIANTS
from pix2pix_tf.inference.mode import InferenceMode
from pix2pix_tf.inference.tflite_runner import TFLiteModel

# Pooled PSNR (`pooled_psnr`: dB, on images scaled to [0, 1]) against the SavedModel below which a TFLite variant
# is refused: it no longer computes the same network. These catch broken conversions (NaN,
# garbage, a wrong layout), they are not quality targets. Measured (docs/tflite.md): float32
# 120-135 dB, float16 ~90, dynamic-range int8 55-57, full int8 ~38 on trained unet_128/unet_256.
PSNR_FLOORS = {"float32": 60.0, "float16": 40.0, "dynamic_int8": 30.0, "int8": 25.0}

# Why the files carry no LiteRT metadata block (the model card holds its content instead).
METADATA_NOTE = ("The files carry no metadata block: no maintained LiteRT metadata writer installs beside "
                 "TensorFlow 2.21 (docs/tflite.md, \"Metadata\").")

@dataclasses.dataclass
class VariantReport:
    """One TFLite file and how far it is from the SavedModel on held-out images."""

    variant: str
    path: str
    size_bytes: int
    psnr_db: float
    max_abs_diff: float
    floor_db: float
    ok: bool
    latency_ms: Optional[float] = None  # Median of --benchmark's rounds.
    latency_min_ms: Optional[float] = None
    io_dtype: str = "float32"
    io_quantization: Optional[dict] = None  # int8/uint8 I/O: {"input"|"output": [scale, zero_point]}.
    ops: list[str] = dataclasses.field(default_factory=list)  # Builtin op names, as the file lists them.
    float_ops_inside: Optional[list[str]] = None  # int8: ops computing in float between input and output.
    model: Optional[object] = dataclasses.field(default=None, repr=False, compare=False)

    def line(self) -> str:
        latency = "" if self.latency_ms is None else f"  {self.latency_ms:7.1f} ms (min {self.latency_min_ms:.1f})"
        status = "ok" if self.ok else f"BELOW FLOOR {self.floor_db:.0f} dB"
        return (f"{self.variant:<13} {self.size_bytes / 2**20:8.2f} MiB  PSNR {self.psnr_db:6.2f} dB  "
                f"max|diff| {self.max_abs_diff:.4f}{latency}  {status}")


def tflite_endpoints(generator: keras.Model, mode: InferenceMode, image_size: int, input_nc: int) -> Endpoints:
    """Batch 1, fixed size, no dropout: what runs on a phone (stateless random ops and image
    codecs are not builtin TFLite ops). Batch statistics become mean/rsqrt/mul builtins;
    transposed convolutions become 2x2 convolutions (`inference.tflite_lowering`), which XNNPACK
    runs twice as fast."""
    mode = mode.without_dropout()

    def translate(images: tf.Tensor) -> dict[str, tf.Tensor]:
        return {OUTPUT_FLOAT: generate.generate(generator, images, mode, phase_transposed_convs=True)}

    endpoints = Endpoints(generate.variables_read(generator, mode))
    endpoints.add("serving_default", translate,
                  [tf.TensorSpec([1, image_size, image_size, input_nc], tf.float32, name=INPUT_NAME)])
    return endpoints


def convert_tflite(saved_model_dir: str, variant: str, representative: Optional[Callable[[], Iterator]],
                   int8_io: str) -> bytes:
    """One TFLite variant from a batch-1 SavedModel, with builtin ops only."""
    if variant not in TFLITE_VARIANTS:  # Not float32 under another name.
        raise ExportError(f"Unknown TFLite variant {variant!r}; the variants are {', '.join(TFLITE_VARIANTS)}.")
    converter = tf.lite.TFLiteConverter.from_saved_model(saved_model_dir, signature_keys=["serving_default"])
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if variant == "float16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif variant == "dynamic_int8":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    elif variant == "int8":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = representative
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        if int8_io != "float32":
            converter.inference_input_type = converter.inference_output_type = getattr(tf, int8_io)
    try:
        return converter.convert()
    except Exception as e:  # The converter raises ConverterError and several others.
        raise ExportError(f"TFLite conversion ({variant}) failed with builtin ops only: {e}") from e


def meets_floor(psnr_db: float, floor: float) -> bool:
    """A NaN PSNR (a non-finite output) never passes; +inf (the SavedModel's outputs exactly) always does."""
    return psnr_db >= floor  # False for NaN.


def check_variant(model: TFLiteModel, reference: Callable[[np.ndarray], np.ndarray],
                  images: np.ndarray) -> tuple[float, float]:
    """(pooled PSNR, max abs diff) of the TFLite model against `reference` over `images` [N, H, W, C]."""
    outputs, expected = [], []
    for image in images:
        outputs.append(model(image[None]))
        expected.append(reference(image[None]))
    outputs, expected = np.concatenate(outputs), np.concatenate(expected)
    if not np.isfinite(outputs).all():
        return float("nan"), float("nan")
    return pooled_psnr(expected, outputs), float(np.max(np.abs(expected - outputs)))


def export_tflite(generator: keras.Model, train: TrainConfig, config: ExportConfig, options: Options,
                  image_size: int, reference: Callable[[np.ndarray], np.ndarray], check_images: np.ndarray,
                  calibration: Optional[np.ndarray], directory: str) -> list[VariantReport]:
    """Converts, runs and checks each requested variant; files go into `directory`."""
    reports = []
    # The scratch SavedModel (the model's full size) lives in the staging folder `directory`, not
    # in the system's temporary folder: what a killed export leaves, the next one removes.
    with tempfile.TemporaryDirectory(prefix=".scratch-", dir=directory) as scratch:
        # Converted from a SavedModel (a concrete function was seen to give NaNs) that tracks the
        # tf.Variables under the Keras variables (`Endpoints`): a tf.Module holding the Keras
        # model keeps its variables as TFLite resource variables instead of constants, which
        # int8 calibration cannot read.
        tflite_endpoints(generator, config.mode, image_size, train.model.input_nc).save(scratch)

        def representative() -> Iterator[list[np.ndarray]]:
            for image in calibration:
                yield [image[None].astype(np.float32)]

        for variant in options.variants:
            logging.info("Converting the %s TFLite variant.", variant)
            content = convert_tflite(scratch, variant, representative if calibration is not None else None,
                                     options.int8_io)
            path = os.path.join(directory, f"{config.model_name}_{variant}.tflite")
            writing.write_file(path, content)
            model = TFLiteModel(path, threads=config.threads)
            value, max_abs = check_variant(model, reference, check_images)
            floor = PSNR_FLOORS[variant]
            ok = meets_floor(value, floor)
            report = VariantReport(variant, path, len(content), value, max_abs, floor, ok, io_dtype=model.io_dtype,
                                   io_quantization=model.io_quantization, ops=contents.builtin_ops(content))
            if variant == "int8":
                report.float_ops_inside = _float_ops_inside(content)
            report.model = model  # For the benchmark; not part of the report.
            reports.append(report)
    return reports


def _float_ops_inside(content: bytes) -> list[str]:
    """The int8 file's float ops between input and output, with a warning when there are any:
    docs/tflite.md offers it to integer-only accelerators, which cannot run them."""
    inside = contents.float_ops_inside(content)
    if inside:
        logging.warning("The int8 TFLite file computes %d op(s) in float between its input and output (%s): "
                        "integer-only accelerators cannot run it whole.", len(inside), "; ".join(inside[:5]))
    return inside


def write_report(directory: str, variants: list[VariantReport], train: TrainConfig, config: ExportConfig, *,
                 saved_model_dir: str, checkpoint: str, image_size: int, compared_on: str,
                 latencies: dict[str, tuple[float, float]]) -> None:
    """`report.json` beside the files: what each variant is, how it was checked and against
    what (docs/tflite.md); `latencies` is `benchmark`'s answer ({} without --benchmark)."""
    report = {
        "saved_model": saved_model_dir,
        "checkpoint": checkpoint,
        "image_size": image_size,
        "input": {"shape": [1, image_size, image_size, train.model.input_nc], "range": [-1, 1]},
        "output": {"shape": [1, image_size, image_size, train.model.output_nc], "range": [-1, 1]},
        "direction": train.data.direction,
        "norm": train.model.norm,
        "mode": dataclasses.asdict(config.mode.without_dropout()),
        "compared_on": compared_on,
        "threads": config.threads,
        "latency": "median (min) ms over interleaved rounds, batch 1" if latencies else None,
        "keras_latency_ms": list(latencies.get("keras", (None, None))),
        "saved_model_latency_ms": list(latencies.get("saved_model", (None, None))),
        "variants": {r.variant: {"file": os.path.basename(r.path), "size_bytes": r.size_bytes,
                                 "psnr_db": r.psnr_db, "max_abs_diff": r.max_abs_diff, "floor_db": r.floor_db,
                                 "ok": r.ok, "latency_ms": [r.latency_ms, r.latency_min_ms], "io_dtype": r.io_dtype,
                                 "io_quantization": r.io_quantization, "ops": r.ops,
                                 **({} if r.float_ops_inside is None else {"float_ops_inside": r.float_ops_inside})}
                     for r in variants},
    }
    writing.write_text(os.path.join(directory, TFLITE_REPORT), json.dumps(report, indent=2, allow_nan=True) + "\n")


def card_section(f: CardFacts, variants: Sequence[VariantReport]) -> list[str]:
    """The TFLite files' section of their model card, with what a LiteRT metadata block would hold."""
    size, model = f.image_size, f.train.model
    lines = ["Batch 1, fixed size, dropout off; input tensor `images` [1, "
             f"{size}, {size}, {model.input_nc}], output `output` [1, {size}, {size}, {model.output_nc}].", "",
             "| file | bytes | PSNR vs the SavedModel | I/O |", "| --- | ---: | ---: | --- |"]
    for r in variants:
        value = "nan" if math.isnan(r.psnr_db) else f"{r.psnr_db:.1f} dB"  # "inf dB": exactly the SavedModel's.
        io = r.io_dtype
        if r.io_quantization:
            (s_in, z_in), (s_out, z_out) = r.io_quantization["input"], r.io_quantization["output"]
            io += f" (input q = round(x / {s_in:.6g}) + {z_in}; output x = (q - {z_out}) * {s_out:.6g})"
        lines.append(f"| {os.path.basename(r.path)} | {r.size_bytes} | {value} | {io} |")
    lines += ["", "Metadata for Android (what a LiteRT metadata block would hold): input image, RGB, "
                  f"[1, {size}, {size}, {model.input_nc}], normalisation mean [127.5] std [127.5] (pixel / 127.5 - 1); "
                  f"output image [1, {size}, {size}, {model.output_nc}] in [-1, 1], denormalise with "
                  "(value + 1) * 127.5. " + METADATA_NOTE]
    return lines


@dataclasses.dataclass
class TFLiteReport:
    """The published TFLite version: its folder and each variant's report."""

    folder: str
    variants: list[VariantReport]

    def lines(self) -> list[str]:
        return [f"TFLite: {self.folder} (batch 1, dropout off; PSNR/max|diff| against the SavedModel's "
                "translate_float_deterministic)"] + ["  " + report.line() for report in self.variants]


def _refuse_broken(variants: list[VariantReport], options: Options, compared_on: str) -> None:
    broken = [r for r in variants if not r.ok]
    if broken and not options.force:
        table = "\n  ".join(r.line() for r in variants)
        raise ExportError(
            f"TFLite variant(s) {', '.join(r.variant for r in broken)} do not reproduce the SavedModel "
            f"(PSNR below the floor, or NaN) on {compared_on}:\n  {table}\nLeave the variant out of "
            "--tflite, or pass --force to keep them.")


def publish(job: Job, options: Options, published: Mapping[str, Published]) -> Published:
    """The variants, checked against the published SavedModel, published as one version beside
    it; a refused variant publishes no TFLite file (the SavedModel stays)."""
    saved: SavedModelReport = published["saved_model"].report
    image = job.images[:1]

    def write(staging: str, final: str) -> tuple[list[VariantReport], str]:
        variants = export_tflite(job.generator, job.train, job.config, options, job.image_size, saved.reference,
                                 job.images, job.examples.calibration, staging)
        latencies = job.benchmark.time({r.variant: (lambda m=r.model: m(image)) for r in variants})
        for report in variants:
            report.latency_ms, report.latency_min_ms = latencies.get(report.variant, (None, None))
        write_report(staging, variants, job.train, job.config, saved_model_dir=saved.path,
                     checkpoint=job.checkpoint, image_size=job.image_size, compared_on=job.examples.source,
                     latencies=latencies)
        facts = dataclasses.replace(job.card, mode=job.config.mode.without_dropout())  # As the files compute.
        card = model_card.write(staging, model_card.render(facts, "TFLite files", card_section(facts, variants)))
        _refuse_broken(variants, options, job.examples.source)
        for report in variants:
            report.path = os.path.join(final, os.path.basename(report.path))
        return variants, os.path.join(final, os.path.basename(card))

    folder, (variants, card) = versions.publish_staged(
        tflite_base(job.export_dir, job.config.model_name), job.version, write,
        f"The SavedModel {saved.path} was published; no TFLite file was.")
    report = TFLiteReport(folder, variants)
    broken = [r.variant for r in variants if not r.ok]
    warnings = (f"WARNING: {', '.join(broken)} kept below the PSNR floor (--force).",) if broken else ()
    return Published("tflite", folder, report, (card,), report.lines, warnings=warnings)
