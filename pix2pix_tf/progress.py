"""Progress bars for long work (training, translating, evaluating), one way everywhere."""

from __future__ import annotations

import sys
from typing import Optional


class Progress:
    """A progress bar (Keras' Progbar) that also works when output goes to a log file:
    it redraws often on a terminal or in a notebook's kernel and rarely otherwise, and flushes
    each update."""

    def __init__(self, total: int, unit: str, enabled: bool = True):
        self._bar: Optional[object] = None
        if enabled and total > 0:
            import keras

            self._bar = keras.utils.Progbar(total, unit_name=unit, interval=0.1 if _live() else 30.0)

    def update(self, done: int, values: Optional[list] = None) -> None:
        if self._bar is not None:
            self._bar.update(done, values=values)
            sys.stdout.flush()


def _live() -> bool:
    """Output that a person watches as it comes: a terminal, or a Jupyter kernel's cell."""
    return sys.stdout.isatty() or "ipykernel" in sys.modules
