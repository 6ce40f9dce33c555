"""Time per translation of `export.py --web` pages, in headless Chromium on this machine.

    python -m pix2pix_tf.benchmark.web --page=runs/quickstart/export/web/pix2pix/1
    python -m pix2pix_tf.benchmark.web --page=EXPORT/web/pix2pix/1,EXPORT/web/pix2pix/2   # side by side

Serves each folder on 127.0.0.1 (as `python -m http.server` would), opens it in its own Chromium
through Selenium (`pip install -e ".[test]"`; Debian's chromium and chromium-driver), waits until
the runtime and the model are loaded, puts the first example (or the empty canvas) in and
translates once (warm-up, not counted). Then, in `--translations` rounds, clicks Translate once on
every page in turn, so that a burst of load from other processes hits all pages alike. Prints
each page's load time and the median and minimum of the times the page itself states (the model
run and reading its output).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import http.server
import os
import statistics
import threading
import time
from typing import Iterator, Optional

from absl import app, flags

from pix2pix_tf import cli, regular_files
from pix2pix_tf.config_checks import check_positive
from pix2pix_tf.errors import ConfigError, Pix2pixError

FLAGS = flags.FLAGS


class PageError(Pix2pixError):
    """A page that did not load or translate, or a browser that could not run it."""


def define_flags() -> None:
    """The program's flags; defined when it runs, not on import (the tests import every module)."""
    cli.define_list("page", None, "The exported pages' folders (<export_dir>/web/<model_name>/<version>), "
                      "comma-separated: timed side by side.")
    flags.DEFINE_integer("translations", 10, "Timed rounds: translations per page (after one warm-up).")
    cli.define_path("chromium", "/usr/bin/chromium", "Chromium's binary.")
    cli.define_path("chromedriver", "/usr/bin/chromedriver", "Its driver.")
    flags.DEFINE_integer("timeout", 300, "Seconds the page may take to load the runtime and the model.")


@dataclasses.dataclass(frozen=True)
class PageTiming:
    load_s: float  # From opening the page to "Ready": runtime, model download and compilation.
    milliseconds: tuple[float, ...]  # Per translation, as the page states them.

    @property
    def median_ms(self) -> float:
        return statistics.median(self.milliseconds)

    def line(self) -> str:
        return (f"loaded in {self.load_s:.1f} s; translation median {self.median_ms:.1f} ms, "
                f"min {min(self.milliseconds):.1f} ms over {len(self.milliseconds)}")


def page_status(driver) -> str:
    return driver.find_element("id", "status").text


TRANSLATE_TIMEOUT = 600  # Seconds one translation may take.


def translate_times(driver, count: int, timeout: float = TRANSLATE_TIMEOUT) -> tuple[float, ...]:
    """Clicks Translate `count` times on an open, ready page; the time the page states for each."""
    from selenium.webdriver.support.ui import WebDriverWait

    times = []
    for _ in range(count):
        driver.execute_script("document.getElementById('status').textContent = '';")
        driver.find_element("id", "translate").click()
        line = WebDriverWait(driver, timeout).until(lambda d: page_status(d).startswith(("Translated", "error"))
                                                    and page_status(d))
        if line.startswith("error"):
            raise PageError(f"{driver.current_url}: {line}")
        times.append(float(driver.find_element("id", "status").get_attribute("data-milliseconds")))
    return tuple(times)


def open_page(driver, url: str, timeout: float) -> float:
    """Opens a page, waits until it is ready and translates its first example once; the load time."""
    from selenium.webdriver.support.ui import WebDriverWait

    start = time.monotonic()
    driver.get(url)
    WebDriverWait(driver, timeout).until(lambda d: page_status(d).startswith(("Ready", "error")))
    load_s = time.monotonic() - start
    if not page_status(driver).startswith("Ready"):
        raise PageError(f"{url}: {page_status(driver)}")
    examples = driver.find_elements("css selector", "#examples button")
    if examples:
        examples[0].click()
    translate_times(driver, 1)  # Warm-up.
    return load_s


