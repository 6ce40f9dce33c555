"""A .tflite file written by export.py, run by the LiteRT interpreter (the runtime side of the
TFLite export, which `export.tflite` writes and checks with this same runner), and the
`--tflite` model source: one fixed size, no dropout."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Optional

import numpy as np

from pix2pix_tf.errors import ConfigError, InferenceError
from pix2pix_tf.inference import artifacts
from pix2pix_tf.inference.source_kind import Recorded, SourceKind
from pix2pix_tf.inference.translator import Translator, checked_outputs, image_output_channels, not_a_generator

if TYPE_CHECKING:
    from pix2pix_tf.inference.mode import InferenceMode
    from pix2pix_tf.inference.source_kind import ModelSource


class TFLiteModel:
    """A .tflite generator run with the LiteRT interpreter, taking and returning [-1, 1] floats
    whatever its I/O type (int8/uint8 I/O is (de)quantised with the file's own parameters)."""

    def __init__(self, model: bytes | str, threads: int = 2):
        from ai_edge_litert.interpreter import Interpreter

        kwargs = {"model_path": model} if isinstance(model, str) else {"model_content": model}
        try:
            self.interpreter = Interpreter(num_threads=threads, **kwargs)
        except ValueError as e:  # LiteRT's message ("not a valid Flatbuffer buffer") does not say which file.
            named = f" {model}" if isinstance(model, str) else ""
            raise InferenceError(f"Cannot load the TFLite model{named}: {e}") from e
        self.interpreter.allocate_tensors()
        self.inputs, self.outputs = self.interpreter.get_input_details(), self.interpreter.get_output_details()
        if not self.inputs or not self.outputs:
            raise InferenceError(f"The TFLite model{f' {model}' if isinstance(model, str) else ''} has no "
                                 f"{'input' if not self.inputs else 'output'}.")
        self.input, self.output = self.inputs[0], self.outputs[0]

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(int(d) for d in self.input["shape"])

    @property
    def input_shape_signature(self) -> tuple[int, ...]:
        """The input's shape as the file declares it: -1 where a size is left open."""
        return tuple(int(d) for d in self.input.get("shape_signature", self.input["shape"]))

    @property
    def io_dtype(self) -> str:
        return np.dtype(self.input["dtype"]).name

    @property
    def io_quantization(self) -> Optional[dict]:
        """{"input": [scale, zero_point], "output": [...]} for integer I/O, else None: an app
        quantises [-1, 1] pixels x as round(x / scale) + zero_point."""
        if self.input["dtype"] == np.float32:
            return None
        return {name: [float(d["quantization"][0]), int(d["quantization"][1])]
                for name, d in (("input", self.input), ("output", self.output))}

    def __call__(self, image: np.ndarray) -> np.ndarray:
        """One float32 [1, H, W, C] image in [-1, 1] -> [1, H, W, C_out] in [-1, 1]."""
        image = np.asarray(image, np.float32)
        if image.shape != self.input_shape:
            raise InferenceError(f"This TFLite model takes images of shape {self.input_shape} (batch 1, "
                                           f"fixed size), got {image.shape}.")
        self.interpreter.set_tensor(self.input["index"], _quantize(image, self.input))
        self.interpreter.invoke()
        return _dequantize(self.interpreter.get_tensor(self.output["index"]), self.output)


def _quantize(x: np.ndarray, detail: dict) -> np.ndarray:
    if detail["dtype"] == np.float32:
        return x
    scale, zero_point = detail["quantization"]
    info = np.iinfo(detail["dtype"])
    return np.clip(np.round(x / scale + zero_point), info.min, info.max).astype(detail["dtype"])


def _dequantize(x: np.ndarray, detail: dict) -> np.ndarray:
    if detail["dtype"] == np.float32:
        return x
    scale, zero_point = detail["quantization"]
    return (x.astype(np.float32) - zero_point) * scale


# ----------------------------------------------------------------------------- the --tflite model source


def resolve(path: str) -> Recorded:
    """The file and the report export.py wrote beside it ({} without one)."""
    if not os.path.isfile(path):
        raise ConfigError(f"--tflite={path} is not a file.")
    return Recorded(path, metadata=artifacts.read_tflite_report(path))


def open_tflite(source: ModelSource, mode: InferenceMode, *, seed: Optional[int], image_size: Optional[int],
                threads: int) -> Translator:
    """The file in the LiteRT interpreter, at the one size it was exported at."""
    model = TFLiteModel(source.path, threads=threads)
    if (len(model.inputs), len(model.outputs)) != (1, 1):
        raise not_a_generator(source.path, f"it takes {len(model.inputs)} inputs and gives {len(model.outputs)} "
                                           "outputs, not one image batch each")
    shape = model.input_shape
    if len(shape) != 4 or shape[0] != 1 or shape[1] != shape[2] or model.input_shape_signature != shape:
        raise ConfigError(f"{source.path} takes input of shape {list(model.input_shape_signature)}; expected "
                          "[1, S, S, C] with S fixed, as export.py writes.")
    if image_size and image_size != shape[1]:
        raise ConfigError(f"{source.path} is fixed to {shape[1]}x{shape[1]} images; --image_size={image_size} "
                          "cannot change it (export again with --image_size).")
    output_nc = image_output_channels(source.path, shape, [int(d) for d in model.output["shape"]],
                                      source.metadata.get("output_nc"))
    return Translator(f"TFLite {source.path} ({model.io_dtype} I/O, no dropout)", shape[1], shape[3], output_nc,
                      source.direction, source.runs_as(mode),
                      checked_outputs(source.path, output_nc, lambda image, index: model(image)))


KIND = SourceKind(name="tflite", flag="tflite", resolve=resolve, open=open_tflite,
                  noun="a .tflite file written by export.py (one fixed size, no dropout)",
                  any_size=False, has_dropout=False)
