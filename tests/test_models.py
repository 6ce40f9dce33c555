"""G and D match the reference layer for layer: parameter counts, shapes, receptive fields."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from pix2pix_tf import catalogue
from pix2pix_tf.config import ModelConfig
from pix2pix_tf.networks.discriminator import build_discriminator, discriminator_input_channels
from pix2pix_tf.networks.generator import build_generator

pytestmark = pytest.mark.graph_optimizer  # The values users get: Grappler on (tests/process_fixtures.py).


def trainable_count(model: keras.Model) -> int:
    """Counted as the reference counts: weights, biases, norm scale/offset; no moving statistics."""
    return sum(int(np.prod(v.shape)) for v in model.trainable_weights)


def layers_of(model: keras.Model, cls) -> list:
    return [layer for layer in model.layers if isinstance(layer, cls)]


@pytest.fixture(scope="module")
def unet_256() -> keras.Model:
    return build_generator(ModelConfig(generator="unet_256"))


def test_unet_256_parameter_count_and_shape(unet_256):
    assert trainable_count(unet_256) == 54_413_955
    out = unet_256(tf.random.uniform([1, 256, 256, 3], -1, 1), training=True)
    assert out.shape == (1, 256, 256, 3)
    assert float(tf.reduce_max(tf.abs(out))) <= 1.0  # tanh output


def test_unet_128_parameter_count():
    assert trainable_count(build_generator(ModelConfig(generator="unet_128"))) == 41_828_995


def test_unet_256_layer_order(unet_256):
    convs = [layer for layer in unet_256.layers if type(layer) is keras.layers.Conv2D]
    assert len(convs) == 8
    # No bias before batch norm, including e1 and the bottleneck, as the reference.
    assert not any(c.use_bias for c in convs)
    deconvs = layers_of(unet_256, keras.layers.Conv2DTranspose)
    assert [d.use_bias for d in deconvs] == [False] * 7 + [True]
    norms = {layer.name for layer in layers_of(unet_256, keras.layers.BatchNormalization)}
    assert "e1_norm" not in norms and "e8_norm" not in norms  # first layer and 1x1 bottleneck
    assert {f"e{i}_norm" for i in range(2, 8)} <= norms
    for bn in layers_of(unet_256, keras.layers.BatchNormalization):
        assert bn.momentum == pytest.approx(0.9) and bn.epsilon == pytest.approx(1e-5)
    for relu in layers_of(unet_256, keras.layers.LeakyReLU):
        assert relu.negative_slope == pytest.approx(0.2)
    dropouts = layers_of(unet_256, keras.layers.Dropout)
    assert [d.name for d in dropouts] == ["d2_dropout", "d3_dropout", "d4_dropout"]
    assert all(d.rate == 0.5 for d in dropouts)
    assert len(layers_of(unet_256, keras.layers.Concatenate)) == 7


def test_dropout_follows_4_8_16_decoder_outputs(unet_256):
    probe = keras.Model(unet_256.input, [unet_256.get_layer(f"d{i}_dropout").output for i in (2, 3, 4)])
    shapes = [t.shape[1] for t in probe(tf.zeros([1, 256, 256, 3]))]
    assert shapes == [4, 8, 16]


def test_weight_init_is_normal_0_02(unet_256):
    kernel = unet_256.get_layer("e4_conv").kernel.numpy()
    assert abs(kernel.mean()) < 1e-3 and kernel.std() == pytest.approx(0.02, rel=0.05)
    gamma = unet_256.get_layer("e4_norm").gamma.numpy()
    assert gamma.mean() == pytest.approx(1.0, abs=0.01) and gamma.std() == pytest.approx(0.02, rel=0.3)


def test_instance_norm_and_no_norm_use_conv_bias():
    model = build_generator(ModelConfig(generator="unet_128", ngf=4, norm="instance"))
    assert all(c.use_bias for c in layers_of(model, keras.layers.Conv2D))
    assert layers_of(model, keras.layers.GroupNormalization)
    model = build_generator(ModelConfig(generator="unet_128", ngf=4, norm="none"))
    assert not layers_of(model, keras.layers.BatchNormalization)


def test_encoder_decoder_has_no_skips():
    model = build_generator(ModelConfig(generator="encoder_decoder", ngf=4))
    assert not layers_of(model, keras.layers.Concatenate)
    assert model(tf.zeros([1, 256, 256, 3])).shape == (1, 256, 256, 3)


@pytest.mark.parametrize("name", ["resnet_6blocks", "resnet_9blocks"])
def test_resnet_generators_keep_the_size(name):
    model = build_generator(ModelConfig(generator=name, ngf=4))
    assert model(tf.zeros([1, 64, 64, 3])).shape == (1, 64, 64, 3)


@pytest.mark.parametrize("name", list(catalogue.GENERATORS))
def test_each_generator_is_built_from_its_catalogue_entry_and_takes_its_size_multiple(name):
    """`ModelConfig.size_multiple` (what config validation, the data pipeline, export and inference
    read) against the network itself: its stride-2 convolutions, and sides it maps to themselves
    (a multiple) or not (half a multiple more: a U-Net's skip fails to concatenate, a ResNet's
    output comes back another size)."""
    spec, config = catalogue.GENERATORS[name], ModelConfig(generator=name, ngf=1, dropout=False)
    model = build_generator(config)
    assert model.name == name
    strided = [layer for layer in layers_of(model, keras.layers.Conv2D)
               if not isinstance(layer, keras.layers.Conv2DTranspose) and tuple(layer.strides) == (2, 2)]
    assert 2 ** len(strided) == config.size_multiple
    assert len(layers_of(model, keras.layers.Add)) == spec.blocks
    assert bool(layers_of(model, keras.layers.Concatenate)) == (spec.family == "unet" and spec.skips)
    side = max(config.size_multiple, 8)  # A ResNet reflects by one pixel at a quarter of the side.
    assert model(tf.zeros([1, side, side, 3])).shape == (1, side, side, 3)
    other = side + config.size_multiple // 2
    try:
        shape = model(tf.zeros([1, other, other, 3])).shape
    except (ValueError, tf.errors.InvalidArgumentError):
        return
    assert shape != (1, other, other, 3)


def test_basic_discriminator_parameter_count_and_shape():
    model = build_discriminator(ModelConfig(discriminator="basic"))
    assert model.input_shape[-1] == 6  # conditional: input and output concatenated
    assert trainable_count(model) == 2_768_705
    assert model(tf.zeros([1, 256, 256, 6])).shape == (1, 30, 30, 1)


def test_unconditional_discriminator_sees_only_the_output():
    config = ModelConfig(unconditional_d=True)
    assert discriminator_input_channels(config) == 3
    assert build_discriminator(config).input_shape[-1] == 3


def measured_receptive_field(model: keras.Model, size: int, channels: int) -> tuple[int, int, int]:
    """(height, width, count) of the input pixels whose gradient w.r.t. the central logit is non-zero.

    Inference mode keeps batch norm per-pixel affine; in training mode batch statistics
    would couple every pixel to every logit.
    """
    x = tf.Variable(tf.random.uniform([1, size, size, channels], -1, 1))
    with tf.GradientTape() as tape:
        logits = model(x, training=False)
        h, w = logits.shape[1] // 2, logits.shape[2] // 2
        centre = logits[0, h, w, 0]
    grad = tape.gradient(centre, x).numpy()[0]
    touched = np.abs(grad).sum(axis=-1) > 0
    rows, cols = np.nonzero(touched.any(axis=1))[0], np.nonzero(touched.any(axis=0))[0]
    return rows.max() - rows.min() + 1, cols.max() - cols.min() + 1, int(touched.sum())


@pytest.mark.parametrize("discriminator,n_layers,size,expected", [
    ("basic", 3, 256, 70),
    ("pixel", 3, 64, 1),
    ("n_layers", 1, 128, 16),
    ("n_layers", 2, 128, 34),
    ("image", 5, 512, 286),
])
def test_discriminator_receptive_field(discriminator, n_layers, size, expected):
    model = build_discriminator(ModelConfig(discriminator=discriminator, n_layers_d=n_layers, ndf=4))
    assert measured_receptive_field(model, size, 6) == (expected, expected, expected * expected)
