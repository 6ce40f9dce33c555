"""config.json: the run's one typed record, and the checks that protect a workdir."""

from __future__ import annotations

import dataclasses
import json

import pytest

from pix2pix_tf import config as cfg


def test_round_trip_through_config_json(tmp_path):
    config = cfg.TrainConfig(model=cfg.ModelConfig(generator="resnet_9blocks", norm="instance"),
                             optim=cfg.OptimConfig(steps=12), run=cfg.RunConfig(seed=3))
    config.save(str(tmp_path))
    assert cfg.TrainConfig.load(str(tmp_path)) == config
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
    cfg.check_resumable(stored, longer)
    moved = dataclasses.replace(stored, data=dataclasses.replace(stored.data, data_dir="/mnt/elsewhere"))
    cfg.check_resumable(stored, moved)
    other = dataclasses.replace(stored, model=dataclasses.replace(stored.model, generator="unet_128"))
    with pytest.raises(cfg.ConfigError, match="model.generator: 'unet_256' in config.json, 'unet_128' now"):
        cfg.check_resumable(stored, other)


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
    assert loaded.run.seed is None and loaded.optim.steps is None and loaded.data.direction is None
    assert loaded.loss.lambda_l1 == 10.0 and isinstance(loaded.loss.lambda_l1, float)
