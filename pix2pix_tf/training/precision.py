"""Mixed precision (Micikevicius et al., 2018): float16 or bfloat16 arithmetic, float32 state.

Under a mixed policy the layers compute in the low precision, but every variable (weights,
batch-norm statistics, Adam's moments) stays float32, batch norm normalises in float32
(`networks.layers.TorchBatchNormalization`), and each model's output layers compute in
float32, so the losses are float32. Checkpoints therefore hold the same float32 variables
under the same names whatever the precision: a run can resume under another one, and
export, which rebuilds the generator, is float32 always.

float16's narrow exponent range underflows small gradients, so it trains with dynamic
loss scaling (Keras' `LossScaleOptimizer`: the loss is multiplied before the gradient,
the gradient divided after, and a step whose gradient overflows is skipped and the scale
halved). bfloat16 has float32's exponent range and needs none.

The policy is set on the models this module is given, never globally: a library that
changed Keras' global dtype policy would change every model its caller builds afterwards.
"""

from __future__ import annotations

from typing import Optional

import keras
import tensorflow as tf
from absl import logging

from pix2pix_tf.config import MIXED_PRECISION
from pix2pix_tf.errors import ConfigError


def resolve_policy(requested: str, strategy: tf.distribute.Strategy) -> Optional[str]:
    """The Keras policy of `requested` on the devices of `strategy`; None for float32.

    auto: float16 on GPUs (their tensor cores' fast type), bfloat16 on TPUs and CPUs (oneDNN's
    AVX512-BF16 and AMX kernels; TPUs compute in it natively).
    """
    if requested not in MIXED_PRECISION:
        raise ConfigError(f"--mixed_precision={requested!r} is not one of {', '.join(MIXED_PRECISION)}.")
    if requested == "off":
        return None
    if requested == "mixed_float16" and isinstance(strategy, tf.distribute.TPUStrategy):
        raise ConfigError("--mixed_precision=mixed_float16 is not supported on TPUs; use mixed_bfloat16 or auto.")
    if requested == "auto":
        on_gpu = bool(tf.config.list_logical_devices("GPU")) and not isinstance(strategy, tf.distribute.TPUStrategy)
        requested = "mixed_float16" if on_gpu else "mixed_bfloat16"
    if requested == "mixed_bfloat16" and not tf.config.list_logical_devices("GPU"):
        _warn_if_cpu_lacks_bfloat16()
    return requested


def apply_policy(model: keras.Model, policy: Optional[str]) -> keras.Model:
    """Sets `policy` on every layer of `model` except those producing its outputs, which
    stay float32 (Keras' advice: a float16 softmax or logit loses the loss's precision).
    The variables, created float32 when the model was built, are unchanged."""
    if policy is None:
        return model
    outputs = {id(tensor._keras_history.operation) for tensor in model.outputs}
    for layer in model.layers:
        if id(layer) not in outputs and not isinstance(layer, keras.layers.InputLayer):
            layer.dtype_policy = keras.DTypePolicy(policy)
    return model


def scaled_optimizer(optimizer: keras.optimizers.Optimizer, policy: Optional[str]) -> keras.optimizers.Optimizer:
    """`optimizer` itself, or under float16 wrapped in dynamic loss scaling. Either way the
    training step calls `scale_loss` on its loss and `apply_gradients` on the gradients."""
    if policy != "mixed_float16":
        return optimizer
    return keras.optimizers.LossScaleOptimizer(optimizer, name=f"{optimizer.name}_loss_scale")


def unscaled(optimizer: keras.optimizers.Optimizer) -> keras.optimizers.Optimizer:
    """The optimizer whose state a checkpoint holds: the same under every precision.

    The loss scale itself is not checkpointed, so that checkpoints stay interchangeable; a
    float16 run resumed from one starts again from Keras' initial scale.
    """
    return getattr(optimizer, "inner_optimizer", optimizer)


def _warn_if_cpu_lacks_bfloat16() -> None:
    """bfloat16 without AVX512-BF16 or AMX runs emulated, slower than float32: say so."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except OSError:
        return  # Not Linux: nothing to tell from.
    if "avx512_bf16" not in flags and "amx_bf16" not in flags:
        logging.warning("This CPU has neither AVX512-BF16 nor AMX: bfloat16 arithmetic is emulated here "
                        "and --mixed_precision=mixed_bfloat16 trains slower than float32 (docs/performance.md).")
