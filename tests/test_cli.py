"""train.py and export.py as a user runs them: clear errors (their main, in this process:
tests/programs.py), kill -9 and resume, Ctrl-C/SIGTERM (fresh processes)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import TINY_DATASET
from programs import run_program

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def train_flags(workdir, data_dir, *extra: str) -> list[str]:
    return [f"--dataset={TINY_DATASET}", f"--data_dir={data_dir}", f"--workdir={workdir}", "--generator=unet_128",
            "--ngf=8", "--ndf=8", "--load_size=143", "--crop_size=128", "--eval_examples=1", "--sample_every=1000",
            *extra]


def train_command(workdir, data_dir, *extra: str) -> list[str]:
    return [sys.executable, os.path.join(ROOT, "train.py"), *train_flags(workdir, data_dir, *extra)]


def run(command: list[str], timeout: float = 300) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "TF_CONFIG"}
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=ROOT, env=env)


@pytest.mark.parametrize("flags,message", [
    (["--dataset=edges2cats"], "not a known dataset"),
    (["--dataset=folder:/nonexistent/images"], "no such directory"),
    (["--crop_size=160", "--load_size=143"], "larger than --load_size"),
    (["--crop_size=96", "--load_size=143"],
     "--crop_size=96: --generator=unet_128 takes images whose sides are multiples of 128; use --crop_size=128."),
    (["--lambda_l1=-1"], "non-negative"),
    (["--strategy=multi_worker"], "TF_CONFIG environment variable, which is not set"),
    (["--lr=nan"], "--lr must be a finite number, got nan."),
    (["--discriminator=n_layers", "--n_layers_d=9"], "a PatchGAN of 9 layers leaves no patch of a 128x128 image"),
])
def test_user_mistakes_get_a_message_not_a_traceback(tmp_path, data_dir, flags, message):
    result = run_program("train", *train_flags(tmp_path / "run", data_dir, "--steps=1", *flags))
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and message in errors[0], result.stderr[-3000:]
    assert result.stderr.count(message) == 1, result.stderr[-3000:]  # Once: not also as a log line.
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "run" / "config.json").exists()  # Refused before anything is written.


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


@pytest.mark.slow
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


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "ctrl-c"])
def test_sigterm_and_ctrl_c_checkpoint_and_stop_cleanly(tmp_path, data_dir, signum):
    workdir = tmp_path / "run"
    command = train_command(workdir, data_dir, "--steps=100000", "--save_every=3")
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    wait_for_checkpoint(workdir, 3, process)
    process.send_signal(signum)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 128 + signum, stderr[-3000:]  # 143, 130: stopped, not finished.
    name = signal.Signals(signum).name
    assert f"{name} received: checkpointing step" in stderr
    stopped_at = int(stderr.split("checkpointing step")[1].split()[0])
    assert (f"error: {name} received: stopped; step {stopped_at}/100000 checkpointed "
            f"({workdir / 'checkpoints' / f'ckpt-{stopped_at}'}); run the same command to resume.") in stderr
    assert "Traceback" not in stderr and "Done:" not in stdout
    assert os.path.exists(workdir / "checkpoints" / f"ckpt-{stopped_at}.index")


@pytest.mark.slow
def test_mirrored_over_two_cpu_replicas_with_synchronized_batch_norm(tmp_path, data_dir):
    result = run(train_command(tmp_path / "run", data_dir, "--steps=2", "--cpu_replicas=2", "--batch_size=2",
                               "--norm=syncbatch"))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Training on 2 replica(s) with MirroredStrategy" in result.stderr
    assert "Done: step 2/2" in result.stdout


def fake_authors_archive(path, name: str, splits=(("train", 6), ("val", 2))) -> None:
    """`name.tar.gz` in the published layout: name/<split>/<i>_AB.jpg, A|B side by side, 512x256."""
    import io
    import tarfile

    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(1)
    with tarfile.open(path, "w:gz") as archive:
        for split, count in splits:
            for i in range(count):
                buffer = io.BytesIO()
                Image.fromarray(rng.integers(0, 256, (256, 512, 3), dtype=np.uint8)).save(buffer, "JPEG")
                member = tarfile.TarInfo(f"{name}/{split}/{i + 1}_AB.jpg")
                member.size = buffer.tell()
                buffer.seek(0)
                archive.addfile(member, buffer)


@pytest.mark.slow
def test_an_authors_archive_copied_by_hand_trains_offline(tmp_path, monkeypatch):
    manual = tmp_path / "tfds" / "downloads" / "manual"
    manual.mkdir(parents=True)
    fake_authors_archive(manual / "edges2shoes.tar.gz", "edges2shoes")
    # No proxy, no route: any attempt to download would fail instead of reaching a server.
    monkeypatch.setenv("http_proxy", "http://127.0.0.1:9")
    monkeypatch.setenv("https_proxy", "http://127.0.0.1:9")
    result = run_program("train", "--dataset=edges2shoes", f"--data_dir={tmp_path / 'tfds'}",
                         f"--workdir={tmp_path / 'run'}", "--generator=unet_128", "--ngf=8", "--ndf=8",
                         "--load_size=143", "--crop_size=128", "--eval_examples=1", "--steps=3")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Done: step 3/3" in result.stdout
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["data"]["direction"] == "AtoB" and config["data"]["dataset"] == "edges2shoes"


def damaged_config(workdir, data_dir, defect: str) -> None:
    """A run's config.json with one kind of damage a hand edit or a bad copy leaves."""
    from conftest import tiny_config

    tiny_config(workdir, data_dir).save(str(workdir))
    values = json.loads((workdir / "config.json").read_text())
    if defect == "not_an_object":
        values = [values]
    elif defect == "section_of_another_type":
        values["model"] = []
    elif defect == "null_field":
        values["model"]["ngf"] = None
    elif defect == "unknown_generator":
        values["model"]["generator"] = "unet_512"
    elif defect == "unknown_top_level_key":
        values["notes"] = "tuned by hand"
    (workdir / "config.json").write_text(json.dumps(values))


