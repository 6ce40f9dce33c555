"""A run's checkpoints: saved without ever losing the previous one, restored with fallback.

- Only the chief writes the real checkpoints (workdir/checkpoints). In a multi-worker
  cluster the other workers must take part in every save (the variables are synchronised
  through collectives), so they save to a private temporary folder that is deleted at once,
  TensorFlow's convention.
- Restoring tries the newest checkpoint first; a truncated or corrupt one is reported by
  name and the previous one is tried, so a crash while writing costs at most the work since
  the checkpoint before it. A checkpoint that does not fit the model is a configuration
  error, not corruption: it is never skipped silently.
- A failed save (a full disk, say) stops the run with a clear error; the files of the
  unfinished checkpoint are removed and the previous checkpoints are untouched (TensorFlow
  writes to temporary names and renames only a complete checkpoint). What a process killed
  while saving leaves under those temporary names is removed by the next run, under the lock.
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

from pix2pix_tf.errors import ConfigError, Pix2pixError
from pix2pix_tf.workdir import Workdir


class CheckpointError(Pix2pixError):
    """No checkpoint could be written or restored; the message says which files and why."""


class UnreadableCheckpointError(CheckpointError):
    """A checkpoint's files are truncated or corrupt (not: written for another model)."""


def restore_checkpoint(checkpoint: tf.train.Checkpoint, path: str, model: str = "config.json",
                       partial: bool = False) -> None:
    """Restores `path` into `checkpoint`; a checkpoint of another `model` is a ConfigError,
    unreadable files an UnreadableCheckpointError. `partial`: `checkpoint` tracks only some of
    the saved objects (the generator alone, say)."""
    try:
        status = checkpoint.restore(path)
        if partial:
            status.expect_partial()
        status.assert_existing_objects_matched()
    except (AssertionError, ValueError) as e:
        raise ConfigError(f"The checkpoint {path} does not fit the model of {model}: {e}") from e
    except (tf.errors.OpError, IndexError, OSError) as e:
        # Truncated or corrupt files: TensorFlow's readers raise OpErrors, its
        # Python-side readers IndexError or OSError.
        files = sorted(glob.glob(path + ".*"))
        reason = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise UnreadableCheckpointError(f"Checkpoint {path} is unreadable ({type(e).__name__}: {reason}); "
                                        f"files: {', '.join(files)}.") from e


def restore_newest_readable(checkpoint: tf.train.Checkpoint, candidates: list[str], model: str = "config.json",
                            partial: bool = False) -> Optional[str]:
    """Restores the first readable of `candidates` (newest first) and returns it, warning by
    name about each unreadable one it skips; None if none is readable. Training, export,
    translate and evaluate share it so that a crash while writing a checkpoint costs them all
    the same: the work since the previous one."""
    for i, path in enumerate(candidates):
        try:
            restore_checkpoint(checkpoint, path, model, partial)
        except UnreadableCheckpointError as e:
            fallback = candidates[i + 1] if i + 1 < len(candidates) else "none left"
            logging.warning("%s Falling back to: %s.", e, fallback)
            continue
        return path
    return None


class RunCheckpoints:
    """The checkpoints of one run, for one worker of the cluster (the chief or another)."""

    def __init__(self, checkpoint: tf.train.Checkpoint, workdir: str, keep: int, step: tf.Variable,
                 chief: bool = True, worker: int = 0):
        self.checkpoint = checkpoint
        self.chief = chief
        self.directory = Workdir(workdir).checkpoints
        self._temporary = None if chief else os.path.join(workdir, f"tmp_worker_{worker}")
        self.manager = tf.train.CheckpointManager(checkpoint, self._temporary or self.directory,
                                                  max_to_keep=keep, step_counter=step, checkpoint_name="ckpt")
        self._real = self.manager if chief else tf.train.CheckpointManager(
            checkpoint, self.directory, max_to_keep=keep, checkpoint_name="ckpt")

    @property
    def latest(self) -> Optional[str]:
        return self._real.latest_checkpoint

    def restore_latest(self) -> Optional[str]:
        """Restores the newest readable checkpoint of the run, or returns None if there is none."""
        candidates = list(reversed(self._real.checkpoints))
        path = restore_newest_readable(self.checkpoint, candidates)
        if path:
            return path
        if candidates:
            raise CheckpointError(f"No checkpoint in {self.directory} is readable: {', '.join(candidates)}. "
                                  "Move them away to start the run again from scratch.")
        return None

    def save(self, step: int) -> Optional[str]:
        """Writes the checkpoint of `step`; returns its path (None on a non-chief worker)."""
        try:
            path = self.manager.save(checkpoint_number=step)
        except (OSError, tf.errors.OpError) as e:
            self._remove_unfinished(step)
            message = e.message if isinstance(e, tf.errors.OpError) else str(e)
            raise CheckpointError(
                f"Saving the checkpoint of step {step} in {self.manager.directory} failed: {message}. "
                f"The previous checkpoint is intact: {self.latest or 'none yet'}. "
                "Free some disk space and re-run the command to resume.") from e
        if self._temporary:
            shutil.rmtree(self._temporary, ignore_errors=True)
            return None
        return path

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

    def _remove_unfinished(self, step: int) -> None:
        prefix = os.path.join(self.manager.directory, f"ckpt-{step}")
        for leftover in glob.glob(prefix + "_temp*") + glob.glob(prefix + ".*"):
            _remove(leftover)


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
