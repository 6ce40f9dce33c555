"""Translating image files with any form of a trained generator: checkpoint, SavedModel, TFLite.

`open_translator(...)` gives one interface over the three forms (float32 [1, S, S, C_in]
in [-1, 1] in, [1, S, S, C_out] out, plus the size, channels and direction the caller
needs to prepare images); `translate_files(TranslateConfig(...))` is what
`python -m pix2pix_tf.translate` runs. Images are prepared exactly as the SavedModel's
serving signature prepares encoded bytes (`inference.preprocess`).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Optional

import numpy as np
import tensorflow as tf
from absl import logging

from pix2pix_tf.errors import ConfigError
from pix2pix_tf.export import names
from pix2pix_tf.inference import generate as inference
from pix2pix_tf.progress import Progress


@dataclasses.dataclass
class Translator:
    """A generator ready to translate one preprocessed image at a time."""

    description: str
    image_size: int
    input_nc: int
    output_nc: int
    direction: Optional[str]  # AtoB / BtoA of the training run, when known.
    deterministic: bool
    _fn: object = dataclasses.field(repr=False, default=None)

    def __call__(self, image: np.ndarray, index: int = 0) -> np.ndarray:
        """[1, S, S, C_in] float32 in [-1, 1] -> [1, S, S, C_out]; `index` seeds the noise
        where a seed was given (same index, same output)."""
        return self._fn(image, index)


def open_translator(*, workdir: Optional[str] = None, checkpoint: Optional[str] = None,
                    saved_model: Optional[str] = None, tflite: Optional[str] = None,
                    mode: inference.InferenceMode = inference.PAPER, seed: Optional[int] = None,
                    image_size: Optional[int] = None, threads: int = 2) -> Translator:
    """The generator from exactly one source: a workdir (its newest or a given checkpoint), a
    SavedModel (a version folder, or a model folder whose newest version is used), or a
    .tflite file."""
    given = [name for name, value in (("workdir", workdir), ("saved_model", saved_model), ("tflite", tflite))
             if value]
    if len(given) != 1:
        raise ConfigError(f"Give exactly one of --workdir, --saved_model, --tflite (got {given or 'none'}).")
    if workdir:
        return _checkpoint_translator(workdir, checkpoint, mode, seed, image_size)
    if checkpoint:
        raise ConfigError("--checkpoint needs --workdir (the run whose config.json describes the model).")
    if saved_model:
        return _saved_model_translator(saved_model, mode, image_size)
    return _tflite_translator(tflite, image_size, threads)


def _checkpoint_translator(workdir: str, checkpoint: Optional[str], mode: inference.InferenceMode,
                           seed: Optional[int], image_size: Optional[int]) -> Translator:
    from pix2pix_tf.networks.generator import size_multiple

    generator, config, path = inference.load_generator(workdir, checkpoint)
    size = image_size or config.data.crop_size
    multiple = size_multiple(config.model.generator)
    if size % multiple:
        raise ConfigError(f"--image_size={size}: {config.model.generator} needs multiples of {multiple}.")

    @tf.function(reduce_retracing=True)
    def run(images: tf.Tensor, seed_pair: tf.Tensor) -> tf.Tensor:
        return inference.generate(generator, images, mode, seed_pair if seed is not None else None)

    def call(image: np.ndarray, index: int) -> np.ndarray:
        seed_pair = tf.constant([seed or 0, index], tf.int64)
        return run(tf.constant(image, tf.float32), seed_pair).numpy()

    return Translator(f"checkpoint {path} ({mode.describe()})", size, config.model.input_nc,
                      config.model.output_nc, config.data.direction, mode.deterministic, call)


def _saved_model_translator(path: str, mode: inference.InferenceMode, image_size: Optional[int]) -> Translator:

    path = names.resolve_saved_model(path)
    metadata = names.read_metadata(path)
    try:
        loaded = tf.saved_model.load(path)
    except (OSError, ValueError, tf.errors.OpError) as e:
        raise ConfigError(f"Cannot load the SavedModel {path}: {e}") from e
    name = names.SIGNATURE_FLOAT_DETERMINISTIC if mode.deterministic else names.SIGNATURE_FLOAT
    if name not in loaded.signatures:
        raise ConfigError(f"{path} has no '{name}' signature: was it written by export.py?")
    signature = loaded.signatures[name]
    input_nc = int(signature.structured_input_signature[1][names.INPUT_NAME].shape[-1])
    output_nc = int(metadata.get("output_nc", signature.structured_outputs[names.OUTPUT_FLOAT].shape[-1]))
    size = image_size or metadata.get("image_size")
    if not size:
        raise ConfigError(f"{path} does not record its image size: pass --image_size.")

    def call(image: np.ndarray, index: int) -> np.ndarray:
        return signature(images=tf.constant(image, tf.float32))[names.OUTPUT_FLOAT].numpy()

    exported = metadata.get("mode", {})
    noise = "no dropout" if mode.deterministic or not exported.get("dropout", True) else "dropout on"
    return Translator(f"SavedModel {path} (signature {name}, {noise})", int(size), input_nc, output_nc,
                      metadata.get("direction"), mode.deterministic or not exported.get("dropout", True), call)


def _tflite_translator(path: str, image_size: Optional[int], threads: int) -> Translator:
    from pix2pix_tf.export.exporter import TFLiteModel

    if not os.path.isfile(path):
        raise ConfigError(f"--tflite={path} is not a file.")
    model = TFLiteModel(path, threads=threads)
    shape = model.input_shape
    if len(shape) != 4 or shape[0] != 1 or shape[1] != shape[2]:
        raise ConfigError(f"{path} takes input of shape {shape}; expected [1, S, S, C] from export.py.")
    if image_size and image_size != shape[1]:
        raise ConfigError(f"{path} is fixed to {shape[1]}x{shape[1]} images; --image_size={image_size} cannot change "
                          "it (export again with --image_size).")
    direction = names.read_tflite_report(path).get("direction")
    output_nc = int(model.interpreter.get_output_details()[0]["shape"][-1])
    return Translator(f"TFLite {path} ({model.io_dtype} I/O, no dropout)", shape[1], shape[3], output_nc,
                      direction, True, lambda image, index: model(image))


IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif")


@dataclasses.dataclass(frozen=True)
class TranslateConfig:
    """What translate.py was asked to do; library code reads no flags."""

    inputs: tuple[str, ...]
    output_dir: str
    workdir: Optional[str] = None
    checkpoint: Optional[str] = None
    saved_model: Optional[str] = None
    tflite: Optional[str] = None
    paired: bool = False
    direction: Optional[str] = None
    side_by_side: bool = False
    keep_size: bool = False
    mode: inference.InferenceMode = inference.PAPER
    seed: Optional[int] = None
    image_size: Optional[int] = None
    threads: int = 2
    progress: bool = True


@dataclasses.dataclass
class TranslateResult:
    output_dir: str
    model: str
    written: list[str] = dataclasses.field(default_factory=list)
    failed: list[tuple[str, str]] = dataclasses.field(default_factory=list)


def find_images(inputs: tuple[str, ...]) -> list[tuple[str, str]]:
    """(path, path relative to the output folder) for every image file given or found in the
    given folders (recursively, sorted); a missing path is an error, not an empty result."""
    found = []
    for given in inputs:
        if os.path.isfile(given):
            found.append((given, os.path.basename(given)))
        elif os.path.isdir(given):
            for root, dirs, files in os.walk(given):
                dirs.sort()
                for name in sorted(files):
                    if name.lower().endswith(IMAGE_EXTENSIONS):
                        path = os.path.join(root, name)
                        found.append((path, os.path.relpath(path, given)))
        else:
            raise ConfigError(f"{given}: no such file or folder.")
    if not found:
        raise ConfigError(f"No images ({', '.join(IMAGE_EXTENSIONS)}) in {', '.join(inputs)}.")
    return found


def split_pair(image: np.ndarray, direction: str) -> tuple[np.ndarray, np.ndarray]:
    """(input, target) halves of an A|B pair image in `direction`."""
    width = image.shape[1]
    if width % 2:
        raise inference.InferenceError(f"a pair image must have an even width (A|B side by side), got {width} px.")
    a, b = image[:, : width // 2], image[:, width // 2:]
    return (a, b) if direction == "AtoB" else (b, a)


def _decode_file(path: str) -> np.ndarray:
    with open(path, "rb") as f:
        encoded = f.read()
    if not encoded:
        raise inference.InferenceError("empty file (0 bytes)")
    try:
        return tf.io.decode_image(encoded, channels=0, dtype=tf.uint8, expand_animations=False).numpy()
    except (tf.errors.InvalidArgumentError, ValueError) as e:
        raise inference.InferenceError(f"not a readable JPEG/PNG/GIF/BMP image ({_first_line(e)})") from e


def _first_line(error: Exception) -> str:
    """TensorFlow's error text without its `{{function_node ...}}` and `[Op:...]` wrapping."""
    text = (getattr(error, "message", None) or str(error)).strip()
    if text.startswith("{{") and "}}" in text:
        text = text[text.index("}}") + 2:].strip()
    text = text.splitlines()[0] if text else type(error).__name__
    return text.split(" [Op:")[0].strip()


