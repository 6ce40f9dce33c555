"""The input pipeline: datasets by name, the reference's preprocessing, a resumable train stream.

Three kinds of source give pairs (A, B) of still-encoded images: the embedded `shapes`
dataset, the authors' datasets (`facades`, `edges2shoes`, ...: one tensorflow-datasets
builder, A|B side by side), and users' folders (`folder:/path`). The direction decides
which side is the input. Training applies the SAME random jitter to input and target;
held-out data gets the reference's test-time preprocessing. Pixels are scaled to [-1, 1].

The train stream is a pure function of (seed, position): epoch e is shuffled with a seed
derived from (seed, e) and every example's jitter is drawn from (seed, its index in the
stream). A resumed run therefore rebuilds the stream at the saved position and sees exactly
the examples and jitter an uninterrupted run would have seen, without storing shuffle
buffers in checkpoints.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import sys
from typing import Any, Callable, Iterator, Optional

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds
from absl import logging

from pix2pix_tf import images, progress
from pix2pix_tf.catalogue import OFFICIAL_DATASETS
from pix2pix_tf.config import FOLDER_PREFIX, DataConfig
from pix2pix_tf.data.sources import official, shapes  # noqa: F401  (importing them registers the builders with tfds)
from pix2pix_tf.data.sources.folder import scan_folder
from pix2pix_tf.errors import DatasetError
from pix2pix_tf.images import resize

Record = Any  # One example's encoded images: a tuple of string tensors.
PairSizes = Iterator[tuple[str, int, int]]  # (name of an example, height, width of its input and target)


@dataclasses.dataclass(frozen=True)
class PairedDataset:
    """A paired dataset ready to read: its splits and how to decode one record into (A, B)."""

    name: str
    direction: str
    split_sizes: dict[str, int]
    train_split: str
    held_out_split: str
    records: Callable[[str], tf.data.Dataset]  # split -> encoded records, in a fixed order
    decode_pair: Callable[[Record, int, int], tuple[tf.Tensor, tf.Tensor]]  # (A, B) in [-1, 1]
    pair_sizes: Callable[[str], PairSizes]  # split -> native sizes of its pairs, from the headers

    @property
    def num_train(self) -> int:
        return self.split_sizes[self.train_split]

    def input_target(self, record: Record, input_nc: int, output_nc: int) -> tuple[tf.Tensor, tf.Tensor]:
        """(input, target) of a record in the dataset's direction."""
        if self.direction == "AtoB":
            return self.decode_pair(record, input_nc, output_nc)
        target, input_image = self.decode_pair(record, output_nc, input_nc)
        return input_image, target


def load_paired_dataset(config: DataConfig) -> PairedDataset:
    """Finds the dataset named by `config.dataset`, preparing it on first use.

    `shapes[/64]` is generated offline; the authors' datasets are downloaded once (or read
    from a hand-copied archive); `folder:/path` is scanned and checked image by image. Every
    image is decoded by `pix2pix_tf.images`, within `config.max_pixels`.
    """
    direction = config.resolved().direction  # As a run's config is (already so); a bare one here the same way.
    if config.dataset.startswith(FOLDER_PREFIX):
        return _folder_dataset(config.dataset[len(FOLDER_PREFIX):], direction, config)
    name, _, variant = config.dataset.partition("/")
    if name == "shapes":
        builder = _prepared_builder("pix2pix_shapes" + (f"/{variant}" if variant else ""), config)
        decode_pair = functools.partial(_decode_two_images, max_pixels=config.max_pixels)
        return _tfds_dataset(config.dataset, builder, direction, ("a", "b"), decode_pair, side_by_side=False)
    if name in OFFICIAL_DATASETS and not variant:
        builder = _prepared_builder(f"pix2pix/{name}", config)
        decode_pair = functools.partial(_decode_side_by_side, max_pixels=config.max_pixels)
        return _tfds_dataset(name, builder, direction, ("image",), decode_pair, side_by_side=True)
    known = ", ".join(["shapes", "shapes/64", "shapes/512", *OFFICIAL_DATASETS, "folder:/path/to/images"])
    raise DatasetError(f"--dataset={config.dataset} is not a known dataset. Known: {known}.")


