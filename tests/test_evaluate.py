"""Evaluation end to end: the FCN-score segmenter on tiny data, the evaluate CLI on a tiny trained run,
and the same metrics from a checkpoint, its SavedModel and its float32 TFLite file."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from pix2pix_tf.config import DataConfig
from pix2pix_tf.data import pipeline
from pix2pix_tf.data.sources.shapes import LABEL_COLOURS, NUM_CLASSES
from pix2pix_tf.errors import ConfigError
from pix2pix_tf.evaluation import segmentation
from pix2pix_tf.evaluation.evaluator import FORM_TOLERANCE, EvalConfig, evaluate
from pix2pix_tf.evaluation.metrics import confusion_matrix, segmentation_scores
from pix2pix_tf.evaluation.plan import first_input_size, split_pairs, with_labels
from pix2pix_tf.inference import artifacts
from pix2pix_tf.inference.mode import DETERMINISTIC
from pix2pix_tf.inference.request import ModelRequest

from export_helpers import exported, trained_run
from programs import run_program

SEGMENTER_STEPS = 5  # The evaluation tests need a segmenter, not a good one.


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, data_dir) -> str:
    return trained_run(tmp_path_factory, data_dir)


@pytest.fixture(scope="module")
def segmenter_cache(tmp_path_factory) -> str:
    return str(tmp_path_factory.mktemp("segmenters"))


def shapes_examples(data_dir: str, split: str, limit=None) -> tf.data.Dataset:
    """(label image A, photo B, class map) of shapes/64 at its native 64x64."""
    config = DataConfig(dataset="shapes/64", data_dir=data_dir, preprocess="none", direction="AtoB")
    dataset = pipeline.load_paired_dataset(config)
    scheme = segmentation.label_scheme("shapes/64")
    labels = segmentation.split_labels(scheme, dataset, split, data_dir)
    if limit:
        labels = labels.take(limit)
    return with_labels(split_pairs(dataset, config, split, 3, 3, limit, 8), labels)


@pytest.mark.parametrize("native", [False, True])
def test_the_first_input_size_is_that_of_the_first_pair_the_evaluation_reads(data_dir, native):
    """Read eagerly before the evaluation starts: the size of the pipeline's first input, at
    the test-time size (128 from shapes' 64x64 pairs) or as decoded (native)."""
    config = DataConfig(dataset="shapes/64", data_dir=data_dir, load_size=143, crop_size=128)
    dataset = pipeline.load_paired_dataset(config)
    first, _ = next(split_pairs(dataset, config, "test", 3, 3, 1, 8, native=native).as_numpy_iterator())
    assert first_input_size(dataset, config, "test", 3, 3, 8, native=native) == first.shape[:2]
    assert first.shape[:2] == ((64, 64) if native else (128, 128))


# ----------------------------------------------------------------------------- labels and the segmenter


def test_class_maps_line_up_with_the_pairs_they_label(data_dir):
    """The n-th class map belongs to the n-th pair: it is exactly the input label image decoded
    with the label colours (which also checks the palette decoder)."""
    for a, _, label in shapes_examples(data_dir, "test", limit=4).as_numpy_iterator():
        decoded = segmentation.palette_to_labels(tf.constant(a), LABEL_COLOURS.astype(np.float32), 60.0)
        np.testing.assert_array_equal(decoded.numpy(), label)
        assert len(np.unique(label)) > 1


def test_palette_decoding_tolerates_jpeg_noise_and_marks_unknown_colours_void():
    rng = np.random.default_rng(0)
    truth = rng.integers(0, len(segmentation.CITYSCAPES_PALETTE), (16, 16))
    rgb = segmentation.CITYSCAPES_PALETTE[truth] + rng.uniform(-6, 6, (16, 16, 3))  # bus/train: 20 apart
    rgb[0, 0] = (255, 255, 255)  # Not a Cityscapes class colour.
    labels = segmentation.palette_to_labels(tf.constant(rgb / 127.5 - 1.0, tf.float32),
                                            segmentation.CITYSCAPES_PALETTE, 60.0).numpy()
    assert labels[0, 0] == segmentation.VOID
    np.testing.assert_array_equal(labels.ravel()[1:], truth.ravel()[1:])


def test_fcn_score_is_refused_where_it_means_nothing():
    with pytest.raises(segmentation.SegmentationError, match="--nofcn"):
        segmentation.label_scheme("facades")
    with pytest.raises(segmentation.SegmentationError, match="not photos"):
        segmentation.check_direction(segmentation.label_scheme("shapes"), "BtoA")
    segmentation.check_direction(segmentation.label_scheme("cityscapes"), "BtoA")


def test_a_segmenter_save_stopped_or_killed_leaves_no_staging_folder(tmp_path, monkeypatch):
    """Ctrl-C while the segmenter is saved under its staging name removes that folder; one that a
    killed process of this machine left is removed by the next training of the cache, and a
    live process's stays (the cache defaults to ~/.cache, where such folders were kept for good)."""
    from pix2pix_tf import writing

    spec = segmentation.SegmenterSpec(dataset="shapes/64", image_size=(64, 64), direction="AtoB", num_train=64,
                                      steps=1, batch_size=8)
    untrained = segmentation.build_segmenter(NUM_CLASSES, spec.width)
    monkeypatch.setattr(segmentation, "train_segmenter", lambda *args: untrained)  # The saving is what is tested.
    save = segmentation.save_segmenter

    def saved_then_stopped(model, path, info):
        save(model, path, info)
        raise KeyboardInterrupt

    monkeypatch.setattr(segmentation, "save_segmenter", saved_then_stopped)
    with pytest.raises(KeyboardInterrupt):
        segmentation.ensure_segmenter(spec, lambda: None, NUM_CLASSES, str(tmp_path))
    assert os.listdir(tmp_path) == []
    monkeypatch.setattr(segmentation, "save_segmenter", save)
    gone = subprocess.Popen([sys.executable, "-c", ""])
    gone.wait()
    killed = tmp_path / f"{spec.key()}.tmp-{writing.process_tag().split('-')[0]}-{gone.pid}"
    alive = tmp_path / f"{spec.key()}.tmp-{writing.process_tag().split('-')[0]}-{os.getppid()}"
    killed.mkdir()
    alive.mkdir()
    path = segmentation.ensure_segmenter(spec, lambda: None, NUM_CLASSES, str(tmp_path))
    assert sorted(os.listdir(tmp_path)) == sorted([os.path.basename(path), alive.name])


@pytest.mark.slow
def test_segmenter_learns_real_photos_and_is_cached_as_a_contract_saved_model(data_dir, tmp_path):
    spec = segmentation.SegmenterSpec(dataset="shapes/64", image_size=(64, 64), direction="AtoB", num_train=64,
                                      steps=100, batch_size=8)
    train_pairs = shapes_examples(data_dir, "train").map(lambda a, b, y: (b, y))
    val = list(shapes_examples(data_dir, "val").as_numpy_iterator())
    labels, photos = np.stack([label for _, _, label in val]), np.stack([photo for _, photo, _ in val])
    photo = photos[:1]

    # A cache entry cut short (a full disk, a bad copy) is the package's: trained again, not
    # reported as a model the user should "copy or export again". The entry cut short is an
    # untrained segmenter saved under this spec's key, its graph truncated: training it again is
    # the training of the segmenter checked below (one training, where a second spec's would cost
    # as much again: a Keras fit's set-up is most of a short training's cost).
    cut_short = os.path.join(tmp_path, spec.key())
    segmentation.save_segmenter(segmentation.build_segmenter(NUM_CLASSES, spec.width), cut_short,
                                {**dataclasses.asdict(spec), "version": segmentation.SEGMENTER_VERSION})
    graph = os.path.join(cut_short, "saved_model.pb")
    with open(graph, "r+b") as f:
        f.truncate(os.path.getsize(graph) // 3)
    trained = []

    def pairs_again():
        trained.append(True)
        return train_pairs

    path, segment_again = segmentation.load_cached_segmenter(spec, pairs_again, NUM_CLASSES, str(tmp_path))
    assert path == cut_short and trained == [True]
    assert segment_again(photo).shape == (1, 64, 64)

    def must_not_train():
        raise AssertionError("the cached segmenter was trained again")

    assert segmentation.ensure_segmenter(spec, must_not_train, NUM_CLASSES, str(tmp_path)) == path
    assert not [n for n in os.listdir(tmp_path) if ".tmp" in n]

    segment = segmentation.load_segmenter(path)
    confusion = confusion_matrix(labels, segment(photos), NUM_CLASSES)
    scores = segmentation_scores(confusion)
    background_only = confusion[0].sum() / confusion.sum()
    # Held-out real photos: clearly better than calling everything background.
    assert scores.per_pixel_accuracy > background_only + 0.1, (scores, background_only)
    assert scores.per_class_accuracy > 2.0 / NUM_CLASSES, scores

    # --segmenter_input=unit hands the model [0, 1] pixels: the same as giving it those ourselves.
    unit = segmentation.load_segmenter(path, "unit")
    np.testing.assert_array_equal(unit(photo), segment((photo + 1.0) / 2.0))
    with pytest.raises(segmentation.SegmentationError, match="not one of"):
        segmentation.load_segmenter(path, "percent")
    with pytest.raises(segmentation.SegmentationError, match="not a SavedModel"):
        segmentation.load_segmenter(str(tmp_path))


@pytest.mark.parametrize("classes,returned", [(lambda x: tf.fill(tf.shape(x)[:3], -5), -5),
                                              (lambda x: tf.one_hot(tf.fill(tf.shape(x)[:3], 39), 40), 39)],
                         ids=["negative_ids", "more_logits_than_classes"])
def test_a_segmenter_that_returns_classes_the_dataset_has_not_breaks_the_contract(tmp_path, classes, returned):
    """Scored, such a class would be clipped into a real one and give made-up FCN-scores."""
    module = tf.Module()
    module.serve = tf.function(lambda images: {"classes": classes(images)},
                               input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32)])
    tf.saved_model.save(module, str(tmp_path / "seg"), signatures={"serving_default": module.serve})
    segment = segmentation.load_segmenter(str(tmp_path / "seg"), num_classes=NUM_CLASSES)
    with pytest.raises(segmentation.SegmentationError,
                       match=rf"returned class {returned} for a dataset of {NUM_CLASSES} classes \(0 to "):
        segment(np.zeros((1, 8, 8, 3), np.float32))


