"""Our Adam is the reference's (torch.optim.Adam, eps=1e-8), in both update paths.

The reference's update, written out here independently of pix2pix_tf (in float64, with the
bias corrections in double precision as torch computes them):
    m = b1*m + (1-b1)*g;  v = b2*v + (1-b2)*g^2
    w -= lr * (m / (1-b1^t)) / (sqrt(v / (1-b2^t)) + 1e-8)
"""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from pix2pix_tf.config import OptimConfig
from pix2pix_tf.training.fused_adam import FusedAdam
from pix2pix_tf.training.optimization import ReferenceAdam, make_optimizer

pytestmark = pytest.mark.graph_optimizer  # The values users get: Grappler on (tests/process_fixtures.py).

LR, BETA_1, BETA_2, EPS = 2e-4, 0.5, 0.999, 1e-8  # OptimConfig's defaults (the reference's); torch's eps.
STEPS = 30
SHAPES = [(3, 3, 4, 8), (64,), (5, 7)]
# At |g| ~ 1e-8, sqrt(v_hat) is about eps itself: there where epsilon goes decides the step.
SCALES = {"unit": 1.0, "milli": 1e-3, "micro": 1e-6, "nano": 1e-8}

# float32 rounds each operation to 2^-24 ~ 6e-8 of its result. One step's update goes
# through about ten rounded operations (the moments, the beta powers, sqrt, the divisions),
# so it is within ~1e-6 of the exact update, relatively; over the run the errors add up to at
# most that fraction of the path the weight travelled (the sum of the steps' sizes), which is
# what the tolerance is relative to. The weights start at the scale of a few steps, so storing
# them in float32 adds rounding of the same order. rtol 1e-5 leaves a tenfold margin, and is
# far below what Keras' epsilon (1e-7, added to sqrt(v) ~ sqrt(1 - b2^t) |g| ~ 0.03 |g| at
# the first step) changes: ~3e-3 of the first step at |g| ~ 1e-3, most of it at |g| ~ 1e-6.
RTOL = 1e-5


def reference_adam(w, grads, m=None, v=None, first_step=1):
    """The reference's update in float64. Returns (w, m, v, the path: sum over steps of |step|)."""
    w = np.asarray(w, np.float64).copy()
    m = np.zeros_like(w) if m is None else np.asarray(m, np.float64).copy()
    v = np.zeros_like(w) if v is None else np.asarray(v, np.float64).copy()
    path = np.zeros_like(w)
    for t, g in enumerate(grads, start=first_step):
        g = np.asarray(g, np.float64)
        m = BETA_1 * m + (1 - BETA_1) * g
        v = BETA_2 * v + (1 - BETA_2) * g * g
        m_hat = m / (1 - BETA_1 ** t)
        v_hat = v / (1 - BETA_2 ** t)
        step = LR * m_hat / (np.sqrt(v_hat) + EPS)
        w -= step
        path += np.abs(step)
    return w, m, v, path


def gradients(scale: str, rng: np.random.Generator, steps: int = STEPS):
    """[step][variable] float32 gradients, drawn afresh each step."""
    if scale == "mixed":  # Per element: one of the scales, or 0; some elements 0 on some steps only.
        element_scale = [rng.choice([0.0, *SCALES.values()], size=s) for s in SHAPES]
        intermittent = [rng.random(size=s) < 0.3 for s in SHAPES]
        return [[(rng.normal(size=s) * k * ~(gap & (rng.random(size=s) < 0.5))).astype(np.float32)
                 for s, k, gap in zip(SHAPES, element_scale, intermittent)] for _ in range(steps)]
    return [[(rng.normal(size=s) * SCALES[scale]).astype(np.float32) for s in SHAPES] for _ in range(steps)]


def optimizer_config() -> OptimConfig:
    # 100 epochs of 1000 steps at the base rate: the schedule is constant over the test.
    return OptimConfig(lr=LR, beta1=BETA_1, beta2=BETA_2, epochs=100, epochs_decay=100)


def run_steps(optimizer, variables, grads):
    apply = tf.function(lambda g: optimizer.apply_gradients(zip(g, variables)))  # As in training.
    for step_grads in grads:
        apply([tf.constant(g) for g in step_grads])


def assert_reference(variables, expected, path, label):
    for variable, want, travelled in zip(variables, expected, path):
        got = variable.numpy()
        assert got.dtype == np.float32
        error = np.abs(got.astype(np.float64) - want)
        worst = np.argmax(error - RTOL * travelled)
        # Where every gradient was 0 the path is 0: the weight must not have moved at all.
        assert np.all(error <= RTOL * travelled), (
            f"{label}: |ours - reference| {error.flat[worst]:.3g} > {RTOL} * path {travelled.flat[worst]:.3g}")


