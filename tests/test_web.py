"""The static web page of `export.py --web` in a real headless Chromium (Debian's, through
Selenium and Debian's chromedriver), served by `python -m http.server` from the exported folder.

The page runs the generator's .tflite file with LiteRT.js (WebAssembly) in the browser; every
output it shows is read back from its canvas and compared with the Python LiteRT interpreter's
output for the same file and input. Chromium resolves no name but 127.0.0.1 and every request
it made is read from its performance log, so "no request outside its folder" is checked.

Skipped when Chromium, chromedriver, Selenium or LiteRT.js (`npm ci --prefix
pix2pix_tf/export/web`) is missing, except under CI (`CI` set), where that is a failure.
PIX2PIX_WRITE_DOCS_SCREENSHOT=1 also writes docs/images/web.png.
"""

from __future__ import annotations

import base64
import contextlib
import importlib.util
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
import urllib.request
from typing import Iterator

import numpy as np
import pytest
import tensorflow as tf
from test_demo import CHROMEDRIVER, CHROMIUM, find, finds, free_port, wait_for
from test_demo import _require as _require_tools

from pix2pix_tf import images
from pix2pix_tf.benchmark.web import chromium, translate_times
from pix2pix_tf.export import web
from pix2pix_tf.export.config import ExportError
from pix2pix_tf.inference.tflite_runner import TFLiteModel

from export_helpers import ROOT, exported, run, trained_run
from programs import run_program

pytestmark = pytest.mark.slow  # A browser and an export: the full suite (CI) runs it.

SCREENSHOT = os.path.join(ROOT, "docs", "images", "web.png")
# The page and the Python interpreter run the same XNNPACK kernels on the same float32 input; the
# shown pixels may still differ by one level where an output sits on a rounding boundary.
MAX_LEVELS = 1
TIMED_TRANSLATIONS = 10


def _require() -> None:
    missing = [path for path in (CHROMIUM, CHROMEDRIVER) if not os.path.exists(path)]
    missing += [name for name in ("selenium",) if importlib.util.find_spec(name) is None]
    try:
        web.runtime_version()
    except ExportError:
        missing.append(f"LiteRT.js ({web.install_hint()})")
    _require_tools(missing, "the web page test")


@pytest.fixture(scope="module")
def page(tmp_path_factory, data_dir) -> str:
    """The tiny run exported with --web (its default variant, dynamic_int8): the shared paper-mode
    export's page folder."""
    _require()
    export = exported(tmp_path_factory, data_dir)
    folder = export["web"]
    assert f"Web page: {folder}" in export["paper_stdout"]
    return folder


@contextlib.contextmanager
def serving(folder, log_folder) -> Iterator[dict]:
    """`folder` served over HTTP on a free local port, as a visitor's browser would fetch it."""
    port = free_port()
    log = open(log_folder / "stderr", "w+")
    process = subprocess.Popen([sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"], cwd=folder,
                               stdout=subprocess.DEVNULL, stderr=log)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 30
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2):
                break
        except OSError:
            assert time.monotonic() < deadline and process.poll() is None, "http.server did not answer"
            time.sleep(0.2)
    try:
        yield {"url": url, "port": port, "log": log}
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


@pytest.fixture(scope="module")
def server(page, tmp_path_factory):
    with serving(page, tmp_path_factory.mktemp("http")) as served:
        yield served


@pytest.fixture(scope="module")
def browser(server, tmp_path_factory):
    driver = chromium(CHROMIUM, CHROMEDRIVER, user_data_dir=str(tmp_path_factory.mktemp("chromium")),
                      performance_log=True)
    driver.set_script_timeout(60)
    yield driver
    driver.quit()


def until(driver, condition, what: str, timeout: float = 120):
    from selenium.common.exceptions import TimeoutException

    try:
        return wait_for(driver, condition, timeout)
    except TimeoutException:
        pytest.fail(f"{what} within {timeout} s; the status line: {status(driver)!r}")


def open_page(driver, server) -> None:
    driver.get(server["url"])
    until(driver, lambda d: status(d).startswith(("Ready", "error")), "the page was not ready")
    assert status(driver).startswith("Ready"), status(driver)


def status(driver) -> str:
    return find(driver, "#status").text


