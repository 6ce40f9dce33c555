"""Interrupting each program (train, export, translate, evaluate) with SIGINT, SIGTERM and SIGKILL.

Each program runs in a process of its own (forked from a warm parent: tests/forked.py), as a
user starts it, and gets each signal once (train.py SIGKILL twice), at a point drawn from a
seeded generator (a delay after the program says its work began). After every run: each file
that was complete before it is byte-identical, every file under a final name is whole (images
decode, JSON parses, checkpoints and SavedModels read back), the program printed one `error:
SIG... received: stopped; <what was done>` line and no traceback, and exited 130 (SIGINT), 143
(SIGTERM) or was killed (-9). Then the same command, run once more (its `main`, in this process:
tests/programs.py), completes: training resumes, export publishes, translate and evaluate
finish.
"""

from __future__ import annotations

import dataclasses
import glob
import hashlib
import json
import os
import pty
import random
import re
import signal
import sys
import threading
import time
from typing import Callable, Optional, Union

import numpy as np
import pytest
from PIL import Image

import forked
from conftest import TINY_DATASET, copied_run
from process_fixtures import GRAPH_OPTIMIZER_OFF
from programs import run_program

pytestmark = pytest.mark.slow  # Programs in processes of their own, signalled at random: the full suite (CI) runs it.

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGKILL)
# test_train's model. 4 base filters: checkpoints (one a step) a quarter of 8's, for every run to
# write and hash; no norm layers: less for each of its five runs to build and trace. What the test
# asserts (signals, checkpoints, resuming) does not depend on either.
TINY = ["--generator=unet_128", "--ngf=4", "--ndf=4", "--norm=none", "--load_size=143", "--crop_size=128"]


class Program:
    """A program started in a process of its own whose output is read while it runs."""

    def __init__(self, command: list[str], stdout: forked.Stream = forked.PIPE, prelude: str = ""):
        """`stdout`: read like stderr where it is a pipe; else the program's (a terminal, say).
        `prelude`: run before the program, after TensorFlow's graph optimizer is turned off as in
        this process (tests/process_fixtures.py)."""
        env = {k: v for k, v in os.environ.items() if k != "TF_CONFIG"}
        self.process = forked.Popen(command, cwd=ROOT, stdout=stdout, stderr=forked.PIPE, text=True, env=env,
                                    prelude=GRAPH_OPTIMIZER_OFF + prelude)
        self.out: list[str] = []
        self.err: list[str] = []
        streams = [(self.process.stdout, self.out), (self.process.stderr, self.err)]
        self.readers = [threading.Thread(target=self._read, args=(stream, lines), daemon=True)
                        for stream, lines in streams if stream is not None]
        for reader in self.readers:
            reader.start()

    @staticmethod
    def _read(stream, lines: list[str]) -> None:
        for line in stream:
            lines.append(line)

    def wait_for(self, marker: Union[str, Callable[[], bool]], timeout: float = 300) -> None:
        """Until `marker` is on stderr, or is true."""
        ready = marker if callable(marker) else lambda: any(marker in line for line in self.err)
        deadline = time.monotonic() + timeout
        while not ready():
            assert self.process.poll() is None, "".join(self.err)[-3000:]
            assert time.monotonic() < deadline, f"no {marker!r} within {timeout} s"
            time.sleep(0.02)

    def finish(self, timeout: float = 300) -> tuple[int, str, str]:
        self.process.wait(timeout)
        for reader in self.readers:
            reader.join(timeout)
        return self.process.returncode, "".join(self.out), "".join(self.err)


def snapshot(root: str) -> dict[str, str]:
    """sha256 of every file under `root`."""
    found = {}
    for folder, _, files in os.walk(root):
        for name in files:
            path = os.path.join(folder, name)
            with open(path, "rb") as f:
                found[os.path.relpath(path, root)] = hashlib.sha256(f.read()).hexdigest()
    return found


