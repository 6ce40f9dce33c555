"""--mixed_precision: 16-bit arithmetic with float32 variables, checkpoints and exports."""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

from pix2pix_tf.config import TrainConfig
from pix2pix_tf.errors import ConfigError
from pix2pix_tf.inference.mode import DETERMINISTIC
from pix2pix_tf.inference.request import ModelRequest
from pix2pix_tf.networks.generator import build_generator
from pix2pix_tf.networks.layers import normalization
from pix2pix_tf.training import precision
from pix2pix_tf.training.loop import TrainResult, train
from pix2pix_tf.training.step import Pix2Pix

import forked
from conftest import TINY_DATASET, copied_run, error_lines, tiny_config
from programs import run_program

pytestmark = pytest.mark.graph_optimizer  # The values users get: Grappler on (tests/process_fixtures.py).

NO_GPU = not tf.config.list_logical_devices("GPU")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def gan_under(tmp_path, data_dir, policy: str) -> Pix2Pix:
    config = tiny_config(tmp_path, data_dir, run=dict(mixed_precision=policy))
    return Pix2Pix(config, tf.distribute.get_strategy(), steps_per_epoch=10)


def layer_output_dtypes(model: keras.Model, x: tf.Tensor) -> set[str]:
    """The dtypes every layer of `model` produces on `x` (a functional model over all layers)."""
    layers = [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]
    probe = keras.Model(model.inputs, [layer.output for layer in layers])
    return {str(t.dtype.name) for t in probe(x, training=True)}


@pytest.mark.parametrize("policy,low", [("mixed_bfloat16", "bfloat16"), ("mixed_float16", "float16")])
def test_layers_compute_in_16_bits_and_keep_float32_state_and_outputs(tmp_path, data_dir, policy, low):
    gan = gan_under(tmp_path, data_dir, policy)
    x = tf.random.stateless_uniform((1, 128, 128, 3), (1, 2), -1, 1)
    pair = tf.concat([x, x], axis=-1)
    for model, inputs in ((gan.generator, x), (gan.discriminator, pair)):
        assert {v.dtype for v in model.weights} == {"float32"}, model.name
        assert {v.dtype for v in model.non_trainable_variables if "moving" in v.path} == {"float32"}
        # The hidden layers run in 16 bits; the output layer (G's tanh, D's logits) in float32.
        assert layer_output_dtypes(model, inputs) == {low, "float32"}, model.name
        assert model(inputs, training=True).dtype == tf.float32
    # Only these models: Keras' global policy, and so every other model built, stays float32.
    assert keras.config.dtype_policy().name == "float32"
    assert {layer.compute_dtype for layer in build_generator(gan.config.model).layers} == {"float32"}


