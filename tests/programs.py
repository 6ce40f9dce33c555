"""The command-line programs run in the test process: a program's `main` through `cli.guarded`
(what its console script runs, minus the signal handlers and the C++ log filter that
`cli.run_program` adds), with its absl flags parsed from the argv given, its stdout, stderr and
absl log lines captured, and its exit code returned as a `subprocess.CompletedProcess`.

Why: a fresh `python train.py` pays seconds of CPU to import TensorFlow before it does
anything, and the suite runs programs dozens of times. A test about what a program prints,
writes or refuses runs it here; a test about process behaviour (signals, the interpreter's exit
code, the C++ log filter, workers of a cluster) runs it in a process of its own, forked from a
parent that imported TensorFlow once (tests/forked.py); a test of import-time effects or of a
process without this library starts a fresh interpreter.

The programs define flags of the same names (--workdir, --output_dir, ...) in absl's one global
registry, which refuses a second definition. So each program's own flags are registered only
while it runs: the first run of a program imports its module with no other program's flags
registered, and records the flags the module defined (or, for a program that defines them in a
function its entry point calls, FLAG_DEFINERS, the flags that function defined); a later run
registers that program's flags again, in place of the last one's. Flags defined elsewhere (absl's, a shared declaration
module's) stay registered throughout.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import logging
import os
import subprocess
import sys

from absl import flags
from absl import logging as absl_logging

from pix2pix_tf import cli

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)  # train.py and export.py are top-level scripts, not package modules.

MODULES = {"train": "train", "export": "export", "translate": "pix2pix_tf.translate",
           "evaluate": "pix2pix_tf.evaluate", "demo": "pix2pix_tf.demo.__main__",
           "benchmark": "pix2pix_tf.benchmark.__main__",
           "experiments.precision": "pix2pix_tf.experiments.precision",
           "experiments.paper": "pix2pix_tf.experiments.paper"}
# Programs whose entry point defines their flags by calling this function, not on import (the
# library imports the module too): the function is called once, where the import would have been.
FLAG_DEFINERS = {"pix2pix_tf.experiments.paper": "define_flags"}
FLAGS = flags.FLAGS
_OWN_FLAGS: dict[str, dict[str, flags.Flag]] = {}  # module name -> the flags it defined, by name


def _register(module_name: str) -> None:
    """Leaves the flags of `module_name` (and no other program's) in the registry."""
    for other in MODULES.values():
        if other != module_name and other in sys.modules:
            for name, flag in _own_flags(other).items():
                if name in FLAGS and FLAGS[name] is flag:
                    delattr(FLAGS, name)
    if module_name in FLAG_DEFINERS:
        first = module_name not in _OWN_FLAGS
    else:
        first = module_name not in sys.modules
    if first:
        before = set(FLAGS)
        module = importlib.import_module(module_name)
        if module_name in FLAG_DEFINERS:
            getattr(module, FLAG_DEFINERS[module_name])()
        _OWN_FLAGS[module_name] = {name: FLAGS[name] for name in set(FLAGS) - before}
        return
    module = sys.modules[module_name]
    for name, flag in _own_flags(module_name).items():
        if name not in FLAGS or FLAGS[name] is not flag:
            FLAGS[name] = flag
            FLAGS.register_flag_by_module(module_name, flag)
            FLAGS.register_flag_by_module_id(id(module), flag)


def load(program: str):
    """The program's module, imported with its flags registered (and no other program's): for a
    test of its functions."""
    _register(MODULES[program])
    return sys.modules[MODULES[program]]


def _own_flags(module_name: str) -> dict[str, flags.Flag]:
    """The flags `module_name` defined (known from its import, or from the registry where it
    was imported outside this helper and so still has them registered; none yet where its
    function that defines them has not run here)."""
    if module_name not in _OWN_FLAGS:
        if module_name in FLAG_DEFINERS:
            return {}
        _OWN_FLAGS[module_name] = {f.name: f for f in FLAGS.get_flags_for_module(module_name)}
    return _OWN_FLAGS[module_name]


@contextlib.contextmanager
def _captured_process_state(stdout: io.StringIO, stderr: io.StringIO):
    """stdout, stderr and absl's log lines into the buffers, with ROOT as the working directory
    (the programs' subprocesses ran there); afterwards the environment, the loggers' levels and
    handlers and TensorFlow's op determinism (train.py's --seed turns it on) as they were."""
    environ, cwd = dict(os.environ), os.getcwd()
    absl_handler = absl_logging.get_absl_handler()
    root_handlers, root_level = list(logging.root.handlers), logging.root.level
    absl_level = absl_logging.get_absl_logger().level
    stream = absl_handler.python_handler.stream
    deterministic = _op_determinism()
    absl_logging.use_absl_handler()
    absl_handler.python_handler.stream = stderr
    os.chdir(ROOT)
    try:
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            yield
    finally:
        os.chdir(cwd)
        os.environ.clear()
        os.environ.update(environ)
        absl_handler.python_handler.stream = stream
        logging.root.handlers[:] = root_handlers
        logging.root.setLevel(root_level)
        absl_logging.get_absl_logger().setLevel(absl_level)
        if _op_determinism() and not deterministic:
            from tensorflow.python.framework import config as tf_config

            tf_config.disable_op_determinism()


def _op_determinism() -> bool:
    if "tensorflow" not in sys.modules:
        return False
    from tensorflow.python.framework import config as tf_config

    return tf_config.is_op_determinism_enabled()


def run_program(program: str, *argv: str) -> subprocess.CompletedProcess:
    """`python <program> ARGV...` as `cli.run_program` runs it, in this process (module docstring).

    A flag parsing error or an `app.UsageError` ends it as `cli.run_program` does: one `error:`
    line and exit code 1."""
    module_name = MODULES[program]
    stdout, stderr = io.StringIO(), io.StringIO()
    with _captured_process_state(stdout, stderr):
        _register(module_name)
        main = sys.modules[module_name].main
        FLAGS.unparse_flags()
        try:
            rest = cli.parse_flags([program, *argv])
            if FLAGS["verbosity"].using_default_value:
                FLAGS.verbosity = 0  # INFO, as app.run sets it.
            code = cli.guarded(main)(rest)
        except SystemExit as stop:
            code = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
    return subprocess.CompletedProcess([program, *argv], code, stdout.getvalue(), stderr.getvalue())
