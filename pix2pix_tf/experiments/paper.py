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

The settings (`SETTINGS`) are scaled for a laptop CPU; docs/paper-reproduction.md explains
the choices and discusses the results.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
from typing import Any, Optional

from absl import flags, logging

from pix2pix_tf import cli, writing
from pix2pix_tf import config as cfg
from pix2pix_tf.errors import ConfigError, Pix2pixError
from pix2pix_tf.experiments.markers import read_marker, read_variant, recorded_command
from pix2pix_tf.workdir import Workdir, check_named, check_not_a_file, check_tensorflow_can_read, check_writable

# ----------------------------------------------------------------------------- the paper's numbers

# FCN-scores on Cityscapes labels->photo: (per-pixel accuracy, per-class accuracy, class IoU).
# Colour: Lab histogram intersection with the ground truth (L, a, b). From
# ../shared/reference/pix2pix-reference.md (the paper's Tables 1, 2, 3 and 5).
PAPER_FCN = {
    "l1": (0.42, 0.15, 0.11), "gan": (0.22, 0.05, 0.01), "cgan": (0.57, 0.22, 0.16),
    "l1_gan": (0.64, 0.20, 0.15), "l1_cgan": (0.66, 0.23, 0.17), "ground_truth": (0.80, 0.26, 0.21),
    "ed_l1": (0.35, 0.12, 0.08), "ed_l1_cgan": (0.29, 0.09, 0.05),
    "unet_l1": (0.48, 0.18, 0.13), "unet_l1_cgan": (0.55, 0.20, 0.14),
    "d_pixel": (0.39, 0.15, 0.10), "d_16": (0.65, 0.21, 0.17), "d_70": (0.66, 0.23, 0.17), "d_286": (0.42, 0.16, 0.11),
}
PAPER_COLOUR = {"l1": (0.81, 0.69, 0.70), "cgan": (0.87, 0.74, 0.84), "l1_cgan": (0.86, 0.84, 0.82),
                "d_pixel": (0.83, 0.68, 0.78)}


@dataclasses.dataclass(frozen=True)
class Variant:
    """One training run of the ablation: what differs from the default L1+cGAN U-Net / 70x70."""

    name: str
    title: str
    model: dict = dataclasses.field(default_factory=dict)
    loss: dict = dataclasses.field(default_factory=dict)


VARIANTS: dict[str, Variant] = {v.name: v for v in (
    Variant("l1", "L1 (U-Net)", loss={"gan_weight": 0.0}),
    Variant("gan", "GAN", model={"unconditional_d": True}, loss={"lambda_l1": 0.0}),
    Variant("cgan", "cGAN", loss={"lambda_l1": 0.0}),
    Variant("l1_gan", "L1+GAN", model={"unconditional_d": True}),
    Variant("l1_cgan", "L1+cGAN (U-Net, 70x70)"),
    Variant("ed_l1", "Encoder-decoder L1", model={"generator": "encoder_decoder"}, loss={"gan_weight": 0.0}),
    Variant("ed_l1_cgan", "Encoder-decoder L1+cGAN", model={"generator": "encoder_decoder"}),
    Variant("d_pixel", "PixelGAN 1x1", model={"discriminator": "pixel"}),
    Variant("d_16", "PatchGAN 16x16", model={"discriminator": "n_layers", "n_layers_d": 1}),
    Variant("d_286", "ImageGAN 286x286", model={"discriminator": "image"}),
)}

# Each table: (key, title, [(row label, variant or "ground_truth", key into PAPER_FCN)]).
TABLES: tuple[tuple[str, str, tuple[tuple[str, str, str], ...]], ...] = (
    ("table1", "Table 1: loss functions (U-Net, 70x70 PatchGAN)", (
        ("L1", "l1", "l1"), ("GAN", "gan", "gan"), ("cGAN", "cgan", "cgan"), ("L1+GAN", "l1_gan", "l1_gan"),
        ("L1+cGAN", "l1_cgan", "l1_cgan"), ("Ground truth", "ground_truth", "ground_truth"))),
    ("table2", "Table 2: generator architecture", (
        ("Encoder-decoder (L1)", "ed_l1", "ed_l1"), ("Encoder-decoder (L1+cGAN)", "ed_l1_cgan", "ed_l1_cgan"),
        ("U-Net (L1)", "l1", "unet_l1"), ("U-Net (L1+cGAN)", "l1_cgan", "unet_l1_cgan"))),
    ("table3", "Table 3: discriminator receptive field (L1+cGAN)", (
        ("1x1 (PixelGAN)", "d_pixel", "d_pixel"), ("16x16", "d_16", "d_16"), ("70x70", "l1_cgan", "d_70"),
        ("286x286 (ImageGAN)", "d_286", "d_286"))),
)
COLOUR_ROWS = (("L1", "l1"), ("cGAN", "cgan"), ("L1+cGAN", "l1_cgan"), ("PixelGAN", "d_pixel"))


