"""export.py end to end: Serving's layout, the SavedModel in a fresh process without the package,
saved_model_cli, warmup records, TFLite variants in the LiteRT interpreter, and clear errors."""

from __future__ import annotations

import ast
import contextlib
import json
import os
import pathlib
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time

import numpy as np
import pytest
import tensorflow as tf

from pix2pix_tf import images
from pix2pix_tf.errors import InferenceError
from pix2pix_tf.evaluation import metrics
from pix2pix_tf.export import exporter, saved_model_target, tflite_target, versions
from pix2pix_tf.export.config import MAX_VERSION, ExportError
from pix2pix_tf.inference import artifacts, checkpoint_source, generate
from pix2pix_tf.inference.mode import DETERMINISTIC, InferenceMode
from pix2pix_tf.inference.tflite_runner import TFLiteModel
from pix2pix_tf.serving import request_checks

import forked
from export_helpers import ONNX_INSTALLED, ROOT, run, trained_run
from programs import run_program


@pytest.fixture(scope="module")
def generator(tmp_path_factory, data_dir):
    """G restored from the shared run's checkpoint (the one every export here is made from),
    loaded once for the tests that compare an export with it: they only call it, and neither
    its inference-mode call nor `generate` writes a variable."""
    generator, _, _ = checkpoint_source.load_generator(trained_run(tmp_path_factory, data_dir))
    return generator


@pytest.fixture(scope="module")
def held_out(export, tmp_path_factory) -> tuple[str, np.ndarray]:
    """A held-out input of the run as a PNG file (the bytes a client sends) and its float image:
    read from the dataset once for the tests that send it to an export (they only read it)."""
    from pix2pix_tf.config import TrainConfig
    from pix2pix_tf.data import pipeline

    config = TrainConfig.load(export["workdir"])
    dataset = pipeline.load_paired_dataset(config.data)
    a, _ = next(pipeline.held_out_pairs(dataset, config.data, 3, 3, limit=1).as_numpy_iterator())
    path = str(tmp_path_factory.mktemp("held_out") / "input.png")
    tf.io.write_file(path, tf.io.encode_png(images.to_uint8(a)))
    a.setflags(write=False)  # Shared: a test that wrote into it would fail, not change the others' input.
    return path, a


def test_serving_layout_versions_and_atomic_publish(export, generator):
    base = export["base"]
    assert sorted(os.listdir(base)) == ["1", "2"]  # Integer versions only: nothing half-written in view.
    assert not [n for n in os.listdir(export["export_dir"]) if n.startswith(".")]  # Staging folders removed.
    for version in ("1", "2"):
        folder = os.path.join(base, version)
        assert os.path.exists(os.path.join(folder, "saved_model.pb"))
        assert os.path.isdir(os.path.join(folder, "variables"))
        assert os.path.exists(os.path.join(folder, "assets.extra", artifacts.WARMUP_FILE))
    # Each weight is stored once (tracking the Keras model in ExportArchive would store it twice).
    weights = generator.count_params() * 4
    stored = os.path.getsize(os.path.join(export["paper"], "variables", "variables.data-00000-of-00001"))
    assert weights * 0.99 < stored < weights * 1.1, (weights, stored)
    assert artifacts.read_metadata(export["paper"])["mode"] == {"dropout": True, "batch_statistics": True}
    assert artifacts.read_metadata(export["deterministic"])["mode"] == {"dropout": False, "batch_statistics": True}
    assert "SavedModel: " + export["paper"] in export["paper_stdout"]
    for variant in artifacts.TFLITE_VARIANTS:
        assert variant in export["paper_stdout"] and "PSNR" in export["paper_stdout"]
    # --benchmark: the Keras call and the SavedModel timed, then each TFLite variant on its line.
    assert re.search(r"^Latency, batch 1, median \(min\): Keras model call .* ms \([\d.]+\); SavedModel "
                     r"translate_float_deterministic [\d.]+ ms \([\d.]+\); TFLite with --threads=2 below$",
                     export["paper_stdout"], re.M), export["paper_stdout"]
    report = json.load(open(os.path.join(export["tflite_paper"], artifacts.TFLITE_REPORT)))
    assert report["keras_latency_ms"][0] > 0 and report["saved_model_latency_ms"][0] > 0
    for variant in artifacts.TFLITE_VARIANTS:
        median, fastest = report["variants"][variant]["latency_ms"]
        assert 0 < fastest <= median, (variant, median, fastest)
        assert re.search(rf"^\s*{variant} .* ms \(min [\d.]+\)  ok$", export["paper_stdout"], re.M), variant


