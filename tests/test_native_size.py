"""Translating at an image's own size (`--native_size`, `inference.geometry`): reflection padding
to the generator's size multiple and the crop back, checked against NumPy; translate, evaluate,
the demo and the SavedModel's `translate_native` signature on runs trained here on a rectangular
folder dataset; the tile-consistency of the padded translation; TFLite's fixed size."""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf

from pix2pix_tf import images
from pix2pix_tf.config import ModelConfig
from pix2pix_tf.errors import ConfigError
from pix2pix_tf.inference import generate, geometry
from pix2pix_tf.inference.checkpoint_source import load_generator
from pix2pix_tf.inference.files import TranslateConfig, translate_files
from pix2pix_tf.inference.mode import DETERMINISTIC, InferenceMode
from pix2pix_tf.inference.request import ModelRequest
from pix2pix_tf.networks.generator import build_generator

from conftest import tiny_config
from export_helpers import exported, run
from programs import run_program

pytestmark = pytest.mark.graph_optimizer  # The values users get: Grappler on (tests/process_fixtures.py).

# Moving-average batch norm and no dropout: every output pixel is a fixed function of its
# neighbourhood, so tile consistency holds exactly (per-image statistics change with padding).
LOCAL = InferenceMode(dropout=False, batch_statistics=False)
# resnet_6blocks' reach from an output pixel to the input pixels it reads, in input pixels:
# c7s1 3 + down1 (3x3 s2) 1 + down2 (3x3 at stride 2) 2 + 12 residual 3x3 convs at stride 4 48
# + up1 (3x3 transposed, stride 4) 4 + up2 (stride 2) 2 + the last 7x7 3 = 63.
RESNET_REACH = 63
SIZES = [(37, 61), (61, 37), (1, 5), (48, 80)]  # Odd sides, both orientations, one row, a multiple of 4.


def numpy_native(generator, image: np.ndarray, multiple: int, mode=LOCAL) -> np.ndarray:
    """The native-size translation computed independently: np.pad(mode="reflect") at the bottom
    and right to the next multiple, the generator, the top-left crop."""
    height, width = image.shape[:2]
    padded_h, padded_w = geometry.padded_size(height, width, multiple)
    padded = np.pad(image, [(0, padded_h - height), (0, padded_w - width), (0, 0)], mode="reflect")
    return generate.generate(generator, tf.constant(padded[None]), mode).numpy()[0, :height, :width]


def write_png(path, array: np.ndarray) -> str:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tf.io.write_file(str(path), tf.io.encode_png(array))
    return str(path)