def translated(driver, before: str = "") -> str:
    """Waits for the status line of a new translation; returns it."""
    return until(driver, lambda d: status(d) != before and status(d).startswith(("Translated", "error"))
                 and status(d), "no translation")


def canvas(driver, element_id: str) -> np.ndarray:
    """The canvas's pixels, as a lossless PNG from the page."""
    url = driver.execute_script(f"return document.getElementById('{element_id}').toDataURL('image/png');")
    return tf.io.decode_png(base64.b64decode(url.split(",", 1)[1]), channels=3).numpy()


def interpreter_output(tflite_file: str, pixels: np.ndarray) -> np.ndarray:
    """The Python LiteRT interpreter's output for uint8 pixels, as uint8 pixels."""
    model = TFLiteModel(tflite_file, threads=1)
    output = model(images.to_signed(tf.constant(pixels)).numpy()[None])
    return images.to_uint8(tf.constant(output[0])).numpy()


def assert_close(shown: np.ndarray, expected: np.ndarray) -> None:
    difference = np.abs(shown.astype(int) - expected.astype(int))
    assert shown.shape == expected.shape and difference.max() <= MAX_LEVELS, difference.max()
    assert (difference == 0).mean() > 0.99, (difference == 0).mean()
    print(f"\npage vs Python LiteRT interpreter: max {difference.max()} levels, {(difference == 0).mean():.2%} exact")


def test_an_uploaded_input_gives_the_python_interpreter_s_output(page, server, browser):
    config = json.load(open(os.path.join(page, "page.json")))
    assert config["model"]["file"] == "tiny_dynamic_int8.tflite" and config["model"]["variant"] == "dynamic_int8"
    open_page(browser, server)
    assert "tiny_dynamic_int8.tflite" in find(browser, "#model-info").text
    assert "int8 weights, float32 activations" in find(browser, "#model-info").text
    example = os.path.join(page, config["examples"][1])
    before = status(browser)
    find(browser, "#upload").send_keys(example)
    line = translated(browser, before)
    assert line.startswith("Translated by tiny_dynamic_int8.tflite (dynamic_int8) in ") and " ms " in line, line
    pixels = tf.io.decode_png(tf.io.read_file(example)).numpy()
    np.testing.assert_array_equal(canvas(browser, "input"), pixels)  # The model input, exactly.
    assert_close(canvas(browser, "output"), interpreter_output(os.path.join(page, "tiny_dynamic_int8.tflite"), pixels))


def test_a_stroke_is_drawn_in_the_dataset_s_classes_and_translated(page, server, browser):
    from selenium.webdriver.common.action_chains import ActionChains

    open_page(browser, server)
    assert "ellipse" in find(browser, "#legend").text  # The run is `shapes`: its classes are the palette.
    assert len(finds(browser, "#palette button")) == 6 and not finds(browser, "#palette input")
    before = status(browser)
    ActionChains(browser).move_to_element_with_offset(find(browser, "#input"), -60, -40).click_and_hold() \
        .move_by_offset(40, 20).move_by_offset(40, 20).release().perform()
    assert translated(browser, before).startswith("Translated by"), status(browser)
    drawn = canvas(browser, "input")
    colours = {tuple(c) for c in drawn.reshape(-1, 3)}
    assert colours == {(0, 0, 0), (255, 0, 0)}  # Background and the default brush (ellipse), nothing between.
    assert_close(canvas(browser, "output"), interpreter_output(os.path.join(page, "tiny_dynamic_int8.tflite"), drawn))


