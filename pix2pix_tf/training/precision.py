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

`auto` picks what the hardware computes fastest: a 16-bit type only where the hardware has
instructions for it and TensorFlow's kernels use them (on CPUs, oneDNN's: on, and not capped
below them), since an emulated one is slower than float32. The decision
(`choose`) is a pure function of a `Hardware` description, so that every branch can be
tested on any machine; `Hardware.detect` reads the machine the run is on.

The policy is set on the models this module is given, never globally: a library that
changed Keras' global dtype policy would change every model its caller builds afterwards.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Iterable, Mapping, Optional

import keras
import tensorflow as tf
from absl import logging

from pix2pix_tf.config import MIXED_PRECISION
from pix2pix_tf.config_checks import check_choice
from pix2pix_tf.errors import ConfigError

# oneDNN's instruction sets, lowest first (its `dnnl_cpu_isa_t`; the AVX512_CORE_* names of the
# upper three are aliases). ONEDNN_MAX_CPU_ISA, or DNNL_MAX_CPU_ISA (its older name), caps the
# ones it uses; it reads the name in any letter case, and a name it does not know caps nothing.
ONEDNN_ISAS = ("SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX2_VNNI_2", "AVX512_CORE", "AVX512_CORE_VNNI",
               "AVX512_CORE_BF16", "AVX10_1_512", "AVX10_1_512_AMX", "AVX10_1_512_AMX_FP16")
ONEDNN_CAP_VARIABLES = "ONEDNN_MAX_CPU_ISA, or DNNL_MAX_CPU_ISA where that is unset"  # As errors name them.
_ONEDNN_ISA_ALIASES = {"AVX512_CORE_FP16": "AVX10_1_512", "AVX512_CORE_AMX": "AVX10_1_512_AMX",
                       "AVX512_CORE_AMX_FP16": "AVX10_1_512_AMX_FP16"}
# Each 16-bit policy's x86 flags (Linux' /proc/cpuinfo names) of arithmetic in hardware, which
# oneDNN's convolutions use, each with the lowest cap under which oneDNN still uses it. Without
# one of them the type is emulated, slower than float32.
CPU_16_BIT_FLAGS = {
    "mixed_bfloat16": {"amx_bf16": "AVX10_1_512_AMX", "avx512_bf16": "AVX512_CORE_BF16"},
    "mixed_float16": {"amx_fp16": "AVX10_1_512_AMX_FP16", "avx512_fp16": "AVX10_1_512"},
}
# TensorFlow hands bfloat16 convolutions to oneDNN on a CPU with AVX-512 (the flag avx512f), whatever
# the cap; oneDNN computes them from this instruction set up and fails them below it.
BFLOAT16_ONEDNN_FLOOR = "AVX512_CORE"


@dataclasses.dataclass(frozen=True)
class Hardware:
    """What `auto` decides from: the kind of device the run computes on and its abilities."""

    device: str  # "cpu", "gpu" or "tpu"
    cpu_flags: Optional[frozenset[str]] = None  # The CPU's flags; None where they cannot be read.
    # Each GPU's CUDA compute capability (major, minor); None for a GPU that reports none.
    gpu_capabilities: tuple[Optional[tuple[int, int]], ...] = ()
    onednn: bool = True  # Whether TensorFlow computes with oneDNN on the CPU (TF_ENABLE_ONEDNN_OPTS).
    onednn_cap: Optional[str] = None  # The instruction set oneDNN is capped at (ONEDNN_ISAS); None: none.

    def onednn_reaches(self, isa: str) -> bool:
        """Whether oneDNN may use the instruction set `isa` (one of ONEDNN_ISAS) under its cap."""
        return self.onednn_cap is None or ONEDNN_ISAS.index(self.onednn_cap) >= ONEDNN_ISAS.index(isa)

    @classmethod
    def detect(cls, strategy: tf.distribute.Strategy) -> Hardware:
        """The hardware `strategy` computes on: its TPU, the local GPUs, or the CPU."""
        if isinstance(strategy, tf.distribute.TPUStrategy):
            return cls("tpu")
        gpus = tf.config.list_physical_devices("GPU")
        if gpus and tf.config.list_logical_devices("GPU"):
            return cls("gpu", gpu_capabilities=tuple(
                tf.config.experimental.get_device_details(gpu).get("compute_capability") for gpu in gpus))
        onednn, onednn_cap = read_onednn_settings(os.environ)
        return cls("cpu", cpu_flags=read_cpu_flags(), onednn=onednn, onednn_cap=onednn_cap)


