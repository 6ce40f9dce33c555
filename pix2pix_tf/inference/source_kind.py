"""What a kind of model source is: one `SourceKind` per format a model can be given in.

A kind says which flag names it, what is recorded about a model of its kind (read by
`resolve`, without TensorFlow), how it opens into a `Translator`, and what it can do (take
any size, have dropout, seed its noise). `inference.sources.KINDS` lists them, one line per
kind; the flags of every program (`inference.request`) and `ModelSource` read that list, so a
new format is its own module, its line there, its tests and its docs.
"""

from __future__ import annotations

import dataclasses
import os
import re
from typing import TYPE_CHECKING, Any, Callable, Optional, Protocol

if TYPE_CHECKING:
    from pix2pix_tf.config import TrainConfig
    from pix2pix_tf.inference.mode import InferenceMode
    from pix2pix_tf.inference.sources import ModelSource
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
