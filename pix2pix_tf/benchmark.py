"""Benchmark: is the input pipeline ever what training waits for?

    python -m pix2pix_tf.benchmark                       # reference settings: 256x256, batch 1
    python -m pix2pix_tf.benchmark --dataset=folder:/data/facades --json=bench.json

Prints the input pipeline's images/second (decode, the reference's jitter, batch, prefetch)
beside the training step's images/second for the same configuration, and their ratio.
"""

from __future__ import annotations

import dataclasses
import json
import os
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("dataset", "shapes", "Dataset to read (as train.py's --dataset).")
flags.DEFINE_string("data_dir", None, "tensorflow-datasets data_dir.")
flags.DEFINE_string("generator", "unet_256", "Generator of the timed training step.")
flags.DEFINE_integer("crop_size", 256, "Training image size.")
flags.DEFINE_integer("load_size", 286, "Resize before the random crop.")
flags.DEFINE_integer("batch_size", 1, "Global batch size.")
flags.DEFINE_integer("pipeline_images", 400, "Images timed through the pipeline.")
flags.DEFINE_integer("train_steps", 10, "Training steps timed (after 2 warm-up steps).")
flags.DEFINE_string("json", None, "Also write the figures to this JSON file.")


@dataclasses.dataclass
class PipelineVsStep:
    pipeline_images_per_second: float
    step_seconds_median: float
    step_images_per_second: float

    @property
    def ratio(self) -> float:
        return self.pipeline_images_per_second / self.step_images_per_second


def time_pipeline(stream, images: int, batch_size: int) -> float:
    """Images/second of a tf.data stream, after it has filled its prefetch buffers."""
    iterator = iter(stream)
    for _ in range(5):
        next(iterator)
    batches = max(1, images // batch_size)
    start = time.perf_counter()
    for _ in range(batches):
        next(iterator)
    return batches * batch_size / (time.perf_counter() - start)


def time_train_step(gan, iterator, steps: int, batch_size: int) -> tuple[float, float]:
    """(median seconds per step, images/second), each step waited for to the end."""
    def step() -> None:
        for value in gan.train_step(iterator).values():
            float(value)  # fetching the losses waits for the step to finish

    for _ in range(2):  # trace and warm up
        step()
    durations = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        durations.append(time.perf_counter() - start)
    median = statistics.median(durations)
    return median, batch_size / median


def main(argv: list[str]) -> int:
    del argv
    from pix2pix_tf import config as cfg
    from pix2pix_tf import data
    from pix2pix_tf.distribute import make_strategy
    from pix2pix_tf.errors import Pix2pixError
    from pix2pix_tf.generator import size_multiple
    from pix2pix_tf.model import Pix2Pix

    config = cfg.TrainConfig(
        model=cfg.ModelConfig(generator=FLAGS.generator),
        data=cfg.DataConfig(dataset=FLAGS.dataset, data_dir=FLAGS.data_dir, load_size=FLAGS.load_size,
                            crop_size=FLAGS.crop_size, batch_size=FLAGS.batch_size),
        run=cfg.RunConfig(seed=0)).validate()
    try:
        dataset = data.load_paired_dataset(config.data)
    except Pix2pixError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    multiple = size_multiple(config.model.generator)

    def stream():
        return data.train_stream(dataset, config.data, 3, 3, seed=0, multiple=multiple)

    pipeline = time_pipeline(stream(), FLAGS.pipeline_images, config.data.batch_size)
    strategy = make_strategy(config.run)
    gan = Pix2Pix(config, strategy, dataset.num_train / config.data.batch_size)
    iterator = iter(strategy.experimental_distribute_dataset(stream()))
    median, step_rate = time_train_step(gan, iterator, FLAGS.train_steps, config.data.batch_size)
    result = PipelineVsStep(pipeline, median, step_rate)

    print(f"configuration        {config.model.generator} + basic D, {config.data.crop_size}x{config.data.crop_size} "
          f"(resize {config.data.load_size}, crop, flip), batch {config.data.batch_size}, {dataset.name}")
    print(f"input pipeline       {result.pipeline_images_per_second:10.1f} images/s")
    print(f"training step        {result.step_images_per_second:10.2f} images/s "
          f"({result.step_seconds_median:.3f} s/step, median of {FLAGS.train_steps})")
    verdict = "ok" if result.ratio >= 10 else "TOO SLOW: training waits for data"
    print(f"pipeline / step      {result.ratio:10.1f}x  (target >= 10x: {verdict})")
    if FLAGS.json:
        with open(FLAGS.json, "w") as f:
            json.dump({**dataclasses.asdict(result), "ratio": result.ratio,
                       "config": config.to_dict()}, f, indent=2)
    return 0


def run() -> None:
    """Console entry point `pix2pix-benchmark`."""
    app.run(main)


if __name__ == "__main__":
    run()
