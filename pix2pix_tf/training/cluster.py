"""The multi-worker cluster as TF_CONFIG describes it, and a watch over its formation.

Creating MultiWorkerMirroredStrategy waits until every worker of TF_CONFIG has connected. It
waits inside TensorFlow's C++ code, holding Python's interpreter lock, with TensorFlow's own
SIGTERM handler installed (its preemption notice, which only records the signal): a worker
whose peer never starts would wait forever, and no Python timer, thread or signal handler can
run to stop it. So `FormationWatch` works from outside:

- from `start()` on (before TensorFlow is imported, so that every thread TensorFlow starts
  inherits the mask) the stop signals (SIGTERM, SIGINT, and SIGHUP unless `nohup` ignores it:
  `errors.stop_signals`) are blocked: they stay pending for the process instead of reaching
  TensorFlow's handler, or a Python handler that could not run before the wait ends;
- a small watchdog process reads this process's pending signals (/proc/PID/status) and,
  once `forming()` is entered, the clock. On a signal, or when the timeout passes, it prints
  why (naming the workers waited for) and kills this process: SIGKILL, since nothing else
  stops a process blocked inside TensorFlow (a shell shows exit status 137);
- leaving `forming()` (the strategy exists: the cluster formed) ends the watchdog and
  unblocks the signals, so TensorFlow's preemption handling receives them from then on.

For entry points only: it changes the process's signal mask and starts a process. Nothing
here imports TensorFlow.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import select
import signal
import subprocess
import sys
import time
from typing import Iterator, Mapping, Optional

from absl import logging

from pix2pix_tf.errors import ConfigError, stop_signals

DEFAULT_TIMEOUT = 600.0
WATCHED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)  # Reported when pending (only blocked ones can be).
_POLL_SECONDS = 0.2
_FORMING = b"w"


@dataclasses.dataclass(frozen=True)
class Cluster:
    """TF_CONFIG's cluster (job name -> addresses) and this process's task in it."""

    jobs: dict[str, list[str]]
    task_type: str
    task_index: int

    def describe(self, job: str, index: int) -> str:
        return f"{job} {index} ({self.jobs[job][index]})"

    @property
    def me(self) -> str:
        return self.describe(self.task_type, self.task_index)

    @property
    def peers(self) -> list[str]:
        """Every other task of the cluster, as `describe` names them."""
        return [self.describe(job, i) for job, addresses in self.jobs.items() for i in range(len(addresses))
                if (job, i) != (self.task_type, self.task_index)]


def cluster_from_env(environ: Mapping[str, str] = os.environ) -> Cluster:
    """The cluster of TF_CONFIG, or a ConfigError saying what is wrong with it."""
    tf_config = environ.get("TF_CONFIG")
    if not tf_config:
        raise ConfigError("--strategy=multi_worker reads the cluster from the TF_CONFIG environment variable, "
                          "which is not set (see docs/distributed.md for an example).")
    try:
        description = json.loads(tf_config)
        jobs = {job: _addresses(job, addresses) for job, addresses in description["cluster"].items()}
        task_type, task_index = description["task"]["type"], int(description["task"].get("index", 0))
        jobs[task_type][task_index]  # noqa: B018 - this task must be in the cluster
    except (ValueError, KeyError, TypeError, IndexError, AttributeError, RecursionError) as e:
        raise ConfigError(f"TF_CONFIG is not a valid cluster description ({type(e).__name__}: {e}): "
                          f"{tf_config}") from e
    if task_type not in ("worker", "chief") or not jobs.get("worker"):
        raise ConfigError(f"TF_CONFIG must describe this process as a worker (or chief): {tf_config}")
    return Cluster(jobs, task_type, task_index)


def _addresses(job: str, addresses: object) -> list[str]:
    """A job's task addresses: a list of "host:port" strings (a string alone was read as its characters)."""
    if not isinstance(addresses, list) or not all(isinstance(a, str) and a for a in addresses):
        raise TypeError(f"the {job!r} job's tasks must be a list of 'host:port' strings, not {addresses!r}")
    return addresses


