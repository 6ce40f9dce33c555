"""The training loop: workdir, resume, checkpoints, logging, samples and a clean stop.

`train(config)` is what `train.py` runs. Everything the run needs is in the workdir:

    workdir/config.json        every hyperparameter (export, evaluation and resume read it)
    workdir/checkpoints/       G, D, both optimizers, the step, the dropout generator state
    workdir/logs/train/        TensorBoard event files
    workdir/samples/           PNG grids of input | target | output on held-out examples
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import random
import signal
import time
from typing import Callable, ContextManager, Optional

import numpy as np
import tensorflow as tf
from absl import logging

from pix2pix_tf.checkpoint_reading import CheckpointError, checkpoint_files
from pix2pix_tf.config import TrainConfig
from pix2pix_tf.data import pipeline
from pix2pix_tf.data.checks import check_fits_preprocessing
from pix2pix_tf.errors import ConfigError, DatasetError, Interrupted, NonFiniteLossError, OutputLost, op_message
from pix2pix_tf.progress import Progress
from pix2pix_tf.training import precision, resume_rules, summaries
from pix2pix_tf.training.checkpoints import RunCheckpoints, workdir_lock
from pix2pix_tf.training.distribute import is_chief, make_strategy, worker_index
from pix2pix_tf.training.resume_rules import check_resumable, resume_differences, schedule_change
from pix2pix_tf.training.step import Pix2Pix
from pix2pix_tf.training.stopping import preemption_aware, stop_requests
from pix2pix_tf.workdir import Workdir, new_folders_removed_if_refused

SAMPLE_ROWS = 4


@dataclasses.dataclass
class TrainResult:
    """What a finished (or stopped) run reports."""

    step: int
    total_steps: int
    losses: dict[str, float]
    held_out_l1_start: Optional[float]
    held_out_l1_end: Optional[float]
    checkpoint: Optional[str]
    stopped_early: bool = False
    stopped_by: Optional[str] = None  # The signal that stopped it early (SIGINT, SIGTERM, SIGHUP, SIGPIPE).
    output_lost: Optional[OSError] = None  # Why the progress could not be written, where that stopped it.

    def held_out_change(self) -> str:
        """The held-out L1 at the start and at the end, as reported to the user."""
        if self.held_out_l1_start is None:
            return "no held-out L1 (--eval_examples=0)"
        return f"held-out L1 {self.held_out_l1_start:.4f} -> {self.held_out_l1_end:.4f}"

    def summary(self) -> str:
        """A finished run in one line: where it stands, its checkpoint, what the held-out L1 did."""
        # A cluster's other workers save nothing of their own: the chief keeps the checkpoints.
        checkpoint = self.checkpoint or "kept by the chief worker"
        if self.step > self.total_steps:  # A complete run asked for fewer steps than it has.
            return (f"nothing to train, the run is at step {self.step}, past its {self.total_steps} steps; "
                    f"checkpoint {checkpoint}, {self.held_out_change()}")
        return f"step {self.step}/{self.total_steps}, checkpoint {checkpoint}, {self.held_out_change()}"

    def stop(self) -> Optional[Interrupted]:
        """A run stopped early as the stop to raise (the program exits as the signal asked),
        naming its checkpoint; None for a run that finished."""
        if not self.stopped_early:
            return None
        stop = OutputLost(self.output_lost) if self.output_lost else Interrupted(signal.Signals[self.stopped_by])
        stop.done.append(f"step {self.step}/{self.total_steps} checkpointed ({self.checkpoint}); run the same "
                         "command to resume")
        return stop


def total_steps(config: TrainConfig, num_train: int) -> int:
    """--steps if given, else (epochs + epochs_decay) epochs of the train split."""
    if config.optim.steps is not None:
        return config.optim.steps
    epochs = config.optim.epochs + config.optim.epochs_decay
    return math.ceil(epochs * num_train / config.data.batch_size)


def resolve_config(config: TrainConfig) -> TrainConfig:
    """Fills in the seed (the stored one when resuming) and the direction (`DataConfig.resolved`),
    and checks that a run already in the workdir is the same run."""
    stored = None
    if Workdir(config.run.workdir).has_config():
        stored = TrainConfig.load(config.run.workdir)
        # A run recorded with a relative folder read it from the directory it was resumed in.
        stored = dataclasses.replace(stored, data=stored.data.with_absolute_paths())
    seed = config.run.seed
    if seed is None and stored is not None:  # The run's own (null in a config.json edited by hand: refused below).
        seed = stored.run.seed
    if seed is None:
        seed = random.SystemRandom().randrange(2**31)
    config = dataclasses.replace(config, run=dataclasses.replace(config.run, seed=seed),
                                 data=config.data.resolved().with_absolute_paths())
    if unused := config.model.unused_depth():
        logging.warning(unused)
    if stored is not None and _has_checkpoint(config):
        check_resumable(stored, config)
        if change := schedule_change(stored, config):
            logging.warning(change)
    elif stored is not None and (differences := resume_differences(stored, config)):
        _start_over(config.run.workdir, differences)
    elif stored is None and _has_checkpoint(config):
        logging.warning(resume_rules.unrecorded_settings(config.run.workdir))
    return config


def _start_over(workdir: str, differences: list[str]) -> None:
    """A run of another configuration in a workdir whose config.json has no checkpoint beside
    it (a run stopped before its first save, or its checkpoints deleted) starts from step 0,
    unless the earlier run's logs or samples are there: this run would write over them."""
    run = Workdir(workdir)
    earlier = [f"{os.path.basename(folder)}/" for folder in (os.path.dirname(run.train_logs), run.samples)
               if os.path.isdir(folder) and os.listdir(folder)]
    if earlier:
        raise ConfigError(f"{workdir} holds a run of another configuration ({'; '.join(differences)}) and its "
                          f"{' and '.join(earlier)}, but no checkpoint: this run would write over them. Move them "
                          "and config.json away to start a new run here, or use another --workdir.")
    logging.warning("%s holds the config.json of a run of another configuration (%s), with no checkpoint, logs or "
                    "samples: this run starts from step 0 and config.json records it.", workdir,
                    "; ".join(differences))


