"""The demo page end to end: `python -m pix2pix_tf.demo` in a subprocess on a tiny trained run,
driven by a real headless Chromium (Debian's, through Selenium and Debian's chromedriver).

The browser uploads files, draws a stroke with pointer actions and clicks examples; every
output the page shows is read back as the PNG the browser loaded and compared with the model's
output computed here through `ModelRequest.of(...).resolve().open(DETERMINISTIC)`. The server runs with an
audit hook that reports any connection or name lookup outside this machine, and Chromium
resolves no name but 127.0.0.1, so "offline" is checked, not assumed. The other sources
(SavedModel, TFLite, TensorFlow Serving through the REST stand-in of test_serving_client.py)
are the same page over another `DemoModel`; they are checked through `DemoModel.translate`.

The browser tests are skipped when Chromium, chromedriver, Selenium or Gradio is missing, the
others when Gradio is, except under CI (`CI` set), where that is a failure.
PIX2PIX_WRITE_DOCS_SCREENSHOT=1 also writes docs/images/demo.png.
"""

from __future__ import annotations

import base64
import importlib.util
import json
import os
import socket
import sys
import time
import urllib.request

import numpy as np
import pytest
import tensorflow as tf

from pix2pix_tf import images
from pix2pix_tf.benchmark.web import chromium
from pix2pix_tf.config import TrainConfig
from pix2pix_tf.inference.mode import DETERMINISTIC
from pix2pix_tf.inference.request import ModelRequest

import forked
from export_helpers import ROOT, trained_run
from programs import run_program

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
MAX_PIXELS = 20000  # The server's --max_pixels: a 200x200 upload is refused, 128x128 inputs are not.
SCREENSHOT = os.path.join(ROOT, "docs", "images", "demo.png")

# The server: the demo's entry point behind an audit hook that reports network use off this machine.
SERVE = """
import runpy, sys
LOCAL = {None, "127.0.0.1", "::1", "localhost", b"127.0.0.1", b"localhost"}
def hook(event, args):
    if event == "socket.getaddrinfo" and args[0] not in LOCAL:
        sys.stderr.write(f"OUTSIDE lookup {args[0]!r}\\n")
    if event == "socket.connect" and isinstance(args[1], tuple) and args[1][0] not in LOCAL:
        sys.stderr.write(f"OUTSIDE connect {args[1]!r}\\n")
sys.addaudithook(hook)
runpy.run_module("pix2pix_tf.demo", run_name="__main__", alter_sys=True)
"""


def _require(missing: list[str], what: str = "the demo test") -> None:
    """Skips a test whose tools are missing, except under CI, where the browser tests must run."""
    if missing:
        message = (f"{what} needs {', '.join(missing)} (apt-get install chromium chromium-driver; "
                   "pip install -e '.[demo,test]')")
        if os.environ.get("CI"):
            pytest.fail(f"{message}: CI must run it.")
        pytest.skip(message)


def _modules(*names: str) -> list[str]:
    return [name for name in names if importlib.util.find_spec(name) is None]


@pytest.fixture(scope="module")
def gradio_installed() -> None:
    _require(_modules("gradio"))


@pytest.fixture(scope="module")
def browser_tools() -> None:
    _require([path for path in (CHROMIUM, CHROMEDRIVER) if not os.path.exists(path)]
             + _modules("gradio", "selenium"))


@pytest.fixture(scope="module")
def run(tmp_path_factory, data_dir) -> str:
    return trained_run(tmp_path_factory, data_dir)


@pytest.fixture(scope="module")
def held_out(run, tmp_path_factory) -> list[str]:
    """Two held-out inputs of the run as PNGs, written as the demo writes its examples."""
    from pix2pix_tf.demo.model import write_held_out_inputs

    return list(write_held_out_inputs(TrainConfig.load(run), 2, str(tmp_path_factory.mktemp("held_out"))))


@pytest.fixture(scope="module")
def deterministic(run):
    return ModelRequest.of(workdir=run).resolve().open(DETERMINISTIC)


def expected(translator, data: bytes) -> tuple[np.ndarray, np.ndarray]:
    """(model input, output) as uint8, computed here from the file's bytes."""
    pixels = images.decode_bytes(data, MAX_PIXELS).pixels
    prepared = images.preprocess(tf.constant(pixels), translator.input_nc, translator.image_size).numpy()
    return images.to_uint8(prepared).numpy(), images.to_uint8(translator(prepared[None], 0)[0]).numpy()


