"""pix2pixHD's multi-scale D and feature matching: the pooling, each scale's receptive field,
parameter counts, the losses against NumPy, the config's refusals, and a run that logs,
resumes and exports like the default D's."""

from __future__ import annotations

import json
import os
import shutil
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from test_models import measured_receptive_field, trainable_count
from test_training import assert_same_run_state

from pix2pix_tf.config import LossConfig, ModelConfig, TrainConfig
from pix2pix_tf.errors import ConfigError
from pix2pix_tf.inference import checkpoint_source, generate
from pix2pix_tf.inference.mode import DETERMINISTIC
from pix2pix_tf.networks.discriminator import Downsample, build_discriminator, feature_discriminator, patchgan
from pix2pix_tf.training import losses
from pix2pix_tf.training.loop import train

import forked
from conftest import tiny_config
from programs import run_program

pytestmark = pytest.mark.graph_optimizer  # The values users get: Grappler on (tests/process_fixtures.py).


def numpy_avg_pool_excluding_padding(x: np.ndarray) -> np.ndarray:
    """3x3 windows at stride 2 with one pixel of padding on every side, each averaged over its
    pixels inside the image (PyTorch's count_include_pad=False), one output at a time."""
    n, h, w, c = x.shape
    out = np.zeros((n, (h - 1) // 2 + 1, (w - 1) // 2 + 1, c), np.float64)
    for i in range(out.shape[1]):
        for j in range(out.shape[2]):
            rows = range(max(2 * i - 1, 0), min(2 * i + 2, h))
            cols = range(max(2 * j - 1, 0), min(2 * j + 2, w))
            out[:, i, j] = x[:, rows][:, :, cols].mean(axis=(1, 2))
    return out


@pytest.mark.parametrize("height,width", [(8, 8), (7, 9), (1, 1), (2, 5), (16, 3)])
def test_downsample_is_average_pooling_that_excludes_the_padding(height, width):
    x = np.random.default_rng(height * 10 + width).uniform(-1, 1, (2, height, width, 3)).astype(np.float32)
    got = Downsample()(tf.constant(x)).numpy()
    np.testing.assert_allclose(got, numpy_avg_pool_excluding_padding(x), rtol=1e-5, atol=1e-6)


def test_scales_are_patchgans_on_the_pair_downsampled_full_resolution_first():
    d = build_discriminator(ModelConfig(discriminator="multiscale", ndf=4))
    x = np.random.default_rng(0).uniform(-1, 1, (1, 256, 256, 6)).astype(np.float32)
    outputs = d(x, training=False)
    assert [o.shape[1] for o in outputs] == [30, 14, 6]
    pyramid = [x]
    for _ in range(2):
        pyramid.append(numpy_avg_pool_excluding_padding(pyramid[-1]).astype(np.float32))
    for i, (output, image) in enumerate(zip(outputs, pyramid)):
        expected = d.get_layer(f"scale{i}")(image, training=False)
        np.testing.assert_allclose(output.numpy(), expected.numpy(), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("num_d", [1, 2, 3])
def test_parameter_count_is_num_d_patchgans(num_d):
    d = build_discriminator(ModelConfig(discriminator="multiscale", num_d=num_d))
    assert trainable_count(d) == num_d * 2_768_705  # The basic D's count (tests/test_models.py), per scale.
    assert trainable_count(build_discriminator(ModelConfig())) == 2_768_705  # The default D is unchanged.


def test_receptive_field_of_each_scale():
    """Measured as tests/test_models.py measures the single Ds: 70 pixels of the scale's input,
    so 3 + 2 * (70 - 1) = 141 of the full image at scale 1 and 3 + 2 * (141 - 1) = 283 at scale 2."""
    d = build_discriminator(ModelConfig(discriminator="multiscale", ndf=4))
    fields = [measured_receptive_field(keras.Model(d.input, output), 384, 6)[:2] for output in d.outputs]
    assert fields == [(70, 70), (141, 141), (283, 283)]
    assert measured_receptive_field(patchgan(3, ndf=4), 256, 6)[:2] == (70, 70)


@pytest.mark.parametrize("discriminator", ["basic", "multiscale"])
def test_feature_view_shares_the_weights_and_repeats_the_logits(discriminator):
    d = build_discriminator(ModelConfig(discriminator=discriminator, ndf=4))
    view = feature_discriminator(d)
    assert {id(v) for v in view.trainable_weights} == {id(v) for v in d.trainable_weights}
    x = tf.random.uniform([1, 256, 256, 6], -1, 1)
    logits, features = view(x, training=False)
    expected = d(x, training=False)
    expected = expected if isinstance(expected, list) else [expected]
    assert len(logits) == len(features) == len(expected)
    for got, want, scale in zip(logits, expected, features):
        np.testing.assert_array_equal(got.numpy(), want.numpy())
        assert [f.shape[-1] for f in scale] == [4, 8, 16, 32]  # n_layers + 1 = 4 blocks: C64-C128-C256-C512 / 16


def test_feature_matching_loss_against_numpy():
    rng = np.random.default_rng(1)
    shapes = [[(2, 8, 8, 3), (2, 4, 4, 5), (2, 3, 3, 7)], [(2, 4, 4, 3), (2, 2, 2, 5), (2, 1, 1, 7)]]
    fake = [[rng.normal(size=s).astype(np.float32) for s in scale] for scale in shapes]
    real = [[rng.normal(size=s).astype(np.float32) for s in scale] for scale in shapes]
    expected = np.zeros(2)
    for fs, rs in zip(fake, real):  # pix2pixHD: D_weights = 1/num_D, feat_weights = 4/(n_layers_D + 1).
        for f, r in zip(fs, rs):
            expected += (1 / 2) * (4 / 3) * np.abs(f - r).mean(axis=(1, 2, 3))
    fake_t = [[tf.Variable(f) for f in scale] for scale in fake]
    real_t = [[tf.Variable(r) for r in scale] for scale in real]
    with tf.GradientTape(persistent=True) as tape:
        got = losses.feature_matching_loss(fake_t, real_t)
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-5)
    assert tape.gradient(got, fake_t[0][0]) is not None
    assert tape.gradient(got, real_t[0][0]) is None  # The real side is a constant, as pix2pixHD's .detach().


def test_gan_loss_of_a_multiscale_d_is_the_sum_over_its_scales():
    maps = [np.random.default_rng(i).normal(size=(2, s, s, 1)).astype(np.float32) for i, s in enumerate((6, 3, 2))]
    bce_real = [np.log1p(np.exp(-m)).mean(axis=(1, 2, 3)) for m in maps]  # -log(sigmoid(logit))
    np.testing.assert_allclose(losses.gan_loss([tf.constant(m) for m in maps], True, "vanilla").numpy(),
                               sum(bce_real), rtol=1e-5)
    d = losses.discriminator_loss([tf.constant(m) for m in maps], [tf.constant(-m) for m in maps], "lsgan")
    lsgan_real = sum(((m - 1) ** 2).mean(axis=(1, 2, 3)) for m in maps)
    lsgan_fake = sum((m ** 2).mean(axis=(1, 2, 3)) for m in maps)
    np.testing.assert_allclose(d["d_total"].numpy(), 0.5 * (lsgan_real + lsgan_fake), rtol=1e-5)


def test_config_refusals_and_old_config_files():
    with pytest.raises(ConfigError, match="--discriminator=pixel has none"):
        TrainConfig(model=ModelConfig(discriminator="pixel"), loss=LossConfig(lambda_feat=10.0)).validate()
    with pytest.raises(ConfigError, match="--gan_weight=0 trains none"):
        TrainConfig(loss=LossConfig(lambda_feat=10.0, gan_weight=0.0)).validate()
    with pytest.raises(ConfigError, match="--lambda_feat must be non-negative"):
        LossConfig(lambda_feat=-1.0).validate()
    with pytest.raises(ConfigError, match="--num_d must be at least 1"):
        ModelConfig(discriminator="multiscale", num_d=0).validate()
    with pytest.raises(ConfigError, match="--num_d=2 applies to --discriminator=multiscale only"):
        ModelConfig(discriminator="basic", num_d=2).validate()
    old = TrainConfig().to_dict()
    del old["model"]["num_d"], old["loss"]["lambda_feat"]  # A config.json written before these options.
    loaded = TrainConfig.from_dict(old)
    assert (loaded.model.num_d, loaded.loss.lambda_feat) == (3, 0.0)
    edited = TrainConfig().to_dict()
    edited["model"]["discriminator"], edited["loss"]["lambda_feat"] = "pixel", 10.0
    with pytest.raises(ConfigError, match="my/config.json: --lambda_feat needs"):
        TrainConfig.from_dict(edited, "my/config.json")


# At half tiny_config's widths, with the shallowest PatchGANs (n_layers_d=1): two scales, and
# features of each, at a fraction of the cost; no assertion below depends on the size.
MULTISCALE = dict(model=dict(discriminator="multiscale", num_d=2, n_layers_d=1, ngf=4, ndf=4),
                  loss=dict(lambda_feat=10.0))

EXPORTED_OUTPUT = """
import sys
import numpy as np
import tensorflow as tf
model = tf.saved_model.load(sys.argv[1])
x = tf.constant(np.load(sys.argv[2]))
np.save(sys.argv[3], model.signatures["translate_float_deterministic"](images=x)["output"].numpy())
"""


def logged_steps(workdir) -> list[int]:
    """The steps whose losses the run in `workdir` logged."""
    events = EventAccumulator(str(workdir / "logs" / "train"), size_guidance={"tensors": 0}).Reload()
    return [e.step for e in events.Tensors("loss/g_feat")]


def resumable_copy(workdir, step: int, destination):
    """A run directory holding `workdir`'s config.json and its checkpoint of `step` only: what a
    run stopped after that step's save leaves, to resume."""
    checkpoints = destination / "checkpoints"
    checkpoints.mkdir(parents=True)
    shutil.copy(workdir / "config.json", destination)
    for name in os.listdir(workdir / "checkpoints"):
        if name.startswith(f"ckpt-{step}."):
            shutil.copy(workdir / "checkpoints" / name, checkpoints)
    return destination


@pytest.mark.slow
@pytest.mark.usefixtures("deterministic_ops")
def test_multiscale_feature_matching_run_logs_resumes_and_exports(tmp_path, data_dir):
    """The run saves at step 2 on its way to 4: resumed from that checkpoint (in a copy that has
    no later one), it ends as the whole run does."""
    steps_only = dict(eval_examples=0)  # No held-out evaluation: the losses and the state are compared.
    whole = train(tiny_config(tmp_path / "whole", data_dir, optim=dict(steps=4),
                              run=dict(log_every=2, save_every=2, **steps_only), **MULTISCALE))
    assert set(whole.losses) == {"d_real", "d_fake", "d_total", "g_gan", "g_l1", "g_feat", "g_total"}
    assert logged_steps(tmp_path / "whole") == [2, 4]

    split = resumable_copy(tmp_path / "whole", 2, tmp_path / "split")
    rest = train(tiny_config(split, data_dir, optim=dict(steps=4), run=dict(log_every=1, **steps_only),
                             **MULTISCALE))
    assert logged_steps(split) == [3, 4]  # Resumed after step 2.
    assert rest.losses == pytest.approx(whole.losses, rel=1e-6, abs=1e-7)
    assert_same_run_state(whole.checkpoint, rest.checkpoint)

    # Export reads only G: the SavedModel, in a process of its own, computes the checkpoint's G.
    workdir, export_dir = str(tmp_path / "whole"), str(tmp_path / "export")
    result = run_program("export", f"--workdir={workdir}", f"--export_dir={export_dir}", "--model_name=ms",
                         "--tflite=", "--check_examples=1")
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.load(open(os.path.join(workdir, "config.json")))["model"]["discriminator"] == "multiscale"

    x = np.random.default_rng(0).uniform(-1, 1, (1, 128, 128, 3)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    (tmp_path / "client.py").write_text(EXPORTED_OUTPUT)
    client = forked.run([sys.executable, str(tmp_path / "client.py"), os.path.join(export_dir, "ms", "1"),
                         str(tmp_path / "x.npy"), str(tmp_path / "y.npy")], cwd=str(tmp_path), timeout=300)
    assert client.returncode == 0, client.stderr[-3000:]
    generator, _, _ = checkpoint_source.load_generator(workdir)
    expected = generate.generate(generator, tf.constant(x), DETERMINISTIC).numpy()
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), expected, atol=1e-4)


def test_the_ablation_exits_1_naming_the_variants_that_failed(tmp_path):
    """As the paper experiment does: a script or CI notices, and the report says why."""
    (tmp_path / "not_a_folder").write_text("")
    root = tmp_path / "ablation"
    result = forked.run([sys.executable, "-m", "pix2pix_tf.experiments.multiscale", f"--root={root}",
                         "--setting=tiny", f"--data_dir={tmp_path / 'not_a_folder'}"], cwd=forked.ROOT, timeout=600)
    assert result.returncode == 1, result.stderr[-3000:]
    assert (f"Failed: 256/patchgan_70, 256/multiscale, 256/multiscale_feat (see {root / 'results.md'}); "
            "fix the cause and rerun the command: failed variants are retried.") in result.stderr
    # The row says why, as the paper experiment's report does (it said only "failed").
    assert f"| 256 | 70x70 PatchGAN (pix2pix) | failed: --data_dir={tmp_path / 'not_a_folder'} is a file" in \
        (root / "results.md").read_text()


def test_the_ablation_refuses_fewer_steps_than_a_variant_trained_before_writing_anything(tmp_path):
    """As the paper experiment does (experiments.paper.check_steps): it re-evaluated the variants
    and reported their longer runs under a header of fewer steps."""
    from pix2pix_tf.errors import ConfigError
    from pix2pix_tf.experiments import multiscale

    checkpoints = tmp_path / "ablation" / "256" / "patchgan_70" / "checkpoints"
    checkpoints.mkdir(parents=True)
    for name in ("ckpt-5.index", "ckpt-5.data-00000-of-00001"):  # A complete checkpoint's files, by name.
        (checkpoints / name).write_bytes(b"")
    with pytest.raises(ConfigError) as refused:
        multiscale.run_ablation(multiscale.SETTINGS["tiny"], str(tmp_path / "ablation"))
    assert str(refused.value) == (f"{checkpoints.parent} holds a run at step 5, past this setting's 2 steps; use "
                                  "another --root for these steps.")
    assert sorted(os.listdir(tmp_path / "ablation")) == ["256"] and os.listdir(checkpoints.parent) == ["checkpoints"]
