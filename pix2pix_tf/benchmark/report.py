"""The benchmark suite: runs every measurement in order and prints the figures side by side."""

from __future__ import annotations

import dataclasses
from typing import Callable, Optional

import numpy as np

from pix2pix_tf.benchmark import machine, sidebyside, training
from pix2pix_tf.benchmark.inference import measure_inference
from pix2pix_tf.benchmark.processes import in_fresh_process
from pix2pix_tf.config import MIXED_PRECISION, ConfigError, TrainConfig
from pix2pix_tf.config_checks import check_positive
from pix2pix_tf.inference.artifacts import TFLITE_VARIANTS
from pix2pix_tf.networks.generator import build_generator

LEVER_NAMES = tuple(training.LEVERS)


# The machine's fp32 matmul: far past the side where GFLOP/s stop growing, far below what would
# exhaust the memory or take hours.
MAX_MATMUL_SIZE = 16384


@dataclasses.dataclass
class SuiteConfig:
    trainings: list[TrainConfig]  # One per batch size; the first also sets the inference model.
    steps: int = 10
    pipeline_images: int = 200
    levers: tuple[str, ...] = LEVER_NAMES
    lever_steps: int = 6
    inference: bool = True
    tflite: tuple[str, ...] = ("float32", "float16", "dynamic_int8", "int8")
    threads: int = 2
    rounds: int = 15
    matmul_size: int = 4096
    tutorial: bool = True  # Also time the TensorFlow tutorial's step at batch 1, side by side.
    compare_allocator: bool = True  # Also time batch 1 with --noreuse_memory.
    profile_steps: int = 3  # Batch-1 steps traced by TensorFlow's profiler; 0: none.
    side_by_side_rounds: int = 5  # Interleaved rounds of the tutorial's step against ours; 0: none.
    side_by_side_steps: int = 3  # Steps of each participant per round.
    precisions: tuple[str, ...] = ("off",)  # Our step's --mixed_precision values timed side by side.
    warmup_steps: int = training.WARMUP_STEPS  # Untimed steps of each row, lever and participant first.

    def validate(self) -> SuiteConfig:
        """Refuses what would fail only after minutes of measuring (no step to time, no round)."""
        check_positive(steps=self.steps, pipeline_images=self.pipeline_images, lever_steps=self.lever_steps,
                       threads=self.threads, rounds=self.rounds, matmul_size=self.matmul_size,
                       side_by_side_steps=self.side_by_side_steps)
        if self.matmul_size > MAX_MATMUL_SIZE:
            raise ConfigError(f"--matmul_size is at most {MAX_MATMUL_SIZE} (three float32 matrices of that side "
                              f"take {3 * 4 * MAX_MATMUL_SIZE**2 // 2**30} GiB), got {self.matmul_size}.")
        for name in ("warmup_steps", "profile_steps", "side_by_side_rounds"):
            if getattr(self, name) < 0:
                raise ConfigError(f"--{name} must be 0 (none) or more, got {getattr(self, name)}.")
        if not self.trainings:
            raise ConfigError("--batch_sizes is empty: name at least one batch size to time training at.")
        for name, given, known in (("levers", self.levers, LEVER_NAMES), ("precisions", self.precisions,
                                                                          MIXED_PRECISION),
                                   ("tflite", self.tflite, TFLITE_VARIANTS)):
            unknown = [value for value in given if value not in known]
            if unknown:
                raise ConfigError(f"--{name}: unknown {unknown}; choose from {', '.join(known)}.")
        return self


@dataclasses.dataclass
class SuiteResults:
    configuration: str
    machine: machine.MachineInfo
    training: list[training.TrainingFigures]
    levers: list[training.LeverFigures]
    inference: list  # LatencyRow
    profile: Optional[training.StepProfile]
    side_by_side: Optional[sidebyside.SideBySide]
    summary: dict[str, Optional[float]]


def _inference_rows(config: TrainConfig, suite: SuiteConfig) -> list:
    """In a fresh process, after training's: latency is not measured on a heap training grew."""
    generator = build_generator(config.model)  # Latency does not depend on the weights' values.
    size, channels = config.data.crop_size, config.model.input_nc
    calibration = np.random.default_rng(1).uniform(-1, 1, (8, size, size, channels)).astype(np.float32)
    return measure_inference(generator, size, channels, config.model.size_multiple, suite.tflite,
                             suite.threads, suite.rounds, calibration)


def batch_one(suite: SuiteConfig) -> TrainConfig:
    """The first configuration at batch 1: the levers', the profile's and the tutorial's."""
    first = suite.trainings[0]
    return dataclasses.replace(first, data=dataclasses.replace(first.data, batch_size=1))


