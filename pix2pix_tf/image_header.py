"""Reading an image's header in TensorFlow: its format from the magic bytes, its size, and for
a GIF the pixels of all its frames, without decoding (the policy that uses it: `images`).

Plain TensorFlow (string and integer ops, `while_loop`s for the GIF blocks), so the same
code runs eagerly for files and inside a SavedModel signature. The GIF walk is bounded by
`GIF_MAX_BLOCKS` steps, so that no header costs more time than that.
"""

from __future__ import annotations

from typing import Union

import numpy as np
import tensorflow as tf

FORMATS = ("JPEG", "PNG", "GIF", "BMP", "WebP")
HEAD = 32  # Header bytes that hold the size of every format except JPEG and GIF.
# Blocks and sub-blocks the GIF walk visits at most: full 255-byte sub-blocks carry about 16 MB
# of image data, far more than a GIF of a few megapixels needs; a comment of one-byte sub-blocks
# would otherwise make the walk as long as the file.
GIF_MAX_BLOCKS = 2**16


# The integer fields at fixed places in the first `HEAD` bytes: (start, length, big-endian).
# All are read with one product of the bytes and a weight matrix: in tf.data every op costs
# per image, and one op per byte would cost more than the header is worth.
_FIELDS = (
    (0, 4, True), (4, 4, True),  # the magic bytes: 0-3, 4-7 (PNG's signature, GIF's version)
    (8, 4, True), (12, 4, True),  # RIFF: the form type ("WEBP"), the first chunk ("VP8 ", "VP8L", "VP8X")
    (16, 4, True), (20, 4, True),  # PNG: IHDR width, height
    (18, 4, False), (22, 4, False),  # BMP: BITMAPINFOHEADER width, height (signed)
    (26, 2, False), (28, 2, False),  # WebP VP8: 14 bits width, height (2 bits of scale above)
    (21, 4, False),  # WebP VP8L: 14 bits width - 1, 14 bits height - 1
    (24, 3, False), (27, 3, False),  # WebP VP8X: canvas width - 1, height - 1
    (14, 4, False),  # BMP: the size of the header holding the sizes (12: OS/2's, 16-bit sizes)
)
# `parse`'s frames for a file refused before its size is known: a GIF walk stopped by
# GIF_MAX_BLOCKS, a BMP with OS/2's 12-byte header (its 16-bit sizes would read as absurd ones),
# an animated WebP (TensorFlow's decode_image, asked for one frame, corrupts the process's heap
# on it; its frames are not counted either).
GIF_TOO_LONG, OS2_BMP, ANIMATED_WEBP = -1, -2, -3
# A BMP TensorFlow's decoder reads wrongly or not at all: it reads the bits per pixel and
# ignores compression, colour masks and the palette, so an 8-bit BMP comes out as its palette
# indices (grey) and a 32-bit one whose masks are not BGRA with its channels swapped.
UNREADABLE_BMP = -4
# A JPEG of more than JPEG_MAX_SCANS scans: libjpeg decodes every scan over the whole image,
# and a scan can be a few bytes, so a megabyte of repeated scans costs minutes. A progressive
# JPEG has about ten. Counted as start-of-scan markers (FF DA), which entropy-coded data never
# holds (it stuffs each FF byte with 00); a marker inside metadata only counts one more.
JPEG_TOO_MANY_SCANS = -5
JPEG_MAX_SCANS = 256
# A PNG with a side over PNG_MAX_SIDE: libpng's default limit, under which TensorFlow reads it,
# so its decoder fails on such a file as if it were corrupt.
PNG_TOO_WIDE = -6
PNG_MAX_SIDE = 1_000_000
_BMP_HEAD = 70  # Up to the colour masks of a BITMAPV4HEADER (bytes 54-65).
_BGRA_MASKS = (0x00FF0000, 0x0000FF00, 0x000000FF)  # Red, green, blue: the order TensorFlow reads.
_VP8X = 0x56503858  # "VP8X": the extended WebP header, whose flags byte (byte 20) marks an animation.
_ANIMATION_FLAG = 0x02


