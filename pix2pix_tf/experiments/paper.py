"""Reproduces the paper's ablations on the embedded labels->photo dataset.

    python -m pix2pix_tf.experiments.paper --root=runs/paper            # ~40 minutes on 2 CPU cores
    python -m pix2pix_tf.experiments.paper --root=/tmp/p --setting=tiny  # the CI smoke run

Trains and evaluates the variants behind Isola et al.'s Tables 1-3 and their colour table:
losses L1, GAN, cGAN, L1+GAN, L1+cGAN (Table 1); encoder-decoder vs U-Net, each with L1 and
L1+cGAN (Table 2); discriminator receptive fields 1x1, 16x16, 70x70, 286x286 (Table 3, all
L1+cGAN); and the Lab histogram intersections of L1, cGAN, L1+cGAN and PixelGAN (the colour
table). Every variant uses the same data, seed and step count; only what the paper varies
changes. Each variant is an ordinary training run in `<root>/<variant>/` (config.json,
checkpoints, samples) evaluated by `pix2pix_tf.evaluation.evaluator.evaluate` into `<root>/<variant>/eval/`, so
any of them can be inspected, resumed, exported or re-evaluated with the usual tools.

Re-running the command skips the variants that are done, resumes an interrupted one from its
checkpoint and retries a failed one. At the end it writes `<root>/results.json`,
`<root>/results.md` (our tables beside the paper's numbers) and `<root>/figures/*.png` (the
same test images translated by every variant of a table), copied to `--images_dir` when
given; the exit status is 1 when a variant it ran failed (the report says why).

The settings (`paper_variants.SETTINGS`) are scaled for a laptop CPU; docs/paper-reproduction.md explains
the choices and discusses the results.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time
from typing import Optional

from absl import flags, logging

from pix2pix_tf import cli
from pix2pix_tf import config as cfg
from pix2pix_tf.errors import ConfigError, Interrupted, Pix2pixError
from pix2pix_tf.experiments.markers import read_marker, recorded_command
from pix2pix_tf.experiments.paper_report import collect, write_json, write_report
from pix2pix_tf.experiments.paper_variants import MARKER, SETTINGS, VARIANTS, Setting, Variant
from pix2pix_tf.workdir import Workdir, check_named, check_not_a_file, check_tensorflow_can_read, check_writable


def variant_config(variant: Variant, setting: Setting, root: str, data_dir: Optional[str]):
    """The TrainConfig of one variant: the reference's recipe at `setting`'s scale."""
    base = cfg.TrainConfig(
        model=cfg.ModelConfig(generator="unet_256", ngf=setting.ngf, ndf=setting.ndf),
        data=cfg.DataConfig(dataset=setting.dataset, data_dir=data_dir, load_size=setting.load_size,
                            crop_size=setting.crop_size),
        optim=cfg.OptimConfig(steps=setting.steps),
        run=cfg.RunConfig(workdir=os.path.join(root, variant.name), seed=setting.seed, deterministic_ops=True,
                          strategy="default", save_every=500, log_every=50, sample_every=500, eval_examples=4,
                          keep_checkpoints=1, progress=False),
    )
    return dataclasses.replace(base, model=dataclasses.replace(base.model, **variant.model),
                               loss=dataclasses.replace(base.loss, **variant.loss)).validate()


# ----------------------------------------------------------------------------- running


def run_variant(variant: Variant, setting: Setting, root: str, data_dir: Optional[str],
                segmenter_cache: str) -> dict:
    """Trains (or resumes) and evaluates one variant; skipped when its marker says it is done
    at this setting (a failed one is retried: its cause may be fixed). Returns the marker:
    status, timings and where the metrics are."""
    import keras  # Here, not above: --help answers before TensorFlow loads.

    from pix2pix_tf.evaluation.evaluator import EvalConfig, evaluate  # Loads TensorFlow.
    from pix2pix_tf.inference.request import ModelRequest
    from pix2pix_tf.training.loop import train

    workdir = os.path.join(root, variant.name)
    marker_path = os.path.join(workdir, MARKER)
    marker = read_marker(marker_path)  # None when damaged: run again.
    if marker and marker["setting"] == dataclasses.asdict(setting) and marker["status"] == "done":
        logging.info("%s: done already (%s), skipping.", variant.name, marker_path)
        return marker
    config = variant_config(variant, setting, root, data_dir)
    marker = {"variant": variant.name, "title": variant.title, "setting": dataclasses.asdict(setting),
              "overrides": {"model": variant.model, "loss": variant.loss}}
    print(f"[{time.strftime('%H:%M:%S')}] {variant.name}: training {setting.steps} steps in {workdir}", flush=True)
    start = time.perf_counter()
    try:
        result = train(config)
        if stop := result.stop():  # Checkpointed: neither evaluated nor marked, it resumes next time.
            raise stop
        marker["step"] = result.step
        marker["train_seconds"] = round(time.perf_counter() - start, 1)
        start = time.perf_counter()
        evaluation = evaluate(EvalConfig(
            model=ModelRequest.of(workdir=workdir, seed=0), split="test", num_examples=setting.eval_examples,
            output_dir=Workdir(workdir).evaluations, segmenter_cache=segmenter_cache,
            segmenter_steps=setting.segmenter_steps, html_examples=setting.html_examples, grid_examples=4,
            progress=False))
        marker["eval_seconds"] = round(time.perf_counter() - start, 1)
        marker["metrics"] = evaluation.metrics_path
        marker["status"] = "done"
    except Pix2pixError as e:  # e.g. a GAN that diverges: reported, never hidden.
        marker["status"], marker["error"] = "failed", str(e)
        logging.error("%s failed: %s", variant.name, e)
    except Interrupted as stop:  # In training or evaluation: the stop's line names the variant.
        stop.done[:1] = [f"variant {variant.name}" + (f": {stop.done[0]}" if stop.done else "")]
        raise
    finally:
        keras.backend.clear_session()
    write_json(marker_path, marker)
    print(f"[{time.strftime('%H:%M:%S')}] {variant.name}: {marker['status']} "
          f"(train {marker.get('train_seconds', '-')} s, eval {marker.get('eval_seconds', '-')} s)", flush=True)
    return marker


def reproduce(setting: Setting, root: str, names: list[str], data_dir: Optional[str] = None,
              segmenter_cache: Optional[str] = None, images_dir: Optional[str] = None,
              command: str = "", report_only: bool = False) -> dict[str, str]:
    """Runs (or skips) every variant in `names`, then writes the report."""
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        raise ConfigError(f"Unknown variant(s) {unknown}; choose from {', '.join(VARIANTS)}.")
    if not names:
        raise ConfigError(f"--variants is empty: name at least one of {', '.join(VARIANTS)}.")
    if report_only and not collect(root, list(VARIANTS), setting):  # Else a mistyped --root made an empty report.
        raise ConfigError(f"{root} holds no variant's run ({MARKER}): nothing to report. Name the --root of an "
                          "earlier run, or run the variants first.")
    segmenter_cache = None if report_only else segmenter_cache or os.path.join(root, "segmenters")
    check_folders(root, segmenter_cache, images_dir)
    if report_only:  # The report keeps naming the command that produced the numbers.
        command = recorded_command(os.path.join(root, "results.json"), command)
    else:
        check_steps(setting, root, names)
        for name in names:
            run_variant(VARIANTS[name], setting, root, data_dir, segmenter_cache)
    return write_report(collect(root, list(VARIANTS), setting), root, setting, command, images_dir)


def check_steps(setting: Setting, root: str, names: list[str]) -> None:
    """Refuses, before anything is written, a setting of fewer steps than a variant's run under
    `root` has trained: its metrics would be reported under a header of fewer steps."""
    from pix2pix_tf.checkpoint_reading import checkpoint_step, complete_checkpoints  # Loads TensorFlow.

    if setting.steps < 1:  # Else a root without runs (trained: 0) would be "past" a negative count.
        raise ConfigError(f"--steps must be at least 1, got {setting.steps}.")
    for name in names:
        trained = max(map(checkpoint_step, complete_checkpoints(Workdir(os.path.join(root, name)).checkpoints)),
                      default=0)
        if trained > setting.steps:
            raise ConfigError(f"{os.path.join(root, name)} holds a run at step {trained}, past this setting's "
                              f"{setting.steps} steps; use another --root for these steps.")


def check_folders(root: str, segmenter_cache: Optional[str] = None, images_dir: Optional[str] = None) -> None:
    """Refuses, before hours of training, a folder flag the experiment could not use (else the
    first evaluation, or the copy of the figures, fails after every variant trained): empty (not
    the current folder), a file, a path TensorFlow cannot read a model from (the runs under
    --root, the segmenter in its cache), or one that cannot be written. Each is checked before
    any is created; None: not used."""
    folders = {"--root": root, "--segmenter_cache": segmenter_cache, "--images_dir": images_dir}
    given = {flag: folder for flag, folder in folders.items() if folder is not None}
    for flag, folder in given.items():
        check_named(folder, flag)
        check_not_a_file(folder, flag)
        if flag != "--images_dir":
            check_tensorflow_can_read(folder, flag)
    for flag, folder in given.items():
        check_writable(folder, flag)


# ----------------------------------------------------------------------------- the program


def define_flags() -> None:
    cli.define_path("root", "runs/paper", "One workdir per variant goes under it, and the report.")
    flags.DEFINE_enum("setting", "full", list(SETTINGS), "full: the documented run; tiny: CI smoke test.")
    cli.define_list("variants", list(VARIANTS), f"Variants to run: {', '.join(VARIANTS)}.")
    flags.DEFINE_integer("steps", None, "Override the setting's training steps (a new setting: variants rerun).")
    flags.DEFINE_integer("seed", None, "Override the setting's seed (use another --root: e.g. to measure the "
                         "seed-to-seed spread).")
    cli.define_path("data_dir", None, "tensorflow-datasets data_dir.")
    cli.define_path("segmenter_cache", None, "Where the FCN-score segmenter is cached (default <root>/segmenters).")
    cli.define_path("images_dir", None, "Also copy the figures here (e.g. docs/images/paper).")
    flags.DEFINE_bool("report_only", False, "Rebuild the report from the variants already run.")


def main(argv: list[str]) -> int:
    cli.reject_arguments(argv)
    FLAGS = flags.FLAGS
    setting = SETTINGS[FLAGS.setting]
    if FLAGS.steps is not None:
        setting = dataclasses.replace(setting, steps=FLAGS.steps)
    if FLAGS.seed is not None:
        setting = dataclasses.replace(setting, seed=FLAGS.seed)
    command = "python -m pix2pix_tf.experiments.paper " + " ".join(argv_for_report(sys.argv[1:]))
    if not FLAGS.report_only:
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()  # The variants record deterministic_ops: runs repeat.
    written = reproduce(setting, FLAGS.root, FLAGS.variants, FLAGS.data_dir, FLAGS.segmenter_cache,
                        FLAGS.images_dir, command.strip(), FLAGS.report_only)
    with open(written["markdown"]) as f:
        print(f.read())
    print("Written: " + ", ".join(written.values()))
    if FLAGS.report_only:
        return 0
    return exit_status({n: os.path.join(FLAGS.root, n) for n in FLAGS.variants}, written["markdown"])


def exit_status(folders: dict[str, str], report: str) -> int:
    """1 when a variant just run failed, so that scripts and CI notice; the report says why.
    `folders`: each variant's name -> its folder."""
    failed = [name for name, folder in folders.items()
              if (read_marker(os.path.join(folder, MARKER)) or {}).get("status") == "failed"]
    if failed:
        print(f"Failed: {', '.join(failed)} (see {report}); fix the cause and rerun "
              "the command: failed variants are retried.", file=sys.stderr)
    return 1 if failed else 0


def argv_for_report(args: list[str]) -> list[str]:
    """The command line as given, for the report (the data_dir is machine-specific: dropped)."""
    return [a for a in args if not a.startswith("--data_dir")]


def run() -> None:
    cli.quiet_tensorflow()
    define_flags()
    cli.run_program(main)


if __name__ == "__main__":
    run()