@dataclasses.dataclass(frozen=True)
class Setting:
    """The scale of the reproduction: what every variant shares."""

    name: str
    dataset: str
    load_size: int
    crop_size: int
    ngf: int
    ndf: int
    steps: int
    eval_examples: Optional[int]  # None: the whole test split.
    segmenter_steps: int
    seed: int = 2017
    html_examples: int = 12


SETTINGS = {
    # 256x256 as the paper (so its receptive fields mean the same here), unet_256 at 1/4 of the
    # paper's width, 1.5 epochs of the 1000 training pairs: about 5 minutes a variant on 2 shared cores.
    "full": Setting("full", "shapes", 286, 256, ngf=16, ndf=16, steps=1500, eval_examples=None, segmenter_steps=800),
    # The same code paths at smoke-test cost (CI): 64x64 pairs upsampled, 2 steps, 3 test images.
    "tiny": Setting("tiny", "shapes/64", 286, 256, ngf=4, ndf=4, steps=2, eval_examples=3, segmenter_steps=2,
                    html_examples=3),
}
FIGURE_EXAMPLES = 3  # Test images per figure row set.
MARKER = "paper_variant.json"


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


def _write_json(path: str, value: Any) -> None:
    writing.write_text(path, json.dumps(value, indent=2) + "\n")


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
    finally:
        keras.backend.clear_session()
    _write_json(marker_path, marker)
    print(f"[{time.strftime('%H:%M:%S')}] {variant.name}: {marker['status']} "
          f"(train {marker.get('train_seconds', '-')} s, eval {marker.get('eval_seconds', '-')} s)", flush=True)
    return marker


# ----------------------------------------------------------------------------- reporting


def collect(root: str, names: list[str]) -> dict[str, dict]:
    """variant -> {"marker": .., "metrics": metrics.json or None} for the variants run so far
    (`markers.read_variant`: a damaged marker is left out, unusable metrics are "incomplete")."""
    entries = {name: read_variant(os.path.join(root, name, MARKER)) for name in names}
    return {name: entry for name, entry in entries.items() if entry is not None}


def _fcn(results: dict, name: str) -> Optional[tuple[float, float, float]]:
    if name == "ground_truth":
        for candidate in ("l1_cgan", *results):  # The real photos' score is the same in every evaluation.
            metrics = (results.get(candidate) or {}).get("metrics")
            if metrics and metrics.get("ground_truth"):
                truth = metrics["ground_truth"]["fcn"]
                return truth["per_pixel_accuracy"], truth["per_class_accuracy"], truth["class_iou"]
        return None
    metrics = (results.get(name) or {}).get("metrics")
    if not metrics or not metrics["metrics"].get("fcn"):
        return None
    fcn = metrics["metrics"]["fcn"]
    return fcn["per_pixel_accuracy"], fcn["per_class_accuracy"], fcn["class_iou"]


def _cells(values: Optional[tuple], digits: int = 2) -> list[str]:
    return ["-"] * 3 if values is None else [f"{v:.{digits}f}" for v in values]


def _status(results: dict, name: str) -> str:
    marker = (results.get(name) or {}).get("marker") or {}
    return "" if marker.get("status", "done") == "done" else f" ({marker.get('status')}: {marker.get('error', '')})"


def markdown_tables(results: dict, setting: Setting, command: str) -> str:
    """Our tables beside the paper's, as Markdown."""
    lines = [f"Setting `{setting.name}`: {json.dumps(dataclasses.asdict(setting))}", "", f"Command: `{command}`", ""]
    for _, title, rows in TABLES:
        lines += [f"### {title}", "",
                  "| | ours per-pixel acc. | ours per-class acc. | ours class IoU "
                  "| paper per-pixel acc. | paper per-class acc. | paper class IoU |",
                  "|---|---|---|---|---|---|---|"]
        for label, name, paper_key in rows:
            lines.append(f"| {label}{_status(results, name)} | " + " | ".join(_cells(_fcn(results, name), 3)
                                                                              + _cells(PAPER_FCN[paper_key])) + " |")
        lines.append("")
    lines += ["### Colour: Lab histogram intersection with the ground truth", "",
              "| | ours L | ours a | ours b | paper L | paper a | paper b |", "|---|---|---|---|---|---|---|"]
    for label, name in COLOUR_ROWS:
        metrics = (results.get(name) or {}).get("metrics")
        ours = None
        if metrics:
            hi = metrics["metrics"]["lab_histogram_intersection"]
            ours = (hi["L"], hi["a"], hi["b"])
        lines.append(f"| {label}{_status(results, name)} | " + " | ".join(_cells(ours, 3)
                                                                          + _cells(PAPER_COLOUR[name])) + " |")
    lines += ["", "### Every variant, every metric (test split)", "",
              "| variant | L1 | PSNR | SSIM | Lab HI L / a / b | FCN pixel / class / IoU | train s | eval s |",
              "|---|---|---|---|---|---|---|---|"]
    for name, variant in VARIANTS.items():
        entry = results.get(name)
        if not entry:
            continue
        marker, metrics = entry["marker"], entry["metrics"]
        if not metrics:
            lines.append(f"| {variant.title} | {marker.get('status')}: {marker.get('error', '')} | | | | | | |")
            continue
        m = metrics["metrics"]
        hi = m["lab_histogram_intersection"]
        fcn = " / ".join(_cells(_fcn(results, name), 3))
        lines.append(f"| {variant.title} | {m['l1']:.4f} | {m['psnr']:.2f} | {m['ssim']:.3f} | "
                     f"{hi['L']:.3f} / {hi['a']:.3f} / {hi['b']:.3f} | {fcn} | {marker.get('train_seconds', '-')} | "
                     f"{marker.get('eval_seconds', '-')} |")
    truth = _fcn(results, "ground_truth")
    if truth:
        lines.append(f"| Ground truth (real photos) | 0 | - | 1 | 1 / 1 / 1 | {' / '.join(_cells(truth, 3))} | | |")
    return "\n".join(lines) + "\n"


