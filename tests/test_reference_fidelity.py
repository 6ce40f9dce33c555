"""Layers that must compute what the authors' PyTorch code computes, checked against NumPy.

The NumPy side is written from PyTorch's definitions (NCHW, its kernel layouts, explicit
zero padding, the scatter definition of ConvTranspose2d, BatchNorm2d's running-stat
update), never from the Keras layer under test. Kernel layouts: Keras Conv2D (h, w, in, out)
and Conv2DTranspose (h, w, out, in) both become PyTorch's after `transpose(3, 2, 0, 1)`.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

from pix2pix_tf.config import ModelConfig
from pix2pix_tf.export import exporter as exporting
from pix2pix_tf.inference import generate as inference
from pix2pix_tf.networks import layers as blocks
from pix2pix_tf.networks.generator import build_generator

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


def np_norm(x: np.ndarray, model: keras.Model, name: str, norm: str) -> np.ndarray:
    """BatchNorm2d in eval mode (running statistics, affine) or InstanceNorm2d (per-image
    statistics, no affine), epsilon 1e-5."""
    if norm == "instance":
        mean, var = x.mean(axis=(2, 3), keepdims=True), x.var(axis=(2, 3), keepdims=True)
        return (x - mean) / np.sqrt(var + 1e-5)
    layer = model.get_layer(name)
    mean, var, gamma, beta = (v.numpy().astype(np.float64)[None, :, None, None] for v in
                              (layer.moving_mean, layer.moving_variance, layer.gamma, layer.beta))
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
    exporting.tflite_archive(model, inference.DETERMINISTIC, 16, 3).write_out(directory, verbose=False)
    path = tmp_path / "g.tflite"
    path.write_bytes(exporting.convert_tflite(directory, "float32", None, "float32"))
    ops = {op["op_name"] for op in Interpreter(model_path=str(path))._get_ops_details()}
    assert "TRANSPOSE_CONV" in ops and not [op for op in ops if op.startswith("Flex") or op == "CUSTOM"], ops
    x = np.random.default_rng(8).uniform(-1, 1, size=(1, 16, 16, 3)).astype(np.float32)
    expected = inference.generate(model, tf.constant(x), inference.DETERMINISTIC).numpy()
    np.testing.assert_allclose(exporting.TFLiteModel(str(path))(x), expected, atol=1e-4)


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


def test_synchronized_batch_norm_counts_the_global_batch_over_replicas():
    """Two replicas with 3 and 1 examples: statistics and n are the global batch's (4 x 5 x 7)."""
    import json

    data = np.random.default_rng(10).normal(0.5, 1.5, size=(4, 5, 7, 3))
    parts = [data[:3].tolist(), data[3:].tolist()]
    result = subprocess.run([sys.executable, "-c", _SYNCHRONIZED], input=json.dumps(parts), capture_output=True,
                            text=True, timeout=300, cwd=ROOT, env={**os.environ, "PYTHONPATH": ROOT})
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
