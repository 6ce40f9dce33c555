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

import dataclasses
import os
from typing import Any, Callable, Optional

import keras
import tensorflow as tf

from pix2pix_tf.config import TrainConfig
from pix2pix_tf.errors import ConfigError, Pix2pixError
from pix2pix_tf.workdir import Workdir


class InferenceError(Pix2pixError, ValueError):
    """An image or a model that the generator cannot translate; the message says why."""


@dataclasses.dataclass(frozen=True)
class InferenceMode:
    """How the generator is evaluated at test time.

    `dropout`: the paper's noise z (dropout kept on at test time). `batch_statistics`:
    batch norm with each image's own moments (the paper) instead of the moving averages.
    """

    dropout: bool = True
    batch_statistics: bool = True

    @property
    def deterministic(self) -> bool:
        """The same input always gives the same output."""
        return not self.dropout

    def without_dropout(self) -> InferenceMode:
        return dataclasses.replace(self, dropout=False)

    def describe(self) -> str:
        norm = "per-image batch statistics" if self.batch_statistics else "moving averages"
        noise = "dropout on (noise z)" if self.dropout else "no dropout"
        return f"batch norm with {norm}, {noise}"


PAPER = InferenceMode(dropout=True, batch_statistics=True)
DETERMINISTIC = InferenceMode(dropout=False, batch_statistics=True)


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
    numbers; twice as fast in TFLite's XNNPACK, see `phase_transposed_conv`).
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
        if phase_transposed_convs and _phase_decomposable(layer):
            return phase_transposed_conv(layer, args[0])
        if isinstance(layer, keras.Model):
            raise InferenceError(f"Nested model {layer.name!r} is not supported by the stateless generator call.")
        return layer(*args, **kwargs)

    return _run_graph(generator, images, call)


def _batch_statistics_norm(layer: keras.layers.BatchNormalization, x: tf.Tensor) -> tf.Tensor:
    """Batch norm with each example's moments over height and width; written as mean,
    squared difference, rsqrt, mul and add so that TFLite keeps it in builtin ops."""
    axis = layer.axis if isinstance(layer.axis, int) else layer.axis[0]
    rank = x.shape.rank
    axis = axis % rank
    reduce = [i for i in range(1, rank) if i != axis]
    mean = tf.reduce_mean(x, axis=reduce, keepdims=True)
    variance = tf.reduce_mean(tf.math.squared_difference(x, mean), axis=reduce, keepdims=True)
    scale = tf.math.rsqrt(variance + layer.epsilon)
    if layer.scale:
        scale = scale * _broadcast(layer.gamma, axis, rank)
    offset = -mean * scale
    if layer.center:
        offset = offset + _broadcast(layer.beta, axis, rank)
    return x * scale + offset


# Output phase (row or column parity) -> the kernel taps that reach it, for the 2x2 window
# starting at that phase's offset in the input padded by one pixel.
_PHASE_TAPS = {0: [3, 1], 1: [2, 0]}


def _phase_decomposable(layer: keras.layers.Layer) -> bool:
    return (isinstance(layer, keras.layers.Conv2DTranspose) and tuple(layer.kernel_size) == (4, 4)
            and tuple(layer.strides) == (2, 2) and layer.padding == "same"
            and tuple(layer.dilation_rate) == (1, 1) and layer.data_format == "channels_last")


def phase_transposed_conv(layer: keras.layers.Conv2DTranspose, x: tf.Tensor) -> tf.Tensor:
    """A 4x4, stride-2, "same" transposed convolution as four stride-1 2x2 convolutions.

    Each output pixel of a given (row, column) parity is reached by the same 2x2 subset of
    the kernel's taps from a 2x2 window of the input: one ordinary convolution per parity,
    interleaved by depth_to_space. The FLOPs are the transposed convolution's; TFLite's
    XNNPACK runs it about twice as fast as its TRANSPOSE_CONV (docs/performance.md).
    """
    height, width = x.shape[1], x.shape[2]
    padded = tf.pad(x, [[0, 0], [1, 1], [1, 1], [0, 0]])
    kernel = tf.transpose(tf.convert_to_tensor(layer.kernel), [0, 1, 3, 2])  # [4, 4, in, out]
    phases = []
    for row in (0, 1):
        for col in (0, 1):
            taps = tf.gather(tf.gather(kernel, _PHASE_TAPS[row], axis=0), _PHASE_TAPS[col], axis=1)
            window = padded[:, row:row + height + 1, col:col + width + 1, :]
            phases.append(tf.nn.conv2d(window, taps, strides=1, padding="VALID"))
    output = tf.nn.depth_to_space(tf.concat(phases, axis=-1), 2)  # Channel blocks in (row, col) order.
    if layer.use_bias:
        output = tf.nn.bias_add(output, tf.convert_to_tensor(layer.bias))
    return layer.activation(output) if layer.activation is not None else output


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


