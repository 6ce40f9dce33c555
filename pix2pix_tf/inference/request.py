"""Which model, and how to run it: the one `ModelRequest` of translate, evaluate and the demo.

Every program that runs a trained generator is asked the same two things: which model (a
training run, an export in one of the formats of `sources.KINDS`, or, for the demo, a running
TensorFlow Serving) and how to run it (the inference mode, the seed of its noise, the size,
native size, threads, the pixel cap). The flags that ask are declared here once
(`define_flags`, called by each entry module with an `Offer` of the flags it takes), read here
once (`from_flags`), checked here once (`ModelRequest.__post_init__`: every program refuses a
mistake with the same message, before TensorFlow loads) and turned into a model here once
(`ModelRequest.resolve`, `ModelRequest.translator`). Library code takes the `ModelRequest`
and reads no flags.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Optional

from absl import flags

from pix2pix_tf import cli
from pix2pix_tf.config import DEFAULT_MAX_PIXELS, TrainConfig
from pix2pix_tf.config_checks import check_positive, check_seed, check_side_within_cap
from pix2pix_tf.errors import ConfigError
from pix2pix_tf.inference import checkpoint_source, sources
from pix2pix_tf.inference.mode import PAPER, InferenceMode
from pix2pix_tf.inference.source_kind import SourceKind
from pix2pix_tf.inference.sources import ModelSource, kind_named
from pix2pix_tf.inference.translator import Translator

RUN_FLAG = checkpoint_source.KIND.flag  # --workdir: the training run.
SERVING_FLAG = "serving_url"

# The flags `define_flags` declares belong to the program that calls it: its --help lists them
# (absl's documented way for a module of DEFINE helpers).
flags.disclaim_key_flags()


def _flags_text(names: list[str], last: str = "or") -> str:
    names = [f"--{name}" for name in names]
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} {last} {names[-1]}"


def _kind_flags(which: Callable[[SourceKind], bool] = lambda kind: True) -> list[str]:
    """The flags of the kinds `which` accepts, in the registry's order."""
    return [kind.flag for kind in sources.KINDS if which(kind)]


