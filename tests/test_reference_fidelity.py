"""Layers that must compute what the authors' PyTorch code computes, checked against NumPy.

The NumPy side is written from PyTorch's definitions (NCHW, its kernel layouts, explicit
zero padding, the scatter definition of ConvTranspose2d, BatchNorm2d's running-stat
update), never from the Keras layer under test. Kernel layouts: Keras Conv2D (h, w, in, out)
and Conv2DTranspose (h, w, out, in) both become PyTorch's after `transpose(3, 2, 0, 1)`.
"""

from __future__ import annotations

import os
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

from pix2pix_tf.config import ModelConfig
from pix2pix_tf.export import tflite
from pix2pix_tf.inference import generate
from pix2pix_tf.inference.mode import DETERMINISTIC
from pix2pix_tf.inference.tflite_runner import TFLiteModel
from pix2pix_tf.networks import layers as blocks
from pix2pix_tf.networks.discriminator import build_discriminator
from pix2pix_tf.networks.generator import build_generator, unet

import forked

pytestmark = pytest.mark.graph_optimizer  # The values users get: Grappler on (tests/process_fixtures.py).

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# ----------------------------------------------------------------------------- NumPy, PyTorch's way


def torch_kernel(layer: keras.layers.Layer) -> np.ndarray:
    """A Keras Conv2D / Conv2DTranspose kernel in PyTorch's layout, float64."""
    return layer.kernel.numpy().astype(np.float64).transpose(3, 2, 0, 1)


def torch_bias(layer: keras.layers.Layer) -> np.ndarray | float:
    return layer.bias.numpy().astype(np.float64)[None, :, None, None] if layer.use_bias else 0.0


def np_conv2d(x: np.ndarray, weight: np.ndarray, bias, stride: int, padding: int) -> np.ndarray:
    """nn.Conv2d: x [N, C, H, W], weight [out, in, kh, kw]; zeros on every side, then
    out[n, o, y, x] = sum_{c, i, j} weight[o, c, i, j] * x_padded[n, c, y*stride + i, x*stride + j]."""
    x = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    _, _, kh, kw = weight.shape
    out_h, out_w = (x.shape[2] - kh) // stride + 1, (x.shape[3] - kw) // stride + 1
    out = np.zeros((x.shape[0], weight.shape[0], out_h, out_w))
    for i in range(kh):
        for j in range(kw):
            window = x[:, :, i:i + stride * (out_h - 1) + 1:stride, j:j + stride * (out_w - 1) + 1:stride]
            out += np.einsum("nchw,oc->nohw", window, weight[:, :, i, j])
    return out + bias


def np_conv_transpose2d(x: np.ndarray, weight: np.ndarray, bias, stride: int, padding: int,
                        output_padding: int) -> np.ndarray:
    """nn.ConvTranspose2d: weight [in, out, kh, kw]. Each input pixel (y, x) adds
    weight[c, :, i, j] * x[c, y, x] at (y*stride + i, x*stride + j) of the full output; PyTorch
    then keeps rows padding .. full - padding + output_padding - 1 (likewise columns)."""
    n, _, height, width = x.shape
    _, out_c, kh, kw = weight.shape
    full = np.zeros((n, out_c, (height - 1) * stride + kh, (width - 1) * stride + kw))
    for i in range(kh):
        for j in range(kw):
            full[:, :, i:i + stride * height:stride, j:j + stride * width:stride] += np.einsum(
                "nchw,co->nohw", x, weight[:, :, i, j])
    rows, cols = full.shape[2] - 2 * padding + output_padding, full.shape[3] - 2 * padding + output_padding
    return full[:, :, padding:padding + rows, padding:padding + cols] + bias


def nchw(x) -> np.ndarray:
    return np.asarray(x, np.float64).transpose(0, 3, 1, 2)


def nhwc(x: np.ndarray) -> np.ndarray:
    return x.transpose(0, 2, 3, 1)


