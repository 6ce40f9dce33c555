"""Trains pix2pix: `python train.py --dataset=shapes --workdir=runs/shapes`.

Re-running the same command resumes from the newest checkpoint in --workdir.
See docs/training.md for every flag.
"""

from __future__ import annotations

import dataclasses

from pix2pix_tf import cli

cli.quiet_tensorflow()

from absl import flags, logging  # noqa: E402

from pix2pix_tf import config as cfg  # noqa: E402
from pix2pix_tf.errors import Interrupted  # noqa: E402
from pix2pix_tf.training.cluster import formation_watch  # noqa: E402
from pix2pix_tf.training.memory import reuse_freed_memory  # noqa: E402
from pix2pix_tf.workdir import Workdir  # noqa: E402

FLAGS = flags.FLAGS

# Data.
flags.DEFINE_string("dataset", "shapes",
                    "'shapes' (embedded, generated offline; 'shapes/64': tiny; 'shapes/512': 512x512), "
                    "an authors' dataset "
                    "(facades, cityscapes, maps, edges2shoes, edges2handbags, night2day: downloaded once, or "
                    "read from <data_dir>/downloads/manual/NAME.tar.gz), or 'folder:/path' (your images: "
                    "train/ val/ test/ of A|B side by side, or A/ and B/ trees matched by name).")
cli.define_path("data_dir", None, "Where tensorflow-datasets keeps prepared data (default ~/tensorflow_datasets).")
flags.DEFINE_enum("direction", None, cfg.DIRECTIONS, "AtoB or BtoA; default: the dataset's usual direction.")
flags.DEFINE_enum("preprocess", "resize_and_crop", cfg.PREPROCESS_MODES,
                  "Training jitter: resize to --load_size then random crop --crop_size; 'crop': crop only; "
                  "'scale_width[_and_crop]': width to --load_size keeping the aspect [then crop]; "
                  "'none': native size (rounded to what the generator takes).")
flags.DEFINE_integer("load_size", 286, "Resize images to this size before the random crop.")
flags.DEFINE_integer("crop_size", 256, "Random crop size: the training image size.")
flags.DEFINE_bool("no_flip", False, "Disable the random horizontal flip.")
flags.DEFINE_integer("batch_size", 1, "Global batch size, split over the replicas (reference: 1).")
flags.DEFINE_integer("shuffle_buffer", 1000, "Shuffle buffer, in examples.")
flags.DEFINE_integer("max_pixels", cfg.DataConfig.max_pixels, "Largest image read, in pixels (from its header, "
                     "before decoding); larger files of a folder dataset are skipped, with a warning.")

# Model.
flags.DEFINE_enum("generator", "unet_256", cfg.GENERATORS, "Generator architecture.")
flags.DEFINE_enum("discriminator", "basic", cfg.DISCRIMINATORS,
                  "basic: 70x70 PatchGAN; n_layers: PatchGAN of --n_layers_d; pixel: 1x1; image: 286x286; "
                  "multiscale: pix2pixHD's --num_d PatchGANs on the pair at 1, 1/2, 1/4... of its size.")
flags.DEFINE_integer("n_layers_d", 3, "PatchGAN depth with --discriminator=n_layers (1: 16x16, 2: 34x34), and "
                     "of each scale with --discriminator=multiscale.")
flags.DEFINE_integer("num_d", 3, "--discriminator=multiscale: PatchGANs, scale i judging the pair downsampled "
                     "i times (pix2pixHD: 3).")
flags.DEFINE_integer("ngf", 64, "Generator filters in the first layer.")
flags.DEFINE_integer("ndf", 64, "Discriminator filters in the first layer.")
flags.DEFINE_enum("norm", "batch", cfg.NORMS, "Normalisation; syncbatch synchronises across replicas.")
flags.DEFINE_integer("input_nc", 3, "Input image channels: 3, or 1 (images are read as grey).")
flags.DEFINE_integer("output_nc", 3, "Output image channels: 3, or 1.")
flags.DEFINE_bool("no_dropout", False, "Disable the generator's dropout (the paper's noise z).")
flags.DEFINE_bool("unconditional_d", False, "D sees only the output (the paper's GAN-vs-cGAN ablation).")