@dataclasses.dataclass(frozen=True)
class ModelRequest:
    """The model a program was asked to run, and how; see the module docstring.

    `models` holds (flag, path) of every model named, e.g. (("tflite", "m.tflite"),): exactly one
    is accepted (or `serving_url`). `ModelRequest.of(tflite="m.tflite")` builds it by flag name.
    """

    models: tuple[tuple[str, str], ...] = ()
    checkpoint: Optional[str] = None  # With --workdir: this checkpoint, not the newest readable one.
    run: Optional[str] = None  # The training run an export is evaluated on (evaluate's --workdir beside an export).
    serving_url: Optional[str] = None  # The demo: TensorFlow Serving's REST address instead of a model here.
    model_name: str = "pix2pix"  # With serving_url: the model's name in TensorFlow Serving.
    mode: InferenceMode = PAPER
    seed: Optional[int] = None  # Seeds a checkpoint's dropout noise; None: fresh noise on every run.
    image_size: Optional[int] = None  # None: the run's or the export's size.
    native_size: bool = False  # Each image at its own size (`inference.geometry`), not the model's square.
    threads: int = 2  # TFLite interpreter and onnxruntime threads.
    max_pixels: Optional[int] = None  # Largest image, in pixels; None: DEFAULT_MAX_PIXELS.
    image_size_flag: bool = True  # The program takes --image_size (translate; not evaluate nor the demo).

    @classmethod
    def of(cls, **given) -> ModelRequest:
        """A request from keyword arguments: a kind's flag name (workdir=, saved_model=, tflite=,
        onnx=) names a model, the other names are fields."""
        names = _kind_flags()
        models = tuple((name, given[name]) for name in names if given.get(name))
        return cls(models=models, **{k: v for k, v in given.items() if k not in names})

    def __post_init__(self) -> None:
        object.__setattr__(self, "models", tuple((flag, path) for flag, path in self.models))
        for flag, _ in self.models:
            kind_named(flag)
        named = [flag for flag, _ in self.models] + ([SERVING_FLAG] if self.serving_url else [])
        if len(named) != 1:
            got = _flags_text(named, "and") if named else "none"
            raise ConfigError(f"Give exactly one of {_flags_text(_kind_flags())} to name the model (the "
                              f"demo also takes --{SERVING_FLAG}); got {got}.")
        if self.checkpoint and named[0] != RUN_FLAG:
            raise ConfigError(f"--checkpoint names a checkpoint of --{RUN_FLAG}'s run: it goes with --{RUN_FLAG} as "
                              f"the model, not with --{named[0]}.")
        if self.run and named[0] == RUN_FLAG:
            raise ConfigError(f"A checkpoint (--{RUN_FLAG}) is evaluated on its own run: `run` applies to an export.")
        check_positive(image_size=self.image_size, threads=self.threads, max_pixels=self.max_pixels)
        check_seed(self.seed)
        if self.native_size and self.image_size:
            raise ConfigError("--image_size and --native_size contradict each other: give one.")
        if self.image_size:
            check_side_within_cap("image_size", self.image_size, self.pixel_cap)
        if self.native_size and (self.kind is None or not self.kind.any_size):
            why = ("the demo sends it requests of the export's one size (TensorFlow Serving clients can call the "
                   "export's translate_native signature: docs/serving.md)" if self.kind is None else "one fixed size")
            raise ConfigError(f"--native_size needs a model that takes any size "
                              f"({_flags_text(_kind_flags(lambda k: k.any_size))}), not --{named[0]}: {why}.")

    @property
    def kind(self) -> Optional[SourceKind]:
        """The kind of the model named; None for TensorFlow Serving."""
        return kind_named(self.models[0][0]) if self.models else None

    @property
    def path(self) -> Optional[str]:
        """The path of the model named; None for TensorFlow Serving."""
        return self.models[0][1] if self.models else None

    @property
    def workdir(self) -> Optional[str]:
        """The training run given: the model's own (--workdir), or the one an export is evaluated on."""
        return self.path if self.kind is checkpoint_source.KIND else self.run

    @property
    def pixel_cap(self) -> int:
        return self.max_pixels or DEFAULT_MAX_PIXELS

    def resolve(self) -> ModelSource:
        """The model named, its record read (no TensorFlow: a wrong path is answered at once)."""
        if self.serving_url:
            raise ConfigError(f"--{SERVING_FLAG} names a model served elsewhere, not one to load here.")
        return sources.resolve(*self.models[0], checkpoint=self.checkpoint)

    def size_to_open(self, source: ModelSource) -> Optional[int]:
        """--image_size; else, for an export of any size that does not record its size, the crop
        size of its training run (evaluate's --workdir, or the run the export names), the size a
        checkpoint runs at; None where the model itself decides (a checkpoint's run, an export's
        record, a TFLite file's one size). No size at all is refused with what this program's
        user can do."""
        if (self.image_size or not source.spec.any_size or source.train is not None
                or source.metadata.get("image_size")):
            return self.image_size
        run = self.workdir or source.run_workdir
        if run:
            return TrainConfig.load(run).data.crop_size
        advice = ("pass --image_size" if self.image_size_flag else "export it with export.py, which records both, "
                  "or translate with it (python -m pix2pix_tf.translate --image_size=SIZE)")
        raise ConfigError(f"{source.path} does not record its image size, nor a training run that gives one: "
                          f"{advice}.")

    def translator(self, source: ModelSource, mode: Optional[InferenceMode] = None,
                   max_pixels: Optional[int] = None) -> Translator:
        """`source` opened as asked: in `mode` (default: the request's), at native size within
        `max_pixels` (default: the request's cap) when asked."""
        translator = source.open(mode or self.mode, seed=self.seed, image_size=self.size_to_open(source),
                                 threads=self.threads)
        if not self.native_size:
            return translator
        from pix2pix_tf.inference import geometry  # TensorFlow: loaded only with a model to run.

        return geometry.native_translator(translator, max_pixels or self.pixel_cap)


# ----------------------------------------------------------------------------- the flags


@dataclasses.dataclass(frozen=True)
class Offer:
    """The model flags one program declares, and its words for them."""

    verb: str  # How the help of a model flag begins: "Translate with", "Evaluate", "Serve".
    workdir_note: str = ""  # What else --workdir gives this program.
    native_note: str = ""  # What else --native_size does in this program.
    workdir_names_run: bool = False  # --workdir beside an export names the run to evaluate it on (evaluate).
    mode: bool = True  # --deterministic, --batch_statistics and --seed.
    seed: Optional[int] = None  # --seed's default.
    image_size: bool = False  # --image_size.
    max_pixels: bool = False  # --max_pixels,
    max_pixels_default: Optional[int] = None  # with this default (None: the image policy's).
    serving: bool = False  # --serving_url and --model_name (the demo).


