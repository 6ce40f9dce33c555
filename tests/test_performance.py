"""The speed levers change how fast, not what is learned; the benchmark measures what it says.

No timing thresholds here: figures come from `python -m pix2pix_tf.benchmark` (docs/performance.md).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf
from test_benchmark_side_by_side import check_figures
from test_training import checkpoint_values

from pix2pix_tf.benchmark import sidebyside
from pix2pix_tf.checkpoint_reading import checkpoint_candidates, damaged_index
from pix2pix_tf.training.fused_adam import FusedAdam
from pix2pix_tf.training.loop import train
from pix2pix_tf.training.optimization import ReferenceAdam

import forked
from conftest import TINY_DATASET, copied_run, tiny_config
from programs import run_program

pytestmark = pytest.mark.graph_optimizer  # The values users get: Grappler on (tests/process_fixtures.py).

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_fused_adam_makes_the_reference_adam_update():
    shapes = [(3, 3, 4, 8), (8,), (5, 7)]
    rng = np.random.default_rng(0)
    start = [rng.normal(size=s).astype(np.float32) for s in shapes]
    grads = [[tf.constant(rng.normal(size=s).astype(np.float32)) for s in shapes] for _ in range(5)]
    results = []
    for adam in (ReferenceAdam, FusedAdam):
        variables = [keras.Variable(v) for v in start]
        optimizer = adam(learning_rate=0.01, beta_1=0.5)
        for step_grads in grads:
            optimizer.apply_gradients(zip(step_grads, variables))
        results.append(([v.numpy() for v in variables],
                        [v.numpy() for v in optimizer.variables if v.path.endswith(("momentum", "velocity"))]))
    (keras_vars, keras_slots), (fused_vars, fused_slots) = results
    assert len(keras_slots) == len(fused_slots) == 2 * len(shapes)
    for a, b in zip(keras_vars + keras_slots, fused_vars + fused_slots):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert not np.allclose(keras_vars[0], start[0])  # The update did happen.


STEPS_ONLY = dict(eval_examples=0)  # The runs compared here: losses and weights, no held-out evaluation.
# Without dropout: XLA's stateless RNG draws other dropout masks (another sample of the noise z,
# as a different seed would), so only dropout-free runs compare with the XLA step; the Adam
# update does not depend on dropout.
NO_DROPOUT = dict(dropout=False)


def _same_run(reference, other, tolerance: float, label: str, weight_atol: float = 1e-4) -> None:
    assert other.losses == pytest.approx(reference.losses, rel=tolerance, abs=1e-5), label
    a, b = checkpoint_values(reference.checkpoint, "generator"), checkpoint_values(other.checkpoint, "generator")
    assert a.keys() == b.keys() and a
    for key in [k for k in a if "moving_" not in k]:  # The trained weights.
        np.testing.assert_allclose(a[key], b[key], rtol=tolerance, atol=weight_atol, err_msg=f"{label}: {key}")


@pytest.fixture(scope="module")
def keras_adam_run(tmp_path_factory, data_dir):
    """4 steps with Keras' Adam, no XLA (the unoptimised path): what the fused Adam's and the
    XLA step's runs are compared with (read only)."""
    return train(tiny_config(tmp_path_factory.mktemp("keras_adam"), data_dir, model=NO_DROPOUT, optim=dict(steps=4),
                             run=dict(fused_adam=False, **STEPS_ONLY)))


@pytest.fixture(scope="module")
def fused_adam_run(tmp_path_factory, data_dir):
    """The same 4 steps with the fused Adam (the default), also saved at step 2: compared with
    `keras_adam_run`, and resumed from step 2 with Keras' Adam (read only; copy it to resume)."""
    return train(tiny_config(tmp_path_factory.mktemp("fused_adam"), data_dir, model=NO_DROPOUT, optim=dict(steps=4),
                             run=dict(save_every=2, **STEPS_ONLY)))


@pytest.mark.slow
def test_fused_adam_learns_what_keras_adam_learns(keras_adam_run, fused_adam_run):
    _same_run(keras_adam_run, fused_adam_run, 1e-4, "fused Adam")


