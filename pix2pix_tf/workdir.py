"""The run folder (`--workdir`): the one place that knows its layout.

    config.json          the run's TrainConfig (pix2pix_tf.config)
    checkpoints/         G, D, both optimizers, the step (pix2pix_tf.training.checkpoints)
    logs/train/          TensorBoard events
    samples/step_N.png   held-out input | target | output grids
    export/              SavedModels and TFLite files (export.py without --export_dir)
    eval/                evaluation reports (python -m pix2pix_tf.evaluate without --output_dir)
    .train.lock          held by the training process that owns the run
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from typing import Iterator

from pix2pix_tf.errors import ConfigError

CONFIG_FILE = "config.json"
# Characters TensorFlow's checkpoint reader (under every checkpoint and every SavedModel's
# variables) takes as pattern syntax, not as part of a name.
UNREADABLE_PATH_CHARACTERS = "[\\"


def check_tensorflow_can_read(path: str, what: str, folder_name: bool = False) -> None:
    """Refuses `what`=`path` (e.g. --saved_model=...) when TensorFlow could not read a checkpoint
    or a SavedModel there, before any work: a path that holds one of UNREADABLE_PATH_CHARACTERS,
    or is not UTF-8 (TensorFlow's file functions take text). A run there could never resume, an
    export never load, and TensorFlow's own error says only that no file matched (or is a
    UnicodeEncodeError). `folder_name`: `path` is one folder's name (--model_name), checked as
    written; otherwise the whole absolute path is."""
    full = path if folder_name else os.path.abspath(path)
    try:
        full.encode("utf-8")
    except UnicodeEncodeError:  # Bytes that are not UTF-8 reach Python as lone surrogates.
        raise ConfigError(f"{what}={path}: TensorFlow takes a path as UTF-8 text, and this one holds bytes that are "
                          "not (a name written in another encoding); rename the folder or choose another.") from None
    unreadable = [c for c in UNREADABLE_PATH_CHARACTERS if c in full]
    if unreadable:
        raise ConfigError(f"{what}={path}: TensorFlow reads the path of a checkpoint or of a SavedModel's "
                          f"variables as a file pattern and finds nothing under a path that holds "
                          f"{' or '.join(map(repr, unreadable))}; rename the folder or choose another.")


@dataclasses.dataclass(frozen=True)
class Workdir:
    """Paths inside one run folder; creating nothing until asked."""

    root: str

    @property
    def config_file(self) -> str:
        return os.path.join(self.root, CONFIG_FILE)

    @property
    def checkpoints(self) -> str:
        return os.path.join(self.root, "checkpoints")

    @property
    def train_logs(self) -> str:
        return os.path.join(self.root, "logs", "train")

    @property
    def samples(self) -> str:
        return os.path.join(self.root, "samples")

    def sample_grid(self, step: int) -> str:
        return os.path.join(self.samples, f"step_{step:07d}.png")

    @property
    def exports(self) -> str:
        return os.path.join(self.root, "export")

    @property
    def evaluations(self) -> str:
        return os.path.join(self.root, "eval")

    @property
    def lock_file(self) -> str:
        return os.path.join(self.root, ".train.lock")

    def has_config(self) -> bool:
        return os.path.lexists(self.config_file)  # Whatever is there, read_json refuses or reads.

    @property
    def kept_folders(self) -> tuple[str, ...]:
        """The folders a training run writes into, each parent before its child."""
        return self.checkpoints, os.path.dirname(self.train_logs), self.train_logs, self.samples

    def check_usable(self, writable: bool = True) -> None:
        """Refuses, with a message, a workdir whose checkpoints TensorFlow could not read back, a
        workdir that is a file or (when `writable`) one that cannot be written, before any work
        starts; and a folder the run keeps that is a file or (when `writable`) a symbolic link,
        which the run would write through, outside the workdir."""
        check_named(self.root, "--workdir")
        check_tensorflow_can_read(self.root, "--workdir")
        if os.path.exists(self.root) and not os.path.isdir(self.root):
            raise ConfigError(f"--workdir={self.root} is a file; a run needs a folder.")
        for folder in self.kept_folders:
            if writable and os.path.islink(folder):
                raise ConfigError(f"{folder} is a symbolic link (to {os.readlink(folder)}) where the run keeps a "
                                  "folder: it is not written through. Replace it with a folder, or use another "
                                  "--workdir.")
            if os.path.lexists(folder) and not os.path.isdir(folder):
                raise ConfigError(f"{folder} is a file where the run keeps a folder: move it away, or use another "
                                  "--workdir.")
        if writable:
            check_writable(self.root, "--workdir")


def check_named(folder: str, what: str) -> None:
    """Refuses an empty folder flag (`--workdir=`), which would otherwise mean the current folder."""
    if not folder:
        raise ConfigError(f"{what} is empty: name a folder.")


def not_a_folder(path: str) -> str:
    """What stands at `path` where a folder should (it exists and is not one): a file (a link to
    one too), or a symbolic link to nothing."""
    return "a file" if os.path.exists(path) else f"a symbolic link to nothing ({os.readlink(path)})"


def check_not_a_file(folder: str, what: str) -> None:
    """Refuses a folder to write into (`what`=`folder`) that is a file, before any work."""
    if os.path.lexists(folder) and not os.path.isdir(folder):
        raise ConfigError(f"{what}={folder} is {not_a_folder(folder)}; it must name a folder to write into.")


def check_writable(folder: str, what: str) -> None:
    """Creates `folder` if needed and proves it can hold a new file, or says why not."""
    check_named(folder, what)
    check_not_a_file(folder, what)
    try:
        os.makedirs(folder, exist_ok=True)
        probe = os.path.join(folder, f".write-test-{os.getpid()}")
        with open(probe, "w") as f:
            f.write("x")
        os.remove(probe)
    except OSError as e:
        reason = e.strerror or type(e).__name__
        raise ConfigError(f"{what}={folder} cannot be written ({reason}). Choose a folder you can write to, "
                          "with free space.") from e


@contextlib.contextmanager
def new_folders_removed_if_refused(folder: str) -> Iterator[None]:
    """Removes the folders down to `folder` that did not exist when the block began, if the block
    fails while they are still empty: a program refused after proving it can write leaves no
    empty folder behind."""
    made = []
    path = os.path.abspath(folder)
    while not os.path.lexists(path):
        made.append(path)
        path = os.path.dirname(path)
    try:
        yield
    except BaseException:
        for path in made:  # Deepest first; a folder something was written into stays, and so do those above it.
            try:
                os.rmdir(path)
            except OSError:
                break
        raise
