"""The paper-reproduction script: its variants are the paper's, and its tiny setting runs end to end."""

from __future__ import annotations

import dataclasses
import json
import os
import signal

import numpy as np
import pytest
import tensorflow as tf

from pix2pix_tf import regular_files
from pix2pix_tf.experiments import paper, paper_report

import programs

TINY_VARIANTS = ("l1", "ed_l1_cgan")  # L1-only and GAN paths, both generators; every variant is built below.
FCN = {"per_pixel_accuracy": 0.5, "per_class_accuracy": 0.25, "class_iou": 0.125}
METRICS = {"metrics": {"l1": 0.1, "psnr": 20.0, "ssim": 0.5, "fcn": FCN,
                       "lab_histogram_intersection": {"L": 0.9, "a": 0.8, "b": 0.7}},
           "ground_truth": {"fcn": {"per_pixel_accuracy": 0.9, "per_class_accuracy": 0.8, "class_iou": 0.7}}}


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
    results = {"l1": {"marker": {"status": "done", "train_seconds": 1.0}, "metrics": METRICS},
               "gan": {"marker": {"status": "failed", "error": "Step 7: non-finite loss"}, "metrics": None}}
    text = paper_report.markdown_tables(results, paper.SETTINGS["tiny"], "cmd")
    assert "| L1 | 0.500 | 0.250 | 0.125 | 0.42 | 0.15 | 0.11 |" in text
    assert "| Ground truth | 0.900 | 0.800 | 0.700 | 0.80 | 0.26 | 0.21 |" in text
    assert "| GAN (failed: Step 7: non-finite loss) | - | - | - | 0.22 | 0.05 | 0.01 |" in text  # Never hidden.
    assert "| L1 | 0.900 | 0.800 | 0.700 | 0.81 | 0.69 | 0.70 |" in text  # The colour table.
    assert "| cGAN | - | - | - |" in text  # Not run yet.
    results["gan"]["marker"]["error"] = "The workdir holds another run:\n  run.seed: 2017 in config.json, 5 now | x"
    text = paper_report.markdown_tables(results, paper.SETTINGS["tiny"], "cmd")
    assert ("| GAN (failed: The workdir holds another run: run.seed: 2017 in config.json, 5 now \\| x) | - | - | - |"
            in text)  # One line, one cell: the table stays a table.


def write_marker(root, name: str, **fields) -> str:
    """A marker as run_variant writes it, at the tiny setting, with `fields` changed."""
    marker = {"variant": name, "setting": dataclasses.asdict(paper.SETTINGS["tiny"]), "status": "done", **fields}
    path = os.path.join(str(root), name, paper.MARKER)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(marker, f)
    return path


def test_report_leaves_out_damaged_markers_and_names_unusable_metrics(tmp_path, caplog):
    root = tmp_path / "paper"
    (tmp_path / "good.json").write_text(json.dumps(METRICS))
    (tmp_path / "empty.json").write_text('{"metrics": {}}')
    with open(tmp_path / "huge.json", "wb") as f:  # Sparse: refused by its size, never read.
        f.truncate(regular_files.MAX_JSON_BYTES + 1)
    write_marker(root, "ed_l1", metrics=str(tmp_path / "good.json"))
    list_marker = write_marker(root, "l1")
    with open(list_marker, "w") as f:
        f.write("[1]")
    int_path = write_marker(root, "gan", metrics=7)  # Would open the inherited file descriptor 7.
    write_marker(root, "cgan", metrics=str(tmp_path / "empty.json"))
    write_marker(root, "l1_gan", metrics="/dev/zero")  # Endless: would exhaust memory.
    write_marker(root, "l1_cgan", metrics=str(tmp_path / "huge.json"))
    written = paper.reproduce(paper.SETTINGS["tiny"], str(root), list(paper.VARIANTS), report_only=True)
    assert not (root / "segmenters").exists()  # A report evaluates nothing.
    with open(written["json"]) as f:
        assert set(json.load(f)["variants"]) == {"ed_l1", "cgan", "l1_gan", "l1_cgan"}
    assert f"{list_marker} holds a JSON list, not an object; it is ignored" in caplog.text
    assert f"{int_path}: its metrics is 7, not a path; it is ignored" in caplog.text
    with open(written["markdown"]) as f:
        text = f.read()
    assert "| Encoder-decoder L1 | 0.1000 | 20.00 | 0.500 |" in text
    assert "| L1 | - | - | - | 0.42 |" in text and "| GAN | - | - | - | 0.22 |" in text  # As if never run.
    for label, name, problem in (("cGAN", "cgan", f"{tmp_path / 'empty.json'} has no metrics.l1"),
                                 ("L1+GAN", "l1_gan", "/dev/zero is not a regular file (a character device)"),
                                 ("L1+cGAN", "l1_cgan", f"{tmp_path / 'huge.json'} is larger than 16 MB")):
        why = f"{problem}; delete {root / name / paper.MARKER} and rerun the command to evaluate it again"
        assert f"| {label} (incomplete: {why}) | - | - | - |" in text, label
        assert why in caplog.text


