"""Every file the programs write is written here: whole or not at all, and only where asked.

`write_file(path, data)` writes `data` to a temporary file in the destination's folder,
flushes and fsyncs it, then renames it over `path` (an atomic replace on POSIX file systems).
So a reader, a crash or a full disk sees either the previous file or the new one, never a
part of it, and a failed write removes its temporary file before the error propagates. A
temporary file is named after its process (`.NAME.<host>-<pid>-<random>.tmp`): what a kill
between the write and the rename leaves is removed by the next process that writes there.
A destination that is a symbolic link is refused (`UnsafeDestinationError`), as is one whose
folder resolves outside `within` (the output folder the user named): a link planted in an
output folder never redirects a write onto a file elsewhere.

TensorFlow writes checkpoints and TensorBoard events itself; the places the programs call it
declare a `write_point(path)`, so that `injected_faults` (the fault-injection seam the tests
use) can fail any write the programs make, theirs or TensorFlow's, by its position.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import glob
import io
import os
import re
import secrets
import signal
import socket
import threading
import zlib
from typing import Callable, Iterator, Optional

from pix2pix_tf.errors import Pix2pixError, stop_signals


class UnsafeDestinationError(Pix2pixError):
    """A destination that is a symbolic link, or lies outside the folder it must be in."""


@dataclasses.dataclass
class InjectedFaults:
    """The writes made while `injected_faults` is active, and which of them fail."""

    fail_at: frozenset[int]
    error: int
    before: Optional[Callable[[int, str], None]]
    points: list[str] = dataclasses.field(default_factory=list)

    def check(self, path: str) -> bool:
        """Records a write point; True if this one must fail."""
        self.points.append(path)
        if self.before is not None:
            self.before(len(self.points), path)
        return len(self.points) in self.fail_at

    def raise_error(self, path: str) -> None:
        raise OSError(self.error, os.strerror(self.error), path)


_faults: Optional[InjectedFaults] = None
_TEMPORARY = ".tmp"  # The suffix of write_file's temporary files: .NAME.<host>-<pid>-<random>.tmp
_TEMPORARY_NAME = re.compile(r"^\..+\.([0-9a-f]{4})-([0-9]+)-[0-9a-f]{8}\.tmp$")
_HOST = f"{zlib.crc32(socket.gethostname().encode()) & 0xFFFF:04x}"  # Tells this machine's temporaries.
_swept: set[tuple[int, str]] = set()  # (pid, folder): folders this process has cleared of dead temporaries.
# (temporary, destination, within) of the files `together` holds back until its block ends.
_held: Optional[list[tuple[str, str, Optional[str]]]] = None


@contextlib.contextmanager
def injected_faults(fail_at: tuple[int, ...] = (), error: int = errno.ENOSPC,
                    before: Optional[Callable[[int, str], None]] = None) -> Iterator[InjectedFaults]:
    """Within it, the k-th write point (1-based, for each k in `fail_at`) fails with `error`
    as a full or failing disk would: `write_file` after writing part of the temporary file,
    TensorFlow's writers before they write. `before(k, path)` is called at every write point
    (to send a signal at a chosen one, say). The points seen are in `.points`."""
    global _faults
    previous, _faults = _faults, InjectedFaults(frozenset(fail_at), error, before)
    try:
        yield _faults
    finally:
        _faults = previous


@contextlib.contextmanager
def together() -> Iterator[None]:
    """Files read together (a report's metrics, page and pictures) change together: within it,
    each `write_file` writes its temporary file whole, and all of them take their names only
    when the block ends without an error; any error removes every one of them, so the earlier
    files all stay as they were. (The renames need no space; only a kill during them mixes.)"""
    global _held
    if _held is not None:  # Inside another `together`: its block decides.
        yield
        return
    held: list[tuple[str, str, Optional[str]]] = []
    _held = held
    try:
        yield
        _held = None
        with _stops_held_back():  # A Ctrl-C here would leave a report of two versions.
            for temporary, path, within in held:
                check_destination(path, within)  # A link could have appeared since.
                os.replace(temporary, path)
        for folder in dict.fromkeys(os.path.dirname(os.path.abspath(path)) for _, path, _ in held):
            _sync_folder(folder)
    finally:
        _held = None
        for temporary, _, _ in held:
            with contextlib.suppress(OSError):  # Gone where it took its name.
                os.remove(temporary)


@contextlib.contextmanager
def _stops_held_back() -> Iterator[None]:
    """SIGINT, SIGTERM and SIGHUP received in the block are raised again when it ends, to the
    handlers they would have reached (Python runs handlers in the main thread only, and any of
    TensorFlow's threads may take the signal, so blocking it in this thread would not do)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    # An ignored one stays ignored (nohup's SIGHUP, a background job's SIGINT).
    handled = [s for s in stop_signals() if signal.getsignal(s) not in (signal.SIG_IGN, None)]
    previous = {s: signal.signal(s, lambda signum, frame: received.append(signum)) for s in handled}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        for signum in received:
            signal.raise_signal(signum)


def write_point(path: str) -> None:
    """Declares a write by code that is not `write_file` (TensorFlow's checkpoint and summary
    writers); raises the injected error if this write is chosen to fail."""
    if _faults is not None and _faults.check(path):
        _faults.raise_error(path)


def check_destination(path: str, within: Optional[str] = None) -> None:
    """Refuses a destination that is a symbolic link, or whose folder is outside `within`."""
    if os.path.islink(path):
        raise UnsafeDestinationError(f"{path} is a symbolic link (to {os.readlink(path)}); it is not written "
                                     "through. Remove the link or choose another output folder.")
    if within is not None:
        root = os.path.realpath(within)
        folder = os.path.realpath(os.path.dirname(os.path.abspath(path)))
        if os.path.commonpath([root, folder]) != root:
            raise UnsafeDestinationError(f"{path} would be written in {folder}, outside {within} (a folder on the "
                                         "way is a symbolic link); it is not written.")


def write_file(path: str, data: bytes, within: Optional[str] = None) -> str:
    """Writes `data` to `path` whole or not at all (see the module docstring); returns `path`.

    Creates the folder if needed. `within`: the folder `path` must stay in (the output folder
    the user named), checked after resolving links."""
    folder = os.path.dirname(os.path.abspath(path))
    check_destination(path, within)  # Before creating folders, which could be through a link.
    os.makedirs(folder, exist_ok=True)
    _remove_dead_temporaries(folder)
    temporary = os.path.join(folder, f".{os.path.basename(path)}.{process_tag()}-{secrets.token_hex(4)}{_TEMPORARY}")
    fail = _faults is not None and _faults.check(path)
    try:
        # 0o666 less the umask, as open() would give the file; mkstemp's would be 0o600.
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        with os.fdopen(fd, "wb") as f:
            if fail:
                f.write(data[: len(data) // 2])
                _faults.raise_error(path)
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if _held is not None:  # `together`'s block renames it when it ends.
            _held.append((temporary, path, within))
            return path
        check_destination(path, within)  # A link could have appeared while writing.
        os.replace(temporary, path)
    except BaseException as e:
        with contextlib.suppress(OSError):
            os.remove(temporary)
        if isinstance(e, OSError) and e.filename is None:  # A failed write() names no file: say which.
            raise OSError(e.errno, e.strerror, path) from e
        raise
    _sync_folder(folder)
    return path


def _remove_dead_temporaries(folder: str) -> None:
    """Once per process and folder: removes the temporary files that processes of this machine,
    now gone, left in `folder` (killed between a write and its rename), so that a run after a
    kill leaves no hidden partial file behind. A live process's are its own to rename."""
    if (os.getpid(), folder) in _swept:
        return
    _swept.add((os.getpid(), folder))
    with contextlib.suppress(OSError):
        for name in os.listdir(folder):
            match = _TEMPORARY_NAME.match(name)
            if match and process_gone(f"{match[1]}-{match[2]}"):
                with contextlib.suppress(OSError):
                    os.remove(os.path.join(folder, name))


def process_tag() -> str:
    """`<host>-<pid>`: names what this process writes under a temporary name."""
    return f"{_HOST}-{os.getpid()}"


def process_gone(tag: str) -> bool:
    """Whether the process of `tag` (`process_tag`) ran on this machine and has ended: what it
    left under a temporary name is no one's. Another machine's, or a live process's: False."""
    host, _, pid = tag.partition("-")
    return host == _HOST and pid.isdigit() and int(pid) != os.getpid() and not process_exists(int(pid))


def process_exists(pid: int) -> bool:
    """Whether process `pid` of this machine is running (another user's counts)."""
    try:
        os.kill(pid, 0)  # Signal 0: nothing is sent, the process is only looked up.
    except ProcessLookupError:
        return False
    except PermissionError:  # Another user's process: alive.
        return True
    return True


def leftover_temporaries(path: str) -> list[str]:
    """The temporary files of `write_file(path, ...)` that a killed process left beside `path`."""
    return glob.glob(os.path.join(glob.escape(os.path.dirname(os.path.abspath(path))),
                                  f".{glob.escape(os.path.basename(path))}.*{_TEMPORARY}"))


def write_text(path: str, text: str, within: Optional[str] = None) -> str:
    """`write_file` of UTF-8 text."""
    return write_file(path, text.encode("utf-8"), within)


def copy_file(source: str, path: str, within: Optional[str] = None) -> str:
    """A copy of the file `source` at `path`, by `write_file`."""
    with open(source, "rb") as f:
        return write_file(path, f.read(), within)


def write_figure(path: str, figure, within: Optional[str] = None, **savefig: object) -> str:
    """A matplotlib figure rendered to PNG in memory, then `write_file`."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", **savefig)
    return write_file(path, buffer.getvalue(), within)


def _sync_folder(folder: str) -> None:
    """Makes the rename itself durable; some file systems cannot open a folder to sync it."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

