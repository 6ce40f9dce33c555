"""Users' own folders: both layouts, image kinds, and a clear answer for each kind of bad data."""

from __future__ import annotations

import logging
import os
import shutil

import numpy as np
import pytest
from PIL import Image

from pix2pix_tf.config import DataConfig
from pix2pix_tf.data import pipeline
from pix2pix_tf.data.sources.folder import scan_folder
from pix2pix_tf.errors import DatasetError

RNG = np.random.default_rng(0)


def save(path, array: np.ndarray, **kwargs) -> str:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(array).save(path, **kwargs)
    return str(path)


def side_by_side(height: int = 16) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    a = np.full((height, height, 3), (255, 0, 0), np.uint8)
    b = np.full((height, height, 3), (0, 0, 255), np.uint8)
    return np.concatenate([a, b], axis=1), a, b


def aligned_folder(root, counts=(("train", 3), ("val", 2))) -> str:
    for split, count in counts:
        for i in range(count):
            save(root / split / f"{i}.png", side_by_side()[0])
    return str(root)


def first_pair(dataset: pipeline.PairedDataset, split: str = "train", nc=(3, 3)) -> tuple[np.ndarray, np.ndarray]:
    record = next(iter(dataset.records(split)))
    input_image, target = dataset.input_target(record, *nc)
    return input_image.numpy(), target.numpy()


def load(root, **config) -> pipeline.PairedDataset:
    return pipeline.load_paired_dataset(DataConfig(dataset=f"folder:{root}", **config))


def test_aligned_layout_splits_a_left_b_right(tmp_path):
    dataset = load(aligned_folder(tmp_path))
    assert dataset.split_sizes == {"train": 3, "val": 2} and dataset.held_out_split == "val"
    a, b = first_pair(dataset)
    assert a.shape == (16, 16, 3) and np.allclose(a[..., 0], 1.0) and np.allclose(a[..., 2], -1.0)
    assert np.allclose(b[..., 2], 1.0) and np.allclose(b[..., 0], -1.0)
    a_to_b = load(tmp_path, direction="BtoA")
    b_first, a_second = first_pair(a_to_b)
    np.testing.assert_array_equal(b_first, b)
    np.testing.assert_array_equal(a_second, a)


def test_a_b_trees_are_matched_by_name_across_extensions(tmp_path):
    for split in ("train", "test"):
        for i in range(2):
            save(tmp_path / "A" / split / f"{i}.png", np.full((8, 8, 3), 10 * i, np.uint8))
            save(tmp_path / "B" / split / f"{i}.jpg", np.full((8, 8, 3), 200, np.uint8), quality=100)
    dataset = load(tmp_path)
    assert dataset.split_sizes == {"train": 2, "test": 2}
    record = list(dataset.records("train"))[1]
    assert record[0].numpy().decode().endswith("A/train/1.png")
    assert record[1].numpy().decode().endswith("B/train/1.jpg")


def test_a_b_trees_of_different_sizes_are_resized_together(tmp_path):
    save(tmp_path / "A" / "0.png", np.zeros((8, 8, 3), np.uint8))
    save(tmp_path / "B" / "0.png", np.zeros((16, 16, 3), np.uint8))
    a, b = first_pair(load(tmp_path))
    assert a.shape == b.shape == (8, 8, 3)