def test_a_data_dir_given_that_holds_no_dataset_is_refused_not_replaced_by_noise(tmp_path_factory, data_dir, tmp_path):
    """It was checked on synthetic noise with a warning among TensorFlow's log lines, exit 0, and
    a model card without held-out metrics (the fallback is for a run whose dataset is gone)."""
    from pix2pix_tf.errors import DatasetError

    a_file = tmp_path / "tfds"
    a_file.write_text("not a data_dir")
    config = exporter.ExportConfig(workdir=trained_run(tmp_path_factory, data_dir), export_dir=str(tmp_path / "out"),
                                   data_dir=str(a_file), targets={"tflite": tflite_target.Options(variants=())})
    with pytest.raises(DatasetError, match=rf"{a_file}.*\(--data_dir names where the run's held-out images are "
                                           r"read: correct it, or leave it out to read the run's own\)$"):
        exporter.export(config)
    assert not os.path.exists(tmp_path / "out") or not os.listdir(tmp_path / "out")


@pytest.mark.slow
def test_existing_version_is_never_overwritten(export):
    before = os.path.getmtime(os.path.join(export["paper"], "saved_model.pb"))
    result = run_program("export", f"--workdir={export['workdir']}", f"--export_dir={export['export_dir']}",
                         "--model_name=tiny", "--version=1", "--tflite=")
    assert result.returncode == 1
    assert "Version 1 already exists" in result.stderr and "Traceback" not in result.stderr
    assert os.path.getmtime(os.path.join(export["paper"], "saved_model.pb")) == before


def test_a_zero_padded_version_is_that_version_and_no_next_version_passes_int64(tmp_path):
    """Serving reads "01" as version 1, so --version=1 is taken by it (a second folder of version 1
    was published beside it); and after Serving's largest version (int64) there is no next one
    (2**63 was published, a folder Serving cannot load)."""
    padded, full = tmp_path / "padded" / "m", tmp_path / "full" / "m"
    (padded / "01").mkdir(parents=True)
    (full / str(MAX_VERSION)).mkdir(parents=True)
    with pytest.raises(ExportError, match=re.escape(f"Version 1 already exists in {padded} (as 01); choose another "
                                                    "--version (existing: [1]) or leave --version out for the next "
                                                    "free one (2).") + "$"):
        versions.choose_version([str(tmp_path / "padded" / "tflite"), str(padded)], 1)
    assert versions.choose_version([str(padded)], None) == 2 and versions.choose_version([str(padded)], 10) == 10
    with pytest.raises(ExportError, match=re.escape(f"Version {MAX_VERSION} exists in {full}, the largest Serving "
                                                    "takes (its versions are int64): pass a free --version.") + "$"):
        versions.choose_version([str(full)], None)
    assert versions.choose_version([str(full)], 3) == 3


FRESH_PROCESS = textwrap.dedent("""
    import sys
    sys.modules["pix2pix_tf"] = None  # The package must not be needed: importing it now fails.
    import numpy as np
    import tensorflow as tf

    png, floats, *models = sys.argv[1:]
    x = tf.constant(np.load(floats))
    encoded = tf.constant([open(png, "rb").read()])
    for path, out in zip(models[::2], models[1::2]):
        model = tf.saved_model.load(path)
        sig = model.signatures
        variables = {id(v): v for f in sig.values() for v in f.variables}.values()  # Everything any signature reads.
        before = [v.numpy().copy() for v in variables]
        assert len(before) > 20
        results = {
            "bytes_1": sig["serving_default"](images=encoded)["output"].numpy(),
            "bytes_2": sig["serving_default"](images=encoded)["output"].numpy(),
            "png": sig["translate_png"](images=encoded)["output_bytes"].numpy()[0],
            "float_1": sig["translate_float"](images=x)["output"].numpy(),
            "float_2": sig["translate_float"](images=x)["output"].numpy(),
            "deterministic": sig["translate_float_deterministic"](images=x)["output"].numpy(),
        }
        results["png"] = tf.io.decode_png(results["png"]).numpy()
        unchanged = all(np.array_equal(b, v.numpy()) for b, v in zip(before, variables))
        np.savez(out, unchanged=unchanged, **results)
    print("modules:", sorted(m for m in sys.modules if m.startswith("pix2pix")))
""")


