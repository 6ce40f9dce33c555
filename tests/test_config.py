"""config.json: the run's one typed record, and the checks that protect a workdir."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys

import pytest

from pix2pix_tf import catalogue
from pix2pix_tf import config as cfg
from pix2pix_tf.inference.request import ModelRequest
from pix2pix_tf.training import resume_rules

from programs import run_program


def test_round_trip_through_config_json(tmp_path):
    config = cfg.TrainConfig(model=cfg.ModelConfig(generator="resnet_9blocks", norm="instance"),
                             optim=cfg.OptimConfig(steps=12), run=cfg.RunConfig(seed=3))
    config.save(str(tmp_path))
    assert cfg.TrainConfig.load(str(tmp_path)) == dataclasses.replace(config, data=config.data.resolved())
    assert json.loads((tmp_path / "config.json").read_text())["model"]["generator"] == "resnet_9blocks"


def test_unknown_keys_and_missing_file_are_clear_errors(tmp_path):
    with pytest.raises(cfg.ConfigError, match="does not exist"):
        cfg.TrainConfig.load(str(tmp_path))
    (tmp_path / "config.json").write_text(json.dumps({"model": {"generatr": "unet_256"}}))
    with pytest.raises(cfg.ConfigError, match="generatr"):
        cfg.TrainConfig.load(str(tmp_path))


@pytest.mark.parametrize("part,changes,message", [
    ("data", {"crop_size": 512, "load_size": 286}, "larger than --load_size"),
    ("loss", {"lambda_l1": -1.0}, "non-negative"),
    ("loss", {"lambda_l1": 0.0, "gan_weight": 0.0}, "no objective"),
    ("model", {"generator": "unet_512"}, "not one of"),
    ("data", {"batch_size": 0}, "at least 1"),
    ("optim", {"steps": 0}, "at least 1"),
])
def test_validate_rejects_impossible_settings(part, changes, message):
    config = cfg.TrainConfig()
    bad = dataclasses.replace(config, **{part: dataclasses.replace(getattr(config, part), **changes)})
    with pytest.raises(cfg.ConfigError, match=message):
        bad.validate()


def test_resume_refuses_another_model_but_allows_longer_runs():
    stored = cfg.TrainConfig(run=cfg.RunConfig(seed=1))
    longer = dataclasses.replace(stored, optim=dataclasses.replace(stored.optim, steps=999))
    resume_rules.check_resumable(stored, longer)
    moved = dataclasses.replace(stored, data=dataclasses.replace(stored.data, data_dir="/mnt/elsewhere"))
    resume_rules.check_resumable(stored, moved)
    other = dataclasses.replace(stored, model=dataclasses.replace(stored.model, generator="unet_128"))
    with pytest.raises(cfg.ConfigError, match="model.generator: 'unet_256' in config.json, 'unet_128' now"):
        resume_rules.check_resumable(stored, other)


def edited(config: dict, section: str, key: str, value) -> dict:
    return {**config, section: {**config[section], key: value}}


@pytest.mark.parametrize("edit,message", [
    (lambda c: [c], "must hold a JSON object with the sections model, data, loss, optim, run; it holds a list"),
    (lambda c: {**c, "model": []}, "section 'model' must be a JSON object, not a list"),
    (lambda c: edited(c, "model", "ngf", "64"), 'model.ngf must be an integer, not "64"'),
    (lambda c: edited(c, "model", "ngf", None), "model.ngf must be an integer, not null"),
    (lambda c: edited(c, "model", "ngf", True), "model.ngf must be an integer, not true"),
    (lambda c: edited(c, "model", "ngf", 64.5), "model.ngf must be an integer, not 64.5"),
    (lambda c: edited(c, "data", "flip", "yes"), 'data.flip must be true or false, not "yes"'),
    (lambda c: edited(c, "data", "flip", 1), "data.flip must be true or false, not 1"),
    (lambda c: edited(c, "loss", "lambda_l1", "100"), 'loss.lambda_l1 must be a finite number, not "100"'),
    (lambda c: edited(c, "data", "dataset", None), "data.dataset must be a string, not null"),
    (lambda c: edited(c, "run", "seed", "7"), 'run.seed must be an integer or null, not "7"'),
    (lambda c: edited(c, "model", "generator", "unet_512"), "section 'model': --generator='unet_512' is not one of"),
    (lambda c: edited(c, "data", "batch_size", 0), "section 'data': --batch_size must be at least 1"),
    (lambda c: {**c, "notes": "lr tuned by hand"}, "unknown sections ['notes']"),
])
def test_load_refuses_what_the_flags_would_refuse(tmp_path, edit, message):
    """A hand-edited or damaged config.json gets a message naming the file and the field, as
    a bad flag does; never a TypeError deep in the model, never a silent default."""
    cfg.TrainConfig(run=cfg.RunConfig(seed=3)).save(str(tmp_path))
    path = tmp_path / "config.json"
    path.write_text(json.dumps(edit(json.loads(path.read_text()))))
    with pytest.raises(cfg.ConfigError) as error:
        cfg.TrainConfig.load(str(tmp_path))
    assert str(error.value).startswith(str(path)) and message in str(error.value)


def test_load_accepts_null_where_a_field_is_optional_and_an_integer_for_a_number(tmp_path):
    config = cfg.TrainConfig(run=cfg.RunConfig(seed=3)).to_dict()
    config = edited(edited(edited(config, "run", "seed", None), "optim", "steps", None), "loss", "lambda_l1", 10)
    config = edited(edited(config, "data", "direction", None), "data", "data_dir", None)
    (tmp_path / "config.json").write_text(json.dumps(config))
    loaded = cfg.TrainConfig.load(str(tmp_path))
    assert loaded.run.seed is None and loaded.optim.steps is None and loaded.data.data_dir is None
    assert loaded.data.direction == "AtoB"  # Null: the dataset's usual direction, resolved on loading.
    assert loaded.loss.lambda_l1 == 10.0 and isinstance(loaded.loss.lambda_l1, float)


@pytest.mark.parametrize("part,changes,message", [
    ("optim", {"lr": float("nan")}, "--lr must be a finite number, got nan"),
    ("optim", {"lr": float("inf")}, "--lr must be a finite number, got inf"),
    ("optim", {"beta1": 1.0}, "--beta1 is an exponential decay rate of Adam: at least 0 and below 1, got 1.0"),
    ("optim", {"beta1": float("nan")}, "--beta1 must be a finite number"),
    ("loss", {"lambda_l1": float("nan")}, "--lambda_l1 must be a finite number"),
    ("loss", {"gan_weight": float("inf")}, "--gan_weight must be a finite number"),
    ("loss", {"lambda_feat": float("nan")}, "--lambda_feat must be a finite number"),
    ("model", {"input_nc": 2}, "--input_nc=2: images are read with 3 channels"),
    ("model", {"output_nc": 4}, "--output_nc=4: images are read with 3 channels"),
    ("model", {"discriminator": "n_layers", "n_layers_d": 9},
     r"a PatchGAN of 9 layers leaves no patch of a 256x256 image \(--crop_size=256\). Use --n_layers_d=6"),
    ("model", {"discriminator": "multiscale", "num_d": 8},
     r"on the coarsest of --num_d=8 scales \(2x2\) leaves no patch .* Use --num_d=4 or a larger --crop_size"),
    ("model", {"discriminator": "image", "ngf": 8}, None),  # 5 layers fit 256.
])
def test_numbers_channels_and_discriminator_depth_are_checked_before_work(part, changes, message):
    config = cfg.TrainConfig()
    config = dataclasses.replace(config, **{part: dataclasses.replace(getattr(config, part), **changes)})
    if message is None:
        config.validate()
        return
    with pytest.raises(cfg.ConfigError, match=message):
        config.validate()


def test_a_depth_that_the_discriminator_does_not_take_is_named():
    """--n_layers_d with a D of fixed depth (or none) changes nothing: said, not refused, so that a
    run recorded with it (as the reference ignores it) still loads."""
    assert cfg.ModelConfig(n_layers_d=5).unused_depth() == (
        "--n_layers_d=5 changes nothing: it applies to --discriminator=n_layers or multiscale, and "
        "--discriminator=basic has 3 layers of its own.")
    assert cfg.ModelConfig(discriminator="pixel", n_layers_d=1).unused_depth().endswith("has no PatchGAN layers.")
    for used in (cfg.ModelConfig(), cfg.ModelConfig(discriminator="n_layers", n_layers_d=5),
                 cfg.ModelConfig(discriminator="multiscale", n_layers_d=2)):
        assert used.unused_depth() is None
    cfg.ModelConfig(n_layers_d=5).validate()


def test_the_discriminator_is_checked_at_the_size_it_trains_at():
    """The crop for the cropping modes, the width for scale_width; at crop 128 five layers fit,
    six do not."""
    deep = cfg.ModelConfig(generator="unet_128", discriminator="n_layers", n_layers_d=6)
    small = cfg.DataConfig(load_size=143, crop_size=128)
    with pytest.raises(cfg.ConfigError, match=r"128x128 image \(--crop_size=128\). Use --n_layers_d=5"):
        cfg.TrainConfig(model=deep, data=small).validate()
    cfg.TrainConfig(model=dataclasses.replace(deep, n_layers_d=5), data=small).validate()
    with pytest.raises(cfg.ConfigError, match=r"\(--load_size=64\)"):
        cfg.TrainConfig(model=deep, data=cfg.DataConfig(preprocess="scale_width", load_size=64)).validate()
    with pytest.raises(cfg.ConfigError, match="--discriminator=n_layers --n_layers_d=4"):
        cfg.TrainConfig(model=cfg.ModelConfig(generator="resnet_9blocks", discriminator="image"),
                        data=cfg.DataConfig(load_size=64, crop_size=64)).validate()
    cfg.TrainConfig(model=cfg.ModelConfig(generator="unet_128", discriminator="pixel"), data=small).validate()


@pytest.mark.parametrize("side", [16, 31, 32, 64, 70])
def test_the_patchgan_geometry_is_the_network_s(side):
    """`patchgan_output_side` and `pyramid_side` against the real Keras D at a fixed size: the
    same logit maps, and Keras' own refusal exactly where they say 0 (run eagerly there,
    oneDNN returns maps of the wrong shape or fails inside the first step)."""
    import keras

    from pix2pix_tf.networks.discriminator import Downsample, patchgan

    pair = keras.Input((side, side, 2))
    for n_layers in (1, 2, 3, 4):
        expected = catalogue.patchgan_output_side(side, n_layers)
        network = patchgan(n_layers, input_nc=2, ndf=2, norm="none")
        if expected:
            assert network(pair).shape[1:3] == (expected, expected), (side, n_layers)
        else:
            with pytest.raises(ValueError, match="zero or negative"):
                network(pair)
    assert Downsample()(pair).shape[1] == catalogue.pyramid_side(side, 1)


@pytest.mark.parametrize("make,message", [
    # translate, evaluate and the demo: their one ModelRequest (tests/test_request.py).
    (lambda: ModelRequest.of(workdir="w", image_size=-128), "--image_size must be at least 1, got -128"),
    (lambda: ModelRequest.of(workdir="w", max_pixels=0), "--max_pixels must be at least 1, got 0"),
    (lambda: ModelRequest.of(workdir="w", threads=0), "--threads must be at least 1, got 0"),
    (lambda: cfg.DataConfig(max_pixels=0).validate(), "--max_pixels must be at least 1, got 0"),
    (lambda: __import__("pix2pix_tf.export.config", fromlist=["x"]).ExportConfig(
        workdir="w", image_size=-128).validate(), "--image_size must be positive, got -128"),
    (lambda: __import__("pix2pix_tf.evaluation.config", fromlist=["x"]).EvalConfig(
        ModelRequest.of(workdir="w"), num_samples=0).validate(), r"--num_samples must be from 1 to 1000 \(each "
                                                                 r"translates every image once more\), got 0"),
    # 10^8 samples held 18 GB of statistics before the first image.
    (lambda: __import__("pix2pix_tf.evaluation.config", fromlist=["x"]).EvalConfig(
        ModelRequest.of(workdir="w"), num_samples=10**8).validate(), "--num_samples must be from 1 to 1000 .*, got "
                                                                    "100000000"),
])
def test_non_positive_sizes_and_caps_are_refused_by_every_program(make, message):
    with pytest.raises(cfg.ConfigError, match=message):
        make()


@pytest.mark.parametrize("changes,message", [
    (dict(load_size=60000), "--load_size=60000 makes 60000x60000 images (3600000000 pixels), over "
                            "--max_pixels=16777216: use a smaller --load_size or a larger --max_pixels."),
    (dict(preprocess="scale_width", load_size=300, crop_size=256, max_pixels=256 * 256),
     "--load_size=300 makes 300x300 images (90000 pixels), over --max_pixels=65536"),
    (dict(preprocess="crop", load_size=60000, crop_size=5000), "--crop_size=5000 makes 5000x5000 images"),
    (dict(preprocess="crop", load_size=60000, crop_size=4096), None),  # crop never resizes to --load_size.
    (dict(preprocess="none", load_size=60000, crop_size=50000), None),  # none keeps native sizes.
    (dict(load_size=4096, crop_size=4096), None),  # The cap itself.
])
def test_a_load_or_crop_size_over_the_pixel_cap_is_refused(changes, message):
    """The preprocessing resizes to these sides whatever the images: one over --max_pixels would
    end in an out-of-memory traceback after the dataset is read."""
    data = cfg.DataConfig(**changes)
    if message is None:
        data.validate()
        return
    with pytest.raises(cfg.ConfigError) as error:
        data.validate()
    assert str(error.value).startswith(message)


def test_train_refuses_a_load_size_over_the_cap_in_one_line(tmp_path):
    result = run_program("train", f"--workdir={tmp_path / 'run'}", "--load_size=60000", "--noprogress")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        "error: --load_size=60000 makes 60000x60000 images (3600000000 pixels), over --max_pixels=16777216: "
        "use a smaller --load_size or a larger --max_pixels.")
    assert not os.path.exists(tmp_path / "run" / "checkpoints")


def test_a_relative_folder_is_stored_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    data = cfg.DataConfig(dataset="folder:images", data_dir="tfds").with_absolute_paths()
    assert data.dataset == f"folder:{tmp_path / 'images'}" and data.data_dir == str(tmp_path / "tfds")
    assert cfg.DataConfig(dataset="shapes/64").with_absolute_paths().dataset == "shapes/64"


# ----------------------------------------------------------------------------- facts resolved once


def test_the_generator_names_are_the_catalogue_s():
    """Validation accepts exactly the catalogue's names, and each name's size multiple is its
    architecture's (the builders read the same entries: test_models checks the networks)."""
    assert cfg.GENERATORS == tuple(catalogue.GENERATORS)
    for name in catalogue.GENERATORS:
        cfg.ModelConfig(generator=name).validate()
    with pytest.raises(cfg.ConfigError, match="--generator='unet_512' is not one of unet_256, unet_128"):
        cfg.ModelConfig(generator="unet_512").validate()
    assert {name: cfg.ModelConfig(generator=name).size_multiple for name in cfg.GENERATORS} == {
        "unet_256": 256, "unet_128": 128, "resnet_9blocks": 4, "resnet_6blocks": 4, "encoder_decoder": 256}


