"""The discriminator D: the paper's PatchGAN (appendix 6.1.2) and its receptive-field variants.

D is conditional: it sees the input and the (real or generated) output concatenated on
channels and outputs a map of logits, one per overlapping patch. Names follow the authors'
code: `basic` (n_layers 3: 70x70 patches), `n_layers` (choose the depth), `pixel`
(PixelGAN, 1x1), and `image` (n_layers 5: 286x286, the paper's "ImageGAN" for 256 input).

`multiscale` is pix2pixHD's D (Wang et al., CVPR 2018, section 3.2): `num_d` PatchGANs of the
same architecture, scale i judging the pair downsampled i times, so that the coarser scales
see more of the image with the same weights per patch.
"""

from __future__ import annotations

import keras
from keras import layers, ops

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


def multiscale(num_d: int = 3, n_layers: int = 3, input_nc: int = 6, ndf: int = 64, norm: str = "batch",
               name: str = "multiscale") -> keras.Model:
    """pix2pixHD's multi-scale D: `num_d` PatchGANs, scale i on the pair downsampled i times.

    Outputs one map of logits per scale, the full-resolution scale first (the order of
    pix2pixHD's results list); the GAN loss sums over them.
    """
    inputs = keras.Input((None, None, input_nc), name="pair")
    scales = [patchgan(n_layers, input_nc, ndf, norm, name=f"scale{i}") for i in range(num_d)]
    pyramid = image_pyramid(inputs, num_d)
    return keras.Model(inputs, [scale(x) for scale, x in zip(scales, pyramid)], name=name)


def image_pyramid(x: keras.KerasTensor, levels: int) -> list[keras.KerasTensor]:
    """`x`, then `x` downsampled once, twice, ...: `levels` images in all."""
    pyramid = [x]
    for level in range(1, levels):
        pyramid.append(Downsample(name=f"downsample{level}")(pyramid[-1]))
    return pyramid


@keras.saving.register_keras_serializable(package="pix2pix_tf")
class Downsample(layers.Layer):
    """pix2pixHD's `AvgPool2d(3, stride=2, padding=1, count_include_pad=False)`.

    Each output is the mean of the pixels of its 3x3 window that lie inside the image: the
    zero padding is not counted. Keras' "same" pooling cannot stand in: on an even size it
    pads 0 before and 1 after, which shifts the windows by a pixel against the reference.
    """

    def call(self, x):
        pad = [[0, 0], [1, 1], [1, 1], [0, 0]]
        total = ops.average_pool(ops.pad(x, pad), 3, 2, padding="valid")
        inside = ops.average_pool(ops.pad(ops.ones_like(x[..., :1]), pad), 3, 2, padding="valid")
        return total / inside

    def compute_output_shape(self, input_shape):
        n, h, w, c = input_shape
        half = lambda d: None if d is None else (d - 1) // 2 + 1  # noqa: E731
        return (n, half(h), half(w), c)


def feature_discriminator(discriminator: keras.Model) -> keras.Model:
    """D's logits and its blocks' activations, per scale, for pix2pixHD's feature matching.

    A second functional Model over D's own layers and weights, so D itself (its outputs,
    checkpoints and parameter count) is unchanged. Outputs `[logits, features]`: `logits`
    one map per scale (full resolution first), `features[i]` the n_layers + 1 LeakyReLU
    outputs of scale i (pix2pixHD's intermediate outputs of a scale, all but its logits).
    A PatchGAN counts as one scale; PixelGAN has no such blocks (refused by the config).
    """
    scales = [layer for layer in discriminator.layers if isinstance(layer, keras.Model)]
    scales = [discriminator.get_layer(f"scale{i}") for i in range(len(scales))] or [discriminator]
    inputs = keras.Input(discriminator.input.shape[1:], name="pair")
    logits, features = [], []
    for scale, x in zip(scales, image_pyramid(inputs, len(scales))):
        blocks = [layer.output for layer in scale.layers if layer.name.endswith("_lrelu")]
        view = keras.Model(scale.input, [blocks, scale.output], name=f"{scale.name}_features")
        scale_features, scale_logits = view(x)
        logits.append(scale_logits)
        features.append(scale_features)
    return keras.Model(inputs, [logits, features], name=f"{discriminator.name}_features")


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
    if config.discriminator == "multiscale":
        return multiscale(config.num_d, config.patchgan_layers, **kwargs)
    return patchgan(config.patchgan_layers, name=f"patchgan_{config.patchgan_layers}", **kwargs)
