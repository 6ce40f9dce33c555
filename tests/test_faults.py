"""Faults that long GAN runs meet: kills, corrupt checkpoints, a full disk, two processes, a wrong config.

A run must never lose more than the work since its last checkpoint.
"""

from __future__ import annotations

import logging
import os
import random
import signal
import subprocess
import sys
import time

import pytest
import tensorflow as tf

from pix2pix_tf.config import TrainConfig
from pix2pix_tf.errors import ConfigError
from pix2pix_tf.training.loop import train

from conftest import TINY_DATASET, tiny_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def command(workdir, data_dir, *extra: str) -> list[str]:
    return [sys.executable, os.path.join(ROOT, "train.py"), f"--dataset={TINY_DATASET}", f"--data_dir={data_dir}",
            f"--workdir={workdir}", "--generator=unet_128", "--ngf=8", "--ndf=8", "--load_size=143",
            "--crop_size=128", "--eval_examples=1", "--sample_every=100000", "--noprogress", "--seed=2", *extra]


def start(cmd: list[str]) -> subprocess.Popen:
    return subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(condition, process: subprocess.Popen, timeout: float = 180) -> None:
    deadline = time.time() + timeout
    while not condition():
        assert process.poll() is None, process.communicate()[1][-3000:]
        assert time.time() < deadline, "timed out"
        time.sleep(0.05)


def latest_step(workdir) -> int:
    path = tf.train.latest_checkpoint(os.path.join(workdir, "checkpoints"))
    return int(path.rsplit("-", 1)[1]) if path else 0


def test_sigkill_at_random_moments_then_rerun_completes(tmp_path, data_dir):
    """Kills land anywhere, checkpoint writes included (one every step); nothing is lost."""
    # Far more steps than three short lives can reach, so the last kill still lands mid-run.
    workdir, total = tmp_path / "run", 150
    cmd = command(workdir, data_dir, f"--steps={total}", "--save_every=1")
    rng = random.Random(0)
    resumed_from = []
    for _ in range(3):
        process = start(cmd)
        before = latest_step(workdir)
        wait_for(lambda b=before: latest_step(workdir) > b, process)
        time.sleep(rng.uniform(0.0, 1.5))
        process.send_signal(signal.SIGKILL)
        process.communicate()
        resumed_from.append(latest_step(workdir))
    assert resumed_from == sorted(resumed_from) and resumed_from[-1] < total
    result = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"Done: step {total}/{total}" in result.stdout
    assert latest_step(workdir) == total


def test_a_corrupt_newest_checkpoint_falls_back_to_the_previous_one(tmp_path, data_dir, caplog):
    train(tiny_config(tmp_path, data_dir, optim=dict(steps=4), run=dict(save_every=2)))
    data_file = next((tmp_path / "checkpoints").glob("ckpt-4.data-*"))
    data_file.write_bytes(data_file.read_bytes()[:1000])  # truncated, as by a crash or a bad disk
    with caplog.at_level(logging.WARNING):
        result = train(tiny_config(tmp_path, data_dir, optim=dict(steps=6), run=dict(save_every=2)))
    assert "ckpt-4 is unreadable" in caplog.text and data_file.name in caplog.text
    assert "Falling back to" in caplog.text and "ckpt-2" in caplog.text
    assert result.step == 6


def test_a_checkpoint_of_another_model_is_a_clear_error(tmp_path, data_dir):
    train(tiny_config(tmp_path, data_dir, optim=dict(steps=1)))
    stored = TrainConfig.load(str(tmp_path))
    other = tiny_config(tmp_path, data_dir, model=dict(ngf=16), optim=dict(steps=2))
    # config.json edited to match the new flags, the checkpoint left as it was:
    TrainConfig(model=other.model, data=stored.data, loss=stored.loss, optim=stored.optim,
                run=stored.run).save(str(tmp_path))
    with pytest.raises(ConfigError, match=r"ckpt-1 does not fit the model of config.json"):
        train(other)
    for app in (["export.py"], ["-m", "pix2pix_tf.evaluate"]):  # export and evaluate refuse it alike
        script = [os.path.join(ROOT, app[0])] if app[0].endswith(".py") else app
        result = subprocess.run([sys.executable, *script, f"--workdir={tmp_path}"], cwd=ROOT, capture_output=True,
                                text=True, timeout=300)
        assert result.returncode != 0 and "Traceback" not in result.stderr, result.stderr[-2000:]
        assert "ckpt-1 does not fit the model of" in result.stderr and "config.json" in result.stderr


def test_a_second_process_on_the_same_workdir_refuses(tmp_path, data_dir):
    workdir = tmp_path / "run"
    first = start(command(workdir, data_dir, "--steps=100000", "--save_every=2"))
    try:
        wait_for(lambda: latest_step(workdir) >= 2, first)
        second = subprocess.run(command(workdir, data_dir, "--steps=100000"), cwd=ROOT, capture_output=True,
                                text=True, timeout=120)
        assert second.returncode == 1
        assert f"is in use by a training process (pid {first.pid}" in second.stderr
        assert "Traceback" not in second.stderr
    finally:
        first.send_signal(signal.SIGTERM)
        first.communicate(timeout=120)
    assert first.returncode == 0


@pytest.fixture
def small_disk(tmp_path):
    """A 40 MB tmpfs: a real file system that fills up (needs root, as CI has)."""
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=40m", "tmpfs", str(mount_point)],
                            capture_output=True, text=True)
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {result.stderr.strip()}")
    yield mount_point
    subprocess.run(["umount", "-l", str(mount_point)], check=False)


def test_a_full_disk_while_saving_is_a_clear_error_and_keeps_the_previous_checkpoint(small_disk, data_dir):
    workdir = small_disk / "run"
    process = start(command(workdir, data_dir, "--steps=100000", "--save_every=3", "--log_every=100000"))
    wait_for(lambda: latest_step(workdir) >= 3, process)
    filler = small_disk / "filler"
    with open(filler, "wb") as f:  # fill the disk until it refuses
        try:
            while True:
                f.write(b"\0" * (1 << 20))
                f.flush()
        except OSError:
            pass
    stdout, stderr = process.communicate(timeout=300)
    assert process.returncode == 1
    assert "Saving the checkpoint of step" in stderr and "The previous checkpoint is intact" in stderr
    assert "Traceback" not in stderr
    intact = tf.train.latest_checkpoint(str(workdir / "checkpoints"))
    reader = tf.train.load_checkpoint(intact)  # readable, complete
    assert reader.get_tensor("step/.ATTRIBUTES/VARIABLE_VALUE") == latest_step(workdir)
    leftovers = [p for p in os.listdir(workdir / "checkpoints") if "_temp" in p]
    assert not leftovers
