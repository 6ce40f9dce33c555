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
  any image within it can be (`image_files.max_file_bytes`, refused before it is read), is skipped;
- an entry that is not a regular file (a FIFO, a device, a socket, a broken link; links are
  followed) is skipped: it is opened without blocking and never read;
- with `--preprocess=scale_width*` (which keep the aspect ratio), an image whose input would
  be scaled over the pixel cap is skipped (the pipeline's `_scaled_problem` decides);
- in the aligned layout, an image whose width is not exactly twice its height is skipped;
- in the A/B layout, an image without its partner is skipped;
- a file the layout does not read (in a sub-folder of a split folder, beside the split
  folders, or in another folder of the root) is not opened, but counted with the skips;
- a link to a folder (in a split folder, beside the split folders, or below them) is not
  followed, but counted and named with the skips;
- each skip is counted, and one warning at the end of the scan names the counts and the
  first files of each kind; a split left empty, or a folder with no images, is an error.

Grayscale, RGBA and 16-bit images are converted when decoded (grey is replicated to RGB,
alpha is dropped, 16 bits are scaled to 8). Hidden files and folders (names starting with
".") are not looked at; a split folder (or `A`, `B`) may be a link to a folder.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import os
from typing import Callable, Collection, Optional

from absl import logging

from pix2pix_tf import image_files, images
from pix2pix_tf.errors import DatasetError, one_line

SPLITS = ("train", "val", "test")
SHOWN_PER_REASON = 5
NOT_READ = "not directly in a split folder, not read"
LINKED_FOLDER = "a link to a folder, not followed"
# Why a usable input of (width, height) would be over the pixel cap once preprocessed, or None.
ScaledProblem = Callable[[int, int], Optional[str]]


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
            shown = ", ".join(one_line(os.path.relpath(f, self.root)) + (f": {detail}" if detail else "")
                              for f, detail in files[:SHOWN_PER_REASON])
            more = f", and {len(files) - SHOWN_PER_REASON} more" if len(files) > SHOWN_PER_REASON else ""
            parts.append(f"{len(files)} {reason} ({shown}{more})")
        return f"Skipped {total} file(s) in {self.root}: " + "; ".join(parts) + "."


def _files_in(directory: str) -> list[str]:
    """Every non-hidden entry of `directory` but its folders: what is an image is decided by
    its content, and a FIFO, device or broken link is skipped and reported (`image_files.read_file`)."""
    return sorted(path for name in os.listdir(directory) if not name.startswith(".")
                  and not os.path.isdir(path := os.path.join(directory, name)))


def _files_below(directory: str, skip: Collection[str] = ()) -> list[str]:
    """The non-hidden files in the sub-folders of `directory`, at any depth, but those of the
    sub-folders named in `skip`: files the layout does not read, counted so that none is
    dropped silently. Links to folders are not followed (a link loop would never end): they
    are among what is returned, at any depth, `directory`'s own included."""
    found = []
    for parent, folders, files in os.walk(directory):
        top = parent == directory
        folders[:] = sorted(f for f in folders if not f.startswith(".") and not (top and f in skip))
        found += [path for f in folders if os.path.islink(path := os.path.join(parent, f))]
        if not top:
            found += [os.path.join(parent, name) for name in sorted(files) if not name.startswith(".")]
    return found


def _not_read(directory: str, splits: dict[str, str]) -> list[str]:
    """The files under `directory` that its `splits` (`_split_dirs`) leave unread: all but
    those directly in a split folder (the root's own files when it has split folders, too)."""
    below_splits = [path for split in splits.values() for path in _files_below(split)]
    if splits == {"train": directory}:
        return below_splits
    return _files_in(directory) + _files_below(directory, {os.path.basename(s) for s in splits.values()}) + below_splits


def _split_dirs(directory: str) -> dict[str, str]:
    """The split folders of `directory`, or the directory itself as `train`."""
    found = {s: os.path.join(directory, s) for s in SPLITS if os.path.isdir(os.path.join(directory, s))}
    return found or {"train": directory}


_NOT_SIDE_BY_SIDE = "not side by side (width is not twice the height)"


def _check_all(paths: list[str], max_pixels: int, need_double_width: bool, scan: FolderScan,
               scaled_problem: Optional[ScaledProblem] = None) -> list[bool]:
    """Whether each file is usable; records the sizes of the usable ones and why the others are not.
    `scaled_problem` is asked about the input's size: an aligned image's half."""
    def check(path: str) -> tuple[Optional[tuple[int, int]], Optional[images.ImageError]]:
        try:
            return image_files.check_image_file(path, max_pixels), None
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
        elif scaled_problem and (problem := scaled_problem(size[0] // (2 if need_double_width else 1), size[1])):
            scan.skipped.setdefault(images.TOO_LARGE, []).append((path, problem))
        else:
            scan.sizes[path] = size
        usable.append(path in scan.sizes)
    return usable


def scan_folder(root: str, max_pixels: int = images.DEFAULT_MAX_PIXELS,
                scaled_problem: Optional[ScaledProblem] = None) -> FolderScan:
    """Finds the layout and the valid pairs of a folder of user images (see the module docstring).
    `scaled_problem`: the preprocessing's check of an input's size, for modes that scale it."""
    root = os.path.abspath(os.path.expanduser(root))
    if not os.path.isdir(root):
        what = "a file, not a folder of images" if os.path.exists(root) else "no such directory"
        raise DatasetError(f"--dataset=folder:{root}: {what}.")
    if os.path.isdir(os.path.join(root, "A")) and os.path.isdir(os.path.join(root, "B")):
        scan = _scan_a_b(root, max_pixels, scaled_problem)
    else:
        scan = _scan_aligned(root, max_pixels, scaled_problem)
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


def _scan_aligned(root: str, max_pixels: int, scaled_problem: Optional[ScaledProblem]) -> FolderScan:
    scan = FolderScan(root, "aligned", {})
    splits = _split_dirs(root)
    for split, directory in splits.items():
        paths = _files_in(directory)
        usable = _check_all(paths, max_pixels, True, scan, scaled_problem)
        scan.splits[split] = [(p,) for p, ok in zip(paths, usable) if ok]
    _count_not_read(scan, _not_read(root, splits))
    return scan


def _count_not_read(scan: FolderScan, paths: list[str]) -> None:
    """Counts what the layout does not read: a link to a folder as one, named with its target."""
    for path in paths:
        if os.path.islink(path) and os.path.isdir(path):
            scan.skipped.setdefault(LINKED_FOLDER, []).append((path, f"to {one_line(os.readlink(path))}"))
        else:
            scan.skipped.setdefault(NOT_READ, []).append((path, ""))


def _scan_a_b(root: str, max_pixels: int, scaled_problem: Optional[ScaledProblem]) -> FolderScan:
    """Pairs are matched among the usable images only, so that a stray file beside `1.png`
    (`1.txt`, a broken `1.jpg`) is skipped for what it is instead of spoiling the name. Only A
    is asked `scaled_problem`: B is resized to A's size before the preprocessing."""
    scan = FolderScan(root, "AB", {})
    a_splits, b_splits = _split_dirs(os.path.join(root, "A")), _split_dirs(os.path.join(root, "B"))
    for split in sorted(set(a_splits) | set(b_splits), key=SPLITS.index):
        trees = []
        for splits, problem in ((a_splits, scaled_problem), (b_splits, None)):
            paths = _files_in(splits[split]) if split in splits else []
            usable = _check_all(paths, max_pixels, False, scan, problem)
            trees.append(_by_stem([p for p, ok in zip(paths, usable) if ok]))
        a_files, b_files = trees
        for stem in sorted(set(a_files) ^ set(b_files)):
            scan.skipped.setdefault("without a partner of the same name in the other tree", []).append(
                (a_files.get(stem) or b_files[stem], ""))
        scan.splits[split] = [(a_files[s], b_files[s]) for s in sorted(set(a_files) & set(b_files))]
    not_read = _files_in(root) + _files_below(root, {"A", "B"})
    _count_not_read(scan, not_read + _not_read(os.path.join(root, "A"), a_splits)
                    + _not_read(os.path.join(root, "B"), b_splits))
    return scan


def _by_stem(paths: list[str]) -> dict[str, str]:
    by_stem: dict[str, str] = {}
    for path in paths:
        stem = os.path.splitext(os.path.basename(path))[0]
        if stem in by_stem:
            raise DatasetError(f"Two images named {stem!r} in {one_line(os.path.dirname(path))}: "
                               f"{one_line(os.path.basename(by_stem[stem]))} and {one_line(os.path.basename(path))}. "
                               "A/B pairs are matched by name, so names must be unique.")
        by_stem[stem] = path
    return by_stem