def listed(root: str) -> dict[str, str]:
    """The paths of the files under `root`, unread (as keys, like `snapshot`'s): a program that
    runs meanwhile may rename or remove any of them."""
    return {os.path.relpath(os.path.join(folder, name), root): ""
            for folder, _, files in os.walk(root) for name in files}


def complete_files(root: str) -> dict[str, str]:
    """The snapshot of the files under final names: not inside an unfinished save (`ckpt-N_temp/`,
    an export's staging folder, whose name starts with a dot), not a temporary file (`.<name>.<hex>.tmp`,
    TensorFlow's `checkpoint.tmp<hex>`). A later run may remove what a kill left of those."""
    return {path: digest for path, digest in snapshot(root).items()
            if not any(part.endswith("_temp") or part.startswith(".") for part in path.split(os.sep))
            and ".tmp" not in os.path.basename(path)}


_WHOLE: set[tuple[str, ...]] = set()  # (path, sha256 of each file read) of what assert_whole read whole.


def assert_whole(root: str, digests: dict[str, str]) -> None:
    """Every file under a final name reads back whole; unfinished saves (`ckpt-N_temp/`,
    export staging folders, whose names start with a dot) are not final names. A file with the
    same bytes as one read back whole before is whole: it is not read again. `digests`: the
    snapshot of `root` taken after the run."""
    import tensorflow as tf
    from ai_edge_litert.interpreter import Interpreter
    from tensorflow.core.protobuf import saved_model_pb2

    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if not d.endswith("_temp") and not d.startswith(".")]
        for name in files:
            path = os.path.join(folder, name)
            read = [path]
            if name.endswith(".index"):  # A checkpoint, or a SavedModel's variables: its data files too.
                read += sorted(glob.glob(path[: -len(".index")] + ".data-*"))
            key = (path, *(digests[os.path.relpath(p, root)] for p in read))
            if key in _WHOLE:
                continue
            if name.endswith(".png"):
                with Image.open(path) as image:
                    image.load()
            elif name.endswith(".json"):
                with open(path) as f:
                    json.load(f)
            elif name.endswith(".index"):
                reader = tf.train.load_checkpoint(path[: -len(".index")])
                for key_name in reader.get_variable_to_shape_map():
                    reader.get_tensor(key_name)
            elif name == "saved_model.pb":
                with open(path, "rb") as f:
                    saved_model_pb2.SavedModel().ParseFromString(f.read())
            elif name.endswith(".tflite"):
                Interpreter(model_path=path).allocate_tensors()  # LiteRT's, as the package's own check.
            _WHOLE.add(key)


Marker = Union[str, Callable[[], Callable[[], bool]]]  # A line on stderr, or a condition made before each run.
COMMANDS = {"train": [os.path.join(ROOT, "train.py")], "export": [os.path.join(ROOT, "export.py")],
            "translate": ["-m", "pix2pix_tf.translate"], "evaluate": ["-m", "pix2pix_tf.evaluate"]}


@dataclasses.dataclass
class Run:
    signum: Optional[int]  # None: the last run, left to complete.
    stop: str  # The `error: SIG... received: stopped; ...` line ("" for SIGKILL and the last run).
    stdout: str
    stderr: str
    before: dict[str, str]  # complete_files(root) when it started.


Window = tuple[float, float]  # The seeded delay's range, in seconds after the marker.


