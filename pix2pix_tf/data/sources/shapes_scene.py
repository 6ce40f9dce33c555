"""The scenes of the `pix2pix_shapes` dataset: classes, colours, and one example's rendering.

A pure function of a random generator (`render_example(example_rng(split, i), size)`), with
no TensorFlow: the tfds builder in `shapes.py` stores what it draws.
"""

from __future__ import annotations

import functools
import math
from statistics import NormalDist

import numpy as np
from PIL import Image, ImageDraw

# ---------------------------------------------------------------------------
# Classes and colours.
# ---------------------------------------------------------------------------

CLASS_NAMES: tuple[str, ...] = (
    "background",
    "ellipse",
    "rectangle",
    "triangle",
    "star",
    "ring",
)
NUM_CLASSES: int = len(CLASS_NAMES)

BACKGROUND, ELLIPSE, RECTANGLE, TRIANGLE, STAR, RING = range(NUM_CLASSES)

# Colours of the input label map "a" (one fixed colour per class, like the
# facades/cityscapes label images). Far apart so they decode unambiguously.
LABEL_COLOURS: np.ndarray = np.array(
    [
        [0, 0, 0],  # background: black
        [255, 0, 0],  # ellipse: red
        [0, 255, 0],  # rectangle: green
        [0, 0, 255],  # triangle: blue
        [255, 255, 0],  # star: yellow
        [255, 0, 255],  # ring: magenta
    ],
    dtype=np.uint8,
)
LABEL_COLOURS.setflags(write=False)

# Photo colours: each instance picks one of its class's colours uniformly at
# random. The hues inside one palette are far apart, so their mean is a dull
# grey-brown: this is the ambiguity that L1 averages away.
CLASS_PALETTES: dict[int, np.ndarray] = {
    ELLIPSE: np.array([[215, 40, 40], [40, 90, 215], [235, 205, 45]], np.float32),
    RECTANGLE: np.array([[45, 165, 65], [200, 45, 160], [240, 135, 30]], np.float32),
    TRIANGLE: np.array([[35, 185, 205], [125, 55, 190], [160, 215, 50]], np.float32),
    STAR: np.array([[240, 100, 150], [20, 140, 120], [225, 170, 30]], np.float32),
    RING: np.array([[40, 50, 160], [230, 80, 40], [90, 200, 90]], np.float32),
}

# Muted colours for the smooth background gradient.
BACKGROUND_PALETTE: np.ndarray = np.array(
    [
        [205, 195, 175],
        [150, 170, 195],
        [170, 190, 150],
        [195, 160, 165],
        [115, 115, 130],
        [215, 215, 205],
        [160, 140, 120],
    ],
    np.float32,
)

for _palette in (*CLASS_PALETTES.values(), BACKGROUND_PALETTE):
    _palette.setflags(write=False)

# Per-split seed prefixes: example i of split s uses default_rng([seed_s, i]).
SPLIT_SEEDS: dict[str, int] = {"train": 20170, "val": 20171, "test": 20172}

_MIN_SHAPES, _MAX_SHAPES = 3, 8
_PIXEL_NOISE_STD = 3.0  # grey levels, over the whole photo
_INSTANCE_JITTER_STD = 8.0  # grey levels, per instance colour
_ELLIPSE_POINTS = 48


def example_rng(split: str, index: int) -> np.random.Generator:
    """Return the generator for example `index` of `split`.

    The seed depends only on (split, index), so preparation is deterministic,
    independent of generation order, and the splits never share an example.
    The seed does not depend on the image size: the "64" and "256" configs
    show the same scenes at different resolutions.
    """
    return np.random.default_rng([SPLIT_SEEDS[split], index])


# ---------------------------------------------------------------------------
# Rendering.
# ---------------------------------------------------------------------------


@functools.lru_cache(maxsize=8)
def _axis(image_size: int) -> np.ndarray:
    """Pixel-centre coordinates along one axis, cached per size (read-only)."""
    axis = np.arange(image_size, dtype=np.float32) + np.float32(0.5)
    axis.setflags(write=False)
    return axis


