"""The objective and the optimiser schedule, checked against values computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
import tensorflow as tf

from pix2pix_tf.config import LossConfig
from pix2pix_tf.training.losses import discriminator_loss, gan_loss, generator_loss, l1_loss
from pix2pix_tf.training.optimization import LinearDecaySchedule

pytestmark = pytest.mark.graph_optimizer  # The values users get: Grappler on (tests/process_fixtures.py).


def logits(value: float, batch: int = 2) -> tf.Tensor:
    return tf.fill([batch, 3, 3, 1], value)


def test_vanilla_gan_loss_is_bce_with_logits():
    x = 0.3
    assert gan_loss(logits(x), True, "vanilla").numpy() == pytest.approx([math.log1p(math.exp(-x))] * 2)
    assert gan_loss(logits(x), False, "vanilla").numpy() == pytest.approx([math.log1p(math.exp(x))] * 2)


def test_lsgan_loss_is_squared_error_to_one_or_zero():
    assert gan_loss(logits(0.3), True, "lsgan").numpy() == pytest.approx([0.49] * 2)
    assert gan_loss(logits(0.3), False, "lsgan").numpy() == pytest.approx([0.09] * 2)


def test_discriminator_loss_is_halved():
    losses = discriminator_loss(logits(2.0), logits(-1.0), "vanilla")
    expected = 0.5 * (math.log1p(math.exp(-2.0)) + math.log1p(math.exp(-1.0)))
    assert losses["d_total"].numpy() == pytest.approx([expected] * 2)


def test_generator_loss_is_non_saturating_gan_plus_weighted_l1():
    target, output = tf.zeros([2, 4, 4, 3]), tf.fill([2, 4, 4, 3], 0.5)
    losses = generator_loss(logits(-1.0), target, output, LossConfig(lambda_l1=100.0))
    # Non-saturating: -log D(x, G(x)), i.e. BCE against "real".
    assert losses["g_gan"].numpy() == pytest.approx([math.log1p(math.exp(1.0))] * 2)
    assert losses["g_l1"].numpy() == pytest.approx([0.5, 0.5])
    assert losses["g_total"].numpy() == pytest.approx([math.log1p(math.exp(1.0)) + 50.0] * 2)


def test_paper_variants_l1_only_and_cgan_only():
    target, output = tf.zeros([1, 2, 2, 3]), tf.ones([1, 2, 2, 3])
    l1_only = generator_loss(None, target, output, LossConfig(gan_weight=0.0))
    assert "g_gan" not in l1_only and l1_only["g_total"].numpy() == pytest.approx([100.0])
    cgan_only = generator_loss(logits(0.0, 1), target, output, LossConfig(lambda_l1=0.0))
    assert cgan_only["g_total"].numpy() == pytest.approx([math.log(2.0)])


def test_l1_is_per_example_mean_absolute_error():
    target = tf.constant(np.zeros([2, 2, 2, 1], np.float32))
    output = tf.constant(np.stack([np.full([2, 2, 1], 1.0), np.full([2, 2, 1], -0.5)]).astype(np.float32))
    assert l1_loss(target, output).numpy() == pytest.approx([1.0, 0.5])


def test_schedule_is_constant_then_linear_decay_per_epoch():
    # 3 constant epochs, 4 decay epochs, 10 steps per epoch (the reference's lambda_rule).
    schedule = LinearDecaySchedule(2e-4, epochs=3, epochs_decay=4, steps_per_epoch=10)
    lr = [float(schedule(step)) for step in range(0, 70, 10)]
    assert lr == pytest.approx([2e-4, 2e-4, 2e-4, 2e-4 * 4 / 5, 2e-4 * 3 / 5, 2e-4 * 2 / 5, 2e-4 / 5])
    assert float(schedule(9)) == pytest.approx(2e-4) and float(schedule(39)) == pytest.approx(1.6e-4)


def test_this_module_runs_with_the_graph_optimizer_on_as_users_run_it():
    """Marked `graph_optimizer` (tests/process_fixtures.py); test_test_command.py checks the others."""
    assert not tf.config.optimizer.get_experimental_options().get("disable_meta_optimizer", False)
