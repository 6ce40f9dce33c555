"""A program's command (`python script.py ...`, `python -m module ...`) that runs the same program
with TensorFlow's graph optimizer (Grappler) off in its process: for the tests whose programs run
in a process of their own (tests/forked.py) to be signalled, killed, or to form a cluster.

Grappler rewrites each traced function for speed before its first call; in these runs of a few
steps (or one export) it costs a sixth of the process's CPU, more than it saves. It changes no
write a program makes, nor their order, nor how it takes a signal: those are the program's
Python code, its signal handlers and TensorFlow's writers, which run the same either way
(tests/write_matrix.py turns it off alike for the programs it runs in the test process).

The program runs as `python` runs it: the script with `runpy.run_path`, the module with
`runpy._run_module_as_main` (what `python -m` calls), `sys.argv` and `sys.path[0]` as the
interpreter sets them, in a process that ends through the interpreter's exit.
"""

from __future__ import annotations

import sys

_PRELUDE = """\
import os, runpy, sys
import tensorflow as tf
tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": True})
del tf
sys.argv = sys.argv[1:]
if sys.argv[0] == "-m":
    sys.argv, sys.path[0] = sys.argv[1:], os.getcwd()
    runpy._run_module_as_main(sys.argv[0])
else:
    sys.path[0] = os.path.dirname(os.path.abspath(sys.argv[0]))
    runpy.run_path(sys.argv[0], run_name="__main__")
"""


def without_graph_optimizer(command: list[str], first: str = "") -> list[str]:
    """`command` (`[sys.executable, SCRIPT_OR_-m, ...]`) as a command that runs it with Grappler
    off; `first`: a line of Python run before (`nohup`'s ignoring of SIGHUP, say)."""
    if command[0] != sys.executable or len(command) < 2 or command[1] == "-c":
        raise ValueError(f"not a script or module command of this Python: {command[:2]}")
    return [sys.executable, "-c", f"{first}\n{_PRELUDE}", *command[1:]]
