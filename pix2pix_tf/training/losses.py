"""The objective (paper eq. 1-4): G* = arg min_G max_D L_cGAN(G, D) + lambda * L_L1(G).

Every function returns one loss value per example, so that the training step can average
over the GLOBAL batch with `tf.nn.compute_average_loss` whatever the number of replicas.
"""

from __future__ import annotations

from typing import Optional

import tensorflow as tf

from pix2pix_tf.config import LossConfig


def gan_loss(logits: tf.Tensor, target_is_real: bool, gan_mode: str) -> tf.Tensor:
    """Per-example GAN loss of a map of D logits against the label "real" or "fake".

    vanilla: binary cross-entropy on logits (D has no sigmoid layer); lsgan: squared error
    against 1/0. Averaged over the patch map, as the reference averages over all patches.
    """
    labels = tf.ones_like(logits) if target_is_real else tf.zeros_like(logits)
    if gan_mode == "vanilla":
        per_patch = tf.nn.sigmoid_cross_entropy_with_logits(labels=labels, logits=logits)
    elif gan_mode == "lsgan":
        per_patch = tf.math.squared_difference(logits, labels)
    else:
        raise ValueError(f"Unknown gan_mode {gan_mode!r}.")
    return tf.reduce_mean(per_patch, axis=[1, 2, 3])


def l1_loss(target: tf.Tensor, output: tf.Tensor) -> tf.Tensor:
    """Per-example mean absolute error, L_L1 = E|y - G(x)|."""
    return tf.reduce_mean(tf.abs(target - output), axis=[1, 2, 3])


def discriminator_loss(real_logits: tf.Tensor, fake_logits: tf.Tensor,
                       gan_mode: str) -> dict[str, tf.Tensor]:
    """D's loss, halved as in the paper to slow D down relative to G."""
    real = gan_loss(real_logits, True, gan_mode)
    fake = gan_loss(fake_logits, False, gan_mode)
    return {"d_real": real, "d_fake": fake, "d_total": 0.5 * (real + fake)}


def generator_loss(fake_logits: Optional[tf.Tensor], target: tf.Tensor, output: tf.Tensor,
                   config: LossConfig) -> dict[str, tf.Tensor]:
    """G's loss: the non-saturating GAN term (fool D into "real") plus lambda * L1.

    `lambda_l1=0` gives the paper's "cGAN only" row; `gan_weight=0` its "L1 only" row, for
    which no D is trained and `fake_logits` is None.
    """
    losses = {"g_l1": l1_loss(target, output)}
    losses["g_total"] = config.lambda_l1 * losses["g_l1"]
    if fake_logits is not None:
        losses["g_gan"] = gan_loss(fake_logits, True, config.gan_mode)
        losses["g_total"] += config.gan_weight * losses["g_gan"]
    return losses
