"""python -m pix2pix_tf.translate as a user runs it (its main, in this process: tests/programs.py),
from a checkpoint, a SavedModel and a TFLite file."""

from __future__ import annotations

import json
import logging
import os
import subprocess

import numpy as np
import pytest
import tensorflow as tf

from pix2pix_tf.inference import artifacts, files
from pix2pix_tf.inference.mode import DETERMINISTIC, PAPER
from pix2pix_tf.inference.request import ModelRequest

from conftest import tiny_config
from programs import run_program


def translate(*flags: str) -> subprocess.CompletedProcess:
    return run_program("translate", *flags)


def write_png(path, pixels: np.ndarray) -> str:
    os.makedirs(os.path.dirname(str(path)), exist_ok=True)
    tf.io.write_file(str(path), tf.io.encode_png(pixels))
    return str(path)


def read_png(path) -> np.ndarray:
    return tf.io.decode_png(tf.io.read_file(str(path))).numpy()


@pytest.fixture
def photos(tmp_path) -> str:
    """A folder of inputs of odd sizes and channel counts, one in a subfolder."""
    rng = np.random.default_rng(3)
    folder = tmp_path / "photos"
    write_png(folder / "rgb.png", rng.integers(0, 256, (100, 150, 3), dtype=np.uint8))
    write_png(folder / "sub" / "grey.png", rng.integers(0, 256, (64, 64, 1), dtype=np.uint8))
    tf.io.write_file(str(folder / "rgba.jpg"), tf.io.encode_jpeg(rng.integers(0, 256, (90, 90, 3), dtype=np.uint8)))
    (folder / "notes.txt").write_text("not an image, and not picked up")
    return str(folder)


def test_checkpoint_savedmodel_and_tflite_give_the_same_pictures(export, photos, tmp_path):
    # The command line once (the checkpoint), the same library call for the other two forms.
    result = translate(f"--workdir={export['workdir']}", "--deterministic", f"--output_dir={tmp_path / 'checkpoint'}",
                       photos)
    assert result.returncode == 0, result.stderr[-3000:]
    # Not a terminal: a plain progress line (no terminal control codes in a log), then the summary.
    assert "3/3 image(s) - " in result.stdout and "Translated 3 image(s)" in result.stdout
    assert "\x1b" not in result.stdout + result.stderr
    sources = {
        "saved_model": dict(saved_model=export["base"]),  # The model folder: its newest version (2).
        "tflite": dict(tflite=os.path.join(export["tflite_paper"], "tiny_float32.tflite")),
    }
    for name, source in sources.items():
        done = files.translate_files(files.TranslateConfig(
            inputs=(photos,), output_dir=str(tmp_path / name), model=ModelRequest.of(mode=DETERMINISTIC, **source),
            progress=False))
        assert not done.failed and len(done.written) == 3
    for name in ("checkpoint", "saved_model", "tflite"):
        out = tmp_path / name
        assert sorted(os.path.relpath(os.path.join(r, f), out) for r, _, fs in os.walk(out) for f in fs) == \
            ["rgb.png", "rgba.png", os.path.join("sub", "grey.png")]
    for name in ("saved_model", "tflite"):
        for file in ("rgb.png", "rgba.png", "sub/grey.png"):
            picture, reference = read_png(tmp_path / name / file), read_png(tmp_path / "checkpoint" / file)
            assert picture.shape == (128, 128, 3)
            assert np.abs(picture.astype(int) - reference.astype(int)).max() <= 2, (name, file)