# Standard-normal quantiles at 256 evenly spaced probabilities: indexing it
# with random bytes gives Gaussian noise about 4x faster than
# Generator.standard_normal, which matters for a full-image noise layer.
_NORMAL_TABLE: np.ndarray = np.array(
    [NormalDist().inv_cdf((i + 0.5) / 256.0) for i in range(256)], np.float32
)
_NORMAL_TABLE /= _NORMAL_TABLE.std()


def _gaussian_noise(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Approximately standard-normal float32 noise (256 levels)."""
    return np.take(_NORMAL_TABLE, rng.integers(0, 256, shape, dtype=np.uint8))


def _rotate(points: np.ndarray, angle: float, cy: float, cx: float) -> list[tuple]:
    """Rotate (x, y) offsets by `angle` and move them to the centre (cx, cy)."""
    c, s = np.cos(angle), np.sin(angle)
    x = points[:, 0] * c - points[:, 1] * s + cx
    y = points[:, 0] * s + points[:, 1] * c + cy
    return list(zip(x.tolist(), y.tolist()))


def _ellipse_points(ax: float, ay: float) -> np.ndarray:
    t = np.linspace(0.0, 2.0 * np.pi, _ELLIPSE_POINTS, endpoint=False)
    return np.stack([ax * np.cos(t), ay * np.sin(t)], axis=1)


def _draw_shape(
    draw: ImageDraw.ImageDraw,
    cls: int,
    rng: np.random.Generator,
    cy: float,
    cx: float,
    r: float,
) -> dict[str, float]:
    """Draw one shape of class `cls` (value 255) and return texture geometry."""
    angle = float(rng.uniform(0.0, 2.0 * np.pi))
    geom = {"cy": cy, "cx": cx, "r": r, "r_in": 0.0}
    if cls == ELLIPSE:
        pts = _ellipse_points(r, r * rng.uniform(0.65, 1.0))
        draw.polygon(_rotate(pts, angle, cy, cx), fill=255)
    elif cls == RECTANGLE:
        hw, hh = r * rng.uniform(0.75, 1.05), r * rng.uniform(0.6, 0.9)
        pts = np.array([[-hw, -hh], [hw, -hh], [hw, hh], [-hw, hh]])
        draw.polygon(_rotate(pts, angle, cy, cx), fill=255)
    elif cls == TRIANGLE:
        t = np.arange(3) * (2.0 * np.pi / 3.0) + rng.uniform(-0.25, 0.25, 3)
        rad = 1.15 * r * rng.uniform(0.85, 1.1, 3)
        pts = np.stack([rad * np.cos(t), rad * np.sin(t)], axis=1)
        draw.polygon(_rotate(pts, angle, cy, cx), fill=255)
    elif cls == STAR:
        n = int(rng.integers(5, 7))  # 5 or 6 points
        t = np.arange(2 * n) * (np.pi / n)
        rad = np.where(np.arange(2 * n) % 2 == 0, 1.1 * r, 1.1 * r * rng.uniform(0.45, 0.55))
        pts = np.stack([rad * np.cos(t), rad * np.sin(t)], axis=1)
        draw.polygon(_rotate(pts, angle, cy, cx), fill=255)
    elif cls == RING:
        r *= 1.15  # a ring shows less area than a disc of the same radius
        geom["r"] = r
        aspect = rng.uniform(0.75, 1.0)
        inner = rng.uniform(0.4, 0.6)
        outer_pts = _ellipse_points(r, r * aspect)
        draw.polygon(_rotate(outer_pts, angle, cy, cx), fill=255)
        draw.polygon(_rotate(outer_pts * inner, angle, cy, cx), fill=0)
        geom["r_in"] = r * aspect * inner
    else:  # pragma: no cover - guarded by the caller
        raise ValueError(f"not a shape class: {cls}")
    return geom


def _texture_params(cls: int, rng: np.random.Generator) -> dict[str, float]:
    """Draw the random texture parameters of one instance (64-px units).

    Drawn in the shape loop, before anything that depends on pixel counts, so
    a seed gives the same colours and textures at every image size.
    """
    if cls == RECTANGLE:  # stripes
        return {
            "period": rng.uniform(4.0, 7.0),
            "angle": rng.uniform(0.0, math.pi),
            "phase": rng.uniform(0.0, 2.0 * math.pi),
        }
    if cls == TRIANGLE:  # checkerboard
        return {
            "cell": rng.uniform(3.0, 6.0),
            "angle": rng.uniform(0.0, 0.5 * math.pi),
            "du": rng.uniform(0.0, 1.0),
            "dv": rng.uniform(0.0, 1.0),
        }
    if cls == STAR:  # dots
        return {
            "spacing": rng.uniform(4.0, 6.5),
            "oy": rng.uniform(0.0, 1.0),
            "ox": rng.uniform(0.0, 1.0),
        }
    return {}  # ellipse (grain) and ring (radial gradient) need none


def _texture(
    cls: int,
    colour: np.ndarray,
    params: dict[str, float],
    geom: dict[str, float],
    ys: np.ndarray,
    xs: np.ndarray,
    unit: float,
    rng: np.random.Generator,
) -> np.ndarray:
    """Photo colours (float32 [n, 3]) of the visible pixels (ys, xs) of one instance.

    Each class has its own texture type, so texture is (like the label) a cue
    the generator can read from the input; only the colour is left ambiguous.
    `unit` is image_size / 64, so textures keep their relative scale. `rng` is
    used only for per-pixel grain.
    """
    c = colour[None, :]
    if cls == ELLIPSE:  # solid with fine grain and a soft highlight
        grain = 1.0 + 0.08 * _gaussian_noise(rng, (ys.size, 1))
        d = np.hypot(ys - geom["cy"], xs - geom["cx"]) / geom["r"]
        shade = 1.1 - 0.25 * np.clip(d, 0.0, 1.0)
        return c * grain * shade[:, None]
    if cls == RECTANGLE:  # stripes at a random angle, period and phase
        w = 2.0 * math.pi / (params["period"] * unit)
        a = params["angle"]
        s = np.sin(xs * (math.cos(a) * w) + ys * (math.sin(a) * w) + params["phase"])
        t = np.clip(0.5 + 1.5 * s, 0.0, 1.0)
        return c * (0.45 + 0.55 * t)[:, None]
    if cls == TRIANGLE:  # rotated checkerboard: colour and a light tint of it
        cell = params["cell"] * unit
        ca, sa = math.cos(params["angle"]) / cell, math.sin(params["angle"]) / cell
        u = np.floor(xs * ca + ys * sa + params["du"])
        v = np.floor(ys * ca - xs * sa + params["dv"])
        parity = ((u + v) % 2.0)[:, None]
        light = 0.45 * c + 0.55 * 255.0
        return parity * light + (1.0 - parity) * c
    if cls == STAR:  # dark dots on a square grid
        spacing = params["spacing"] * unit
        dy = (ys + params["oy"] * spacing) % spacing - 0.5 * spacing
        dx = (xs + params["ox"] * spacing) % spacing - 0.5 * spacing
        dot = (np.hypot(dy, dx) < 0.3 * spacing)[:, None]
        return np.where(dot, 0.3 * c, c)
    if cls == RING:  # radial gradient across the annulus, bright inside
        d = np.hypot(ys - geom["cy"], xs - geom["cx"])
        t = np.clip((d - geom["r_in"]) / max(geom["r"] - geom["r_in"], 1.0), 0.0, 1.0)
        return c * (1.2 - 0.7 * t)[:, None]
    raise ValueError(f"not a shape class: {cls}")  # pragma: no cover


def render_example(
    rng: np.random.Generator, image_size: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Render one (label image, photo, class map) triple.

    Returns:
      a: uint8 [S, S, 3], the class map drawn in `LABEL_COLOURS` (the input).
      b: uint8 [S, S, 3], the "photo" (the target).
      label: uint8 [S, S], the visible class index of every pixel.

    Everything is drawn from `rng`, so the same seed gives the same arrays.
    Geometry, colours and textures are drawn relative to `image_size` before
    any per-pixel noise, so a seed gives the same scene at every size. Shapes
    drawn later cover earlier ones; `label` holds what is visible.
    """
    size = int(image_size)
    if size < 16:
        raise ValueError(f"image_size must be >= 16, got {image_size}")
    photo = _background(rng, size)
    label, instance, shapes = _draw_shapes(rng, size)
    # Photo: every instance painted with its colour and class texture on its
    # visible pixels. From here on, draws from `rng` depend on pixel counts.
    _paint_instances(photo, instance, shapes, size, rng)
    noise = _gaussian_noise(rng, photo.shape)
    photo += noise * np.float32(_PIXEL_NOISE_STD) + np.float32(0.5)  # 0.5: round
    b = np.clip(photo, 0.0, 255.0, out=photo).astype(np.uint8)
    return np.take(LABEL_COLOURS, label, axis=0), b, label


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A smooth linear gradient between two distinct muted colours, float [S, S, 3]."""
    i0, i1 = rng.choice(len(BACKGROUND_PALETTE), size=2, replace=False)
    a = rng.uniform(0.0, 2.0 * math.pi)
    gain = rng.uniform(0.9, 1.4) / size
    axis = _axis(size) - 0.5 * size
    t = (axis * (math.cos(a) * gain))[None, :] + (axis * (math.sin(a) * gain))[:, None]
    t = np.clip(t + 0.5, 0.0, 1.0, out=t)[..., None]
    c0, c1 = BACKGROUND_PALETTE[i0], BACKGROUND_PALETTE[i1]
    return c0 + t * (c1 - c0)


_Shape = tuple[int, np.ndarray, dict[str, float], dict[str, float]]  # class, colour, texture, geometry


def _draw_shapes(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray, list[_Shape]]:
    """The class map (uint8 [S, S]), the flat instance map (0 = background) and each shape,
    drawn back to front: what a later shape covers belongs to it."""
    label_img = Image.new("L", (size, size), BACKGROUND)
    instance_img = Image.new("L", (size, size), 0)
    mask_img = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(mask_img)
    shapes: list[_Shape] = []
    for k in range(int(rng.integers(_MIN_SHAPES, _MAX_SHAPES + 1))):
        cls = int(rng.integers(1, NUM_CLASSES))
        cy, cx = rng.uniform(0.08, 0.92, 2) * size
        r = rng.uniform(0.12, 0.24) * size
        mask_img.paste(0, (0, 0, size, size))
        geom = _draw_shape(draw, cls, rng, float(cy), float(cx), float(r))
        label_img.paste(cls, mask=mask_img)  # polygons are not antialiased:
        instance_img.paste(k + 1, mask=mask_img)  # the mask is 0 or 255
        # The instance colour: a random entry of the class palette (this is
        # the ambiguity), slightly jittered.
        palette = CLASS_PALETTES[cls]
        colour = palette[rng.integers(len(palette))]
        colour = colour + rng.normal(0.0, _INSTANCE_JITTER_STD, 3).astype(np.float32)
        shapes.append((cls, colour, _texture_params(cls, rng), geom))
    return np.array(label_img, dtype=np.uint8), np.asarray(instance_img).ravel(), shapes


def _paint_instances(photo: np.ndarray, instance: np.ndarray, shapes: list[_Shape], size: int,
                     rng: np.random.Generator) -> None:
    """Paints each shape's visible pixels of `photo` (in place) with its colour and texture."""
    unit = size / 64.0
    # Pixels grouped by instance: order[starts[k]:starts[k + 1]] are the
    # flat indices of instance k (0 = background).
    order = np.argsort(instance, kind="stable")
    starts = np.concatenate(
        [[0], np.cumsum(np.bincount(instance, minlength=len(shapes) + 1))]
    )
    flat_photo = photo.reshape(-1, 3)
    for k, (cls, colour, params, geom) in enumerate(shapes, start=1):
        idx = order[starts[k] : starts[k + 1]]
        if idx.size == 0:
            continue
        ys, xs = np.divmod(idx, size)
        ysf, xsf = ys.astype(np.float32) + 0.5, xs.astype(np.float32) + 0.5
        flat_photo[idx] = _texture(cls, colour, params, geom, ysf, xsf, unit, rng)
