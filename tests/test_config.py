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
