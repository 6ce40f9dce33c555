"""Hostile inputs as a table: every input class through every entry point that reads images, each
run asserting bounded memory (peak RSS growth, sampled) and time, and one message per refused
input (docs/reliability.md, "Bounded reads").

Input classes (`INPUTS`): huge (a 1 GB sparse file behind a real PNG header), the 1 GB all-zero
sparse file, zero bytes, truncated, disguised (TIFF bytes named .png), a header that declares
30000x30000, a GIF whose comment holds 500,000 one-byte sub-blocks, a PNG with 20,000 extra
chunks, a BMP with an OS/2 header, an animated WebP, a JPEG of 1,000 scans, a FIFO, a link to a
character device and a link loop. Entry points (`test_*`): the folder dataset's scan and the
training/evaluation pipeline over it, the authors' archive reader, translate, the demo's upload
handler and each Serving signature of one tiny SavedModel shared by the module (plus requests
whose images add up past the request cap). A request carries bytes, so the special files apply
to the file readers only.
"""

from __future__ import annotations

import http.client
import io
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import zlib
from typing import Optional

import numpy as np
import pytest
import tensorflow as tf

from pix2pix_tf import image_files, image_header, images
from pix2pix_tf.inference import artifacts

import forked

MAX_PIXELS = 256 * 256 * 4  # Per image: max_file_bytes is then 18 MiB.
MAX_REQUEST_PIXELS = 2 * MAX_PIXELS
IMAGE_SIZE = 128
RSS_BOUND = 600 * 2**20  # Generous: the classes above would cost GBs unbounded.
SECONDS_BOUND = 60.0

NOT_AN_IMAGE = "not JPEG, PNG, GIF, BMP or WebP data"
ACCEPTED = None
# name -> the message its refusal must hold (ACCEPTED: a valid image, read within bounds).
INPUTS = {
    "huge_sparse_png": "more than an image of at most",
    "zeros_1g": NOT_AN_IMAGE + " (its first bytes: 00 00",
    "zero_bytes": "empty (0 bytes)",
    "truncated": "cannot be decoded, truncated or corrupt",
    "disguised_tiff": NOT_AN_IMAGE + " (its first bytes: 49 49 2a 00",
    "header_bomb": "is over the limit of",
    "gif_flood": f"a GIF of more than {images.GIF_MAX_BLOCKS} blocks",
    "os2_bmp": "a BMP with an OS/2 header (12 bytes), which TensorFlow cannot decode",
    "animated_webp": "an animated WebP, which is not read",
    "jpeg_scan_flood": f"a JPEG of more than {image_header.JPEG_MAX_SCANS} scans, which is not read",
    "png_many_chunks": ACCEPTED,
    "fifo": "a FIFO, not a regular file",
    "link_to_device": "a character device, not a regular file",
    "link_loop": "cannot be read",
}
SPECIAL = ("huge_sparse_png", "zeros_1g", "fifo", "link_to_device", "link_loop")  # Files, not bytes.


class Bounded:
    """Peak RSS growth (sampled every 2 ms from /proc) and seconds of the `with` block."""

    def __enter__(self) -> Bounded:
        self.base = self.peak = self._rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        self.start = time.monotonic()
        return self

    @staticmethod
    def _rss() -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def _sample(self) -> None:
        while not self._stop.wait(0.002):
            self.peak = max(self.peak, self._rss())

    def __exit__(self, *_) -> None:
        self.seconds = time.monotonic() - self.start
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._rss())
        self.growth = self.peak - self.base
        print(f"peak RSS growth {self.growth / 2**20:.0f} MiB, {self.seconds:.1f} s")
        assert self.growth < RSS_BOUND, f"RSS grew by {self.growth / 2**20:.0f} MiB"
        assert self.seconds < SECONDS_BOUND, f"took {self.seconds:.1f} s"


# ----------------------------------------------------------------------------- the inputs


