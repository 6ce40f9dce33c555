"""A run's checkpoints: saved without ever losing the previous one, restored with fallback.

- Only the chief writes the real checkpoints (workdir/checkpoints). In a multi-worker
  cluster the other workers must take part in every save (the variables are synchronised
  through collectives), so they save to a private temporary folder that is deleted at once,
  TensorFlow's convention.
- Restoring tries the newest checkpoint first; a truncated or corrupt one is reported by
  name and the previous one is tried, so a crash while writing costs at most the work since
  the checkpoint before it. A checkpoint that does not fit the model is a configuration
  error, not corruption: it is never skipped silently.
- A failed save (a full disk, say) stops the run with a clear error naming the checkpoints
  really on disk; only the files this save created are removed, so every checkpoint written
  before is untouched (TensorFlow writes to temporary names and renames only a complete
  checkpoint). A step is saved once: a stop right after the loop saved it saves nothing more.
  What a process killed while saving leaves under those temporary names is removed by the
  next run, under the lock.
- The checkpoints of a run are the complete ones on disk (`ckpt-N.index` and every data
  shard), newest first, not what the `checkpoint` index file lists: a damaged index (0 bytes,
  garbled) is named in a warning and rebuilt from the files, never taken for "no checkpoint",
  which would start the run again over its checkpoints. Train, export, translate and
  evaluate all find checkpoints so (`checkpoint_candidates`).
- One training process per workdir: a lock held for the life of the process (released by
  the OS even on SIGKILL) makes a second process refuse to start.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import glob
import os
import re
import shutil
from typing import Iterator, Optional

import tensorflow as tf
from absl import logging

from pix2pix_tf import writing
from pix2pix_tf.errors import ConfigError, Pix2pixError
from pix2pix_tf.images import op_message
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
        raise ConfigError(f"The checkpoint {path} does not fit the model of {model}: {_mismatch(e)}") from e
    except (tf.errors.OpError, IndexError, OSError) as e:
        # Truncated or corrupt files: TensorFlow's readers raise OpErrors, its
        # Python-side readers IndexError or OSError.
        files = sorted(glob.glob(path + ".*"))
        reason = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise UnreadableCheckpointError(f"Checkpoint {path} is unreadable ({type(e).__name__}: {reason}); "
                                        f"files: {', '.join(files)}.") from e


_MISMATCH = re.compile(r"tensor with shape (\S+?) when attempting to restore variable with shape (\S+?) "
                       r"and name (\S+?)\.?(\s|$)")


def _mismatch(error: Exception) -> str:
    """A mismatch as one line naming the variable and both shapes (TensorFlow's message can
    carry the variable's values, hundreds of lines)."""
    text = str(error)
    found = _MISMATCH.search(text.replace(", ", ","))
    if found:
        saved, model, name = found.group(1), found.group(2), found.group(3)
        return f"{name} has shape {model} in the model but {saved} in the checkpoint."
    first = text.strip().splitlines()[0] if text.strip() else type(error).__name__
    return first if len(first) <= 300 else first[:300] + "..."


_CHECKPOINT_FILE = re.compile(r"^ckpt-(\d+)\.(index|data-(\d+)-of-(\d+))$")


def complete_checkpoints(directory: str) -> list[str]:
    """The checkpoints in `directory` whose index and every data shard are on disk, oldest first."""
    try:
        names = os.listdir(directory)
    except OSError:
        return []
    indexed, shards = set(), {}
    for name in names:
        found = _CHECKPOINT_FILE.match(name)
        if not found:
            continue
        step = int(found.group(1))
        if found.group(2) == "index":
            indexed.add(step)
        else:
            shards.setdefault((step, int(found.group(4))), set()).add(int(found.group(3)))
    complete = {step for (step, count), present in shards.items() if step in indexed and len(present) == count}
    return [os.path.join(directory, f"ckpt-{step}") for step in sorted(complete)]


def damaged_index(directory: str) -> Optional[str]:
    """Why the `checkpoint` index file of `directory` cannot be read, or None if it can (or is absent)."""
    path = os.path.join(directory, "checkpoint")
    if not os.path.exists(path):
        return None
    try:
        state = tf.train.get_checkpoint_state(directory)
    except (ValueError, tf.errors.OpError) as e:  # 0 bytes: ValueError; binary: UnicodeDecodeError.
        return f"{path} is damaged ({os.path.getsize(path)} bytes; {type(e).__name__})"
    if state is None:
        return f"{path} is damaged (not a checkpoint state)"
    return None


def checkpoint_candidates(directory: str) -> list[str]:
    """The complete checkpoints of `directory`, newest first; warns, naming it, when the index
    file is damaged (the files are what counts)."""
    candidates = list(reversed(complete_checkpoints(directory)))
    problem = damaged_index(directory)
    if problem:
        found = ", ".join(os.path.basename(c) for c in candidates) or "none"
        logging.warning("%s; the complete checkpoints found on disk are used: %s.", problem, found)
    return candidates


def checkpoint_files(directory: str) -> list[str]:
    """Every file of a checkpoint in `directory`, complete or not (`ckpt-*`)."""
    return sorted(glob.glob(os.path.join(directory, "ckpt-*")))


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
