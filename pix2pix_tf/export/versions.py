"""Where an export goes: the base folder, the version number, the staging folder, the atomic
publish, and the removal of staging folders that killed exports left behind.

TensorFlow Serving polls a model's base path and loads any integer-named folder it sees, so a
version is built in a hidden staging folder BESIDE the base path (on the same filesystem, so
the final rename is atomic; outside the folder Serving scans) and renamed into place only when
it is complete. A kill -9 during an export leaves its staging folder behind; the name says
whose it is (`.<model>-<version>-<pid>@<host>-<random>`), so the next export of the same model
removes the folders whose process is gone and never those of an export still running.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import tempfile
from typing import Callable, Optional, TypeVar

from absl import logging

from pix2pix_tf import writing
from pix2pix_tf.errors import ConfigError
from pix2pix_tf.export.config import MAX_VERSION, ExportError
from pix2pix_tf.inference.artifacts import VERSION_FOLDER
from pix2pix_tf.workdir import Workdir, check_tensorflow_can_read, check_writable, not_a_folder

T = TypeVar("T")


def export_folder(export_dir: Optional[str], workdir: str) -> str:
    """The export base folder (`--export_dir`, else `<workdir>/export`), proven writable before
    any work starts: a read-only run folder is refused with the way out, not after the model
    and the data are loaded."""
    if export_dir is not None:
        check_tensorflow_can_read(export_dir, "--export_dir")  # The export is loaded back to be checked.
        check_writable(export_dir, "--export_dir")
        return export_dir
    folder = Workdir(workdir).exports
    try:
        check_writable(folder, "--workdir")
    except ConfigError as e:
        reason = getattr(e.__cause__, "strerror", None) or "cannot be written"
        raise ExportError(f"Cannot write the export folder {folder} ({reason}): pass --export_dir=DIR to export "
                          "into a folder you can write (the run folder is only read).") from e
    return folder


def _version_entries(base: str) -> list[tuple[int, str]]:
    """(version, name) of the integer-named entries under a model's base path ("01" is version 1)."""
    if not os.path.isdir(base):
        return []
    return [(int(name), name) for name in os.listdir(base) if VERSION_FOLDER.fullmatch(name)]


def existing_versions(base: str) -> list[int]:
    """Integer-named folders under a model's base path: what Serving would load."""
    return sorted(version for version, _ in _version_entries(base))


def choose_version(bases: list[str], requested: Optional[int]) -> int:
    """The next version free under every format's base path (all artifacts of an export share
    it), or `requested` when it is free there (a published version is never overwritten:
    Serving may be serving it)."""
    versions = sorted({v for base in bases for v in existing_versions(base)})
    following = (versions[-1] + 1) if versions else 1
    if requested is None:
        if following > MAX_VERSION:
            holder = next(base for base in bases if versions[-1] in existing_versions(base))
            raise ExportError(f"Version {versions[-1]} exists in {holder}, the largest Serving takes (its versions "
                              "are int64): pass a free --version.")
        return following
    # Any entry of that number, a zero-padded one ("01") too: Serving reads it as the same version.
    taken = [(base, name) for base in bases for version, name in _version_entries(base) if version == requested]
    if taken:
        base, name = taken[0]
        spelled = "" if name == str(requested) else f" (as {name})"
        raise ExportError(f"Version {requested} already exists in {base}{spelled}; choose another --version "
                          f"(existing: {versions}) or leave --version out for the next free one ({following}).")
    return requested


def check_folders(export_dir: str, bases: list[str]) -> None:
    """Refuses, before any work, a file where an export keeps a folder (a format's folder, a
    model's base path): found later, it would stop the export after it had published."""
    for base in bases:
        path = os.path.relpath(base, export_dir)
        for depth in range(1, len(path.split(os.sep)) + 1):
            folder = os.path.join(export_dir, *path.split(os.sep)[:depth])
            if os.path.lexists(folder) and not os.path.isdir(folder):
                raise ExportError(f"{folder} is {not_a_folder(folder)} where the export keeps a folder; move it "
                                  "away or choose another --export_dir or --model_name.")


def publish(staging: str, final: str) -> None:
    """Renames a complete export into place (atomic on one filesystem)."""
    os.makedirs(os.path.dirname(final), exist_ok=True)
    if os.path.exists(final):
        raise ExportError(f"{final} appeared while exporting (another export?); nothing was overwritten.")
    os.rename(staging, final)


def publish_staged(base: str, version: int, write: Callable[[str, str], T], refused: str = "") -> tuple[str, T]:
    """`write(staging, final)` fills a new staging folder beside `base` (`final` is where it will
    be), which is then renamed to `<base>/<version>`; returns that folder and what `write`
    returned. On any failure the staging folder is removed, and an ExportError gets `refused`
    (what was published and what was not) on a line of its own."""
    final = os.path.join(base, str(version))
    staging = staging_dir(base, str(version))
    try:
        written = write(staging, final)
        publish(staging, final)
    except ExportError as e:
        shutil.rmtree(staging, ignore_errors=True)
        if not refused:
            raise
        raise ExportError(f"{e}\n{refused}") from e
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return final, written


def _host() -> str:
    """This machine's name as it may appear in a file name (no '@', no '/')."""
    return re.sub(r"[^A-Za-z0-9.-]", "_", socket.gethostname()) or "host"


def staging_dir(base: str, label: str) -> str:
    """A new hidden staging folder beside `base`, named after its owner (this process). Beside
    where it really is: a base path that is a link to another filesystem (a mounted volume) is
    published into by a rename, which does not cross filesystems."""
    parent = os.path.dirname(os.path.realpath(base))
    os.makedirs(parent, exist_ok=True)
    path = tempfile.mkdtemp(prefix=f".{os.path.basename(base)}-{label}-{os.getpid()}@{_host()}-", dir=parent)
    # mkdtemp makes it private (0700); the published version must be readable by the serving
    # user, like any folder this user creates.
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o777 & ~umask)
    return path


def remove_stale_staging(base: str) -> list[str]:
    """Removes the staging folders of `base` whose export process is gone (on this host);
    returns them. Folders of live processes, of other hosts and of unknown form are kept."""
    parent = os.path.dirname(os.path.realpath(base))  # Where `staging_dir` puts them.
    if not os.path.isdir(parent):
        return []
    owner = re.compile(re.escape(f".{os.path.basename(base)}-") + r"\d+-(?P<pid>\d+)@(?P<host>.+)-[a-z0-9_]+")
    host, removed = _host(), []
    for name in sorted(os.listdir(parent)):
        match = owner.fullmatch(name)
        if match is None or match["host"] != host or writing.process_exists(int(match["pid"])):
            continue
        path = os.path.join(parent, name)
        logging.info("Removing %s, left by an export (pid %s) that did not finish.", path, match["pid"])
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path)
    return removed
