"""Every output whole or not at all, only where asked: `pix2pix_tf.writing`, and the write-fault
matrix that fails each program's writes in turn (docs/reliability.md, "Writes").

The matrix runs each program's `main` through `cli.guarded` in the test process
(tests/write_matrix.py), failing the k-th write with ENOSPC or EIO (alternating), and checks
for every k: everything that was on disk before is byte-identical after, unless the run wrote
it whole at another write point than the failed one (the checkpoint index, derived from the
files, too), no file under a final name is partial, one `error:` line and no traceback, a
non-zero exit, and the same command without the fault completes.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import signal
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from pix2pix_tf import writing

import write_matrix
from programs import run_program

# The 1x1 PixelGAN, 4 base filters, no norm layers and one held-out example: what the programs
# write does not depend on D, on the width of G or its norm layers, or on how many rows a sample
# grid has, and each of the many runs below builds and traces less (a third less CPU a run).
TRAIN_FLAGS = ["--dataset=shapes/64", "--generator=unet_128", "--discriminator=pixel", "--ngf=4", "--ndf=4",
               "--norm=none", "--load_size=143", "--crop_size=128", "--seed=7", "--log_every=1",
               "--eval_examples=1", "--keep_checkpoints=100", "--noprogress"]


def leftovers(folder) -> list[str]:
    return sorted(name for name in os.listdir(folder) if name.endswith(".tmp"))


# ----------------------------------------------------------------------------- the helper


def test_a_failed_write_keeps_the_previous_file_and_removes_its_temporary(tmp_path):
    path = tmp_path / "out.png"
    writing.write_file(str(path), b"the good output")
    for error in (errno.ENOSPC, errno.EIO):
        with writing.injected_faults((1,), error), pytest.raises(OSError) as raised:
            writing.write_file(str(path), b"a new output that does not fit" * 100)
        assert raised.value.errno == error
        assert path.read_bytes() == b"the good output"
        assert leftovers(tmp_path) == []
    writing.write_file(str(path), b"new")
    assert path.read_bytes() == b"new" and leftovers(tmp_path) == []


def test_files_written_together_all_change_or_none_does(tmp_path):
    """`writing.together`: a failed third write (or a stop) leaves the first two files as they
    were, and no temporary; a block that ends well gives every file its new content."""
    report = {name: tmp_path / "report" / name for name in ("metrics.json", "index.html", "grid.png")}
    for path in report.values():
        writing.write_file(str(path), b"earlier " + path.name.encode())
    for stop in (OSError, KeyboardInterrupt):
        with pytest.raises(stop), writing.together():
            writing.write_file(str(report["metrics.json"]), b"new metrics")
            writing.write_file(str(report["index.html"]), b"new page")
            assert report["metrics.json"].read_bytes() == b"earlier metrics.json"  # Held back.
            if stop is OSError:
                with writing.injected_faults((1,)):
                    writing.write_file(str(report["grid.png"]), b"new grid")
            raise stop()
        assert {p.read_bytes() for p in report.values()} == {b"earlier " + p.name.encode() for p in report.values()}
        assert leftovers(tmp_path / "report") == []
    with writing.together():
        for name, path in report.items():
            writing.write_file(str(path), b"new " + name.encode())
        with writing.together():  # Inside another block: that block decides.
            writing.write_file(str(tmp_path / "report" / "extra.txt"), b"extra")
        assert not (tmp_path / "report" / "extra.txt").exists()
    assert all(p.read_bytes() == b"new " + p.name.encode() for p in report.values())
    assert (tmp_path / "report" / "extra.txt").read_bytes() == b"extra" and leftovers(tmp_path / "report") == []


def test_a_stop_during_the_renames_of_files_written_together_waits_for_them(tmp_path, monkeypatch):
    """A Ctrl-C that lands while `together` renames its files (a slow file system widens that
    moment) is delivered after the last rename: a report of two versions was left, every file
    present, half of them the earlier run's."""
    report = [tmp_path / f"{i}.png" for i in range(3)]
    for path in report:
        writing.write_file(str(path), b"earlier")
    check = writing.check_destination

    def checked_then_interrupted(path, within=None):
        if path == str(report[1]) and writing._held is None:  # Renaming: between the first rename and the second.
            os.kill(os.getpid(), signal.SIGINT)
        return check(path, within)

    monkeypatch.setattr(writing, "check_destination", checked_then_interrupted)
    # Ctrl-C as an interactive Python takes it, even where the suite was started as a background job (SIGINT ignored).
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    with pytest.raises(KeyboardInterrupt), contextlib.ExitStack() as restore:
        restore.callback(signal.signal, signal.SIGINT, previous)
        with writing.together():
            for path in report:
                writing.write_file(str(path), b"new")
    assert [path.read_bytes() for path in report] == [b"new"] * 3 and leftovers(tmp_path) == []