def _has_checkpoint(config: TrainConfig) -> bool:
    """Any checkpoint file, complete or not, whatever the `checkpoint` index says."""
    return bool(checkpoint_files(Workdir(config.run.workdir).checkpoints))


class HeldOutMonitor:
    """L1 on held-out pairs and sample grids, computed as the paper tests (batch 1)."""

    def __init__(self, gan: Pix2Pix, pairs: list[tuple[np.ndarray, np.ndarray]], workdir: str,
                 writer: Optional[summaries.Writer]):
        """`writer` None: compute only (a non-chief worker still takes part in the collectives)."""
        self.gan = gan
        self.pairs = pairs
        self.workdir = workdir
        self.writer = writer

    def __call__(self, step: int, record: bool = True) -> Optional[float]:
        """The held-out L1 at `step`; `record`: also logged, and its sample grid written (not
        for the step a run resumes at, which its earlier process recorded)."""
        if not self.pairs:
            return None
        outputs = [self.gan.generate(tf.constant(a[None]))[0].numpy() for a, _ in self.pairs]
        l1 = float(np.mean([np.abs(out - b).mean() for out, (_, b) in zip(outputs, self.pairs)]))
        if self.writer is None or not record:
            return l1
        rows = [(a, b, out) for (a, b), out in zip(self.pairs[:SAMPLE_ROWS], outputs)]
        self.writer.scalars(step, {"eval/held_out_l1": l1})
        self.writer.image(step, "samples/input_target_output", summaries.grid_image(rows))
        path = Workdir(self.workdir).sample_grid(step)
        try:
            summaries.save_grid_png(path, rows, f"step {step}: held-out L1 {l1:.4f}")
        except OSError as e:
            raise summaries.SummaryError(f"Writing the sample grid {path} failed: {e.strerror or e}.") from e
        return l1


