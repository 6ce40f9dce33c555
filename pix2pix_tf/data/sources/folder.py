"""Users' own paired images: `--dataset=folder:/path/to/data`.

Two layouts are recognised:

- aligned (the authors' layout): `train/`, `val/`, `test/` folders of images holding A and B
  side by side (A left); images directly under the root form a `train` split.
- A/B trees (what the authors' combine_A_and_B script expects): `A/` and `B/`, each with the
  same split folders (or images directly inside), the pairs matched by file name (the same
  stem: `A/train/1.png` pairs with `B/train/1.jpg`).

Every image is opened and fully decoded once when the run starts, so that bad data is found
before training rather than in the middle of it. The policy (documented in docs/datasets.md):

- a file that is not a readable image (corrupt, truncated) is skipped;
- in the aligned layout, an image whose width is not exactly twice its height is skipped;
- in the A/B layout, an image without its partner is skipped;
- each skip is counted, and one warning at the end of the scan names the counts and the
  first files of each kind; a split left empty, or a folder with no images, is an error.

JPEG and PNG are read; grayscale, RGBA and 16-bit images are converted when decoded (grey is
replicated to RGB, alpha is dropped, 16 bits are scaled to 8).
"""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import os
from typing import Optional

from absl import logging
from PIL import Image

from pix2pix_tf.errors import DatasetError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
SPLITS = ("train", "val", "test")
SHOWN_PER_REASON = 5


@dataclasses.dataclass
class FolderScan:
    """What a folder holds: per split, the files of each pair, and what was skipped and why."""

    root: str
    layout: str  # "aligned" (one side-by-side image per pair) or "AB" (two files per pair)
    splits: dict[str, list[tuple[str, ...]]]
    skipped: dict[str, list[str]] = dataclasses.field(default_factory=dict)

    def skip_report(self) -> Optional[str]:
        if not self.skipped:
            return None
        total = sum(len(files) for files in self.skipped.values())
        parts = []
        for reason, files in self.skipped.items():
            shown = ", ".join(os.path.relpath(f, self.root) for f in files[:SHOWN_PER_REASON])
            more = f", and {len(files) - SHOWN_PER_REASON} more" if len(files) > SHOWN_PER_REASON else ""
            parts.append(f"{len(files)} {reason} ({shown}{more})")
        return f"Skipped {total} file(s) in {self.root}: " + "; ".join(parts) + "."


def _images_in(directory: str) -> list[str]:
    return sorted(os.path.join(directory, name) for name in os.listdir(directory)
                  if name.lower().endswith(IMAGE_EXTENSIONS) and not name.startswith("."))


def _split_dirs(directory: str) -> dict[str, str]:
    """The split folders of `directory`, or the directory itself as `train`."""
    found = {s: os.path.join(directory, s) for s in SPLITS if os.path.isdir(os.path.join(directory, s))}
    return found or {"train": directory}


def _problem(path: str, need_double_width: bool) -> Optional[str]:
    """Why `path` cannot be used, or None. Decoding fully is what finds truncated files."""
    try:
        with Image.open(path) as image:
            image.load()
            width, height = image.size
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        return "not a readable image"
    if need_double_width and width != 2 * height:
        return "not side by side (width is not twice the height)"
    return None


def _check_all(paths: list[str], need_double_width: bool) -> list[Optional[str]]:
    # PIL releases the GIL while decoding: threads use every core.
    with concurrent.futures.ThreadPoolExecutor(max_workers=min(8, (os.cpu_count() or 1) * 2)) as pool:
        return list(pool.map(lambda p: _problem(p, need_double_width), paths))


def scan_folder(root: str) -> FolderScan:
    """Finds the layout and the valid pairs of a folder of user images (see the module docstring)."""
    root = os.path.abspath(os.path.expanduser(root))
    if not os.path.isdir(root):
        raise DatasetError(f"--dataset=folder:{root}: no such directory.")
    if os.path.isdir(os.path.join(root, "A")) and os.path.isdir(os.path.join(root, "B")):
        scan = _scan_a_b(root)
    else:
        scan = _scan_aligned(root)
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


def _scan_aligned(root: str) -> FolderScan:
    splits, skipped = {}, collections.defaultdict(list)
    for split, directory in _split_dirs(root).items():
        paths = _images_in(directory)
        problems = _check_all(paths, need_double_width=True)
        splits[split] = [(p,) for p, problem in zip(paths, problems) if problem is None]
        for path, problem in zip(paths, problems):
            if problem:
                skipped[problem].append(path)
    return FolderScan(root, "aligned", splits, dict(skipped))


def _scan_a_b(root: str) -> FolderScan:
    splits, skipped = {}, collections.defaultdict(list)
    a_splits, b_splits = _split_dirs(os.path.join(root, "A")), _split_dirs(os.path.join(root, "B"))
    for split in sorted(set(a_splits) | set(b_splits), key=SPLITS.index):
        a_files = _by_stem(_images_in(a_splits[split])) if split in a_splits else {}
        b_files = _by_stem(_images_in(b_splits[split])) if split in b_splits else {}
        for stem in sorted(set(a_files) ^ set(b_files)):
            skipped["without a partner of the same name in the other tree"].append(
                a_files.get(stem) or b_files[stem])
        stems = sorted(set(a_files) & set(b_files))
        candidates = [(a_files[s], b_files[s]) for s in stems]
        problems = _check_all([p for pair in candidates for p in pair], need_double_width=False)
        splits[split] = []
        for i, pair in enumerate(candidates):
            pair_problems = [(path, problems[2 * i + j]) for j, path in enumerate(pair) if problems[2 * i + j]]
            for path, problem in pair_problems:
                skipped[problem].append(path)
            if not pair_problems:
                splits[split].append(pair)
    return FolderScan(root, "AB", splits, dict(skipped))


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