# ----------------------------------------------------------------------------- the CLI


@pytest.mark.slow
def test_evaluate_cli_end_to_end(workdir, segmenter_cache, tmp_path):
    output_dir = str(tmp_path / "eval")
    result = run_program("evaluate", f"--workdir={workdir}", "--num_examples=3", "--num_samples=2",
                         f"--segmenter_cache={segmenter_cache}", f"--segmenter_steps={SEGMENTER_STEPS}",
                         f"--output_dir={output_dir}", "--noprogress")
    assert result.returncode == 0, result.stderr[-4000:]
    for line in ("L1 (in [-1, 1])", "PSNR (dB)", "SSIM", "Lab histogram intersection a", "FCN class IoU"):
        assert line in result.stdout

    with open(os.path.join(output_dir, "metrics.json")) as f:
        metrics = json.load(f)
    assert metrics["source"] == "checkpoint" and metrics["split"] == "test" and metrics["direction"] == "AtoB"
    assert metrics["image_size"] == [128, 128]  # The run's test-time preprocessing (crop_size).
    assert metrics["num_examples"] == 3 and metrics["num_samples"] == 2
    assert metrics["mode"] == {"dropout": True, "batch_statistics": True}  # Paper mode by default.
    m = metrics["metrics"]
    assert 0 < m["l1"] < 2 and 0 < m["psnr"] < 100 and -1 <= m["ssim"] <= 1 and "fid" not in m
    assert set(m["lab_histogram_intersection"]) == {"L", "a", "b"}
    assert set(m["fcn"]) == {"per_pixel_accuracy", "per_class_accuracy", "class_iou"}
    assert set(metrics["ground_truth"]["fcn"]) == set(m["fcn"])
    assert metrics["metrics_std"]["l1"] > 0  # Two dropout samples differ: the noise z is on.
    assert len(metrics["per_image"]) == 3

    with open(os.path.join(output_dir, "index.html")) as f:
        page = f.read()
    images = [part.split('"')[0] for part in page.split('<img src="')[1:]]
    assert len(images) == 9  # 3 rows of input | output | target.
    assert all(os.path.exists(os.path.join(output_dir, image)) for image in images)
    assert os.path.getsize(os.path.join(output_dir, "grid.png")) > 1000