def test_grayscale_rgba_and_16_bit_images_are_converted(tmp_path):
    grey = np.tile(np.linspace(0, 255, 32).astype(np.uint8), (16, 1))
    save(tmp_path / "train" / "grey.png", grey)
    rgba = np.concatenate([side_by_side()[0], np.full((16, 32, 1), 7, np.uint8)], axis=-1)
    save(tmp_path / "train" / "rgba.png", rgba)
    deep = (np.tile(np.linspace(0, 1, 32), (16, 1)) * 65535).astype(np.uint16)
    save(tmp_path / "train" / "deep.png", deep)
    dataset = load(tmp_path)
    records = {r[0].numpy().decode().rsplit("/", 1)[1]: r for r in dataset.records("train")}
    a, b = dataset.input_target(records["grey.png"], 3, 3)
    assert a.shape == (16, 16, 3) and np.allclose(a[..., 0], a[..., 1])
    a, b = dataset.input_target(records["rgba.png"], 3, 3)
    assert np.allclose(a.numpy()[..., 0], 1.0)  # alpha dropped, colour kept
    a, b = dataset.input_target(records["deep.png"], 3, 3)
    assert a.numpy().min() == pytest.approx(-1.0) and b.numpy().max() == pytest.approx(1.0, abs=1e-3)
    a, b = dataset.input_target(records["rgba.png"], 1, 3)  # --input_nc=1
    assert a.shape == (16, 16, 1) and b.shape == (16, 16, 3)


