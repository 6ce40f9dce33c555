"""The one model source of export, translate and evaluate: a truncated newest checkpoint is
skipped with a warning that names it, exactly as training resumes (tests/test_faults.py)."""

from __future__ import annotations

import os

import numpy as np
import pytest
import tensorflow as tf

from conftest import copied_run
from programs import run_program


@pytest.fixture(scope="module")
def damaged_run(tmp_path_factory, run_of_six) -> dict:
    """A run with checkpoints at steps 2, 4 and 6 whose newest one was cut short (a crash, a bad disk)."""
    workdir = copied_run(run_of_six, tmp_path_factory.mktemp("damaged") / "run")
    data_file = next((workdir / "checkpoints").glob("ckpt-6.data-*"))
    data_file.write_bytes(data_file.read_bytes()[:1000])
    image = workdir.parent / f"{workdir.name}_input" / "in.png"
    image.parent.mkdir()
    tf.io.write_file(str(image), tf.io.encode_png(np.zeros((32, 32, 3), np.uint8)))
    return {"workdir": str(workdir), "data_file": data_file.name, "image": str(image)}


COMMANDS = {
    "translate": lambda d, out: ["--deterministic", f"--output_dir={out}", d["image"]],
    "evaluate": lambda d, out: ["--nofcn", "--num_examples=1", "--html_examples=0", "--grid_examples=0", "--noprogress",
                                f"--output_dir={out}"],
    "export": lambda d, out: [f"--export_dir={out}", "--tflite=", "--check_examples=1"],
}


@pytest.mark.parametrize("command", [  # Each loads the model anew: translate's in the quick set.
    pytest.param(name, marks=[] if name == "translate" else pytest.mark.slow) for name in sorted(COMMANDS)])
def test_a_truncated_newest_checkpoint_falls_back_to_the_previous_one(damaged_run, tmp_path, command):
    workdir = damaged_run["workdir"]
    result = run_program(command, *COMMANDS[command](damaged_run, tmp_path / "out"), f"--workdir={workdir}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    assert "ckpt-6 is unreadable" in result.stderr and damaged_run["data_file"] in result.stderr
    assert "Falling back to" in result.stderr and "ckpt-4" in result.stderr
    used = os.path.join(workdir, "checkpoints", "ckpt-4")
    if command == "translate":
        assert f"with checkpoint {used} " in result.stdout
    elif command == "evaluate":
        with open(os.path.join(tmp_path, "out", "metrics.json")) as f:
            assert f'"model": "checkpoint {used} ' in f.read()
    else:
        with open(os.path.join(tmp_path, "out", "pix2pix", "1", "assets.extra", "pix2pix_export.json")) as f:
            assert f'"checkpoint": "{os.path.abspath(used)}"' in f.read()


@pytest.mark.slow
def test_a_truncated_checkpoint_named_explicitly_is_refused_not_replaced(damaged_run, tmp_path):
    bad = os.path.join(damaged_run["workdir"], "checkpoints", "ckpt-6")
    result = run_program("translate", f"--workdir={damaged_run['workdir']}", f"--checkpoint={bad}",
                         f"--output_dir={tmp_path}", damaged_run["image"])
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert f"error: Cannot restore the generator from {bad}: Checkpoint {bad} is unreadable" in result.stderr
    assert "Falling back" not in result.stderr and not os.listdir(tmp_path)
