"""export.py --onnx end to end: the file in onnxruntime against the SavedModel at two sizes, its
contract read from the file, the refusal of a file that does not match, and --onnx as a model
source of translate, evaluate and the demo; docs/onnx.md's five lines."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from pix2pix_tf import images
from pix2pix_tf.errors import InferenceError, Pix2pixError
from pix2pix_tf.export import exporter, onnx_model, onnx_target, tflite_target
from pix2pix_tf.inference.onnx_runner import OnnxModel

from export_helpers import ROOT, exported
from programs import run_program

if os.environ.get("CI"):  # CI installs the onnx extra (.ci/run): missing, it is a failure, not a skip.
    import onnx
    import onnxruntime as ort
else:
    onnx = pytest.importorskip("onnx", reason='the onnx extra: pip install -e ".[onnx]"')
    ort = pytest.importorskip("onnxruntime", reason='the onnx extra: pip install -e ".[onnx]"')


@pytest.fixture(scope="module")
def onnx_export(tmp_path_factory, data_dir) -> dict:
    """The tiny run (unet_128, ngf 8) exported by export.py with --onnx: the shared deterministic
    export (version 2), whose SavedModel the ONNX file was converted from."""
    shared = exported(tmp_path_factory, data_dir)
    assert os.path.exists(shared["onnx_file"]), shared["deterministic_stdout"]
    return {"workdir": shared["workdir"], "export_dir": shared["export_dir"], "stdout": shared["deterministic_stdout"],
            "saved_model": shared["deterministic"], "folder": shared["onnx_folder"], "file": shared["onnx_file"]}


@pytest.fixture(scope="module")
def reference(onnx_export):
    """The SavedModel's translate_float_deterministic, the signature the ONNX file was converted
    from: loaded once for the tests that compare with it (they only call it; it writes no variable)."""
    loaded = tf.saved_model.load(onnx_export["saved_model"])

    def translate(images: tf.Tensor) -> dict:
        return loaded.signatures["translate_float_deterministic"](images=images)  # `loaded` owns the variables.

    return translate


@pytest.fixture(scope="module")
def held_out(onnx_export) -> np.ndarray:
    """The run's first two held-out inputs, read once for the tests that send them (they only
    read them: a test that wrote into the array would fail, not change the others' input)."""
    from pix2pix_tf.config import TrainConfig
    from pix2pix_tf.data import pipeline

    config = TrainConfig.load(onnx_export["workdir"])
    pairs = pipeline.held_out_pairs(pipeline.load_paired_dataset(config.data), config.data, 3, 3, limit=2)
    images = np.stack([a for a, _ in pairs.as_numpy_iterator()])
    images.setflags(write=False)
    return images



@pytest.mark.slow  # A run of its own: resnet is the generator whose wider check image can be over a cap.
def test_a_request_cap_between_the_square_and_the_wider_check_image_shortens_it(tmp_path, data_dir):
    """resnet_6blocks (size multiple 4) exported at 128 under a request cap of 16500 pixels, which
    holds the square images and the warmup but not the 132x128 wider check image: the check
    compares 132x124 instead (export.py stopped with the SavedModel's refusal in a traceback)."""
    from pix2pix_tf.training.loop import train

    from conftest import tiny_config

    workdir, export_dir = tmp_path / "run", tmp_path / "export"
    # No held-out evaluation in training: the export's checks read the held-out split themselves.
    train(tiny_config(workdir, data_dir, model={"generator": "resnet_6blocks"}, optim={"steps": 1},
                      run={"eval_examples": 0}))
    result = run_program("export", f"--workdir={workdir}", f"--export_dir={export_dir}", "--onnx",
                         "--tflite=", "--max_request_pixels=16500", "--warmup_batch_sizes=1", "--check_examples=2")
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr[-3000:]
    report = json.load(open(export_dir / "onnx" / "pix2pix" / "1" / "report.json"))
    assert report["ok"] and report["sizes_checked"] == [[128, 128], [124, 132]], report
    assert re.search(r"at 128x128, 132x124 +ok", result.stdout), result.stdout