def training_rows(suite: SuiteConfig) -> list[tuple[Callable[..., training.TrainingFigures], TrainConfig]]:
    """The training rows in the order they print: (measurement, its configuration)."""
    one = batch_one(suite)
    measurements = [(training.measure_training, config) for config in suite.trainings]
    if suite.compare_allocator:
        measurements.append((training.measure_training,
                             dataclasses.replace(one, run=dataclasses.replace(one.run, reuse_memory=False))))
    if suite.tutorial:
        measurements.append((training.measure_tutorial, one))
    return measurements


def run_suite(suite: SuiteConfig) -> SuiteResults:
    info = in_fresh_process(machine.machine_info, suite.matmul_size)
    first, one = suite.trainings[0], batch_one(suite)
    figures = [in_fresh_process(measure, config, suite.steps, suite.pipeline_images, suite.warmup_steps,
                                spawned=True)
               for measure, config in training_rows(suite)]
    levers = []
    if suite.levers:
        levers = in_fresh_process(training.compare_levers, one, suite.lever_steps, suite.levers, suite.warmup_steps)
    profile = in_fresh_process(training.profile_step, one, suite.profile_steps) if suite.profile_steps else None
    side_by_side = None
    if suite.side_by_side_rounds:
        side_by_side = training.tutorial_against_ours(first, suite.precisions, suite.side_by_side_rounds,
                                                      suite.side_by_side_steps, suite.warmup_steps)
    rows = in_fresh_process(_inference_rows, first, suite) if suite.inference else []
    model = first.model
    return SuiteResults(
        configuration=(f"{model.generator} (ngf {model.ngf}) + {model.discriminator} D (ndf {model.ndf}), "
                       f"{model.norm} norm, {first.data.crop_size}x{first.data.crop_size}, {first.data.dataset}, "
                       f"--mixed_precision={first.run.mixed_precision}" + (", XLA" if first.run.jit_compile else "")),
        machine=info, training=figures, levers=levers, inference=rows, profile=profile, side_by_side=side_by_side,
        summary=_summary(info, figures, rows, profile, side_by_side))


def _find(rows: list, name: str):
    return next((row for row in rows if row.name == name), None)


def _summary(info: machine.MachineInfo, figures: list[training.TrainingFigures], rows: list,
             profile: Optional[training.StepProfile], side_by_side: Optional[sidebyside.SideBySide]) -> dict:
    """The ratios the speed targets of docs/performance.md are stated in."""
    summary: dict[str, Optional[float]] = {"matmul_gflops": info.matmul_gflops}
    ours = {f.batch_size: f for f in figures if f.name == "pix2pix_tf" and f.reuse_memory}
    for f in ours.values():
        summary[f"batch{f.batch_size}_images_per_second"] = f.images_per_second
        summary[f"batch{f.batch_size}_model_flop_utilisation"] = f.achieved_gflops / info.matmul_gflops
        summary[f"batch{f.batch_size}_peak_rss_gib"] = f.peak_rss_mib / 1024
    if 1 in ours and 4 in ours:
        summary["batch4_over_batch1_images_per_second"] = ours[4].images_per_second / ours[1].images_per_second
    tutorial = next((f for f in figures if f.name == "tutorial"), None)
    system_malloc = next((f for f in figures if f.name == "pix2pix_tf" and not f.reuse_memory), None)
    if 1 in ours and tutorial:
        summary["tutorial_images_per_second"] = tutorial.images_per_second
        summary["tutorial_model_flop_utilisation"] = tutorial.achieved_gflops / info.matmul_gflops
        summary["batch1_over_tutorial_images_per_second"] = ours[1].images_per_second / tutorial.images_per_second
    if 1 in ours and system_malloc:
        summary["reuse_memory_speedup"] = system_malloc.step_seconds / ours[1].step_seconds
    if profile:
        for category, ms in profile.category_milliseconds().items():
            summary[f"profile_{category.replace(' ', '_').lower()}_ms_per_step"] = ms
    if side_by_side:
        for name, ratio in side_by_side.over_baseline.items():
            if name != side_by_side.baseline:
                summary[f"side_by_side_{name.split()[-1]}_over_tutorial"] = ratio
    keras_row, f32, dyn = (_find(rows, "keras G(x, training=False)"), _find(rows, "TFLite float32"),
                           _find(rows, "TFLite dynamic_int8"))
    folded = _find(rows, "TFLite float32 (moving averages, BN folded)")
    if keras_row and f32:
        summary["tflite_float32_over_keras_latency"] = f32.latency_ms / keras_row.latency_ms
    if keras_row and folded:
        summary["tflite_float32_folded_over_keras_latency"] = folded.latency_ms / keras_row.latency_ms
    if f32 and dyn:
        summary["dynamic_int8_over_float32_size"] = dyn.size_mib / f32.size_mib
    return summary


