"""Export of a trained generator: a versioned SavedModel for TensorFlow Serving, TFLite files.

`export(ExportConfig(...))` is what `export.py` runs. It writes

    <export_dir>/<model_name>/<version>/                   SavedModel (Serving's layout)
        saved_model.pb, variables/
        assets.extra/tf_serving_warmup_requests            PredictionLog TFRecord (warmup)
        assets.extra/pix2pix_export.json                   what was exported, from which run
        assets.extra/MODEL_CARD.md                         the model card (`model_card`)
    <export_dir>/tflite/<model_name>/<version>/            one .tflite per variant, report.json, MODEL_CARD.md
    <export_dir>/web/<model_name>/<version>/               with --web: a static page running one of them (`web`)
    <export_dir>/onnx/<model_name>/<version>/              with --onnx: <model_name>.onnx (`onnx_model`), report.json,
                                                           MODEL_CARD.md

in steps, each in its own module: `versions` (where: the export folder, the version, a staging
folder beside the base path, the atomic publish, the removal of staging folders left by killed
exports), `saved_model` (the signatures, warmup records and metadata, checked against the
checkpoint before they are published), `tflite` (each variant converted, run by the LiteRT
interpreter, compared with the published SavedModel and refused below its PSNR floor; `contents`
reads the ops each file holds), `examples` (the held-out and calibration images) and
`model_card` (the card beside each artifact, with held-out metrics). This module
orchestrates them; docs/serving.md and docs/tflite.md describe the artifacts. The names that
clients read are in `inference.artifacts` (TensorFlow-free).
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from typing import Callable, Optional

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from pix2pix_tf.config import TrainConfig
from pix2pix_tf.errors import ConfigError, Interrupted
from pix2pix_tf.evaluation.metrics import pooled_psnr
from pix2pix_tf.export import model_card, onnx_model, saved_model, tflite, versions, web
from pix2pix_tf.export.config import ExportConfig, ExportError
from pix2pix_tf.export.examples import Examples, load_examples
from pix2pix_tf.export.tflite import PSNR_FLOORS, VariantReport, benchmark, check_variant
from pix2pix_tf.inference import checkpoint_source, generate, onnx_runner
from pix2pix_tf.inference.artifacts import MODEL_CARD, OUTPUT_FLOAT, SIGNATURE_FLOAT_DETERMINISTIC, model_card_path
from pix2pix_tf.inference.mode import InferenceMode
from pix2pix_tf.workdir import Workdir

# The export's Python API; each name is defined in the step module that owns it.
__all__ = ["ExportConfig", "ExportError", "ExportResult", "PSNR_FLOORS", "VariantReport",
           "benchmark", "check_variant", "export"]


@dataclasses.dataclass
class ExportResult:
    saved_model_dir: str
    version: int
    checkpoint: str
    mode: InferenceMode
    image_size: int
    saved_model_max_abs_diff: float
    tflite_dir: Optional[str] = None
    variants: list[VariantReport] = dataclasses.field(default_factory=list)
    keras_latency_ms: Optional[float] = None  # Median; the min is beside it.
    keras_latency_min_ms: Optional[float] = None
    saved_model_latency_ms: Optional[float] = None
    saved_model_latency_min_ms: Optional[float] = None
    model_cards: list[str] = dataclasses.field(default_factory=list)
    web_dir: Optional[str] = None  # The static page (--web).
    onnx: Optional[onnx_model.OnnxReport] = None


@dataclasses.dataclass(frozen=True)
class _Job:
    """What every step of one export reads: the request, the run, G, the check images and the
    model card's facts."""

    config: ExportConfig
    train: TrainConfig
    generator: keras.Model
    checkpoint: str
    image_size: int
    export_dir: str
    examples: Examples
    card: model_card.CardFacts  # Its version is filled in once chosen.

    @property
    def images(self) -> np.ndarray:
        return self.examples.images


def export(config: ExportConfig) -> ExportResult:
    """Writes and checks the SavedModel, then the TFLite variants; see the module docstring."""
    config.validate()
    if config.onnx:
        onnx_runner.require()
    try:
        result, job = _saved_model_stage(config)
    except Interrupted as stop:
        stop.done.append("nothing was published")
        raise
    try:
        reference = _reference(result.saved_model_dir)
        if config.tflite:
            _publish_tflite(job, result, reference)
            if config.web:
                result.web_dir = _publish_web(job, result)
        else:
            _benchmark(job, result, reference)
        if config.onnx:
            _publish_onnx(job, result, reference)
    except Interrupted as stop:
        stop.done.append(f"published: {', '.join(_published(result))}; nothing else was")
        raise
    return result