def train(config: TrainConfig,
          formation: Callable[[], ContextManager[object]] = contextlib.nullcontext) -> TrainResult:
    """Trains (or resumes) the run described by `config`; see the module docstring.

    Process-wide settings are the program's: `config.run.deterministic_ops` records that it
    turned on TensorFlow's op determinism (train.py does for --seed). The weights and every
    random draw follow `config.run.seed` without touching the global seeds. `formation()`
    wraps the creation of the strategy, where a multi-worker process waits for its peers
    (train.py times it out and honours SIGTERM there: pix2pix_tf.training.cluster).
    """
    config.validate()
    with new_folders_removed_if_refused(config.run.workdir):
        # A workdir that is a file, read-only or on a full disk is refused before any work.
        Workdir(config.run.workdir).check_usable()
        config = resolve_config(config)
        # Before the dataset: a multi-worker strategy sets up TensorFlow's collective ops, which
        # it takes only before its first op, and a folder's scan or a dataset's preparation runs ops.
        with formation():
            strategy = make_strategy(config.run)
        dataset = pipeline.load_paired_dataset(config.data)
        check_fits_preprocessing(dataset, config.data, config.model)
        logging.info("Training on %d replica(s) with %s.", strategy.num_replicas_in_sync, type(strategy).__name__)
        if config.data.batch_size % strategy.num_replicas_in_sync:
            raise ConfigError(f"--batch_size={config.data.batch_size} (the global batch) must be a multiple of the "
                              f"{strategy.num_replicas_in_sync} replicas.")
        # A precision this machine cannot train in is refused before the lock, like every refusal above.
        hardware = precision.Hardware.detect(strategy)
        precision.choose(config.run.mixed_precision, hardware)
    chief = is_chief(strategy)
    with workdir_lock(config.run.workdir) if chief else contextlib.nullcontext():
        return _train(config, dataset, strategy, hardware, chief)


def _distributed_stream(strategy: tf.distribute.Strategy, dataset: pipeline.PairedDataset, config: TrainConfig,
                        start: int, multiple: int):
    """Each input pipeline (one per worker) reads only its slice of every global batch."""
    def stream(context: tf.distribute.InputContext) -> tf.data.Dataset:
        return pipeline.train_stream(
            dataset, config.data, config.model.input_nc, config.model.output_nc, config.run.seed,
            start_example=start * config.data.batch_size, multiple=multiple,
            shard=(context.input_pipeline_id, context.num_input_pipelines),
            replica_batch_size=context.get_per_replica_batch_size(config.data.batch_size))

    return iter(strategy.distribute_datasets_from_function(stream))


def _train(config: TrainConfig, dataset: pipeline.PairedDataset, strategy: tf.distribute.Strategy,
           hardware: precision.Hardware, chief: bool) -> TrainResult:
    workdir = config.run.workdir
    gan = Pix2Pix(config, strategy, dataset.num_train / config.data.batch_size, hardware)
    config = gan.config  # --mixed_precision=auto resolved to the precision this run trains in.
    checkpoints = RunCheckpoints(tf.train.Checkpoint(**gan.checkpointables()), workdir,
                                 config.run.keep_checkpoints, gan.step, chief, worker_index(strategy),
                                 coordinated=isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy))
    if chief:  # Under the workdir lock: no live process is saving here.
        checkpoints.remove_unfinished_saves()
    restored = checkpoints.restore_latest(resume_rules.restored_model(workdir))  # Before config.save below.
    if restored:
        logging.info("Resumed from %s at step %d.", restored, gan.current_step())
    if chief:
        config.save(workdir)

    start, end = gan.current_step(), total_steps(config, dataset.num_train)
    writer = summaries.Writer(Workdir(workdir).train_logs) if chief else None
    multiple = config.model.size_multiple
    held_out = []  # --eval_examples=0: no held-out pairs to read.
    if config.run.eval_examples:
        held_out = pipeline.first_held_out_pairs(dataset, config.data, config.model.input_nc, config.model.output_nc,
                                                 config.run.eval_examples, multiple)
    monitor = HeldOutMonitor(gan, held_out, workdir, writer)
    result = TrainResult(start, end, {}, monitor(start, record=not restored), None, None)
    if start >= end:
        logging.info("The run in %s is complete (step %d of %d).", workdir, start, end)
        result.held_out_l1_end, result.checkpoint = result.held_out_l1_start, checkpoints.latest
        return result

    iterator = _distributed_stream(strategy, dataset, config, start, multiple)
    try:
        _run_steps(config, gan, iterator, checkpoints, monitor, result)
        _save_last_step(checkpoints, result, isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy))
        result.held_out_l1_end = monitor(result.step)
        if writer:
            writer.flush()
    except summaries.SummaryError as e:
        raise _saved_after(e, checkpoints, result.step, "Free some disk space") from e
    except DatasetError as e:
        if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
            raise  # A save there waits for every worker, and the others' steps failed with this one's.
        raise _saved_after(e, checkpoints, result.step, "Repair or replace the dataset's files") from e
    logging.info("Step %d/%d, checkpoint %s, %s.", result.step, end, result.checkpoint, result.held_out_change())
    return result


