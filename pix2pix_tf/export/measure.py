"""How an export times an artifact: batch-1 latency in interleaved rounds. Every target times its
files with this, and the benchmark too, so that all the latencies export.py prints are measured
alike (its PSNRs are all `evaluation.metrics.pooled_psnr`)."""

from __future__ import annotations

import time
from typing import Callable

import numpy as np


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
