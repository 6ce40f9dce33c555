"""The TensorFlow tutorial's pix2pix, kept only as the benchmark's side-by-side baseline.

A re-implementation of the models, losses and `train_step` of tensorflow/docs,
site/en/tutorials/generative/pix2pix.ipynb ("pix2pix: Image-to-image translation with a
conditional GAN"), so that `python -m pix2pix_tf.benchmark` can time what the tutorial runs
next to our own step. It is not a model of this project: only the benchmark uses it.

It keeps the tutorial's deviations from the paper and the authors' code on purpose:
- Keras' default LeakyReLU slope, 0.3 (the paper's is 0.2).
- Batch norm on the 1x1 bottleneck, which zeroes it at batch size 1.
- Keras' BatchNormalization defaults: momentum 0.99, epsilon 1e-3, gamma initialised to 1
  (the reference: PyTorch momentum 0.1, i.e. Keras 0.9, epsilon 1e-5, gamma ~ N(1, 0.02)).
- The discriminator loss is not halved.
- Post-activation blocks (Conv -> BatchNorm -> activation): the skips and the bottleneck
  reach the decoder through LeakyReLU, where the reference applies ReLU.
- Dropout after the first three decoder blocks (outputs 2x2, 4x4, 8x8), as the Torch
  original; the PyTorch port drops out at 4x4, 8x8, 16x16.
- D's first convolution has no bias (the reference's has one).
- One forward pass feeds both updates: G's gradient comes from D before D's update, and D
  runs twice per step (the reference updates D first, then judges G with the updated D).
- Keras' Adam epsilon 1e-7 (PyTorch's is 1e-8) and a constant learning rate.
- In its input pipeline, not reproduced here: the input is always the right half of the
  image (wrong for edges2*, maps, night2day), and the jitter resizes with nearest neighbour.
"""

from __future__ import annotations

import keras
import tensorflow as tf
from keras import layers

_IMAGE_SHAPE = (256, 256, 3)
_L1_WEIGHT = 100.0  # The tutorial's LAMBDA.

# (filters, batch norm) per encoder block, (filters, dropout) per decoder block; all 4x4, stride 2.
_GENERATOR_DOWN = [(64, False), (128, True), (256, True)] + [(512, True)] * 5
_GENERATOR_UP = [(512, True)] * 3 + [(512, False), (256, False), (128, False), (64, False)]
_DISCRIMINATOR_DOWN = [(64, False), (128, True), (256, True)]


def _init() -> keras.initializers.Initializer:
    return keras.initializers.RandomNormal(mean=0.0, stddev=0.02)


def _downsample(filters: int, batchnorm: bool) -> keras.Sequential:
    """The tutorial's `downsample`: Conv(4, stride 2) -> [BatchNorm] -> LeakyReLU(0.3)."""
    block = keras.Sequential([layers.Conv2D(filters, 4, strides=2, padding="same", kernel_initializer=_init(),
                                            use_bias=False)])
    if batchnorm:
        block.add(layers.BatchNormalization())
    block.add(layers.LeakyReLU())
    return block


def _upsample(filters: int, dropout: bool) -> keras.Sequential:
    """The tutorial's `upsample`: ConvTranspose(4, stride 2) -> BatchNorm -> [Dropout 0.5] -> ReLU."""
    block = keras.Sequential([layers.Conv2DTranspose(filters, 4, strides=2, padding="same",
                                                     kernel_initializer=_init(), use_bias=False),
                              layers.BatchNormalization()])
    if dropout:
        block.add(layers.Dropout(0.5))
    block.add(layers.ReLU())
    return block


def tutorial_generator(output_channels: int = 3) -> keras.Model:
    """The tutorial's U-Net on a fixed 256x256x3 input: 8 downsamplings to 1x1 and back."""
    inputs = keras.Input(_IMAGE_SHAPE)
    x = inputs
    skips = []
    for filters, batchnorm in _GENERATOR_DOWN:
        x = _downsample(filters, batchnorm)(x)
        skips.append(x)
    for (filters, dropout), skip in zip(_GENERATOR_UP, reversed(skips[:-1])):
        x = _upsample(filters, dropout)(x)
        x = layers.Concatenate()([x, skip])
    outputs = layers.Conv2DTranspose(output_channels, 4, strides=2, padding="same", kernel_initializer=_init(),
                                     activation="tanh")(x)
    return keras.Model(inputs, outputs, name="tutorial_generator")


