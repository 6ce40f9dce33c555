"""Building blocks shared by G and D: the reference's initialisation and normalisation."""

from __future__ import annotations

from typing import Optional

import keras
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
        return layers.BatchNormalization(
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


def maybe_normalize(x: keras.KerasTensor, norm: str, name: Optional[str] = None) -> keras.KerasTensor:
    layer = normalization(norm, name)
    return x if layer is None else layer(x)


def conv(filters: int, kernel_size: int, strides: int, use_bias: bool, padding: str = "same",
         name: Optional[str] = None) -> layers.Conv2D:
    return layers.Conv2D(filters, kernel_size, strides=strides, padding=padding, use_bias=use_bias,
                         kernel_initializer=conv_init(), name=name)


def conv_transpose(filters: int, kernel_size: int, strides: int, use_bias: bool,
                   name: Optional[str] = None) -> layers.Conv2DTranspose:
    # "same" with an even input is PyTorch's padding=1 (4x4) / padding=1, output_padding=1 (3x3).
    return layers.Conv2DTranspose(filters, kernel_size, strides=strides, padding="same",
                                  use_bias=use_bias, kernel_initializer=conv_init(), name=name)


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