@pytest.fixture(scope="module")
def fresh_process(export, held_out, tmp_path_factory) -> dict:
    """Both SavedModels (paper mode and deterministic) run in one fresh process without the
    package, on a held-out input: per model, what each signature gave and whether any variable
    changed; and the input (its PNG file, its float image)."""
    tmp_path = tmp_path_factory.mktemp("fresh_process")
    png, image = held_out
    floats = str(tmp_path / "x.npy")
    np.save(floats, image[None].astype(np.float32))
    script = tmp_path / "client.py"
    script.write_text(FRESH_PROCESS)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    models = {name: str(tmp_path / f"{name}.npz") for name in ("paper", "deterministic")}
    result = run([sys.executable, str(script), png, floats,
                  *(item for name, out in models.items() for item in (export[name], out))], cwd=str(tmp_path), env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "modules: ['pix2pix_tf']" in result.stdout  # Only our blocking entry: nothing was imported.
    return {"png": png, "image": image, **{name: dict(np.load(out)) for name, out in models.items()}}


@pytest.mark.slow
def test_deterministic_saved_model_in_fresh_process_matches_checkpoint(fresh_process, generator):
    png, image, got = fresh_process["png"], fresh_process["image"], fresh_process["deterministic"]
    expected = generate.generate(generator, tf.constant(image[None]), DETERMINISTIC).numpy()
    from_bytes = images.decode_images(tf.constant([open(png, "rb").read()]), 3, 128)
    expected_bytes = generate.generate(generator, from_bytes, DETERMINISTIC).numpy()
    assert bool(got["unchanged"])
    np.testing.assert_allclose(got["deterministic"], expected, atol=1e-4)
    np.testing.assert_allclose(got["float_1"], expected, atol=1e-4)  # Deterministic export: same function.
    np.testing.assert_array_equal(got["float_1"], got["float_2"])
    np.testing.assert_array_equal(got["bytes_1"], got["bytes_2"])
    np.testing.assert_allclose(got["bytes_1"], expected_bytes, atol=1e-4)
    np.testing.assert_allclose(got["png"].astype(int), images.to_uint8(expected_bytes[0]).numpy().astype(int),
                               atol=1)


def test_paper_mode_saved_model_draws_noise_without_changing_state(fresh_process, generator):
    image, got = fresh_process["image"], fresh_process["paper"]
    assert bool(got["unchanged"])  # Batch statistics and dropout write no variable.
    first, second = got["float_1"], got["float_2"]
    assert not np.array_equal(first, second)  # Dropout is on: the noise z differs between calls...
    assert abs(first.mean() - second.mean()) < 0.05 and abs(first.std() - second.std()) < 0.05  # ...not its law.
    # Dropout-free, the paper-mode export equals the checkpoint in the paper's normalisation.
    expected = generate.generate(generator, tf.constant(image[None]), DETERMINISTIC).numpy()
    np.testing.assert_allclose(got["deterministic"], expected, atol=1e-4)


def test_paper_mode_equals_keras_training_mode_call_without_its_state_writes(export):
    """At batch 1 the stateless path is exactly Keras' training-mode call (minus the noise)."""
    from pix2pix_tf.config import ModelConfig
    from pix2pix_tf.networks.generator import build_generator

    generator = build_generator(ModelConfig(generator="unet_128", ngf=8, dropout=False))
    image = tf.random.stateless_uniform([1, 128, 128, 3], seed=[1, 2], minval=-1, maxval=1)
    before = [v.numpy().copy() for v in generator.variables]
    ours = generate.generate(generator, image, DETERMINISTIC).numpy()
    assert all(np.array_equal(b, v.numpy()) for b, v in zip(before, generator.variables))
    np.testing.assert_allclose(ours, generator(image, training=True).numpy(), atol=1e-5)


def saved_model_cli(*args: str) -> subprocess.CompletedProcess:
    """TensorFlow's `saved_model_cli`, whose console script calls this module's `main`: run as the
    module, it forks from a parent that imported TensorFlow once (tests/forked.py)."""
    return forked.run([sys.executable, "-m", "tensorflow.python.tools.saved_model_cli", *args], cwd=ROOT, timeout=300)


@pytest.mark.slow
def test_saved_model_cli_show_and_run(export, held_out, tmp_path):
    shown = saved_model_cli("show", "--dir", export["paper"], "--all")
    assert shown.returncode == 0, shown.stderr[-2000:]
    text = shown.stdout
    for signature in (artifacts.SIGNATURE_BYTES, artifacts.SIGNATURE_PNG, artifacts.SIGNATURE_FLOAT,
                      artifacts.SIGNATURE_FLOAT_DETERMINISTIC, artifacts.SIGNATURE_NATIVE):
        assert f"signature_def['{signature}']" in text
    serving_default = text.split("signature_def['serving_default']")[1].split("signature_def[")[0]
    assert "inputs['images']" in serving_default and "DT_STRING" in serving_default
    assert "outputs['output_bytes']" in serving_default and "outputs['output']" in serving_default
    assert "shape: (-1, 128, 128, 3)" in serving_default
    assert "StatelessRandomUniformV2" in text and "Timestamp" in text  # Noise from a stateless RNG.
    ops_line = "The MetaGraph with tag set ['serve'] contains the following ops: "
    documented = next(line for line in open(os.path.join(ROOT, "docs", "serving.md")) if line.startswith(ops_line))
    shown_ops = next(line for line in text.splitlines() if line.startswith(ops_line))
    assert ast.literal_eval(documented[len(ops_line):]) == ast.literal_eval(shown_ops[len(ops_line):])

    png, image = held_out
    np.save(tmp_path / "bytes.npy", np.array([open(png, "rb").read()], dtype=object))
    np.save(tmp_path / "floats.npy", image[None].astype(np.float32))
    for signature, inputs in (("serving_default", f"images={tmp_path / 'bytes.npy'}"),
                              ("translate_float_deterministic", f"images={tmp_path / 'floats.npy'}")):
        outdir = tmp_path / signature
        result = saved_model_cli("run", "--dir", export["deterministic"], "--tag_set", "serve",
                                 "--signature_def", signature, "--inputs", inputs, "--outdir", str(outdir))
        assert result.returncode == 0, result.stderr[-2000:]
        output = np.load(outdir / "output.npy")
        assert output.shape == (1, 128, 128, 3) and np.isfinite(output).all()
    np.testing.assert_allclose(np.load(tmp_path / "translate_float_deterministic" / "output.npy"),
                               np.load(tmp_path / "serving_default" / "output.npy"), atol=0.05)


def test_warmup_records_fit_the_signatures(export):
    from tensorflow_serving.apis import prediction_log_pb2

    signatures = request_checks.signature_defs(export["paper"])
    path = os.path.join(export["paper"], "assets.extra", artifacts.WARMUP_FILE)
    seen = set()
    for record in tf.data.TFRecordDataset(path):
        log = prediction_log_pb2.PredictionLog.FromString(record.numpy())
        request = log.predict_log.request
        assert request.model_spec.name == "tiny"
        request_checks.check_grpc_request(request, signatures)
        seen.add(request.model_spec.signature_name)
    assert seen == set(signatures)  # Every signature is warmed up.


def test_bad_inputs_give_clear_errors(export):
    signatures = tf.saved_model.load(export["deterministic"]).signatures
    png = tf.io.encode_png(np.zeros((40, 30, 3), np.uint8))
    cases = [
        ("serving_default", tf.constant([b""]), "empty"),
        ("serving_default", tf.constant([b"not an image at all"]), "not JPEG, PNG, GIF, BMP or WebP"),
        ("serving_default", tf.constant([png.numpy()[:40]]), "PNG"),  # Truncated.
        ("translate_float", tf.zeros([1, 96, 128, 3]), "multiple of 128"),
        ("translate_float", tf.zeros([1, 0, 0, 3]), "images must be at least 1x1 pixels"),
        ("translate_float_deterministic", tf.zeros([1, 128, 0, 3]), "images must be at least 1x1 pixels"),
    ]
    for name, value, message in cases:
        with pytest.raises(tf.errors.InvalidArgumentError, match=message):
            signatures[name](images=value)
    for name, value in (("translate_float", tf.zeros([1, 128, 128, 4])),  # Wrong channels.
                        ("translate_float", tf.zeros([128, 128, 3])),  # Wrong rank.
                        ("serving_default", tf.constant(b"x"))):  # Not a batch.
        with pytest.raises((TypeError, ValueError, tf.errors.InvalidArgumentError)):
            signatures[name](images=value)
    # Any size and 1, 2, 3 or 4 channels are fine for encoded images.
    for channels in (1, 2, 3, 4):
        encoded = tf.io.encode_png(np.full((33, 70, channels), 200, np.uint8))
        assert signatures["serving_default"](images=tf.constant([encoded.numpy()]))["output"].shape == (1, 128, 128, 3)


def test_tflite_variants_run_in_litert_with_builtin_ops_only(export, held_out):
    from ai_edge_litert.interpreter import Interpreter

    _, image = held_out
    reference = tf.saved_model.load(export["paper"]).signatures["translate_float_deterministic"]
    expected = reference(images=tf.constant(image[None]))["output"].numpy()
    report = json.load(open(os.path.join(export["tflite_paper"], artifacts.TFLITE_REPORT)))
    for variant in artifacts.TFLITE_VARIANTS:
        path = os.path.join(export["tflite_paper"], f"tiny_{variant}.tflite")
        interpreter = Interpreter(model_path=path, num_threads=2)
        ops = {op["op_name"] for op in interpreter._get_ops_details()}
        assert not [op for op in ops if op.startswith("Flex") or op == "CUSTOM"], (variant, ops)
        model = TFLiteModel(path)
        assert model.input_shape == (1, 128, 128, 3)
        value = metrics.pooled_psnr(expected, model(image[None]))
        assert value >= exporter.PSNR_FLOORS[variant], (variant, value)
        assert report["variants"][variant]["ok"] and report["variants"][variant]["size_bytes"] == os.path.getsize(path)
    sizes = {v: os.path.getsize(os.path.join(export["tflite_paper"], f"tiny_{v}.tflite"))
             for v in artifacts.TFLITE_VARIANTS}
    assert sizes["float16"] < 0.6 * sizes["float32"] and sizes["int8"] < 0.4 * sizes["float32"]

    uint8 = TFLiteModel(os.path.join(export["tflite_deterministic"], "tiny_int8.tflite"))
    assert uint8.io_dtype == "uint8"
    scale, zero_point = uint8.io_quantization["input"]
    assert 0 <= zero_point <= 255 and 0 < scale < 0.1  # [-1, 1] spread over (most of) 0..255.
    report = json.load(open(os.path.join(export["tflite_deterministic"], artifacts.TFLITE_REPORT)))
    assert report["variants"]["int8"]["io_quantization"]["input"] == [scale, zero_point]
    assert metrics.pooled_psnr(expected, uint8(image[None])) >= exporter.PSNR_FLOORS["int8"]
    with pytest.raises(InferenceError, match="batch 1, fixed size"):
        uint8(np.zeros((1, 64, 64, 3), np.float32))


def test_a_variant_that_gives_nan_fails_its_check():
    nan = exporter.check_variant(lambda x: x * np.nan, lambda x: x, np.zeros((1, 8, 8, 3), np.float32))
    assert np.isnan(nan[0])


def test_export_user_mistake_gets_a_message_not_a_traceback(tmp_path):
    result = run_program("export", "--workdir=/nonexistent/run", f"--export_dir={tmp_path}")
    assert result.returncode == 1, result.stderr[-2000:]
    assert "config.json does not exist" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("options,message", [
    (dict(targets={"tflite": tflite_target.Options(variants=("float32", "int4"))}), "unknown variant"),
    (dict(image_size=100), "--image_size=100: --generator=unet_128 takes images whose sides are multiples of 128; "
                           "use --image_size=128."),
    (dict(version=0), "positive integer"),
    (dict(model_name="../x"), "plain folder name"),
    (dict(model_name="two\nlines"), r"--model_name='two\\nlines' must be a plain folder name"),
    # The web page loaded './m' for m#1 (a fragment) and failed; Serving's URL /v1/models/m#1 too.
    (dict(model_name="m#1"), r"--model_name='m#1' must be a plain folder name \(no /, no leading \., none of # \? %"),
    (dict(model_name="a?b"), "plain folder name"), (dict(model_name="50%"), "plain folder name"),
    (dict(checkpoint="/nonexistent/ckpt-3"), "Cannot restore the generator"),
    (dict(targets={"saved_model": saved_model_target.Options(max_request_pixels=1000)}),
     r"--max_request_pixels=1000 is below what the warmup requests hold .*: raise it, or export a smaller "
     r"--image_size\.$"),
    (dict(targets={"saved_model": saved_model_target.Options(max_pixels=1000)}),  # The flag the user gave.
     r"^--max_pixels=1000 \(the request cap without --max_request_pixels\) is below what the warmup"),
    (dict(targets={"saved_model": saved_model_target.Options(max_pixels=20000, max_request_pixels=2**19)}),
     r"^--max_pixels=20000 is below the warmup image that translate_native pads to 128x256 \(32768 pixels"),
    (dict(version=2**63), "at most 9223372036854775807"),  # Serving's versions are int64.
    (dict(model_name="a[1]"), r"--model_name=a\[1\]: TensorFlow reads the path .* rename the folder"),
])
def test_export_refuses_impossible_requests(tmp_path_factory, data_dir, tmp_path, options, message):
    from pix2pix_tf.errors import Pix2pixError

    config = exporter.ExportConfig(workdir=trained_run(tmp_path_factory, data_dir), export_dir=str(tmp_path),
                                   **options)
    with pytest.raises(Pix2pixError, match=message):
        exporter.export(config)
    assert not os.listdir(tmp_path)  # Refused before anything was written.


@pytest.mark.slow
def test_a_request_cap_below_the_check_batch_is_kept_to_by_the_checks(tmp_path_factory, data_dir, tmp_path):
    """--max_request_pixels above the warmup requests but below the check images together: the
    SavedModel, TFLite and ONNX checks send the check images in requests within the cap (the
    SavedModel refused the whole batch, in a traceback)."""
    workdir = trained_run(tmp_path_factory, data_dir)
    cap = 2 * 128 * 128 + 1000  # Two images of the export's size; one of the ONNX check's wider size.
    result = run_program("export", f"--workdir={workdir}", f"--export_dir={tmp_path}", "--check_examples=5",
                         f"--max_request_pixels={cap}", "--tflite=float32", *(["--onnx"] if ONNX_INSTALLED else []))
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert artifacts.read_metadata(str(tmp_path / "pix2pix" / "1"))["max_request_pixels"] == cap
    assert "float32" in result.stdout and "ok" in result.stdout
    if ONNX_INSTALLED:
        assert "ONNX (onnxruntime against the SavedModel's translate_float_deterministic)" in result.stdout


def test_the_version_is_free_under_every_format_s_folder_and_a_file_in_the_way_is_refused_first(
        tmp_path_factory, data_dir, tmp_path):
    """All artifacts of an export share a version: one free under the SavedModel's folder but
    taken under the TFLite one is not chosen. A file where a format's folder goes is refused
    before anything is loaded or published, not found after the SavedModel was published."""
    from pix2pix_tf.export import versions
    from pix2pix_tf.export.config import ExportError

    bases = [str(tmp_path / "pix2pix"), str(tmp_path / "tflite" / "pix2pix")]
    (tmp_path / "tflite" / "pix2pix" / "1").mkdir(parents=True)
    (tmp_path / "tflite" / "pix2pix" / "²").mkdir()  # str.isdigit's, not Serving's: ignored.
    assert versions.choose_version(bases, None) == 2
    with pytest.raises(ExportError, match=f"Version 1 already exists in {bases[1]};"):
        versions.choose_version(bases, 1)
    assert versions.choose_version(bases, 5) == 5

    for in_the_way in ("tflite", "pix2pix"):
        export_dir = tmp_path / f"blocked_{in_the_way}"
        export_dir.mkdir()
        (export_dir / in_the_way).write_text("my notes")
        result = run_program("export", f"--workdir={trained_run(tmp_path_factory, data_dir)}",
                             f"--export_dir={export_dir}", "--tflite=float32")
        assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-2000:]
        assert (f"error: {export_dir / in_the_way} is a file where the export keeps a folder; move it away"
                in result.stderr), result.stderr[-2000:]
        assert sorted(os.listdir(export_dir)) == [in_the_way] and (export_dir / in_the_way).read_text() == "my notes"


