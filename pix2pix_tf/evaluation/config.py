"""What an evaluation is asked to do: `EvalConfig`, filled from the flags by `pix2pix_tf.evaluate`
(library code reads no flags) or by a script such as `pix2pix_tf.experiments.paper`."""

from __future__ import annotations

import dataclasses
import os
from typing import Optional

from pix2pix_tf.errors import ConfigError
from pix2pix_tf.inference.request import ModelRequest
from pix2pix_tf.workdir import check_not_a_file, check_tensorflow_can_read

MAX_SAMPLES = 1000  # --num_samples: dropout samples per image, each with its own statistics.


@dataclasses.dataclass(frozen=True)
class EvalConfig:
    """What to evaluate and how; see docs/evaluation.md for each field's flag."""

    model: ModelRequest  # Which model (and run: `ModelRequest.workdir`), and how to run it.
    split: Optional[str] = None  # None: the held-out split (test, else val).
    num_examples: Optional[int] = None  # None: the whole split.
    num_samples: int = 1
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
    progress: bool = True

    @property
    def seed(self) -> int:
        """The seed of the dropout noise: an evaluation repeats, so no seed given is seed 0."""
        return self.model.seed if self.model.seed is not None else 0

    def validate(self) -> EvalConfig:
        if self.segmenter_steps < 1:
            raise ConfigError(f"--segmenter_steps must be at least 1, got {self.segmenter_steps}.")
        if not 1 <= self.num_samples <= MAX_SAMPLES:  # Each sample's statistics are held for the whole split.
            raise ConfigError(f"--num_samples must be from 1 to {MAX_SAMPLES} (each translates every image once "
                              f"more), got {self.num_samples}.")
        if self.num_examples is not None and not 1 <= self.num_examples < 2**63:  # tf.data counts in int64.
            raise ConfigError(f"--num_examples must be at least 1 and below 2^63, got {self.num_examples}.")
        if self.html_examples < 0 or self.grid_examples < 0:
            raise ConfigError("--html_examples and --grid_examples must be non-negative.")
        if self.fcn is False and self.segmenter:
            raise ConfigError("--segmenter was given with --nofcn.")
        for flag in ("segmenter", "segmenter_cache"):  # SavedModels, read back by TensorFlow.
            if getattr(self, flag):
                check_tensorflow_can_read(os.path.expanduser(getattr(self, flag)), f"--{flag}")
        if self.output_dir:
            check_not_a_file(self.output_dir, "--output_dir")
        if self.segmenter_cache:
            check_not_a_file(os.path.expanduser(self.segmenter_cache), "--segmenter_cache")
        if self.model.native_size and (self.fcn or self.segmenter):
            raise ConfigError("The FCN-score is computed at one fixed size (its segmenter's): give --nofcn, or drop "
                              "--native_size.")
        return self