def read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(browser_tools, run, tmp_path_factory):
    port = free_port()
    logs = tmp_path_factory.mktemp("server")
    out, err = open(logs / "stdout", "w+"), open(logs / "stderr", "w+")
    command = [sys.executable, "-c", SERVE, f"--workdir={run}", f"--port={port}", f"--max_pixels={MAX_PIXELS}",
               "--num_examples=2"]
    process = forked.Popen(command, cwd=ROOT, stdout=out, stderr=err)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 240
    while True:
        if process.poll() is not None:
            err.seek(0)
            pytest.fail(f"the demo exited with {process.returncode}: {err.read()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as answer:
                if answer.status == 200:
                    break
        except OSError:
            pass
        assert time.monotonic() < deadline, "the demo did not answer within 240 s"
        time.sleep(0.5)
    yield {"url": url, "port": port, "stdout": out, "stderr": err}
    process.terminate()
    process.wait(timeout=30)
    out.close()
    err.close()


@pytest.fixture(scope="module")
def browser(server, tmp_path_factory):
    # No name resolves but the demo's address: a fetch from the internet would fail.
    driver = chromium(CHROMIUM, CHROMEDRIVER, user_data_dir=str(tmp_path_factory.mktemp("chromium")),
                      window_size="1400,1000", performance_log=True)
    driver.set_script_timeout(30)
    yield driver
    driver.quit()


# ----------------------------------------------------------------------------- the page


def wait_for(driver, condition, timeout: float = 60):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout).until(condition)


def find(driver, css: str):
    from selenium.webdriver.common.by import By

    return driver.find_element(By.CSS_SELECTOR, css)


def finds(driver, css: str):
    from selenium.webdriver.common.by import By

    return driver.find_elements(By.CSS_SELECTOR, css)


def open_page(driver, server) -> None:
    driver.get(server["url"])
    wait_for(driver, lambda d: finds(d, "#draw canvas"))


def status(driver) -> str:
    return find(driver, "#status textarea").get_attribute("value")


def tab(driver, name: str) -> None:
    from selenium.webdriver.common.by import By

    driver.find_element(By.XPATH, f"//button[@role='tab'][normalize-space()='{name}']").click()


def upload(driver, path: str) -> None:
    tab(driver, "Upload")
    find(driver, "#upload input[type=file]").send_keys(path)
    wait_for(driver, lambda d: finds(d, f"#upload td.filename[aria-label='{os.path.basename(path)}']"))


def clear_upload(driver) -> None:
    """Removes the uploaded file with the File component's Clear button, as a user would."""
    find(driver, "#upload button[aria-label='Clear']").click()
    wait_for(driver, lambda d: finds(d, "#upload input[type=file]"))


def translate(driver) -> str:
    """Clicks Translate and waits for the answer; returns the status line."""
    before = status(driver)
    find(driver, "#translate").click()
    return wait_for(driver, lambda d: status(d) != before and status(d))


def shown(driver, element_id: str) -> np.ndarray:
    """The pixels of the image the page shows in `element_id`, as the browser fetched them."""
    src = find(driver, f"#{element_id} img").get_attribute("src")
    encoded = driver.execute_async_script("""
        const done = arguments[arguments.length - 1];
        fetch(arguments[0]).then(r => r.arrayBuffer()).then(buffer => {
            let text = ""; for (const byte of new Uint8Array(buffer)) text += String.fromCharCode(byte);
            done(btoa(text));
        }).catch(e => done("ERROR " + e));""", src)
    assert not encoded.startswith("ERROR"), encoded
    data = base64.b64decode(encoded)
    assert data.startswith(b"\x89PNG"), "the page shows a PNG, lossless"
    return tf.io.decode_png(data).numpy()


@pytest.mark.slow
def test_the_http_api_translates_an_uploaded_file(server, held_out, deterministic):
    """Gradio's API (`/translate`: drawn, uploaded, noisy) has no tab to choose: a file sent with
    no drawing is translated (it answered 'Nothing to translate', the page's tab state being
    the drawing's by default). First of the module's tests of the server: its first translation
    (the model's first call) is not waited for by a browser, whose page animates while it waits."""
    from gradio_client import Client, handle_file

    model_input, output, status = Client(server["url"], verbose=False).predict(None, handle_file(held_out[0]), False,
                                                                               api_name="/translate")
    assert status.startswith("Translated by checkpoint"), status
    expected_input, expected_output = expected(deterministic, read(held_out[0]))
    np.testing.assert_array_equal(tf.io.decode_png(read(model_input)).numpy(), expected_input)
    np.testing.assert_array_equal(tf.io.decode_png(read(output)).numpy(), expected_output)


@pytest.mark.slow
def test_an_uploaded_held_out_input_gives_the_model_s_deterministic_output(server, browser, held_out,
                                                                           deterministic):
    open_page(browser, server)
    upload(browser, held_out[0])
    assert translate(browser).startswith("Translated by checkpoint"), status(browser)
    model_input, output = expected(deterministic, read(held_out[0]))
    np.testing.assert_array_equal(shown(browser, "model-input"), model_input)
    np.testing.assert_array_equal(shown(browser, "output"), output)  # Exactly: the page's PNG is lossless.


