"""Export of a trained generator: a versioned SavedModel for TensorFlow Serving, TFLite files.

`export(ExportConfig(...))` is what `export.py` runs. It writes

    <export_dir>/<model_name>/<version>/                   SavedModel (Serving's layout)
        saved_model.pb, variables/
        assets.extra/tf_serving_warmup_requests            PredictionLog TFRecord (warmup)
        assets.extra/pix2pix_export.json                   what was exported, from which run
    <export_dir>/tflite/<model_name>/<version>/            one .tflite per variant + report.json

Each version is built under a hidden temporary name beside `<export_dir>/<model_name>` and
renamed into place only when it is complete and verified, because Serving polls the base
path and loads any integer-named folder it sees. The SavedModel is checked against the
checkpoint it came from before it is published; every TFLite variant is run by the LiteRT
interpreter and compared with the published SavedModel, and a variant below its PSNR floor
(or with NaNs) is refused. docs/serving.md and docs/tflite.md describe the artifacts.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import tempfile
import time
from typing import Callable, Iterator, Optional

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from pix2pix_tf.config import TrainConfig
from pix2pix_tf.errors import ConfigError, DatasetError, Pix2pixError
from pix2pix_tf.export.names import (
    INPUT_NAME,
    INT8_IO_TYPES,
    OUTPUT_BYTES,
    OUTPUT_FLOAT,
    SIGNATURE_BYTES,
    SIGNATURE_FLOAT,
    SIGNATURE_FLOAT_DETERMINISTIC,
    SIGNATURE_PNG,
    TFLITE_REPORT,
    TFLITE_VARIANTS,
    metadata_path,
    warmup_path,
)
from pix2pix_tf.inference import generate as inference
from pix2pix_tf.networks.generator import size_multiple
from pix2pix_tf.workdir import Workdir

# PSNR (dB, on images scaled to [0, 1]) against the SavedModel below which a TFLite variant
# is refused: it no longer computes the same network. These catch broken conversions (NaN,
# garbage, a wrong layout), they are not quality targets. Measured (docs/tflite.md): float32
# 120-135 dB, float16 ~90, dynamic-range int8 55-57, full int8 ~38 on trained unet_128/unet_256.
PSNR_FLOORS = {"float32": 60.0, "float16": 40.0, "dynamic_int8": 30.0, "int8": 25.0}

# Tolerance between the SavedModel and the checkpoint's own call before publishing.
SAVED_MODEL_MAX_ABS = 1e-4


class ExportError(Pix2pixError):
    """An export that cannot be written or did not pass its checks."""


@dataclasses.dataclass(frozen=True)
class ExportConfig:
    """What to export and how; filled from export.py's flags (library code reads no flags)."""

    workdir: str
    export_dir: Optional[str] = None  # None: <workdir>/export.
    model_name: str = "pix2pix"
    version: Optional[int] = None  # None: the next free version.
    checkpoint: Optional[str] = None  # None: the newest checkpoint of the workdir.
    mode: inference.InferenceMode = inference.PAPER
    image_size: Optional[int] = None  # None: the run's crop_size.
    tflite: tuple[str, ...] = TFLITE_VARIANTS
    int8_io: str = "float32"
    calibration_examples: int = 64
    check_examples: int = 8
    data_dir: Optional[str] = None  # None: config.json's.
    force: bool = False  # Keep TFLite variants below their PSNR floor (with a warning).
    benchmark: bool = False
    threads: int = 2
    warmup_batch_sizes: tuple[int, ...] = (1,)

    def validate(self) -> ExportConfig:
        unknown = [v for v in self.tflite if v not in TFLITE_VARIANTS]
        if unknown:
            raise ConfigError(f"--tflite: unknown variant(s) {unknown}; choose from {', '.join(TFLITE_VARIANTS)}.")
        if self.int8_io not in INT8_IO_TYPES:
            raise ConfigError(f"--int8_io={self.int8_io!r} is not one of {', '.join(INT8_IO_TYPES)}.")
        if self.version is not None and self.version < 1:
            raise ConfigError(f"--version must be a positive integer (Serving's versions are), got {self.version}.")
        if not self.model_name or "/" in self.model_name or self.model_name.startswith("."):
            raise ConfigError(f"--model_name={self.model_name!r} must be a plain folder name.")
        if self.image_size is not None and self.image_size < 1:
            raise ConfigError(f"--image_size must be positive, got {self.image_size}.")
        for name in ("calibration_examples", "check_examples", "threads"):
            if getattr(self, name) < 1:
                raise ConfigError(f"--{name} must be at least 1, got {getattr(self, name)}.")
        if not self.warmup_batch_sizes or min(self.warmup_batch_sizes) < 1:
            raise ConfigError("--warmup_batch_sizes must be positive integers.")
        return self


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
    model: Optional[object] = dataclasses.field(default=None, repr=False, compare=False)

    def line(self) -> str:
        latency = "" if self.latency_ms is None else f"  {self.latency_ms:7.1f} ms (min {self.latency_min_ms:.1f})"
        status = "ok" if self.ok else f"BELOW FLOOR {self.floor_db:.0f} dB"
        return (f"{self.variant:<13} {self.size_bytes / 2**20:8.2f} MiB  PSNR {self.psnr_db:6.2f} dB  "
                f"max|diff| {self.max_abs_diff:.4f}{latency}  {status}")