@pytest.mark.slow
def test_export_publishes_a_checked_onnx_file_that_matches_the_saved_model_at_two_sizes(onnx_export, reference,
                                                                                        held_out):
    assert sorted(os.listdir(onnx_export["folder"])) == ["MODEL_CARD.md", "report.json", "tiny.onnx"]
    report = json.load(open(os.path.join(onnx_export["folder"], "report.json")))
    assert report["ok"] and report["opset"] == 17 and report["max_abs_diff"] <= onnx_model.MAX_ABS_DIFF
    assert report["sizes_checked"] == [[128, 128], [128, 256]] and report["size_bytes"] == os.path.getsize(
        onnx_export["file"])
    assert report["converted_from"]["signature"] == "translate_float_deterministic"
    line = re.search(r"ONNX .*tiny\.onnx .* PSNR +([\d.]+) dB +max\|diff\| (\S+) at 128x128, 256x128 +ok",
                     onnx_export["stdout"])
    assert line and float(line[1]) > 60, onnx_export["stdout"]
    card = open(os.path.join(onnx_export["folder"], "MODEL_CARD.md")).read()
    assert "## ONNX file" in card and "[batch, height, width, 3]" in card and "dropout off" in card

    # Round trip in a plain onnxruntime session: square, non-square, batch 2.
    session = ort.InferenceSession(onnx_export["file"], providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(1)
    for batch in (held_out, rng.uniform(-1, 1, (2, 128, 256, 3)).astype(np.float32),
                  rng.uniform(-1, 1, (1, 256, 384, 3)).astype(np.float32)):
        got = session.run(None, {"images": batch})[0]
        expected = reference(images=tf.constant(batch))["output"].numpy()
        assert got.shape == batch.shape
        np.testing.assert_allclose(got, expected, atol=1e-4)


def test_contract_is_in_the_file(onnx_export):
    model = onnx.load(onnx_export["file"])
    assert {o.domain: o.version for o in model.opset_import}[""] == 17
    (inp,), (out,) = model.graph.input, model.graph.output
    for value, name in ((inp, "images"), (out, "output")):
        assert value.name == name
        assert value.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
        dims = [(d.dim_param, d.dim_value) for d in value.type.tensor_type.shape.dim]
        assert dims == [("batch", 0), ("height", 0), ("width", 0), ("", 3)]  # NHWC, dynamic N, H, W.
    metadata = {p.key: json.loads(p.value) for p in model.metadata_props}
    assert metadata["layout"] == "NHWC" and metadata["input_range"] == metadata["output_range"] == [-1, 1]
    assert metadata["size_multiple"] == 128 and metadata["image_size"] == 128
    assert metadata["mode"] == {"dropout": False, "batch_statistics": True} and metadata["norm"] == "batch"
    assert metadata["source_signature"] == "translate_float_deterministic" and metadata["direction"] == "AtoB"
    assert "pixel / 127.5 - 1" in metadata["normalisation"]
    # The range: tanh output stays in [-1, 1] even for inputs far outside it.
    session = ort.InferenceSession(onnx_export["file"], providers=["CPUExecutionProvider"])
    wild = np.random.default_rng(2).uniform(-5, 5, (1, 128, 128, 3)).astype(np.float32)
    output = session.run(None, {"images": wild})[0]
    assert output.dtype == np.float32 and output.min() >= -1 and output.max() <= 1


def _perturbing(converted: str):
    """A converter that writes the ONNX file tf2onnx made of this run's network (`converted`, the
    shared export's: the same checkpoint's dropout-free float signature, which every export
    converts) with the contract of the SavedModel it is given, then adds noise to its largest
    weight (scaling it would not do: batch normalisation undoes a convolution's scale): a file
    that does not compute the SavedModel's network. Converting again would make the same file."""

    def convert(saved_model_dir: str, path: str) -> None:
        model = onnx.load(converted)
        onnx_model.set_contract(model, saved_model_dir)
        weight = max(model.graph.initializer, key=lambda t: int(np.prod(t.dims)))
        values = onnx.numpy_helper.to_array(weight)
        values = values + np.random.default_rng(0).normal(0, values.std(), values.shape)
        weight.CopyFrom(onnx.numpy_helper.from_array(values.astype(np.float32), weight.name))
        onnx.save(model, path)

    return convert


@pytest.mark.slow
def test_a_mismatching_onnx_file_is_refused(onnx_export, tmp_path, monkeypatch):
    monkeypatch.setattr(onnx_model, "convert", _perturbing(onnx_export["file"]))
    config = exporter.ExportConfig(workdir=onnx_export["workdir"], export_dir=str(tmp_path), model_name="m",
                                    check_examples=1, targets={"tflite": tflite_target.Options(variants=()),
                                                               "onnx": onnx_target.OnnxOptions(enabled=True)})
    with pytest.raises(exporter.ExportError, match="(?s)ONNX file does not reproduce the SavedModel.*no ONNX file"):
        exporter.export(config)
    assert os.listdir(tmp_path / "m") == ["1"]  # The SavedModel passed its own check and was published...
    assert not os.path.exists(tmp_path / "onnx" / "m" / "1")  # ...no ONNX file was,
    assert not [n for n in os.listdir(tmp_path / "onnx") if n.startswith(".")]  # nor a staging folder left.


@pytest.mark.slow
def test_translate_onnx_end_to_end(onnx_export, held_out, tmp_path):
    source = tmp_path / "in"
    source.mkdir()
    for index, image in enumerate(held_out):
        tf.io.write_file(str(source / f"{index}.png"), tf.io.encode_png(images.to_uint8(image)))
    tf.io.write_file(str(source / "wide.png"), tf.io.encode_png(np.full((100, 150, 3), 90, np.uint8)))
    outputs, stdout = {}, {}
    for name, model in (("onnx", [f"--onnx={onnx_export['file']}"]),
                        ("saved_model", [f"--saved_model={onnx_export['saved_model']}", "--deterministic"])):
        result = run_program("translate", *model, f"--output_dir={tmp_path / name}", str(source))
        assert result.returncode == 0, result.stderr[-3000:]
        stdout[name] = result.stdout
        outputs[name] = {n: tf.io.decode_png(tf.io.read_file(str(tmp_path / name / n))).numpy().astype(int)
                         for n in ("0.png", "1.png", "wide.png")}
    assert f"Translated 3 image(s) into {tmp_path / 'onnx'} with ONNX {onnx_export['file']}" in stdout["onnx"]
    for name in outputs["onnx"]:
        assert outputs["onnx"][name].shape == (128, 128, 3)
        assert np.abs(outputs["onnx"][name] - outputs["saved_model"][name]).max() <= 1, name

    native = run_program("translate", f"--onnx={onnx_export['file']}", "--native_size",
                         f"--output_dir={tmp_path / 'native'}", str(source / "wide.png"))
    assert native.returncode == 0, native.stderr[-3000:]
    assert tf.io.decode_png(tf.io.read_file(str(tmp_path / "native" / "wide.png"))).shape == (100, 150, 3)


@pytest.mark.slow
def test_evaluate_onnx_gives_the_saved_models_metrics(onnx_export, tmp_path):
    """`evaluate --onnx`: the run is found from the file's own metadata (no --workdir), the file
    has no dropout (evaluated deterministically), and the numbers are the SavedModel's."""
    from pix2pix_tf.evaluation.evaluator import FORM_TOLERANCE

    common = ["--nofcn", "--num_examples=3", "--html_examples=0", "--grid_examples=0", "--noprogress"]
    metrics, stderr = {}, {}
    for name, model in (("onnx", [f"--onnx={onnx_export['file']}"]),
                        ("saved_model", [f"--saved_model={onnx_export['saved_model']}", "--deterministic"])):
        result = run_program("evaluate", *model, *common, f"--output_dir={tmp_path / name}")
        assert result.returncode == 0, result.stderr[-3000:]
        metrics[name] = json.load(open(tmp_path / name / "metrics.json"))
        stderr[name] = result.stderr
    onnx, reference = metrics["onnx"], metrics["saved_model"]
    assert onnx["source"] == "onnx" and onnx["model"].startswith(f"ONNX {onnx_export['file']}")
    assert onnx["workdir"] == os.path.abspath(onnx_export["workdir"])  # From the file's metadata.
    assert onnx["mode"] == {"dropout": False, "batch_statistics": True} == reference["mode"]
    assert "has no dropout: evaluating it deterministically" in stderr["onnx"]  # Paper mode asked, by default.
    assert onnx["num_examples"] == 3 and onnx["image_size"] == [128, 128]
    for key in ("l1", "psnr", "ssim"):
        assert abs(onnx["metrics"][key] - reference["metrics"][key]) <= FORM_TOLERANCE[key], key
    for channel in ("L", "a", "b"):
        assert abs(onnx["metrics"]["lab_histogram_intersection"][channel]
                   - reference["metrics"]["lab_histogram_intersection"][channel]) \
            <= FORM_TOLERANCE["lab_histogram_intersection"], channel


@pytest.mark.slow
def test_demo_serves_the_onnx_file(onnx_export, reference, held_out):
    from pix2pix_tf.demo.model import LABELS, DemoConfig, load_demo_model
    from pix2pix_tf.inference.request import ModelRequest

    demo = load_demo_model(DemoConfig(ModelRequest.of(onnx=onnx_export["file"]), num_examples=0))
    assert demo.drawing.kind == LABELS and not demo.has_dropout and demo.image_size == 128  # From the file + run.
    png = tf.io.encode_png(images.to_uint8(held_out[0])).numpy()
    translation = demo.translate(png, "drawn.png", paper=True)
    expected = reference(images=tf.constant(translation.model_input[None] / 127.5 - 1, tf.float32))
    assert "ONNX" in translation.model
    assert np.abs(translation.output.astype(int) - images.to_uint8(expected["output"][0]).numpy()).max() <= 1
    native = load_demo_model(DemoConfig(ModelRequest.of(onnx=onnx_export["file"], native_size=True), num_examples=0))
    wide = tf.io.encode_png(np.full((100, 150, 3), 90, np.uint8)).numpy()
    assert native.translate(wide, "wide.png", paper=False).output.shape == (100, 150, 3)


@pytest.mark.slow
def test_onnx_mistakes_are_messages(onnx_export, tmp_path, monkeypatch):
    from pix2pix_tf.inference.mode import DETERMINISTIC
    from pix2pix_tf.inference.request import ModelRequest

    # Without tf2onnx (None in sys.modules: not importable), export --onnx stops before writing anything.
    with monkeypatch.context() as blocked:
        blocked.setitem(sys.modules, "tf2onnx", None)
        without = run_program("export", f"--workdir={onnx_export['workdir']}", f"--export_dir={tmp_path / 'e'}",
                              "--onnx")
    assert without.returncode == 1 and "Traceback" not in without.stderr, without.stderr[-3000:]
    assert 'error: ONNX needs tf2onnx (not installed): pip install -e ".[onnx]"' in without.stderr
    assert not os.path.exists(tmp_path / "e")
    missing = run_program("translate", f"--onnx={tmp_path / 'no.onnx'}", f"--output_dir={tmp_path / 'out'}",
                          os.path.join(ROOT, "README.md"))
    assert missing.returncode == 1 and "is not a file" in missing.stderr and "Traceback" not in missing.stderr
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"not an onnx model" * 10)
    with pytest.raises(Pix2pixError, match="Cannot load the ONNX model"):
        ModelRequest.of(onnx=str(garbage)).resolve()
    source = ModelRequest.of(onnx=onnx_export["file"]).resolve()
    refusal = (f"--image_size=100: {onnx_export['file']} takes images whose sides are multiples of 128; "
               "use --image_size=128.")
    with pytest.raises(Pix2pixError, match=re.escape(refusal)):
        source.open(DETERMINISTIC, image_size=100)
    with pytest.raises(Pix2pixError, match="exactly one of"):
        ModelRequest.of(onnx=onnx_export["file"], tflite=onnx_export["file"]).resolve()
    model = OnnxModel(onnx_export["file"])
    with pytest.raises(InferenceError, match="multiples of 128"):
        model(np.zeros((1, 128, 100, 3), np.float32))
    with pytest.raises(InferenceError, match=r"\[batch, height, width, 3\]"):
        model(np.zeros((1, 128, 128, 4), np.float32))


