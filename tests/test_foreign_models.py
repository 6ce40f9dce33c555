"""Files given as a model that are some other model (a classifier's SavedModel, TFLite or ONNX
file, a signature under other names) and models that record no image size: one `error:` line
that names the file and what it has, before any image where its shapes tell, never a traceback
(docs/reliability.md)."""

from __future__ import annotations

import os
import re
import socket
import sys

import numpy as np
import pytest
import tensorflow as tf

from pix2pix_tf.errors import ConfigError
from pix2pix_tf.evaluation.config import EvalConfig
from pix2pix_tf.inference import files
from pix2pix_tf.inference.request import ModelRequest

import forked
from conftest import tiny_config
from export_helpers import ONNX_INSTALLED, ROOT
from programs import run_program

needs_onnx = pytest.mark.skipif(not ONNX_INSTALLED, reason="the onnx extra is not installed")
ADVICE = " Give a model written by export.py (or a training run's --workdir)."


def saved_model(path, output, key: str = "output") -> str:
    """A SavedModel whose translate_float signature takes images [N, H, W, 3] and gives {key: output(images)}."""
    module = tf.Module()
    module.translate = tf.function(lambda images: {key: output(images)}, autograph=False,
                                   input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32, name="images")])
    tf.saved_model.save(module, str(path), signatures={"translate_float": module.translate})
    return str(path)


def tflite_file(path, fn, *inputs: list) -> str:
    """A TFLite file of `fn` over float32 inputs of the given shapes (None: a size left open)."""
    traced = tf.function(fn, autograph=False, input_signature=[tf.TensorSpec(shape, tf.float32) for shape in inputs])
    converter = tf.lite.TFLiteConverter.from_concrete_functions([traced.get_concrete_function()], traced)
    with open(path, "wb") as f:
        f.write(converter.convert())
    return str(path)


def tflite_classifier(path) -> str:
    """[1, 8, 8, 3] -> [1, 3]: the mean colour."""
    return tflite_file(path, lambda images: tf.reduce_mean(images, [1, 2]), [1, 8, 8, 3])


def onnx_file(path, node: str, output_shape: list, inputs: tuple[str, ...] = ("images",), **attributes) -> str:
    """`inputs`, each float [N, H, W, 3] -> `node`(inputs) as `out`, recording nothing about itself."""
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node(node, list(inputs), ["out"], **attributes)], "foreign",
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, ["N", "H", "W", 3]) for name in inputs],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, output_shape)])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), str(path))
    return str(path)


@pytest.fixture(scope="module")
def foreign(tmp_path_factory) -> dict:
    folder = tmp_path_factory.mktemp("foreign")
    built = {
        "renamed": saved_model(folder / "renamed", lambda x: x, key="logits"),
        "flat": saved_model(folder / "flat", lambda x: tf.reduce_mean(x, [1, 2])),
        "halving": saved_model(folder / "halving", lambda x: x[:, ::2, ::2, :]),  # [?, ?, ?, 3]: only H/2 at run time.
        "identity": saved_model(folder / "identity", tf.identity),
        "tflite": tflite_classifier(folder / "clf.tflite"),
        "image": str(folder / "in" / "rgb.png"),
    }
    if ONNX_INSTALLED:
        built["onnx"] = onnx_file(folder / "clf.onnx", "ReduceMean", ["N", 3], axes=[1, 2], keepdims=0)
        built["onnx_identity"] = onnx_file(folder / "ident.onnx", "Identity", ["N", "H", "W", 3])
    os.makedirs(os.path.dirname(built["image"]))
    tf.io.write_file(built["image"], tf.io.encode_png(np.full((20, 20, 3), 90, np.uint8)))
    return built


def translated(foreign: dict, output_dir, **model) -> files.TranslateResult:
    """translate's library call on the one test image."""
    return files.translate_files(files.TranslateConfig(inputs=(foreign["image"],), output_dir=str(output_dir),
                                                       model=ModelRequest.of(**model), progress=False))


