"""The TFLite export target's declaration: its flags, options and folder, and the checks on
them. TensorFlow-free, so that export.py declares the flags (and --help answers) without
TensorFlow; `WORK` (`export.tflite`) writes, checks and publishes the artifact, imported when
the export runs (`target.Deferred`)."""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Mapping, Optional

from pix2pix_tf.errors import ConfigError
from pix2pix_tf.export.config import TrainingInputs
from pix2pix_tf.export.target import Deferred, Flag, Target
from pix2pix_tf.inference.artifacts import INT8_IO_TYPES, TFLITE_VARIANTS

FLAGS = (
    Flag("tflite", "list", TFLITE_VARIANTS, "TFLite variants to write (comma-separated; empty for none): float32, "
         "float16, dynamic_int8 (int8 weights), int8 (int8 weights and activations, calibrated on the run's training "
         "data)."),
    Flag("int8_io", "enum", "float32", "Input/output type of the int8 variant.", INT8_IO_TYPES),
    Flag("calibration_examples", "integer", 64, "Training images that calibrate the int8 variant."),
    Flag("force", "bool", False, "Keep TFLite variants whose PSNR against the SavedModel is below its floor."),
)


@dataclasses.dataclass(frozen=True)
class Options:
    """Which variants, and how the int8 one is calibrated and fed."""

    variants: tuple[str, ...] = TFLITE_VARIANTS
    int8_io: str = "float32"
    calibration_examples: int = 64
    force: bool = False  # Keep variants below their PSNR floor (with a warning).

    @property
    def enabled(self) -> bool:
        return bool(self.variants)

    def validate(self) -> Options:
        unknown = [v for v in self.variants if v not in TFLITE_VARIANTS]
        if unknown:
            raise ConfigError(f"--tflite: unknown variant(s) {unknown}; choose from {', '.join(TFLITE_VARIANTS)}.")
        if self.int8_io not in INT8_IO_TYPES:
            raise ConfigError(f"--int8_io={self.int8_io!r} is not one of {', '.join(INT8_IO_TYPES)}.")
        if self.calibration_examples < 1:
            raise ConfigError(f"--calibration_examples must be at least 1, got {self.calibration_examples}.")
        given = [f"--{name}={value}" for name, value, default in (
            ("int8_io", self.int8_io, Options.int8_io), ("calibration_examples", self.calibration_examples,
                                                         Options.calibration_examples)) if value != default]
        if given and "int8" not in self.variants:  # Else it would do nothing, without a word.
            raise ConfigError(f"{' and '.join(given)} {'set' if len(given) > 1 else 'sets'} the int8 variant, and "
                              f"--tflite writes none (now "
                              f"{','.join(self.variants) or 'empty'}): add int8 to --tflite, or drop {given[0]}.")
        return self


def options(values: Mapping[str, Any]) -> Options:
    return Options(variants=tuple(v for v in values["tflite"] if v), int8_io=values["int8_io"],
                   calibration_examples=values["calibration_examples"], force=values["force"])


def tflite_base(export_dir: str, model_name: str) -> str:
    """`<export_dir>/tflite/<model_name>`: the TFLite files' versions, beside the SavedModels."""
    return os.path.join(export_dir, "tflite", model_name)


def training_inputs(options: Options) -> Optional[TrainingInputs]:
    """The full-int8 variant is calibrated on the run's training inputs."""
    if "int8" not in options.variants:
        return None
    return TrainingInputs(options.calibration_examples, "Full-int8 TFLite needs the run's training data for "
                          "calibration", "leave int8 out of --tflite")


# The work (loads TensorFlow): pix2pix_tf/export/tflite.py.
WORK = "pix2pix_tf.export.tflite"

TARGET = Target("tflite", FLAGS, options, tflite_base, Deferred(WORK, "publish"), needs=("saved_model",),
                training_inputs=training_inputs)
