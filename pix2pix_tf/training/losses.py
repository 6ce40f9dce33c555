"""The objective (paper eq. 1-4): G* = arg min_G max_D L_cGAN(G, D) + lambda * L_L1(G).

Options beyond the paper: pix2pixHD's multi-scale D, whose GAN loss is summed over its scales,
and its discriminator feature matching (Wang et al., CVPR 2018, eq. 4).

Every function returns one loss value per example, so that the training step can average
over the GLOBAL batch with `tf.nn.compute_average_loss` whatever the number of replicas.
"""

from __future__ import annotations

from typing import Optional, Sequence, Union

import tensorflow as tf

from pix2pix_tf.config import LossConfig

# One map of logits, or one per scale of a multi-scale D.
Logits = Union[tf.Tensor, Sequence[tf.Tensor]]
# Per scale, D's intermediate activations (pix2pixHD's outputs of a scale but its logits).
Features = Sequence[Sequence[tf.Tensor]]


def gan_loss(logits: Logits, target_is_real: bool, gan_mode: str) -> tf.Tensor:
    """Per-example GAN loss of a map of D logits against the label "real" or "fake".

    vanilla: binary cross-entropy on logits (D has no sigmoid layer); lsgan: squared error
    against 1/0. Averaged over the patch map, as the reference averages over all patches.
    A multi-scale D's maps: the sum of their losses, as pix2pixHD's GANLoss sums its scales.
    """
    if isinstance(logits, (list, tuple)):
        return tf.add_n([gan_loss(scale, target_is_real, gan_mode) for scale in logits])
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


def feature_matching_loss(fake: Features, real: Features) -> tf.Tensor:
    """pix2pixHD's L_FM (its eq. 4), weighted as its code weights it.

    sum over scales k and layers i of 1/num_d * 4/(n_layers + 1) * mean |D_k^(i)(x, y) -
    D_k^(i)(x, G(x))|, i over a scale's n_layers + 1 activations (so 4/(n_layers+1) is
    4 / their number). `real` is a constant target: gradients flow through `fake` only.
    """
    terms = []
    for fake_scale, real_scale in zip(fake, real, strict=True):
        weight = (1.0 / len(fake)) * (4.0 / len(fake_scale))
        for f, r in zip(fake_scale, real_scale, strict=True):
            f, r = tf.cast(f, tf.float32), tf.stop_gradient(tf.cast(r, tf.float32))
            terms.append(weight * tf.reduce_mean(tf.abs(f - r), axis=[1, 2, 3]))
    return tf.add_n(terms)


def discriminator_loss(real_logits: Logits, fake_logits: Logits, gan_mode: str) -> dict[str, tf.Tensor]:
    """D's loss, halved as in the paper to slow D down relative to G."""
    real = gan_loss(real_logits, True, gan_mode)
    fake = gan_loss(fake_logits, False, gan_mode)
    return {"d_real": real, "d_fake": fake, "d_total": 0.5 * (real + fake)}


def generator_loss(fake_logits: Optional[Logits], target: tf.Tensor, output: tf.Tensor, config: LossConfig,
                   features: Optional[tuple[Features, Features]] = None) -> dict[str, tf.Tensor]:
    """G's loss: the non-saturating GAN term (fool D into "real") plus lambda * L1.

    `lambda_l1=0` gives the paper's "cGAN only" row; `gan_weight=0` its "L1 only" row, for
    which no D is trained and `fake_logits` is None. `features`, D's (fake, real) activations
    when `lambda_feat > 0`, add pix2pixHD's feature matching as `g_feat`.
    """
    losses = {"g_l1": l1_loss(target, output)}
    losses["g_total"] = config.lambda_l1 * losses["g_l1"]
    if fake_logits is not None:
        losses["g_gan"] = gan_loss(fake_logits, True, config.gan_mode)
        losses["g_total"] += config.gan_weight * losses["g_gan"]
    if features is not None:
        losses["g_feat"] = feature_matching_loss(*features)
        losses["g_total"] += config.lambda_feat * losses["g_feat"]
    return losses