def _published(result: ExportResult) -> list[str]:
    """The folders and files this export has published so far."""
    onnx_path = result.onnx.path if result.onnx else None
    return [p for p in (result.saved_model_dir, result.tflite_dir, result.web_dir, onnx_path) if p]


def _saved_model_stage(config: ExportConfig) -> tuple[ExportResult, _Job]:
    """Everything up to the published SavedModel: the run, G, the check images, the SavedModel."""
    train, image_size = _check_request(config)
    if config.web:
        web.runtime_version(config.web_runtime)  # Refused before minutes of work when LiteRT.js is not installed.
    export_dir = versions.export_folder(config.export_dir, config.workdir)
    generator, train, checkpoint = checkpoint_source.load_generator(config.workdir, config.checkpoint, train)
    logging.info("Exporting %s (%s) from %s.", train.model.generator, config.mode.describe(), checkpoint)

    examples = load_examples(train, config, image_size, need_training_data="int8" in config.tflite)
    card = _card_facts(config, train, generator, checkpoint, image_size, examples)
    job = _Job(config, train, generator, checkpoint, image_size, export_dir, examples, card)
    for base in (versions.model_base(export_dir, config.model_name),
                 versions.tflite_base(export_dir, config.model_name)):
        versions.remove_stale_staging(base)
    return _publish_saved_model(job), job


def _check_request(config: ExportConfig) -> tuple[TrainConfig, int]:
    """The run's config and the image size, refused with a message before anything is loaded."""
    Workdir(config.workdir).check_usable(writable=False)
    train = TrainConfig.load(config.workdir)
    image_size = config.image_size or train.data.crop_size
    train.model.check_side("--image_size", image_size)
    if train.model.input_nc not in (1, 3):
        raise ConfigError(f"The run takes {train.model.input_nc}-channel inputs; encoded images give 1 or 3.")
    saved_model.check_warmup_fits(config, image_size, train.model.size_multiple)
    return train, image_size