def test_a_base_path_linked_to_another_filesystem_is_published_into(tmp_path):
    """A Serving base path that is a link to a mounted volume: the staging folder was made beside
    the link, and the rename into the volume failed once the export was done (`error: Invalid
    cross-device link: <the staging folder>`). A link to nothing is named as such, not as a file."""
    from pix2pix_tf.export import versions
    from pix2pix_tf.export.config import ExportError

    volume = tempfile.mkdtemp(dir="/dev/shm") if os.path.isdir("/dev/shm") else None
    if volume is None or os.stat(volume).st_dev == os.stat(tmp_path).st_dev:
        pytest.skip("no second filesystem (/dev/shm) here")
    try:
        base = tmp_path / "export" / "pix2pix"
        base.parent.mkdir()
        base.symlink_to(volume)

        def write(staging: str, final: str) -> str:
            return pathlib.Path(staging, "saved_model.pb").write_text("a model") and os.path.join(final, "x")

        assert versions.publish_staged(str(base), 1, write)[0] == str(base / "1")
        assert os.listdir(volume) == ["1"] and (base / "1" / "saved_model.pb").read_text() == "a model"
        assert os.listdir(base.parent) == ["pix2pix"]  # No staging folder left beside the link.
    finally:
        shutil.rmtree(volume)
    base.unlink()
    base.symlink_to(tmp_path / "nothing")
    with pytest.raises(ExportError, match=rf"^{base} is a symbolic link to nothing \({tmp_path / 'nothing'}\) "
                                          "where the export keeps a folder"):
        versions.check_folders(str(base.parent), [str(base)])
    base.unlink()
    (tmp_path / "notes.txt").write_text("mine")
    base.symlink_to(tmp_path / "notes.txt")  # A link to a file is a file where a folder goes.
    with pytest.raises(ExportError, match=rf"^{base} is a file where the export keeps a folder"):
        versions.check_folders(str(base.parent), [str(base)])


