"""Keras models whose random initial state is a function of a seed, set for them alone.

Keras gives every initializer and dropout layer built without an explicit seed one drawn
from Python's `random` at construction. `keras.utils.set_random_seed` would make them
reproducible by reseeding Python, NumPy and TensorFlow for the whole process, which a library
must not do (it would change what any other code in the process draws). Seeding Python's
generator for the construction only, and putting its state back after, gives the same
reproducibility and leaves the process as it was.
"""

from __future__ import annotations

import contextlib
import random
from typing import Iterator, Optional


@contextlib.contextmanager
def seeded_construction(seed: Optional[int]) -> Iterator[None]:
    """Layers built inside draw their initializer and dropout seeds from `seed` alone
    (None: from wherever Python's generator stands, as without this)."""
    if seed is None:
        yield
        return
    state = random.getstate()
    random.seed(seed)
    try:
        yield
    finally:
        random.setstate(state)
