"""Faults that long GAN runs meet: a kill during a save, corrupt checkpoints, a full disk, two processes, a
wrong config (signals at random moments: tests/test_interrupts.py).

A run must never lose more than the work since its last checkpoint.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
import tensorflow as tf

from pix2pix_tf.config import TrainConfig
from pix2pix_tf.errors import ConfigError, DatasetError
from pix2pix_tf.training.loop import train

import forked
from conftest import TINY_DATASET, copied_run, tiny_config
from process_fixtures import GRAPH_OPTIMIZER_OFF
from programs import run_program

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def train_flags(workdir, data_dir, *extra: str) -> list[str]:
    return [f"--dataset={TINY_DATASET}", f"--data_dir={data_dir}", f"--workdir={workdir}", "--generator=unet_128",
            "--ngf=8", "--ndf=8", "--load_size=143", "--crop_size=128", "--eval_examples=1",
            "--sample_every=100000", "--noprogress", "--seed=2", *extra]


def resuming_run_of_six(workdir, data_dir, *extra: str) -> list[str]:
    """train.py's flags that resume a copy of `run_of_six`: `train_flags` with the run's seed
    (`tiny_config`'s; its model and data flags are `train_flags`' already)."""
    return train_flags(workdir, data_dir, f"--seed={tiny_config(workdir, data_dir).run.seed}", *extra)


# For the runs in processes of their own: the lock and a full disk do not depend on the model's
# width or its norm layers, and a narrower model without them traces and steps for less CPU.
NARROW = ("--ngf=4", "--ndf=4", "--norm=none")


def command(workdir, data_dir, *extra: str) -> list[str]:
    """train.py in a process of its own (tests/forked.py), for the tests about processes (kills, a
    live second one)."""
    return [sys.executable, os.path.join(ROOT, "train.py"), *train_flags(workdir, data_dir, *extra)]


def start(cmd: list[str]) -> forked.Popen:
    return forked.Popen(cmd, cwd=ROOT, stdout=forked.PIPE, stderr=forked.PIPE, text=True, prelude=GRAPH_OPTIMIZER_OFF)


def wait_for(condition, process: forked.Popen, timeout: float = 180) -> None:
    deadline = time.time() + timeout
    while not condition():
        assert process.poll() is None, process.communicate()[1][-3000:]
        assert time.time() < deadline, "timed out"
        time.sleep(0.05)


def latest_step(workdir) -> int:
    path = tf.train.latest_checkpoint(os.path.join(workdir, "checkpoints"))
    return int(path.rsplit("-", 1)[1]) if path else 0


@pytest.mark.slow
def test_a_corrupt_newest_checkpoint_falls_back_to_the_previous_one(tmp_path, data_dir, run_of_six, caplog):
    workdir = copied_run(run_of_six, tmp_path / "run")
    data_file = next((workdir / "checkpoints").glob("ckpt-6.data-*"))
    data_file.write_bytes(data_file.read_bytes()[:1000])  # truncated, as by a crash or a bad disk
    with caplog.at_level(logging.WARNING):
        result = train(tiny_config(workdir, data_dir, optim=dict(steps=8), run=dict(save_every=2, eval_examples=0)))
    assert "ckpt-6 is unreadable" in caplog.text and data_file.name in caplog.text
    assert "Falling back to" in caplog.text and "ckpt-4" in caplog.text
    assert result.step == 8


@pytest.mark.slow
def test_a_checkpoint_of_another_model_is_a_clear_error(run_of_six, tmp_path, data_dir):
    workdir = copied_run(run_of_six, tmp_path / "run")
    stored = TrainConfig.load(str(workdir))
    other = tiny_config(workdir, data_dir, model=dict(ngf=16), optim=dict(steps=8))
    # config.json edited to match the new flags, the checkpoints left as they were:
    TrainConfig(model=other.model, data=stored.data, loss=stored.loss, optim=stored.optim,
                run=dataclasses.replace(stored.run, workdir=str(workdir))).save(str(workdir))
    with pytest.raises(ConfigError, match=r"ckpt-6 does not fit the model of config.json"):
        train(other)
    for program in ("export", "evaluate"):  # export and evaluate refuse it alike
        result = run_program(program, f"--workdir={workdir}")
        assert result.returncode != 0 and "Traceback" not in result.stderr, result.stderr[-2000:]
        assert "ckpt-6 does not fit the model of" in result.stderr and "config.json" in result.stderr


@pytest.mark.slow
def test_a_second_process_on_the_same_workdir_refuses(tmp_path, data_dir):
    workdir = tmp_path / "run"
    first = start(command(workdir, data_dir, *NARROW, "--steps=100000", "--save_every=2"))
    try:
        wait_for(lambda: latest_step(workdir) >= 2, first)
        # Paused while the second one runs: still live and holding the workdir, but not training
        # (and saving every 2 steps) on the CPU the second one needs.
        first.send_signal(signal.SIGSTOP)
        saving = workdir / "checkpoints" / "ckpt-99999999_temp"  # as a save of the live process in progress
        saving.mkdir()
        second = run_program("train", *train_flags(workdir, data_dir, *NARROW, "--steps=100000"))
        assert second.returncode == 1
        assert f"is in use by a training process (pid {first.pid}" in second.stderr
        assert "Traceback" not in second.stderr
        assert saving.is_dir()  # a live process's save is never cleaned away
    finally:
        first.send_signal(signal.SIGTERM)
        first.send_signal(signal.SIGCONT)
        first.communicate(timeout=120)
    assert first.returncode == 128 + signal.SIGTERM  # Stopped with its checkpoint, not finished.


@pytest.fixture
def mount():
    """`mount(point, *options)` runs `mount *options point` (real file systems need root, as CI
    has; the test is skipped, saying why, where mounting is impossible); all are unmounted after."""
    points = []

    def mount_at(point, *options: str) -> None:
        result = subprocess.run(["mount", *options, str(point)], capture_output=True, text=True)
        if result.returncode != 0:
            pytest.skip(f"cannot mount here (mount {' '.join(options)}): {result.stderr.strip()}")
        if point not in points:
            points.append(point)

    yield mount_at
    for point in reversed(points):
        subprocess.run(["umount", "-l", str(point)], check=False)


@pytest.fixture
def small_disk(tmp_path, mount):
    """A 40 MB tmpfs: a real file system that fills up."""
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    mount(mount_point, "-t", "tmpfs", "-o", "size=40m", "tmpfs")
    return mount_point


def fill(path) -> None:
    """Writes `path` until its file system refuses: by MiB, then by page, so none is left."""
    with open(path, "wb", buffering=0) as f:
        for chunk in (1 << 20, 4096):
            try:
                while True:
                    f.write(b"\0" * chunk)
            except OSError:
                pass


def refused(flags: list[str]) -> str:
    """Runs train.py with `flags`, which must stop with one `error:` line and exit code 1;
    returns its stderr."""
    result = run_program("train", *flags)
    assert result.returncode == 1, result.stderr[-3000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    return result.stderr


def test_a_workdir_that_is_a_file_is_refused(tmp_path, data_dir):
    workdir = tmp_path / "run"
    workdir.write_text("my notes")
    stderr = refused(train_flags(workdir, data_dir, "--steps=1"))
    assert f"error: --workdir={workdir} is a file; a run needs a folder." in stderr
    assert workdir.read_text() == "my notes"


def test_a_lock_file_that_is_a_link_or_a_fifo_is_refused_and_nothing_is_written_through_it(tmp_path, data_dir):
    """The run's lock file was opened through a link and the holder's line written over the
    link's target (a user's file), and a FIFO in its place stopped the run with "File or stream
    is not seekable."."""
    workdir, precious = tmp_path / "run", tmp_path / "precious.txt"
    workdir.mkdir()
    precious.write_text("the user's notes")
    (workdir / ".train.lock").symlink_to(precious)
    stderr = refused(train_flags(workdir, data_dir, "--steps=1"))
    assert (f"error: {workdir / '.train.lock'} is a symbolic link (to {precious}); it is not written through. "
            "Remove the link or choose another output folder.") in stderr.splitlines()
    assert precious.read_text() == "the user's notes"
    (workdir / ".train.lock").unlink()
    os.mkfifo(workdir / ".train.lock")
    stderr = refused(train_flags(workdir, data_dir, "--steps=1"))
    assert (f"error: {workdir / '.train.lock'}, the run's lock file, is a FIFO, not a regular file; move it "
            "away.") in stderr.splitlines()
    assert sorted(os.listdir(workdir)) == [".train.lock"]


