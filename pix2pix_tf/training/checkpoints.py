"""A run's checkpoints: saved without ever losing the previous one.

- Only the chief writes the real checkpoints (workdir/checkpoints). In a multi-worker
  cluster the other workers must take part in every save (the variables are synchronised
  through collectives), so they save to a private temporary folder that is deleted at once,
  TensorFlow's convention.
- Resuming restores the newest readable checkpoint, as pix2pix_tf.checkpoint_reading finds
  and restores them for every command; a damaged `checkpoint` index file is rewritten from
  the complete checkpoints on disk.
- A checkpoint is on disk whole or without its index. TensorFlow writes the index of a
  checkpoint under its final name once the data is in place, so a process killed then would
  leave a partial `ckpt-N.index`; here the checkpoint is written whole into `ckpt-N_temp/`
  and its files are renamed into place, the index last (`_write_whole`).
- A failed save (a full disk, say) stops the run with a clear error naming the checkpoints
  really on disk; only the files this save created are removed, so every checkpoint written
  before is untouched. A step is saved once: a stop right after the loop saved it saves
  nothing more. What a process killed while saving leaves (`ckpt-N_temp/`, data files
  without an index) is removed by the next run, under the lock; a checkpoint it had put in
  place without rewriting the index file is recorded then, as the save would have done.
- One training process per workdir: a lock held for the life of the process (released by
  the OS even on SIGKILL) makes a second process refuse to start.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import shutil
import stat
import time
from typing import IO, Iterator, Optional, Sequence

import tensorflow as tf
from absl import logging

from pix2pix_tf import writing
from pix2pix_tf.checkpoint_reading import (
    CheckpointError,
    checkpoint_candidates,
    checkpoint_files,
    checkpoint_step,
    complete_checkpoints,
    damaged_index,
    files_of,
    restore_newest_readable,
)
from pix2pix_tf.errors import ConfigError, op_reason
from pix2pix_tf.regular_files import file_kind
from pix2pix_tf.workdir import Workdir


class RunCheckpoints:
    """The checkpoints of one run, for one worker of the cluster (the chief or another)."""

    def __init__(self, checkpoint: tf.train.Checkpoint, workdir: str, keep: int, step: tf.Variable,
                 chief: bool = True, worker: int = 0, coordinated: bool = False):
        """`coordinated`: a multi-worker cluster, whose saves go through TensorFlow's manager,
        which its preemption handler shares."""
        self.checkpoint = checkpoint
        self.chief = chief
        self.keep = keep
        self.coordinated = coordinated
        self.directory = Workdir(workdir).checkpoints
        self._temporary = None if chief else os.path.join(workdir, f"tmp_worker_{worker}")
        if chief:
            self._rebuild_damaged_index()
            self._finish_interrupted_save()
        self.manager = tf.train.CheckpointManager(checkpoint, self._temporary or self.directory,
                                                  max_to_keep=keep, step_counter=step, checkpoint_name="ckpt")
        self._saved_step: Optional[int] = None

    @property
    def latest(self) -> Optional[str]:
        """The newest complete checkpoint on disk."""
        found = complete_checkpoints(self.directory)
        return found[-1] if found else None

    def restore_latest(self, model: str = "config.json") -> Optional[str]:
        """Restores the newest readable checkpoint of the run, or returns None if there is none;
        `model` names what a checkpoint that does not fit was restored into.

        Checkpoint files without one complete checkpoint among them are refused rather than
        started over: a new run would write over them."""
        candidates = checkpoint_candidates(self.directory)
        path = restore_newest_readable(self.checkpoint, candidates, model)
        if path:
            self._saved_step = checkpoint_step(path)
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
        try:
            path = self._write(step)
        except (OSError, tf.errors.OpError) as e:
            self._remove_created(step, created_before)
            on_disk = ", ".join(os.path.basename(c) for c in complete_checkpoints(self.directory)) or "none"
            raise CheckpointError(
                f"Saving the checkpoint of step {step} in {self.manager.directory} failed: {op_reason(e)}. "
                f"Its unfinished files were removed; the checkpoints on disk are: {on_disk}. "
                "Free some disk space and re-run the command to resume from the newest.") from e
        self._saved_step = step
        if self._temporary:
            shutil.rmtree(self._temporary, ignore_errors=True)
            return None
        return path

    def _write(self, step: int) -> str:
        if self._temporary or self.coordinated:
            options = tf.train.CheckpointOptions(experimental_write_callbacks=[writing.write_point])
            return self.manager.save(checkpoint_number=step, options=options)
        return self._write_whole(step)

    def _write_whole(self, step: int) -> str:
        """Writes the checkpoint of `step` into `ckpt-N_temp/`, then renames its data files and,
        last, its index into place; then rewrites the index file and keeps the newest `keep`,
        as TensorFlow's manager would."""
        final = os.path.join(self.directory, f"ckpt-{step}")
        self.checkpoint.save_counter.assign_add(1)  # As the manager counts saves (checkpoints hold the count).
        staged = self.checkpoint.write(os.path.join(final + "_temp", os.path.basename(final)))
        writing.write_point(final)
        for data in files_of(staged, ".data-*"):
            os.replace(data, final + data[len(staged):])
        os.replace(staged + ".index", final + ".index")  # The index file's write syncs the folder.
        shutil.rmtree(final + "_temp", ignore_errors=True)
        self._record({**{path: stamp for path, stamp in self._saved().items() if path != final}, final: time.time()})
        return final

    def _record(self, saved: dict[str, float]) -> None:
        """Writes the index file naming the newest `keep` of `saved` (path -> time of its save,
        oldest first), then removes the others."""
        kept = dict(list(saved.items())[-self.keep:])
        self._write_index(list(kept), list(kept.values()))  # Before the removals: a failed write removes nothing.
        for old in saved.keys() - kept.keys():
            _remove_checkpoint(old)

    def _finish_interrupted_save(self) -> None:
        """A save killed after its checkpoint was in place and before the index file was
        rewritten leaves a complete checkpoint newer than every one the index records, which
        no later save would remove (`_saved`): it is recorded now, as that save would have
        done. The caller holds the lock."""
        recorded = self._saved()
        if not recorded:  # No index file, or one rebuilt from the files: nothing is removed.
            return
        newest = checkpoint_step(list(recorded)[-1])
        unrecorded = [path for path in complete_checkpoints(self.directory) if checkpoint_step(path) > newest]
        if unrecorded:
            logging.info("Recording %s, saved by a run stopped before it updated the index file.",
                         ", ".join(os.path.basename(path) for path in unrecorded))
            self._record({**recorded, **{path: os.path.getmtime(path + ".index") for path in unrecorded}})

    def _saved(self) -> dict[str, float]:
        """The checkpoints earlier saves recorded in the index file, with the time of each save,
        oldest first: the only ones a save may remove, as TensorFlow's manager does. An index
        rebuilt from the files records no save, so no checkpoint found then is ever removed."""
        state = None if damaged_index(self.directory) else tf.train.get_checkpoint_state(self.directory)
        if state is None:  # No index file, or a damaged one (rebuilt when the run started).
            return {}
        return {os.path.join(self.directory, os.path.basename(path)): stamp
                for path, stamp in zip(state.all_model_checkpoint_paths, state.all_model_checkpoint_timestamps)
                if stamp > state.last_preserved_timestamp and os.path.exists(path + ".index")}

    def _write_index(self, found: list[str], saved_at: Sequence[float] = ()) -> None:
        """The `checkpoint` index file TensorFlow's tools read: `found` (paths), newest last, and
        when each was saved (`saved_at`, one time per path; none for a rebuilt index)."""
        names = [os.path.basename(c) for c in found]
        lines = ([f'model_checkpoint_path: "{names[-1]}"'] + [f'all_model_checkpoint_paths: "{name}"' for name in names]
                 + [f"all_model_checkpoint_timestamps: {stamp!r}" for stamp in saved_at])
        writing.write_text(os.path.join(self.directory, "checkpoint"), "\n".join(lines) + "\n")

    def _unfinished_files(self, step: int) -> set[str]:
        prefix = os.path.join(self.manager.directory, f"ckpt-{step}")
        return set(files_of(prefix, "_temp*") + files_of(prefix, ".*")
                   + files_of(os.path.join(self.manager.directory, "checkpoint.tmp"), "*"))

    def _remove_created(self, step: int, created_before: set[str]) -> None:
        """Removes what the failed save of `step` created, and nothing that was there before."""
        for leftover in sorted(self._unfinished_files(step) - created_before):
            _remove(leftover)

    def _rebuild_damaged_index(self) -> None:
        """A damaged index (see the module docstring) is rewritten from the complete checkpoints
        on disk, for TensorFlow's tools; it records no save, so a later save removes none of
        them (`_saved`). The caller holds the lock."""
        problem = damaged_index(self.directory)
        if not problem:
            return
        found = complete_checkpoints(self.directory)
        logging.warning("%s; rebuilt from the complete checkpoints on disk: %s.", problem,
                        ", ".join(os.path.basename(c) for c in found) or "none")
        if not found:  # An index must name one; restore_latest refuses what files there are.
            os.remove(os.path.join(self.directory, "checkpoint"))
            return
        self._write_index(found)

    def remove_unfinished_saves(self) -> list[str]:
        """Removes what a process killed while saving left behind, and returns it.

        A checkpoint is written into `ckpt-N_temp/` (the model's full size) and the index file
        through a temporary file; a kill while the files are renamed into place can leave data
        files without their index. None of these is part of a checkpoint; left alone they would
        stay for good. Call it only while holding the workdir lock: then no live process is
        saving here.
        """
        checkpoints = os.path.join(self.directory, "ckpt-")
        unindexed = [path for path in files_of(checkpoints, "*.data-*")
                     if not os.path.exists(path.rsplit(".data-", 1)[0] + ".index")]
        stale = sorted(files_of(checkpoints, "*_temp*") + unindexed
                       + files_of(os.path.join(self.directory, "checkpoint.tmp"), "*")
                       + writing.leftover_temporaries(os.path.join(self.directory, "checkpoint")))
        for path in stale:
            _remove(path)
        if stale:
            logging.info("Removed the unfinished saves of a stopped run: %s.", ", ".join(stale))
        return stale


def _remove_checkpoint(prefix: str) -> None:
    """Removes the checkpoint `prefix`, its index first: a kill in between leaves data files
    without an index (removed by the next run), never an index without its data."""
    for path in [prefix + ".index", *files_of(prefix, ".data-*")]:
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)


def _remove(path: str) -> None:
    if os.path.isdir(path):
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(OSError):
            os.remove(path)


def _open_lock_file(path: str) -> IO[str]:
    """The lock file, read-write, never through a link (its holder's line would replace the
    link's target) nor a FIFO or device, which cannot hold it."""
    writing.check_destination(path)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK, 0o666)
    except OSError as e:
        if e.errno == errno.ELOOP:  # It became a link since the check.
            writing.check_destination(path)
        raise
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise ConfigError(f"{path}, the run's lock file, is {file_kind(mode)}, not a regular file; move it away.")
    return os.fdopen(fd, "r+")


@contextlib.contextmanager
def workdir_lock(workdir: str) -> Iterator[None]:
    """Held while a process trains in `workdir`; a second process gets a clear refusal."""
    os.makedirs(workdir, exist_ok=True)
    handle = _open_lock_file(Workdir(workdir).lock_file)
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
