"""One image policy (pix2pix_tf.images) on every path: the folder scan, training, translate and
the SavedModel. Formats are read from the content, sizes from the header, and the pixel cap is
enforced before anything is decoded. Item 4: images that cannot fit the preprocessing are
refused before training, naming a file."""

from __future__ import annotations

import dataclasses
import io
import json
import logging
import os
import struct
import sys
import zlib

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from pix2pix_tf import image_files, images
from pix2pix_tf.config import DataConfig
from pix2pix_tf.data import pipeline
from pix2pix_tf.errors import ConfigError, DatasetError
from pix2pix_tf.training.loop import train

import forked
from conftest import tiny_config
from export_helpers import trained_run
from programs import run_program

RNG = np.random.default_rng(12)
BIG_MESSAGE = "12000x12000 (144.0 megapixels) is over the limit of 16.8 megapixels (--max_pixels)"


def encoded(pixels: np.ndarray, fmt: str, mode: str | None = None, **options) -> bytes:
    """`pixels` (uint8 HxWx3) written by PIL in `fmt`, converted to `mode` first."""
    image = Image.fromarray(pixels)
    image = image.convert(mode) if mode else image
    if mode == "RGBA":  # A varying alpha: encoders store an opaque image as RGB.
        image.putalpha(Image.fromarray(RNG.integers(0, 256, pixels.shape[:2], dtype=np.uint8)))
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def noise(height: int, width: int) -> np.ndarray:
    return RNG.integers(0, 256, (height, width, 3), dtype=np.uint8)


def write(path, content: bytes) -> str:
    os.makedirs(os.path.dirname(str(path)), exist_ok=True)
    with open(path, "wb") as f:
        f.write(content)
    return str(path)