def test_a_variant_run_at_another_setting_is_not_reported_under_this_one(tmp_path):
    """A variant done at other steps (run with --variants and another --steps) keeps its marker,
    but its metrics are not put under a header that names this setting."""
    root = tmp_path / "paper"
    (tmp_path / "good.json").write_text(json.dumps(METRICS))
    longer = {**dataclasses.asdict(paper.SETTINGS["tiny"]), "steps": 700}
    write_marker(root, "ed_l1", metrics=str(tmp_path / "good.json"))
    write_marker(root, "l1", metrics=str(tmp_path / "good.json"), setting=longer)
    written = paper.reproduce(paper.SETTINGS["tiny"], str(root), list(paper.VARIANTS), report_only=True)
    with open(written["markdown"]) as f:
        text = f.read()
    assert "| Encoder-decoder L1 | 0.1000 | 20.00 | 0.500 |" in text
    assert "| L1 (run at another setting: steps 700 (here 2)) | - | - | - | 0.42 |" in text, text
    assert "| L1 (U-Net) | run at another setting: steps 700 (here 2) | | | | | | |" in text


def test_run_variant_retries_a_failed_variant_and_runs_a_damaged_one_again(tmp_path):
    not_a_folder = tmp_path / "data_dir"  # Fails at once: the data_dir to fix.
    not_a_folder.write_text("")
    root, setting = str(tmp_path / "paper"), paper.SETTINGS["tiny"]
    marker = write_marker(root, "l1", status="failed", error="the cause, since fixed")
    result = paper.run_variant(paper.VARIANTS["l1"], setting, root, str(not_a_folder), str(tmp_path / "seg"))
    assert result["status"] == "failed" and f"--data_dir={not_a_folder} is a file" in result["error"]
    with open(marker) as f:
        assert json.load(f) == result
    with open(marker, "w") as f:
        f.write("[1]")
    result = paper.run_variant(paper.VARIANTS["l1"], setting, root, str(not_a_folder), str(tmp_path / "seg"))
    with open(marker) as f:
        assert json.load(f) == result and result["status"] == "failed"


def test_root_or_segmenter_cache_that_is_a_file_is_refused_before_any_work(tmp_path):
    a_file, root = tmp_path / "file", tmp_path / "paper"
    a_file.write_text("")
    with pytest.raises(paper.ConfigError, match=rf"^--root={a_file} is a file; it must name a folder to write into"):
        paper.reproduce(paper.SETTINGS["tiny"], str(a_file), ["l1"])
    with pytest.raises(paper.ConfigError, match=rf"^--segmenter_cache={a_file} is a file; it must name a folder"):
        paper.reproduce(paper.SETTINGS["tiny"], str(root), ["l1"], segmenter_cache=str(a_file))
    assert not root.exists()


def test_a_report_of_no_run_and_an_empty_variant_list_are_refused_before_anything_is_written(tmp_path):
    """They wrote a report of dashes (and its folders) and exited 0: a mistyped --root, say."""
    root = tmp_path / "paper"
    with pytest.raises(paper.ConfigError, match=rf"^{root} holds no variant's run \({paper.MARKER}\): nothing to "
                                                r"report\. Name the --root of an earlier run, or run the variants"):
        paper.reproduce(paper.SETTINGS["tiny"], str(root), list(paper.VARIANTS), report_only=True)
    with pytest.raises(paper.ConfigError, match=r"^--variants is empty: name at least one of l1, "):
        paper.reproduce(paper.SETTINGS["tiny"], str(root), [])
    assert not root.exists()