def _png(width: int, height: int) -> bytes:
    rng = np.random.default_rng(width * 1000 + height)
    return tf.io.encode_png(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).numpy()


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _header_bomb() -> bytes:
    """A PNG signature and IHDR declaring 30000x30000, then a few bytes: no real pixels."""
    ihdr = struct.pack(">IIBBBBB", 30000, 30000, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(b"\0" * 64))


def _gif_flood() -> bytes:
    """A 64x32 GIF header, then a comment extension of 500,000 one-byte sub-blocks (1 MB)."""
    screen = b"GIF89a" + struct.pack("<HH", 64, 32) + b"\0\0\0"
    return screen + b"\x21\xfe" + b"\x01A" * 500_000 + b"\0;"


def _os2_bmp() -> bytes:
    """A 64x32 BMP with OS/2's 12-byte header (16-bit sizes where Windows' has 32-bit ones)."""
    pixels = bytes(64 * 3 * 32)
    return b"BM" + struct.pack("<IHHI", 26 + len(pixels), 0, 0, 26) + struct.pack("<IHHHH", 12, 64, 32, 1, 24) + pixels


def _animated_webp() -> bytes:
    """A WebP of two 16x16 frames (140 bytes): TensorFlow's decoder, asked for one frame of it,
    corrupted the heap of the process (a SavedModel's server, translate, the demo)."""
    from PIL import Image

    frames = [Image.fromarray(np.full((16, 16, 3), 40 * i, np.uint8)) for i in range(2)]
    buffer = io.BytesIO()
    frames[0].save(buffer, "WEBP", save_all=True, append_images=frames[1:], lossless=True)
    return buffer.getvalue()