def interrupt_then_complete(program: str, flags: list[str], marker: Marker, root: str, window: Window,
                            seed: int, rewritten: tuple[str, ...] = (), signals: tuple[int, ...] = SIGNALS,
                            phases: Optional[dict[int, tuple[Marker, Window]]] = None) -> list[Run]:
    """Runs `program` with `flags` in a process of its own once per signal of `signals` (in a seeded
    order), sending it a seeded delay after `marker` appears on its stderr (or its condition
    holds), then once to completion in this process, checking the invariants of the module
    docstring after each run. `rewritten`: files a run may change (an index of checkpoints).
    `phases`: another marker and window for a signal, to land it in a named phase of the work on
    a machine of any speed (a delay in seconds lands later in the work on a faster machine)."""
    rng = random.Random(seed)
    runs = []
    for signum in rng.sample(signals, len(signals)):
        before = complete_files(root)
        where, delay = (phases or {}).get(signum, (marker, window))
        ready = where() if callable(where) else where
        started = Program([sys.executable, *COMMANDS[program], *flags])
        started.wait_for(ready)
        time.sleep(rng.uniform(*delay))
        started.process.send_signal(signum)
        code, stdout, stderr = started.finish()
        assert "Traceback" not in stderr, stderr[-3000:]
        stops = [line for line in stderr.splitlines() if line.startswith("error:")]
        if signum == signal.SIGKILL:
            assert code == -signal.SIGKILL and not stops
        else:
            # Not 0: the signal landed while the program worked.
            assert code == 128 + signum, f"exit {code} after {signal.Signals(signum).name}: {stderr[-3000:]}"
            assert len(stops) == 1 and stops[0].startswith(f"error: {signal.Signals(signum).name} received: "
                                                           "stopped"), stderr[-3000:]
        _check_kept(root, before, rewritten, signal.Signals(signum).name)
        runs.append(Run(signum, stops[0] if stops else "", stdout, stderr, before))
    before = complete_files(root)
    last = run_program(program, *flags)
    assert last.returncode == 0 and "Traceback" not in last.stderr, last.stderr[-3000:]
    _check_kept(root, before, rewritten, "the last run")
    return [*runs, Run(None, "", last.stdout, last.stderr, before)]


def _check_kept(root: str, before: dict[str, str], rewritten: tuple[str, ...], run: str) -> None:
    """The files complete before the run are as they were, and every file under a final name is whole."""
    after = snapshot(root)
    changed = [p for p, digest in before.items() if after.get(p) != digest and p not in rewritten]
    assert not changed, f"{run} changed or removed complete files: {changed}"
    assert_whole(root, after)


@pytest.fixture(scope="module")
def root(tmp_path_factory, run_of_six) -> str:
    """A copy of the session's trained tiny run (conftest `run_of_six`, trained once for every
    module that reads one) and 80 input images, shared by the programs that read a run."""
    folder = tmp_path_factory.mktemp("interrupts")
    copied_run(run_of_six, folder / "run")
    rng = np.random.default_rng(0)
    (folder / "inputs").mkdir()
    for i in range(80):
        Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(folder / "inputs" / f"{i:02d}.png")
    return str(folder)


def newest_complete_step(files: dict[str, str]) -> int:
    """The step of the newest checkpoint whose index and data are both under their final names
    in `files` (a snapshot of the test's folder, whose run is in run/); 0 if none."""
    steps = [int(m.group(1)) for path in files if (m := re.fullmatch(r"run/checkpoints/ckpt-(\d+)\.index", path))]
    return max([s for s in steps if f"run/checkpoints/ckpt-{s}.data-00000-of-00001" in files], default=0)


STEPS = 40  # test_train's run.


