"""The ONNX export target's declaration: its flags, options and folder, and the checks on
them. TensorFlow-free, so that export.py declares the flags (and --help answers) without
TensorFlow; `WORK` (`export.onnx_model`) writes, checks and publishes the artifact, imported when
the export runs (`target.Deferred`)."""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Mapping

from pix2pix_tf.export.target import Deferred, Flag, Run, Target
from pix2pix_tf.inference import onnx_runner

FLAGS = (Flag("onnx", "bool", False, "Also write the generator as ONNX (opset 17, dynamic batch/height/width, "
              "checked with onnxruntime) to <export_dir>/onnx/<model_name>/<version>; needs pip install -e "
              "\".[onnx]\" (docs/onnx.md)."),)


@dataclasses.dataclass(frozen=True)
class OnnxOptions:
    enabled: bool = False

    def validate(self) -> OnnxOptions:
        return self


def options(values: Mapping[str, Any]) -> OnnxOptions:
    return OnnxOptions(enabled=values["onnx"])


def onnx_base(export_dir: str, model_name: str) -> str:
    """`<export_dir>/onnx/<model_name>`: the ONNX files' versions, beside the SavedModels."""
    return os.path.join(export_dir, "onnx", model_name)


def _check(options: OnnxOptions, run: Run) -> None:
    onnx_runner.require()  # The `onnx` extra, before any work.


# The work (loads TensorFlow): pix2pix_tf/export/onnx_model.py.
WORK = "pix2pix_tf.export.onnx_model"

TARGET = Target("onnx", FLAGS, options, onnx_base, Deferred(WORK, "publish"), needs=("saved_model",), check=_check)
