"""Evaluates a trained generator: `python -m pix2pix_tf.evaluate --workdir=runs/x`.

L1, PSNR, SSIM, the paper's colour test and FCN-score (and FID with local Inception
weights) of a checkpoint, SavedModel, TFLite or ONNX file on a split of the run's dataset; see
docs/evaluation.md. Also installed as `pix2pix-evaluate`. The library call is
`pix2pix_tf.evaluation.evaluator.evaluate(EvalConfig(...))`.
"""

from __future__ import annotations

from pix2pix_tf import cli

cli.quiet_tensorflow()

from absl import flags  # noqa: E402

from pix2pix_tf.evaluation.config import EvalConfig  # noqa: E402
from pix2pix_tf.inference import request  # noqa: E402

FLAGS = flags.FLAGS

MODEL = request.define_flags(request.Offer(
    verb="Evaluate", seed=0, workdir_names_run=True,
    workdir_note=" Its config.json gives the dataset, direction and preprocessing of the evaluation.",
    native_note=" Each output is compared with its target at that size; no FCN-score."))
flags.DEFINE_string("split", None, "Dataset split (default: test, else val).")
flags.DEFINE_integer("num_examples", None, "Evaluate the first N images of the split (default: all).")
flags.DEFINE_integer("num_samples", 1, "Dropout samples per image; metrics are averaged over them (mean +- std).")
cli.define_path("output_dir", None, "Where metrics.json, index.html and grid.png go "
                "(default <workdir>/eval/<split>_<model>_<mode>).")
cli.define_path("data_dir", None, "tensorflow-datasets data_dir (default: the run's).")
flags.DEFINE_bool("fcn", None, "FCN-score: --fcn requires it, --nofcn skips it; default: computed when the "
                  "dataset has labels (shapes; cityscapes with --segmenter).")
cli.define_path("segmenter", None, "Segmentation SavedModel for the FCN-score (default for shapes: one the "
                "package trains on real photos and caches).")
flags.DEFINE_enum("segmenter_input", "signed", ["signed", "unit", "byte"], "Pixel range --segmenter takes: "
                  "[-1, 1], [0, 1] or [0, 255].")
cli.define_path("segmenter_cache", None, "Cache of the built-in segmenters (default "
                "~/.cache/pix2pix_tf/segmenters).")
flags.DEFINE_integer("segmenter_steps", 800, "Training steps of the built-in segmenter.")
flags.DEFINE_bool("fid", False, "Compute FID (needs --inception_weights: nothing is downloaded).")
cli.define_path("inception_weights", None, "Local Keras Inception-v3 'notop' weights file (.h5) for FID.")
flags.DEFINE_integer("html_examples", 50, "Images shown in index.html.")
flags.DEFINE_integer("grid_examples", 6, "Rows of grid.png.")
flags.DEFINE_bool("progress", True, "Show a progress bar.")


def config_from_flags():
    """The typed evaluation request; nothing below this module reads flags. The model flags
    are checked first, before TensorFlow loads."""
    model = request.from_flags(MODEL)
    f = FLAGS
    return EvalConfig(
        model=model, split=f.split, num_examples=f.num_examples, num_samples=f.num_samples, output_dir=f.output_dir,
        data_dir=f.data_dir, fcn=f.fcn, segmenter=f.segmenter, segmenter_input=f.segmenter_input,
        segmenter_cache=f.segmenter_cache, segmenter_steps=f.segmenter_steps, fid=f.fid,
        inception_weights=f.inception_weights, html_examples=f.html_examples, grid_examples=f.grid_examples,
        progress=f.progress)


def main(argv: list[str]) -> int:
    cli.reject_arguments(argv)
    config = config_from_flags()  # A wrong request is refused before TensorFlow loads.
    from pix2pix_tf.evaluation.evaluator import evaluate  # Here, not above: --help answers before TensorFlow loads.
    from pix2pix_tf.evaluation.report import format_table

    result = evaluate(config)
    written = [path for path in (result.metrics_path, result.html_path, result.grid_path) if path]
    cli.say(f"{format_table(result.metrics)}\nWritten: {', '.join(written)}")
    return 0


def run() -> None:
    """Console entry point `pix2pix-evaluate`."""
    cli.run_program(main)


if __name__ == "__main__":
    run()
