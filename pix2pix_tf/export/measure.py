"""How an export measures an artifact against its reference: PSNR, and batch-1 latency timed in
interleaved rounds. Every target checks its files with these, and the benchmark times with them,
so that all the figures export.py prints are measured alike."""

from __future__ import annotations

import math
import time
from typing import Callable

import numpy as np


def psnr(reference: np.ndarray, test: np.ndarray) -> float:
    """PSNR in dB of images in [-1, 1], measured on the [0, 1] scale (peak 1)."""
    mse = float(np.mean(((reference - test) / 2.0) ** 2))
    if not math.isfinite(mse):
        return float("nan")
    return float("inf") if mse == 0 else 10.0 * math.log10(1.0 / mse)


def benchmark(calls: dict[str, Callable[[], object]], rounds: int = 15) -> dict[str, tuple[float, float]]:
    """{name: (median, min) wall milliseconds} of each call, measured in interleaved rounds
    (each round calls every model once) so that a burst of load from other processes on a
    shared machine hits all of them alike; two warm-up calls each first."""
    for fn in calls.values():
        fn()
        fn()
    samples: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(rounds):
        for name, fn in calls.items():
            start = time.perf_counter()
            fn()
            samples[name].append((time.perf_counter() - start) * 1000)
    return {name: (float(np.median(t)), float(np.min(t))) for name, t in samples.items()}
