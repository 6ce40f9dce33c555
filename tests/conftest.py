"""Shared fixtures: the tiny embedded dataset, prepared once per test session."""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import gc
import json
import os
import pathlib
import shutil
import subprocess
import sys
from typing import Callable, Iterator, Optional, TypeVar

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Where the environment turns off writing compiled modules (PYTHONDONTWRITEBYTECODE, as container
# images often set), every interpreter a test starts (a zygote, a spawned measurement, an import
# probe) would compile this library's modules again: the first import here writes them once.
os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
sys.dont_write_bytecode = False

import pytest  # noqa: E402

from pix2pix_tf import config as cfg  # noqa: E402

import process_fixtures  # noqa: E402

TINY_DATASET = "shapes/64"
T = TypeVar("T")

# The files that take longest in the full suite, longest first (the rest take seconds). The
# README's full command runs the suite on every core with `--dist loadfile` (a file's tests on one
# worker, so its module fixtures are built once): starting the longest files first and ending
# with short ones lets the workers finish together. pytest.ini's `--no-loadscope-reorder` keeps
# this order (pytest-xdist would otherwise start the files with the most tests first).
LONGEST_FIRST = ("test_performance.py", "test_write_discipline.py", "test_interrupts.py", "test_training.py",
                 "test_distributed.py", "test_export.py", "test_precision.py", "test_checkpoint_safety.py",
                 "test_evaluate.py", "test_paper.py", "test_faults.py", "test_demo.py", "test_multiscale.py",
                 "test_serving_client.py", "test_deployment.py", "test_native_size.py", "test_hostile_inputs.py",
                 "test_images.py", "test_export_targets.py", "test_notebook.py", "test_onnx.py", "test_sources.py",
                 "test_process_state.py", "test_translate.py", "test_reference_fidelity.py", "test_cli.py")


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """`-n auto`: one worker per core and one more. Many tests wait on the programs they start
    (fresh processes, servers, a browser), so a core would otherwise idle while its worker waits.
    PYTEST_XDIST_AUTO_NUM_WORKERS still sets the number."""
    if os.environ.get("PYTEST_XDIST_AUTO_NUM_WORKERS"):
        return int(os.environ["PYTEST_XDIST_AUTO_NUM_WORKERS"])
    return len(os.sched_getaffinity(0)) + 1


def pytest_collection_finish(session: pytest.Session) -> None:
    """Python's full collections scan every object a worker holds, and a worker soon holds the
    models, graphs and functions of hundreds of tests. The modules imported so far (TensorFlow's
    included) live until the end: frozen, they are never scanned again; and the oldest
    generation is collected ten times less often. Garbage is collected after each test (below)."""
    gc.freeze()
    young, middle, _ = gc.get_threshold()
    gc.set_threshold(young, middle, 100)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: Optional[pytest.Item]):
    """After each test, its garbage is collected and what it left alive (module fixtures, caches)
    is frozen: a later full collection scans only what later tests made, not every survivor of
    the tests before them again. (A frozen object that later becomes part of a garbage cycle is
    not collected; a fixture's models are small.)"""
    yield
    gc.collect()
    gc.freeze()


def pytest_configure(config: pytest.Config) -> None:
    """TensorFlow's graph optimizer off in a process that runs tests (tests/process_fixtures.py),
    before TensorFlow starts (collecting the test modules starts it), so that tf.data's functions,
    which take the setting TensorFlow started with, skip it too. pytest-xdist's controller runs
    no test, and is left alone."""
    if process_fixtures.ON_EVERYWHERE:
        return
    if hasattr(config, "workerinput") or not config.getoption("numprocesses", None):
        import tensorflow as tf

        tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": True})