def test_a_dataset_without_test_or_val_pairs_is_evaluated_only_on_request(run_of_six, tmp_path):
    """Training falls back to train images for its samples; an evaluation does not silently
    report training-set metrics: it asks for --split=train."""
    from PIL import Image

    from conftest import copied_run

    folder = tmp_path / "pairs" / "train"
    folder.mkdir(parents=True)
    for i in range(2):
        Image.fromarray(np.full((64, 128, 3), 40 * i, np.uint8)).save(folder / f"{i}.png")
    run = copied_run(run_of_six, tmp_path / "run")
    config = json.loads((run / "config.json").read_text())
    config["data"]["dataset"] = f"folder:{tmp_path / 'pairs'}"
    (run / "config.json").write_text(json.dumps(config))
    result = run_program("evaluate", f"--workdir={run}", "--nofcn", "--noprogress")
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert (f"error: folder:{tmp_path / 'pairs'} has no test or val split to evaluate on: metrics on the training "
            "pairs do not show how the model does on images it has not seen. Pass --split=train for them anyway."
            in result.stderr), result.stderr[-3000:]
    assert not (run / "eval").exists()
    on_request = run_program("evaluate", f"--workdir={run}", "--nofcn", "--noprogress", "--split=train")
    assert on_request.returncode == 0, on_request.stderr[-3000:]
    assert json.loads((run / "eval" / "train_ckpt-6_paper" / "metrics.json").read_text())["split"] == "train"


