"""What an export target is: one artifact format that export.py writes, checks and publishes.

Each format is a TensorFlow-free declaration (`<format>_target.py`: one `Target`) and the module
that does the work, which the declaration names without importing it (`Deferred`), so that
export.py declares every format's flags without TensorFlow; `registry.TARGETS` lists the
declarations, one line each, in the order they run. A target declares:

* its flags (`Flag`): export.py defines every registered target's flags, so --help lists them
  as export.py's own, and hands each target the values of its own (library code reads no flags);
* its options: a frozen dataclass built from those values (`Target.options`; the flags' defaults
  give `Target.defaults()`), with `enabled` (whether this export writes the artifact) and
  `validate()`; `Target.validate` checks them against the other targets' options;
* its checks before any work (`Target.check`: what must be installed, what the run allows);
* `publish(job, options, published)`: writes the artifact into a staging folder, checks it, renames
  it into place (`versions.publish_staged`) and returns a `Published` record, the one thing the
  exporter, export.py and the interrupt summary read about it. `published` holds the records of
  the targets that ran before it; `needs` names those it reads (the SavedModel, every other
  target's reference; the TFLite files, which the web page runs).
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import TYPE_CHECKING, Any, Callable, Mapping, Optional, Protocol

from pix2pix_tf.config import TrainConfig
from pix2pix_tf.export import measure
from pix2pix_tf.export.config import ExportConfig, TrainingInputs

if TYPE_CHECKING:  # What a Job holds; the declarations that import this module load no TensorFlow.
    import keras
    import numpy as np

    from pix2pix_tf.export.examples import Examples
    from pix2pix_tf.export.model_card import CardFacts

# How export.py defines and reads a flag of each kind ("list": comma-separated strings,
# "integers": comma-separated integers).
FLAG_KINDS = ("bool", "string", "integer", "enum", "list", "integers")


@dataclasses.dataclass(frozen=True)
class Flag:
    """One export.py flag a target declares; `default` is the value its options see."""

    name: str
    kind: str  # One of FLAG_KINDS.
    default: Any
    help: str
    choices: tuple[str, ...] = ()  # The values an "enum" flag takes.


class Options(Protocol):
    """What every target's options dataclass offers."""

    @property
    def enabled(self) -> bool: ...

    def validate(self) -> Options: ...


@dataclasses.dataclass(frozen=True)
class Run:
    """What the checks before any work know: the run's config and the size it is exported at."""

    train: TrainConfig
    image_size: int


class Benchmark:
    """--benchmark's batch-1 latencies, (median, min) ms by name: the baseline calls (the Keras
    model and the SavedModel, which the SavedModel target sets) timed in one interleaved run with
    a target's own runners, so that load from other processes hits all of them alike; when no
    target times any, `finish` times the baseline alone."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self.baseline: dict[str, Callable[[], object]] = {}
        self.timings: dict[str, tuple[float, float]] = {}

    def time(self, calls: dict[str, Callable[[], object]]) -> dict[str, tuple[float, float]]:
        """The baseline and `calls`, timed together ({} without --benchmark)."""
        if not self.enabled:
            return {}
        self.timings.update(measure.benchmark({**self.baseline, **calls}))
        return dict(self.timings)

    def finish(self) -> None:
        if self.enabled and not self.timings:
            self.time({})


@dataclasses.dataclass(frozen=True)
class Job:
    """What every target of one export reads: the request, the run, G, the version, the check
    images and the model card's facts."""

    config: ExportConfig
    train: TrainConfig
    generator: keras.Model
    checkpoint: str
    image_size: int
    export_dir: str
    version: int  # Chosen by the first target's base path (Serving's versions), shared by all.
    examples: Examples
    card: CardFacts
    benchmark: Benchmark

    @property
    def images(self) -> np.ndarray:
        return self.examples.images


def _no_lines() -> list[str]:
    return []


@dataclasses.dataclass
class Published:
    """What one target published."""

    target: str
    path: str  # The folder (or file) now in place; the interrupt summary lists it.
    report: Any  # The target's own report (e.g. `tflite.TFLiteReport`).
    model_cards: tuple[str, ...] = ()
    lines: Callable[[], list[str]] = _no_lines  # What export.py prints about it, read once the export is done.
    usage: tuple[str, ...] = ()  # Printed after the model cards: how to use it.
    warnings: tuple[str, ...] = ()  # Printed to stderr.


def _nothing(*_: Any) -> None:
    return None


@dataclasses.dataclass(frozen=True)
class Deferred:
    """`<module>.<function>`, imported when first called: a declaration names the code that does
    the work (which loads TensorFlow) without importing it, so that export.py declares every
    target's flags, and --help answers, without TensorFlow."""

    module: str
    function: str

    def resolve(self) -> Callable[..., Any]:
        return getattr(importlib.import_module(self.module), self.function)

    def __call__(self, *args: Any) -> Any:
        return self.resolve()(*args)


@dataclasses.dataclass(frozen=True)
class Target:
    """One export format; see the module docstring."""

    name: str
    flags: tuple[Flag, ...]
    options: Callable[[Mapping[str, Any]], Options]  # From {flag name: value}.
    base: Callable[[str, str], str]  # (export_dir, model_name) -> the folder its versions go in.
    publish: Callable[[Job, Any, Mapping[str, Published]], Published]
    needs: tuple[str, ...] = ()
    validate: Callable[[Any, Mapping[str, Options]], None] = _nothing  # Against every target's options.
    check: Callable[[Any, Run], None] = _nothing  # Before any work: installed parts, what the run allows.
    training_inputs: Callable[[Any], Optional[TrainingInputs]] = _nothing

    def defaults(self) -> Options:
        """The options its flags' defaults give."""
        return self.options({flag.name: flag.default for flag in self.flags})
