"""Reading a run's checkpoints: which are complete on disk, and restoring the newest readable.

Below both the runtime (translate, evaluate and export restore a run's generator) and the
trainer (training resumes), so that all of them find and restore checkpoints the same way;
writing them is training.checkpoints'.

- The checkpoints of a run are the complete ones on disk (`ckpt-N.index` and every data
  shard), newest first, not what the `checkpoint` index file lists: a damaged index (0 bytes,
  garbled) is named in a warning and the files are used, never taken for "no checkpoint",
  which would start a run again over its checkpoints (`checkpoint_candidates`).
- Restoring tries the newest checkpoint first; a truncated or corrupt one is reported by
  name and the previous one is tried, so a crash while writing costs at most the work since
  the checkpoint before it. A checkpoint that does not fit the model is a configuration
  error, not corruption: it is never skipped silently.
"""

from __future__ import annotations

import glob
import os
import re
from typing import Optional

import tensorflow as tf
from absl import logging

from pix2pix_tf.errors import ConfigError, Pix2pixError
from pix2pix_tf.regular_files import irregular


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
        files = files_of(path, ".*")
        reason = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise UnreadableCheckpointError(f"Checkpoint {path} is unreadable ({type(e).__name__}: {reason}); "
                                        f"files: {', '.join(files)}.") from e


_MISMATCH = re.compile(r"tensor with shape (\S+?) when attempting to restore variable with shape (\S+?) "
                       r"and name (\S+?)\.?(\s|$)")
# The same mismatch where the restore assigns (a distribution strategy's variables, as in training).
_ASSIGN_MISMATCH = re.compile(r"variable\.shape=(\S+?),Received: value\.shape=(\S+?)\.\s+Target variable: "
                              r"<Variable path=([^,>\s]+)")


def _mismatch(error: Exception) -> str:
    """A mismatch as one line naming the variable and both shapes (TensorFlow's message can
    carry the variable's values, hundreds of lines)."""
    text = str(error)
    compact = text.replace(", ", ",")
    found = _MISMATCH.search(compact)
    if found:
        saved, model, name = found.group(1), found.group(2), found.group(3).removesuffix(":0")
        return f"{name} has shape {model} in the model but {saved} in the checkpoint."
    found = _ASSIGN_MISMATCH.search(compact)
    if found:
        model, saved, name = found.group(1), found.group(2), found.group(3)
        return f"{name} has shape {model} in the model but {saved} in the checkpoint."
    first = text.strip().splitlines()[0] if text.strip() else type(error).__name__
    return first if len(first) <= 300 else first[:300] + "..."


_CHECKPOINT_FILE = re.compile(r"^ckpt-(\d+)\.(index|data-(\d+)-of-(\d+))$")


def checkpoint_step(prefix: str) -> int:
    """The step a checkpoint's prefix names (`.../ckpt-N`), as every save names it."""
    return int(prefix.rsplit("-", 1)[1])


def complete_checkpoints(directory: str) -> list[str]:
    """The checkpoints in `directory` whose index and every data shard are on disk as regular
    files (TensorFlow's reader would wait forever on a FIFO), oldest first."""
    try:
        names = os.listdir(directory)
    except OSError:
        return []
    indexed, shards = set(), {}
    for name in names:
        found = _CHECKPOINT_FILE.match(name)
        if not found or irregular(os.path.join(directory, name)):
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
    kind = irregular(path)
    if kind:
        return f"{path} is damaged ({kind}, not a regular file)"
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
    return files_of(os.path.join(directory, "ckpt-"), "*")


def files_of(prefix: str, pattern: str) -> list[str]:
    """The paths `prefix` + `pattern` (a glob pattern), sorted; `prefix` is matched as written,
    so that a workdir named `run[1]` or `run*` is a name, not a pattern."""
    return sorted(glob.glob(glob.escape(prefix) + pattern))


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