def tutorial_discriminator() -> keras.Model:
    """The tutorial's PatchGAN: ([input, target] 256x256x3 each) -> 30x30x1 logits."""
    inp = keras.Input(_IMAGE_SHAPE, name="input_image")
    tar = keras.Input(_IMAGE_SHAPE, name="target_image")
    x = layers.Concatenate()([inp, tar])
    for filters, batchnorm in _DISCRIMINATOR_DOWN:
        x = _downsample(filters, batchnorm)(x)
    x = layers.ZeroPadding2D()(x)
    x = layers.Conv2D(512, 4, strides=1, kernel_initializer=_init(), use_bias=False)(x)
    x = layers.BatchNormalization()(x)
    x = layers.LeakyReLU()(x)
    x = layers.ZeroPadding2D()(x)
    logits = layers.Conv2D(1, 4, strides=1, kernel_initializer=_init())(x)
    return keras.Model([inp, tar], logits, name="tutorial_discriminator")


class TutorialPix2Pix:
    """The tutorial's two models, two Adam(2e-4, beta_1=0.5) optimisers and training step."""

    def __init__(self) -> None:
        self.generator = tutorial_generator()
        self.discriminator = tutorial_discriminator()
        self.generator_optimizer = keras.optimizers.Adam(2e-4, beta_1=0.5)
        self.discriminator_optimizer = keras.optimizers.Adam(2e-4, beta_1=0.5)
        # Built here so that tracing `train_step` creates no variables.
        self.generator_optimizer.build(self.generator.trainable_variables)
        self.discriminator_optimizer.build(self.discriminator.trainable_variables)
        self._bce = keras.losses.BinaryCrossentropy(from_logits=True)

    def _generator_losses(self, disc_generated: tf.Tensor, generated: tf.Tensor,
                          target: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        """(total, GAN, L1): BCE of D(fake) against ones, plus 100 x mean |target - G(x)|."""
        gan_loss = self._bce(tf.ones_like(disc_generated), disc_generated)
        l1_loss = tf.reduce_mean(tf.abs(target - generated))
        return gan_loss + _L1_WEIGHT * l1_loss, gan_loss, l1_loss

    def _discriminator_loss(self, disc_real: tf.Tensor, disc_generated: tf.Tensor) -> tf.Tensor:
        """BCE of D(real) against ones plus BCE of D(fake) against zeros, not halved."""
        return (self._bce(tf.ones_like(disc_real), disc_real)
                + self._bce(tf.zeros_like(disc_generated), disc_generated))

    @tf.function
    def train_step(self, input_image: tf.Tensor, target: tf.Tensor) -> dict[str, tf.Tensor]:
        """One update of G and D from a single forward pass, both tapes open together."""
        with tf.GradientTape() as gen_tape, tf.GradientTape() as disc_tape:
            generated = self.generator(input_image, training=True)
            disc_real = self.discriminator([input_image, target], training=True)
            disc_generated = self.discriminator([input_image, generated], training=True)
            gen_total_loss, gen_gan_loss, gen_l1_loss = self._generator_losses(disc_generated, generated, target)
            disc_loss = self._discriminator_loss(disc_real, disc_generated)
        generator_gradients = gen_tape.gradient(gen_total_loss, self.generator.trainable_variables)
        discriminator_gradients = disc_tape.gradient(disc_loss, self.discriminator.trainable_variables)
        self.generator_optimizer.apply_gradients(zip(generator_gradients, self.generator.trainable_variables))
        self.discriminator_optimizer.apply_gradients(
            zip(discriminator_gradients, self.discriminator.trainable_variables))
        return {"gen_total_loss": gen_total_loss, "gen_gan_loss": gen_gan_loss, "gen_l1_loss": gen_l1_loss,
                "disc_loss": disc_loss}