def _run_steps(config: TrainConfig, gan: Pix2Pix, iterator, checkpoints: RunCheckpoints, monitor: HeldOutMonitor,
               result: TrainResult) -> None:
    """Steps `result.step + 1 .. result.total_steps`, logging, sampling and checkpointing on the
    way; stops early (`result.stopped_early`) after the step during which a stop was requested."""
    start, end, writer = result.step, result.total_steps, monitor.writer
    multi_worker = isinstance(gan.strategy, tf.distribute.MultiWorkerMirroredStrategy)
    train_step = preemption_aware(gan, checkpoints)
    progress = Progress(end - start, "step", config.run.progress and writer is not None)
    interval_start, interval_steps = time.perf_counter(), 0
    with stop_requests(preemption=multi_worker) as stop:
        for step in range(start + 1, end + 1):
            try:
                losses = {name: float(value) for name, value in train_step(iterator).items()}
            except tf.errors.InvalidArgumentError as e:
                reason = op_message(e).rstrip(".")
                raise DatasetError(f"Step {step}: a batch could not be prepared or trained on: {reason}.") from e
            _check_finite(step, losses, checkpoints)
            result.step, result.losses = step, losses
            interval_steps += 1
            if writer and (step % config.run.log_every == 0 or step == end):
                rate = interval_steps * config.data.batch_size / (time.perf_counter() - interval_start)
                writer.scalars(step, {**{f"loss/{k}": v for k, v in losses.items()},
                                      "learning_rate": gan.learning_rate(), "images_per_second": rate})
                interval_start, interval_steps = time.perf_counter(), 0
            if step % config.run.sample_every == 0 and step != end:
                monitor(step)
            if step % config.run.save_every == 0 and step != end:
                if writer:
                    writer.flush()  # The logs up to a checkpoint are on disk with it.
                checkpoints.save(step)
            progress.update(step - start, [(k, v) for k, v in losses.items() if k != "d_total"])
            # Stopped as a program that writes to a closed pipe is; a cluster's chief goes on
            # without its progress (its peers would wait for it in the next step's collectives).
            if progress.output_lost and not stop and not multi_worker:
                stop.append(signal.SIGPIPE.name)
                result.output_lost = progress.output_lost
            if stop:
                lost = result.output_lost
                why = f"Writing the progress failed ({lost})" if lost else f"{stop[0]} received"
                logging.warning("%s: checkpointing step %d and stopping.", why, step)
                result.stopped_early, result.stopped_by = True, stop[0]
                return


def _save_last_step(checkpoints: RunCheckpoints, result: TrainResult, multi_worker: bool) -> None:
    """The last step's checkpoint. A first stop signal during it waits for it, as during any
    periodic save, and the run ends as stopped with that step checkpointed; once a stop was
    requested, a second one interrupts at once (`stop_requests`)."""
    if result.stopped_early:
        result.checkpoint = checkpoints.save(result.step)
        return
    with stop_requests(preemption=multi_worker) as stop:
        result.checkpoint = checkpoints.save(result.step)
    if stop:
        logging.warning("%s received while step %d was checkpointed: stopping.", stop[0], result.step)
        result.stopped_early, result.stopped_by = True, stop[0]


def _check_finite(step: int, losses: dict[str, float], checkpoints: RunCheckpoints) -> None:
    bad = {k: v for k, v in losses.items() if not math.isfinite(v)}
    if bad:
        raise NonFiniteLossError(
            f"Step {step}: non-finite loss ({', '.join(f'{k}={v}' for k, v in bad.items())}). "
            f"Training stopped; the last good checkpoint is kept: {checkpoints.latest or 'none yet'}."
        )


def _saved_after(error: Exception, checkpoints: RunCheckpoints, step: int, remedy: str) -> Exception:
    """The logs or samples could not be written (a full disk, say), or a batch could not be read
    (its files damaged while the run trained): the last completed step is saved if it can be,
    so that nothing trained since the last periodic save is lost, and the error (of the same
    kind: a DatasetError stays one) says what is kept and, in `remedy`, what to do first."""
    kind = DatasetError if isinstance(error, DatasetError) else CheckpointError
    try:
        path = checkpoints.save(step)
    except CheckpointError as e:
        return kind(f"{error} {e}")
    return kind(f"{error} Training stopped; the checkpoint of step {step} is on disk: "
                f"{path or checkpoints.latest}. {remedy} and re-run the command to resume.")