def randomise(model: keras.Model, seed: int) -> None:
    """Weights far from their initialisers, so that no term of the forward pass hides: kernels
    ~ N(0, 1/fan_in), biases, batch-norm scale/offset and moving statistics all non-trivial."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        for variable in layer.weights:
            shape, name = tuple(variable.shape), variable.path.rsplit("/", 1)[-1]
            if name == "kernel":
                fan_in = np.prod(shape[:2]) * (shape[3] if isinstance(layer, keras.layers.Conv2DTranspose)
                                               else shape[2])
                value = rng.normal(0, 1 / np.sqrt(fan_in), shape)
            elif name in ("gamma", "moving_variance"):
                value = rng.uniform(0.5, 1.5, shape)
            else:  # bias, beta, moving_mean
                value = rng.normal(0, 0.2, shape)
            variable.assign(value.astype(np.float32))


# ----------------------------------------------------------------------------- ResNet geometry


def single_layer_model(build, channels: int) -> keras.Model:
    inputs = keras.Input((None, None, channels))
    return keras.Model(inputs, build(inputs))


@pytest.mark.parametrize("height,width", [(8, 6), (4, 4), (7, 5)])
def test_stride2_3x3_conv_pads_one_on_every_side_as_torch(height, width):
    model = single_layer_model(lambda x: blocks.torch_conv(x, 5, 3, 2, padding=1, use_bias=True, name="down"), 4)
    randomise(model, seed=1)
    x = np.random.default_rng(2).normal(size=(2, height, width, 4)).astype(np.float32)
    layer = model.get_layer("down")
    expected = np_conv2d(nchw(x), torch_kernel(layer), torch_bias(layer), stride=2, padding=1)
    np.testing.assert_allclose(model(x).numpy(), nhwc(expected), atol=1e-5)


@pytest.mark.parametrize("height,width", [(4, 3), (2, 2), (5, 6)])
def test_stride2_3x3_transposed_conv_keeps_torch_rows_1_to_2n(height, width):
    model = single_layer_model(lambda x: blocks.torch_conv_transpose(
        x, 5, 3, 2, padding=1, output_padding=1, use_bias=True, name="up"), 4)
    randomise(model, seed=3)
    x = np.random.default_rng(4).normal(size=(2, height, width, 4)).astype(np.float32)
    layer = model.get_layer("up")
    expected = np_conv_transpose2d(nchw(x), torch_kernel(layer), torch_bias(layer), 2, padding=1, output_padding=1)
    assert expected.shape[2:] == (2 * height, 2 * width)
    np.testing.assert_allclose(model(x).numpy(), nhwc(expected), atol=1e-5)


def np_norm(x: np.ndarray, model: keras.Model, name: str, norm: str, training: bool = False) -> np.ndarray:
    """BatchNorm2d (affine) in eval mode (running statistics) or train mode (the batch's mean
    and biased variance over N, H, W), or InstanceNorm2d (per-image statistics, no affine, no
    running statistics: the reference's `track_running_stats=False`, so either mode),
    epsilon 1e-5."""
    if norm == "instance":
        mean, var = x.mean(axis=(2, 3), keepdims=True), x.var(axis=(2, 3), keepdims=True)
        return (x - mean) / np.sqrt(var + 1e-5)
    layer = model.get_layer(name)
    gamma, beta = (v.numpy().astype(np.float64)[None, :, None, None] for v in (layer.gamma, layer.beta))
    if training:
        mean, var = x.mean(axis=(0, 2, 3), keepdims=True), x.var(axis=(0, 2, 3), keepdims=True)
    else:
        mean, var = (v.numpy().astype(np.float64)[None, :, None, None] for v in
                     (layer.moving_mean, layer.moving_variance))
    return (x - mean) / np.sqrt(var + 1e-5) * gamma + beta


def np_resnet(model: keras.Model, x: np.ndarray, n_blocks: int, norm: str) -> np.ndarray:
    """The reference's ResnetGenerator (no dropout, eval mode) in NumPy, NCHW."""
    def conv(y, name, stride=1, padding=0):
        layer = model.get_layer(name)
        return np_conv2d(y, torch_kernel(layer), torch_bias(layer), stride, padding)

    def reflect(y, p):
        return np.pad(y, ((0, 0), (0, 0), (p, p), (p, p)), mode="reflect")

    relu = lambda y: np.maximum(y, 0.0)  # noqa: E731
    y = relu(np_norm(conv(reflect(x, 3), "c7s1_conv"), model, "c7s1_norm", norm))
    for i in (1, 2):
        y = relu(np_norm(conv(y, f"down{i}_conv", stride=2, padding=1), model, f"down{i}_norm", norm))
    for i in range(1, n_blocks + 1):
        r = relu(np_norm(conv(reflect(y, 1), f"res{i}_conv1"), model, f"res{i}_norm1", norm))
        y = y + np_norm(conv(reflect(r, 1), f"res{i}_conv2"), model, f"res{i}_norm2", norm)
    for i in (1, 2):
        layer = model.get_layer(f"up{i}_deconv")
        y = np_conv_transpose2d(y, torch_kernel(layer), torch_bias(layer), 2, padding=1, output_padding=1)
        y = relu(np_norm(y, model, f"up{i}_norm", norm))
    return np.tanh(conv(reflect(y, 3), "out_conv"))


@pytest.mark.parametrize("norm", ["batch", "instance"])
def test_resnet_6blocks_equals_a_numpy_forward_pass_of_the_reference(norm):
    model = build_generator(ModelConfig(generator="resnet_6blocks", ngf=4, norm=norm, dropout=False))
    randomise(model, seed=5)
    x = np.random.default_rng(6).uniform(-1, 1, size=(2, 12, 16, 3)).astype(np.float32)
    expected = nhwc(np_resnet(model, nchw(x), 6, norm))
    assert 0.05 < np.abs(expected).mean() and np.abs(expected).max() < 0.999  # Neither flat nor saturated.
    np.testing.assert_allclose(model(x, training=False).numpy(), expected, atol=1e-4)


def test_resnet_generator_exports_to_builtin_tflite_ops(tmp_path):
    """Export lowers only 4x4 stride-2 "same" transposed convolutions; the ResNet's valid 3x3
    ones, their padding and cropping must still convert and give G's numbers."""
    from ai_edge_litert.interpreter import Interpreter

    model = build_generator(ModelConfig(generator="resnet_6blocks", ngf=4, dropout=False))
    randomise(model, seed=7)
    directory = str(tmp_path / "saved")
    tflite.tflite_endpoints(model, DETERMINISTIC, 16, 3).save(directory)
    path = tmp_path / "g.tflite"
    path.write_bytes(tflite.convert_tflite(directory, "float32", None, "float32"))
    ops = {op["op_name"] for op in Interpreter(model_path=str(path))._get_ops_details()}
    assert "TRANSPOSE_CONV" in ops and not [op for op in ops if op.startswith("Flex") or op == "CUSTOM"], ops
    x = np.random.default_rng(8).uniform(-1, 1, size=(1, 16, 16, 3)).astype(np.float32)
    expected = generate.generate(model, tf.constant(x), DETERMINISTIC).numpy()
    np.testing.assert_allclose(TFLiteModel(str(path))(x), expected, atol=1e-4)


# ----------------------------------------------------------------------------- U-Net and PatchGAN
#
# Whole-network forward passes of the reference's UnetGenerator, NLayerDiscriminator and
# PixelDiscriminator, written from their constructors in models/networks.py. The Keras model
# supplies only the weight values, looked up by layer name; every kernel's shape and every
# bias' presence is asserted against the reference's channel arithmetic and its use_bias rule
# (bias only with instance norm, plus the layers it builds with PyTorch's default bias=True),
# so a wrong width, a missing or extra bias, norm or skip cannot hide behind shared weights.
#
# Tolerance: Keras runs float32, NumPy float64. Each layer rounds to float32 (relative 6e-8)
# after sums of up to 16 * 64 products of O(1) terms (kernels ~ N(0, 1/fan_in) keep
# activations O(1)), about 1e-6 per layer; over up to 16 layers, with normalisation over as
# few as 4 values (which rescales errors by 1/std), the float32 error stays a few 1e-6
# (max seen: 2.9e-6 for unet_256 with batch statistics, 1.1e-6 on D's logits). A wrong
# padding, a swapped skip order, a missing norm or a wrong slope moves outputs by O(0.1):
# atol 1e-4 separates the two by more than an order of magnitude either way.


def leaky(y: np.ndarray) -> np.ndarray:
    return np.where(y > 0, y, 0.2 * y)  # nn.LeakyReLU(0.2, True)


def _conv(model: keras.Model, y: np.ndarray, name: str, c_in: int, c_out: int, bias: bool, kernel: int = 4,
          stride: int = 2, padding: int = 1) -> np.ndarray:
    """nn.Conv2d(c_in, c_out, kernel, stride, padding, bias=bias) with the Keras layer's values."""
    layer = model.get_layer(name)
    weight = torch_kernel(layer)
    assert weight.shape == (c_out, c_in, kernel, kernel) and layer.use_bias == bias, (name, weight.shape)
    return np_conv2d(y, weight, torch_bias(layer), stride, padding)


def _conv_transpose(model: keras.Model, y: np.ndarray, name: str, c_in: int, c_out: int, bias: bool) -> np.ndarray:
    """nn.ConvTranspose2d(c_in, c_out, kernel_size=4, stride=2, padding=1, bias=bias)."""
    layer = model.get_layer(name)
    weight = torch_kernel(layer)
    assert weight.shape == (c_in, c_out, 4, 4) and layer.use_bias == bias, (name, weight.shape)
    return np_conv_transpose2d(y, weight, torch_bias(layer), 2, padding=1, output_padding=0)


def reference_unet_blocks(num_downs: int, input_nc: int, output_nc: int, ngf: int) -> list[dict]:
    """UnetGenerator.__init__'s UnetSkipConnectionBlocks, outermost first: (outer_nc, inner_nc,
    input_nc), which end is which, and use_dropout (the num_downs - 5 blocks built in its loop)."""
    inner = [dict(outer=ngf * 8, inner=ngf * 8, innermost=True, dropout=False)]
    inner += [dict(outer=ngf * 8, inner=ngf * 8, dropout=True) for _ in range(num_downs - 5)]
    inner += [dict(outer=ngf * 4, inner=ngf * 8), dict(outer=ngf * 2, inner=ngf * 4), dict(outer=ngf, inner=ngf * 2)]
    blocks_ = [dict(outer=output_nc, inner=ngf, input=input_nc, outermost=True)] + inner[::-1]
    for block in blocks_:
        block.setdefault("input", block["outer"])  # input_nc=None: input_nc = outer_nc.
        for key in ("outermost", "innermost", "dropout"):
            block.setdefault(key, False)
    assert len(blocks_) == num_downs  # Each block downsamples once.
    return blocks_


def np_unet(model: keras.Model, x: np.ndarray, num_downs: int, ngf: int, norm: str, training: bool,
            input_nc: int = 3, output_nc: int = 3) -> np.ndarray:
    """The reference's UnetGenerator without dropout, NCHW. Block `level` (0 = outermost) is
    Keras' e{level+1} on the way down and d{num_downs-level} (out_deconv for level 0) up."""
    bias = norm == "instance"
    blocks_ = reference_unet_blocks(num_downs, input_nc, output_nc, ngf)
    relu = lambda y: np.maximum(y, 0.0)  # noqa: E731

    def forward(y: np.ndarray, level: int) -> np.ndarray:  # UnetSkipConnectionBlock.forward
        b = blocks_[level]
        if not b["outermost"]:
            # downrelu is nn.LeakyReLU(0.2, inplace=True): it overwrites the block's input, so
            # torch.cat([x, self.model(x)], 1) below concatenates LeakyReLU(x), not x. Its only
            # reader is the enclosing block's in-place uprelu, and ReLU(LeakyReLU(x)) = ReLU(x):
            # the network computes what the un-mutated skip would give. Kept as PyTorch runs it.
            y = leaky(y)
        h = _conv(model, y, f"e{level + 1}_conv", b["input"], b["inner"], bias)
        if not (b["outermost"] or b["innermost"]):
            h = np_norm(h, model, f"e{level + 1}_norm", norm, training)
        if not b["innermost"]:
            h = forward(h, level + 1)  # The submodule returns cat([its input, its output]).
        h = relu(h)
        up_in = b["inner"] if b["innermost"] else 2 * b["inner"]
        if b["outermost"]:  # ConvTranspose2d(inner_nc * 2, outer_nc, ...) with PyTorch's default bias.
            return np.tanh(_conv_transpose(model, h, "out_deconv", up_in, b["outer"], True))
        name = f"d{num_downs - level}"
        h = np_norm(_conv_transpose(model, h, f"{name}_deconv", up_in, b["outer"], bias), model, f"{name}_norm",
                    norm, training)
        return np.concatenate([y, h], axis=1)  # The encoder side first.

    return forward(x, 0)


def assert_close(got: np.ndarray, expected: np.ndarray, atol: float = 1e-4) -> float:
    difference = float(np.abs(got - expected).max())
    np.testing.assert_allclose(got, expected, atol=atol, rtol=0)
    return difference


@pytest.mark.parametrize("training", [False, True], ids=["inference", "training"])
@pytest.mark.parametrize("norm", ["batch", "instance"])
def test_unet_equals_a_numpy_forward_pass_of_the_reference(norm, training):
    """unet(5): the smallest U-Net the reference builds (num_downs - 5 = 0 middle blocks), with
    every kind of block: outermost, three with norm on both paths, innermost. 32 x 64 reaches
    1 x 2 at the bottleneck; non-square so that no height/width mix-up cancels out."""
    model = unet(5, ngf=4, norm=norm, dropout=False)
    assert not [la for la in model.layers if isinstance(la, keras.layers.Dropout)]
    randomise(model, seed=11)
    x = np.random.default_rng(12).uniform(-1, 1, size=(2, 32, 64, 3)).astype(np.float32)
    expected = nhwc(np_unet(model, nchw(x), 5, 4, norm, training))
    assert 0.05 < np.abs(expected).mean() and np.abs(expected).max() < 0.999  # Neither flat nor saturated.
    assert_close(model(x, training=training).numpy(), expected)


@pytest.mark.parametrize("training", [False, True], ids=["inference", "training"])
@pytest.mark.parametrize("generator,num_downs", [("unet_128", 7), ("unet_256", 8)])
def test_unet_128_and_256_equal_a_numpy_forward_pass_of_the_reference(generator, num_downs, training):
    """The real generators (1 and 3 middle 8ngf blocks) through build_generator, at ngf 2 and the
    full 128 / 256 input, batch norm: the same code path as unet(5) with more middle blocks."""
    model = build_generator(ModelConfig(generator=generator, ngf=2, dropout=False))
    randomise(model, seed=13)
    x = np.random.default_rng(14).uniform(-1, 1, size=(2, 2**num_downs, 2**num_downs, 3)).astype(np.float32)
    expected = nhwc(np_unet(model, nchw(x), num_downs, 2, "batch", training))
    assert 0.05 < np.abs(expected).mean() and np.abs(expected).max() < 0.999
    assert_close(model(x, training=training).numpy(), expected)


@pytest.mark.parametrize("num_downs", [5, 6, 7, 8])
def test_unet_dropout_sits_where_the_reference_puts_it(num_downs):
    """Dropout(0.5) ends exactly the reference's use_dropout blocks (those of its num_downs - 5
    loop), after their up-norm and before the concatenation; nowhere else."""
    model = unet(num_downs, ngf=2, dropout=True)
    expected = {f"d{num_downs - level}_dropout" for level, b in
                enumerate(reference_unet_blocks(num_downs, 3, 3, 2)) if b["dropout"]}
    dropouts = [la for la in model.layers if isinstance(la, keras.layers.Dropout)]
    assert {la.name for la in dropouts} == expected and len(expected) == num_downs - 5
    for layer in dropouts:
        name = layer.name.removesuffix("_dropout")
        assert layer.rate == 0.5
        assert layer.input is model.get_layer(f"{name}_norm").output
        assert model.get_layer(f"{name}_skip").input[1] is layer.output


def np_nlayer_discriminator(model: keras.Model, x: np.ndarray, n_layers: int, ndf: int, norm: str,
                            training: bool) -> np.ndarray:
    """The reference's NLayerDiscriminator, NCHW; Keras names its convolutions c1 .. c{n_layers+1}
    and logits, its norms c2_norm .. c{n_layers+1}_norm."""
    bias = norm == "instance"
    y = leaky(_conv(model, x, "c1_conv", x.shape[1], ndf, True))  # PyTorch's default bias=True.
    nf_mult = 1
    for n in range(1, n_layers):
        nf_mult_prev, nf_mult = nf_mult, min(2**n, 8)
        y = _conv(model, y, f"c{n + 1}_conv", ndf * nf_mult_prev, ndf * nf_mult, bias, stride=2)
        y = leaky(np_norm(y, model, f"c{n + 1}_norm", norm, training))
    nf_mult_prev, nf_mult = nf_mult, min(2**n_layers, 8)
    y = _conv(model, y, f"c{n_layers + 1}_conv", ndf * nf_mult_prev, ndf * nf_mult, bias, stride=1)
    y = leaky(np_norm(y, model, f"c{n_layers + 1}_norm", norm, training))
    return _conv(model, y, "logits_conv", ndf * nf_mult, 1, True, stride=1)


def np_pixel_discriminator(model: keras.Model, x: np.ndarray, ndf: int, norm: str, training: bool) -> np.ndarray:
    """The reference's PixelDiscriminator: 1x1 convolutions, the first with PyTorch's default
    bias, the other two with use_bias. Keras leaves the first two and the norm unnamed: taken
    in graph order (and exactly that many of each)."""
    bias = norm == "instance"
    convs = [la.name for la in model.layers if isinstance(la, keras.layers.Conv2D)]
    norms = [la.name for la in model.layers
             if isinstance(la, (keras.layers.BatchNormalization, keras.layers.GroupNormalization))]
    assert len(convs) == 3 and convs[2] == "logits" and len(norms) == 1, (convs, norms)
    y = leaky(_conv(model, x, convs[0], x.shape[1], ndf, True, kernel=1, stride=1, padding=0))
    y = _conv(model, y, convs[1], ndf, ndf * 2, bias, kernel=1, stride=1, padding=0)
    y = leaky(np_norm(y, model, norms[0], norm, training))
    return _conv(model, y, convs[2], ndf * 2, 1, bias, kernel=1, stride=1, padding=0)


# (discriminator, n_layers_d, height, width): every 4x4 convolution keeps >= 1 output. n_layers
# stride-2 halvings then two stride-1 convolutions (-1 each): 1 x 2 logits at n_layers 4 and 5
# (96 x 128 is the smallest height for n_layers 5: 96 / 32 = 3 -> 2 -> 1). 21 x 26 (odd) checks
# PyTorch's floor((n + 2 - 4) / 2) + 1.
DISCRIMINATORS = [("n_layers", 1, 20, 24), ("n_layers", 2, 21, 26), ("basic", 3, 40, 48), ("n_layers", 4, 48, 64),
                  ("image", 5, 96, 128), ("pixel", 3, 9, 11)]


@pytest.mark.parametrize("training", [False, True], ids=["inference", "training"])
@pytest.mark.parametrize("norm", ["batch", "instance"])
@pytest.mark.parametrize("discriminator,n_layers,height,width", DISCRIMINATORS,
                         ids=[f"{d}{n}" if d == "n_layers" else d for d, n, _, _ in DISCRIMINATORS])
def test_discriminator_equals_a_numpy_forward_pass_of_the_reference(discriminator, n_layers, height, width, norm,
                                                                    training):
    """D as the trainer builds it (build_discriminator, 6-channel pair), batch 2."""
    ndf = 4
    model = build_discriminator(ModelConfig(discriminator=discriminator, n_layers_d=n_layers, ndf=ndf, norm=norm))
    randomise(model, seed=15 + n_layers)
    x = np.random.default_rng(16).uniform(-1, 1, size=(2, height, width, 6)).astype(np.float32)
    if discriminator == "pixel":
        expected = np_pixel_discriminator(model, nchw(x), ndf, norm, training)
        assert expected.shape[2:] == (height, width)
    else:
        expected = np_nlayer_discriminator(model, nchw(x), n_layers, ndf, norm, training)
        assert min(expected.shape[2:]) >= 1
    expected = nhwc(expected)
    assert np.abs(expected).max() > 0.25  # Logits well above the tolerance, not a map of ~0.
    assert_close(model(x, training=training).numpy(), expected)



# ----------------------------------------------------------------------------- Batch norm


@pytest.mark.parametrize("norm", ["batch", "syncbatch"])  # syncbatch here: one device, no strategy.
def test_batch_norm_moving_variance_is_unbiased_as_torch_running_var(norm):
    layer = blocks.normalization(norm)
    layer.build((None, 5, 7, 3))
    layer.gamma.assign([0.5, 1.0, 2.0])
    layer.beta.assign([0.1, -0.2, 0.3])
    rng = np.random.default_rng(9)
    batches = [rng.normal(1.0, 2.0, size=(2, 5, 7, 3)).astype(np.float32) for _ in range(3)]
    running_mean, running_var = np.zeros(3), np.ones(3)
    graph_call = tf.function(lambda x: layer(x, training=True))
    for step, x in enumerate(batches):
        output = (layer(x, training=True) if step == 0 else graph_call(x)).numpy()
        data = x.astype(np.float64)
        mean, biased = data.mean(axis=(0, 1, 2)), data.var(axis=(0, 1, 2))
        n = data.size // 3
        running_mean = 0.9 * running_mean + 0.1 * mean
        running_var = 0.9 * running_var + 0.1 * biased * n / (n - 1)
        np.testing.assert_allclose(layer.moving_mean.numpy(), running_mean, atol=1e-6)
        np.testing.assert_allclose(layer.moving_variance.numpy(), running_var, atol=1e-6)
        normalised = (data - mean) / np.sqrt(biased + 1e-5) * [0.5, 1.0, 2.0] + [0.1, -0.2, 0.3]
        np.testing.assert_allclose(output, normalised, atol=1e-5)
    inference_output = layer(batches[0], training=False).numpy()
    expected = (batches[0] - running_mean) / np.sqrt(running_var + 1e-5) * [0.5, 1.0, 2.0] + [0.1, -0.2, 0.3]
    np.testing.assert_allclose(inference_output, expected, atol=1e-5)


def _torch_batch_norm_gradients(x: np.ndarray, gamma: np.ndarray, upstream: np.ndarray) -> tuple:
    """d loss / d (x, gamma, beta) of BatchNorm2d in training mode, loss = sum(upstream * output):
    the textbook backward pass of y = gamma * (x - mean) / sqrt(biased var + eps) + beta."""
    axes = (0, 1, 2)
    n = x.size // x.shape[-1]
    inverse_std = 1.0 / np.sqrt(x.var(axis=axes) + 1e-5)
    normalised = (x - x.mean(axis=axes)) * inverse_std
    d_gamma, d_beta = (upstream * normalised).sum(axis=axes), upstream.sum(axis=axes)
    d_x = gamma * inverse_std / n * (n * upstream - d_beta - normalised * d_gamma)
    return d_x, d_gamma, d_beta


@pytest.mark.parametrize("norm, dtype", [("batch", "float32"), ("batch", "float64"), ("syncbatch", "float32")])
def test_batch_norm_training_gradients_are_torch_batch_norm2d_s(norm, dtype):
    """The fused kernel (float32) and the formula written out (float64, synchronized) differentiate
    alike, and as BatchNorm2d: G's and D's gradients all pass through these layers."""
    layer = blocks.normalization(norm)
    layer.dtype_policy = keras.DTypePolicy(dtype)
    layer.build((None, 6, 5, 3))
    gamma = np.array([0.5, 1.0, 2.0])
    layer.gamma.assign(gamma)
    rng = np.random.default_rng(11)
    x, upstream = rng.normal(0.5, 2.0, size=(2, 6, 5, 3)), rng.normal(size=(2, 6, 5, 3))

    @tf.function
    def gradients(inputs):
        with tf.GradientTape() as tape:
            tape.watch(inputs)
            loss = tf.reduce_sum(layer(inputs, training=True) * upstream.astype(dtype))
        return tape.gradient(loss, [inputs, layer.gamma, layer.beta])

    got = gradients(tf.constant(x.astype(dtype)))
    want = _torch_batch_norm_gradients(x.astype(dtype).astype(np.float64), gamma, upstream.astype(dtype))
    tolerance = 1e-12 if dtype == "float64" else 2e-5
    for name, g, w in zip(("x", "gamma", "beta"), got, want):
        np.testing.assert_allclose(g.numpy(), w, atol=tolerance * np.abs(w).max(), err_msg=name)


@pytest.mark.parametrize("norm, dtype, spatial, fused", [
    ("batch", "float32", (5, 7), True), ("batch", "float32", (None, None), True),
    ("batch", "float32", (1, 1), True), ("batch", "mixed_bfloat16", (5, 7), False),
    ("batch", "float64", (5, 7), False), ("syncbatch", "float32", (5, 7), False)])
def test_batch_norm_trains_with_one_fused_op_where_the_kernel_computes_the_reference(norm, dtype, spatial, fused):
    """One op (and one gradient op) in place of the formula's dozen, the moving averages' update
    included: a training step traces and is optimised faster. 16-bit activations, float64 and
    cross-replica moments keep the formula."""
    layer = blocks.normalization(norm)
    layer.dtype_policy = keras.DTypePolicy(dtype)
    layer.build((None, *spatial, 3))
    inputs = tf.TensorSpec((2, *spatial, 3), layer.compute_dtype)
    graph = tf.function(lambda x: layer(x, training=True)).get_concrete_function(inputs).graph
    op_types = {op.type for op in graph.get_operations()}
    assert ("FusedBatchNormV3" in op_types) == fused
    if fused:  # No arithmetic beside the kernel: it also moves the estimates (by 1 - momentum = 0.1).
        assert not op_types & {"Mul", "AddV2", "Sub", "Cast"}, op_types
        (kernel,) = [op for op in graph.get_operations() if op.type == "FusedBatchNormV3"]
        assert kernel.get_attr("exponential_avg_factor") == pytest.approx(0.1)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("static", [True, False], ids=["static-shape", "shape-known-at-run-time"])
def test_batch_norm_of_one_value_per_channel_moves_the_variance_towards_0(dtype, static):
    """PyTorch refuses to train on one value per channel; here its n / (n - 1) is taken as 0, not NaN."""
    layer = blocks.normalization("batch")
    layer.dtype_policy = keras.DTypePolicy(dtype)
    layer.build((None, None, None, 3))
    x = np.array([[[[1.0, -2.0, 3.0]]]], dtype)
    spec = tf.TensorSpec(x.shape if static else (None, None, None, 3), dtype)
    output = tf.function(lambda inputs: layer(inputs, training=True), input_signature=[spec])(x)
    np.testing.assert_allclose(layer.moving_mean.numpy(), 0.1 * x[0, 0, 0], rtol=1e-6)
    np.testing.assert_array_equal(layer.moving_variance.numpy(), np.full(3, 0.9, dtype))
    np.testing.assert_array_equal(output.numpy(), np.zeros_like(x))  # x - mean = 0; beta is 0.


def test_checkpoint_written_with_keras_batch_norm_loads(tmp_path, monkeypatch):
    with monkeypatch.context() as patch:
        patch.setattr(blocks, "TorchBatchNormalization", keras.layers.BatchNormalization)
        old = build_generator(ModelConfig(generator="unet_128", ngf=4))
    assert not [la for la in old.layers if isinstance(la, blocks.TorchBatchNormalization)]
    old(tf.random.normal([2, 128, 128, 3]), training=True)  # Moving statistics away from 0 and 1.
    path = tf.train.Checkpoint(generator=old).write(str(tmp_path / "ckpt"))

    new = build_generator(ModelConfig(generator="unet_128", ngf=4))
    assert [la for la in new.layers if isinstance(la, blocks.TorchBatchNormalization)]
    tf.train.Checkpoint(generator=new).read(path).assert_existing_objects_matched()
    assert [w.path for w in new.weights] == [w.path for w in old.weights]
    for before, after in zip(old.weights, new.weights):
        np.testing.assert_array_equal(after.numpy(), before.numpy(), err_msg=after.path)


def test_batch_norm_layer_survives_keras_serialisation(tmp_path):
    inputs = keras.Input((4, 4, 2))
    model = keras.Model(inputs, blocks.normalization("syncbatch", name="bn")(inputs))
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    layer = loaded.get_layer("bn")
    assert isinstance(layer, blocks.TorchBatchNormalization) and layer.synchronized
    assert (layer.momentum, layer.epsilon) == pytest.approx((0.9, 1e-5))


_SYNCHRONIZED = textwrap.dedent("""
    import json, sys
    import numpy as np
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from pix2pix_tf.networks.layers import normalization
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    parts = [np.asarray(p, np.float32) for p in json.loads(sys.stdin.read())]
    with strategy.scope():
        layer = normalization("syncbatch")
        layer.build((None,) + parts[0].shape[1:])
        layer.gamma.assign([0.5, 1.0, 2.0])
        layer.beta.assign([0.1, -0.2, 0.3])
    values = strategy.experimental_distribute_values_from_function(
        lambda context: tf.constant(parts[context.replica_id_in_sync_group]))
    outputs = tf.function(lambda x: strategy.run(lambda y: layer(y, training=True), args=(x,)))(values)
    print(json.dumps({
        "outputs": [o.numpy().tolist() for o in strategy.experimental_local_results(outputs)],
        "mean": [v.numpy().tolist() for v in strategy.experimental_local_results(layer.moving_mean.value)],
        "var": [v.numpy().tolist() for v in strategy.experimental_local_results(layer.moving_variance.value)],
    }))
""")


@pytest.mark.slow
def test_synchronized_batch_norm_counts_the_global_batch_over_replicas():
    """Two replicas with 3 and 1 examples: statistics and n are the global batch's (4 x 5 x 7)."""
    import json

    data = np.random.default_rng(10).normal(0.5, 1.5, size=(4, 5, 7, 3))
    parts = [data[:3].tolist(), data[3:].tolist()]
    result = forked.run([sys.executable, "-c", _SYNCHRONIZED], input=json.dumps(parts), timeout=300, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    got = json.loads(result.stdout.strip().splitlines()[-1])
    data = np.asarray(data, np.float32).astype(np.float64)
    mean, biased = data.mean(axis=(0, 1, 2)), data.var(axis=(0, 1, 2))
    n = data.size // 3
    for replica in range(2):
        np.testing.assert_allclose(got["mean"][replica], 0.1 * mean, atol=1e-6)
        np.testing.assert_allclose(got["var"][replica], 0.9 + 0.1 * biased * n / (n - 1), atol=1e-6)
    normalised = (data - mean) / np.sqrt(biased + 1e-5) * [0.5, 1.0, 2.0] + [0.1, -0.2, 0.3]
    np.testing.assert_allclose(np.concatenate([np.asarray(o) for o in got["outputs"]]), normalised, atol=1e-5)
