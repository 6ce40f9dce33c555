"""One model source: a training run's checkpoint, an exported SavedModel, a TFLite or an ONNX file.

translate, evaluate and export all start from "the model the user named". `ModelSource.resolve`
takes exactly one of a workdir (with an optional checkpoint), a SavedModel, a .tflite file or
an .onnx file (`onnx_runner` reads and runs those), and reads what is recorded about it
once (the run's config.json, the export's metadata, the TFLite report; the ONNX file's own
metadata, with onnxruntime) without loading TensorFlow (an ONNX file: after its path is
checked), so that a wrong path is answered at once.
`source.open(mode)` then gives a `Translator` over any of them: float32
[1, S, S, C_in] in [-1, 1] in, [1, S, S, C_out] out, with the size, channels, direction and
the inference mode the model really runs in (an export fixed its batch-norm mode when it was
made; a TFLite file has no dropout). `inference.geometry.native_translator` turns a checkpoint's
or SavedModel's Translator into one that takes any size and returns the same size.

A workdir's generator is restored from its newest readable checkpoint: a truncated newest
one is skipped with a warning that names it, exactly as training resumes
(`training.checkpoints.restore_newest_readable`). A checkpoint named explicitly is used or
refused, never replaced by another.
"""

from __future__ import annotations

import dataclasses
import os
import re
from typing import TYPE_CHECKING, Any, Optional

from absl import logging

from pix2pix_tf.config import TrainConfig
from pix2pix_tf.errors import ConfigError
from pix2pix_tf.inference import artifacts, onnx_runner
from pix2pix_tf.inference.translator import Translator
from pix2pix_tf.workdir import Workdir

if TYPE_CHECKING:
    import keras

    from pix2pix_tf.inference.mode import InferenceMode

CHECKPOINT, SAVED_MODEL, TFLITE, ONNX = "checkpoint", "saved_model", "tflite", "onnx"


