"""Translating an image at its own size: the one home of the native-size geometry.

The generators are fully convolutional but take only sides that are multiples of their
downsampling factor (`ModelConfig.size_multiple`: unet_256 256, unet_128 128, encoder_decoder
256, resnet_* 4, from the architectures in `pix2pix_tf.catalogue`). To keep an image's
size and aspect ratio (the authors' `--preprocess none` at test time), translate, evaluate,
the demo and the SavedModel's `translate_native` signature all do the same three steps here:

1. pad the bottom and right edges up to the next multiple (and to at least `MIN_SIDE`), with mirror reflection that does
   not repeat the edge pixel (TensorFlow's and NumPy's ``"reflect"``: ``a b c`` -> ``a b c b a``).
   Where the padding is longer than the image allows a single reflection (``pad >= side``,
   e.g. a 37-pixel side padded to 128), the reflection repeats: the side is extended
   periodically with period ``2 * (side - 1)``, exactly as ``numpy.pad(mode="reflect")`` does;
   a side of one pixel is repeated. Padding only after the image keeps its pixels on the
   generator's stride grid from (0, 0), so a region translates the same inside any image
   that contains it at an offset that is a multiple of the size multiple;
2. translate the padded image;
3. crop the output back to the input's height and width (its top-left corner).

The pixel cap (`--max_pixels`) applies to the image as decoded, and also to the padded size,
which is what the generator holds in memory: an image under the cap whose padded size is
over it is refused, naming both sizes.

Everything here is plain TensorFlow with dynamic shapes, so the same functions run eagerly
and inside the SavedModel signature.
"""

from __future__ import annotations

import dataclasses
from typing import Optional

import numpy as np
import tensorflow as tf

from pix2pix_tf import images
from pix2pix_tf.errors import ConfigError

__all__ = ["padded_size", "reflect_indices", "pad", "crop", "check_padded_pixels",
           "assert_padded_pixels", "decode_same_size", "native_translator"]


# The smallest padded side: the resnet generators reflection-pad by one pixel at a quarter of the
# size, which needs two rows there (a U-Net's multiple is already far larger).
MIN_SIDE = 8


def _padded_side(side, multiple: int):
    """`side` rounded up to a multiple of `multiple`, at least MIN_SIDE (ints or int32 tensors)."""
    least = -(-MIN_SIDE // multiple) * multiple
    rounded = (side + multiple - 1) // multiple * multiple
    return tf.maximum(rounded, least) if isinstance(side, tf.Tensor) else max(rounded, least)


def padded_size(height: int, width: int, multiple: int) -> tuple[int, int]:
    """(height, width) rounded up to the next multiple of `multiple` (and at least MIN_SIDE)."""
    return _padded_side(height, multiple), _padded_side(width, multiple)


def reflect_indices(side: tf.Tensor, total: tf.Tensor) -> tf.Tensor:
    """int32 [total]: the source row of each row of a side of `side` rows mirrored (edge not
    repeated, reflection repeated as often as needed) out to `total` rows."""
    side = tf.cast(side, tf.int32)
    period = tf.maximum(2 * (side - 1), 1)
    position = tf.math.floormod(tf.range(total, dtype=tf.int32), period)
    return tf.where(position < side, position, period - position) * tf.cast(side > 1, tf.int32)


def pad(batch: tf.Tensor, multiple: int) -> tf.Tensor:
    """NHWC `batch` padded at the bottom and right to sides that are multiples of `multiple`
    (the module docstring's reflection rule)."""
    shape = tf.shape(batch)
    height, width = shape[1], shape[2]
    rows = tf.gather(batch, reflect_indices(height, _padded_side(height, multiple)), axis=1)
    return tf.gather(rows, reflect_indices(width, _padded_side(width, multiple)), axis=2)


def crop(batch: tf.Tensor, height, width) -> tf.Tensor:
    """The top-left `height` x `width` of an NHWC batch: a padded translation cropped back."""
    return batch[:, :height, :width, :]


def check_padded_pixels(height: int, width: int, multiple: int, max_pixels: int) -> None:
    """Refuses (ImageError) an image whose padded size is over the pixel cap."""
    padded_h, padded_w = padded_size(height, width, multiple)
    if padded_h * padded_w > max_pixels:
        raise images.ImageError(
            None, f"{width}x{height} pads to {padded_w}x{padded_h} ({padded_w * padded_h} pixels) for the generator's "
            f"multiple of {multiple}, over the limit of {max_pixels} pixels (--max_pixels); translate it without "
            "--native_size, or raise --max_pixels.", images.TOO_LARGE)


def assert_padded_pixels(padded: tf.Tensor, max_pixels: int) -> tf.Tensor:
    """`padded`, asserted in graph to be within the pixel cap (the SavedModel's check)."""
    shape = tf.shape(padded, out_type=tf.int64)
    check = tf.debugging.assert_less_equal(
        shape[1] * shape[2], tf.constant(max_pixels, tf.int64),
        message=f"the image padded to the generator's size multiple is over the limit of {max_pixels} pixels")
    with tf.control_dependencies([check]):
        return tf.identity(padded)


def decode_same_size(encoded: tf.Tensor, channels: int, max_pixels: int, max_request_pixels: Optional[int] = None,
                     multiple: int = 1) -> tf.Tensor:
    """A batch [N] of encoded images of one size -> float32 [N, H, W, `channels`] in [-1, 1] at
    that size (the SavedModel's `translate_native`). Each image is checked by the image policy
    before anything is decoded; images of different sizes are refused (a dense batch has one
    size): send them in separate requests. With `max_request_pixels`, the request is refused
    before decoding when its images padded to `multiple` (what the generator holds) cost more."""
    def padded_pixels(info: tf.Tensor) -> tf.Tensor:
        return _padded_side(info[:, 0], multiple) * _padded_side(info[:, 1], multiple)

    places, info = images.checked_request(encoded, max_pixels, max_request_pixels, padded_pixels)
    same = tf.debugging.assert_equal(
        info[:, :2], tf.broadcast_to(info[:1, :2], tf.shape(info[:, :2])),
        message="translate_native: the images of one request must have one size; send images of other sizes "
                "in separate requests")
    with tf.control_dependencies([same]):
        places = tf.identity(places)
    return images.decode_request(encoded, places, channels, tf.identity,
                                 tf.TensorSpec([None, None, channels], tf.float32))


def native_translator(translator, max_pixels: int = images.DEFAULT_MAX_PIXELS):
    """A `Translator` that takes [1, H, W, C] of any size and returns [1, H, W, C_out]: the
    wrapped one applied to the padded image, cropped back. Raises ConfigError for a model of
    one fixed size (TFLite) or an unknown multiple."""
    multiple = translator.size_multiple
    if not multiple:
        raise ConfigError(f"{translator.description} takes one fixed size ({translator.image_size}x"
                          f"{translator.image_size}): --native_size needs a model that takes any size.")

    def call(image, index: int = 0) -> np.ndarray:
        image = np.asarray(image, np.float32)
        height, width = int(image.shape[1]), int(image.shape[2])
        check_padded_pixels(height, width, multiple, max_pixels)
        padded = pad(tf.constant(image), multiple).numpy()
        return np.asarray(translator(padded, index))[:, :height, :width, :]

    return dataclasses.replace(translator, description=f"{translator.description}, at native size", _fn=call,
                               native=True)
