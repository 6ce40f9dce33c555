"""A checkpoint that was completely written is never deleted or overwritten, and a damaged
`checkpoints/checkpoint` index never makes a program start over or give up on a run."""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import logging
import os
import re
import signal
import threading

import pytest
import tensorflow as tf

from pix2pix_tf import writing
from pix2pix_tf.checkpoint_reading import CheckpointError
from pix2pix_tf.config import TrainConfig
from pix2pix_tf.errors import ConfigError
from pix2pix_tf.inference.checkpoint_source import load_generator
from pix2pix_tf.training.loop import train

from conftest import TINY_DATASET, copied_run, error_lines, tiny_config
from programs import run_program

# The runs these tests train from the start: the 1x1 PixelGAN, the D of fewest layers (a train()
# call's cost is mostly tracing its step); what they check is how checkpoints are written.
PIXEL_D = dict(discriminator="pixel")


def digests(folder) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.glob("ckpt-*"))}


def test_a_checkpoint_reaches_its_final_name_whole_and_the_newest_are_kept(tmp_path, data_dir):
    """TensorFlow writes a checkpoint's index under its final name after its data, so a process
    killed then would leave a partial `ckpt-N.index`. The checkpoint is written whole into
    `ckpt-N_temp/` first: at the save's write point, before its files are renamed into place,
    nothing of it is under a final name and the staged checkpoint reads back. The index file
    lists the newest --keep_checkpoints saves; the older ones are removed."""
    seen = {}

    def at_a_save(k: int, path: str) -> None:
        name = os.path.basename(path)
        if name.startswith("ckpt-"):
            placed = [f for f in os.listdir(os.path.dirname(path)) if f.startswith(name + ".")]
            staged = tf.train.load_checkpoint(os.path.join(path + "_temp", name)).get_variable_to_shape_map()
            seen[name] = (placed, len(staged))

    config = tiny_config(tmp_path, data_dir, model=PIXEL_D, optim=dict(steps=3),
                         run=dict(save_every=1, keep_checkpoints=2, eval_examples=0))
    with writing.injected_faults(before=at_a_save):
        train(config)
    assert sorted(seen) == ["ckpt-1", "ckpt-2", "ckpt-3"]
    assert all(placed == [] and staged > 50 for placed, staged in seen.values()), seen
    checkpoints = tmp_path / "checkpoints"
    assert sorted(os.listdir(checkpoints)) == ["checkpoint", "ckpt-2.data-00000-of-00001", "ckpt-2.index",
                                               "ckpt-3.data-00000-of-00001", "ckpt-3.index"]
    state = tf.train.get_checkpoint_state(str(checkpoints))
    assert [os.path.basename(p) for p in state.all_model_checkpoint_paths] == ["ckpt-2", "ckpt-3"]
    assert len(state.all_model_checkpoint_timestamps) == 2
    assert tf.train.latest_checkpoint(str(checkpoints)) == str(checkpoints / "ckpt-3")


@pytest.mark.slow
def test_a_stop_right_after_a_save_never_saves_that_step_again(tmp_path, data_dir):
    """SIGTERM arrives while step 2 is being saved and the disk is full for any later save: the
    loop's checkpoint of step 2 is the one kept, and the rerun resumes from it."""
    saves = []

    def disk_fills_after_the_first_save(k: int, path: str) -> None:
        if os.path.basename(path).startswith("ckpt-"):
            saves.append(path)
            if len(saves) == 1:
                os.kill(os.getpid(), signal.SIGTERM)
            else:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), path)

    config = tiny_config(tmp_path, data_dir, model=PIXEL_D, optim=dict(steps=6),
                         run=dict(save_every=2, eval_examples=0))
    with writing.injected_faults(before=disk_fills_after_the_first_save):
        result = train(config)
    assert result.stopped_early and result.step == 2 and len(saves) == 1
    assert result.checkpoint == str(tmp_path / "checkpoints" / "ckpt-2")
    kept = digests(tmp_path / "checkpoints")
    assert sorted(kept) == ["ckpt-2.data-00000-of-00001", "ckpt-2.index"]
    assert train(config).step == 6
    assert {name: digest for name, digest in digests(tmp_path / "checkpoints").items() if name in kept} == kept


