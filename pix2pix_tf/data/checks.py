"""Checks that the train split fits the preprocessing, made before training starts.

Two settings cannot take every image, and TensorFlow only finds out inside the first
batches, with a message that names no file: `--preprocess=crop` takes the random crop
from the native size, so an image smaller than `--crop_size` cannot be cropped; and
`--preprocess=none` keeps native sizes (`scale_width` the aspect ratio), so a batch of more
than one image needs them all to come out at one size. The sizes come from the headers
(`PairedDataset.pair_sizes`): nothing is decoded.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from pix2pix_tf.config import DataConfig, ModelConfig, check_discriminator_fits
from pix2pix_tf.data.pipeline import PairedDataset, rounded_sizes
from pix2pix_tf.errors import DatasetError


def check_fits_preprocessing(dataset: PairedDataset, config: DataConfig, model: ModelConfig) -> None:
    """Raises DatasetError (ConfigError for the discriminator) naming a train image that the
    preprocessing, or the discriminator at its native size, cannot take."""
    multiple = model.size_multiple
    if config.preprocess == "crop":
        for name, height, width in dataset.pair_sizes(dataset.train_split):
            if height < config.crop_size or width < config.crop_size:
                fit = min(height, width) // multiple * multiple  # A crop size the generator takes.
                smaller = f"a --crop_size of at most {fit}, " if fit else ""
                raise DatasetError(
                    f"{name}: its input and target are {width}x{height}, smaller than --crop_size="
                    f"{config.crop_size}, and --preprocess=crop crops from the native size. Use "
                    f"{smaller}--preprocess=resize_and_crop, or remove the image.")
    elif config.preprocess in ("none", "scale_width") and config.batch_size > 1:
        _check_one_size(dataset, config, multiple)
    if config.preprocess == "none":
        _check_discriminator_fits_native(dataset, config, model)


def _check_discriminator_fits_native(dataset: PairedDataset, config: DataConfig, model: ModelConfig) -> None:
    """`--preprocess=none` trains at native sizes (rounded to the generator's multiple): the
    smallest must leave the discriminator a patch, or the first step fails deep inside D."""
    names, sizes = zip(*[(name, (height, width)) for name, height, width in dataset.pair_sizes(dataset.train_split)])
    prepared = _prepared_sizes(np.array(sizes, np.float64), config, model.size_multiple)
    smallest = int(np.argmin(prepared.min(axis=1)))
    (height, width), side = sizes[smallest], int(prepared[smallest].min())
    check_discriminator_fits(model, side, f"{names[smallest]} is {width}x{height}, which --preprocess=none keeps",
                             "larger images, or --preprocess=resize_and_crop")


def _prepared_sizes(sizes: np.ndarray, config: DataConfig, multiple: int) -> np.ndarray:
    """The (height, width) the train pipeline makes of native sizes, without cropping."""
    if config.preprocess == "scale_width":  # As the pipeline's _scale_width.
        heights = np.maximum((config.load_size * sizes[:, 0] / sizes[:, 1]).astype(np.int32), config.crop_size)
        sizes = np.stack([heights, np.full_like(heights, config.load_size)], axis=1)
    return rounded_sizes(tf.constant(sizes, tf.int32), multiple).numpy()


def _check_one_size(dataset: PairedDataset, config: DataConfig, multiple: int) -> None:
    """Without a crop, a batch of more than one image needs every image prepared to one size."""
    names, sizes = [], []
    for name, height, width in dataset.pair_sizes(dataset.train_split):
        names.append(name)
        sizes.append((height, width))
    batched = _prepared_sizes(np.array(sizes, np.float64), config, multiple)
    other = np.flatnonzero(np.any(batched != batched[0], axis=1))
    if other.size:
        (height, width), (other_height, other_width) = sizes[0], sizes[other[0]]
        keeps = ("keeps native sizes" if config.preprocess == "none"
                 else f"keeps the aspect ratio (width {config.load_size})")
        raise DatasetError(
            f"--preprocess={config.preprocess} {keeps}, so a batch of --batch_size={config.batch_size} "
            f"needs one size, but {names[0]} is {width}x{height} and {names[other[0]]} is "
            f"{other_width}x{other_height}. Use --batch_size=1, or a --preprocess that resizes "
            "(resize_and_crop).")