def test_a_saved_model_folder_resolves_to_its_highest_version_as_named(tmp_path):
    """Serving's layout: `<model>/<version>/`; a zero-padded version folder is read under its own
    name, and a folder whose digits are not ASCII ('²') is not a version."""
    for name in ("1", "02", "²"):
        (tmp_path / "m" / name).mkdir(parents=True)
        (tmp_path / "m" / name / artifacts.SAVED_MODEL_FILE).write_bytes(b"")
    assert artifacts.resolve_saved_model(str(tmp_path / "m")) == str(tmp_path / "m" / "02")


def _hidden_entries(export_dir) -> set[str]:
    return {n for n in os.listdir(export_dir) if n.startswith(".")} if os.path.isdir(export_dir) else set()


def _staging_folders(export_dir) -> set[str]:
    """Hidden folders only: an export's writability probe (a hidden file) may exist for an instant."""
    return {n for n in _hidden_entries(export_dir) if os.path.isdir(os.path.join(export_dir, n))}


def _start_until_staging(command: list[str], export_dir, log) -> tuple[forked.Popen, set[str]]:
    """An export.py process (tests/forked.py), returned once its staging folder exists (and that folder)."""
    before = _staging_folders(export_dir)
    process = forked.Popen(command, cwd=ROOT, stdout=log, stderr=log)
    deadline = time.monotonic() + 240
    while not _staging_folders(export_dir) - before:
        assert process.poll() is None, f"the export ended before staging (rc {process.returncode})"
        assert time.monotonic() < deadline, "no staging folder appeared"
        time.sleep(0.01)
    return process, _staging_folders(export_dir) - before