def test_16_bit_arithmetic_changes_the_output_by_its_rounding_only(tmp_path, data_dir):
    full = gan_under(tmp_path / "a", data_dir, "off").generator
    half = gan_under(tmp_path / "b", data_dir, "mixed_bfloat16").generator
    x = tf.random.stateless_uniform((1, 128, 128, 3), (3, 4), -1, 1)
    # The same seed builds the same float32 weights; bfloat16 keeps 8 bits of mantissa.
    for a, b in zip(full.weights, half.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    difference = np.abs(full(x, training=False).numpy() - half(x, training=False).numpy())
    assert 0 < difference.max() < 0.05


def test_float16_scales_the_loss_and_checkpoints_the_plain_optimizer(tmp_path, data_dir):
    gan = gan_under(tmp_path, data_dir, "mixed_float16")
    assert isinstance(gan.g_optimizer, keras.optimizers.LossScaleOptimizer)
    saved = gan.checkpointables()
    assert not isinstance(saved["g_optimizer"], keras.optimizers.LossScaleOptimizer)
    assert saved["g_optimizer"] is gan.g_optimizer.inner_optimizer
    bf16 = gan_under(tmp_path / "bf16", data_dir, "mixed_bfloat16")
    assert not isinstance(bf16.g_optimizer, keras.optimizers.LossScaleOptimizer)


CPU = precision.Hardware("cpu", cpu_flags=frozenset({"fpu", "avx2", "avx512f", "avx512_vnni"}))


@pytest.mark.parametrize("hardware,policy,seen", [
    (CPU, None, "neither amx_bf16 nor avx512_bf16"),
    (dataclasses.replace(CPU, cpu_flags=CPU.cpu_flags | {"avx512_bf16"}), "mixed_bfloat16", "(avx512_bf16)"),
    (dataclasses.replace(CPU, cpu_flags=CPU.cpu_flags | {"amx_bf16", "amx_tile"}), "mixed_bfloat16", "(amx_bf16)"),
    (precision.Hardware("cpu", cpu_flags=None), None, "cannot be read"),
    (precision.Hardware("gpu", gpu_capabilities=((6, 1),)), None, "capability 6.1 has no tensor cores"),
    (precision.Hardware("gpu", gpu_capabilities=((7, 0),)), "mixed_float16", "capability 7.0 has float16"),
    (precision.Hardware("gpu", gpu_capabilities=((7, 5),)), "mixed_float16", "capability 7.5"),
    (precision.Hardware("gpu", gpu_capabilities=((8, 0),)), "mixed_bfloat16", "capability 8.0 has bfloat16"),
    (precision.Hardware("gpu", gpu_capabilities=((9, 0), (9, 0))), "mixed_bfloat16", "capability 9.0 has"),
    (precision.Hardware("gpu", gpu_capabilities=((8, 6), (7, 5))), "mixed_float16", "7.5 (the lowest of the GPUs)"),
    (precision.Hardware("gpu", gpu_capabilities=(None,)), None, "no CUDA compute capability"),
    (precision.Hardware("tpu"), "mixed_bfloat16", "TPU"),
])
def test_auto_picks_what_the_hardware_computes_fast_and_says_why(hardware, policy, seen):
    choice = precision.choose("auto", hardware)
    assert choice.policy == policy
    assert seen in choice.reason
    assert choice.setting == (policy or "off")


@pytest.mark.parametrize("device", [CPU, precision.Hardware("gpu", gpu_capabilities=((6, 0),)),
                                    precision.Hardware("tpu")])
def test_explicit_choices_stand_on_any_hardware_and_off_is_float32(device):
    assert precision.choose("off", device) == precision.Choice(None, "--mixed_precision=off")
    assert precision.choose("mixed_bfloat16", device).policy == "mixed_bfloat16"
    if device.device != "tpu":
        assert precision.choose("mixed_float16", device).policy == "mixed_float16"
    with pytest.raises(ConfigError, match="--mixed_precision='half' is not one of off, auto"):
        precision.choose("half", device)


def test_float16_is_refused_on_a_tpu_and_unknown_settings_everywhere():
    with pytest.raises(ConfigError, match="mixed_float16 is not supported on TPUs"):
        precision.choose("mixed_float16", precision.Hardware("tpu"))
    with pytest.raises(ConfigError, match="--mixed_precision='half' is not one of"):
        tiny_config("w", "d", run=dict(mixed_precision="half")).validate()


def test_cpu_flags_are_read_from_cpuinfo(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nmodel name\t: Some CPU\nflags\t\t: fpu avx512f amx_bf16 amx_tile\n\n"
                       "processor\t: 1\nflags\t\t: fpu avx512f amx_bf16 amx_tile\n")
    assert precision.read_cpu_flags(str(cpuinfo)) == {"fpu", "avx512f", "amx_bf16", "amx_tile"}
    assert precision.read_cpu_flags(str(tmp_path / "absent")) is None
    (tmp_path / "noflags").write_text("processor\t: 0\n")
    assert precision.read_cpu_flags(str(tmp_path / "noflags")) is None


@pytest.mark.skipif(not NO_GPU, reason="detects this machine's CPU")
def test_this_machine_is_described_by_its_own_cpu_flags():
    hardware = precision.Hardware.detect(tf.distribute.get_strategy())
    assert hardware.device == "cpu"
    assert hardware.cpu_flags == precision.read_cpu_flags()
    if os.path.exists("/proc/cpuinfo"):
        with open("/proc/cpuinfo") as f:
            assert ("avx512_bf16" in f.read().split()) == ("avx512_bf16" in hardware.cpu_flags)


def test_the_run_logs_its_choice_and_warns_of_emulated_bfloat16(caplog):
    strategy = tf.distribute.get_strategy()
    with caplog.at_level("INFO", logger="absl"):
        choice = precision.resolve("auto", strategy, CPU)
    assert choice.policy is None
    assert "Arithmetic: float32 (auto: this CPU has neither amx_bf16 nor avx512_bf16" in caplog.text
    assert "emulated here" not in caplog.text  # No warning: float32 is not emulated.
    caplog.clear()
    with caplog.at_level("INFO", logger="absl"):
        assert precision.resolve("mixed_bfloat16", strategy, CPU).policy == "mixed_bfloat16"
    assert "This CPU has neither amx_bf16 nor avx512_bf16: bfloat16 arithmetic is emulated here" in caplog.text
    caplog.clear()
    amx = dataclasses.replace(CPU, cpu_flags=CPU.cpu_flags | {"amx_bf16"})
    with caplog.at_level("INFO", logger="absl"):
        assert precision.resolve("mixed_bfloat16", strategy, amx).policy == "mixed_bfloat16"
    assert "Arithmetic: mixed_bfloat16 (--mixed_precision=mixed_bfloat16)" in caplog.text
    assert "emulated" not in caplog.text


def test_explicit_float16_on_a_cpu_warns_that_it_is_emulated_where_it_is(caplog):
    """float16 on a CPU without AVX512-FP16 or AMX-FP16 falls back to TensorFlow's emulating kernels
    (TensorFlow logs `oneDNN supports DT_HALF only on platforms with AVX-512`, even on one with AVX-512)."""
    strategy = tf.distribute.get_strategy()
    with caplog.at_level("INFO", logger="absl"):
        assert precision.resolve("mixed_float16", strategy, CPU).policy == "mixed_float16"
    assert ("This CPU has neither amx_fp16 nor avx512_fp16: float16 arithmetic is emulated here and "
            "--mixed_precision=mixed_float16 trains slower than float32") in caplog.text
    for hardware in (dataclasses.replace(CPU, cpu_flags=CPU.cpu_flags | {"avx512_fp16"}),
                     precision.Hardware("gpu", gpu_capabilities=((7, 0),))):
        caplog.clear()
        with caplog.at_level("INFO", logger="absl"):
            assert precision.resolve("mixed_float16", strategy, hardware).policy == "mixed_float16"
        assert "Arithmetic: mixed_float16 (--mixed_precision=mixed_float16)" in caplog.text
        assert "emulated" not in caplog.text


BF16_CPU = dataclasses.replace(CPU, cpu_flags=CPU.cpu_flags | {"avx512_bf16"})
AMX_CPU = dataclasses.replace(CPU, cpu_flags=CPU.cpu_flags | {"amx_bf16", "amx_tile"})


@pytest.mark.parametrize("hardware,policy,seen", [
    (dataclasses.replace(BF16_CPU, onednn_cap="AVX2"), None,
     "avx512_bf16, but oneDNN's cap AVX2 (ONEDNN_MAX_CPU_ISA, or DNNL_MAX_CPU_ISA where that is unset) "
     "keeps it below AVX512_CORE_BF16"),
    (dataclasses.replace(BF16_CPU, onednn_cap="AVX512_CORE_VNNI"), None, "keeps it below AVX512_CORE_BF16"),
    (dataclasses.replace(BF16_CPU, onednn_cap="AVX512_CORE_BF16"), "mixed_bfloat16", "in hardware (avx512_bf16)"),
    (dataclasses.replace(AMX_CPU, onednn_cap="AVX512_CORE_BF16"), None, "keeps it below AVX10_1_512_AMX"),
    (dataclasses.replace(AMX_CPU, cpu_flags=AMX_CPU.cpu_flags | {"avx512_bf16"}, onednn_cap="AVX512_CORE_BF16"),
     "mixed_bfloat16", "in hardware (avx512_bf16)"),
    (dataclasses.replace(AMX_CPU, onednn_cap="AVX10_1_512_AMX"), "mixed_bfloat16", "in hardware (amx_bf16)"),
    (dataclasses.replace(BF16_CPU, onednn=False), None, "TF_ENABLE_ONEDNN_OPTS turns off oneDNN"),
    (dataclasses.replace(BF16_CPU, onednn=False, onednn_cap="AVX2"), None, "TF_ENABLE_ONEDNN_OPTS"),
])
def test_auto_picks_float32_where_onednn_does_not_use_the_bfloat16_instructions(hardware, policy, seen):
    """A CPU's bfloat16 instructions count where TensorFlow's kernels use them: oneDNN's, when
    TF_ENABLE_ONEDNN_OPTS leaves it on and ONEDNN_MAX_CPU_ISA does not cap it below them."""
    choice = precision.choose("auto", hardware)
    assert (choice.policy, choice.setting) == (policy, policy or "off")
    assert seen in choice.reason


@pytest.mark.parametrize("environ,onednn,cap", [
    ({}, True, None), ({"TF_ENABLE_ONEDNN_OPTS": "0"}, False, None), ({"TF_ENABLE_ONEDNN_OPTS": "FALSE"}, False, None),
    ({"TF_ENABLE_ONEDNN_OPTS": "no"}, True, None),  # TensorFlow reads 0, 1, true and false only.
    ({"ONEDNN_MAX_CPU_ISA": "avx2"}, True, "AVX2"), ({"DNNL_MAX_CPU_ISA": "AVX512_CORE"}, True, "AVX512_CORE"),
    ({"ONEDNN_MAX_CPU_ISA": "ALL", "DNNL_MAX_CPU_ISA": "AVX2"}, True, None),
    ({"ONEDNN_MAX_CPU_ISA": "AVX512_CORE_AMX"}, True, "AVX10_1_512_AMX"),
    ({"ONEDNN_MAX_CPU_ISA": "DEFAULT"}, True, None), ({"ONEDNN_MAX_CPU_ISA": " avx2 "}, True, None),
    ({"ONEDNN_MAX_CPU_ISA": "fastest"}, True, None),
])
def test_onednn_settings_are_read_as_tensorflow_and_onednn_read_them(environ, onednn, cap):
    """Which values cap oneDNN (any case; unknown or padded ones do not) and which turn it off was
    tried on TensorFlow itself: `test_a_onednn_cap_below_bfloat16_is_refused_before_tensorflow_fails`."""
    assert precision.read_onednn_settings(environ) == (onednn, cap)


def test_explicit_bfloat16_is_refused_where_onednn_would_fail_its_convolutions(caplog):
    """On a CPU with AVX-512 TensorFlow hands bfloat16 convolutions to oneDNN, which fails them
    when capped below AVX512_CORE; from there up it emulates them (a warning), and on a CPU
    without AVX-512, or with oneDNN off, TensorFlow's own kernels emulate them."""
    for cap in ("SSE41", "AVX2", "AVX2_VNNI_2"):
        with pytest.raises(ConfigError, match=f"with oneDNN capped at {cap} .*: TensorFlow gives this CPU's "
                                              "bfloat16 convolutions to oneDNN, which computes them from AVX512_CORE"):
            precision.choose("mixed_bfloat16", dataclasses.replace(BF16_CPU, onednn_cap=cap))
    assert precision.choose("auto", dataclasses.replace(BF16_CPU, onednn_cap="AVX2")).policy is None
    avx2_only = precision.Hardware("cpu", cpu_flags=frozenset({"fpu", "avx2"}), onednn_cap="AVX2")
    for hardware in (dataclasses.replace(BF16_CPU, onednn_cap="AVX512_CORE"), avx2_only,
                     dataclasses.replace(BF16_CPU, onednn=False, onednn_cap="AVX2")):
        caplog.clear()
        with caplog.at_level("INFO", logger="absl"):
            choice = precision.resolve("mixed_bfloat16", tf.distribute.get_strategy(), hardware)
        assert choice.policy == "mixed_bfloat16"
        assert "bfloat16 arithmetic is emulated here" in caplog.text


# What train.py, the benchmark and the precision experiment print, refusing bfloat16 under ONEDNN_MAX_CPU_ISA=AVX2.
REFUSED_UNDER_AVX2 = ("error: --mixed_precision=mixed_bfloat16 cannot run here with oneDNN capped at AVX2 "
                      "(ONEDNN_MAX_CPU_ISA, or DNNL_MAX_CPU_ISA where that is unset): TensorFlow gives this CPU's "
                      "bfloat16 convolutions to oneDNN, which computes them from AVX512_CORE up. Unset the cap (or "
                      "raise it to AVX512_CORE or higher), or use --mixed_precision=off or auto.")


CAPPED_PROCESS = textwrap.dedent("""
    import json, runpy, sys
    import tensorflow as tf
    from pix2pix_tf.errors import ConfigError
    from pix2pix_tf.training import precision

    hardware = precision.Hardware.detect(tf.distribute.get_strategy())
    try:
        precision.choose("mixed_bfloat16", hardware)
        refused = False
    except ConfigError:
        refused = True
    x, k = tf.ones([1, 8, 8, 4], tf.bfloat16), tf.ones([3, 3, 4, 4], tf.bfloat16)
    try:
        tf.nn.conv2d(x, k, 1, "SAME").numpy()
        convolved = True
    except tf.errors.OpError:
        convolved = False
    print(json.dumps({"cap": hardware.onednn_cap, "auto": precision.choose("auto", hardware).setting,
                      "refused": refused, "convolved": convolved}), flush=True)
    if len(sys.argv) > 1:  # Then train.py under the same cap, as a user runs it: its exit status is this one's.
        sys.argv = ["train.py", *sys.argv[1:]]
        runpy.run_path("train.py", run_name="__main__")
""")


@pytest.mark.slow  # Processes of their own (forked before any op): oneDNN reads its cap once, when it starts.
def test_a_onednn_cap_below_bfloat16_is_refused_before_tensorflow_fails(tmp_path, data_dir):
    """The rule of `_refuse_bfloat16_that_onednn_fails` against TensorFlow itself: under each cap,
    explicit bfloat16 is refused exactly where a bfloat16 convolution fails, and auto is float32.
    Where it is refused, train.py says so in one line (TensorFlow printed oneDNN's error in a traceback)."""
    avx512 = "avx512f" in (precision.read_cpu_flags() or ())
    train = [f"--workdir={tmp_path / 'run'}", f"--data_dir={data_dir}", f"--dataset={TINY_DATASET}",
             "--mixed_precision=mixed_bfloat16", "--steps=1"]
    # oneDNN on: TF_ENABLE_ONEDNN_OPTS is set only where the environment turns it off. forked.run forks
    # from a zygote started with the values of what TensorFlow reads as it starts (TF_ENABLE_ONEDNN_OPTS,
    # TF_CPP_MIN_LOG_LEVEL): the environment's own values reuse the test worker's zygote, other values
    # start another (a fresh interpreter importing TensorFlow). The cap itself oneDNN reads at its first use.
    onednn_on = {} if precision.read_onednn_settings(os.environ)[0] else {"TF_ENABLE_ONEDNN_OPTS": "1"}
    for cap, fails in (("avx2", avx512), ("AVX512_CORE", False)):
        env = dict(os.environ, ONEDNN_MAX_CPU_ISA=cap, **onednn_on)
        result = forked.run([sys.executable, "-c", CAPPED_PROCESS, *(train if fails else [])], env=env, timeout=300,
                            cwd=ROOT)
        assert result.returncode == (1 if fails else 0) and "Traceback" not in result.stderr, result.stderr[-3000:]
        seen = json.loads(result.stdout.splitlines()[0])
        assert seen == {"cap": cap.upper(), "auto": "off", "refused": fails, "convolved": not fails}, cap
        if fails:
            assert error_lines(result) == [REFUSED_UNDER_AVX2]
            assert not (tmp_path / "run").exists()  # Refused before the lock: the folder it made is removed.


@pytest.mark.skipif("avx512f" not in (precision.read_cpu_flags() or ()),
                    reason="the rule refuses on CPUs with AVX-512 only")
def test_programs_that_train_several_precisions_refuse_one_before_the_first(tmp_path, data_dir, monkeypatch):
    """The benchmark and the precision experiment check every precision they will train before the
    first: a refused one would stop them after minutes of work (the benchmark with a traceback from
    its side-by-side process). The rule reads the environment: a cap this process's oneDNN, started
    before it was set, does not have, so nothing would fail here but the check."""
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    monkeypatch.delenv("TF_ENABLE_ONEDNN_OPTS", raising=False)
    root, figures = tmp_path / "experiment", tmp_path / "bench.json"
    for program, args in (
            ("benchmark", [f"--dataset={TINY_DATASET}", f"--data_dir={data_dir}", "--precisions=off,mixed_bfloat16",
                           f"--json={figures}"]),
            ("experiments.precision", [f"--root={root}", f"--data_dir={data_dir}", "--seeds=1", "--steps=1",
                                       "--policies=off,mixed_bfloat16"])):
        result = run_program(program, *args)
        assert error_lines(result) == [REFUSED_UNDER_AVX2], program
        assert result.stdout == "", program
    assert not figures.exists() and not (root.exists() and os.listdir(root))  # No float32 run came first.


def auto_resolves_to() -> str:
    """The precision --mixed_precision=auto picks on this machine (off, mixed_bfloat16 or mixed_float16)."""
    return precision.choose("auto", precision.Hardware.detect(tf.distribute.get_strategy())).setting


@pytest.mark.slow  # It reads the 30-step runs of `float32_and_bfloat16_runs`.
def test_config_json_records_the_precision_auto_resolved_to(tmp_path, data_dir, float32_and_bfloat16_runs):
    """A run under auto records the precision it resolved to. The fixture trained the run of
    that precision under auto (on a CPU: float32 or bfloat16); elsewhere (float16) a run of
    its own does. A config.json that says auto still reads and resumes: the resume test's leg
    of this precision resumes from one (`test_a_run_resumes_under_every_precision_...`)."""
    expected = auto_resolves_to()
    assert expected != "auto"
    if expected in float32_and_bfloat16_runs:
        result, workdir = float32_and_bfloat16_runs[expected], float32_and_bfloat16_runs["workdirs"][expected]
        assert float32_and_bfloat16_runs["asked"][expected] == "auto"
        assert result.step == 30
    else:
        workdir = tmp_path / "run"
        result = train(tiny_config(workdir, data_dir, optim=dict(steps=1), run=dict(mixed_precision="auto",
                                                                                    eval_examples=0)))
        assert result.step == 1
    assert TrainConfig.load(str(workdir)).run.mixed_precision == expected


@pytest.fixture(scope="module")
def float32_and_bfloat16_runs(tmp_path_factory, data_dir) -> dict:
    """30 steps of the same run in float32 and in bfloat16 (read only): policy -> TrainResult,
    and under "workdirs" and "asked" each run's workdir and the --mixed_precision it was given.
    The one that --mixed_precision=auto picks here is trained under auto (which must record
    the precision it resolved to: `test_config_json_records_the_precision_auto_resolved_to`)."""
    root = tmp_path_factory.mktemp("precisions")
    runs: dict = {"workdirs": {}, "asked": {}}
    for policy in ("off", "mixed_bfloat16"):
        asked = "auto" if policy == auto_resolves_to() else policy
        runs[policy] = train(tiny_config(root / policy, data_dir, optim=dict(steps=30),
                                         run=dict(mixed_precision=asked, eval_examples=8)))
        assert TrainConfig.load(str(root / policy)).run.mixed_precision == policy  # Trained in `policy`.
        runs["workdirs"][policy], runs["asked"][policy] = root / policy, asked
    return runs


@pytest.mark.slow
def test_bfloat16_learns_what_float32_learns(float32_and_bfloat16_runs):
    """Same seed, same batches: the held-out L1 falls alike (the tolerance: docs/training.md)."""
    full, half = float32_and_bfloat16_runs["off"], float32_and_bfloat16_runs["mixed_bfloat16"]
    assert half.held_out_l1_start == pytest.approx(full.held_out_l1_start, abs=2e-3)
    assert full.held_out_l1_end < full.held_out_l1_start - 0.05
    assert half.held_out_l1_end == pytest.approx(full.held_out_l1_end, abs=0.02)
    for name in ("g_l1", "d_total"):
        assert half.losses[name] == pytest.approx(full.losses[name], rel=0.25), name


def checkpoint_variables(checkpoint: str) -> dict:
    """The variables a checkpoint stores (name -> dtype), without its save counter."""
    dtypes = tf.train.load_checkpoint(checkpoint).get_variable_to_dtype_map()
    return {k: dtypes[k] for k in dtypes if k.endswith("VARIABLE_VALUE") and "save_counter" not in k}


@pytest.mark.slow
def test_a_run_resumes_under_every_precision_with_the_same_checkpoint(tmp_path, data_dir, float32_and_bfloat16_runs):
    """float32 -> bfloat16 -> float16 -> float32: the fixture's float32 run (copied) resumes
    under each in turn, 2 steps each; the precision auto picks here from a config.json that says auto."""
    float32 = float32_and_bfloat16_runs["off"]  # <workdir>/checkpoints/ckpt-30
    assert float32.step == 30
    assert all(np.isfinite(v) for v in float32.losses.values())
    keys = checkpoint_variables(float32.checkpoint)
    workdir = copied_run(os.path.dirname(os.path.dirname(float32.checkpoint)), tmp_path / "run")

    def resumed(steps: int, policy: str) -> TrainResult:
        return train(tiny_config(workdir, data_dir, optim=dict(steps=steps), run=dict(mixed_precision=policy)))

    def resumed_from_auto(steps: int, policy: str) -> TrainResult:
        """The leg of the precision auto resolves to resumes from a config.json that says auto
        (as written before it was resolved): it still reads, resumes, and records `policy`."""
        values = TrainConfig.load(str(workdir)).to_dict()
        values["run"]["mixed_precision"] = "auto"
        (workdir / "config.json").write_text(json.dumps(values))
        config = TrainConfig.from_dict(values)
        result = train(dataclasses.replace(config, optim=dataclasses.replace(config.optim, steps=steps)))
        assert TrainConfig.load(str(workdir)).run.mixed_precision == policy
        return result

    # The fixture measured its held-out L1 on 8 pairs, the resumed runs measure 2: a float32 run
    # to the step the fixture reached trains nothing and gives the L1 on those 2 pairs.
    previous = resumed(30, "off")
    assert previous.step == 30 and previous.checkpoint.endswith("ckpt-30")
    auto = auto_resolves_to()
    assert auto in ("mixed_bfloat16", "mixed_float16", "off")
    for steps, policy in ((32, "mixed_bfloat16"), (34, "mixed_float16"), (36, "off")):
        result = (resumed_from_auto if policy == auto else resumed)(steps, policy)
        assert result.step == steps
        assert all(np.isfinite(v) for v in result.losses.values())
        # Resumed: it starts from the weights the previous one saved.
        assert result.held_out_l1_start == pytest.approx(previous.held_out_l1_end, abs=5e-3)
        assert checkpoint_variables(result.checkpoint) == keys, policy  # The same variables, names and dtypes.
        previous = result
    assert {str(d.name) for d in keys.values()} <= {"float32", "int64", "int32"}
    assert TrainConfig.load(str(workdir)).run.mixed_precision == "off"


@pytest.mark.slow
def test_a_bfloat16_run_exports_the_float32_generator(tmp_path, float32_and_bfloat16_runs):
    checkpoint = float32_and_bfloat16_runs["mixed_bfloat16"].checkpoint  # <workdir>/checkpoints/ckpt-30
    workdir = os.path.dirname(os.path.dirname(checkpoint))
    export_dir = str(tmp_path / "export")
    done = run_program("export", f"--workdir={workdir}", f"--export_dir={export_dir}", "--model_name=bf16",
                       "--deterministic", "--tflite=", "--check_examples=1")
    assert done.returncode == 0, done.stderr[-3000:]
    with open(os.path.join(export_dir, "bf16", "1", "assets.extra", "pix2pix_export.json")) as f:
        assert json.load(f)  # Written as for any run.
    exported = ModelRequest.of(saved_model=os.path.join(export_dir, "bf16")).resolve().open(DETERMINISTIC)
    # The float32 generator of the same checkpoint, as translate runs it.
    float32 = ModelRequest.of(workdir=workdir).resolve().open(DETERMINISTIC)
    x = tf.random.stateless_uniform((2, 128, 128, 3), (5, 6), -1, 1).numpy()
    got, want = np.asarray(exported(x, 0)), np.asarray(float32(x, 0))
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, want, atol=2e-5)
    stored = tf.train.load_checkpoint(os.path.join(export_dir, "bf16", "1", "variables", "variables"))
    dtypes = {name: dtype for name, dtype in stored.get_variable_to_dtype_map().items() if "VARIABLE_VALUE" in name}
    assert dtypes and set(dtypes.values()) == {tf.float32}


