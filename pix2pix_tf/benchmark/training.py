"""Training speed: the real step on the real pipeline, and what each speed lever changes.

Each measurement runs in a fresh process (`processes.in_fresh_process`), so one model's caches
never warm another's; the training rows, which report peak memory, in a spawned one.
"""

from __future__ import annotations

import dataclasses
import glob
import os
import resource
import statistics
import tempfile
import time
from typing import Any, Callable, Iterator

import keras
import tensorflow as tf

from pix2pix_tf.benchmark.machine import FlopCount, graph_flops, median_seconds, peak_rss_mib
from pix2pix_tf.benchmark.sidebyside import WARMUP_STEPS, Participant, SideBySide, interleave
from pix2pix_tf.benchmark.tutorial import TutorialPix2Pix
from pix2pix_tf.config import TrainConfig
from pix2pix_tf.data import pipeline
from pix2pix_tf.training.distribute import make_strategy
from pix2pix_tf.training.memory import reuse_freed_memory
from pix2pix_tf.training.step import Pix2Pix


@dataclasses.dataclass
class TrainingFigures:
    name: str  # "pix2pix_tf", or "tutorial" for the TensorFlow tutorial's step.
    batch_size: int
    reuse_memory: bool  # --reuse_memory (pix2pix_tf.training.memory) in the measuring process.
    step_seconds: float  # Median of the timed steps.
    step_seconds_min: float
    images_per_second: float
    step_gflops: float  # Counted from the traced step by TensorFlow's profiler.
    executed_gflops: float  # Of those, the ops that run (machine.graph_flops).
    achieved_gflops: float  # Executed GFLOP per second.
    pipeline_images_per_second: float
    peak_rss_mib: float
    minor_faults_per_step: float  # Pages the kernel had to map in (and zero) for each step.
    timed_steps: int
    warmup_steps: int  # Untimed steps before the timed ones (the first traces the step); 0: the first timed traces.


@dataclasses.dataclass
class LeverFigures:
    """One variant of the step, timed in turns with the others on the same batches."""

    name: str
    description: str
    step_seconds: float
    step_seconds_min: float
    max_loss_difference: float  # Largest |loss - plain path's loss| over the timed steps.


def _stream(config: TrainConfig) -> tuple[Callable[[], tf.data.Dataset], int]:
    dataset = pipeline.load_paired_dataset(config.data)

    def stream() -> tf.data.Dataset:
        return pipeline.train_stream(dataset, config.data, config.model.input_nc, config.model.output_nc, seed=0,
                                 multiple=config.model.size_multiple)
    return stream, dataset.num_train