def test_a_temporary_file_of_a_process_that_is_gone_is_removed_by_the_next_write_there(tmp_path):
    """What a kill between a write and its rename leaves (`.NAME.<host>-<pid>-<random>.tmp`) is
    removed by the next process that writes into that folder; a live process's temporary, and
    a file of that shape from another machine or none of ours, stay."""
    gone = subprocess.Popen([sys.executable, "-c", ""])
    gone.wait()
    host = writing._HOST
    other_host = f"{(int(host, 16) + 1) % 0x10000:04x}"
    names = {"gone": f".out.png.{host}-{gone.pid}-0123abcd.tmp",
             "alive": f".out.png.{host}-{os.getppid()}-0123abcd.tmp",
             "other_machine": f".out.png.{other_host}-{gone.pid}-0123abcd.tmp", "users": ".notes.tmp"}
    for name in names.values():
        (tmp_path / name).write_bytes(b"partial")
    writing.write_file(str(tmp_path / "out.png"), b"new")
    assert sorted(os.listdir(tmp_path)) == sorted([*(names[k] for k in ("alive", "other_machine", "users")),
                                                   "out.png"])


def test_a_new_file_gets_the_permissions_open_would_give(tmp_path):
    previous = os.umask(0o022)
    try:
        writing.write_text(str(tmp_path / "a.json"), "{}")
    finally:
        os.umask(previous)
    assert (tmp_path / "a.json").stat().st_mode & 0o777 == 0o644


def test_a_symbolic_link_is_never_written_through(tmp_path):
    precious = tmp_path / "precious" / "holiday.png"
    precious.parent.mkdir()
    precious.write_bytes(b"the user's photo")
    out = tmp_path / "out"
    out.mkdir()
    (out / "photo.png").symlink_to("../precious/holiday.png")
    with pytest.raises(writing.UnsafeDestinationError, match="symbolic link"):
        writing.write_file(str(out / "photo.png"), b"x", within=str(out))
    (out / "sub").symlink_to(precious.parent, target_is_directory=True)
    with pytest.raises(writing.UnsafeDestinationError, match="outside"):
        writing.write_file(str(out / "sub" / "holiday.png"), b"x", within=str(out))
    assert precious.read_bytes() == b"the user's photo"
    assert os.listdir(precious.parent) == ["holiday.png"]


# ----------------------------------------------------------------------------- the programs


