"""Benchmark: how fast pix2pix trains and translates here, against what this machine can do.

    python -m pix2pix_tf.benchmark                      # the reference configuration (docs/performance.md)
    python -m pix2pix_tf.benchmark --json=bench.json    # also write every figure as JSON
    python -m pix2pix_tf.benchmark --dataset=folder:/data/facades --batch_sizes=1

Prints, in one run: this machine's fp32 matmul GFLOP/s; for each batch size the training
step's images/s and s/step (median of timed steps after warm-up, fed by the real input
pipeline), its FLOPs counted from the traced graph, the achieved GFLOP/s as a fraction of the
matmul's, the pipeline's images/s alone and the peak resident memory; each speed lever timed
against the unoptimised step; and batch-1 generator latency of the Keras model, the SavedModel
and each TFLite variant, with sizes; and the tutorial's step against ours (float32 and each
--precisions value) in interleaved rounds, each in its own process. No figure is judged
against a threshold in a test.
"""

from __future__ import annotations

import dataclasses
import json
import os

from pix2pix_tf import cli

cli.quiet_tensorflow()

from absl import app, flags  # noqa: E402

from pix2pix_tf import config as cfg  # noqa: E402
from pix2pix_tf import writing  # noqa: E402
from pix2pix_tf.benchmark.sidebyside import WARMUP_STEPS  # noqa: E402
from pix2pix_tf.workdir import check_writable  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("dataset", "shapes", "Dataset the training step reads (as train.py's --dataset).")
cli.define_path("data_dir", None, "tensorflow-datasets data_dir.")
flags.DEFINE_enum("generator", "unet_256", cfg.GENERATORS, "Generator (the discriminator is the basic 70x70 PatchGAN).")
flags.DEFINE_integer("ngf", 64, "Generator base filters.")
flags.DEFINE_integer("ndf", 64, "Discriminator base filters.")
flags.DEFINE_integer("crop_size", 256, "Training and inference image size.")
flags.DEFINE_integer("load_size", 286, "Resize before the random crop.")
cli.define_list("batch_sizes", ["1", "4"], "Global batch sizes to time training at.")
flags.DEFINE_enum("mixed_precision", "off", cfg.MIXED_PRECISION, "As train.py's, for the training rows and levers.")
flags.DEFINE_bool("jit_compile", False, "As train.py's (XLA), for the training rows.")
flags.DEFINE_integer("steps", 20, "Training steps timed per batch size (after --warmup_steps).")
flags.DEFINE_integer("warmup_steps", WARMUP_STEPS, "Untimed steps before the timed ones of each training row, "
                     "lever and side-by-side participant (the first traces the step); 0: the first timed step traces.")
flags.DEFINE_integer("pipeline_images", 200, "Images timed through the input pipeline alone.")
cli.define_list("levers", ["plain", "fused_adam", "xla"],
                  "Step variants timed in turns at batch 1 (first: the reference for loss differences); empty: skip.")
flags.DEFINE_integer("lever_steps", 8, "Steps timed per lever.")
cli.define_list("tflite", ["float32", "float16", "dynamic_int8", "int8"], "TFLite variants to time; empty: none.")
flags.DEFINE_bool("inference", True, "Time the generator's inference forms.")
flags.DEFINE_integer("threads", 2, "TFLite interpreter threads.")
flags.DEFINE_integer("rounds", 15, "Interleaved latency rounds.")
flags.DEFINE_integer("matmul_size", 4096, "Side of the square fp32 matmul that measures the machine.")
flags.DEFINE_bool("tutorial", True, "Also time the TensorFlow tutorial's training step at batch 1 (256x256 only).")
flags.DEFINE_bool("compare_allocator", True, "Also time batch 1 with --noreuse_memory (the allocator's defaults).")
flags.DEFINE_integer("profile_steps", 3, "Batch-1 steps traced with TensorFlow's profiler to show where the "
                     "time goes (op time by type, ops run one at a time); 0: skip.")
flags.DEFINE_integer("side_by_side_rounds", 5, "Interleaved rounds timing the tutorial's step against ours at "
                     "batch 1, each step in its own process; 0: skip.")
flags.DEFINE_integer("side_by_side_steps", 3, "Steps of each participant per side-by-side round.")
cli.define_list("precisions", ["off", "mixed_bfloat16"], "Our step's --mixed_precision values timed side by side "
                  f"with the tutorial's float32 step ({', '.join(cfg.MIXED_PRECISION)}).")
cli.define_path("json", None, "Also write every figure to this JSON file.")


def config_from_flags(batch_size: int) -> cfg.TrainConfig:
    return cfg.TrainConfig(
        model=cfg.ModelConfig(generator=FLAGS.generator, ngf=FLAGS.ngf, ndf=FLAGS.ndf),
        data=cfg.DataConfig(dataset=FLAGS.dataset, data_dir=FLAGS.data_dir, load_size=FLAGS.load_size,
                            crop_size=FLAGS.crop_size, batch_size=batch_size),
        run=cfg.RunConfig(seed=0, progress=False, mixed_precision=FLAGS.mixed_precision,
                          jit_compile=FLAGS.jit_compile)).validate()


def main(argv: list[str]) -> int:
    cli.reject_arguments(argv)
    if FLAGS.json and os.path.isdir(FLAGS.json):  # Found only after the whole suite, otherwise.
        raise app.UsageError(f"--json={FLAGS.json} is a folder; name the file to write the figures to.")
    if FLAGS.json:  # As its folder: a path under a file, or one that cannot be written.
        check_writable(os.path.dirname(os.path.abspath(FLAGS.json)), "--json's folder")
    from pix2pix_tf.benchmark import report  # Here, not above: --help answers before TensorFlow loads.
    from pix2pix_tf.data import pipeline  # Loads TensorFlow too.
    from pix2pix_tf.training import precision

    try:
        batch_sizes = [int(b) for b in FLAGS.batch_sizes]
    except ValueError:
        raise app.UsageError(f"--batch_sizes must be integers, got {','.join(FLAGS.batch_sizes)}.") from None
    configs = [config_from_flags(b) for b in batch_sizes]
    suite = report.SuiteConfig(
        trainings=configs, steps=FLAGS.steps, pipeline_images=FLAGS.pipeline_images,
        levers=tuple(FLAGS.levers), lever_steps=FLAGS.lever_steps, inference=FLAGS.inference,
        tflite=tuple(FLAGS.tflite), threads=FLAGS.threads, rounds=FLAGS.rounds,
        matmul_size=FLAGS.matmul_size, tutorial=FLAGS.tutorial,
        compare_allocator=FLAGS.compare_allocator, profile_steps=FLAGS.profile_steps,
        side_by_side_rounds=FLAGS.side_by_side_rounds, side_by_side_steps=FLAGS.side_by_side_steps,
        precisions=tuple(FLAGS.precisions), warmup_steps=FLAGS.warmup_steps).validate()
    precision.check_runnable([FLAGS.mixed_precision, *suite.precisions])  # Before minutes of measuring.
    pipeline.load_paired_dataset(configs[0].data)  # Its name and data_dir too (prepared once, if need be).
    results = report.run_suite(suite)
    print(report.format_results(results))
    if FLAGS.json:
        writing.write_text(FLAGS.json, json.dumps(dataclasses.asdict(results), indent=2) + "\n")
        print(f"Figures written to {FLAGS.json}")
    return 0


def run() -> None:
    """`python -m pix2pix_tf.benchmark`, from a clone of the repository."""
    cli.run_program(main)


if __name__ == "__main__":
    run()
