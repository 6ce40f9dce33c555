"""What every command-line program of the package shares, so each entry point stays thin.

The convention: an entry module defines its flags at module level with absl, turns them into
one typed config in `config_from_flags()`, and hands `main` to `run_program`. Only entry
points change process state (environment, signal handlers, allocator, matplotlib backend);
library modules never do. Nothing here imports TensorFlow, so `--help` answers at once.

How a program ends: normally with `main`'s exit code; on a user's mistake or situation with
one `error: ...` line and exit code 1; on SIGINT, SIGTERM or SIGHUP (`errors.stop_signals`)
with one `error: SIGTERM received: stopped; <what was done>` line and exit code 128 + the
signal: 130, 143, 129 (`Interrupted`); when stdout's reader has gone (`| head -c 5` read what it
wanted), with one line saying so and SIGPIPE's exit code, 141, as a Unix tool ends there. A
stop that lands once `main` has returned (in TensorFlow's teardown at exit) ends the process at
once with one line and `main`'s exit code.
"""

from __future__ import annotations

import errno
import os
import select
import signal
import sys
import threading
import time
import types
from typing import Callable, Optional

from absl import app, flags

from pix2pix_tf import native_logs
from pix2pix_tf.errors import Interrupted, Pix2pixError, stop_signals

# The flags `define_list` declares belong to the program that calls it: its --help lists them
# (absl's documented way for a module of DEFINE helpers).
flags.disclaim_key_flags()


class _UniqueListParser(flags.ListParser):
    """A comma-separated list whose repeated items count once: `--tflite=float32,float32` is
    one variant (written once, reported once), not the same work done twice."""

    def parse(self, argument):
        return list(dict.fromkeys(super().parse(argument)))


def define_list(name: str, default: Optional[list[str]], help: str,
                flag_values: flags.FlagValues = flags.FLAGS) -> flags.FlagHolder:
    """`flags.DEFINE_list` with repeated items dropped (the programs' one list flag)."""
    return flags.DEFINE(_UniqueListParser(), name, default, help, flag_values,
                        serializer=flags.CsvListSerializer(","))


class _PathParser(flags.ArgumentParser):
    """A path, whose leading `~` is the home folder: the shell expands it only at the start of a
    word, so `--workdir=~/runs/x` reaches the program as typed (and would be a folder named `~`)."""

    syntactic_help = "a path"

    def parse(self, argument):
        return os.path.expanduser(argument) if isinstance(argument, str) else argument

    def flag_type(self) -> str:
        return "string"


def define_path(name: str, default: Optional[str], help: str,
                flag_values: flags.FlagValues = flags.FLAGS) -> flags.FlagHolder:
    """`flags.DEFINE_string` for a file or folder (`_PathParser`): every program's path flags."""
    return flags.DEFINE(_PathParser(), name, default, help, flag_values)


def define_multi_path(name: str, default: list[str], help: str,
                      flag_values: flags.FlagValues = flags.FLAGS) -> flags.FlagHolder:
    """`flags.DEFINE_multi_string` for files or folders: each value's leading `~` is the home folder."""
    return flags.DEFINE_multi(_PathParser(), flags.ArgumentSerializer(), name, default, help, flag_values)


def quiet_tensorflow() -> None:
    """Hides TensorFlow's C++ INFO and WARNING lines; must run before TensorFlow is imported
    (`native_logs` drops those logged before TensorFlow's logging starts, which ignore it)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def user_message(error: Exception) -> str:
    """The one line a user's mistake or situation is reported as: a Pix2pixError says it
    itself, an OSError through `describe_os_error`."""
    return describe_os_error(error) if isinstance(error, OSError) else str(error)


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
    reported as one `error: ...` line and exit code 1, and a stop by SIGINT/SIGTERM as one
    line saying what was done and exit code 128 + the signal, instead of a traceback."""

    def program(argv: list[str]) -> int:
        _raised.clear()
        try:
            return main(argv)
        except Interrupted as e:
            return _report_stop(e)
        except KeyboardInterrupt:  # Python's own handler: `main` run without `run_program`'s.
            return _report_stop(Interrupted(signal.SIGINT))
        except app.UsageError as e:  # A missing or contradictory flag: the message, not the whole --help.
            print(f"error: {e} {FLAGS_HINT}", file=sys.stderr, flush=True)
            return e.exitcode
        except Exception as e:
            if _raised:  # The stop, turned into another error by code that did not expect it.
                return _report_stop(Interrupted(_raised[0]))
            if isinstance(e, BrokenPipeError) and _stdout_reader_gone():
                return _report_lost_output("stopped where it could not print")
            if not isinstance(e, (Pix2pixError, OSError)):
                raise
            message = user_message(e)
        print(f"error: {message}", file=sys.stderr, flush=True)
        return 1

    return program


FLAGS_HINT = "(--helpshort lists the flags)"