def test_paired_side_by_side_honours_direction_and_keep_size(export, tmp_path):
    rng = np.random.default_rng(4)
    a = rng.integers(0, 256, (128, 128, 3), dtype=np.uint8)
    b = np.zeros((128, 128, 3), np.uint8)  # Black: easy to tell from A.
    pair = write_png(tmp_path / "in" / "pair.png", np.concatenate([a, b], axis=1))
    outputs = {}
    for direction in ("AtoB", "BtoA"):
        out = tmp_path / direction
        # The run is AtoB; direction=None uses it, "BtoA" overrides it (--direction).
        result = files.translate_files(files.TranslateConfig(
            inputs=(pair,), output_dir=str(out), model=ModelRequest.of(workdir=export["workdir"], mode=DETERMINISTIC),
            paired=True, side_by_side=True, direction=None if direction == "AtoB" else direction, progress=False))
        assert not result.failed, result.failed
        outputs[direction] = read_png(out / "pair.png")
    for direction, (shown_input, shown_target) in {"AtoB": (a, b), "BtoA": (b, a)}.items():
        strip = outputs[direction]
        assert strip.shape == (128, 3 * 128, 3)  # input | output | target
        assert np.abs(strip[:, :128].astype(int) - shown_input.astype(int)).mean() < 8
        assert np.abs(strip[:, 256:].astype(int) - shown_target.astype(int)).mean() < 8
    big = write_png(tmp_path / "big" / "x.png", rng.integers(0, 256, (200, 300, 3), dtype=np.uint8))
    result = files.translate_files(files.TranslateConfig(
        inputs=(big,), output_dir=str(tmp_path / "kept"), model=ModelRequest.of(workdir=export["workdir"],
                                                                                mode=DETERMINISTIC),
        keep_size=True, progress=False))
    assert not result.failed and read_png(tmp_path / "kept" / "x.png").shape == (200, 300, 3)


def test_paper_mode_seed_repeats_and_differs_from_other_seeds(export):
    image = np.random.default_rng(5).uniform(-1, 1, (1, 128, 128, 3)).astype(np.float32)
    seeded = ModelRequest.of(workdir=export["workdir"]).resolve().open(PAPER, seed=1)
    first, again, other_index = seeded(image, 0), seeded(image, 0), seeded(image, 1)
    other_seed = ModelRequest.of(workdir=export["workdir"]).resolve().open(PAPER, seed=2)(image, 0)
    assert np.array_equal(first, again)
    assert not np.array_equal(first, other_index) and not np.array_equal(first, other_seed)


def test_a_seed_that_seeds_nothing_is_named(export, tmp_path):
    """--seed with --deterministic (no dropout) or with a model that seeds itself: said, not ignored."""
    image = write_png(tmp_path / "in.png", np.zeros((8, 8, 3), np.uint8))
    for model, why in ((f"--workdir={export['workdir']}", "it seeds the dropout noise, and dropout is off"),
                       (f"--saved_model={export['deterministic']}", "--seed only applies to --workdir")):
        result = translate(model, "--deterministic", "--seed=3", f"--output_dir={tmp_path / 'out'}", image)
        assert result.returncode == 0 and why in result.stderr, result.stderr[-3000:]


def test_single_channel_run_gets_grey_inputs(tmp_path, data_dir):
    """A run with --input_nc=1 is fed grey images whatever the files hold."""
    from pix2pix_tf.networks.generator import build_generator

    config = tiny_config(tmp_path / "grey_run", data_dir, model=dict(input_nc=1))
    config.save(config.run.workdir)
    generator = build_generator(config.model)
    tf.train.Checkpoint(generator=generator).save(os.path.join(config.run.workdir, "checkpoints", "ckpt"))
    translator = ModelRequest.of(workdir=config.run.workdir).resolve().open(DETERMINISTIC)
    assert (translator.input_nc, translator.output_nc) == (1, 3)
    colour = write_png(tmp_path / "in" / "c.png", np.random.default_rng(6).integers(0, 256, (50, 80, 3), np.uint8))
    result = files.translate_files(files.TranslateConfig(
        inputs=(colour,), output_dir=str(tmp_path / "out"),
        model=ModelRequest.of(workdir=config.run.workdir, mode=DETERMINISTIC), progress=False))
    assert not result.failed and read_png(tmp_path / "out" / "c.png").shape == (128, 128, 3)


def test_a_file_named_twice_is_one_input(photos, tmp_path):
    """The same file given twice, or also inside a folder given, or through a link: translated
    once, under its first name (it was two noisy outputs, the second renamed a_png_2.png)."""
    rgb = os.path.join(photos, "rgb.png")
    os.symlink(rgb, tmp_path / "link.png")
    found = files.find_images((rgb, photos, rgb, str(tmp_path / "link.png")))
    others = [os.path.join(photos, "rgba.jpg"), os.path.join(photos, "sub", "grey.png")]
    assert [path for path, _ in found] == [rgb, *others]
    assert [relative for _, relative in found] == ["rgb.png", "rgba.jpg", os.path.join("sub", "grey.png")]