def test_an_evaluation_without_pages_removes_an_earlier_evaluations_pages_only(workdir, tmp_path):
    """index.html, grid.png and the page's pictures left from an earlier evaluation into the same
    folder would describe it, not this one: removed; a file of the same name that evaluate did not
    write, and a picture of another name, are kept."""
    def evaluate(output_dir, examples: int):
        result = run_program("evaluate", f"--workdir={workdir}", "--num_examples=1", "--nofcn", "--deterministic",
                             f"--html_examples={examples}", f"--grid_examples={examples}",
                             f"--output_dir={output_dir}", "--noprogress")
        assert result.returncode == 0, result.stderr[-3000:]
        return result

    evaluate(tmp_path / "eval", 1)
    assert (tmp_path / "eval" / "index.html").is_file() and (tmp_path / "eval" / "grid.png").is_file()
    assert sorted(os.listdir(tmp_path / "eval" / "images")) == ["00000_input.png", "00000_output.png",
                                                                "00000_target.png"]
    from pix2pix_tf.evaluation import report  # Its pictures carry its mark: taken as its own without a report beside.

    shutil.copytree(tmp_path / "eval" / "images", tmp_path / "pictures_only" / "images")
    assert report.folder_for(str(tmp_path / "pictures_only"), "any", True, ()) == str(tmp_path / "pictures_only")
    evaluate(tmp_path / "eval", 0)
    assert sorted(os.listdir(tmp_path / "eval")) == ["images", "metrics.json"]
    assert os.listdir(tmp_path / "eval" / "images") == []
    theirs = tmp_path / "site"
    (theirs / "images").mkdir(parents=True)
    (theirs / "images" / "holiday.png").write_bytes(b"mine")
    (theirs / "index.html").write_text("<html>my own page</html>")
    (theirs / "grid.png").write_bytes(b"\x89PNG\r\n\x1a\n not ours")
    evaluate(theirs, 0)
    assert (theirs / "index.html").read_text() == "<html>my own page</html>"
    assert (theirs / "grid.png").read_bytes() == b"\x89PNG\r\n\x1a\n not ours"
    assert (theirs / "images" / "holiday.png").read_bytes() == b"mine"


def test_evaluate_cli_asked_for_fid_without_weights_says_why(workdir, tmp_path):
    """Answered before any image is read, as one message."""
    result = run_program("evaluate", f"--workdir={workdir}", "--fid", "--nofcn", f"--output_dir={tmp_path}",
                         "--noprogress")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "--inception_weights" in result.stderr and "never downloads" in result.stderr


@pytest.mark.slow
def test_fid_with_a_local_inception_weights_file(tmp_path):
    """The Inception path of FID, with random weights saved by the test (no hub is reachable):
    the file loads, gives 2048-d features, and FID of a set with itself is 0."""
    import keras

    from pix2pix_tf.evaluation import metrics

    keras.utils.set_random_seed(0)
    path = str(tmp_path / "inception_v3_notop.weights.h5")
    keras.applications.InceptionV3(include_top=False, weights=None, pooling="avg",
                                   input_shape=(299, 299, 3)).save_weights(path)
    features = metrics.inception_features(path)
    images = np.random.default_rng(0).uniform(-1, 1, (3, 64, 64, 3)).astype(np.float32)
    values = features(images)
    assert values.shape == (3, 2048)
    assert metrics.fid_from_features(values, features(images)) == pytest.approx(0.0, abs=1e-3)
    bad = tmp_path / "not_inception.h5"
    bad.write_bytes(b"not an h5 file")
    with pytest.raises(metrics.MetricError, match="not a Keras Inception-v3 .*: neither an HDF5 file"):
        metrics.inception_features(str(bad))