@pytest.mark.parametrize("fused", [True, False], ids=["fused", "keras_ops"])
@pytest.mark.parametrize("scale", [*SCALES, "mixed"])
def test_adam_is_the_reference_adam(scale, fused):
    rng = np.random.default_rng([*SCALES, "mixed"].index(scale))
    start = [(rng.normal(size=s) * LR * 5).astype(np.float32) for s in SHAPES]
    grads = gradients(scale, rng)
    variables = [keras.Variable(w) for w in start]
    optimizer = make_optimizer(optimizer_config(), steps_per_epoch=1000, name="adam",
                               adam=FusedAdam if fused else ReferenceAdam)
    assert type(optimizer) is (FusedAdam if fused else ReferenceAdam)
    run_steps(optimizer, variables, grads)
    assert int(optimizer.iterations.numpy()) == STEPS
    expected, path = [], []
    for i, w in enumerate(start):
        want, _, _, travelled = reference_adam(w, [g[i] for g in grads])
        expected.append(want)
        path.append(travelled)
    assert_reference(variables, expected, path, f"{scale}, fused={fused}")
    assert max(p.max() for p in path) > LR * STEPS / 4  # The weights did move.


def checkpoint_keys(prefix: str) -> list[str]:
    return sorted(name for name, _ in tf.train.list_variables(prefix) if name.startswith("optimizer/"))


@pytest.mark.parametrize("new", [FusedAdam, ReferenceAdam])
def test_a_keras_adam_checkpoint_restores_and_keeps_stepping(tmp_path, new):
    """Same slot variables under the same keys: checkpoints of Keras' Adam (what earlier
    versions wrote, fused or not) restore, and the run continues at step 2 with the
    reference's update."""
    rng = np.random.default_rng(1)
    shapes = [(4, 3), (3,)]
    start = [(rng.normal(size=s) * LR * 5).astype(np.float32) for s in shapes]
    first = [tf.constant((rng.normal(size=s) * 1e-3).astype(np.float32)) for s in shapes]
    rest = [[(rng.normal(size=s) * 1e-3).astype(np.float32) for s in shapes] for _ in range(4)]

    saved_vars = [keras.Variable(w, name=f"w{i}") for i, w in enumerate(start)]
    old = keras.optimizers.Adam(learning_rate=LR, beta_1=BETA_1, beta_2=BETA_2)
    old.apply_gradients(zip(first, saved_vars))
    prefix = tf.train.Checkpoint(variables=saved_vars, optimizer=old).save(str(tmp_path / "old"))
    old_m = [old._momentums[i].numpy() for i in range(len(shapes))]
    old_v = [old._velocities[i].numpy() for i in range(len(shapes))]

    variables = [keras.Variable(np.zeros(s, np.float32), name=f"w{i}") for i, s in enumerate(shapes)]
    optimizer = new(learning_rate=LR, beta_1=BETA_1, beta_2=BETA_2)
    optimizer.build(variables)
    # iteration, learning_rate, then w0_momentum, w0_velocity, w1_momentum, w1_velocity.
    assert [v.name for v in optimizer.variables] == [v.name for v in old.variables]
    tf.train.Checkpoint(variables=variables, optimizer=optimizer).restore(prefix).assert_consumed()
    assert int(optimizer.iterations.numpy()) == 1
    for i in range(len(shapes)):
        np.testing.assert_array_equal(variables[i].numpy(), saved_vars[i].numpy())
        np.testing.assert_array_equal(optimizer._momentums[i].numpy(), old_m[i])
        np.testing.assert_array_equal(optimizer._velocities[i].numpy(), old_v[i])
    # And what it writes has the layout the old class wrote.
    written = tf.train.Checkpoint(variables=variables, optimizer=optimizer).save(str(tmp_path / "new"))
    assert checkpoint_keys(written) == checkpoint_keys(prefix)

    run_steps(optimizer, variables, rest)
    assert int(optimizer.iterations.numpy()) == 1 + len(rest)
    for i, variable in enumerate(variables):
        want, want_m, want_v, travelled = reference_adam(
            saved_vars[i].numpy(), [g[i] for g in rest], m=old_m[i], v=old_v[i], first_step=2)
        assert_reference([variable], [want], [travelled], f"{new.__name__} after restore")
        np.testing.assert_allclose(optimizer._momentums[i].numpy(), want_m, rtol=1e-5)
        # float32 holds beta2 as 0.99900001, so v's weight 1 - beta2 is 1.3e-5 below torch's
        # 0.001; the bias correction uses the same float32 beta2, so the update is unaffected.
        np.testing.assert_allclose(optimizer._velocities[i].numpy(), want_v, rtol=3e-5)


def test_the_optimizers_serialize_with_the_reference_epsilon():
    for fused in (True, False):
        optimizer = make_optimizer(optimizer_config(), steps_per_epoch=10, name="g_adam",
                                   adam=FusedAdam if fused else ReferenceAdam)
        assert optimizer.epsilon == EPS
        copy = keras.optimizers.deserialize(keras.optimizers.serialize(optimizer))
        assert type(copy) is type(optimizer) and copy.epsilon == EPS and copy.beta_1 == BETA_1
