"""`pix2pix`: the authors' paired datasets as one tensorflow-datasets builder.

tensorflow-datasets has no paired pix2pix builder (its `cycle_gan` one is
unpaired), so this module provides `Pix2pix`, registered as `pix2pix`, with one
config per archive the authors publish: facades, cityscapes, maps, edges2shoes,
edges2handbags and night2day::

    import tensorflow_datasets as tfds
    import pix2pix_tf.data.sources.official  # noqa: F401  (registers the builder)

    ds = tfds.load("pix2pix/facades", split="train")

Where the data comes from
    `{name}.tar.gz` from `URL_TEMPLATE`, through `dl_manager.download` (so tfds
    caches it under `<data_dir>/downloads/`). If the archive is already in the
    manual directory as `<manual_dir>/{name}.tar.gz` (by default
    `<data_dir>/downloads/manual/`), that file is used and no network is touched
    at all: this is the offline route for machines that cannot reach the
    authors' server. A failed download raises `DatasetError` naming the URL and
    that exact path. tfds retries a refused connection 10 times with exponential
    back-off (about 3.5 minutes); the builder lowers that to `DOWNLOAD_RETRIES`
    for its own download, so a machine without network gets its answer in
    about a second instead.

What is stored
    The archive holds `{name}/{train,val[,test]}/*.jpg`, each JPEG the A image
    (left) and the B image (right) side by side. The splits are discovered
    from the archive, not assumed. Each example is `{"image": <the
    side-by-side JPEG>, "file_name": <its base name>}`, keyed by the member
    path in the archive. RGB JPEGs are stored byte for byte as the archive
    holds them: the halves are cut later, in the input pipeline, after
    decoding. The archive is streamed, never extracted: one pass to discover
    the splits, then one pass per split that stops after the split's last
    member (`archive.py`).

Bad data: the policy
    * Only members named exactly `{name}/{train,val,test}/<file>` are data.
      Image files anywhere else (another top folder, deeper folders, `..`,
      absolute paths) are not used, and a warning counts and names them.
      Other members (README, lists, directories) and hidden or AppleDouble
      files (`._x.jpg`, `__MACOSX/`) are ignored silently.
    * Images are checked with the package's image policy
      (`pix2pix_tf.images`, the decoder training uses): a file that is not
      JPEG, PNG, GIF, BMP or WebP by its content, that does not fully decode
      (corrupt, truncated, empty), that is over the default pixel cap, or
      whose width is not exactly twice its height (it cannot be split into
      A | B) is SKIPPED. So are tar links (unreadable while streaming) and
      repeated member paths (the first copy is kept). Skips are counted per
      reason, and when a split is done a warning names the counts and the
      first files skipped.
    * An image that decodes but is not an RGB JPEG (grayscale or CMYK
      JPEG; PNG with or without alpha, ...) is KEPT, converted to RGB
      and re-encoded as JPEG (quality 95, no chroma subsampling), and counted
      in a warning. So every stored image is an RGB JPEG: it decodes to three
      channels in any decoder, and the `jpeg` encoding the features declare
      is true. (tfds stores bytes passed to `Image` without checking them.)
    * A split that ends with no valid example raises `DatasetError` naming
      the split and the archive, as does an archive with no split folder at
      all or one that cannot be read (damaged or incomplete file).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import posixpath
import threading
from collections.abc import Iterator
from typing import Any, ClassVar

import tensorflow_datasets as tfds

from pix2pix_tf.catalogue import OFFICIAL_DATASETS
from pix2pix_tf.data.sources import PAPER_CITATION
from pix2pix_tf.data.sources.archive import (
    IMAGE_SUFFIXES,
    SPLIT_NAMES,
    Archive,
    scan_archive,
    split_examples,
)
from pix2pix_tf.data.sources.local_info import LocalDatasetInfo
from pix2pix_tf.errors import DatasetError

__all__ = [
    "DATASET_NAMES",
    "DOWNLOAD_RETRIES",
    "IMAGE_SUFFIXES",
    "SPLIT_NAMES",
    "URL_TEMPLATE",
    "Pix2pix",
    "Pix2pixConfig",
    "archive_url",
    "expected_layout_help",
]

logger = logging.getLogger(__name__)

DATASET_NAMES: tuple[str, ...] = tuple(OFFICIAL_DATASETS)

# Read each time `archive_url` is called: assign it to use a mirror (or, in tests, a loopback server).
URL_TEMPLATE: str = "http://efrosgans.eecs.berkeley.edu/pix2pix/datasets/{name}.tar.gz"

# Retries of tfds's HTTP session for our download (tfds's own default, 10 with
# exponential back-off, keeps a machine without network waiting ~3.5 minutes).
# They only cover opening the connection: a transfer that breaks mid-way is
# not resumed by tfds anyway.
DOWNLOAD_RETRIES: int = 2


def archive_url(name: str) -> str:
    """The authors' URL of the archive of dataset `name`.

    Formats the module's `URL_TEMPLATE` at call time, so a mirror (or a test
    server) is one assignment away: `official.URL_TEMPLATE = "https://.../{name}.tar.gz"`.
    The manual-directory file name stays `{name}.tar.gz` either way.
    """
    _check_name(name)
    return URL_TEMPLATE.format(name=name)


def expected_layout_help(name: str) -> str:
    """What `{name}.tar.gz` must contain, for error messages.

    A user who built or copied an archive by hand needs to know the layout the
    builder reads, not just that something is wrong.
    """
    _check_name(name)
    size = "1200x600" if name == "maps" else "512x256"
    return (
        f"Expected layout: {name}.tar.gz is a (gzipped) tar archive holding "
        f"{name}/train/*.jpg and {name}/val/*.jpg, and {name}/test/*.jpg for some datasets "
        "(any split folder may be missing, but at least one must hold images). "
        "Each JPEG holds the A image (left) and the B image (right) side by side, so its width "
        f"is exactly twice its height (typically {size})."
    )


def _check_name(name: str) -> None:
    if name not in DATASET_NAMES:
        raise DatasetError(
            f"Unknown pix2pix dataset {name!r}; the authors publish: {', '.join(DATASET_NAMES)}."
        )


# ---------------------------------------------------------------------------
# Downloading.
# ---------------------------------------------------------------------------

_RETRY_LOCK = threading.Lock()


@contextlib.contextmanager
def _limited_download_retries(retries: int) -> Iterator[None]:
    """Lower tfds's HTTP retry count for the duration of one download.

    tfds builds its `urllib3.Retry(total=MAX_RETRIES, backoff_factor=0.2)`
    from a module constant at each request and offers no option for it, so
    the constant is lowered here and restored afterwards (under a lock, in
    case two builders download at once).
    """
    try:
        from tensorflow_datasets.core.download import downloader
    except ImportError:  # pragma: no cover - layout of a future tfds
        yield
        return
    if not isinstance(getattr(downloader, "MAX_RETRIES", None), int):  # pragma: no cover
        yield
        return
    with _RETRY_LOCK:
        saved = downloader.MAX_RETRIES
        downloader.MAX_RETRIES = min(saved, retries)
        try:
            yield
        finally:
            downloader.MAX_RETRIES = saved


def _manual_dir(dl_manager: Any) -> tfds.core.Path | None:
    """The manual directory, whether or not it exists yet.

    `dl_manager.manual_dir` raises while the directory is missing or empty;
    the path is still needed to tell the user where to put the archive.
    """
    try:
        return tfds.core.Path(dl_manager.manual_dir)
    except Exception:  # AssertionError: missing or empty
        pass
    path = getattr(dl_manager, "_manual_dir", None)
    return tfds.core.Path(path) if path else None


def _short(exc: BaseException, limit: int = 300) -> str:
    text = f"{type(exc).__name__}: {exc}"
    return text if len(text) <= limit else text[: limit - 3] + "..."


# ---------------------------------------------------------------------------
# The builder.
# ---------------------------------------------------------------------------


@dataclasses.dataclass(eq=False)
class Pix2pixConfig(tfds.core.BuilderConfig):
    """One of the authors' datasets: what its A (left) and B (right) halves show.

    `direction` is the translation the paper usually trains ("AtoB" or
    "BtoA"), so a training config can default to it instead of guessing.
    """

    a_side: str = ""
    b_side: str = ""
    direction: str = "AtoB"


def _config(name: str, a_side: str, b_side: str, about: str) -> Pix2pixConfig:
    direction = OFFICIAL_DATASETS[name]  # The paper's, as a run's config defaults to (catalogue).
    source, target = (a_side, b_side) if direction == "AtoB" else (b_side, a_side)
    return Pix2pixConfig(
        name=name,
        description=f"{about} A (left) = {a_side}, B (right) = {b_side}; "
        f"usually {source} -> {target} ({direction}).",
        a_side=a_side,
        b_side=b_side,
        direction=direction,
    )


_DESCRIPTION = """\
The paired datasets published with pix2pix (Isola et al., CVPR 2017). Each
example is one JPEG holding the A image (left half) and the B image (right
half) side by side, exactly as in the authors' archive; split it in two after
decoding. `file_name` is the image's base name in the archive.
"""



class Pix2pix(tfds.core.GeneratorBasedBuilder):
    """The authors' pix2pix datasets (registered as `pix2pix`); one config each."""

    # tfds derives these through `importlib_resources`, a package it does not
    # declare and that may be missing; the builder lives in this very file.
    code_path: ClassVar[tfds.core.Path] = tfds.core.Path(__file__)
    pkg_dir_path: ClassVar[tfds.core.Path] = tfds.core.Path(__file__).parent

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES: ClassVar[dict[str, str]] = {"1.0.0": "Initial release."}
    BUILDER_CONFIGS: ClassVar[list[tfds.core.BuilderConfig]] = [
        _config("facades", "photo", "label map", "CMP Facades: 400 train images, ~30 MB."),
        _config("cityscapes", "photo", "label map", "Cityscapes: 2975 train images, ~100 MB."),
        _config("maps", "aerial photo", "map", "Google Maps: 1096 train images (1200x600), ~250 MB."),
        _config("edges2shoes", "edges", "photo", "UT Zappos50K: ~50k train images, ~2 GB."),
        _config("edges2handbags", "edges", "photo", "iGAN handbags: ~137k train images, ~8.6 GB."),
        _config("night2day", "night", "day", "Transient Attributes: ~20k train images."),
    ]
    MANUAL_DOWNLOAD_INSTRUCTIONS = f"""\
    Preparation downloads the authors' archive itself:
    {URL_TEMPLATE}
    To prepare offline instead (a machine that cannot reach that server), fetch
    the archive elsewhere and copy it, unchanged and under its original name
    `{{name}}.tar.gz`, into the manual directory: by default
    `<data_dir>/downloads/manual/`, e.g.
    `~/tensorflow_datasets/downloads/manual/facades.tar.gz`, or the directory
    given as `tfds.download.DownloadConfig(manual_dir=...)`. When the file is
    there, it is used and no network is touched at all. Nothing needs to be
    extracted: the archive is read as it is.
    """

    def _info(self) -> tfds.core.DatasetInfo:
        return LocalDatasetInfo(
            builder=self,
            description=_DESCRIPTION,
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Image(shape=(None, None, 3), encoding_format="jpeg"),
                    "file_name": tfds.features.Text(),
                }
            ),
            supervised_keys=None,
            homepage="https://phillipi.github.io/pix2pix/",
            citation=PAPER_CITATION,
        )

    def _split_generators(self, dl_manager: Any) -> dict[str, Iterator[tuple[str, dict[str, Any]]]]:
        name = self.builder_config.name
        archive = Archive(self._archive(dl_manager), name, archive_url(name), expected_layout_help(name))
        splits = scan_archive(archive)
        logger.info(
            "pix2pix/%s: %s holds %s.", name, archive.path,
            ", ".join(f"{split} ({info.num_candidates} image files)" for split, info in splits.items()),
        )
        return {
            split: self._generate_examples(archive, split, info.last_member)
            for split, info in splits.items()
        }

    def _archive(self, dl_manager: Any) -> tfds.core.Path:
        """The archive: the manual copy if there is one, otherwise downloaded."""
        name = self.builder_config.name
        manual_dir = _manual_dir(dl_manager)
        if manual_dir is not None:
            manual = manual_dir / f"{name}.tar.gz"
            if manual.exists():
                logger.info("pix2pix/%s: using the manually placed archive %s.", name, manual)
                return manual
        url = archive_url(name)
        try:
            with _limited_download_retries(DOWNLOAD_RETRIES):
                path = dl_manager.download(url)
        except Exception as exc:  # tfds surfaces requests, urllib3, DownloadError, ...
            where = manual_dir / f"{name}.tar.gz" if manual_dir is not None else (
                f"<data_dir>/downloads/manual/{name}.tar.gz"
            )
            raise DatasetError(
                f"Could not download the pix2pix '{name}' archive from {url} ({_short(exc)}). "
                f"To prepare it without network: fetch {url} on a machine that can reach it and "
                f"put the file, unchanged, at {where} ; then re-run the preparation, which will "
                "read it from there offline."
            ) from exc
        return tfds.core.Path(path)

    def _generate_examples(
        self, archive: Archive, split: str, last_member: int
    ) -> Iterator[tuple[str, dict[str, Any]]]:
        """One streaming pass: yield the valid images of `split`, report the rest."""
        for key, image in split_examples(archive, split, last_member):
            yield key, {"image": image, "file_name": posixpath.basename(key)}
