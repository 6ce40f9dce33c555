"""An exported SavedModel as a model source (`--saved_model`): a version folder, or a model
folder whose newest version is used.

`resolve` reads the export's metadata (`artifacts`, no TensorFlow); `open` loads the graph and
calls its float signature: `translate_float` (dropout as exported) or, deterministic,
`translate_float_deterministic`. A copy cut short fails deep inside TensorFlow with errors
that name no file; `load_saved_model` names the damaged one.
"""

from __future__ import annotations

import glob
import os
from typing import TYPE_CHECKING, Any, Optional

from pix2pix_tf import catalogue
from pix2pix_tf.config import CHANNELS
from pix2pix_tf.errors import ConfigError
from pix2pix_tf.inference import artifacts
from pix2pix_tf.inference.source_kind import Recorded, SourceKind, export_size
from pix2pix_tf.inference.translator import Translator, checked_outputs, image_output_channels, not_a_generator
from pix2pix_tf.regular_files import irregular
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
    input_nc, output_nc = _image_channels(source, name, signature)
    size = export_size(source, image_size)

    def call(image, index: int):
        return signature(images=tf.constant(image, tf.float32))[artifacts.OUTPUT_FLOAT].numpy()

    runs = source.runs_as(mode)
    noise = "no dropout" if runs.deterministic else "dropout on"
    multiple = source.metadata.get("size_multiple")
    if multiple:  # The export takes any size that is a multiple (translate_float's input is [-1, -1, -1, C]).
        catalogue.check_side("--image_size", size, multiple, source.path)
    return Translator(f"SavedModel {source.path} (signature {name}, {noise})", size, input_nc, output_nc,
                      source.direction, runs, checked_outputs(source.path, output_nc, call), size_multiple=multiple)


def _image_channels(source: ModelSource, name: str, signature: Any) -> tuple[int, int]:
    """(input, output) channels of the float signature `name`: one image batch in, one like it
    out, under export.py's names; any other model is refused naming the SavedModel."""
    inputs, outputs = signature.structured_input_signature[1], signature.structured_outputs
    given = inputs.get(artifacts.INPUT_NAME)
    if given is None or given.shape.rank != 4 or given.shape[-1] not in CHANNELS:
        found = {key: spec.shape.as_list() if spec.shape.rank is not None else "?" for key, spec in inputs.items()}
        raise not_a_generator(source.path, f"its '{name}' signature takes {found}, not '{artifacts.INPUT_NAME}': "
                                           "[N, H, W, C]")
    if not isinstance(outputs, dict) or artifacts.OUTPUT_FLOAT not in outputs:
        keys = sorted(outputs) if isinstance(outputs, dict) else type(outputs).__name__
        raise not_a_generator(source.path, f"its '{name}' signature gives {keys}, not '{artifacts.OUTPUT_FLOAT}'")
    output = outputs[artifacts.OUTPUT_FLOAT].shape
    return int(given.shape[-1]), image_output_channels(source.path, given.shape.as_list(), output.as_list() if
                                                       output.rank is not None else None,
                                                       source.metadata.get("output_nc"))


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

    for file in [os.path.join(path, "saved_model.pb"), *glob.glob(os.path.join(glob.escape(path), "variables", "*"))]:
        kind = irregular(file)  # TensorFlow's reader would wait forever on a FIFO.
        if kind:
            raise ConfigError(f"Cannot load the SavedModel {path}: {file} is {kind}, not a regular file.")
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
