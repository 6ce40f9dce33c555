"""What an evaluation is asked to do: `EvalConfig`, filled from the flags by `pix2pix_tf.evaluate`
(library code reads no flags) or by a script such as `pix2pix_tf.experiments.paper`."""

from __future__ import annotations

import dataclasses
from typing import Optional

from pix2pix_tf.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class EvalConfig:
    """What to evaluate and how; see docs/evaluation.md for each field's flag."""

    workdir: Optional[str] = None  # The run (config.json); found from the export when omitted.
    checkpoint: Optional[str] = None  # None: the newest readable one of the workdir.
    saved_model: Optional[str] = None
    tflite: Optional[str] = None
    split: Optional[str] = None  # None: the held-out split (test, else val).
    num_examples: Optional[int] = None  # None: the whole split.
    deterministic: bool = False
    batch_statistics: bool = True
    num_samples: int = 1
    seed: int = 0
    output_dir: Optional[str] = None
    data_dir: Optional[str] = None  # None: config.json's.
    fcn: Optional[bool] = None  # None: when the dataset has labels; True: required; False: skipped.
    segmenter: Optional[str] = None  # A segmentation SavedModel; None: the built-in one (shapes).
    segmenter_input: str = "signed"
    segmenter_cache: Optional[str] = None
    segmenter_steps: int = 800
    fid: bool = False
    inception_weights: Optional[str] = None
    html_examples: int = 50
    grid_examples: int = 6
    threads: int = 2
    progress: bool = True
    native_size: bool = False  # Each image at its own size (`inference.geometry`), not the run's square.

    @property
    def exported(self) -> bool:
        """The model is an export (--saved_model or --tflite), not a checkpoint of --workdir."""
        return bool(self.saved_model or self.tflite)

    def validate(self) -> EvalConfig:
        given = [n for n in ("saved_model", "tflite") if getattr(self, n)]
        if len(given) > 1:
            raise ConfigError("Give at most one of --saved_model and --tflite (the default is the checkpoint).")
        if not self.workdir and not given:
            raise ConfigError("Give --workdir (the training run), and optionally --saved_model or --tflite.")
        if self.checkpoint and given:
            raise ConfigError(f"--checkpoint and --{given[0]} name two different models: give one.")
        for name in ("num_samples", "threads", "segmenter_steps"):
            if getattr(self, name) < 1:
                raise ConfigError(f"--{name} must be at least 1, got {getattr(self, name)}.")
        if self.num_examples is not None and self.num_examples < 1:
            raise ConfigError(f"--num_examples must be at least 1, got {self.num_examples}.")
        if self.html_examples < 0 or self.grid_examples < 0:
            raise ConfigError("--html_examples and --grid_examples must be non-negative.")
        if self.fcn is False and self.segmenter:
            raise ConfigError("--segmenter was given with --nofcn.")
        if self.native_size and (self.fcn or self.segmenter):
            raise ConfigError("The FCN-score is computed at one fixed size (its segmenter's): give --nofcn, or drop "
                              "--native_size.")
        if self.native_size and self.tflite:
            raise ConfigError("--native_size needs a model that takes any size: a TFLite file has one fixed size. "
                              "Evaluate --workdir or --saved_model, or drop --native_size.")
        return self