def pipeline_images_per_second(iterator: Iterator, images: int, batch_size: int) -> float:
    """Images/second the input pipeline (an iterator over its own stream) delivers alone, once
    its prefetch buffers are full."""
    for _ in range(5):
        next(iterator)
    batches = max(1, images // batch_size)
    start = time.perf_counter()
    for _ in range(batches):
        next(iterator)
    return batches * batch_size / (time.perf_counter() - start)


def _pipeline_alone(stream: Callable[[], tf.data.Dataset], images: int,
                    batch_size: int) -> tuple[float, tuple[tf.Tensor, ...]]:
    """The pipeline's images/s alone, and one more of its batches (the FLOPs are traced on
    it, so no other pipeline opens for it); the pipeline is closed before the steps run."""
    alone = iter(stream())
    return pipeline_images_per_second(alone, images, batch_size), next(alone)


def wait_for_step(gan: Pix2Pix, iterator: Iterator) -> dict[str, float]:
    return {name: float(value) for name, value in gan.train_step(iterator).items()}  # float() waits.


def minor_faults() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def _time_steps(step: Callable[[], object], steps: int, warmup: int = WARMUP_STEPS) -> tuple[float, float, float]:
    """(median s, min s, minor page faults per step) of `steps` timed steps after `warmup`
    untimed steps (the first traces; with none, the first timed step does); the faults are
    counted over the timed steps themselves."""
    for _ in range(warmup):
        step()
    before = minor_faults()
    median, fastest = median_seconds(step, steps, warmup=0)
    return median, fastest, (minor_faults() - before) / steps


def training_setup(config: TrainConfig) -> tuple[Pix2Pix, Iterator, Callable[[], tf.data.Dataset]]:
    """The GAN of `config` and its distributed batches, in a process set up as train.py's."""
    if config.run.reuse_memory:
        reuse_freed_memory()  # Before TensorFlow's first op.
    keras.utils.set_random_seed(0)
    stream, num_train = _stream(config)
    strategy = make_strategy(config.run)
    gan = Pix2Pix(config, strategy, num_train / config.data.batch_size)
    return gan, iter(strategy.experimental_distribute_dataset(stream())), stream


def measure_training(config: TrainConfig, steps: int, pipeline_images: int,
                     warmup_steps: int = WARMUP_STEPS) -> TrainingFigures:
    """Times the training step of `config` fed by the real input pipeline."""
    gan, iterator, stream = training_setup(config)
    pipeline_rate, batch = _pipeline_alone(stream, pipeline_images, config.data.batch_size)
    median, fastest, faults = _time_steps(lambda: wait_for_step(gan, iterator), steps, warmup_steps)
    flops = step_flops(gan, batch)
    return _figures("pix2pix_tf", config, median, fastest, faults, flops, pipeline_rate, steps, warmup_steps)


def tutorial_config(config: TrainConfig) -> TrainConfig:
    """`config` at the tutorial's geometry (286 -> 256, batch 1, what its models are built for)
    in a process set up as the tutorial's: no strategy, the allocator's defaults."""
    return dataclasses.replace(config, data=dataclasses.replace(config.data, load_size=286, crop_size=256,
                                                                batch_size=1),
                               run=dataclasses.replace(config.run, reuse_memory=False))


def tutorial_setup(config: TrainConfig) -> tuple[Any, Callable[[], dict[str, float]], Callable[[], tf.data.Dataset]]:
    """The tutorial's models (`tutorial.py`), a step on `config`'s dataset through our pipeline
    that waits for its losses, and the pipeline's stream."""
    keras.utils.set_random_seed(0)
    stream, _ = _stream(config)
    tutorial = TutorialPix2Pix()
    batches = iter(stream())

    def step() -> dict[str, float]:
        return {name: float(value) for name, value in tutorial.train_step(*next(batches)).items()}
    return tutorial, step, stream


def measure_tutorial(config: TrainConfig, steps: int, pipeline_images: int,
                     warmup_steps: int = WARMUP_STEPS) -> TrainingFigures:
    """Times the TensorFlow tutorial's step on `config`'s dataset (`tutorial_config`)."""
    config = tutorial_config(config)
    tutorial, step, stream = tutorial_setup(config)
    pipeline_rate, batch = _pipeline_alone(stream, pipeline_images, config.data.batch_size)
    median, fastest, faults = _time_steps(step, steps, warmup_steps)
    flops = graph_flops(tutorial_step_graph(tutorial, batch))
    return _figures("tutorial", config, median, fastest, faults, flops, pipeline_rate, steps, warmup_steps)


def tutorial_step_graph(tutorial: Any, batch: tuple[tf.Tensor, ...]) -> tf.Graph:
    """The graph the tutorial's step ran: traced on eager batches, of fully known shape (its
    geometry is fixed), so the profiler counts every op and nothing is traced again."""
    graph = tutorial.train_step.get_concrete_function(*batch).graph
    if not all(tensor.shape.is_fully_defined() for tensor in graph.inputs if tensor.dtype == tf.float32):
        raise RuntimeError("The tutorial's step was traced on images of unknown shape: FLOPs would be missed.")
    return graph


def _figures(name: str, config: TrainConfig, median: float, fastest: float, faults: float, flops: FlopCount,
             pipeline: float, steps: int, warmup_steps: int) -> TrainingFigures:
    batch_size = config.data.batch_size
    return TrainingFigures(
        name=name, batch_size=batch_size, reuse_memory=config.run.reuse_memory,
        step_seconds=median, step_seconds_min=fastest, images_per_second=batch_size / median,
        step_gflops=flops.traced / 1e9, executed_gflops=flops.executed / 1e9,
        achieved_gflops=flops.executed / median / 1e9, pipeline_images_per_second=pipeline,
        peak_rss_mib=peak_rss_mib(), minor_faults_per_step=faults, timed_steps=steps, warmup_steps=warmup_steps)


def step_flops(gan: Pix2Pix, batch: tuple[tf.Tensor, ...]) -> FlopCount:
    """FLOPs of one training step, from the step traced (not run) on `batch`, of fully known
    shape: the pipeline leaves image sides unknown, and the profiler skips such ops."""
    static = tf.data.Dataset.from_tensors(batch).repeat()
    iterator = iter(gan.strategy.experimental_distribute_dataset(static))
    # A new trace (the step's own would be reused), without autograph as the step's own.
    fresh = tf.function(gan.train_step.python_function, autograph=False)
    return graph_flops(fresh.get_concrete_function(iterator).graph)


@dataclasses.dataclass
class StepProfile:
    """Where one step's time goes: op time per step by op type, ops run one at a time."""

    step_seconds: float  # Median wall time of the profiled steps (profiler on, inter-op 1).
    op_milliseconds: dict[str, float]  # Op type -> ms per step, largest first.

    def category_milliseconds(self) -> dict[str, float]:
        categories: dict[str, float] = {}
        for op_type, ms in self.op_milliseconds.items():
            category = ("convolutions" if "Conv2D" in op_type else "Adam update" if "Adam" in op_type
                        else "everything else")
            categories[category] = categories.get(category, 0.0) + ms
        return categories


def profile_step(config: TrainConfig, steps: int) -> StepProfile:
    """Traces `steps` training steps with TensorFlow's profiler, with one op at a time
    (inter-op parallelism 1, each op still multi-threaded) so that each op's duration is
    its own, and sums the op durations per op type."""
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    tf.config.threading.set_inter_op_parallelism_threads(1)
    gan, iterator, _ = training_setup(config)
    for _ in range(3):
        wait_for_step(gan, iterator)
    with tempfile.TemporaryDirectory(prefix="pix2pix-profile-") as logdir:
        tf.profiler.experimental.start(logdir)
        durations = []
        for _ in range(steps):
            start = time.perf_counter()
            wait_for_step(gan, iterator)
            durations.append(time.perf_counter() - start)
        tf.profiler.experimental.stop()
        space = xplane_pb2.XSpace()
        with open(glob.glob(os.path.join(glob.escape(logdir), "plugins", "profile", "*", "*.xplane.pb"))[0], "rb") as f:
            space.ParseFromString(f.read())
    per_type: dict[str, float] = {}
    for plane in space.planes:
        for line in plane.lines:
            if not line.name.startswith("tf_Compute"):  # The executor's threads: one event per op run.
                continue
            for event in line.events:
                name = plane.event_metadata[event.metadata_id].name
                if ":" in name and "::" not in name:  # "op name:op type", not the executor's own events
                    op_type = name.rsplit(":", 1)[1].removeprefix("_MklNative").removeprefix("_Mkl")
                    per_type[op_type] = per_type.get(op_type, 0.0) + event.duration_ps / 1e9 / steps
    ordered = dict(sorted(per_type.items(), key=lambda item: -item[1]))
    return StepProfile(step_seconds=statistics.median(durations), op_milliseconds=ordered)


LEVERS: dict[str, tuple[str, dict[str, Any]]] = {
    "plain": ("Keras Adam, no XLA (the unoptimised path)", dict(fused_adam=False, jit_compile=False)),
    "fused_adam": ("TensorFlow's fused Adam kernel (the default)", dict(fused_adam=True, jit_compile=False)),
    "xla": ("fused Adam + XLA jit_compile of the replica step", dict(fused_adam=True, jit_compile=True)),
}


def compare_levers(config: TrainConfig, steps: int, levers: tuple[str, ...],
                   warmup_steps: int = WARMUP_STEPS) -> list[LeverFigures]:
    """Times each lever's step in turns (one step of each per round, so load from other
    processes hits all alike) after `warmup_steps` untimed steps of each, all from the same
    initial weights and the same batches."""
    if config.run.reuse_memory:
        reuse_freed_memory()
    stream, num_train = _stream(config)
    strategy = make_strategy(config.run)
    runs = {}
    for name in levers:
        keras.utils.set_random_seed(0)  # Same initial weights and dropout masks for every variant.
        run = dataclasses.replace(config.run, **LEVERS[name][1])
        gan = Pix2Pix(dataclasses.replace(config, run=run), strategy, num_train / config.data.batch_size)
        runs[name] = (gan, iter(strategy.experimental_distribute_dataset(stream())))
    losses: dict[str, list[dict[str, float]]] = {name: [] for name in levers}
    durations: dict[str, list[float]] = {name: [] for name in levers}
    for name, (gan, iterator) in runs.items():
        for _ in range(warmup_steps):
            losses[name].append(wait_for_step(gan, iterator))
    for _ in range(steps):
        for name, (gan, iterator) in runs.items():
            start = time.perf_counter()
            losses[name].append(wait_for_step(gan, iterator))
            durations[name].append(time.perf_counter() - start)
    reference = losses[levers[0]]
    return [LeverFigures(name=name, description=LEVERS[name][0], step_seconds=statistics.median(durations[name]),
                         step_seconds_min=min(durations[name]),
                         max_loss_difference=max(abs(step[k] - ref[k]) for step, ref in zip(losses[name], reference)
                                                 for k in ref))
            for name in levers]


# ----------------------------------------------------------------------------- side by side


def our_step(config: TrainConfig) -> Callable[[], object]:
    """Our training step of `config` on its real input pipeline, in a process set up as train.py's."""
    gan, iterator, _ = training_setup(config)
    return lambda: wait_for_step(gan, iterator)


def tutorial_step(config: TrainConfig) -> Callable[[], object]:
    """The tutorial's step (`tutorial.py`) on `config`'s dataset through our pipeline."""
    return tutorial_setup(tutorial_config(config))[1]


def precision_label(precision: str) -> str:
    return "float32" if precision == "off" else precision


def tutorial_against_ours(config: TrainConfig, precisions: tuple[str, ...], rounds: int,
                          steps: int, warmup_steps: int = WARMUP_STEPS) -> SideBySide:
    """The tutorial's step (the baseline) and ours at batch 1 under each `--mixed_precision` value."""
    one = dataclasses.replace(config, data=dataclasses.replace(config.data, batch_size=1))
    participants = [Participant("tutorial", "TensorFlow tutorial (tutorial.py), float32", tutorial_step, (one,))]
    for precision in precisions:
        ours = dataclasses.replace(one, run=dataclasses.replace(one.run, mixed_precision=precision))
        participants.append(Participant(f"pix2pix_tf {precision_label(precision)}",
                                        f"our step, --mixed_precision={precision}", our_step, (ours,)))
    return interleave(participants, rounds, steps, warmup_steps)
