"""The evaluation metrics on inputs whose answers are known: identity, noise, colour, FID."""

from __future__ import annotations

import numpy as np
import pytest

from pix2pix_tf.evaluation import metrics

pytestmark = pytest.mark.graph_optimizer  # The values users get: Grappler on (tests/process_fixtures.py).


def random_images(seed: int = 0, shape=(2, 32, 32, 3)) -> np.ndarray:
    """Smooth-ish random images in [-1, 1] (blocks of colour, so SSIM has structure to keep)."""
    rng = np.random.default_rng(seed)
    n, h, w, c = shape
    small = rng.uniform(-1, 1, (n, h // 8, w // 8, c))
    return np.repeat(np.repeat(small, 8, axis=1), 8, axis=2).astype(np.float32)


def noisy(images: np.ndarray, level: float, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(images + rng.normal(0, level, images.shape), -1, 1).astype(np.float32)


def test_identical_images_score_perfectly():
    images = random_images()
    assert metrics.l1(images, images) == 0.0
    assert metrics.per_image_psnr(images, images) == metrics.PSNR_CAP  # +inf capped: means and JSON stay finite.
    assert metrics.pooled_psnr(images, images) == float("inf")  # Uncapped.
    assert metrics.ssim(images, images) == pytest.approx(1.0, abs=1e-6)
    assert metrics.lab_intersections(images, images) == pytest.approx({"L": 1.0, "a": 1.0, "b": 1.0})


def test_more_noise_scores_worse_on_every_metric():
    images = random_images()
    levels = (0.05, 0.2, 0.6)
    outputs = [noisy(images, level) for level in levels]
    l1 = [metrics.l1(o, images) for o in outputs]
    psnr = [metrics.per_image_psnr(o, images) for o in outputs]
    ssim = [metrics.ssim(o, images) for o in outputs]
    colour = [metrics.lab_intersections(o, images) for o in outputs]
    assert l1 == sorted(l1) and len(set(l1)) == 3
    assert psnr == sorted(psnr, reverse=True) and len(set(psnr)) == 3
    assert ssim == sorted(ssim, reverse=True) and ssim[0] < 1.0
    for channel in ("L", "a", "b"):
        values = [c[channel] for c in colour]
        assert values == sorted(values, reverse=True) and values[0] < 1.0


def test_psnr_and_l1_known_values():
    target = np.zeros((8, 8, 3), np.float32)
    output = target + 0.2  # 0.1 on the [0, 1] scale: MSE 0.01, 20 dB.
    assert metrics.l1(output, target) == pytest.approx(0.2)
    assert metrics.per_image_psnr(output, target) == pytest.approx(20.0)
    assert metrics.pooled_psnr(target, output) == pytest.approx(20.0)
    with pytest.raises(metrics.MetricError, match="same shape"):
        metrics.l1(output, target[:4])


def test_the_two_psnr_definitions_differ_as_documented():
    """Per image (capped, averaged by evaluate) against pooled over the set (an export's check):
    on images of unequal error the mean of per-image values is above the pooled value; the
    pooled one is NaN on a non-finite output, where a mean of capped values would hide it."""
    target = np.zeros((2, 8, 8, 3), np.float32)
    output = target.copy()
    output[0] += 0.2  # 20 dB
    output[1] += 0.02  # 40 dB
    per_image = np.mean([metrics.per_image_psnr(o, t) for o, t in zip(output, target)])
    assert per_image == pytest.approx(30.0)
    assert metrics.pooled_psnr(target, output) == pytest.approx(-10 * np.log10((0.01 + 0.0001) / 2))  # ~23 dB
    assert metrics.pooled_psnr(target, output) < per_image
    output[1, 0, 0, 0] = np.nan
    assert np.isnan(metrics.pooled_psnr(target, output))


def test_ssim_needs_a_window_sized_image():
    with pytest.raises(metrics.MetricError, match="11x11"):
        metrics.ssim(np.zeros((8, 8, 3)), np.zeros((8, 8, 3)))


@pytest.mark.parametrize("rgb, lab", [
    ((1.0, 1.0, 1.0), (100.0, 0.0, 0.0)),
    ((0.0, 0.0, 0.0), (0.0, 0.0, 0.0)),
    ((1.0, 0.0, 0.0), (53.2408, 80.0925, 67.2032)),
    ((0.0, 1.0, 0.0), (87.7347, -86.1827, 83.1793)),
    ((0.0, 0.0, 1.0), (32.2970, 79.1875, -107.8602)),
    ((0.5, 0.5, 0.5), (53.3889, 0.0, 0.0)),
])
def test_lab_conversion_matches_published_values(rgb, lab):
    # Reference values: CIE Lab (D65) of sRGB primaries, as skimage.color.rgb2lab and colour-science give.
    assert metrics.rgb_to_lab(np.array(rgb)) == pytest.approx(np.array(lab), abs=2e-3)


def test_neutral_greys_have_the_same_a_and_b_histograms():
    """Any two grey images agree on a and b (both 0): a and b are computed with float noise
    around 0 (a bin edge), which must not split them between two bins."""
    greys = np.linspace(-1, 1, 64).reshape(1, 8, 8, 1).repeat(3, axis=-1)
    other = np.full((1, 8, 8, 3), 0.37)
    lab = metrics.rgb_to_lab(metrics.signed_to_unit(greys))
    assert np.abs(lab[..., 1:]).max() > 0  # The noise this is about (1e-14, not exactly 0).
    found = metrics.lab_intersections(greys, other)
    assert found["a"] == 1.0 and found["b"] == 1.0 and found["L"] < 0.1


def test_histogram_intersection_of_known_histograms():
    assert metrics.histogram_intersection([1, 1, 0, 0], [0, 0, 1, 1]) == 0.0
    assert metrics.histogram_intersection([2, 2, 0, 0], [0, 1, 1, 0]) == pytest.approx(0.5)
    assert metrics.histogram_intersection([5, 0], [1, 0]) == 1.0  # Normalised: the scale does not matter.
    with pytest.raises(metrics.MetricError):
        metrics.histogram_intersection([0, 0], [1, 0])


def test_greyer_outputs_lose_colour_intersection_but_keep_lightness():
    """The paper's colour finding in miniature: an L1-like output (desaturated towards grey, same
    lightness) scores lower on a and b, not on L."""
    rng = np.random.default_rng(3)
    saturated = np.repeat(np.repeat(rng.choice([-1.0, 1.0], (1, 8, 8, 3)), 4, 1), 4, 2).astype(np.float32)
    grey = saturated.mean(axis=-1, keepdims=True)
    greyer = 0.3 * saturated + 0.7 * grey
    hi = metrics.lab_intersections(greyer, saturated)
    assert hi["a"] < 0.5 and hi["b"] < 0.5
    assert hi["L"] > hi["a"] and hi["L"] > hi["b"]


def test_pooled_colour_histograms_are_over_the_whole_split():
    images, outputs = random_images(4, (3, 16, 16, 3)), random_images(5, (3, 16, 16, 3))
    pooled = metrics.ColourHistograms()
    for o, t in zip(outputs, images):
        pooled.add(o, t)
    assert pooled.intersections() == pytest.approx(metrics.lab_intersections(outputs, images))


def test_segmentation_scores_follow_the_authors_script():
    labels = np.array([[0, 0, 1, 1], [0, 0, 1, 255]])
    predictions = np.array([[0, 1, 1, 1], [0, 0, 2, 0]])
    confusion = metrics.confusion_matrix(labels, predictions, num_classes=3, ignore=255)
    assert confusion.sum() == 7  # The void pixel is not counted.
    np.testing.assert_array_equal(confusion, [[3, 1, 0], [0, 2, 1], [0, 0, 0]])
    scores = metrics.segmentation_scores(confusion, ("a", "b", "c"))
    assert scores.per_pixel_accuracy == pytest.approx(5 / 7)
    # Class c never occurs in the labels: left out of the per-class accuracy (NaN-mean) ...
    assert scores.per_class_accuracy == pytest.approx((3 / 4 + 2 / 3) / 2)
    # ... but it was predicted, so its IoU of 0 counts.
    assert scores.class_iou == pytest.approx((3 / 4 + 2 / 4 + 0.0) / 3)
    assert np.isnan(scores.per_class["c"]["accuracy"])
    perfect = metrics.segmentation_scores(metrics.confusion_matrix(labels, labels, 3, ignore=255))
    assert perfect.summary() == {"per_pixel_accuracy": 1.0, "per_class_accuracy": 1.0, "class_iou": 1.0}


def test_frechet_distance_closed_form():
    # 1-D: (mu1 - mu2)^2 + s1 + s2 - 2 sqrt(s1 s2).
    assert metrics.frechet_distance(np.array([0.0]), np.array([[1.0]]), np.array([1.0]), np.array([[4.0]])) \
        == pytest.approx(2.0)
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(50, 4)), rng.normal(1.0, 2.0, size=(60, 4))
    assert metrics.fid_from_features(a, b) == pytest.approx(metrics.fid_from_features(b, a), rel=1e-9)
    with pytest.raises(metrics.MetricError, match="at least 2"):
        metrics.fid_from_features(a[:1], b)


def test_fid_of_fewer_vectors_than_dimensions_equals_the_covariance_form():
    """A test split has fewer images than Inception's 2048 features: FID then comes from the
    singular values of the centred features' N1 x N2 product; it must equal the D x D form."""
    rng = np.random.default_rng(1)
    for n1, n2 in ((10, 7), (3, 3), (40, 12)):
        a, b = rng.normal(size=(n1, 64)), rng.normal(0.5, 1.5, size=(n2, 64)) @ rng.normal(size=(64, 64))
        covariance_form = metrics.frechet_distance(*metrics.feature_statistics(a), *metrics.feature_statistics(b))
        assert metrics.fid_from_features(a, b) == pytest.approx(covariance_form, rel=1e-8), (n1, n2)
        assert metrics.fid_from_features(a, a.copy()) == pytest.approx(0.0, abs=1e-9)


def small_feature_network():
    """A small random conv net, built here: FID's properties do not depend on Inception."""
    import keras

    keras.utils.set_random_seed(0)
    inputs = keras.Input((None, None, 3))
    x = keras.layers.Conv2D(8, 3, strides=2, activation="relu")(inputs)
    x = keras.layers.Conv2D(16, 3, strides=2, activation="relu")(x)
    return keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(x))


def test_fid_is_zero_for_identical_sets_and_grows_with_noise():
    features = metrics.keras_features(small_feature_network(), image_size=32)
    images = random_images(7, (24, 32, 32, 3))
    reference = features(images)
    assert reference.shape == (24, 16)
    assert metrics.fid_from_features(reference, features(images.copy())) == pytest.approx(0.0, abs=1e-6)
    fids = [metrics.fid_from_features(reference, features(noisy(images, level))) for level in (0.1, 0.4, 1.0)]
    assert fids[0] > 0 and fids == sorted(fids), fids


def test_fid_without_local_inception_weights_says_so():
    with pytest.raises(metrics.MetricError, match="local file.*never downloads"):
        metrics.inception_features(None)
    with pytest.raises(metrics.MetricError, match="no such file"):
        metrics.inception_features("/nonexistent/inception.h5")
