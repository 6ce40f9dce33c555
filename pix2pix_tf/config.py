"""The run's configuration: one typed object, written to `workdir/config.json`.

Entry scripts turn their flags into a `TrainConfig`; everything below them receives
this object (or one of its parts) and never reads flags. Export, evaluation and resume
read `config.json` back, so a model is never rebuilt with another architecture.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Optional

from pix2pix_tf import catalogue, regular_files, writing
from pix2pix_tf.config_checks import (
    check_choice,
    check_number,
    check_positive,
    check_seed,
    check_side_within_cap,
    json_kind,
    typed_section,
)
from pix2pix_tf.errors import ConfigError
from pix2pix_tf.workdir import Workdir

# The image policy's cap on one image, in pixels (`pix2pix_tf.images` enforces it): stated here,
# where TensorFlow-free readers (flags' help, the export's declarations) find it.
DEFAULT_MAX_PIXELS = 4096 * 4096

GENERATORS = tuple(catalogue.GENERATORS)  # The names; what each is and takes: pix2pix_tf.catalogue.
DISCRIMINATORS = ("basic", "n_layers", "pixel", "image", "multiscale")
NORMS = ("batch", "syncbatch", "instance", "none")
GAN_MODES = ("vanilla", "lsgan")
PREPROCESS_MODES = ("resize_and_crop", "crop", "scale_width", "scale_width_and_crop", "none")
CROPPING_MODES = ("resize_and_crop", "crop", "scale_width_and_crop")
DIRECTIONS = ("AtoB", "BtoA")
STRATEGIES = ("mirrored", "default", "multi_worker", "tpu")
FOLDER_PREFIX = "folder:"  # --dataset=folder:/path: the user's own images.
CHANNELS = (1, 3)  # What an image is read as (pix2pix_tf.images.to_channels), whatever the file holds.
# off: float32 (the reference); auto: the device's mixed policy; or a Keras mixed policy by name.
MIXED_PRECISION = ("off", "auto", "mixed_float16", "mixed_bfloat16")


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Architecture of G and D (the paper's appendix 6.1.1 and 6.1.2)."""

    generator: str = "unet_256"
    discriminator: str = "basic"
    n_layers_d: int = 3
    ngf: int = 64
    ndf: int = 64
    norm: str = "batch"
    input_nc: int = 3
    output_nc: int = 3
    dropout: bool = True
    unconditional_d: bool = False
    num_d: int = 3  # Scales of --discriminator=multiscale (pix2pixHD's num_D); unused by the others.

    @property
    def size_multiple(self) -> int:
        """Image sides the generator takes are multiples of this (`catalogue.Generator`)."""
        return catalogue.GENERATORS[self.generator].size_multiple

    @property
    def patchgan_layers(self) -> int:
        """The stride-2 layers of D's PatchGAN (each scale's, for multiscale; unused by pixel)."""
        return catalogue.PATCHGAN_LAYERS.get(self.discriminator, self.n_layers_d)

    @property
    def takes_depth(self) -> bool:
        """D's depth is `n_layers_d` (n_layers, multiscale), not its own (basic, image) or none (pixel)."""
        return self.discriminator in ("n_layers", "multiscale")

    def unused_depth(self) -> Optional[str]:
        """Why `n_layers_d`, set to other than its default, changes nothing for this D; None
        where it is used (n_layers, multiscale) or left at its default. A warning, not a refusal:
        runs recorded with it (ignored, as the reference ignores it) still load."""
        if self.n_layers_d == ModelConfig.n_layers_d or self.takes_depth:
            return None
        fixed = catalogue.PATCHGAN_LAYERS.get(self.discriminator)
        return (f"--n_layers_d={self.n_layers_d} changes nothing: it applies to --discriminator=n_layers or "
                f"multiscale, and --discriminator={self.discriminator} has "
                + (f"{fixed} layers of its own." if fixed else "no PatchGAN layers."))

    def check_side(self, flag: str, side: int) -> None:
        """Refuses `flag`=`side` (a crop or image size) unless the generator takes it."""
        catalogue.check_side(flag, side, self.size_multiple, f"--generator={self.generator}")

    def validate(self) -> None:
        check_choice("generator", self.generator, GENERATORS)
        check_choice("discriminator", self.discriminator, DISCRIMINATORS)
        check_choice("norm", self.norm, NORMS)
        check_positive(n_layers_d=self.n_layers_d, ngf=self.ngf, ndf=self.ndf, num_d=self.num_d)
        for name in ("input_nc", "output_nc"):
            if getattr(self, name) not in CHANNELS:
                raise ConfigError(f"--{name}={getattr(self, name)}: images are read with 3 channels (RGB) or 1 "
                                  "(grey), whatever the files hold; choose 3 or 1.")
        if self.num_d != ModelConfig.num_d and self.discriminator != "multiscale":
            raise ConfigError(f"--num_d={self.num_d} applies to --discriminator=multiscale only (it is "
                              f"--discriminator={self.discriminator}).")


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """Which pairs to train on and how to jitter them (the reference's preprocessing)."""

    dataset: str = "shapes"
    data_dir: Optional[str] = None
    direction: Optional[str] = None  # None: the dataset's usual direction, filled in by `resolved()`.
    preprocess: str = "resize_and_crop"
    load_size: int = 286
    crop_size: int = 256
    flip: bool = True
    batch_size: int = 1  # Global batch, split over the replicas.
    shuffle_buffer: int = 1000
    max_pixels: int = DEFAULT_MAX_PIXELS

    def validate(self) -> None:
        check_choice("preprocess", self.preprocess, PREPROCESS_MODES)
        if self.dataset.strip() == FOLDER_PREFIX:  # Not the current directory, read without a word.
            raise ConfigError("--dataset=folder: names no folder: give the path of your images, "
                              "--dataset=folder:/path/to/images.")
        check_positive(max_pixels=self.max_pixels)
        if self.direction is not None:
            check_choice("direction", self.direction, DIRECTIONS)
        if self.crop_size < 1 or self.load_size < 1:
            raise ConfigError("--crop_size and --load_size must be positive.")
        if self.preprocess in ("resize_and_crop", "scale_width_and_crop") and self.crop_size > self.load_size:
            raise ConfigError(
                f"--crop_size={self.crop_size} is larger than --load_size={self.load_size}: "
                "the random crop is taken from the resized image, so it must fit inside it."
            )
        self._check_sides_within_the_cap()
        check_positive(batch_size=self.batch_size, shuffle_buffer=self.shuffle_buffer)

    def _check_sides_within_the_cap(self) -> None:
        """Refuses a --load_size or --crop_size whose square is over --max_pixels: the preprocessing
        makes images of that side (resize_and_crop: --load_size squared; every mode but none holds
        out --crop_size squared), and one far over the cap would end the run in an out-of-memory
        traceback after the dataset is read, where the cap promises a bound."""
        flags = {"none": (), "crop": ("crop_size",)}.get(self.preprocess, ("load_size", "crop_size"))
        for flag in flags:
            check_side_within_cap(flag, getattr(self, flag), self.max_pixels)

    def resolved(self) -> DataConfig:
        """With the dataset's usual direction where none was asked for: done once for a run (training
        stores it in config.json; `from_dict` resolves a stored null), so readers take `direction` as is."""
        if self.direction is not None:
            return self
        return dataclasses.replace(self, direction=catalogue.default_direction(self.dataset))

    def with_absolute_paths(self) -> DataConfig:
        """This config with a `folder:` dataset and the data_dir as absolute paths (from the
        current directory): config.json must say where the images are, or a resume or an
        evaluation started from another directory would read other images."""
        dataset = self.dataset
        if dataset.startswith(FOLDER_PREFIX):
            dataset = FOLDER_PREFIX + os.path.abspath(os.path.expanduser(dataset[len(FOLDER_PREFIX):]))
        data_dir = os.path.abspath(os.path.expanduser(self.data_dir)) if self.data_dir else self.data_dir
        return dataclasses.replace(self, dataset=dataset, data_dir=data_dir)


