"""Image-quality metrics for pix2pix: L1, PSNR, SSIM, the paper's Lab colour test, FCN-score
arithmetic and FID.

Every function takes images as the rest of the package holds them: float arrays in [-1, 1],
HxWxC or NxHxWxC. The metrics are plain NumPy (SSIM and the Inception network use
TensorFlow), so that they can be tested on known inputs without a model.

Conventions, chosen so that numbers are comparable with the literature:

* L1 is the mean absolute error on the [-1, 1] scale (the quantity the generator minimises).
* PSNR is measured on the [0, 1] scale (peak 1), in two definitions that answer different
  questions, each under its own name. `per_image_psnr` is one image's, capped at `PSNR_CAP`
  dB (identical images would give +inf) so that averages and JSON stay finite: evaluate
  reports its mean over the images of a split. `pooled_psnr` is one mean squared error over
  every pixel of a set, uncapped and NaN where an output is not finite: an export's distance
  between a converted file and the SavedModel, where a NaN must fail the check. The mean of
  per-image values is never below the pooled value of the same images (the log is concave).
* SSIM is Wang et al. (2004) with the usual 11x11 Gaussian window (sigma 1.5), K1 = 0.01,
  K2 = 0.03, on the [0, 1] scale, averaged over channels (`tf.image.ssim`).
* The colour test is the paper's (section 4.3, Table 5): the *marginal* distributions of L,
  a and b over all output pixels of the test set, compared with those of the ground truth by
  histogram intersection (sum of bin-wise minima of the two normalised histograms; 1 means
  identical distributions). `LAB_BINS` fixes the bins (the paper does not state them).
* FCN-score arithmetic follows the authors' Cityscapes script: one confusion matrix over the
  whole split, then per-pixel accuracy, mean per-class accuracy and mean class IoU, with
  classes that never occur left out of the means (NaN-mean).
* FID (Heusel et al. 2017) is the Frechet distance between Gaussians fitted to network
  features; the matrix square root goes through symmetric eigendecompositions, which is exact
  for the positive semi-definite covariances involved and needs no SciPy.
"""

from __future__ import annotations

import dataclasses
import math
import os
import warnings
import zipfile
from typing import Callable, Optional

import h5py  # Keras' own reader of .h5 files: is_hdf5 accepts what it reads, whatever the user block.
import numpy as np

from pix2pix_tf import regular_files
from pix2pix_tf.errors import Pix2pixError

PSNR_CAP = 100.0  # dB: what identical images score (instead of +inf).

# Lab histogram bins: 1 unit of L over [0, 100], 2 units of a and b over [-128, 128] (sRGB
# colours span about [-86, 98] in a and [-108, 95] in b), about 100 bins per channel.
LAB_BINS: dict[str, tuple[float, float, int]] = {"L": (0.0, 100.0, 100), "a": (-128.0, 128.0, 128),
                                                 "b": (-128.0, 128.0, 128)}
LAB_CHANNELS = ("L", "a", "b")


class MetricError(Pix2pixError, ValueError):
    """Images or features that a metric cannot be computed on; the message says why."""


# ----------------------------------------------------------------------------- pixel metrics