def png_header(width: int, height: int) -> bytes:
    """A PNG's signature and IHDR chunk, and no pixel data: only the header is there to read."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))


# Every format and the variants that store their size differently (WebP: VP8, VP8L, VP8X).
VARIANTS = {
    "JPEG RGB": ("JPEG", None, {}), "JPEG grey": ("JPEG", "L", {}), "JPEG CMYK": ("JPEG", "CMYK", {}),
    "PNG RGB": ("PNG", None, {}), "PNG grey+alpha": ("PNG", "LA", {}), "PNG palette": ("PNG", "P", {}),
    "PNG 16-bit": ("PNG", "I;16", {}), "GIF": ("GIF", None, {}), "BMP RGB": ("BMP", None, {}),
    "BMP RGBA": ("BMP", "RGBA", {}), "BMP grey": ("BMP", "L", {}), "WebP lossy": ("WEBP", None, {}),
    "WebP lossless": ("WEBP", None, {"lossless": True}), "WebP alpha": ("WEBP", "RGBA", {}),
}


# In graph, as in tf.data and the SavedModel.
HEADER_SIZE_IN_GRAPH = tf.function(images.header_size)
DECODE_IN_GRAPH = tf.function(lambda data: images.decode(data, 3, images.DEFAULT_MAX_PIXELS))
DECODE_UINT8_IN_GRAPH = tf.function(lambda data: images.decode_uint8(data, images.DEFAULT_MAX_PIXELS))
NAMED_DECODE_IN_GRAPH = tf.function(lambda data: images.decode(data, 3, images.DEFAULT_MAX_PIXELS, name="big.png"))


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_header_size_is_the_decoded_size_for_every_format(variant):
    fmt, mode, options = VARIANTS[variant]
    for height, width in ((7, 13), (13, 7), (1, 1), (17, 301)):
        data = encoded(noise(height, width), fmt, mode, **options)
        decoded = images.decode_bytes(data, images.DEFAULT_MAX_PIXELS)
        assert decoded.format == fmt.replace("WEBP", "WebP")
        assert (decoded.height, decoded.width) == (height, width)
        assert tuple(images.header_size(data).numpy()) == (height, width), (variant, width, height)
        assert tuple(HEADER_SIZE_IN_GRAPH(tf.constant(data)).numpy()) == (height, width)
        assert DECODE_IN_GRAPH(tf.constant(data)).shape == (height, width, 3)


def bmp_with_masks(pixels: np.ndarray, masks: tuple[int, int, int]) -> bytes:
    """A 32-bit BI_BITFIELDS BMP (BITMAPV4HEADER) of RGBA `pixels`, stored with `masks` (red,
    green, blue): (0xFF, 0xFF00, 0xFF0000) stores the bytes as R, G, B, A."""
    height, width, _ = pixels.shape
    shift = {mask: i for i, mask in enumerate((0xFF, 0xFF00, 0xFF0000))}
    stored = np.zeros((height, width, 4), np.uint8)
    for channel, mask in enumerate(masks):
        stored[..., shift[mask]] = pixels[..., channel]
    stored[..., 3] = 255
    info = struct.pack("<IiiHHIIiiII", 108, width, -height, 1, 32, 3, stored.size, 2835, 2835, 0, 0)
    info += struct.pack("<IIII", *masks, 0xFF000000) + bytes(108 - 56)
    offset = 14 + len(info)
    return b"BM" + struct.pack("<IHHI", offset + stored.size, 0, 0, offset) + info + stored.tobytes()


# Every BMP kind PIL writes, and masks in an order TensorFlow ignores: read to their pixels, or
# refused by name (TensorFlow decoded an 8-bit colour palette as grey indices and RGBA masks with
# red and blue swapped, silently; 1-bit ones failed as "corrupt").
BMP_KINDS = {
    "24-bit": (lambda p: encoded(p, "BMP"), True), "32-bit": (lambda p: encoded(p, "BMP", "RGBA"), True),
    "8-bit grey": (lambda p: encoded(p, "BMP", "L"), True),
    "32-bit BGRA masks": (lambda p: bmp_with_masks(p, (0xFF0000, 0xFF00, 0xFF)), True),
    "8-bit colour palette": (lambda p: encoded(p, "BMP", "P"), False),
    "1-bit": (lambda p: encoded(p, "BMP", "1"), False),
    "32-bit RGBA masks": (lambda p: bmp_with_masks(p, (0xFF, 0xFF00, 0xFF0000)), False),
}


@pytest.mark.parametrize("kind", sorted(BMP_KINDS))
def test_a_bmp_is_read_to_its_pixels_or_refused_by_name(kind):
    write_bmp, readable = BMP_KINDS[kind]
    data = write_bmp(noise(9, 14))
    expected = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    if readable:
        for pixels in (images.decode_bytes(data, 1000).pixels, DECODE_UINT8_IN_GRAPH(tf.constant(data)).numpy()):
            np.testing.assert_array_equal(images.to_channels(tf.constant(pixels), 3).numpy(), expected)
        return
    with pytest.raises(images.ImageError, match=r"^in.bmp: a BMP that TensorFlow would decode wrongly or not at all"):
        images.decode_bytes(data, 1000, "in.bmp")
    with pytest.raises(tf.errors.InvalidArgumentError, match="a BMP that TensorFlow would decode wrongly"):
        DECODE_IN_GRAPH(tf.constant(data))


@pytest.mark.parametrize("width, height", [(1_000_001, 1), (1, 1_000_001)])
def test_a_png_of_a_side_libpng_refuses_is_refused_by_name(width, height):
    """libpng reads no PNG with a side over a million pixels: TensorFlow's decoder then failed as
    if the file were corrupt; within --max_pixels, it is refused from its header by name."""
    rows = b"".join(b"\0" + bytes(width * 3) for _ in range(height))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    data = b"\x89PNG\r\n\x1a\n" + b"".join(struct.pack(">I", len(body)) + kind + body
                                           + struct.pack(">I", zlib.crc32(kind + body))
                                           for kind, body in ((b"IHDR", ihdr), (b"IDAT", zlib.compress(rows)),
                                                              (b"IEND", b"")))
    with pytest.raises(images.ImageError, match=r"^wide.png: a PNG with a side over 1,000,000 pixels, which "):
        images.decode_bytes(data, 2**24, "wide.png")


def test_an_animated_gif_counts_the_pixels_of_every_frame():
    """TensorFlow's GIF decoder holds every frame whatever it returns: that is what the cap bounds."""
    frames = [Image.fromarray(np.full((10, 20, 3), 60 * i, np.uint8)) for i in range(3)]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:])
    data = buffer.getvalue()
    assert tuple(images.header_info(data).numpy()) == (10, 20, 3 * 200, 3)  # Height, width, pixels, frames.
    assert images.decode_bytes(data, 3 * 200).pixels.shape == (10, 20, 3)
    with pytest.raises(images.ImageError, match=r"20x10, 3 frames, 600 pixels in all is over the limit of 599 pixels"):
        images.decode_bytes(data, 3 * 200 - 1)


