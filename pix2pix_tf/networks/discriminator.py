"""The discriminator D: the paper's PatchGAN (appendix 6.1.2) and its receptive-field variants.

D is conditional: it sees the input and the (real or generated) output concatenated on
channels and outputs a map of logits, one per overlapping patch. Names follow the authors'
code: `basic` (n_layers 3: 70x70 patches), `n_layers` (choose the depth), `pixel`
(PixelGAN, 1x1), and `image` (n_layers 5: 286x286, the paper's "ImageGAN" for 256 input).
"""

from __future__ import annotations

import keras
from keras import layers

from pix2pix_tf.config import ModelConfig
from pix2pix_tf.networks.layers import conv, leaky_relu, maybe_normalize, uses_bias


def patchgan(n_layers: int = 3, input_nc: int = 6, ndf: int = 64, norm: str = "batch",
             name: str = "patchgan") -> keras.Model:
    """C64-C128-C256-C512 (4x4 convs, padding 1; the last two at stride 1) then a 1-channel conv.

    The explicit padding of 1 keeps the reference's geometry: 256 -> 128 -> 64 -> 32 -> 31
    -> 30 for n_layers 3, each logit seeing a 70x70 patch of the input.
    """
    bias = uses_bias(norm)
    inputs = keras.Input((None, None, input_nc), name="pair")

    x = _padded_conv(inputs, ndf, strides=2, use_bias=True, name="c1")
    x = leaky_relu(name="c1_lrelu")(x)
    for n in range(1, n_layers + 1):
        strides = 2 if n < n_layers else 1
        x = _padded_conv(x, ndf * min(2**n, 8), strides, bias, name=f"c{n + 1}")
        x = maybe_normalize(x, norm, name=f"c{n + 1}_norm")
        x = leaky_relu(name=f"c{n + 1}_lrelu")(x)
    logits = _padded_conv(x, 1, strides=1, use_bias=True, name="logits")
    return keras.Model(inputs, logits, name=name)


def pixelgan(input_nc: int = 6, ndf: int = 64, norm: str = "batch", name: str = "pixelgan") -> keras.Model:
    """Three 1x1 convolutions: a real/fake verdict per pixel (receptive field 1x1)."""
    bias = uses_bias(norm)
    inputs = keras.Input((None, None, input_nc), name="pair")
    x = leaky_relu()(conv(ndf, 1, 1, use_bias=True)(inputs))
    x = leaky_relu()(maybe_normalize(conv(ndf * 2, 1, 1, bias)(x), norm))
    logits = conv(1, 1, 1, bias, name="logits")(x)
    return keras.Model(inputs, logits, name=name)


def _padded_conv(x: keras.KerasTensor, filters: int, strides: int, use_bias: bool,
                 name: str) -> keras.KerasTensor:
    x = layers.ZeroPadding2D(1, name=f"{name}_pad")(x)
    return conv(filters, 4, strides, use_bias, padding="valid", name=f"{name}_conv")(x)


def discriminator_input_channels(config: ModelConfig) -> int:
    """cGAN: D sees input and output; the unconditional ablation sees only the output."""
    return config.output_nc if config.unconditional_d else config.input_nc + config.output_nc


def build_discriminator(config: ModelConfig) -> keras.Model:
    """The discriminator named by `config.discriminator`."""
    input_nc = discriminator_input_channels(config)
    kwargs = dict(input_nc=input_nc, ndf=config.ndf, norm=config.norm)
    if config.discriminator == "pixel":
        return pixelgan(**kwargs)
    n_layers = {"basic": 3, "image": 5, "n_layers": config.n_layers_d}[config.discriminator]
    return patchgan(n_layers, name=f"patchgan_{n_layers}", **kwargs)
