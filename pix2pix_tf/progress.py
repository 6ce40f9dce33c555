"""Progress bars for long work (training, translating, evaluating), one way everywhere."""

from __future__ import annotations

import sys
import time
from typing import Optional, TextIO

# How often a progress line is written where no one watches it redraw (a log file, a pipe).
LOG_INTERVAL_SECONDS = 30.0


class Progress:
    """Keras' Progbar where a person watches the output (a terminal, a notebook's kernel);
    elsewhere a plain line now and then, flushed, with no terminal control codes (Keras'
    bar writes colour codes into a log file too)."""

    def __init__(self, total: int, unit: str, enabled: bool = True):
        self._bar: Optional[object] = None
        # Set when stdout could not be written (its reader is gone: a closed pipe, a hung-up
        # terminal): the bar stops drawing and the caller decides whether to go on.
        self.output_lost: Optional[OSError] = None
        if not enabled or total <= 0:
            return
        if live():
            import keras

            self._bar = keras.utils.Progbar(total, unit_name=unit, interval=0.1)
        else:
            self._bar = _LogLines(total, unit)

    def update(self, done: int, values: Optional[list] = None) -> None:
        if self._bar is None:
            return
        try:
            self._bar.update(done, values=values)
            sys.stdout.flush()
        except OSError as e:
            self._bar, self.output_lost = None, e


class _LogLines:
    """`done/total unit(s) - elapsed - name: mean ...`: at most one line per
    LOG_INTERVAL_SECONDS, and the last one; each value is its mean since the previous line
    (one step's losses are noise)."""

    def __init__(self, total: int, unit: str):
        self.total, self.unit = total, unit
        self.start = self.last = time.monotonic()
        self.sums: dict[str, float] = {}
        self.counts: dict[str, int] = {}

    def update(self, done: int, values: Optional[list] = None) -> None:
        for name, value in values or []:
            self.sums[name] = self.sums.get(name, 0.0) + value
            self.counts[name] = self.counts.get(name, 0) + 1
        now = time.monotonic()
        if now - self.last < LOG_INTERVAL_SECONDS and done < self.total:
            return
        self.last = now
        shown = "".join(f" - {name}: {total / self.counts[name]:.4f}" for name, total in self.sums.items())
        self.sums, self.counts = {}, {}
        print(f"{done}/{self.total} {self.unit}(s) - {now - self.start:.0f}s{shown}")


def live(stream: Optional[TextIO] = None) -> bool:
    """Output (`stream`, default stdout) that a person watches as it comes: a terminal, or a
    Jupyter kernel's cell; not a log file or a pipe, where a redrawn bar leaves control codes."""
    stream = stream or sys.stdout
    return stream.isatty() or type(stream).__module__.startswith("ipykernel")