@dataclasses.dataclass
class ExportResult:
    saved_model_dir: str
    version: int
    checkpoint: str
    mode: inference.InferenceMode
    image_size: int
    saved_model_max_abs_diff: float
    tflite_dir: Optional[str] = None
    variants: list[VariantReport] = dataclasses.field(default_factory=list)
    keras_latency_ms: Optional[float] = None  # Median; the min is beside it.
    keras_latency_min_ms: Optional[float] = None
    saved_model_latency_ms: Optional[float] = None
    saved_model_latency_min_ms: Optional[float] = None


# ----------------------------------------------------------------------------- layout


def model_base(config: ExportConfig) -> str:
    """`<export_dir>/<model_name>`: the path to give TensorFlow Serving (--model_base_path)."""
    return os.path.join(config.export_dir or Workdir(config.workdir).exports, config.model_name)


def existing_versions(base: str) -> list[int]:
    """Integer-named folders under a model's base path: what Serving would load."""
    if not os.path.isdir(base):
        return []
    return sorted(int(name) for name in os.listdir(base) if name.isdigit())


def choose_version(base: str, requested: Optional[int]) -> int:
    """The next free version, or `requested` when it is free (a published version is never
    overwritten: Serving may be serving it)."""
    versions = existing_versions(base)
    if requested is None:
        return (versions[-1] + 1) if versions else 1
    if requested in versions or os.path.exists(os.path.join(base, str(requested))):
        raise ExportError(f"Version {requested} already exists in {base}; choose another --version "
                          f"(existing: {versions}) or leave --version out for the next free one ({versions[-1] + 1}).")
    return requested


def publish(staging: str, final: str) -> None:
    """Renames a complete export into place (atomic on one filesystem)."""
    os.makedirs(os.path.dirname(final), exist_ok=True)
    if os.path.exists(final):
        raise ExportError(f"{final} appeared while exporting (another export?); nothing was overwritten.")
    os.rename(staging, final)


def staging_dir(base: str, label: str) -> str:
    """A hidden temporary folder BESIDE the model's base path: on the same filesystem (so the
    final rename is atomic) and outside the folder that Serving scans."""
    parent = os.path.dirname(os.path.abspath(base))
    os.makedirs(parent, exist_ok=True)
    path = tempfile.mkdtemp(prefix=f".{os.path.basename(base)}-{label}-", dir=parent)
    # mkdtemp makes it private (0700); the published version must be readable by the serving
    # user, like any folder this user creates.
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o777 & ~umask)
    return path


# ----------------------------------------------------------------------------- SavedModel


