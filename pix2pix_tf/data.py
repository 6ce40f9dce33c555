"""The input pipeline: datasets by name, the reference's jitter, and a resumable train stream.

Pairs come from tensorflow-datasets builders as encoded images (`a`, `b`); the direction
decides which side is the input. Training applies the SAME random jitter to input and
target (resize to load_size, random crop to crop_size, random horizontal flip); held-out
data is only resized to crop_size. Pixels are scaled to [-1, 1].

The train stream is a pure function of (seed, position): epoch e is shuffled with a seed
derived from (seed, e) and every example's jitter is drawn from (seed, its index in the
stream). A resumed run therefore rebuilds the stream at the saved position and sees exactly
the examples and jitter an uninterrupted run would have seen, without storing shuffle
buffers in checkpoints.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Optional

import tensorflow as tf
import tensorflow_datasets as tfds

from pix2pix_tf.config import DataConfig
from pix2pix_tf.errors import DatasetError

# The authors' datasets (next release) and their usual direction.
OFFICIAL_DATASETS = {
    "facades": "BtoA", "cityscapes": "BtoA", "maps": "AtoB",
    "edges2shoes": "AtoB", "edges2handbags": "AtoB", "night2day": "AtoB",
}
EMBEDDED_DATASETS = {"shapes": "pix2pix_shapes"}


@dataclasses.dataclass(frozen=True)
class PairedDataset:
    """A prepared paired dataset and how to read it."""

    builder: tfds.core.DatasetBuilder
    direction: str
    train_split: str
    held_out_split: str

    @property
    def num_train(self) -> int:
        return self.builder.info.splits[self.train_split].num_examples

    def num_examples(self, split: str) -> int:
        return self.builder.info.splits[split].num_examples


def default_direction(dataset: str) -> str:
    """The direction the paper trains a dataset in (labels->photo for the embedded one)."""
    return OFFICIAL_DATASETS.get(dataset.split("/")[0], "AtoB")


def load_paired_dataset(config: DataConfig) -> PairedDataset:
    """Finds the dataset named by `config.dataset`, preparing it on first use.

    `shapes` and `shapes/<config>` are generated offline by the package itself.
    """
    name, _, variant = config.dataset.partition("/")
    if name in OFFICIAL_DATASETS:
        raise DatasetError(
            f"--dataset={config.dataset}: the official pix2pix datasets are not supported yet "
            "(they arrive with the datasets release). Use --dataset=shapes, the embedded dataset."
        )
    if name not in EMBEDDED_DATASETS:
        known = ", ".join(sorted(EMBEDDED_DATASETS) + sorted(OFFICIAL_DATASETS))
        raise DatasetError(f"--dataset={config.dataset} is not a known dataset. Known: {known}.")

    import pix2pix_tf.datasets.shapes  # noqa: F401  (registers the builder with tfds)

    builder_name = EMBEDDED_DATASETS[name] + (f"/{variant}" if variant else "")
    try:
        builder = tfds.builder(builder_name, data_dir=_expand(config.data_dir))
    except (tfds.core.registered.DatasetNotFoundError, ValueError) as e:
        raise DatasetError(f"--dataset={config.dataset}: {e}") from e
    if not builder.is_prepared():
        builder.download_and_prepare()
    splits = builder.info.splits
    held_out = next((s for s in ("test", "val") if s in splits), None)
    if "train" not in splits or held_out is None:
        raise DatasetError(f"{builder.name} needs a train split and a test or val split, has {list(splits)}.")
    return PairedDataset(builder, config.direction or default_direction(name), "train", held_out)


def _expand(path: Optional[str]) -> Optional[str]:
    return os.path.expanduser(path) if path else None


def _encoded_pairs(dataset: PairedDataset, split: str) -> tf.data.Dataset:
    """(input, target) as still-encoded bytes, in the requested direction and order of the split."""
    skip = {"a": tfds.decode.SkipDecoding(), "b": tfds.decode.SkipDecoding()}
    ds = dataset.builder.as_dataset(split=split, decoders=skip, shuffle_files=False)
    if dataset.direction == "AtoB":
        return ds.map(lambda ex: (ex["a"], ex["b"]))
    return ds.map(lambda ex: (ex["b"], ex["a"]))


def decode(encoded: tf.Tensor, channels: int) -> tf.Tensor:
    """JPEG/PNG bytes -> float32 HxWxC in [-1, 1]."""
    image = tf.io.decode_image(encoded, channels=channels, expand_animations=False)
    return tf.cast(image, tf.float32) / 127.5 - 1.0


def resize(image: tf.Tensor, size: int) -> tf.Tensor:
    """Bicubic with antialiasing (the reference resizes with PIL's bicubic), clipped to [-1, 1]."""
    resized = tf.image.resize(image, [size, size], method="bicubic", antialias=True)
    return tf.clip_by_value(resized, -1.0, 1.0)


def jitter(input_image: tf.Tensor, target: tf.Tensor, seed: tf.Tensor,
           config: DataConfig) -> tuple[tf.Tensor, tf.Tensor]:
    """The reference's random jitter, identical for input and target (they are cropped as one)."""
    channels = input_image.shape[-1]
    pair = tf.concat([input_image, target], axis=-1)
    crop_seed, flip_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    if config.preprocess == "resize_and_crop":
        pair = resize(pair, config.load_size)
    if config.preprocess in ("resize_and_crop", "crop"):
        size = [config.crop_size, config.crop_size, pair.shape[-1]]
        pair = tf.image.stateless_random_crop(pair, size, seed=crop_seed)
    if config.flip:
        pair = tf.image.stateless_random_flip_left_right(pair, seed=flip_seed)
    return pair[..., :channels], pair[..., channels:]


def held_out_resize(input_image: tf.Tensor, target: tf.Tensor,
                    config: DataConfig) -> tuple[tf.Tensor, tf.Tensor]:
    """Test-time preprocessing: resize to crop_size, no crop, no flip ("none": native size)."""
    if config.preprocess == "none":
        return input_image, target
    return resize(input_image, config.crop_size), resize(target, config.crop_size)


def train_stream(dataset: PairedDataset, config: DataConfig, input_nc: int, output_nc: int,
                 seed: int, start_example: int = 0) -> tf.data.Dataset:
    """Endless batches of jittered (input, target), starting at example `start_example`.

    Epoch e is a fresh shuffle seeded by (seed, e), so reshuffling each epoch is as
    reproducible as the first; jitter seeds are (seed, index of the example in the stream).
    """
    n = dataset.num_train
    if n < config.batch_size:
        raise DatasetError(f"The train split has {n} examples, fewer than --batch_size={config.batch_size}.")
    pairs = _encoded_pairs(dataset, dataset.train_split)
    buffer = min(config.shuffle_buffer, n)
    start_epoch, offset = divmod(start_example, n)

    def epoch(e: tf.Tensor) -> tf.data.Dataset:
        return pairs.shuffle(buffer, seed=seed * 1_000_003 + e, reshuffle_each_iteration=False)

    stream = tf.data.Dataset.range(start_epoch, 2**62).flat_map(epoch).skip(offset)
    stream = stream.enumerate(start=start_example)

    def prepare(index: tf.Tensor, pair: tuple[tf.Tensor, tf.Tensor]) -> tuple[tf.Tensor, tf.Tensor]:
        example_seed = tf.stack([tf.constant(seed, tf.int64), index])
        return jitter(decode(pair[0], input_nc), decode(pair[1], output_nc), example_seed, config)

    stream = stream.map(prepare, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return stream.batch(config.batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)


def held_out_pairs(dataset: PairedDataset, config: DataConfig, input_nc: int, output_nc: int,
                   limit: Optional[int] = None) -> tf.data.Dataset:
    """Unbatched (input, target) from the held-out split, with test-time preprocessing."""
    pairs = _encoded_pairs(dataset, dataset.held_out_split)
    if limit is not None:
        pairs = pairs.take(limit)
    return pairs.map(
        lambda a, b: held_out_resize(decode(a, input_nc), decode(b, output_nc), config),
        num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
