"""The training loop, in process: one real 256 step, exact resume, seeds, variants, logs."""

from __future__ import annotations

import glob
import json
import logging
import os

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from pix2pix_tf.config import TrainConfig
from pix2pix_tf.data import pipeline
from pix2pix_tf.errors import ConfigError, DatasetError, NonFiniteLossError
from pix2pix_tf.training import losses, summaries
from pix2pix_tf.training.loop import TrainResult, resolve_config, train

from conftest import copied_run, op_determinism, tiny_config


def checkpoint_values(path: str, prefix: str) -> dict[str, np.ndarray]:
    reader = tf.train.load_checkpoint(path)
    return {k: reader.get_tensor(k) for k in reader.get_variable_to_shape_map()
            if k.startswith(prefix) and k.endswith("VARIABLE_VALUE")}


@pytest.mark.slow
def test_one_step_of_the_reference_architecture_at_256(tmp_path, data_dir):
    config = tiny_config(tmp_path, data_dir, model=dict(generator="unet_256", ngf=64, ndf=64),
                         data=dict(load_size=286, crop_size=256), optim=dict(steps=1),
                         run=dict(eval_examples=0))  # The step and its checkpoint: no held-out evaluation.
    result = train(config)
    assert result.step == 1
    assert set(result.losses) == {"d_real", "d_fake", "d_total", "g_gan", "g_l1", "g_total"}
    assert all(np.isfinite(v) for v in result.losses.values())
    # tf.train.Checkpoint stores each trainable variable once, under the optimizer that updates it.
    # Their shapes, from the checkpoint's index: its values (G's 218 MB) need not be read to count them.
    shapes = tf.train.load_checkpoint(result.checkpoint).get_variable_to_shape_map()
    weights = {k: shape for k, shape in shapes.items()
               if k.startswith("g_optimizer/_trainable_variables/") and k.endswith("VARIABLE_VALUE")}
    assert sum(int(np.prod(shape)) for shape in weights.values()) == 54_413_955


def assert_same_run_state(a: str, b: str) -> None:
    """Two checkpoints hold the same G, D and optimizer state (to float rounding)."""
    for prefix in ("generator", "discriminator", "g_optimizer", "d_optimizer"):
        values_a, values_b = checkpoint_values(a, prefix), checkpoint_values(b, prefix)
        assert values_a.keys() == values_b.keys() and values_a
        for key in values_a:
            np.testing.assert_allclose(values_a[key], values_b[key], rtol=1e-6, atol=1e-7, err_msg=key)


def logged_losses(workdir, step: int) -> dict[str, float]:
    """The losses a run logged to TensorBoard at `step` (float32, as the step returns them)."""
    events = EventAccumulator(os.path.join(str(workdir), "logs", "train"), size_guidance={"tensors": 0}).Reload()
    return {tag[len("loss/"):]: float(tf.make_ndarray(event.tensor_proto)) for tag in events.Tags()["tensors"]
            if tag.startswith("loss/") for event in events.Tensors(tag) if event.step == step}


@pytest.fixture(scope="module")
def seeded_runs(tmp_path_factory, data_dir, logged_run) -> dict:
    """The trainings the tests below compare (read only), under TensorFlow's op determinism
    as train.py turns it on for --seed (on for the trainings only, so later tests run as alone):
    "whole": 4 steps that log their losses at step 2, on the session's prepared data_dir;
    "first": a fresh 2-step run of the same seed that prepares its own copy of the dataset;
    "rest": "first" resumed to step 4, then the complete run rerun (4 steps: nothing to train),
    each with its held-out evaluation (`test_a_resumed_run_logs_each_step_once` reads the logs
    of the three). Another seed's losses at step 2 are those `logged_run` (seed 11, the same
    model and data, its losses logged every 2 steps) logged: a training of its own would repeat
    that one."""
    root = tmp_path_factory.mktemp("seeded")
    fresh_data_dir = str(root / "tfds")
    with op_determinism():
        whole = train(tiny_config(root / "whole", data_dir, optim=dict(steps=4), run=dict(log_every=2)))
        first = train(tiny_config(root / "split", fresh_data_dir, optim=dict(steps=2)))
        rest = train(tiny_config(root / "split", fresh_data_dir, optim=dict(steps=4)))
        rerun = train(tiny_config(root / "split", fresh_data_dir, optim=dict(steps=4)))
    return dict(whole=whole, logged_at_2=logged_losses(root / "whole", step=2), first=first,
                other_seed_at_2=logged_losses(logged_run["workdir"], step=2), rest=rest, rerun=rerun,
                split=root / "split", fresh_data_dir=fresh_data_dir)


