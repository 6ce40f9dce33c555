"""What an export is asked to do (`ExportConfig`) and how it refuses (`ExportError`).

Shared by every step of the export (versions, SavedModel, TFLite), below the orchestration in
`exporter.py`; filled from export.py's flags (library code reads no flags).
"""

from __future__ import annotations

import dataclasses
from typing import Optional

from pix2pix_tf.errors import ConfigError, Pix2pixError
from pix2pix_tf.images import DEFAULT_MAX_PIXELS
from pix2pix_tf.inference.artifacts import INT8_IO_TYPES, TFLITE_VARIANTS
from pix2pix_tf.inference.mode import PAPER, InferenceMode


class ExportError(Pix2pixError):
    """An export that cannot be written or did not pass its checks."""


@dataclasses.dataclass(frozen=True)
class ExportConfig:
    """What to export and how; filled from export.py's flags (library code reads no flags)."""

    workdir: str
    export_dir: Optional[str] = None  # None: <workdir>/export.
    model_name: str = "pix2pix"
    version: Optional[int] = None  # None: the next free version.
    checkpoint: Optional[str] = None  # None: the newest checkpoint of the workdir.
    mode: InferenceMode = PAPER
    image_size: Optional[int] = None  # None: the run's crop_size.
    tflite: tuple[str, ...] = TFLITE_VARIANTS
    int8_io: str = "float32"
    calibration_examples: int = 64
    check_examples: int = 8
    data_dir: Optional[str] = None  # None: config.json's.
    force: bool = False  # Keep TFLite variants below their PSNR floor (with a warning).
    benchmark: bool = False
    threads: int = 2
    warmup_batch_sizes: tuple[int, ...] = (1,)
    max_pixels: int = DEFAULT_MAX_PIXELS  # The bytes signatures refuse larger images, before decoding.
    web: Optional[str] = None  # The TFLite variant the static web page runs (export.py --web); None: no page.
    web_runtime: Optional[str] = None  # node_modules holding LiteRT.js; None: the one beside export/web.
    onnx: bool = False  # Also the ONNX file (`onnx_model`; the `onnx` extra).
    max_request_pixels: Optional[int] = None  # Every signature refuses larger requests; None: max_pixels.

    @property
    def request_pixels(self) -> int:
        """The pixels one request may hold in all (the images of a batch together)."""
        return self.max_request_pixels or self.max_pixels

    def validate(self) -> ExportConfig:
        unknown = [v for v in self.tflite if v not in TFLITE_VARIANTS]
        if unknown:
            raise ConfigError(f"--tflite: unknown variant(s) {unknown}; choose from {', '.join(TFLITE_VARIANTS)}.")
        if self.int8_io not in INT8_IO_TYPES:
            raise ConfigError(f"--int8_io={self.int8_io!r} is not one of {', '.join(INT8_IO_TYPES)}.")
        if self.version is not None and self.version < 1:
            raise ConfigError(f"--version must be a positive integer (Serving's versions are), got {self.version}.")
        if not self.model_name or "/" in self.model_name or self.model_name.startswith("."):
            raise ConfigError(f"--model_name={self.model_name!r} must be a plain folder name.")
        if self.image_size is not None and self.image_size < 1:
            raise ConfigError(f"--image_size must be positive, got {self.image_size}.")
        for name in ("calibration_examples", "check_examples", "threads", "max_pixels"):
            if getattr(self, name) < 1:
                raise ConfigError(f"--{name} must be at least 1, got {getattr(self, name)}.")
        if self.max_request_pixels is not None and self.max_request_pixels < 1:
            raise ConfigError(f"--max_request_pixels must be at least 1, got {self.max_request_pixels}.")
        if not self.warmup_batch_sizes or min(self.warmup_batch_sizes) < 1:
            raise ConfigError("--warmup_batch_sizes must be positive integers.")
        if self.web is not None and (self.web not in self.tflite or (self.web == "int8" and self.int8_io != "float32")):
            raise ConfigError(f"--web runs --web_variant={self.web} in the page: add it to --tflite (now "
                              f"{','.join(self.tflite) or 'empty'}); the page feeds int8 with --int8_io=float32 only.")
        return self
