"""The generator at test time, as a pure function of (weights, images, seed): no state changes.

The paper tests G the way it trains it: batch normalisation with the statistics of the
batch being translated, and dropout on, as the noise z (section 3.1 and 6.1). Keras can
only do that through a training-mode call, which also writes the batch-norm moving
statistics and advances the dropout layers' seed generators: a SavedModel exported that
way would change itself on every request. This module therefore walks G's functional
graph and calls every layer in inference mode, except:

* BatchNormalization (``batch_statistics=True``): normalised with the moments of each
  image over its height and width, with the layer's own scale and offset. This is the
  reference's test-time behaviour (its test script forces batch size 1, where batch
  statistics are per-image statistics) and it makes an image's output independent of
  the other images that TensorFlow Serving happens to batch with it. Nothing is written.
  With ``batch_statistics=False`` the layer uses its moving averages (Keras' inference
  mode), which converters fold into the convolutions.
* Dropout (``dropout=True``): an inverted-dropout mask drawn with
  ``tf.random.stateless_uniform`` from a seed given to the call, folded with the
  layer's index. The same seed gives the same output; a serving endpoint seeds each
  call from the clock (:func:`clock_seed`), a counter-free source that needs no
  variable. With ``dropout=False`` the layer is the identity (its expectation).

Everything here is plain TensorFlow on the Keras layers' variables, so it traces into a
SavedModel signature and, dropout-free, converts to builtin TFLite ops.
"""

from __future__ import annotations

from typing import Any, Optional

import keras
import tensorflow as tf

from pix2pix_tf.errors import InferenceError
from pix2pix_tf.inference import tflite_lowering
from pix2pix_tf.inference.functional_graph import run_functional_graph
from pix2pix_tf.inference.mode import PAPER, InferenceMode


def clock_seed() -> tf.Tensor:
    """A stateless-RNG seed from the current time in microseconds: fresh noise on each call
    without a variable to advance (a SavedModel that writes nothing)."""
    micros = tf.cast(tf.timestamp() * 1e6, tf.int64)
    return tf.stack([micros, tf.constant(0x5EED, tf.int64)])


def generate(generator: keras.Model, images: tf.Tensor, mode: InferenceMode = PAPER,
             seed: Optional[tf.Tensor] = None, phase_transposed_convs: bool = False) -> tf.Tensor:
    """G(images) in `mode` without touching any variable.

    `images`: float32 NHWC in [-1, 1]. `seed`: int32/int64 shape [2] for the dropout masks;
    None draws one from the clock. Layers other than batch norm and dropout run in inference
    mode, so any Keras functional generator of this package works. `phase_transposed_convs`
    computes each 4x4 stride-2 transposed convolution as four 2x2 convolutions (the same
    numbers; twice as fast in TFLite's XNNPACK, see `inference.tflite_lowering`).
    """
    if mode.dropout and seed is None:
        seed = clock_seed()
    counter = iter(range(1 << 30))

    def call(layer: keras.layers.Layer, args: list, kwargs: dict) -> Any:
        if isinstance(layer, keras.layers.BatchNormalization):
            if mode.batch_statistics:
                return _batch_statistics_norm(layer, args[0])
            return layer(args[0], training=False)
        if isinstance(layer, keras.layers.Dropout):
            index = next(counter)
            if not mode.dropout:
                return args[0]
            return _stateless_dropout(args[0], layer.rate, tf.random.experimental.stateless_fold_in(seed, index))
        if phase_transposed_convs and tflite_lowering.phase_decomposable(layer):
            return tflite_lowering.phase_transposed_conv(layer, args[0])
        if isinstance(layer, keras.Model):
            raise InferenceError(f"Nested model {layer.name!r} is not supported by the stateless generator call.")
        return layer(*args, **kwargs)

    return run_functional_graph(generator, images, call)


