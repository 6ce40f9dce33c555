"""The first stage of an evaluation: what exactly to evaluate, decided before any image is run.

`make_plan(EvalConfig)` resolves the model its `ModelRequest` names, the training run
whose data it is evaluated on, that run's dataset, split and test-time preprocessing, which
metrics apply (the FCN-score needs labels and a segmenter, FID local weights) and the output
folder. What a user can get wrong is checked before the dataset is read, and everything else
before the first image, so that a mistake is answered at once rather than after a segmenter
has been trained.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Callable, Optional

import tensorflow as tf
from absl import logging

from pix2pix_tf.config import DataConfig, TrainConfig
from pix2pix_tf.data import pipeline
from pix2pix_tf.errors import ConfigError
from pix2pix_tf.evaluation import metrics, segmentation
from pix2pix_tf.evaluation.config import EvalConfig
from pix2pix_tf.inference.sources import ModelSource
from pix2pix_tf.inference.translator import Translator
from pix2pix_tf.workdir import Workdir


@dataclasses.dataclass
class EvalPlan:
    """Everything the per-image loop, the summary and the files need."""

    config: EvalConfig
    source: ModelSource
    translator: Translator
    workdir: str  # The training run whose data is evaluated.
    dataset_name: str
    split: str
    direction: str
    examples: Any  # tf.data.Dataset of (input, target, class map; [0, 0] without labels).
    image_hw: tuple[int, int]
    total: int  # Images the split gives (for the progress bar).
    num_samples: int  # Dropout samples per image (1 for a deterministic model).
    scheme: Any = None  # segmentation.LabelScheme when the FCN-score is computed.
    segment: Optional[Callable] = None
    segmenter_path: Optional[str] = None
    feature_fn: Optional[Callable] = None  # Inception features for FID.
    output_dir: str = ""


def split_pairs(dataset, data_config: DataConfig, split: str, input_nc: int, output_nc: int, limit: Optional[int],
                multiple: int, native: bool = False):
    """(input, target) of any split with the test-time preprocessing: `pipeline.held_out_pairs` on a
    copy of the dataset whose held-out split is `split`. `native`: as decoded, no resize (every
    source gives the target at its input's size: a folder's B is resized to its A)."""
    if native:
        records = dataset.records(split)
        records = records if limit is None else records.take(limit)
        as_pair = pipeline.traced_as_written(lambda *record: dataset.input_target(record, input_nc, output_nc))
        return records.map(as_pair)
    return pipeline.held_out_pairs(dataclasses.replace(dataset, held_out_split=split), data_config, input_nc, output_nc,
                               limit=limit, multiple=multiple)


def first_input_size(dataset, data_config: DataConfig, split: str, input_nc: int, output_nc: int, multiple: int,
                     native: bool = False) -> tuple[int, int]:
    """(height, width) of the first input `split_pairs` gives, prepared eagerly by the same ops:
    for one image, instantiating the pipeline's map costs more than running its ops."""
    if native:
        record = next(iter(dataset.records(split).take(1)))
        first_input = dataset.input_target(tuple(record), input_nc, output_nc)[0]
    else:
        held_out = dataclasses.replace(dataset, held_out_split=split)
        first_input = pipeline.first_held_out_pairs(held_out, data_config, input_nc, output_nc, 1, multiple)[0][0]
    return int(first_input.shape[0]), int(first_input.shape[1])


def with_labels(pairs, labels):
    """Zips pairs with their class maps, resized (nearest) to the pair's size."""

    @pipeline.traced_as_written
    def attach(pair, label):
        return pair[0], pair[1], segmentation.resize_labels(label, tf.shape(pair[1])[:2])

    return tf.data.Dataset.zip((pairs, labels)).map(attach)


def make_plan(config: EvalConfig) -> EvalPlan:
    """The plan of `config`; see the module docstring."""
    config.validate()
    source, workdir = _model_and_run(config)
    train = source.train or TrainConfig.load(workdir)
    use_fid = config.fid or bool(config.inception_weights)
    if use_fid and not config.inception_weights:
        metrics.inception_features(None)  # Raises the explanation.
    data_config = dataclasses.replace(train.data, data_dir=config.data_dir or train.data.data_dir)
    direction = data_config.direction
    if source.direction is not None and source.direction != direction:
        raise ConfigError(f"{source.path} translates {source.direction} (its export records it), but the run "
                          f"{workdir} gives {direction} pairs: its outputs would be compared with the wrong images. "
                          "Pass the run it was trained on with --workdir.")
    scheme = _fcn_scheme(config, data_config.dataset, direction)
    feature_fn = metrics.inception_features(config.inception_weights) if use_fid else None
    translator, num_samples = _open_model(config, source, train, workdir, data_config.max_pixels)

    dataset = pipeline.load_paired_dataset(data_config)
    split = config.split or dataset.held_out_split
    if config.split is None and split == dataset.train_split:  # Training's fallback, not evaluation's.
        raise ConfigError(f"{dataset.name} has no test or val split to evaluate on: metrics on the training pairs do "
                          "not show how the model does on images it has not seen. Pass --split=train for them anyway.")
    if not dataset.split_sizes.get(split):
        raise ConfigError(f"--split={split}: {dataset.name} has splits "
                          f"{', '.join(f'{k} ({v})' for k, v in sorted(dataset.split_sizes.items()))}.")
    nc = (train.model.input_nc, train.model.output_nc)
    pairs = split_pairs(dataset, data_config, split, *nc, config.num_examples, train.model.size_multiple,
                        native=config.model.native_size)
    image_hw = first_input_size(dataset, data_config, split, *nc, train.model.size_multiple,
                                native=config.model.native_size)
    if not source.spec.any_size and image_hw != (translator.image_size, translator.image_size):
        raise ConfigError(f"{source.path} is fixed to {translator.image_size}x{translator.image_size} images; the "
                          f"run's test-time preprocessing gives {image_hw[0]}x{image_hw[1]}. Export it again with "
                          f"--image_size={image_hw[0]}.")
    plan = EvalPlan(config, source, translator, workdir, dataset.name, split, direction, pairs, image_hw,
                    min(config.num_examples or dataset.split_sizes[split], dataset.split_sizes[split]), num_samples,
                    feature_fn=feature_fn)
    _attach_labels(plan, scheme, dataset, data_config, nc, train.model.size_multiple)
    mode = (("deterministic" if translator.deterministic else "paper")
            + ("" if translator.mode.batch_statistics else "_moving_averages")
            + ("_native" if config.model.native_size else ""))
    plan.output_dir = config.output_dir or os.path.join(Workdir(workdir).evaluations,
                                                        f"{split}_{source.label}_{mode}")
    return plan