def _jpeg_scan_flood() -> bytes:
    """A progressive 64x32 JPEG whose last scan is repeated 1,000 times (libjpeg decodes each,
    with a warning: a megabyte of such scans at 4096x4096 cost minutes of CPU)."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(3).integers(0, 256, (32, 64, 3), dtype=np.uint8)).save(
        buffer, "JPEG", progressive=True)
    data = buffer.getvalue()
    last_scan = data[data.rindex(b"\xff\xda"):-2]  # Its header and entropy-coded data, up to the end marker.
    return data[:-2] + last_scan * 1000 + b"\xff\xd9"


def _png_many_chunks() -> bytes:
    """A valid 64x32 PNG with 20,000 private ancillary chunks between IHDR and IDAT."""
    png = _png(64, 32)
    extra = _chunk(b"prVt", b"x") * 20_000
    return png[:33] + extra + png[33:]


def input_bytes(name: str) -> bytes:
    """The bytes of an input class a request or an archive member can carry."""
    return {
        "zero_bytes": lambda: b"",
        "truncated": lambda: _png(64, 32)[:200],
        "disguised_tiff": lambda: b"II*\0\x08\0\0\0" + b"\0" * 200,
        "header_bomb": _header_bomb,
        "gif_flood": _gif_flood,
        "os2_bmp": _os2_bmp,
        "animated_webp": _animated_webp,
        "jpeg_scan_flood": _jpeg_scan_flood,
        "png_many_chunks": _png_many_chunks,
    }[name]()


def make_input(folder: str, name: str) -> str:
    """The input class `name` as `<folder>/<name>.png`; sparse files cost no disk."""
    path = os.path.join(folder, f"{name}.png")
    if name == "huge_sparse_png":
        with open(path, "wb") as f:
            f.write(_png(64, 32))
            f.truncate(2**30)
    elif name == "zeros_1g":
        with open(path, "wb") as f:
            f.truncate(2**30)
    elif name == "fifo":
        os.mkfifo(path)
    elif name == "link_to_device":
        os.symlink("/dev/zero", path)
    elif name == "link_loop":
        os.symlink(os.path.basename(path), path)
    else:
        with open(path, "wb") as f:
            f.write(input_bytes(name))
    return path


def hostile_folder(folder: str) -> dict[str, str]:
    os.makedirs(folder, exist_ok=True)
    return {name: make_input(folder, name) for name in INPUTS}


# ----------------------------------------------------------------------------- file readers


def test_folder_dataset_scan(tmp_path):
    from pix2pix_tf.data.sources.folder import scan_folder

    train = str(tmp_path / "train")
    paths = hostile_folder(train)
    with open(os.path.join(train, "good.png"), "wb") as f:
        f.write(_png(64, 32))
    with Bounded():
        scan = scan_folder(str(tmp_path), MAX_PIXELS)
    skipped = {os.path.basename(path): detail for files in scan.skipped.values() for path, detail in files}
    for name, message in INPUTS.items():
        if message is ACCEPTED:
            assert (paths[name],) in scan.splits["train"]
        else:
            assert message in skipped[f"{name}.png"], (name, skipped.get(f"{name}.png"))
    assert len(skipped) == len(INPUTS) - 1
    assert "not a regular file" in scan.skip_report()


def test_training_and_evaluation_pipeline(tmp_path):
    """What train.py and evaluate.py read: the folder dataset through the pipeline."""
    from pix2pix_tf.config import DataConfig
    from pix2pix_tf.data import pipeline

    hostile_folder(str(tmp_path / "train"))
    with open(str(tmp_path / "train" / "good.png"), "wb") as f:
        f.write(_png(64, 32))
    with Bounded():
        dataset = pipeline.load_paired_dataset(DataConfig(dataset=f"folder:{tmp_path}", max_pixels=MAX_PIXELS))
    assert dataset is not None


def test_archive_members(tmp_path, caplog):
    """GNU tar's archive of the table's inputs, with a 3 GB all-zero sparse member (the archive
    is a few kB), a FIFO and a link: each refused with its reason (and the size), unread."""
    import tensorflow_datasets as tfds

    from pix2pix_tf.data.sources import archive

    if not shutil.which("tar"):
        pytest.skip("GNU tar builds the sparse archive")
    train = tmp_path / "tree" / "facades" / "train"
    hostile_folder(str(train))
    for name in ("huge_sparse_png", "zeros_1g", "link_loop"):
        os.remove(train / f"{name}.png")
    with open(train / "zeros_3g.png", "wb") as f:
        f.truncate(3 * 2**30)
    (train / "good.png").write_bytes(_png(64, 32))
    path = tmp_path / "facades.tar.gz"
    subprocess.run(["tar", "-cSzf", str(path), "-C", str(tmp_path / "tree"), "facades"], check=True)
    assert path.stat().st_size < 2**20
    source = archive.Archive(tfds.core.Path(str(path)), "facades", "https://example.invalid", "")
    with Bounded(), caplog.at_level("WARNING"):
        kept = dict(archive.split_examples(source, "train", archive.scan_archive(source)["train"].last_member))
    assert set(kept) == {"facades/train/good.png", "facades/train/png_many_chunks.png"}
    assert ("skipped 11 of 13 image file(s) (not a decodable image: 7, not a regular file: 1, over the pixel "
            "limit: 2, tar link (not readable while streaming): 1)") in caplog.text
    assert f"facades/train/zeros_3g.png (over the pixel limit: {3 * 2**30} bytes, more than" in caplog.text


# ----------------------------------------------------------------------------- the model's readers


def _export(directory: str, max_request_pixels: int) -> None:
    """A tiny SavedModel (unet_128, ngf 8, untrained: what is tested is what it reads) written
    as export.py writes it, with the table's caps."""
    from pix2pix_tf.export.config import ExportConfig
    from pix2pix_tf.export.saved_model import write_saved_model
    from pix2pix_tf.export.saved_model_target import Options
    from pix2pix_tf.inference.mode import DETERMINISTIC
    from pix2pix_tf.networks.generator import build_generator

    from conftest import tiny_config

    train = tiny_config(os.path.dirname(directory), "unused")
    config = ExportConfig(workdir=train.run.workdir, mode=DETERMINISTIC)
    options = Options(max_pixels=MAX_PIXELS, max_request_pixels=max_request_pixels)
    write_saved_model(build_generator(train.model), train, config, options, os.path.join(directory, "ckpt-0"), 1,
                      IMAGE_SIZE, directory)


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory) -> str:
    """The table's SavedModel, shared by the module."""
    directory = str(tmp_path_factory.mktemp("export") / "1")
    _export(directory, MAX_REQUEST_PIXELS)
    return directory