@pytest.mark.slow
def test_xla_step_learns_what_the_plain_step_learns(tmp_path, data_dir, keras_adam_run):
    plain = keras_adam_run
    xla = train(tiny_config(tmp_path / "xla", data_dir, model=NO_DROPOUT, optim=dict(steps=4),
                            run=dict(jit_compile=True, **STEPS_ONLY)))
    # Adam moves a weight by about lr per step whatever its gradient's size, so round-off in
    # a gradient near zero can change a weight by up to lr * steps (2e-4 * 4).
    _same_run(plain, xla, 1e-3, "XLA", weight_atol=2 * 2e-4 * 4)


@pytest.mark.slow
def test_a_fused_adam_checkpoint_resumes_with_keras_adam(tmp_path, data_dir, keras_adam_run, fused_adam_run):
    """Same slot variables: a run may switch --fused_adam between invocations."""
    whole = keras_adam_run
    # The fused run as a 2-step run leaves it (the schedule is epoch-based, so its first 2 steps
    # are a 2-step run's): its step-2 checkpoint, the newest, and an index naming only that one.
    split = copied_run(os.path.dirname(os.path.dirname(fused_adam_run.checkpoint)), tmp_path / "split")
    checkpoints = split / "checkpoints"
    assert os.path.basename(fused_adam_run.checkpoint) == "ckpt-4" and (checkpoints / "ckpt-2.index").exists()
    for path in checkpoints.glob("ckpt-4.*"):
        path.unlink()
    tf.compat.v1.train.update_checkpoint_state(str(checkpoints), "ckpt-2", ["ckpt-2"])  # TensorFlow's index writer.
    assert damaged_index(str(checkpoints)) is None
    assert checkpoint_candidates(str(checkpoints)) == [str(checkpoints / "ckpt-2")]  # What the resume restores.
    rest = train(tiny_config(split, data_dir, model=NO_DROPOUT, optim=dict(steps=4),
                             run=dict(fused_adam=False, **STEPS_ONLY)))
    assert rest.step == 4
    assert rest.losses == pytest.approx(whole.losses, rel=1e-3, abs=1e-5)


BENCHMARK_MODEL = ("--generator=unet_128", "--ngf=8", "--ndf=8", "--crop_size=128", "--load_size=143")


def _benchmark_config(data_dir: str, batch_size: int):
    """The configuration the benchmark's flags `BENCHMARK_MODEL` give (__main__.config_from_flags)."""
    from pix2pix_tf import config as cfg

    return cfg.TrainConfig(
        model=cfg.ModelConfig(generator="unet_128", ngf=8, ndf=8),
        data=cfg.DataConfig(dataset=TINY_DATASET, data_dir=data_dir, load_size=143, crop_size=128,
                            batch_size=batch_size),
        run=cfg.RunConfig(seed=0, progress=False)).validate()


def test_each_batch_size_has_a_training_row_before_the_batch_1_comparisons():
    """The rows `--batch_sizes=1,2` gives, in order (the command-line run below times one batch size)."""
    from pix2pix_tf.benchmark import report, training

    suite = report.SuiteConfig(trainings=[_benchmark_config("unused", 1), _benchmark_config("unused", 2)])
    # What each measurement reports its row as (measure_tutorial sets up the tutorial's process).
    reported = {training.measure_training: ("pix2pix_tf", lambda c: c),
                training.measure_tutorial: ("tutorial", training.tutorial_config)}
    rows = [(reported[measure][0], reported[measure][1](c).data.batch_size, reported[measure][1](c).run.reuse_memory)
            for measure, c in report.training_rows(suite)]
    assert rows == [("pix2pix_tf", 1, True), ("pix2pix_tf", 2, True), ("pix2pix_tf", 1, False), ("tutorial", 1, False)]