def test_train(tmp_path, data_dir):
    """SIGINT and SIGTERM checkpoint the step in progress and name it; SIGKILL, twice, loses at
    most the steps since the last checkpoint (one is saved every step here, so kills land in
    saves too); every run resumes from the newest complete checkpoint, and the last finishes
    and leaves no unfinished save. A signal lands within half a second of a new checkpoint, so
    the four interrupted runs stop well before STEPS."""
    workdir = tmp_path / "run"
    checkpoints = workdir / "checkpoints"
    flags = [f"--dataset={TINY_DATASET}", f"--data_dir={data_dir}", f"--workdir={workdir}", *TINY, "--eval_examples=1",
             "--sample_every=100000", "--noprogress", "--seed=3", f"--steps={STEPS}", "--save_every=1",
             "--keep_checkpoints=100"]

    def one_more_checkpoint() -> Callable[[], bool]:  # Then the run is in its steps.
        def saved() -> int:
            return len(list(checkpoints.glob("ckpt-*.index")))

        before = saved()
        return lambda: saved() > before

    runs = interrupt_then_complete("train", flags, one_more_checkpoint, str(tmp_path), (0.0, 0.5), seed=1,
                                   rewritten=(os.path.join("run", "checkpoints", "checkpoint"),
                                              os.path.join("run", ".train.lock")),
                                   signals=(*SIGNALS, signal.SIGKILL))
    for run in runs[1:]:  # The first starts the run.
        newest = newest_complete_step(run.before)
        assert newest > 0 and f"Resumed from {checkpoints / f'ckpt-{newest}'} at step {newest}." in run.stderr
    for run in runs:
        if run.signum in (signal.SIGINT, signal.SIGTERM):
            name = signal.Signals(run.signum).name
            step = int(re.search(rf"{name} received: checkpointing step (\d+) and stopping", run.stderr).group(1))
            assert run.stop == (f"error: {name} received: stopped; step {step}/{STEPS} checkpointed "
                                f"({checkpoints / f'ckpt-{step}'}); run the same command to resume."), run.stop
            assert (checkpoints / f"ckpt-{step}.index").is_file()
    assert f"Done: step {STEPS}/{STEPS}" in runs[-1].stdout
    assert newest_complete_step(snapshot(str(tmp_path))) == STEPS
    assert not [name for name in os.listdir(checkpoints) if "_temp" in name or ".tmp" in name]


def test_train_stops_on_a_hangup_unless_started_with_nohup_and_when_its_terminal_closes(tmp_path, data_dir):
    """SIGHUP (the terminal or ssh session closed) checkpoints and stops as SIGTERM does, unless
    the program was started ignoring it (as `nohup` starts one). Progress that can no longer be
    written (its terminal closed, or a pipe's reader gone: `| head`) stops the run the same way,
    with the exit code of a program that SIGPIPE ended."""
    workdir = tmp_path / "run"
    checkpoints = workdir / "checkpoints"
    flags = [f"--dataset={TINY_DATASET}", f"--data_dir={data_dir}", f"--workdir={workdir}", *TINY, "--eval_examples=1",
             "--sample_every=100000", "--seed=3", "--steps=100000", "--save_every=1", "--keep_checkpoints=2"]

    terminal, program_side = pty.openpty()
    os.set_blocking(terminal, False)
    shown = []  # What the program drew on its terminal, read as it comes (a full terminal would block it).

    def checkpoints_past(step: int, read_terminal: bool = True) -> Callable[[], bool]:
        def past() -> bool:
            try:
                while read_terminal and (chunk := os.read(terminal, 1 << 16)):
                    shown.append(chunk)
            except BlockingIOError:  # Nothing more yet.
                pass
            return newest_complete_step(listed(str(tmp_path))) > step

        return past

    nohup = "import signal; signal.signal(signal.SIGHUP, signal.SIG_IGN)"
    ignoring = Program([sys.executable, *COMMANDS["train"], *flags], stdout=program_side, prelude=nohup)
    os.close(program_side)
    ignoring.wait_for(checkpoints_past(0))
    ignoring.process.send_signal(signal.SIGHUP)
    hung_up_at = newest_complete_step(listed(str(tmp_path)))
    ignoring.wait_for(checkpoints_past(hung_up_at + 1))  # Still training.
    assert b"step" in b"".join(shown)  # The progress bar, drawn on its terminal.
    os.close(terminal)
    code, _, stderr = ignoring.finish()
    step = int(re.search(r"Writing the progress failed \(\[Errno 5\] Input/output error\): checkpointing step (\d+) "
                         "and stopping", stderr).group(1))
    assert code == 128 + signal.SIGPIPE and "Traceback" not in stderr, stderr[-3000:]
    assert stderr.rstrip().endswith("error: The standard output's reader has gone (Input/output error): stopped; "
                                    f"step {step}/100000 checkpointed "
                                    f"({checkpoints / f'ckpt-{step}'}); run the same command to resume."), stderr
    assert newest_complete_step(snapshot(str(tmp_path))) == step > hung_up_at + 1

    started = Program([sys.executable, *COMMANDS["train"], *flags, "--noprogress"])
    started.wait_for(checkpoints_past(step, read_terminal=False))  # That terminal is closed.
    started.process.send_signal(signal.SIGHUP)
    code, _, stderr = started.finish()
    assert f"Resumed from {checkpoints / f'ckpt-{step}'} at step {step}." in stderr
    stopped = int(re.search(r"SIGHUP received: checkpointing step (\d+) and stopping", stderr).group(1))
    assert code == 128 + signal.SIGHUP and "Traceback" not in stderr, stderr[-3000:]
    assert stderr.rstrip().endswith(f"error: SIGHUP received: stopped; step {stopped}/100000 checkpointed "
                                    f"({checkpoints / f'ckpt-{stopped}'}); run the same command to resume."), stderr
    assert newest_complete_step(snapshot(str(tmp_path))) == stopped > step
    assert_whole(str(tmp_path), snapshot(str(tmp_path)))