def build_archive(generator: keras.Model, mode: inference.InferenceMode, image_size: int, input_nc: int,
                  multiple: int) -> keras.export.ExportArchive:
    """The four serving signatures over G's variables (names: module constants, docs/serving.md).

    `serving_default` / `translate_png` take a batch of encoded images of any size and 1-4
    channels and resize them to `image_size`; the float signatures take [-1, 1] NHWC batches
    whose sides are multiples of `multiple`. None of them writes a variable.
    """
    deterministic = mode.without_dropout()

    def translate_bytes(images: tf.Tensor) -> dict[str, tf.Tensor]:
        output = inference.generate(generator, inference.decode_images(images, input_nc, image_size), mode)
        return {OUTPUT_BYTES: inference.encode_pngs(output), OUTPUT_FLOAT: output}

    def translate_png(images: tf.Tensor) -> dict[str, tf.Tensor]:
        output = inference.generate(generator, inference.decode_images(images, input_nc, image_size), mode)
        return {OUTPUT_BYTES: inference.encode_pngs(output)}

    def translate_float(images: tf.Tensor) -> dict[str, tf.Tensor]:
        return {OUTPUT_FLOAT: inference.generate(generator, inference.check_images(images, input_nc, multiple), mode)}

    def translate_float_deterministic(images: tf.Tensor) -> dict[str, tf.Tensor]:
        checked = inference.check_images(images, input_nc, multiple)
        return {OUTPUT_FLOAT: inference.generate(generator, checked, deterministic)}

    encoded = [tf.TensorSpec([None], tf.string, name=INPUT_NAME)]
    floats = [tf.TensorSpec([None, None, None, input_nc], tf.float32, name=INPUT_NAME)]
    archive = keras.export.ExportArchive()
    # No archive.track(generator): ExportArchive saves the variables the endpoints use, and
    # tracking the model as well stores every weight twice (Keras variables and the
    # tf.Variables under them, Keras 3.15), doubling the SavedModel and Serving's memory.
    archive.add_endpoint(SIGNATURE_BYTES, translate_bytes, encoded)  # The first one is serving_default.
    archive.add_endpoint(SIGNATURE_PNG, translate_png, encoded)
    archive.add_endpoint(SIGNATURE_FLOAT, translate_float, floats)
    archive.add_endpoint(SIGNATURE_FLOAT_DETERMINISTIC, translate_float_deterministic, floats)
    return archive


def warmup_requests(model_name: str, image_size: int, input_nc: int,
                    batch_sizes: tuple[int, ...]) -> list[bytes]:
    """Serialized PredictionLogs, one per signature and batch size, so that Serving traces and
    allocates every signature before the first real request."""
    from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2

    rng = np.random.default_rng(0)
    records = []
    for batch in batch_sizes:
        # Odd sizes and a grey image exercise the resize and channel conversion in the graph.
        pixels = rng.integers(0, 256, size=(batch, image_size + 3, image_size - 5, 3), dtype=np.uint8)
        pngs = [tf.io.encode_png(p).numpy() for p in pixels]
        floats = rng.uniform(-1, 1, size=(batch, image_size, image_size, input_nc)).astype(np.float32)
        for signature, value in ((SIGNATURE_BYTES, tf.make_tensor_proto(pngs, dtype=tf.string)),
                                 (SIGNATURE_PNG, tf.make_tensor_proto(pngs, dtype=tf.string)),
                                 (SIGNATURE_FLOAT, tf.make_tensor_proto(floats)),
                                 (SIGNATURE_FLOAT_DETERMINISTIC, tf.make_tensor_proto(floats))):
            request = predict_pb2.PredictRequest(
                model_spec=model_pb2.ModelSpec(name=model_name, signature_name=signature))
            request.inputs[INPUT_NAME].CopyFrom(value)
            log = prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=request))
            records.append(log.SerializeToString())
    return records


def write_warmup(saved_model_dir: str, records: list[bytes]) -> str:
    if len(records) > 1000:
        raise ExportError(f"{len(records)} warmup records: TensorFlow Serving reads at most 1000.")
    path = warmup_path(saved_model_dir)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with tf.io.TFRecordWriter(path) as writer:
        for record in records:
            writer.write(record)
    return path


def _metadata(train: TrainConfig, config: ExportConfig, checkpoint: str, version: int, image_size: int) -> dict:
    return {
        "format": 1,
        "model_name": config.model_name,
        "version": version,
        "checkpoint": os.path.abspath(checkpoint),
        "exported_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "image_size": image_size,
        "size_multiple": size_multiple(train.model.generator),
        "input_nc": train.model.input_nc,
        "output_nc": train.model.output_nc,
        "direction": train.data.direction,
        "generator": train.model.generator,
        "mode": dataclasses.asdict(config.mode),
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
        },
    }


