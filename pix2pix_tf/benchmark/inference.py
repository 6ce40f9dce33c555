"""Generator latency at batch 1: the Keras model, the exported SavedModel and each TFLite file.

The files are made by the same functions export.py uses (`pix2pix_tf.export.saved_model` and
`pix2pix_tf.export.tflite`), so what is timed is what is shipped.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from typing import Callable, Iterator, Optional

import keras
import numpy as np
import tensorflow as tf

from pix2pix_tf.evaluation.metrics import pooled_psnr
from pix2pix_tf.export import measure, saved_model, tflite
from pix2pix_tf.inference import artifacts, generate
from pix2pix_tf.inference.mode import DETERMINISTIC, InferenceMode
from pix2pix_tf.inference.tflite_runner import TFLiteModel

PAPER_NORM = DETERMINISTIC  # Per-image batch statistics (the paper), no dropout.
MOVING_AVERAGES = InferenceMode(dropout=False, batch_statistics=False)


@dataclasses.dataclass
class LatencyRow:
    name: str
    latency_ms: float  # Median of the interleaved rounds.
    latency_min_ms: float
    size_mib: Optional[float] = None  # On disk; None for the in-memory Keras model.
    psnr_db: Optional[float] = None  # Against the SavedModel / Keras output of the same normalisation.


def _dir_size_mib(path: str) -> float:
    total = 0
    for root, _, files in os.walk(path):
        total += sum(os.path.getsize(os.path.join(root, name)) for name in files)
    return total / 2 ** 20


def measure_inference(generator: keras.Model, image_size: int, input_nc: int, multiple: int,
                      variants: tuple[str, ...], threads: int, rounds: int,
                      calibration: np.ndarray) -> list[LatencyRow]:
    """Latency of each form of `generator` on one image, timed in interleaved rounds."""
    image = np.random.default_rng(0).uniform(-1, 1, (1, image_size, image_size, input_nc)).astype(np.float32)
    x = tf.constant(image)
    calls: dict[str, Callable[[], np.ndarray]] = {
        "keras G(x, training=False)": lambda: generator(x, training=False).numpy(),
        "keras, per-image batch statistics": lambda: generate.generate(generator, x, PAPER_NORM).numpy(),
    }
    rows: dict[str, LatencyRow] = {}
    with tempfile.TemporaryDirectory(prefix="pix2pix-bench-") as scratch:
        saved_model_dir = os.path.join(scratch, "saved_model")
        saved_model.build_endpoints(generator, PAPER_NORM, image_size, input_nc, multiple).save(saved_model_dir)
        signature = tf.saved_model.load(saved_model_dir).signatures[artifacts.SIGNATURE_FLOAT_DETERMINISTIC]
        calls["SavedModel translate_float_deterministic"] = (
            lambda: signature(**{artifacts.INPUT_NAME: x})[artifacts.OUTPUT_FLOAT].numpy())
        sizes = {"SavedModel translate_float_deterministic": _dir_size_mib(saved_model_dir)}
        references = {PAPER_NORM: calls["SavedModel translate_float_deterministic"](),
                      MOVING_AVERAGES: calls["keras G(x, training=False)"]()}

        def representative() -> Iterator[list[np.ndarray]]:
            for example in calibration:
                yield [example[None].astype(np.float32)]

        forms = [(PAPER_NORM, variant) for variant in variants] + [(MOVING_AVERAGES, "float32")]
        for mode, variant in forms:
            label = f"TFLite {variant}" + ("" if mode is PAPER_NORM else " (moving averages, BN folded)")
            archive_dir = os.path.join(scratch, "tflite_" + ("paper" if mode is PAPER_NORM else "moving"))
            if not os.path.exists(archive_dir):
                tflite.tflite_endpoints(generator, mode, image_size, input_nc).save(archive_dir)
            content = tflite.convert_tflite(archive_dir, variant, representative, "float32")
            model = TFLiteModel(content, threads=threads)
            calls[label] = lambda m=model: m(image)
            sizes[label] = len(content) / 2 ** 20
            rows[label] = LatencyRow(label, 0.0, 0.0, sizes[label], pooled_psnr(references[mode], model(image)))
        timings = measure.benchmark(calls, rounds=rounds)
    result = []
    for name, (median, fastest) in timings.items():
        row = rows.get(name) or LatencyRow(name, 0.0, 0.0, sizes.get(name))
        row.latency_ms, row.latency_min_ms = median, fastest
        result.append(row)
    return result