def _figure(results: dict, root: str, columns: list[tuple[str, str]], title: str, path: str) -> Optional[str]:
    """Rows of the same test images: input, each variant's output, target (from the eval PNGs)."""
    import numpy as np
    from PIL import Image

    def image(name: str, index: int, column: str) -> Optional[np.ndarray]:
        file = os.path.join(Workdir(os.path.join(root, name)).evaluations, "images", f"{index:05d}_{column}.png")
        if not os.path.exists(file):
            return None
        return np.asarray(Image.open(file).convert("RGB").resize((128, 128), Image.BICUBIC))

    available = [(label, name) for label, name in columns if (results.get(name) or {}).get("metrics")]
    if not available:
        return None
    source = available[0][1]
    panels = [("input", source, "input"), *[(label, name, "output") for label, name in available],
              ("ground truth", source, "target")]
    rows = [i for i in range(FIGURE_EXAMPLES) if image(source, i, "input") is not None]
    if not rows:
        return None
    from pix2pix_tf.training.summaries import offscreen_figure  # Loads TensorFlow and matplotlib: figures only.

    fig = offscreen_figure((1.45 * len(panels), 1.45 * len(rows) + 0.5))
    axes = fig.subplots(len(rows), len(panels), squeeze=False)
    for r, index in enumerate(rows):
        for c, (label, name, column) in enumerate(panels):
            picture = image(name, index, column)
            if picture is not None:
                axes[r, c].imshow(picture)
            axes[r, c].set_xticks([])
            axes[r, c].set_yticks([])
            if r == 0:
                axes[r, c].set_title(label, fontsize=7)
    fig.suptitle(title, fontsize=8)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.25 / fig.get_figheight()))
    return writing.write_figure(path, fig, dpi=100)


def write_report(results: dict, root: str, setting: Setting, command: str,
                 images_dir: Optional[str] = None) -> dict[str, str]:
    """results.json, results.md and the figures; returns what was written."""
    os.makedirs(os.path.join(root, "figures"), exist_ok=True)
    written = {}
    _write_json(os.path.join(root, "results.json"), {"setting": dataclasses.asdict(setting), "command": command,
                                                     "paper_fcn": PAPER_FCN, "paper_colour": PAPER_COLOUR,
                                                     "variants": results})
    written["json"] = os.path.join(root, "results.json")
    writing.write_text(os.path.join(root, "results.md"), markdown_tables(results, setting, command))
    written["markdown"] = os.path.join(root, "results.md")
    figures = {
        "table1": [(label, name) for label, name, _ in TABLES[0][2] if name != "ground_truth"],
        "table2": [(label, name) for label, name, _ in TABLES[1][2]],
        "table3": [(label, name) for label, name, _ in TABLES[2][2]],
    }
    for key, columns in figures.items():
        title = dict((k, t) for k, t, _ in TABLES)[key]
        path = _figure(results, root, columns, title, os.path.join(root, "figures", f"{key}.png"))
        if path:
            written[key] = path
            if images_dir:
                with open(path, "rb") as f:
                    writing.write_file(os.path.join(images_dir, os.path.basename(path)), f.read())
    return written


def reproduce(setting: Setting, root: str, names: list[str], data_dir: Optional[str] = None,
              segmenter_cache: Optional[str] = None, images_dir: Optional[str] = None,
              command: str = "", report_only: bool = False) -> dict[str, str]:
    """Runs (or skips) every variant in `names`, then writes the report."""
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        raise ConfigError(f"Unknown variant(s) {unknown}; choose from {', '.join(VARIANTS)}.")
    segmenter_cache = segmenter_cache or os.path.join(root, "segmenters")
    check_folders(root, segmenter_cache, images_dir)
    if report_only:  # The report keeps naming the command that produced the numbers.
        command = recorded_command(os.path.join(root, "results.json"), command)
    else:
        for name in names:
            run_variant(VARIANTS[name], setting, root, data_dir, segmenter_cache)
    return write_report(collect(root, list(VARIANTS)), root, setting, command, images_dir)


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
