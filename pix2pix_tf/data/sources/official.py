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
    from the archive (the folder directly holding an image names its split),
    not assumed. Each example is `{"image": <the side-by-side JPEG>,
    "file_name": <its base name>}`, keyed by the member path in the archive.
    RGB JPEGs are stored byte for byte as the archive holds them: the halves
    are cut later, in the input pipeline, after decoding. The archive is
    streamed, never extracted: one pass to discover the splits, then one pass
    per split that stops after the split's last member.

Bad data: the policy
    * Members that are not image files (by name: `IMAGE_SUFFIXES`, any case;
      so README, lists, directories) and hidden or AppleDouble files
      (`._x.jpg`, `__MACOSX/`) are ignored silently: they are not data.
    * An image file that PIL cannot fully decode (`Image.open(...).load()`:
      corrupt, truncated, empty, not an image at all) or whose width is not
      exactly twice its height (it cannot be split into A | B) is SKIPPED.
      So are tar links (unreadable while streaming) and repeated member paths
      (the first copy is kept). Skips are counted per reason, and when a split
      is done a warning names the counts and the first files skipped.
    * An image that decodes but is not an RGB JPEG (grayscale or CMYK
      JPEG; PNG with or without alpha, ...) is KEPT, converted to RGB
      and re-encoded as JPEG (quality 95, no chroma subsampling), and counted
      in a warning. So every stored image is an RGB JPEG: it decodes to three
      channels in any decoder, and the `jpeg` encoding the features declare
      is true. (tfds stores bytes passed to `Image` without checking them.)
    * A split that ends with no valid example raises `DatasetError` naming
      the split and the archive, as does an archive with no split folder at
      all or one that cannot be read (damaged or incomplete file).
    * Image files outside a train/val/test folder are not used; a warning
      names them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import logging
import posixpath
import tarfile
import threading
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any, ClassVar

import tensorflow_datasets as tfds
from PIL import Image, ImageFile, UnidentifiedImageError

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

DATASET_NAMES: tuple[str, ...] = (
    "facades",
    "cityscapes",
    "maps",
    "edges2shoes",
    "edges2handbags",
    "night2day",
)

# Read each time `archive_url` is called: assign it to use a mirror (or, in tests, a loopback server).
URL_TEMPLATE: str = "http://efrosgans.eecs.berkeley.edu/pix2pix/datasets/{name}.tar.gz"

# The split folders an archive may hold, in the order they are prepared.
SPLIT_NAMES: tuple[str, ...] = ("train", "val", "test")

# Members with these suffixes (case-insensitive) are images: decoded, and kept
# or skipped with a reason. Every other member is ignored silently.
IMAGE_SUFFIXES: frozenset[str] = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
)

# Retries of tfds's HTTP session for our download (tfds's own default, 10 with
# exponential back-off, keeps a machine without network waiting ~3.5 minutes).
# They only cover opening the connection: a transfer that breaks mid-way is
# not resumed by tfds anyway.
DOWNLOAD_RETRIES: int = 2

_MAX_LISTED = 5  # files named in a warning or an error
_REENCODE_QUALITY = 95


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
# Reading the archive.
# ---------------------------------------------------------------------------


def _split_of(path: str) -> str | None:
    """The split of an image member `path`, "" for an image outside any split
    folder, or None for a member that is not data (ignored silently)."""
    parts = path.split("/")
    base = parts[-1]
    if base.startswith(".") or "__MACOSX" in parts[:-1]:
        return None  # hidden files and macOS AppleDouble metadata
    if posixpath.splitext(base)[1].lower() not in IMAGE_SUFFIXES:
        return None
    parent = parts[-2] if len(parts) >= 2 else ""
    return parent if parent in SPLIT_NAMES else ""


def _normalise(member_name: str) -> str:
    """Member path without "./" prefixes or doubled slashes: the example key."""
    return posixpath.normpath(member_name).lstrip("/")


def _damaged_archive_error(archive: tfds.core.Path, name: str, exc: BaseException) -> DatasetError:
    return DatasetError(
        f"Cannot read the pix2pix '{name}' archive {archive}: {type(exc).__name__}: {exc}. "
        "The file is damaged or incomplete (an interrupted download or copy?): delete it, "
        f"fetch it again ({archive_url(name)}) and re-run the preparation. "
        + expected_layout_help(name)
    )