@dataclasses.dataclass(frozen=True)
class LossConfig:
    """The objective: gan_weight * L_cGAN + lambda_l1 * L_L1 (paper eq. 4)."""

    gan_mode: str = "vanilla"
    lambda_l1: float = 100.0
    gan_weight: float = 1.0
    lambda_feat: float = 0.0  # pix2pixHD's discriminator feature matching (its paper: 10); 0: off.

    def validate(self) -> None:
        check_choice("gan_mode", self.gan_mode, GAN_MODES)
        for name in ("lambda_l1", "gan_weight", "lambda_feat"):
            check_number(name, getattr(self, name))
        if self.lambda_l1 < 0 or self.gan_weight < 0:
            raise ConfigError("--lambda_l1 and --gan_weight must be non-negative.")
        if self.lambda_l1 == 0 and self.gan_weight == 0:
            raise ConfigError("--lambda_l1=0 and --gan_weight=0 leave the generator no objective.")
        if not self.lambda_feat >= 0:
            raise ConfigError(f"--lambda_feat must be non-negative, got {self.lambda_feat}.")
        if self.lambda_feat > 0 and self.gan_weight == 0:
            raise ConfigError("--lambda_feat matches the features of the discriminator, and --gan_weight=0 trains "
                              "none: set --gan_weight above 0, or --lambda_feat=0.")