def _pair(output: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    output, target = np.asarray(output, np.float64), np.asarray(target, np.float64)
    if output.shape != target.shape:
        raise MetricError(f"output {output.shape} and target {target.shape} must have the same shape.")
    return output, target


def l1(output: np.ndarray, target: np.ndarray) -> float:
    """Mean absolute error on the [-1, 1] scale (the paper's L_L1, averaged over pixels)."""
    output, target = _pair(output, target)
    return float(np.mean(np.abs(output - target)))


def per_image_psnr(output: np.ndarray, target: np.ndarray, cap: float = PSNR_CAP) -> float:
    """PSNR in dB of one [-1, 1] image against its target, measured on the [0, 1] scale and
    capped at `cap` dB; evaluate averages it over a split (see the module docstring)."""
    output, target = _pair(output, target)
    mse = float(np.mean(((output - target) / 2.0) ** 2))
    if mse <= 10.0 ** (-cap / 10.0):
        return float(cap)
    return float(min(cap, -10.0 * math.log10(mse)))


def pooled_psnr(reference: np.ndarray, test: np.ndarray) -> float:
    """PSNR in dB of one mean squared error over every pixel of a set of [-1, 1] images,
    measured on the [0, 1] scale: uncapped (+inf for identical sets), NaN if `test` holds a
    non-finite value, so that a broken conversion cannot pass a floor."""
    test, reference = _pair(test, reference)
    mse = float(np.mean(((reference - test) / 2.0) ** 2))
    if not math.isfinite(mse):
        return float("nan")
    return float("inf") if mse == 0 else 10.0 * math.log10(1.0 / mse)


def ssim(output: np.ndarray, target: np.ndarray) -> float:
    """Mean SSIM of [-1, 1] images (HxWxC or NxHxWxC); sides must be at least 11 pixels."""
    import tensorflow as tf

    output, target = _pair(output, target)
    if output.ndim == 3:
        output, target = output[None], target[None]
    if min(output.shape[1:3]) < 11:
        raise MetricError(f"SSIM needs images of at least 11x11 pixels (its window), got {output.shape[1:3]}.")
    value = tf.image.ssim(tf.constant((output + 1.0) / 2.0, tf.float32),
                          tf.constant((target + 1.0) / 2.0, tf.float32), max_val=1.0)
    return float(np.mean(value.numpy()))


# ----------------------------------------------------------------------------- Lab colour test


# sRGB (D65) -> XYZ, IEC 61966-2-1; the D65 white point of the same matrix.
_RGB_TO_XYZ = np.array([[0.4124564, 0.3575761, 0.1804375],
                        [0.2126729, 0.7151522, 0.0721750],
                        [0.0193339, 0.1191920, 0.9503041]])
_WHITE = _RGB_TO_XYZ.sum(axis=1)


def rgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """sRGB in [0, 1] (..., 3) -> CIE Lab (D65): L in [0, 100], a and b roughly in [-110, 100].

    The standard pipeline (what skimage.color.rgb2lab computes): undo the sRGB gamma, linear
    RGB -> XYZ, normalise by the white point, then the CIE f() with its linear toe.
    """
    rgb = np.clip(np.asarray(rgb, np.float64), 0.0, 1.0)
    if rgb.shape[-1] != 3:
        raise MetricError(f"rgb_to_lab needs 3 channels, got shape {rgb.shape}.")
    linear = np.where(rgb > 0.04045, ((rgb + 0.055) / 1.055) ** 2.4, rgb / 12.92)
    xyz = linear @ _RGB_TO_XYZ.T / _WHITE
    delta = 6.0 / 29.0
    f = np.where(xyz > delta**3, np.cbrt(xyz), xyz / (3 * delta**2) + 4.0 / 29.0)
    lightness = 116.0 * f[..., 1] - 16.0
    a = 500.0 * (f[..., 0] - f[..., 1])
    b = 200.0 * (f[..., 1] - f[..., 2])
    return np.stack([lightness, a, b], axis=-1)


def signed_to_unit(image: np.ndarray) -> np.ndarray:
    """[-1, 1] -> [0, 1]; a 1-channel image is repeated to RGB (grey has a = b = 0)."""
    image = (np.asarray(image, np.float64) + 1.0) / 2.0
    return np.repeat(image, 3, axis=-1) if image.shape[-1] == 1 else image


def lab_histograms(images: np.ndarray) -> dict[str, np.ndarray]:
    """Bin counts of the L, a and b values of every pixel of `images` ([-1, 1], ..., 3)."""
    lab = rgb_to_lab(signed_to_unit(images)).reshape(-1, 3)
    counts = {}
    for k, name in enumerate(LAB_CHANNELS):
        low, high, bins = LAB_BINS[name]
        # Rounded first: a neutral grey's a and b come out of the colour matrices as +-1e-14,
        # which would land on both sides of the bin edge at 0; out-of-range values go to the end bins.
        values = np.clip(np.round(lab[:, k], 6), low, np.nextafter(high, low))
        counts[name] = np.histogram(values, bins=bins, range=(low, high))[0].astype(np.float64)
    return counts


def histogram_intersection(h1: np.ndarray, h2: np.ndarray) -> float:
    """Sum of bin-wise minima of the two histograms, each normalised to sum 1: 1 for identical
    distributions, 0 for disjoint ones."""
    h1, h2 = np.asarray(h1, np.float64), np.asarray(h2, np.float64)
    if h1.sum() <= 0 or h2.sum() <= 0:
        raise MetricError("histogram_intersection of an empty histogram.")
    return float(np.minimum(h1 / h1.sum(), h2 / h2.sum()).sum())


def lab_intersections(output: np.ndarray, target: np.ndarray) -> dict[str, float]:
    """The colour test on one image (or one stack of images): {"L": .., "a": .., "b": ..}."""
    ho, ht = lab_histograms(output), lab_histograms(target)
    return {name: histogram_intersection(ho[name], ht[name]) for name in LAB_CHANNELS}


class ColourHistograms:
    """Accumulates the marginal Lab histograms of outputs and targets over a split, so that the
    intersection is the paper's (pooled over the test set), not a mean of per-image values."""

    def __init__(self) -> None:
        self.output = {name: np.zeros(LAB_BINS[name][2]) for name in LAB_CHANNELS}
        self.target = {name: np.zeros(LAB_BINS[name][2]) for name in LAB_CHANNELS}

    def add(self, output: np.ndarray, target: np.ndarray) -> None:
        for store, images in ((self.output, output), (self.target, target)):
            for name, counts in lab_histograms(images).items():
                store[name] += counts

    def intersections(self) -> dict[str, float]:
        return {name: histogram_intersection(self.output[name], self.target[name]) for name in LAB_CHANNELS}


# ----------------------------------------------------------------------------- FCN-score arithmetic


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray, num_classes: int,
                     ignore: Optional[int] = None) -> np.ndarray:
    """[num_classes, num_classes] counts, rows = true class, columns = predicted class.

    Pixels whose true label is `ignore` or outside [0, num_classes) are not counted (the
    Cityscapes "void").
    """
    labels, predictions = np.asarray(labels).ravel(), np.asarray(predictions).ravel()
    if labels.shape != predictions.shape:
        raise MetricError(f"labels ({labels.size} pixels) and predictions ({predictions.size}) differ in size.")
    keep = (labels >= 0) & (labels < num_classes)
    if ignore is not None:
        keep &= labels != ignore
    index = num_classes * labels[keep].astype(np.int64) + np.clip(predictions[keep], 0, num_classes - 1)
    return np.bincount(index, minlength=num_classes**2).reshape(num_classes, num_classes).astype(np.int64)


