"""The demo in front of a running TensorFlow Serving: a `Translator` over its REST API.

The page prepares each image itself (the image policy and `images.preprocess`, as for every
other source) and sends the float batch to the export's float signatures: `translate_float`
(the export's mode: dropout on unless it was exported --deterministic) for paper mode,
`translate_float_deterministic` otherwise. Serving's REST API does not carry the export's
metadata, so the size and channels are asked of the model itself once, when the demo starts:
its encoded-image signature answers with the size it translates at and its output channels,
and a float request of that size tells RGB from grey input. A server that does not answer
stops the demo at start with the client's message, not at the first drawing.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import tensorflow as tf

from pix2pix_tf.errors import ConfigError
from pix2pix_tf.inference.artifacts import OUTPUT_FLOAT, SIGNATURE_BYTES, SIGNATURE_FLOAT, SIGNATURE_FLOAT_DETERMINISTIC
from pix2pix_tf.inference.mode import InferenceMode
from pix2pix_tf.inference.translator import Translator
from pix2pix_tf.serving import client


def _probe(rest: client.RestClient) -> tuple[int, int, int]:
    """(image size, input channels, output channels) of the served model."""
    grey = tf.io.encode_png(np.full((8, 8, 3), 128, np.uint8)).numpy()
    try:
        answer = rest.predict(client.rest_bytes_request([grey], SIGNATURE_BYTES))
    except client.ServingRequestError as e:
        raise ConfigError(f"TensorFlow Serving does not answer as a pix2pix export: {e}") from e
    shape = np.shape(answer.get(OUTPUT_FLOAT))
    if len(shape) != 4 or shape[1] != shape[2]:
        raise ConfigError(f"{rest.url}: '{SIGNATURE_BYTES}' gave no square '{OUTPUT_FLOAT}' output (shape {shape}): "
                          "was the model written by export.py?")
    size, output_nc = int(shape[1]), int(shape[3])
    errors = []
    for input_nc in (3, 1):
        try:
            rest.translate_float(np.zeros((1, size, size, input_nc), np.float32), deterministic=True)
            return size, input_nc, output_nc
        except client.ServingRequestError as e:
            errors.append(str(e))
    raise ConfigError(f"{rest.url}: the float signatures take neither RGB nor grey {size}x{size} images: {errors[0]}")


def opener(url: str, model_name: str) -> Callable[[InferenceMode], Translator]:
    """Opens Translators over the model `model_name` served at `url` (Serving's REST port)."""
    rest = client.RestClient(url, model_name)
    size, input_nc, output_nc = _probe(rest)

    def open_mode(mode: InferenceMode) -> Translator:
        signature = SIGNATURE_FLOAT_DETERMINISTIC if mode.deterministic else f"{SIGNATURE_FLOAT}, the export's mode"

        def call(image, index: int):
            return rest.translate_float(np.asarray(image, np.float32), deterministic=mode.deterministic)

        return Translator(f"TensorFlow Serving {rest.url} ({signature})", size, input_nc, output_nc, None, mode, call)

    return open_mode
