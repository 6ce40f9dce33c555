"""Exports a trained generator for TensorFlow Serving and TFLite: `python export.py --workdir=runs/quickstart`.

Writes `<export_dir>/<model_name>/<version>/` (a SavedModel in TensorFlow Serving's layout,
with warmup requests) and `<export_dir>/tflite/<model_name>/<version>/*.tflite`, each checked
against the checkpoint it came from. See docs/serving.md and docs/tflite.md.
"""

from __future__ import annotations

import sys

from pix2pix_tf import cli

cli.quiet_tensorflow()

from absl import app, flags  # noqa: E402

FLAGS = flags.FLAGS

# What to export.
flags.DEFINE_string("workdir", None, "The training run to export (its config.json and newest checkpoint).")
flags.DEFINE_string("checkpoint", None, "A specific checkpoint (e.g. runs/x/checkpoints/ckpt-1000); default: newest.")
flags.DEFINE_string("data_dir", None, "Where the run's dataset is, if it moved (default: config.json's).")

# Where.
flags.DEFINE_string("export_dir", None, "Export base folder (default: <workdir>/export). The SavedModel goes to "
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
flags.DEFINE_list("warmup_batch_sizes", ["1"], "Batch sizes of the warmup requests written for TensorFlow Serving "
                  "(one request per signature and size; add your batching's max_batch_size).")
flags.DEFINE_integer("image_size", None, "Side of the square images the model translates (default: the run's "
                     "--crop_size). Encoded images are resized to it; TFLite files are fixed to it.")

# TFLite.
flags.DEFINE_list("tflite", ["float32", "float16", "dynamic_int8", "int8"],
                  "TFLite variants to write (comma-separated; empty for none): float32, float16, dynamic_int8 "
                  "(int8 weights), int8 (int8 weights and activations, calibrated on the run's training data).")
flags.DEFINE_enum("int8_io", "float32", ["float32", "int8", "uint8"], "Input/output type of the int8 variant.")
flags.DEFINE_bool("onnx", False, "Also write the generator as ONNX (opset 17, dynamic batch/height/width, checked "
                  "with onnxruntime) to <export_dir>/onnx/<model_name>/<version>; needs pip install -e \".[onnx]\" "
                  "(docs/onnx.md).")
flags.DEFINE_integer("calibration_examples", 64, "Training images that calibrate the int8 variant.")
flags.DEFINE_integer("check_examples", 8, "Held-out images each artifact is checked on.")
flags.DEFINE_bool("force", False, "Keep TFLite variants whose PSNR against the SavedModel is below its floor.")
flags.DEFINE_bool("benchmark", False, "Also time each TFLite variant and the Keras model (batch 1).")
flags.DEFINE_integer("threads", 2, "Interpreter threads for the checks and --benchmark.")
flags.DEFINE_bool("web", False, "Also write a static web page running --web_variant in the visitor's browser "
                  "(LiteRT.js): <export_dir>/web/<model_name>/<version>/; see docs/web.md.")
flags.DEFINE_enum("web_variant", "dynamic_int8", ["float32", "float16", "dynamic_int8", "int8"],
                  "The TFLite variant the --web page runs (one of --tflite; dynamic_int8: a quarter of float32's "
                  "download, the fastest in WebAssembly).")
flags.DEFINE_string("web_runtime", None, "The node_modules folder holding LiteRT.js for --web (default: "
                    "pix2pix_tf/export/web/node_modules, installed by npm ci there; docs/web.md).")
flags.DEFINE_integer("max_pixels", 4096 * 4096, "Largest image the SavedModel's bytes signatures accept, in pixels "
                     "(checked from the header, before decoding); larger ones are refused.")
flags.DEFINE_integer("max_request_pixels", None, "Most pixels one request to any signature may hold in all (each "
                     "image counted at the larger of its own size and the size the generator runs it at); larger "
                     "requests are refused before decoding. Default: --max_pixels.")


def config_from_flags():
    """The typed export request; nothing below export.py reads flags."""
    from pix2pix_tf.export.config import ExportConfig  # Here, not above: --help answers before TensorFlow loads.
    from pix2pix_tf.inference.mode import InferenceMode

    if not FLAGS.workdir:
        raise app.UsageError("--workdir is required: the training run to export.")
    return ExportConfig(
        workdir=FLAGS.workdir, export_dir=FLAGS.export_dir, model_name=FLAGS.model_name, version=FLAGS.version,
        checkpoint=FLAGS.checkpoint,
        mode=InferenceMode(dropout=not FLAGS.deterministic, batch_statistics=FLAGS.batch_statistics),
        image_size=FLAGS.image_size, tflite=tuple(v for v in FLAGS.tflite if v), int8_io=FLAGS.int8_io,
        calibration_examples=FLAGS.calibration_examples, check_examples=FLAGS.check_examples,
        data_dir=FLAGS.data_dir, force=FLAGS.force, benchmark=FLAGS.benchmark, threads=FLAGS.threads,
        warmup_batch_sizes=tuple(_positive_ints("warmup_batch_sizes", FLAGS.warmup_batch_sizes)),
        max_pixels=FLAGS.max_pixels, web=FLAGS.web_variant if FLAGS.web else None,
        web_runtime=FLAGS.web_runtime, onnx=FLAGS.onnx, max_request_pixels=FLAGS.max_request_pixels,
    )


def _positive_ints(name: str, values: list[str]) -> list[int]:
    try:
        return [int(v) for v in values]
    except ValueError:
        raise app.UsageError(f"--{name} takes integers, got {','.join(values)}.") from None


def main(argv: list[str]) -> int:
    cli.reject_arguments(argv)
    # Imported here so that --help answers before TensorFlow loads.
    from pix2pix_tf.export.exporter import export

    config = config_from_flags().validate()
    result = export(config)
    print(f"SavedModel: {result.saved_model_dir} (version {result.version}, {result.mode.describe()}, "
          f"{result.image_size}x{result.image_size}; max |diff| to {result.checkpoint}: "
          f"{result.saved_model_max_abs_diff:.2g})")
    if result.keras_latency_ms is not None:
        print(f"Latency, batch 1, median (min): Keras model call (eager, inference mode) "
              f"{result.keras_latency_ms:.1f} ms ({result.keras_latency_min_ms:.1f}); SavedModel "
              f"translate_float_deterministic {result.saved_model_latency_ms:.1f} ms "
              f"({result.saved_model_latency_min_ms:.1f}); TFLite with --threads={config.threads} below")
    if result.variants:
        print(f"TFLite: {result.tflite_dir} (batch 1, dropout off; PSNR/max|diff| against the SavedModel's "
              "translate_float_deterministic)")
        for report in result.variants:
            print("  " + report.line())
    if result.onnx:
        print(f"ONNX (onnxruntime against the SavedModel's translate_float_deterministic): {result.onnx.line()}")
    print(f"Model card: {', '.join(result.model_cards)}")
    if result.web_dir:
        print(f"Web page: {result.web_dir} (serve it: python -m http.server -d {result.web_dir})")
    broken = [r.variant for r in result.variants if not r.ok]
    if broken:
        print(f"WARNING: {', '.join(broken)} kept below the PSNR floor (--force).", file=sys.stderr)
    return 0


def run() -> None:
    """Console entry point `pix2pix-export`."""
    cli.run_program(main)


if __name__ == "__main__":
    run()