def _run_graph(model: keras.Model, inputs: tf.Tensor,
               call: Callable[[keras.layers.Layer, list, dict], Any]) -> tf.Tensor:
    """Evaluates a Keras functional model layer by layer with `call` deciding each layer's call.

    The graph is read from `model.get_config()`, the stable format of `.keras` files: each
    layer lists the (layer, node, tensor) that feed it, in topological order.
    """
    config = model.get_config()
    input_ref, output_ref = (_single_reference(config.get(key)) for key in ("input_layers", "output_layers"))
    if input_ref is None or output_ref is None:
        raise InferenceError(f"{model.name}: expected a functional model with one input and one output.")
    computed: dict[tuple[str, int, int], Any] = {input_ref: inputs}

    def resolve(value: Any) -> Any:
        if isinstance(value, dict) and value.get("class_name") == "__keras_tensor__":
            return computed[tuple(value["config"]["keras_history"])]
        if isinstance(value, (list, tuple)):
            return [resolve(v) for v in value]
        if isinstance(value, dict):
            return {k: resolve(v) for k, v in value.items()}
        return value

    for entry in config["layers"]:
        if entry["class_name"] == "InputLayer":
            continue
        layer = model.get_layer(entry["name"])
        for node_index, node in enumerate(entry["inbound_nodes"]):
            args = resolve(node.get("args", []))
            kwargs = {k: v for k, v in resolve(node.get("kwargs", {})).items() if v is not None}
            outputs = call(layer, args, kwargs)
            for tensor_index, output in enumerate(tf.nest.flatten(outputs)):
                computed[(entry["name"], node_index, tensor_index)] = output
    return computed[output_ref]


def _single_reference(value: Any) -> Optional[tuple[str, int, int]]:
    """`["name", 0, 0]` or `[["name", 0, 0]]` (how a functional config names its one input or
    output) -> ("name", 0, 0); None for anything else."""
    if isinstance(value, list) and len(value) == 1 and isinstance(value[0], list):
        value = value[0]
    if isinstance(value, list) and len(value) == 3 and isinstance(value[0], str):
        return (value[0], int(value[1]), int(value[2]))
    return None


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
        tf.debugging.assert_equal(shape[1] % multiple, 0,
                                  message=f"image height must be a multiple of {multiple} for this generator"),
        tf.debugging.assert_equal(shape[2] % multiple, 0,
                                  message=f"image width must be a multiple of {multiple} for this generator"),
    ]
    with tf.control_dependencies(checks):
        return tf.identity(images)


def to_channels(image: tf.Tensor, channels: int) -> tf.Tensor:
    """A decoded HxWxC uint8 image (C = 1, 2, 3 or 4) with `channels` (1 or 3) channels.

    Alpha is dropped (not composited); grey is repeated to RGB; RGB becomes grey with the
    ITU-R 601 weights of `tf.image.rgb_to_grayscale`.
    """
    have = tf.shape(image)[-1]
    colour = tf.cond(have >= 3, lambda: image[..., :3], lambda: tf.image.grayscale_to_rgb(image[..., :1]))
    if channels == 3:
        return colour
    if channels == 1:
        return tf.cond(have >= 3, lambda: tf.image.rgb_to_grayscale(colour), lambda: image[..., :1])
    raise ConfigError(f"Images with {channels} channels cannot be decoded from JPEG/PNG; use 1 or 3.")