def write_saved_model(generator: keras.Model, train: TrainConfig, config: ExportConfig, checkpoint: str,
                      version: int, image_size: int, directory: str) -> None:
    """The SavedModel, its warmup records and its metadata, written into `directory`."""
    archive = build_archive(generator, config.mode, image_size, train.model.input_nc,
                            size_multiple(train.model.generator))
    archive.write_out(directory, verbose=False)
    write_warmup(directory, warmup_requests(config.model_name, image_size, train.model.input_nc,
                                            config.warmup_batch_sizes))
    with open(metadata_path(directory), "w") as f:
        json.dump(_metadata(train, config, checkpoint, version, image_size), f, indent=2)
        f.write("\n")


def verify_saved_model(directory: str, generator: keras.Model, mode: inference.InferenceMode,
                       images: np.ndarray) -> float:
    """Loads the SavedModel back and compares its dropout-free signature with the checkpoint's
    generator (in `mode`, without dropout) on `images`; also runs every warmup record.
    Returns the max abs difference."""
    loaded = tf.saved_model.load(directory)
    expected = inference.generate(generator, tf.constant(images), mode.without_dropout()).numpy()
    got = loaded.signatures[SIGNATURE_FLOAT_DETERMINISTIC](images=tf.constant(images))[OUTPUT_FLOAT].numpy()
    diff = float(np.max(np.abs(expected - got)))
    if not np.isfinite(got).all() or diff > SAVED_MODEL_MAX_ABS:
        raise ExportError(f"The SavedModel in {directory} does not reproduce the checkpoint: max |diff| {diff} "
                          f"> {SAVED_MODEL_MAX_ABS}. Nothing was published.")
    from tensorflow_serving.apis import prediction_log_pb2

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
    return diff


# ----------------------------------------------------------------------------- TFLite


def tflite_archive(generator: keras.Model, mode: inference.InferenceMode, image_size: int,
                   input_nc: int) -> keras.export.ExportArchive:
    """Batch 1, fixed size, no dropout: what runs on a phone (stateless random ops and image
    codecs are not builtin TFLite ops). Batch statistics become mean/rsqrt/mul builtins;
    transposed convolutions become 2x2 convolutions, which XNNPACK runs twice as fast."""
    mode = mode.without_dropout()

    def translate(images: tf.Tensor) -> dict[str, tf.Tensor]:
        return {OUTPUT_FLOAT: inference.generate(generator, images, mode, phase_transposed_convs=True)}

    archive = keras.export.ExportArchive()  # Not tracking the model: see build_archive.
    archive.add_endpoint("serving_default", translate,
                         [tf.TensorSpec([1, image_size, image_size, input_nc], tf.float32, name=INPUT_NAME)])
    return archive


def convert_tflite(saved_model_dir: str, variant: str, representative: Optional[Callable[[], Iterator]],
                   int8_io: str) -> bytes:
    """One TFLite variant from a batch-1 SavedModel, with builtin ops only."""
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