def test_a_file_does_not_take_the_name_an_input_folder_needs_as_its_output_folder(tmp_path):
    """A folder holding `x.jpg` and the folder `x.png/`: x.png/ must be a folder among the
    outputs, so x.jpg becomes x_jpg.png (else one of them could not be written)."""
    folder = tmp_path / "in"
    for relative in ("x.jpg", "x.png/a.jpg"):
        write_png(folder / relative, np.zeros((8, 8, 3), np.uint8))
    found = files.find_images((str(folder),))
    assert [relative for _, relative in found] == ["x.jpg", os.path.join("x.png", "a.jpg")]
    planned = [os.path.relpath(out, tmp_path / "out") for _, out in files.plan_outputs(found, str(tmp_path / "out"))]
    assert planned == ["x_jpg.png", os.path.join("x.png", "a.png")]


@pytest.mark.slow
def test_bad_files_are_reported_and_the_rest_translated(export, photos, tmp_path):
    (tmp_path / "photos" / "empty.png").write_bytes(b"")
    (tmp_path / "photos" / "fake.jpg").write_bytes(b"GIF? no, plain text")
    out = tmp_path / "out"
    result = translate(f"--workdir={export['workdir']}", f"--output_dir={out}", photos)
    assert result.returncode == 1
    assert "empty.png: empty (0 bytes)" in result.stderr
    assert "fake.jpg: not JPEG, PNG, GIF, BMP or WebP data" in result.stderr
    assert "Traceback" not in result.stderr
    assert "Translated 3 image(s)" in result.stdout and "2 failed" in result.stdout
    assert os.path.exists(out / "rgb.png")


@pytest.mark.parametrize("source,message", [
    (dict(inputs=("/nonexistent.png",), workdir="{workdir}"), "no such file or folder"),
    (dict(tflite="/nonexistent.tflite"), "is not a file"),
    (dict(saved_model="/tmp"), "no saved_model.pb"),
    (dict(saved_model="{base}", tflite="{tflite}"), "exactly one of"),
    (dict(), "exactly one of"),
    (dict(tflite="{tflite}", image_size=256), "fixed to 128x128"),
    (dict(tflite="{notflite}"), "Cannot load the TFLite model"),
    (dict(tflite="{bare_tflite}", paired=True), "needs the direction"),  # No report.json beside it.
    (dict(workdir="{workdir}", checkpoint="{workdir}/checkpoints/ckpt-999"), "Cannot restore the generator"),
])
def test_translate_user_mistakes_get_a_clear_error(export, tmp_path, source, message):
    from pix2pix_tf.errors import Pix2pixError

    image = write_png(tmp_path / "i.png", np.zeros((20, 20, 3), np.uint8))
    notflite = tmp_path / "bad.tflite"
    notflite.write_bytes(b"\0" * 64)
    tflite = os.path.join(export["tflite_paper"], "tiny_float32.tflite")
    bare_tflite = tmp_path / "copy.tflite"
    bare_tflite.write_bytes(open(tflite, "rb").read())
    values = dict(base=export["base"], notflite=str(notflite), workdir=export["workdir"], tflite=tflite,
                  bare_tflite=str(bare_tflite))
    given = {k: v.format(**values) if isinstance(v, str) else v for k, v in source.items()}
    task = {"inputs": (image,), "output_dir": str(tmp_path / "out"), "progress": False,
            **{k: given.pop(k) for k in ("inputs", "paired") if k in given}}
    with pytest.raises(Pix2pixError, match=message):  # The model's mistakes are refused with the request.
        files.translate_files(files.TranslateConfig(**task, model=ModelRequest.of(**given)))