def _model_and_run(config: EvalConfig) -> tuple[ModelSource, str]:
    """The model, and the training run whose data it is evaluated on: --workdir, or the run
    an export was made from."""
    try:
        source = config.model.resolve()
    except ConfigError as e:
        if config.model.workdir:
            raise
        raise ConfigError(f"{e} Nor can the training run it comes from be told: pass --workdir, whose config.json "
                          "gives the dataset, direction and preprocessing.") from e
    if config.model.workdir:
        return source, config.model.workdir
    workdir = source.run_workdir
    if workdir is None:
        raise ConfigError("Cannot tell which training run this model comes from (its export does not name one that "
                          "still exists): pass --workdir, whose config.json gives the dataset, direction and "
                          "preprocessing.")
    logging.info("Evaluating on the data of the run the model was exported from: %s", workdir)
    return source, workdir


def _fcn_scheme(config: EvalConfig, dataset_name: str, direction: str):
    """The label scheme of the FCN-score, or None where it is not computed; its requirements
    are checked before anything slow happens."""
    if config.fcn is False or config.model.native_size:
        if config.model.native_size:
            logging.info("No FCN-score at native size: its segmenter runs at one fixed size.")
        return None
    try:
        scheme = segmentation.label_scheme(dataset_name)
        segmentation.check_direction(scheme, direction)
        if config.segmenter is None and scheme.palette is not None:
            raise segmentation.SegmentationError(
                f"FCN-score on {dataset_name} needs a segmentation SavedModel trained on real photos "
                f"(--segmenter=PATH; {segmentation.SEGMENTER_CONTRACT}); the package trains one itself only "
                "for the embedded 'shapes' dataset.")
    except segmentation.SegmentationError as e:
        if config.fcn:
            raise
        logging.info("No FCN-score: %s", e)
        return None
    return scheme


def _open_model(config: EvalConfig, source: ModelSource, train: TrainConfig, workdir: str,
                max_pixels: int) -> tuple[Translator, int]:
    """The translator in the requested mode, and the number of dropout samples it makes sense to draw."""
    request = dataclasses.replace(config.model, seed=config.seed)
    translator = request.translator(source, max_pixels=max_pixels)
    if translator.deterministic and not request.mode.deterministic:
        logging.warning("%s has no dropout: evaluating it deterministically.", translator.description)
    num_samples = config.num_samples
    if translator.deterministic and num_samples > 1:
        logging.warning("The model is deterministic here: --num_samples=%d would repeat one output; using 1.",
                        num_samples)
        num_samples = 1
    input_nc, output_nc = train.model.input_nc, train.model.output_nc
    if translator.input_nc != input_nc or translator.output_nc != output_nc:
        raise ConfigError(f"The model takes {translator.input_nc} and gives {translator.output_nc} channel(s); the "
                          f"run in {workdir} has {input_nc} -> {output_nc}: is it the right --workdir?")
    return translator, num_samples


def _attach_labels(plan: EvalPlan, scheme, dataset, data_config: DataConfig, nc: tuple[int, int],
                   multiple: int) -> None:
    """Class maps beside the pairs and the segmenter (trained and cached for `shapes`), for the
    FCN-score; empty class maps without it."""
    config = plan.config
    if scheme is None:
        plan.examples = plan.examples.map(pipeline.traced_as_written(lambda x, y: (x, y, tf.zeros([0, 0], tf.int32))))
        return
    labels = segmentation.split_labels(scheme, dataset, plan.split, data_config.data_dir)
    if config.num_examples is not None:
        labels = labels.take(config.num_examples)
    plan.examples = with_labels(plan.examples, labels)
    if config.segmenter:
        path = config.segmenter
        segment = segmentation.load_segmenter(path, config.segmenter_input, scheme.num_classes)
    else:
        spec = segmentation.SegmenterSpec(dataset=data_config.dataset, image_size=plan.image_hw,
                                          direction=plan.direction, num_train=dataset.num_train,
                                          steps=config.segmenter_steps)

        def real_pairs():
            train_pairs = split_pairs(dataset, data_config, dataset.train_split, *nc, None, multiple)
            train_labels = segmentation.split_labels(scheme, dataset, dataset.train_split, data_config.data_dir)
            target_and_label = pipeline.traced_as_written(lambda x, y, label: (y, label))
            return with_labels(train_pairs, train_labels).map(target_and_label)

        path, segment = segmentation.load_cached_segmenter(spec, real_pairs, scheme.num_classes,
                                                           config.segmenter_cache, config.segmenter_input)
    plan.scheme, plan.segmenter_path, plan.segment = scheme, path, segment
