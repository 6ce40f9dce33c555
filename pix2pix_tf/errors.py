"""Errors that reach the user as a clear message instead of a traceback."""

import errno
import re
import signal


def one_line(name: str) -> str:
    """`name` (a file name) with its control characters escaped (a newline as \\x0a): a message
    naming it stays the one line it was written as."""
    return re.sub(r"[\x00-\x1f\x7f]", lambda c: f"\\x{ord(c.group()):02x}", name)


class Pix2pixError(Exception):
    """Base of every error whose message alone tells the user what went wrong."""


class ConfigError(Pix2pixError, ValueError):
    """A configuration a run cannot use; the message says what to change."""


class InferenceError(Pix2pixError, ValueError):
    """An image or a model that the generator cannot translate; the message says why."""


class DatasetError(Pix2pixError):
    """A dataset that cannot be found, prepared or read."""


class NonFiniteLossError(Pix2pixError):
    """Training produced NaN or Inf; the last good checkpoint is kept."""


def stop_signals() -> tuple[signal.Signals, ...]:
    """The signals that stop a program as `Interrupted`: SIGINT, SIGTERM, and SIGHUP (its
    terminal or ssh session closed) where the platform has it and the process does not ignore
    it (`nohup` starts it ignored, and it must stay so)."""
    hangup = getattr(signal, "SIGHUP", None)
    ignored = hangup is None or signal.getsignal(hangup) is signal.SIG_IGN
    return (signal.SIGINT, signal.SIGTERM) + (() if ignored else (hangup,))


class Interrupted(KeyboardInterrupt):
    """A stop signal (`stop_signals`), raised where the program was (`cli.run_program` installs
    the handlers).

    A KeyboardInterrupt, so that every `except Exception` lets it through and every clean-up
    written for Ctrl-C runs for SIGTERM too. Code on the way up adds to `done` what it had
    finished (or kept), so that the program's one closing line is a true summary.
    """

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum
        self.done: list[str] = []

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name

    @property
    def exit_code(self) -> int:
        """128 + the signal's number, as a shell reports a process the signal ended: 130, 143."""
        return 128 + self.signum

    @property
    def reason(self) -> str:
        """Why the program stopped, as its closing line begins."""
        return f"{self.name} received"


class OutputLost(Interrupted):
    """A training stopped, and checkpointed, because its progress could not be written: the
    output's reader has gone (a closed pipe or terminal: SIGPIPE's exit code, as a Unix tool
    ends there) or the output is a full device (exit code 1). Training on would hide it."""

    def __init__(self, error: OSError):
        super().__init__(signal.SIGPIPE)
        self.error = error

    @property
    def reader_gone(self) -> bool:
        return self.error.errno in (errno.EPIPE, errno.EIO)

    @property
    def exit_code(self) -> int:
        return super().exit_code if self.reader_gone else 1

    @property
    def reason(self) -> str:
        what = "The standard output's reader has gone" if self.reader_gone else "The standard output cannot be written"
        return f"{what} ({self.error.strerror or self.error})"