def test_an_inception_weights_file_that_is_not_one_is_one_line_and_a_tilde_is_the_home(tmp_path, monkeypatch):
    """docs/evaluation.md's `--inception_weights=~/...`: the shell leaves that tilde alone. A
    .keras file that is no zip, or one of another model, is refused in one line (a zipfile
    traceback, or Keras' 188-line list of the layers it could not load, before), and nothing
    else is printed (Keras' warning for each layer it could not fill, before)."""
    import warnings

    import keras

    from pix2pix_tf.evaluation import metrics

    (tmp_path / "text.keras").write_text("not a zip")
    other = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    other.save(tmp_path / "other_model.keras")
    for name in ("text.keras", "other_model.keras"):
        with pytest.raises(metrics.MetricError, match=rf"^--inception_weights=\S+{name} is not a Keras Inception-v3 "
                                                      r"'notop' weights file \(") as caught, \
                warnings.catch_warnings(record=True) as said:
            warnings.simplefilter("always")
            metrics.inception_features(str(tmp_path / name))
        assert "\n" not in str(caught.value) and len(str(caught.value)) < 600
        assert [str(warning.message) for warning in said] == []
        # A file that is no zip is refused before Inception-v3 is built; a zip only by Keras.
        refused_early = str(caught.value).endswith("neither an HDF5 file (.h5) nor a zip archive (.keras)")
        assert refused_early == (name == "text.keras")
    import h5py

    with h5py.File(tmp_path / "after_a_user_block.h5", "w", userblock_size=8192) as f:  # HDF5 all the same.
        f["x"] = 1
    assert metrics._is_h5_or_zip(str(tmp_path / "after_a_user_block.h5"))
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(metrics.MetricError, match=r"^--inception_weights=~/text\.keras is not a Keras"):
        metrics.inception_features("~/text.keras")  # Found: it is read, then refused for what it is.
    with pytest.raises(metrics.MetricError, match=r"^--inception_weights=~: a folder, not a weights file\.$"):
        metrics.inception_features("~")


# ----------------------------------------------------------------------------- checkpoint = SavedModel = TFLite


@pytest.mark.slow
def test_checkpoint_saved_model_and_tflite_give_the_same_metrics(workdir, segmenter_cache, tmp_path,
                                                               tmp_path_factory, data_dir):
    pytest.importorskip("ai_edge_litert", reason="the LiteRT interpreter is not installed")
    export = exported(tmp_path_factory, data_dir)  # The shared export of `workdir`'s run.
    saved_model_dir, tflite = export["paper"], os.path.join(export["tflite_paper"], "tiny_float32.tflite")
    common = EvalConfig(ModelRequest.of(workdir=workdir, mode=DETERMINISTIC), num_examples=3,
                        segmenter_cache=segmenter_cache, segmenter_steps=SEGMENTER_STEPS, html_examples=0,
                        grid_examples=0, progress=False)
    forms = {
        "checkpoint": common,
        "saved_model": dataclasses.replace(common, model=ModelRequest.of(
            run=workdir, saved_model=saved_model_dir, mode=DETERMINISTIC)),
        "tflite": dataclasses.replace(common, model=ModelRequest.of(run=workdir, tflite=tflite, mode=DETERMINISTIC)),
        # Without --workdir: the run is found from the export's metadata.
        "saved_model_alone": dataclasses.replace(common, model=ModelRequest.of(
            saved_model=saved_model_dir, mode=DETERMINISTIC)),
    }
    results = {name: evaluate(dataclasses.replace(c, output_dir=str(tmp_path / name))).metrics
               for name, c in forms.items()}
    reference = results["checkpoint"]["metrics"]
    for name, result in results.items():
        assert result["source"] == name.replace("_alone", "")
        assert result["mode"]["dropout"] is False
        # The norm read from config.json or from the export's own record (the run unnamed).
        assert result["mode_description"] == "deterministic (no dropout), batch norm with per-image batch statistics"
        m = result["metrics"]
        for key in ("l1", "psnr", "ssim"):
            assert abs(m[key] - reference[key]) <= FORM_TOLERANCE[key], (name, key, m[key], reference[key])
        for channel in ("L", "a", "b"):
            assert abs(m["lab_histogram_intersection"][channel] - reference["lab_histogram_intersection"][channel]) \
                <= FORM_TOLERANCE["lab_histogram_intersection"], (name, channel)
        for key, value in m["fcn"].items():
            assert abs(value - reference["fcn"][key]) <= FORM_TOLERANCE["fcn"], (name, key)


