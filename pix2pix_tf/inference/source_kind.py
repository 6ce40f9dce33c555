"""What a model source is: one `SourceKind` per format a model can be given in, and the
`ModelSource` a command was given (a kind, a path and what is recorded about it).

A kind says which flag names it, what is recorded about a model of its kind (read by
`resolve`, without TensorFlow), how it opens into a `Translator`, and what it can do (take
any size, have dropout, seed its noise). `inference.sources.KINDS` lists them, one line per
kind; the flags of every program (`inference.request`) and `sources.resolve` read that list, so a
new format is its own module, its line there, its tests and its docs.
"""

from __future__ import annotations

import dataclasses
import os
import re
from typing import TYPE_CHECKING, Any, Callable, Optional, Protocol

from absl import logging

from pix2pix_tf.config import TrainConfig
from pix2pix_tf.errors import ConfigError
from pix2pix_tf.workdir import Workdir

if TYPE_CHECKING:
    from pix2pix_tf.inference.mode import InferenceMode
    from pix2pix_tf.inference.translator import Translator


@dataclasses.dataclass(frozen=True)
class Recorded:
    """What `SourceKind.resolve` read about a model: where it is and what is recorded about it."""

    path: str  # The workdir, the SavedModel's version folder, the file.
    metadata: dict[str, Any] = dataclasses.field(default_factory=dict)  # The export's record of itself.
    train: Optional[TrainConfig] = None  # The run's config.json, for a training run's checkpoint.


class Opener(Protocol):
    def __call__(self, source: ModelSource, mode: InferenceMode, *, seed: Optional[int], image_size: Optional[int],
                 threads: int) -> Translator: ...


def file_label(source: ModelSource) -> str:
    """`<kind>-<file name without extension>`: the label of a model that is one file."""
    return f"{source.kind}-" + os.path.splitext(os.path.basename(source.path))[0]


def safe_label(label: str) -> str:
    """A label fit for a file or folder name."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", label)


@dataclasses.dataclass(frozen=True)
class SourceKind:
    """One format a model can be given in; see the module docstring."""

    name: str  # `ModelSource.kind`, metrics.json's "source": checkpoint, saved_model, tflite, onnx.
    flag: str  # The flag that names a model of this kind, without "--".
    noun: str  # What the flag names, for its help: "a .tflite file written by export.py".
    resolve: Callable[[str], Recorded]  # path -> Recorded; a wrong path is a ConfigError, answered without TensorFlow.
    open: Opener  # (source, mode, seed=, image_size=, threads=) -> Translator.
    any_size: bool  # Takes any size (a multiple of its size multiple): --native_size works.
    has_dropout: bool  # Can run with dropout on (the paper's noise z), as far as its export recorded it.
    seeded: bool = False  # Its dropout noise takes --seed (a SavedModel seeds itself from the clock).
    label: Callable[[ModelSource], str] = file_label  # A short name for files and folders.


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

    @property
    def direction(self) -> Optional[str]:
        """The training run's direction, as recorded by the run or the export."""
        return self.train.data.direction if self.train else self.metadata.get("direction")

    @property
    def norm(self) -> Optional[str]:
        """The generator's norm layers (config.NORMS), as recorded by the run or the export, or
        by the run an export came from (exports before the norm was recorded); None if unknown."""
        if self.train is not None:
            return self.train.model.norm
        run = self.run_workdir  # Read from the disk each time: once here.
        if self.metadata.get("norm") is not None or run is None:
            return self.metadata.get("norm")
        try:
            return TrainConfig.load(run).model.norm
        except ConfigError:  # Its config.json, edited since: the norm stays unknown.
            return None

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


def export_size(source: ModelSource, image_size: Optional[int]) -> int:
    """`image_size`, else the size the export records. The programs never open a model without
    either (`ModelRequest.translator` gives a training run's size, or refuses in the program's
    words); a library caller is told to give one."""
    size = image_size or source.metadata.get("image_size")
    if not size:
        raise ConfigError(f"{source.path} does not record its image size: open it with image_size=SIZE.")
    return int(size)