@dataclasses.dataclass(frozen=True)
class OptimConfig:
    """Adam and the reference's schedule: `epochs` constant, then `epochs_decay` linear to 0."""

    lr: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.999
    epochs: int = 100
    epochs_decay: int = 100
    steps: Optional[int] = None  # Stops the run early; the schedule stays epoch-based.

    def validate(self) -> None:
        for name in ("lr", "beta1", "beta2"):
            check_number(name, getattr(self, name))
        if self.lr <= 0:
            raise ConfigError(f"--lr must be positive, got {self.lr}.")
        for name in ("beta1", "beta2"):
            if not 0 <= getattr(self, name) < 1:
                raise ConfigError(f"--{name} is an exponential decay rate of Adam: at least 0 and below 1, got "
                                  f"{getattr(self, name)}.")
        if self.epochs < 0 or self.epochs_decay < 0 or self.epochs + self.epochs_decay < 1:
            raise ConfigError("--epochs and --epochs_decay must be non-negative, with a positive sum.")
        check_positive(steps=self.steps)


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """Where and how the run executes, logs and saves; none of it changes the model."""

    workdir: str = "runs/pix2pix"
    seed: Optional[int] = None  # None: drawn at the start of the run and recorded.
    # Records that the program turned on TensorFlow's op determinism (process-wide, so the
    # program's to set, not the library's: train.py does for --seed).
    deterministic_ops: bool = False
    strategy: str = "mirrored"
    cpu_replicas: int = 1
    save_every: int = 1000
    log_every: int = 10
    sample_every: int = 500
    keep_checkpoints: int = 3
    eval_examples: int = 16
    progress: bool = True
    fused_adam: bool = True  # TensorFlow's one-pass Adam kernel; the same update as Keras' Adam.
    jit_compile: bool = False  # XLA for the replica step: slower on CPU (docs/performance.md).
    reuse_memory: bool = True  # Keep freed memory in the process (pix2pix_tf.training.memory): no page faults per step.
    # Arithmetic precision (pix2pix_tf.training.precision); variables and checkpoints stay float32.
    mixed_precision: str = "off"

    def validate(self) -> None:
        check_choice("strategy", self.strategy, STRATEGIES)
        check_choice("mixed_precision", self.mixed_precision, MIXED_PRECISION)
        check_positive(save_every=self.save_every, log_every=self.log_every, sample_every=self.sample_every,
                       keep_checkpoints=self.keep_checkpoints, cpu_replicas=self.cpu_replicas)
        check_seed(self.seed)
        if self.eval_examples < 0:
            raise ConfigError(f"--eval_examples must be non-negative, got {self.eval_examples}.")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Every hyperparameter of a run."""

    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    loss: LossConfig = dataclasses.field(default_factory=LossConfig)
    optim: OptimConfig = dataclasses.field(default_factory=OptimConfig)
    run: RunConfig = dataclasses.field(default_factory=RunConfig)

    def validate(self) -> TrainConfig:
        for part in (self.model, self.data, self.loss, self.optim, self.run):
            part.validate()
        _check_parts_agree(self.model, self.data, self.loss)
        return self

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: Any, source: str = "config.json") -> TrainConfig:
        """The config in `values` (config.json's contents), checked as strictly as the flags are:
        sections and fields by their declared types, then each section's `validate()`. Missing
        sections and fields take their defaults (older runs), the data is `resolved()`; anything
        unknown is refused, since the next save would silently drop it. Errors name `source` and the field."""
        sections = {field.name: field.default_factory for field in dataclasses.fields(cls)}  # type: ignore[misc]
        if not isinstance(values, dict):
            raise ConfigError(f"{source} must hold a JSON object with the sections {', '.join(sections)}; "
                              f"it holds {json_kind(values)}.")
        unknown = sorted(set(values) - set(sections))
        if unknown:
            raise ConfigError(f"{source}: unknown sections {unknown}; the known ones are {', '.join(sections)}.")
        parts = {}
        for name, part_cls in sections.items():
            part = typed_section(part_cls, name, values.get(name, {}), source)
            try:
                part.validate()
            except ConfigError as e:
                raise ConfigError(f"{source}, section '{name}': {e}") from e
            parts[name] = part
        try:
            _check_parts_agree(parts["model"], parts["data"], parts["loss"])
        except ConfigError as e:
            raise ConfigError(f"{source}: {e}") from e
        return cls(**dict(parts, data=parts["data"].resolved()))

    def save(self, workdir: str) -> None:
        """Writes config.json whole or not at all (`writing`): a crash never leaves half a file."""
        writing.write_text(Workdir(workdir).config_file, json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n")

    @classmethod
    def load(cls, workdir: str) -> TrainConfig:
        path = Workdir(workdir).config_file
        values = regular_files.read_json(path)  # from_dict says what an object must hold.
        if values is None:
            raise ConfigError(f"{path} does not exist: is '{workdir}' the workdir of a training run?")
        return cls.from_dict(values, path)


def _check_parts_agree(model: ModelConfig, data: DataConfig, loss: LossConfig) -> None:
    """The checks that need two sections: each one alone may be valid and the run still impossible."""
    if data.preprocess in CROPPING_MODES:  # Native sizes are checked against the data (data.checks).
        model.check_side("--crop_size", data.crop_size)
    _check_feature_matching(model, loss)
    _check_discriminator_fits(model, data)


def _check_feature_matching(model: ModelConfig, loss: LossConfig) -> None:
    """Feature matching compares D's intermediate activations: PixelGAN has none to compare."""
    if loss.lambda_feat > 0 and model.discriminator == "pixel":
        raise ConfigError("--lambda_feat needs a discriminator with intermediate features (a PatchGAN: "
                          "basic, n_layers, image or multiscale); --discriminator=pixel has none. "
                          "Choose another --discriminator, or --lambda_feat=0.")


def _check_discriminator_fits(model: ModelConfig, data: DataConfig) -> None:
    """D's coarsest map must keep at least one logit at the training size: deeper convolutions
    fail inside the first step with a oneDNN error. The training size is the crop (the width
    for scale_width); native sizes are known only once the data is read (`data.checks`)."""
    if data.preprocess not in CROPPING_MODES + ("scale_width",):
        return
    side = data.crop_size if data.preprocess in CROPPING_MODES else data.load_size
    size_flag = "--crop_size" if data.preprocess in CROPPING_MODES else "--load_size"
    check_discriminator_fits(model, side, f"{size_flag}={side}", f"a larger {size_flag}")


def check_discriminator_fits(model: ModelConfig, side: int, where: str, larger: str) -> None:
    """Refuses a discriminator whose coarsest map keeps no logit of a `side`x`side` image;
    `where` says where that size comes from, `larger` how to train on larger images."""
    if model.discriminator == "pixel":
        return
    n_layers = model.patchgan_layers
    scales = model.num_d if model.discriminator == "multiscale" else 1

    def fits(layers: int, num_d: int) -> bool:
        return catalogue.patchgan_output_side(catalogue.pyramid_side(side, num_d - 1), layers) >= 1

    if fits(n_layers, scales):
        return
    what = f"a PatchGAN of {n_layers} layers"
    if scales > 1:
        coarsest = catalogue.pyramid_side(side, scales - 1)
        what += f" on the coarsest of --num_d={scales} scales ({coarsest}x{coarsest})"
    hints = []
    deepest = max((n for n in range(1, n_layers) if fits(n, scales)), default=0)
    if deepest:
        hints.append(("" if model.discriminator in ("n_layers", "multiscale") else "--discriminator=n_layers ")
                     + f"--n_layers_d={deepest}")
    most = max((n for n in range(1, scales) if fits(n_layers, n)), default=0)
    if most:
        hints.append(f"--num_d={most}")
    raise ConfigError(f"--discriminator={model.discriminator}: {what} leaves no patch of a {side}x{side} image "
                      f"({where}). Use {' or '.join(hints + [larger])}.")