@pytest.mark.slow
def test_a_failed_save_removes_only_its_own_files_and_names_what_is_on_disk(run_of_six, tmp_path):
    workdir = copied_run(run_of_six, tmp_path / "run")
    config = dataclass_steps(TrainConfig.load(str(workdir)), 8, workdir)
    before = digests(workdir / "checkpoints")
    # The second write point of the resumed run (no held-out samples) is the save of step 8.
    with writing.injected_faults((2,), errno.EIO) as faults, pytest.raises(CheckpointError) as raised:
        train(config)
    assert faults.points[1].endswith("ckpt-8")
    message = str(raised.value)
    assert "Saving the checkpoint of step 8" in message and "Input/output error" in message
    assert "the checkpoints on disk are: ckpt-2, ckpt-4, ckpt-6." in message
    assert digests(workdir / "checkpoints") == before
    assert train(config).step == 8


def test_a_checkpoint_a_killed_save_left_unrecorded_is_recorded_and_later_removed(run_of_six, tmp_path, caplog):
    """SIGKILL after a save put ckpt-6 in place and before it rewrote the index file: the index
    still records ckpt-2 and ckpt-4 only. The next run records ckpt-6 as that save would have,
    so --keep_checkpoints (3) removes it in its turn instead of keeping it for good."""
    workdir = copied_run(run_of_six, tmp_path / "run")
    index = workdir / "checkpoints" / "checkpoint"
    lines = index.read_text().splitlines()
    index.write_text("\n".join(['model_checkpoint_path: "ckpt-4"', *lines[1:3], *lines[4:6]]) + "\n")
    assert tf.train.get_checkpoint_state(str(workdir / "checkpoints")).all_model_checkpoint_paths[-1].endswith("ckpt-4")
    with caplog.at_level(logging.INFO, logger="absl"):
        result = train(dataclass_steps(TrainConfig.load(str(workdir)), 10, workdir))  # Saves 8 and 10.
    assert result.step == 10 and "Recording ckpt-6, saved by a run stopped" in caplog.text
    assert f"Resumed from {workdir / 'checkpoints' / 'ckpt-6'} at step 6." in caplog.text
    assert sorted(digests(workdir / "checkpoints")) == [f"ckpt-{n}.{part}" for n in (10, 6, 8)
                                                        for part in ("data-00000-of-00001", "index")]
    state = tf.train.get_checkpoint_state(str(workdir / "checkpoints"))
    assert [os.path.basename(p) for p in state.all_model_checkpoint_paths] == ["ckpt-6", "ckpt-8", "ckpt-10"]


def dataclass_steps(config: TrainConfig, steps: int, workdir=None) -> TrainConfig:
    """`config` with another step count (and workdir: a copied run's config.json names the original)."""
    run = dataclasses.replace(config.run, workdir=str(workdir)) if workdir else config.run
    return dataclasses.replace(config, optim=dataclasses.replace(config.optim, steps=steps), run=run)


@pytest.mark.parametrize("index", [b"", b"model_checkpoint_path: {{{ garbled\n", b"\x00\xff\x10garbage"],
                         ids=["zero_bytes", "garbled_text", "binary"])
@pytest.mark.slow
def test_a_damaged_index_is_recovered_from_the_files_by_every_program(run_of_six, tmp_path, index, caplog):
    """translate, evaluate and export restore through `load_generator`; training resumes."""
    workdir = copied_run(run_of_six, tmp_path / "run")
    (workdir / "checkpoints" / "checkpoint").write_bytes(index)
    with caplog.at_level(logging.WARNING):
        _, _, restored = load_generator(str(workdir))
    assert restored == str(workdir / "checkpoints" / "ckpt-6")
    assert "checkpoints/checkpoint is damaged" in caplog.text and "ckpt-6, ckpt-4, ckpt-2" in caplog.text
    before = digests(workdir / "checkpoints")
    config = TrainConfig.load(str(workdir))
    result = train(dataclass_steps(config, 8, workdir))
    assert result.step == 8
    after = digests(workdir / "checkpoints")
    assert {k: v for k, v in after.items() if k in before} == before