@pytest.mark.slow
def test_the_request_cap_is_recorded_and_must_fit_the_warmup(saved_model, tmp_path):
    from pix2pix_tf.export.config import ExportError

    assert artifacts.read_metadata(saved_model)["max_request_pixels"] == MAX_REQUEST_PIXELS
    assert artifacts.read_metadata(saved_model)["max_pixels"] == MAX_PIXELS
    with pytest.raises(ExportError, match="--max_request_pixels=1000 is below what the warmup requests hold"):
        _export(str(tmp_path / "1"), 1000)
    assert not (tmp_path / "1").exists()


@pytest.mark.slow
def test_translate(saved_model, tmp_path):
    from pix2pix_tf.inference.files import TranslateConfig, translate_files
    from pix2pix_tf.inference.request import ModelRequest

    paths = hostile_folder(str(tmp_path / "in"))
    config = TranslateConfig(inputs=(str(tmp_path / "in"),), output_dir=str(tmp_path / "out"),
                             model=ModelRequest.of(saved_model=saved_model, max_pixels=MAX_PIXELS), progress=False)
    with Bounded():
        result = translate_files(config)
    failed = dict(result.failed)
    for name, message in INPUTS.items():
        if message is ACCEPTED:
            assert any(os.path.basename(out) == f"{name}.png" for out in result.written)
        else:
            assert message in failed[paths[name]], (name, failed.get(paths[name]))
    assert len(failed) == len(INPUTS) - 1


def test_a_file_name_holding_a_newline_is_named_on_one_line(saved_model, tmp_path):
    """translate's error line and the folder scan's report name such a file with the newline
    escaped (`\\x0a`): printed raw, one error became two lines."""
    from pix2pix_tf.data.sources.folder import scan_folder

    from programs import run_program

    train = tmp_path / "data" / "train"
    train.mkdir(parents=True)
    (train / "bad\nname.png").write_bytes(b"")
    (train / "good.png").write_bytes(_png(64, 32))
    result = run_program("translate", f"--saved_model={saved_model}", f"--output_dir={tmp_path / 'out'}", str(train))
    assert f"error: {train}/bad\\x0aname.png: empty (0 bytes)\n" in result.stderr, result.stderr[-2000:]
    report = scan_folder(str(tmp_path / "data"), MAX_PIXELS).skip_report()
    assert "train/bad\\x0aname.png: empty (0 bytes)" in report and "\n" not in report, report


@pytest.mark.slow
def test_demo_upload_handler(saved_model, tmp_path):
    pytest.importorskip("gradio")
    from pix2pix_tf.demo.app import answer
    from pix2pix_tf.demo.model import DemoModel, drawing_for
    from pix2pix_tf.inference.request import ModelRequest

    source = ModelRequest.of(saved_model=saved_model).resolve()
    model = DemoModel("tiny", source.open, False, drawing_for(None, None), MAX_PIXELS)
    paths = hostile_folder(str(tmp_path / "uploads"))
    for name, message in INPUTS.items():
        with Bounded():
            model_input, output, status = answer(model, paths[name], None, False)
        if message is ACCEPTED:
            assert status.startswith("Translated by"), status
        else:
            assert status.startswith(f"error: {name}.png: ") and message in status, status
            assert status.count("error:") == 1 and model_input is None and output is None


