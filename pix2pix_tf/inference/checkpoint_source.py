"""A training run's checkpoint as a model source (`--workdir`, `--checkpoint`): the one place the
generator of a run is restored, for translate, evaluate, the demo and export alike.

A workdir's generator is restored from its newest readable checkpoint: a truncated newest
one is skipped with a warning that names it, exactly as training resumes
(`checkpoint_reading.restore_newest_readable`). A checkpoint named explicitly is used or
refused, never replaced by another. Only `resolve` runs when a source is named (it reads
config.json); TensorFlow is imported when the generator is built.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Optional

from pix2pix_tf.config import TrainConfig
from pix2pix_tf.errors import ConfigError
from pix2pix_tf.inference.source_kind import Recorded, SourceKind
from pix2pix_tf.inference.translator import Translator
from pix2pix_tf.workdir import Workdir, check_tensorflow_can_read

if TYPE_CHECKING:
    import keras

    from pix2pix_tf.inference.mode import InferenceMode
    from pix2pix_tf.inference.source_kind import ModelSource


def resolve(workdir: str) -> Recorded:
    """The run's config.json, read once: it describes the generator to rebuild."""
    check_tensorflow_can_read(workdir, "--workdir")
    return Recorded(workdir, train=TrainConfig.load(workdir))


def open_checkpoint(source: ModelSource, mode: InferenceMode, *, seed: Optional[int], image_size: Optional[int],
                    threads: int) -> Translator:
    """G in `mode` at `image_size` (default: the run's crop size), its dropout noise seeded by
    (seed, image index) when `seed` is given."""
    import tensorflow as tf  # Here, not above: naming a model (`resolve`) loads no TensorFlow.

    from pix2pix_tf.inference import generate  # Loads TensorFlow.

    model = source.train.model
    size = image_size or source.train.data.crop_size
    model.check_side("--image_size", size)
    multiple = model.size_multiple
    generator, _, source.checkpoint = load_generator(source.path, source.requested_checkpoint, source.train)

    # autograph=False: `generate` branches on settings, never on tensors; AutoGraph's rewrite of
    # it would only add to every program's start.
    @tf.function(reduce_retracing=True, autograph=False)
    def run(images: tf.Tensor, seed_pair: tf.Tensor) -> tf.Tensor:
        return generate.generate(generator, images, mode, seed_pair if seed is not None else None)

    def call(image, index: int):
        seed_pair = tf.constant([seed or 0, index], tf.int64)
        return run(tf.constant(image, tf.float32), seed_pair).numpy()

    return Translator(f"checkpoint {source.checkpoint} ({mode.describe(model.norm)})", size, model.input_nc,
                      model.output_nc, source.direction, mode, call, size_multiple=multiple)


def label(source: ModelSource) -> str:
    """The checkpoint's name: ckpt-1000."""
    return os.path.basename(source.checkpoint or source.requested_checkpoint or "checkpoint")


KIND = SourceKind(
    name="checkpoint", flag="workdir", resolve=resolve, open=open_checkpoint, label=label,
    noun="a training run's generator: the run's folder (config.json, and its newest readable checkpoint unless "
         "--checkpoint)",
    any_size=True, has_dropout=True, seeded=True)


def run_checkpoints(workdir: str) -> list[str]:
    """The complete checkpoints of a run, newest first, found as training finds them
    (`checkpoint_reading.checkpoint_candidates`); a clear error if none."""
    from pix2pix_tf.checkpoint_reading import checkpoint_candidates, checkpoint_files  # Loads TensorFlow.

    directory = Workdir(workdir).checkpoints
    paths = checkpoint_candidates(directory)
    if not paths:
        present = [os.path.basename(f) for f in checkpoint_files(directory)]
        if present:
            raise ConfigError(f"No complete checkpoint in {directory} (an index and every data shard): "
                              f"{', '.join(present)}.")
        raise ConfigError(f"No checkpoint in {directory}: train first (python train.py --workdir={workdir}).")
    return paths


def load_generator(workdir: str, checkpoint: Optional[str] = None,
                   config: Optional[TrainConfig] = None) -> tuple[keras.Model, TrainConfig, str]:
    """G of a training run, rebuilt from its config.json (`config` if already read) and
    restored from `checkpoint`, or else from the newest readable checkpoint of the run.

    Only the generator is read (the checkpoint also holds D and both optimizers); a
    checkpoint whose generator does not fit config.json is refused rather than half-loaded.
    Returns (G, the run's config, the checkpoint restored).
    """
    import tensorflow as tf  # Here, not above: naming a model (`resolve`) loads no TensorFlow.

    from pix2pix_tf.checkpoint_reading import (  # Loads TensorFlow.
        CheckpointError,
        UnreadableCheckpointError,
        restore_checkpoint,
        restore_newest_readable,
    )
    from pix2pix_tf.networks.generator import build_generator  # Loads TensorFlow.

    config = config or TrainConfig.load(workdir)
    generator = build_generator(config.model)
    restorable = tf.train.Checkpoint(generator=generator)
    model = (f"{Workdir(workdir).config_file} (generator {config.model.generator}, ngf {config.model.ngf}, "
             f"norm {config.model.norm})")
    if checkpoint:
        if not tf.io.gfile.exists(f"{checkpoint}.index"):
            raise ConfigError(f"Cannot restore the generator from {checkpoint}: no such checkpoint.")
        try:
            restore_checkpoint(restorable, checkpoint, model, partial=True)
        except UnreadableCheckpointError as e:
            raise ConfigError(f"Cannot restore the generator from {checkpoint}: {e} Give another --checkpoint, "
                              "or none for the newest readable one.") from e
        return generator, config, checkpoint
    candidates = run_checkpoints(workdir)
    path = restore_newest_readable(restorable, candidates, model, partial=True)
    if path is None:
        raise CheckpointError(f"No checkpoint of {workdir} is readable: {', '.join(candidates)}.")
    return generator, config, path
