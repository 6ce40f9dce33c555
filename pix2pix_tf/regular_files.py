"""Opening a file a user may have replaced with anything (a FIFO, a device, a link to one):
regular files only, opened without blocking, so that no reader hangs or reads without end.
The readers that bound what they read (image files, and every JSON record this package reads
back: a run's config.json, an export's metadata and TFLite report, the experiments' markers
and metrics) open through here."""

from __future__ import annotations

import contextlib
import json
import os
import stat
from typing import Any, BinaryIO, Iterator, Optional

from pix2pix_tf.errors import ConfigError

# Far above any record this package writes (a config.json or an export's metadata is a few kB,
# an evaluation's metrics.json under 1 MB per 1000 test images), far below what would hurt.
MAX_JSON_BYTES = 16 * 2**20
# What `read_bounded` reads at a time from a file that grew after it was measured.
_GROWTH_CHUNK = 2**20


class NotARegularFile(OSError):
    """`path` (after links) is a FIFO, a device, a socket or a folder: `kind` says which."""

    def __init__(self, path: str, kind: str):
        super().__init__(f"{path}: {kind}, not a regular file")
        self.kind = kind


def file_kind(mode: int) -> str:
    kinds = ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
             (stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a folder"))
    return next((name for test, name in kinds if test(mode)), "not a regular file")


def irregular(path: str) -> Optional[str]:
    """What `path` is (after links: `file_kind`) when it exists and is not a regular file; None
    for a regular file or nothing there. For files TensorFlow opens itself, which would wait
    forever on a FIFO for a writer."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None
    return None if stat.S_ISREG(mode) else file_kind(mode)


@contextlib.contextmanager
def opened_regular(path: str) -> Iterator[tuple[BinaryIO, int]]:
    """(the open file, its size) of the regular file `path`; NotARegularFile for anything else,
    OSError as the system gives it (FileNotFoundError, PermissionError, ...)."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    with os.fdopen(fd, "rb") as f:
        status = os.fstat(fd)
        if not stat.S_ISREG(status.st_mode):
            raise NotARegularFile(path, file_kind(status.st_mode))
        yield f, status.st_size


def read_bounded(f: BinaryIO, size: int, limit: int, have: int = 0) -> bytes:
    """The rest of `f`, of which `have` bytes were read, at most `limit` + 1 bytes in all (one
    more than `limit` says "too large"). Memory follows what the file holds, not `limit`: a
    buffered read(n) allocates n bytes before it reads (a 12 kB image read with a cap of
    gigabytes would fail), so this reads what fstat measured (`size`) and one byte more, and
    only a file that grew since goes on being read, in chunks, until it ends or passes `limit`."""
    want = max(min(size, limit) + 1 - have, 1)
    chunks = [f.read(want)]
    total = have + len(chunks[0])
    while len(chunks[-1]) == want and total <= limit:  # Grown since it was measured.
        want = min(_GROWTH_CHUNK, limit + 1 - total)
        chunks.append(f.read(want))
        total += len(chunks[-1])
    return b"".join(chunks)


def read_json(path: str) -> Any:
    """The JSON value in the file `path`; None when there is no such file. ConfigError naming
    `path` for anything else a record of ours cannot be: not a regular file (a FIFO cannot hang
    the reader, /dev/zero cannot fill the memory), over MAX_JSON_BYTES, not JSON."""
    too_big = f"{path} is larger than {MAX_JSON_BYTES // 2**20} MB"
    try:
        with opened_regular(path) as (f, size):
            if size > MAX_JSON_BYTES:
                raise ConfigError(too_big)
            data = read_bounded(f, size, MAX_JSON_BYTES)  # Bounded even if it grew since fstat.
    except FileNotFoundError:
        return None
    except NotARegularFile as e:
        raise ConfigError(f"{path} is not a regular file ({e.kind})") from None
    except OSError as e:
        raise ConfigError(f"{path} cannot be read ({e.strerror or e})") from None
    if len(data) > MAX_JSON_BYTES:
        raise ConfigError(too_big)
    try:
        return json.loads(data)
    except (ValueError, RecursionError) as e:  # ValueError: also bytes that are not UTF-8.
        raise ConfigError(f"{path} is not JSON ({type(e).__name__}: {str(e)[:120]})") from None


def read_json_object(path: str) -> Optional[dict[str, Any]]:
    """`read_json(path)`, refused (ConfigError) unless it is an object."""
    value = read_json(path)
    if value is not None and not isinstance(value, dict):
        raise ConfigError(f"{path} holds a JSON {type(value).__name__}, not an object")
    return value