class ModelSource:
    """The model a command was given, and what is recorded about it (read once)."""

    def __init__(self, kind: str, path: str, *, checkpoint: Optional[str] = None,
                 train: Optional[TrainConfig] = None, metadata: Optional[dict[str, Any]] = None):
        self.kind = kind  # CHECKPOINT, SAVED_MODEL, TFLITE or ONNX.
        self.path = path  # The workdir, the SavedModel's version folder, or the .tflite or .onnx file.
        self.requested_checkpoint = checkpoint
        self.checkpoint: Optional[str] = None  # The checkpoint restored, once opened.
        self.train = train  # The run's config.json (checkpoint sources).
        self.metadata = metadata or {}  # The export's metadata, the TFLite report, the ONNX file's metadata.

    @classmethod
    def resolve(cls, *, workdir: Optional[str] = None, checkpoint: Optional[str] = None,
                saved_model: Optional[str] = None, tflite: Optional[str] = None,
                onnx: Optional[str] = None) -> ModelSource:
        """The source named by exactly one of workdir (+ checkpoint), saved_model (a version
        folder, or a model folder whose newest version is used), tflite and onnx."""
        given = [name for name, value in (("workdir", workdir), ("saved_model", saved_model), ("tflite", tflite),
                                          ("onnx", onnx)) if value]
        if len(given) != 1:
            raise ConfigError("Give exactly one of --workdir, --saved_model, --tflite, --onnx "
                              f"(got {given or 'none'}).")
        if checkpoint and not workdir:
            raise ConfigError("--checkpoint needs --workdir (the run whose config.json describes the model).")
        if workdir:
            return cls(CHECKPOINT, workdir, checkpoint=checkpoint, train=TrainConfig.load(workdir))
        if saved_model:
            path = artifacts.resolve_saved_model(saved_model)
            return cls(SAVED_MODEL, path, metadata=artifacts.read_metadata(path))
        if onnx:
            return cls._onnx(onnx)
        if not os.path.isfile(tflite):
            raise ConfigError(f"--tflite={tflite} is not a file.")
        return cls(TFLITE, tflite, metadata=artifacts.read_tflite_report(tflite))

    @classmethod
    def _onnx(cls, path: str) -> ModelSource:
        if not os.path.isfile(path):
            raise ConfigError(f"--onnx={path} is not a file.")
        return cls(ONNX, path, metadata=onnx_runner.read_metadata(path))

    @property
    def direction(self) -> Optional[str]:
        """The training run's direction, as recorded by the run or the export."""
        return self.train.data.direction if self.train else self.metadata.get("direction")

    @property
    def exported_mode(self) -> Optional[dict[str, bool]]:
        """The inference mode an export was made in ({"dropout", "batch_statistics"}); None
        for a checkpoint (any mode) or an export that does not record it."""
        return self.metadata.get("mode")

    @property
    def run_workdir(self) -> Optional[str]:
        """The training run of the model: the workdir, or the run an export was made from
        (its metadata names the checkpoint, which lives in the run's checkpoints folder)
        when that run still exists."""
        if self.kind == CHECKPOINT:
            return self.path
        checkpoint = self.metadata.get("checkpoint")
        if not isinstance(checkpoint, str):
            return None
        run = Workdir(os.path.dirname(os.path.dirname(checkpoint)))
        if run.checkpoints == os.path.dirname(checkpoint) and run.has_config():
            return run.root
        return None

    @property
    def label(self) -> str:
        """A short name for files and folders: ckpt-1000, savedmodel-3, tflite-pix2pix_float32."""
        if self.kind == CHECKPOINT:
            label = os.path.basename(self.checkpoint or self.requested_checkpoint or "checkpoint")
        elif self.kind == SAVED_MODEL:
            label = "savedmodel-" + os.path.basename(os.path.normpath(self.path))
        else:
            label = f"{self.kind}-" + os.path.splitext(os.path.basename(self.path))[0]
        return re.sub(r"[^A-Za-z0-9._-]+", "_", label)

    def open(self, mode: InferenceMode, *, seed: Optional[int] = None, image_size: Optional[int] = None,
             threads: int = 2) -> Translator:
        """The generator in `mode` (as far as the source allows: see `Translator.mode`).
        `seed` seeds a checkpoint's dropout noise; `image_size` overrides the size a
        checkpoint or a SavedModel runs at; `threads` is for the TFLite interpreter."""
        if self.kind != CHECKPOINT and self.exported_mode is not None:
            exported = bool(self.exported_mode.get("batch_statistics", True))
            if exported and not mode.batch_statistics:
                logging.warning("--nobatch_statistics applies to checkpoints; %s was exported with "
                                "batch_statistics=%s: using that.", self.path, exported)
        if self.kind == CHECKPOINT:
            return self._open_checkpoint(mode, seed, image_size)
        if self.kind == SAVED_MODEL:
            return self._open_saved_model(mode, image_size)
        if self.kind == ONNX:
            return onnx_runner.open_translator(self.path, self.metadata, self.direction,
                                              self._exported(mode, dropout=False), image_size, threads)
        return self._open_tflite(mode, image_size, threads)

    def _exported(self, mode: InferenceMode, dropout: bool) -> InferenceMode:
        """`mode` as an export runs it: its recorded batch-norm mode, dropout only if it has it."""
        recorded = self.exported_mode or {}
        return dataclasses.replace(mode, dropout=mode.dropout and dropout and bool(recorded.get("dropout", True)),
                                   batch_statistics=bool(recorded.get("batch_statistics", mode.batch_statistics)))

    def _open_checkpoint(self, mode: InferenceMode, seed: Optional[int], image_size: Optional[int]) -> Translator:
        import tensorflow as tf

        from pix2pix_tf.inference import generate
        from pix2pix_tf.networks.generator import size_multiple

        model = self.train.model
        size = image_size or self.train.data.crop_size
        multiple = size_multiple(model.generator)
        if size % multiple:
            raise ConfigError(f"--image_size={size}: {model.generator} needs multiples of {multiple}.")
        generator, _, self.checkpoint = load_generator(self.path, self.requested_checkpoint, self.train)

        @tf.function(reduce_retracing=True)
        def run(images: tf.Tensor, seed_pair: tf.Tensor) -> tf.Tensor:
            return generate.generate(generator, images, mode, seed_pair if seed is not None else None)

        def call(image, index: int):
            seed_pair = tf.constant([seed or 0, index], tf.int64)
            return run(tf.constant(image, tf.float32), seed_pair).numpy()

        return Translator(f"checkpoint {self.checkpoint} ({mode.describe()})", size, model.input_nc,
                          model.output_nc, self.direction, mode, call, size_multiple=multiple)

    def _open_saved_model(self, mode: InferenceMode, image_size: Optional[int]) -> Translator:
        import tensorflow as tf

        loaded = load_saved_model(self.path)
        name = artifacts.SIGNATURE_FLOAT_DETERMINISTIC if mode.deterministic else artifacts.SIGNATURE_FLOAT
        if name not in loaded.signatures:
            raise ConfigError(f"{self.path} has no '{name}' signature: was it written by export.py?")
        signature = loaded.signatures[name]
        input_nc = int(signature.structured_input_signature[1][artifacts.INPUT_NAME].shape[-1])
        output_nc = int(self.metadata.get("output_nc", signature.structured_outputs[artifacts.OUTPUT_FLOAT].shape[-1]))
        size = image_size or self.metadata.get("image_size")
        if not size:
            raise ConfigError(f"{self.path} does not record its image size: pass --image_size.")

        def call(image, index: int):
            return signature(images=tf.constant(image, tf.float32))[artifacts.OUTPUT_FLOAT].numpy()

        runs = self._exported(mode, dropout=True)
        noise = "no dropout" if runs.deterministic else "dropout on"
        multiple = self.metadata.get("size_multiple")
        return Translator(f"SavedModel {self.path} (signature {name}, {noise})", int(size), input_nc, output_nc,
                          self.direction, runs, call, size_multiple=int(multiple) if multiple else None)

    def _open_tflite(self, mode: InferenceMode, image_size: Optional[int], threads: int) -> Translator:
        from pix2pix_tf.inference.tflite_runner import TFLiteModel

        model = TFLiteModel(self.path, threads=threads)
        shape = model.input_shape
        if len(shape) != 4 or shape[0] != 1 or shape[1] != shape[2]:
            raise ConfigError(f"{self.path} takes input of shape {shape}; expected [1, S, S, C] from export.py.")
        if image_size and image_size != shape[1]:
            raise ConfigError(f"{self.path} is fixed to {shape[1]}x{shape[1]} images; --image_size={image_size} "
                              "cannot change it (export again with --image_size).")
        output_nc = int(model.interpreter.get_output_details()[0]["shape"][-1])
        return Translator(f"TFLite {self.path} ({model.io_dtype} I/O, no dropout)", shape[1], shape[3], output_nc,
                          self.direction, self._exported(mode, dropout=False), lambda image, index: model(image))


