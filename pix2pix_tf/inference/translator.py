"""What every model source opens into: one preprocessed image in, the generator's output out.

`sources.ModelSource.open` gives a `Translator` over a checkpoint, a SavedModel, a TFLite or
an ONNX file alike; `geometry.native_translator` wraps one to take any size.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, Callable, Optional

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