@pytest.mark.slow
def test_a_seed_repeats_exactly_a_resumed_run_continues_exactly_and_another_seed_differs(seeded_runs):
    """The whole 4-step run logs its losses at step 2: a fresh 2-step run of the same seed
    repeats them exactly, and resumed to step 4 it ends as the whole run does (losses, G, D and
    both optimizers); another seed's 2 steps do not repeat them."""
    whole, first, rest = seeded_runs["whole"], seeded_runs["first"], seeded_runs["rest"]
    assert first.step == 2
    assert first.losses == seeded_runs["logged_at_2"]
    other_seed = seeded_runs["other_seed_at_2"]
    assert other_seed.keys() == first.losses.keys() and other_seed != first.losses
    assert rest.step == 4
    assert rest.losses == pytest.approx(whole.losses, rel=1e-6, abs=1e-7)
    assert_same_run_state(whole.checkpoint, rest.checkpoint)


@pytest.mark.slow
def test_a_run_that_prepares_the_dataset_repeats_one_that_finds_it_prepared(seeded_runs):
    """tfds' preparation draws from Python's `random`: the seed must be set after it. The fresh
    2-step run prepared its own data_dir; the whole run found the session's prepared."""
    preparing, prepared = seeded_runs["first"], seeded_runs["whole"]
    assert os.path.isdir(os.path.join(seeded_runs["fresh_data_dir"], "pix2pix_shapes"))
    assert preparing.held_out_l1_start is not None
    assert preparing.held_out_l1_start == prepared.held_out_l1_start
    assert preparing.losses == seeded_runs["logged_at_2"]


# Each option trains end to end, riding on a training that another test makes anyway (options of
# independent parts at once: G, D, norm, loss, batch, strategy, seed): the unconditional lsgan D at
# batch 2 trains the steps before the non-finite loss (test_non_finite_loss_...), the
# encoder-decoder G against the 256x256 ImageGAN the steps before the batch that fails
# (test_a_batch_that_fails_...), the 16x16 D without norm under seed 0 the held-out grid's step
# (test_held_out_images_...), "L1 only" (no D at all) the 4 steps of a folder of mixed formats
# (test_images.py::test_a_tiff_named_jpg_is_skipped_and_a_webp_named_png_is_trained_on), a ResNet
# with instance norm against the 1x1 PixelGAN, the cGAN loss alone, on the default strategy, the
# run that test_evaluate.py::test_an_instance_norm_model_is_described_as_instance_norm_everywhere
# exports.


def test_non_finite_loss_stops_with_the_step_and_keeps_the_last_checkpoint(tmp_path, data_dir, monkeypatch):
    """The L1 term turns NaN from the third step on, as a diverging run would. The run is also a
    variant that trains (the variants above): an unconditional D, lsgan, batch 2; its first
    two steps are finite (checked each step: a non-finite one would stop it there) and saved."""
    calls = tf.Variable(0)

    def l1_turning_nan(target, output):
        calls.assign_add(1)
        return real_l1(target, output) * tf.where(calls >= 3, float("nan"), 1.0)

    real_l1 = losses.l1_loss
    monkeypatch.setattr(losses, "l1_loss", l1_turning_nan)
    gan_lsgan_batch2 = dict(model=dict(unconditional_d=True), loss=dict(gan_mode="lsgan"), data=dict(batch_size=2))
    config = tiny_config(tmp_path, data_dir, optim=dict(steps=10), run=dict(save_every=1, eval_examples=0),
                         **gan_lsgan_batch2)
    with pytest.raises(NonFiniteLossError, match=r"Step 3: non-finite loss \(.*g_l1=nan") as error:
        train(config)
    latest = tf.train.latest_checkpoint(str(tmp_path / "checkpoints"))
    assert latest is not None and latest.endswith("ckpt-2")
    assert latest in str(error.value)


def batches_failing_from(index: int):
    """pipeline.train_stream, its batches from number `index` (0: the first step's) failing as a
    PNG truncated while the run trains does: TensorFlow's decoder raises in the step."""
    real = pipeline.train_stream
    good = tf.io.encode_png(tf.zeros((1, 1, 1), tf.uint8))
    truncated = tf.constant(good.numpy()[:8] + bytes(92))

    def stream(*args, **kwargs) -> tf.data.Dataset:
        def decoded(number, batch):
            png = tf.where(number < index, good, truncated)
            return batch[0] + 0.0 * tf.cast(tf.reduce_sum(tf.io.decode_png(png)), tf.float32), batch[1]

        return real(*args, **kwargs).enumerate().map(decoded)

    return stream