# Objective.
flags.DEFINE_enum("gan_mode", "vanilla", cfg.GAN_MODES, "vanilla: BCE with logits; lsgan: least squares.")
flags.DEFINE_float("lambda_l1", 100.0, "Weight of the L1 term (0: the paper's 'cGAN only').")
flags.DEFINE_float("gan_weight", 1.0, "Weight of the GAN term (0: the paper's 'L1 only', no D is trained).")
flags.DEFINE_float("lambda_feat", 0.0, "Weight of pix2pixHD's discriminator feature matching (L1 between D's "
                   "activations on the real and generated pairs; pix2pixHD: 10). 0: off, the reference.")

# Optimisation.
flags.DEFINE_float("lr", 2e-4, "Adam learning rate.")
flags.DEFINE_float("beta1", 0.5, "Adam beta1.")
flags.DEFINE_integer("epochs", 100, "Epochs at the initial learning rate.")
flags.DEFINE_integer("epochs_decay", 100, "Epochs of linear decay of the learning rate to 0.")
flags.DEFINE_integer("steps", None, "Stop after this many steps (the schedule stays epoch-based).")

# Run.
cli.define_path("workdir", "runs/pix2pix", "Where config, checkpoints, logs and samples go.")
flags.DEFINE_integer("seed", None, "Seed; when given, ops are deterministic and runs repeat exactly.")
flags.DEFINE_enum("strategy", "mirrored", cfg.STRATEGIES, "tf.distribute strategy.")
flags.DEFINE_integer("cpu_replicas", 1, "Split the CPU into this many logical devices (testing mirrored).")
flags.DEFINE_integer("save_every", 1000, "Checkpoint every this many steps (also at the end and on Ctrl-C).")
flags.DEFINE_integer("log_every", 10, "Write TensorBoard scalars every this many steps.")
flags.DEFINE_integer("sample_every", 500, "Write held-out samples and L1 every this many steps.")
flags.DEFINE_integer("keep_checkpoints", 3, "Checkpoints to keep.")
flags.DEFINE_integer("eval_examples", 16, "Held-out examples for the L1 and sample grids.")
flags.DEFINE_bool("progress", True, "Show a progress bar.")
flags.DEFINE_float("cluster_timeout", 600, "--strategy=multi_worker: seconds to wait for the other workers of "
                   "TF_CONFIG before giving up with a message naming them (SIGTERM stops the wait at once).")

# Speed (docs/performance.md); neither changes what is learned beyond float rounding.
flags.DEFINE_bool("fused_adam", True, "Update with TensorFlow's fused Adam kernel (--nofused_adam: Keras' own ops).")
flags.DEFINE_bool("jit_compile", False, "Compile each replica's step with XLA (slower on CPU; try it on GPU).")
flags.DEFINE_bool("reuse_memory", True, "Keep freed memory for the next step instead of page-faulting it back in "
                  "(glibc malloc settings; --noreuse_memory: the system's defaults).")
flags.DEFINE_enum("mixed_precision", "off", cfg.MIXED_PRECISION,
                  "Compute in 16 bits, keep variables and checkpoints float32: mixed_float16 (with loss scaling; "
                  "GPUs), mixed_bfloat16 (TPUs, CPUs with AVX512-BF16 or AMX), auto (the device's), off (float32, "
                  "the reference). Checkpoints resume under any setting; exports are float32.")