def test_a_refused_run_removes_the_folders_it_made_and_keeps_the_user_s(tmp_path, data_dir):
    """A refusal after the workdir check (which makes the folder to prove it writable) removes the
    folders that check made, parents included, and leaves a folder the user made, and its contents."""
    missing = {"dataset": f"folder:{tmp_path / 'no_such_pairs'}"}
    new = tmp_path / "new" / "nested" / "run"
    with pytest.raises(DatasetError, match="no such directory"):
        train(tiny_config(new, data_dir, data=missing))
    assert os.listdir(tmp_path) == []
    mine = tmp_path / "mine"
    mine.mkdir()
    with pytest.raises(DatasetError, match="no such directory"):
        train(tiny_config(mine / "run", data_dir, data=missing))
    assert os.listdir(mine) == []
    (mine / "notes.txt").write_text("mine")
    with pytest.raises(DatasetError, match="no such directory"):
        train(tiny_config(mine, data_dir, data=missing))
    assert os.listdir(mine) == ["notes.txt"]


CANNOT_READ = "TensorFlow reads the path of a checkpoint or of a SavedModel's variables as a file pattern"


@pytest.mark.parametrize("name", ["run[1]", "run\\1"], ids=["bracket", "backslash"])
def test_a_workdir_whose_checkpoints_tensorflow_cannot_read_is_refused(tmp_path, data_dir, name):
    """TensorFlow's checkpoint reader takes '[' and '\\' in a path as pattern syntax, so a run there
    could never resume: refused before anything is written."""
    workdir = tmp_path / name
    message = f"error: --workdir={workdir}: {CANNOT_READ}"
    assert message in refused(train_flags(workdir, data_dir, "--steps=1"))
    assert not workdir.exists()
    export = run_program("export", f"--workdir={workdir}")
    assert export.returncode == 1 and message in export.stderr and "Traceback" not in export.stderr


