"""What every command-line program of the package shares, so each entry point stays thin.

The convention: an entry module defines its flags at module level with absl, turns them into
one typed config in `config_from_flags()`, and hands `main` to `run_program`. Only entry
points change process state (environment, signal handlers, allocator, matplotlib backend);
library modules never do. Nothing here imports TensorFlow, so `--help` answers at once.
"""

from __future__ import annotations

import errno
import os
import sys
from typing import Callable

from absl import app, logging

from pix2pix_tf.errors import Pix2pixError


def quiet_tensorflow() -> None:
    """Hides TensorFlow's C++ start-up chatter; must run before TensorFlow is imported."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def describe_os_error(error: OSError) -> str:
    """An OSError as a user reads it: what failed, on which path, and what to do."""
    where = f" {error.filename}" if error.filename else ""
    if error.errno == errno.ENOSPC:
        return f"No space left on the device holding{where}: free some space or choose another folder."
    if error.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"Cannot write{where}: permission denied or read-only file system. Choose a folder you can write."
    if error.errno == errno.ENOTDIR:
        return f"{where.strip()} is a file where a folder is needed."
    return f"{error.strerror or error}{':' + where if where else ''}"


def guarded(main: Callable[[list[str]], int]) -> Callable[[list[str]], int]:
    """`main` with the user's mistakes and situations (bad input, a full or read-only disk)
    reported as one `error: ...` line and exit code 1 instead of a traceback."""

    def program(argv: list[str]) -> int:
        try:
            return main(argv)
        except Pix2pixError as e:
            message = str(e)
        except OSError as e:
            message = describe_os_error(e)
        logging.error("%s", message)
        print(f"error: {message}", file=sys.stderr)
        return 1

    return program


def run_program(main: Callable[[list[str]], int]) -> None:
    """Runs an absl program whose `main` returns the exit code, its stderr without the C++ log
    lines that are known noise (`native_logs`)."""
    from pix2pix_tf import native_logs

    native_logs.drop_known_noise()
    app.run(guarded(main))


def reject_arguments(argv: list[str]) -> None:
    """For programs that take flags only."""
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
