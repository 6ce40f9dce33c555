"""The SavedModel export target's declaration: its flags, options and folder, and the checks on
them. TensorFlow-free, so that export.py declares the flags (and --help answers) without
TensorFlow; `WORK` (`export.saved_model`) writes, checks and publishes the artifact, imported when
the export runs (`target.Deferred`)."""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Mapping, Optional

from pix2pix_tf.config import DEFAULT_MAX_PIXELS
from pix2pix_tf.config_checks import check_positive
from pix2pix_tf.errors import ConfigError
from pix2pix_tf.export.target import Deferred, Flag, Target

FLAGS = (
    Flag("warmup_batch_sizes", "integers", (1,), "Batch sizes of the warmup requests written for TensorFlow "
         "Serving (one request per signature and size; add your batching's max_batch_size)."),
    Flag("max_pixels", "integer", DEFAULT_MAX_PIXELS, "Largest image the SavedModel's bytes signatures accept, in "
         "pixels (checked from the header, before decoding); larger ones are refused."),
    Flag("max_request_pixels", "integer", None, "Most pixels one request to any signature may hold in all (each "
         "image counted at the larger of its own size and the size the generator runs it at); larger requests are "
         "refused before decoding. Default: --max_pixels."),
)


@dataclasses.dataclass(frozen=True)
class Options:
    """What the SavedModel's signatures accept and how Serving warms it up."""

    warmup_batch_sizes: tuple[int, ...] = (1,)
    max_pixels: int = DEFAULT_MAX_PIXELS  # The bytes signatures refuse larger images, before decoding.
    max_request_pixels: Optional[int] = None  # Every signature refuses larger requests; None: max_pixels.

    @property
    def enabled(self) -> bool:
        return True  # Every export writes it: the other artifacts are checked against it.

    @property
    def request_pixels(self) -> int:
        """The pixels one request may hold in all (the images of a batch together)."""
        return self.max_request_pixels or self.max_pixels

    def validate(self) -> Options:
        check_positive(max_pixels=self.max_pixels, max_request_pixels=self.max_request_pixels)
        if not self.warmup_batch_sizes or min(self.warmup_batch_sizes) < 1:
            raise ConfigError("--warmup_batch_sizes must be positive integers.")
        return self


def options(values: Mapping[str, Any]) -> Options:
    return Options(warmup_batch_sizes=tuple(values["warmup_batch_sizes"]), max_pixels=values["max_pixels"],
                   max_request_pixels=values["max_request_pixels"])


def model_base(export_dir: str, model_name: str) -> str:
    """`<export_dir>/<model_name>`: the path to give TensorFlow Serving (--model_base_path)."""
    return os.path.join(export_dir, model_name)


# The work (loads TensorFlow): pix2pix_tf/export/saved_model.py.
WORK = "pix2pix_tf.export.saved_model"

TARGET = Target("saved_model", FLAGS, options, model_base, Deferred(WORK, "publish"), check=Deferred(WORK, "check"))
