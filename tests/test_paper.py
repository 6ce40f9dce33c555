"""The paper-reproduction script: its variants are the paper's, and its tiny setting runs end to end."""

from __future__ import annotations

import dataclasses
import json
import os
import sys

import numpy as np
import pytest
import tensorflow as tf

from pix2pix_tf.experiments import paper

import forked

TINY_VARIANTS = ("l1", "ed_l1_cgan")  # L1-only and GAN paths, both generators; every variant is built below.


def test_variants_change_only_what_the_paper_varies(tmp_path):
    reference = paper.variant_config(paper.VARIANTS["l1_cgan"], paper.SETTINGS["full"], str(tmp_path), None)
    assert (reference.loss.lambda_l1, reference.loss.gan_weight) == (100.0, 1.0)
    assert not reference.model.unconditional_d and reference.model.discriminator == "basic"
    expected = {
        "l1": {"loss.gan_weight": 0.0},
        "gan": {"loss.lambda_l1": 0.0, "model.unconditional_d": True},
        "cgan": {"loss.lambda_l1": 0.0},
        "l1_gan": {"model.unconditional_d": True},
        "l1_cgan": {},
        "ed_l1": {"model.generator": "encoder_decoder", "loss.gan_weight": 0.0},
        "ed_l1_cgan": {"model.generator": "encoder_decoder"},
        "d_pixel": {"model.discriminator": "pixel"},
        "d_16": {"model.discriminator": "n_layers", "model.n_layers_d": 1},
        "d_286": {"model.discriminator": "image"},
    }
    assert set(expected) == set(paper.VARIANTS)
    for name, variant in paper.VARIANTS.items():
        config = paper.variant_config(variant, paper.SETTINGS["full"], str(tmp_path), None)
        assert config.run.workdir == os.path.join(str(tmp_path), name)
        changed = {}
        for part in ("model", "data", "loss", "optim"):
            new, old = dataclasses.asdict(getattr(config, part)), dataclasses.asdict(getattr(reference, part))
            changed.update({f"{part}.{k}": v for k, v in new.items() if v != old[k]})
        assert changed == expected[name], name
        assert config.run.seed == reference.run.seed


def receptive_field(model: tf.keras.Model, size: int, channels: int) -> int:
    """Rows of the input that one central logit depends on (gradient support, inference mode)."""
    image = tf.Variable(tf.random.normal([1, size, size, channels], seed=1))
    with tf.GradientTape() as tape:
        logits = model(image, training=False)
        centre = logits[0, logits.shape[1] // 2, logits.shape[2] // 2, 0]
    rows = np.nonzero(np.abs(tape.gradient(centre, image).numpy()).sum(axis=(0, 2, 3)))[0]
    return int(rows[-1] - rows[0] + 1)


@pytest.mark.parametrize("variant, field", [("d_pixel", 1), ("d_16", 16), ("l1_cgan", 70), ("d_286", 286)])
def test_table_3_variants_have_the_paper_receptive_fields(tmp_path, variant, field):
    from pix2pix_tf.networks.discriminator import build_discriminator

    config = paper.variant_config(paper.VARIANTS[variant], paper.SETTINGS["tiny"], str(tmp_path), None)
    model = build_discriminator(config.model)
    assert receptive_field(model, 640, 6) == field
    # At the setting's 256x256, the 286x286 ImageGAN sees the whole image, as in the paper.


def test_tables_put_ours_beside_the_papers_numbers():
    fcn = {"per_pixel_accuracy": 0.5, "per_class_accuracy": 0.25, "class_iou": 0.125}
    metrics = {"metrics": {"l1": 0.1, "psnr": 20.0, "ssim": 0.5, "fcn": fcn,
                           "lab_histogram_intersection": {"L": 0.9, "a": 0.8, "b": 0.7}},
               "ground_truth": {"fcn": {"per_pixel_accuracy": 0.9, "per_class_accuracy": 0.8, "class_iou": 0.7}}}
    results = {"l1": {"marker": {"status": "done", "train_seconds": 1.0}, "metrics": metrics},
               "gan": {"marker": {"status": "failed", "error": "Step 7: non-finite loss"}, "metrics": None}}
    text = paper.markdown_tables(results, paper.SETTINGS["tiny"], "cmd")
    assert "| L1 | 0.500 | 0.250 | 0.125 | 0.42 | 0.15 | 0.11 |" in text
    assert "| Ground truth | 0.900 | 0.800 | 0.700 | 0.80 | 0.26 | 0.21 |" in text
    assert "| GAN (failed: Step 7: non-finite loss) | - | - | - | 0.22 | 0.05 | 0.01 |" in text  # Never hidden.
    assert "| L1 | 0.900 | 0.800 | 0.700 | 0.81 | 0.69 | 0.70 |" in text  # The colour table.
    assert "| cGAN | - | - | - |" in text  # Not run yet.


@pytest.mark.slow
def test_tiny_setting_end_to_end_then_skips_what_is_done(tmp_path, data_dir):
    root, images = str(tmp_path / "paper"), str(tmp_path / "images")
    result = forked.run([sys.executable, "-m", "pix2pix_tf.experiments.paper", f"--root={root}", "--setting=tiny",
                         f"--variants={','.join(TINY_VARIANTS)}", f"--data_dir={data_dir}", f"--images_dir={images}"],
                        cwd=forked.ROOT, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    assert "### Table 1" in result.stdout and "### Colour" in result.stdout
    with open(os.path.join(root, "results.json")) as f:
        results = json.load(f)
    assert set(results["variants"]) == set(TINY_VARIANTS)
    for name in TINY_VARIANTS:
        entry = results["variants"][name]
        assert entry["marker"]["status"] == "done" and entry["marker"]["step"] == paper.SETTINGS["tiny"].steps
        assert entry["metrics"]["num_examples"] == paper.SETTINGS["tiny"].eval_examples
        assert entry["metrics"]["metrics"]["fcn"]["per_pixel_accuracy"] >= 0
    assert sorted(os.listdir(images)) == ["table1.png", "table2.png"]  # Table 3 has none of these.

    # Re-running skips the finished variants: nothing is trained or evaluated again.
    marker = os.path.join(root, "l1", paper.MARKER)
    before = os.path.getmtime(marker), os.path.getmtime(os.path.join(root, "l1", "eval", "metrics.json"))
    written = paper.reproduce(paper.SETTINGS["tiny"], root, list(TINY_VARIANTS), data_dir)
    assert (os.path.getmtime(marker), os.path.getmtime(os.path.join(root, "l1", "eval", "metrics.json"))) == before
    assert os.path.exists(written["markdown"])
    with pytest.raises(paper.ConfigError, match="Unknown variant"):
        paper.reproduce(paper.SETTINGS["tiny"], root, ["l2"])