def test_the_direction_is_resolved_once_and_stored(tmp_path):
    """None asks for the paper's direction of the dataset; the resolved config is what config.json
    holds, and one stored with null (older runs) loads resolved the same way."""
    assert {name: cfg.DataConfig(dataset=name).resolved().direction for name in
            ("facades", "cityscapes", "edges2shoes", "shapes/64", "folder:/images")} == {
        "facades": "BtoA", "cityscapes": "BtoA", "edges2shoes": "AtoB", "shapes/64": "AtoB",
        "folder:/images": "AtoB"}
    assert cfg.DataConfig(dataset="facades", direction="AtoB").resolved().direction == "AtoB"
    requested = cfg.TrainConfig(data=cfg.DataConfig(dataset="facades"), run=cfg.RunConfig(seed=3))
    dataclasses.replace(requested, data=requested.data.resolved()).save(str(tmp_path))
    assert json.loads((tmp_path / "config.json").read_text())["data"]["direction"] == "BtoA"
    assert cfg.TrainConfig.load(str(tmp_path)).data.direction == "BtoA"
    older = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps(edited(older, "data", "direction", None)))
    assert cfg.TrainConfig.load(str(tmp_path)).data.direction == "BtoA"


def test_the_facts_resolve_without_tensorflow():
    """A flag check, the serving side or any script reads a run's facts without loading TensorFlow."""
    probe = ("import sys; from pix2pix_tf import config as c; m = c.TrainConfig.from_dict({'data': {'dataset': "
             "'facades', 'load_size': 286, 'crop_size': 256}}); print(m.model.size_multiple, m.data.direction, "
             "sorted(n for n in ('tensorflow', 'keras', 'numpy') if n in sys.modules))")
    result = subprocess.run([sys.executable, "-c", probe], cwd=os.path.dirname(os.path.dirname(__file__)),
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "256 BtoA []"


@pytest.mark.parametrize("program", ["train", "export", "translate"])
def test_a_size_the_generator_cannot_take_gets_one_message_from_every_program(tmp_path, program):
    """Training's --crop_size, export's and a checkpoint's --image_size go through one check:
    the same message, each refused before a network is built or a checkpoint read."""
    run = cfg.TrainConfig(model=cfg.ModelConfig(generator="unet_128"),
                          data=cfg.DataConfig(load_size=143, crop_size=128), run=cfg.RunConfig(seed=3))
    run.save(str(tmp_path))
    flag = "--crop_size" if program == "train" else "--image_size"
    with pytest.raises(cfg.ConfigError) as error:
        if program == "train":
            dataclasses.replace(run, data=dataclasses.replace(run.data, crop_size=96)).validate()
        elif program == "export":
            from pix2pix_tf.export.config import ExportConfig
            from pix2pix_tf.export.exporter import export

            export(ExportConfig(workdir=str(tmp_path), export_dir=str(tmp_path / "export"), image_size=96))
        else:
            from pix2pix_tf.inference.mode import DETERMINISTIC

            ModelRequest.of(workdir=str(tmp_path)).resolve().open(DETERMINISTIC, image_size=96)
    assert str(error.value) == (f"{flag}=96: --generator=unet_128 takes images whose sides are multiples of 128; "
                                f"use {flag}=128.")
