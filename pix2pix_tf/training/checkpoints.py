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
  writes to temporary names and renames only a complete checkpoint).
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
        for i, path in enumerate(candidates):
            try:
                self.checkpoint.restore(path).assert_existing_objects_matched()
            except (AssertionError, ValueError) as e:
                raise ConfigError(f"The checkpoint {path} does not fit the model of config.json: {e}") from e
            except (tf.errors.OpError, IndexError, OSError) as e:
                # Truncated or corrupt files: TensorFlow's readers raise OpErrors, its
                # Python-side readers IndexError or OSError.
                files = sorted(glob.glob(path + ".*"))
                fallback = candidates[i + 1] if i + 1 < len(candidates) else "none left"
                reason = str(e).strip().splitlines()[0] if str(e).strip() else ""
                logging.warning("Checkpoint %s is unreadable (%s: %s); files: %s. Falling back to: %s.",
                                path, type(e).__name__, reason, ", ".join(files), fallback)
                continue
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

    def _remove_unfinished(self, step: int) -> None:
        prefix = os.path.join(self.manager.directory, f"ckpt-{step}")
        for leftover in glob.glob(prefix + "_temp*") + glob.glob(prefix + ".*"):
            if os.path.isdir(leftover):
                shutil.rmtree(leftover, ignore_errors=True)
            else:
                with contextlib.suppress(OSError):
                    os.remove(leftover)


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