def _publish_saved_model(job: _Job) -> ExportResult:
    """The SavedModel written to a staging folder, checked, and renamed into place."""
    base = versions.model_base(job.export_dir, job.config.model_name)
    version = versions.choose_version(base, job.config.version)
    staging = versions.staging_dir(base, str(version))
    try:
        saved_model.write_saved_model(job.generator, job.train, job.config, job.checkpoint, version, job.image_size,
                                      staging)
        card = model_card.write(os.path.dirname(model_card_path(staging)),
                                model_card.render(dataclasses.replace(job.card, version=version)))
        diff = saved_model.verify_saved_model(staging, job.generator, job.config.mode, job.images)
        final = os.path.join(base, str(version))
        versions.publish(staging, final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    logging.info("SavedModel: %s (max |diff| to the checkpoint %.2g on %s).", final, diff, job.examples.source)
    result = ExportResult(final, version, job.checkpoint, job.config.mode, job.image_size, diff)
    result.model_cards.append(os.path.join(final, os.path.relpath(card, staging)))
    return result


def _card_facts(config: ExportConfig, train: TrainConfig, generator: keras.Model, checkpoint: str, image_size: int,
                examples: Examples) -> model_card.CardFacts:
    """What the model card states; the held-out metrics are the exported network's (dropout off),
    which the SavedModel reproduces to SAVED_MODEL_MAX_ABS before it is published."""
    held_out = None
    if examples.targets is not None:
        outputs = generate.generate(generator, tf.constant(examples.images), config.mode.without_dropout()).numpy()
        held_out = model_card.HeldOut(pairs=len(outputs), split=examples.held_out_split or "held-out",
                                      l1=float(np.mean(np.abs(outputs - examples.targets))),
                                      psnr_db=pooled_psnr(examples.targets, outputs))
    return model_card.CardFacts(
        model_name=config.model_name, version=0, train=train, checkpoint=checkpoint,
        step=model_card.checkpoint_step(checkpoint), parameters=generator.count_params(), mode=config.mode,
        image_size=image_size, max_pixels=config.max_pixels, num_train=examples.num_train, held_out=held_out)


def _reference(saved_model_dir: str) -> Callable[[np.ndarray], np.ndarray]:
    """The published SavedModel's dropout-free signature: what every TFLite file must reproduce."""
    loaded = tf.saved_model.load(saved_model_dir)  # Kept alive by the closure: it owns the variables.

    def reference(batch: np.ndarray) -> np.ndarray:
        return loaded.signatures[SIGNATURE_FLOAT_DETERMINISTIC](images=tf.constant(batch))[OUTPUT_FLOAT].numpy()

    return reference


def _publish_tflite(job: _Job, result: ExportResult, reference: Callable[[np.ndarray], np.ndarray]) -> None:
    """The TFLite variants, checked against `reference`, published as one version beside the
    SavedModel's; a refused variant publishes no TFLite file (the SavedModel stays)."""
    config = job.config
    final = os.path.join(versions.tflite_base(job.export_dir, config.model_name), str(result.version))
    staging = versions.staging_dir(os.path.dirname(final), str(result.version))
    try:
        result.variants = tflite.export_tflite(job.generator, job.train, config, job.image_size, reference,
                                               job.images, job.examples.calibration, staging)
        latencies = _benchmark(job, result, reference)
        tflite.write_report(staging, result.variants, job.train, config, saved_model_dir=result.saved_model_dir,
                            checkpoint=result.checkpoint, image_size=job.image_size,
                            compared_on=job.examples.source, latencies=latencies)
        card = model_card.write(staging, model_card.render(dataclasses.replace(job.card, version=result.version),
                                                           result.variants, tflite.METADATA_NOTE))
        broken = [r for r in result.variants if not r.ok]
        if broken and not config.force:
            table = "\n  ".join(r.line() for r in result.variants)
            raise ExportError(
                f"TFLite variant(s) {', '.join(r.variant for r in broken)} do not reproduce the SavedModel "
                f"(PSNR below the floor, or NaN) on {job.examples.source}:\n  {table}\nLeave the variant out of "
                "--tflite, or pass --force to keep them.")
        for report in result.variants:
            report.path = os.path.join(final, os.path.basename(report.path))
        result.tflite_dir = final
        versions.publish(staging, final)
        result.model_cards.append(os.path.join(final, os.path.basename(card)))
    except ExportError as e:
        shutil.rmtree(staging, ignore_errors=True)
        raise ExportError(f"{e}\nThe SavedModel {result.saved_model_dir} was published; no TFLite file was.") from e
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _publish_web(job: _Job, result: ExportResult) -> str:
    """The static page over the checked TFLite variant --web_variant, as version `result.version`."""
    report = next(r for r in result.variants if r.variant == job.config.web)
    facts = web.PageFacts(
        model_name=job.config.model_name, version=result.version, variant=report.variant, image_size=job.image_size,
        input_nc=job.train.model.input_nc, output_nc=job.train.model.output_nc, dataset=job.train.data.dataset,
        direction=job.train.data.direction,
        checkpoint_step=job.card.step, psnr_db=report.psnr_db)
    held_out = job.images if job.examples.targets is not None else job.images[:0]  # Not synthetic noise.
    return web.publish_page(job.export_dir, report.path, facts, held_out, job.config.web_runtime)


def _publish_onnx(job: _Job, result: ExportResult, reference: Callable[[np.ndarray], np.ndarray]) -> None:
    """The ONNX file converted from the published SavedModel, checked against it (`onnx_model`)."""
    facts = dataclasses.replace(job.card, version=result.version, mode=job.config.mode.without_dropout())
    result.onnx = onnx_model.publish(result.saved_model_dir, job.export_dir, facts, reference, job.images,
                                     job.examples.source, job.config.threads)
    result.model_cards.append(os.path.join(os.path.dirname(result.onnx.path), MODEL_CARD))


def _benchmark(job: _Job, result: ExportResult,
               reference: Callable[[np.ndarray], np.ndarray]) -> dict[str, tuple[float, float]]:
    """Batch-1 latency of the Keras model call, the SavedModel signature and each TFLite file
    (--benchmark; {} without), also set on `result`."""
    if not job.config.benchmark:
        return {}
    image = job.images[:1]
    one = tf.constant(image)
    calls = {"keras": lambda: job.generator(one, training=False).numpy(), "saved_model": lambda: reference(image)}
    calls.update({r.variant: (lambda m=r.model: m(image)) for r in result.variants})
    timings = benchmark(calls)
    result.keras_latency_ms, result.keras_latency_min_ms = timings["keras"]
    result.saved_model_latency_ms, result.saved_model_latency_min_ms = timings["saved_model"]
    for report in result.variants:
        report.latency_ms, report.latency_min_ms = timings[report.variant]
    return timings
