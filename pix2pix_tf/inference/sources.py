"""One model source: a training run's checkpoint, an exported SavedModel, a TFLite or an ONNX file.

translate, evaluate, the demo and export all start from "the model the user named". Each
format a model can be given in is one `SourceKind` in its own module, and `KINDS` below lists
them, one line each: the programs' flags (`inference.request`) and `ModelSource` read it, so a
new format is its module, its line here, its tests and its docs.

`ModelSource.resolve(flag, path)` reads what is recorded about the model once (the run's
config.json, the export's metadata, the TFLite report, the ONNX file's own metadata) without
loading TensorFlow, so that a wrong path is answered at once. `source.open(mode)` then gives a
`Translator` over any of them: float32 [1, S, S, C_in] in [-1, 1] in, [1, S, S, C_out] out,
with the size, channels, direction and the inference mode the model really runs in (an export
fixed its batch-norm mode when it was made; a TFLite or ONNX file has no dropout).
`inference.geometry.native_translator` turns the Translator of a kind that takes any size
into one that takes any size and returns the same size.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Optional

from absl import logging

from pix2pix_tf.config import TrainConfig
from pix2pix_tf.errors import ConfigError
from pix2pix_tf.inference import checkpoint_source, onnx_runner, saved_model_source, tflite_runner
from pix2pix_tf.inference.mode import InferenceMode
from pix2pix_tf.inference.source_kind import SourceKind, safe_label
from pix2pix_tf.inference.translator import Translator
from pix2pix_tf.workdir import Workdir

KINDS: tuple[SourceKind, ...] = (
    checkpoint_source.KIND,
    saved_model_source.KIND,
    tflite_runner.KIND,
    onnx_runner.KIND,
)


def kind_named(flag: str) -> SourceKind:
    """The kind whose flag is `flag` (workdir, saved_model, tflite, onnx)."""
    for kind in KINDS:
        if kind.flag == flag:
            return kind
    raise ConfigError(f"No model source is named by --{flag}; the kinds are "
                      f"{', '.join('--' + k.flag for k in KINDS)}.")


class ModelSource:
    """The model a command was given, and what is recorded about it (read once)."""

    def __init__(self, spec: SourceKind, path: str, *, checkpoint: Optional[str] = None,
                 train: Optional[TrainConfig] = None, metadata: Optional[dict[str, Any]] = None):
        self.spec = spec
        self.kind = spec.name  # checkpoint, saved_model, tflite, onnx: what reports and labels say.
        self.path = path  # The workdir, the SavedModel's version folder, or the .tflite or .onnx file.
        self.requested_checkpoint = checkpoint
        self.checkpoint: Optional[str] = None  # The checkpoint restored, once opened.
        self.train = train  # The run's config.json (checkpoint sources).
        self.metadata = metadata or {}  # The export's metadata, the TFLite report, the ONNX file's metadata.

    @classmethod
    def resolve(cls, flag: str, path: str, *, checkpoint: Optional[str] = None) -> ModelSource:
        """The model `--<flag>=<path>` names (with `--checkpoint` for a workdir), its record read."""
        spec = kind_named(flag)
        recorded = spec.resolve(path)
        return cls(spec, recorded.path, checkpoint=checkpoint, train=recorded.train, metadata=recorded.metadata)

    @property
    def direction(self) -> Optional[str]:
        """The training run's direction, as recorded by the run or the export."""
        return self.train.data.direction if self.train else self.metadata.get("direction")

    @property
    def exported_mode(self) -> Optional[dict[str, bool]]:
        """The inference mode an export was made in ({"dropout", "batch_statistics"}); None
        for a checkpoint (any mode) or an export that does not record it."""
        return self.metadata.get("mode")

    @property
    def has_dropout(self) -> bool:
        """Paper mode differs from deterministic: the kind can have dropout and, for an
        export, it was exported with it."""
        return self.spec.has_dropout and bool((self.exported_mode or {}).get("dropout", True))

    @property
    def run_workdir(self) -> Optional[str]:
        """The training run of the model: the workdir, or the run an export was made from
        (its metadata names the checkpoint, which lives in the run's checkpoints folder)
        when that run still exists."""
        if self.train is not None:
            return self.path
        checkpoint = self.metadata.get("checkpoint")
        if not isinstance(checkpoint, str):
            return None
        run = Workdir(os.path.dirname(os.path.dirname(checkpoint)))
        if run.checkpoints == os.path.dirname(checkpoint) and run.has_config():
            return run.root
        return None

    @property
    def label(self) -> str:
        """A short name for files and folders: ckpt-1000, savedmodel-3, tflite-pix2pix_float32."""
        return safe_label(self.spec.label(self))

    def runs_as(self, mode: InferenceMode) -> InferenceMode:
        """`mode` as this model runs it: an export's recorded batch-norm mode, dropout only
        where the kind and the export have it."""
        recorded = self.exported_mode or {}
        return dataclasses.replace(mode, dropout=mode.dropout and self.has_dropout,
                                   batch_statistics=bool(recorded.get("batch_statistics", mode.batch_statistics)))

    def open(self, mode: InferenceMode, *, seed: Optional[int] = None, image_size: Optional[int] = None,
             threads: int = 2) -> Translator:
        """The generator in `mode` (as far as the source allows: see `Translator.mode`).
        `seed` seeds a checkpoint's dropout noise; `image_size` overrides the size a model
        that takes any size runs at; `threads` is for the TFLite and ONNX runtimes."""
        if self.exported_mode is not None:
            exported = bool(self.exported_mode.get("batch_statistics", True))
            if exported and not mode.batch_statistics:
                logging.warning("--nobatch_statistics applies to checkpoints; %s was exported with "
                                "batch_statistics=%s: using that.", self.path, exported)
        return self.spec.open(self, mode, seed=seed, image_size=image_size, threads=threads)
