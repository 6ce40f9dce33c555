"""Runs one program's `main` (through `cli.guarded`, as the console scripts do) once per write
point k, failing the k-th write through `pix2pix_tf.writing.injected_faults`, and then once more
without the fault; prints one JSON object per run for tests/test_write_discipline.py.

One program per process: the programs define flags of the same names in absl's global
registry. Usage: python tests/write_matrix.py PROGRAM STATE SCRATCH K... -- FLAGS...
(STATE: the folder holding what exists before each run, copied afresh to SCRATCH for every
k; the flags name paths inside SCRATCH; K: the write points to fail, "count" to only count
them, "baseline" to also keep what that run wrote as the starting point of the next runs.)
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import importlib
import io
import json
import os
import shutil
import sys
import traceback

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

PROGRAMS = {"train": "train", "export": "export", "translate": "pix2pix_tf.translate",
            "evaluate": "pix2pix_tf.evaluate"}
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


def run_once(program, argv: list[str], fail_at: tuple[int, ...], error: int) -> dict:
    from absl import flags

    from pix2pix_tf import cli, writing

    flags.FLAGS.unparse_flags()
    rest = flags.FLAGS(argv)
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr), writing.injected_faults(fail_at, error) as faults:
        try:
            code = cli.guarded(program.main)(rest)
        except BaseException:  # noqa: BLE001 - what escapes the program is what the test reports
            traceback.print_exc(file=stderr)
            code = "escaped"
    text = stderr.getvalue()
    return {"rc": code, "errors": [line for line in text.splitlines() if line.startswith("error:")],
            "traceback": "Traceback" in text, "points": faults.points}


def main() -> None:
    name, state, scratch, *rest = sys.argv[1:]
    ks, argv = rest[: rest.index("--")], rest[rest.index("--") + 1:]
    program = importlib.import_module(PROGRAMS[name])
    argv = [name] + argv
    for index, k in enumerate(ks):
        shutil.rmtree(scratch, ignore_errors=True)
        shutil.copytree(state, scratch, symlinks=True)
        before = snapshot(scratch)
        if k in ("count", "baseline"):  # baseline: what it writes is kept, as the runs' starting point.
            print(json.dumps({"k": k, **run_once(program, argv, (), errno.ENOSPC)}), flush=True)
            if k == "baseline":
                shutil.rmtree(state)
                shutil.copytree(scratch, state, symlinks=True)
            continue
        error = (errno.ENOSPC, errno.EIO)[index % 2]
        failed = run_once(program, argv, (int(k),), error)
        after = snapshot(scratch)
        changed = sorted(p for p, digest in before.items() if after.get(p) != digest and not p.endswith(DERIVED))
        partial = partial_files(scratch)
        again = run_once(program, argv, (), error)
        print(json.dumps({"k": int(k), "error": errno.errorcode[error], "failed": failed, "changed": changed,
                          "partial": partial, "rerun_rc": again["rc"], "rerun_errors": again["errors"],
                          "rerun_partial": partial_files(scratch)}), flush=True)


if __name__ == "__main__":
    main()
