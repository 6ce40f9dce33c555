"""What a user ships and runs outside our code: the int8 file's ops, the docs' op table, the model
card, the REST recipe of docs/serving.md, and the programs' stderr."""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf

from pix2pix_tf import native_logs
from pix2pix_tf.export import contents
from pix2pix_tf.inference import artifacts

import forked
from export_helpers import ROOT, run

INTEGER = {"int8", "uint8", "int16", "int32"}


def int8_files(export: dict) -> dict[str, str]:
    return {"float32 I/O": os.path.join(export["tflite_paper"], "tiny_int8.tflite"),
            "uint8 I/O": os.path.join(export["tflite_deterministic"], "tiny_int8.tflite")}


def ops_with_types(path: str) -> tuple[list[tuple[str, list[str], list[str], list[int], list[int]]], set, set]:
    """(op name, input dtypes, output dtypes, input tensors, output tensors) of every op as the
    LiteRT interpreter reads the file without delegates (XNNPACK would replace them), and the
    model's input and output tensors."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    interpreter = Interpreter(model_path=path,
                              experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    interpreter.allocate_tensors()
    dtypes = {t["index"]: np.dtype(t["dtype"]).name for t in interpreter.get_tensor_details()}
    ops = [(op["op_name"], [dtypes[i] for i in op["inputs"] if i >= 0], [dtypes[i] for i in op["outputs"]],
            [int(i) for i in op["inputs"] if i >= 0], [int(i) for i in op["outputs"]])
           for op in interpreter._get_ops_details()]
    return (ops, {d["index"] for d in interpreter.get_input_details()},
            {d["index"] for d in interpreter.get_output_details()})


def test_int8_file_is_integer_from_input_to_output(export):
    for io, path in int8_files(export).items():
        ops, inputs, outputs = ops_with_types(path)
        floating = []
        for name, in_types, out_types, in_tensors, out_tensors in ops:
            if set(in_types + out_types) <= INTEGER:
                continue
            at_input = name == "QUANTIZE" and set(in_tensors) <= inputs
            at_output = name == "DEQUANTIZE" and set(out_tensors) <= outputs
            if not (at_input or at_output):
                floating.append(f"{name} {in_types} -> {out_types}")
        assert floating == [], (io, len(floating), floating[:12])
        assert "NEG" not in {op[0] for op in ops}
        assert contents.float_ops_inside(path) == []  # The export's own reader agrees...
        report = json.load(open(artifacts.tflite_report_path(path)))
        assert report["variants"]["int8"]["float_ops_inside"] == []  # ...and says so in report.json.
    uint8_ops, _, _ = ops_with_types(int8_files(export)["uint8 I/O"])
    assert not [op for op in uint8_ops if "float32" in op[1] + op[2]]  # uint8 I/O: no float tensor at all.


def docs_op_table() -> str:
    text = open(os.path.join(ROOT, "docs", "tflite.md")).read()
    match = re.search(r"<!-- op table:.*?-->\n(.*?)<!-- end of op table -->", text, re.S)
    assert match, "docs/tflite.md has no op table between its markers"
    return match.group(1)


def test_docs_op_table_is_what_the_files_contain(export):
    reports = [json.load(open(os.path.join(export[k], artifacts.TFLITE_REPORT)))
               for k in ("tflite_paper", "tflite_deterministic")]
    for folder, report in zip(("tflite_paper", "tflite_deterministic"), reports):
        for variant, entry in report["variants"].items():
            ops, _, _ = ops_with_types(os.path.join(export[folder], entry["file"]))
            assert entry["ops"] == sorted({op[0] for op in ops}), variant  # report.json lists the file's ops.
    assert docs_op_table() == contents.render_op_table(reports)
    # The generator as a user runs it prints the same table.
    printed = run([sys.executable, "-m", "pix2pix_tf.export.contents",
                   *(os.path.join(export[k], artifacts.TFLITE_REPORT)
                     for k in ("tflite_paper", "tflite_deterministic"))])
    assert printed.returncode == 0, printed.stderr[-2000:]
    assert printed.stdout == docs_op_table()


def card_facts(path: str) -> dict[str, str]:
    return dict(re.findall(r"^- \*\*(.+?)\*\*: (.+)$", open(path).read(), re.M))


def test_model_card_beside_the_saved_model_and_the_tflite_files(export, data_dir):
    from pix2pix_tf.config import TrainConfig
    from pix2pix_tf.data import pipeline
    from pix2pix_tf.evaluation.metrics import pooled_psnr
    from pix2pix_tf.inference import checkpoint_source, generate
    from pix2pix_tf.inference.mode import DETERMINISTIC

    generator, config, _ = checkpoint_source.load_generator(export["workdir"])
    dataset = pipeline.load_paired_dataset(config.data)
    pairs = list(pipeline.held_out_pairs(dataset, config.data, 3, 3, limit=2).as_numpy_iterator())
    inputs, targets = np.stack([a for a, _ in pairs]), np.stack([b for _, b in pairs])
    outputs = generate.generate(generator, tf.constant(inputs), DETERMINISTIC).numpy()
    l1 = float(np.mean(np.abs(outputs - targets)))
    saved_model_card = artifacts.model_card_path(export["paper"])
    tflite_card = os.path.join(export["tflite_paper"], artifacts.MODEL_CARD)
    for path in (saved_model_card, tflite_card):
        facts = card_facts(path)
        assert facts["Generator"] == "unet_128" and facts["ngf"] == "8" and facts["Norm"] == "batch"
        assert facts["Model"] == "pix2pix generator unet_128 (U-Net, 7 down-samplings)"  # The catalogue's words.
        assert facts["Parameters"] == f"{generator.count_params():,}"
        assert facts["Dataset"] == "shapes/64" and facts["Direction"].startswith("AtoB")
        assert facts["Training pairs"] == str(dataset.num_train)
        assert facts["Steps trained"].startswith("2 at batch 1")  # The checkpoint's step (export_helpers trains 2).
        held_out = re.match(rf"L1 {l1:.4f}, pooled PSNR ([\d.]+) dB on 2 pairs of the 'test' split",
                            facts["Held-out metrics"])
        assert held_out, (facts["Held-out metrics"], l1)
        assert float(held_out.group(1)) == pytest.approx(pooled_psnr(targets, outputs), abs=0.01)
        # The SavedModel's paper mode; the TFLite files have no dropout, and their card says so.
        dropout = "dropout on" if path == saved_model_card else "no dropout"
        assert f"per-image batch statistics, {dropout}" in facts["Inference mode"]
        assert ("Dropout is on at test time" in open(path).read()) == (path == saved_model_card)
        assert facts["Input"].startswith("128 x 128 x 3 (RGB)") and "[-1, 1]" in facts["Input"]
        text = open(path).read()
        assert "## Intended use and limits" in text and "Trained on 64 pairs" in text
        assert "The TFLite files and the SavedModel's square signatures take 128 x 128" in text  # Both written.
        assert TrainConfig.load(export["workdir"]).data.dataset in text
    tflite_text = open(tflite_card).read()
    for variant in artifacts.TFLITE_VARIANTS:
        file = os.path.join(export["tflite_paper"], f"tiny_{variant}.tflite")
        assert f"| tiny_{variant}.tflite | {os.path.getsize(file)} |" in tflite_text
    assert "normalisation mean [127.5] std [127.5]" in tflite_text and "no metadata block" in tflite_text
    uint8_card = open(os.path.join(export["tflite_deterministic"], artifacts.MODEL_CARD)).read()
    scale, zero_point = json.load(open(os.path.join(export["tflite_deterministic"], artifacts.TFLITE_REPORT))
                                  )["variants"]["int8"]["io_quantization"]["input"]
    assert f"uint8 (input q = round(x / {scale:.6g}) + {zero_point};" in uint8_card
    # The card does not get in Serving's way: the SavedModel with it loads and serves.
    signatures = tf.saved_model.load(export["paper"]).signatures
    png = tf.io.encode_png(np.full((40, 50, 3), 90, np.uint8))
    output = signatures[artifacts.SIGNATURE_PNG](images=tf.constant([png.numpy()]))[artifacts.OUTPUT_BYTES]
    assert tf.io.decode_png(output[0]).shape == (128, 128, 3)


def fenced_block(path: str, heading: str) -> str:
    """The first ```sh block after `heading` in a markdown file: the commands a user copies."""
    text = open(path).read()
    after = text[text.index(heading + "\n"):]
    return re.search(r"```sh\n(.*?)```", after, re.S).group(1)


@pytest.mark.slow
def test_docs_rest_recipe_runs_with_a_large_image(servers, tmp_path):
    recipe = fenced_block(os.path.join(ROOT, "docs", "serving.md"), "## REST")
    pixels = np.random.default_rng(0).integers(0, 256, (600, 500, 3), dtype=np.uint8)
    jpeg = tf.io.encode_jpeg(pixels, quality=95).numpy()
    (tmp_path / "input.jpg").write_bytes(jpeg)
    assert len(jpeg) > 200_000 and len(base64.b64encode(jpeg)) > 131072  # Over Linux's limit for one argument.
    env = dict(os.environ, SERVER=servers["rest"], MODEL="tiny")
    result = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", recipe], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, (result.stdout[-2000:], result.stderr[-2000:])
    expected = servers["fake"].run(artifacts.SIGNATURE_PNG, {"images": np.array([jpeg], dtype=object)})
    png = (tmp_path / "output.png").read_bytes()
    picture = tf.io.decode_png(png).numpy()
    assert picture.shape == (128, 128, 3)
    np.testing.assert_array_equal(picture, tf.io.decode_png(expected[artifacts.OUTPUT_BYTES][0]).numpy())
    answer = json.loads((tmp_path / "output.json").read_text())["predictions"][0]
    assert tf.io.decode_png(base64.b64decode(answer[artifacts.OUTPUT_BYTES]["b64"])).shape == (128, 128, 3)
    assert np.asarray(answer[artifacts.OUTPUT_FLOAT]).shape == (128, 128, 3)


CUINIT_FAILED = (b"E0000 00:00:1796510105.127129   20996 cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA "
                 b"error: Failed call to cuInit: UNKNOWN ERROR (303)\n")
NOISY_PROGRAM = textwrap.dedent(f"""
    import os
    from pix2pix_tf import cli

    def main(argv):
        os.write(2, b"E0000 00:00:1796041853.462698   17555 meta_optimizer.cc:967] remapper failed: INVALID_ARGUMENT: "
                    b"Mutation::Apply error: fanout 'gradient_tape/d/c1_lrelu/LeakyRelu/LeakyReluGrad' exist for "
                    b"missing node 'd/c1_conv/BiasAdd'.\\n")
        os.write(2, b"E0000 00:00:1796041853.5   17555 meta_optimizer.cc:967] remapper failed: INTERNAL: news\\n")
        os.write(2, b"E0000 00:00:1.6 17555 jpeg_mem.cc:331] Premature end of JPEG data. Stopped at line 4/9\\n")
        os.write(2, b"E0000 00:00:1796041853.7   17555 jpeg_mem.cc:331] Corrupt JPEG data: news\\n")
        os.write(2, b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\\n")
        os.write(2, b"I0000 00:00:1796503268.885690   18992 port.cc:153] oneDNN custom operations are on.\\n")
        os.write(2, b"W0000 00:00:1796503268.9   18992 cpu_feature_guard.cc:1] A warning before logging starts.\\n")
        os.write(2, {CUINIT_FAILED!r})
        os.write(2, b"I1205 21:08:16.128507 140146617695104 loop.py:162] Training on 1 replica(s).\\n")
        os.write(2, b"I1206 00:45:47.267421 140333918952320 functional_saver.py:440] Sharding callback duration: "
                    b"49 microseconds\\n")
        os.write(2, b"I1206 00:45:47.3 140333918952320 functional_saver.py:451] Sharding callback: news\\n")
        os.write(2, b"Epoch 1: 50%\\r")
        raise OSError(28, "No space left on device", "/full")

    cli.run_program(main)
""")


@pytest.mark.parametrize("level", ["0", "1", "2"])
def test_only_the_known_native_noise_is_dropped(tmp_path, level):
    """Only those lines go, and the lines logged before TensorFlow's logging starts (which
    ignore TF_CPP_MIN_LOG_LEVEL) of a severity the level hides: other C++ errors, the
    program's own lines and errors, and partial lines pass."""
    script = tmp_path / "noisy.py"
    script.write_text(NOISY_PROGRAM)
    noisy = run([sys.executable, str(script)], env=dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL=level))
    assert noisy.returncode == 1
    lines = noisy.stderr.splitlines()
    assert not [line for line in lines if "LeakyReluGrad" in line or "Premature end" in line], lines
    assert [line for line in lines if line.endswith("remapper failed: INTERNAL: news")]
    assert [line for line in lines if line.endswith("Corrupt JPEG data: news")]
    assert ("oneDNN custom operations are on." in noisy.stderr) == (level == "0")
    assert ("A warning before logging starts." in noisy.stderr) == (level in ("0", "1"))
    assert ("All log messages before absl::InitializeLog()" in noisy.stderr) == (level in ("0", "1"))
    assert ("failed call to cuInit" in noisy.stderr) == native_logs.nvidia_driver_loaded()
    assert "loop.py:162] Training on 1 replica(s)." in noisy.stderr  # The program's own INFO line.
    assert "Sharding callback duration" not in noisy.stderr and "Sharding callback: news" in noisy.stderr
    assert "Epoch 1: 50%" in noisy.stderr  # A line not ended yet (text mode reads its \r as a line end).
    assert "error: No space left on the device holding /full" in noisy.stderr


@pytest.mark.parametrize("driver_loaded", [False, True])
def test_a_failed_cuinit_is_noise_only_where_no_nvidia_driver_is_loaded(tmp_path, driver_loaded):
    source, sink = tmp_path / "stderr", tmp_path / "shown"
    other_error = b"E0000 00:00:1.5 20996 cuda_platform.cc:60] failed to load libcuda: news\n"
    source.write_bytes(CUINIT_FAILED + other_error)
    with open(source, "rb") as read, open(sink, "wb") as write:
        native_logs.forward(read.fileno(), write.fileno(),
                            native_logs.NOISE + native_logs.missing_driver_noise(driver_loaded))
    assert sink.read_bytes() == (CUINIT_FAILED if driver_loaded else b"") + other_error


@pytest.mark.slow
def test_programs_drop_known_native_noise_and_keep_real_errors(export, tmp_path):
    # Real programs: a training step (the remapper line) and a truncated JPEG (libjpeg's line).
    workdir = tmp_path / "run"
    data_dir = json.load(open(os.path.join(export["workdir"], "config.json")))["data"]["data_dir"]
    train = forked.run([sys.executable, os.path.join(ROOT, "train.py"), f"--workdir={workdir}", "--dataset=shapes/64",
                        f"--data_dir={data_dir}", "--generator=unet_128", "--ngf=8", "--ndf=8", "--load_size=143",
                        "--crop_size=128", "--steps=1", "--sample_every=1000", "--save_every=1000",
                        "--eval_examples=1", "--noprogress"], cwd=ROOT, timeout=300)
    assert train.returncode == 0, train.stderr[-3000:]
    assert "Step 1/1" in train.stderr and "remapper failed" not in train.stderr, train.stderr[-3000:]
    assert "Sharding callback duration" not in train.stderr, train.stderr[-3000:]  # Its checkpoint saved.
    assert not re.search(r"^[IW]0000 00:00:|^WARNING: All log messages", train.stderr, re.M), train.stderr[-3000:]
    if not native_logs.nvidia_driver_loaded():
        assert "cuInit" not in train.stderr, train.stderr[-3000:]
    jpeg = tf.io.encode_jpeg(np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)).numpy()
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "cut.jpg").write_bytes(jpeg[:len(jpeg) // 2])
    translate = forked.run([sys.executable, "-m", "pix2pix_tf.translate", f"--workdir={workdir}",
                            f"--output_dir={tmp_path / 'out'}", str(tmp_path / "in")], cwd=ROOT, timeout=300)
    assert translate.returncode == 1
    assert f"error: {tmp_path / 'in' / 'cut.jpg'}: JPEG data that cannot be decoded" in translate.stderr
    assert "Premature end of JPEG data" not in translate.stderr, translate.stderr[-3000:]
