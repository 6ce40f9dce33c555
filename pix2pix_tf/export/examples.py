"""The images an export is checked on (held-out pairs of the run) and calibrated with (training
inputs, for full int8), and what the model card says about the data they came from."""

from __future__ import annotations

import dataclasses
from typing import Optional

import numpy as np
import tensorflow as tf
from absl import logging

from pix2pix_tf.config import TrainConfig
from pix2pix_tf.data import pipeline
from pix2pix_tf.errors import DatasetError
from pix2pix_tf.export.config import ExportConfig, TrainingInputs


@dataclasses.dataclass(frozen=True)
class Examples:
    images: np.ndarray  # Held-out inputs every artifact is checked on, [N, S, S, C_in] in [-1, 1].
    targets: Optional[np.ndarray]  # Their targets (the model card's held-out metrics); None when synthetic.
    calibration: Optional[np.ndarray]  # Training inputs (`TrainingInputs`), for full-int8 calibration.
    source: str  # Where `images` came from, for the messages.
    num_train: Optional[int] = None  # Training pairs of the run's dataset (None: dataset unavailable).
    held_out_split: Optional[str] = None


def load_examples(train: TrainConfig, config: ExportConfig, image_size: int,
                  training: Optional[TrainingInputs]) -> Examples:
    """Held-out pairs for the checks and, if a target asks for `training` inputs, those for the
    int8 calibration; synthetic noise (and no targets) when the dataset is gone and no training
    input is needed."""
    data_config = dataclasses.replace(train.data, data_dir=config.data_dir or train.data.data_dir)
    nc = (train.model.input_nc, train.model.output_nc)
    try:
        dataset = pipeline.load_paired_dataset(data_config)
        pairs = pipeline.first_held_out_pairs(dataset, data_config, *nc, config.check_examples)
        if len(pairs) < config.check_examples:
            logging.warning("%d held-out images asked for (--check_examples), the run's %s split has %d: checking on "
                            "those.", config.check_examples, dataset.held_out_split, len(pairs))
        calibration = None
        if training is not None:
            count = min(training.count, dataset.num_train)  # More would repeat them, in memory at once.
            if count < training.count:
                logging.warning("%d training images asked for, the run's dataset has %d: using each once.",
                                training.count, count)
            stream = pipeline.train_stream(dataset, data_config, *nc, seed=train.run.seed or 0).unbatch()
            calibration = np.stack([a for a, _ in stream.take(count).as_numpy_iterator()])
    except DatasetError as e:
        if training is not None:
            raise DatasetError(f"{training.need}: {e} Pass --data_dir, or {training.way_out}.") from e
        if config.data_dir is not None:  # Asked for: checking on noise instead would hide the mistake.
            raise DatasetError(f"{e} (--data_dir names where the run's held-out images are read: correct it, or "
                               "leave it out to read the run's own)") from e
        logging.warning("The run's dataset is not available (%s): checking on synthetic images instead.", e)
        rng = np.random.default_rng(0)
        synthetic = rng.uniform(-1, 1, (config.check_examples, image_size, image_size, nc[0])).astype(np.float32)
        return Examples(synthetic, None, None, "synthetic noise (dataset unavailable)")
    return Examples(
        images=_resized(np.stack([a for a, _ in pairs]), image_size),
        targets=_resized(np.stack([b for _, b in pairs]), image_size),
        calibration=None if calibration is None else _resized(calibration, image_size),
        source=f"{len(pairs)} held-out images of {data_config.dataset}",
        num_train=dataset.num_train, held_out_split=dataset.held_out_split)


def _resized(images: np.ndarray, size: int) -> np.ndarray:
    if images.shape[1:3] == (size, size):
        return images
    return np.stack([pipeline.resize(tf.constant(image), size).numpy() for image in images])
