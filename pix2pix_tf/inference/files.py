"""Translating image files: what `python -m pix2pix_tf.translate` does.

`translate_files(TranslateConfig(...))` finds the images, decides every output name before
anything is translated (`plan_outputs`), opens the model its `ModelRequest` names and writes
one PNG per image. Images are prepared exactly as the SavedModel's serving signature
prepares encoded bytes (`images.preprocess`), after the same checks (`image_files.read_image_file`:
the format by content, the pixel cap from the header).

Output names (docs/serving.md, "Translating files"): an input keeps its path relative to the
folder it was found in (a file given by name: its file name), with `.png` for its extension.
Where that name would be an input file, or several inputs would get the same one (`x.jpg`
and `x.png`; `a/1.jpg` and `b/1.jpg` given as two arguments), each of them keeps its
extension in the name (`x_jpg.png`, `x_png.png`), then a number if that is still taken
(`1_jpg.png`, `1_jpg_2.png`); so does a file whose name an input folder's output folder
needs (`x.jpg` beside the folder `x.png/`). So no input is ever written over and no output replaces
another of the same run; an earlier run's output with the same name is replaced, any other
file there is kept (`OUTPUT_MARK` tells them apart).
"""

from __future__ import annotations

import collections
import dataclasses
import itertools
import os
import struct
import zlib
from typing import Iterator, Optional

import numpy as np
import tensorflow as tf
from absl import logging

from pix2pix_tf import image_files, images, writing
from pix2pix_tf.errors import ConfigError, InferenceError, Interrupted, op_message
from pix2pix_tf.inference.request import ModelRequest
from pix2pix_tf.inference.translator import Translator
from pix2pix_tf.progress import Progress
from pix2pix_tf.workdir import check_not_a_file, check_writable

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")


@dataclasses.dataclass(frozen=True)
class TranslateConfig:
    """What translate.py was asked to do; library code reads no flags."""

    inputs: tuple[str, ...]
    output_dir: str
    model: ModelRequest  # Which model, and how to run it (mode, seed, size, native size, threads, pixel cap).
    paired: bool = False
    direction: Optional[str] = None
    side_by_side: bool = False
    keep_size: bool = False
    progress: bool = True


@dataclasses.dataclass
class TranslateResult:
    output_dir: str
    model: str
    written: list[str] = dataclasses.field(default_factory=list)
    failed: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    planned: int = 0  # Images found and planned.
    interrupted: Optional[Interrupted] = None  # The signal that stopped it before the last image.


def find_images(inputs: tuple[str, ...], output_dir: Optional[str] = None) -> list[tuple[str, str]]:
    """(path, path relative to the output folder) for every image file given or found in the
    given folders (recursively, sorted); a missing path is an error, not an empty result.
    An output folder inside an input folder is not searched: earlier results are not inputs."""
    skipped = os.path.realpath(output_dir) if output_dir else None
    found = []
    for given in inputs:
        if os.path.lexists(given) and not os.path.isdir(given):  # Not a regular file: refused when read.
            found.append((given, os.path.basename(given)))
        elif os.path.isdir(given):
            for root, dirs, files in os.walk(given):
                dirs[:] = sorted(d for d in dirs if os.path.realpath(os.path.join(root, d)) != skipped)
                for name in sorted(files):
                    path = os.path.join(root, name)
                    if name.lower().endswith(IMAGE_EXTENSIONS) and not _earlier_result(path, skipped):
                        found.append((path, os.path.relpath(path, given)))
        else:
            raise ConfigError(f"{given}: no such file or folder.")
    if not found:
        raise ConfigError(f"No images ({', '.join(IMAGE_EXTENSIONS)}) in {', '.join(inputs)}.")
    return _each_file_once(found)


def _earlier_result(path: str, output_dir: Optional[str]) -> bool:
    """An output of an earlier run in this run's output folder (which may be a folder given as
    input): not an input, or each rerun would translate the previous results too."""
    if output_dir is None:
        return False
    folder = os.path.dirname(os.path.realpath(path))
    return (folder == output_dir or folder.startswith(output_dir.rstrip(os.sep) + os.sep)) and is_earlier_output(path)


