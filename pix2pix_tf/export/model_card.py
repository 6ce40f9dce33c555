"""The model card export writes beside each artifact it publishes: what the model is, what it
was trained on and for how long, how close it gets on held-out pairs, how to feed it, and what
it must not be used for.

A shipped file outlives the run folder it came from and is read by people who never saw our
code. The facts lines (`- **Key**: value`) are stable, so a script can read them too. The
SavedModel's copy lives in `assets.extra/`, which TensorFlow Serving does not read (it only
looks for its warmup file there). Each artifact's target adds a section of its own (the
TFLite one holds what an Android metadata block would: `tflite.card_section`).
"""

from __future__ import annotations

import dataclasses
import os
import time
from typing import Optional, Sequence

import tensorflow as tf

from pix2pix_tf import writing
from pix2pix_tf.catalogue import GENERATORS
from pix2pix_tf.config import TrainConfig
from pix2pix_tf.inference.artifacts import MODEL_CARD
from pix2pix_tf.inference.mode import InferenceMode

_DISCRIMINATOR_KINDS = {"basic": "70x70 PatchGAN", "pixel": "1x1 PixelGAN", "image": "286x286 ImageGAN",
                        "n_layers": "PatchGAN"}


@dataclasses.dataclass(frozen=True)
class HeldOut:
    """The exported model's distance to the targets of held-out pairs (dropout off)."""

    pairs: int
    split: str
    l1: float  # Mean |output - target| on the [-1, 1] scale.
    psnr_db: float  # Pooled over the pairs, on images scaled to [0, 1] (`metrics.pooled_psnr`).


@dataclasses.dataclass(frozen=True)
class CardFacts:
    model_name: str
    version: int
    train: TrainConfig
    checkpoint: str
    step: Optional[int]  # The checkpoint's training step (None: not recorded in it).
    parameters: int  # G's parameter count.
    mode: InferenceMode
    image_size: int
    num_train: Optional[int]  # Training pairs (None: the dataset was not available at export).
    held_out: Optional[HeldOut]
    formats: tuple[str, ...] = ("saved_model",)  # The export targets written (registry names).


def checkpoint_step(checkpoint: str) -> Optional[int]:
    """The training step saved in a checkpoint of this package (its `step` variable)."""
    try:
        return int(tf.train.load_checkpoint(checkpoint).get_tensor("step/.ATTRIBUTES/VARIABLE_VALUE"))
    except (tf.errors.OpError, ValueError, KeyError):
        return None


def _facts(f: CardFacts) -> list[tuple[str, str]]:
    model, data, size = f.train.model, f.train.data, f.image_size
    source, target = ("A", "B") if data.direction == "AtoB" else ("B", "A")
    epochs = "" if not (f.step and f.num_train) else f" (about {f.step * data.batch_size / f.num_train:.2g} epochs)"
    if f.held_out is None:
        held_out = "not measured: the run's dataset was not available at export"
    else:
        held_out = (f"L1 {f.held_out.l1:.4f}, pooled PSNR {f.held_out.psnr_db:.2f} dB on {f.held_out.pairs} pairs "
                    f"of the '{f.held_out.split}' split (this export, dropout off)")
    return [
        ("Model", f"pix2pix generator {model.generator} ({GENERATORS[model.generator].description})"),
        ("Generator", model.generator), ("ngf", str(model.ngf)), ("Norm", model.norm),
        ("Parameters", f"{f.parameters:,}"),
        ("Trained against", f"{_DISCRIMINATOR_KINDS.get(model.discriminator, model.discriminator)} discriminator "
                            f"(ndf {model.ndf}); {f.train.loss.gan_mode} GAN loss x {f.train.loss.gan_weight:g} + "
                            f"L1 x {f.train.loss.lambda_l1:g}"),
        ("Dataset", data.dataset), ("Direction", f"{data.direction} (input: {source} images, output: {target} images)"),
        ("Training pairs", "unknown" if f.num_train is None else str(f.num_train)),
        ("Steps trained", ("unknown" if f.step is None else str(f.step)) + f" at batch {data.batch_size}{epochs}"),
        ("Checkpoint", f.checkpoint),
        ("Held-out metrics", held_out),
        ("Inference mode", f.mode.describe(model.norm)),
        ("Input", f"{size} x {size} x {model.input_nc} ({'RGB' if model.input_nc == 3 else 'grey'}), "
                  "float32 pixel / 127.5 - 1, in [-1, 1] (normalisation mean 127.5, std 127.5)"),
        ("Output", f"{size} x {size} x {model.output_nc} ({'RGB' if model.output_nc == 3 else 'grey'}), "
                   "float32 in [-1, 1]; pixel = (value + 1) * 127.5, clipped to 0..255"),
    ]


def _limits(f: CardFacts) -> list[str]:
    data = f.train.data
    pairs = "an unknown number of" if f.num_train is None else str(f.num_train)
    lines = [
        f"Intended use: translating images like the training inputs of `{data.dataset}` into the style of its "
        "targets, for demos, research and prototyping.",
        f"Trained on {pairs} pairs of one dataset: inputs unlike them (another palette of labels, another kind of "
        "photo, another framing) give unpredictable pictures, without any warning.",
        "pix2pix learns one paired mapping. It draws a plausible picture, not a measurement: it can invent "
        "detail that is not in the input and drop detail that is. It gives no confidence. Not for medical, "
        "forensic, surveillance or safety decisions, nor to depict real people or events.",
        f"{_square_takers(f)} take {f.image_size} x {f.image_size}: other sizes are resized (aspect ratio not "
        "kept). The SavedModel's `translate_native` keeps each image's own size (docs/serving.md).",
        f"The weights are derived from `{data.dataset}`: its terms of use apply to what you do with them.",
    ]
    if f.mode.dropout:
        lines.append("Dropout is on at test time (the paper's noise z): the same input gives slightly different "
                     "outputs from call to call.")
    if f.step is not None and f.step < 1000:
        lines.append(f"Trained for only {f.step} step(s): a demonstration model, far from converged.")
    return lines


def _square_takers(f: CardFacts) -> str:
    """What of this export takes only its square size: the TFLite files only where written."""
    return "The TFLite files and the SavedModel's square signatures" if "tflite" in f.formats else \
        "The SavedModel's square signatures"


def render(f: CardFacts, heading: str, section: Sequence[str]) -> str:
    """The card as markdown: the facts and limits every artifact shares, then its own section
    (`heading`, `section`'s lines), which the target that publishes the artifact writes."""
    out = [f"# Model card: {f.model_name}, version {f.version}", "",
           f"Written by pix2pix_tf's export.py on {time.strftime('%Y-%m-%d')}. pix2pix: Isola et al., "
           "\"Image-to-Image Translation with Conditional Adversarial Networks\", CVPR 2017.", "", "## Facts", ""]
    out += [f"- **{key}**: {value}" for key, value in _facts(f)]
    out += ["", "## Intended use and limits", ""] + [f"- {line}" for line in _limits(f)]
    out += ["", f"## {heading}", "", *section]
    return "\n".join(out) + "\n"


def write(directory: str, text: str) -> str:
    return writing.write_text(os.path.join(directory, MODEL_CARD), text)