def test_a_batch_that_fails_saves_the_last_completed_step_and_says_so_in_one_line(tmp_path, data_dir, monkeypatch):
    """A batch that could not be read stopped the run with TensorFlow's many-line message and no
    save: every step since the last periodic checkpoint was lost. The run is also a variant that
    trains: the encoder-decoder G against the ImageGAN D at 256x256; its first three steps are
    finite (checked each step: a non-finite one would stop it there) and saved."""
    monkeypatch.setattr(pipeline, "train_stream", batches_failing_from(3))
    encoder_decoder_imagegan = dict(model=dict(generator="encoder_decoder", discriminator="image"),
                                    data=dict(load_size=286, crop_size=256))
    config = tiny_config(tmp_path, data_dir, optim=dict(steps=8), run=dict(save_every=2, eval_examples=0),
                         **encoder_decoder_imagegan)
    with pytest.raises(DatasetError) as error:
        train(config)
    checkpoint = tmp_path / "checkpoints" / "ckpt-3"
    assert str(error.value) == (
        "Step 4: a batch could not be prepared or trained on: Invalid PNG. Failed to initialize decoder. Training "
        f"stopped; the checkpoint of step 3 is on disk: {checkpoint}. Repair or replace the dataset's files and "
        "re-run the command to resume.")
    assert tf.train.latest_checkpoint(str(tmp_path / "checkpoints")) == str(checkpoint)


@pytest.fixture(scope="module")
def logged_run(tmp_path_factory, data_dir) -> dict:
    """4 steps that log and sample every 2 (read only): the workdir, the TrainResult, and the
    process-wide random states and op determinism just before and just after the training."""
    import random

    from tensorflow.python.eager import context
    from tensorflow.python.framework import config as tf_config

    def process_state() -> dict:
        return dict(python=random.getstate(), numpy=np.random.get_state(), tf_seed=context.global_seed(),
                    determinism=tf_config.is_op_determinism_enabled())

    workdir = tmp_path_factory.mktemp("logged")
    before = process_state()
    # Seed 11, which no other run here uses: a run that seeded the process would change its
    # state even where an earlier run of another seed had seeded it.
    result = train(tiny_config(workdir, data_dir, optim=dict(steps=4),
                               run=dict(seed=11, log_every=2, sample_every=2)))
    return dict(workdir=workdir, result=result, before=before, after=process_state())


def test_tensorboard_logs_and_sample_grids(logged_run):
    workdir = logged_run["workdir"]
    events = EventAccumulator(str(workdir / "logs" / "train"), size_guidance={"tensors": 0}).Reload()
    tags = set(events.Tags()["tensors"])
    for tag in ("loss/g_gan", "loss/g_l1", "loss/d_real", "loss/d_fake", "learning_rate",
                "images_per_second", "eval/held_out_l1", "samples/input_target_output"):
        assert tag in tags, tag
    assert [e.step for e in events.Tensors("loss/g_l1")] == [2, 4]
    lr = tf.make_ndarray(events.Tensors("learning_rate")[0].tensor_proto)
    assert lr == pytest.approx(2e-4)
    assert sorted(os.path.basename(p) for p in glob.glob(str(workdir / "samples" / "*.png"))) == [
        "step_0000000.png", "step_0000002.png", "step_0000004.png"]
    assert TrainConfig.load(str(workdir)).data.direction == "AtoB"