def test_a_file_that_is_not_an_image_is_refused_in_the_page(page, server, browser, tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("hello, not an image")
    open_page(browser, server)
    before = canvas(browser, "input")
    find(browser, "#upload").send_keys(str(notes))
    until(browser, lambda d: status(d).startswith("error"), "no refusal")
    assert status(browser).startswith("error: notes.txt is not an image this browser can decode"), status(browser)
    np.testing.assert_array_equal(canvas(browser, "input"), before)  # The input is kept.


def test_examples_and_the_time_per_translation(page, server, browser):
    open_page(browser, server)
    assert status(browser) == "Ready: draw on the input, upload an image or click an example."
    assert find(browser, "#examples-heading").is_displayed()
    examples = finds(browser, "#examples button")
    assert len(examples) == 2
    before = status(browser)
    examples[0].click()
    translated(browser, before)
    pixels = tf.io.decode_png(tf.io.read_file(os.path.join(page, "examples", "held_out_000.png"))).numpy()
    assert_close(canvas(browser, "output"), interpreter_output(os.path.join(page, "tiny_dynamic_int8.tflite"), pixels))
    if os.environ.get("PIX2PIX_WRITE_DOCS_SCREENSHOT") == "1":
        browser.save_screenshot(SCREENSHOT)
    times = translate_times(browser, TIMED_TRANSLATIONS)
    print(f"\nweb page, tiny_dynamic_int8.tflite (unet_128 ngf=8, 128x128), LiteRT.js on CPU (WebAssembly): "
          f"median {statistics.median(times):.1f} ms, min {min(times):.1f} ms over {TIMED_TRANSLATIONS} translations")
    assert all(t > 0 for t in times)


def test_a_page_without_examples_offers_none(page, browser, tmp_path):
    """An export without held-out images writes a page.json with no examples: the page does not
    point its visitor at any."""
    bare = shutil.copytree(page, tmp_path / "page")
    config = json.loads((bare / "page.json").read_text())
    (bare / "page.json").write_text(json.dumps({**config, "examples": []}))
    with serving(bare, tmp_path) as served:
        open_page(browser, served)
        assert status(browser) == "Ready: draw on the input or upload an image."
        assert finds(browser, "#examples button") == [] and not find(browser, "#examples-heading").is_displayed()
    browser.get_log("performance")  # Read, and so emptied: the requests of the shared page's loads stay apart.


def test_nothing_is_fetched_from_outside_the_page_s_folder(page, server, browser):
    """Every request of this module's page loads went to the page's server, for a file in its folder."""
    open_page(browser, server)
    urls = {json.loads(entry["message"])["message"]["params"].get("request", {}).get("url", "")
            for entry in browser.get_log("performance")}
    network = {url for url in urls if url.split(":")[0] in ("http", "https", "ws", "wss")}
    local = f"http://127.0.0.1:{server['port']}/"
    assert all(url.startswith(local) for url in network), sorted(network)
    files = {url[len(local):].split("?")[0] for url in network}
    assert {"app.js", "page.json", "tiny_dynamic_int8.tflite", "runtime/litert.js"} <= files, files
    assert all(name == "" or os.path.isfile(os.path.join(page, name)) for name in files), files
    server["log"].seek(0)
    assert '" 404 ' not in server["log"].read()  # The page asked for nothing its folder lacks.


def test_web_refusals_are_one_line_messages(tmp_path, page, tmp_path_factory, data_dir):
    with pytest.raises(ExportError, match=r"npm ci --prefix .*pix2pix_tf/export/web"):
        web.runtime_version(str(tmp_path))
    workdir = trained_run(tmp_path_factory, data_dir)
    export_dir = tmp_path / "export"
    result = run_program("export", f"--workdir={workdir}", f"--export_dir={export_dir}", "--web",
                         f"--web_runtime={tmp_path}")
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-3000:]
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and lines[0].startswith("error: --web needs the web runtime LiteRT.js"), lines
    assert not export_dir.exists()  # Refused before any work.
    result = run_program("export", f"--workdir={tmp_path}", "--web", "--tflite=float32")
    assert result.returncode != 0 and "Traceback" not in result.stderr
    message = "error: --web runs --web_variant=dynamic_int8 in the page: add it to --tflite"
    assert message in result.stderr, result.stderr


def test_a_variant_equal_to_the_saved_model_passes_and_its_page_json_stays_json(tmp_path, page):
    """Outputs equal to the SavedModel's give a pooled PSNR of +inf: the variant was refused as
    below its floor, and with --force page.json held `Infinity`, which a browser's JSON refuses
    (the page never loaded)."""
    from pix2pix_tf.evaluation.metrics import pooled_psnr
    from pix2pix_tf.export import tflite

    outputs = np.linspace(-1, 1, 48, dtype=np.float32).reshape(1, 4, 4, 3)
    assert pooled_psnr(outputs, outputs) == float("inf") and tflite.meets_floor(pooled_psnr(outputs, outputs), 60)
    assert not tflite.meets_floor(pooled_psnr(outputs, outputs * np.nan), 0)
    config = json.load(open(os.path.join(page, "page.json")))
    facts = web.PageFacts("tiny", 1, config["model"]["variant"], config["image_size"], 3, 3, None, None, 2,
                          float("inf"))
    written = web.write_page(str(tmp_path), os.path.join(page, config["model"]["file"]), facts,
                             np.zeros((0, config["image_size"], config["image_size"], 3), np.float32))

    def not_json(constant: str):
        raise ValueError(f"{constant} is not JSON")

    assert json.loads(open(written).read(), parse_constant=not_json)["model"]["psnr_db_vs_saved_model"] == "inf"