def refusal(path: str, found: str) -> str:
    return re.escape(f"{path} is not an image-to-image generator: {found}.{ADVICE}") + "$"


@pytest.mark.parametrize("model, found", [
    ("renamed", "its 'translate_float' signature gives ['logits'], not 'output'"),
    ("flat", "its output is [?, 3], not [N, H, W, 3]"),
])
def test_a_saved_model_of_another_model_is_refused_before_any_image(foreign, tmp_path, model, found):
    with pytest.raises(ConfigError, match=refusal(foreign[model], found)):
        translated(foreign, tmp_path / "out", saved_model=foreign[model], image_size=8)
    assert not os.path.exists(tmp_path / "out")  # Refused when loaded: nothing was translated.


def test_a_tflite_classifier_is_refused_before_any_image(foreign, tmp_path):
    with pytest.raises(ConfigError, match=refusal(foreign["tflite"], "its output is [1, 3], not [N, H, W, 3]")):
        translated(foreign, tmp_path / "out", tflite=foreign["tflite"])
    assert not os.path.exists(tmp_path / "out")


def test_a_tflite_file_of_open_size_or_two_inputs_is_refused_before_any_image(foreign, tmp_path):
    """An identity of open size reads as [1, 1, 1, 3] until resized (it wrote 1x1 pictures); a
    sum of two images ran with its second input never set."""
    open_size = tflite_file(tmp_path / "open.tflite", tf.identity, [None, None, None, 3])
    two_inputs = tflite_file(tmp_path / "two.tflite", lambda a, b: a + b, [1, 8, 8, 3], [1, 8, 8, 3])
    with pytest.raises(ConfigError, match=re.escape(f"{open_size} takes input of shape [-1, -1, -1, 3]; expected "
                                                    "[1, S, S, C] with S fixed, as export.py writes.") + "$"):
        translated(foreign, tmp_path / "out", tflite=open_size)
    with pytest.raises(ConfigError, match=refusal(two_inputs, "it takes 2 inputs and gives 1 outputs, not one image "
                                                              "batch each")):
        translated(foreign, tmp_path / "out", tflite=two_inputs)
    assert not os.path.exists(tmp_path / "out")


@needs_onnx
def test_an_onnx_file_of_two_inputs_or_none_is_refused_before_any_image(foreign, tmp_path):
    """Both stopped in a traceback: onnxruntime's ValueError for the input never fed, an
    IndexError for the file without inputs."""
    from onnx import TensorProto, helper

    two = onnx_file(tmp_path / "two.onnx", "Add", ["N", "H", "W", 3], inputs=("images", "b"))
    none = onnx_file(tmp_path / "none.onnx", "Constant", [1, 8, 8, 3], inputs=(),
                     value=helper.make_tensor("v", TensorProto.FLOAT, [1, 8, 8, 3], [0.0] * 192))
    for path, counts in ((two, "2 inputs and gives 1 outputs"), (none, "0 inputs and gives 1 outputs")):
        with pytest.raises(ConfigError, match=refusal(path, f"it takes {counts}, not one image batch in and out")):
            translated(foreign, tmp_path / "out", onnx=path, image_size=8)
    assert not os.path.exists(tmp_path / "out")


@needs_onnx
def test_an_onnx_classifier_is_refused_before_any_image(foreign, tmp_path):
    with pytest.raises(ConfigError, match=refusal(foreign["onnx"], "its output is [N, 3], not [N, H, W, 3]")):
        translated(foreign, tmp_path / "out", onnx=foreign["onnx"], image_size=8)
    assert not os.path.exists(tmp_path / "out")


def test_an_output_shape_the_file_leaves_open_is_checked_at_the_first_output(foreign, tmp_path):
    """The signature says [?, ?, ?, 3]; the first image shows it halves the sides: the run stops
    there with one message, no image written, rather than a file reported for each image."""
    found = "given [1, 8, 8, 3], its output is [1, 4, 4, 3], not [1, 8, 8, 3]"
    with pytest.raises(ConfigError, match=refusal(foreign["halving"], found)):
        translated(foreign, tmp_path / "out", saved_model=foreign["halving"], image_size=8)
    assert not os.path.exists(tmp_path / "out") or not os.listdir(tmp_path / "out")


