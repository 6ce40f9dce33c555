"""Opening a file a user may have replaced with anything (a FIFO, a device, a link to one):
regular files only, opened without blocking, so that no reader hangs or reads without end.
The readers that bound what they read (image files, the experiments' JSON records) open
through here."""

from __future__ import annotations

import contextlib
import os
import stat
from typing import BinaryIO, Iterator


class NotARegularFile(OSError):
    """`path` (after links) is a FIFO, a device, a socket or a folder: `kind` says which."""

    def __init__(self, path: str, kind: str):
        super().__init__(f"{path}: {kind}, not a regular file")
        self.kind = kind


def file_kind(mode: int) -> str:
    kinds = ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
             (stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a folder"))
    return next((name for test, name in kinds if test(mode)), "not a regular file")


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