def test_the_format_is_read_from_the_content_not_the_name(tmp_path):
    tiff = write(tmp_path / "photo.jpg", encoded(noise(8, 16), "TIFF"))
    with pytest.raises(images.ImageError, match="photo.jpg: not JPEG, PNG, GIF, BMP or WebP data") as error:
        image_files.read_image_file(tiff)
    assert error.value.reason == images.UNREADABLE
    pixels = noise(8, 16)
    webp = write(tmp_path / "photo.png", encoded(pixels, "WEBP", lossless=True))
    np.testing.assert_array_equal(image_files.read_image_file(webp), pixels)
    for bad, message in ((b"", "empty"), (b"hello, world", "first bytes: 68 65 6c 6c")):
        with pytest.raises(images.ImageError, match=message):
            image_files.read_image_file(write(tmp_path / "bad.png", bad))


def header_bombs() -> dict[str, bytes]:
    """Small files whose headers declare 12000x12000 pixels: valid images with the size patched."""
    small = {fmt: bytearray(encoded(noise(8, 8), fmt, mode, **options))
             for fmt, mode, options in (("JPEG", None, {}), ("GIF", None, {}), ("BMP", None, {}),
                                        ("WEBP", "RGBA", {}))}
    sof = small["JPEG"].index(b"\xff\xc0")
    small["JPEG"][sof + 5:sof + 9] = struct.pack(">HH", 12000, 12000)
    descriptor = small["GIF"].index(b"\x2c\x00\x00\x00\x00")  # The image at (0, 0).
    small["GIF"][6:10] = small["GIF"][descriptor + 5:descriptor + 9] = struct.pack("<HH", 12000, 12000)
    small["BMP"][18:26] = struct.pack("<ii", 12000, 12000)
    assert small["WEBP"][12:16] == b"VP8X"
    small["WEBP"][24:30] = (11999).to_bytes(3, "little") * 2
    return {"PNG": png_header(12000, 12000), **{fmt: bytes(content) for fmt, content in small.items()}}


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "GIF", "BMP", "WEBP"])
def test_the_pixel_cap_is_read_from_the_header_before_decoding(tmp_path, fmt):
    """The files hold no 144 megapixels of data: a decoder would fail on them, so the cap's
    message (not a decode error) shows that the refusal came from the header."""
    path = write(tmp_path / "big.png", header_bombs()[fmt])
    with pytest.raises(images.ImageError) as error:
        image_files.read_image_file(path)
    assert str(error.value) == f"{path}: {BIG_MESSAGE}" and error.value.reason == images.TOO_LARGE
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"big\.png: 12000x12000 \(144\.0 megapixels\)"):
        NAMED_DECODE_IN_GRAPH(tf.constant(header_bombs()[fmt]))


def test_the_cap_is_a_validated_config_field_with_the_policy_default():
    assert DataConfig().max_pixels == images.DEFAULT_MAX_PIXELS == 4096 * 4096
    with pytest.raises(ConfigError, match="--max_pixels must be at least 1"):
        DataConfig(max_pixels=0).validate()
    pixels = noise(64, 64)
    assert images.decode_bytes(encoded(pixels, "PNG"), 64 * 64).width == 64  # The cap itself is allowed.
    with pytest.raises(images.ImageError, match="64x64 .4096 pixels. is over the limit of 4095 pixels"):
        images.decode_bytes(encoded(pixels, "PNG"), 64 * 64 - 1)


