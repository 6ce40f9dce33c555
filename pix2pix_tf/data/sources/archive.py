"""Reading the authors' archives: which members are data, streaming them, checking each image.

The layout is `NAME/{train,val,test}/<file>` and nothing else: a member is data only when
its path is exactly the dataset's folder, a split folder and a file name (an optional
leading `./` aside). Absolute paths, `..`, deeper folders and other top folders are not
data, whatever they are called; image files among them are counted and named in a warning.
Nothing is ever extracted to disk: the tar is streamed. Each image is checked with the
package's image policy (`pix2pix_tf.images`), so what is stored is what training decodes.
"""

from __future__ import annotations

import dataclasses
import logging
import posixpath
import tarfile
import zlib
from collections import Counter
from collections.abc import Callable, Iterator

import tensorflow as tf
import tensorflow_datasets as tfds

from pix2pix_tf import image_files, images
from pix2pix_tf.errors import DatasetError

logger = logging.getLogger(__name__)

# The split folders an archive may hold, in the order they are prepared.
SPLIT_NAMES: tuple[str, ...] = ("train", "val", "test")

# Members with these suffixes (case-insensitive) are image files: checked by their content,
# and kept or skipped with a reason. Every other member is ignored silently.
IMAGE_SUFFIXES: frozenset[str] = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
)

MAX_LISTED = 5  # files named in a warning or an error
REENCODE_QUALITY = 95
MAX_MEMBER_BYTES = image_files.max_file_bytes(images.DEFAULT_MAX_PIXELS)  # Larger members are not read.


@dataclasses.dataclass(frozen=True)
class Archive:
    """One dataset's archive and what its error messages need to say."""

    path: tfds.core.Path
    name: str  # the dataset, and the archive's top folder
    url: str  # where the archive comes from
    layout_help: str  # the expected layout, for error messages


def member_split(path: str, name: str) -> str | None:
    """The split of an image member in the layout `name/split/file`; "" for an image file
    anywhere else (not used, but reported); None for a member that is not data at all."""
    base = path.rsplit("/", 1)[-1]
    if base.startswith(".") or "__MACOSX" in path.split("/")[:-1]:
        return None  # hidden files and macOS AppleDouble metadata
    if posixpath.splitext(base)[1].lower() not in IMAGE_SUFFIXES:
        return None
    relative = path
    while relative.startswith("./"):
        relative = relative[2:]
    parts = relative.split("/")
    if len(parts) == 3 and parts[0] == name and parts[1] in SPLIT_NAMES and parts[2] not in ("", ".", ".."):
        return parts[1]
    return ""


def example_key(path: str) -> str:
    """The example key of a member in the layout: its path without a leading "./"."""
    while path.startswith("./"):
        path = path[2:]
    return path


def _damaged_archive_error(archive: Archive, exc: BaseException) -> DatasetError:
    return DatasetError(
        f"Cannot read the pix2pix '{archive.name}' archive {archive.path}: {type(exc).__name__}: {exc}. "
        "The file is damaged or incomplete (an interrupted download or copy?): delete it, "
        f"fetch it again ({archive.url}) and re-run the preparation. " + archive.layout_help
    )


def iter_archive(
    archive: Archive, wanted: Callable[[str], bool], stop_after: int | None = None
) -> Iterator[tuple[int, str, tarfile.TarInfo, bytes | None]]:
    """Stream the tar: yield (index, member name, member, data) for every member.

    `data` is read only for regular-file members whose name `wanted` accepts and whose size
    is within `image_files.max_file_bytes` (a stream can only be read in order, so it is read
    here; a larger member is passed over unread). Stops after member number `stop_after`. A
    damaged or truncated archive raises `DatasetError` instead of a tarfile/zlib traceback.
    """
    try:
        with archive.path.open("rb") as fobj, tarfile.open(fileobj=fobj, mode="r|*") as tar:
            for index, member in enumerate(tar):
                data = None
                if member.isfile() and wanted(member.name) and member.size <= MAX_MEMBER_BYTES:
                    extracted = tar.extractfile(member)
                    data = extracted.read() if extracted is not None else b""
                yield index, member.name, member, data
                if stop_after is not None and index >= stop_after:
                    return
    except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
        raise _damaged_archive_error(archive, exc) from exc


@dataclasses.dataclass
class SplitIndex:
    """What the discovery pass learnt about one split."""

    num_candidates: int = 0  # image members (files, links, FIFOs...) in the split folder
    last_member: int = 0  # index of the split's last member: later ones are not read


def scan_archive(archive: Archive) -> dict[str, SplitIndex]:
    """One streaming pass over member headers: which splits hold images, and where they end."""
    splits: dict[str, SplitIndex] = {}
    outside: list[str] = []
    num_outside = 0
    seen: list[str] = []
    for index, path, member, _ in iter_archive(archive, wanted=lambda _path: False):
        if len(seen) < MAX_LISTED:
            seen.append(path)
        split = member_split(path, archive.name) if not member.isdir() else None
        if split == "":
            num_outside += 1
            if len(outside) < MAX_LISTED:
                outside.append(path)
        elif split is not None:
            info = splits.setdefault(split, SplitIndex())
            info.num_candidates += 1
            info.last_member = index
    if num_outside:
        logger.warning(
            "pix2pix/%s: %d image file(s) in %s are outside the layout %s/{train,val,test}/<file> and are "
            "not used: %s", archive.name, num_outside, archive.path, archive.name,
            ", ".join(outside) + (", ..." if num_outside > len(outside) else ""),
        )
    if not splits:
        found = ", ".join(seen) if seen else "nothing (an empty archive)"
        raise DatasetError(
            f"The pix2pix '{archive.name}' archive {archive.path} holds no train/val/test folder with images "
            f"(its first members: {found}). " + archive.layout_help
        )
    return {split: splits[split] for split in SPLIT_NAMES if split in splits}


