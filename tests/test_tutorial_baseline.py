"""The benchmark's baseline is the TensorFlow tutorial's pix2pix: its sizes, shapes and step."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from pix2pix_tf.benchmark.tutorial import TutorialPix2Pix, tutorial_discriminator

pytestmark = pytest.mark.graph_optimizer  # The values users get: Grappler on (tests/process_fixtures.py).


@pytest.fixture(scope="module")
def tutorial() -> TutorialPix2Pix:
    return TutorialPix2Pix()


def pair(seed: int) -> tuple[tf.Tensor, tf.Tensor]:
    """A random (input, target) batch of one 256x256 RGB pair in [-1, 1]."""
    gen = tf.random.Generator.from_seed(seed)
    return gen.uniform([1, 256, 256, 3], -1, 1), gen.uniform([1, 256, 256, 3], -1, 1)


def test_parameter_counts_are_the_tutorials_published_totals(tutorial):
    # model.summary() "Total params" in the tutorial, moving statistics included.
    assert tutorial.generator.count_params() == 54_425_859
    assert tutorial.discriminator.count_params() == 2_770_433


def test_discriminator_outputs_30x30_logits():
    inp, tar = pair(0)
    assert tutorial_discriminator()([inp, tar], training=False).shape == (1, 30, 30, 1)


@pytest.mark.slow
def test_train_step_updates_both_models_without_retracing(tutorial):
    # First and last variables: the 1x1 bottleneck's batch norm zeroes some gradients at batch 1.
    watched = {name: [model.trainable_variables[0], model.trainable_variables[-1]]
               for name, model in (("G", tutorial.generator), ("D", tutorial.discriminator))}
    before = {name: [v.numpy() for v in variables] for name, variables in watched.items()}

    losses = {k: float(v) for k, v in tutorial.train_step(*pair(1)).items()}

    assert set(losses) == {"gen_total_loss", "gen_gan_loss", "gen_l1_loss", "disc_loss"}
    assert all(np.isfinite(v) for v in losses.values()), losses
    assert losses["gen_total_loss"] == pytest.approx(losses["gen_gan_loss"] + 100 * losses["gen_l1_loss"],
                                                     rel=1e-5)
    for name, variables in watched.items():
        for old, new in zip(before[name], variables):
            assert not np.array_equal(old, new.numpy()), f"{name}'s {new.path} did not change"

    tutorial.train_step(*pair(2))
    assert tutorial.train_step.experimental_get_tracing_count() == 1
