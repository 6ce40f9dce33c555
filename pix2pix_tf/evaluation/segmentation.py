"""The paper's FCN-score: segment generated photos with a network trained on real ones.

Isola et al. judge labels->photo outputs by how well an off-the-shelf semantic segmenter
(an FCN-8s trained on real Cityscapes photos) recovers the input label map from them: if
the photos are realistic, the segmenter finds the classes where the labels put them. This
module provides the three pieces:

* where the true labels come from (`LabelScheme`, `split_labels`): the embedded `shapes`
  dataset stores the per-pixel class as its `label` feature; `cityscapes` label images are
  colour-coded, and are decoded with the Cityscapes palette (19 classes, the rest is void).
* a segmenter: any SavedModel that follows `SEGMENTER_CONTRACT` (`load_segmenter`), so
  Cityscapes users can bring their own; and, for the embedded dataset, a small CPU-friendly
  FCN that the package trains itself on real (photo -> label) pairs of the train split and
  caches as such a SavedModel (`ensure_segmenter`). Both paths are the same code at
  evaluation time.
* the scores (`pix2pix_tf.evaluation.metrics.segmentation_scores`): per-pixel accuracy, per-class
  accuracy and class IoU, for the generated photos and for the real ones (the paper's
  "ground truth" row, the ceiling the segmenter itself allows).
"""

from __future__ import annotations

import contextlib
import dataclasses
import glob
import hashlib
import json
import os
import shutil
import time
from typing import Callable, Optional

import keras
import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds
from absl import logging
from keras import layers

from pix2pix_tf import writing
from pix2pix_tf.data.pipeline import traced_as_written
from pix2pix_tf.data.sources.shapes import CLASS_NAMES  # Importing it registers the builder with tfds.
from pix2pix_tf.errors import ConfigError, Pix2pixError
from pix2pix_tf.inference.saved_model_source import load_saved_model
from pix2pix_tf.networks.seeding import seeded_construction

# The contract of a segmentation SavedModel (docs/evaluation.md).
SEGMENTER_CONTRACT = ("signature 'serving_default' with one float32 input [N, H, W, 3] (photos; range given by "
                      "--segmenter_input, default [-1, 1]) and one output: logits or probabilities [N, H, W, C] "
                      "(argmax is taken) or class indices [N, H, W]")
SEGMENTER_INFO = "pix2pix_segmenter.json"
SEGMENTER_VERSION = 2  # Bump when the built-in network or its training changes: the cache key uses it.
INPUT_RANGES = ("signed", "unit", "byte")  # [-1, 1], [0, 1], [0, 255]
VOID = 255


class SegmentationError(Pix2pixError):
    """The FCN-score cannot be computed as asked; the message says why and what to do."""


# ----------------------------------------------------------------------------- labels


@dataclasses.dataclass(frozen=True)
class LabelScheme:
    """The classes of a dataset and how its true label maps are read.

    `label_side` is the side (A or B) of each pair that is the label map: the FCN-score applies
    to runs whose INPUT is that side (labels -> photo). `palette` decodes colour-coded label
    images (nearest colour within `max_colour_distance`, else void); None when the dataset
    stores class indices itself.
    """

    dataset: str
    class_names: tuple[str, ...]
    label_side: str
    palette: Optional[np.ndarray] = None
    max_colour_distance: float = 60.0

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


# Cityscapes' 19 evaluation classes ("trainId" order) and their colours in the label images.
CITYSCAPES_CLASSES = ("road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign",
                      "vegetation", "terrain", "sky", "person", "rider", "car", "truck", "bus", "train",
                      "motorcycle", "bicycle")
CITYSCAPES_PALETTE = np.array([
    [128, 64, 128], [244, 35, 232], [70, 70, 70], [102, 102, 156], [190, 153, 153], [153, 153, 153],
    [250, 170, 30], [220, 220, 0], [107, 142, 35], [152, 251, 152], [70, 130, 180], [220, 20, 60], [255, 0, 0],
    [0, 0, 142], [0, 0, 70], [0, 60, 100], [0, 80, 100], [0, 0, 230], [119, 11, 32]], np.float32)