@pytest.mark.parametrize("manifest", [b"{bad", b"{}", b"[]", b'{"version": 3}', b"\xff", None])
def test_a_damaged_runtime_is_refused_as_not_installed(tmp_path, manifest):
    """A runtime whose package.json is not JSON, names no version, or is missing gets the
    one-line message of a missing runtime (it was a JSONDecodeError or KeyError traceback)."""
    for package, path in web.RUNTIME_FILES.values():
        (tmp_path / package / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / package / path).write_bytes(b"")
    package_json = tmp_path / web.RUNTIME_PACKAGE / "package.json"
    package_json.write_bytes(b'{"name": "@litertjs/core", "version": "2.1.0"}')
    assert web.runtime_version(str(tmp_path)) == "2.1.0"
    if manifest is None:
        package_json.unlink()
    else:
        package_json.write_bytes(manifest)
    with pytest.raises(ExportError) as caught:
        web.runtime_version(str(tmp_path))
    message = str(caught.value)
    assert message.startswith("--web needs the web runtime LiteRT.js (@litertjs/core), which is not installed ("), \
        message
    assert str(package_json) in message and f"run `{web.install_hint()}`" in message and "\n" not in message


def test_the_page_benchmark_prints_the_time_per_translation(page):
    result = run([sys.executable, "-m", "pix2pix_tf.benchmark.web", f"--page={page}", "--translations=2"],
                 timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "tiny_dynamic_int8.tflite (int8 weights, float32 activations, 128x128), LiteRT.js 2.5.3" in result.stdout
    assert "translation median " in result.stdout and " over 2" in result.stdout, result.stdout


GOOD_PAGE_JSON = {"image_size": 128, "model": {"file": "m.tflite", "precision": "float32"}, "runtime": {"version": "1"}}


@pytest.mark.parametrize("page_json, flags, message", [
    ('{"image_size": 12', [], "page.json is not JSON (JSONDecodeError: "),
    ('{"image_size": 128}', [], "page.json lacks the model's file, precision or image_size or the runtime's version"),
    (json.dumps(GOOD_PAGE_JSON), ["--translations=0"], "--translations must be at least 1, got 0."),
    (json.dumps(GOOD_PAGE_JSON), ["--timeout=0"], "--timeout must be at least 1, got 0."),
    (json.dumps(GOOD_PAGE_JSON), ["--chromium=/nonexistent"], "--chromium=/nonexistent is not an executable file"),
], ids=["not_json", "fields_missing", "no_translation", "no_time", "no_chromium"])
def test_the_page_benchmark_refuses_what_it_cannot_time_in_one_line(tmp_path, page_json, flags, message):
    """Before any browser starts: no JSON or Selenium traceback."""
    (tmp_path / "page.json").write_text(page_json)
    result = subprocess.run([sys.executable, "-m", "pix2pix_tf.benchmark.web", f"--page={tmp_path}", *flags],
                            capture_output=True, text=True, timeout=120, cwd=ROOT)
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert len(errors) == 1 and message in errors[0], errors


def test_a_page_that_never_becomes_ready_is_one_line(tmp_path):
    """Chromium opens a page that never says "Ready": Selenium's timeout, named in one line."""
    _require()
    (tmp_path / "page.json").write_text(json.dumps(GOOD_PAGE_JSON))
    (tmp_path / "index.html").write_text('<p id="status">Loading</p>')
    result = subprocess.run([sys.executable, "-m", "pix2pix_tf.benchmark.web", f"--page={tmp_path}", "--timeout=1",
                             f"--chromium={CHROMIUM}", f"--chromedriver={CHROMEDRIVER}"],
                            capture_output=True, text=True, timeout=300, cwd=ROOT)
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert errors == ["error: a page did not answer in time (--timeout=1 s to load, 600 s to translate)."], errors
