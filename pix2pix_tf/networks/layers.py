"""Building blocks shared by G and D: the reference's initialisation and normalisation."""

from __future__ import annotations

from typing import Optional

import keras
import tensorflow as tf
from keras import layers


def conv_init() -> keras.initializers.Initializer:
    """Weights ~ N(0, 0.02), the reference's `init_type='normal'`."""
    return keras.initializers.RandomNormal(mean=0.0, stddev=0.02)


def uses_bias(norm: str) -> bool:
    """A convolution followed by batch norm needs no bias: the norm's offset replaces it.

    The reference passes `bias=use_bias` (True only for instance norm) to every inner
    convolution, also those not followed by a norm, and the parameter counts reflect that.
    """
    return norm in ("instance", "none")


def normalization(norm: str, name: Optional[str] = None) -> Optional[layers.Layer]:
    """The reference's norm layers, with PyTorch's momentum 0.1 and epsilon 1e-5.

    "instance" is the reference's InstanceNorm2d (no affine parameters, no running
    statistics): group norm with one group per channel. Returns None for "none".
    """
    if norm in ("batch", "syncbatch"):
        return TorchBatchNormalization(
            momentum=0.9,
            epsilon=1e-5,
            gamma_initializer=keras.initializers.RandomNormal(mean=1.0, stddev=0.02),
            synchronized=norm == "syncbatch",
            name=name,
        )
    if norm == "instance":
        return layers.GroupNormalization(groups=-1, epsilon=1e-5, center=False, scale=False, name=name)
    if norm == "none":
        return None
    raise ValueError(f"Unknown norm {norm!r}.")


