"""The one model request of translate, evaluate and the demo (`inference.request`): one
declaration of the model flags, one validation (every program refuses a mistake with the
same message, before TensorFlow loads), and the registry of source kinds (`sources.KINDS`)
those flags come from: a new kind is one registry line."""

from __future__ import annotations

import os
import subprocess
import sys
import xml.etree.ElementTree as ElementTree

import numpy as np
import pytest
from absl import flags

from pix2pix_tf.errors import ConfigError
from pix2pix_tf.inference import request, sources
from pix2pix_tf.inference.mode import DETERMINISTIC, PAPER, InferenceMode
from pix2pix_tf.inference.request import ModelRequest
from pix2pix_tf.inference.source_kind import Recorded, SourceKind
from pix2pix_tf.inference.translator import Translator

from export_helpers import ROOT

PROGRAMS = {"translate": "pix2pix_tf.translate", "evaluate": "pix2pix_tf.evaluate", "demo": "pix2pix_tf.demo"}
ONE_OF = ("Give exactly one of --workdir, --saved_model, --tflite or --onnx to name the model (the demo also takes "
          "--serving_url); got ")


@pytest.mark.parametrize("given,message", [
    (dict(), ONE_OF + "none."),
    (dict(workdir="w", tflite="m.tflite"), ONE_OF + "--workdir and --tflite."),
    (dict(saved_model="s", onnx="m.onnx", serving_url="http://localhost:8501"),
     ONE_OF + "--saved_model, --onnx and --serving_url."),
    (dict(checkpoint="ckpt-2", tflite="m.tflite"),
     "--checkpoint names a checkpoint of --workdir's run: it goes with --workdir as the model, not with --tflite."),
    (dict(workdir="w", run="r"), "A checkpoint (--workdir) is evaluated on its own run: `run` applies to an export."),
    (dict(workdir="w", native_size=True, image_size=256), "--image_size and --native_size contradict each other"),
    (dict(tflite="m.tflite", native_size=True), "--native_size needs a model that takes any size (--workdir, "
                                                "--saved_model or --onnx), not --tflite: one fixed size."),
    (dict(serving_url="http://localhost:8501", native_size=True), "--native_size needs a model that takes any size "
     "(--workdir, --saved_model or --onnx), not --serving_url: the demo sends it requests of the export's one size"),
    (dict(workdir="w", image_size=0), "--image_size must be at least 1, got 0."),
    (dict(workdir="w", threads=-1), "--threads must be at least 1, got -1."),
    # onnxruntime made every thread asked for: 17 GB and thousands of threads before any image.
    (dict(workdir="w", threads=100_000), "--threads must be at most 256 (more than the cores of the machines this "
                                         "runs on), got 100000."),
    (dict(workdir="w", max_pixels=0), "--max_pixels must be at least 1, got 0."),
    (dict(workdir="w", seed=2**63), "--seed must be a 64-bit integer (below 2**63 in magnitude), got "
                                    "9223372036854775808."),
    (dict(workdir="w", image_size=99968), "--image_size=99968 makes 99968x99968 images (9993601024 pixels), "
                                          "over --max_pixels=16777216: use a smaller --image_size or a larger "
                                          "--max_pixels."),
    (dict(workdir="w", image_size=256, max_pixels=256 * 255), "--image_size=256 makes 256x256 images"),
])
def test_each_rule_of_the_one_validation(given, message):
    with pytest.raises(ConfigError) as refused:
        ModelRequest.of(**given)
    assert str(refused.value).startswith(message), str(refused.value)