def test_a_batch_2_step_counts_twice_the_flops_of_a_batch_1_step(data_dir):
    """FLOPs come from the traced graph (training.step_flops, as each training row counts them):
    batch 2 does twice batch 1's convolution work."""
    from pix2pix_tf.benchmark import training
    from pix2pix_tf.training.distribute import make_strategy
    from pix2pix_tf.training.step import Pix2Pix

    configs = {batch_size: _benchmark_config(data_dir, batch_size) for batch_size in (1, 2)}
    stream, num_train = training._stream(configs[2])
    batch = next(iter(stream()))  # Of 2 images; its first image is a batch of 1.
    flops = {}
    for batch_size, config in configs.items():
        gan = Pix2Pix(config, make_strategy(config.run), num_train / batch_size)
        flops[batch_size] = training.step_flops(gan, tuple(t[:batch_size] for t in batch))
        assert 0 < flops[batch_size].executed < flops[batch_size].traced  # Gradients nothing uses.
    assert flops[2].traced == pytest.approx(2 * flops[1].traced, rel=0.02)


@pytest.mark.slow
def test_benchmark_prints_and_writes_every_figure(tmp_path, data_dir):
    """The suite runs end to end from the command line (tiny models; no timing is judged)."""
    out = tmp_path / "bench.json"
    # A repeated lever is measured once (cli.define_list). The inference part runs in process
    # (test_inference_rows_time_every_form_and_check_the_tflite_files_against_keras). One side-by-side
    # round: test_benchmark_side_by_side.py interleaves several.
    result = forked.run(
        [sys.executable, "-m", "pix2pix_tf.benchmark", f"--dataset={TINY_DATASET}", f"--data_dir={data_dir}",
         *BENCHMARK_MODEL, "--batch_sizes=1", "--steps=1", "--warmup_steps=0", "--pipeline_images=1",
         "--levers=plain,fused_adam,plain", "--lever_steps=1", "--noinference", "--matmul_size=256",
         "--profile_steps=1", "--side_by_side_rounds=1", "--side_by_side_steps=1",
         "--precisions=off,mixed_bfloat16", f"--json={out}"],
        cwd=ROOT, timeout=1800)  # A hang guard (a slow hour took over 10 min).
    assert result.returncode == 0, result.stderr[-3000:]
    figures = json.loads(out.read_text())
    rows = [(t["name"], t["batch_size"], t["reuse_memory"]) for t in figures["training"]]
    assert rows == [("pix2pix_tf", 1, True), ("pix2pix_tf", 1, False), ("tutorial", 1, False)]
    for t in figures["training"]:
        assert t["images_per_second"] > 0 and t["peak_rss_mib"] > 100 and t["pipeline_images_per_second"] > 0
        assert t["achieved_gflops"] == pytest.approx(t["executed_gflops"] / t["step_seconds"], rel=1e-6)
        assert 0 < t["executed_gflops"] < t["step_gflops"]  # Gradients a tape computes but nothing uses.
        assert t["minor_faults_per_step"] >= 0 and (t["timed_steps"], t["warmup_steps"]) == (1, 0)
    one, system_malloc, tutorial = figures["training"]
    assert system_malloc["step_gflops"] == pytest.approx(one["step_gflops"])
    # The tutorial's step at its own 256x256 geometry: G 12.1 + 2 x D 6.4 GFLOP forward, and backward.
    assert 100 < tutorial["step_gflops"] < 130 and 80 < tutorial["executed_gflops"] < 100
    assert figures["machine"]["matmul_gflops"] > 0
    assert [lever["name"] for lever in figures["levers"]] == ["plain", "fused_adam"]
    assert figures["levers"][0]["max_loss_difference"] == 0.0
    summary = figures["summary"]
    assert summary["batch1_over_tutorial_images_per_second"] == pytest.approx(
        one["images_per_second"] / tutorial["images_per_second"])
    assert summary["reuse_memory_speedup"] == pytest.approx(system_malloc["step_seconds"] / one["step_seconds"])
    side = figures["side_by_side"]  # Real steps: the tutorial's (its own 256x256 models), ours in each precision.
    check_figures(sidebyside.SideBySide(**side), ["tutorial", "pix2pix_tf float32", "pix2pix_tf mixed_bfloat16"], 1)
    assert side["descriptions"]["pix2pix_tf mixed_bfloat16"] == "our step, --mixed_precision=mixed_bfloat16"
    assert summary["side_by_side_float32_over_tutorial"] == side["over_baseline"]["pix2pix_tf float32"]
    # The profiler's op times: convolutions and the fused Adam kernel, within the profiled step's time.
    profile = figures["profile"]
    assert {"Conv2D", "Conv2DBackpropFilter", "ResourceApplyAdam"} <= set(profile["op_milliseconds"])
    assert 0 < sum(profile["op_milliseconds"].values()) < 1.2 * 1000 * profile["step_seconds"]
    assert summary["profile_convolutions_ms_per_step"] > 0 and summary["profile_adam_update_ms_per_step"] > 0
    for line in ("fp32 matmul", "training (real input pipeline; median of timed steps after 0 warm-up steps;",
                 "speed levers", "where a batch-1 step's time goes", "training steps side by side", "summary"):
        assert line in result.stdout