def test_a_workdir_whose_name_is_not_utf8_is_refused_by_train_translate_and_export(tmp_path, data_dir):
    """A folder named in another encoding (Latin-1's e-acute): TensorFlow takes paths as UTF-8 text,
    so train stopped in a UnicodeEncodeError traceback and translate blamed the checkpoint."""
    workdir = tmp_path / os.fsdecode(b"run_\xe9")
    message = f"error: --workdir={workdir}: TensorFlow takes a path as UTF-8 text, and this one holds bytes"
    assert message in refused(train_flags(workdir, data_dir, "--steps=1"))
    assert not workdir.exists()
    image = tmp_path / "in.png"
    tf.io.write_file(str(image), tf.io.encode_png(tf.zeros([64, 64, 3], tf.uint8)))
    for program, *flags in (("export",), ("translate", f"--input={image}", f"--output_dir={tmp_path / 'out'}")):
        result = run_program(program, f"--workdir={workdir}", *flags)
        assert result.returncode == 1 and message in result.stderr and "Traceback" not in result.stderr, (
            program, result.stderr[-2000:])


def test_every_other_path_tensorflow_would_read_a_model_from_is_refused_where_it_cannot(tmp_path, run_of_six):
    """The same reader is under a run that translate or evaluate restores, --checkpoint,
    --saved_model, export's --export_dir (the export is loaded back to be checked) and the FCN
    segmenter's SavedModels: each is refused by name before any work, where TensorFlow would
    say only that no file matched (and translate that the model is damaged)."""
    from pix2pix_tf.experiments import paper

    run = copied_run(run_of_six, tmp_path / "run")
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    bad = tmp_path / "models[1]"
    image, out = tmp_path / "in.png", tmp_path / "out"
    tf.io.write_file(str(image), tf.io.encode_png(tf.zeros([64, 64, 3], tf.uint8)))
    io = [f"--input={image}", f"--output_dir={out}"]
    cases = [("translate", "workdir", bad, io), ("evaluate", "workdir", bad, []), ("demo", "workdir", bad, []),
             ("translate", "saved_model", bad, io),
             ("translate", "checkpoint", bad / "ckpt-6", [f"--workdir={run}", *io]),
             ("evaluate", "segmenter", bad, [f"--workdir={run}"]),
             ("evaluate", "segmenter_cache", bad, [f"--workdir={run}"]),
             ("export", "export_dir", bad, [f"--workdir={run}"])]
    for program, flag, path, others in cases:
        result = run_program(program, f"--{flag}={path}", *others)
        assert result.returncode == 1, (program, flag, result.stderr[-2000:])
        assert f"error: --{flag}={path}: {CANNOT_READ}" in result.stderr and "Traceback" not in result.stderr
    for root, cache, flag in ((tmp_path / "paper[1]", None, "root"), (tmp_path / "paper", bad, "segmenter_cache")):
        with pytest.raises(ConfigError, match=f"--{flag}=.*{CANNOT_READ}"):
            paper.reproduce(paper.SETTINGS["tiny"], str(root), ["l1"], segmenter_cache=cache and str(cache))
        assert not root.exists()
    assert not bad.exists() and not out.exists()
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before


