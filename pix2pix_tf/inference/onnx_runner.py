"""An ONNX file written by `export.py --onnx`, run by onnxruntime (the runtime side of the ONNX
export, which `export.onnx_model` writes and checks with this same runner). onnxruntime is an
optional dependency (the `onnx` extra): it is imported only when a file is opened. Also the
`--onnx` model source: any size that is a multiple of the file's size multiple, no dropout.
"""

from __future__ import annotations

import importlib.util
import json
import os
from typing import TYPE_CHECKING, Any, Optional

import numpy as np

from pix2pix_tf import catalogue
from pix2pix_tf.errors import ConfigError, InferenceError
from pix2pix_tf.inference import artifacts
from pix2pix_tf.inference.source_kind import Recorded, SourceKind, export_size
from pix2pix_tf.inference.translator import Translator, checked_outputs, image_output_channels, not_a_generator

if TYPE_CHECKING:
    from pix2pix_tf.inference.mode import InferenceMode
    from pix2pix_tf.inference.source_kind import ModelSource

INSTALL = 'pip install -e ".[onnx]"'


def require(*modules: str) -> None:
    """Refuses, before any work, a request that needs a missing part of the `onnx` extra."""
    missing = [m for m in (modules or ("tf2onnx", "onnx", "onnxruntime")) if importlib.util.find_spec(m) is None]
    if missing:
        raise ConfigError(f"ONNX needs {', '.join(missing)} (not installed): {INSTALL}")


def _runtime_errors() -> tuple[type, ...]:
    from onnxruntime.capi import onnxruntime_pybind11_state as state

    return (state.Fail, state.InvalidArgument, state.InvalidGraph, state.InvalidProtobuf, state.NoSuchFile,
            state.NotImplemented, state.RuntimeException)


class OnnxModel:
    """An ONNX generator run by onnxruntime on the CPU: float32 NHWC in [-1, 1] in and out, the
    sides checked against the file's size multiple so that a wrong size is a message."""

    def __init__(self, path: str, threads: int = 2):
        require("onnxruntime")
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
        options.log_severity_level = 3  # Errors only: its warnings are about graph fusions, not the user.
        try:
            self.session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        except _runtime_errors() as e:
            raise ConfigError(f"Cannot load the ONNX model {path}: {e}") from e
        self.metadata = artifacts.checked_record(path, _decoded(self.session.get_modelmeta().custom_metadata_map))
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        if len(inputs) != 1 or not outputs:
            raise not_a_generator(path, f"it takes {len(inputs)} inputs and gives {len(outputs)} outputs, not one "
                                        "image batch in and out")
        self.input, self.output = inputs[0], outputs[0]
        shape = self.input.shape
        if self.input.type != "tensor(float)" or len(shape) != 4 or not isinstance(shape[3], int):
            raise ConfigError(f"{path} takes {self.input.type} {shape}; expected float32 [batch, height, width, "
                              "channels] as export.py --onnx writes.")
        self.input_nc = int(shape[3])
        if self.output.type != "tensor(float)":
            raise not_a_generator(path, f"its output is {self.output.type}, not float32 [N, H, W, C]")
        self.output_nc = image_output_channels(path, shape, self.output.shape or None, self.metadata.get("output_nc"))
        self.size_multiple: Optional[int] = self.metadata.get("size_multiple")

    def __call__(self, images: np.ndarray) -> np.ndarray:
        """float32 [N, H, W, C_in] in [-1, 1] -> [N, H, W, C_out] in [-1, 1]."""
        images = np.asarray(images, np.float32)
        if images.ndim != 4 or images.shape[3] != self.input_nc:
            raise InferenceError(f"This ONNX model takes [batch, height, width, {self.input_nc}], got {images.shape}.")
        multiple = self.size_multiple
        if multiple and (images.shape[1] % multiple or images.shape[2] % multiple):
            raise InferenceError(f"This ONNX model takes sides that are multiples of {multiple}, got "
                                 f"{images.shape[2]}x{images.shape[1]}.")
        try:
            return self.session.run([self.output.name], {self.input.name: images})[0]
        except _runtime_errors() as e:
            raise InferenceError(f"onnxruntime cannot translate it: {e}") from None


def read_metadata(path: str) -> dict[str, Any]:
    """The file's metadata_props, decoded ({} for a file that has none)."""
    return OnnxModel(path, threads=1).metadata


def _decoded(properties: dict[str, str]) -> dict[str, Any]:
    """metadata_props with their JSON values decoded; a value that is not JSON stays a string."""
    metadata = {}
    for key, value in properties.items():
        try:
            metadata[key] = json.loads(value)
        except (ValueError, RecursionError):
            metadata[key] = value
    return metadata


def resolve(path: str) -> Recorded:
    """The file and its own metadata (read with onnxruntime, once the path is known to be a file)."""
    if not os.path.isfile(path):
        raise ConfigError(f"--onnx={path} is not a file.")
    return Recorded(path, metadata=read_metadata(path))


def open_translator(source: ModelSource, mode: InferenceMode, *, seed: Optional[int], image_size: Optional[int],
                    threads: int) -> Translator:
    """The file in onnxruntime: any size that is a multiple of the file's size multiple, so
    `--native_size` works too."""
    model = OnnxModel(source.path, threads=threads)
    size = export_size(source, image_size)
    multiple = model.size_multiple
    if multiple:
        catalogue.check_side("--image_size", size, multiple, source.path)
    call = checked_outputs(source.path, model.output_nc, lambda image, index: model(image))
    return Translator(f"ONNX {source.path} (onnxruntime, no dropout)", size, model.input_nc, model.output_nc,
                      source.direction, source.runs_as(mode), call, size_multiple=multiple)


KIND = SourceKind(name="onnx", flag="onnx", resolve=resolve, open=open_translator,
                  noun="an .onnx file written by export.py --onnx (onnxruntime, the `onnx` extra; no dropout)",
                  any_size=True, has_dropout=False)