def format_results(results: SuiteResults) -> str:
    m = results.machine
    lines = [
        f"configuration   {results.configuration}",
        f"machine         {m.cpu}, {m.cores} cores, TensorFlow {m.tensorflow}, oneDNN {'on' if m.onednn else 'off'}",
        f"CPU features    {' '.join(m.cpu_features) or 'none of ' + ' '.join(machine.CPU_FEATURES)}",
        f"fp32 matmul     {m.matmul_gflops:8.1f} GFLOP/s  ({m.matmul_size}x{m.matmul_size}, median; best "
        f"{m.matmul_gflops_best:.1f})",
        "",
        "training (real input pipeline; median of timed steps after "
        f"{results.training[0].warmup_steps if results.training else training.WARMUP_STEPS} warm-up steps; "
        "each row its own process)",
        f"  {'step':<34} {'batch':>5} {'images/s':>9} {'s/step':>8} {'GFLOP traced/run':>17} {'GFLOP/s':>8} {'MFU':>6} "
        f"{'pipeline img/s':>15} {'peak RSS':>10} {'faults/step':>12}",
    ]
    for f in results.training:
        label = {"tutorial": "TensorFlow tutorial (tutorial.py)"}.get(
            f.name, "pix2pix_tf" + ("" if f.reuse_memory else ", --noreuse_memory"))
        lines.append(f"  {label:<34} {f.batch_size:5d} {f.images_per_second:9.3f} {f.step_seconds:8.3f} "
                     f"{f.step_gflops:8.1f} /{f.executed_gflops:6.1f} {f.achieved_gflops:8.1f} "
                     f"{f.achieved_gflops / m.matmul_gflops:6.1%} "
                     f"{f.pipeline_images_per_second:15.1f} {f.peak_rss_mib / 1024:7.2f} GiB "
                     f"{f.minor_faults_per_step:12.0f}")
    if results.levers:
        lines += ["", "speed levers at batch 1 (timed in turns on the same batches)",
                  f"  {'lever':<11} {'s/step':>8} {'min':>7} {'vs plain':>9} {'max |loss diff|':>16}  what"]
        plain = results.levers[0].step_seconds
        for lever in results.levers:
            lines.append(f"  {lever.name:<11} {lever.step_seconds:8.3f} {lever.step_seconds_min:7.3f} "
                         f"{plain / lever.step_seconds:8.2f}x {lever.max_loss_difference:16.2e}  {lever.description}")
    if results.profile:
        profile = results.profile
        lines += ["", f"where a batch-1 step's time goes (TensorFlow profiler, ops run one at a time; step "
                      f"{profile.step_seconds:.3f} s with the profiler on)"]
        lines += [f"  {category:<24} {ms:7.1f} ms" for category, ms in profile.category_milliseconds().items()]
        lines += ["  largest op types: " + ", ".join(f"{op} {ms:.1f}" for op, ms in
                                                   list(profile.op_milliseconds.items())[:8])]
    if results.side_by_side:
        lines += [""] + format_side_by_side(results.side_by_side)
    if results.inference:
        lines += ["", "generator inference, batch 1 (median (min) of interleaved rounds)",
                  f"  {'form':<46} {'latency ms':>16} {'size MiB':>9} {'PSNR dB':>8}"]
        for row in results.inference:
            size = "" if row.size_mib is None else f"{row.size_mib:9.1f}"
            psnr = "" if row.psnr_db is None else f"{row.psnr_db:8.1f}"
            lines.append(f"  {row.name:<46} {row.latency_ms:8.1f} ({row.latency_min_ms:5.1f}) {size:>9} {psnr:>8}")
    lines += ["", "summary"] + [f"  {k:<44} {v:.3f}" for k, v in results.summary.items() if v is not None]
    return "\n".join(lines)


def format_side_by_side(s: sidebyside.SideBySide) -> list[str]:
    lines = [f"training steps side by side at batch 1 ({s.rounds} interleaved rounds of {s.steps_per_round} steps "
             f"each, one process per step; median over rounds of each round's median; load average "
             f"{s.load_average[0]:.2f} before, {s.load_average[-1]:.2f} after)",
             f"  {'step':<26} {'s/step':>7} {'images/s':>9} {'x tutorial':>11}  per round  (what)"]
    for name, seconds in s.median_seconds.items():
        rounds = " ".join(f"{r:.2f}" for r in s.round_over_baseline[name])
        lines.append(f"  {name:<26} {seconds:7.3f} {1 / seconds:9.3f} {s.over_baseline[name]:10.3f}x  {rounds}  "
                     f"({s.descriptions[name]})")
    return lines