def test_config_json_of_an_older_run_reads_as_float32(tmp_path, data_dir):
    config = tiny_config(tmp_path, data_dir)
    values = config.to_dict()
    del values["run"]["mixed_precision"]
    restored = TrainConfig.from_dict(values)
    assert restored == dataclasses.replace(config, data=config.data.resolved(),  # Loading resolves the data.
                                           run=dataclasses.replace(config.run, mixed_precision="off"))


@pytest.mark.slow
def test_multiscale_d_with_feature_matching_trains_under_bfloat16(tmp_path, data_dir):
    """pix2pixHD's options under bfloat16: the per-scale logits and the features reach the
    losses as float32 (float32 output layers; the feature L1 casts)."""
    # The shallowest PatchGANs (n_layers_d=1): two scales, hidden layers and their features all the same.
    result = train(tiny_config(tmp_path, data_dir, model=dict(discriminator="multiscale", num_d=2, n_layers_d=1),
                               loss=dict(lambda_feat=10.0), optim=dict(steps=2),
                               run=dict(mixed_precision="mixed_bfloat16", eval_examples=0)))
    assert result.step == 2
    assert {"g_feat", "g_gan", "d_total"} <= set(result.losses)
    assert all(np.isfinite(v) for v in result.losses.values())


@pytest.mark.parametrize("shape", [(1, 16, 16, 8), (2, 2, 2, 4), (1, 1, 1, 4)])
def test_bfloat16_batch_norm_normalises_and_moves_its_statistics_as_float32_does(shape):
    """Under bfloat16, batch norm computes its statistics in float32 from the bfloat16
    activations: its output and gradients are float32's to bfloat16's rounding, and the moving
    statistics (float32, PyTorch's unbiased variance; n = 1 moves it towards 0) the same."""
    x = tf.cast(tf.random.stateless_normal(shape, (1, 2), mean=0.3, stddev=2.0), tf.bfloat16)
    weights = tf.random.stateless_normal(shape, (3, 4))

    def train_once(policy: str, inputs: tf.Tensor):
        keras.utils.set_random_seed(0)
        norm = normalization("batch", name="norm")
        norm.dtype_policy = keras.DTypePolicy(policy)
        norm.build(inputs.shape)
        with tf.GradientTape() as tape:
            tape.watch(inputs)
            outputs = norm(inputs, training=True)
            loss = tf.reduce_sum(tf.cast(outputs, tf.float32) * weights)
        grads = tape.gradient(loss, [inputs, norm.gamma, norm.beta])
        return outputs, grads, (norm.moving_mean.numpy(), norm.moving_variance.numpy())

    full, full_grads, full_moving = train_once("float32", tf.cast(x, tf.float32))
    half, half_grads, half_moving = train_once("mixed_bfloat16", x)
    assert half.dtype == tf.bfloat16 and {g.dtype for g in half_grads[1:]} == {tf.float32}
    np.testing.assert_allclose(tf.cast(half, tf.float32), full, atol=2 ** -8 * np.abs(full).max())
    for a, b in zip(full_grads, half_grads):
        np.testing.assert_allclose(tf.cast(b, tf.float32), a, atol=2 ** -7 * np.abs(a).max() + 1e-6)
    for a, b in zip(full_moving, half_moving):
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-7)
    if shape[:3] == (1, 1, 1):  # One value per channel: variance 0, the estimate moves towards 0.
        np.testing.assert_allclose(half_moving[1], 0.9)
