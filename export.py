"""Exports a trained generator for TensorFlow Serving and TFLite (not yet available).

`python export.py --workdir=runs/shapes` will write a SavedModel and TFLite files; this
release only says so, without a traceback.
"""

from __future__ import annotations

import sys

from absl import app, flags

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "The training run to export.")


def main(argv: list[str]) -> int:
    del argv
    print("error: export is not available yet: SavedModel and TFLite export arrive in the next "
          "release. Checkpoints in --workdir/checkpoints can already be restored with "
          "pix2pix_tf.trainer.", file=sys.stderr)
    return 2


def run() -> None:
    """Console entry point `pix2pix-export`."""
    app.run(main)


if __name__ == "__main__":
    run()