def read_onednn_settings(environ: Mapping[str, str]) -> tuple[bool, Optional[str]]:
    """(whether oneDNN is on, its cap) as TensorFlow and oneDNN read `environ`: on unless
    TF_ENABLE_ONEDNN_OPTS is 0 or false; the cap ONEDNN_MAX_CPU_ISA's, else DNNL_MAX_CPU_ISA's."""
    onednn = environ.get("TF_ENABLE_ONEDNN_OPTS", "1").lower() not in ("0", "false")
    cap = environ.get("ONEDNN_MAX_CPU_ISA", environ.get("DNNL_MAX_CPU_ISA", "")).upper()
    cap = _ONEDNN_ISA_ALIASES.get(cap, cap)
    return onednn, (cap if cap in ONEDNN_ISAS else None)


def read_cpu_flags(path: str = "/proc/cpuinfo") -> Optional[frozenset[str]]:
    """The first processor's flags in `path` (Linux' cpuinfo); None where it cannot be read."""
    try:
        with open(path) as f:
            line = next((line for line in f if line.startswith("flags")), None)
    except OSError:
        return None
    return None if line is None else frozenset(line.split(":", 1)[1].split())


@dataclasses.dataclass(frozen=True)
class Choice:
    """A resolved `--mixed_precision`: the Keras policy (None: float32) and why it was chosen."""

    policy: Optional[str]
    reason: str

    @property
    def setting(self) -> str:
        """The `--mixed_precision` value that asks for this policy explicitly (config.json's)."""
        return self.policy or "off"


def choose(requested: str, hardware: Hardware) -> Choice:
    """The policy `requested` means on `hardware`: an explicit one as it is, `auto` by hardware.

    auto: on CPUs bfloat16 where AVX512-BF16 or AMX computes it, else float32; on GPUs
    float16 on compute capability 7.x (tensor cores, with loss scaling), bfloat16 from 8.0
    (as fast there, and no loss scaling), float32 below 7.0 or where the capability is
    unknown; on TPUs bfloat16, their native type.
    """
    check_choice("mixed_precision", requested, MIXED_PRECISION)
    if requested == "mixed_float16" and hardware.device == "tpu":
        raise ConfigError("--mixed_precision=mixed_float16 is not supported on TPUs; use mixed_bfloat16 or auto.")
    if requested == "off":
        return Choice(None, "--mixed_precision=off")
    if requested == "mixed_bfloat16" and hardware.device == "cpu":
        _refuse_bfloat16_that_onednn_fails(hardware)
    if requested != "auto":
        return Choice(requested, f"--mixed_precision={requested}")
    if hardware.device == "tpu":
        return Choice("mixed_bfloat16", "auto: a TPU computes in bfloat16 natively")
    if hardware.device == "gpu":
        return _choose_on_gpus(hardware.gpu_capabilities)
    return _choose_on_cpu(hardware)


def _choose_on_gpus(capabilities: tuple[Optional[tuple[int, int]], ...]) -> Choice:
    if not capabilities or None in capabilities:
        return Choice(None, "auto: a GPU reports no CUDA compute capability, so float32")
    slowest = min(capabilities)  # Every replica must compute fast in the type chosen.
    seen = f"GPU compute capability {slowest[0]}.{slowest[1]}" + (" (the lowest of the GPUs)"
                                                                   if len(set(capabilities)) > 1 else "")
    if slowest >= (8, 0):
        return Choice("mixed_bfloat16", f"auto: {seen} has bfloat16 tensor cores")
    if slowest >= (7, 0):
        return Choice("mixed_float16", f"auto: {seen} has float16 tensor cores, not bfloat16 ones")
    return Choice(None, f"auto: {seen} has no tensor cores, so float32")