def parse_flags(argv: list[str]) -> list[str]:
    """absl's flag parsing, with a bad value (`--version=abc`, an unknown flag) reported as one
    `error:` line and exit code 1, as every other mistake is."""
    try:
        return flags.FLAGS(argv)
    except flags.Error as e:
        print(f"error: {' '.join(str(e).split())} {FLAGS_HINT}", file=sys.stderr, flush=True)
        sys.exit(1)


def _report_stop(stop: Interrupted) -> int:
    done = "; ".join(stop.done)
    print(f"\nerror: {stop.reason}: stopped" + (f"; {done}." if done else "."), file=sys.stderr, flush=True)
    return stop.exit_code


# A stop that arrives outside the program's own code lands in the program's frame that called
# that code, at its next line; where that call has not returned within PATIENCE seconds (a
# server's loop of another library), the stop is sent again then and raised where it is.
PATIENCE = 2.0
_PACKAGE = os.path.dirname(os.path.abspath(__file__)) + os.sep
_deferred_since: dict[int, float] = {}  # signal -> when it arrived, while it waits to land
_traced: list[tuple[types.FrameType, object]] = []  # (the frame watched, the trace function it replaced)
_resends: list[threading.Timer] = []
_raised: list[int] = []  # The signals raised as `Interrupted` while `guarded`'s program runs.


def _raise_interrupted(signum: int, frame: Optional[types.FrameType]) -> None:
    """Raises `Interrupted` where the program is, once that is the program's own Python code.

    Elsewhere (TensorFlow's Python code, the import system) the code may have been called from
    C that does not expect a Python exception: the stop would end as a `SystemError` and then
    some unrelated error, with a traceback. So the nearest frame of the program's code on the
    stack is watched (a trace function, as a debugger sets) and the stop is raised at its next
    line, as soon as the call it waits on returns."""
    now = time.monotonic()
    new = signum not in _deferred_since
    since = _deferred_since.setdefault(signum, now)
    if frame is not None and not _in_program(frame) and now - since < PATIENCE:
        if new:
            _watch_program_frame(frame)
            resend = threading.Timer(PATIENCE, _send_again, (signum,))
            resend.daemon = True  # Never keeps a finished program waiting.
            resend.start()
            _resends.append(resend)
        return
    _raise_stop(signum)


def _watch_program_frame(frame: types.FrameType) -> None:
    """Raises the waiting stop at the next line (or the return) of the nearest frame of the
    program's code above `frame`; none there: the stop waits for `PATIENCE`."""
    while frame is not None and not _in_program(frame):
        frame = frame.f_back
    if frame is None or _traced:
        return

    def stop_here(traced: types.FrameType, event: str, arg: object):
        if event == "exception" or not _deferred_since:  # An error on its way out: it ends in a return.
            return stop_here
        _raise_stop(next(iter(_deferred_since)))

    _traced.append((frame, sys.gettrace()))
    frame.f_trace = stop_here
    sys.settrace(sys.gettrace() or _trace_no_new_frame)  # Tracing on in this thread: `f_trace` is called.


def _trace_no_new_frame(frame: types.FrameType, event: str, arg: object) -> None:
    return None


def _raise_stop(signum: int) -> None:
    """Raises the stop, and remembers it: where it lands in code called from C that does not
    expect an exception (the `PATIENCE` fallback can land there), that code may end with another
    error (a `SystemError` from inside TensorFlow) and no trace of the stop; `guarded` reports
    such an error as the stop that caused it."""
    _land()
    _raised.append(signum)
    raise Interrupted(signum)


def _land() -> None:
    """The waiting stops are being raised: no frame is watched, and none is sent again."""
    _deferred_since.clear()
    while _resends:
        _resends.pop().cancel()
    while _traced:
        frame, previous = _traced.pop()
        frame.f_trace = None
        sys.settrace(previous)


def _send_again(signum: int) -> None:
    if signum in _deferred_since:  # Not landed yet: raised where the program is now.
        os.kill(os.getpid(), signum)


def _in_program(frame: types.FrameType) -> bool:
    """Whether `frame` runs code of this package or of the program's script."""
    filename = os.path.abspath(frame.f_code.co_filename)
    script = getattr(sys.modules.get("__main__"), "__file__", None)
    return filename.startswith(_PACKAGE) or (script is not None and filename == os.path.abspath(script))


def send_dropped_stops_again(
        report: Callable[[sys.UnraisableHookArgs], object]) -> Callable[[sys.UnraisableHookArgs], None]:
    """An unraisable hook: Python prints and drops an exception raised where it cannot propagate
    (a `__del__`, a weakref callback: TensorFlow frees functions in both), which would lose a
    stop that lands there. Such a stop is sent again just after; anything else goes to `report`."""

    def hook(unraisable: sys.UnraisableHookArgs) -> None:
        if isinstance(unraisable.exc_value, Interrupted):
            threading.Timer(0.01, os.kill, (os.getpid(), unraisable.exc_value.signum)).start()
        else:
            report(unraisable)

    return hook