@pytest.mark.slow
def test_an_instance_norm_model_is_described_as_instance_norm_everywhere(tmp_path, data_dir):
    """A generator with instance norm has no batch statistics to choose between: export's line,
    the model card, the export's record and evaluate's description say instance norm, for the
    checkpoint and for the SavedModel evaluated without its run. The run is also a variant that
    trains (the variants listed in test_training.py): a ResNet, a 1x1 PixelGAN, the cGAN loss
    alone, the default strategy."""
    from pix2pix_tf.training.loop import train

    from conftest import tiny_config

    workdir, export_dir = tmp_path / "run", tmp_path / "export"
    variant = dict(model=dict(generator="resnet_6blocks", discriminator="pixel", norm="instance"),
                   loss=dict(lambda_l1=0.0))
    result = train(tiny_config(workdir, data_dir, optim=dict(steps=2), run=dict(eval_examples=0, strategy="default"),
                               **variant))
    assert result.step == 2 and all(np.isfinite(v) for v in result.losses.values())
    instance = "instance norm (each image's own statistics, as in training)"
    exported_run = run_program("export", f"--workdir={workdir}", f"--export_dir={export_dir}", "--tflite=",
                               "--deterministic", "--nobatch_statistics", "--check_examples=1", "--benchmark")
    assert exported_run.returncode == 0, exported_run.stderr[-3000:]
    version = export_dir / "pix2pix" / "1"
    assert f"(version 1, {instance}, no dropout, 128x128;" in exported_run.stdout, exported_run.stdout
    # No TFLite file: the latency line points to none below, the card names none.
    latency = [line for line in exported_run.stdout.splitlines() if line.startswith("Latency, batch 1")]
    assert len(latency) == 1 and "SavedModel translate_float_deterministic" in latency[0] \
        and "TFLite" not in latency[0], exported_run.stdout
    card = (version / "assets.extra" / "MODEL_CARD.md").read_text()
    assert f"- **Inference mode**: {instance}, no dropout\n" in card
    assert "The SavedModel's square signatures take 128 x 128" in card and "TFLite files" not in card, card
    assert artifacts.read_metadata(str(version))["norm"] == "instance"
    # An export made before the norm was recorded: the norm of the run it names.
    older = shutil.copytree(version, tmp_path / "older")
    record = older / "assets.extra" / artifacts.METADATA_FILE
    record.write_text(json.dumps({k: v for k, v in json.loads(record.read_text()).items() if k != "norm"}))
    base = EvalConfig(ModelRequest.of(workdir=str(workdir), mode=DETERMINISTIC), num_examples=1, fcn=False,
                      html_examples=0, grid_examples=0, progress=False)
    moving_averages = dataclasses.replace(DETERMINISTIC, batch_statistics=False)
    evaluations = {"checkpoint": base,  # Each in its default folder: the mode's name tells them apart.
                   "checkpoint, moving averages": dataclasses.replace(base, model=ModelRequest.of(
                       workdir=str(workdir), mode=moving_averages)),
                   "older saved_model": dataclasses.replace(base, model=ModelRequest.of(
                       saved_model=str(older), mode=DETERMINISTIC), output_dir=str(tmp_path / "older_eval"))}
    for name, config in evaluations.items():
        evaluated = evaluate(config).metrics
        assert evaluated["mode_description"] == f"deterministic (no dropout), {instance}", name
    assert sorted(os.listdir(workdir / "eval")) == ["test_ckpt-2_deterministic",
                                                    "test_ckpt-2_deterministic_moving_averages"]
    assert f"checkpoint {workdir / 'checkpoints' / 'ckpt-2'} ({instance}, no dropout)" in \
        json.load(open(workdir / "eval" / "test_ckpt-2_deterministic" / "metrics.json"))["model"]


def test_a_norm_that_is_not_recorded_is_not_stated():
    """An export that records no norm, whose run is gone: the statistics chosen, not a norm guessed."""
    assert DETERMINISTIC.describe(None) == ("per-image batch statistics if it has batch norm (its norm is not "
                                            "recorded), no dropout")
    assert DETERMINISTIC.describe("syncbatch") == "batch norm with per-image batch statistics, no dropout"


