"""A run's checkpoints: saved without ever losing the previous one.

- Only the chief writes the real checkpoints (workdir/checkpoints). In a multi-worker
  cluster the other workers must take part in every save (the variables are synchronised
  through collectives), so they save to a private temporary folder that is deleted at once,
  TensorFlow's convention.
- Resuming restores the newest readable checkpoint, as pix2pix_tf.checkpoint_reading finds
  and restores them for every command; a damaged `checkpoint` index file is rewritten from
  the complete checkpoints on disk.
- A failed save (a full disk, say) stops the run with a clear error naming the checkpoints
  really on disk; only the files this save created are removed, so every checkpoint written
  before is untouched (TensorFlow writes to temporary names and renames only a complete
  checkpoint). A step is saved once: a stop right after the loop saved it saves nothing more.
  What a process killed while saving leaves under those temporary names is removed by the
  next run, under the lock.
- One training process per workdir: a lock held for the life of the process (released by
  the OS even on SIGKILL) makes a second process refuse to start.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import glob
import os
import shutil
from typing import Iterator, Optional

import tensorflow as tf
from absl import logging

from pix2pix_tf import writing
from pix2pix_tf.checkpoint_reading import (
    CheckpointError,
    checkpoint_candidates,
    checkpoint_files,
    complete_checkpoints,
    damaged_index,
    restore_newest_readable,
)
from pix2pix_tf.errors import ConfigError
from pix2pix_tf.images import op_message
from pix2pix_tf.workdir import Workdir


class RunCheckpoints:
    """The checkpoints of one run, for one worker of the cluster (the chief or another)."""

    def __init__(self, checkpoint: tf.train.Checkpoint, workdir: str, keep: int, step: tf.Variable,
                 chief: bool = True, worker: int = 0):
        self.checkpoint = checkpoint
        self.chief = chief
        self.directory = Workdir(workdir).checkpoints
        self._temporary = None if chief else os.path.join(workdir, f"tmp_worker_{worker}")
        if chief:
            self._rebuild_damaged_index()
        self.manager = tf.train.CheckpointManager(checkpoint, self._temporary or self.directory,
                                                  max_to_keep=keep, step_counter=step, checkpoint_name="ckpt")
        self._saved_step: Optional[int] = None

    @property
    def latest(self) -> Optional[str]:
        """The newest complete checkpoint on disk."""
        found = complete_checkpoints(self.directory)
        return found[-1] if found else None

    def restore_latest(self) -> Optional[str]:
        """Restores the newest readable checkpoint of the run, or returns None if there is none.

        Checkpoint files without one complete checkpoint among them are refused rather than
        started over: a new run would write over them."""
        candidates = checkpoint_candidates(self.directory)
        path = restore_newest_readable(self.checkpoint, candidates)
        if path:
            self._saved_step = int(path.rsplit("-", 1)[1])
            return path
        present = [os.path.basename(f) for f in checkpoint_files(self.directory) if "_temp" not in f]
        if candidates or present:
            raise CheckpointError(f"No checkpoint in {self.directory} is readable: "
                                  f"{', '.join(candidates or present)}. "
                                  "Move them away to start the run again from scratch.")
        return None

    def save(self, step: int) -> Optional[str]:
        """Writes the checkpoint of `step`; returns its path (None on a non-chief worker).

        A step saved already (by this process, or the one resumed from) is not saved again."""
        if step == self._saved_step:
            return None if self._temporary else os.path.join(self.directory, f"ckpt-{step}")
        created_before = self._unfinished_files(step)
        options = tf.train.CheckpointOptions(experimental_write_callbacks=[writing.write_point])
        try:
            path = self.manager.save(checkpoint_number=step, options=options)
        except (OSError, tf.errors.OpError) as e:
            self._remove_created(step, created_before)
            on_disk = ", ".join(os.path.basename(c) for c in complete_checkpoints(self.directory)) or "none"
            raise CheckpointError(
                f"Saving the checkpoint of step {step} in {self.manager.directory} failed: {_reason(e)}. "
                f"Its unfinished files were removed; the checkpoints on disk are: {on_disk}. "
                "Free some disk space and re-run the command to resume from the newest.") from e
        self._saved_step = step
        if self._temporary:
            shutil.rmtree(self._temporary, ignore_errors=True)
            return None
        return path

    def _unfinished_files(self, step: int) -> set[str]:
        prefix = os.path.join(self.manager.directory, f"ckpt-{step}")
        return set(glob.glob(prefix + "_temp*") + glob.glob(prefix + ".*")
                   + glob.glob(os.path.join(self.manager.directory, "checkpoint.tmp*")))

    def _remove_created(self, step: int, created_before: set[str]) -> None:
        """Removes what the failed save of `step` created, and nothing that was there before."""
        for leftover in sorted(self._unfinished_files(step) - created_before):
            _remove(leftover)

    def _rebuild_damaged_index(self) -> None:
        """A damaged index (see the module docstring) is rewritten from the complete checkpoints
        on disk, so that TensorFlow's manager keeps counting them; the caller holds the lock."""
        problem = damaged_index(self.directory)
        if not problem:
            return
        found = [os.path.basename(c) for c in complete_checkpoints(self.directory)]
        logging.warning("%s; rebuilt from the complete checkpoints on disk: %s.", problem, ", ".join(found) or "none")
        index = os.path.join(self.directory, "checkpoint")
        if not found:  # An index must name one; restore_latest refuses what files there are.
            os.remove(index)
            return
        lines = [f'model_checkpoint_path: "{found[-1]}"'] + [f'all_model_checkpoint_paths: "{name}"' for name in found]
        writing.write_text(index, "\n".join(lines) + "\n")

    def remove_unfinished_saves(self) -> list[str]:
        """Removes what a process killed while saving left behind, and returns it.

        TensorFlow writes a checkpoint into `ckpt-N_temp/` (the model's full size) and
        `checkpoint` through `checkpoint.tmp<hex>`, renaming only complete files into place, so
        these are never part of a checkpoint; left alone they would stay for good. Call it only
        while holding the workdir lock: then no live process is saving here.
        """
        stale = sorted(glob.glob(os.path.join(self.directory, "ckpt-*_temp*"))
                       + glob.glob(os.path.join(self.directory, "checkpoint.tmp*")))
        for path in stale:
            _remove(path)
        if stale:
            logging.info("Removed the unfinished saves of a stopped run: %s.", ", ".join(stale))
        return stale


def _reason(error: Exception) -> str:
    """An OSError's or TensorFlow error's reason in one line, without TensorFlow's op wrapping."""
    if isinstance(error, OSError):
        return f"{error.strerror or error}" + (f": {error.filename}" if error.filename else "")
    return op_message(error)


def _remove(path: str) -> None:
    if os.path.isdir(path):
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(OSError):
            os.remove(path)


@contextlib.contextmanager
def workdir_lock(workdir: str) -> Iterator[None]:
    """Held while a process trains in `workdir`; a second process gets a clear refusal."""
    os.makedirs(workdir, exist_ok=True)
    path = Workdir(workdir).lock_file
    handle = open(path, "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        if e.errno not in (errno.EAGAIN, errno.EACCES):
            raise
        handle.seek(0)
        holder = handle.read().strip() or "another process"
        handle.close()
        raise ConfigError(f"The workdir {workdir} is in use by a training process ({holder}). "
                          "Wait for it to finish, stop it, or use another --workdir.") from e
    try:
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} on {os.uname().nodename}")
        handle.flush()
        yield
    finally:
        fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()