@pytest.mark.parametrize("program", ["train", "export"])
@pytest.mark.parametrize("defect,message", [
    ("not_an_object", "config.json must hold a JSON object with the sections model, data, loss, optim, run"),
    ("section_of_another_type", "config.json: section 'model' must be a JSON object, not a list"),
    ("null_field", "config.json: model.ngf must be an integer, not null"),
    ("unknown_generator", "config.json, section 'model': --generator='unet_512' is not one of"),
    ("unknown_top_level_key", "config.json: unknown sections ['notes']"),
])
def test_a_damaged_config_json_is_named_not_a_traceback(tmp_path, data_dir, program, defect, message):
    """Resuming (train.py) and exporting read config.json alike, and refuse it alike."""
    workdir = tmp_path / "run"
    damaged_config(workdir, data_dir, defect)
    before = (workdir / "config.json").read_text()
    flags = train_flags(workdir, data_dir, "--steps=1") if program == "train" else [f"--workdir={workdir}"]
    result = run_program(program, *flags)
    assert result.returncode == 1, result.stderr[-3000:]
    assert f"error: {workdir / 'config.json'}" in result.stderr and message in result.stderr
    assert "Traceback" not in result.stderr
    assert (workdir / "config.json").read_text() == before  # nothing dropped by a save


def test_a_stop_landing_where_python_drops_exceptions_is_sent_again():
    """Python prints and drops an exception raised in `__del__` or in a weakref callback
    (TensorFlow frees functions in both), so a stop raised there is sent again rather than
    lost; any other dropped exception is reported as before."""
    import weakref

    from pix2pix_tf import cli

    class Finalized:
        def __del__(self):
            raise cli.Interrupted(signal.SIGUSR1)

    class Referent:
        pass

    def callback(_):
        raise cli.Interrupted(signal.SIGUSR2)

    class Broken:
        def __del__(self):
            raise ValueError("not a stop")

    received, reported = [], []
    previous = {signum: signal.signal(signum, lambda signum, frame: received.append(signum))
                for signum in (signal.SIGUSR1, signal.SIGUSR2)}
    hook, sys.unraisablehook = sys.unraisablehook, cli.send_dropped_stops_again(reported.append)
    try:
        Finalized()
        referent = Referent()
        reference = weakref.ref(referent, callback)
        del referent
        Broken()
        deadline = time.monotonic() + 10
        while len(received) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        sys.unraisablehook = hook
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    assert sorted(received) == [signal.SIGUSR1, signal.SIGUSR2] and reference() is None
    assert [type(r.exc_value) for r in reported] == [ValueError]
