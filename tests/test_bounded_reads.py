"""Reads cost what a file holds, not the cap; absurd caps and unusable folders are refused first.

An image read is bounded by `max_file_bytes(--max_pixels)`, but a buffered read(n) allocates n
bytes before it reads: a 12 kB PNG read at a cap of gigabytes failed (MemoryError, or an
OverflowError for a cap of 20 digits). And translate and the experiments did all their work
before a folder flag they could not write into failed them.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tracemalloc

import numpy as np
import pytest
import tensorflow as tf

from pix2pix_tf import image_files, images, regular_files
from pix2pix_tf.config_checks import MAX_PIXELS_LIMIT

import forked
from conftest import TINY_DATASET, error_lines
from programs import run_program


def write_png(path, side: int = 256) -> str:
    """A PNG of noise (it hardly compresses: about 3 bytes a pixel)."""
    pixels = np.random.default_rng(0).integers(0, 256, (side, side, 3), dtype=np.uint8)
    tf.io.write_file(str(path), tf.io.encode_png(pixels))
    return str(path)


@pytest.mark.parametrize("max_pixels", [images.DEFAULT_MAX_PIXELS, MAX_PIXELS_LIMIT, 10**30])
def test_reading_an_image_costs_its_size_whatever_the_cap(tmp_path, max_pixels):
    path = write_png(tmp_path / "noise.png")
    size = os.path.getsize(path)
    image_files.read_file(path)  # TensorFlow's first call allocates once; what follows is the read.
    tracemalloc.start()
    try:
        data = image_files.read_file(path, max_pixels)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert data == open(path, "rb").read()
    # The bytes, their head and their join, and a little of TensorFlow's; the default cap alone
    # allocated 150 MB per read before.
    assert peak < 3 * size + 64 * 2**10, (peak, size)
    if max_pixels <= MAX_PIXELS_LIMIT:  # The folder scan's reader, which decodes within the cap too.
        assert image_files.check_image_file(path, max_pixels) == (256, 256)


def test_a_file_that_grows_after_it_was_measured_is_read_on_and_still_bounded(tmp_path):
    path = tmp_path / "growing.png"
    path.write_bytes(b"x" * 100)
    for grown, limit, expected in ((50, 1000, 150), (5000, 1000, 1001)):
        with regular_files.opened_regular(str(path)) as (f, size):
            with open(path, "ab") as more:
                more.write(b"y" * grown)
            assert len(regular_files.read_bounded(f, size, limit)) == expected
        path.write_bytes(b"x" * 100)


@pytest.mark.parametrize("program", [["translate", "--output_dir=out", "in.png"], ["train"], ["export"]])
def test_an_absurd_max_pixels_is_one_error_line(tmp_path, program):
    result = run_program(*program, f"--workdir={tmp_path / 'run'}", "--max_pixels=99999999999999999999999")
    assert error_lines(result) == [f"error: --max_pixels must be at most {MAX_PIXELS_LIMIT} (65536 x 65536, more "
                                   "than any image TensorFlow decodes), got 99999999999999999999999."]
    assert not (tmp_path / "run").exists()


def translate(*flags: str) -> subprocess.CompletedProcess:
    """translate's main, in this process (tests/programs.py): what it reads, writes and says."""
    return run_program("translate", "--noprogress", *flags)


def test_translate_reads_at_a_cap_of_gigapixels_and_refuses_an_output_folder_under_a_file_first(
        tmp_path, run_of_six):
    inputs = tmp_path / "in"
    inputs.mkdir()
    for name in ("a.png", "b.png"):
        write_png(inputs / name, 32)
    result = translate(f"--workdir={run_of_six}", "--max_pixels=4000000000", f"--output_dir={tmp_path / 'out'}",
                       str(inputs))
    assert result.returncode == 0, result.stderr[-3000:]
    assert sorted(os.listdir(tmp_path / "out")) == ["a.png", "b.png"]

    a_file = tmp_path / "afile"
    a_file.write_text("x\n")
    result = translate(f"--workdir={run_of_six}", f"--output_dir={a_file / 'sub'}", str(inputs))
    assert error_lines(result) == [f"error: --output_dir={a_file / 'sub'} cannot be written (Not a directory). "
                                   "Choose a folder you can write to, with free space."]
    assert "Translated" not in result.stdout and a_file.read_text() == "x\n"


