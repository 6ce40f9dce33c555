"""TensorFlow's graph optimizer (Grappler) in the tests: off wherever a test's assertions cannot
depend on it, on (as users run it) where they can.

Grappler rewrites each traced function for speed before its first call. In a run of a few steps,
one export or one translation, that costs more CPU than it saves. It changes no value beyond
float rounding, no file a program writes, nor their order, nor how a program takes a signal:
those are the program's Python code, its signal handlers and TensorFlow's writers, which run the
same either way.

So each test process runs with Grappler off from its start (conftest.py's `pytest_configure`),
and so does every program a test runs in it (tests/programs.py) and every program the fault,
interrupt and cluster tests fork (`forked.Popen(..., prelude=GRAPH_OPTIMIZER_OFF)`). A test module
whose assertions are about values or speed, the numbers users get, is marked `graph_optimizer`
(its `pytestmark`), and its tf.functions (the models, steps, losses and exports it runs) are
optimized as users' are: the reference-fidelity, model, optimizer, objective, metrics,
precision, multi-scale, native-size, tutorial-baseline and performance files. (tf.data's
functions keep the setting TensorFlow started with: in a marked module they run unoptimized, the
same values. The other programs in processes of their own run as users run them: Grappler on.)

`PIX2PIX_TESTS_GRAPH_OPTIMIZER=on python -m pytest ...` runs every test with Grappler on, as users
run it (and spares a process that runs no TensorFlow test the import of TensorFlow that turning it
off at the start costs: tests/test_test_command.py runs pytest in such processes).
"""

from __future__ import annotations

import contextlib
import os
from typing import Iterator

ON_EVERYWHERE = os.environ.get("PIX2PIX_TESTS_GRAPH_OPTIMIZER") == "on"
# Python run in a forked program before its command: off, as in the test process.
GRAPH_OPTIMIZER_OFF = "" if ON_EVERYWHERE else """\
import tensorflow as tf
tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": True})
"""


@contextlib.contextmanager
def graph_optimizer_on() -> Iterator[None]:
    """Grappler on in this process, and afterwards as it was."""
    import tensorflow as tf

    previous = tf.config.optimizer.get_experimental_options().get("disable_meta_optimizer", False)
    tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": False})
    try:
        yield
    finally:
        tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": previous})