def random_pixels(height: int, width: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


# ----------------------------------------------------------------------------- the geometry


@pytest.mark.parametrize("height,width,multiple", [(37, 61, 128), (61, 37, 4), (1, 5, 4), (2, 3, 8), (48, 80, 4)])
def test_reflection_padding_is_numpys_reflect_even_past_one_reflection(height, width, multiple):
    image = np.random.default_rng(1).uniform(-1, 1, (2, height, width, 3)).astype(np.float32)
    got = geometry.pad(tf.constant(image), multiple).numpy()
    want_h, want_w = geometry.padded_size(height, width, multiple)
    expected = np.pad(image, [(0, 0), (0, want_h - height), (0, want_w - width), (0, 0)], mode="reflect")
    assert got.shape == expected.shape == (2, want_h, want_w, 3)
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(geometry.crop(tf.constant(got), height, width).numpy(), image)


def test_padded_size_and_the_size_multiples_of_the_generators():
    assert geometry.padded_size(37, 61, 128) == (128, 128)
    assert geometry.padded_size(129, 256, 128) == (256, 256)
    assert geometry.padded_size(61, 37, 4) == (64, 40)
    assert geometry.padded_size(1, 5, 4) == (8, 8)  # At least MIN_SIDE: resnet reflects at a quarter size.
    assert {name: ModelConfig(generator=name).size_multiple for name in
            ("unet_256", "unet_128", "encoder_decoder", "resnet_9blocks", "resnet_6blocks")} == {
        "unet_256": 256, "unet_128": 128, "encoder_decoder": 256, "resnet_9blocks": 4, "resnet_6blocks": 4}


def test_the_cap_applies_to_the_padded_size():
    geometry.check_padded_pixels(36, 60, 4, 36 * 60)  # Already a multiple: nothing added.
    with pytest.raises(images.ImageError, match=r"61x37 pads to 64x40 \(2560 pixels\).*--max_pixels"):
        geometry.check_padded_pixels(37, 61, 4, 2400)


@pytest.fixture(scope="module")
def resnet() -> tf.keras.Model:
    """resnet_6blocks (ngf 4) with random weights and random moving statistics."""
    generator = build_generator(ModelConfig(generator="resnet_6blocks", ngf=4, ndf=8))
    rng = np.random.default_rng(3)
    for layer in generator.layers:
        if isinstance(layer, tf.keras.layers.BatchNormalization):
            layer.moving_mean.assign(rng.normal(0, 0.1, layer.moving_mean.shape).astype(np.float32))
            layer.moving_variance.assign(rng.uniform(0.5, 2, layer.moving_variance.shape).astype(np.float32))
    return generator


def test_one_pixel_reaches_no_further_than_the_stated_reach(resnet):
    image = np.random.default_rng(4).uniform(-1, 1, (1, 160, 160, 3)).astype(np.float32)
    changed = image.copy()
    changed[0, 80, 80] = -image[0, 80, 80]
    diff = np.abs(generate.generate(resnet, tf.constant(changed), LOCAL).numpy()
                  - generate.generate(resnet, tf.constant(image), LOCAL).numpy()).max(axis=(0, 3))
    rows, cols = np.nonzero(diff > 0)
    assert rows.size and max(np.abs(rows - 80).max(), np.abs(cols - 80).max()) <= RESNET_REACH


def test_a_tile_translated_alone_equals_its_region_in_the_whole(resnet):
    whole = np.random.default_rng(5).uniform(-1, 1, (203, 245, 3)).astype(np.float32)
    top, left, height, width = 36, 52, 150, 171  # Offsets: multiples of 4 (the generator's stride grid).
    tile = whole[top:top + height, left:left + width]
    translator = geometry.native_translator(_translator(resnet))
    whole_out = translator(whole[None])[0]
    tile_out = translator(tile[None])[0]
    assert whole_out.shape[:2] == whole.shape[:2] and tile_out.shape[:2] == tile.shape[:2]
    m = RESNET_REACH + 1  # Away from the tile's borders by more than the reach.
    np.testing.assert_allclose(tile_out[m:-m, m:-m], whole_out[top + m:top + height - m, left + m:left + width - m],
                               atol=1e-5)
    # Within the reach the tile's own border (its padding) shows: the margin is needed.
    assert np.abs(tile_out[:4, :4] - whole_out[top:top + 4, left:left + 4]).max() > 1e-4
    np.testing.assert_allclose(whole_out, numpy_native(resnet, whole, 4), atol=1e-5)


def _translator(generator):
    from pix2pix_tf.inference.translator import Translator

    def call(image, index):
        return generate.generate(generator, tf.constant(image), LOCAL).numpy()

    return Translator("test resnet", 64, 3, 3, None, LOCAL, call, size_multiple=4)


# ----------------------------------------------------------------------------- trained runs


def rectangular_folder(root) -> str:
    """A/B trees of 48x80 pairs (the folder source's real layout): B is A's colours inverted."""
    for split, count in (("train", 2), ("test", 2)):
        for i in range(count):
            a = random_pixels(48, 80, seed=10 * i + len(split))
            write_png(os.path.join(root, "A", split, f"{i}.png"), a)
            write_png(os.path.join(root, "B", split, f"{i}.png"), 255 - a)
    return str(root)


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict:
    """Two steps of the real trainer on the rectangular folder: resnet_6blocks with
    --preprocess=none (trained at 48x80) and unet_128 with --preprocess=scale_width."""
    from pix2pix_tf.training.loop import train

    folder = rectangular_folder(tmp_path_factory.mktemp("rect"))
    dataset = f"folder:{folder}"
    found = {}
    for name, model, data in (
            ("none", dict(generator="resnet_6blocks", ngf=4), dict(preprocess="none")),
            ("scale_width", dict(generator="unet_128", ngf=8), dict(preprocess="scale_width", load_size=80,
                                                                   crop_size=128))):
        workdir = str(tmp_path_factory.mktemp(name))
        train(tiny_config(workdir, "", model=model, data=dict(dataset=dataset, data_dir=None, **data),
                          optim=dict(steps=2), run=dict(eval_examples=0)))
        found[name] = workdir
    found["folder"] = folder
    return found


@pytest.fixture(scope="module")
def loaded(runs):
    """`load_generator` of a run (generator, config, checkpoint), loaded once for the tests that
    compare with it: they only call the generator (`generate` writes none of its state)."""
    return functools.cache(lambda name: load_generator(runs[name]))


@pytest.mark.parametrize("run_name", ["none", "scale_width"])
def test_translate_keeps_each_images_size(runs, loaded, run_name, tmp_path):
    inputs = [write_png(tmp_path / "in" / f"{h}x{w}.png", random_pixels(h, w, seed=h)) for h, w in SIZES]
    result = translate_files(TranslateConfig(inputs=(str(tmp_path / "in"),), output_dir=str(tmp_path / "out"),
                                             model=ModelRequest.of(workdir=runs[run_name], native_size=True,
                                                                   mode=DETERMINISTIC), progress=False))
    assert not result.failed and len(result.written) == len(SIZES)
    generator, config, _ = loaded(run_name)
    multiple = config.model.size_multiple
    for (height, width), path in zip(SIZES, inputs):
        written = tf.io.decode_png(tf.io.read_file(str(tmp_path / "out" / os.path.basename(path)))).numpy()
        assert written.shape == (height, width, 3)
        pixels = images.to_signed(random_pixels(height, width, seed=height)).numpy()
        expected = images.to_uint8(numpy_native(generator, pixels, multiple, DETERMINISTIC)).numpy()
        assert np.abs(written.astype(int) - expected).max() <= 1  # Rounding of float differences.


@pytest.mark.slow
def test_translate_cli_native_size_and_its_refusals(runs, tmp_path):
    path = write_png(tmp_path / "in" / "odd.png", random_pixels(37, 61))
    result = run_program("translate", f"--workdir={runs['none']}", "--native_size", f"--output_dir={tmp_path / 'out'}",
                         "--noprogress", path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert tf.io.decode_png(tf.io.read_file(str(tmp_path / "out" / "odd.png"))).shape == (37, 61, 3)
    # Under the cap as decoded (2257 pixels), over it padded (64x40 = 2560): reported, not translated.
    config = TranslateConfig(inputs=(path,), output_dir=str(tmp_path / "capped"),
                             model=ModelRequest.of(workdir=runs["none"], native_size=True, max_pixels=2400),
                             progress=False)
    capped = translate_files(config)
    assert not capped.written and "pads to 64x40" in capped.failed[0][1]
    with pytest.raises(ConfigError, match="--image_size and --native_size"):
        translate_files(dataclasses.replace(config, model=dataclasses.replace(config.model, image_size=64)))


def test_evaluate_at_native_size_compares_with_the_target_at_its_size(runs, loaded, tmp_path):
    from pix2pix_tf.evaluation.evaluator import EvalConfig, evaluate

    result = evaluate(EvalConfig(ModelRequest.of(workdir=runs["none"], native_size=True, mode=DETERMINISTIC),
                                 output_dir=str(tmp_path / "eval"), progress=False))
    metrics = json.load(open(result.metrics_path))
    assert metrics["native_size"] is True and metrics["image_size"] == [48, 80]
    generator, _, _ = loaded("none")
    for i, entry in enumerate(metrics["per_image"]):
        a = tf.io.decode_png(tf.io.read_file(os.path.join(runs["folder"], "A", "test", f"{i}.png"))).numpy()
        output = numpy_native(generator, images.to_signed(a).numpy(), 4, DETERMINISTIC)
        target = images.to_signed(255 - a).numpy()
        assert entry["l1"] == pytest.approx(float(np.mean(np.abs(output - target))), abs=1e-5)
    with pytest.raises(ConfigError, match="FCN-score"):
        EvalConfig(ModelRequest.of(workdir=runs["none"], native_size=True), fcn=True).validate()


def test_demo_translates_at_native_size(runs):
    from pix2pix_tf.demo.model import DemoConfig, load_demo_model

    model = load_demo_model(DemoConfig(ModelRequest.of(workdir=runs["scale_width"], native_size=True),
                                       num_examples=0))
    assert model.native  # The page says so instead of naming a size the input is resized to.
    png = tf.io.encode_png(random_pixels(61, 37)).numpy()
    translation = model.translate(png, "drawn", paper=True)
    assert translation.model_input.shape == (61, 37, 3) and translation.output.shape == (61, 37, 3)
    for source in (dict(tflite="x.tflite"), dict(serving_url="http://localhost:8501")):
        with pytest.raises(ConfigError, match=r"--native_size needs a model that takes any size \(--workdir, "
                                              r"--saved_model or --onnx\), not --(tflite|serving_url)"):
            DemoConfig(ModelRequest.of(native_size=True, **source))


# ----------------------------------------------------------------------------- SavedModel and TFLite

FRESH_PROCESS = textwrap.dedent("""
    import sys
    sys.modules["pix2pix_tf"] = None  # Serving has no package: nothing of it may be needed.
    import numpy as np
    import tensorflow as tf

    path, out = sys.argv[1:3]
    native = tf.saved_model.load(path).signatures["translate_native"]
    results = {}
    for name in sys.argv[3:5]:
        answer = native(images=tf.constant([open(name, "rb").read()] * 2))
        results[name.split("/")[-1]] = answer["output"].numpy()
        results[name.split("/")[-1] + "_png"] = tf.io.decode_png(answer["output_bytes"][1]).numpy()
    for batch, label in ((sys.argv[3:5], "sizes"), (sys.argv[5:6], "cap")):
        try:
            native(images=tf.constant([open(name, "rb").read() for name in batch]))
            results[label] = "accepted"
        except tf.errors.InvalidArgumentError as e:
            results[label] = e.message
    np.savez(out, **results)
""")


@pytest.mark.slow
def test_saved_model_translate_native_in_a_fresh_process(loaded, tmp_path, monkeypatch):
    from pix2pix_tf.export.saved_model import build_endpoints

    generator, _, _ = loaded("none")
    directory = str(tmp_path / "saved_model")
    traced, real_generate = [], generate.generate  # The modes G is traced in while the signatures are saved.

    def counted(model, batch, mode, **kwargs):
        traced.append(mode)
        return real_generate(model, batch, mode, **kwargs)

    monkeypatch.setattr(generate, "generate", counted)
    build_endpoints(generator, DETERMINISTIC, 48, 3, 4, max_pixels=2400,
                    max_request_pixels=2 * 2400).save(directory)
    monkeypatch.undo()
    # Once per function of G (the signatures' mode and its dropout-free form), however many
    # of the five signatures call it: saving traces each signature once.
    assert traced == [DETERMINISTIC, DETERMINISTIC]
    sizes = [(35, 59), (59, 35), (37, 61)]  # The last is under the cap but pads over it.
    paths = [write_png(tmp_path / f"{h}x{w}.png", random_pixels(h, w, seed=h)) for h, w in sizes]
    script = tmp_path / "client.py"
    script.write_text(FRESH_PROCESS)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = run([sys.executable, str(script), directory, str(tmp_path / "out.npz"), *paths], cwd=str(tmp_path),
                 env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    got = dict(np.load(tmp_path / "out.npz"))
    for (height, width), path in zip(sizes[:2], paths):
        name = os.path.basename(path)
        pixels = images.to_signed(random_pixels(height, width, seed=height)).numpy()
        expected = numpy_native(generator, pixels, 4, DETERMINISTIC)
        assert got[name].shape == (2, height, width, 3) and got[name + "_png"].shape == (height, width, 3)
        np.testing.assert_allclose(got[name][0], expected, atol=1e-4)
    assert "one size" in str(got["sizes"]) and "separate requests" in str(got["sizes"])
    assert "over the limit of 2400 pixels" in str(got["cap"])


def test_tflite_files_stay_fixed_size(tmp_path_factory, data_dir):
    """export.py's float32 TFLite file of the shared unet_128 run (`export_helpers.exported`)."""
    from ai_edge_litert.interpreter import Interpreter

    export = exported(tmp_path_factory, data_dir)
    interpreter = Interpreter(model_path=os.path.join(export["tflite_paper"], "tiny_float32.tflite"))
    index = interpreter.get_input_details()[0]["index"]
    assert list(interpreter.get_input_details()[0]["shape_signature"]) == [1, 128, 128, 3]
    interpreter.resize_tensor_input(index, [1, 256, 128, 3])  # Another multiple of the size: accepted here ...
    with pytest.raises(RuntimeError, match="failed to prepare"):  # ... but the graph cannot be prepared for it.
        interpreter.allocate_tensors()


def test_tflite_is_refused_for_native_size():
    from pix2pix_tf.inference.translator import Translator

    fixed = Translator("TFLite x.tflite", 128, 3, 3, None, LOCAL, lambda image, index: image)
    with pytest.raises(ConfigError, match="one fixed size"):
        geometry.native_translator(fixed)


def test_flags_default_to_the_square_behaviour():
    from pix2pix_tf.demo.model import DemoConfig
    from pix2pix_tf.evaluation.config import EvalConfig

    model = ModelRequest.of(workdir="w")
    assert not model.native_size
    assert not TranslateConfig(inputs=("x",), output_dir="o", model=model).model.native_size
    assert not EvalConfig(model).model.native_size and not DemoConfig(model).model.native_size
