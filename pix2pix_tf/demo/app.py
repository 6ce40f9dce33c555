"""The demo page (Gradio): draw or upload an input, see the model's input and output beside it.

Everything the page loads comes from the Gradio wheel and this server: a theme with system
fonts (no web fonts), analytics off, no share link, no server-side rendering (no Node), so it
works on a machine without a network. The uploaded file reaches `DemoModel.translate` as the
bytes the user chose (a `File` component, not an `Image` one, which would decode it with PIL
first), so the image policy alone decides what is an image and its message appears in the
page's status box; a user's bad file is not a server error and leaves no traceback. An upload
larger than any image within the pixel cap can be (`image_files.max_file_bytes`) is refused by the
server while it arrives, and so is any request over that and 1 MiB, or one that names a file by URL
(`guard`).
"""

from __future__ import annotations

import os
import socket
import time
from typing import Any, Optional

import gradio as gr
import numpy as np
from absl import logging
from starlette.middleware import Middleware

from pix2pix_tf import cli, image_files, images
from pix2pix_tf.demo.guard import RequestGuard, max_request_bytes
from pix2pix_tf.demo.model import LABELS, DemoConfig, DemoModel, Drawing
from pix2pix_tf.errors import ConfigError, Pix2pixError

DRAW, UPLOAD = "draw", "upload"
NOTHING = "Nothing to translate: draw on the canvas or upload an image first."
THEME = gr.themes.Default(font=["ui-sans-serif", "system-ui", "sans-serif"],
                          font_mono=["ui-monospace", "Consolas", "monospace"])
# The model's images fill their boxes, scaled up without blurring (they are small: the model's size).
CSS = "#model-input img, #output img {width: 100%; height: 100%; object-fit: contain; image-rendering: pixelated;}"


def _shown(image: np.ndarray) -> np.ndarray:
    return image[..., 0] if image.shape[-1] == 1 else image  # Grey as H x W, as image viewers expect.


def answer(model: DemoModel, path: Optional[str], name: Optional[str], paper: bool) -> tuple[Any, Any, str]:
    """(model input, output, status) for the image file at `path` (`name` in messages)."""
    if not path:
        return None, None, NOTHING
    name = name or os.path.basename(path)
    try:
        result = model.translate(_read(path, name, model.max_pixels), name, paper)
    except (Pix2pixError, OSError) as e:
        message = cli.user_message(e)
    else:
        return _shown(result.model_input), _shown(result.output), f"Translated by {result.model}."
    logging.info("Refused: %s", message)
    return None, None, f"error: {message}"


def _read(path: str, name: str, max_pixels: int) -> bytes:
    """The upload's bytes, read as the image policy reads a file (bounded; refusals name `name`)."""
    try:
        return image_files.read_file(path, max_pixels)
    except images.ImageError as e:
        raise images.ImageError(name, e.problem, e.reason) from None


def _legend(drawing: Drawing) -> str:
    """The brush colours with what they mean: a swatch and a class name per colour of a label map."""
    if drawing.kind != LABELS:
        return drawing.legend
    swatch = ('<span style="white-space:nowrap"><span style="display:inline-block;width:0.9em;height:0.9em;'
              'background:{};border:1px solid #888;vertical-align:middle"></span> {}</span>')
    return "Classes: " + " &nbsp; ".join(swatch.format(colour, name) for colour, name in drawing.names)


