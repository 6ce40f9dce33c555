"""Does mixed precision learn what float32 learns? The quick start under each precision.

    python -m pix2pix_tf.experiments.precision --root=runs/precision               # 3 seeds, 1000 steps
    python -m pix2pix_tf.experiments.precision --root=/tmp/p --steps=20 --seeds=1  # a smoke run

Trains the README's quick start (unet_128 + 70x70 PatchGAN on the embedded `shapes`, 128x128
crops, batch 1) once per seed and precision, the same seed giving the same initial weights
and batches. Each run's held-out L1 is then measured in float32 from its final checkpoint
(as an export would run it), so the comparison is of what was learned, not of the
arithmetic used to measure it. Runs are ordinary workdirs under `<root>/<policy>_seed<N>`:
re-running skips finished ones and resumes interrupted ones. Prints a table and writes
`<root>/results.json`; docs/training.md quotes one run.
"""

from __future__ import annotations

import dataclasses
import json
import os
import statistics
import sys
from typing import Optional

from absl import flags

from pix2pix_tf import cli, writing
from pix2pix_tf import config as cfg
from pix2pix_tf.errors import ConfigError
from pix2pix_tf.workdir import check_writable

FLAGS = flags.FLAGS
cli.define_path("root", "runs/precision", "Folder of the runs and results.json.")
cli.define_list("seeds", ["1", "2", "3"], "Seeds; each trains once per precision.")
cli.define_list("policies", ["off", "mixed_bfloat16"], "--mixed_precision values compared (the first: the baseline).")
flags.DEFINE_integer("steps", 1000, "Training steps per run (the quick start's 1000).")
cli.define_path("data_dir", None, "tensorflow-datasets data_dir.")


def quick_start(workdir: str, seed: int, steps: int, policy: str, data_dir):
    """The README's quick-start configuration, with a seed and a precision."""
    return cfg.TrainConfig(
        model=cfg.ModelConfig(generator="unet_128"),
        data=cfg.DataConfig(data_dir=data_dir, load_size=143, crop_size=128),
        optim=cfg.OptimConfig(steps=steps),
        run=cfg.RunConfig(workdir=workdir, seed=seed, deterministic_ops=True, mixed_precision=policy,
                          sample_every=steps,
                          save_every=max(steps // 4, 1), progress=False)).validate()


def float32_held_out_l1(config) -> float:
    """The held-out L1 of the run's last checkpoint, computed in float32: a finished run
    re-opened under --mixed_precision=off trains no further and measures its start."""
    from pix2pix_tf.training.loop import train  # Here, not above: --help answers before TensorFlow loads.

    workdir = config.run.workdir
    trained_in = cfg.TrainConfig.load(workdir).run.mixed_precision
    measured = train(dataclasses.replace(config, run=dataclasses.replace(config.run, mixed_precision="off")))
    stored = cfg.TrainConfig.load(workdir)  # As resolved by train (direction, paths): a re-run resumes it.
    dataclasses.replace(stored, run=dataclasses.replace(stored.run, mixed_precision=trained_in)).save(workdir)
    return float(measured.held_out_l1_start)


def run_one(seed: int, policy: str) -> Optional[dict]:
    """One run's held-out L1s; None if it was stopped (Ctrl-C, SIGTERM) before its last step."""
    from pix2pix_tf.training.loop import train  # Here, not above: --help answers before TensorFlow loads.

    config = quick_start(os.path.join(FLAGS.root, f"{policy}_seed{seed}"), seed, FLAGS.steps, policy,
                         FLAGS.data_dir)
    result = train(config)
    if result.stopped_early:  # Ctrl-C or SIGTERM: the run saved its checkpoint.
        return None
    return {"seed": seed, "policy": policy, "steps": result.step, "held_out_l1_start": result.held_out_l1_start,
            "held_out_l1_in_training": result.held_out_l1_end, "held_out_l1_float32": float32_held_out_l1(config)}


def table(rows: list[dict], policies: list[str]) -> str:
    """Held-out L1 (float32) per seed and precision, and each precision's difference from the first."""
    lines = ["seed  " + "  ".join(f"{p:>15}" for p in policies) + "  " + "  ".join(
        f"{p + ' - ' + policies[0]:>30}" for p in policies[1:])]
    by = {(r["seed"], r["policy"]): r["held_out_l1_float32"] for r in rows}
    seeds = sorted({r["seed"] for r in rows if all((r["seed"], p) in by for p in policies)})
    for seed in seeds:
        lines.append(f"{seed:>4}  " + "  ".join(f"{by[seed, p]:>15.4f}" for p in policies) + "  " + "  ".join(
            f"{by[seed, p] - by[seed, policies[0]]:>+30.4f}" for p in policies[1:]))
    if seeds:
        means = [statistics.mean(by[s, p] for s in seeds) for p in policies]
        lines.append("mean  " + "  ".join(f"{m:>15.4f}" for m in means) + "  " + "  ".join(
            f"{m - means[0]:>+30.4f}" for m in means[1:]))
    return "\n".join(lines)


def checked_seeds() -> list[int]:
    """--seeds as integers, and neither list empty, or one line before TensorFlow loads (a seed
    that is no integer was a traceback after the first runs; an empty list, an empty table)."""
    try:
        seeds = [int(seed) for seed in FLAGS.seeds]
    except ValueError:
        raise ConfigError(f"--seeds takes integers, got {','.join(FLAGS.seeds)}.") from None
    for flag, values in (("seeds", seeds), ("policies", FLAGS.policies)):
        if not values:
            raise ConfigError(f"--{flag} is empty: name at least one.")
    return seeds


def main(argv: list[str]) -> int:
    cli.reject_arguments(argv)
    seeds = checked_seeds()
    check_writable(FLAGS.root, "--root")  # Before TensorFlow loads: not empty, not a file, writable.
    import tensorflow as tf

    from pix2pix_tf.training.precision import check_runnable  # Loads TensorFlow, as the line above.

    tf.config.experimental.enable_op_determinism()  # As train.py for --seed: each run repeats exactly.
    check_runnable(FLAGS.policies)  # Each policy before the first run: a refused one would stop the later ones.
    rows = []
    for seed in seeds:
        for policy in FLAGS.policies:
            row = run_one(seed, policy)
            if row is None:
                print("Stopped; every run is checkpointed: re-run the command to resume.", file=sys.stderr)
                return 1
            rows.append(row)
    writing.write_text(os.path.join(FLAGS.root, "results.json"), json.dumps(rows, indent=2) + "\n")
    print(table(rows, FLAGS.policies))
    return 0


if __name__ == "__main__":
    cli.quiet_tensorflow()
    cli.run_program(main)