def _export_with_a_broken_tflite_variant(workdir: str, export_dir, monkeypatch) -> exporter.ExportError:
    """A --nobatch_statistics export whose float16 variant cannot pass its PSNR floor (raised
    out of reach: "broken"): refused, after the SavedModel passed its own check and was published."""
    monkeypatch.setitem(exporter.PSNR_FLOORS, "float16", 1000.0)  # No real file can pass.
    moving_averages = InferenceMode(dropout=False, batch_statistics=False)
    config = exporter.ExportConfig(workdir=workdir, export_dir=str(export_dir), model_name="m",
                                    targets={"tflite": tflite_target.Options(variants=("float16",))}, check_examples=1,
                                    mode=moving_averages)
    refused = "(?s)float16 do not reproduce the SavedModel.*no TFLite file"
    with pytest.raises(exporter.ExportError, match=refused) as error:
        exporter.export(config)
    return error.value


@contextlib.contextmanager
def read_only_view(run_dir: str, view):
    """`run_dir` seen at `view` through a read-only bind mount (root ignores file modes, not a
    read-only mount; mounting needs root, as CI has): yields the view, or None with why not
    where it cannot be mounted here."""
    view.mkdir()
    mounted = subprocess.run(["mount", "--bind", run_dir, str(view)], capture_output=True, text=True)
    if mounted.returncode != 0:
        yield None, f"cannot bind-mount here: {mounted.stderr.strip()}"
        return
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(view)], check=True, capture_output=True)
        yield view, ""
    finally:
        subprocess.run(["umount", "-l", str(view)], check=False)


