"""What the project knows about its generators and datasets before building or reading them.

Each fact is stated here once and derived from, never restated: the generators by name, with
the architecture `networks.generator` builds from and the image sides that architecture takes;
the discriminators' depths and the sides of their maps; the direction the paper trains each
dataset in; and the one check (and message) that a size is one the generator takes.
TensorFlow-free, so that config validation, the entry scripts' flag checks and any script can
ask without loading TensorFlow.
"""

from __future__ import annotations

import dataclasses

from pix2pix_tf.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class Generator:
    """One generator architecture, as `networks.generator.build_generator` builds it."""

    family: str  # "unet" or "resnet": the builder in networks.generator.
    downsamplings: int  # Stride-2 convolutions from the input to the bottleneck.
    description: str  # What the model card says the generator is.
    blocks: int = 0  # Residual blocks at the bottleneck (resnet).
    skips: bool = True  # The U-Net's skip connections (False: the paper's encoder-decoder ablation).

    @property
    def size_multiple(self) -> int:
        """Image sides must be multiples of this to come out at the size they went in: each
        stride-2 convolution halves a side, and its transpose gives back the same side only if
        the side was even at every level."""
        return 2**self.downsamplings


# Names follow the authors' code; the order is the one --generator lists.
GENERATORS: dict[str, Generator] = {
    "unet_256": Generator("unet", 8, "U-Net, 8 down-samplings"),
    "unet_128": Generator("unet", 7, "U-Net, 7 down-samplings"),
    "resnet_9blocks": Generator("resnet", 2, "ResNet, 9 residual blocks", blocks=9),
    "resnet_6blocks": Generator("resnet", 2, "ResNet, 6 residual blocks", blocks=6),
    "encoder_decoder": Generator("unet", 8, "encoder-decoder without skip connections", skips=False),
}

# The discriminators of a fixed depth (stride-2 layers of the PatchGAN): `basic`, the paper's
# 70x70 PatchGAN, and `image`, its 286x286 ImageGAN. `n_layers` and `multiscale` take
# --n_layers_d; `pixel` (1x1) has none.
PATCHGAN_LAYERS = {"basic": 3, "image": 5}

# The authors' datasets and the direction the paper trains them in.
OFFICIAL_DATASETS = {
    "facades": "BtoA", "cityscapes": "BtoA", "maps": "AtoB",
    "edges2shoes": "AtoB", "edges2handbags": "AtoB", "night2day": "AtoB",
}


def default_direction(dataset: str) -> str:
    """The direction the paper trains a dataset in (A->B for the embedded one and for folders).

    Read through `DataConfig.resolved()`, which fills it in once for a run: everything else
    reads the config's `direction`."""
    return OFFICIAL_DATASETS.get(dataset.split("/")[0], "AtoB")


def patchgan_output_side(side: int, n_layers: int) -> int:
    """The side of a PatchGAN's logit map for a `side` x `side` pair (0: none): each of its
    4x4 convolutions pads 1, the first `n_layers` at stride 2, then two at stride 1
    (`networks.discriminator.patchgan`; its test checks this against the real network)."""
    for stride in [2] * n_layers + [1, 1]:
        if side < 2:  # Padded, less than the 4x4 kernel.
            return 0
        side = (side - 2) // stride + 1
    return side


def pyramid_side(side: int, level: int) -> int:
    """The side of an image downsampled `level` times by pix2pixHD's 3x3, stride 2, pad 1 pooling."""
    for _ in range(level):
        side = (side - 1) // 2 + 1
    return side


def check_side(flag: str, side: int, multiple: int, taker: str) -> None:
    """Refuses `flag`=`side` unless it is a multiple of `multiple`, what `taker` (the generator,
    or an exported file) takes. The one check of a crop or image size against the generator,
    for training, export and inference alike, so the same mistake reads the same everywhere."""
    if side % multiple:
        raise ConfigError(f"{flag}={side}: {taker} takes images whose sides are multiples of {multiple}; "
                          f"use {flag}={max(multiple, side // multiple * multiple)}.")
