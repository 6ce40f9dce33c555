"""Runs one program's `main` (through `cli.guarded`, as the console scripts do, in this process:
tests/programs.py) once per write point k, failing the k-th write through
`pix2pix_tf.writing.injected_faults`, and then once more without the fault; one dict per k for
tests/test_write_discipline.py (with TensorFlow's graph optimizer off, as every test process
runs: tests/process_fixtures.py).

`rows(PROGRAM, STATE, SCRATCH, KS, FLAGS)`: STATE is the folder holding what exists before each
run, copied afresh to SCRATCH for every k; the flags name paths inside SCRATCH; KS are the
write points to fail, "count" to only count them, "baseline" to also keep what that run wrote
as the starting point of the next runs.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import traceback
from typing import Iterator

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# Rewritten by every successful run, by design: the checkpoint index (derived from the files)
# and the lock file's holder line.
DERIVED = ("checkpoints/checkpoint", ".train.lock")


def snapshot(root: str) -> dict[str, str]:
    """path relative to `root` -> sha256 of every regular file under it."""
    found = {}
    for folder, _, files in os.walk(root):
        for name in files:
            path = os.path.join(folder, name)
            if os.path.isfile(path) and not os.path.islink(path):
                with open(path, "rb") as f:
                    found[os.path.relpath(path, root)] = hashlib.sha256(f.read()).hexdigest()
    return found


def partial_files(root: str) -> list[str]:
    """Files under final names that are not whole: PNGs that do not decode, JSON that does not
    parse, checkpoint files of an incomplete checkpoint, and leftover temporary files."""
    from PIL import Image

    from pix2pix_tf.checkpoint_reading import complete_checkpoints

    bad = []
    for folder, _, files in os.walk(root):
        for name in files:
            path = os.path.join(folder, name)
            if name.endswith(".tmp") or "_temp" in path:
                bad.append(path)
            elif name.endswith(".png"):
                try:
                    with Image.open(path) as image:
                        image.load()
                except Exception:  # noqa: BLE001 - any failure to decode is a partial file
                    bad.append(path)
            elif name.endswith(".json"):
                try:
                    with open(path) as f:
                        json.load(f)
                except ValueError:
                    bad.append(path)
        if os.path.basename(folder) == "checkpoints":
            complete = {os.path.basename(c) for c in complete_checkpoints(folder)}
            bad += [os.path.join(folder, n) for n in files
                    if n.startswith("ckpt-") and n.split(".")[0] not in complete]
    return bad


def run_once(program: str, argv: list[str], fail_at: tuple[int, ...], error: int) -> dict:
    from pix2pix_tf import writing

    from programs import run_program

    with writing.injected_faults(fail_at, error) as faults:
        try:
            result = run_program(program, *argv)
            code, text = result.returncode, result.stderr
        except BaseException:  # noqa: BLE001 - what escapes the program is what the test reports
            code, text = "escaped", traceback.format_exc()
    return {"rc": code, "errors": [line for line in text.splitlines() if line.startswith("error:")],
            "traceback": "Traceback" in text, "points": faults.points}


def rows(program: str, state: str, scratch: str, ks: list, argv: list[str]) -> Iterator[dict]:
    """One row per k (the module docstring)."""
    for index, k in enumerate(ks):
        shutil.rmtree(scratch, ignore_errors=True)
        shutil.copytree(state, scratch, symlinks=True)
        before = snapshot(scratch)
        if k in ("count", "baseline"):  # baseline: what it writes is kept, as the runs' starting point.
            yield {"k": k, **run_once(program, argv, (), errno.ENOSPC)}
            if k == "baseline":
                shutil.rmtree(state)
                shutil.copytree(scratch, state, symlinks=True)
            continue
        error = (errno.ENOSPC, errno.EIO)[index % 2]
        failed = run_once(program, argv, (int(k),), error)
        after = snapshot(scratch)
        changed = sorted(p for p, digest in before.items() if after.get(p) != digest and not p.endswith(DERIVED))
        added = sorted(set(after) - set(before))
        partial = partial_files(scratch)
        again = run_once(program, argv, (), error)
        yield {"k": int(k), "error": errno.errorcode[error], "failed": failed, "changed": changed, "added": added,
               "partial": partial, "rerun_rc": again["rc"], "rerun_errors": again["errors"],
               "rerun_partial": partial_files(scratch)}