def test_executed_flops_leave_out_the_gradients_nothing_uses():
    from pix2pix_tf.benchmark.machine import graph_flops

    @tf.function
    def kernel_gradient(x, kernel):
        with tf.GradientTape() as tape:
            tape.watch(kernel)
            loss = tf.reduce_sum(tf.nn.conv2d(x, kernel, 1, "SAME"))
        return tape.gradient(loss, kernel)

    graph = kernel_gradient.get_concrete_function(tf.TensorSpec([1, 8, 8, 4]), tf.TensorSpec([3, 3, 4, 5])).graph
    conv = 2 * 8 * 8 * 5 * 3 * 3 * 4
    flops = graph_flops(graph)
    # Traced: the convolution, its input gradient (unused), its kernel gradient, and the loss's sum.
    assert flops.traced == 3 * conv + 8 * 8 * 5 - 1
    # Run: only the kernel gradient. A sum's gradient is ones, so not even the forward
    # convolution is needed; the loss's value and the input gradient feed nothing returned.
    assert flops.executed == conv


def test_inference_rows_time_every_form_and_check_the_tflite_files_against_keras():
    """The benchmark's inference part (report._inference_rows, as `--tflite=float32,dynamic_int8`
    with one round asks for it), its summary ratio and its table, in this process."""
    from pix2pix_tf.benchmark import machine, report

    suite = report.SuiteConfig(trainings=[_benchmark_config("unused", 1)], tflite=("float32", "dynamic_int8"),
                               threads=1, rounds=1)
    found = report._inference_rows(suite.trainings[0], suite)
    rows = {row.name: row for row in found}
    assert set(rows) == {"keras G(x, training=False)", "keras, per-image batch statistics",
                         "SavedModel translate_float_deterministic", "TFLite float32", "TFLite dynamic_int8",
                         "TFLite float32 (moving averages, BN folded)"}
    assert all(row.latency_ms > 0 and row.latency_min_ms > 0 for row in rows.values())
    assert rows["keras G(x, training=False)"].size_mib is None
    assert rows["SavedModel translate_float_deterministic"].size_mib > 0
    folded = rows["TFLite float32 (moving averages, BN folded)"]
    assert folded.size_mib > 0 and folded.psnr_db > 60
    assert rows["TFLite float32"].psnr_db > 60 and rows["TFLite dynamic_int8"].psnr_db > 30
    info = machine.machine_info(256)
    summary = report._summary(info, [], found, None, None)
    assert summary["dynamic_int8_over_float32_size"] == pytest.approx(
        rows["TFLite dynamic_int8"].size_mib / rows["TFLite float32"].size_mib)
    results = report.SuiteResults(configuration="", machine=info, training=[], levers=[], inference=found,
                                  profile=None, side_by_side=None, summary=summary)
    assert "generator inference" in report.format_results(results)


def test_benchmark_refuses_an_unknown_lever():
    result = run_program("benchmark", "--levers=turbo")
    assert result.returncode == 1
    assert "--levers: unknown ['turbo']" in result.stderr and "Traceback" not in result.stderr


def test_benchmark_refuses_an_unknown_precision():
    result = run_program("benchmark", "--precisions=off,float8")
    assert result.returncode == 1
    assert "--precisions: unknown ['float8']" in result.stderr and "Traceback" not in result.stderr