def test_a_file_that_is_no_tflite_model_is_named_in_the_error(tmp_path):
    """LiteRT's own message ("not a valid Flatbuffer buffer") does not say which file it read."""
    garbage = tmp_path / "garbage.tflite"
    garbage.write_bytes(b"hello")
    image = write_png(tmp_path / "in.png", np.zeros((20, 20, 3), np.uint8))
    result = translate(f"--tflite={garbage}", f"--output_dir={tmp_path / 'o'}", image)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-2000:]
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and lines[0].startswith(f"error: Cannot load the TFLite model {garbage}: "), lines


def test_translate_odd_pair_width_is_a_per_file_error(export, tmp_path):
    odd = write_png(tmp_path / "odd.png", np.zeros((20, 21, 3), np.uint8))
    result = files.translate_files(files.TranslateConfig(
        inputs=(odd,), output_dir=str(tmp_path / "out"), paired=True, direction="AtoB", progress=False,
        model=ModelRequest.of(tflite=os.path.join(export["tflite_paper"], "tiny_float32.tflite"))))
    assert result.failed and "even width" in result.failed[0][1]


# ----------------------------------------------------------------------------- nothing the user owns is overwritten


def written_files(folder) -> list[str]:
    return sorted(os.path.relpath(os.path.join(r, f), folder) for r, _, fs in os.walk(folder) for f in fs)


@pytest.mark.slow
def test_translating_a_folder_into_itself_never_writes_over_an_input(export, tmp_path):
    """`--output_dir=DIR DIR`: the 600x400 photo survives byte for byte; its result goes beside it."""
    folder = tmp_path / "photos"
    coffee = write_png(folder / "coffee.png", np.random.default_rng(7).integers(0, 256, (400, 600, 3), np.uint8))
    original = open(coffee, "rb").read()
    result = translate(f"--workdir={export['workdir']}", "--deterministic", f"--output_dir={folder}", str(folder))
    assert result.returncode == 0, result.stderr[-3000:]
    assert open(coffee, "rb").read() == original
    assert written_files(folder) == ["coffee.png", "coffee_png.png"]
    assert read_png(folder / "coffee_png.png").shape == (128, 128, 3)
    assert "Translated 1 image(s)" in result.stdout
    # Again: the first run's result is not an input (it was translated too, and the folder
    # grew with every run); it is this run's output, replaced.
    again = translate(f"--workdir={export['workdir']}", "--deterministic", f"--output_dir={folder}", str(folder))
    assert again.returncode == 0 and "Translated 1 image(s)" in again.stdout, again.stderr[-3000:]
    assert written_files(folder) == ["coffee.png", "coffee_png.png"] and open(coffee, "rb").read() == original


def test_a_file_of_yours_in_the_output_folder_is_kept_under_its_name(export, tmp_path):
    """`out/a.png` is the user's own photo, not an input and not translate's: an input whose
    output would be named a.png gets a_png.png (it replaced the photo, without a word)."""
    photo = write_png(tmp_path / "out" / "a.png", np.full((20, 30, 3), 9, np.uint8))
    original = open(photo, "rb").read()
    source = write_png(tmp_path / "in" / "a.png", np.zeros((64, 64, 3), np.uint8))
    result = translate(f"--workdir={export['workdir']}", "--deterministic", f"--output_dir={tmp_path / 'out'}", source)
    assert result.returncode == 0, result.stderr[-3000:]
    assert open(photo, "rb").read() == original and written_files(tmp_path / "out") == ["a.png", "a_png.png"]
    assert files.is_earlier_output(str(tmp_path / "out" / "a_png.png")) and not files.is_earlier_output(photo)
    assert "a file translate did not write is there, and is kept" in result.stderr


def test_a_file_where_an_output_folder_must_be_is_named(export, tmp_path):
    """An input subfolder `a/` is translated into `out/a/`; a file `out/a` of the user's stands
    there: it is kept, and each image's failure names it (it said only "File exists")."""
    source = write_png(tmp_path / "in" / "a" / "1.png", np.zeros((64, 64, 3), np.uint8))
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "a").write_text("my notes")
    result = translate(f"--workdir={export['workdir']}", "--deterministic", f"--output_dir={tmp_path / 'out'}",
                       str(tmp_path / "in"))
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert f"{source}: {tmp_path / 'out' / 'a' / '1.png'} not written: {tmp_path / 'out' / 'a'} is a file where its " \
           "folder would be." in result.stderr, result.stderr[-3000:]
    assert (tmp_path / "out" / "a").read_text() == "my notes"