@pytest.fixture(scope="module")
def signatures(saved_model):
    return tf.saved_model.load(saved_model).signatures


# In graph, a file that does not decode fully is refused by TensorFlow's decoder, in its words.
IN_GRAPH = {"truncated": "Invalid PNG data"}
BYTES_SIGNATURES = (artifacts.SIGNATURE_BYTES, artifacts.SIGNATURE_PNG, artifacts.SIGNATURE_NATIVE)


@pytest.mark.slow
@pytest.mark.parametrize("signature", BYTES_SIGNATURES)
def test_bytes_signatures(signatures, signature):
    for name, message in INPUTS.items():
        if name in SPECIAL:
            continue
        request = tf.constant([input_bytes(name)])
        message = IN_GRAPH.get(name, message)
        with Bounded():
            if message is ACCEPTED:
                outputs = signatures[signature](images=request)
                assert outputs[artifacts.OUTPUT_BYTES].shape == [1]
                continue
            with pytest.raises(tf.errors.InvalidArgumentError) as refused:
                signatures[signature](images=request)
        assert message in refused.value.message, (name, refused.value.message[:300])
        assert name in IN_GRAPH or "image 0 of the batch" in refused.value.message


@pytest.mark.slow
@pytest.mark.parametrize("signature", BYTES_SIGNATURES)
def test_a_request_of_many_images_under_the_cap_is_refused_as_a_whole(signatures, signature):
    """40 images of 128x128, each far under the per-image cap, past the request cap together."""
    request = tf.constant([_png(128, 128)] * 40)
    with Bounded():
        with pytest.raises(tf.errors.InvalidArgumentError) as refused:
            signatures[signature](images=request)
    assert f"over the limit of {MAX_REQUEST_PIXELS} pixels per request" in refused.value.message
    assert "40 image(s) hold 655360 pixels" in refused.value.message
    fits = signatures[signature](images=tf.constant([_png(128, 128)] * 2))
    assert fits[artifacts.OUTPUT_BYTES].shape == [2]