@pytest.mark.slow
def test_a_stroke_on_the_label_canvas_is_translated(server, browser):
    from selenium.webdriver.common.action_chains import ActionChains

    open_page(browser, server)
    assert "ellipse" in find(browser, "#legend").text  # The run is `shapes`: its classes are the palette.
    canvas = find(browser, "#draw canvas")
    ActionChains(browser).move_to_element_with_offset(canvas, -60, -40).click_and_hold().move_by_offset(40, 20) \
        .move_by_offset(40, 20).release().perform()
    assert translate(browser).startswith("Translated by"), status(browser)
    drawn = shown(browser, "model-input").reshape(-1, 3).astype(int)
    red = np.all(np.abs(drawn - [255, 0, 0]) <= 8, axis=1).mean()  # The default brush: class "ellipse".
    black = np.all(drawn <= 8, axis=1).mean()  # The empty canvas: class "background".
    assert red > 0.005 and black > 0.5 and red + black > 0.95, (red, black)
    assert shown(browser, "output").shape == (128, 128, 3)


@pytest.mark.slow
def test_bad_uploads_show_the_image_policy_s_message_in_the_page(server, browser, tmp_path):
    not_an_image = tmp_path / "notes.txt"
    not_an_image.write_text("hello, not an image")
    too_large = tmp_path / "large.png"
    too_large.write_bytes(tf.io.encode_png(np.zeros((200, 200, 3), np.uint8)).numpy())
    open_page(browser, server)
    for path in (not_an_image, too_large):
        with pytest.raises(images.ImageError) as refusal:
            images.decode_bytes(read(str(path)), MAX_PIXELS, path.name)
        if path is too_large:  # The same page, its refused file removed: loading the page again costs seconds.
            clear_upload(browser)
        upload(browser, str(path))
        assert translate(browser) == f"error: {refusal.value}"
        assert not finds(browser, "#output img")
    server["stderr"].seek(0)
    log = server["stderr"].read()
    assert "Traceback" not in log and "not JPEG, PNG" in log  # Logged as a refusal, not as a server error.


@pytest.mark.slow
def test_examples_and_paper_mode(server, browser, held_out, deterministic):
    open_page(browser, server)
    examples = finds(browser, "#examples button.gallery-item")
    assert len(examples) == 2
    examples[0].click()
    wait_for(browser, lambda d: status(d).startswith("Translated by"))
    model_input, output = expected(deterministic, read(held_out[0]))
    np.testing.assert_array_equal(shown(browser, "output"), output)
    if os.environ.get("PIX2PIX_WRITE_DOCS_SCREENSHOT") == "1":
        browser.set_window_size(1400, 1250)
        browser.save_screenshot(SCREENSHOT)
    find(browser, "#paper input[type=checkbox]").click()
    before = status(browser)
    examples[0].click()
    wait_for(browser, lambda d: status(d) != before and "dropout on" in status(d))
    assert not np.array_equal(shown(browser, "output"), output)  # The noise z changes the picture.


@pytest.mark.slow
def test_nothing_is_fetched_from_outside_this_machine(server, browser):
    """Everything the browser asked for, over all tests of this module, came from the demo's server,
    and the server looked up no name and opened no connection off this machine."""
    if not browser.current_url.startswith(server["url"]):  # Run alone: no test before it loaded the page.
        open_page(browser, server)
    urls = [json.loads(entry["message"])["message"]["params"].get("request", {}).get("url", "")
            for entry in browser.get_log("performance")]
    network = {url for url in urls if url.split(":")[0] in ("http", "https", "ws", "wss")}
    assert len(network) > 10  # The page, its scripts and styles, the images: the log was read.
    local = f"127.0.0.1:{server['port']}/"
    assert all(url.split("//", 1)[1].startswith(local) for url in network), sorted(network)
    server["stderr"].seek(0)
    assert "OUTSIDE" not in server["stderr"].read()


# ----------------------------------------------------------------------------- the other sources


