"""The input pipeline: the reference's jitter, held-out preprocessing, a resumable stream."""

from __future__ import annotations

import dataclasses
import tempfile

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from pix2pix_tf import catalogue
from pix2pix_tf.config import DataConfig
from pix2pix_tf.data import pipeline
from pix2pix_tf.errors import DatasetError

from conftest import TINY_DATASET

JITTER = DataConfig(load_size=72, crop_size=64)


def test_jitter_is_identical_for_input_and_target():
    image = tf.random.uniform([64, 64, 3], -1, 1, seed=1)
    for i in range(8):
        a, b = pipeline.jitter(image, image, tf.constant([3, i], tf.int64), JITTER)
        assert a.shape == (64, 64, 3)
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_jitter_depends_only_on_the_seed():
    image = tf.random.uniform([64, 64, 3], -1, 1, seed=2)
    first = [pipeline.jitter(image, image, tf.constant([5, i], tf.int64), JITTER)[0].numpy() for i in range(6)]
    again = [pipeline.jitter(image, image, tf.constant([5, i], tf.int64), JITTER)[0].numpy() for i in range(6)]
    for x, y in zip(first, again):
        np.testing.assert_array_equal(x, y)
    assert len({x.tobytes() for x in first}) > 1  # crops and flips differ between examples


def test_jitter_flips_and_crops_both_sides_together():
    # Left half -1, right half +1 as input; the target is its mirror image.
    left_right = tf.concat([-tf.ones([64, 32, 3]), tf.ones([64, 32, 3])], axis=1)
    config = dataclasses.replace(JITTER, preprocess="none")
    flips = set()
    for i in range(16):
        a, b = pipeline.jitter(left_right, left_right[:, ::-1], tf.constant([0, i], tf.int64), config)
        np.testing.assert_array_equal(a.numpy(), b.numpy()[:, ::-1])
        flips.add(float(a[0, 0, 0]))
    assert flips == {-1.0, 1.0}


def test_resize_is_bicubic_not_nearest():
    checker = tf.constant(np.indices([8, 8]).sum(0) % 2 * 2.0 - 1.0, tf.float32)[..., None]
    resized = pipeline.resize(checker, 12).numpy()
    assert len(np.unique(resized.round(3))) > 2  # nearest-neighbour would keep only -1 and 1
    assert resized.min() >= -1.0 and resized.max() <= 1.0


def test_held_out_preprocessing_resizes_to_crop_size_without_jitter():
    a, b = pipeline.held_out_resize(tf.zeros([40, 50, 3]), tf.zeros([40, 50, 3]), JITTER)
    assert a.shape == (64, 64, 3) and b.shape == (64, 64, 3)


@pytest.fixture(scope="module")
def tiny(data_dir) -> pipeline.PairedDataset:
    return pipeline.load_paired_dataset(DataConfig(dataset=TINY_DATASET, data_dir=data_dir))


def stream_images(tiny, config, start, count, seed=11):
    stream = pipeline.train_stream(tiny, config, 3, 3, seed=seed, start_example=start)
    return [a.numpy() for a, _ in stream.take(count)]


def test_stream_resumes_at_any_position_across_epochs(tiny):
    config = DataConfig(dataset=TINY_DATASET, load_size=72, crop_size=64, batch_size=1)
    n = tiny.num_train
    from_start = stream_images(tiny, config, 0, n + 3)
    resumed = stream_images(tiny, config, n - 2, 5)  # crosses the epoch boundary
    for x, y in zip(from_start[n - 2:], resumed):
        np.testing.assert_array_equal(x, y)


UNJITTERED = DataConfig(dataset=TINY_DATASET, preprocess="none", flip=False, batch_size=1)


@pytest.fixture(scope="module")
def two_epochs(tiny) -> list[np.ndarray]:
    """The first two epochs of the unjittered stream of seed 11 (read only): the stream is the same
    whenever it is built, so the tests below read one instead of each building its own."""
    return stream_images(tiny, UNJITTERED, 0, 2 * tiny.num_train)


@pytest.mark.parametrize("seed", [2**63 - 1, -2**63], ids=["largest", "smallest"])
def test_every_64_bit_seed_streams_and_differs_from_a_small_one(tiny, two_epochs, seed):
    """Epoch e's shuffle seed (seed x 1000003 + e) wraps as int64 arithmetic: a seed of 2**63 - 1
    stopped the run in a Python OverflowError traceback. The small seed: 11 (`two_epochs`)."""
    n = tiny.num_train
    images = [x.tobytes() for x in stream_images(tiny, UNJITTERED, 0, n + 1, seed=seed)]
    assert len(set(images[:n])) == n and images != [x.tobytes() for x in two_epochs[:n + 1]]


def test_each_epoch_is_a_new_permutation(tiny, two_epochs):
    n = tiny.num_train
    images = two_epochs
    epoch0, epoch1 = [x.tobytes() for x in images[:n]], [x.tobytes() for x in images[n:]]
    assert len(set(epoch0)) == n and set(epoch0) == set(epoch1)  # no example twice per epoch
    assert epoch0 != epoch1  # reshuffled


def test_direction_chooses_the_input_side(tiny):
    a_to_b = next(iter(pipeline.held_out_pairs(tiny, DataConfig(crop_size=64), 3, 3)))
    swapped = dataclasses.replace(tiny, direction="BtoA")
    b_to_a = next(iter(pipeline.held_out_pairs(swapped, DataConfig(crop_size=64), 3, 3)))
    np.testing.assert_array_equal(a_to_b[0].numpy(), b_to_a[1].numpy())
    np.testing.assert_array_equal(a_to_b[1].numpy(), b_to_a[0].numpy())


