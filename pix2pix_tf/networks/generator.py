"""The generator G: the paper's U-Net (appendix 6.1.1), its skip-less ablation, and ResNets.

The generators by name are `pix2pix_tf.catalogue.GENERATORS` (the authors' names: `unet_256`,
8 downsamplings, the default; `unet_128`, 7; `encoder_decoder`, unet_256 without skips, paper
Table 2; `resnet_9blocks` / `resnet_6blocks`, Johnson et al.): each entry's family, depth and
blocks are what is built here, so the name, the network and the sizes it takes cannot drift
apart. The noise z of the paper is the decoder's dropout.
"""

from __future__ import annotations

import keras
from keras import layers

from pix2pix_tf.catalogue import GENERATORS
from pix2pix_tf.config import ModelConfig
from pix2pix_tf.networks.layers import (
    ReflectionPadding2D,
    conv,
    conv_transpose,
    leaky_relu,
    maybe_normalize,
    torch_conv,
    torch_conv_transpose,
    uses_bias,
)


def unet(num_downs: int, input_nc: int = 3, output_nc: int = 3, ngf: int = 64, norm: str = "batch",
         dropout: bool = True, skips: bool = True, name: str = "unet") -> keras.Model:
    """U-Net with `num_downs` 4x4 stride-2 convolutions: a 2**num_downs input reaches 1x1.

    Encoder: C64-C128-C256-C512-C512-...; the first layer has no norm and no activation
    before it, the 1x1 bottleneck has no norm (batch norm over one 1x1 value is zero).
    Decoder: ReLU -> ConvTranspose -> norm [-> Dropout 0.5] then concatenation with the
    mirrored encoder activation. Dropout follows the decoder layers right after the
    innermost one (outputs 4x4, 8x8, 16x16 for unet_256), as the authors' PyTorch code.
    """
    bias = uses_bias(norm)
    filters = [ngf * min(2**i, 8) for i in range(num_downs)]
    inputs = keras.Input((None, None, input_nc), name="input_image")

    x = inputs
    encoder = []
    for i, f in enumerate(filters):
        if i > 0:
            x = leaky_relu(name=f"e{i + 1}_lrelu")(x)
        x = conv(f, 4, 2, bias, name=f"e{i + 1}_conv")(x)
        if 0 < i < num_downs - 1:
            x = maybe_normalize(x, norm, name=f"e{i + 1}_norm")
        encoder.append(x)

    for depth, i in enumerate(reversed(range(num_downs - 1))):
        x = layers.ReLU(name=f"d{depth + 1}_relu")(x)
        x = conv_transpose(filters[i], 4, 2, bias, name=f"d{depth + 1}_deconv")(x)
        x = maybe_normalize(x, norm, name=f"d{depth + 1}_norm")
        if dropout and 1 <= depth <= num_downs - 5:
            x = layers.Dropout(0.5, name=f"d{depth + 1}_dropout")(x)
        if skips:
            x = layers.Concatenate(name=f"d{depth + 1}_skip")([encoder[i], x])

    x = layers.ReLU(name="out_relu")(x)
    x = conv_transpose(output_nc, 4, 2, use_bias=True, name="out_deconv")(x)
    outputs = layers.Activation("tanh", name="out_tanh")(x)
    return keras.Model(inputs, outputs, name=name)


def resnet(n_blocks: int, input_nc: int = 3, output_nc: int = 3, ngf: int = 64, norm: str = "batch",
           dropout: bool = True, n_downsampling: int = 2, name: str = "resnet") -> keras.Model:
    """Johnson et al.'s generator: c7s1-64, d128, d256, n_blocks x R256, u128, u64, c7s1-3
    (with the reference's n_downsampling=2; each more doubles the filters once more).

    dk is the reference's Conv2d(3x3, stride 2, padding 1) and uk its ConvTranspose2d(3x3,
    stride 2, padding 1, output_padding 1), with the padding and cropping spelled out:
    TensorFlow's "same" would shift every down- and upsampling by a pixel.
    """
    bias = uses_bias(norm)
    inputs = keras.Input((None, None, input_nc), name="input_image")

    x = ReflectionPadding2D(3, name="c7s1_pad")(inputs)
    x = conv(ngf, 7, 1, bias, padding="valid", name="c7s1_conv")(x)
    x = layers.ReLU(name="c7s1_relu")(maybe_normalize(x, norm, name="c7s1_norm"))
    for i in range(1, n_downsampling + 1):
        x = torch_conv(x, ngf * 2**i, 3, 2, padding=1, use_bias=bias, name=f"down{i}_conv")
        x = layers.ReLU(name=f"down{i}_relu")(maybe_normalize(x, norm, name=f"down{i}_norm"))
    for i in range(1, n_blocks + 1):
        x = _residual_block(x, ngf * 2**n_downsampling, norm, bias, dropout, name=f"res{i}")
    for i in range(1, n_downsampling + 1):
        x = torch_conv_transpose(x, ngf * 2**(n_downsampling - i), 3, 2, padding=1, output_padding=1,
                                 use_bias=bias, name=f"up{i}_deconv")
        x = layers.ReLU(name=f"up{i}_relu")(maybe_normalize(x, norm, name=f"up{i}_norm"))
    x = ReflectionPadding2D(3, name="out_pad")(x)
    x = conv(output_nc, 7, 1, use_bias=True, padding="valid", name="out_conv")(x)
    outputs = layers.Activation("tanh", name="out_tanh")(x)
    return keras.Model(inputs, outputs, name=name)


def _residual_block(x: keras.KerasTensor, filters: int, norm: str, bias: bool, dropout: bool,
                    name: str) -> keras.KerasTensor:
    y = ReflectionPadding2D(1, name=f"{name}_pad1")(x)
    y = conv(filters, 3, 1, bias, padding="valid", name=f"{name}_conv1")(y)
    y = layers.ReLU(name=f"{name}_relu")(maybe_normalize(y, norm, name=f"{name}_norm1"))
    if dropout:
        y = layers.Dropout(0.5, name=f"{name}_dropout")(y)
    y = ReflectionPadding2D(1, name=f"{name}_pad2")(y)
    y = conv(filters, 3, 1, bias, padding="valid", name=f"{name}_conv2")(y)
    y = maybe_normalize(y, norm, name=f"{name}_norm2")
    return layers.Add(name=f"{name}_add")([x, y])


def build_generator(config: ModelConfig) -> keras.Model:
    """The generator named by `config.generator`, as its catalogue entry describes it."""
    spec = GENERATORS[config.generator]
    options = dict(input_nc=config.input_nc, output_nc=config.output_nc, ngf=config.ngf, norm=config.norm,
                   dropout=config.dropout, name=config.generator)
    if spec.family == "unet":
        return unet(spec.downsamplings, skips=spec.skips, **options)
    return resnet(spec.blocks, n_downsampling=spec.downsamplings, **options)
