"""A .tflite file written by export.py, run by the LiteRT interpreter (the runtime side of the
TFLite export, which `export.tflite` writes and checks with this same runner)."""

from __future__ import annotations

from typing import Optional

import numpy as np

from pix2pix_tf.errors import InferenceError


class TFLiteModel:
    """A .tflite generator run with the LiteRT interpreter, taking and returning [-1, 1] floats
    whatever its I/O type (int8/uint8 I/O is (de)quantised with the file's own parameters)."""

    def __init__(self, model: bytes | str, threads: int = 2):
        from ai_edge_litert.interpreter import Interpreter

        kwargs = {"model_path": model} if isinstance(model, str) else {"model_content": model}
        try:
            self.interpreter = Interpreter(num_threads=threads, **kwargs)
        except ValueError as e:
            raise InferenceError(f"Cannot load the TFLite model: {e}") from e
        self.interpreter.allocate_tensors()
        self.input = self.interpreter.get_input_details()[0]
        self.output = self.interpreter.get_output_details()[0]

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(int(d) for d in self.input["shape"])

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