@pytest.mark.slow
@pytest.mark.parametrize("layout", ["one folder: x.jpg and x.png", "two arguments: a/1.jpg and b/1.jpg"])
def test_inputs_whose_outputs_would_clash_get_distinct_names_and_the_count_is_true(export, tmp_path, layout):
    rng = np.random.default_rng(8)
    first, second = (rng.integers(0, 256, (64, 64, 3), np.uint8) for _ in range(2))
    if layout.startswith("one folder"):
        tf.io.write_file(str(tmp_path / "in" / "x.jpg"), tf.io.encode_jpeg(first))
        write_png(tmp_path / "in" / "x.png", second)
        inputs, expected = [str(tmp_path / "in")], ["x_jpg.png", "x_png.png"]
    else:
        inputs = [write_png(tmp_path / "a" / "1.jpg", first), write_png(tmp_path / "b" / "1.jpg", second)]
        expected = ["1_jpg.png", "1_jpg_2.png"]  # In the order of the arguments.
    out = tmp_path / "out"
    result = translate(f"--workdir={export['workdir']}", "--deterministic", f"--output_dir={out}", *inputs)
    assert result.returncode == 0, result.stderr[-3000:]
    assert written_files(out) == expected
    assert "Translated 2 image(s)" in result.stdout
    one, two = (read_png(out / name) for name in expected)
    assert not np.array_equal(one, two)  # Two inputs, two results: neither replaced the other.


@pytest.mark.slow
def test_an_output_folder_inside_the_input_folder_is_not_searched(export, tmp_path):
    """`--output_dir=DIR/out DIR`, twice: the second run translates the one photo again, not its result."""
    folder = tmp_path / "photos"
    write_png(folder / "cat.png", np.random.default_rng(9).integers(0, 256, (64, 64, 3), np.uint8))
    for _ in range(2):
        result = translate(f"--workdir={export['workdir']}", "--deterministic", f"--output_dir={folder / 'out'}",
                           str(folder))
        assert result.returncode == 0, result.stderr[-3000:]
        assert "Translated 1 image(s)" in result.stdout
    assert written_files(folder / "out") == ["cat.png"]


@pytest.mark.parametrize("damage,message", [("fifo", "is not a regular file (a FIFO)"),
                                            ("list", "holds a JSON list, not an object")])
def test_an_export_record_that_is_not_a_file_of_ours_is_refused_in_one_line(export, tmp_path, damage, message):
    """The metadata is read bounded and without blocking (a FIFO there would hang the reader)."""
    import shutil

    copy = tmp_path / "model"
    shutil.copytree(export["deterministic"], copy)
    path = copy / "assets.extra" / artifacts.METADATA_FILE
    path.unlink()
    os.mkfifo(path) if damage == "fifo" else path.write_text("[1]")
    result = translate(f"--saved_model={copy}", f"--output_dir={tmp_path / 'out'}",
                       write_png(tmp_path / "in.png", np.zeros((8, 8, 3), np.uint8)))
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert errors == [f"error: {path} {message}"] and not (tmp_path / "out").exists()


@pytest.mark.parametrize("key,value,expected", [
    ("image_size", "abc", "a positive integer"), ("size_multiple", 0, "a positive integer"),
    ("output_nc", 3.0, "a positive integer"), ("direction", 1, "a string"),
    ("mode", "paper", "an object of true/false values"),
    ("image_size", 10**30, "a positive integer of at most 2147483647"),  # Was a ValueError from the resize.
    ("norm", "group", "one of batch, syncbatch, instance, none"),
])
def test_an_export_record_edited_by_hand_is_named_in_one_line(export, tmp_path, key, value, expected):
    """The SavedModel's metadata as a hand edit or another tool leaves it: the file, the key and
    the value are named, not a ValueError from deep inside."""
    import shutil

    copy = tmp_path / "model"
    shutil.copytree(export["deterministic"], copy)
    path = copy / "assets.extra" / artifacts.METADATA_FILE
    path.write_text(json.dumps({**json.loads(path.read_text()), key: value}))
    result = translate(f"--saved_model={copy}", f"--output_dir={tmp_path / 'out'}",
                       write_png(tmp_path / "in.png", np.zeros((8, 8, 3), np.uint8)))
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert errors == [f"error: {path}: {key} is {value!r}, not {expected}" + errors[0].split(expected, 1)[1]]
    assert errors[0].endswith("was it written by export.py?") and not (tmp_path / "out").exists()


