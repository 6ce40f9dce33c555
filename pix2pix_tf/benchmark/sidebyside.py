"""Training steps side by side: ours (float32 and mixed precision) against the tutorial's.

Each participant lives in its own persistent process, set up as its own program would be
(ours with train.py's allocator settings and the run's precision; the tutorial's with the
allocator's defaults: glibc's malloc settings are per process, so one process could not hold
both). The coordinator then runs them in interleaved rounds, k steps of one, k of the next,
the order rotating each round, while the others wait idle: load from elsewhere on a shared
machine hits every participant alike, and the ratio of their medians over rounds is what a
noisy machine can still measure. The benchmark's participants (the two steps) are built by
`training.tutorial_against_ours`; this module times any participants and loads no TensorFlow.
"""

from __future__ import annotations

import dataclasses
import os
import statistics
import time
import traceback
from typing import Any, Callable

from pix2pix_tf.benchmark.processes import forked_context

WARMUP_STEPS = 2  # Untimed steps before the timed ones, by default: the first traces the step.


@dataclasses.dataclass(frozen=True)
class Participant:
    """`setup(*args)`, run in the participant's own process, builds a step that waits for its result."""

    name: str
    description: str
    setup: Callable[..., Callable[[], object]]  # Module-level: it crosses a process boundary.
    args: tuple = ()


@dataclasses.dataclass
class SideBySide:
    baseline: str  # The participant the ratios divide: the tutorial's step.
    descriptions: dict[str, str]
    rounds: int
    steps_per_round: int
    round_seconds: dict[str, list[float]]  # Per participant: each round's median step time.
    median_seconds: dict[str, float]  # Median over rounds of round_seconds.
    over_baseline: dict[str, float]  # The baseline's median / this participant's: "x the tutorial".
    round_over_baseline: dict[str, list[float]]  # The same ratio within each round.
    load_average: list[float]  # 1-minute load average of the machine before and after the rounds.


def _serve(connection: Any, setup: Callable[..., Callable[[], object]], args: tuple, warmup: int) -> None:
    """A participant's process: set up, warm up (`warmup` steps, the first of which traces),
    then time k steps whenever asked, until told to stop (None)."""
    try:
        step = setup(*args)
        for _ in range(warmup):
            step()
        connection.send(("ready", None))
        while (steps := connection.recv()) is not None:
            durations = []
            for _ in range(steps):
                start = time.perf_counter()
                step()
                durations.append(time.perf_counter() - start)
            connection.send(("timed", durations))
    except Exception:  # noqa: BLE001 - reported to the coordinator, which raises it.
        connection.send(("error", traceback.format_exc()))


def _answer(name: str, connection: Any) -> Any:
    kind, value = connection.recv()
    if kind == "error":
        raise RuntimeError(f"Side-by-side participant {name!r} failed:\n{value}")
    return value


def interleave(participants: list[Participant], rounds: int, steps: int, warmup: int = WARMUP_STEPS) -> SideBySide:
    """Times every participant's step in `rounds` interleaved rounds of `steps` steps each,
    after `warmup` untimed steps of each (with none, the first round's also trace); the first
    participant is the baseline of the ratios."""
    context = forked_context()
    workers = {}
    try:
        for p in participants:  # One at a time: a setup does not slow another's warm-up.
            mine, theirs = context.Pipe()
            process = context.Process(target=_serve, args=(theirs, p.setup, p.args, warmup), daemon=True)
            process.start()
            workers[p.name] = (process, mine)
            _answer(p.name, mine)
        load = [os.getloadavg()[0]]
        seconds: dict[str, list[float]] = {p.name: [] for p in participants}
        for r in range(rounds):
            order = participants[r % len(participants):] + participants[:r % len(participants)]
            for p in order:
                workers[p.name][1].send(steps)
                seconds[p.name].append(statistics.median(_answer(p.name, workers[p.name][1])))
        load.append(os.getloadavg()[0])
    finally:
        for process, connection in workers.values():
            if process.is_alive():
                connection.send(None)
            process.join(timeout=60)
    base = participants[0].name
    medians = {name: statistics.median(values) for name, values in seconds.items()}
    return SideBySide(
        baseline=base, descriptions={p.name: p.description for p in participants}, rounds=rounds,
        steps_per_round=steps, round_seconds=seconds, median_seconds=medians,
        over_baseline={name: medians[base] / median for name, median in medians.items()},
        round_over_baseline={name: [b / s for b, s in zip(seconds[base], values)] for name, values in seconds.items()},
        load_average=load)