def test_held_out_images_of_different_sizes_share_the_sample_grid(tmp_path, data_dir):
    """--preprocess=none keeps each held-out pair at its native size: the grid pads every cell
    with grey to its row's height and its column's width instead of failing at step 0. The run
    is also a variant that trains (the variants above): a 16x16 D, no norm, seed 0."""
    rng = np.random.default_rng(0)
    sizes = {"train/0.png": 128, "train/1.png": 128, "test/0.png": 128, "test/1.png": 256}  # A|B heights.
    for name, height in sizes.items():
        os.makedirs(tmp_path / "data" / os.path.dirname(name), exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (height, 2 * height, 3), np.uint8)).save(tmp_path / "data" / name)
    data = dict(dataset=f"folder:{tmp_path / 'data'}", preprocess="none")
    nonorm_16x16_seed0 = dict(model=dict(discriminator="n_layers", n_layers_d=1, norm="none"), run=dict(seed=0))
    config = tiny_config(tmp_path / "run", data_dir, data=data, optim=dict(steps=1), **nonorm_16x16_seed0)
    result = train(config)
    assert result.step == 1 and all(np.isfinite(v) for v in result.losses.values())
    events = EventAccumulator(str(tmp_path / "run" / "logs" / "train"), size_guidance={"tensors": 0}).Reload()
    first = events.Tensors("samples/input_target_output")[0]
    grid = tf.io.decode_png(tf.make_ndarray(first.tensor_proto)[2]).numpy()
    assert first.step == 0 and grid.shape == (128 + 256, 3 * 256, 3)
    assert (grid[:128, 128:256] == summaries.PAD_GREY).all() and (grid[128:, :256] != summaries.PAD_GREY).any()
    assert (tmp_path / "run" / "samples" / "step_0000000.png").exists()


def test_resume_with_another_architecture_is_refused(tmp_path, data_dir, run_of_six):
    workdir = copied_run(run_of_six, tmp_path / "run")
    with pytest.raises(ConfigError, match="model.ngf: 8 in config.json, 16 now"):
        train(tiny_config(workdir, data_dir, model=dict(ngf=16), optim=dict(steps=8)))


def test_checkpoints_without_config_json_resume_with_a_warning_and_a_model_that_does_not_fit_names_the_flags(
        tmp_path, data_dir, run_of_six, caplog):
    """config.json deleted (or the run copied without it): the run resumed silently under other
    flags (another objective, a new seed), and a checkpoint of another architecture was said not
    to fit "the model of config.json", which was not there."""
    workdir = copied_run(run_of_six, tmp_path / "run")
    (workdir / "config.json").unlink()
    resolve_config(tiny_config(workdir, data_dir, loss=dict(gan_mode="lsgan"), run=dict(seed=None)))
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING] == [
        f"{workdir} has checkpoints but no config.json: the run resumes from them under this command's flags, and "
        "the settings it was trained with cannot be checked against these (another objective or seed would go "
        "unnoticed); config.json records this command's from now on."]
    with pytest.raises(ConfigError) as refused:
        train(tiny_config(workdir, data_dir, model=dict(ngf=16), optim=dict(steps=8), run=dict(eval_examples=0)))
    assert "ckpt-6 does not fit the model of this command's flags (the workdir has no config.json): " in str(
        refused.value) and "config.json:" not in str(refused.value)
    assert not (workdir / "config.json").exists()


def test_a_resumed_run_logs_each_step_once(seeded_runs):
    """Resuming (and rerunning a complete run) computes the held-out L1 at the resume step for the
    summary line, but logs it and its sample grid once: the earlier process did (TensorBoard
    showed each resume step twice, with two values where --eval_examples changed). The run is
    `seeded_runs`' "first" (2 steps), "rest" (resumed to 4) and "rerun" (4 again)."""
    workdir = seeded_runs["split"]
    assert (seeded_runs["first"].step, seeded_runs["rest"].step, seeded_runs["rerun"].step) == (2, 4, 4)
    events = EventAccumulator(str(workdir / "logs" / "train"), size_guidance={"tensors": 0, "images": 0}).Reload()
    assert [event.step for event in events.Tensors("eval/held_out_l1")] == [0, 2, 4]
    assert [event.step for event in events.Tensors("samples/input_target_output")] == [0, 2, 4]


def test_a_config_json_whose_seed_was_set_to_null_is_refused_in_one_line(tmp_path, data_dir, run_of_six):
    """A hand-edited config.json with `"seed": null`: the resume is refused by name before anything
    is written (it stopped in a TypeError traceback after rewriting config.json)."""
    workdir = copied_run(run_of_six, tmp_path / "run")
    config_file = workdir / "config.json"
    config_file.write_text(config_file.read_text().replace('"seed": 7', '"seed": null'))
    before = config_file.read_bytes()
    with pytest.raises(ConfigError, match=r"run\.seed: None in config\.json, \d+ now"):
        train(tiny_config(workdir, data_dir, optim=dict(steps=8), run=dict(seed=None, eval_examples=0)))
    assert config_file.read_bytes() == before