def within(seconds: float, fn, *args):
    """fn(*args) in a thread, failing the test if it has not returned in `seconds` (a read of a
    FIFO waits for a writer forever, and the daemon thread does not keep the tests from ending)."""
    outcome = {}

    def run():
        try:
            outcome["value"] = fn(*args)
        except Exception as e:  # noqa: BLE001 - raised again in the test's thread
            outcome["error"] = e

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"{fn.__name__} still waits after {seconds} s"
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def test_fifos_in_place_of_checkpoint_files_are_passed_over_not_waited_on(run_of_six, tmp_path, caplog):
    """A FIFO as the index file and as the newest checkpoint's index: TensorFlow's readers would
    wait on each for a writer. The index counts as damaged, ckpt-6 as incomplete: translate,
    evaluate and export (`load_generator`) restore ckpt-4, and training resumes from it."""
    workdir = copied_run(run_of_six, tmp_path / "run")
    checkpoints = workdir / "checkpoints"
    for name in ("checkpoint", "ckpt-6.index"):
        (checkpoints / name).unlink()
        os.mkfifo(checkpoints / name)
    with caplog.at_level(logging.WARNING):
        _, _, restored = within(60, load_generator, str(workdir))
    assert restored == str(checkpoints / "ckpt-4")
    assert f"{checkpoints / 'checkpoint'} is damaged (a FIFO, not a regular file)" in caplog.text
    result = within(120, train, dataclass_steps(TrainConfig.load(str(workdir)), 6, workdir))
    assert result.step == 6 and all(os.path.isfile(checkpoints / name) for name in ("checkpoint", "ckpt-6.index"))
    assert tf.train.get_checkpoint_state(str(checkpoints)).model_checkpoint_path.endswith("ckpt-6")


def test_a_fifo_in_a_saved_model_is_refused_not_waited_on(tmp_path):
    from pix2pix_tf.inference.saved_model_source import load_saved_model

    os.mkfifo(tmp_path / "saved_model.pb")
    with pytest.raises(ConfigError, match=r"saved_model.pb is a FIFO, not a regular file\.$"):
        within(60, load_saved_model, str(tmp_path))


def test_a_damaged_index_still_checks_the_configuration(run_of_six, tmp_path, data_dir):
    """With other flags (--ngf=16), the run is refused, not started over its checkpoints."""
    workdir = copied_run(run_of_six, tmp_path / "run")
    (workdir / "checkpoints" / "checkpoint").write_bytes(b"garbled")
    before = {p: p.read_bytes() for p in workdir.rglob("*") if p.is_file()}
    with pytest.raises(ConfigError, match="model.ngf: 8 in config.json, 16 now"):
        train(tiny_config(workdir, data_dir, model=dict(ngf=16), optim=dict(steps=6), run=dict(save_every=2)))
    after = {p: p.read_bytes() for p in workdir.rglob("*") if p.is_file()}
    assert after == before


@pytest.mark.slow
def test_checkpoint_files_without_a_complete_checkpoint_are_refused_not_overwritten(run_of_six, tmp_path):
    workdir = copied_run(run_of_six, tmp_path / "run")
    for data in (workdir / "checkpoints").glob("ckpt-*.data-*"):
        data.unlink()
    (workdir / "checkpoints" / "checkpoint").write_bytes(b"")
    with pytest.raises(CheckpointError, match=r"No checkpoint in .* is readable: ckpt-2.index, ckpt-4.index, "
                                              r"ckpt-6.index"):
        train(dataclass_steps(TrainConfig.load(str(workdir)), 8, workdir))
    assert sorted(digests(workdir / "checkpoints")) == ["ckpt-2.index", "ckpt-4.index", "ckpt-6.index"]
    with pytest.raises(ConfigError, match="No complete checkpoint"):
        load_generator(str(workdir))