def _gif_walk(steps: int) -> bytes:
    """A valid 4x4 GIF whose comment, before its image, holds `steps` one-byte sub-blocks: its
    block walk takes about `steps` steps."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(buffer, "GIF")
    gif = buffer.getvalue()
    blocks = 13 + (3 * (2 << (gif[10] & 7)) if gif[10] & 0x80 else 0)  # After the screen and its colour table.
    return gif[:blocks] + b"\x21\xfe" + b"\x01x" * steps + b"\0" + gif[blocks:]


@pytest.mark.slow
@pytest.mark.parametrize("signature", BYTES_SIGNATURES)
def test_a_request_of_gifs_whose_walks_add_up_is_refused_before_any_is_walked(signatures, signature):
    """Five GIFs each under GIF_MAX_BLOCKS (a walk costs seconds of CPU at that length) and under
    both pixel caps: the request is refused from their sizes, before any walk; one such GIF is
    read. Each walk is bounded, but a request of a thousand would have cost a thousand walks."""
    walk = _gif_walk(60_000)
    with pytest.raises(tf.errors.InvalidArgumentError) as refused:
        signatures[signature](images=tf.constant([walk] * 5))
    steps = 5 * (len(walk) // 2)  # Each counted at half its bytes: 60,000 sub-blocks of 2 bytes and the image.
    assert steps > images.GIF_REQUEST_BLOCKS >= 4 * (len(walk) // 2)
    assert (f"5 GIF image(s) may take {steps} steps to walk their blocks in all, over the limit of "
            f"{images.GIF_REQUEST_BLOCKS} per request") in refused.value.message
    assert signatures[signature](images=tf.constant([walk]))[artifacts.OUTPUT_BYTES].shape == [1]


@pytest.mark.slow
@pytest.mark.parametrize("signature", (artifacts.SIGNATURE_FLOAT, artifacts.SIGNATURE_FLOAT_DETERMINISTIC))
def test_float_signatures_cap_the_request(signatures, signature):
    over = tf.zeros([33, IMAGE_SIZE, IMAGE_SIZE, 3])  # 540672 pixels > MAX_REQUEST_PIXELS
    with Bounded():
        with pytest.raises(tf.errors.InvalidArgumentError) as refused:
            signatures[signature](images=over)
    assert f"over the limit of {MAX_REQUEST_PIXELS} pixels per request" in refused.value.message
    assert signatures[signature](images=tf.zeros([2, IMAGE_SIZE, IMAGE_SIZE, 3]))[artifacts.OUTPUT_FLOAT].shape[0] == 2


@pytest.mark.slow
def test_exif_orientation_is_ignored_in_training_and_inference(saved_model, tmp_path):
    """One policy: the stored pixels are the image. A JPEG tagged Orientation=6 (rotate 90)
    decodes unrotated in the policy's decoder (training, translate, the demo) and in graph."""
    from PIL import Image

    pixels = np.zeros((32, 64, 3), np.uint8)
    pixels[:, :32] = 255  # Left half white: rotated, the white half would be on top.
    exif = Image.Exif()
    exif[0x0112] = 6
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", exif=exif, quality=95)
    data = buffer.getvalue()
    assert Image.open(io.BytesIO(data)).getexif()[0x0112] == 6
    decoded = images.decode_bytes(data, MAX_PIXELS).pixels
    assert decoded.shape == (32, 64, 3) and decoded[:, :32].mean() > 200 and decoded[:, 32:].mean() < 50
    in_graph = images.decode_images(tf.constant([data]), 3, 64).numpy()[0]
    assert in_graph.shape == (64, 64, 3) and in_graph[:, :32].mean() > 0.5 and in_graph[:, 32:].mean() < -0.5
    path = tmp_path / "tagged.jpg"
    path.write_bytes(data)
    assert image_files.read_image_file(str(path), MAX_PIXELS).shape == (32, 64, 3)


def _post_file(url: str, name: str, data: bytes) -> tuple[int, str]:
    boundary = "pix2pixboundary"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"{name}\"\r\n"
            "Content-Type: application/octet-stream\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
    request = urllib.request.Request(url, body, {"Content-Type": f"multipart/form-data; boundary={boundary}"})
    try:
        with urllib.request.urlopen(request, timeout=60) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def _post_files_unsized(url: str, sizes: list[int]) -> tuple[Optional[int], str]:
    """One multipart POST of files of `sizes` (zeros behind a PNG signature), chunked: no
    Content-Length. Sending stops at the first error; (status, body), or (None, why) when the
    server closed the connection before its answer could be read."""
    parsed = urllib.parse.urlsplit(url)
    connection = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=60)
    connection.putrequest("POST", parsed.path)
    connection.putheader("Content-Type", "multipart/form-data; boundary=pix2pixboundary")
    connection.putheader("Transfer-Encoding", "chunked")
    connection.endheaders()

    def send(data: bytes) -> None:
        connection.send(b"%x\r\n%s\r\n" % (len(data), data))

    try:
        for i, size in enumerate(sizes):
            send(f'--pix2pixboundary\r\nContent-Disposition: form-data; name="files"; filename="f{i}.png"\r\n'
                 "Content-Type: image/png\r\n\r\n".encode())
            for start in range(0, size, 2**20):
                send((b"\x89PNG" + bytes(2**20))[:min(2**20, size - start)])
            send(b"\r\n")
        send(b"--pix2pixboundary--\r\n")
        connection.send(b"0\r\n\r\n")
    except OSError:
        pass
    try:
        answer = connection.getresponse()
        return answer.status, answer.read().decode()
    except OSError as e:
        return None, str(e)
    finally:
        connection.close()