def test_a_complete_run_asked_for_fewer_steps_trains_nothing_and_says_so(tmp_path, data_dir, run_of_six):
    workdir = copied_run(run_of_six, tmp_path / "run")
    before = sorted(os.listdir(workdir / "checkpoints"))
    result = train(tiny_config(workdir, data_dir, optim=dict(steps=4), run=dict(eval_examples=0)))
    assert (result.step, result.total_steps, result.stopped_early) == (6, 4, False)
    assert sorted(os.listdir(workdir / "checkpoints")) == before
    assert result.summary() == (f"nothing to train, the run is at step 6, past its 4 steps; checkpoint "
                                f"{workdir / 'checkpoints' / 'ckpt-6'}, no held-out L1 (--eval_examples=0)")


def test_a_resume_that_changes_the_schedule_says_so(tmp_path, data_dir, run_of_six, caplog):
    """--epochs and --epochs_decay may change on resume (a run lengthened), and the user is told:
    the steps trained so far followed the old schedule."""
    workdir = copied_run(run_of_six, tmp_path / "run")
    train(tiny_config(workdir, data_dir, optim=dict(steps=4, epochs=300), run=dict(eval_examples=0)))
    said = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and "schedule" in r.getMessage()]
    assert said == ["Resuming with --epochs=300 --epochs_decay=100, where config.json has 100 and 100: the "
                    "learning-rate schedule changes from the resumed step on (the steps trained so far followed "
                    "the old one); config.json records the new values."], said
    assert json.loads((workdir / "config.json").read_text())["optim"]["epochs"] == 300
    caplog.clear()
    train(tiny_config(workdir, data_dir, optim=dict(steps=4, epochs=300), run=dict(eval_examples=0)))
    assert not [r for r in caplog.records if "schedule" in r.getMessage()]  # Said once: now recorded.


def test_another_configuration_in_a_workdir_without_checkpoints_starts_fresh_unless_it_would_write_over(
        tmp_path, data_dir, caplog):
    """config.json of a run that never saved (or whose checkpoints were deleted): a run of another
    configuration starts there, with a warning, where the earlier run left no logs or samples;
    where it did, the run is refused before anything is written (it wrote over the samples)."""
    earlier = tiny_config(tmp_path, data_dir).validate()
    earlier.save(str(tmp_path))
    same = resolve_config(tiny_config(tmp_path, data_dir, optim=dict(steps=9)))
    assert same.run.seed == earlier.run.seed and not caplog.records
    other = resolve_config(tiny_config(tmp_path, data_dir, model=dict(ngf=16)))
    assert other.model.ngf == 16
    said = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert said == [f"{tmp_path} holds the config.json of a run of another configuration (model.ngf: 8 in "
                    "config.json, 16 now), with no checkpoint, logs or samples: this run starts from step 0 and "
                    "config.json records it."], said
    grid = tmp_path / "samples" / "step_0000000.png"
    grid.parent.mkdir()
    grid.write_bytes(b"the earlier run's grid")
    with pytest.raises(ConfigError) as refused:
        train(tiny_config(tmp_path, data_dir, model=dict(ngf=16)))
    assert str(refused.value) == (f"{tmp_path} holds a run of another configuration (model.ngf: 8 in config.json, "
                                  "16 now) and its samples/, but no checkpoint: this run would write over them. Move "
                                  "them and config.json away to start a new run here, or use another --workdir.")
    assert grid.read_bytes() == b"the earlier run's grid" and sorted(os.listdir(tmp_path)) == ["config.json",
                                                                                              "samples"]


def test_a_depth_the_discriminator_does_not_take_is_a_warning_as_the_run_starts(tmp_path, data_dir, run_of_six,
                                                                                caplog):
    """Said as the run starts, and, as it changes nothing, no difference that refuses a resume."""
    resolve_config(tiny_config(tmp_path, data_dir, model=dict(n_layers_d=5)))
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING] == [
        "--n_layers_d=5 changes nothing: it applies to --discriminator=n_layers or multiscale, and "
        "--discriminator=basic has 3 layers of its own."]
    workdir = copied_run(run_of_six, tmp_path / "run")
    resolve_config(tiny_config(workdir, data_dir, model=dict(n_layers_d=4), optim=dict(steps=8)))
    with pytest.raises(ConfigError, match="model.n_layers_d: 3 in config.json, 4 now"):
        resolve_config(tiny_config(workdir, data_dir, model=dict(discriminator="n_layers", n_layers_d=4)))


def test_a_result_reports_the_held_out_l1_to_four_decimals():
    result = TrainResult(step=3, total_steps=3, losses={}, held_out_l1_start=0.39180803298950195,
                         held_out_l1_end=0.3191465139389038, checkpoint="run/checkpoints/ckpt-3")
    assert result.summary() == "step 3/3, checkpoint run/checkpoints/ckpt-3, held-out L1 0.3918 -> 0.3191"


