"""Exports a trained generator for TensorFlow Serving and TFLite: `python export.py --workdir=runs/quickstart`.

Writes `<export_dir>/<model_name>/<version>/` (a SavedModel in TensorFlow Serving's layout,
with warmup requests) and `<export_dir>/tflite/<model_name>/<version>/*.tflite`, each checked
against the checkpoint it came from. See docs/serving.md and docs/tflite.md.
"""

from __future__ import annotations

import sys
from typing import Any

from pix2pix_tf import cli

cli.quiet_tensorflow()

from absl import app, flags  # noqa: E402

from pix2pix_tf.export.config import ExportConfig  # noqa: E402
from pix2pix_tf.export.registry import TARGETS  # noqa: E402
from pix2pix_tf.export.target import Flag  # noqa: E402
from pix2pix_tf.inference.mode import InferenceMode  # noqa: E402

FLAGS = flags.FLAGS

# What to export.
cli.define_path("workdir", None, "The training run to export (its config.json and newest checkpoint).")
cli.define_path("checkpoint", None, "A specific checkpoint (e.g. runs/x/checkpoints/ckpt-1000); default: newest.")
cli.define_path("data_dir", None, "Where the run's dataset is, if it moved (default: config.json's).")

# Where.
cli.define_path("export_dir", None, "Export base folder (default: <workdir>/export). The SavedModel goes to "
                "<export_dir>/<model_name>/<version>, the TFLite files to "
                "<export_dir>/tflite/<model_name>/<version>.")
flags.DEFINE_string("model_name", "pix2pix", "The model's name in TensorFlow Serving (--model_name there).")
flags.DEFINE_integer("version", None, "Version number; default: the next free one. An existing version is never "
                     "overwritten.")

# How the generator runs.
flags.DEFINE_bool("deterministic", False, "Export without dropout (the same input always gives the same output). "
                  "Default: the paper's test-time behaviour, dropout on as the noise z.")
flags.DEFINE_bool("batch_statistics", True, "Batch norm with each image's own statistics (the paper). "
                  "--nobatch_statistics uses the moving averages instead (Keras' inference mode).")
flags.DEFINE_integer("image_size", None, "Side of the square images the model translates (default: the run's "
                     "--crop_size). Encoded images are resized to it; TFLite files are fixed to it.")

# How every artifact is checked.
flags.DEFINE_integer("check_examples", 8, "Held-out images each artifact is checked on.")
flags.DEFINE_bool("benchmark", False, "Also time each TFLite variant and the Keras model (batch 1).")
flags.DEFINE_integer("threads", 2, "Interpreter threads for the checks and --benchmark.")


def define_target_flags() -> None:
    """Each format's own flags, as its target declares them (pix2pix_tf/export/registry.py),
    defined here so that --help lists them as export.py's own."""
    for target in TARGETS:
        for flag in target.flags:
            if flag.kind == "enum":
                flags.DEFINE_enum(flag.name, flag.default, list(flag.choices), flag.help)
            elif flag.kind in ("list", "integers"):
                cli.define_list(flag.name, [str(v) for v in flag.default], flag.help)
            else:
                _DEFINE[flag.kind](flag.name, flag.default, flag.help)


_DEFINE = {"bool": flags.DEFINE_bool, "string": flags.DEFINE_string, "integer": flags.DEFINE_integer}
define_target_flags()


def config_from_flags() -> ExportConfig:
    """The typed export request; nothing below export.py reads flags."""
    if not FLAGS.workdir:
        raise app.UsageError("--workdir is required: the training run to export.")
    return ExportConfig(
        workdir=FLAGS.workdir, export_dir=FLAGS.export_dir, model_name=FLAGS.model_name, version=FLAGS.version,
        checkpoint=FLAGS.checkpoint,
        mode=InferenceMode(dropout=not FLAGS.deterministic, batch_statistics=FLAGS.batch_statistics),
        image_size=FLAGS.image_size, check_examples=FLAGS.check_examples, data_dir=FLAGS.data_dir,
        benchmark=FLAGS.benchmark, threads=FLAGS.threads,
        targets={t.name: t.options({f.name: _value(f) for f in t.flags}) for t in TARGETS},
    )


def _value(flag: Flag) -> Any:
    """A target's flag as its options read it ("integers": a tuple of ints)."""
    value = FLAGS[flag.name].value
    if flag.kind != "integers":
        return value
    try:
        return tuple(int(v) for v in value)
    except ValueError:
        raise app.UsageError(f"--{flag.name} takes integers, got {','.join(value)}.") from None


def main(argv: list[str]) -> int:
    cli.reject_arguments(argv)
    config = config_from_flags()  # A wrong request is refused before TensorFlow loads.
    from pix2pix_tf.export.exporter import export  # Loads TensorFlow.

    result = export(config)
    cli.say("\n".join(result.lines()))
    for line in result.warnings():
        print(line, file=sys.stderr)
    return 0


def run() -> None:
    """Console entry point `pix2pix-export`."""
    cli.run_program(main)


if __name__ == "__main__":
    run()