def time_pages(drivers: list, urls: list[str], rounds: int, timeout: float) -> list[PageTiming]:
    """Each page opened in its own driver, then timed in interleaved rounds."""
    loads = [open_page(driver, url, timeout) for driver, url in zip(drivers, urls)]
    times: list[list[float]] = [[] for _ in drivers]
    for _ in range(rounds):
        for index, driver in enumerate(drivers):
            times[index].extend(translate_times(driver, 1))
    return [PageTiming(load, tuple(t)) for load, t in zip(loads, times)]


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


@contextlib.contextmanager
def serve(folder: str) -> Iterator[str]:
    """The folder served on a free port of 127.0.0.1, as `python -m http.server` serves it; its URL."""
    handler = functools.partial(_QuietHandler, directory=folder)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()


def chromium(binary: str, driver_path: str, *, user_data_dir: Optional[str] = None, window_size: str = "1200,1000",
             performance_log: bool = False):
    """Headless Chromium that resolves no name but 127.0.0.1, so a page (or the demo) that
    fetched anything from the internet would fail. `performance_log`: keep the network log
    (`driver.get_log("performance")`) to see every request made."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for argument in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                     "--disable-component-update", "--no-first-run", "--disable-sync", f"--window-size={window_size}",
                     "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"):
        options.add_argument(argument)
    if user_data_dir:
        options.add_argument(f"--user-data-dir={user_data_dir}")
    if performance_log:
        options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    return webdriver.Chrome(service=Service(driver_path), options=options)  # No Selenium Manager download.


def _page_line(folder: str) -> str:
    """What the page's page.json says it runs (the model file, its precision and size, the
    runtime's version): read bounded, each field checked, before any browser starts."""
    config = regular_files.read_json_object(os.path.join(folder, "page.json"))
    if config is None:
        raise app.UsageError(f"--page={folder}: not a page folder of export.py --web (no page.json).")
    model, runtime, size = config.get("model"), config.get("runtime"), config.get("image_size")
    try:
        facts = (model["file"], model["precision"], int(size), runtime["version"])
    except (KeyError, TypeError, ValueError):
        raise ConfigError(f"--page={folder}: page.json lacks the model's file, precision or image_size or the "
                          "runtime's version: was it written by export.py --web?") from None
    return f"{facts[0]} ({facts[1]}, {facts[2]}x{facts[2]}), LiteRT.js {facts[3]}"


def _check_browser() -> None:
    for name in ("chromium", "chromedriver"):
        path = getattr(FLAGS, name)
        if not (os.path.isfile(path) and os.access(path, os.X_OK)):
            raise ConfigError(f"--{name}={path} is not an executable file (on Debian: apt-get install chromium "
                              "chromium-driver).")


@contextlib.contextmanager
def _browser_failures_named() -> Iterator[None]:
    """Selenium's exceptions (a browser that did not start, a page not ready in time) as one line."""
    from selenium.common.exceptions import TimeoutException, WebDriverException

    try:
        yield
    except TimeoutException:
        raise PageError(f"a page did not answer in time (--timeout={FLAGS.timeout} s to load, "
                        f"{TRANSLATE_TIMEOUT} s to translate).") from None
    except WebDriverException as e:
        first = ((e.msg or "").strip().splitlines() or [type(e).__name__])[0]
        raise PageError(f"Chromium ({FLAGS.chromium}, driver {FLAGS.chromedriver}) failed: {first}") from None


def main(argv: list[str]) -> int:
    cli.reject_arguments(argv)
    if not FLAGS.page:
        raise app.UsageError("--page is required: the folder(s) export.py --web wrote.")
    check_positive(translations=FLAGS.translations, timeout=FLAGS.timeout)
    lines = [_page_line(folder) for folder in FLAGS.page]
    _check_browser()
    with contextlib.ExitStack() as stack, _browser_failures_named():
        urls = [stack.enter_context(serve(os.path.abspath(folder))) for folder in FLAGS.page]
        drivers = []
        for _ in urls:
            drivers.append(chromium(FLAGS.chromium, FLAGS.chromedriver))
            stack.callback(drivers[-1].quit)
        timings = time_pages(drivers, urls, FLAGS.translations, FLAGS.timeout)
    for line, timing in zip(lines, timings):
        print(f"{line} on CPU (WebAssembly) in headless Chromium: {timing.line()}")
    return 0


if __name__ == "__main__":
    define_flags()
    cli.run_program(main)