def _prepared_builder(name: str, config: DataConfig) -> tfds.core.DatasetBuilder:
    data_dir = os.path.expanduser(config.data_dir) if config.data_dir else None
    if data_dir and os.path.exists(data_dir) and not os.path.isdir(data_dir):  # Else "Not enough disk space".
        raise DatasetError(f"--data_dir={config.data_dir} is a file; it must name the folder that holds the "
                           "prepared datasets (tensorflow-datasets' data_dir).")
    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except (tfds.core.registered.DatasetNotFoundError, ValueError) as e:
        raise DatasetError(f"--dataset={config.dataset}: {e}") from e
    if not builder.is_prepared():
        logging.info("Preparing %s in %s (once).", name, builder.data_dir)
        try:
            with _tfds_progress_bars(progress.live(sys.stderr)):
                builder.download_and_prepare()
        except DatasetError:
            raise
        except Exception as e:  # noqa: BLE001  (tfds raises many types; the user needs the message)
            raise DatasetError(f"Preparing {name} failed: {type(e).__name__}: {e}") from e
    return builder


@contextlib.contextmanager
def _tfds_progress_bars(shown: bool) -> Iterator[None]:
    """tensorflow-datasets' progress bars (tqdm, on stderr) only where a person watches them:
    in a log file each redraw would be a line of control codes. Restored afterwards."""
    from tensorflow_datasets.core.utils import tqdm_utils

    before = getattr(tqdm_utils, "_active", True)
    tfds.display_progress_bar(shown and before)
    try:
        yield
    finally:
        tfds.display_progress_bar(before)


def traced_as_written(fn: Callable) -> Callable:
    """`fn` for a tf.data transformation, traced without AutoGraph's rewrite.

    tf.data hands every function it traces to AutoGraph, which rewrites its source and that of
    every function it calls, the first time a process builds a pipeline (each training,
    evaluation and export program starts with one). The pipeline's Python branches test
    settings, never tensors (tensor branches are written as `tf.cond`), so the rewrite
    changes nothing but the time it takes.
    """
    return tf.autograph.experimental.do_not_convert(fn)