@pytest.fixture(scope="module")
def base(tmp_path_factory, data_dir):
    """A 4-step run (checkpoints at 2 and 4, samples at its start and end) and three input
    images."""
    root = tmp_path_factory.mktemp("base")
    trained = run_program("train", *TRAIN_FLAGS, "--save_every=2", "--sample_every=4", f"--data_dir={data_dir}",
                          f"--workdir={root / 'run'}", "--steps=4")
    assert trained.returncode == 0, trained.stderr[-3000:]
    (root / "in").mkdir()
    for i in range(3):
        pixels = np.random.default_rng(i).integers(0, 255, (64, 64, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(root / "in" / f"p{i}.png")
    return root


def matrix(base, tmp_path, program: str, ks: list, flags: list[str]) -> list[dict]:
    """Runs tests/write_matrix.py on a copy of `base`; flags name paths under `scratch/`."""
    state, scratch = tmp_path / "state", tmp_path / "scratch"
    shutil.copytree(base, state, symlinks=True)
    flags = [f.replace("scratch/", f"{scratch}/") for f in flags]
    rows = list(write_matrix.rows(program, str(state), str(scratch), [str(k) for k in ks], flags))
    assert len(rows) == len(ks)
    return rows


def check_every_fault(rows: list[dict], scratch) -> None:
    """The invariants of the module docstring; a file the run wrote whole at another write point
    than the failed one may differ (metrics.json records timings, config.json the new --steps)."""
    faults = [r for r in rows if isinstance(r["k"], int)]
    assert {r["error"] for r in faults} == ({"ENOSPC", "EIO"} if len(faults) > 1 else {"ENOSPC"})
    for row in faults:
        failed, k = row["failed"], row["k"]
        where = f"k={k} ({failed['points'][k - 1]}, {row['error']})"
        assert failed["rc"] == 1, where
        assert len(failed["errors"]) == 1 and not failed["traceback"], (where, failed["errors"])
        rewritten = {os.path.relpath(p, str(scratch)) for i, p in enumerate(failed["points"]) if i != k - 1}
        assert set(row["changed"]) <= rewritten, (where, row["changed"])
        assert row["partial"] == [] and row["rerun_partial"] == [], where
        assert row["rerun_rc"] == 0 and row["rerun_errors"] == [], (where, row["rerun_errors"])


@pytest.mark.slow
def test_train_fails_each_kind_of_write_in_turn_and_loses_nothing(base, tmp_path, data_dir):
    """Resuming the 4-step run to 6, sampling and saving every step, writes config.json (1), the
    samples of steps 5 and 6 (2, 8; step 4's is the earlier run's), the TensorBoard logs at each
    save (3, 9), the checkpoints 5 and 6 (4, 6) and after each the checkpoint index (5, 7): every
    write a longer run makes, in the loop (step 5) and after it (step 6), in two steps."""
    flags = [*TRAIN_FLAGS, "--save_every=1", "--sample_every=1", f"--data_dir={data_dir}", "--workdir=scratch/run",
             "--steps=6"]
    rows = matrix(base, tmp_path, "train", [1, 2, 4, 5, 9], flags)
    points = [os.path.relpath(p, str(tmp_path / "scratch")) for p in rows[-1]["failed"]["points"]]  # all 9
    assert points == ["run/config.json", "run/samples/step_0000005.png",
                      "run/logs/train", "run/checkpoints/ckpt-5", "run/checkpoints/checkpoint",
                      "run/checkpoints/ckpt-6", "run/checkpoints/checkpoint", "run/samples/step_0000006.png",
                      "run/logs/train"]
    check_every_fault(rows, tmp_path / "scratch")
    by_k = {r["k"]: r["failed"]["errors"][0] for r in rows}
    # A sample that cannot be written stops the run, after saving the step.
    assert "the checkpoint of step 5 is on disk" in by_k[2]
    # A failed save names what is really on disk, without TensorFlow's op wrapping; so does one
    # whose index file cannot be written, which removes the checkpoint it had put in place.
    for k in (4, 5):
        assert "Saving the checkpoint of step 5" in by_k[k]
        assert "the checkpoints on disk are: ckpt-2, ckpt-4." in by_k[k]
    assert "Writing the TensorBoard logs" in by_k[9] and "checkpoint of step 6 is on disk" in by_k[9]
    assert not any("function_node" in e for e in by_k.values())


@pytest.mark.slow
def test_translate_fails_each_write_and_an_earlier_output_survives(base, tmp_path):
    """The baseline writes three outputs; each is then replaced by a run whose k-th write fails:
    the earlier output stays whole and byte-identical, the summary counts the failure."""
    flags = ["--workdir=scratch/run", "--output_dir=scratch/out", "--deterministic", "--noprogress", "scratch/in"]
    rows = matrix(base, tmp_path, "translate", ["baseline", 1, 2, 3], flags)
    assert len(rows[0]["points"]) == 3
    check_every_fault(rows, tmp_path / "scratch")
    assert all("not written: " in r["failed"]["errors"][0] for r in rows[1:])


@pytest.mark.slow
def test_evaluate_fails_each_kind_of_write_and_the_earlier_report_survives(base, tmp_path, data_dir):
    """One example's PNGs (1-3), metrics.json (4), index.html (5), grid.png (6)."""
    flags = ["--workdir=scratch/run", "--output_dir=scratch/eval", "--num_examples=1", "--nofcn", "--deterministic",
             "--html_examples=1", "--grid_examples=1", "--noprogress", f"--data_dir={data_dir}"]
    rows = matrix(base, tmp_path, "evaluate", ["baseline", 1, 4, 5, 6], flags)
    names = [os.path.basename(p) for p in rows[0]["points"]]
    assert names[3:] == ["metrics.json", "index.html", "grid.png"] and len(names) == 6
    check_every_fault(rows, tmp_path / "scratch")
    # The report's files change together (`writing.together`): a failed page or grid leaves the
    # earlier metrics.json too, not a new one beside the earlier page.
    assert [row["changed"] for row in rows[1:]] == [[]] * 4


@pytest.mark.slow
def test_export_fails_each_kind_of_write_and_the_earlier_version_survives(base, tmp_path):
    """The SavedModel (TensorFlow's writer, 1), its warmup records (2), metadata (3), model card
    (4), the TFLite file (5), its report (6) and card (7): version 1 stays byte-identical while
    version 2 fails. A failed SavedModel publishes nothing; a failed TFLite file publishes no
    TFLite version 2, and the message names the SavedModel version 2 published before it."""
    flags = ["--workdir=scratch/run", "--deterministic", "--tflite=float32", "--check_examples=1"]
    rows = matrix(base, tmp_path, "export", ["baseline", 1, 5], flags)
    names = [os.path.basename(p.rstrip("/")) for p in rows[0]["points"]]
    assert names[2:] == ["pix2pix_export.json", "MODEL_CARD.md", "pix2pix_float32.tflite", "report.json",
                         "MODEL_CARD.md"], names
    check_every_fault(rows, tmp_path / "scratch")
    saved_model_failed, tflite_failed = rows[1:]
    assert saved_model_failed["added"] == [] and "Published" not in saved_model_failed["failed"]["errors"][0]
    assert tflite_failed["added"] and all(p.startswith(os.path.join("run", "export", "pix2pix", "2", ""))
                                          for p in tflite_failed["added"]), tflite_failed["added"]
    published = tmp_path / "scratch" / "run" / "export" / "pix2pix" / "2"
    message = tflite_failed["failed"]["errors"][0]
    assert message.endswith(f"Published before this failure: {published}; nothing else was."), message


@pytest.mark.slow
def test_translate_never_writes_through_a_link_in_the_output_folder(base, tmp_path):
    """`out/photo.png -> ../precious/holiday.png`: the user's photo outside --output_dir stays.
    A link to a file translate did not write is kept like that file (the output gets another
    name); a link to an earlier result of translate is not written through either."""
    precious = tmp_path / "precious" / "holiday.png"
    precious.parent.mkdir()
    shutil.copy(base / "in" / "p0.png", precious)
    original = precious.read_bytes()
    (tmp_path / "in").mkdir()
    shutil.copy(base / "in" / "p1.png", tmp_path / "in" / "photo.png")
    out = tmp_path / "out"
    out.mkdir()
    (out / "photo.png").symlink_to("../precious/holiday.png")
    result = run_program("translate", f"--workdir={base / 'run'}", f"--output_dir={out}", "--noprogress",
                         str(tmp_path / "in"))
    assert result.returncode == 0 and "Translated 1 image(s)" in result.stdout, result.stderr[-2000:]
    assert sorted(os.listdir(out)) == ["photo.png", "photo_png.png"] and precious.read_bytes() == original
    # The same link to an earlier result (marked as translate's output): refused, not written through.
    shutil.copy(out / "photo_png.png", precious)
    original = precious.read_bytes()
    (out / "photo_png.png").unlink()
    result = run_program("translate", f"--workdir={base / 'run'}", f"--output_dir={out}", "--noprogress",
                         str(tmp_path / "in"))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert (f"error: {tmp_path / 'in' / 'photo.png'}: {out / 'photo.png'} is a symbolic link "
            "(to ../precious/holiday.png); it is not written through.") in result.stderr
    assert "Translated 0 image(s)" in result.stdout and "1 failed" in result.stdout
    assert precious.read_bytes() == original and os.path.islink(out / "photo.png")