def _display(image: tf.Tensor, channels: int, size: tuple[int, int]) -> np.ndarray:
    """A [-1, 1] image as uint8 with `channels` channels at `size`, for side-by-side strips."""
    image = tf.convert_to_tensor(image, tf.float32)
    if image.shape[-1] != channels:
        image = tf.image.grayscale_to_rgb(image) if channels == 3 else tf.image.rgb_to_grayscale(image)
    if tuple(image.shape[:2]) != size:
        image = tf.clip_by_value(tf.image.resize(image, size, method="bicubic", antialias=True), -1.0, 1.0)
    return inference.to_uint8(image).numpy()


def translate_files(config: TranslateConfig) -> TranslateResult:
    """Translates every image of `config.inputs` into `config.output_dir` as PNG.

    A file that cannot be read is reported and skipped; the others are still written.
    """
    images = find_images(config.inputs)
    translator = open_translator(workdir=config.workdir, checkpoint=config.checkpoint,
                                 saved_model=config.saved_model, tflite=config.tflite, mode=config.mode,
                                 seed=config.seed, image_size=config.image_size, threads=config.threads)
    direction = config.direction or translator.direction
    if config.paired and direction is None:
        raise ConfigError("--paired needs the direction: the model does not record it, pass --direction.")
    if config.seed is not None and not config.workdir:
        logging.warning("--seed only applies to --workdir (a SavedModel seeds itself, a TFLite file has no dropout).")
    logging.info("Translating %d image(s) with %s.", len(images), translator.description)
    result = TranslateResult(config.output_dir, translator.description)
    progress = Progress(len(images), "image", config.progress and len(images) > 1)
    for index, (path, relative) in enumerate(images):
        try:
            result.written.append(_translate_one(translator, config, direction, path, relative, index))
        except inference.InferenceError as e:
            result.failed.append((path, str(e)))
        except tf.errors.OpError as e:
            result.failed.append((path, _first_line(e)))
        progress.update(index + 1)
    return result


