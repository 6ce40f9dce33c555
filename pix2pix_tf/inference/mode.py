"""How the generator runs at test time (`InferenceMode`), apart from the code that runs it.

Every program chooses a mode before it loads a model: translate's and evaluate's flags, the
demo's paper-mode switch, an export's recorded mode. This module holds only that choice, so
the choosing (`inference.request`, `inference.sources`) needs no TensorFlow;
`inference.generate` applies it.
"""

from __future__ import annotations

import dataclasses
from typing import Optional


@dataclasses.dataclass(frozen=True)
class InferenceMode:
    """How the generator is evaluated at test time.

    `dropout`: the paper's noise z (dropout kept on at test time). `batch_statistics`:
    batch norm with each image's own moments (the paper) instead of the moving averages.
    """

    dropout: bool = True
    batch_statistics: bool = True

    @property
    def deterministic(self) -> bool:
        """The same input always gives the same output."""
        return not self.dropout

    def without_dropout(self) -> InferenceMode:
        return dataclasses.replace(self, dropout=False)

    def describe(self, norm: Optional[str] = "batch") -> str:
        """The mode as it applies to a generator with `norm` layers (config.NORMS): the choice
        of batch-norm statistics means nothing to instance norm or to no norm at all. None: a
        model whose norm is not known (an older export whose run is gone)."""
        noise = "dropout on (noise z)" if self.dropout else "no dropout"
        return f"{self.describe_norm(norm)}, {noise}"

    def describe_norm(self, norm: Optional[str] = "batch") -> str:
        if norm == "instance":
            return "instance norm (each image's own statistics, as in training)"
        if norm == "none":
            return "no norm layers"
        statistics = "per-image batch statistics" if self.batch_statistics else "moving averages"
        if norm is None:
            return f"{statistics} if it has batch norm (its norm is not recorded)"
        return f"batch norm with {statistics}"


PAPER = InferenceMode(dropout=True, batch_statistics=True)
DETERMINISTIC = InferenceMode(dropout=False, batch_statistics=True)