def test_translate_refuses_another_model_in_one_error_line(foreign, tmp_path):
    """The real program, in a process of its own (forked: tests/forked.py): exit code 1, one
    `error:` line, no traceback."""
    result = forked.run([sys.executable, "-m", "pix2pix_tf.translate", f"--tflite={foreign['tflite']}",
                         f"--output_dir={tmp_path / 'out'}", foreign["image"]], timeout=300, cwd=ROOT)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-3000:]
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert lines == [f"error: {foreign['tflite']} is not an image-to-image generator: its output is [1, 3], "
                     f"not [N, H, W, 3].{ADVICE}"], result.stderr[-3000:]


# ----------------------------------------------------------------------------- no recorded image size


@pytest.fixture(scope="module")
def run(tmp_path_factory, data_dir) -> str:
    """A training run's config.json (crop size 128) and no checkpoint: what evaluate reads of the
    run an export is evaluated on."""
    workdir = str(tmp_path_factory.mktemp("run"))
    tiny_config(workdir, data_dir).save(workdir)
    return workdir


@pytest.mark.parametrize("kind", ["saved_model", pytest.param("onnx", marks=needs_onnx)])
def test_evaluate_runs_a_model_that_records_no_size_at_its_runs_size(foreign, run, tmp_path, kind):
    """evaluate has no --image_size: a model that records no size runs at the size of the run it
    is evaluated on (its crop size, as a checkpoint of that run would), and is measured."""
    from pix2pix_tf.evaluation.evaluator import evaluate

    path = foreign["identity" if kind == "saved_model" else "onnx_identity"]
    result = evaluate(EvalConfig(ModelRequest.of(**{kind: path}, run=run), fcn=False,
                                 num_examples=2, output_dir=str(tmp_path / "library"), progress=False))
    assert result.metrics["image_size"] == [128, 128] and result.metrics["num_examples"] == 2
    assert result.metrics["metrics"]["l1"] > 0  # The identity's output is its input, not the target.
    program = run_program("evaluate", f"--{kind}={path}", f"--workdir={run}", "--nofcn", "--num_examples=2",
                          f"--output_dir={tmp_path / 'program'}", "--noprogress")
    assert program.returncode == 0 and "error:" not in program.stderr, program.stderr[-3000:]
    assert os.path.exists(tmp_path / "program" / "metrics.json")


def test_evaluate_refuses_another_model_in_one_error_line(foreign, run, tmp_path):
    result = run_program("evaluate", f"--tflite={foreign['tflite']}", f"--workdir={run}", "--nofcn",
                         f"--output_dir={tmp_path / 'out'}")
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert [line for line in result.stderr.splitlines() if line.startswith("error:")] == [
        f"error: {foreign['tflite']} is not an image-to-image generator: its output is [1, 3], "
        f"not [N, H, W, 3].{ADVICE}"]


def test_a_model_of_no_known_size_gets_advice_its_program_can_follow(foreign, tmp_path):
    """translate takes --image_size; the demo does not, so it is not told to pass it."""
    given = foreign["identity"]
    translate = run_program("translate", f"--saved_model={given}", f"--output_dir={tmp_path / 'out'}",
                            foreign["image"])
    assert translate.returncode == 1, translate.stderr[-3000:]
    assert (f"error: {given} does not record its image size, nor a training run that gives one: pass --image_size."
            in translate.stderr.splitlines()), translate.stderr[-3000:]
    pytest.importorskip("gradio")
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    demo = run_program("demo", f"--saved_model={given}", f"--port={port}")
    assert demo.returncode == 1 and "Traceback" not in demo.stderr, demo.stderr[-3000:]
    assert [line for line in demo.stderr.splitlines() if line.startswith("error:")] == [
        f"error: {given} does not record its image size, nor a training run that gives one: export it with "
        "export.py, which records both, or translate with it (python -m pix2pix_tf.translate --image_size=SIZE)."]
