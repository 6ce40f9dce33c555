"""Translates images with a trained generator: `python -m pix2pix_tf.translate --workdir=runs/x --output_dir=out in/`.

The model comes from a training run (`--workdir`, its newest checkpoint or `--checkpoint`),
an exported SavedModel (`--saved_model`), a TFLite file (`--tflite`) or an ONNX file (`--onnx`). Inputs are image
files and folders (searched recursively for .png/.jpg/.jpeg/.bmp/.gif/.webp). With `--paired`
each file is a dataset pair A|B side by side and the run's direction picks the input half
(the other half is the target, shown with `--side_by_side`). Also installed as
`pix2pix-translate`.
"""

from __future__ import annotations

import sys

from pix2pix_tf import cli
from pix2pix_tf.errors import Interrupted, one_line

cli.quiet_tensorflow()

from absl import app, flags  # noqa: E402

from pix2pix_tf.inference import request  # noqa: E402

FLAGS = flags.FLAGS

MODEL = request.define_flags(request.Offer(verb="Translate with", image_size=True, max_pixels=True,
                                           max_pixels_default=request.DEFAULT_MAX_PIXELS))
cli.define_multi_path("input", [], "Image files or folders (repeatable; positional arguments work too).")
cli.define_path("output_dir", None, "Where translated PNGs go (folder structure of the inputs is kept; "
                "an input is never written over, see docs/serving.md).")
flags.DEFINE_bool("paired", False, "Inputs are A|B pairs side by side (the datasets' format); the run's "
                  "direction picks the input half.")
flags.DEFINE_enum("direction", None, ["AtoB", "BtoA"], "With --paired: override the direction recorded by the "
                  "run or the export.")
flags.DEFINE_bool("side_by_side", False, "Write input | output (| target with --paired) instead of the output.")
flags.DEFINE_bool("keep_size", False, "Resize each output back to its input's size (default: the model's size).")
flags.DEFINE_bool("progress", True, "Show a progress bar for more than one image.")


def config_from_flags(argv: list[str]):
    """The typed translation request; nothing below this module reads flags. The model flags
    are checked first, before TensorFlow loads."""
    model = request.from_flags(MODEL)
    inputs = tuple(FLAGS.input) + tuple(argv[1:])
    if not inputs:
        raise app.UsageError("Give images or folders to translate (positional, or --input).")
    if "" in inputs:
        raise app.UsageError("An empty input path: name an image file or folder.")
    if not FLAGS.output_dir:
        raise app.UsageError("--output_dir is required.")
    from pix2pix_tf.inference.files import TranslateConfig  # Here, not above: --help answers before TensorFlow loads.

    return TranslateConfig(inputs=inputs, output_dir=FLAGS.output_dir, model=model, paired=FLAGS.paired,
                           direction=FLAGS.direction, side_by_side=FLAGS.side_by_side, keep_size=FLAGS.keep_size,
                           progress=FLAGS.progress)


def main(argv: list[str]) -> int:
    try:
        config = config_from_flags(argv)  # A wrong request is refused before TensorFlow loads.
        from pix2pix_tf.inference.files import translate_files  # Loads TensorFlow.

        result = translate_files(config)
    except Interrupted as stop:
        stop.done.append("before translating any image")
        raise
    for path, message in result.failed:
        print(f"error: {one_line(path)}: {message}", file=sys.stderr)
    summary = (f"Translated {len(result.written)} image(s) into {result.output_dir} with {result.model}"
               + (f"; {len(result.failed)} failed" if result.failed else ""))
    if result.interrupted:
        stop = result.interrupted
        left = result.planned - len(result.written) - len(result.failed)
        stop.done.append(f"{summary[0].lower()}{summary[1:]}; {left} of {result.planned} not translated")
        raise stop
    cli.say(summary)
    return 1 if result.failed else 0


def run() -> None:
    """Console entry point `pix2pix-translate`."""
    cli.run_program(main)


if __name__ == "__main__":
    run()
