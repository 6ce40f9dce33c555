"""How the generator runs at test time (`InferenceMode`), apart from the code that runs it.

Every program chooses a mode before it loads a model: translate's and evaluate's flags, the
demo's paper-mode switch, an export's recorded mode. This module holds only that choice, so
the choosing (`inference.request`, `inference.sources`) needs no TensorFlow;
`inference.generate` applies it.
"""

from __future__ import annotations

import dataclasses


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

    def describe(self) -> str:
        norm = "per-image batch statistics" if self.batch_statistics else "moving averages"
        noise = "dropout on (noise z)" if self.dropout else "no dropout"
        return f"batch norm with {norm}, {noise}"


PAPER = InferenceMode(dropout=True, batch_statistics=True)
DETERMINISTIC = InferenceMode(dropout=False, batch_statistics=True)
