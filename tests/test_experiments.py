"""The multi-scale discriminator ablation and the precision comparison (pix2pix_tf.experiments):
the runs they configure and the tables they print. Their runs are ordinary trainings and
evaluations, tested in tests/test_paper.py (the same `run_variant`) and tests/test_precision.py."""

from __future__ import annotations

from pix2pix_tf.experiments import multiscale, paper

from programs import load, run_program

METRICS = {"metrics": {"l1": 0.1234, "psnr": 20.5, "ssim": 0.5,
                       "fcn": {"per_pixel_accuracy": 0.5, "per_class_accuracy": 0.25, "class_iou": 0.125},
                       "lab_histogram_intersection": {"L": 0.9, "a": 0.8, "b": 0.7}},
           "ground_truth": {"fcn": {"per_pixel_accuracy": 0.9, "per_class_accuracy": 0.8, "class_iou": 0.7}}}


def test_the_ablation_varies_only_the_discriminator_and_its_feature_matching(tmp_path):
    setting = multiscale.SETTINGS["tiny"][0]
    configs = {name: paper.variant_config(variant, setting, str(tmp_path), None).validate()
               for name, variant in multiscale.VARIANTS.items()}
    reference = configs["patchgan_70"]
    assert reference.model.discriminator == "basic" and reference.loss.lambda_feat == 0.0
    assert (configs["multiscale"].model.discriminator, configs["multiscale"].model.num_d) == ("multiscale", 3)
    assert configs["multiscale_feat"].loss.lambda_feat == 10.0
    for name, config in configs.items():
        assert config.data == reference.data and config.optim == reference.optim, name
        assert config.model.generator == reference.model.generator and config.run.seed == reference.run.seed
    small = {s.name: s for s in multiscale.SETTINGS["small"]}
    assert (small["256"].crop_size, small["512"].crop_size) == (256, 512) and small["512"].dataset == "shapes/512"


def test_the_ablation_table_shows_each_run_and_the_ones_not_run():
    settings = multiscale.SETTINGS["tiny"]
    results = {"256": {"patchgan_70": {"marker": {"status": "done", "train_seconds": 12}, "metrics": METRICS},
                       "multiscale": {"marker": {"status": "failed"}, "metrics": None}}}
    text = multiscale.markdown_table(results, settings, "cmd")
    assert text.startswith("Command: `cmd`")
    assert ("| 256 | 70x70 PatchGAN (pix2pix) | 0.500 | 0.250 | 0.125 | 0.900 / 0.800 / 0.700 | 0.1234 | 20.50 | "
            "0.500 | 12 |") in text
    assert "| 256 | multi-scale D, 3 scales (pix2pixHD) | failed |" in text
    assert "| 256 | multi-scale D + feature matching (lambda_feat 10) | not run |" in text
    assert "| 256 | ground truth (real photos) | 0.900 | 0.800 | 0.700 |" in text
    # Why it failed, where recorded, on one line of the table (it said only "failed").
    results["256"]["multiscale"]["marker"]["error"] = "no | data\nhere"
    assert "| 256 | multi-scale D, 3 scales (pix2pixHD) | failed: no \\| data here |" in \
        multiscale.markdown_table(results, settings, "cmd")


def test_the_precision_runs_are_the_quick_start_and_the_table_subtracts_the_baseline(tmp_path):
    experiment = load("experiments.precision")
    config = experiment.quick_start(str(tmp_path), seed=3, steps=40, policy="mixed_bfloat16", data_dir=None)
    assert (config.model.generator, config.data.load_size, config.data.crop_size) == ("unet_128", 143, 128)
    assert (config.run.seed, config.run.deterministic_ops, config.run.mixed_precision) == (3, True, "mixed_bfloat16")
    assert config.run.save_every == 10 and config.run.sample_every == 40 and config.optim.steps == 40
    assert config.data.batch_size == 1
    rows = [{"seed": s, "policy": p, "held_out_l1_float32": value}
            for s, p, value in ((1, "off", 0.30), (1, "mixed_bfloat16", 0.31), (2, "off", 0.28),
                                (2, "mixed_bfloat16", 0.26), (3, "off", 0.5))]  # Seed 3: one policy only.
    lines = experiment.table(rows, ["off", "mixed_bfloat16"]).splitlines()
    assert [line.split()[0] for line in lines[1:]] == ["1", "2", "mean"]
    assert lines[1].split()[1:] == ["0.3000", "0.3100", "+0.0100"]
    assert lines[3].split()[1:] == ["0.2900", "0.2850", "-0.0050"]


def test_the_precision_comparison_refuses_seeds_that_are_no_integers_and_empty_lists(tmp_path):
    """One line before anything runs: a seed that is no integer was a ValueError traceback after
    the runs before it; an empty list wrote an empty table and exited 0."""
    for flags, message in ((["--seeds=1,abc"], "error: --seeds takes integers, got 1,abc."),
                           (["--seeds="], "error: --seeds is empty: name at least one."),
                           (["--policies="], "error: --policies is empty: name at least one.")):
        result = run_program("experiments.precision", f"--root={tmp_path / 'runs'}", *flags)
        assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-2000:]
        assert message in result.stderr.splitlines(), result.stderr[-2000:]
    assert not (tmp_path / "runs").exists()