def test_an_evaluation_does_not_replace_what_evaluate_did_not_write_nor_another_models_report(tmp_path):
    """The folder's metrics.json, and the index.html and grid.png an evaluation writes, are
    replaced only where evaluate wrote them. A default folder of another model's evaluation gives
    way to `-2` (two exports' TFLite files of one name shared one); a folder the user chose is
    theirs to reuse (test_a_stopped_evaluation_leaves_an_earlier_report_as_it_was)."""
    from pix2pix_tf.evaluation import report

    both = (report.HTML_FILE, report.GRID_FILE)
    folder = tmp_path / "eval"
    assert report.folder_for(str(folder), "model A", False, both) == str(folder)  # Nothing there yet.
    folder.mkdir()
    (folder / "metrics.json").write_text(json.dumps({"model": "model A", "metrics": {}}))
    assert report.folder_for(str(folder), "model A", False, both) == str(folder)  # Its own: replaced.
    assert report.folder_for(str(folder), "model B", False, both) == f"{folder}-2"
    (tmp_path / "eval-2").mkdir()
    (tmp_path / "eval-2" / "metrics.json").write_text(json.dumps({"model": "model C", "metrics": {}}))
    assert report.folder_for(str(folder), "model B", False, both) == f"{folder}-3"
    assert report.folder_for(str(folder), "model C", False, both) == f"{folder}-2"
    assert report.folder_for(str(folder), "model B", True, both) == str(folder)
    (folder / "index.html").write_text("<html>my own page</html>")
    with pytest.raises(ConfigError, match=rf"^{folder / 'index.html'} was not written by evaluate: it is not replaced"):
        report.folder_for(str(folder), "model A", True, both)
    assert report.folder_for(str(folder), "model A", True, (report.GRID_FILE,)) == str(folder)  # Writes no page.
    (folder / "index.html").unlink()
    (tmp_path / "photos").mkdir()
    (folder / "images").symlink_to(tmp_path / "photos")
    with pytest.raises(ConfigError, match=rf"^{folder / 'images'} is a symbolic link \(to {tmp_path / 'photos'}\)"):
        report.folder_for(str(folder), "model A", True, both)


def test_pictures_of_evaluate_s_names_that_evaluate_did_not_write_are_refused(tmp_path):
    """A user's files named as evaluate names its pictures (`images/00000_input.png`) were
    replaced, and those of higher numbers removed, without a word: refused now, before any image,
    unless evaluate wrote them (its pictures carry its mark; an earlier report's unmarked ones,
    written before pictures were marked, are its own too). Files of other names stay theirs."""
    from pix2pix_tf.evaluation import report

    folder, images = tmp_path / "mine", tmp_path / "mine" / "images"
    images.mkdir(parents=True)
    (images / "holiday.png").write_bytes(b"mine")
    (images / "00000_input.png").write_bytes(report.encode_png(np.zeros((4, 4, 3), np.float32)))
    assert report.folder_for(str(folder), "model A", True, ()) == str(folder)  # Evaluate's, and not a picture's name.
    for name in ("00007_output.png", "00001_target.png", "00002_input.png", "00003_input.png"):
        (images / name).write_bytes(b"a user's picture")
    with pytest.raises(ConfigError, match=rf"^{images} holds 4 file\(s\) of the names of evaluate's pictures that "
                                          r"evaluate did not write \(00001_target.png, 00002_input.png, "
                                          r"00003_input.png, \.\.\.\): they are not replaced"):
        report.folder_for(str(folder), "model A", True, ())
    (folder / "metrics.json").write_text(json.dumps({"model": "model A", "metrics": {}}))  # An earlier report's.
    assert report.folder_for(str(folder), "model A", True, ()) == str(folder)
    (images / "00004_output.png").mkdir()  # No picture of anyone's: refused whoever's folder it is.
    with pytest.raises(ConfigError, match=r"holds 1 file\(s\) .* \(00004_output.png\)"):
        report.folder_for(str(folder), "model A", True, ())
    shutil.rmtree(images)
    images.write_text("my notes")
    with pytest.raises(ConfigError, match=rf"^{images} is a file where evaluate keeps its pictures' folder"):
        report.folder_for(str(folder), "model A", True, ())


def test_a_users_metrics_json_in_the_output_dir_is_refused_before_any_image(workdir, tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "metrics.json").write_text('{"my": "own results"}')
    config = EvalConfig(ModelRequest.of(workdir=workdir, mode=DETERMINISTIC), num_examples=1, fcn=False,
                        progress=False, output_dir=str(mine))
    with pytest.raises(ConfigError, match=rf"^{mine / 'metrics.json'} was not written by evaluate: it is not replaced"):
        evaluate(config)
    assert os.listdir(mine) == ["metrics.json"] and (mine / "metrics.json").read_text() == '{"my": "own results"}'
    with pytest.raises(ConfigError, match=r"--num_examples must be at least 1 and below 2\^63, got 922337203685477"):
        evaluate(dataclasses.replace(config, num_examples=2**63))


