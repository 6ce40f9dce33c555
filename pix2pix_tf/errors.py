"""Errors that reach the user as a clear message instead of a traceback."""

import errno
import os
import re
import signal


def one_line(name: str) -> str:
    """`name` (a file name) with its control characters escaped (a newline as \\x0a): a message
    naming it stays the one line it was written as."""
    return re.sub(r"[\x00-\x1f\x7f]", lambda c: f"\\x{ord(c.group()):02x}", name)


# Lines of a TensorFlow graph's error that say where it ran, not what failed.
_GRAPH_NOISE = re.compile(r"Graph execution error:|Detected at node .*|<stack traces unavailable>|"
                          r"\d+ root error\(s\) found\.")
# What a tf.data or multi-error message puts before an op's own message.
_MESSAGE_PREFIX = re.compile(r"(\(\d+\) [A-Z_]+: )?(Error in user-defined function passed to .*? transformation "
                             r"with iterator: \S+: )?")


def tensorflow_message(text: str) -> str:
    """The first line of a TensorFlow error's text that says what failed (`Invalid PNG data,
    size 100`): an error raised in a graph begins with where it ran (`Graph execution error:`,
    `Detected at node ...`, the stack, indented) and, in a data pipeline, the transformation;
    a user acts on the op's own message."""
    for line in text.strip().splitlines():
        if line.strip() and not line[0].isspace() and not _GRAPH_NOISE.fullmatch(line.strip()):
            return _MESSAGE_PREFIX.sub("", line.strip(), count=1)
    return text.strip()


def op_message(error: Exception) -> str:
    """TensorFlow's error text without its `{{function_node ...}}` and `[Op:...]` wrapping, nor a
    graph's lines about where it ran (`tensorflow_message`)."""
    text = (getattr(error, "message", None) or str(error)).strip()
    if text.startswith("{{") and "}}" in text:
        text = text[text.index("}}") + 2:].strip()
    text = tensorflow_message(text) if text else type(error).__name__
    return text.split(" [Op:")[0].strip()


def op_reason(error: Exception) -> str:
    """An OSError's or TensorFlow error's reason in one line: TensorFlow's file errors read
    "<its own temporary file>; <reason>", and the reason is what one acts on."""
    if isinstance(error, OSError):
        return f"{error.strerror or error}" + (f": {error.filename}" if error.filename else "")
    message = op_message(error)
    path, separator, reason = message.rpartition("; ")
    return reason if separator and path.startswith(os.sep) else message


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