def _translate_one(translator: Translator, config: TranslateConfig, direction: Optional[str], path: str,
                   relative: str, index: int) -> str:
    image = _decode_file(path)
    target = None
    if config.paired:
        image, target = split_pair(image, direction)
    original_size = tuple(image.shape[:2])
    prepared = inference.preprocess(tf.constant(image), translator.input_nc, translator.image_size)
    output = translator(prepared.numpy()[None], index)[0]
    if not np.isfinite(output).all():
        raise inference.InferenceError("the model produced NaN/Inf")
    size = original_size if config.keep_size else (translator.image_size, translator.image_size)
    channels = translator.output_nc
    strip = [_display(output, channels, size)]
    if config.side_by_side:
        shown_input = inference.preprocess(tf.constant(image), translator.input_nc, translator.image_size)
        strip.insert(0, _display(shown_input, channels, size))
        if target is not None:
            shown_target = inference.preprocess(tf.constant(target), channels, translator.image_size)
            strip.append(_display(shown_target, channels, size))
    picture = np.concatenate(strip, axis=1)
    destination = os.path.join(config.output_dir, os.path.splitext(relative)[0] + ".png")
    os.makedirs(os.path.dirname(destination) or ".", exist_ok=True)
    tf.io.write_file(destination, tf.io.encode_png(picture))
    return destination