def config_from_flags() -> cfg.TrainConfig:
    return cfg.TrainConfig(
        model=cfg.ModelConfig(
            generator=FLAGS.generator, discriminator=FLAGS.discriminator, n_layers_d=FLAGS.n_layers_d,
            ngf=FLAGS.ngf, ndf=FLAGS.ndf, norm=FLAGS.norm, input_nc=FLAGS.input_nc,
            output_nc=FLAGS.output_nc, dropout=not FLAGS.no_dropout, unconditional_d=FLAGS.unconditional_d,
            num_d=FLAGS.num_d),
        data=cfg.DataConfig(
            dataset=FLAGS.dataset, data_dir=FLAGS.data_dir, direction=FLAGS.direction,
            preprocess=FLAGS.preprocess, load_size=FLAGS.load_size, crop_size=FLAGS.crop_size,
            flip=not FLAGS.no_flip, batch_size=FLAGS.batch_size, shuffle_buffer=FLAGS.shuffle_buffer,
            max_pixels=FLAGS.max_pixels),
        loss=cfg.LossConfig(gan_mode=FLAGS.gan_mode, lambda_l1=FLAGS.lambda_l1, gan_weight=FLAGS.gan_weight,
                            lambda_feat=FLAGS.lambda_feat),
        optim=cfg.OptimConfig(lr=FLAGS.lr, beta1=FLAGS.beta1, epochs=FLAGS.epochs,
                              epochs_decay=FLAGS.epochs_decay, steps=FLAGS.steps),
        run=cfg.RunConfig(
            workdir=FLAGS.workdir, seed=FLAGS.seed, deterministic_ops=FLAGS.seed is not None,
            strategy=FLAGS.strategy, cpu_replicas=FLAGS.cpu_replicas, save_every=FLAGS.save_every,
            log_every=FLAGS.log_every, sample_every=FLAGS.sample_every,
            keep_checkpoints=FLAGS.keep_checkpoints, eval_examples=FLAGS.eval_examples,
            progress=FLAGS.progress, fused_adam=FLAGS.fused_adam, jit_compile=FLAGS.jit_compile,
            reuse_memory=FLAGS.reuse_memory, mixed_precision=FLAGS.mixed_precision),
    )


def with_the_runs_determinism(config: cfg.TrainConfig) -> cfg.TrainConfig:
    """A run resumed without --seed keeps its recorded seed (`resolve_config`) and, so that it
    still repeats exactly, the op determinism that its --seed turned on."""
    if config.run.seed is not None or not Workdir(config.run.workdir).has_config():
        return config
    try:
        stored = cfg.TrainConfig.load(config.run.workdir)
    except cfg.ConfigError:  # Refused by name when the run resolves its configuration.
        return config
    if not stored.run.deterministic_ops:
        return config
    logging.info("%s records a run started with --seed=%s: its seed and deterministic ops are kept.",
                 config.run.workdir, stored.run.seed)
    return dataclasses.replace(config, run=dataclasses.replace(config.run, deterministic_ops=True))


def main(argv: list[str]) -> int:
    cli.reject_arguments(argv)
    config = with_the_runs_determinism(config_from_flags().validate())
    # The process-wide settings, all before TensorFlow loads: its threads inherit the signal
    # mask of the watch over a multi-worker cluster's formation, and the allocator's settings
    # must precede its first allocation.
    with formation_watch(config.run.strategy, FLAGS.cluster_timeout) as watch:
        if config.run.reuse_memory and not reuse_freed_memory():
            logging.info("--reuse_memory: not glibc; the allocator keeps its own defaults.")
        # Imported here so that --help answers before TensorFlow loads.
        import tensorflow as tf

        from pix2pix_tf.training.distribute import split_cpu
        from pix2pix_tf.training.loop import train

        if config.run.deterministic_ops:  # --seed: two runs give the same losses.
            tf.config.experimental.enable_op_determinism()
        split_cpu(config.run.cpu_replicas)
        try:
            result = train(config, formation=watch.forming)
        except Interrupted as stop:  # Before the steps, or a second Ctrl-C: no step to name.
            stop.done.append("every complete checkpoint is kept; run the same command to resume")
            raise
    if stop := result.stop():
        raise stop
    cli.say(f"Done: {result.summary()}")
    return 0


def run() -> None:
    """Console entry point `pix2pix-train`."""
    cli.run_program(main)


if __name__ == "__main__":
    run()
