"""Tests of the `pix2pix` builder of the authors' datasets (`pix2pix_tf.data.sources.official`).

The authors' server is unreachable from the test machines, so every archive
here is built by the test itself, in the published layout
(`{name}/{train,val[,test]}/*.jpg`, each JPEG A | B side by side), from tiny
images (32x16; maps 60x30 like its 1200x600). Nothing touches the network: the
download-failure tests point the builder at 127.0.0.1 only.
"""

from __future__ import annotations

import functools
import http.server
import io
import logging
import socket
import tarfile
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

from pix2pix_tf.data.sources import official
from pix2pix_tf.data.sources.official import (
    DATASET_NAMES,
    Pix2pix,
    Pix2pixConfig,
    archive_url,
    expected_layout_help,
)
from pix2pix_tf.errors import DatasetError

# --- building archives in the published layout --------------------------------

# Examples per split of the archives the builder tests read (edges2shoes and
# maps have no test split, like the authors' archives).
LAYOUTS: dict[str, dict[str, int]] = {
    "facades": {"train": 3, "val": 2, "test": 2},
    "edges2shoes": {"train": 3, "val": 2},
    "maps": {"train": 2, "val": 2},
    "night2day": {"train": 2, "val": 1, "test": 1},
}
SIZES = {"maps": (60, 30)}  # (width, height); the others 32x16


def pair_image(seed: int, size: tuple[int, int] = (32, 16), mode: str = "RGB", fmt: str = "JPEG") -> bytes:
    """A random A | B image, encoded: noise, so no two files are alike."""
    width, height = size
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 4), dtype=np.uint8)
    image = Image.fromarray(pixels, "RGBA").convert(mode)
    buf = io.BytesIO()
    image.save(buf, format=fmt)
    return buf.getvalue()


def write_archive(path: Path, members: dict[str, bytes], extras: bool = True) -> Path:
    """A .tar.gz of `members` (path -> bytes) with the directory entries a real
    `tar czf` writes, plus (with `extras`) members the builder must ignore."""
    path.parent.mkdir(parents=True, exist_ok=True)
    dirs = sorted({p.rsplit("/", i)[0] for p in members for i in (1, 2) if p.count("/") >= i})
    ignored = {}
    if extras:
        root = next(iter(members)).split("/")[0]
        ignored = {
            f"{root}/README.txt": b"not an image",
            f"{root}/train/._0.jpg": b"\x00\x05\x16\x07AppleDouble",
            f"__MACOSX/{root}/train/._1.jpg": b"\x00\x05\x16\x07AppleDouble",
            f"{root}/train/list.txt": b"0.jpg\n",
        }
    with tarfile.open(path, "w:gz") as tar:
        for d in dirs:
            info = tarfile.TarInfo(d)
            info.type = tarfile.DIRTYPE
            tar.addfile(info)
        for name, data in {**members, **ignored}.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def layout_members(name: str, seed: int = 0) -> dict[str, bytes]:
    size = SIZES.get(name, (32, 16))
    members = {}
    for s, (split, count) in enumerate(LAYOUTS[name].items()):
        for i in range(count):
            members[f"{name}/{split}/{i + 1}.jpg"] = pair_image(seed + 100 * s + i, size)
    return members


def read_members(archive: Path) -> dict[str, bytes]:
    with tarfile.open(archive) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar if m.isfile()}


@functools.cache
def example_dir() -> Path:
    """Fake downloads for the tfds builder tests, built once per session:
    `downloads/{name}.tar.gz` is what the mocked `dl_manager.download` returns;
    `manual/night2day.tar.gz` is a manually placed archive."""
    root = Path(_TMP.name)
    for name in ("facades", "edges2shoes", "maps"):
        write_archive(root / "downloads" / f"{name}.tar.gz", layout_members(name))
    write_archive(root / "manual" / "night2day.tar.gz", layout_members("night2day"))
    return root


_TMP = tempfile.TemporaryDirectory(prefix="pix2pix_official_")


# --- tensorflow-datasets' own builder tests ------------------------------------