def test_export(root):
    """A stop before the SavedModel is published (SIGINT, within a second of "Exporting")
    publishes nothing; a stop after it (SIGTERM, as the TFLite file is converted and checked)
    leaves the SavedModel and publishes no TFLite file; the next export removes what a kill
    left and publishes a complete version."""
    export_dir = os.path.join(root, "export")
    flags = [f"--workdir={os.path.join(root, 'run')}", f"--export_dir={export_dir}", "--tflite=float32",
             "--deterministic", "--check_examples=2"]
    runs = interrupt_then_complete("export", flags, "Exporting", root, (0.0, 1.0), seed=2,
                                   phases={signal.SIGTERM: ("Converting the float32 TFLite variant", (0.0, 0.3))})
    stops = {run.signum: run.stop for run in runs[:-1]}
    assert stops[signal.SIGINT].endswith("nothing was published."), stops[signal.SIGINT]
    assert re.search(r"published: \S+; nothing else was\.$", stops[signal.SIGTERM]), stops[signal.SIGTERM]
    published = re.search(r"SavedModel: (\S+) \(version (\d+)", runs[-1].stdout)
    assert published and os.path.isfile(os.path.join(published.group(1), "saved_model.pb"))
    for base in (os.path.join(export_dir, "pix2pix"), os.path.join(export_dir, "tflite", "pix2pix")):
        assert not [name for name in os.listdir(base) if name.startswith(".")]  # No staging folder is left.
    assert os.path.isfile(os.path.join(export_dir, "tflite", "pix2pix", published.group(2), "pix2pix_float32.tflite"))


def test_translate(root):
    """The summary counts what was written; the rerun translates every image."""
    output_dir = os.path.join(root, "translated")
    flags = [f"--workdir={os.path.join(root, 'run')}", f"--output_dir={output_dir}", "--deterministic",
             "--noprogress", os.path.join(root, "inputs")]
    runs = interrupt_then_complete("translate", flags, "Translating 80 image(s)", root, (0.0, 0.5), seed=3)
    for run in runs[:-1]:
        if run.signum != signal.SIGKILL:
            assert re.search(r"stopped; (translated \d+ image\(s\) into .*; \d+ of 80 not translated|before "
                             r"translating any image)\.$", run.stop), run.stop
    assert "Translated 80 image(s)" in runs[-1].stdout and len(os.listdir(output_dir)) == 80


def test_evaluate(root):
    """metrics.json is written only by a complete evaluation; the rerun writes it."""
    output_dir = os.path.join(root, "evaluation")
    flags = [f"--workdir={os.path.join(root, 'run')}", "--nofcn", f"--output_dir={output_dir}", "--noprogress",
             "--num_samples=4"]
    runs = interrupt_then_complete("evaluate", flags, "Evaluating", root, (0.0, 1.0), seed=4)
    for run in runs[:-1]:
        if run.signum != signal.SIGKILL:
            assert re.search(r"stopped(; measured \d+ of 16 image\(s\); metrics.json is written only once every "
                             r"image is measured)?\.$", run.stop), run.stop
    assert "Written:" in runs[-1].stdout and os.path.isfile(os.path.join(output_dir, "metrics.json"))