class FormationWatch:
    """Times out the cluster's formation and makes a stop signal before it stop the process
    at once, with a message (see the module docstring). Disabled (`cluster` None), it does
    nothing: one machine needs no watch."""

    def __init__(self, timeout: float = DEFAULT_TIMEOUT, cluster: Optional[Cluster] = None):
        if not timeout > 0:
            raise ConfigError(f"--cluster_timeout must be a positive number of seconds, got {timeout}.")
        self.timeout = timeout
        self.cluster = cluster
        self._watchdog: Optional[subprocess.Popen] = None
        self._blocked: tuple[signal.Signals, ...] = ()

    def __enter__(self) -> FormationWatch:
        self.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def start(self) -> None:
        if self.cluster is None or self._watchdog is not None:
            return
        peers = ", ".join(self.cluster.peers) or "no other task"
        timed_out = (f"The cluster did not form within {self.timeout:g} s (--cluster_timeout): {self.cluster.me} "
                     f"waited for {peers} of TF_CONFIG. Start every worker with the same TF_CONFIG cluster, "
                     "check that these addresses are reachable, or raise --cluster_timeout.")
        signalled = (f"{{signal}} received while {self.cluster.me} waited for {peers} to form the cluster: "
                     "stopped before training started.")
        package_root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")]))}
        self._watchdog = subprocess.Popen(
            [sys.executable, "-c", "from pix2pix_tf.training.cluster import _watchdog_main; _watchdog_main()",
             str(os.getpid()), repr(self.timeout), timed_out, signalled], stdin=subprocess.PIPE, env=env)
        self._blocked = stop_signals()
        signal.pthread_sigmask(signal.SIG_BLOCK, self._blocked)

    @contextlib.contextmanager
    def forming(self) -> Iterator[None]:
        """Wraps the wait for the other workers: the clock runs inside, the watch ends after."""
        if self._watchdog is not None:
            logging.info("Waiting up to %g s (--cluster_timeout) for the cluster to form: %s.", self.timeout,
                         ", ".join(self.cluster.peers))
            self._watchdog.stdin.write(_FORMING)
            self._watchdog.stdin.flush()
        try:
            yield
        finally:
            self.stop()

    def stop(self) -> None:
        """Ends the watchdog (it exits when its input closes) and unblocks the signals."""
        if self._watchdog is None:
            return
        with contextlib.suppress(OSError):
            self._watchdog.stdin.close()
        self._watchdog.wait()
        self._watchdog = None
        signal.pthread_sigmask(signal.SIG_UNBLOCK, self._blocked)


def formation_watch(strategy: str, timeout: float, environ: Mapping[str, str] = os.environ) -> FormationWatch:
    """The watch a run with `--strategy=strategy` needs: a real one for multi_worker only."""
    cluster = cluster_from_env(environ) if strategy == "multi_worker" else None
    return FormationWatch(timeout, cluster)


def pending_signals(pid: int) -> list[signal.Signals]:
    """The watched signals pending for process `pid` (blocked there, so not yet handled).
    Empty where /proc cannot tell (not Linux): only the timeout then applies."""
    try:
        with open(f"/proc/{pid}/status") as f:
            mask = next((int(line.split()[1], 16) for line in f if line.startswith("ShdPnd:")), 0)
    except OSError:
        return []
    return [s for s in WATCHED if mask & (1 << (s - 1))]


def _watchdog_main() -> None:
    """The watchdog process: argv = parent pid, timeout, the two messages; stdin: the parent."""
    parent, timeout, timed_out, signalled = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3], sys.argv[4]
    for s in WATCHED:  # Ctrl-C reaches the whole process group: the parent's copy is the one that counts.
        signal.signal(s, signal.SIG_IGN)
    deadline = None
    while True:
        ready, _, _ = select.select([0], [], [], _POLL_SECONDS)
        if ready:
            data = os.read(0, 64)
            if not data:  # The parent is past the formation, or gone.
                return
            if _FORMING in data:
                deadline = time.monotonic() + timeout
        pending = pending_signals(parent)
        if pending:
            message = signalled.format(signal=pending[0].name)
        elif deadline is not None and time.monotonic() > deadline:
            message = timed_out
        else:
            continue
        sys.stderr.write(f"error: {message}\n")
        sys.stderr.flush()
        with contextlib.suppress(ProcessLookupError):
            os.kill(parent, signal.SIGKILL)
        return