def variables_read(generator: keras.Model, mode: InferenceMode) -> list[tf.Variable]:
    """The tf.Variables (under G's Keras variables) that `generate` reads in `mode`: not the
    dropout layers' seed generators (its masks are stateless), nor the batch-norm moving
    averages where it normalises with each image's own moments. What an export saves."""
    unread = set()
    for layer in generator.layers:
        if isinstance(layer, keras.layers.Dropout) or (
                mode.batch_statistics and isinstance(layer, keras.layers.BatchNormalization)):
            unread |= {id(v) for v in layer.non_trainable_variables}
    return [v.value for v in generator.variables if id(v) not in unread]


def _batch_statistics_norm(layer: keras.layers.BatchNormalization, x: tf.Tensor) -> tf.Tensor:
    """Batch norm with each example's moments over height and width; written as mean,
    squared difference, rsqrt, mul, sub and add so that TFLite keeps it in builtin ops, all
    of which full-int8 quantises (a negation `-mean` would lower to NEG, which it runs in
    float between DEQUANTIZE and QUANTIZE). `beta - mean * scale` is bit-identical to
    `-mean * scale + beta` in IEEE arithmetic: the float paths' numbers do not change."""
    axis = layer.axis if isinstance(layer.axis, int) else layer.axis[0]
    rank = x.shape.rank
    axis = axis % rank
    reduce = [i for i in range(1, rank) if i != axis]
    mean = tf.reduce_mean(x, axis=reduce, keepdims=True)
    variance = tf.reduce_mean(tf.math.squared_difference(x, mean), axis=reduce, keepdims=True)
    scale = tf.math.rsqrt(variance + layer.epsilon)
    if layer.scale:
        scale = scale * _broadcast(layer.gamma, axis, rank)
    shift = mean * scale
    if layer.center:
        return x * scale + (_broadcast(layer.beta, axis, rank) - shift)
    return x * scale - shift


def _broadcast(variable: keras.Variable, axis: int, rank: int) -> tf.Tensor:
    shape = [1] * rank
    shape[axis] = -1
    return tf.reshape(tf.convert_to_tensor(variable), shape)


def _stateless_dropout(x: tf.Tensor, rate: float, seed: tf.Tensor) -> tf.Tensor:
    """Inverted dropout, as Keras' training-mode Dropout, from a stateless generator."""
    if rate <= 0:
        return x
    keep = tf.random.stateless_uniform(tf.shape(x), seed=seed, dtype=x.dtype) >= rate
    return tf.where(keep, x / (1.0 - rate), tf.zeros_like(x))


def check_images(images: tf.Tensor, input_nc: int, multiple: int) -> tf.Tensor:
    """Asserts (inside the graph) that `images` is a float NHWC batch the generator can take.

    A U-Net halves the image `log2(multiple)` times and concatenates mirrored activations:
    other sizes would fail deep inside with a shape error that names no cause.
    """
    images = tf.convert_to_tensor(images)
    if images.shape.rank is not None and images.shape.rank != 4:
        raise InferenceError(f"images must be a batch [N, H, W, {input_nc}] (rank 4), got shape {images.shape}.")
    if images.shape.rank is not None and images.shape[-1] is not None and images.shape[-1] != input_nc:
        raise InferenceError(f"images must have {input_nc} channels, got shape {images.shape}.")
    shape = tf.shape(images)
    checks = [
        tf.debugging.assert_equal(shape[3], input_nc, message=f"images must have {input_nc} channels"),
        tf.debugging.assert_positive(shape[0], message="images: the batch is empty"),
        # 0 is a multiple of every size: without this, an empty image fails in a convolution that names channels.
        tf.debugging.assert_positive(tf.minimum(shape[1], shape[2]),
                                     message="images must be at least 1x1 pixels, got an image with no pixels"),
        tf.debugging.assert_equal(shape[1] % multiple, 0,
                                  message=f"image height must be a multiple of {multiple} for this generator"),
        tf.debugging.assert_equal(shape[2] % multiple, 0,
                                  message=f"image width must be a multiple of {multiple} for this generator"),
    ]
    with tf.control_dependencies(checks):
        return tf.identity(images)
