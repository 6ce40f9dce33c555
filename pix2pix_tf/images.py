"""The image policy: which bytes are images, how large they may be, and how they are decoded.

Every path that reads an image goes through this module: the folder scan, the archive
reader of the authors' datasets, the training pipeline, translate/evaluate and the
SavedModel's bytes signatures. So a file accepted in one place is accepted everywhere, and
decodes to the same pixels.

- Formats: JPEG, PNG, GIF (the first frame), BMP (Windows headers; OS/2's 12-byte one is refused
  by name) and WebP, the ones TensorFlow decodes in graph. The format is read from the content
  (the magic bytes), never from a file name: a TIFF named `.jpg` is refused as what it is, a
  WebP named `.png` is read as WebP.
- A pixel cap (`max_pixels`, default `DEFAULT_MAX_PIXELS`) is checked from the header,
  BEFORE decoding: a small file can declare a huge image (a 12000x12000 PNG of one colour
  is about 2 MB), and decoding it is what exhausts memory. A GIF counts the pixels of all
  its frames, because TensorFlow's GIF decoder holds every frame whatever it returns.
- Reads are bounded before they cost memory or time: a file is opened only if it is a regular
  file (a FIFO would block, a device never ends), its first bytes must name a supported
  format, and it is read only up to `max_file_bytes(max_pixels)`, the most an image within
  the cap can need, uncompressed, plus its metadata (`image_files`, which reads files with
  this module's checks); the GIF block walk stops after `GIF_MAX_BLOCKS` blocks and
  sub-blocks. A request of several images is capped as a whole (`limit_request`), so that
  many images each under the cap cannot add up past it.
- EXIF orientation is ignored, as TensorFlow's decoders ignore it: the stored pixels are the
  image, in training and at inference alike (a photo a camera tagged "rotate 90" is
  translated as stored, not as a viewer shows it).
- Decoded images are uint8 with their own channels; `to_channels` converts to 1 or 3 (grey
  is repeated, alpha dropped), `to_signed` scales to [-1, 1].

The header parsing (`image_header`) is plain TensorFlow, so the same code runs eagerly for
files and inside a SavedModel signature.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Optional, Union

import numpy as np
import tensorflow as tf

from pix2pix_tf import image_header
from pix2pix_tf.config import DEFAULT_MAX_PIXELS  # The policy's cap, stated where TensorFlow-free code reads it.
from pix2pix_tf.errors import ConfigError, Pix2pixError, one_line, op_message
from pix2pix_tf.image_header import FORMATS, GIF_MAX_BLOCKS, GIF_TOO_LONG, OS2_BMP, format_of, parse

FORMATS_TEXT = "JPEG, PNG, GIF, BMP or WebP"

# Why an image is refused (the reason a scan counts it under; the message says more).
UNREADABLE = "not a readable image"
TOO_LARGE = "over the pixel limit (--max_pixels)"
NOT_A_FILE = "not a regular file"
_OK, _UNREADABLE, _TOO_LARGE = 0, 1, 2
_REASONS = {_UNREADABLE: UNREADABLE, _TOO_LARGE: TOO_LARGE}
Name = Union[None, str, tf.Tensor]


class ImageError(Pix2pixError, ValueError):
    """A file or request that is not an image this package reads; names the file when known."""

    def __init__(self, path: Optional[str], problem: str, reason: str = UNREADABLE) -> None:
        super().__init__(f"{one_line(path)}: {problem}" if path else problem)
        self.path, self.problem, self.reason = path, problem, reason


def header_info(encoded: tf.Tensor) -> tf.Tensor:
    """int64 [height, width, pixels, frames] read from the header (GIF: its block list) without
    decoding: the size the decoder will return, and the pixels it will hold. Zeros for bytes of
    no supported format ([0, 0, 0, one of image_header's refusal codes] for a file refused before its
    size); a JPEG whose header is damaged raises the decoder's error."""
    return parse(encoded)[1]


def header_size(encoded: tf.Tensor) -> tf.Tensor:
    """int64 [height, width] of the decoded image, from the header."""
    return header_info(encoded)[:2]


def pixel_amount(pixels: Union[int, tf.Tensor], max_pixels: int) -> Union[str, tf.Tensor]:
    """Pixels in the unit of the limit's message: megapixels, or pixels for a small limit."""
    if isinstance(pixels, int):
        return f"{pixels} pixels" if max_pixels < 100_000 else f"{pixels / 1e6:.1f} megapixels"
    if max_pixels < 100_000:
        return tf.strings.join([tf.strings.as_string(pixels), " pixels"])
    return tf.strings.join([tf.strings.as_string(tf.cast(pixels, tf.float64) / 1e6, precision=1), " megapixels"])


def _kind(encoded: tf.Tensor, index: tf.Tensor, info: tf.Tensor, max_pixels: int) -> tf.Tensor:
    unreadable = tf.equal(tf.strings.length(encoded), 0) | tf.equal(index, 0) | (info[3] < 0)
    return tf.where(unreadable, _UNREADABLE, tf.where(info[2] > max_pixels, _TOO_LARGE, _OK))


def _message(encoded: tf.Tensor, info: tf.Tensor, kind: tf.Tensor, max_pixels: int) -> tf.Tensor:
    """Why `encoded` is refused, with its size and the limit ("" when it is not)."""
    height, width, pixels, frames = tf.unstack(info)
    hexes = tf.constant([f"{i:02x}" for i in range(256)])
    first_bytes = tf.io.decode_raw(tf.strings.substr(encoded, 0, 8), tf.uint8)
    first = tf.strings.reduce_join(tf.gather(hexes, tf.cast(first_bytes, tf.int32)), separator=" ")
    size = tf.strings.join([tf.strings.as_string(width), "x", tf.strings.as_string(height)])
    size = tf.where(frames > 1, tf.strings.join([size, ", ", tf.strings.as_string(frames), " frames, "]),
                    tf.strings.join([size, " ("]))
    amount = tf.strings.join([size, pixel_amount(pixels, max_pixels), tf.where(frames > 1, " in all", ")")])
    limit = pixel_amount(max_pixels, max_pixels)
    too_large = tf.strings.join([amount, f" is over the limit of {limit} (--max_pixels)"])
    unreadable = tf.where(tf.equal(tf.strings.length(encoded), 0), "empty (0 bytes)",
                          tf.strings.join([f"not {FORMATS_TEXT} data (its first bytes: ", first, ")"]))
    unreadable = tf.where(tf.equal(frames, GIF_TOO_LONG),
                          f"a GIF of more than {GIF_MAX_BLOCKS} blocks and sub-blocks, which is not read", unreadable)
    unreadable = tf.where(tf.equal(frames, OS2_BMP), "a BMP with an OS/2 header (12 bytes), which TensorFlow cannot "
                          "decode (save it as PNG or as a Windows BMP)", unreadable)
    unreadable = tf.where(tf.equal(frames, image_header.UNREADABLE_BMP), "a BMP that TensorFlow would decode wrongly "
                          "or not at all (it reads 24- and 32-bit BMPs without compression and grey 8-bit ones, not "
                          "palettes of colours, other depths, compression or colour masks): save it as PNG", unreadable)
    unreadable = tf.where(tf.equal(frames, image_header.JPEG_TOO_MANY_SCANS), f"a JPEG of more than "
                          f"{image_header.JPEG_MAX_SCANS} scans, which is not read (a progressive JPEG has about 10; "
                          "the decoder passes over the whole image once per scan)", unreadable)
    unreadable = tf.where(tf.equal(frames, image_header.PNG_TOO_WIDE), f"a PNG with a side over "
                          f"{image_header.PNG_MAX_SIDE:,} pixels, which TensorFlow's PNG decoder does not read",
                          unreadable)
    unreadable = tf.where(tf.equal(frames, image_header.ANIMATED_WEBP), "an animated WebP, which is not read (save "
                          "the frame to translate as PNG or as a still WebP)", unreadable)
    return tf.where(tf.equal(kind, _UNREADABLE), unreadable, tf.where(tf.equal(kind, _TOO_LARGE), too_large, ""))


def checked(encoded: tf.Tensor, max_pixels: int, name: Name = None) -> tf.Tensor:
    """`encoded`, asserted (in graph) to be a supported image within the cap, so that the
    decoder never starts on anything else. `name` (a file, "image 2 of the batch") prefixes
    the assertion's message, which is only built for a refusal."""
    index, info = parse(encoded)
    kind = _kind(encoded, index, info, max_pixels)

    def refuse() -> tf.Tensor:
        message = _message(encoded, info, kind, max_pixels)
        if name is not None:
            message = tf.strings.join([name, ": ", message])
        with tf.control_dependencies([tf.debugging.Assert(tf.constant(False), [message])]):
            return tf.identity(encoded)

    return tf.cond(tf.equal(kind, _OK), lambda: tf.identity(encoded), refuse)


# ----------------------------------------------------------------------------- decoding


def decode_uint8(encoded: tf.Tensor, max_pixels: int, name: Name = None) -> tf.Tensor:
    """The one decoder: uint8 HxWxC with the image's own channels (1-4), after the checks."""
    return _decode(checked(encoded, max_pixels, name))


def _decode(encoded: tf.Tensor) -> tf.Tensor:
    # Only for bytes already `checked`: the decoder itself never sees anything else.
    return tf.io.decode_image(encoded, channels=0, dtype=tf.uint8, expand_animations=False)


def to_channels(image: tf.Tensor, channels: int) -> tf.Tensor:
    """A decoded HxWxC uint8 image (C = 1, 2, 3 or 4) with `channels` (1 or 3) channels.

    Alpha is dropped (not composited); grey is repeated to RGB; RGB becomes grey with the
    ITU-R 601 weights of `tf.image.rgb_to_grayscale`.
    """
    have = tf.shape(image)[-1]
    colour = tf.cond(have >= 3, lambda: image[..., :3], lambda: tf.image.grayscale_to_rgb(image[..., :1]))
    if channels == 3:
        converted = colour
    elif channels == 1:
        converted = tf.cond(have >= 3, lambda: tf.image.rgb_to_grayscale(colour), lambda: image[..., :1])
    else:
        raise ConfigError(f"Images can be read with 1 or 3 channels, not {channels}.")
    if image.shape.rank is None:
        return converted
    return tf.ensure_shape(converted, image.shape[:-1].concatenate([channels]))  # Static channels for the graph.


def to_signed(image: tf.Tensor) -> tf.Tensor:
    """uint8 pixels -> float32 in [-1, 1]."""
    return tf.cast(image, tf.float32) / 127.5 - 1.0


def decode(encoded: tf.Tensor, channels: int, max_pixels: int, name: Name = None) -> tf.Tensor:
    """Encoded bytes -> float32 HxWx`channels` in [-1, 1]: what training and serving see."""
    return to_signed(to_channels(decode_uint8(encoded, max_pixels, name), channels))


def resize(image: tf.Tensor, size) -> tf.Tensor:
    """Bicubic with antialiasing (the reference resizes with PIL's bicubic), clipped to [-1, 1].

    `size` is an int (a square) or [height, width].
    """
    size = [size, size] if isinstance(size, int) else size
    resized = tf.image.resize(image, size, method="bicubic", antialias=True)
    return tf.clip_by_value(resized, -1.0, 1.0)


def preprocess(image: tf.Tensor, channels: int, size: int) -> tf.Tensor:
    """A decoded HxWxC uint8 image -> float32 [size, size, channels] in [-1, 1], as in serving."""
    image = resize(to_signed(to_channels(image, channels)), size)
    return tf.ensure_shape(image, [size, size, channels])


def limit_request(values: tf.Tensor, pixels: tf.Tensor, max_request_pixels: int) -> tf.Tensor:
    """`values`, asserted in graph to come from a request whose images cost at most
    `max_request_pixels` pixels together (`pixels`: [N], what each one costs), so that many
    images each under the per-image cap cannot add up to more memory than one image may take."""
    total = tf.reduce_sum(tf.cast(pixels, tf.int64))
    message = tf.strings.join([
        "the request's ", tf.strings.as_string(tf.size(pixels)), " image(s) hold ", tf.strings.as_string(total),
        f" pixels in all, over the limit of {max_request_pixels} pixels per request (max_request_pixels): send "
        "fewer or smaller images per request"])
    with tf.control_dependencies([tf.debugging.Assert(total <= max_request_pixels, [message])]):
        return tf.identity(values)


# The steps of GIF block walks (image_header.GIF_MAX_BLOCKS each at most) one request may cost.
GIF_REQUEST_BLOCKS = 4 * GIF_MAX_BLOCKS


def limit_gif_walks(encoded: tf.Tensor) -> tf.Tensor:
    """`encoded` (a request's [N] images), asserted in graph to hold GIFs whose block walks take at
    most GIF_REQUEST_BLOCKS steps together, each counted at the most its bytes allow (half of them:
    a sub-block takes two bytes at least), before any is walked: each walk is bounded, but a
    request of a thousand small GIFs would cost a thousand walks."""
    gif = tf.map_fn(lambda one: tf.equal(format_of(one), 1 + FORMATS.index("GIF")), encoded,
                    fn_output_signature=tf.bool)
    steps = tf.where(gif, tf.minimum(tf.cast(tf.strings.length(encoded), tf.int64) // 2, GIF_MAX_BLOCKS), 0)
    total = tf.reduce_sum(steps)
    message = tf.strings.join([
        "the request's ", tf.strings.as_string(tf.math.count_nonzero(gif)), " GIF image(s) may take ",
        tf.strings.as_string(total), f" steps to walk their blocks in all, over the limit of {GIF_REQUEST_BLOCKS} per "
        f"request (each counts half its bytes, at most {GIF_MAX_BLOCKS}): send fewer GIFs per request"])
    with tf.control_dependencies([tf.debugging.Assert(total <= GIF_REQUEST_BLOCKS, [message])]):
        return tf.identity(encoded)


def _request_batch(encoded: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """A Serving request's [N] encoded images, checked to be a non-empty 1-D batch, and their places."""
    encoded = tf.convert_to_tensor(encoded, tf.string)
    if encoded.shape.rank is not None and encoded.shape.rank != 1:
        raise ImageError(None, f"images must be a 1-D batch of encoded strings, got shape {encoded.shape}.")
    nonempty = tf.debugging.assert_positive(tf.size(encoded), message="images: the batch is empty")
    with tf.control_dependencies([nonempty]):
        encoded = limit_gif_walks(encoded)
        return encoded, tf.range(tf.size(encoded))


def _batch_name(place: tf.Tensor) -> tf.Tensor:
    """How a refusal names an image of a request: "image 2 of the batch"."""
    return tf.strings.join(["image ", tf.strings.as_string(place), " of the batch"])


def checked_request(encoded: tf.Tensor, max_pixels: int, max_request_pixels: Optional[int],
                    cost: Callable[[tf.Tensor], tf.Tensor]) -> tuple[tf.Tensor, tf.Tensor]:
    """(places, int64 [N, 4] `header_info`) of a request's images, every image checked by the
    policy (a refusal names its place) and, with `max_request_pixels`, the request as a whole
    (each image costing `cost(info)` pixels), before any image is decoded: decode after
    `places` (`decode_request`)."""
    encoded, places = _request_batch(encoded)
    info = tf.map_fn(lambda a: header_info(checked(a[0], max_pixels, _batch_name(a[1]))), (encoded, places),
                     fn_output_signature=tf.TensorSpec([4], tf.int64))
    if max_request_pixels is None:
        with tf.control_dependencies([info]):
            return tf.identity(places), info
    return limit_request(places, cost(info), max_request_pixels), info


def decode_request(encoded: tf.Tensor, places: tf.Tensor, channels: int,
                   prepare: Callable[[tf.Tensor], tf.Tensor], spec: tf.TensorSpec) -> tf.Tensor:
    """The images of a request `checked_request` passed (`places`), each decoded once, to
    `channels`, then `prepare`d (a resize, or nothing) into `spec`."""
    return tf.map_fn(lambda a: prepare(to_signed(to_channels(_decode(a[0]), channels))),
                     (tf.convert_to_tensor(encoded, tf.string), places), fn_output_signature=spec)


def decode_images(encoded: tf.Tensor, channels: int, size: int, max_pixels: int = DEFAULT_MAX_PIXELS,
                  max_request_pixels: Optional[int] = None) -> tf.Tensor:
    """A batch [N] of encoded images (a Serving request) -> float32 [N, size, size, channels].

    Each image is checked before any is decoded; a refusal names its place in the batch. With
    `max_request_pixels`, the request is refused before decoding when its images cost more
    together, each counted at the larger of its own pixels and the `size` x `size` it becomes.
    """
    places, _ = checked_request(encoded, max_pixels, max_request_pixels,
                                lambda info: tf.maximum(info[:, 2], size * size))

    def prepare(image: tf.Tensor) -> tf.Tensor:
        return tf.ensure_shape(resize(image, size), [size, size, channels])

    return decode_request(encoded, places, channels, prepare, tf.TensorSpec([size, size, channels], tf.float32))


def to_uint8(images: tf.Tensor) -> tf.Tensor:
    """[-1, 1] floats -> uint8 pixels, rounded (the inverse of the input scaling)."""
    return tf.cast(tf.round(tf.clip_by_value((images + 1.0) * 127.5, 0.0, 255.0)), tf.uint8)


def encode_pngs(images: tf.Tensor) -> tf.Tensor:
    """float32 [N, H, W, C] in [-1, 1] -> [N] PNG strings."""
    return tf.map_fn(tf.io.encode_png, to_uint8(images), fn_output_signature=tf.TensorSpec([], tf.string))


# ----------------------------------------------------------------------------- bytes (eager)


@dataclasses.dataclass(frozen=True)
class Header:
    """What an image's header says, checked against the policy."""

    format: str
    width: int
    height: int
    components: int  # JPEG: channels as stored (CMYK: 4, though it decodes to 3); others: 0


@dataclasses.dataclass(frozen=True)
class Decoded:
    """A fully decoded image."""

    format: str
    pixels: np.ndarray  # uint8 HxWxC, the image's own channels
    components: int  # channels as stored

    @property
    def width(self) -> int:
        return int(self.pixels.shape[1])

    @property
    def height(self) -> int:
        return int(self.pixels.shape[0])


@tf.function(autograph=False)
def _inspect(encoded: tf.Tensor, max_pixels: int) -> tuple[tf.Tensor, ...]:
    # Compiled (once per limit): one call per file instead of one per op.
    index, info = parse(encoded)
    kind = _kind(encoded, index, info, max_pixels)
    components = tf.cond(tf.equal(index, 1) & tf.equal(kind, _OK),
                         lambda: tf.cast(tf.image.extract_jpeg_shape(encoded)[2], tf.int64),
                         lambda: tf.constant(0, tf.int64))
    return index, kind, _message(encoded, info, kind, max_pixels), info[:2], components


def read_header(data: bytes, max_pixels: int, path: Optional[str] = None) -> Header:
    """The header of `data`, or ImageError naming `path`: bytes of no supported format, empty,
    or over the cap. Nothing is decoded."""
    try:
        index, kind, message, size, components = (
            t.numpy() for t in _inspect(tf.constant(data, tf.string), int(max_pixels)))
    except tf.errors.OpError as e:  # A JPEG whose header cannot be parsed.
        raise ImageError(path, f"not a readable JPEG ({op_message(e)})") from None
    if kind != _OK:
        raise ImageError(path, message.decode(), _REASONS[int(kind)])
    return Header(FORMATS[int(index) - 1], int(size[1]), int(size[0]), int(components))


def decode_bytes(data: bytes, max_pixels: int, path: Optional[str] = None,
                 header: Optional[Header] = None) -> Decoded:
    """`read_header` (unless its `header` is given), then a full decode (what finds truncated
    files) with the decoder training uses. Raises ImageError naming `path`, with the reason."""
    header = header or read_header(data, max_pixels, path)
    try:
        pixels = tf.io.decode_image(data, channels=0, dtype=tf.uint8, expand_animations=False).numpy()
    except tf.errors.OpError as e:
        raise ImageError(path, f"{header.format} data that cannot be decoded, truncated or corrupt "
                         f"({op_message(e)})") from None
    return Decoded(header.format, pixels, header.components or pixels.shape[-1])
