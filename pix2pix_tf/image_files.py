"""Image files read within the image policy's bounds (`images`), before any byte is decoded.

A file is opened only if it is a regular file (after links; a FIFO would block, a device never
ends), its first bytes must name a supported format, and it is read only up to
`max_file_bytes(max_pixels)`: the most an image within the pixel cap can need, uncompressed, plus
its metadata. The folder scan, the demo's uploads and translate's inputs read files here; the
archive reader of the authors' datasets applies the same bound to each member.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import tensorflow as tf

from pix2pix_tf import images, regular_files
from pix2pix_tf.config import DEFAULT_MAX_PIXELS
from pix2pix_tf.image_header import HEAD, format_of

# The most bytes per pixel an encoding stores: 16-bit RGBA PNG without compression.
_BYTES_PER_PIXEL = 8
# Bytes a file may hold beside its pixels: EXIF, ICC profiles, comments, palettes, thumbnails.
_METADATA_BYTES = 16 * 2**20


def max_file_bytes(max_pixels: int) -> int:
    """The most bytes read from one image file or archive member within `max_pixels`: the
    pixels at the largest encoding (uncompressed 16-bit RGBA) plus room for metadata. A file
    that is larger cannot be an image within the cap, whatever it claims."""
    return _BYTES_PER_PIXEL * int(max_pixels) + _METADATA_BYTES


def oversize(size: int, max_pixels: int) -> Optional[str]:
    """Why `size` bytes cannot be an image within `max_pixels` (over `max_file_bytes`); None if it can."""
    limit = max_file_bytes(max_pixels)
    if size <= limit:
        return None
    return (f"{size} bytes, more than an image of at most {images.pixel_amount(int(max_pixels), max_pixels)} can need "
            f"({limit} bytes; --max_pixels)")


def _check_size(size: int, max_pixels: int, path: str) -> None:
    problem = oversize(size, max_pixels)
    if problem:
        raise images.ImageError(path, problem, images.TOO_LARGE)


def read_file(path: str, max_pixels: int = DEFAULT_MAX_PIXELS) -> bytes:
    """The bytes of the image file `path`, read bounded: ImageError (naming it) for something
    that is not a regular file (after links; opened without blocking, so a FIFO cannot hang
    the reader), whose first bytes are no supported format, or that is larger than
    `max_file_bytes`; the rest of the file is read only after those checks, and costs the
    memory of what it holds, whatever the cap (`regular_files.read_bounded`)."""
    try:
        with regular_files.opened_regular(path) as (f, size):
            head = f.read(HEAD)
            if not int(format_of(tf.constant(head, tf.string))):
                images.read_header(head, max_pixels, path)  # Raises: empty, or the first bytes named.
            _check_size(size, max_pixels, path)
            data = head + regular_files.read_bounded(f, size, max_file_bytes(max_pixels), len(head))
    except regular_files.NotARegularFile as e:
        raise images.ImageError(path, f"{e.kind}, not a regular file", images.NOT_A_FILE) from None
    except OSError as e:
        raise images.ImageError(path, f"cannot be read ({e.strerror or e})") from None
    _check_size(len(data), max_pixels, path)  # Grown since it was measured.
    return data


def read_image_file(path: str, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """The uint8 HxWxC pixels (the image's own channels) of an image file, or ImageError naming it."""
    return images.decode_bytes(read_file(path, max_pixels), max_pixels, path).pixels


def check_image_file(path: str, max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[int, int]:
    """(width, height) of an image file that training can use, or ImageError naming it and why."""
    pixels = read_image_file(path, max_pixels)
    return int(pixels.shape[1]), int(pixels.shape[0])