@dataclasses.dataclass(frozen=True)
class SegmentationScores:
    """The paper's FCN-scores (Tables 1-3) from a confusion matrix."""

    per_pixel_accuracy: float
    per_class_accuracy: float
    class_iou: float
    per_class: dict[str, dict[str, float]]  # class name -> {"accuracy", "iou"} (NaN when absent)

    def summary(self) -> dict[str, float]:
        return {"per_pixel_accuracy": self.per_pixel_accuracy, "per_class_accuracy": self.per_class_accuracy,
                "class_iou": self.class_iou}


def segmentation_scores(confusion: np.ndarray, class_names: Optional[tuple[str, ...]] = None) -> SegmentationScores:
    """Per-pixel accuracy, mean per-class accuracy and mean class IoU, as the authors' script:
    classes absent from both labels and predictions are left out of the means."""
    confusion = np.asarray(confusion, np.float64)
    n = confusion.shape[0]
    names = class_names or tuple(str(i) for i in range(n))
    total = confusion.sum()
    if total == 0:
        raise MetricError("No labelled pixels to score.")
    diag = np.diag(confusion)
    with np.errstate(invalid="ignore", divide="ignore"):
        accuracy = diag / confusion.sum(axis=1)
        iou = diag / (confusion.sum(axis=1) + confusion.sum(axis=0) - diag)
    per_class = {names[i]: {"accuracy": float(accuracy[i]), "iou": float(iou[i])} for i in range(n)}
    return SegmentationScores(float(diag.sum() / total), float(np.nanmean(accuracy)), float(np.nanmean(iou)),
                              per_class)