class TFLiteModel:
    """A .tflite generator run with the LiteRT interpreter, taking and returning [-1, 1] floats
    whatever its I/O type (int8/uint8 I/O is (de)quantised with the file's own parameters)."""

    def __init__(self, model: bytes | str, threads: int = 2):
        from ai_edge_litert.interpreter import Interpreter

        kwargs = {"model_path": model} if isinstance(model, str) else {"model_content": model}
        try:
            self.interpreter = Interpreter(num_threads=threads, **kwargs)
        except ValueError as e:
            raise inference.InferenceError(f"Cannot load the TFLite model: {e}") from e
        self.interpreter.allocate_tensors()
        self.input = self.interpreter.get_input_details()[0]
        self.output = self.interpreter.get_output_details()[0]

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(int(d) for d in self.input["shape"])

    @property
    def io_dtype(self) -> str:
        return np.dtype(self.input["dtype"]).name

    @property
    def io_quantization(self) -> Optional[dict]:
        """{"input": [scale, zero_point], "output": [...]} for integer I/O, else None: an app
        quantises [-1, 1] pixels x as round(x / scale) + zero_point."""
        if self.input["dtype"] == np.float32:
            return None
        return {name: [float(d["quantization"][0]), int(d["quantization"][1])]
                for name, d in (("input", self.input), ("output", self.output))}

    def __call__(self, image: np.ndarray) -> np.ndarray:
        """One float32 [1, H, W, C] image in [-1, 1] -> [1, H, W, C_out] in [-1, 1]."""
        image = np.asarray(image, np.float32)
        if image.shape != self.input_shape:
            raise inference.InferenceError(f"This TFLite model takes images of shape {self.input_shape} (batch 1, "
                                           f"fixed size), got {image.shape}.")
        self.interpreter.set_tensor(self.input["index"], _quantize(image, self.input))
        self.interpreter.invoke()
        return _dequantize(self.interpreter.get_tensor(self.output["index"]), self.output)


def _quantize(x: np.ndarray, detail: dict) -> np.ndarray:
    if detail["dtype"] == np.float32:
        return x
    scale, zero_point = detail["quantization"]
    info = np.iinfo(detail["dtype"])
    return np.clip(np.round(x / scale + zero_point), info.min, info.max).astype(detail["dtype"])


def _dequantize(x: np.ndarray, detail: dict) -> np.ndarray:
    if detail["dtype"] == np.float32:
        return x
    scale, zero_point = detail["quantization"]
    return (x.astype(np.float32) - zero_point) * scale


def psnr(reference: np.ndarray, test: np.ndarray) -> float:
    """PSNR in dB of images in [-1, 1], measured on the [0, 1] scale (peak 1)."""
    mse = float(np.mean(((reference - test) / 2.0) ** 2))
    if not math.isfinite(mse):
        return float("nan")
    return float("inf") if mse == 0 else 10.0 * math.log10(1.0 / mse)


def check_variant(model: TFLiteModel, reference: Callable[[np.ndarray], np.ndarray],
                  images: np.ndarray) -> tuple[float, float]:
    """(PSNR, max abs diff) of the TFLite model against `reference` over `images` [N, H, W, C]."""
    outputs, expected = [], []
    for image in images:
        outputs.append(model(image[None]))
        expected.append(reference(image[None]))
    outputs, expected = np.concatenate(outputs), np.concatenate(expected)
    if not np.isfinite(outputs).all():
        return float("nan"), float("nan")
    return psnr(expected, outputs), float(np.max(np.abs(expected - outputs)))


def benchmark(calls: dict[str, Callable[[], object]], rounds: int = 15) -> dict[str, tuple[float, float]]:
    """{name: (median, min) wall milliseconds} of each call, measured in interleaved rounds
    (each round calls every model once) so that a burst of load from other processes on a
    shared machine hits all of them alike; two warm-up calls each first."""
    for fn in calls.values():
        fn()
        fn()
    samples: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(rounds):
        for name, fn in calls.items():
            start = time.perf_counter()
            fn()
            samples[name].append((time.perf_counter() - start) * 1000)
    return {name: (float(np.median(t)), float(np.min(t))) for name, t in samples.items()}


def export_tflite(generator: keras.Model, train: TrainConfig, config: ExportConfig, image_size: int,
                  reference: Callable[[np.ndarray], np.ndarray], check_images: np.ndarray,
                  calibration: Optional[np.ndarray], directory: str) -> list[VariantReport]:
    """Converts, runs and checks each requested variant; files go into `directory`."""
    reports = []
    with tempfile.TemporaryDirectory(prefix="pix2pix-tflite-") as scratch:
        # Converted from a SavedModel (a concrete function was seen to give NaNs), written by
        # ExportArchive: a tf.Module holding the Keras model keeps its variables as TFLite
        # resource variables instead of constants, which int8 calibration cannot read.
        tflite_archive(generator, config.mode, image_size, train.model.input_nc).write_out(scratch, verbose=False)

        def representative() -> Iterator[list[np.ndarray]]:
            for image in calibration:
                yield [image[None].astype(np.float32)]

        for variant in config.tflite:
            logging.info("Converting the %s TFLite variant.", variant)
            content = convert_tflite(scratch, variant, representative if calibration is not None else None,
                                     config.int8_io)
            path = os.path.join(directory, f"{config.model_name}_{variant}.tflite")
            with open(path, "wb") as f:
                f.write(content)
            model = TFLiteModel(path, threads=config.threads)
            value, max_abs = check_variant(model, reference, check_images)
            floor = PSNR_FLOORS[variant]
            ok = math.isfinite(value) and value >= floor
            report = VariantReport(variant, path, len(content), value, max_abs, floor, ok, io_dtype=model.io_dtype,
                                   io_quantization=model.io_quantization)
            report.model = model  # For the benchmark; not part of the report.
            reports.append(report)
    return reports


