"""The README's test commands: `-n auto` starts one worker per core and one more (tests/conftest.py)."""

from __future__ import annotations

import os
import subprocess
import sys

from conftest import pytest_xdist_auto_num_workers
from export_helpers import ROOT


def test_auto_starts_one_worker_per_core_and_one_more(monkeypatch):
    monkeypatch.delenv("PYTEST_XDIST_AUTO_NUM_WORKERS", raising=False)
    assert pytest_xdist_auto_num_workers(None) == len(os.sched_getaffinity(0)) + 1
    monkeypatch.setenv("PYTEST_XDIST_AUTO_NUM_WORKERS", "5")
    assert pytest_xdist_auto_num_workers(None) == 5


def test_pytest_xdist_takes_that_number():
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}  # The override included.
    result = subprocess.run([sys.executable, "-m", "pytest", "-n", "auto", "-k", "one_more",
                             "tests/test_test_command.py"], cwd=ROOT, capture_output=True, text=True, timeout=120,
                            env=env)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    workers = len(os.sched_getaffinity(0)) + 1
    assert f"created: {workers}/{workers} workers" in result.stdout, result.stdout[-2000:]
