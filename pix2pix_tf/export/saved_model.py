"""The SavedModel for TensorFlow Serving, the export's first target (`TARGET`): its flags, its
signatures, warmup records and metadata, and the check against the checkpoint it came from
before it is published to `<export_dir>/<model_name>/<version>`. Every other target is checked
against it (`SavedModelReport.reference`).

Five signatures over G's variables (names in `inference/artifacts.py`, documented in docs/serving.md), none of
which writes a variable: the paper's test-time G is a pure function (`generate.generate`).
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from typing import Any, Callable, Mapping, Optional

import keras
import numpy as np
import tensorflow as tf
from absl import logging
from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2

from pix2pix_tf import writing
from pix2pix_tf.config import TrainConfig
from pix2pix_tf.export import model_card, versions
from pix2pix_tf.export.config import ExportConfig, ExportError
from pix2pix_tf.export.saved_model_target import Options, model_base
from pix2pix_tf.export.target import Benchmark, Job, Published, Run
from pix2pix_tf.images import DEFAULT_MAX_PIXELS, FORMATS_TEXT, decode_images, encode_pngs, limit_request
from pix2pix_tf.inference import generate, geometry
from pix2pix_tf.inference.artifacts import (
    INPUT_NAME,
    OUTPUT_BYTES,
    OUTPUT_FLOAT,
    SIGNATURE_BYTES,
    SIGNATURE_FLOAT,
    SIGNATURE_FLOAT_DETERMINISTIC,
    SIGNATURE_NATIVE,
    SIGNATURE_PNG,
    metadata_path,
    model_card_path,
    warmup_path,
)
from pix2pix_tf.inference.mode import InferenceMode

# Tolerance between the SavedModel and the checkpoint's own call before publishing.
SAVED_MODEL_MAX_ABS = 1e-4

class Endpoints:
    """Signatures over the variables they read, written as one SavedModel, each traced once.

    keras.export.ExportArchive traces every endpoint twice: once to find the variables it
    reads, and again inside `tf.saved_model.save`, whose save context is part of
    tf.function's cache key. What G reads is known (`generate.variables_read`), so here each
    endpoint is traced once, as it is saved; a variable read but not given fails the save.
    The tf.Variables under the Keras variables are given, not the model: tracking the model
    stores every weight twice (the Keras variables and the tf.Variables under them, Keras
    3.15), doubling the SavedModel and Serving's memory.
    """

    def __init__(self, variables: list[tf.Variable]):
        self._module = tf.Module()
        self._module.variables_read = variables
        self._functions: dict[str, Callable] = {}

    def add(self, name: str, fn: Callable, input_signature: list[tf.TensorSpec]) -> None:
        self._functions[name] = tf.function(fn, input_signature=input_signature, autograph=False)
        setattr(self._module, name, self._functions[name])

    def save(self, directory: str) -> None:
        """The SavedModel; the first endpoint is also `serving_default` (what Serving calls unnamed)."""
        signatures = {"serving_default": next(iter(self._functions.values())), **self._functions}
        tf.saved_model.save(self._module, directory, signatures=signatures)


def build_endpoints(generator: keras.Model, mode: InferenceMode, image_size: int, input_nc: int,
                    multiple: int, max_pixels: int = DEFAULT_MAX_PIXELS,
                    max_request_pixels: Optional[int] = None) -> Endpoints:
    """The five serving signatures over G's variables (names: module constants, docs/serving.md).

    `serving_default` / `translate_png` take a batch of encoded images of any size and 1-4
    channels and resize them to `image_size`; each image is checked from its header (a
    supported format, at most `max_pixels` pixels) before it is decoded. The float signatures
    take [-1, 1] NHWC batches whose sides are multiples of `multiple`. `translate_native`
    takes a batch of encoded images of one size and translates them at that size (padded to
    `multiple` and cropped back by `inference.geometry`; the cap also applies to the padded
    size). Every one of them refuses a request whose images hold more than
    `max_request_pixels` (default `max_pixels`) in all, counted as the generator holds them,
    before decoding. None of them writes a variable.
    """
    translate_in_mode, translate_deterministic = (_traced_once(generator, m, input_nc)
                                                  for m in (mode, mode.without_dropout()))
    request = max_request_pixels or max_pixels

    def bytes_request(images: tf.Tensor) -> tf.Tensor:
        return decode_images(images, input_nc, image_size, max_pixels, request)

    def float_request(images: tf.Tensor) -> tf.Tensor:
        shape = tf.shape(images, out_type=tf.int64)
        return limit_request(generate.check_images(images, input_nc, multiple),
                             tf.fill(shape[:1], shape[1] * shape[2]), request)

    def translate_bytes(images: tf.Tensor) -> dict[str, tf.Tensor]:
        output = translate_in_mode(bytes_request(images))
        return {OUTPUT_BYTES: encode_pngs(output), OUTPUT_FLOAT: output}

    def translate_png(images: tf.Tensor) -> dict[str, tf.Tensor]:
        return {OUTPUT_BYTES: encode_pngs(translate_in_mode(bytes_request(images)))}

    def translate_float(images: tf.Tensor) -> dict[str, tf.Tensor]:
        return {OUTPUT_FLOAT: translate_in_mode(float_request(images))}

    def translate_float_deterministic(images: tf.Tensor) -> dict[str, tf.Tensor]:
        return {OUTPUT_FLOAT: translate_deterministic(float_request(images))}

    def translate_native(images: tf.Tensor) -> dict[str, tf.Tensor]:
        decoded = geometry.decode_same_size(images, input_nc, max_pixels, request, multiple)
        shape = tf.shape(decoded)
        padded = geometry.assert_padded_pixels(geometry.pad(decoded, multiple), max_pixels)
        output = geometry.crop(translate_in_mode(padded), shape[1], shape[2])
        return {OUTPUT_BYTES: encode_pngs(output), OUTPUT_FLOAT: output}

    encoded = [tf.TensorSpec([None], tf.string, name=INPUT_NAME)]
    floats = [tf.TensorSpec([None, None, None, input_nc], tf.float32, name=INPUT_NAME)]
    endpoints = Endpoints(generate.variables_read(generator, mode))
    endpoints.add(SIGNATURE_BYTES, translate_bytes, encoded)  # The first one is serving_default.
    endpoints.add(SIGNATURE_PNG, translate_png, encoded)
    endpoints.add(SIGNATURE_FLOAT, translate_float, floats)
    endpoints.add(SIGNATURE_FLOAT_DETERMINISTIC, translate_float_deterministic, floats)
    endpoints.add(SIGNATURE_NATIVE, translate_native, encoded)
    return endpoints


def _traced_once(generator: keras.Model, mode: InferenceMode, input_nc: int) -> Callable[[tf.Tensor], tf.Tensor]:
    """G(images) in `mode` as one function that every signature calls: G is traced once per
    mode for all five signatures, not once per signature. The output keeps the static shape
    of the batch given (`serving_default` declares its 256x256, say)."""

    @tf.function(input_signature=[tf.TensorSpec([None, None, None, input_nc], tf.float32)], autograph=False)
    def translate(images: tf.Tensor) -> tf.Tensor:
        return generate.generate(generator, images, mode)

    def call(images: tf.Tensor) -> tf.Tensor:
        output = translate(images)
        output.set_shape(images.shape[:3].concatenate(output.shape[3:]))
        return output

    return call


def _warmup_size(image_size: int) -> tuple[int, int]:
    return image_size + 3, image_size - 5


def warmup_requests(model_name: str, image_size: int, input_nc: int,
                    batch_sizes: tuple[int, ...]) -> list[bytes]:
    """Serialized PredictionLogs, one per signature and batch size, so that Serving traces and
    allocates every signature before the first real request."""
    rng = np.random.default_rng(0)
    records = []
    for batch in batch_sizes:
        # Odd sizes and a grey image exercise the resize and channel conversion in the graph.
        pixels = rng.integers(0, 256, size=(batch, *_warmup_size(image_size), 3), dtype=np.uint8)
        pngs = [tf.io.encode_png(p).numpy() for p in pixels]
        floats = rng.uniform(-1, 1, size=(batch, image_size, image_size, input_nc)).astype(np.float32)
        for signature, value in ((SIGNATURE_BYTES, tf.make_tensor_proto(pngs, dtype=tf.string)),
                                 (SIGNATURE_PNG, tf.make_tensor_proto(pngs, dtype=tf.string)),
                                 (SIGNATURE_NATIVE, tf.make_tensor_proto(pngs, dtype=tf.string)),
                                 (SIGNATURE_FLOAT, tf.make_tensor_proto(floats)),
                                 (SIGNATURE_FLOAT_DETERMINISTIC, tf.make_tensor_proto(floats))):
            request = predict_pb2.PredictRequest(
                model_spec=model_pb2.ModelSpec(name=model_name, signature_name=signature))
            request.inputs[INPUT_NAME].CopyFrom(value)
            log = prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=request))
            records.append(log.SerializeToString())
    return records


def check_warmup_fits(options: Options, image_size: int, multiple: int) -> None:
    """Refuses a pixel cap that the export's own warmup requests (`warmup_requests`' sizes,
    as `translate_native` pads them) would break, before anything is written."""
    height, width = geometry.padded_size(*_warmup_size(image_size), multiple)
    need = max(options.warmup_batch_sizes) * max(height * width, image_size * image_size)
    if need > options.request_pixels:
        cap = (f"--max_request_pixels={options.max_request_pixels}" if options.max_request_pixels is not None else
               f"--max_pixels={options.max_pixels} (the request cap without --max_request_pixels)")
        ways = ["raise it", *(["lower --warmup_batch_sizes"] if max(options.warmup_batch_sizes) > 1 else []),
                "or export a smaller --image_size"]
        raise ExportError(f"{cap} is below what the warmup requests hold ({need} pixels: batch "
                          f"{max(options.warmup_batch_sizes)} at {image_size}x{image_size}, padded to {width}x{height} "
                          f"for translate_native): {', '.join(ways)}.")
    if height * width > options.max_pixels:
        raise ExportError(f"--max_pixels={options.max_pixels} is below the warmup image that translate_native pads "
                          f"to {width}x{height} ({height * width} pixels; it refuses an image padded over the cap): "
                          "raise it, or export a smaller --image_size.")


def write_warmup(saved_model_dir: str, records: list[bytes]) -> str:
    if len(records) > 1000:
        raise ExportError(f"{len(records)} warmup records: TensorFlow Serving reads at most 1000.")
    path = warmup_path(saved_model_dir)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    writing.write_point(path)  # Inside the staging folder, which a failed export removes.
    with tf.io.TFRecordWriter(path) as writer:
        for record in records:
            writer.write(record)
    return path


def _metadata(train: TrainConfig, config: ExportConfig, options: Options, checkpoint: str, version: int,
              image_size: int) -> dict:
    return {
        "format": 1,
        "model_name": config.model_name,
        "version": version,
        "checkpoint": os.path.abspath(checkpoint),
        "exported_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "image_size": image_size,
        "size_multiple": train.model.size_multiple,
        "input_nc": train.model.input_nc,
        "output_nc": train.model.output_nc,
        "direction": train.data.direction,
        "generator": train.model.generator,
        "norm": train.model.norm,
        "mode": dataclasses.asdict(config.mode),
        "max_pixels": options.max_pixels,
        "max_request_pixels": options.request_pixels,
        "signatures": {
            SIGNATURE_BYTES: {"inputs": {INPUT_NAME: "string [-1]"},
                              "outputs": {OUTPUT_BYTES: "string [-1] (PNG)",
                                          OUTPUT_FLOAT: f"float32 [-1, {image_size}, {image_size}, "
                                                        f"{train.model.output_nc}] in [-1, 1]"}},
            SIGNATURE_PNG: {"inputs": {INPUT_NAME: "string [-1]"}, "outputs": {OUTPUT_BYTES: "string [-1] (PNG)"}},
            SIGNATURE_FLOAT: {"inputs": {INPUT_NAME: f"float32 [-1, -1, -1, {train.model.input_nc}] in [-1, 1]"},
                              "outputs": {OUTPUT_FLOAT: f"float32 [-1, -1, -1, {train.model.output_nc}]"}},
            SIGNATURE_FLOAT_DETERMINISTIC: {
                "inputs": {INPUT_NAME: f"float32 [-1, -1, -1, {train.model.input_nc}] in [-1, 1]"},
                "outputs": {OUTPUT_FLOAT: f"float32 [-1, -1, -1, {train.model.output_nc}]"}},
            SIGNATURE_NATIVE: {"inputs": {INPUT_NAME: "string [-1] (images of one size)"},
                               "outputs": {OUTPUT_BYTES: "string [-1] (PNG at the input's size)",
                                           OUTPUT_FLOAT: f"float32 [-1, H, W, {train.model.output_nc}] in [-1, 1] "
                                                         "(H, W: the input's)"}},
        },
    }


def write_saved_model(generator: keras.Model, train: TrainConfig, config: ExportConfig, options: Options,
                      checkpoint: str, version: int, image_size: int, directory: str) -> None:
    """The SavedModel, its warmup records and its metadata, written into `directory`."""
    multiple = train.model.size_multiple
    check_warmup_fits(options, image_size, multiple)
    endpoints = build_endpoints(generator, config.mode, image_size, train.model.input_nc, multiple,
                                options.max_pixels, options.request_pixels)
    writing.write_point(directory)  # TensorFlow writes the SavedModel itself.
    endpoints.save(directory)
    write_warmup(directory, warmup_requests(config.model_name, image_size, train.model.input_nc,
                                            options.warmup_batch_sizes))
    metadata = _metadata(train, config, options, checkpoint, version, image_size)
    writing.write_text(metadata_path(directory), json.dumps(metadata, indent=2) + "\n")


def verify_saved_model(directory: str, generator: keras.Model, mode: InferenceMode, images: np.ndarray,
                       request_pixels: int) -> tuple[float, Callable[[np.ndarray], np.ndarray]]:
    """Loads the SavedModel back and compares its dropout-free signature with the checkpoint's
    generator (in `mode`, without dropout) on `images`; also runs every warmup record.
    Returns the max abs difference and that signature (`reference`): the files are renamed into
    place unchanged, so the model loaded here is the published one, loaded once."""
    loaded = tf.saved_model.load(directory)
    translate = reference(loaded, request_pixels)
    expected = generate.generate(generator, tf.constant(images), mode.without_dropout()).numpy()
    got = translate(images)
    diff = float(np.max(np.abs(expected - got)))
    if not np.isfinite(got).all() or diff > SAVED_MODEL_MAX_ABS:
        raise ExportError(f"The SavedModel in {directory} does not reproduce the checkpoint: max |diff| {diff} "
                          f"> {SAVED_MODEL_MAX_ABS}. Nothing was published.")
    for record in tf.data.TFRecordDataset(warmup_path(directory)):
        request = prediction_log_pb2.PredictionLog.FromString(record.numpy()).predict_log.request
        name = request.model_spec.signature_name
        inputs = {k: tf.constant(tf.make_ndarray(v)) for k, v in request.inputs.items()}
        try:
            outputs = loaded.signatures[name](**inputs)
        except tf.errors.FailedPreconditionError as e:
            if "determinism" not in str(e):
                raise
            # The clock that seeds the noise z is refused in a process with op determinism on
            # (e.g. right after a deterministic training run); Serving does not turn it on.
            logging.warning("Not running the %s warmup request here: op determinism is enabled in this process "
                            "and the noise z is seeded from the clock.", name)
            continue
        if any(not np.isfinite(v.numpy()).all() for v in outputs.values() if v.dtype.is_floating):
            raise ExportError(f"Warmup request for {name} gave NaN/Inf.")
    return diff, translate


def reference(loaded: Any, request_pixels: int) -> Callable[[np.ndarray], np.ndarray]:
    """The dropout-free signature of `loaded` (what `tf.saved_model.load` returned): what every
    other artifact must reproduce. A batch goes in requests within the SavedModel's request cap
    (`request_pixels`), as a client's must: the signature refuses a larger one."""

    def translate(batch: np.ndarray) -> np.ndarray:
        # The closure keeps `loaded` alive: it owns the variables.
        signature = loaded.signatures[SIGNATURE_FLOAT_DETERMINISTIC]
        per_request = max(1, request_pixels // (batch.shape[1] * batch.shape[2]))
        return np.concatenate([signature(images=tf.constant(batch[start:start + per_request]))[OUTPUT_FLOAT].numpy()
                               for start in range(0, len(batch), per_request)])

    return translate


def card_section(options: Options) -> list[str]:
    """The SavedModel's own section of its model card."""
    return [f"Signatures `serving_default` / `translate_png` take {FORMATS_TEXT} bytes of any size up to "
            f"{options.max_pixels:,} pixels, resize them (bicubic) and return PNG bytes; `translate_float` takes "
            "[-1, 1] NHWC floats. docs/serving.md describes them."]


@dataclasses.dataclass
class SavedModelReport:
    """The published SavedModel and how close it is to the checkpoint it came from."""

    path: str
    version: int
    checkpoint: str
    mode: InferenceMode
    norm: str  # The generator's norm layers (config.NORMS): what the mode's description says of them.
    image_size: int
    max_abs_diff: float
    reference: Callable[[np.ndarray], np.ndarray]  # Its dropout-free signature (`reference`).
    request_pixels: int  # Its request cap: an image over it cannot be compared at all.
    benchmark: Benchmark  # --benchmark's timings of the Keras call and this signature, once measured.
    threads: int
    tflite_follows: bool  # TFLite files are written after it (their timings print below its lines).

    def lines(self) -> list[str]:
        size = self.image_size
        lines = [f"SavedModel: {self.path} (version {self.version}, {self.mode.describe(self.norm)}, {size}x{size}; "
                 f"max |diff| to {self.checkpoint}: {self.max_abs_diff:.2g})"]
        if "keras" in self.benchmark.timings:
            (keras_ms, keras_min), (saved_ms, saved_min) = self.benchmark.timings["keras"], \
                self.benchmark.timings["saved_model"]
            lines.append(f"Latency, batch 1, median (min): Keras model call (eager, inference mode) {keras_ms:.1f} ms "
                         f"({keras_min:.1f}); SavedModel translate_float_deterministic {saved_ms:.1f} ms "
                         f"({saved_min:.1f})" + (f"; TFLite with --threads={self.threads} below"
                                                 if self.tflite_follows else ""))
        return lines


def publish(job: Job, options: Options, published: Mapping[str, Published]) -> Published:
    """The SavedModel written to a staging folder, checked, and renamed into place; it also
    becomes the benchmark's baseline beside the Keras model call."""

    def write(staging: str, final: str) -> tuple[str, float, Callable[[np.ndarray], np.ndarray]]:
        write_saved_model(job.generator, job.train, job.config, options, job.checkpoint, job.version,
                          job.image_size, staging)
        card = model_card.write(os.path.dirname(model_card_path(staging)),
                                model_card.render(job.card, "This SavedModel", card_section(options)))
        diff, translate = verify_saved_model(staging, job.generator, job.config.mode, job.images,
                                             options.request_pixels)
        return os.path.join(final, os.path.relpath(card, staging)), diff, translate

    final, (card, diff, translate) = versions.publish_staged(model_base(job.export_dir, job.config.model_name),
                                                             job.version, write)
    logging.info("SavedModel: %s (max |diff| to the checkpoint %.2g on %s).", final, diff, job.examples.source)
    report = SavedModelReport(final, job.version, job.checkpoint, job.config.mode, job.train.model.norm,
                              job.image_size, diff, translate, options.request_pixels, job.benchmark,
                              job.config.threads, "tflite" in job.card.formats)
    image = job.images[:1]
    one = tf.constant(image)
    job.benchmark.baseline.update(keras=lambda: job.generator(one, training=False).numpy(),
                                  saved_model=lambda: report.reference(image))
    return Published("saved_model", final, report, (card,), report.lines)


def check(options: Options, run: Run) -> None:
    """Before any work: the request cap leaves room for the warmup requests."""
    check_warmup_fits(options, run.image_size, run.train.model.size_multiple)