def _canvas(model: DemoModel, size: int) -> gr.Sketchpad:
    drawing = model.drawing
    rgb = [int(drawing.background[i:i + 2], 16) for i in (1, 3, 5)]
    background = np.full((size, size, 3), rgb, np.uint8)
    brush = gr.Brush(default_size=max(1, size // 24), colors=list(drawing.colours), default_color=drawing.colours[0],
                     color_mode="fixed" if drawing.fixed else "defaults")
    # The canvas is the model's size: what is drawn is what the model sees, pixel for pixel.
    return gr.Sketchpad(value=background, type="filepath", image_mode="RGB", format="png", canvas_size=(size, size),
                        brush=brush, label="Draw the input", elem_id="draw", layers=False)


def build_page(model: DemoModel) -> gr.Blocks:
    """The page: input tabs (draw, upload), the paper-mode toggle and Translate on the left;
    the model's input and output on the right; the run's held-out inputs as examples."""
    size = model.image_size
    # Uploads stay in Gradio's temp folder: every 10 minutes those older than an hour go.
    with gr.Blocks(title="pix2pix demo", analytics_enabled=False, delete_cache=(600, 3600)) as page:
        sizing = ("Each input is translated at its own size (--native_size)." if model.native else
                  f"The input is resized to {size}x{size}, the size the model translates.")
        gr.Markdown(f"# pix2pix\n{model.name}: draw or upload an input, then Translate. {sizing}")
        which = gr.State(DRAW)
        with gr.Row():
            with gr.Column():
                with gr.Tab("Draw") as draw_tab:
                    gr.Markdown(_legend(model.drawing), elem_id="legend")
                    sketch = _canvas(model, size)
                with gr.Tab("Upload") as upload_tab:
                    upload = gr.File(label="An image file (JPEG, PNG, GIF, BMP or WebP)", elem_id="upload")
                paper = gr.Checkbox(label="paper mode (dropout noise)", value=False, elem_id="paper",
                                    interactive=model.has_dropout,
                                    info="Dropout on at test time, as in the paper: each run differs."
                                    if model.has_dropout else "This model has no dropout: always deterministic.")
                button = gr.Button("Translate", variant="primary", elem_id="translate")
            model_input = gr.Image(label="The model's input", type="filepath", image_mode=None, format="png",
                                   interactive=False, height=360, elem_id="model-input")
            output = gr.Image(label="Output", format="png", interactive=False, height=360, elem_id="output")
        status = gr.Textbox(label="Status", interactive=False, elem_id="status")
        draw_tab.select(lambda: DRAW, None, which)
        upload_tab.select(lambda: UPLOAD, None, which)

        def translate(tab: str, drawn: Optional[dict], uploaded: Optional[str], noisy: bool):
            # Gradio's HTTP API (`/translate`: drawn, uploaded, noisy) has no tab: a file and no drawing is the file.
            if tab == UPLOAD or (uploaded and not (drawn or {}).get("composite")):
                return answer(model, uploaded, None, noisy)
            return answer(model, (drawn or {}).get("composite"), "the drawing", noisy)

        button.click(translate, [which, sketch, upload, paper], [model_input, output, status])
        if model.examples:
            examples = gr.Examples([[path] for path in model.examples], [model_input], cache_examples=False,
                                   label="The run's held-out inputs (click one)",
                                   examples_per_page=len(model.examples), elem_id="examples")
            # Clicking shows the example as the model's input, then translates it in the chosen mode.
            examples.load_input_event.then(lambda path, noisy: answer(model, path, None, noisy),
                                           [model_input, paper], [model_input, output, status])
    return page


def _cannot_listen(config: DemoConfig, error: OSError) -> ConfigError:
    return ConfigError(f"Cannot listen on {config.host}:{config.port} ({error.strerror or error}): the port is in "
                       "use, or the address is not one of this machine's. Choose another --port or --host.")


def check_address(config: DemoConfig) -> None:
    """Refuses an address the page could not listen on before the model is loaded, not after."""
    try:
        family = socket.getaddrinfo(config.host, config.port, type=socket.SOCK_STREAM)[0][0]
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # As the web server binds.
            probe.bind((config.host, config.port))
    except OSError as e:
        raise _cannot_listen(config, e) from e


def serve(model: DemoModel, config: DemoConfig, allowed_paths: tuple[str, ...] = ()) -> None:
    """Serves the page until interrupted; one translation at a time (the model uses every core)."""
    page = build_page(model)
    page.queue(default_concurrency_limit=1)
    try:
        _, url, _ = page.launch(server_name=config.host, server_port=config.port, share=False, ssr_mode=False,
                                theme=THEME, css=CSS, allowed_paths=list(allowed_paths), quiet=True,
                                prevent_thread_lock=True, show_error=False, mcp_server=False, pwa=False,
                                enable_monitoring=False, max_file_size=image_files.max_file_bytes(model.max_pixels),
                                app_kwargs={"middleware": [Middleware(RequestGuard,
                                                                      max_bytes=max_request_bytes(model.max_pixels))]})
    except OSError as e:  # Taken since check_address.
        raise _cannot_listen(config, e) from e
    print(f"pix2pix demo of {model.name} at {url} (Ctrl-C to stop)", flush=True)
    try:  # Not Gradio's block_thread, which swallows Ctrl-C and SIGTERM: the stop reaches the program.
        while True:
            time.sleep(0.5)
    finally:
        page.close()