def run_program(main: Callable[[list[str]], int]) -> None:
    """Runs an absl program whose `main` returns the exit code, its stderr without the C++ log
    lines that are known noise (`native_logs`). SIGINT and SIGTERM raise `Interrupted` where
    the program is (in its own code: `_raise_interrupted`), so that its clean-ups run and it
    ends as the module docstring says; once `main` has returned, one ends the process at once
    with `main`'s exit code (`_end_now`)."""
    _open_closed_standard_streams()
    native_logs.drop_known_noise()
    program = guarded(main)

    def run(argv: list[str]) -> int:
        signals = stop_signals()
        for signum in signals:
            signal.signal(signum, _raise_interrupted)
        report = sys.unraisablehook
        sys.unraisablehook = send_dropped_stops_again(report)
        ended = [1]  # What an exception `guarded` lets through ends with.
        try:
            ended[0] = program(argv)
        finally:
            for signum in signals:
                signal.signal(signum, lambda signum, frame: _end_now(signum, ended[0]))
            sys.unraisablehook = report
            ended[0] = _flush_stdout(ended[0])
        return ended[0]

    app.run(run, flags_parser=parse_flags)


def _end_now(signum: int, code: int) -> None:
    """A stop that lands once `main` has returned: the program's work is done (or failed, and
    said so); what is left is the interpreter's exit, TensorFlow's teardown included. It ends
    now, with one line, and with the program's exit code: a scheduler that stopped a finished
    program is not told it was stopped before it finished."""
    try:
        sys.stdout.flush()
        sys.stderr.write(f"{signal.Signals(signum).name} received after the program had finished: exiting now "
                         f"(exit code {code}).\n")
        sys.stderr.flush()
    except (OSError, ValueError):  # A closed or gone stream: the exit code still says it.
        pass
    native_logs.finish()  # Its atexit handler would not run.
    os._exit(code)


def _open_closed_standard_streams() -> None:
    """A program started with stdin, stdout or stderr closed (`>&-`) gets /dev/null there.
    Python would leave `sys.stdout` None (a traceback at the first progress line), and the
    next file the program opened would take descriptor 1 or 2, receiving whatever TensorFlow's
    C++ code or a print writes there."""
    for fd, name, mode in ((0, "stdin", "r"), (1, "stdout", "w"), (2, "stderr", "w")):
        try:
            os.fstat(fd)
        except OSError:
            # POSIX gives the lowest free descriptor: `fd` itself, every lower one being open by now.
            os.open(os.devnull, os.O_RDONLY if mode == "r" else os.O_WRONLY)
            setattr(sys, name, open(fd, mode, closefd=False))


def _flush_stdout(code: int) -> int:
    """Sends what stdout still buffers. Where its reader has gone, the rest goes nowhere (instead
    of Python reporting the failed flush at exit with a traceback), and a program that had
    succeeded ends as one that lost its output."""
    try:
        sys.stdout.flush()
        return code
    except OSError as e:
        try:
            nowhere = os.open(os.devnull, os.O_WRONLY)
            os.dup2(nowhere, sys.stdout.fileno())
            os.close(nowhere)
        except (OSError, ValueError):  # A stdout with no descriptor: Python's own report stands.
            return code
        lost = code == 0 and isinstance(e, BrokenPipeError)
        return _report_lost_output("its last output is lost") if lost else code


def _stdout_reader_gone() -> bool:
    """Whether stdout is a pipe or terminal whose other end has closed (poll reports an error
    or a hangup on it), as opposed to a socket or file of the program's own work failing."""
    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(events & (select.POLLERR | select.POLLHUP) for _, events in poller.poll(0))
    except (AttributeError, OSError, ValueError):  # No poll (Windows), or no descriptor.
        return False


def say(line: str) -> None:
    """Prints a program's result line. Where stdout cannot take it (a full device; a reader that
    has gone is `guarded`'s to report), the line goes to stderr inside the error."""
    # A name stdout's encoding cannot hold (a file name that is not UTF-8 reaches Python as lone
    # surrogates) is printed escaped, as stderr prints it, not raised after the work is done.
    encoding = getattr(sys.stdout, "encoding", None) or "utf-8"
    line = line.encode(encoding, "backslashreplace").decode(encoding, "replace")
    try:
        print(line, flush=True)
    except OSError as e:
        if isinstance(e, BrokenPipeError) and _stdout_reader_gone():
            raise
        raise Pix2pixError(f"The standard output cannot be written ({e.strerror or e}); it would have said: "
                           f"{line}") from e


def _report_lost_output(what: str) -> int:
    print(f"error: The standard output's reader has gone (Broken pipe): {what}.", file=sys.stderr, flush=True)
    return 128 + signal.SIGPIPE


def reject_arguments(argv: list[str]) -> None:
    """For programs that take flags only."""
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
