"""The benchmark's fresh processes (pix2pix_tf/benchmark/processes.py): each measurement gets a
process of its own; a forked one finds the library already imported by the fork server, a
spawned one (a measurement that reports peak memory) starts as a program does, bare."""

from __future__ import annotations

import os
import sys

from pix2pix_tf.benchmark import processes


def _who_am_i() -> tuple[int, bool]:
    """This process's id, and whether the measurements' modules were imported before it ran
    (this test module imports neither them nor TensorFlow)."""
    return os.getpid(), all(name in sys.modules for name in ("tensorflow", "pix2pix_tf.benchmark.report"))


def test_each_forked_measurement_has_a_process_of_its_own_with_the_library_imported():
    first, second = processes.in_fresh_process(_who_am_i), processes.in_fresh_process(_who_am_i)
    assert len({first[0], second[0], os.getpid()}) == 3
    assert first[1] and second[1]


def test_a_spawned_measurement_starts_bare_as_a_program_does():
    pid, preloaded = processes.in_fresh_process(_who_am_i, spawned=True)
    assert pid != os.getpid() and not preloaded