class _PublishedLayout:
    """Mixin: builds the dummy archives before tfds's test case looks for them."""

    NAME: ClassVar[str]
    EXAMPLE_SUBDIR: ClassVar[str] = "."  # the harness's manual_dir and download root
    SKIP_CHECKSUMS = True  # the real archives' checksums cannot be recorded offline
    DATASET_CLASS = Pix2pix

    @classmethod
    def setUpClass(cls) -> None:
        cls.EXAMPLE_DIR = str(example_dir() / cls.EXAMPLE_SUBDIR)
        cls.BUILDER_CONFIG_NAMES_TO_TEST = [cls.NAME]
        cls.SPLITS = dict(LAYOUTS[cls.NAME])
        super().setUpClass()


# tfds's test machinery imports `dill`, which only tfds's test extras install.
# (Its base class must not become a module global: pytest would collect it.)
try:
    _HARNESS_MISSING = "" if tfds.testing.DatasetBuilderTestCase else "?"
except ImportError as _exc:  # pragma: no cover - depends on the environment
    _HARNESS_MISSING = f"tfds.testing.DatasetBuilderTestCase unavailable ({_exc}): pip install dill"

if _HARNESS_MISSING:  # pragma: no cover

    def test_tfds_builder_test_case_available() -> None:
        pytest.skip(_HARNESS_MISSING)

else:

    class FacadesBuilderTest(_PublishedLayout, tfds.testing.DatasetBuilderTestCase):
        """train/val/test, downloaded (the mocked download returns the archive)."""

        NAME = "facades"
        DL_DOWNLOAD_RESULT = "downloads/facades.tar.gz"


    class Edges2shoesBuilderTest(_PublishedLayout, tfds.testing.DatasetBuilderTestCase):
        """train/val only: the builder must not invent a test split."""

        NAME = "edges2shoes"
        DL_DOWNLOAD_RESULT = "downloads/edges2shoes.tar.gz"


    class MapsBuilderTest(_PublishedLayout, tfds.testing.DatasetBuilderTestCase):
        """The 2:1 maps images (1200x600 in the real archive)."""

        NAME = "maps"
        DL_DOWNLOAD_RESULT = "downloads/maps.tar.gz"


    class Night2dayManualBuilderTest(_PublishedLayout, tfds.testing.DatasetBuilderTestCase):
        """An archive in the manual directory is used and nothing is downloaded."""

        NAME = "night2day"
        EXAMPLE_SUBDIR = "manual"
        DL_DOWNLOAD_RESULT = "does-not-exist.tar.gz"

        def test_download_and_prepare_as_dataset(self) -> None:
            super().test_download_and_prepare_as_dataset()
            self.assertEmpty(self._download_urls, "the builder downloaded despite the manual archive")


# --- constants, configs, registration ------------------------------------------


def test_names_urls_and_registration(tmp_path: Path) -> None:
    assert DATASET_NAMES == ("facades", "cityscapes", "maps", "edges2shoes", "edges2handbags", "night2day")
    assert official.URL_TEMPLATE == "http://efrosgans.eecs.berkeley.edu/pix2pix/datasets/{name}.tar.gz"
    assert archive_url("maps") == "http://efrosgans.eecs.berkeley.edu/pix2pix/datasets/maps.tar.gz"
    with pytest.raises(DatasetError, match="edges2cats"):
        archive_url("edges2cats")
    assert tfds.builder_cls("pix2pix") is Pix2pix
    assert [c.name for c in Pix2pix.BUILDER_CONFIGS] == list(DATASET_NAMES)
    directions = {c.name: c.direction for c in Pix2pix.BUILDER_CONFIGS}
    assert directions == {"facades": "BtoA", "cityscapes": "BtoA", "maps": "AtoB",
                          "edges2shoes": "AtoB", "edges2handbags": "AtoB", "night2day": "AtoB"}
    builder = tfds.builder("pix2pix/cityscapes", data_dir=str(tmp_path))
    assert isinstance(builder.builder_config, Pix2pixConfig)
    assert (builder.builder_config.a_side, builder.builder_config.b_side) == ("photo", "label map")
    features = builder.info.features
    assert set(features.keys()) == {"image", "file_name"}
    assert features["image"].shape == (None, None, 3)
    assert features["image"].encoding_format == "jpeg"
    assert builder.info.supervised_keys is None
    assert "downloads/manual/" in Pix2pix.MANUAL_DOWNLOAD_INSTRUCTIONS
    help_text = expected_layout_help("maps")
    assert "maps/train/*.jpg" in help_text and "maps/val/*.jpg" in help_text and "1200x600" in help_text


# --- the manual (offline) route, bytes unchanged -------------------------------