def test_a_step_count_below_one_is_refused_as_such(tmp_path):
    """Not as "a run at step 0, past this setting's -3 steps", of a run that does not exist."""
    for steps in (0, -3):
        with pytest.raises(paper.ConfigError, match=rf"^--steps must be at least 1, got {steps}\.$"):
            paper.reproduce(dataclasses.replace(paper.SETTINGS["tiny"], steps=steps), str(tmp_path / "paper"), ["l1"])


def run_paper(*argv: str):
    """`python -m pix2pix_tf.experiments.paper ARGV...` in this process (tests/programs.py): what
    the program prints, writes and exits with is tested, not its process (a process of its own
    would set up TensorFlow, Keras and the plots again)."""
    return programs.run_program("experiments.paper", *argv)


@pytest.mark.slow
def test_tiny_setting_end_to_end_then_skips_what_is_done(tmp_path, data_dir):
    root, images = str(tmp_path / "paper"), str(tmp_path / "images")
    (tmp_path / "not_a_folder").write_text("")  # A data_dir that fails, then is fixed: the variant is retried.
    result = run_paper(f"--root={root}", "--setting=tiny", "--variants=l1", f"--data_dir={tmp_path / 'not_a_folder'}")
    assert result.returncode == 1, result.stderr[-4000:]
    assert "| L1 (U-Net) | failed: " in result.stdout and "Failed: l1 (see " in result.stderr
    result = run_paper(f"--root={root}", "--setting=tiny", f"--variants={','.join(TINY_VARIANTS)}",
                       f"--data_dir={data_dir}", f"--images_dir={images}")
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

    # Fewer steps than a variant's run has trained: its metrics would be of more steps than the
    # report's header says (it reported step 2 under "1 step"). Refused before anything is
    # written (a refusal that came after the variant's training rewrote its records).
    records = {path: open(path, "rb").read() for path in (marker, os.path.join(root, "results.json"),
                                                          os.path.join(root, "l1", "config.json"))}
    with pytest.raises(paper.ConfigError) as refused:
        paper.reproduce(dataclasses.replace(paper.SETTINGS["tiny"], steps=1), root, ["l1"], data_dir)
    assert str(refused.value) == (f"{os.path.join(root, 'l1')} holds a run at step 2, past this setting's 1 steps; "
                                  "use another --root for these steps.")
    assert {path: open(path, "rb").read() for path in records} == records


@pytest.mark.slow
def test_a_stop_while_a_variant_trains_stops_the_experiment_and_leaves_the_variant_to_resume(tmp_path, data_dir,
                                                                                           monkeypatch):
    """A SIGINT while a variant trains (sent from inside its first step, so that it lands there on
    a machine of any speed) checkpoints it and stops the experiment as train.py stops (the
    program exits 130 on this stop, test_cli.py): the variant is neither evaluated nor marked
    done, so the next run resumes it (it was marked done at the step it stopped at, and the next
    variant trained on)."""
    from pix2pix_tf.errors import Interrupted
    from pix2pix_tf.training import loop

    check_finite = loop._check_finite

    def interrupted_in_the_first_step(step, *args):
        if step == 1:
            os.kill(os.getpid(), signal.SIGINT)
        return check_finite(step, *args)

    monkeypatch.setattr(loop, "_check_finite", interrupted_in_the_first_step)
    root = tmp_path / "paper"
    with pytest.raises(Interrupted) as stop:
        paper.reproduce(dataclasses.replace(paper.SETTINGS["tiny"], steps=3000), str(root), list(TINY_VARIANTS),
                        data_dir)
    assert stop.value.done == [f"variant l1: step 1/3000 checkpointed ({root / 'l1' / 'checkpoints' / 'ckpt-1'}); "
                               "run the same command to resume"]
    assert (root / "l1" / "checkpoints" / "ckpt-1.index").is_file()
    assert not (root / "l1" / paper.MARKER).exists() and not (root / "l1" / "eval").exists()
    assert not (root / "ed_l1_cgan").exists()