def label_scheme(dataset_name: str) -> LabelScheme:
    """The label scheme of a dataset, or a SegmentationError saying FCN-score is unavailable."""
    base = dataset_name.split("/")[0]
    if base == "shapes":
        return LabelScheme(dataset_name, tuple(CLASS_NAMES), "A")
    if base == "cityscapes":
        return LabelScheme(dataset_name, CITYSCAPES_CLASSES, "B", CITYSCAPES_PALETTE)
    raise SegmentationError(
        f"FCN-score needs per-pixel class labels; {dataset_name} has none that this package can read (it can for "
        "'shapes' and 'cityscapes'). Evaluate with --nofcn.")


def check_direction(scheme: LabelScheme, direction: str) -> None:
    """The FCN-score scores generated PHOTOS against the input labels: labels must be the input."""
    input_side = direction[0]
    if input_side != scheme.label_side:
        raise SegmentationError(
            f"FCN-score scores generated photos against the input label map; this run translates {direction} and "
            f"the labels of {scheme.dataset} are side {scheme.label_side}, so its outputs are not photos. "
            "Evaluate with --nofcn.")


def palette_to_labels(image: tf.Tensor, palette: np.ndarray, max_distance: float) -> tf.Tensor:
    """A colour-coded label image in [-1, 1] (HxWx3) -> int32 class indices (HxW), VOID where
    no palette colour is within `max_distance` (JPEG noise and unlabelled colours)."""
    rgb = (tf.cast(image, tf.float32) + 1.0) * 127.5
    distances = tf.norm(rgb[:, :, None, :] - tf.constant(palette)[None, None], axis=-1)
    nearest = tf.argmin(distances, axis=-1, output_type=tf.int32)
    return tf.where(tf.reduce_min(distances, axis=-1) <= max_distance, nearest, VOID)


def _shapes_labels(dataset_name: str, data_dir: Optional[str], split: str) -> tf.data.Dataset:
    variant = dataset_name.partition("/")[2]
    builder = tfds.builder("pix2pix_shapes" + (f"/{variant}" if variant else ""),
                           data_dir=os.path.expanduser(data_dir) if data_dir else None)
    skip = {"a": tfds.decode.SkipDecoding(), "b": tfds.decode.SkipDecoding()}
    examples = builder.as_dataset(split=split, decoders=skip, shuffle_files=False)
    return examples.map(traced_as_written(lambda ex: tf.cast(ex["label"][..., 0], tf.int32)))