def test_a_tflite_file_beside_another_exports_report_is_not_described_by_it(export, tmp_path, caplog):
    """A report.json lends a TFLite file its run, direction, mode and norm only where it lists a
    file of that name and size: a file copied beside another export's report took on that
    export's description."""
    import shutil

    from pix2pix_tf.inference import sources

    own = os.path.join(export["tflite_paper"], "tiny_float32.tflite")
    assert sources.resolve("tflite", own).metadata["mode"] == {"dropout": False, "batch_statistics": True}
    mixed = tmp_path / "tiny_float32.tflite"
    shutil.copy(own, mixed)
    shutil.copy(os.path.join(export["tflite_deterministic"], artifacts.TFLITE_REPORT), tmp_path)  # Lists int8 only.
    assert sources.resolve("tflite", str(mixed)).metadata == {}
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING] == [
        f"{tmp_path / artifacts.TFLITE_REPORT} lists no tiny_float32.tflite of {os.path.getsize(own)} bytes: it is "
        "another export's report, not used."]


def test_an_image_size_the_saved_model_cannot_take_is_refused_before_any_image(export, tmp_path):
    """translate_float takes any size that is a multiple of what the generator takes (the
    export records it), as a checkpoint does: the same refusal, not a failure per image."""
    result = translate(f"--saved_model={export['base']}", "--image_size=100", f"--output_dir={tmp_path / 'out'}",
                       write_png(tmp_path / "in.png", np.zeros((8, 8, 3), np.uint8)))
    assert result.returncode == 1, result.stderr[-3000:]
    assert "takes images whose sides are multiples of 128; use --image_size=128." in result.stderr
    assert "Translated" not in result.stdout and not (tmp_path / "out").exists()


@pytest.mark.slow
@pytest.mark.parametrize("damaged", ["variables/variables.data-00000-of-00001", "variables/variables.index",
                                     "saved_model.pb"])
def test_a_truncated_saved_model_is_named_in_one_line_by_translate_evaluate_and_the_demo(export, tmp_path, damaged):
    """A copy cut short (a full disk, an interrupted transfer) fails inside TensorFlow with
    errors that name no file (`IndexError: Read less bytes than requested`); each program
    names the damaged file instead."""
    import shutil

    from pix2pix_tf.demo.model import DemoConfig, load_demo_model
    from pix2pix_tf.errors import ConfigError
    from pix2pix_tf.evaluation.evaluator import EvalConfig, evaluate

    copy = tmp_path / "model"
    shutil.copytree(export["deterministic"], copy)
    path = copy / damaged
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    message = f"Cannot load the SavedModel {copy}: {path} is damaged or incomplete ("
    for load in (lambda: evaluate(EvalConfig(ModelRequest.of(run=export["workdir"], saved_model=str(copy)), fcn=False,
                                             output_dir=str(tmp_path / "eval"), progress=False)),
                 lambda: load_demo_model(DemoConfig(ModelRequest.of(saved_model=str(copy))))):
        with pytest.raises(ConfigError) as caught:
            load()
        assert str(caught.value).startswith(message) and "\n" not in str(caught.value)
    if damaged == "saved_model.pb":
        return  # One program run suffices: the message comes from the same place.
    result = translate(f"--saved_model={copy}", f"--output_dir={tmp_path / 'out'}", write_png(
        tmp_path / "in.png", np.zeros((8, 8, 3), np.uint8)))
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith(f"error: {message}"), result.stderr[-3000:]
    assert not (tmp_path / "out").exists()
