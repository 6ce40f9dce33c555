"""One model source: a training run's checkpoint, an exported SavedModel, a TFLite or an ONNX file.

translate, evaluate, the demo and export all start from "the model the user named". Each
format a model can be given in is one `SourceKind` in its own module, and `KINDS` below lists
them, one line each: the programs' flags (`inference.request`) and `resolve` read it, so a
new format is its module, its line here, its tests and its docs.

`resolve(flag, path)` reads what is recorded about the model once (the run's
config.json, the export's metadata, the TFLite report, the ONNX file's own metadata) without
loading TensorFlow, so that a wrong path is answered at once. `source.open(mode)` then gives a
`Translator` over any of them: float32 [1, S, S, C_in] in [-1, 1] in, [1, S, S, C_out] out,
with the size, channels, direction and the inference mode the model really runs in (an export
fixed its batch-norm mode when it was made; a TFLite or ONNX file has no dropout).
`inference.geometry.native_translator` turns the Translator of a kind that takes any size
into one that takes any size and returns the same size.
"""

from __future__ import annotations

from typing import Optional

from pix2pix_tf.errors import ConfigError
from pix2pix_tf.inference import checkpoint_source, onnx_runner, saved_model_source, tflite_runner
from pix2pix_tf.inference.source_kind import ModelSource, SourceKind
from pix2pix_tf.workdir import check_tensorflow_can_read

__all__ = ["KINDS", "ModelSource", "kind_named", "resolve"]

KINDS: tuple[SourceKind, ...] = (
    checkpoint_source.KIND,
    saved_model_source.KIND,
    tflite_runner.KIND,
    onnx_runner.KIND,
)


def kind_named(flag: str) -> SourceKind:
    """The kind whose flag is `flag` (workdir, saved_model, tflite, onnx)."""
    for kind in KINDS:
        if kind.flag == flag:
            return kind
    raise ConfigError(f"No model source is named by --{flag}; the kinds are "
                      f"{', '.join('--' + k.flag for k in KINDS)}.")


def resolve(flag: str, path: str, *, checkpoint: Optional[str] = None) -> ModelSource:
    """The model `--<flag>=<path>` names (with `--checkpoint` for a workdir), its record read."""
    kind = kind_named(flag)
    if checkpoint:
        check_tensorflow_can_read(checkpoint, "--checkpoint")
    recorded = kind.resolve(path)
    return ModelSource(kind, recorded.path, checkpoint=checkpoint, train=recorded.train, metadata=recorded.metadata)