def decode_image(encoded: tf.Tensor, channels: int, size: int) -> tf.Tensor:
    """One JPEG/PNG/GIF/BMP string -> float32 [size, size, channels] in [-1, 1].

    The model's test-time preprocessing: convert the channels, scale to [-1, 1], resize to
    size x size with the training pipeline's bicubic resize (aspect ratio not kept).
    Empty and undecodable strings fail with a message that says so.
    """
    encoded = tf.convert_to_tensor(encoded, tf.string)
    nonempty = tf.debugging.assert_greater(tf.strings.length(encoded), 0,
                                           message="an image is empty (0 bytes); send JPEG or PNG bytes")
    with tf.control_dependencies([nonempty]):
        head = tf.strings.substr(encoded, 0, 4)
        known = (tf.image.is_jpeg(encoded) | tf.equal(head, b"\x89PNG") | tf.equal(head, b"GIF8")
                 | tf.equal(tf.strings.substr(encoded, 0, 2), b"BM"))
        recognised = tf.debugging.Assert(known, ["an image is not JPEG, PNG, GIF or BMP data; its first bytes are",
                                                 tf.strings.substr(encoded, 0, 8)])
    with tf.control_dependencies([recognised]):
        image = tf.io.decode_image(encoded, channels=0, dtype=tf.uint8, expand_animations=False)
    return preprocess(image, channels, size)


def preprocess(image: tf.Tensor, channels: int, size: int) -> tf.Tensor:
    """A decoded HxWxC uint8 image -> float32 [size, size, channels] in [-1, 1], as in serving."""
    from pix2pix_tf.data.pipeline import resize  # The training pipeline's resize: identical pixels.

    image = to_channels(image, channels)
    image = tf.cast(image, tf.float32) / 127.5 - 1.0
    image = resize(image, size)
    return tf.ensure_shape(image, [size, size, channels])


def decode_images(encoded: tf.Tensor, channels: int, size: int) -> tf.Tensor:
    """A batch [N] of encoded images -> float32 [N, size, size, channels] in [-1, 1]."""
    encoded = tf.convert_to_tensor(encoded, tf.string)
    if encoded.shape.rank is not None and encoded.shape.rank != 1:
        raise InferenceError(f"images must be a 1-D batch of encoded strings, got shape {encoded.shape}.")
    nonempty = tf.debugging.assert_positive(tf.size(encoded), message="images: the batch is empty")
    with tf.control_dependencies([nonempty]):
        encoded = tf.identity(encoded)
    return tf.map_fn(lambda e: decode_image(e, channels, size), encoded,
                     fn_output_signature=tf.TensorSpec([size, size, channels], tf.float32))


def to_uint8(images: tf.Tensor) -> tf.Tensor:
    """[-1, 1] floats -> uint8 pixels, rounded (the inverse of the input scaling)."""
    return tf.cast(tf.round(tf.clip_by_value((images + 1.0) * 127.5, 0.0, 255.0)), tf.uint8)


def encode_pngs(images: tf.Tensor) -> tf.Tensor:
    """float32 [N, H, W, C] in [-1, 1] -> [N] PNG strings."""
    return tf.map_fn(tf.io.encode_png, to_uint8(images), fn_output_signature=tf.TensorSpec([], tf.string))


def latest_checkpoint(workdir: str) -> str:
    """The newest training checkpoint of a workdir, or a clear error."""
    directory = Workdir(workdir).checkpoints
    path = tf.train.latest_checkpoint(directory)
    if path is None:
        raise ConfigError(f"No checkpoint in {directory}: train first (python train.py --workdir={workdir}).")
    return path


def load_generator(workdir: str, checkpoint: Optional[str] = None) -> tuple[keras.Model, TrainConfig, str]:
    """G of a training run, rebuilt from its config.json and restored from a checkpoint.

    Only the generator is read (the checkpoint also holds D and both optimizers); a
    checkpoint whose generator does not fit config.json is refused rather than half-loaded.
    """
    from pix2pix_tf.networks.generator import build_generator

    config = TrainConfig.load(workdir)
    path = checkpoint or latest_checkpoint(workdir)
    generator = build_generator(config.model)
    if not tf.io.gfile.exists(f"{path}.index"):
        raise ConfigError(f"Cannot restore the generator from {path}: no such checkpoint.")
    try:
        status = tf.train.Checkpoint(generator=generator).restore(path)
        status.expect_partial()
        status.assert_existing_objects_matched()
    except (AssertionError, ValueError, tf.errors.OpError) as e:
        raise ConfigError(
            f"The checkpoint {path} does not fit the model of {os.path.join(workdir, 'config.json')} "
            f"(generator {config.model.generator}, ngf {config.model.ngf}, norm {config.model.norm}): {e}") from e
    return generator, config, path