def _tfds_dataset(name: str, builder: tfds.core.DatasetBuilder, direction: str, keys: tuple[str, ...],
                  decode_pair: Callable, side_by_side: bool) -> PairedDataset:
    sizes = {split: info.num_examples for split, info in builder.info.splits.items()}
    skip = {key: tfds.decode.SkipDecoding() for key in keys}

    def records(split: str) -> tf.data.Dataset:
        examples = builder.as_dataset(split=split, decoders=skip, shuffle_files=False)
        return examples.map(traced_as_written(lambda ex: tuple(ex[key] for key in keys)))

    def pair_sizes(split: str) -> PairSizes:
        # Headers only (no decoding); both builders store a file_name beside the images.
        examples = builder.as_dataset(split=split, decoders=skip, shuffle_files=False)
        headers = examples.map(traced_as_written(lambda ex: (ex["file_name"], images.header_size(ex[keys[0]]))),
                               num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        for file_name, (height, width) in headers.as_numpy_iterator():
            yield f"{name} {split}/{file_name.decode()}", int(height), int(width) // 2 if side_by_side else int(width)

    return _with_splits(name, direction, sizes, records, decode_pair, pair_sizes)


def _folder_dataset(root: str, direction: str, config: DataConfig) -> PairedDataset:
    max_pixels = config.max_pixels
    scan = scan_folder(root, max_pixels, _scaled_problem(config))

    def records(split: str) -> tf.data.Dataset:
        # As bytes: a name that is not valid UTF-8 (os.listdir gives it surrogate escapes) is
        # still a path TensorFlow reads, where a str could not be converted to a tensor.
        files = scan.splits[split]
        return tf.data.Dataset.from_tensor_slices(tuple([os.fsencode(p) for p in column] for column in zip(*files)))

    def pair_sizes(split: str) -> PairSizes:
        for pair in scan.splits[split]:
            width, height = scan.sizes[pair[0]]
            yield pair[0], height, width // 2 if scan.layout == "aligned" else width

    decode_pair = _decode_side_by_side_file if scan.layout == "aligned" else _decode_two_files
    sizes = {split: len(files) for split, files in scan.splits.items()}
    return _with_splits(f"folder:{scan.root}", direction, sizes, records,
                        functools.partial(decode_pair, max_pixels=max_pixels), pair_sizes)


def _scaled_problem(config: DataConfig) -> Optional[Callable[[int, int], Optional[str]]]:
    """For the scan, with --preprocess=scale_width*: why an input of (width, height) would be over
    --max_pixels once scaled, or None. These modes keep the aspect ratio, so a thin image within
    the cap (1x8000) grows without bound (143x1144000); the other modes' sizes are native or
    the flags' (`DataConfig.validate` bounds those)."""
    if config.preprocess not in ("scale_width", "scale_width_and_crop"):
        return None

    def problem(width: int, height: int) -> Optional[str]:
        # As _scale_width: the train pipeline's width is --load_size, the held-out one's --crop_size.
        sizes = [(side, max(int(side * height / width), config.crop_size))
                 for side in (config.load_size, config.crop_size)]
        scaled_width, scaled_height = max(sizes, key=lambda size: size[0] * size[1])
        if scaled_width * scaled_height <= config.max_pixels:
            return None
        amount, limit = (images.pixel_amount(n, config.max_pixels) for n in (scaled_width * scaled_height,
                                                                              config.max_pixels))
        return (f"--preprocess={config.preprocess} makes {scaled_width}x{scaled_height} ({amount}) of its "
                f"{width}x{height} input, over the limit of {limit} (--max_pixels)")

    return problem


def _with_splits(name: str, direction: str, sizes: dict[str, int], records: Callable,
                 decode_pair: Callable, pair_sizes: Callable) -> PairedDataset:
    if not sizes.get("train"):
        raise DatasetError(f"{name} has no train split (splits: {sorted(sizes)}).")
    held_out = next((s for s in ("test", "val") if sizes.get(s)), None)
    if held_out is None:
        logging.warning("%s has no val or test split: samples and held-out L1 use train images.", name)
        held_out = "train"
    return PairedDataset(name, direction, sizes, "train", held_out, records, decode_pair, pair_sizes)


def _decode_two_images(record: Record, a_channels: int, b_channels: int,
                       max_pixels: int) -> tuple[tf.Tensor, tf.Tensor]:
    return images.decode(record[0], a_channels, max_pixels), images.decode(record[1], b_channels, max_pixels)


def _decode_two_files(record: Record, a_channels: int, b_channels: int,
                      max_pixels: int) -> tuple[tf.Tensor, tf.Tensor]:
    """A/B trees: B is resized to A's size when the two differ, so that they can be cropped as one."""
    a = images.decode(tf.io.read_file(record[0]), a_channels, max_pixels, name=record[0])
    b = images.decode(tf.io.read_file(record[1]), b_channels, max_pixels, name=record[1])
    b = tf.cond(tf.reduce_all(tf.shape(a)[:2] == tf.shape(b)[:2]), lambda: b,
                lambda: resize(b, tf.shape(a)[:2]))
    return a, b


def _decode_side_by_side(record: Record, a_channels: int, b_channels: int, max_pixels: int,
                         name: images.Name = None) -> tuple[tf.Tensor, tf.Tensor]:
    """The authors' layout: one image, A on the left half and B on the right."""
    image = images.decode_uint8(record[0], max_pixels, name)
    half = tf.shape(image)[1] // 2
    return (images.to_signed(images.to_channels(image[:, :half], a_channels)),
            images.to_signed(images.to_channels(image[:, half:2 * half], b_channels)))


def _decode_side_by_side_file(record: Record, a_channels: int, b_channels: int,
                              max_pixels: int) -> tuple[tf.Tensor, tf.Tensor]:
    return _decode_side_by_side((tf.io.read_file(record[0]),), a_channels, b_channels, max_pixels, record[0])


def rounded_sizes(sizes: tf.Tensor, multiple: int) -> tf.Tensor:
    """Sides (int32, any shape) rounded to the nearest multiple the generator accepts."""
    return tf.maximum(multiple, tf.cast(tf.round(sizes / multiple), tf.int32) * multiple)


def _round_to_multiple(image: tf.Tensor, multiple: int) -> tf.Tensor:
    """Resizes to the nearest sides the generator accepts (the reference's __make_power_2)."""
    shape = tf.shape(image)[:2]
    rounded = rounded_sizes(shape, multiple)
    return tf.cond(tf.reduce_all(rounded == shape), lambda: image, lambda: resize(image, rounded))


def _scale_width(image: tf.Tensor, width: int, min_height: int) -> tf.Tensor:
    """The reference's __scale_width: width to `width`, height by the aspect ratio (>= min_height)."""
    shape = tf.cast(tf.shape(image)[:2], tf.float32)
    height = tf.maximum(tf.cast(width * shape[0] / shape[1], tf.int32), min_height)
    return resize(image, tf.stack([height, width]))


def jitter(input_image: tf.Tensor, target: tf.Tensor, seed: tf.Tensor, config: DataConfig,
           multiple: int = 1) -> tuple[tf.Tensor, tf.Tensor]:
    """The reference's random jitter, identical for input and target (they are cropped as one)."""
    channels = input_image.shape[-1]
    pair = tf.concat([input_image, target], axis=-1)
    crop_seed, flip_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    if config.preprocess == "resize_and_crop":
        pair = resize(pair, config.load_size)
    elif config.preprocess in ("scale_width", "scale_width_and_crop"):
        pair = _scale_width(pair, config.load_size, config.crop_size)
    if config.preprocess in ("resize_and_crop", "crop", "scale_width_and_crop"):
        size = [config.crop_size, config.crop_size, pair.shape[-1]]
        pair = tf.image.stateless_random_crop(pair, size, seed=crop_seed)
    pair = _round_to_multiple(pair, multiple)
    if config.flip:
        pair = tf.image.stateless_random_flip_left_right(pair, seed=flip_seed)
    return pair[..., :channels], pair[..., channels:]


def held_out_resize(input_image: tf.Tensor, target: tf.Tensor, config: DataConfig,
                    multiple: int = 1) -> tuple[tf.Tensor, tf.Tensor]:
    """Test-time preprocessing: no crop, no flip; resize to crop_size (scale_width*: its width;
    none: the native size), rounded to sides the generator accepts."""
    def prepare(image: tf.Tensor) -> tf.Tensor:
        if config.preprocess in ("resize_and_crop", "crop"):
            image = resize(image, config.crop_size)
        elif config.preprocess in ("scale_width", "scale_width_and_crop"):
            image = _scale_width(image, config.crop_size, config.crop_size)
        return _round_to_multiple(image, multiple)

    return prepare(input_image), prepare(target)


def train_stream(dataset: PairedDataset, config: DataConfig, input_nc: int, output_nc: int,
                 seed: int, start_example: int = 0, multiple: int = 1,
                 shard: tuple[int, int] = (0, 1), replica_batch_size: Optional[int] = None) -> tf.data.Dataset:
    """Endless batches of jittered (input, target), starting at example `start_example`.

    Epoch e is a fresh shuffle seeded by (seed, e), so reshuffling each epoch is as
    reproducible as the first; jitter seeds are (seed, index of the example in the stream).

    Distributed, `shard=(pipeline_id, num_pipelines)` keeps this input pipeline's slice of
    every global batch (before decoding), in `replica_batch_size` batches for its replicas:
    global batch k is examples [k*G, (k+1)*G) whatever the number of workers and replicas,
    and no example is read by two workers.
    """
    n = dataset.num_train
    global_batch = config.batch_size
    if n < global_batch:
        raise DatasetError(f"The train split has {n} examples, fewer than --batch_size={global_batch}.")
    pipeline_id, num_pipelines = shard
    records = dataset.records(dataset.train_split)
    buffer = min(config.shuffle_buffer, n)
    start_epoch, offset = divmod(start_example, n)

    # (seed, e) -> one int64 seed; a product past int64 wraps as int64 arithmetic would.
    epoch_base = (seed * 1_000_003 + 2**63) % 2**64 - 2**63

    @traced_as_written
    def epoch(e: tf.Tensor) -> tf.data.Dataset:
        return _shuffled(records, buffer, epoch_base + e)

    stream = tf.data.Dataset.range(start_epoch, 2**62).flat_map(epoch).skip(offset)
    stream = stream.enumerate(start=start_example)
    if num_pipelines > 1:
        per_pipeline = global_batch // num_pipelines
        in_slice = traced_as_written(lambda index, _: (index % global_batch) // per_pipeline == pipeline_id)
        stream = stream.filter(in_slice)

    @traced_as_written
    def prepare(index: tf.Tensor, record: Record) -> tuple[tf.Tensor, tf.Tensor]:
        example_seed = tf.stack([tf.constant(seed, tf.int64), index])
        input_image, target = dataset.input_target(record, input_nc, output_nc)
        return jitter(input_image, target, example_seed, config, multiple)

    stream = stream.map(prepare, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    batched = stream.batch(replica_batch_size or global_batch, drop_remainder=True)
    return batched.prefetch(tf.data.AUTOTUNE)


def _shuffled(records: tf.data.Dataset, buffer: int, seed: tf.Tensor) -> tf.data.Dataset:
    """`records` shuffled in an order that depends on `seed` alone.

    tf.data pairs an op seed with the global seed when one is set (training sets it), and
    with a global seed of 0 compares the tensor seed with 0 in Python. So the seed of the
    graph being traced is cleared: this runs only while `flat_map` traces the epoch
    function, whose graph is a FuncGraph made for that trace, so neither the process's
    global seed nor its default graph changes.
    """
    if not tf.inside_function():
        raise RuntimeError("_shuffled is traced by Dataset.flat_map; called eagerly it would clear the "
                           "process's default graph seed.")
    tf.compat.v1.get_default_graph().seed = None
    return records.shuffle(buffer, seed=seed, reshuffle_each_iteration=False)


def held_out_pairs(dataset: PairedDataset, config: DataConfig, input_nc: int, output_nc: int,
                   limit: Optional[int] = None, multiple: int = 1) -> tf.data.Dataset:
    """Unbatched (input, target) from the held-out split, with test-time preprocessing."""
    records = dataset.records(dataset.held_out_split)
    if limit is not None:
        records = records.take(limit)
    prepare = _held_out_preparation(dataset, config, input_nc, output_nc, multiple)
    return records.map(traced_as_written(prepare), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


def first_held_out_pairs(dataset: PairedDataset, config: DataConfig, input_nc: int, output_nc: int,
                         count: int, multiple: int = 1) -> list[tuple[np.ndarray, np.ndarray]]:
    """The first `count` pairs of `held_out_pairs`, as arrays: the few a run monitors, an export
    checks or the demo shows. Prepared eagerly, by the same ops: for a handful of pairs, tracing
    and instantiating a tf.data map costs more than running its ops."""
    prepare = _held_out_preparation(dataset, config, input_nc, output_nc, multiple)
    return [tuple(image.numpy() for image in prepare(*record))
            for record in dataset.records(dataset.held_out_split).take(count)]


def _held_out_preparation(dataset: PairedDataset, config: DataConfig, input_nc: int, output_nc: int,
                          multiple: int) -> Callable[..., tuple[tf.Tensor, tf.Tensor]]:
    def prepare(*record: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        input_image, target = dataset.input_target(record, input_nc, output_nc)
        return held_out_resize(input_image, target, config, multiple)

    return prepare