def test_an_export_of_another_direction_than_the_run_is_refused(workdir, tmp_path, tmp_path_factory, data_dir):
    """Its outputs would be compared with the other direction's targets (L1 0.97, and a report)."""
    copy = shutil.copytree(exported(tmp_path_factory, data_dir)["deterministic"], tmp_path / "model")
    record = copy / "assets.extra" / artifacts.METADATA_FILE
    record.write_text(json.dumps({**json.loads(record.read_text()), "direction": "BtoA"}))
    with pytest.raises(ConfigError, match=rf"^{copy} translates BtoA \(its export records it\), but the run {workdir} "
                                          "gives AtoB pairs"):
        evaluate(EvalConfig(ModelRequest.of(saved_model=str(copy), run=workdir, mode=DETERMINISTIC), num_examples=1,
                            fcn=False, progress=False, output_dir=str(tmp_path / "out")))
    assert not (tmp_path / "out").exists()


def test_paper_mode_noise_is_seeded(workdir, segmenter_cache, tmp_path):
    config = EvalConfig(ModelRequest.of(workdir=workdir), num_examples=2, fcn=False, html_examples=0, grid_examples=0,
                        progress=False)
    first, second, other = (evaluate(dataclasses.replace(config, model=dataclasses.replace(config.model, seed=seed),
                                                         output_dir=str(tmp_path / str(i)))).metrics
                            for i, seed in enumerate((1, 1, 2)))
    assert first["metrics"]["l1"] == second["metrics"]["l1"]
    assert first["metrics"]["l1"] != other["metrics"]["l1"]
    assert first["ground_truth"] is None  # --nofcn


def test_a_stopped_evaluation_leaves_an_earlier_report_as_it_was(run_of_six, tmp_path, monkeypatch):
    """A stop while the images are measured (Ctrl-C, SIGTERM) writes nothing: the earlier report's
    pictures stay beside its page and numbers, although this evaluation's model differs."""
    from pix2pix_tf.errors import Interrupted
    from pix2pix_tf.evaluation import per_image

    from write_matrix import snapshot

    output_dir = tmp_path / "eval"
    config = EvalConfig(ModelRequest.of(workdir=str(run_of_six), checkpoint=str(run_of_six / "checkpoints" / "ckpt-2"),
                                        mode=DETERMINISTIC), num_examples=3, fcn=False, progress=False,
                        output_dir=str(output_dir))
    evaluate(config)
    earlier = snapshot(str(output_dir))
    assert len([name for name in earlier if name.startswith("images")]) == 9
    measure_image = per_image._measure_image

    def stopped_at_the_third_image(plan, found, i, *args):
        if i == 2:
            raise Interrupted(signal.SIGTERM)
        return measure_image(plan, found, i, *args)

    monkeypatch.setattr(per_image, "_measure_image", stopped_at_the_third_image)
    newest = dataclasses.replace(config.model, checkpoint=str(run_of_six / "checkpoints" / "ckpt-6"))
    with pytest.raises(Interrupted):
        evaluate(dataclasses.replace(config, model=newest))
    assert snapshot(str(output_dir)) == earlier
    monkeypatch.undo()
    evaluate(dataclasses.replace(config, model=newest))
    assert snapshot(str(output_dir))["images/00000_output.png"] != earlier["images/00000_output.png"]


def test_evaluate_refuses_what_it_cannot_do(workdir, tmp_path):
    from pix2pix_tf.errors import Pix2pixError

    with pytest.raises(Pix2pixError, match="splits"):
        evaluate(EvalConfig(ModelRequest.of(workdir=workdir), split="holdout", fcn=False, progress=False,
                            output_dir=str(tmp_path)))
    with pytest.raises(Pix2pixError, match="exactly one of .*; got --saved_model and --tflite"):
        evaluate(EvalConfig(ModelRequest.of(run=workdir, saved_model="a", tflite="b")))
    with pytest.raises(Pix2pixError, match="--workdir"):
        evaluate(EvalConfig(ModelRequest.of()))
    with pytest.raises(Pix2pixError, match="pass --workdir"):
        evaluate(EvalConfig(ModelRequest.of(saved_model=str(tmp_path))))
    with pytest.raises(Pix2pixError, match="config.json"):
        evaluate(EvalConfig(ModelRequest.of(workdir=str(tmp_path / "nope"))))
