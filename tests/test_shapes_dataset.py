"""Tests of the embedded `pix2pix_shapes` tensorflow-datasets builder.

The tiny "64" config is prepared once per session (a few seconds, no network)
and shared by every test that needs the prepared dataset.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import tensorflow_datasets as tfds

from pix2pix_tf.data.sources import shapes
from pix2pix_tf.data.sources.shapes import (
    CLASS_NAMES,
    LABEL_COLOURS,
    NUM_CLASSES,
    Pix2pixShapes,
    example_rng,
    render_example,
)

CONFIG = "pix2pix_shapes/64"
SIZE = 64
SPLIT_SIZES = {"train": 64, "val": 16, "test": 16}
FILE_NAME = re.compile(r"^(train|val|test)_(\d{5})\.png$")

Examples = dict[str, list[dict[str, np.ndarray | str]]]


def _prepare(data_dir: Path) -> tfds.core.DatasetBuilder:
    builder = tfds.builder(CONFIG, data_dir=str(data_dir))
    builder.download_and_prepare()
    return builder


def _read_all(builder: tfds.core.DatasetBuilder) -> Examples:
    """Every example of every split as numpy, with file_name decoded to str."""
    out: Examples = {}
    for split in SPLIT_SIZES:
        ds = builder.as_dataset(split=split, shuffle_files=False)
        out[split] = [
            {**ex, "file_name": ex["file_name"].decode()} for ex in tfds.as_numpy(ds)
        ]
    return out


@pytest.fixture(scope="session")
def builder(tmp_path_factory: pytest.TempPathFactory) -> tfds.core.DatasetBuilder:
    return _prepare(tmp_path_factory.mktemp("tfds_shapes_a"))


@pytest.fixture(scope="session")
def examples(builder: tfds.core.DatasetBuilder) -> Examples:
    return _read_all(builder)


# --- constants and registration ---------------------------------------------


def test_constants() -> None:
    assert CLASS_NAMES[0] == "background"
    assert len(CLASS_NAMES) == NUM_CLASSES == len(set(CLASS_NAMES))
    assert LABEL_COLOURS.dtype == np.uint8
    assert LABEL_COLOURS.shape == (NUM_CLASSES, 3)
    assert len({tuple(c) for c in LABEL_COLOURS.tolist()}) == NUM_CLASSES
    # Far apart, so a label image can be decoded back by nearest colour.
    dist = np.abs(LABEL_COLOURS[:, None].astype(int) - LABEL_COLOURS[None].astype(int))
    assert dist.sum(-1)[~np.eye(NUM_CLASSES, dtype=bool)].min() >= 255


def test_registered_with_256_as_default(tmp_path: Path) -> None:
    assert tfds.builder_cls("pix2pix_shapes") is Pix2pixShapes
    names = [c.name for c in Pix2pixShapes.BUILDER_CONFIGS]
    assert names == ["256", "64", "512"]
    default = tfds.builder("pix2pix_shapes", data_dir=str(tmp_path))
    assert default.builder_config.name == "256"
    cfg = default.builder_config
    assert (cfg.image_size, cfg.num_train, cfg.num_val, cfg.num_test) == (256, 1000, 100, 100)
    small = tfds.builder(CONFIG, data_dir=str(tmp_path)).builder_config
    assert (small.image_size, small.num_train, small.num_val, small.num_test) == (64, 64, 16, 16)


# --- the prepared dataset -----------------------------------------------------


def test_split_sizes(builder: tfds.core.DatasetBuilder, examples: Examples) -> None:
    for split, n in SPLIT_SIZES.items():
        assert builder.info.splits[split].num_examples == n
        assert len(examples[split]) == n


def test_features(builder: tfds.core.DatasetBuilder, examples: Examples) -> None:
    assert builder.info.supervised_keys == ("a", "b")
    assert builder.info.features["b"].encoding_format == "jpeg"
    names = []
    for split, rows in examples.items():
        for ex in rows:
            assert ex["a"].shape == (SIZE, SIZE, 3) and ex["a"].dtype == np.uint8
            assert ex["b"].shape == (SIZE, SIZE, 3) and ex["b"].dtype == np.uint8
            assert ex["label"].shape == (SIZE, SIZE, 1) and ex["label"].dtype == np.uint8
            match = FILE_NAME.match(ex["file_name"])
            assert match is not None and match.group(1) == split
            names.append(ex["file_name"])
    assert len(names) == len(set(names))
    expected = {f"{s}_{i:05d}.png" for s, n in SPLIT_SIZES.items() for i in range(n)}
    assert set(names) == expected


def test_as_supervised(builder: tfds.core.DatasetBuilder) -> None:
    ds = builder.as_dataset(split="val", as_supervised=True)
    a, b = next(iter(tfds.as_numpy(ds)))
    assert a.shape == b.shape == (SIZE, SIZE, 3)


def test_a_is_label_colours(examples: Examples) -> None:
    for rows in examples.values():
        for ex in rows:
            label = ex["label"][..., 0]
            assert label.max() < NUM_CLASSES
            np.testing.assert_array_equal(ex["a"], LABEL_COLOURS[label])


def test_every_class_in_train(examples: Examples) -> None:
    seen = set()
    for ex in examples["train"]:
        seen.update(np.unique(ex["label"]).tolist())
    assert seen == set(range(NUM_CLASSES))


def test_prepared_examples_come_from_their_seed(examples: Examples) -> None:
    """Each stored example is render_example of its own (split, index) seed."""
    for split, rows in examples.items():
        for ex in rows[:4]:
            index = int(FILE_NAME.match(ex["file_name"]).group(2))
            a, b, label = render_example(example_rng(split, index), SIZE)
            np.testing.assert_array_equal(ex["a"], a)
            np.testing.assert_array_equal(ex["label"][..., 0], label)
            # "b" is stored as JPEG: close, not equal.
            assert np.abs(ex["b"].astype(int) - b.astype(int)).mean() < 5.0


def test_preparation_is_deterministic(
    tmp_path_factory: pytest.TempPathFactory, examples: Examples
) -> None:
    other = _read_all(_prepare(tmp_path_factory.mktemp("tfds_shapes_b")))
    for split, rows in examples.items():
        by_name = {ex["file_name"]: ex for ex in other[split]}
        assert set(by_name) == {ex["file_name"] for ex in rows}
        for ex in rows:
            twin = by_name[ex["file_name"]]
            for key in ("a", "b", "label"):
                np.testing.assert_array_equal(ex[key], twin[key])


def test_splits_share_no_example(examples: Examples) -> None:
    seen: dict[bytes, str] = {}
    for split, rows in examples.items():
        for ex in rows:
            key = ex["label"].tobytes()
            assert key not in seen, f"{ex['file_name']} repeats an example of {seen[key]}"
            seen[key] = split


# --- render_example -------------------------------------------------------------


def test_render_is_deterministic() -> None:
    first = render_example(example_rng("train", 7), SIZE)
    again = render_example(example_rng("train", 7), SIZE)
    for x, y in zip(first, again, strict=True):
        np.testing.assert_array_equal(x, y)
    for split, index in (("train", 8), ("val", 7), ("test", 7)):
        other = render_example(example_rng(split, index), SIZE)
        assert not np.array_equal(first[2], other[2])


def test_split_seeds_are_distinct() -> None:
    assert set(shapes.SPLIT_SEEDS) == set(SPLIT_SIZES)
    assert len(set(shapes.SPLIT_SEEDS.values())) == len(SPLIT_SIZES)


@pytest.mark.parametrize("size", [64, 128, 256])
def test_render_shapes_and_dtypes(size: int) -> None:
    a, b, label = render_example(np.random.default_rng(0), size)
    assert a.shape == b.shape == (size, size, 3)
    assert label.shape == (size, size)
    assert a.dtype == b.dtype == label.dtype == np.uint8
    np.testing.assert_array_equal(a, LABEL_COLOURS[label])
    # Shapes are neither tiny nor everything: a sizeable share is foreground.
    assert 0.05 < (label > 0).mean() < 0.95


def test_render_same_scene_at_every_size() -> None:
    """Geometry is relative, so the 64 config is a low-res view of the 256 one."""
    small = render_example(example_rng("val", 3), 64)[2]
    large = render_example(example_rng("val", 3), 256)[2]
    down = large[2::4, 2::4]  # pixel centres of the 64 grid
    assert (down == small).mean() > 0.9


def test_render_rejects_tiny_size() -> None:
    with pytest.raises(ValueError, match="image_size"):
        render_example(np.random.default_rng(0), 8)


# --- the ambiguity the dataset exists for ----------------------------------------


def _saturation(rgb: np.ndarray) -> np.ndarray:
    return rgb.max(-1) - rgb.min(-1)


def test_colour_is_not_determined_by_the_input(examples: Examples) -> None:
    """Per class, the photo colour varies widely between images.

    So the L1-optimal prediction (the mean colour) is far from every real
    instance and much less saturated than them: the grey, washed-out output
    that the paper shows for L1 alone.
    """
    for cls in range(1, NUM_CLASSES):
        means = []
        for ex in examples["train"]:
            mask = ex["label"][..., 0] == cls
            if mask.sum() >= 30:
                means.append(ex["b"][mask].astype(np.float64).mean(0))
        assert len(means) >= 10, CLASS_NAMES[cls]
        means_arr = np.stack(means)
        grand = means_arr.mean(0)
        spread = np.linalg.norm(means_arr - grand, axis=1).mean()
        assert spread > 40.0, (CLASS_NAMES[cls], spread)
        assert _saturation(grand) < 0.75 * np.median(_saturation(means_arr)), CLASS_NAMES[cls]