@pytest.mark.slow
def test_a_checkpoint_of_another_shape_is_one_short_line(run_of_six, tmp_path):
    """Where a program restores G (load_generator), and where training resumes under its
    strategy (TensorFlow's message there carries the variable's values)."""
    stored = TrainConfig.load(str(run_of_six))
    other = dataclasses.replace(stored, model=dataclasses.replace(stored.model, ngf=16))
    with pytest.raises(ConfigError) as raised:
        load_generator(str(run_of_six), config=other)
    workdir = copied_run(run_of_six, tmp_path / "run")
    resumed = dataclasses.replace(other, run=dataclasses.replace(other.run, workdir=str(workdir)))
    resumed.save(str(workdir))  # config.json edited by hand: the checkpoints no longer fit it.
    with pytest.raises(ConfigError) as resuming:
        train(resumed)
    for message in (str(raised.value), str(resuming.value)):
        assert "\n" not in message and len(message) < 400, message
        assert re.search(r"e1_conv/kernel has shape \(4,4,3,16\) in the model but \(4,4,3,8\) in the checkpoint\.$",
                         message), message


def test_a_checkpoints_path_that_is_a_file_is_refused_before_training(tmp_path, data_dir):
    workdir = tmp_path / "run"
    workdir.mkdir()
    (workdir / "checkpoints").write_text("not a folder")
    with pytest.raises(ConfigError, match=f"{workdir / 'checkpoints'} is a file where the run keeps a folder"):
        train(tiny_config(workdir, data_dir, optim=dict(steps=50)))
    assert sorted(os.listdir(workdir)) == ["checkpoints"]


def tiny_train(workdir, data_dir) -> list[str]:
    """train.py's flags for a tiny run (`tiny_config`) in `workdir`."""
    return [f"--dataset={TINY_DATASET}", f"--data_dir={data_dir}", f"--workdir={workdir}", "--generator=unet_128",
            "--ngf=8", "--ndf=8", "--load_size=143", "--crop_size=128", "--steps=4", "--noprogress"]


def test_a_logs_path_that_is_a_file_is_refused_in_one_line_before_anything_is_written(tmp_path, data_dir):
    """Only `logs/train` was checked: a file `logs` passed, and the run stopped in TensorFlow's
    FailedPreconditionError traceback after writing config.json."""
    workdir = tmp_path / "run"
    workdir.mkdir()
    (workdir / "logs").write_text("not a folder")
    result = run_program("train", *tiny_train(workdir, data_dir))
    assert error_lines(result) == [f"error: {workdir / 'logs'} is a file where the run keeps a folder: move it "
                                   "away, or use another --workdir."]
    assert sorted(os.listdir(workdir)) == ["logs"]


@pytest.mark.parametrize("kept", ["samples", "logs", "logs/train", "checkpoints"])
def test_a_kept_folder_that_is_a_symbolic_link_is_refused_before_anything_is_written(tmp_path, data_dir, kept):
    """A `samples/` linked to a folder elsewhere had the run's grids written through it, over the
    user's files outside the workdir."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "step_0000000.png").write_bytes(b"the user's picture")
    workdir = tmp_path / "run"
    (workdir / kept).parent.mkdir(parents=True)
    (workdir / kept).symlink_to(elsewhere)
    before = sorted(str(p.relative_to(workdir)) for p in workdir.rglob("*"))
    result = run_program("train", *tiny_train(workdir, data_dir))
    assert error_lines(result) == [f"error: {workdir / kept} is a symbolic link (to {elsewhere}) where the run "
                                   "keeps a folder: it is not written through. Replace it with a folder, or use "
                                   "another --workdir."]
    assert sorted(str(p.relative_to(workdir)) for p in workdir.rglob("*")) == before
    assert os.listdir(elsewhere) == ["step_0000000.png"]
    assert (elsewhere / "step_0000000.png").read_bytes() == b"the user's picture"
