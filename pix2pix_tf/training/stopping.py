"""How a training run stops: cleanly, with the step it reached checkpointed.

On one machine a stop signal becomes a request to checkpoint and stop after the current step
(`stop_requests`); in a multi-worker cluster, TensorFlow's preemption handler makes every worker
checkpoint the same step (`preemption_aware`). The loop (`loop.py`) asks for both.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from typing import Callable, Iterator

import tensorflow as tf

from pix2pix_tf.errors import Interrupted, stop_signals
from pix2pix_tf.training.checkpoints import RunCheckpoints
from pix2pix_tf.training.step import Pix2Pix


@contextlib.contextmanager
def stop_requests(preemption: bool = False) -> Iterator[list]:
    """Turns SIGINT/SIGTERM, and SIGHUP (the terminal or ssh session closed) unless it is
    ignored (`nohup`), into a request to checkpoint and stop after the current step.

    A second Ctrl-C interrupts at once (`Interrupted`), through the handler it replaced where
    that is the program's own: `cli` lands a stop in the program's code, not inside
    TensorFlow's (the first step's replica coordinator logged one raised there as an error).

    `preemption` (a multi-worker cluster, whose SIGTERM is TensorFlow's preemption notice: every
    worker checkpoints the same step): a first Ctrl-C or a hangup is sent on as that notice, so
    that the cluster stops together instead of one worker leaving its peers waiting.
    """
    requested: list = []
    received = requested if not preemption else []  # The cluster's stop is TensorFlow's, not this loop's.

    def handler(signum, frame):
        if received and signum == signal.SIGINT:
            replaced = previous[signal.SIGINT]
            if callable(replaced) and replaced is not signal.default_int_handler:
                return replaced(signum, frame)
            raise Interrupted(signum)
        received.append(signal.Signals(signum).name)
        if preemption:
            os.kill(os.getpid(), signal.SIGTERM)

    if threading.current_thread() is not threading.main_thread():  # signal.signal would raise
        yield requested
        return
    taken = [s for s in stop_signals() if not (preemption and s == signal.SIGTERM)]
    previous = {s: signal.signal(s, handler) for s in taken}
    try:
        yield requested
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def preemption_aware(gan: Pix2Pix, checkpoints: RunCheckpoints) -> Callable:
    """In a multi-worker cluster, TensorFlow's PreemptionCheckpointHandler runs each step.

    When any worker is told to stop (SIGTERM), every worker checkpoints the same step and the
    processes exit with code 42; the restarted cluster resumes from that checkpoint. It is saved
    as every other (`ckpt-<step>`), not under the manager's count of saves, which would name it
    below an earlier save and resume from that one. One machine needs no coordination:
    `stop_requests` does the same there.
    """
    if not isinstance(gan.strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return gan.train_step
    handler = tf.distribute.experimental.PreemptionCheckpointHandler(
        gan.strategy.cluster_resolver, checkpoints.manager,
        termination_config=tf.distribute.experimental.TerminationConfig(
            save_fn=lambda: checkpoints.save(gan.current_step())))
    return lambda iterator: handler.run(gan.train_step, iterator)
