"""What an export is asked to do (`ExportConfig`) and how it refuses (`ExportError`).

Shared by every step of the export, below the orchestration in `exporter.py`; filled from
export.py's flags (library code reads no flags). What each format asks for is that target's
own options (`target.Target.options`), held here by the target's name.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Optional

from pix2pix_tf.config_checks import check_positive
from pix2pix_tf.errors import ConfigError, Pix2pixError
from pix2pix_tf.inference.mode import PAPER, InferenceMode
from pix2pix_tf.workdir import check_tensorflow_can_read

MAX_VERSION = 2**63 - 1  # TensorFlow Serving's model versions are int64.


class ExportError(Pix2pixError):
    """An export that cannot be written or did not pass its checks."""


URL_SPECIAL = ("#", "?", "%")  # A URL's fragment, query and escapes: the name is in Serving's and a web page's.


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
    check_examples: int = 8
    data_dir: Optional[str] = None  # None: config.json's.
    benchmark: bool = False
    threads: int = 2
    # Each target's options by its name (`registry.TARGETS`); a target left out gets its defaults.
    targets: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def validate(self) -> ExportConfig:
        if self.version is not None and not 1 <= self.version <= MAX_VERSION:
            raise ConfigError(f"--version must be a positive integer of at most {MAX_VERSION} (Serving's versions "
                              f"are int64), got {self.version}.")
        if (not self.model_name or "/" in self.model_name or self.model_name.startswith(".")
                or not self.model_name.isprintable()  # A newline or tab breaks Serving's URLs and config,
                or any(c in self.model_name for c in URL_SPECIAL)):  # and these the URLs of it and of a page's files.
            raise ConfigError(f"--model_name={self.model_name!r} must be a plain folder name (no /, no leading ., "
                              f"none of {' '.join(URL_SPECIAL)}, no control character).")
        check_tensorflow_can_read(self.model_name, "--model_name", folder_name=True)  # Loaded back from there.
        if self.image_size is not None and self.image_size < 1:
            raise ConfigError(f"--image_size must be positive, got {self.image_size}.")
        check_positive(check_examples=self.check_examples, threads=self.threads)
        return self


@dataclasses.dataclass(frozen=True)
class TrainingInputs:
    """Training images a target needs (the int8 calibration), and what its refusal says when
    the run's dataset is gone: "<need>: <why> Pass --data_dir, or <way_out>."."""

    count: int
    need: str
    way_out: str
