"""train.py and export.py as a user runs them: clear errors, kill -9 and resume, Ctrl-C/SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from conftest import TINY_DATASET

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def train_command(workdir, data_dir, *extra: str) -> list[str]:
    return [sys.executable, os.path.join(ROOT, "train.py"), f"--dataset={TINY_DATASET}",
            f"--data_dir={data_dir}", f"--workdir={workdir}", "--generator=unet_128", "--ngf=8", "--ndf=8",
            "--load_size=143", "--crop_size=128", "--eval_examples=1", "--sample_every=1000", *extra]


def run(command: list[str], timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=ROOT)


@pytest.mark.parametrize("flags,message", [
    (["--dataset=edges2cats"], "not a known dataset"),
    (["--dataset=edges2shoes"], "not supported yet"),
    (["--crop_size=160", "--load_size=143"], "larger than --load_size"),
    (["--crop_size=96", "--load_size=143"], "multiples of 128"),
    (["--lambda_l1=-1"], "non-negative"),
])
def test_user_mistakes_get_a_message_not_a_traceback(tmp_path, data_dir, flags, message):
    result = run(train_command(tmp_path / "run", data_dir, "--steps=1", *flags))
    assert result.returncode != 0
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_export_says_not_yet(tmp_path):
    result = run([sys.executable, os.path.join(ROOT, "export.py"), f"--workdir={tmp_path}"])
    assert result.returncode == 2 and "not available yet" in result.stderr


def wait_for_checkpoint(workdir, step: int, process: subprocess.Popen, timeout: float = 180) -> None:
    index = os.path.join(workdir, "checkpoints", "checkpoint")
    deadline = time.time() + timeout
    while time.time() < deadline:
        assert process.poll() is None, process.communicate()[1][-3000:]
        if os.path.exists(index) and any(
                int(line.split("ckpt-")[1].strip('"\n')) >= step
                for line in open(index) if line.startswith("all_model_checkpoint_paths")):
            return
        time.sleep(0.2)
    raise TimeoutError(f"no checkpoint of step {step} within {timeout} s")


def test_sigkill_then_rerun_resumes_from_the_last_checkpoint(tmp_path, data_dir):
    workdir = tmp_path / "run"
    command = train_command(workdir, data_dir, "--steps=30", "--save_every=4", "--seed=5")
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    wait_for_checkpoint(workdir, 8, process)
    process.send_signal(signal.SIGKILL)
    process.communicate()
    result = run(command)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Resumed from" in result.stderr
    resumed_at = int(result.stderr.split("Resumed from")[1].split("at step")[1].split(".")[0])
    assert 8 <= resumed_at < 30
    assert "Done: step 30/30" in result.stdout


def test_sigterm_checkpoints_and_stops_cleanly(tmp_path, data_dir):
    workdir = tmp_path / "run"
    command = train_command(workdir, data_dir, "--steps=100000", "--save_every=3")
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    wait_for_checkpoint(workdir, 3, process)
    process.send_signal(signal.SIGTERM)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 0, stderr[-3000:]
    assert "SIGTERM received: checkpointing step" in stderr
    stopped_at = int(stderr.split("checkpointing step")[1].split()[0])
    assert f"Done: step {stopped_at}/100000" in stdout
    assert os.path.exists(workdir / "checkpoints" / f"ckpt-{stopped_at}.index")


def test_mirrored_over_two_cpu_replicas_with_synchronized_batch_norm(tmp_path, data_dir):
    result = run(train_command(tmp_path / "run", data_dir, "--steps=2", "--cpu_replicas=2", "--batch_size=2",
                               "--norm=syncbatch"))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Training on 2 replica(s) with MirroredStrategy" in result.stderr
    assert "Done: step 2/2" in result.stdout