def _each_file_once(found: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The first of the names of one file (given twice, or also inside a folder given): one
    image is one output, not two noisy copies under renamed names."""
    seen: set[tuple[int, int]] = set()
    unique = []
    for path, relative in found:
        key = _file_id(path)
        if key is None or key not in seen:
            unique.append((path, relative))
            seen.add(key)
    if len(unique) < len(found):
        logging.info("%d input(s) named a file already given; each file is translated once.", len(found) - len(unique))
    return unique


def _file_id(path: str) -> Optional[tuple[int, int]]:
    """What makes two names one file (links, case-insensitive file systems); None if absent."""
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return stat.st_dev, stat.st_ino


# Every output says it is one (a PNG tEXt chunk right after the header): a later run replaces
# such a file, and keeps any other under that name (a user's own photo), and a folder walk does
# not take it for an input.
OUTPUT_MARK = b"Software\x00pix2pix_tf translate"
_PNG_HEADER = 33  # The signature (8 bytes) and the IHDR chunk (25).


def marked_png(png: bytes) -> bytes:
    """`png` with OUTPUT_MARK as its first chunk after IHDR."""
    chunk = b"tEXt" + OUTPUT_MARK
    return png[:_PNG_HEADER] + struct.pack(">I", len(OUTPUT_MARK)) + chunk + struct.pack(">I", zlib.crc32(chunk)) \
        + png[_PNG_HEADER:]


def is_earlier_output(path: str) -> bool:
    """Whether `path` is a regular file that translate wrote (`marked_png`); reads its first bytes only."""
    if not os.path.isfile(path):
        return False
    try:
        with open(path, "rb") as f:
            head = f.read(_PNG_HEADER + 8 + len(OUTPUT_MARK))
    except OSError:
        return False
    return head[_PNG_HEADER + 4:] == b"tEXt" + OUTPUT_MARK


def plan_outputs(found: list[tuple[str, str]], output_dir: str) -> list[tuple[str, str]]:
    """(input, output PNG) for every image `find_images` found, with the names of the module
    docstring: distinct, and none of them an input file. Decided before anything is written."""
    inputs = {_file_id(path) for path, _ in found} - {None}
    plain_names = [os.path.splitext(relative)[0] + ".png" for _, relative in found]
    shared = collections.Counter(os.path.normcase(name) for name in plain_names)
    # The output folders an input folder's tree needs (`a.png/` for `a.png/b.jpg`): no file there.
    folders = {os.path.normcase(folder) for name in plain_names for folder in _folders_above(name)}
    taken = set(folders)

    def free(name: str) -> bool:
        there = os.path.join(output_dir, name)
        return (os.path.normcase(name) not in taken and _file_id(there) not in inputs
                and (not os.path.lexists(there) or is_earlier_output(there)))

    planned = []
    for (path, relative), plain in zip(found, plain_names):
        name = plain
        if shared[os.path.normcase(plain)] > 1 or not free(plain):
            name = _distinct_name(relative, free)
            why = _why_not(plain, shared, output_dir, inputs, folders)
            logging.info("%s -> %s, not %s: %s.", path, name, plain, why)
        taken.add(os.path.normcase(name))
        planned.append((path, os.path.join(output_dir, name)))
    return planned


def _folders_above(name: str) -> Iterator[str]:
    """`a/b/c.png` -> a/b, a."""
    while name := os.path.dirname(name):
        yield name


def _why_not(name: str, shared: collections.Counter, output_dir: str, inputs: set, folders: set) -> str:
    if shared[os.path.normcase(name)] > 1:
        return "another input would get it too"
    if os.path.normcase(name) in folders:
        return "it is the output folder of an input folder"
    if _file_id(os.path.join(output_dir, name)) in inputs:
        return "it is an input"
    return "a file translate did not write is there, and is kept"


def _distinct_name(relative: str, free) -> str:
    """`x.jpg` -> x_jpg.png, else x_jpg_2.png, x_jpg_3.png, ...: the first name `free` accepts."""
    stem, extension = os.path.splitext(relative)
    base = f"{stem}_{extension.lstrip('.')}" if extension.strip(".") else stem
    candidates = itertools.chain([f"{base}.png"] if extension.strip(".") else [],
                                 (f"{base}_{number}.png" for number in itertools.count(2)))
    return next(name for name in candidates if free(name))


def split_pair(image: np.ndarray, direction: str) -> tuple[np.ndarray, np.ndarray]:
    """(input, target) halves of an A|B pair image in `direction`."""
    width = image.shape[1]
    if width % 2:
        raise InferenceError(f"a pair image must have an even width (A|B side by side), got {width} px.")
    a, b = image[:, : width // 2], image[:, width // 2:]
    return (a, b) if direction == "AtoB" else (b, a)


def _display(image: tf.Tensor, channels: int, size: tuple[int, int]) -> np.ndarray:
    """A [-1, 1] image as uint8 with `channels` channels at `size`, for side-by-side strips."""
    image = tf.convert_to_tensor(image, tf.float32)
    if image.shape[-1] != channels:
        image = tf.image.grayscale_to_rgb(image) if channels == 3 else tf.image.rgb_to_grayscale(image)
    if tuple(image.shape[:2]) != size:
        image = tf.clip_by_value(tf.image.resize(image, size, method="bicubic", antialias=True), -1.0, 1.0)
    return images.to_uint8(image).numpy()


def translate_files(config: TranslateConfig) -> TranslateResult:
    """Translates every image of `config.inputs` into `config.output_dir` as PNG.

    A file that cannot be read, or an output that cannot be written (`writing.write_file`:
    whole or not at all, never through a link), is reported and skipped; the others are still
    written.
    """
    check_not_a_file(config.output_dir, "--output_dir")
    planned = plan_outputs(find_images(config.inputs, config.output_dir), config.output_dir)
    source = config.model.resolve()
    translator = config.model.translator(source)
    # Once the model is accepted, before any image is translated: a folder under a file, or one
    # that cannot be written, is one line now, not one failure per image.
    check_writable(config.output_dir, "--output_dir")
    direction = config.direction or translator.direction
    if config.paired and direction is None:
        raise ConfigError("--paired needs the direction: the model does not record it, pass --direction.")
    if config.model.seed is not None and not source.spec.seeded:
        logging.warning("--seed only applies to --workdir (a SavedModel seeds itself; TFLite and ONNX files have no "
                        "dropout).")
    elif config.model.seed is not None and not config.model.mode.dropout:
        logging.warning("--seed has no effect here: it seeds the dropout noise, and dropout is off (--deterministic).")
    logging.info("Translating %d image(s) with %s.", len(planned), translator.description)
    result = TranslateResult(config.output_dir, translator.description, planned=len(planned))
    progress = Progress(len(planned), "image", config.progress and len(planned) > 1)
    try:
        for index, (path, destination) in enumerate(planned):
            try:
                _translate_one(translator, config, direction, path, destination, index)
                result.written.append(destination)
            except images.ImageError as e:
                result.failed.append((path, e.problem))
            except InferenceError as e:
                result.failed.append((path, str(e)))
            except tf.errors.OpError as e:
                result.failed.append((path, op_message(e)))
            except writing.UnsafeDestinationError as e:
                result.failed.append((path, str(e)))
            except OSError as e:  # The output could not be written: nothing is left under its name.
                blocker = _file_in_the_way(destination, config.output_dir)
                why = f"{blocker} is a file where its folder would be" if blocker else (e.strerror or str(e))
                result.failed.append((path, f"{destination} not written: {why}."))
            progress.update(index + 1)
    except Interrupted as stop:  # The caller reports what was written before it.
        result.interrupted = stop
    return result


def _translate_one(translator: Translator, config: TranslateConfig, direction: Optional[str], path: str,
                   destination: str, index: int) -> None:
    image = image_files.read_image_file(path, config.model.pixel_cap)
    target = None
    if config.paired:
        image, target = split_pair(image, direction)
    original_size = tuple(image.shape[:2])
    prepared = translator.prepare(image)
    output = translator(prepared.numpy()[None], index)[0]
    if not np.isfinite(output).all():
        raise InferenceError("the model produced NaN/Inf")
    native = config.keep_size or translator.native
    size = original_size if native else (translator.image_size, translator.image_size)
    channels = translator.output_nc
    strip = [_display(output, channels, size)]
    if config.side_by_side:
        strip.insert(0, _display(prepared, channels, size))
        if target is not None:
            strip.append(_display(translator.prepare(target, channels), channels, size))
    picture = np.concatenate(strip, axis=1)
    writing.write_file(destination, marked_png(tf.io.encode_png(picture).numpy()), within=config.output_dir)


def _file_in_the_way(destination: str, output_dir: str) -> Optional[str]:
    """The file, not translate's, that stands where a folder of `destination` must be (an input
    subfolder's output folder), if any: what the user must move, which the OS error does not name."""
    folder = os.path.dirname(destination)
    while os.path.relpath(folder, output_dir) != ".." and not os.path.isdir(folder):
        if os.path.lexists(folder):
            return folder
        folder = os.path.dirname(folder)
    return None