def test_what_the_request_accepts():
    checkpoint = ModelRequest.of(workdir="w", checkpoint="w/checkpoints/ckpt-2", native_size=True, seed=3)
    assert checkpoint.kind.name == "checkpoint" and checkpoint.workdir == "w" and checkpoint.path == "w"
    export = ModelRequest.of(run="w", saved_model="s", mode=DETERMINISTIC)
    assert export.kind.name == "saved_model" and export.workdir == "w" and export.path == "s"
    assert ModelRequest.of(onnx="m.onnx", native_size=True).kind.any_size
    served = ModelRequest.of(serving_url="http://localhost:8501")
    assert served.kind is None and served.workdir is None and served.pixel_cap == request.DEFAULT_MAX_PIXELS
    with pytest.raises(ConfigError, match="served elsewhere"):
        served.resolve()
    assert ModelRequest.of(tflite="m.tflite", max_pixels=100).pixel_cap == 100


def test_a_wrong_path_is_answered_without_tensorflow(tmp_path):
    """Resolving reads only what is recorded, so the mistake comes before TensorFlow loads."""
    code = ("import sys\nfrom pix2pix_tf.errors import ConfigError\nfrom pix2pix_tf.inference.request import "
            "ModelRequest\nfor given in ({'tflite': sys.argv[1]}, {'onnx': sys.argv[1]}, {'workdir': sys.argv[2]}, "
            "{'saved_model': sys.argv[2]}):\n    try:\n        ModelRequest.of(**given).resolve()\n    except "
            "ConfigError as e:\n        print(e)\nprint('tensorflow' in sys.modules, 'keras' in sys.modules)\n")
    result = subprocess.run([sys.executable, "-c", code, str(tmp_path / "none.tflite"), str(tmp_path)], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    assert lines[0] == f"--tflite={tmp_path / 'none.tflite'} is not a file."
    assert lines[1] == f"--onnx={tmp_path / 'none.tflite'} is not a file."
    assert "config.json" in lines[2] and "saved_model.pb" in lines[3]
    assert lines[-1] == "False False"


# ----------------------------------------------------------------------------- one declaration, every program

# Runs a program as `python -m` does and says afterwards whether TensorFlow was loaded.
DRIVER = ("import runpy, sys\nsys.argv = sys.argv[1:]\ntry:\n    runpy.run_module(sys.argv[0], run_name='__main__', "
          "alter_sys=True)\nfinally:\n    print('tensorflow loaded:', 'tensorflow' in sys.modules, file=sys.stderr)\n")


def run_program(module: str, *arguments: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": ROOT}
    return subprocess.run([sys.executable, "-c", DRIVER, module, *arguments], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("arguments,given", [
    (["--tflite=m.tflite", "--native_size"], dict(tflite="m.tflite", native_size=True)),
    (["--saved_model=s", "--tflite=m.tflite"], dict(saved_model="s", tflite="m.tflite")),
    (["--checkpoint=ckpt-2", "--onnx=m.onnx"], dict(checkpoint="ckpt-2", onnx="m.onnx")),
])
def test_every_program_refuses_a_mistake_with_the_same_message_before_tensorflow(arguments, given):
    with pytest.raises(ConfigError) as refused:
        ModelRequest.of(**given)
    for name, module in PROGRAMS.items():
        result = run_program(module, *arguments)
        assert result.returncode == 1 and "Traceback" not in result.stderr, (name, result.stderr[-3000:])
        errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
        assert errors == [f"error: {refused.value}"], (name, result.stderr[-3000:])
        assert "tensorflow loaded: False" in result.stderr, name


def program_flags(module: str) -> dict[str, str]:
    """{flag: its value when not given} of the flags `module --help` lists (its key flags)."""
    result = run_program(module, "--helpxml")
    xml = result.stdout[result.stdout.index("<?xml"):]
    return {flag.findtext("name"): flag.findtext("current") for flag in ElementTree.fromstring(xml).iter("flag")
            if flag.findtext("key") == "yes" and flag.findtext("file").endswith(module.replace(".", "/") + (
                "/__main__.py" if module == PROGRAMS["demo"] else ".py"))}


def test_every_kind_is_a_flag_of_every_program_with_the_defaults_users_had():
    common = {"checkpoint": "None", "threads": "2", "native_size": "false",
              **{kind.flag: "None" for kind in sources.KINDS}}
    mode = {"deterministic": "false", "batch_statistics": "true"}
    expected = {
        "translate": {**common, **mode, "seed": "None", "image_size": "None", "max_pixels": str(4096 * 4096)},
        "evaluate": {**common, **mode, "seed": "0"},  # An evaluation repeats: its noise is seeded by default.
        "demo": {**common, "serving_url": "None", "model_name": "pix2pix", "max_pixels": "None"},
    }
    every = set().union(*expected.values())
    for name, module in PROGRAMS.items():
        found = program_flags(module)
        assert {k: v for k, v in found.items() if k in every} == expected[name], name


def test_evaluate_alone_takes_workdir_beside_an_export_as_the_run():
    """The one per-program difference in what the flags mean, a parameter of the one declaration."""
    for names_run in (True, False):
        values = flags.FlagValues()
        offer = request.define_flags(request.Offer(verb="Evaluate", workdir_names_run=names_run), values)
        values(["program", "--workdir=runs/x", "--saved_model=export/m", "--deterministic", "--seed=4"])
        if not names_run:
            with pytest.raises(ConfigError, match="got --workdir and --saved_model"):
                request.from_flags(offer, values)
            continue
        model = request.from_flags(offer, values)
        assert model.models == (("saved_model", "export/m"),) and model.workdir == "runs/x"
        assert model.mode == DETERMINISTIC and model.seed == 4


# ----------------------------------------------------------------------------- the registry


def dummy_kind(opened: list) -> SourceKind:
    """A format with a fixed size of 8 and no dropout, whose model inverts its input."""

    def open_dummy(source, mode: InferenceMode, *, seed, image_size, threads) -> Translator:
        opened.append((source.path, mode, threads))
        return Translator(f"dummy {source.path}", 8, 3, 3, source.direction, source.runs_as(mode),
                          lambda image, index: -np.asarray(image))

    return SourceKind(name="dummy", flag="dummy", noun="a dummy file", any_size=False, has_dropout=False,
                      resolve=lambda path: Recorded(path, metadata={"direction": "AtoB"}), open=open_dummy)


def test_a_new_kind_is_one_registry_line(monkeypatch, tmp_path):
    """Registered in a copy of the registry, a kind is a flag of the one declaration, is checked
    by the one validation, and translates files through translate's own code."""
    import tensorflow as tf

    from pix2pix_tf.inference.files import TranslateConfig, translate_files

    opened = []
    monkeypatch.setattr(sources, "KINDS", (*sources.KINDS, dummy_kind(opened)))
    values = flags.FlagValues()
    offer = request.define_flags(request.Offer(verb="Translate with", image_size=True), values)
    assert values["dummy"].help == "Translate with a dummy file."
    assert "not --tflite or --dummy" in values["native_size"].help
    values(["translate", "--dummy=model.dummy", "--threads=3"])
    model = request.from_flags(offer, values)
    assert model.kind.name == "dummy" and model.resolve().label == "dummy-model"
    with pytest.raises(ConfigError, match="not --dummy: one fixed size"):
        ModelRequest.of(dummy="model.dummy", native_size=True)

    image = tf.io.encode_png(np.full((5, 7, 3), 64, np.uint8)).numpy()
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "x.png").write_bytes(image)
    result = translate_files(TranslateConfig(inputs=(str(tmp_path / "in"),), output_dir=str(tmp_path / "out"),
                                             model=model, progress=False))
    assert not result.failed and result.model == "dummy model.dummy"
    assert opened == [("model.dummy", PAPER, 3)]  # translate's default mode, --threads passed on.
    written = tf.io.decode_png(tf.io.read_file(str(tmp_path / "out" / "x.png"))).numpy().astype(int)
    assert written.shape == (8, 8, 3) and np.abs(written - 191).max() <= 1  # 64 -> -0.498 -> 0.498 -> 191.