# ----------------------------------------------------------------------------- FID


def _checked_features(features: np.ndarray) -> np.ndarray:
    features = np.asarray(features, np.float64)
    if features.ndim != 2 or features.shape[0] < 2:
        raise MetricError(f"FID needs at least 2 feature vectors [N, D], got shape {features.shape}.")
    return features


def feature_statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance (unbiased) of [N, D] features; N must be at least 2."""
    features = _checked_features(features)
    return features.mean(axis=0), np.cov(features, rowvar=False)


def _psd_sqrt(matrix: np.ndarray) -> np.ndarray:
    values, vectors = np.linalg.eigh((matrix + matrix.T) / 2.0)
    return (vectors * np.sqrt(np.clip(values, 0.0, None))) @ vectors.T


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2)) between two Gaussians.

    Tr((S1 S2)^(1/2)) = Tr((S1^(1/2) S2 S1^(1/2))^(1/2)): the eigenvalues of a symmetric PSD
    matrix, so the result is real and exactly 0 for identical statistics.
    """
    root1 = _psd_sqrt(np.atleast_2d(sigma1))
    middle = root1 @ np.atleast_2d(sigma2) @ root1
    trace_root = float(np.sqrt(np.clip(np.linalg.eigvalsh((middle + middle.T) / 2.0), 0.0, None)).sum())
    return _frechet(mu1, mu2, np.trace(sigma1) + np.trace(sigma2), trace_root)


def _frechet(mu1: np.ndarray, mu2: np.ndarray, trace_sum: float, trace_root: float) -> float:
    """||mu1 - mu2||^2 + Tr(S1) + Tr(S2) - 2 Tr((S1 S2)^(1/2)), given the two traces' sum and the last trace."""
    diff = np.asarray(mu1, np.float64) - np.asarray(mu2, np.float64)
    return max(float(diff @ diff + trace_sum - 2.0 * trace_root), 0.0)  # Rounding can leave -1e-12 for identical sets.


def fid_from_features(features1: np.ndarray, features2: np.ndarray) -> float:
    """FID between two sets of feature vectors [N, D].

    With fewer vectors than dimensions (a test split of a few hundred images, 2048-d Inception
    features) the same value comes from the centred features A1, A2 (scaled by 1/sqrt(N - 1)):
    S1 = A1^T A1, S2 = A2^T A2, and the nonzero eigenvalues of S1 S2 are the squared singular
    values of A1 A2^T, an N1 x N2 matrix, where `frechet_distance` decomposes D x D matrices.
    """
    features1, features2 = _checked_features(features1), _checked_features(features2)
    if max(len(features1), len(features2)) >= features1.shape[1]:
        return frechet_distance(*feature_statistics(features1), *feature_statistics(features2))
    mu1, mu2 = features1.mean(axis=0), features2.mean(axis=0)
    a1 = (features1 - mu1) / np.sqrt(len(features1) - 1.0)
    a2 = (features2 - mu2) / np.sqrt(len(features2) - 1.0)
    trace_root = float(np.linalg.svd(a1 @ a2.T, compute_uv=False).sum())
    return _frechet(mu1, mu2, np.sum(a1 * a1) + np.sum(a2 * a2), trace_root)


FeatureFn = Callable[[np.ndarray], np.ndarray]  # [N, H, W, 3] in [-1, 1] -> [N, D]


