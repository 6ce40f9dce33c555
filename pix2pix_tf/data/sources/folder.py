"""Users' own paired images: `--dataset=folder:/path/to/data`.

Two layouts are recognised:

- aligned (the authors' layout): `train/`, `val/`, `test/` folders of images holding A and B
  side by side (A left); images directly under the root form a `train` split.
- A/B trees (what the authors' combine_A_and_B script expects): `A/` and `B/`, each with the
  same split folders (or images directly inside), the pairs matched by file name (the same
  stem: `A/train/1.png` pairs with `B/train/1.jpg`).

Every file of the split folders is checked once when the run starts, by its content (not
its name) and with the decoder training uses (`pix2pix_tf.images`: JPEG, PNG, GIF, BMP,
WebP, within the pixel cap), so that bad data is found before training rather than in the
middle of it. The policy (documented in docs/datasets.md):

- a file that is not a supported image by its content (a TIFF named .jpg, a text file), or
  that does not decode fully (corrupt, truncated), is skipped;
- an image over the pixel cap (`--max_pixels`, read from its header), or a file larger than
  any image within it can be (`images.max_file_bytes`, refused before it is read), is skipped;
- an entry that is not a regular file (a FIFO, a device, a socket, a broken link; links are
  followed) is skipped: it is opened without blocking and never read;
- in the aligned layout, an image whose width is not exactly twice its height is skipped;
- in the A/B layout, an image without its partner is skipped;
- each skip is counted, and one warning at the end of the scan names the counts and the
  first files of each kind; a split left empty, or a folder with no images, is an error.

Grayscale, RGBA and 16-bit images are converted when decoded (grey is replicated to RGB,
alpha is dropped, 16 bits are scaled to 8). Hidden files (names starting with ".") and
sub-folders of a split folder are not looked at.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import os
from typing import Optional

from absl import logging

from pix2pix_tf import images
from pix2pix_tf.errors import DatasetError

SPLITS = ("train", "val", "test")
SHOWN_PER_REASON = 5


@dataclasses.dataclass
class FolderScan:
    """What a folder holds: per split, the files of each pair, and what was skipped and why."""

    root: str
    layout: str  # "aligned" (one side-by-side image per pair) or "AB" (two files per pair)
    splits: dict[str, list[tuple[str, ...]]]
    skipped: dict[str, list[tuple[str, str]]] = dataclasses.field(default_factory=dict)  # reason: (file, detail)
    sizes: dict[str, tuple[int, int]] = dataclasses.field(default_factory=dict)  # file: (width, height)

    def skip_report(self) -> Optional[str]:
        if not self.skipped:
            return None
        total = sum(len(files) for files in self.skipped.values())
        parts = []
        for reason, files in self.skipped.items():
            shown = ", ".join(os.path.relpath(f, self.root) + (f": {detail}" if detail else "")
                              for f, detail in files[:SHOWN_PER_REASON])
            more = f", and {len(files) - SHOWN_PER_REASON} more" if len(files) > SHOWN_PER_REASON else ""
            parts.append(f"{len(files)} {reason} ({shown}{more})")
        return f"Skipped {total} file(s) in {self.root}: " + "; ".join(parts) + "."


def _files_in(directory: str) -> list[str]:
    """Every non-hidden entry of `directory` but its folders: what is an image is decided by
    its content, and a FIFO, device or broken link is skipped and reported (`images.read_file`)."""
    return sorted(path for name in os.listdir(directory) if not name.startswith(".")
                  and not os.path.isdir(path := os.path.join(directory, name)))


def _split_dirs(directory: str) -> dict[str, str]:
    """The split folders of `directory`, or the directory itself as `train`."""
    found = {s: os.path.join(directory, s) for s in SPLITS if os.path.isdir(os.path.join(directory, s))}
    return found or {"train": directory}


_NOT_SIDE_BY_SIDE = "not side by side (width is not twice the height)"


def _check_all(paths: list[str], max_pixels: int, need_double_width: bool,
               scan: FolderScan) -> list[bool]:
    """Whether each file is usable; records the sizes of the usable ones and why the others are not."""
    def check(path: str) -> tuple[Optional[tuple[int, int]], Optional[images.ImageError]]:
        try:
            return images.check_image_file(path, max_pixels), None
        except images.ImageError as e:
            return None, e

    # TensorFlow's decoders release the GIL: threads use every core.
    with concurrent.futures.ThreadPoolExecutor(max_workers=min(8, (os.cpu_count() or 1) * 2)) as pool:
        results = list(pool.map(check, paths))
    usable = []
    for path, (size, error) in zip(paths, results):
        if error is not None:
            scan.skipped.setdefault(error.reason, []).append((path, error.problem))
        elif need_double_width and size[0] != 2 * size[1]:
            scan.skipped.setdefault(_NOT_SIDE_BY_SIDE, []).append((path, ""))
        else:
            scan.sizes[path] = size
        usable.append(path in scan.sizes)
    return usable


def scan_folder(root: str, max_pixels: int = images.DEFAULT_MAX_PIXELS) -> FolderScan:
    """Finds the layout and the valid pairs of a folder of user images (see the module docstring)."""
    root = os.path.abspath(os.path.expanduser(root))
    if not os.path.isdir(root):
        raise DatasetError(f"--dataset=folder:{root}: no such directory.")
    if os.path.isdir(os.path.join(root, "A")) and os.path.isdir(os.path.join(root, "B")):
        scan = _scan_a_b(root, max_pixels)
    else:
        scan = _scan_aligned(root, max_pixels)
    empty = [split for split, pairs in scan.splits.items() if not pairs]
    if not scan.splits or all(not pairs for pairs in scan.splits.values()):
        raise DatasetError(
            f"--dataset=folder:{root} holds no usable image pairs. Expected train/, val/, test/ "
            "folders of A|B side-by-side images, or A/ and B/ folders of images matched by name."
            + (f"\n{scan.skip_report()}" if scan.skipped else ""))
    if "train" in empty or "train" not in scan.splits:
        raise DatasetError(f"--dataset=folder:{root}: the train split holds no usable pair."
                           + (f"\n{scan.skip_report()}" if scan.skipped else ""))
    for split in empty:
        logging.warning("folder:%s: the %s split holds no usable pair; it is ignored.", root, split)
        del scan.splits[split]
    report = scan.skip_report()
    if report:
        logging.warning("%s", report)
    return scan


def _scan_aligned(root: str, max_pixels: int) -> FolderScan:
    scan = FolderScan(root, "aligned", {})
    for split, directory in _split_dirs(root).items():
        paths = _files_in(directory)
        usable = _check_all(paths, max_pixels, True, scan)
        scan.splits[split] = [(p,) for p, ok in zip(paths, usable) if ok]
    return scan


def _scan_a_b(root: str, max_pixels: int) -> FolderScan:
    """Pairs are matched among the usable images only, so that a stray file beside `1.png`
    (`1.txt`, a broken `1.jpg`) is skipped for what it is instead of spoiling the name."""
    scan = FolderScan(root, "AB", {})
    a_splits, b_splits = _split_dirs(os.path.join(root, "A")), _split_dirs(os.path.join(root, "B"))
    for split in sorted(set(a_splits) | set(b_splits), key=SPLITS.index):
        trees = []
        for splits in (a_splits, b_splits):
            paths = _files_in(splits[split]) if split in splits else []
            usable = _check_all(paths, max_pixels, False, scan)
            trees.append(_by_stem([p for p, ok in zip(paths, usable) if ok]))
        a_files, b_files = trees
        for stem in sorted(set(a_files) ^ set(b_files)):
            scan.skipped.setdefault("without a partner of the same name in the other tree", []).append(
                (a_files.get(stem) or b_files[stem], ""))
        scan.splits[split] = [(a_files[s], b_files[s]) for s in sorted(set(a_files) & set(b_files))]
    return scan


def _by_stem(paths: list[str]) -> dict[str, str]:
    by_stem: dict[str, str] = {}
    for path in paths:
        stem = os.path.splitext(os.path.basename(path))[0]
        if stem in by_stem:
            raise DatasetError(f"Two images named {stem!r} in {os.path.dirname(path)}: "
                               f"{os.path.basename(by_stem[stem])} and {os.path.basename(path)}. "
                               "A/B pairs are matched by name, so names must be unique.")
        by_stem[stem] = path
    return by_stem
