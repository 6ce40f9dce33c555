"""pix2pixHD's discriminator options against pix2pix's on the embedded labels->photo dataset.

    python -m pix2pix_tf.experiments.multiscale --root=runs/multiscale            # both resolutions
    python -m pix2pix_tf.experiments.multiscale --root=/tmp/m --setting=tiny      # smoke run

Three variants, each trained at 256x256 (`shapes`) and at 512x512 (`shapes/512`) with the same
seed, steps and generator: pix2pix's 70x70 PatchGAN; pix2pixHD's multi-scale D (3 PatchGANs on
the pair at full, half and quarter size); and the multi-scale D with its feature matching
(lambda_feat 10, pix2pixHD's). Each is an ordinary run in `<root>/<resolution>/<variant>/`,
trained and evaluated (FCN-score, colour, L1/PSNR/SSIM) by `experiments.paper.run_variant`, so
it can be inspected, resumed or re-evaluated with the usual tools; re-running skips what is
done. Writes `<root>/results.md` and `<root>/results.json`; docs/paper-reproduction.md
discusses a run.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from typing import Optional

from absl import flags

from pix2pix_tf import cli, writing
from pix2pix_tf.experiments.paper import argv_for_report, check_folders, check_steps, exit_status, run_variant
from pix2pix_tf.experiments.paper_report import collect, failure_cell
from pix2pix_tf.experiments.paper_variants import Setting, Variant

VARIANTS: dict[str, Variant] = {v.name: v for v in (
    Variant("patchgan_70", "70x70 PatchGAN (pix2pix)"),
    Variant("multiscale", "multi-scale D, 3 scales (pix2pixHD)", model={"discriminator": "multiscale", "num_d": 3}),
    Variant("multiscale_feat", "multi-scale D + feature matching (lambda_feat 10)",
            model={"discriminator": "multiscale", "num_d": 3}, loss={"lambda_feat": 10.0}),
)}

# Scaled to run all six variants and their evaluations in about half an hour on 2 shared CPU
# cores: unet_256 and the Ds at 1/8 of the paper's width, a few hundred steps, batch 1.
SETTINGS: dict[str, tuple[Setting, ...]] = {
    "small": (
        Setting("256", "shapes", 286, 256, ngf=8, ndf=8, steps=300, eval_examples=50, segmenter_steps=300,
                html_examples=4),
        Setting("512", "shapes/512", 572, 512, ngf=8, ndf=8, steps=300, eval_examples=50, segmenter_steps=300,
                html_examples=4),
    ),
    # The same code paths at smoke-test cost: 64x64 pairs upsampled to 256, 2 steps, 2 test images.
    "tiny": (Setting("256", "shapes/64", 286, 256, ngf=4, ndf=4, steps=2, eval_examples=2, segmenter_steps=2,
                     html_examples=2),),
}


def run_ablation(settings: tuple[Setting, ...], root: str, data_dir: Optional[str] = None,
                 command: str = "") -> dict[str, str]:
    """Trains and evaluates every variant at every setting (skipping those done); writes the report."""
    check_folders(root)  # Before the first variant trains: not empty, not a file, writable.
    for setting in settings:  # Before anything is written: no variant has trained past its setting.
        check_steps(setting, os.path.join(root, setting.name), list(VARIANTS))
    for setting in settings:
        resolution_root = os.path.join(root, setting.name)
        for variant in VARIANTS.values():
            run_variant(variant, setting, resolution_root, data_dir, os.path.join(root, "segmenters"))
    results = {s.name: collect(os.path.join(root, s.name), list(VARIANTS), s) for s in settings}
    paths = {"json": os.path.join(root, "results.json"), "markdown": os.path.join(root, "results.md")}
    summary = {"command": command, "settings": [dataclasses.asdict(s) for s in settings], "results": results}
    writing.write_text(paths["json"], json.dumps(summary, indent=2) + "\n")
    writing.write_text(paths["markdown"], markdown_table(results, settings, command))
    return paths


def markdown_table(results: dict, settings: tuple[Setting, ...], command: str) -> str:
    """One row per (resolution, variant): FCN-scores, Lab colour, L1, time."""
    lines = [f"Command: `{command}`", ""]
    lines += [f"- `{s.name}`: {json.dumps(dataclasses.asdict(s))}" for s in settings]
    lines += ["", "| size | discriminator | FCN per-pixel acc. | per-class acc. | class IoU | Lab HI L / a / b "
              "| L1 | PSNR | SSIM | train s |", "|---|---|---|---|---|---|---|---|---|---|"]
    for setting in settings:
        for name, variant in VARIANTS.items():
            entry = results[setting.name].get(name)
            if not entry or not entry["metrics"]:
                status = failure_cell(entry["marker"]) if entry else "not run"
                lines.append(f"| {setting.name} | {variant.title} | {status} | | | | | | | |")
                continue
            m = entry["metrics"]["metrics"]
            fcn, hi = m.get("fcn") or {}, m["lab_histogram_intersection"]
            scores = [f"{fcn[k]:.3f}" if k in fcn else "-" for k in ("per_pixel_accuracy", "per_class_accuracy",
                                                                       "class_iou")]
            lines.append(f"| {setting.name} | {variant.title} | {' | '.join(scores)} | "
                         f"{hi['L']:.3f} / {hi['a']:.3f} / {hi['b']:.3f} | {m['l1']:.4f} | {m['psnr']:.2f} | "
                         f"{m['ssim']:.3f} | {entry['marker'].get('train_seconds', '-')} |")
    for setting in settings:
        truth = next((e["metrics"].get("ground_truth") for e in results[setting.name].values()
                      if e.get("metrics") and e["metrics"].get("ground_truth")), None)
        if truth:
            fcn = truth["fcn"]
            lines.append(f"| {setting.name} | ground truth (real photos) | {fcn['per_pixel_accuracy']:.3f} | "
                         f"{fcn['per_class_accuracy']:.3f} | {fcn['class_iou']:.3f} | 1 / 1 / 1 | 0 | - | 1 | |")
    return "\n".join(lines) + "\n"


def define_flags() -> None:
    cli.define_path("root", "runs/multiscale", "One folder per resolution, one workdir per variant, the report.")
    flags.DEFINE_enum("setting", "small", list(SETTINGS), "small: the documented run; tiny: smoke test.")
    flags.DEFINE_integer("steps", None, "Override the training steps (a new setting: variants rerun).")
    cli.define_path("data_dir", None, "tensorflow-datasets data_dir.")


def main(argv: list[str]) -> int:
    cli.reject_arguments(argv)
    FLAGS = flags.FLAGS
    settings = SETTINGS[FLAGS.setting]
    if FLAGS.steps is not None:
        settings = tuple(dataclasses.replace(s, steps=FLAGS.steps) for s in settings)
    command = " ".join(["python -m pix2pix_tf.experiments.multiscale", *argv_for_report(sys.argv[1:])])
    import tensorflow as tf

    tf.config.experimental.enable_op_determinism()  # The variants record deterministic_ops: runs repeat.
    paths = run_ablation(settings, FLAGS.root, FLAGS.data_dir, command)
    with open(paths["markdown"]) as f:
        print(f.read())
    print("Written: " + ", ".join(paths.values()))
    return exit_status({f"{s.name}/{name}": os.path.join(FLAGS.root, s.name, name) for s in settings
                        for name in VARIANTS}, paths["markdown"])


def run() -> None:
    cli.quiet_tensorflow()
    define_flags()
    cli.run_program(main)


if __name__ == "__main__":
    run()
