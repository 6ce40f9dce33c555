"""The README's test commands: `-n auto` starts one worker per core and one more, and the files
that take longest start first, and after each test its garbage is collected and its survivors
frozen (tests/conftest.py)."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import weakref

import pytest

from conftest import LONGEST_FIRST, pytest_xdist_auto_num_workers
from export_helpers import ROOT


def test_auto_starts_one_worker_per_core_and_one_more(monkeypatch):
    monkeypatch.delenv("PYTEST_XDIST_AUTO_NUM_WORKERS", raising=False)
    assert pytest_xdist_auto_num_workers(None) == len(os.sched_getaffinity(0)) + 1
    monkeypatch.setenv("PYTEST_XDIST_AUTO_NUM_WORKERS", "5")
    assert pytest_xdist_auto_num_workers(None) == 5


def pytest_in_a_subprocess(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}  # The override included.
    env["PIX2PIX_TESTS_GRAPH_OPTIMIZER"] = "on"  # Its tests run no TensorFlow (tests/process_fixtures.py).
    result = subprocess.run([sys.executable, "-m", "pytest", *args], cwd=ROOT, capture_output=True, text=True,
                            timeout=120, env=env)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    return result


def test_pytest_xdist_takes_that_number():
    result = pytest_in_a_subprocess("-n", "auto", "-k", "one_more", "tests/test_test_command.py")
    workers = len(os.sched_getaffinity(0)) + 1
    assert f"created: {workers}/{workers} workers" in result.stdout, result.stdout[-2000:]


def test_a_file_of_longest_first_starts_before_a_file_with_more_tests():
    """pytest-xdist's loadfile starts the files with the most tests first unless told not to;
    test_cli.py is in LONGEST_FIRST, test_config.py (more tests chosen here) is not."""
    assert "test_cli.py" in LONGEST_FIRST and "test_config.py" not in LONGEST_FIRST
    result = pytest_in_a_subprocess("-n", "1", "--dist", "loadfile", "-v", "-k",
                                    "stop_landing or round_trip or unknown_keys", "tests/test_config.py",
                                    "tests/test_cli.py")
    ran = [line.split("PASSED ")[1].split("::")[0] for line in result.stdout.splitlines() if "PASSED" in line]
    assert ran == ["tests/test_cli.py", "tests/test_config.py", "tests/test_config.py"], result.stdout[-2000:]


_LEFT_BY_THE_TEST_BEFORE: dict[str, object] = {}


class _Node:
    pass


def test_a_test_leaves_a_garbage_cycle_and_a_survivor():
    """Automatic collections stay off until the next test: only what runs after this test can
    free the cycle. The next test checks, and turns them on again."""
    gc.disable()
    cycle = _Node()
    cycle.itself = cycle
    _LEFT_BY_THE_TEST_BEFORE.update(cycle=weakref.ref(cycle), survivor=_Node())


def test_after_a_test_its_garbage_is_collected_and_its_survivors_frozen():
    gc.enable()
    if not _LEFT_BY_THE_TEST_BEFORE:
        pytest.skip("checks what the test before it left")
    assert _LEFT_BY_THE_TEST_BEFORE["cycle"]() is None
    survivor = _LEFT_BY_THE_TEST_BEFORE["survivor"]
    assert not any(o is survivor for o in gc.get_objects())  # Frozen: no generation holds it.


def test_a_module_not_marked_graph_optimizer_runs_with_it_off_and_so_do_the_programs_it_forks_so():
    """tests/process_fixtures.py: off in the test process (its programs run here too); a forked
    program given GRAPH_OPTIMIZER_OFF has it off before its command runs. Both on where
    PIX2PIX_TESTS_GRAPH_OPTIMIZER=on."""
    import tensorflow as tf

    import forked
    from process_fixtures import GRAPH_OPTIMIZER_OFF, ON_EVERYWHERE

    off = tf.config.optimizer.get_experimental_options().get("disable_meta_optimizer", False)
    assert off is not ON_EVERYWHERE
    code = "import tensorflow as tf; print(tf.config.optimizer.get_experimental_options()['disable_meta_optimizer'])"
    for prelude, shown in (("", "False"), (GRAPH_OPTIMIZER_OFF, str(off))):
        result = forked.run([sys.executable, "-c", code], prelude=prelude, timeout=120)
        assert result.returncode == 0 and result.stdout.strip() == shown, result.stderr[-2000:]
