"""Export of a trained generator: the registered targets (`registry.TARGETS`) run in order.

`export(ExportConfig(...))` is what `export.py` runs. The SavedModel goes to
`<export_dir>/<model_name>/<version>/` (TensorFlow Serving's layout), every other artifact to
`<export_dir>/<format>/<model_name>/<version>/`, all under one version number; each target's
module says what it writes, and docs/serving.md and the format's own page describe it.

This module does what every target shares: it resolves and checks each target's options
(`target.Target`) before any work, finds the run, the export folder (`versions`) and the
version, loads G and the check images (`examples`), and then lets each enabled target write,
check and publish its artifact, the SavedModel first; each returns a `target.Published`
record, which `ExportResult` holds. The names that clients read are in `inference.artifacts`
(TensorFlow-free).
"""

from __future__ import annotations

import dataclasses
from typing import Optional

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from pix2pix_tf.cli import user_message
from pix2pix_tf.config import TrainConfig
from pix2pix_tf.errors import ConfigError, Interrupted, Pix2pixError, op_reason
from pix2pix_tf.evaluation.metrics import pooled_psnr
from pix2pix_tf.export import model_card, versions
from pix2pix_tf.export.config import ExportConfig, ExportError, TrainingInputs
from pix2pix_tf.export.examples import Examples, load_examples
from pix2pix_tf.export.measure import benchmark
from pix2pix_tf.export.registry import TARGETS
from pix2pix_tf.export.target import Benchmark, Job, Options, Published, Run, Target
from pix2pix_tf.export.tflite import PSNR_FLOORS, VariantReport, check_variant
from pix2pix_tf.inference import checkpoint_source, generate
from pix2pix_tf.workdir import Workdir

# The export's Python API; each name is defined in the module that owns it.
__all__ = ["ExportConfig", "ExportError", "ExportResult", "PSNR_FLOORS", "VariantReport",
           "benchmark", "check_variant", "export", "resolve"]


@dataclasses.dataclass
class ExportResult:
    """What one export published: each target's record, in the order the targets ran."""

    version: int
    checkpoint: str
    published: list[Published]

    def record(self, target: str) -> Optional[Published]:
        return next((p for p in self.published if p.target == target), None)

    @property
    def saved_model_dir(self) -> str:
        return self.record("saved_model").path

    @property
    def variants(self) -> list[VariantReport]:
        """The TFLite files' reports ([] when none was written)."""
        record = self.record("tflite")
        return record.report.variants if record else []

    @property
    def model_cards(self) -> list[str]:
        return [card for p in self.published for card in p.model_cards]

    def lines(self) -> list[str]:
        """What export.py prints: each artifact, the model cards, then how to use them."""
        lines = [line for p in self.published for line in p.lines()]
        lines.append(f"Model card: {', '.join(self.model_cards)}")
        return lines + [line for p in self.published for line in p.usage]

    def warnings(self) -> list[str]:
        return [line for p in self.published for line in p.warnings]


def export(config: ExportConfig) -> ExportResult:
    """Checks every request before any work, then runs each enabled target in the registry's
    order; a stop says what was published and that nothing else was."""
    options = resolve(config)
    targets = [t for t in TARGETS if options[t.name].enabled]
    published: dict[str, Published] = {}
    try:
        run = _check_request(config)
        for target in targets:
            target.check(options[target.name], run)
        job = _job(config, run, targets, _training_inputs(targets, options))
        for target in targets:
            published[target.name] = target.publish(job, options[target.name], published)
        job.benchmark.finish()
    except Interrupted as stop:
        paths = [record.path for record in published.values()]
        stop.done.append(f"published: {', '.join(paths)}; nothing else was" if paths else "nothing was published")
        raise
    except (Pix2pixError, OSError, tf.errors.ResourceExhaustedError) as error:
        # TensorFlow's own writes (a SavedModel's variables) on a full disk raise ResourceExhaustedError.
        message = (f"TensorFlow could not write the export: {op_reason(error)}."
                   if isinstance(error, tf.errors.ResourceExhaustedError) else user_message(error))
        if not published:  # A later format failed: say what an earlier one published.
            if isinstance(error, tf.errors.ResourceExhaustedError):
                raise ExportError(message) from error
            raise
        paths = ", ".join(record.path for record in published.values())
        raise ExportError(f"{message} Published before this failure: {paths}; nothing else was.") from error
    return ExportResult(job.version, job.checkpoint, list(published.values()))