def _no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make any download attempt fail loudly (and point the URL at loopback anyway)."""
    monkeypatch.setattr(official, "URL_TEMPLATE", "http://127.0.0.1:9/{name}.tar.gz")

    def forbidden(self: Any, url: Any) -> None:
        raise AssertionError(f"the builder tried to download {url}")

    monkeypatch.setattr(tfds.download.DownloadManager, "download", forbidden)


def _stored(builder: tfds.core.DatasetBuilder, split: str) -> dict[str, bytes]:
    """file_name -> the encoded image bytes as stored (no decoding)."""
    ds = builder.as_dataset(split=split, shuffle_files=False, decoders={"image": tfds.decode.SkipDecoding()})
    return {ex["file_name"].decode(): ex["image"] for ex in tfds.as_numpy(ds)}


@pytest.fixture(scope="module")
def manual_edges2shoes(tmp_path_factory: pytest.TempPathFactory) -> tuple[tfds.core.DatasetBuilder, Path]:
    data_dir = tmp_path_factory.mktemp("tfds_manual")
    archive = write_archive(data_dir / "downloads" / "manual" / "edges2shoes.tar.gz", layout_members("edges2shoes"))
    with pytest.MonkeyPatch.context() as mp:
        _no_network(mp)
        builder = tfds.builder("pix2pix/edges2shoes", data_dir=str(data_dir))
        builder.download_and_prepare()
    return builder, archive


def test_manual_archive_prepares_offline(manual_edges2shoes: tuple[tfds.core.DatasetBuilder, Path]) -> None:
    builder, _ = manual_edges2shoes
    assert set(builder.info.splits.keys()) == {"train", "val"}
    assert builder.info.splits["train"].num_examples == 3
    assert builder.info.splits["val"].num_examples == 2
    for ex in tfds.as_numpy(builder.as_dataset(split="val")):
        assert ex["image"].shape == (16, 32, 3) and ex["image"].dtype == np.uint8


def test_stored_bytes_are_the_archive_bytes(manual_edges2shoes: tuple[tfds.core.DatasetBuilder, Path]) -> None:
    builder, archive = manual_edges2shoes
    members = read_members(archive)
    for split in ("train", "val"):
        stored = _stored(builder, split)
        expected = {  # the archive's images, not the extras it must ignore
            p.rsplit("/", 1)[1]: data
            for p, data in members.items()
            if p.startswith(f"edges2shoes/{split}/") and p.endswith(".jpg") and "/._" not in p
        }
        assert stored.keys() == expected.keys()
        for file_name, data in stored.items():
            assert data == expected[file_name], f"{split}/{file_name} was re-encoded"


# --- bad data -------------------------------------------------------------------


def _truncated_jpeg(seed: int) -> bytes:
    """A JPEG cut in the middle of its entropy-coded data: the header is intact,
    so only a full decode (not `Image.open`) can tell."""
    data = pair_image(seed)
    start_of_scan = data.index(b"\xff\xda")
    cut = data[: start_of_scan + (len(data) - start_of_scan) // 2]
    assert Image.open(io.BytesIO(cut)).size == (32, 16)
    return cut


def _prepare(tmp_path: Path, name: str, members: dict[str, bytes]) -> tfds.core.DatasetBuilder:
    write_archive(tmp_path / "downloads" / "manual" / f"{name}.tar.gz", members)
    builder = tfds.builder(f"pix2pix/{name}", data_dir=str(tmp_path))
    builder.download_and_prepare()
    return builder


def _warnings(caplog: pytest.LogCaptureFixture) -> str:
    return "\n".join(r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING)


def test_bad_files_are_skipped_counted_and_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    _no_network(monkeypatch)
    members = {
        "facades/train/1.jpg": pair_image(1),
        "facades/train/2.jpg": pair_image(2),
        "facades/train/corrupt.jpg": b"\xff\xd8\xff\xe0 this is not a JPEG at all" * 10,
        "facades/train/empty.jpg": b"",
        "facades/train/truncated.jpg": _truncated_jpeg(3),
        "facades/train/square.jpg": pair_image(4, size=(16, 16)),
        "facades/val/1.jpg": pair_image(5),
    }
    with caplog.at_level(logging.WARNING, logger=official.__name__):
        builder = _prepare(tmp_path, "facades", members)
    assert builder.info.splits["train"].num_examples == 2
    assert builder.info.splits["val"].num_examples == 1
    assert "test" not in builder.info.splits
    text = _warnings(caplog)
    assert "split 'train'" in text
    assert "skipped 4 of 6 image file(s)" in text
    assert "not a decodable image: 3" in text
    assert "width is not twice the height: 1" in text
    for bad in ("corrupt.jpg", "empty.jpg", "truncated.jpg", "square.jpg (width is not twice the height: 16x16)"):
        assert bad in text
    assert "split 'val'" not in text  # nothing was skipped there
    assert "README" not in text and "._0.jpg" not in text and "list.txt" not in text  # ignored silently


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        (b"garbage" * 20, "not a decodable image: 1"),
        (_truncated_jpeg(7), "not a decodable image: 1"),
        (pair_image(8, size=(48, 16)), "width is not twice the height: 1"),
    ],
    ids=["corrupt", "truncated", "wrong-aspect"],
)
def test_split_without_valid_example_raises(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, bad: bytes, reason: str
) -> None:
    _no_network(monkeypatch)
    members = {"facades/train/1.jpg": pair_image(1), "facades/val/1.jpg": pair_image(2), "facades/test/9.jpg": bad}
    with pytest.raises(DatasetError) as info:
        _prepare(tmp_path, "facades", members)
    message = str(info.value)
    assert "split 'test'" in message and "facades.tar.gz" in message
    assert "no valid example" in message and "skipped 1 of 1" in message and reason in message
    assert "facades/test/9.jpg" in message
    assert "Expected layout" in message


def test_non_rgb_images_are_kept_as_rgb_jpeg(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    _no_network(monkeypatch)
    rgb = pair_image(1)
    members = {
        "maps/train/rgb.jpg": rgb,
        "maps/train/gray.jpg": pair_image(2, mode="L"),
        "maps/train/rgba.png": pair_image(3, mode="RGBA", fmt="PNG"),
        "maps/train/cmyk.jpg": pair_image(4, mode="CMYK"),
    }
    with caplog.at_level(logging.WARNING, logger=official.__name__):
        builder = _prepare(tmp_path, "maps", members)
    stored = _stored(builder, "train")
    assert stored["rgb.jpg"] == rgb
    for file_name, data in stored.items():
        with Image.open(io.BytesIO(data)) as image:
            assert (image.format, image.mode) == ("JPEG", "RGB"), file_name
    decoded = {ex["file_name"].decode(): ex["image"] for ex in tfds.as_numpy(builder.as_dataset(split="train"))}
    gray = np.asarray(Image.open(io.BytesIO(members["maps/train/gray.jpg"])))
    assert decoded["gray.jpg"].shape == (16, 32, 3)
    assert np.abs(decoded["gray.jpg"][..., 1].astype(int) - gray).mean() < 3
    text = _warnings(caplog)
    assert "re-encoded 3 image(s)" in text and "JPEG L: 1" in text and "PNG RGBA: 1" in text
    assert "JPEG CMYK: 1" in text and "skipped" not in text


def test_only_members_in_the_documented_layout_are_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    _no_network(monkeypatch)
    members = {
        "facades/train/1.jpg": pair_image(1),
        "./facades/train/2.jpg": pair_image(2),  # What `tar czf x.tar.gz ./facades` writes.
        "facades/val/1.jpg": pair_image(3),
        "../x/train/1.jpg": pair_image(4),
        "/abs/train/1.jpg": pair_image(5),
        "facades/train/sub/1.jpg": pair_image(6),
        "other/train/1.jpg": pair_image(7),
        "facades/train/../../escape/train/1.jpg": pair_image(8),
    }
    with caplog.at_level(logging.WARNING, logger="pix2pix_tf.data.sources"):
        builder = _prepare(tmp_path, "facades", members)
    assert builder.info.splits["train"].num_examples == 2
    assert builder.info.splits["val"].num_examples == 1
    stored = builder.as_dataset(split="train", decoders={"image": tfds.decode.SkipDecoding()}, shuffle_files=False)
    assert sorted(ex["image"] for ex in tfds.as_numpy(stored)) == sorted([pair_image(1), pair_image(2)])
    text = _warnings(caplog)
    assert "5 image file(s)" in text and "outside the layout facades/{train,val,test}/<file>" in text
    for outside in ("../x/train/1.jpg", "/abs/train/1.jpg", "facades/train/sub/1.jpg", "other/train/1.jpg",
                    "facades/train/../../escape/train/1.jpg"):
        assert outside in text


def test_archive_images_follow_the_image_policy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Content decides the format (a TIFF named .jpg is skipped, a WebP named .jpg is kept as RGB
    JPEG), and a header over the pixel cap is skipped before decoding."""
    _no_network(monkeypatch)
    big = bytearray(pair_image(9))
    sof = big.index(b"\xff\xc0")
    big[sof + 5:sof + 9] = (6000).to_bytes(2, "big") + (12000).to_bytes(2, "big")  # 12000x6000: 72 megapixels.
    members = {
        "facades/train/1.jpg": pair_image(1),
        "facades/train/tiff.jpg": pair_image(2, fmt="TIFF"),
        "facades/train/webp.jpg": pair_image(3, fmt="WEBP"),
        "facades/train/big.jpg": bytes(big),
    }
    with caplog.at_level(logging.WARNING, logger="pix2pix_tf.data.sources"):
        builder = _prepare(tmp_path, "facades", members)
    stored = _stored(builder, "train")
    assert sorted(stored) == ["1.jpg", "webp.jpg"]
    with Image.open(io.BytesIO(stored["webp.jpg"])) as image:
        assert (image.format, image.mode, image.size) == ("JPEG", "RGB", (32, 16))
    text = _warnings(caplog)
    assert "re-encoded 1 image(s)" in text and "WebP RGB: 1" in text
    assert "not a decodable image: 1" in text
    assert "tiff.jpg (not a decodable image: not JPEG, PNG, GIF, BMP or WebP" in text
    assert "over the pixel limit: 1" in text
    assert "big.jpg (over the pixel limit: 12000x6000 (72.0 megapixels) is over the limit of 16.8 megapixels" in text