def test_training_leaves_the_process_seeds_and_op_determinism_alone(logged_run):
    """Only programs change process-wide state: a later export or evaluation in the same
    process must run as it would alone (train.py turns op determinism on for --seed itself).
    The run's config records deterministic_ops=True, as a --seed run's does."""
    before, after = logged_run["before"], logged_run["after"]
    assert logged_run["result"].step == 4
    assert TrainConfig.load(str(logged_run["workdir"])).run.deterministic_ops
    assert after["python"] == before["python"]
    numpy_state, numpy_after = before["numpy"], after["numpy"]
    assert numpy_after[0] == numpy_state[0] and np.array_equal(numpy_after[1], numpy_state[1])
    assert numpy_after[2:] == numpy_state[2:]
    assert after["tf_seed"] == before["tf_seed"]
    assert after["determinism"] == before["determinism"]


def _places(picture: np.ndarray, cell: np.ndarray) -> list[tuple[int, int]]:
    """Where `cell` appears in `picture`, pixel for pixel (top left corners)."""
    windows = np.lib.stride_tricks.sliding_window_view(picture, cell.shape)[:, :, 0]
    return [(int(y), int(x)) for y, x in np.argwhere((windows == cell).all(axis=(-3, -2, -1)))]


def test_a_sample_grid_shows_each_image_at_its_own_pixels_in_its_row_and_column(tmp_path):
    """The PNG grid (training samples, evaluate's grid.png) draws every image unscaled and
    unsmoothed: a sample shows the generator's own pixels. Cells line up in columns and rows;
    a smaller image sits in the top left of a grey cell."""
    rng = np.random.default_rng(3)
    rows = [[rng.uniform(-1, 1, (24, 31, 3)).astype(np.float32) for _ in range(3)] for _ in range(2)]
    rows[1][0] = rng.uniform(-1, 1, (16, 20, 3)).astype(np.float32)  # Smaller: padded grey to 24x31.
    path = summaries.save_grid_png(str(tmp_path / "grid.png"), rows, "step 7: held-out L1 0.1234",
                                   captions=["first row", "second row"])
    picture = np.asarray(Image.open(path).convert("RGB"))
    corners = [[_places(picture, summaries.to_uint8(image)) for image in row] for row in rows]
    assert all(len(places) == 1 for row in corners for places in row), corners
    (top0, lefts0), (top1, lefts1) = [({p[0][0] for p in row}, [p[0][1] for p in row]) for row in corners]
    assert len(top0) == len(top1) == 1 and top1.pop() >= top0.pop() + 24  # Rows: one under the other.
    assert lefts0 == lefts1 and lefts0[0] + 31 <= lefts0[1] and lefts0[1] + 31 <= lefts0[2]  # Columns.
    y, x = corners[1][0][0]
    assert (picture[y + 16:y + 24, x:x + 31] == summaries.PAD_GREY).all()
    assert (picture[y:y + 16, x + 20:x + 31] == summaries.PAD_GREY).all()
    assert (summaries.grid_image(rows)[24:40, 20:31] == summaries.PAD_GREY).all()  # TensorBoard's: no gaps.
    assert summaries.grid_image(rows).shape == (48, 93, 3)


def test_a_grid_of_images_too_large_to_show_is_drawn_shrunk_by_a_whole_factor(tmp_path):
    """Held-out images at their native size (`--preprocess=none`) can be thousands of pixels wide:
    a grid wider or taller than MAX_GRID_SIDE is drawn shrunk by the smallest whole factor that
    fits, gaps included, rather than as a PNG of every pixel."""
    wide = [[np.zeros((10, 1400, 3), np.float32)] * 3]  # 4200 pixels of images in a row: halved.
    path = summaries.save_grid_png(str(tmp_path / "wide.png"), wide, "wide")
    width, height = Image.open(path).size
    assert width == (3 * 1400 + 2 * 2 * summaries.GAP) // 2 <= summaries.MAX_GRID_SIDE
    assert height == 10 // 2 + summaries.HEADER_HEIGHT
    just_fits = [[np.zeros((10, 1300, 3), np.float32)] * 3]  # 3900 + gaps: drawn at its own pixels.
    assert Image.open(summaries.save_grid_png(str(tmp_path / "fits.png"), just_fits, "fits")).size[0] == \
        3 * 1300 + 2 * summaries.GAP