# ----------------------------------------------------------------------------- data


def _examples(train: TrainConfig, config: ExportConfig, image_size: int,
              need_training_data: bool) -> tuple[np.ndarray, Optional[np.ndarray], str]:
    """(held-out inputs for the checks, training inputs for int8 calibration, where they came from)."""
    from pix2pix_tf.data import pipeline as data

    data_config = dataclasses.replace(train.data, data_dir=config.data_dir or train.data.data_dir)
    nc = (train.model.input_nc, train.model.output_nc)
    try:
        dataset = data.load_paired_dataset(data_config)
        held_out = [a for a, _ in data.held_out_pairs(dataset, data_config, *nc, limit=config.check_examples)
                    .as_numpy_iterator()]
        calibration = None
        if need_training_data:
            stream = data.train_stream(dataset, data_config, *nc, seed=train.run.seed or 0).unbatch()
            calibration = np.stack([a for a, _ in stream.take(config.calibration_examples).as_numpy_iterator()])
    except DatasetError as e:
        if need_training_data:
            raise DatasetError(f"Full-int8 TFLite needs the run's training data for calibration: {e} "
                               "Pass --data_dir, or leave int8 out of --tflite.") from e
        logging.warning("The run's dataset is not available (%s): checking on synthetic images instead.", e)
        rng = np.random.default_rng(0)
        synthetic = rng.uniform(-1, 1, (config.check_examples, image_size, image_size, nc[0])).astype(np.float32)
        return synthetic, None, "synthetic noise (dataset unavailable)"
    held_out_images = _resized(np.stack(held_out), image_size)
    return held_out_images, None if calibration is None else _resized(calibration, image_size), \
        f"{len(held_out)} held-out images of {data_config.dataset}"


def _resized(images: np.ndarray, size: int) -> np.ndarray:
    if images.shape[1:3] == (size, size):
        return images
    from pix2pix_tf.data.pipeline import resize

    return np.stack([resize(tf.constant(image), size).numpy() for image in images])


# ----------------------------------------------------------------------------- the whole export