def _weights() -> np.ndarray:
    """[field, byte] -> the byte's place value in the field (exact in float64: at most 2**24)."""
    weights = np.zeros([len(_FIELDS), HEAD])
    for row, (start, length, big_endian) in enumerate(_FIELDS):
        for i in range(length):
            weights[row, start + i] = 256.0 ** (length - 1 - i if big_endian else i)
    return weights


_WEIGHTS = _weights()


def _padded(encoded: tf.Tensor, start: Union[int, tf.Tensor], size: int) -> tf.Tensor:
    """uint8 [size]: the bytes of `encoded` from `start` (at most its length), zeros past its end."""
    data = tf.strings.substr(tf.strings.join([tf.strings.substr(encoded, start, size), b"\0" * size]), 0, size)
    return tf.reshape(tf.io.decode_raw(data, tf.uint8), [size])


def _fields(encoded: tf.Tensor) -> list[tf.Tensor]:
    """The `_FIELDS` of the zero-padded head of `encoded`, as int64 scalars."""
    values = tf.cast(_padded(encoded, 0, HEAD), tf.float64)
    return tf.unstack(tf.cast(tf.linalg.matvec(tf.constant(_WEIGHTS), values), tf.int64))


def _format_index(magic: tf.Tensor, second: tf.Tensor, form: tf.Tensor) -> tf.Tensor:
    """int64: 1 + the index in FORMATS of the format the magic bytes name; 0 for anything else."""
    gif_version = second // 65536
    matches = tf.stack([
        tf.equal(magic // 256, 0xFFD8FF),  # JPEG: FF D8 FF
        tf.equal(magic, 0x89504E47) & tf.equal(second, 0x0D0A1A0A),  # PNG: 89 "PNG" 0D 0A 1A 0A
        tf.equal(magic, 0x47494638) & (tf.equal(gif_version, 0x3761) | tf.equal(gif_version, 0x3961)),  # GIF87a/89a
        tf.equal(magic // 65536, 0x424D),  # BMP: "BM"
        tf.equal(magic, 0x52494646) & tf.equal(form, 0x57454250),  # "RIFF" size "WEBP"
    ])
    return tf.reduce_max(tf.where(matches, tf.range(1, len(FORMATS) + 1, dtype=tf.int64), 0))


def _still_sizes(fields: list[tf.Tensor]) -> tf.Tensor:
    """[height, width] of each format whose size is at a fixed place (JPEG and GIF: zeros)."""
    _, _, _, chunk, png_w, png_h, bmp_w, bmp_h, vp8_w, vp8_h, vp8l, vp8x_w, vp8x_h, _ = fields
    bmp = [tf.abs(tf.where(v >= 2**31, v - 2**32, v)) for v in (bmp_h, bmp_w)]  # Negative height: top-down.
    webp = tf.where(tf.equal(chunk, 0x56503820), tf.stack([vp8_h % 16384, vp8_w % 16384]),  # "VP8 "
                    tf.where(tf.equal(chunk, 0x5650384C), tf.stack([vp8l // 16384 % 16384 + 1, vp8l % 16384 + 1]),
                             tf.where(tf.equal(chunk, 0x56503858), tf.stack([vp8x_h + 1, vp8x_w + 1]),  # "VP8X"
                                      tf.zeros([2], tf.int64))))
    zeros = tf.zeros([2], tf.int64)
    return tf.stack([zeros, zeros, tf.stack([png_h, png_w]), zeros, tf.stack(bmp), webp])


def _gif(encoded: tf.Tensor) -> tf.Tensor:
    """Walks the GIF's blocks: TensorFlow decodes every frame (slurps the file) and returns the
    largest frame's width and height, so that is the size and all frames count as pixels.
    [0, 0, 0, -1] when the walk needs more than GIF_MAX_BLOCKS steps."""
    length = tf.cast(tf.strings.length(encoded), tf.int64)
    data = tf.cast(tf.io.decode_raw(tf.strings.join([encoded, b"\0" * 16]), tf.uint8), tf.int64)

    def at(i: tf.Tensor) -> tf.Tensor:
        return tf.gather(data, tf.minimum(i, length))

    def table(packed: tf.Tensor) -> tf.Tensor:  # Size of a colour table flagged in a packed byte.
        return tf.where(packed >= 128, 3 * tf.bitwise.left_shift(tf.constant(2, tf.int64), packed % 8), 0)

    def sub_blocks(pos: tf.Tensor, steps: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        # The data sub-blocks of one block, up to its 0 terminator: the few ops of this inner
        # loop are most of the walk, one iteration per sub-block.
        pos, steps = tf.while_loop(lambda p, n: (at(p) > 0) & (p < length) & (n < GIF_MAX_BLOCKS),
                                   lambda p, n: (p + at(p) + 1, n + 1), (pos, steps))
        return pos + 1, steps

    def body(pos, steps, done, width, height, pixels, frames):
        # One block: an image descriptor or an extension with its sub-blocks; anything else ends.
        byte = at(pos)
        image, extension = tf.equal(byte, 0x2C), tf.equal(byte, 0x21)
        frame_w, frame_h = at(pos + 5) + 256 * at(pos + 6), at(pos + 7) + 256 * at(pos + 8)
        after, steps = sub_blocks(pos + tf.where(image, 11 + table(at(pos + 9)), 2), steps + 1)
        pos = tf.where(image | extension, after, pos)
        return (pos, steps, tf.logical_not(image | extension), tf.where(image, tf.maximum(width, frame_w), width),
                tf.where(image, tf.maximum(height, frame_h), height), pixels + tf.where(image, frame_w * frame_h, 0),
                frames + tf.cast(image, tf.int64))

    def more(pos, steps, done, *_):
        return tf.logical_not(done) & (pos < length)

    zero = tf.constant(0, tf.int64)
    start = 13 + table(at(tf.constant(10, tf.int64)))
    state = tf.while_loop(lambda *state: more(*state) & (state[1] < GIF_MAX_BLOCKS), body,
                          (start, zero, tf.constant(False), zero, zero, zero, zero))
    _, steps, _, width, height, pixels, frames = state
    info = tf.stack([height, width, tf.maximum(pixels, height * width), frames])
    return tf.where(more(*state) & (steps >= GIF_MAX_BLOCKS), tf.constant([0, 0, 0, GIF_TOO_LONG], tf.int64), info)


def _little_endian(data: tf.Tensor, start: int, length: int) -> tf.Tensor:
    return tf.reduce_sum(data[start:start + length] * tf.constant([256**i for i in range(length)], tf.int64))


def _bmp(encoded: tf.Tensor, still: tf.Tensor) -> tf.Tensor:
    """`still`, or [0, 0, 0, UNREADABLE_BMP] unless TensorFlow decodes the BMP to its pixels: 24
    or 32 bits without compression, 32 bits with BGRA colour masks, or 8 bits whose palette is the
    grey ramp (index i is grey i), which TensorFlow's palette-blind reading gets right."""
    length = tf.cast(tf.strings.length(encoded), tf.int64)

    def window(start: tf.Tensor, size: int) -> tf.Tensor:
        return tf.cast(_padded(encoded, tf.minimum(start, length), size), tf.int64)

    head = window(tf.constant(0, tf.int64), _BMP_HEAD)
    bits, compression, colours = _little_endian(head, 28, 2), _little_endian(head, 30, 4), _little_endian(head, 46, 4)
    masks = tf.stack([_little_endian(head, start, 4) for start in (54, 58, 62)])
    palette = tf.reshape(window(14 + _little_endian(head, 14, 4), 1024), [256, 4])
    ramp = tf.range(256, dtype=tf.int64)
    grey_entries = tf.reduce_all(tf.equal(palette[:, :3], ramp[:, None]), axis=1)
    used = tf.where(tf.equal(colours, 0), tf.constant(256, tf.int64), tf.minimum(colours, 256))
    grey = tf.reduce_all(grey_entries | (ramp >= used))
    plain = tf.equal(compression, 0)
    bgra = tf.equal(compression, 3) & tf.reduce_all(tf.equal(masks, _BGRA_MASKS))  # 3: BI_BITFIELDS.
    readable = ((tf.equal(bits, 24) & plain) | (tf.equal(bits, 8) & plain & grey)
                | (tf.equal(bits, 32) & (plain | bgra)))
    return tf.where(readable | (still[3] < 0), still, tf.constant([0, 0, 0, UNREADABLE_BMP], tf.int64))


@tf.function(input_signature=[tf.TensorSpec([], tf.string)], autograph=False)
def parse(encoded: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """(int64 1 + the index in FORMATS, 0 for none; int64 [height, width, pixels, frames], frames
    GIF_TOO_LONG, OS2_BMP, ANIMATED_WEBP, UNREADABLE_BMP, JPEG_TOO_MANY_SCANS or PNG_TOO_WIDE for a
    file refused as such). A JPEG whose header is damaged raises."""
    # A tf.function: eager callers (files) run the compiled branches and GIF loop, graph callers
    # (tf.data, the SavedModel) call it as a function of their graph.
    fields = _fields(encoded)
    index = _format_index(*fields[:3])
    height, width = tf.unstack(tf.gather(_still_sizes(fields), index))
    still = tf.stack([height, width, height * width, tf.constant(1, tf.int64)])
    os2_bmp = tf.equal(index, 1 + FORMATS.index("BMP")) & tf.equal(fields[-1], 12)
    still = tf.where(os2_bmp, tf.constant([0, 0, 0, OS2_BMP], tf.int64), still)
    flags = fields[5] // 2**24  # Byte 20, the top byte of the big-endian field at 20.
    animated = (tf.equal(index, 1 + FORMATS.index("WebP")) & tf.equal(fields[3], _VP8X)
                & tf.equal(tf.bitwise.bitwise_and(flags, _ANIMATION_FLAG), _ANIMATION_FLAG))
    still = tf.where(animated, tf.constant([0, 0, 0, ANIMATED_WEBP], tf.int64), still)
    too_wide = tf.equal(index, 1 + FORMATS.index("PNG")) & (tf.maximum(height, width) > PNG_MAX_SIDE)
    still = tf.where(too_wide, tf.constant([0, 0, 0, PNG_TOO_WIDE], tf.int64), still)

    def jpeg() -> tf.Tensor:
        shape = tf.cast(tf.image.extract_jpeg_shape(encoded), tf.int64)
        scans = tf.size(tf.strings.split(encoded, sep=b"\xff\xda"), out_type=tf.int64) - 1
        return tf.where(scans > JPEG_MAX_SCANS, tf.constant([0, 0, 0, JPEG_TOO_MANY_SCANS], tf.int64),
                        tf.stack([shape[0], shape[1], shape[0] * shape[1], tf.constant(1, tf.int64)]))

    branch = tf.gather(tf.constant([0, 1, 0, 2, 3, 0]), index)  # JPEG, GIF and BMP read more than the head.
    return index, tf.switch_case(branch, [lambda: still, jpeg, lambda: _gif(encoded), lambda: _bmp(encoded, still)])


@tf.function(input_signature=[tf.TensorSpec([], tf.string)], autograph=False)
def format_of(head: tf.Tensor) -> tf.Tensor:
    """int64: 1 + the index in FORMATS of the format the first bytes name; 0 for none."""
    return _format_index(*_fields(head)[:3])