def test_translate_leaves_no_output_folder_when_the_model_is_refused(tmp_path):
    image = write_png(tmp_path / "in.png", 8)
    result = translate(f"--workdir={tmp_path / 'no_run'}", f"--output_dir={tmp_path / 'new' / 'out'}", image)
    assert len(error_lines(result)) == 1 and not (tmp_path / "new").exists()


def paper(tmp_path, *flags: str) -> subprocess.CompletedProcess:
    return forked.run([sys.executable, "-m", "pix2pix_tf.experiments.paper", "--setting=tiny", "--variants=l1",
                       f"--data_dir={tmp_path / 'no_data'}", *flags], cwd=str(tmp_path), timeout=120)


def test_the_paper_experiment_refuses_its_folder_flags_before_training(tmp_path):
    a_file = tmp_path / "afile"
    a_file.write_text("x\n")
    root = tmp_path / "root"
    for flags, message in (
            ([f"--root={root}", f"--images_dir={a_file}"],
             f"--images_dir={a_file} is a file; it must name a folder to write into."),
            (["--root=", f"--images_dir={tmp_path / 'figures'}"], "--root is empty: name a folder."),
            ([f"--root={root}", "--images_dir="], "--images_dir is empty: name a folder."),
            ([f"--root={a_file / 'sub'}"], f"--root={a_file / 'sub'} cannot be written (Not a directory). "
                                           "Choose a folder you can write to, with free space.")):
        result = paper(tmp_path, *flags)
        assert error_lines(result) == [f"error: {message}"], flags
        assert "training" not in result.stdout and a_file.read_text() == "x\n"
        assert not root.exists() and not (tmp_path / "figures").exists()


@pytest.mark.parametrize("experiment", ["multiscale", "precision"])
def test_the_other_experiments_refuse_a_root_that_is_a_file_before_training(tmp_path, experiment):
    a_file = tmp_path / "afile"
    a_file.write_text("x\n")
    result = forked.run([sys.executable, "-m", f"pix2pix_tf.experiments.{experiment}", f"--root={a_file}",
                         f"--data_dir={tmp_path / 'no_data'}"], cwd=str(tmp_path), timeout=120)
    assert error_lines(result) == [f"error: --root={a_file} is a file; it must name a folder to write into."]
    assert a_file.read_text() == "x\n"


def test_inception_weights_that_are_no_file_are_named_for_what_they_are(tmp_path):
    """A device or a FIFO is not "no such file" (and a FIFO is never opened: Keras would wait for a
    writer); a link to nothing is."""
    from pix2pix_tf.evaluation import metrics

    os.mkfifo(tmp_path / "weights.h5")
    os.symlink(tmp_path / "nothing.h5", tmp_path / "dangling.h5")
    for path, said in (("/dev/zero", "a character device, not a weights file."),
                       (str(tmp_path / "weights.h5"), "a FIFO, not a weights file."),
                       (str(tmp_path / "dangling.h5"), "no such file.")):
        with pytest.raises(metrics.MetricError) as refused:
            metrics.inception_features(path)
        assert str(refused.value) == f"--inception_weights={path}: {said}"


def test_a_data_dir_that_is_a_file_is_named_by_train_and_evaluate(tmp_path, run_of_six):
    """Not tensorflow-datasets' "Not enough disk space. Needed: Unknown size" from preparing the
    dataset inside a file."""
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes")
    said = (f"error: --data_dir={notes} is a file; it must name the folder that holds the prepared datasets "
            "(tensorflow-datasets' data_dir).")
    trained = run_program("train", f"--dataset={TINY_DATASET}", f"--data_dir={notes}", f"--workdir={tmp_path / 'run'}",
                          "--steps=1", "--noprogress")
    evaluated = run_program("evaluate", f"--workdir={run_of_six}", f"--data_dir={notes}", "--nofcn",
                            f"--output_dir={tmp_path / 'eval'}")
    for result in (trained, evaluated):
        assert error_lines(result) == [said]
    assert notes.read_text() == "my notes"