@pytest.mark.slow
def test_a_killed_exports_staging_folder_is_removed_by_the_next_export_a_live_ones_is_kept(
        tmp_path_factory, data_dir, tmp_path, monkeypatch, generator):
    """The next export is also the one whose broken TFLite variant is refused (one export
    serves both): the SavedModel it published is version 1, in --nobatch_statistics mode.
    Where a read-only bind mount can be made, the exports read the run through one: with
    --export_dir elsewhere, a read-only run exports (it is only read), as
    test_a_read_only_workdir_needs_export_dir_and_says_so says."""
    run_dir = trained_run(tmp_path_factory, data_dir)
    with read_only_view(run_dir, tmp_path / "read-only-run") as (view, _):
        _killed_live_and_next_exports(str(view or run_dir), view is not None, tmp_path, monkeypatch, generator)


def _killed_live_and_next_exports(workdir: str, read_only: bool, tmp_path, monkeypatch, generator) -> None:
    export_dir = tmp_path / "export"
    assert not read_only or not os.access(workdir, os.W_OK)  # Read-only even for root: written, it would fail.
    command = [sys.executable, os.path.join(ROOT, "export.py"), f"--workdir={workdir}", f"--export_dir={export_dir}",
               "--model_name=m", "--tflite=", "--check_examples=1"]
    killed, left_behind = _start_until_staging(command, export_dir, forked.DEVNULL)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    assert _staging_folders(export_dir) == left_behind  # kill -9 mid-export: the staging folder stays...
    with open(tmp_path / "live.log", "w") as log:
        live, in_progress = _start_until_staging(command, export_dir, log)
        live.send_signal(signal.SIGSTOP)  # A concurrent export, alive but not finishing while the next one runs.
        try:
            error = _export_with_a_broken_tflite_variant(workdir, export_dir, monkeypatch)
            assert _staging_folders(export_dir) == in_progress  # ...until the next export: the live one's is kept.
            # The refused variant: the SavedModel passed its own check and was published as version 1...
            assert os.listdir(export_dir / "m") == ["1"]
            assert artifacts.read_metadata(str(export_dir / "m" / "1"))["version"] == 1
            # (Where the run is read-only: the export from it was published where --export_dir says.)
            assert f"Published before this failure: {export_dir / 'm' / '1'};" in str(error), str(error)
            assert not os.path.exists(export_dir / "tflite" / "m")  # ...no TFLite file was...
            # ...and the refused export left no staging folder or other hidden entry of its own.
            assert _hidden_entries(export_dir) == in_progress and _hidden_entries(export_dir / "tflite") == set()
        finally:
            live.send_signal(signal.SIGCONT)
        live.wait(timeout=240)
    stderr = (tmp_path / "live.log").read_text()
    # Two concurrent exports of one version: the second to finish refuses cleanly, overwriting nothing.
    assert live.returncode == 1 and "appeared while exporting" in stderr and "Traceback" not in stderr, stderr[-3000:]
    assert _hidden_entries(export_dir) == set() and os.listdir(export_dir / "m") == ["1"]
    # --nobatch_statistics: the export is Keras' inference-mode call.
    image = tf.random.stateless_uniform([1, 128, 128, 3], seed=[3, 4], minval=-1, maxval=1)
    got = tf.saved_model.load(str(export_dir / "m" / "1")).signatures["translate_float"](images=image)["output"]
    np.testing.assert_allclose(got.numpy(), generator(image, training=False).numpy(), atol=1e-4)