def test_corrupt_and_truncated_files_are_skipped_and_counted(tmp_path, caplog):
    aligned_folder(tmp_path)
    (tmp_path / "train" / "noise.jpg").write_bytes(RNG.integers(0, 256, 500, dtype=np.uint8).tobytes())
    good = save(tmp_path / "train" / "cut.jpg", RNG.integers(0, 256, (64, 128, 3), dtype=np.uint8))
    content = open(good, "rb").read()
    open(good, "wb").write(content[: len(content) // 2])
    with caplog.at_level(logging.WARNING):
        dataset = load(tmp_path)
    assert dataset.split_sizes["train"] == 3
    assert "Skipped 2 file(s)" in caplog.text and "2 not a readable image" in caplog.text
    assert "train/noise.jpg" in caplog.text and "train/cut.jpg" in caplog.text


def test_images_that_are_not_side_by_side_are_skipped_and_counted(tmp_path, caplog):
    aligned_folder(tmp_path)
    save(tmp_path / "train" / "square.png", np.zeros((16, 16, 3), np.uint8))
    with caplog.at_level(logging.WARNING):
        scan = scan_folder(str(tmp_path))
    assert len(scan.splits["train"]) == 3
    assert "1 not side by side (width is not twice the height) (train/square.png)" in caplog.text


def test_an_a_without_its_b_is_skipped_and_counted(tmp_path, caplog):
    for i in range(3):
        save(tmp_path / "A" / f"{i}.png", np.zeros((8, 8, 3), np.uint8))
    for i in range(2):
        save(tmp_path / "B" / f"{i}.png", np.zeros((8, 8, 3), np.uint8))
    with caplog.at_level(logging.WARNING):
        scan = scan_folder(str(tmp_path))
    assert len(scan.splits["train"]) == 2
    assert "1 without a partner of the same name in the other tree (A/2.png)" in caplog.text


def test_empty_folder_and_an_empty_train_split_are_errors(tmp_path):
    with pytest.raises(DatasetError, match="holds no usable image pairs"):
        scan_folder(str(tmp_path))
    save(tmp_path / "test" / "0.png", side_by_side()[0])
    save(tmp_path / "train" / "bad.png", np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(DatasetError, match="the train split holds no usable pair") as error:
        scan_folder(str(tmp_path))
    assert "train/bad.png" in str(error.value)


def test_duplicate_names_in_a_tree_are_an_error(tmp_path):
    save(tmp_path / "A" / "x.png", np.zeros((8, 8, 3), np.uint8))
    save(tmp_path / "A" / "x.jpg", np.zeros((8, 8, 3), np.uint8))
    save(tmp_path / "B" / "x.png", np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(DatasetError, match="Two images named 'x'"):
        scan_folder(str(tmp_path))
    # A newline in the names: escaped, so that the message stays one line.
    for name in ("x\ny.png", "x\ny.jpg"):
        save(tmp_path / "A" / name, np.zeros((8, 8, 3), np.uint8))
    save(tmp_path / "B" / "x\ny.png", np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(DatasetError, match=r"^Two images named 'x\\ny' in .*/A: x\\x0ay\.jpg and x\\x0ay\.png\. "
                                           r"A/B pairs are matched by name, so names must be unique\.$"):
        scan_folder(str(tmp_path))


def test_a_folder_trains_through_the_pipeline(tmp_path):
    dataset = load(aligned_folder(tmp_path, counts=(("train", 4),)))
    assert dataset.held_out_split == "train"  # no val/test: samples come from train, with a warning
    config = DataConfig(load_size=36, crop_size=32, batch_size=2)
    input_batch, target_batch = next(iter(pipeline.train_stream(dataset, config, 3, 3, seed=0)))
    assert input_batch.shape == (2, 32, 32, 3) and target_batch.shape == (2, 32, 32, 3)


def test_a_relative_folder_is_recorded_absolute_and_a_moved_one_refused(tmp_path, monkeypatch):
    """config.json names the folder trained on, wherever the next command starts: a resume
    from another directory, where the same relative path is another folder, is refused with
    both paths instead of training on other images."""
    import json

    from pix2pix_tf.errors import ConfigError
    from pix2pix_tf.training.loop import train

    from conftest import tiny_config

    for place in ("first", "second"):
        aligned_folder(tmp_path / place / "pairs")
    workdir = tmp_path / "run"
    monkeypatch.chdir(tmp_path / "first")
    config = tiny_config(workdir, None, data=dict(dataset="folder:pairs"), optim=dict(steps=1),
                         run=dict(deterministic_ops=False, eval_examples=0))
    train(config)
    recorded = json.loads((workdir / "config.json").read_text())["data"]["dataset"]
    assert recorded == f"folder:{tmp_path / 'first' / 'pairs'}"
    monkeypatch.chdir(tmp_path / "second")
    with pytest.raises(ConfigError) as caught:
        train(config)
    assert (f"data.dataset: 'folder:{tmp_path / 'first' / 'pairs'}' in config.json, "
            f"'folder:{tmp_path / 'second' / 'pairs'}' now") in str(caught.value)
    assert "no longer exists" not in str(caught.value)
    # Moved away: repeating the original flag cannot resume it (it said only that).
    shutil.rmtree(tmp_path / "first" / "pairs")
    with pytest.raises(ConfigError) as caught:
        train(config)
    assert str(caught.value).endswith(
        f"repeat the original flags to resume. {tmp_path / 'first' / 'pairs'}, the folder the run trained on, no "
        "longer exists: if its images moved, set data.dataset in config.json to the new folder (a moved path is "
        "not taken for the same images on its own).")


def test_a_file_name_that_is_not_utf8_is_read(tmp_path):
    """os.listdir gives such a name with surrogate escapes, which TensorFlow cannot take as a
    string: the pipeline passes paths as bytes, so the file is trained on like any other."""
    aligned_folder(tmp_path, counts=(("train", 2),))
    green = np.concatenate([np.full((16, 16, 3), (0, 255, 0), np.uint8)] * 2, axis=1)
    Image.fromarray(green).save(os.path.join(os.fsencode(tmp_path / "train"), b"bad\xff.png"))
    dataset = load(tmp_path)
    assert dataset.split_sizes["train"] == 3
    inputs = [dataset.input_target(record, 3, 3)[0].numpy() for record in dataset.records("train")]
    assert sum(np.allclose(a[..., 1], 1.0) for a in inputs) == 1  # The green pair, decoded.
    batch = next(iter(pipeline.train_stream(dataset, DataConfig(load_size=18, crop_size=16, batch_size=3), 3, 3, 0)))
    assert batch[0].shape == (3, 16, 16, 3)


def test_files_the_layout_does_not_read_are_named_in_the_warning(tmp_path, caplog):
    """Only the files directly in a split folder are read: one in a sub-folder of a split, or
    beside the split folders, is counted and named with the skipped files, never dropped silently."""
    aligned_folder(tmp_path)
    save(tmp_path / "stray.png", side_by_side()[0])
    save(tmp_path / "notes" / "x.png", side_by_side()[0])
    for i in range(6):
        save(tmp_path / "train" / "more" / f"{i}.png", side_by_side()[0])
    save(tmp_path / "train" / ".hidden" / "x.png", side_by_side()[0])  # Hidden: not looked at.
    with caplog.at_level(logging.WARNING):
        scan = scan_folder(str(tmp_path))
    assert {split: len(pairs) for split, pairs in scan.splits.items()} == {"train": 3, "val": 2}
    assert (f"Skipped 8 file(s) in {tmp_path}: 8 not directly in a split folder, not read (stray.png, "
            "notes/x.png, train/more/0.png, train/more/1.png, train/more/2.png, and 3 more).") in caplog.text


def test_links_to_folders_are_not_followed_but_counted_and_named_in_the_warning(tmp_path, caplog):
    """A link to a folder in a split folder, beside the split folders or below them was dropped
    without a word (only files were counted); it is not followed, but named with its target."""
    elsewhere = tmp_path / "elsewhere"
    save(elsewhere / "0.png", side_by_side()[0])
    root = tmp_path / "data"
    aligned_folder(root)
    for link in ("train/linked", "beside", "notes/deeper"):
        (root / link).parent.mkdir(exist_ok=True)
        (root / link).symlink_to(elsewhere)
    with caplog.at_level(logging.WARNING):
        scan = scan_folder(str(root))
    assert {split: len(pairs) for split, pairs in scan.splits.items()} == {"train": 3, "val": 2}
    assert (f"Skipped 3 file(s) in {root}: 3 a link to a folder, not followed (beside: to {elsewhere}, "
            f"notes/deeper: to {elsewhere}, train/linked: to {elsewhere}).") in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING):  # Images directly in the root: the root is the train split.
        scan = scan_folder(str(root / "train"))
    assert len(scan.splits["train"]) == 3
    assert f"1 a link to a folder, not followed (linked: to {elsewhere})" in caplog.text


def test_a_b_files_the_layout_does_not_read_are_named_in_the_warning(tmp_path, caplog):
    for side in ("A", "B"):
        save(tmp_path / side / "train" / "0.png", np.zeros((8, 8, 3), np.uint8))
    save(tmp_path / "A" / "1.png", np.zeros((8, 8, 3), np.uint8))  # Beside A/train: not a split.
    save(tmp_path / "B" / "train" / "more" / "1.png", np.zeros((8, 8, 3), np.uint8))
    with caplog.at_level(logging.WARNING):
        scan = scan_folder(str(tmp_path))
    assert scan.splits == {"train": [tuple(str(tmp_path / side / "train" / "0.png") for side in ("A", "B"))]}
    assert "2 not directly in a split folder, not read (A/1.png, B/train/more/1.png)" in caplog.text


def test_an_image_that_scale_width_would_scale_over_the_cap_is_skipped(tmp_path, caplog):
    """--preprocess=scale_width keeps the aspect ratio: a 1x8000 input, within --max_pixels as
    stored, would become 143x1144000. The scan decides from the header, before any resize."""
    for side in ("A", "B"):
        save(tmp_path / side / "train" / "0.png", np.zeros((16, 16, 3), np.uint8))
        save(tmp_path / side / "train" / "thin.png", np.zeros((8000, 1, 3), np.uint8))
    assert load(tmp_path).split_sizes["train"] == 2  # resize_and_crop: 286x286, whatever the file's shape.
    with caplog.at_level(logging.WARNING):
        dataset = load(tmp_path, preprocess="scale_width", load_size=143, crop_size=128)
    assert dataset.split_sizes["train"] == 1
    assert ("1 over the pixel limit (--max_pixels) (A/train/thin.png: --preprocess=scale_width makes 143x1144000 "
            "(163.6 megapixels) of its 1x8000 input, over the limit of 16.8 megapixels (--max_pixels))") in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING):  # Trained at 16x128000, but held out at --crop_size wide.
        load(tmp_path, preprocess="scale_width", load_size=16, crop_size=128)
    assert "A/train/thin.png: --preprocess=scale_width makes 128x1024000 (131.1 megapixels) of its" in caplog.text