def _post_json(url: str, value: object) -> tuple[int, str]:
    request = urllib.request.Request(url, json.dumps(value).encode(), {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def _post_declared(url: str, length: int) -> tuple[int, str]:
    """A POST that declares a body of `length` bytes and sends none of it."""
    parsed = urllib.parse.urlsplit(url)
    connection = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=60)
    connection.putrequest("POST", parsed.path)
    connection.putheader("Content-Type", "multipart/form-data; boundary=pix2pixboundary")
    connection.putheader("Content-Length", str(length))
    connection.endheaders()
    answer = connection.getresponse()
    status, text = answer.status, answer.read().decode()
    connection.close()
    return status, text


@pytest.mark.slow
def test_demo_server_caps_uploads_and_removes_them_on_exit(saved_model, tmp_path):
    """The demo's server refuses an upload larger than any image within --max_pixels while it
    arrives (413), and a request of several files under that cap each but over it together
    (Gradio's cap is per file), leaving none of their bytes, and a file named by URL (403); it
    keeps uploads in a folder of its own run, and removes it when it exits."""
    from pix2pix_tf.demo.guard import max_request_bytes

    pytest.importorskip("gradio")
    temp = tmp_path / "tmp"
    temp.mkdir()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = dict(os.environ, TMPDIR=str(temp))
    server = forked.Popen([sys.executable, "-m", "pix2pix_tf.demo", f"--saved_model={saved_model}",
                           f"--port={port}", f"--max_pixels={MAX_PIXELS}", "--num_examples=0"],
                          env=env, stdout=forked.PIPE, stderr=forked.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 180
        while True:
            assert server.poll() is None, server.stdout.read()[-3000:]
            try:
                urllib.request.urlopen(url, timeout=2).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "the demo did not answer within 180 s"
                time.sleep(0.5)
        too_big = b"\0" * (image_files.max_file_bytes(MAX_PIXELS) + 1)
        status, text = _post_file(url + "gradio_api/upload", "big.png", too_big)
        assert status == 413 and "maximum allowed size" in text, (status, text[:300])
        (run_dir,) = temp.glob("pix2pix_demo_*")
        kept_before = {p: p.stat().st_size for p in (run_dir / "uploads").rglob("*") if p.is_file()}  # The page's own.
        cap = max_request_bytes(MAX_PIXELS)
        status, text = _post_declared(url + "gradio_api/upload", cap + 1)  # Refused before a byte is read.
        assert status == 413 and f"over the maximum allowed size of {cap} bytes" in text, (status, text[:300])
        status, text = _post_files_unsized(url + "gradio_api/upload", [cap // 3 + 2**20] * 3)
        assert status in (413, None) and (status is None or f"maximum allowed size of {cap}" in text), text[:300]
        assert {p: p.stat().st_size for p in (run_dir / "uploads").rglob("*") if p.is_file()} == kept_before
        status, text = _post_file(url + "gradio_api/upload", "good.png", _png(64, 32))
        assert status == 200, text
        (uploaded,) = json.loads(text)
        assert os.path.realpath(uploaded).startswith(os.path.realpath(run_dir / "uploads"))
        assert os.path.getsize(uploaded) == len(_png(64, 32))
        # A file object given by URL, which Gradio would fetch for any caller of its API: refused.
        for path, refused in (("https://pix2pix-probe.invalid/x.png", True), (uploaded, False)):
            status, text = _post_json(url + "gradio_api/call/lambda_2",
                                      {"data": [{"path": path, "meta": {"_type": "gradio.FileData"}}, False]})
            assert (status == 403 and "takes files uploaded to it, not URLs to fetch" in text) == refused, (
                path, status, text[:300])
    finally:
        server.send_signal(signal.SIGINT)
        output, _ = server.communicate(timeout=60)
    assert not list(temp.glob("pix2pix_demo_*")), list(temp.rglob("*"))
    # As every program stops (docs/reliability.md), not with Gradio's own line and status 0.
    assert server.returncode == 130 and "error: SIGINT received: stopped." in output, output[-3000:]
