"""Participants' setups for the side-by-side tests. They live apart from the test module because
each participant's process imports the module of its setup: this one imports no TensorFlow, so
those processes start in a fraction of the time."""

from __future__ import annotations

import time
from typing import Callable


def sleeper(seconds: float) -> Callable[[], None]:
    return lambda: time.sleep(seconds)


def broken() -> Callable[[], None]:
    raise ValueError("no step here")