def _choose_on_cpu(hardware: Hardware) -> Choice:
    if hardware.cpu_flags is None:
        return Choice(None, "auto: this CPU's flags cannot be read (no /proc/cpuinfo), so float32")
    used, unused = _instructions_for("mixed_bfloat16", hardware)
    if used:
        return Choice("mixed_bfloat16", f"auto: this CPU computes bfloat16 in hardware ({', '.join(used)})")
    return Choice(None, f"auto: {unused}, where bfloat16 is emulated and slower than float32, so float32")


def _instructions_for(policy: str, hardware: Hardware) -> tuple[list[str], str]:
    """The flags of CPU_16_BIT_FLAGS[policy] whose instructions TensorFlow's kernels use on this
    CPU, and where there are none, why: the CPU lacks them, oneDNN is off (TensorFlow's own
    16-bit kernels emulate), or its cap keeps it below them."""
    isas = CPU_16_BIT_FLAGS[policy]
    found = [flag for flag in isas if flag in (hardware.cpu_flags or ())]
    if not found:
        return [], f"this CPU has neither {' nor '.join(isas)}"
    if not hardware.onednn:
        return [], f"this CPU has {', '.join(found)}, but TF_ENABLE_ONEDNN_OPTS turns off oneDNN, whose kernels use it"
    used = [flag for flag in found if hardware.onednn_reaches(isas[flag])]
    if used:
        return used, ""
    lowest = min((isas[flag] for flag in found), key=ONEDNN_ISAS.index)
    return [], (f"this CPU has {', '.join(found)}, but oneDNN's cap {hardware.onednn_cap} ({ONEDNN_CAP_VARIABLES}) "
                f"keeps it below {lowest}, which uses it")


def _refuse_bfloat16_that_onednn_fails(hardware: Hardware) -> None:
    """Refuses bfloat16 where TensorFlow would stop in the first convolution with oneDNN's error:
    it hands them to oneDNN on this CPU, whose cap keeps it below BFLOAT16_ONEDNN_FLOOR."""
    if not hardware.onednn or "avx512f" not in (hardware.cpu_flags or ()) \
            or hardware.onednn_reaches(BFLOAT16_ONEDNN_FLOOR):
        return
    floor = BFLOAT16_ONEDNN_FLOOR
    raise ConfigError(f"--mixed_precision=mixed_bfloat16 cannot run here with oneDNN capped at {hardware.onednn_cap} "
                      f"({ONEDNN_CAP_VARIABLES}): TensorFlow gives this CPU's bfloat16 convolutions to oneDNN, which "
                      f"computes them from {floor} up. Unset the cap (or raise it to {floor} or higher), or use "
                      "--mixed_precision=off or auto.")


def check_runnable(requested: Iterable[str]) -> None:
    """Refuses, before any work, a `--mixed_precision` value that `choose` refuses on this machine:
    for programs that train several precisions, where a later one would stop after minutes."""
    hardware = Hardware.detect(tf.distribute.get_strategy())
    for value in requested:
        choose(value, hardware)


def resolve(requested: str, strategy: tf.distribute.Strategy, hardware: Optional[Hardware] = None) -> Choice:
    """`choose` on the hardware of `strategy` (or `hardware`, where given), logged; warns
    where an explicit 16-bit type would be emulated on a CPU."""
    hardware = hardware or Hardware.detect(strategy)
    choice = choose(requested, hardware)
    logging.info("Arithmetic: %s (%s).", choice.policy or "float32", choice.reason)
    if choice.policy and hardware.device == "cpu" and hardware.cpu_flags is not None:
        used, unused = _instructions_for(choice.policy, hardware)
        if not used:
            logging.warning("%s: %s arithmetic is emulated here and --mixed_precision=%s trains slower than "
                            "float32 (docs/performance.md).", unused[0].upper() + unused[1:],
                            choice.policy[len("mixed_"):], choice.policy)
    return choice


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

    The loss scale is not checkpointed, so that checkpoints stay interchangeable; a
    float16 run resumed from one starts again from Keras' initial scale.
    """
    return getattr(optimizer, "inner_optimizer", optimizer)