def test_archive_without_splits_or_damaged(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _no_network(monkeypatch)
    with pytest.raises(DatasetError, match=r"holds no train/val/test folder.*Expected layout"):
        _prepare(tmp_path / "a", "facades", {"facades/images/1.jpg": pair_image(1)})
    archive = write_archive(tmp_path / "b" / "downloads" / "manual" / "facades.tar.gz", layout_members("facades"))
    archive.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    with pytest.raises(DatasetError, match=r"damaged or incomplete"):
        tfds.builder("pix2pix/facades", data_dir=str(tmp_path / "b")).download_and_prepare()


# --- download failures (loopback only) -----------------------------------------


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _assert_download_message(message: str, url: str, data_dir: Path, name: str) -> None:
    assert url in message
    assert str(data_dir / "downloads" / "manual" / f"{name}.tar.gz") in message
    assert "re-run" in message and "offline" in message


def test_download_failure_names_url_and_manual_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Connection refused on loopback (what "no network" looks like to tfds)."""
    port = _closed_port()
    monkeypatch.setattr(official, "URL_TEMPLATE", f"http://127.0.0.1:{port}/{{name}}.tar.gz")
    url = f"http://127.0.0.1:{port}/facades.tar.gz"
    builder = tfds.builder("pix2pix/facades", data_dir=str(tmp_path))
    from tensorflow_datasets.core.download import downloader

    retries = downloader.MAX_RETRIES
    start = time.monotonic()
    with pytest.raises(DatasetError) as info:
        builder.download_and_prepare()
    assert time.monotonic() - start < 20, "tfds retried for too long"
    assert downloader.MAX_RETRIES == retries  # restored
    _assert_download_message(str(info.value), url, tmp_path, "facades")
    assert "Connection" in str(info.value)


class _NotFound(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - the http.server API
        self.send_error(404)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def http_404() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _NotFound)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_http_error_names_url_and_manual_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, http_404: str
) -> None:
    monkeypatch.setattr(official, "URL_TEMPLATE", http_404 + "/pix2pix/{name}.tar.gz")
    (tmp_path / "downloads" / "manual").mkdir(parents=True)
    (tmp_path / "downloads" / "manual" / "facades.tar.gz").write_bytes(b"")  # another dataset's archive
    with pytest.raises(DatasetError) as info:
        tfds.builder("pix2pix/maps", data_dir=str(tmp_path)).download_and_prepare()
    _assert_download_message(str(info.value), f"{http_404}/pix2pix/maps.tar.gz", tmp_path, "maps")
    assert "404" in str(info.value)
