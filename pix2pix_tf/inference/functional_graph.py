"""Evaluating a Keras functional model layer by layer, each call decided by the caller.

The paper's test-time G (batch statistics, dropout from a given seed, no variable written)
cannot be had from a Keras call, and the TFLite lowering replaces single layers: both walk the
model's graph. The graph is read from `model.get_config()` (the `keras_history` of each
layer's inputs), a format Keras uses for `.keras` files but does not promise as an API, so
the walk lives here, in the one place that reaches into framework internals.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

import keras
import tensorflow as tf

from pix2pix_tf.errors import Pix2pixError


class UnsupportedModelError(Pix2pixError, ValueError):
    """A model the walk cannot evaluate (not functional, or not one input and one output)."""


def run_functional_graph(model: keras.Model, inputs: tf.Tensor,
               call: Callable[[keras.layers.Layer, list, dict], Any]) -> tf.Tensor:
    """Evaluates a Keras functional model layer by layer with `call` deciding each layer's call.

    The graph is read from `model.get_config()`, the stable format of `.keras` files: each
    layer lists the (layer, node, tensor) that feed it, in topological order.
    """
    config = model.get_config()
    input_ref, output_ref = (_single_reference(config.get(key)) for key in ("input_layers", "output_layers"))
    if input_ref is None or output_ref is None:
        raise UnsupportedModelError(f"{model.name}: expected a functional model with one input and one output.")
    computed: dict[tuple[str, int, int], Any] = {input_ref: inputs}

    def resolve(value: Any) -> Any:
        if isinstance(value, dict) and value.get("class_name") == "__keras_tensor__":
            return computed[tuple(value["config"]["keras_history"])]
        if isinstance(value, (list, tuple)):
            return [resolve(v) for v in value]
        if isinstance(value, dict):
            return {k: resolve(v) for k, v in value.items()}
        return value

    for entry in config["layers"]:
        if entry["class_name"] == "InputLayer":
            continue
        layer = model.get_layer(entry["name"])
        for node_index, node in enumerate(entry["inbound_nodes"]):
            args = resolve(node.get("args", []))
            kwargs = {k: v for k, v in resolve(node.get("kwargs", {})).items() if v is not None}
            outputs = call(layer, args, kwargs)
            for tensor_index, output in enumerate(tf.nest.flatten(outputs)):
                computed[(entry["name"], node_index, tensor_index)] = output
    return computed[output_ref]


def _single_reference(value: Any) -> Optional[tuple[str, int, int]]:
    """`["name", 0, 0]` or `[["name", 0, 0]]` (how a functional config names its one input or
    output) -> ("name", 0, 0); None for anything else."""
    if isinstance(value, list) and len(value) == 1 and isinstance(value[0], list):
        value = value[0]
    if isinstance(value, list) and len(value) == 3 and isinstance(value[0], str):
        return (value[0], int(value[1]), int(value[2]))
    return None