@pytest.fixture
def read_only_run(tmp_path_factory, data_dir, tmp_path):
    """The trained run seen through a read-only bind mount (`read_only_view`)."""
    with read_only_view(trained_run(tmp_path_factory, data_dir), tmp_path / "read-only-run") as (view, why_not):
        if view is None:
            pytest.skip(why_not)
        yield view


@pytest.mark.slow
def test_a_read_only_workdir_needs_export_dir_and_says_so(read_only_run):
    """Without --export_dir the export would go into the run: refused, with what to do. With
    --export_dir elsewhere a read-only run exports: the killed-export test's exports read the
    run through the same read-only mount, and its next export publishes a SavedModel from it."""
    result = run_program("export", f"--workdir={read_only_run}", "--tflite=")
    assert result.returncode == 1, result.stderr[-2000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert os.path.join(str(read_only_run), "export") in errors[0] and "--export_dir" in errors[0]


@pytest.mark.slow
def test_a_workdir_that_is_a_file_is_a_message(tmp_path):
    not_a_folder = tmp_path / "run"
    not_a_folder.write_text("not a run")
    result = run_program("export", f"--workdir={not_a_folder}")
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert f"error: --workdir={not_a_folder} is a file" in result.stderr


def test_int8_calibration_asked_for_more_images_than_the_run_has_uses_each_once(tmp_path_factory, data_dir,
                                                                                caplog):
    """--calibration_examples=1000000 on a run of 64 training images: each once (the stream
    repeated them in memory until the process was killed, at 15 GB). More check images than the
    held-out split has: all of them, with a warning (it said nothing)."""
    from pix2pix_tf.config import TrainConfig
    from pix2pix_tf.export.config import ExportConfig, TrainingInputs
    from pix2pix_tf.export.examples import load_examples

    workdir = trained_run(tmp_path_factory, data_dir)
    train = TrainConfig.load(workdir)
    examples = load_examples(train, ExportConfig(workdir=workdir, check_examples=1000), 128,
                             TrainingInputs(1_000_000, "calibration", "another variant"))
    assert examples.calibration.shape == (examples.num_train, 128, 128, 3)
    assert examples.images.shape == (16, 128, 128, 3) and examples.source == "16 held-out images of shapes/64"
    assert "1000 held-out images asked for (--check_examples), the run's test split has 16: checking on those." \
        in caplog.text