def split_labels(scheme: LabelScheme, dataset, split: str, data_dir: Optional[str]) -> tf.data.Dataset:
    """Per-pixel int32 class maps (native size) of `split`, in the order of `dataset.records(split)`.

    `dataset` is a `pix2pix_tf.data.pipeline.PairedDataset`; both read the split unshuffled, so the
    n-th label belongs to the n-th pair.
    """
    if scheme.palette is None:
        return _shapes_labels(scheme.dataset, data_dir, split)

    @traced_as_written
    def decode(*record: tf.Tensor) -> tf.Tensor:
        a, b = dataset.decode_pair(record, 3, 3)
        return palette_to_labels(a if scheme.label_side == "A" else b, scheme.palette, scheme.max_colour_distance)

    return dataset.records(split).map(decode, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


def resize_labels(labels: tf.Tensor, size) -> tf.Tensor:
    """Class maps HxW -> `size` (H, W) by nearest neighbour (classes must not be blended)."""
    resized = tf.image.resize(labels[..., None], size, method="nearest")
    return tf.cast(resized[..., 0], tf.int32)


# ----------------------------------------------------------------------------- segmenters


Segmenter = Callable[[np.ndarray], np.ndarray]  # [N, H, W, 3] in [-1, 1] -> int class maps [N, H, W]


def load_segmenter(path: str, input_range: str = "signed", num_classes: Optional[int] = None) -> Segmenter:
    """A segmentation SavedModel (see `SEGMENTER_CONTRACT`) as a function of [-1, 1] photos;
    with `num_classes`, a class outside 0..num_classes-1 breaks the contract (scored, it
    would be clipped into a real class and give made-up numbers)."""
    if input_range not in INPUT_RANGES:
        raise SegmentationError(f"--segmenter_input={input_range!r} is not one of {', '.join(INPUT_RANGES)}.")
    if not os.path.exists(os.path.join(path, "saved_model.pb")):
        raise SegmentationError(f"--segmenter={path} is not a SavedModel folder (no saved_model.pb). Expected: "
                                f"{SEGMENTER_CONTRACT}.")
    try:
        loaded = load_saved_model(path)
    except ConfigError as e:
        raise SegmentationError(f"The segmenter: {e}") from e
    signature = loaded.signatures.get("serving_default")
    inputs = {} if signature is None else signature.structured_input_signature[1]
    if signature is None or len(inputs) != 1:
        raise SegmentationError(f"{path} does not follow the segmenter contract: {SEGMENTER_CONTRACT}.")
    input_name = next(iter(inputs))

    def segment(images: np.ndarray) -> np.ndarray:
        x = np.asarray(images, np.float32)
        if input_range == "unit":
            x = (x + 1.0) / 2.0
        elif input_range == "byte":
            x = (x + 1.0) * 127.5
        try:
            outputs = signature(**{input_name: tf.constant(x)})
        except (tf.errors.OpError, ValueError, TypeError) as e:
            raise SegmentationError(f"The segmenter {path} failed on images of shape {x.shape}: {e}") from e
        output = next(iter(outputs.values())).numpy()
        if output.ndim == 4:
            output = np.argmax(output, axis=-1)
        if output.shape != x.shape[:3]:
            raise SegmentationError(f"The segmenter {path} returned shape {output.shape} for images {x.shape}; "
                                    f"expected {SEGMENTER_CONTRACT}.")
        outside = output[(output < 0) | (output >= (num_classes or np.inf))]
        if outside.size:
            raise SegmentationError(f"The segmenter {path} returned class {outside.flat[0]} for a dataset of "
                                    f"{num_classes} classes (0 to {num_classes - 1}); expected {SEGMENTER_CONTRACT}.")
        return output.astype(np.int32)

    return segment


def build_segmenter(num_classes: int, width: int = 16) -> keras.Model:
    """A small fully convolutional network that predicts class logits at HALF resolution.

    A stride-2 stem, two more stride-2 stages (the last with dilated convolutions for context,
    about 130 pixels of receptive field), then transposed-convolution upsampling with skip
    connections back to half resolution. Small on purpose (about 0.17 M parameters at width 16;
    a few hundred CPU steps): the embedded dataset's classes differ by shape and texture, and
    its textures are several pixels wide, so half resolution loses little; the paper's FCN-8s
    would take hours. Sides must be multiples of 8; `save_segmenter` wraps the network so that
    the saved model takes any size and returns full-resolution logits.
    """

    def conv(x, filters, strides=1, dilation=1, kernel=3):
        x = layers.Conv2D(filters, kernel, strides, padding="same", dilation_rate=dilation, use_bias=False)(x)
        return layers.ReLU()(layers.BatchNormalization()(x))

    inputs = keras.Input((None, None, 3), name="images")
    half = conv(conv(inputs, width, 2, kernel=4), width)
    quarter = conv(conv(half, 2 * width, 2), 2 * width)
    eighth = conv(quarter, 4 * width, 2)
    x = conv(conv(eighth, 4 * width, dilation=2), 4 * width, dilation=4)
    for skip, filters in ((quarter, 2 * width), (half, width)):
        x = layers.Conv2DTranspose(filters, 4, 2, padding="same")(x)
        x = conv(layers.Concatenate()([x, skip]), filters)
    logits = layers.Conv2D(num_classes, 1, name="logits")(x)
    return keras.Model(inputs, logits, name="fcn_segmenter")


def half_resolution(labels: tf.Tensor) -> tf.Tensor:
    """Class maps [..., H, W] -> [..., H/2, W/2]: the pixel at each 2x2 block's top-left corner,
    the grid the network's half-resolution logits are aligned with."""
    return labels[..., ::2, ::2]


def full_resolution_logits(model: keras.Model, images: tf.Tensor) -> tf.Tensor:
    """Logits [N, H, W, C] for images of any size: reflect-padded to multiples of 8, the half-
    resolution logits upsampled bilinearly, cropped back to H x W."""
    height, width = tf.shape(images)[1], tf.shape(images)[2]
    padded = tf.pad(images, [[0, 0], [0, -height % 8], [0, -width % 8], [0, 0]], mode="REFLECT")
    logits = model(padded, training=False)
    size = tf.shape(padded)[1:3]
    logits = tf.image.resize(logits, size, method="bilinear")
    return logits[:, :height, :width]


def train_segmenter(pairs: tf.data.Dataset, num_classes: int, steps: int, batch_size: int = 4, seed: int = 0,
                    width: int = 16) -> keras.Model:
    """Trains `build_segmenter` on (photo [-1, 1] HxWx3, label HxW) pairs with random flips.

    Pixels labelled VOID do not count. The pairs are real photos: the segmenter must never
    have seen a generated one, or it would learn the generator's artefacts (the paper's point).
    """
    # Everything random follows `seed` alone, not the process's global seeds (left untouched).
    with seeded_construction(seed):
        model = build_segmenter(num_classes, width)
    cached = pairs.cache()

    @traced_as_written
    def epoch(e: tf.Tensor) -> tf.data.Dataset:
        tf.compat.v1.get_default_graph().seed = None  # This function's graph: the global seed stays out.
        return cached.shuffle(256, seed=seed * 1_000_003 + e)

    @traced_as_written
    def flip(index: tf.Tensor, pair: tuple[tf.Tensor, tf.Tensor]) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        photo, label = pair
        both = tf.concat([photo, tf.cast(label[..., None], photo.dtype)], axis=-1)
        both = tf.image.stateless_random_flip_left_right(both, seed=tf.stack([tf.constant(seed, tf.int64), index]))
        label = half_resolution(tf.cast(both[..., 3], tf.int32))
        weight = tf.cast(label != VOID, tf.float32)
        return both[..., :3], tf.where(label == VOID, 0, label), weight

    stream = tf.data.Dataset.range(2**62).flat_map(epoch).enumerate().map(flip).batch(batch_size).prefetch(2)
    model.compile(optimizer=keras.optimizers.Adam(2e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    # Adam's moments exist before fit: created lazily in fit's first step, they would make
    # tf.function trace that step a second time.
    model.optimizer.build(model.trainable_variables)
    model.fit(stream, steps_per_epoch=steps, epochs=1, verbose=0, shuffle=False)  # The stream is shuffled.
    return model


def save_segmenter(model: keras.Model, path: str, info: dict) -> None:
    """Writes `model` as a contract SavedModel (input `images` in [-1, 1], output `logits`)."""
    def logits(images: tf.Tensor) -> dict[str, tf.Tensor]:
        return {"logits": full_resolution_logits(model, images)}

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint("serving_default", logits, [tf.TensorSpec([None, None, None, 3], tf.float32, name="images")])
    archive.write_out(path, verbose=False)
    writing.write_text(os.path.join(path, SEGMENTER_INFO), json.dumps(info, indent=2, sort_keys=True) + "\n")


@dataclasses.dataclass(frozen=True)
class SegmenterSpec:
    """What the built-in segmenter is trained on and how; its hash names the cache entry."""

    dataset: str
    image_size: tuple[int, int]
    direction: str
    num_train: int
    steps: int = 400
    batch_size: int = 4
    width: int = 16
    seed: int = 0

    def key(self) -> str:
        values = {**dataclasses.asdict(self), "version": SEGMENTER_VERSION}
        digest = hashlib.sha1(json.dumps(values, sort_keys=True).encode()).hexdigest()[:10]
        name = self.dataset.replace("/", "-").replace(":", "-")
        return f"{name}-{self.image_size[0]}x{self.image_size[1]}-{digest}"


def default_cache_dir() -> str:
    """~/.cache/pix2pix_tf/segmenters (or $XDG_CACHE_HOME/pix2pix_tf/segmenters)."""
    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(root, "pix2pix_tf", "segmenters")


def ensure_segmenter(spec: SegmenterSpec, pairs: Callable[[], tf.data.Dataset], num_classes: int,
                     cache_dir: Optional[str] = None) -> str:
    """The cached built-in segmenter for `spec`, trained first if the cache has none.

    `pairs()` gives the real (photo, label) training pairs. The SavedModel is written under a
    temporary name and renamed into place, so an interrupted training never leaves a half cache.
    """
    cache_dir = os.path.expanduser(cache_dir or default_cache_dir())
    path = os.path.join(cache_dir, spec.key())
    if os.path.exists(os.path.join(path, SEGMENTER_INFO)):
        return path
    os.makedirs(cache_dir, exist_ok=True)
    logging.info("Training the FCN-score segmenter on real %s photos (%d steps, once; cached in %s).",
                 spec.dataset, spec.steps, path)
    start = time.perf_counter()
    model = train_segmenter(pairs(), num_classes, spec.steps, spec.batch_size, spec.seed, spec.width)
    for left in glob.glob(f"{glob.escape(path)}.tmp-*"):  # What a killed process was saving.
        if writing.process_gone(left.rsplit(".tmp-", 1)[1]):
            shutil.rmtree(left, ignore_errors=True)
    staging = f"{path}.tmp-{writing.process_tag()}"
    info = {**dataclasses.asdict(spec), "version": SEGMENTER_VERSION,
            "train_seconds": round(time.perf_counter() - start, 1), "contract": SEGMENTER_CONTRACT}
    try:
        save_segmenter(model, staging, info)
        if not os.path.exists(os.path.join(path, SEGMENTER_INFO)):  # A half entry (no record): not a segmenter.
            shutil.rmtree(path, ignore_errors=True)
        with contextlib.suppress(OSError):  # Another process finished the same segmenter first: keep theirs.
            os.replace(staging, path)
    finally:  # Also on Ctrl-C: a staging folder is no one's once its process is done with it.
        shutil.rmtree(staging, ignore_errors=True)
    return path


def load_cached_segmenter(spec: SegmenterSpec, pairs: Callable[[], tf.data.Dataset], num_classes: int,
                          cache_dir: Optional[str], input_range: str = "signed") -> tuple[str, Segmenter]:
    """The built-in segmenter of `spec` (`ensure_segmenter`), loaded. A cache entry that no longer
    loads (a copy cut short, a file deleted) is this package's, not the user's model: it is
    trained again, where "copy or export it again" would name nothing the user made."""
    path = ensure_segmenter(spec, pairs, num_classes, cache_dir)
    try:
        return path, load_segmenter(path, input_range, num_classes)
    except SegmentationError as e:
        logging.warning("The cached segmenter %s does not load (%s): training it again.", path, e)
        shutil.rmtree(path, ignore_errors=True)
    path = ensure_segmenter(spec, pairs, num_classes, cache_dir)
    return path, load_segmenter(path, input_range, num_classes)
