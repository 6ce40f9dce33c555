"""4x4 stride-2 transposed convolutions lowered to four 2x2 convolutions, for TFLite.

The U-Net's and the encoder-decoder's up-sampling layers are 4x4, stride-2 transposed
convolutions. TFLite's TRANSPOSE_CONV is a slow path in XNNPACK; the same layer written as
ordinary convolutions (one per output phase) computes the same numbers with the same FLOPs
and runs about twice as fast there (docs/performance.md). The stateless generator call
(`pix2pix_tf.inference.generate.generate(..., phase_transposed_convs=True)`) uses it while it
walks G's functional graph; the TFLite export is its only caller. It reads the layer's
configuration and weights directly, which is why it lives here, behind the speed seam, and is
tested against Keras' own layer (tests/test_performance.py).
"""

from __future__ import annotations

import keras
import tensorflow as tf

# Output phase (row or column parity) -> the kernel taps that reach it, for the 2x2 window
# starting at that phase's offset in the input padded by one pixel.
_PHASE_TAPS = {0: [3, 1], 1: [2, 0]}


def phase_decomposable(layer: keras.layers.Layer) -> bool:
    """Whether `phase_transposed_conv` computes `layer` exactly (a 4x4, stride-2, "same",
    undilated, channels-last transposed convolution)."""
    return (isinstance(layer, keras.layers.Conv2DTranspose) and tuple(layer.kernel_size) == (4, 4)
            and tuple(layer.strides) == (2, 2) and layer.padding == "same"
            and tuple(layer.dilation_rate) == (1, 1) and layer.data_format == "channels_last")


def phase_transposed_conv(layer: keras.layers.Conv2DTranspose, x: tf.Tensor) -> tf.Tensor:
    """A 4x4, stride-2, "same" transposed convolution as four stride-1 2x2 convolutions.

    Each output pixel of a given (row, column) parity is reached by the same 2x2 subset of
    the kernel's taps from a 2x2 window of the input: one ordinary convolution per parity,
    interleaved by depth_to_space. The FLOPs are the transposed convolution's; TFLite's
    XNNPACK runs it about twice as fast as its TRANSPOSE_CONV (docs/performance.md).
    """
    height, width = x.shape[1], x.shape[2]
    padded = tf.pad(x, [[0, 0], [1, 1], [1, 1], [0, 0]])
    kernel = tf.transpose(tf.convert_to_tensor(layer.kernel), [0, 1, 3, 2])  # [4, 4, in, out]
    phases = []
    for row in (0, 1):
        for col in (0, 1):
            taps = tf.gather(tf.gather(kernel, _PHASE_TAPS[row], axis=0), _PHASE_TAPS[col], axis=1)
            window = padded[:, row:row + height + 1, col:col + width + 1, :]
            phases.append(tf.nn.conv2d(window, taps, strides=1, padding="VALID"))
    output = tf.nn.depth_to_space(tf.concat(phases, axis=-1), 2)  # Channel blocks in (row, col) order.
    if layer.use_bias:
        output = tf.nn.bias_add(output, tf.convert_to_tensor(layer.bias))
    return layer.activation(output) if layer.activation is not None else output