def _iter_archive(
    archive: tfds.core.Path,
    name: str,
    wanted: Callable[[str], bool],
    stop_after: int | None = None,
) -> Iterator[tuple[int, str, tarfile.TarInfo, bytes | None]]:
    """Stream the tar: yield (index, path, member, data) for every member.

    `data` is read only for regular-file members whose path `wanted` accepts
    (a stream can only be read in order, so it is read here). Stops after
    member number `stop_after`. A damaged or truncated archive raises
    `DatasetError` instead of a tarfile/zlib traceback.
    """
    try:
        with archive.open("rb") as fobj, tarfile.open(fileobj=fobj, mode="r|*") as tar:
            for index, member in enumerate(tar):
                path = _normalise(member.name)
                data = None
                if member.isfile() and wanted(path):
                    extracted = tar.extractfile(member)
                    data = extracted.read() if extracted is not None else b""
                yield index, path, member, data
                if stop_after is not None and index >= stop_after:
                    return
    except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
        raise _damaged_archive_error(archive, name, exc) from exc


@dataclasses.dataclass
class _SplitIndex:
    """What the discovery pass learnt about one split."""

    num_candidates: int = 0  # image members (files or links) in the split folder
    last_member: int = 0  # index of the split's last member: later ones are not read


def _scan_archive(archive: tfds.core.Path, name: str) -> dict[str, _SplitIndex]:
    """One streaming pass over member headers: which splits hold images, and where they end."""
    splits: dict[str, _SplitIndex] = {}
    strays: list[str] = []
    num_strays = 0
    seen: list[str] = []
    for index, path, member, _ in _iter_archive(archive, name, wanted=lambda _path: False):
        if len(seen) < _MAX_LISTED:
            seen.append(path)
        if not (member.isfile() or member.islnk() or member.issym()):
            continue
        split = _split_of(path)
        if split is None:
            continue
        if not split:
            num_strays += 1
            if len(strays) < _MAX_LISTED:
                strays.append(path)
            continue
        info = splits.setdefault(split, _SplitIndex())
        info.num_candidates += 1
        info.last_member = index
    if num_strays:
        logger.warning(
            "pix2pix/%s: %d image file(s) in %s are not in a train/val/test folder and are not used: %s",
            name, num_strays, archive, ", ".join(strays) + (", ..." if num_strays > len(strays) else ""),
        )
    if not splits:
        found = ", ".join(seen) if seen else "nothing (an empty archive)"
        raise DatasetError(
            f"The pix2pix '{name}' archive {archive} holds no train/val/test folder with images "
            f"(its first members: {found}). " + expected_layout_help(name)
        )
    return {split: splits[split] for split in SPLIT_NAMES if split in splits}


