"""Fresh processes for measurements.

Each measurement runs in a process of its own, so that its allocator settings and caches are
its own. Spawning a process imports TensorFlow and this library again, seconds of CPU each
time; `forked_context` forks instead from a server that imported them once. Forking is safe
there because the server has run no TensorFlow op: TensorFlow starts its thread pools (which a
fork would not copy) with its first op, and every op of a measurement runs in its forked
process. A forked process shares the library pages it never touches with the server, and so
leaves them out of its peak memory: a measurement that reports peak memory is spawned
(`spawned_context`), as a user's program starts.
"""

from __future__ import annotations

import multiprocessing
from multiprocessing.context import BaseContext
from typing import Any, Callable

# What the fork server imports before it forks anything: the measurements' own modules.
PRELOADED = ["pix2pix_tf.benchmark.report"]


def forked_context() -> BaseContext:
    """A context whose processes fork from a server that has imported `PRELOADED`; spawned
    where the platform has no fork server (Windows)."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return spawned_context()
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(PRELOADED)
    return context


def spawned_context() -> BaseContext:
    """A context whose processes start as a program does: a fresh interpreter."""
    return multiprocessing.get_context("spawn")


def in_fresh_process(fn: Callable[..., Any], *args: Any, spawned: bool = False) -> Any:
    """fn(*args) in a fresh process: forked (the default), or spawned where it reports peak memory."""
    context = spawned_context() if spawned else forked_context()
    with context.Pool(1) as pool:
        return pool.apply(fn, args)
