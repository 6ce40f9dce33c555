"""The model card export writes beside the SavedModel and beside the TFLite files: what the
model is, what it was trained on and for how long, how close it gets on held-out pairs, how to
feed it, and what it must not be used for.

A shipped file outlives the run folder it came from and is read by people who never saw our
code. The facts lines (`- **Key**: value`) are stable, so a script can read them too. The
SavedModel's copy lives in `assets.extra/`, which TensorFlow Serving does not read (it only
looks for its warmup file there). The TFLite copy also holds what an Android metadata block
would (normalisation, size, output description): no maintained LiteRT metadata writer
installs beside TensorFlow 2.21 (docs/tflite.md).
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from typing import Optional, Sequence

from pix2pix_tf import writing
from pix2pix_tf.catalogue import GENERATORS
from pix2pix_tf.config import TrainConfig
from pix2pix_tf.images import FORMATS_TEXT
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
    max_pixels: int
    num_train: Optional[int]  # Training pairs (None: the dataset was not available at export).
    held_out: Optional[HeldOut]


def checkpoint_step(checkpoint: str) -> Optional[int]:
    """The training step saved in a checkpoint of this package (its `step` variable)."""
    import tensorflow as tf

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
        ("Inference mode", f.mode.describe()),
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
        f"The TFLite files and the SavedModel's square signatures take {f.image_size} x {f.image_size}: other sizes "
        "are resized (aspect ratio not kept). The SavedModel's `translate_native` keeps each image's own size "
        "(docs/serving.md).",
        f"The weights are derived from `{data.dataset}`: its terms of use apply to what you do with them.",
    ]
    if f.mode.dropout:
        lines.append("Dropout is on at test time (the paper's noise z): the same input gives slightly different "
                     "outputs from call to call.")
    if f.step is not None and f.step < 1000:
        lines.append(f"Trained for only {f.step} step(s): a demonstration model, far from converged.")
    return lines


def render(f: CardFacts, tflite: Optional[Sequence] = None, metadata_note: str = "",
           onnx: Optional[Sequence[str]] = None) -> str:
    """The card as markdown; `tflite` (the variants' reports) adds the TFLite section, `onnx`
    (its lines, from `onnx_model`) the ONNX file's."""
    out = [f"# Model card: {f.model_name}, version {f.version}", "",
           f"Written by pix2pix_tf's export.py on {time.strftime('%Y-%m-%d')}. pix2pix: Isola et al., "
           "\"Image-to-Image Translation with Conditional Adversarial Networks\", CVPR 2017.", "", "## Facts", ""]
    out += [f"- **{key}**: {value}" for key, value in _facts(f)]
    out += ["", "## Intended use and limits", ""] + [f"- {line}" for line in _limits(f)]
    if onnx is not None:
        out += ["", "## ONNX file", "", *onnx]
    elif tflite is None:
        out += ["", "## This SavedModel", "",
                f"Signatures `serving_default` / `translate_png` take {FORMATS_TEXT} bytes of any size up to "
                f"{f.max_pixels:,} pixels, resize them (bicubic) and return PNG bytes; `translate_float` takes "
                "[-1, 1] NHWC floats. docs/serving.md describes them."]
    else:
        out += ["", "## TFLite files", "", *_tflite_lines(f, tflite, metadata_note)]
    return "\n".join(out) + "\n"


def _tflite_lines(f: CardFacts, variants: Sequence, metadata_note: str) -> list[str]:
    size, model = f.image_size, f.train.model
    lines = ["Batch 1, fixed size, dropout off; input tensor `images` [1, "
             f"{size}, {size}, {model.input_nc}], output `output` [1, {size}, {size}, {model.output_nc}].", "",
             "| file | bytes | pooled PSNR vs the SavedModel | I/O |", "| --- | ---: | ---: | --- |"]
    for r in variants:
        psnr = "nan" if not math.isfinite(r.psnr_db) else f"{r.psnr_db:.1f} dB"
        io = r.io_dtype
        if r.io_quantization:
            (s_in, z_in), (s_out, z_out) = r.io_quantization["input"], r.io_quantization["output"]
            io += f" (input q = round(x / {s_in:.6g}) + {z_in}; output x = (q - {z_out}) * {s_out:.6g})"
        lines.append(f"| {os.path.basename(r.path)} | {r.size_bytes} | {psnr} | {io} |")
    lines += ["", "Metadata for Android (what a LiteRT metadata block would hold): input image, RGB, "
                  f"[1, {size}, {size}, {model.input_nc}], normalisation mean [127.5] std [127.5] (pixel / 127.5 - 1); "
                  f"output image [1, {size}, {size}, {model.output_nc}] in [-1, 1], denormalise with "
                  "(value + 1) * 127.5. " + metadata_note]
    return lines


def write(directory: str, text: str) -> str:
    return writing.write_text(os.path.join(directory, MODEL_CARD), text)