def load_saved_model(path: str) -> Any:
    """`tf.saved_model.load(path)`, or a ConfigError naming the file that is damaged (a
    truncated copy fails deep inside TensorFlow with errors such as `IndexError: Read less
    bytes than requested`, which name no file)."""
    import tensorflow as tf

    try:
        return tf.saved_model.load(path)
    except (OSError, ValueError, IndexError, tf.errors.OpError) as e:
        reason = (getattr(e, "message", None) or str(e) or type(e).__name__).strip().splitlines()[0]
        raise ConfigError(f"Cannot load the SavedModel {path}: {_damaged_file(path)} is damaged or incomplete "
                          f"({reason}). Copy or export it again.") from e


def _damaged_file(path: str) -> str:
    """The file of the SavedModel at `path` that does not read back whole: its graph, its
    variables' index, or the data file of a variable (checked one tensor at a time)."""
    import tensorflow as tf
    from google.protobuf.message import DecodeError
    from tensorflow.core.protobuf import saved_model_pb2

    graph = os.path.join(path, "saved_model.pb")
    try:
        with open(graph, "rb") as f:
            saved_model_pb2.SavedModel().ParseFromString(f.read())
    except (OSError, DecodeError):
        return graph
    prefix = os.path.join(path, "variables", "variables")
    try:
        reader = tf.train.load_checkpoint(prefix)
    except (ValueError, tf.errors.OpError):
        return prefix + ".index"
    for key in reader.get_variable_to_shape_map():
        try:
            reader.get_tensor(key)
        except (IndexError, ValueError, tf.errors.OpError):
            shards = sorted(tf.io.gfile.glob(prefix + ".data-*"))
            return " or ".join(shards)
    return path


# ----------------------------------------------------------------------------- checkpoints


def run_checkpoints(workdir: str) -> list[str]:
    """The complete checkpoints of a run, newest first, found as training finds them
    (`training.checkpoints.checkpoint_candidates`); a clear error if none."""
    from pix2pix_tf.training.checkpoints import checkpoint_candidates, checkpoint_files

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
    import tensorflow as tf

    from pix2pix_tf.networks.generator import build_generator
    from pix2pix_tf.training.checkpoints import (
        CheckpointError,
        UnreadableCheckpointError,
        restore_checkpoint,
        restore_newest_readable,
    )

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