def keras_features(model, image_size: Optional[int] = None) -> FeatureFn:
    """Wraps a Keras model (images in [-1, 1] -> features) as a feature function, resizing the
    images to `image_size` (bilinear) first when given. Any network works; the tests use a
    small random one, FID proper uses Inception-v3 (`inception_features`)."""
    import tensorflow as tf

    @tf.function(reduce_retracing=True, autograph=False)  # Its branches test static shapes and settings.
    def run(images: tf.Tensor) -> tf.Tensor:
        if image_size is not None:
            images = tf.image.resize(images, [image_size, image_size], method="bilinear")
        if images.shape[-1] == 1:
            images = tf.image.grayscale_to_rgb(images)
        features = model(images, training=False)
        return tf.reshape(features, [tf.shape(features)[0], -1])

    def features(images: np.ndarray) -> np.ndarray:
        return run(tf.constant(np.asarray(images, np.float32))).numpy()

    return features


INCEPTION_SIZE = 299


def _is_h5_or_zip(path: str) -> bool:
    """Whether `path` is an HDF5 file or a zip archive: the two forms Keras reads weights from."""
    return h5py.is_hdf5(path) or zipfile.is_zipfile(path)


def _not_inception(weights: str, reason: str) -> MetricError:
    return MetricError(f"--inception_weights={weights} is not a Keras Inception-v3 'notop' weights file "
                       f"(inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5): {reason}")


def inception_features(weights: Optional[str]) -> FeatureFn:
    """The 2048-d pool features of Keras' Inception-v3 from a LOCAL weights file.

    Keras would download the ImageNet weights from a hub; this package never does (machines
    without internet must still evaluate), so the user passes the file: the "notop" .h5 that
    `keras.applications.InceptionV3(include_top=False, weights="imagenet")` caches under
    ~/.keras/models/inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5 on a machine
    that has internet. Inception takes [-1, 1] inputs, the package's own scale.
    """
    if not weights:
        raise MetricError(
            "FID needs Inception-v3 weights as a local file (--inception_weights=PATH): model hubs cannot be "
            "reached from here and this package never downloads them. On a machine with internet, run "
            "`python -c \"import keras; keras.applications.InceptionV3(include_top=False, weights='imagenet')\"` "
            "and copy ~/.keras/models/inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5.")
    path = os.path.expanduser(weights)  # `--flag=~/x`: the shell leaves the tilde to the program.
    kind = regular_files.irregular(path)
    if kind or not os.path.exists(path):
        raise MetricError(f"--inception_weights={weights}: " + (f"{kind}, not a weights file." if kind
                                                                else "no such file."))
    try:
        readable_weights = _is_h5_or_zip(path)
    except OSError as e:
        raise MetricError(f"--inception_weights={weights} cannot be read: {e.strerror or e}.") from None
    if not readable_weights:  # Refused before Keras builds Inception-v3 (seconds) only to fail.
        raise _not_inception(weights, "neither an HDF5 file (.h5) nor a zip archive (.keras)")
    import keras

    # A file of another model makes Keras warn once for each layer it cannot fill, then raise: the
    # warnings are kept back, so that a refused file is the one line of the error, not a screenful.
    with warnings.catch_warnings(record=True) as kept_back:
        try:
            model = keras.applications.InceptionV3(include_top=False, weights=path, pooling="avg",
                                                   input_shape=(INCEPTION_SIZE, INCEPTION_SIZE, 3))
        except Exception as e:  # noqa: BLE001 - Keras' loaders raise many types (BadZipFile, KeyError, ...) for a bad file.
            reason = next((line.strip() for line in str(e).splitlines() if line.strip()), type(e).__name__)
            raise _not_inception(weights, reason[:300]) from e
    for warning in kept_back:  # Loaded: whatever Keras had to say is said, as it would have been.
        warnings.showwarning(warning.message, warning.category, warning.filename, warning.lineno)
    return keras_features(model, INCEPTION_SIZE)
