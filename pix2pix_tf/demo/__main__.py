"""A web page to try a trained generator: `python -m pix2pix_tf.demo --workdir=runs/quickstart`.

Draw the input (in the colours of the run's dataset) or upload an image and see the output
beside it; the run's held-out inputs are one-click examples. The model is a training run
(`--workdir`), an exported SavedModel (`--saved_model`), a TFLite file (`--tflite`), an ONNX
file (`--onnx`) or a running TensorFlow Serving (`--serving_url`, `--model_name`). Needs the `demo` extra
(`pip install -e ".[demo]"`, Gradio); runs offline. Also installed as `pix2pix-demo`. See
docs/demo.md.
"""

from __future__ import annotations

import logging
import os
import tempfile

from pix2pix_tf import cli

cli.quiet_tensorflow()
# Gradio reports usage to its makers unless told not to; the demo contacts nothing outside
# this machine. Set before Gradio is imported.
os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"

from absl import flags  # noqa: E402

from pix2pix_tf.errors import ConfigError  # noqa: E402
from pix2pix_tf.inference import request  # noqa: E402

FLAGS = flags.FLAGS

MODEL = request.define_flags(request.Offer(
    verb="Serve", mode=False, serving=True, max_pixels=True,
    workdir_note=" Its dataset decides the drawing colours and gives the examples (so does an export's run)."))
flags.DEFINE_string("host", "127.0.0.1", "Address to listen on (0.0.0.0: every interface, for other machines).")
flags.DEFINE_integer("port", 7860, "Port to listen on.")
flags.DEFINE_integer("num_examples", 6, "Held-out inputs of the run shown as examples (0: none).")


def config_from_flags():
    """The typed demo request; nothing below this module reads flags. The model flags are
    checked first, before TensorFlow loads."""
    model = request.from_flags(MODEL)
    from pix2pix_tf.demo.model import DemoConfig  # Here, not above: --help answers before TensorFlow loads.

    return DemoConfig(model=model, host=FLAGS.host, port=FLAGS.port, num_examples=FLAGS.num_examples)


def main(argv: list[str]) -> int:
    cli.reject_arguments(argv)
    config = config_from_flags()
    # Gradio keeps uploads in its temp folder, read when Gradio is imported: one of this run's
    # own, removed with the examples when the demo exits.
    with tempfile.TemporaryDirectory(prefix="pix2pix_demo_") as run_dir:
        os.environ["GRADIO_TEMP_DIR"] = os.path.join(run_dir, "uploads")
        return _serve(config, os.path.join(run_dir, "examples"))


def _serve(config, examples_dir: str) -> int:
    try:
        from pix2pix_tf.demo import app  # Gradio is the optional `demo` extra: imported only to serve.
    except ModuleNotFoundError as e:
        if e.name != "gradio":
            raise
        raise ConfigError("The demo needs Gradio, which is not installed: pip install -e \".[demo]\"") from e
    logging.getLogger("httpx").setLevel(logging.WARNING)  # Gradio's own requests to itself, one line each.
    from pix2pix_tf.demo.model import load_demo_model  # Here, not above: --help answers before TensorFlow loads.

    app.check_address(config)
    os.makedirs(examples_dir)
    model = load_demo_model(config, examples_dir)
    app.serve(model, config, allowed_paths=(examples_dir,))
    return 0


def run() -> None:
    """Console entry point `pix2pix-demo`."""
    cli.run_program(main)


if __name__ == "__main__":
    run()
