"""TensorFlow's log lines that are known noise, dropped from a program's stderr; every other
line, C++ or Python, passes unchanged.

TensorFlow's C++ code logs straight to file descriptor 2, out of Python's reach, and its only
switch (TF_CPP_MIN_LOG_LEVEL=3) would also hide the errors that matter. Two ERROR lines are
noise for our programs:

* `remapper failed: ... fanout '.../LeakyReluGrad' exist for missing node '.../BiasAdd'`,
  at the first training step: with oneDNN (TensorFlow's CPU default) grappler's remapper
  fuses Conv2D + BiasAdd + LeakyRelu although the BiasAdd also feeds LeakyReluGrad. That is
  the discriminator's first layer (a biased convolution, then LeakyReLU) in the generator's
  step, which differentiates D with respect to its input only. The remapper notices, logs,
  and leaves that graph unoptimised; the step computes the same numbers.
* `Premature end of JPEG data. Stopped at line N/M`: libjpeg's warning for a truncated JPEG,
  which the decode op then raises as an error that our programs report with the file's name.

One INFO line of TensorFlow's Python code, in absl's format, is noise too: `Sharding callback
duration: N microseconds`, the checkpoint saver timing itself at every save.

TensorFlow's own switch, TF_CPP_MIN_LOG_LEVEL (`cli.quiet_tensorflow` sets 2), does not reach
the lines logged before absl::InitializeLog (dated 0000: oneDNN's notice, "Could not find cuda
drivers", and absl's own warning that such lines go to stderr): those of a severity that level
hides are dropped too (`startup_chatter`).

On a machine with no NVIDIA driver, TensorFlow's CUDA build logs `failed call to cuInit` as an
ERROR at import, before its logging starts. There it only means that the CPU is used, which
the strategy's own line ("Using MirroredStrategy with devices ...") says; where a driver is
loaded the line is a real diagnosis and passes (`missing_driver_noise`).

`drop_known_noise()` (run by `cli.run_program`, i.e. only by programs) routes descriptor 2
through a child process (this file run as a script) that drops exactly those lines. The
child is in its own session, so Ctrl-C reaches only the program, and it ends when the
program's end of the pipe closes, after writing out what the program wrote last, even if
the program is killed.
"""

from __future__ import annotations

import atexit
import glob
import os
import re
import subprocess
import sys
from typing import Optional

# One C++ log line's prefix: severity, date (0000 before absl::InitializeLog), time, thread, file:line.
_PREFIX = rb"E\d{4} [\d:.]+\s+\d+ "
NOISE = (
    _PREFIX + rb"meta_optimizer\.cc:\d+\] remapper failed: INVALID_ARGUMENT: Mutation::Apply error: "
              rb"fanout '[^']*LeakyReluGrad' exist for missing node '[^']*BiasAdd'\.",
    _PREFIX + rb"jpeg_mem\.cc:\d+\] Premature end of JPEG data\. Stopped at line \d+/\d+",
    rb"I\d{4} [\d:.]+\s+\d+ functional_saver\.py:\d+\] Sharding callback duration: \d+ microseconds",
)
# Lines logged before absl::InitializeLog, by severity (TF_CPP_MIN_LOG_LEVEL: 1 hides INFO, 2 WARNING too).
_BEFORE_INIT = rb"0000 00:00:[\d.]+\s+\d+ [^\]]*\] .*"
_STARTUP = (
    (1, rb"I" + _BEFORE_INIT),
    (2, rb"W" + _BEFORE_INIT),
    (2, rb"WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"),
)
# TensorFlow's CUDA build at import, where no NVIDIA driver exists to initialise.
_NO_DRIVER = _PREFIX + rb"cuda_platform\.cc:\d+\] failed call to cuInit: .*"
_HOLD_LIMIT = 1 << 16  # A partial line longer than this is passed on without waiting for its end.
_child: Optional[subprocess.Popen] = None
_original: Optional[int] = None  # Descriptor 2 as it was before the filter.


def startup_chatter(level: Optional[str]) -> tuple[bytes, ...]:
    """The lines logged before absl::InitializeLog that TF_CPP_MIN_LOG_LEVEL=`level` hides."""
    threshold = int(level) if level and level.strip().isdigit() else 0
    return tuple(pattern for severity, pattern in _STARTUP if severity <= threshold)


def missing_driver_noise(driver_loaded: bool) -> tuple[bytes, ...]:
    """The cuInit failure, noise only where no NVIDIA driver is loaded."""
    return () if driver_loaded else (_NO_DRIVER,)


def nvidia_driver_loaded() -> bool:
    """Whether an NVIDIA kernel driver is loaded here (in a container: passed into it; under
    WSL 2, whose GPUs are reached through /dev/dxg, assumed)."""
    driver_files = ("/proc/driver/nvidia/version", "/dev/dxg")
    return any(os.path.exists(path) for path in driver_files) or bool(glob.glob("/dev/nvidia[0-9]*"))


def forward(source: int, sink: int, patterns: tuple[bytes, ...] = NOISE) -> None:
    """Copies `source` to `sink` until end of file, without the lines that fully match a pattern.

    A partial line is passed on at once (progress bars redraw with carriage returns) unless
    it could be a C++ log line (it starts with "E", "I" or "W"), which waits for its end of line."""
    noise = [re.compile(p) for p in patterns]
    pending = b""
    while True:
        try:
            chunk = os.read(source, 1 << 16)
        except InterruptedError:
            continue
        if not chunk:
            break
        *lines, pending = (pending + chunk).split(b"\n")
        out = [line + b"\n" for line in lines if not any(n.fullmatch(line.rstrip(b"\r")) for n in noise)]
        if pending and (pending[:1] not in (b"E", b"I", b"W") or len(pending) > _HOLD_LIMIT):
            out.append(pending)
            pending = b""
        _write(sink, b"".join(out))
    _write(sink, pending)


def _write(fd: int, data: bytes) -> None:
    """Writes all of `data`; a sink that is gone drops it (the program must never block on us)."""
    while data:
        try:
            data = data[os.write(fd, data):]
        except InterruptedError:
            continue
        except OSError:
            return


def drop_known_noise() -> None:
    """Routes this process's descriptor 2 through the filter (once per process; a no-op where
    the child cannot be started). Changes process state: for programs only."""
    global _child, _original
    if _child is not None:
        return
    sys.stderr.flush()
    original = os.dup(2)
    read_end, write_end = os.pipe()
    try:
        _child = subprocess.Popen([sys.executable, "-S", os.path.abspath(__file__)], stdin=read_end, stdout=original,
                                  stderr=subprocess.DEVNULL, close_fds=True, start_new_session=True)
    except OSError:
        os.close(read_end)
        os.close(write_end)
        os.close(original)
        return
    os.close(read_end)
    os.dup2(write_end, 2)
    os.close(write_end)
    _original = original
    atexit.register(finish)


def finish() -> None:
    """stderr back to where it was, and the filter's last lines out before the shell's prompt:
    at exit, or just before an exit that skips atexit (`cli._end_now`). Once; a no-op where
    the filter was not started."""
    global _original
    if _original is None:
        return
    try:
        sys.stderr.flush()
    except (OSError, ValueError):
        pass
    os.dup2(_original, 2)  # Closes our end of the pipe: the child reads end of file.
    os.close(_original)
    _original = None
    try:
        _child.wait(timeout=2)
    except subprocess.TimeoutExpired:
        pass


if __name__ == "__main__":
    level = os.environ.get("TF_CPP_MIN_LOG_LEVEL")
    forward(0, 1, NOISE + startup_chatter(level) + missing_driver_noise(nvidia_driver_loaded()))