class _Skip(Exception):
    """An archive member that cannot be used: `reason` is counted, `detail` listed."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


_UNDECODABLE = "not a decodable image"
_NOT_SIDE_BY_SIDE = "width is not twice the height"
_LINK = "tar link (not readable while streaming)"
_DUPLICATE = "repeated member path (first copy kept)"


def _checked_image(data: bytes) -> tuple[bytes, str | None]:
    """(bytes to store, None) for an RGB JPEG, kept unchanged; (RGB JPEG
    bytes, what it was) for any other decodable image. Raises `_Skip`.

    The aspect check reads only the header, so a file that is not a pair is
    rejected before paying for its decoding.
    """
    try:
        image = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise _Skip(_UNDECODABLE, "no image format recognised") from None
    except Exception as exc:  # PIL raises many types for garbage input
        raise _Skip(_UNDECODABLE, f"{type(exc).__name__}: {exc}") from None
    with image:
        width, height = image.size
        if width != 2 * height:
            raise _Skip(_NOT_SIDE_BY_SIDE, f"{width}x{height}")
        try:
            image.load()  # decodes every pixel: catches truncated and corrupt data
        except Exception as exc:
            raise _Skip(_UNDECODABLE, f"{type(exc).__name__}: {exc}") from None
        if image.format == "JPEG" and image.mode == "RGB":
            return data, None
        was = f"{image.format} {image.mode}"
        buf = io.BytesIO()
        image.convert("RGB").save(buf, format="JPEG", quality=_REENCODE_QUALITY, subsampling=0)
        return buf.getvalue(), was


class _SplitReport:
    """Counts kept, skipped and re-encoded files of one split; logs them at the end."""

    def __init__(self, dataset: str, split: str, archive: tfds.core.Path) -> None:
        self.dataset, self.split, self.archive = dataset, split, archive
        self.kept = 0
        self.skipped: Counter[str] = Counter()
        self.skipped_files: list[str] = []
        self.reencoded: Counter[str] = Counter()
        self.reencoded_files: list[str] = []

    def skip(self, path: str, skip: _Skip) -> None:
        self.skipped[skip.reason] += 1
        if len(self.skipped_files) < _MAX_LISTED:
            self.skipped_files.append(f"{path} ({skip.reason}: {skip.detail})")

    def reencode(self, path: str, was: str) -> None:
        self.reencoded[was] += 1
        if len(self.reencoded_files) < _MAX_LISTED:
            self.reencoded_files.append(f"{path} ({was})")

    def _where(self) -> str:
        return f"pix2pix/{self.dataset}, split '{self.split}' of {self.archive}"

    def skipped_summary(self) -> str:
        total = sum(self.skipped.values())
        reasons = ", ".join(f"{reason}: {n}" for reason, n in sorted(self.skipped.items()))
        more = ", ..." if total > len(self.skipped_files) else ""
        return (
            f"skipped {total} of {total + self.kept} image file(s) ({reasons}); "
            f"first skipped: {'; '.join(self.skipped_files)}{more}"
        )

    def finish(self) -> None:
        """Log what was altered or lost; raise if nothing usable was left."""
        if self.reencoded:
            total = sum(self.reencoded.values())
            kinds = ", ".join(f"{kind}: {n}" for kind, n in sorted(self.reencoded.items()))
            more = ", ..." if total > len(self.reencoded_files) else ""
            logger.warning(
                "%s: re-encoded %d image(s) that were not RGB JPEG to RGB JPEG (quality %d) (%s): %s%s",
                self._where(), total, _REENCODE_QUALITY, kinds, "; ".join(self.reencoded_files), more,
            )
        if self.skipped:
            logger.warning("%s: %s", self._where(), self.skipped_summary())
        if not self.kept:
            raise DatasetError(
                f"{self._where()}: no valid example: {self.skipped_summary()}. "
                + expected_layout_help(self.dataset)
            )
        logger.info("%s: %d example(s) kept.", self._where(), self.kept)


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


def _config(name: str, a_side: str, b_side: str, direction: str, about: str) -> Pix2pixConfig:
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

_CITATION = """\
@inproceedings{isola2017image,
  title={Image-to-Image Translation with Conditional Adversarial Networks},
  author={Isola, Phillip and Zhu, Jun-Yan and Zhou, Tinghui and Efros, Alexei A},
  booktitle={CVPR},
  year={2017}
}
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
        _config("facades", "photo", "label map", "BtoA", "CMP Facades: 400 train images, ~30 MB."),
        _config("cityscapes", "photo", "label map", "BtoA", "Cityscapes: 2975 train images, ~100 MB."),
        _config("maps", "aerial photo", "map", "AtoB", "Google Maps: 1096 train images (1200x600), ~250 MB."),
        _config("edges2shoes", "edges", "photo", "AtoB", "UT Zappos50K: ~50k train images, ~2 GB."),
        _config("edges2handbags", "edges", "photo", "AtoB", "iGAN handbags: ~137k train images, ~8.6 GB."),
        _config("night2day", "night", "day", "AtoB", "Transient Attributes: ~20k train images."),
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
        return self.dataset_info_from_configs(
            description=_DESCRIPTION,
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Image(shape=(None, None, 3), encoding_format="jpeg"),
                    "file_name": tfds.features.Text(),
                }
            ),
            supervised_keys=None,
            homepage="https://phillipi.github.io/pix2pix/",
            citation=_CITATION,
        )

    def _split_generators(self, dl_manager: Any) -> dict[str, Iterator[tuple[str, dict[str, Any]]]]:
        name = self.builder_config.name
        archive = self._archive(dl_manager)
        splits = _scan_archive(archive, name)
        logger.info(
            "pix2pix/%s: %s holds %s.", name, archive,
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
        self, archive: tfds.core.Path, split: str, last_member: int
    ) -> Iterator[tuple[str, dict[str, Any]]]:
        """One streaming pass: yield the valid images of `split`, report the rest."""
        name = self.builder_config.name
        report = _SplitReport(name, split, archive)
        keys: set[str] = set()
        if ImageFile.LOAD_TRUNCATED_IMAGES:  # a process-wide PIL switch someone else set
            logger.warning(
                "pix2pix/%s: PIL.ImageFile.LOAD_TRUNCATED_IMAGES is True, so truncated images "
                "decode (padded) and cannot be detected and skipped.", name,
            )
        members = _iter_archive(
            archive, name, wanted=lambda path: _split_of(path) == split, stop_after=last_member
        )
        for _, path, member, data in members:
            if _split_of(path) != split:
                continue
            try:
                if member.islnk() or member.issym():
                    raise _Skip(_LINK, f"-> {member.linkname}")
                if data is None:
                    continue  # a directory or device node named like an image
                if path in keys:
                    raise _Skip(_DUPLICATE, "appears again later in the archive")
                image, was = _checked_image(data)
            except _Skip as skip:
                report.skip(path, skip)
                continue
            if was is not None:
                report.reencode(path, was)
            keys.add(path)
            report.kept += 1
            yield path, {"image": image, "file_name": posixpath.basename(path)}
        report.finish()