class Skip(Exception):
    """An archive member that cannot be used: `reason` is counted, `detail` listed."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


UNDECODABLE = "not a decodable image"
TOO_LARGE = "over the pixel limit"
NOT_SIDE_BY_SIDE = "width is not twice the height"
LINK = "tar link (not readable while streaming)"
NOT_A_FILE = "not a regular file"
DUPLICATE = "repeated member path (first copy kept)"
_MODES = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}


def checked_image(data: bytes) -> tuple[bytes, str | None]:
    """(bytes to store, None) for an RGB JPEG, kept unchanged; (RGB JPEG bytes, what it was)
    for any other image the policy accepts. Raises `Skip`.

    The size is read from the header first, so a file that is not a pair (or is over the
    pixel cap) is rejected before paying for its decoding.
    """
    try:
        header = images.read_header(data, images.DEFAULT_MAX_PIXELS)
        if header.width != 2 * header.height:
            raise Skip(NOT_SIDE_BY_SIDE, f"{header.width}x{header.height}")
        decoded = images.decode_bytes(data, images.DEFAULT_MAX_PIXELS, header=header)
    except images.ImageError as e:
        raise Skip(TOO_LARGE if e.reason == images.TOO_LARGE else UNDECODABLE, e.problem) from None
    mode = "CMYK" if decoded.format == "JPEG" and decoded.components == 4 else _MODES[decoded.components]
    if decoded.format == "JPEG" and mode == "RGB":
        return data, None
    rgb = images.to_channels(tf.constant(decoded.pixels), 3)
    encoded = tf.io.encode_jpeg(rgb, quality=REENCODE_QUALITY, chroma_downsampling=False)
    return encoded.numpy(), f"{decoded.format} {mode}"


class SplitReport:
    """Counts kept, skipped and re-encoded files of one split; logs them at the end."""

    def __init__(self, archive: Archive, split: str) -> None:
        self.archive, self.split = archive, split
        self.kept = 0
        self.skipped: Counter[str] = Counter()
        self.skipped_files: list[str] = []
        self.reencoded: Counter[str] = Counter()
        self.reencoded_files: list[str] = []

    def skip(self, path: str, skip: Skip) -> None:
        self.skipped[skip.reason] += 1
        if len(self.skipped_files) < MAX_LISTED:
            self.skipped_files.append(f"{path} ({skip.reason}: {skip.detail})")

    def reencode(self, path: str, was: str) -> None:
        self.reencoded[was] += 1
        if len(self.reencoded_files) < MAX_LISTED:
            self.reencoded_files.append(f"{path} ({was})")

    def _where(self) -> str:
        return f"pix2pix/{self.archive.name}, split '{self.split}' of {self.archive.path}"

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
                self._where(), total, REENCODE_QUALITY, kinds, "; ".join(self.reencoded_files), more,
            )
        if self.skipped:
            logger.warning("%s: %s", self._where(), self.skipped_summary())
        if not self.kept:
            raise DatasetError(
                f"{self._where()}: no valid example: {self.skipped_summary()}. " + self.archive.layout_help
            )
        logger.info("%s: %d example(s) kept.", self._where(), self.kept)


def _member_kind(member: tarfile.TarInfo) -> str:
    kinds = ((member.isfifo(), "a FIFO"), (member.ischr(), "a character device"), (member.isblk(), "a block device"),
             (member.isdir(), "a folder"))
    return next((kind for found, kind in kinds if found), "a tar member that is not a file")


def split_examples(archive: Archive, split: str, last_member: int) -> Iterator[tuple[str, bytes]]:
    """One streaming pass: (key, image bytes to store) for the valid images of `split`;
    the rest is reported (and `DatasetError` raised if nothing was valid)."""
    report = SplitReport(archive, split)
    keys: set[str] = set()
    members = iter_archive(archive, wanted=lambda path: member_split(path, archive.name) == split,
                           stop_after=last_member)
    for _, path, member, data in members:
        if member_split(path, archive.name) != split:
            continue
        key = example_key(path)
        try:
            if member.islnk() or member.issym():
                raise Skip(LINK, f"-> {member.linkname}")
            if member.isfile() and member.size > MAX_MEMBER_BYTES:
                raise Skip(TOO_LARGE, image_files.oversize(member.size, images.DEFAULT_MAX_PIXELS))
            if not member.isfile():  # Named like an image, but not a file.
                raise Skip(NOT_A_FILE, _member_kind(member))
            if key in keys:
                raise Skip(DUPLICATE, "appears again later in the archive")
            image, was = checked_image(data)
        except Skip as skip:
            report.skip(key, skip)
            continue
        if was is not None:
            report.reencode(key, was)
        keys.add(key)
        report.kept += 1
        yield key, image
    report.finish()
