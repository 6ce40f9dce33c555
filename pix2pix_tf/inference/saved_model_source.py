"""An exported SavedModel as a model source (`--saved_model`): a version folder, or a model
folder whose newest version is used.

`resolve` reads the export's metadata (`artifacts`, no TensorFlow); `open` loads the graph and
calls its float signature: `translate_float` (dropout as exported) or, deterministic,
`translate_float_deterministic`. A copy cut short fails deep inside TensorFlow with errors
that name no file; `load_saved_model` names the damaged one.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Optional

from pix2pix_tf import catalogue
from pix2pix_tf.errors import ConfigError
from pix2pix_tf.inference import artifacts
from pix2pix_tf.inference.source_kind import Recorded, SourceKind
from pix2pix_tf.inference.translator import Translator
from pix2pix_tf.workdir import check_tensorflow_can_read

if TYPE_CHECKING:
    from pix2pix_tf.inference.mode import InferenceMode
    from pix2pix_tf.inference.source_kind import ModelSource


def resolve(path: str) -> Recorded:
    """The version folder `path` names and the export's metadata."""
    check_tensorflow_can_read(path, "--saved_model")
    version = artifacts.resolve_saved_model(path)
    return Recorded(version, metadata=artifacts.read_metadata(version))


def open_saved_model(source: ModelSource, mode: InferenceMode, *, seed: Optional[int], image_size: Optional[int],
                     threads: int) -> Translator:
    """The float signature of `mode` at `image_size` (default: the size the export records)."""
    import tensorflow as tf  # Here, not above: naming a model (`resolve`) loads no TensorFlow.

    loaded = load_saved_model(source.path)
    name = artifacts.SIGNATURE_FLOAT_DETERMINISTIC if mode.deterministic else artifacts.SIGNATURE_FLOAT
    if name not in loaded.signatures:
        raise ConfigError(f"{source.path} has no '{name}' signature: was it written by export.py?")
    signature = loaded.signatures[name]
    input_nc = int(signature.structured_input_signature[1][artifacts.INPUT_NAME].shape[-1])
    output_nc = int(source.metadata.get("output_nc", signature.structured_outputs[artifacts.OUTPUT_FLOAT].shape[-1]))
    size = image_size or source.metadata.get("image_size")
    if not size:
        raise ConfigError(f"{source.path} does not record its image size: pass --image_size.")

    def call(image, index: int):
        return signature(images=tf.constant(image, tf.float32))[artifacts.OUTPUT_FLOAT].numpy()

    runs = source.runs_as(mode)
    noise = "no dropout" if runs.deterministic else "dropout on"
    multiple = source.metadata.get("size_multiple")
    if multiple:  # The export takes any size that is a multiple (translate_float's input is [-1, -1, -1, C]).
        catalogue.check_side("--image_size", size, multiple, source.path)
    return Translator(f"SavedModel {source.path} (signature {name}, {noise})", size, input_nc, output_nc,
                      source.direction, runs, call, size_multiple=multiple)


def label(source: ModelSource) -> str:
    """savedmodel-<version>."""
    return "savedmodel-" + os.path.basename(os.path.normpath(source.path))


KIND = SourceKind(
    name="saved_model", flag="saved_model", resolve=resolve, open=open_saved_model, label=label,
    noun="an exported SavedModel: a version folder, or the model folder (its newest version)",
    any_size=True, has_dropout=True)


def load_saved_model(path: str) -> Any:
    """`tf.saved_model.load(path)`, or a ConfigError naming the file that is damaged (a
    truncated copy fails deep inside TensorFlow with errors such as `IndexError: Read less
    bytes than requested`, which name no file)."""
    import tensorflow as tf  # Here, not above: naming a model (`resolve`) loads no TensorFlow.

    try:
        return tf.saved_model.load(path)
    except (OSError, ValueError, IndexError, tf.errors.OpError) as e:
        reason = (getattr(e, "message", None) or str(e) or type(e).__name__).strip().splitlines()[0]
        raise ConfigError(f"Cannot load the SavedModel {path}: {_damaged_file(path)} is damaged or incomplete "
                          f"({reason}). Copy or export it again.") from e


def _damaged_file(path: str) -> str:
    """The file of the SavedModel at `path` that does not read back whole: its graph, its
    variables' index, or the data file of a variable (checked one tensor at a time)."""
    import tensorflow as tf  # Here, not above: naming a model (`resolve`) loads no TensorFlow.
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
            folder = os.path.dirname(prefix)  # Listed, not globbed: the path is a name, never a pattern.
            shards = sorted(os.path.join(folder, name) for name in os.listdir(folder)
                            if name.startswith("variables.data-"))
            return " or ".join(shards)
    return path