def test_benchmark_warms_up_two_steps_unless_told_otherwise():
    """docs/performance.md: `--warmup_steps` (default 2); the suite's own default is the flag's."""
    from pix2pix_tf.benchmark import report, training

    result = subprocess.run([sys.executable, "-m", "pix2pix_tf.benchmark", "--helpfull"], cwd=ROOT,
                            capture_output=True, text=True, timeout=300)
    assert "--warmup_steps:" in result.stdout, result.stderr[-2000:]  # absl's --helpfull exits with 1.
    flag = result.stdout[result.stdout.index("--warmup_steps:"):]
    assert flag[:flag.index("(an integer)")].endswith("(default: '2')\n    "), flag[:400]
    assert report.SuiteConfig(trainings=[]).warmup_steps == training.WARMUP_STEPS == 2


@pytest.mark.parametrize("flag, message", [
    ("--steps=0", "--steps must be at least 1, got 0."), ("--rounds=0", "--rounds must be at least 1, got 0."),
    ("--side_by_side_steps=0", "--side_by_side_steps must be at least 1, got 0."),
    ("--profile_steps=-1", "--profile_steps must be 0 (none) or more, got -1."),
    ("--warmup_steps=-1", "--warmup_steps must be 0 (none) or more, got -1."),
    ("--batch_sizes=", "--batch_sizes is empty: name at least one batch size to time training at."),
    ("--tflite=float32,foo", "--tflite: unknown ['foo']; choose from float32, float16, dynamic_int8, int8."),
    ("--json=.", "--json=. is a folder; name the file to write the figures to."),
    # These two were refused only after the machine's figures (the first, after the whole suite).
    (f"--json={os.path.join(ROOT, 'README.md', 'b.json')}",
     f"--json's folder={os.path.join(ROOT, 'README.md')} is a file; it must name a folder to write into."),
    ("--dataset=nosuch", "--dataset=nosuch is not a known dataset. Known: "),
    ("--matmul_size=100000", "--matmul_size is at most 16384 (three float32 matrices of that side take 3 GiB), "
                             "got 100000.")])
def test_benchmark_refuses_counts_that_leave_nothing_to_time_before_measuring(flag, message):
    """Not minutes into the suite, where a median of no step fails."""
    result = run_program("benchmark", flag)
    assert result.returncode == 1 and f"error: {message}" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("use_bias, activation, size", [(False, None, 1), (True, "tanh", 8), (True, None, 5)])
def test_phase_transposed_conv_computes_the_transposed_conv(use_bias, activation, size):
    from pix2pix_tf.inference.tflite_lowering import phase_transposed_conv

    layer = keras.layers.Conv2DTranspose(6, 4, strides=2, padding="same", use_bias=use_bias, activation=activation,
                                         bias_initializer="random_normal")
    x = tf.random.stateless_normal([2, size, size + 2, 5], seed=[0, 1])
    expected = layer(x)
    np.testing.assert_allclose(phase_transposed_conv(layer, x).numpy(), expected.numpy(), rtol=1e-5, atol=1e-5)


def test_generator_with_phase_transposed_convs_is_the_same_generator():
    from pix2pix_tf.config import ModelConfig
    from pix2pix_tf.inference.generate import generate
    from pix2pix_tf.inference.mode import DETERMINISTIC
    from pix2pix_tf.networks.generator import build_generator

    generator = build_generator(ModelConfig(generator="unet_128", ngf=8))
    x = tf.random.stateless_uniform([1, 128, 128, 3], seed=[2, 3], minval=-1, maxval=1)
    np.testing.assert_allclose(generate(generator, x, DETERMINISTIC, phase_transposed_convs=True).numpy(),
                               generate(generator, x, DETERMINISTIC).numpy(), rtol=1e-4, atol=1e-5)


def test_an_unknown_tflite_variant_is_refused_not_converted_as_float32():
    """The benchmark timed `--tflite=foo` as a float32 file named foo: the converter now names it."""
    from pix2pix_tf.export.config import ExportError
    from pix2pix_tf.export.tflite import convert_tflite

    with pytest.raises(ExportError, match=r"^Unknown TFLite variant 'foo'; the variants are float32, float16, "):
        convert_tflite("/nonexistent", "foo", None, "float32")
