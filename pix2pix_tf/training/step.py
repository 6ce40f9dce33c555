"""The pix2pix GAN under training: G, D, their optimizers and one distributed training step."""

from __future__ import annotations

import dataclasses
from typing import Optional

import keras
import tensorflow as tf

from pix2pix_tf.config import TrainConfig
from pix2pix_tf.networks.discriminator import build_discriminator, feature_discriminator
from pix2pix_tf.networks.generator import build_generator
from pix2pix_tf.networks.seeding import seeded_construction
from pix2pix_tf.training import precision
from pix2pix_tf.training.fused_adam import FusedAdam
from pix2pix_tf.training.losses import discriminator_loss, generator_loss
from pix2pix_tf.training.optimization import ReferenceAdam, make_optimizer


def dropout_rng_state(model: keras.Model) -> list:
    """The dropout layers' random-generator states.

    Keras keeps them as non-trainable variables that `tf.train.Checkpoint` does not save
    through the model, so they are checkpointed explicitly: a resumed run then draws the
    same dropout masks (the paper's noise z) as an uninterrupted one.
    """
    return [v.value for v in model.non_trainable_variables if v.name == "seed_generator_state"]


class Pix2Pix:
    """G and D trained together, one D step then one G step per batch (paper section 3.3)."""

    def __init__(self, config: TrainConfig, strategy: tf.distribute.Strategy, steps_per_epoch: float,
                 hardware: Optional[precision.Hardware] = None):
        # `hardware`: as the caller detected it (default: detected here).
        self.precision = precision.resolve(config.run.mixed_precision, strategy, hardware)
        self.policy = self.precision.policy
        # The config as run: `auto` resolved, so config.json records the precision trained in.
        self.config = dataclasses.replace(config, run=dataclasses.replace(
            config.run, mixed_precision=self.precision.setting))
        self.strategy = strategy
        self.global_batch_size = config.data.batch_size
        self.trains_d = config.loss.gan_weight > 0
        with strategy.scope():
            # The initial weights and the dropout generators follow the run's seed.
            with seeded_construction(config.run.seed):
                self.generator = precision.apply_policy(build_generator(config.model), self.policy)
                self.discriminator = precision.apply_policy(build_discriminator(config.model), self.policy)
            # pix2pixHD's feature matching reads D's activations: a second view of D's layers.
            self.d_features = feature_discriminator(self.discriminator) if config.loss.lambda_feat > 0 else None
            adam = FusedAdam if config.run.fused_adam else ReferenceAdam
            self.g_optimizer = precision.scaled_optimizer(
                make_optimizer(config.optim, steps_per_epoch, "g_adam", adam), self.policy)
            self.d_optimizer = precision.scaled_optimizer(
                make_optimizer(config.optim, steps_per_epoch, "d_adam", adam), self.policy)
            # Built here: a lazy build inside strategy.run fails.
            self.g_optimizer.build(self.generator.trainable_variables)
            self.d_optimizer.build(self.discriminator.trainable_variables)
            self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step",
                                    aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
        # XLA compiles what each replica runs; the cross-replica reduction stays outside.
        self._replica_fn = (tf.function(self._replica_step, jit_compile=True, autograph=False)
                            if config.run.jit_compile else self._replica_step)

    def checkpointables(self) -> dict:
        """Everything a resumed run needs to continue exactly."""
        return {"generator": self.generator, "discriminator": self.discriminator,
                "g_optimizer": precision.unscaled(self.g_optimizer),
                "d_optimizer": precision.unscaled(self.d_optimizer),
                "step": self.step, "generator_dropout_rng": dropout_rng_state(self.generator)}

    def current_step(self) -> int:
        return int(self.step.numpy())

    def learning_rate(self) -> float:
        return float(self.g_optimizer.learning_rate)

    def _d_input(self, input_image: tf.Tensor, output_image: tf.Tensor) -> tf.Tensor:
        """cGAN: D judges the pair; the unconditional ablation judges the output alone."""
        if self.config.model.unconditional_d:
            return output_image
        return tf.concat([input_image, output_image], axis=-1)

    def _judge(self, input_image: tf.Tensor, target: tf.Tensor, output: tf.Tensor) -> tuple:
        """D's logits on (x, G(x)) for G's step and, with feature matching, D's (fake, real) activations.

        pix2pixHD computes the real pair's activations once, with the same D (before its update)
        that judges G. Here G is judged by the updated D (pix2pix's order), so the real pair's
        activations are taken from that updated D too, as a constant (pix2pixHD's .detach()):
        both sides of the L1 come from the same weights.
        """
        if self.d_features is None:
            return self.discriminator(self._d_input(input_image, output), training=True), None
        _, real = self.d_features(self._d_input(input_image, target), training=True)
        logits, fake = self.d_features(self._d_input(input_image, output), training=True)
        return logits, (fake, real)  # feature_matching_loss holds `real` constant.

    def _replica_step(self, input_image: tf.Tensor, target: tf.Tensor) -> dict[str, tf.Tensor]:
        def average(per_example: tf.Tensor) -> tf.Tensor:
            return tf.nn.compute_average_loss(per_example, global_batch_size=self.global_batch_size)

        losses = {}
        judged_logits, features = None, None  # Stay None for "L1 only": no D at all.
        with tf.GradientTape() as g_tape:
            output = self.generator(input_image, training=True)
            if self.trains_d:
                # D sees G's output as a constant; G's tape pauses meanwhile.
                with g_tape.stop_recording(), tf.GradientTape() as d_tape:
                    real_logits = self.discriminator(self._d_input(input_image, target), training=True)
                    fake_logits = self.discriminator(
                        self._d_input(input_image, tf.stop_gradient(output)), training=True)
                    losses.update(discriminator_loss(real_logits, fake_logits, self.config.loss.gan_mode))
                    # scale_loss: the float16 loss scale (identity otherwise), inside the tape.
                    d_loss = self.d_optimizer.scale_loss(average(losses["d_total"]))
                d_variables = self.discriminator.trainable_variables
                self.d_optimizer.apply_gradients(zip(d_tape.gradient(d_loss, d_variables), d_variables))
                # As the reference, G is judged by the D just updated.
                judged_logits, features = self._judge(input_image, target, output)
            losses.update(generator_loss(judged_logits, target, output, self.config.loss, features))
            g_loss = self.g_optimizer.scale_loss(average(losses["g_total"]))
        g_variables = self.generator.trainable_variables
        self.g_optimizer.apply_gradients(zip(g_tape.gradient(g_loss, g_variables), g_variables))
        return {name: average(value) for name, value in losses.items()}

    # autograph=False: the step's Python branches test settings, never tensors, so there is
    # nothing to convert, and converting G, D and the losses' code would slow every start.
    @tf.function(autograph=False)
    def train_step(self, iterator) -> dict[str, tf.Tensor]:
        """One D step and one G step on the next global batch, on every replica."""
        input_image, target = next(iterator)
        per_replica = self.strategy.run(self._replica_fn, args=(input_image, target))
        self.step.assign_add(1)
        return {name: self.strategy.reduce(tf.distribute.ReduceOp.SUM, value, axis=None)
                for name, value in per_replica.items()}

    @tf.function(autograph=False)
    def generate(self, input_image: tf.Tensor) -> tf.Tensor:
        """G(x) as the paper tests it (batch statistics, dropout on), leaving G's state unchanged.

        Keras' training-mode call updates batch-norm moving statistics and advances the
        dropout generator; both are put back, so monitoring never changes training.
        """
        state = self.generator.non_trainable_variables
        saved = [tf.identity(v) for v in state]
        output = self.strategy.run(lambda x: self.generator(x, training=True), args=(input_image,))
        output = self.strategy.experimental_local_results(output)[0]
        with tf.control_dependencies([output]):
            for variable, value in zip(state, saved):
                variable.assign(value)
        return tf.identity(output)