def export(config: ExportConfig) -> ExportResult:
    """Writes and checks the SavedModel, then the TFLite variants; see the module docstring."""
    config.validate()
    train = TrainConfig.load(config.workdir)
    image_size = config.image_size or train.data.crop_size
    multiple = size_multiple(train.model.generator)
    if image_size % multiple:
        raise ConfigError(f"--image_size={image_size}: {train.model.generator} takes sides that are multiples of "
                          f"{multiple}; use {max(multiple, image_size // multiple * multiple)}.")
    if train.model.input_nc not in (1, 3):
        raise ConfigError(f"The run takes {train.model.input_nc}-channel inputs; encoded images give 1 or 3.")
    generator, train, checkpoint = inference.load_generator(config.workdir, config.checkpoint)
    logging.info("Exporting %s (%s) from %s.", train.model.generator, config.mode.describe(), checkpoint)

    images, calibration, source = _examples(train, config, image_size, need_training_data="int8" in config.tflite)
    base = model_base(config)
    version = choose_version(base, config.version)
    staging = staging_dir(base, str(version))
    try:
        write_saved_model(generator, train, config, checkpoint, version, image_size, staging)
        diff = verify_saved_model(staging, generator, config.mode, images)
        final = os.path.join(base, str(version))
        publish(staging, final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    logging.info("SavedModel: %s (max |diff| to the checkpoint %.2g on %s).", final, diff, source)
    result = ExportResult(final, version, checkpoint, config.mode, image_size, diff)

    loaded = tf.saved_model.load(final)
    deterministic = loaded.signatures[SIGNATURE_FLOAT_DETERMINISTIC]

    def reference(batch: np.ndarray) -> np.ndarray:
        return deterministic(images=tf.constant(batch))[OUTPUT_FLOAT].numpy()

    if not config.tflite:
        _benchmark(result, generator, reference, images[:1], config)
        return result

    tflite_base = os.path.join(os.path.dirname(base), "tflite", config.model_name)
    staging = staging_dir(tflite_base, str(version))
    try:
        result.variants = export_tflite(generator, train, config, image_size, reference, images, calibration, staging)
        _benchmark(result, generator, reference, images[:1], config)
        _write_tflite_report(staging, result, train, config, source)
        broken = [r for r in result.variants if not r.ok]
        if broken and not config.force:
            table = "\n  ".join(r.line() for r in result.variants)
            raise ExportError(
                f"TFLite variant(s) {', '.join(r.variant for r in broken)} do not reproduce the SavedModel "
                f"(PSNR below the floor, or NaN) on {source}:\n  {table}\nLeave the variant out of --tflite, "
                "or pass --force to keep them.")
        for report in result.variants:
            report.path = os.path.join(tflite_base, str(version), os.path.basename(report.path))
        result.tflite_dir = os.path.join(tflite_base, str(version))
        publish(staging, result.tflite_dir)
    except ExportError as e:
        shutil.rmtree(staging, ignore_errors=True)
        raise ExportError(f"{e}\nThe SavedModel {final} was published; no TFLite file was.") from e
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return result


def _benchmark(result: ExportResult, generator: keras.Model, reference: Callable[[np.ndarray], np.ndarray],
               image: np.ndarray, config: ExportConfig) -> None:
    """Batch-1 latency of the Keras model call, the SavedModel signature and each TFLite file."""
    if not config.benchmark:
        return
    one = tf.constant(image)
    calls = {"keras": lambda: generator(one, training=False).numpy(), "saved_model": lambda: reference(image)}
    calls.update({r.variant: (lambda m=r.model: m(image)) for r in result.variants})
    timings = benchmark(calls)
    result.keras_latency_ms, result.keras_latency_min_ms = timings["keras"]
    result.saved_model_latency_ms, result.saved_model_latency_min_ms = timings["saved_model"]
    for report in result.variants:
        report.latency_ms, report.latency_min_ms = timings[report.variant]


def _write_tflite_report(directory: str, result: ExportResult, train: TrainConfig, config: ExportConfig,
                         source: str) -> None:
    report = {
        "saved_model": result.saved_model_dir,
        "checkpoint": result.checkpoint,
        "image_size": result.image_size,
        "input": {"shape": [1, result.image_size, result.image_size, train.model.input_nc], "range": [-1, 1]},
        "output": {"shape": [1, result.image_size, result.image_size, train.model.output_nc], "range": [-1, 1]},
        "direction": train.data.direction,
        "mode": dataclasses.asdict(config.mode.without_dropout()),
        "compared_on": source,
        "threads": config.threads,
        "latency": "median (min) ms over interleaved rounds, batch 1" if result.keras_latency_ms else None,
        "keras_latency_ms": [result.keras_latency_ms, result.keras_latency_min_ms],
        "saved_model_latency_ms": [result.saved_model_latency_ms, result.saved_model_latency_min_ms],
        "variants": {r.variant: {"file": os.path.basename(r.path), "size_bytes": r.size_bytes,
                                 "psnr_db": r.psnr_db, "max_abs_diff": r.max_abs_diff, "floor_db": r.floor_db,
                                 "ok": r.ok, "latency_ms": [r.latency_ms, r.latency_min_ms], "io_dtype": r.io_dtype,
                                 "io_quantization": r.io_quantization}
                     for r in result.variants},
    }
    with open(os.path.join(directory, TFLITE_REPORT), "w") as f:
        json.dump(report, f, indent=2, allow_nan=True)
        f.write("\n")