# ----------------------------------------------------------------------------- folders, training


def pair(height: int = 16, seed: int = 0) -> np.ndarray:
    """An A | B image, 2*height wide."""
    return np.random.default_rng(seed).integers(0, 256, (height, 2 * height, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def mixed_folder(tmp_path_factory) -> str:
    """train/: two PNG pairs, a WebP pair named .png, a TIFF pair named .jpg, a header-only
    12000x12000 PNG and a text file; test/: one PNG pair."""
    root = tmp_path_factory.mktemp("mixed")
    write(root / "train" / "0.png", encoded(pair(seed=0), "PNG"))
    write(root / "train" / "1.png", encoded(pair(seed=1), "PNG"))
    write(root / "train" / "webp.png", encoded(pair(seed=2), "WEBP", lossless=True))
    write(root / "train" / "tiff.jpg", encoded(pair(seed=3), "TIFF"))
    write(root / "train" / "big.png", png_header(12000, 12000))
    (root / "train" / "notes.txt").write_text("not an image")
    write(root / "test" / "0.png", encoded(pair(seed=4), "PNG"))
    return str(root)


def test_the_scan_keeps_webp_and_skips_tiff_and_big_files_by_content(mixed_folder, caplog):
    with caplog.at_level(logging.WARNING):
        dataset = pipeline.load_paired_dataset(DataConfig(dataset=f"folder:{mixed_folder}"))
    records = [r[0].numpy().decode() for r in dataset.records("train")]
    assert [os.path.basename(r) for r in records] == ["0.png", "1.png", "webp.png"]
    a, b = dataset.input_target((tf.constant(records[2]),), 3, 3)  # The WebP, through the training decoder.
    np.testing.assert_allclose(a.numpy(), pair(seed=2)[:, :16] / 127.5 - 1, atol=1e-6)
    warning = caplog.text
    assert "Skipped 3 file(s)" in warning
    assert "2 not a readable image (train/notes.txt: not JPEG" in warning and "train/tiff.jpg: not JPEG" in warning
    assert f"1 over the pixel limit (--max_pixels) (train/big.png: {BIG_MESSAGE})" in warning


def test_a_tiff_named_jpg_is_skipped_and_a_webp_named_png_is_trained_on(mixed_folder, data_dir, tmp_path):
    """The run is also the "L1 only" variant that trains (test_training.py's variants): no D."""
    config = tiny_config(tmp_path, data_dir, data=dict(dataset=f"folder:{mixed_folder}"), optim=dict(steps=4),
                         loss=dict(gan_weight=0.0), run=dict(eval_examples=0))
    result = train(config)  # 4 steps: the 3 usable pairs, then a new epoch.
    assert result.step == 4 and all(np.isfinite(v) for v in result.losses.values())
    assert set(result.losses) == {"g_l1", "g_total"}  # "L1 only" trains no D.
    assert json.loads((tmp_path / "config.json").read_text())["data"]["max_pixels"] == images.DEFAULT_MAX_PIXELS


def test_a_lower_cap_skips_more_files(mixed_folder):
    with pytest.raises(DatasetError, match=r"(?s)holds no usable image pairs.*train/0.png: 32x16 \(512 pixels\) "
                                           r"is over the limit of 511 pixels"):
        pipeline.load_paired_dataset(DataConfig(dataset=f"folder:{mixed_folder}", max_pixels=511))


def translate(*flags: str):
    return run_program("translate", *flags)


def test_translate_reads_webp_and_refuses_a_big_file_naming_it(tmp_path_factory, data_dir, mixed_folder, tmp_path):
    workdir = trained_run(tmp_path_factory, data_dir)
    webp, big = os.path.join(mixed_folder, "train", "webp.png"), os.path.join(mixed_folder, "train", "big.png")
    result = translate(f"--workdir={workdir}", f"--output_dir={tmp_path / 'out'}", "--deterministic", webp, big)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert f"{big}: {BIG_MESSAGE}" in result.stderr
    assert "Translated 1 image(s)" in result.stdout and os.path.isfile(tmp_path / "out" / "webp.png")
    small_cap = translate(f"--workdir={workdir}", f"--output_dir={tmp_path / 'capped'}", "--max_pixels=500", webp)
    assert small_cap.returncode == 1 and "Traceback" not in small_cap.stderr
    assert f"{webp}: 32x16 (512 pixels) is over the limit of 500 pixels (--max_pixels)" in small_cap.stderr


# A client of the SavedModel that uses TensorFlow's API only, in a process of its own (forked
# from tests/forked.py's zygote, which never ran the export): the model must serve from its files.
CLIENT = """
import json, sys
import tensorflow as tf
signatures = tf.saved_model.load(sys.argv[1]).signatures
answers = {}
for name in ("serving_default", "translate_png"):
    for label in ("webp", "big"):
        try:
            outputs = signatures[name](images=tf.constant([open(sys.argv[2 if label == "webp" else 3], "rb").read()]))
            answers[f"{name} {label}"] = {k: list(v.shape) for k, v in outputs.items()}
        except tf.errors.InvalidArgumentError as e:
            answers[f"{name} {label}"] = e.message
print(json.dumps(answers))
"""


@pytest.mark.slow
def test_the_saved_model_reads_webp_and_refuses_a_big_request_before_decoding(
        tmp_path_factory, data_dir, mixed_folder, tmp_path):
    workdir = trained_run(tmp_path_factory, data_dir)
    export_dir = tmp_path / "export"
    exported = run_program("export", f"--workdir={workdir}", f"--export_dir={export_dir}", "--tflite=",
                           "--check_examples=1", "--max_pixels=1000000")
    assert exported.returncode == 0, exported.stderr[-3000:]
    version = export_dir / "pix2pix" / "1"
    metadata = json.loads((version / "assets.extra" / "pix2pix_export.json").read_text())
    assert metadata["max_pixels"] == 1_000_000
    script = tmp_path / "client.py"
    script.write_text(CLIENT)
    webp, big = os.path.join(mixed_folder, "train", "webp.png"), os.path.join(mixed_folder, "train", "big.png")
    result = forked.run([sys.executable, str(script), str(version), webp, big], cwd=str(tmp_path), timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    answers = json.loads(result.stdout.strip().splitlines()[-1])
    assert answers["serving_default webp"]["output"] == [1, 128, 128, 3]
    assert answers["translate_png webp"]["output_bytes"] == [1]
    for name in ("serving_default", "translate_png"):
        assert ("image 0 of the batch: 12000x12000 (144.0 megapixels) is over the limit of 1.0 megapixels "
                "(--max_pixels)") in answers[f"{name} big"]


# ----------------------------------------------------------------------------- item 4


def test_images_smaller_than_the_crop_are_refused_before_training(tmp_path, data_dir):
    root = tmp_path / "data"
    write(root / "train" / "large.png", encoded(pair(height=160), "PNG"))
    write(root / "train" / "small.png", encoded(pair(height=100), "PNG"))
    config = tiny_config(tmp_path / "run", data_dir, data=dict(dataset=f"folder:{root}", preprocess="crop"))
    with pytest.raises(DatasetError) as error:
        train(config)
    message = str(error.value)
    assert f"{root / 'train' / 'small.png'}: its input and target are 100x100, smaller than --crop_size=128" in message
    assert "Step" not in message  # Refused before the first step.


def test_a_tfds_dataset_is_checked_from_its_records_headers(tmp_path, data_dir):
    config = tiny_config(tmp_path, data_dir, data=dict(preprocess="crop"))  # shapes/64: 64x64 pairs, crop 128.
    with pytest.raises(DatasetError, match=r"^shapes/64 train/train_\d+\.png: its input and target are 64x64, "
                                           r"smaller than --crop_size=128"):
        train(config)


@pytest.mark.slow
def test_mixed_sizes_without_resizing_are_refused_before_training(tmp_path):
    root = tmp_path / "data"
    write(root / "train" / "a.png", encoded(pair(height=16), "PNG"))
    write(root / "train" / "b.png", encoded(pair(height=24), "PNG"))
    result = run_program("train", f"--workdir={tmp_path / 'run'}", f"--dataset=folder:{root}", "--preprocess=none",
                         "--batch_size=2", "--generator=resnet_6blocks", "--ngf=4", "--ndf=4", "--steps=1",
                         "--noprogress", "--strategy=default")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert (f"error: --preprocess=none keeps native sizes, so a batch of --batch_size=2 needs one size, but "
            f"{root / 'train' / 'a.png'} is 16x16 and {root / 'train' / 'b.png'} is 24x24") in result.stderr


def test_native_sizes_too_small_for_the_discriminator_are_refused_before_training(tmp_path, data_dir):
    """--preprocess=none trains at native sizes, which the config cannot know: the smallest
    train image is checked against the discriminator once the headers are read (it failed
    inside the first step with 39 lines of TensorFlow's graph error)."""
    root = tmp_path / "data"
    write(root / "train" / "a.png", encoded(pair(height=64), "PNG"))
    write(root / "train" / "tiny.png", encoded(pair(height=16), "PNG"))
    config = tiny_config(tmp_path / "run", data_dir, model=dict(generator="resnet_6blocks", ngf=4, ndf=4),
                         data=dict(dataset=f"folder:{root}", preprocess="none", batch_size=1))
    with pytest.raises(ConfigError) as error:
        train(config)
    tiny = root / "train" / "tiny.png"
    assert str(error.value) == (
        f"--discriminator=basic: a PatchGAN of 3 layers leaves no patch of a 16x16 image ({tiny} is 16x16, which "
        "--preprocess=none keeps). Use --discriminator=n_layers --n_layers_d=2 or larger images, or "
        "--preprocess=resize_and_crop.")


def test_the_crop_refusal_suggests_a_crop_the_generator_takes(tmp_path, data_dir):
    """A crop of at most the image's side that is also a multiple of what the generator takes
    (unet_128: 128), or none when no such crop exists."""
    root = tmp_path / "data"
    write(root / "train" / "a.png", encoded(pair(height=300), "PNG"))
    write(root / "train" / "small.png", encoded(pair(height=200), "PNG"))
    config = tiny_config(tmp_path / "run", data_dir, data=dict(dataset=f"folder:{root}", preprocess="crop",
                                                               load_size=286, crop_size=256))
    with pytest.raises(DatasetError, match=r"Use a --crop_size of at most 128, --preprocess=resize_and_crop, or "):
        train(config)
    write(root / "train" / "small.png", encoded(pair(height=100), "PNG"))
    with pytest.raises(DatasetError, match=r"from the native size\. Use --preprocess=resize_and_crop, or remove"):
        train(dataclasses.replace(config, data=dataclasses.replace(config.data, crop_size=128)))


def test_mixed_aspect_ratios_with_scale_width_are_refused_before_training(tmp_path, data_dir):
    """`--preprocess=scale_width` keeps each image's aspect ratio: a batch needs them to agree."""
    root = tmp_path / "data"
    rng = np.random.default_rng(1)
    for side in ("A", "B"):  # A/B trees: the halves of a pair need not be square.
        write(root / side / "train" / "square.png", encoded(rng.integers(0, 256, (32, 32, 3), np.uint8), "PNG"))
        write(root / side / "train" / "wide.png", encoded(rng.integers(0, 256, (32, 64, 3), np.uint8), "PNG"))
    config = tiny_config(tmp_path / "run", data_dir, model=dict(generator="resnet_6blocks", ngf=4, ndf=4),
                         data=dict(dataset=f"folder:{root}", preprocess="scale_width", load_size=32, crop_size=16,
                                   batch_size=2), run=dict(strategy="default"))
    with pytest.raises(DatasetError, match=r"--preprocess=scale_width keeps the aspect ratio \(width 32\), so a "
                                           r"batch of --batch_size=2 needs one size, but .*square\.png is 32x32 "
                                           r"and .*wide\.png is 64x32"):
        train(config)