@keras.saving.register_keras_serializable(package="pix2pix_tf")
class TorchBatchNormalization(layers.BatchNormalization):
    """Keras batch norm whose moving variance follows PyTorch's BatchNorm2d.

    A training call normalises with the biased batch variance, as Keras does, but moves
    `moving_variance` towards the unbiased one (x n / (n - 1), n the values per channel:
    batch x height x width, summed over replicas when `synchronized`), as PyTorch's
    `running_var`. Variables, their names and so checkpoints are Keras'; inference-mode
    calls and renorm are Keras' own code. A float32 training call is TensorFlow's fused
    kernel, which computes the same; other calls write the formula out.
    """

    def call(self, inputs, training=None, mask=None):
        if not (training and self.trainable) or self.renorm:
            return super().call(inputs, training=training, mask=mask)
        if mask is not None:
            raise ValueError(f"{self.name}: masked inputs are not supported in training.")
        norm = self._fused_training_norm if self._fusable(inputs) else self._written_out_training_norm
        outputs, moved_mean, moved_variance = norm(inputs)
        self.moving_mean.assign(moved_mean)
        self.moving_variance.assign(moved_variance)
        return tf.cast(outputs, self.compute_dtype)

    def _fusable(self, inputs: tf.Tensor) -> bool:
        """Whether TensorFlow's fused kernel computes this layer's training call.

        One FusedBatchNormV3 op (and one op for its gradient) stands for the dozen of the
        formula written out, so a training step traces and is optimised in a fraction of the
        time. The kernel has no float64 and no cross-replica moments. Its bfloat16 and float16
        forms stay unused: the fused bfloat16 kernel moved held-out L1 in the precision
        quality check (docs/performance.md), so 16-bit training keeps the formula in float32.
        """
        return (inputs.shape.rank == 4 and self.axis in (-1, 3) and not self.synchronized
                and self.center and self.scale and inputs.dtype == tf.float32)

    def _fused_training_norm(self, inputs: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        """(normalised inputs, moved mean, moved variance) from the fused kernel, which
        normalises with the biased variance and moves the estimates by `1 - momentum` towards
        the batch mean and the unbiased variance, as PyTorch (towards 0, as the formula, for one
        value per channel)."""
        outputs, moved_mean, moved_variance, _, _, _ = tf.raw_ops.FusedBatchNormV3(
            x=inputs, scale=tf.cast(self.gamma, tf.float32), offset=tf.cast(self.beta, tf.float32),
            mean=tf.cast(self.moving_mean, tf.float32), variance=tf.cast(self.moving_variance, tf.float32),
            epsilon=self.epsilon, exponential_avg_factor=1.0 - self.momentum, data_format="NHWC", is_training=True)
        return outputs, moved_mean, moved_variance

    def _written_out_training_norm(self, inputs: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        """(normalised inputs, moved mean, moved variance), computed in float32 or wider."""
        x = tf.cast(inputs, keras.backend.result_type(inputs.dtype, "float32"))
        mean, variance, count = self._moments_and_count(x)
        # PyTorch's n / (n - 1); a single value per channel (where PyTorch refuses to train)
        # has variance 0 and moves the estimate towards 0 rather than NaN.
        unbiased = variance * (count / tf.maximum(count - 1.0, 1.0))
        outputs = keras.ops.batch_normalization(
            x, mean, variance, axis=self.axis, epsilon=self.epsilon,
            offset=tf.cast(self.beta, x.dtype) if self.center else None,
            scale=tf.cast(self.gamma, x.dtype) if self.scale else None)
        return outputs, self._moved(self.moving_mean, mean), self._moved(self.moving_variance, unbiased)

    def _moved(self, moving: keras.Variable, batch: tf.Tensor) -> tf.Tensor:
        """`moving` moved by `1 - momentum` towards `batch` (PyTorch's running-statistics update)."""
        return tf.cast(moving, batch.dtype) * self.momentum + batch * (1.0 - self.momentum)

    def _moments_and_count(self, x: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        """Per-channel (mean, biased variance, n) of the batch; with `synchronized`, of the
        global batch over all replicas, whose per-replica sizes may differ."""
        axes = self._reduction_axes
        count = tf.cast(tf.reduce_prod(tf.gather(tf.shape(x), axes)), x.dtype)
        context = tf.distribute.get_replica_context()
        if not self.synchronized or context is None:
            mean, variance = tf.nn.moments(x, axes)
            return mean, variance, count
        # Sums of x and x**2 and the count in one all-reduce; var = E(x**2) - E(x)**2, as
        # Keras' own synchronized moments (also on one device, so that one device and N
        # replicas round alike).
        local = tf.concat([tf.reduce_sum(x, axes), tf.reduce_sum(tf.square(x), axes), count[None]], 0)
        total = context.all_reduce(tf.distribute.ReduceOp.SUM, local)
        channels = x.shape[self.axis]
        count = total[-1]
        mean = total[:channels] / count
        variance = tf.maximum(total[channels:2 * channels] / count - tf.square(mean), 0.0)
        return mean, variance, count


def maybe_normalize(x: keras.KerasTensor, norm: str, name: Optional[str] = None) -> keras.KerasTensor:
    layer = normalization(norm, name)
    return x if layer is None else layer(x)


def conv(filters: int, kernel_size: int, strides: int, use_bias: bool, padding: str = "same",
         name: Optional[str] = None) -> layers.Conv2D:
    return layers.Conv2D(filters, kernel_size, strides=strides, padding=padding, use_bias=use_bias,
                         kernel_initializer=conv_init(), name=name)


def conv_transpose(filters: int, kernel_size: int, strides: int, use_bias: bool,
                   name: Optional[str] = None) -> layers.Conv2DTranspose:
    # "same" on an even input is PyTorch's ConvTranspose2d(k=4, s=2, padding=1). Not for 3x3:
    # see torch_conv_transpose.
    return layers.Conv2DTranspose(filters, kernel_size, strides=strides, padding="same",
                                  use_bias=use_bias, kernel_initializer=conv_init(), name=name)


def torch_conv(x: keras.KerasTensor, filters: int, kernel_size: int, strides: int, padding: int,
               use_bias: bool, name: str) -> keras.KerasTensor:
    """PyTorch's Conv2d(kernel_size, stride, padding): `padding` zeros on every side, then a
    valid convolution. TensorFlow's "same" puts the odd padding pixel after: a 3x3 stride-2
    "same" convolution of an even input pads 0 before and 1 after, which shifts the sampling
    grid by one pixel against the reference (4x4 stride 2 pads 1 and 1, so `conv` is exact)."""
    x = layers.ZeroPadding2D(padding, name=f"{name}_pad")(x)
    return conv(filters, kernel_size, strides, use_bias, padding="valid", name=name)(x)


def torch_conv_transpose(x: keras.KerasTensor, filters: int, kernel_size: int, strides: int, padding: int,
                         output_padding: int, use_bias: bool, name: str) -> keras.KerasTensor:
    """PyTorch's ConvTranspose2d(kernel_size, stride, padding, output_padding): the full (valid)
    transposed convolution, (n - 1) * stride + kernel_size rows, less `padding` rows before and
    `padding - output_padding` after (likewise columns). For 3x3, stride 2, padding 1,
    output_padding 1 it keeps rows 1..2n of 2n + 1, where TensorFlow's "same" keeps 0..2n-1."""
    # Keras' "valid" output is (n - 1) * stride + kernel_size only for kernel_size >= stride.
    if kernel_size < strides or not 0 <= output_padding <= padding:
        raise ValueError(f"Unsupported transposed convolution: kernel_size {kernel_size}, stride {strides}, "
                         f"padding {padding}, output_padding {output_padding}.")
    x = layers.Conv2DTranspose(filters, kernel_size, strides=strides, padding="valid", use_bias=use_bias,
                               kernel_initializer=conv_init(), name=name)(x)
    crop = (padding, padding - output_padding)
    return layers.Cropping2D((crop, crop), name=f"{name}_crop")(x)


def leaky_relu(name: Optional[str] = None) -> layers.LeakyReLU:
    """Slope 0.2 as in the paper (Keras' default is 0.3)."""
    return layers.LeakyReLU(negative_slope=0.2, name=name)


@keras.saving.register_keras_serializable(package="pix2pix_tf")
class ReflectionPadding2D(layers.Layer):
    """Reflect-pads height and width, as the ResNet generator's nn.ReflectionPad2d."""

    def __init__(self, padding: int, **kwargs):
        super().__init__(**kwargs)
        self.padding = padding

    def call(self, x):
        p = self.padding
        return keras.ops.pad(x, [[0, 0], [p, p], [p, p], [0, 0]], mode="reflect")

    def compute_output_shape(self, input_shape):
        n, h, w, c = input_shape
        grow = lambda d: None if d is None else d + 2 * self.padding  # noqa: E731
        return (n, grow(h), grow(w), c)

    def get_config(self):
        return {**super().get_config(), "padding": self.padding}
