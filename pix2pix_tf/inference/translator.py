"""What every model source opens into: one preprocessed image in, the generator's output out.

`sources.ModelSource.open` gives a `Translator` over a checkpoint, a SavedModel, a TFLite or
an ONNX file alike; `geometry.native_translator` wraps one to take any size.

A file given as an export may be some other model (a classifier, a segmenter): every export
kind checks with `image_output_channels`, when it loads the file, that its output is an image
batch like its input, and with `checked_outputs`, at every output, what the file's shapes
left open, so that such a file is one message naming it, not a traceback deep in the image code.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, Callable, Optional, Sequence

import numpy as np

from pix2pix_tf.config import CHANNELS
from pix2pix_tf.errors import ConfigError

if TYPE_CHECKING:
    from pix2pix_tf.inference.mode import InferenceMode


@dataclasses.dataclass
class Translator:
    """A generator ready to translate one preprocessed image at a time."""

    description: str
    image_size: int
    input_nc: int
    output_nc: int
    direction: Optional[str]  # AtoB / BtoA of the training run, when known.
    mode: InferenceMode  # The mode the model runs in, which an export may have fixed.
    _fn: Callable[[Any, int], Any] = dataclasses.field(repr=False, default=None)
    size_multiple: Optional[int] = None  # Sides it takes are multiples of this; None: image_size only.
    native: bool = False  # Takes any size and returns the same size (`geometry.native_translator`).

    @property
    def deterministic(self) -> bool:
        return self.mode.deterministic

    def prepare(self, pixels: Any, channels: Optional[int] = None):
        """uint8 H x W x C pixels as this translator takes them: [-1, 1] with `channels` (default:
        its input's), at their own size when `native`, else resized to its square as the serving
        signatures resize."""
        import tensorflow as tf  # Here, not above: a TFLite or ONNX translator needs no TensorFlow.

        from pix2pix_tf import images  # Loads TensorFlow.

        channels = channels or self.input_nc
        if self.native:
            return images.to_signed(images.to_channels(tf.constant(pixels), channels))
        return images.preprocess(tf.constant(pixels), channels, self.image_size)

    def __call__(self, image, index: int = 0):
        """[1, S, S, C_in] float32 in [-1, 1] -> [1, S, S, C_out]; `index` seeds the noise
        where a seed was given (same index, same output)."""
        return self._fn(image, index)


def _known(shape: Sequence[Any]) -> list[Optional[int]]:
    """A shape's dimensions, None where the file leaves one open (None, -1, an ONNX symbol)."""
    return [int(d) if isinstance(d, (int, np.integer)) and d >= 0 else None for d in shape]


def _shown(shape: Sequence[Any]) -> str:
    """[1, 3]; an open dimension as its ONNX symbol, else '?'."""
    return "[" + ", ".join(d if isinstance(d, str) else str(k) if k is not None else "?"
                           for d, k in zip(shape, _known(shape))) + "]"


def not_a_generator(path: str, found: str) -> ConfigError:
    """The one refusal of a model file that is not an image-to-image generator: `found` says what it has."""
    return ConfigError(f"{path} is not an image-to-image generator: {found}. Give a model written by export.py "
                       "(or a training run's --workdir).")


def image_output_channels(path: str, input_shape: Sequence[Any], output_shape: Optional[Sequence[Any]],
                          recorded_nc: Optional[int] = None) -> int:
    """The channel count of a model whose output is an image batch like its input ([N, H, W, C]:
    N, H and W its input's where both are known, C one of CHANNELS, the export's recorded
    output_nc where it records one); else the ConfigError of `not_a_generator`. An
    `output_shape` of None: the file does not say its rank (checked at its first output where the
    export records output_nc, `checked_outputs`)."""
    if output_shape is None and recorded_nc:
        return recorded_nc
    given, out = _known(input_shape), _known(output_shape or ())
    channels = out[-1] if out else None
    fits = (len(out) == 4 and channels in ((recorded_nc,) if recorded_nc else CHANNELS)
            and all(a is None or b is None or a == b for a, b in zip(given[:3], out[:3])))
    if not fits:
        shown = _shown(output_shape) if output_shape is not None else "of no fixed shape"
        raise not_a_generator(path, f"its output is {shown}, not {_expected(given, recorded_nc)}")
    return channels


def _expected(input_shape: list[Optional[int]], output_nc: Optional[int]) -> str:
    """[N, H, W, C] with C the generator's channel count: the recorded one, else its input's."""
    channels = output_nc or (input_shape[3] if len(input_shape) == 4 and input_shape[3] in CHANNELS else None)
    return f"[N, H, W, {channels or 'C'}]"


def checked_outputs(path: str, output_nc: int, fn: Callable[[Any, int], Any]) -> Callable[[Any, int], Any]:
    """`fn`, each output checked to be the image batch its input was (N, H and W of the input,
    `output_nc` channels): what a file's shapes leave open is checked at its first output."""
    def call(image, index: int):
        output = fn(image, index)
        shape, given = np.shape(output), np.shape(image)
        if len(shape) != 4 or tuple(shape[:3]) != tuple(given[:3]) or shape[3] != output_nc:
            raise not_a_generator(path, f"given {_shown(given)}, its output is {_shown(shape)}, not "
                                        f"{_shown((*given[:3], output_nc))}")
        return output

    return call