def test_saved_model_tflite_and_serving_sources(gradio_installed, export, servers, held_out, tmp_path):
    """The page's model over an export and over TensorFlow Serving gives what that model gives."""
    from pix2pix_tf.demo.app import build_page
    from pix2pix_tf.demo.model import COLOUR, LABELS, DemoConfig, load_demo_model

    data = read(held_out[0])
    saved_model = load_demo_model(DemoConfig(ModelRequest.of(saved_model=export["deterministic"])), str(tmp_path))
    assert not saved_model.has_dropout  # Exported --deterministic.
    assert saved_model.drawing.kind == LABELS and len(saved_model.examples) == 6  # From the run it names.
    result = saved_model.translate(data, "x.png", paper=False)
    source = ModelRequest.of(saved_model=export["deterministic"]).resolve().open(DETERMINISTIC)
    np.testing.assert_array_equal(result.output, expected(source, data)[1])

    tflite = os.path.join(export["tflite_paper"], "tiny_float32.tflite")
    lite = load_demo_model(DemoConfig(ModelRequest.of(tflite=tflite), num_examples=0))
    assert not lite.has_dropout and lite.drawing.kind == LABELS  # No dropout in TFLite; the run is known.
    toggle = next(b for b in build_page(lite).blocks.values() if getattr(b, "elem_id", None) == "paper")
    assert toggle.interactive is False and "no dropout" in toggle.info
    result = lite.translate(data, "x.png", paper=True)  # Paper mode asked, deterministic given.
    source = ModelRequest.of(tflite=tflite).resolve().open(DETERMINISTIC)
    np.testing.assert_array_equal(result.output, expected(source, data)[1])

    serving = load_demo_model(DemoConfig(ModelRequest.of(serving_url=servers["rest"], model_name="tiny")))
    assert serving.image_size == 128 and serving.examples == () and serving.drawing.kind == COLOUR
    prepared = images.preprocess(tf.constant(images.decode_bytes(data, MAX_PIXELS).pixels), 3, 128).numpy()
    reference = servers["fake"].run("translate_float_deterministic", {"images": prepared[None]})["output"]
    result = serving.translate(data, "x.png", paper=False)
    np.testing.assert_array_equal(result.output, images.to_uint8(reference[0]).numpy())
    assert "translate_float_deterministic" in result.model
    with pytest.raises(images.ImageError, match="not JPEG, PNG"):
        serving.translate(b"plain text", "notes.txt", paper=False)


def test_the_canvas_fits_the_dataset():
    from pix2pix_tf.data.sources import shapes
    from pix2pix_tf.demo.model import COLOUR, EDGES, LABELS, drawing_for

    labels = drawing_for("shapes/64", "AtoB")
    assert labels.kind == LABELS and labels.fixed and labels.background == "#000000"
    assert sorted(labels.colours) == sorted("#" + bytes(c).hex() for c in shapes.LABEL_COLOURS)
    assert [name for _, name in labels.names] == list(shapes.CLASS_NAMES)
    edges = drawing_for("edges2shoes", "AtoB")
    assert (edges.kind, edges.colours, edges.background, edges.fixed) == (EDGES, ("#000000",), "#ffffff", True)
    for dataset, direction in (("shapes", "BtoA"), ("facades", "BtoA"), ("edges2handbags", "BtoA"), (None, None)):
        drawing = drawing_for(dataset, direction)  # Photos, or a model whose run is unknown.
        assert drawing.kind == COLOUR and not drawing.fixed, (dataset, direction)


def test_the_demo_refuses_bad_flags_with_a_message(gradio_installed):
    from pix2pix_tf.demo.model import DemoConfig
    from pix2pix_tf.errors import ConfigError

    with pytest.raises(ConfigError, match=r"exactly one of --workdir, --saved_model, --tflite or --onnx to name the "
                                          r"model \(the demo also takes --serving_url\); got --workdir and "
                                          "--serving_url"):
        DemoConfig(ModelRequest.of(workdir="a", serving_url="http://localhost:8501"))
    with pytest.raises(ConfigError, match="got none"):
        DemoConfig(ModelRequest.of())
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        in_use = (f"error: Cannot listen on 127.0.0.1:{port} (Address already in use): the port is in use, or the "
                  "address is not one of this machine's. Choose another --port or --host.")
        refused = ("error: TensorFlow Serving does not answer as a pix2pix export: "
                   "http://127.0.0.1:9/v1/models/tiny:predict: connection refused")
        for flag, message in ((f"--port={port}", in_use), (f"--port={free_port()}", refused)):
            result = run_program("demo", "--serving_url=http://127.0.0.1:9", "--model_name=tiny", flag)
            assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-2000:]
            assert message in result.stderr, result.stderr[-2000:]
            assert [line.startswith("error:") for line in result.stderr.splitlines()].count(True) == 1


def test_a_server_that_does_not_answer_json_is_one_message(gradio_installed, misbehaving):
    """Whatever is at --serving_url (here a web server answering HTML), the demo says what it
    got, from which URL, in one line, and stops before the page starts."""
    result = run_program("demo", f"--serving_url={misbehaving}", "--model_name=html", f"--port={free_port()}")
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-2000:]
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert lines == [f"error: TensorFlow Serving does not answer as a pix2pix export: {misbehaving}/v1/models/html:"
                     "predict: the answer (HTTP 200, 35 bytes) is not JSON: '<html><body>It works!</body></html>'. "
                     "Is this TensorFlow Serving's REST port?"], result.stderr[-2000:]