def define_flags(offer: Offer, values: flags.FlagValues = flags.FLAGS) -> Offer:
    """Declares the flags of `offer` (one per kind of `sources.KINDS`, then how to run it)."""
    exports = _kind_flags(lambda k: k is not checkpoint_source.KIND)
    for kind in sources.KINDS:
        note = ""
        if kind is checkpoint_source.KIND:
            note = offer.workdir_note + (f" Beside {_flags_text(exports)} it names only the run whose data is used "
                                         "(default: the run the export was made from)." if offer.workdir_names_run
                                         else "")
        cli.define_path(kind.flag, None, f"{offer.verb} {kind.noun}.{note}", flag_values=values)
    cli.define_path("checkpoint", None, f"With --{RUN_FLAG}: a specific checkpoint, by its path (e.g. "
                    "runs/quickstart/checkpoints/ckpt-1000; default: the newest readable).", flag_values=values)
    if offer.serving:
        flags.DEFINE_string(SERVING_FLAG, None, f"{offer.verb} a running TensorFlow Serving: its REST address, e.g. "
                            "http://localhost:8501.", flag_values=values)
        flags.DEFINE_string("model_name", "pix2pix", f"With --{SERVING_FLAG}: the model's name in TensorFlow "
                            "Serving.", flag_values=values)
    _define_how(offer, values)
    return offer


def _define_how(offer: Offer, values: flags.FlagValues) -> None:
    no_dropout = _flags_text(_kind_flags(lambda k: not k.has_dropout), "and")
    if offer.mode:
        flags.DEFINE_bool("deterministic", False, "No dropout (default: the paper's test mode, dropout on; "
                          f"{no_dropout} models never have it).", flag_values=values)
        flags.DEFINE_bool("batch_statistics", True, f"With --{RUN_FLAG}: batch norm with each image's statistics "
                          "(the paper); --nobatch_statistics uses the moving averages (an export keeps its own).",
                          flag_values=values)
        flags.DEFINE_integer("seed", offer.seed, f"With --{RUN_FLAG} and dropout on: seeds the noise z image by "
                             "image (the same seed, the same outputs).", flag_values=values)
    if offer.image_size:
        flags.DEFINE_integer("image_size", None, "Square size the model runs at (default: the run's or the "
                             "export's).", flag_values=values)
    if offer.max_pixels:
        default = "" if offer.max_pixels_default else f" Default: the image policy's, {DEFAULT_MAX_PIXELS}."
        flags.DEFINE_integer("max_pixels", offer.max_pixels_default, "Largest input image, in pixels (checked from "
                             "its header, before decoding; at native size also the padded size); larger ones are "
                             f"refused.{default}", flag_values=values)
    flags.DEFINE_integer("threads", 2, "TFLite interpreter (or onnxruntime) threads.", flag_values=values)
    any_size = _flags_text(_kind_flags(lambda k: k.any_size))
    fixed = _flags_text(_kind_flags(lambda k: not k.any_size) + ([SERVING_FLAG] if offer.serving else []))
    flags.DEFINE_bool("native_size", False, "Translate each image at its own size and aspect ratio (reflection-"
                      f"padded to the generator's size multiple, cropped back; {any_size}, not {fixed}). Default: "
                      f"resized to the model's square.{offer.native_note}", flag_values=values)


def from_flags(offer: Offer, values: flags.FlagValues = flags.FLAGS) -> ModelRequest:
    """The request the flags of `offer` (declared by `define_flags`) make; refused here if wrong."""
    models = [(kind.flag, values[kind.flag].value) for kind in sources.KINDS if values[kind.flag].value]
    run = None
    if offer.workdir_names_run and len(models) > 1 and values[RUN_FLAG].value:
        run, models = values[RUN_FLAG].value, [model for model in models if model[0] != RUN_FLAG]
    how = dict(threads=values.threads, native_size=values.native_size)
    if offer.mode:
        how.update(mode=InferenceMode(dropout=not values.deterministic, batch_statistics=values.batch_statistics),
                   seed=values.seed)
    if offer.image_size:
        how.update(image_size=values.image_size)
    else:
        how.update(image_size_flag=False)
    if offer.max_pixels:
        how.update(max_pixels=values.max_pixels)
    if offer.serving:
        how.update(serving_url=values[SERVING_FLAG].value, model_name=values.model_name)
    return ModelRequest(models=tuple(models), checkpoint=values.checkpoint, run=run, **how)