def resolve(config: ExportConfig) -> dict[str, Options]:
    """Every registered target's options (the config's, else its flags' defaults), validated
    alone and against each other's."""
    config.validate()
    names = [t.name for t in TARGETS]
    unknown = sorted(set(config.targets) - set(names))
    if unknown:
        raise ConfigError(f"Unknown export target(s) {unknown}; the registered ones are {', '.join(names)}.")
    options = {t.name: (config.targets[t.name] if t.name in config.targets else t.defaults()).validate()
               for t in TARGETS}
    for target in TARGETS:
        if options[target.name].enabled:
            target.validate(options[target.name], options)
            missing = [name for name in target.needs if not options[name].enabled]
            if missing:
                raise ConfigError(f"{target.name} needs {', '.join(missing)}, which this export does not write.")
    return options


def _check_request(config: ExportConfig) -> Run:
    """The run's config and the image size, refused with a message before anything is loaded."""
    Workdir(config.workdir).check_usable(writable=False)
    train = TrainConfig.load(config.workdir)
    image_size = config.image_size or train.data.crop_size
    train.model.check_side("--image_size", image_size)
    if train.model.input_nc not in (1, 3):
        raise ConfigError(f"The run takes {train.model.input_nc}-channel inputs; encoded images give 1 or 3.")
    return Run(train, image_size)


def _training_inputs(targets: list[Target], options: dict[str, Options]) -> Optional[TrainingInputs]:
    """The most training images any enabled target asks for (None: the checks need none)."""
    asked = [n for n in (t.training_inputs(options[t.name]) for t in targets) if n is not None]
    return max(asked, key=lambda n: n.count) if asked else None


def _job(config: ExportConfig, run: Run, enabled: list[Target], training: Optional[TrainingInputs]) -> Job:
    """The export folder and version, G and the check images: what every target reads. The
    version is the next one free under every format's folder, shared by every artifact."""
    export_dir = versions.export_folder(config.export_dir, config.workdir)
    bases = {target.name: target.base(export_dir, config.model_name) for target in TARGETS}
    versions.check_folders(export_dir, [bases[target.name] for target in enabled])
    for base in bases.values():
        versions.remove_stale_staging(base)
    version = versions.choose_version(list(bases.values()), config.version)
    generator, train, checkpoint = checkpoint_source.load_generator(config.workdir, config.checkpoint, run.train)
    mode = config.mode.describe(train.model.norm)
    logging.info("Exporting %s (%s) from %s.", train.model.generator, mode, checkpoint)
    examples = load_examples(train, config, run.image_size, training)
    card = _card_facts(config, train, generator, checkpoint, run.image_size, examples, version,
                       tuple(target.name for target in enabled))
    return Job(config, train, generator, checkpoint, run.image_size, export_dir, version, examples, card,
               Benchmark(config.benchmark))


def _card_facts(config: ExportConfig, train: TrainConfig, generator: keras.Model, checkpoint: str, image_size: int,
                examples: Examples, version: int, formats: tuple[str, ...]) -> model_card.CardFacts:
    """What the model card states; the held-out metrics are the exported network's (dropout off),
    which the SavedModel reproduces to SAVED_MODEL_MAX_ABS before it is published."""
    held_out = None
    if examples.targets is not None:
        outputs = generate.generate(generator, tf.constant(examples.images), config.mode.without_dropout()).numpy()
        held_out = model_card.HeldOut(pairs=len(outputs), split=examples.held_out_split or "held-out",
                                      l1=float(np.mean(np.abs(outputs - examples.targets))),
                                      psnr_db=pooled_psnr(examples.targets, outputs))
    return model_card.CardFacts(
        model_name=config.model_name, version=version, train=train, checkpoint=checkpoint,
        step=model_card.checkpoint_step(checkpoint), parameters=generator.count_params(), mode=config.mode,
        image_size=image_size, num_train=examples.num_train, held_out=held_out, formats=formats)