@pytest.mark.slow
def test_docs_five_lines_run(onnx_export, reference, held_out, tmp_path):
    text = open(os.path.join(ROOT, "docs", "onnx.md")).read()
    snippet = re.search(r"<!-- onnxruntime snippet:.*?-->\n```python\n(.*?)```", text, re.S)[1]
    assert len(snippet.strip().splitlines()) == 5
    place = tmp_path / "runs" / "quickstart" / "export" / "onnx" / "pix2pix" / "1"
    place.mkdir(parents=True)
    shutil.copy(onnx_export["file"], place / "pix2pix.onnx")
    pixels = images.to_uint8(held_out).numpy()  # Two 128x128 inputs, tiled into one 256x256 picture.
    picture = np.concatenate([np.concatenate([pixels[0], pixels[1]], 1), np.concatenate([pixels[1], pixels[0]], 1)], 0)
    tf.io.write_file(str(tmp_path / "input.png"), tf.io.encode_png(picture))
    result = subprocess.run([sys.executable, "-c", snippet], cwd=tmp_path, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    got = tf.io.decode_png(tf.io.read_file(str(tmp_path / "output.png"))).numpy().astype(int)
    expected = reference(images=tf.constant(picture[None] / 127.5 - 1, tf.float32))["output"]
    assert got.shape == (256, 256, 3)
    assert np.abs(got - images.to_uint8(expected[0]).numpy()).max() <= 1