@pytest.fixture(scope="module", autouse=True)
def graph_optimizer_where_marked(request: pytest.FixtureRequest) -> Iterator[None]:
    """On, for the tf.functions of the modules marked `graph_optimizer`, before their other fixtures."""
    if request.node.get_closest_marker("graph_optimizer") is None:
        yield
        return
    with process_fixtures.graph_optimizer_on():
        yield


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {name: index for index, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # Stable: the rest keep their order.


def built_once(tmp_path_factory, name: str, build: Callable[[pathlib.Path], T]) -> T:
    """What `build(folder)` returned (JSON data), built once per test run and shared read-only.

    pytest-xdist runs a session per worker, so a session fixture alone would build it on every
    worker: the first worker to ask builds it, under a lock, and the others read its record."""
    base = tmp_path_factory.getbasetemp()
    root = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base  # The run's folder, over the workers'.
    folder, record = root / name, root / f"{name}.json"
    with open(root / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not record.exists():
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir()
            record.write_text(json.dumps(build(folder)))
    return json.loads(record.read_text())


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory) -> str:
    """A tfds data_dir holding the prepared `pix2pix_shapes/64`."""
    from pix2pix_tf.data import pipeline

    def prepare(folder: pathlib.Path) -> str:
        pipeline.load_paired_dataset(cfg.DataConfig(dataset=TINY_DATASET, data_dir=str(folder)))
        return str(folder)

    return built_once(tmp_path_factory, "tfds", prepare)


@pytest.fixture(scope="session")
def export(tmp_path_factory, data_dir) -> dict:
    """The shared tiny run's exports (export_helpers.exported), built once per test run."""
    from export_helpers import exported  # It imports this module.

    return exported(tmp_path_factory, data_dir)


@pytest.fixture(scope="session")
def servers(export) -> Iterator[dict]:
    """Stand-ins for TensorFlow Serving's REST and gRPC front ends over the shared export's
    deterministic SavedModel (tests/serving_stand_ins.py). They are read-only (every request is
    answered by the same SavedModel, no state is kept between requests): one pair serves every test."""
    from serving_stand_ins import serving  # Loads TensorFlow Serving's API.

    with serving(export["deterministic"]) as addresses:
        yield addresses


@pytest.fixture(scope="session")
def misbehaving() -> Iterator[str]:
    """The address of a server that answers each model name wrongly in its own way
    (tests/serving_stand_ins.py)."""
    from serving_stand_ins import misbehaving_server

    with misbehaving_server() as address:
        yield address


@pytest.fixture(scope="session")
def run_of_six(tmp_path_factory, data_dir) -> pathlib.Path:
    """A tiny run (`tiny_config`, no held-out evaluation) with checkpoints at steps 2, 4 and 6,
    trained once per test run and shared: read it, or copy it (`copied_run`) to damage or resume it."""
    from pix2pix_tf.training.loop import train

    def trained(folder: pathlib.Path) -> str:
        train(tiny_config(folder, data_dir, optim=dict(steps=6), run=dict(save_every=2, eval_examples=0)))
        return str(folder)

    return pathlib.Path(built_once(tmp_path_factory, "run_of_six", trained))


def copied_run(run, destination):
    """A copy of a trained run, to change (its config.json still names the original workdir)."""
    import shutil

    shutil.copytree(run, destination)
    return destination


@contextlib.contextmanager
def op_determinism() -> Iterator[None]:
    """TensorFlow's op determinism, as train.py turns it on for --seed, for runs compared exactly.
    It is process-wide: turned off again afterwards (TensorFlow has no public switch for that), so
    every other test runs as it would alone."""
    import tensorflow as tf
    from tensorflow.python.framework import config as tf_config

    tf.config.experimental.enable_op_determinism()
    try:
        yield
    finally:
        tf_config.disable_op_determinism()


@pytest.fixture
def deterministic_ops():
    """`op_determinism` for the length of one test."""
    with op_determinism():
        yield


def error_lines(result: subprocess.CompletedProcess) -> list[str]:
    """The `error:` lines of a program that failed as a user's mistake should: exit 1, no traceback."""
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-3000:]
    return [line for line in result.stderr.splitlines() if line.startswith("error:")]


def tiny_config(workdir, data_dir: str, *, model: dict | None = None, data: dict | None = None,
                loss: dict | None = None, optim: dict | None = None, run: dict | None = None) -> cfg.TrainConfig:
    """unet_128 with 8 base filters on 128x128 crops: the real architecture, at test cost.

    On the default strategy, which sets up its data and step for less than train.py's default
    one-device MirroredStrategy and trains exactly the same
    (test_distributed.py::test_one_mirrored_replica_trains_exactly_what_the_default_strategy_trains)."""
    base = cfg.TrainConfig(
        model=cfg.ModelConfig(generator="unet_128", ngf=8, ndf=8),
        data=cfg.DataConfig(dataset=TINY_DATASET, data_dir=data_dir, load_size=143, crop_size=128),
        optim=cfg.OptimConfig(steps=4),
        run=cfg.RunConfig(workdir=str(workdir), seed=7, deterministic_ops=True, strategy="default", save_every=1000,
                          sample_every=1000, eval_examples=2, progress=False),
    )
    return dataclasses.replace(
        base,
        model=dataclasses.replace(base.model, **(model or {})),
        data=dataclasses.replace(base.data, **(data or {})),
        loss=dataclasses.replace(base.loss, **(loss or {})),
        optim=dataclasses.replace(base.optim, **(optim or {})),
        run=dataclasses.replace(base.run, **(run or {})),
    )
