"""What `pix2pix_tf.experiments.paper` reproduces: the paper's numbers, the variants behind its
tables (what each changes of the default L1+cGAN U-Net with a 70x70 PatchGAN), and the settings
that scale every variant alike. TensorFlow-free: the report reads them too."""

from __future__ import annotations

import dataclasses
from typing import Optional

# FCN-scores on Cityscapes labels->photo: (per-pixel accuracy, per-class accuracy, class IoU).
# Colour: Lab histogram intersection with the ground truth (L, a, b). From
# ../shared/reference/pix2pix-reference.md (the paper's Tables 1, 2, 3 and 5).
PAPER_FCN = {
    "l1": (0.42, 0.15, 0.11), "gan": (0.22, 0.05, 0.01), "cgan": (0.57, 0.22, 0.16),
    "l1_gan": (0.64, 0.20, 0.15), "l1_cgan": (0.66, 0.23, 0.17), "ground_truth": (0.80, 0.26, 0.21),
    "ed_l1": (0.35, 0.12, 0.08), "ed_l1_cgan": (0.29, 0.09, 0.05),
    "unet_l1": (0.48, 0.18, 0.13), "unet_l1_cgan": (0.55, 0.20, 0.14),
    "d_pixel": (0.39, 0.15, 0.10), "d_16": (0.65, 0.21, 0.17), "d_70": (0.66, 0.23, 0.17), "d_286": (0.42, 0.16, 0.11),
}
PAPER_COLOUR = {"l1": (0.81, 0.69, 0.70), "cgan": (0.87, 0.74, 0.84), "l1_cgan": (0.86, 0.84, 0.82),
                "d_pixel": (0.83, 0.68, 0.78)}


@dataclasses.dataclass(frozen=True)
class Variant:
    """One training run of the ablation: what differs from the default L1+cGAN U-Net / 70x70."""

    name: str
    title: str
    model: dict = dataclasses.field(default_factory=dict)
    loss: dict = dataclasses.field(default_factory=dict)


VARIANTS: dict[str, Variant] = {v.name: v for v in (
    Variant("l1", "L1 (U-Net)", loss={"gan_weight": 0.0}),
    Variant("gan", "GAN", model={"unconditional_d": True}, loss={"lambda_l1": 0.0}),
    Variant("cgan", "cGAN", loss={"lambda_l1": 0.0}),
    Variant("l1_gan", "L1+GAN", model={"unconditional_d": True}),
    Variant("l1_cgan", "L1+cGAN (U-Net, 70x70)"),
    Variant("ed_l1", "Encoder-decoder L1", model={"generator": "encoder_decoder"}, loss={"gan_weight": 0.0}),
    Variant("ed_l1_cgan", "Encoder-decoder L1+cGAN", model={"generator": "encoder_decoder"}),
    Variant("d_pixel", "PixelGAN 1x1", model={"discriminator": "pixel"}),
    Variant("d_16", "PatchGAN 16x16", model={"discriminator": "n_layers", "n_layers_d": 1}),
    Variant("d_286", "ImageGAN 286x286", model={"discriminator": "image"}),
)}

# Each table: (key, title, [(row label, variant or "ground_truth", key into PAPER_FCN)]).
TABLES: tuple[tuple[str, str, tuple[tuple[str, str, str], ...]], ...] = (
    ("table1", "Table 1: loss functions (U-Net, 70x70 PatchGAN)", (
        ("L1", "l1", "l1"), ("GAN", "gan", "gan"), ("cGAN", "cgan", "cgan"), ("L1+GAN", "l1_gan", "l1_gan"),
        ("L1+cGAN", "l1_cgan", "l1_cgan"), ("Ground truth", "ground_truth", "ground_truth"))),
    ("table2", "Table 2: generator architecture", (
        ("Encoder-decoder (L1)", "ed_l1", "ed_l1"), ("Encoder-decoder (L1+cGAN)", "ed_l1_cgan", "ed_l1_cgan"),
        ("U-Net (L1)", "l1", "unet_l1"), ("U-Net (L1+cGAN)", "l1_cgan", "unet_l1_cgan"))),
    ("table3", "Table 3: discriminator receptive field (L1+cGAN)", (
        ("1x1 (PixelGAN)", "d_pixel", "d_pixel"), ("16x16", "d_16", "d_16"), ("70x70", "l1_cgan", "d_70"),
        ("286x286 (ImageGAN)", "d_286", "d_286"))),
)
COLOUR_ROWS = (("L1", "l1"), ("cGAN", "cgan"), ("L1+cGAN", "l1_cgan"), ("PixelGAN", "d_pixel"))


@dataclasses.dataclass(frozen=True)
class Setting:
    """The scale of the reproduction: what every variant shares."""

    name: str
    dataset: str
    load_size: int
    crop_size: int
    ngf: int
    ndf: int
    steps: int
    eval_examples: Optional[int]  # None: the whole test split.
    segmenter_steps: int
    seed: int = 2017
    html_examples: int = 12


SETTINGS = {
    # 256x256 as the paper (so its receptive fields mean the same here), unet_256 at 1/4 of the
    # paper's width, 1.5 epochs of the 1000 training pairs: about 5 minutes a variant on 2 shared cores.
    "full": Setting("full", "shapes", 286, 256, ngf=16, ndf=16, steps=1500, eval_examples=None, segmenter_steps=800),
    # The same code paths at smoke-test cost (CI): 64x64 pairs upsampled, 2 steps, 3 test images.
    "tiny": Setting("tiny", "shapes/64", 286, 256, ngf=4, ndf=4, steps=2, eval_examples=3, segmenter_steps=2,
                    html_examples=3),
}
MARKER = "paper_variant.json"  # Each variant's record in its workdir: status, timings, metrics.