@pytest.mark.parametrize("direction, input_nc, config", [
    ("AtoB", 3, DataConfig(crop_size=64)),
    ("BtoA", 1, DataConfig(crop_size=48)),
    ("AtoB", 3, DataConfig(preprocess="none")),
    ("AtoB", 3, DataConfig(preprocess="scale_width", crop_size=40)),
])
def test_the_first_held_out_pairs_are_those_of_the_held_out_pipeline(tiny, direction, input_nc, config):
    """Read eagerly for the monitor, the export's checks and the demo: the same pixels as the
    tf.data pipeline's first pairs, bit for bit."""
    dataset = dataclasses.replace(tiny, direction=direction)
    expected = list(pipeline.held_out_pairs(dataset, config, input_nc, 3, limit=3, multiple=4).as_numpy_iterator())
    first = pipeline.first_held_out_pairs(dataset, config, input_nc, 3, 3, multiple=4)
    assert len(first) == len(expected) == 3
    for (a, b), (x, y) in zip(first, expected):
        assert a.dtype == x.dtype == np.float32 and a.shape[-1] == input_nc
        np.testing.assert_array_equal(a, x)
        np.testing.assert_array_equal(b, y)


def test_default_directions_follow_the_paper():
    assert catalogue.default_direction("facades") == "BtoA"
    assert catalogue.default_direction("edges2shoes") == "AtoB"
    assert catalogue.default_direction("shapes/64") == "AtoB"


def test_unknown_datasets_are_clear_errors(tmp_path):
    with pytest.raises(DatasetError, match="not a known dataset"):
        pipeline.load_paired_dataset(DataConfig(dataset="edges2cats", data_dir=str(tmp_path)))
    with pytest.raises(DatasetError, match="no such directory"):
        pipeline.load_paired_dataset(DataConfig(dataset=f"folder:{tmp_path}/missing"))
    (tmp_path / "train.py").write_text("")
    with pytest.raises(DatasetError, match=r"folder:.*train\.py: a file, not a folder of images\.$"):
        pipeline.load_paired_dataset(DataConfig(dataset=f"folder:{tmp_path}/train.py"))


def test_scale_width_keeps_the_aspect_ratio_and_the_minimum_height():
    image = tf.zeros([100, 200, 3])
    config = DataConfig(preprocess="scale_width", load_size=64, crop_size=16, flip=False)
    a, _ = pipeline.jitter(image, image, tf.constant([0, 0], tf.int64), config)
    assert a.shape[:2] == (32, 64)
    tall = DataConfig(preprocess="scale_width", load_size=64, crop_size=48, flip=False)
    a, _ = pipeline.jitter(image, image, tf.constant([0, 0], tf.int64), tall)
    assert a.shape[:2] == (48, 64)  # height never below crop_size, as the reference
    cropped = DataConfig(preprocess="scale_width_and_crop", load_size=64, crop_size=32)
    a, _ = pipeline.jitter(image, image, tf.constant([0, 0], tf.int64), cropped)
    assert a.shape[:2] == (32, 32)


def test_none_rounds_to_sides_the_generator_takes():
    image = tf.zeros([90, 300, 3])
    config = DataConfig(preprocess="none", flip=False)
    a, _ = pipeline.jitter(image, image, tf.constant([0, 0], tf.int64), config, multiple=128)
    assert a.shape[:2] == (128, 256)
    a, _ = pipeline.held_out_resize(image, image, config, multiple=4)
    assert a.shape[:2] == (88, 300)  # 22.5 rounds half to even, like the reference's Python round()


def test_held_out_scale_width_uses_the_crop_size_as_width():
    a, _ = pipeline.held_out_resize(tf.zeros([100, 200, 3]), tf.zeros([100, 200, 3]),
                                DataConfig(preprocess="scale_width", load_size=64, crop_size=32), multiple=4)
    assert a.shape[:2] == (32, 32)


def test_workers_read_disjoint_slices_of_each_global_batch(tiny):
    """Two input pipelines together see each example of an epoch once, in the one-pipeline order."""
    config = DataConfig(dataset=TINY_DATASET, preprocess="none", flip=False, batch_size=4)
    n = tiny.num_train

    def images(shard, replica_batch):
        stream = pipeline.train_stream(tiny, config, 3, 3, seed=5, shard=shard, replica_batch_size=replica_batch)
        return [x.tobytes() for a, _ in stream.take(n // replica_batch // shard[1]) for x in a.numpy()]

    whole = images((0, 1), 4)
    first, second = images((0, 2), 2), images((1, 2), 2)
    assert not set(first) & set(second)
    assert sorted(first + second) == sorted(whole) and len(set(whole)) == n
    interleaved = [x for k in range(0, len(first), 2) for x in first[k:k + 2] + second[k:k + 2]]
    assert interleaved == whole  # global batch k = worker 0's slice, then worker 1's


@pytest.mark.parametrize("name", ["pix2pix_shapes/64", "pix2pix/facades"])
def test_the_builder_of_an_unprepared_dataset_leaves_nothing_in_the_temp_folder(name, tmp_path, monkeypatch):
    """tfds' own `DatasetInfo` makes an empty folder there for its (disabled) GCS look-up, and
    leaves it: one more in /tmp at every first preparation of a dataset."""
    temp = tmp_path / "temp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    builder = tfds.builder(name, data_dir=str(tmp_path / "tfds"))
    assert not builder.is_prepared() and builder.info.description
    assert list(temp.iterdir()) == []