@pytest.mark.slow
@pytest.mark.parametrize("new_folder", [False, True], ids=["the_mount_itself", "a_folder_to_create_in_it"])
def test_a_read_only_workdir_is_refused_for_a_new_run(tmp_path, data_dir, mount, new_folder):
    read_only = tmp_path / "ro"
    read_only.mkdir()
    mount(read_only, "-t", "tmpfs", "-o", "size=1m,ro", "tmpfs")
    workdir = read_only / "run" if new_folder else read_only
    stderr = refused(train_flags(workdir, data_dir, "--steps=1"))
    assert f"error: --workdir={workdir} cannot be written (Read-only file system)." in stderr


@pytest.mark.slow
def test_a_read_only_workdir_is_refused_for_a_resumed_run(tmp_path, data_dir, run_of_six, mount):
    run = copied_run(run_of_six, tmp_path / "run")
    read_only = tmp_path / "ro"
    read_only.mkdir()
    mount(read_only, "--bind", str(run))
    mount(read_only, "-o", "remount,bind,ro")
    before = sorted(os.listdir(run / "checkpoints"))
    stderr = refused(resuming_run_of_six(read_only, data_dir, "--steps=8"))
    assert f"error: --workdir={read_only} cannot be written (Read-only file system)." in stderr
    assert sorted(os.listdir(run / "checkpoints")) == before


@pytest.mark.slow
def test_a_disk_full_at_the_start_is_refused(small_disk, data_dir):
    fill(small_disk / "filler")
    workdir = small_disk / "run"
    stderr = refused(train_flags(workdir, data_dir, "--steps=1"))
    assert f"error: --workdir={workdir} cannot be written (No space left on device)." in stderr


@pytest.mark.slow
def test_a_stop_during_the_last_step_s_save_waits_for_it(tmp_path, data_dir, monkeypatch):
    """A first SIGINT while the last step's checkpoint is written: the save completes and the run
    ends as stopped with that step checkpointed. The save was abandoned, leaving only its staging
    folder, which the next run removed: every step since the last periodic save was lost."""
    from pix2pix_tf.training.checkpoints import RunCheckpoints

    write_whole = RunCheckpoints._write_whole

    def interrupted(self, step: int) -> str:
        os.kill(os.getpid(), signal.SIGINT)  # Handled at the next bytecode: inside the save.
        return write_whole(self, step)

    monkeypatch.setattr(RunCheckpoints, "_write_whole", interrupted)
    result = train(tiny_config(tmp_path / "run", data_dir, optim={"steps": 3}))
    assert result.stopped_early and result.stopped_by == "SIGINT" and result.step == 3
    assert result.checkpoint == str(tmp_path / "run" / "checkpoints" / "ckpt-3")
    assert sorted(os.listdir(tmp_path / "run" / "checkpoints")) == [
        "checkpoint", "ckpt-3.data-00000-of-00001", "ckpt-3.index"]


def test_the_next_run_removes_what_a_kill_during_a_save_left(tmp_path, data_dir, run_of_six):
    # A folder name with glob's '?' and a data file's suffix; a neighbour it would match as a pattern.
    workdir, neighbour = tmp_path / "runs?.data-2026", tmp_path / "runs1.data-2026" / "checkpoints" / "ckpt-7_temp"
    neighbour.mkdir(parents=True)
    copied_run(run_of_six, workdir)  # Checkpoints of steps 2, 4 and 6.
    checkpoints = workdir / "checkpoints"
    # What SIGKILL during the save of step 7 leaves: the staging folder of the whole checkpoint
    # (its files renamed into place, the index last, only once complete), data files renamed
    # before their index, the index file's temporary copy (TensorFlow's, in a cluster; ours).
    staging = checkpoints / "ckpt-7_temp"
    staging.mkdir()
    for file in checkpoints.glob("ckpt-6.*"):
        shutil.copy(file, staging / file.name.replace("ckpt-6", "ckpt-7"))
    shutil.copy(checkpoints / "ckpt-6.data-00000-of-00001", checkpoints / "ckpt-7.data-00000-of-00001")
    (checkpoints / "checkpoint.tmp5f1e0c2a").write_text((checkpoints / "checkpoint").read_text())
    (checkpoints / ".checkpoint.5f1e0c2a.tmp").write_text((checkpoints / "checkpoint").read_text())
    result = run_program("train", *resuming_run_of_six(workdir, data_dir, "--save_every=1", "--steps=7"))
    assert result.returncode == 0, result.stderr[-3000:]
    for leftover in ("ckpt-7_temp", "ckpt-7.data-00000-of-00001", "checkpoint.tmp5f1e0c2a", ".checkpoint.5f1e0c2a.tmp"):
        assert leftover in result.stderr  # said, not silent
    assert f"Resumed from {checkpoints / 'ckpt-6'} at step 6." in result.stderr
    assert "Done: step 7/7" in result.stdout
    assert sorted(p for p in os.listdir(checkpoints) if "temp" in p or ".tmp" in p) == []
    assert latest_step(workdir) == 7
    assert neighbour.is_dir()  # Another run's files are never this run's leftovers.


def test_a_seeded_run_resumed_without_seed_keeps_its_seed_and_deterministic_ops(tmp_path, data_dir, run_of_six):
    """The README's resume is "run the same command"; a user who leaves --seed out still resumes
    the seeded run as it was: its seed and its op determinism (config.json recorded
    deterministic_ops false, and the run no longer repeated exactly)."""
    workdir = copied_run(run_of_six, tmp_path / "run")
    unseeded = [flag for flag in train_flags(workdir, data_dir, "--steps=6") if not flag.startswith("--seed")]
    result = run_program("train", *unseeded)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"{workdir} records a run started with --seed={tiny_config(workdir, data_dir).run.seed}: its seed and " \
           "deterministic ops are kept." in result.stderr
    recorded = json.loads((workdir / "config.json").read_text())["run"]
    assert recorded["seed"] == tiny_config(workdir, data_dir).run.seed and recorded["deterministic_ops"] is True


def test_a_full_disk_during_a_file_s_write_names_the_file(small_disk):
    """The kernel's ENOSPC from write() carries no file name; every program's message names the
    file it was writing (evaluate's report on a full disk said only "the device holding:")."""
    from pix2pix_tf import writing
    from pix2pix_tf.cli import describe_os_error

    fill(small_disk / "filler")
    path = small_disk / "eval" / "grid.png"
    with pytest.raises(OSError) as caught:
        writing.write_file(str(path), b"x" * (1 << 20))
    assert caught.value.filename == str(path)
    assert describe_os_error(caught.value) == (f"No space left on the device holding {path}: free some space or "
                                               "choose another folder.")
    assert not path.exists() and writing.leftover_temporaries(str(path)) == []


@pytest.mark.slow
def test_an_export_onto_a_full_disk_is_one_line_saying_what_was_published(tmp_path, run_of_six, mount):
    """TensorFlow writes a SavedModel's variables itself, and a full disk there is its
    ResourceExhaustedError, not an OSError: export stopped in a traceback, without saying that an
    earlier format was published."""
    for size, flags, published in (("1m", ["--tflite="], False), ("6m", ["--tflite=float32,float16"], True)):
        disk = tmp_path / f"disk_{size}"
        disk.mkdir()
        mount(disk, "-t", "tmpfs", "-o", f"size={size}", "tmpfs")
        # One check example (of 8): the checks write nothing; what fills the disk is the same.
        result = run_program("export", f"--workdir={run_of_six}", f"--export_dir={disk}", "--check_examples=1", *flags)
        errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
        assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-3000:]
        assert errors and "No space left on device" in errors[0], result.stderr[-3000:]
        assert (f"Published before this failure: {disk / 'pix2pix' / '1'}; nothing else was." in result.stderr) \
            == published, result.stderr[-3000:]


@pytest.mark.slow
def test_a_full_disk_while_saving_is_a_clear_error_and_keeps_the_previous_checkpoint(small_disk, data_dir):
    workdir = small_disk / "run"
    process = start(command(workdir, data_dir, *NARROW, "--steps=100000", "--save_every=3", "--log_every=100000"))
    wait_for(lambda: latest_step(workdir) >= 3, process)
    fill(small_disk / "filler")
    stdout, stderr = process.communicate(timeout=300)
    assert process.returncode == 1
    assert "Saving the checkpoint of step" in stderr and "the checkpoints on disk are: ckpt-" in stderr
    assert "failed: No space left on device" in stderr, stderr[-3000:]  # Not TensorFlow's temporary file first.
    assert "Traceback" not in stderr
    intact = tf.train.latest_checkpoint(str(workdir / "checkpoints"))
    reader = tf.train.load_checkpoint(intact)  # readable, complete
    assert reader.get_tensor("step/.ATTRIBUTES/VARIABLE_VALUE") == latest_step(workdir)
    leftovers = [p for p in os.listdir(workdir / "checkpoints") if "_temp" in p]
    assert not leftovers
