"""What the demo page runs, without the page: the model, its drawing and its examples.

Every image the page sends, uploaded or drawn, arrives here as encoded bytes and goes through
the image policy (`pix2pix_tf.images.decode_bytes`): the same formats, pixel cap, decoder and
messages as training, translate and the SavedModel. It is then prepared as serving prepares
it (`images.preprocess`) and given to a `Translator` of the model its `ModelRequest` names
(`inference.request`), or, with a serving URL, to TensorFlow Serving's float
signatures through the REST client: the same [1, S, S, C] in [-1, 1] whichever the source.
"""

from __future__ import annotations

import dataclasses
import os
import threading
from typing import Callable, Optional

import numpy as np
import tensorflow as tf
from absl import logging

from pix2pix_tf import images, writing
from pix2pix_tf.config import TrainConfig
from pix2pix_tf.data import pipeline
from pix2pix_tf.data.sources import shapes
from pix2pix_tf.demo import serving
from pix2pix_tf.errors import ConfigError, DatasetError, InferenceError, op_message
from pix2pix_tf.inference.mode import DETERMINISTIC, PAPER, InferenceMode
from pix2pix_tf.inference.request import ModelRequest
from pix2pix_tf.inference.translator import Translator

LABELS, EDGES, COLOUR = "labels", "edges", "colour"
EDGE_DATASETS = ("edges2shoes", "edges2handbags")


@dataclasses.dataclass(frozen=True)
class DemoConfig:
    """What `python -m pix2pix_tf.demo` was asked to serve; library code reads no flags."""

    model: ModelRequest  # Which model (or TensorFlow Serving), its threads, pixel cap and native size.
    host: str = "127.0.0.1"
    port: int = 7860
    num_examples: int = 6

    def __post_init__(self) -> None:
        if not 1 <= self.port <= 65535:
            raise ConfigError(f"--port={self.port} is not a TCP port (1-65535).")
        if self.num_examples < 0:
            raise ConfigError(f"--num_examples must be at least 0, got {self.num_examples}.")


@dataclasses.dataclass(frozen=True)
class Drawing:
    """How the canvas draws: brush colours on a background, as the model's inputs look."""

    kind: str  # LABELS (the dataset's class colours), EDGES (black on white) or COLOUR (any colour).
    colours: tuple[str, ...]  # Brush colours as #rrggbb; the first is the default.
    background: str  # #rrggbb of the empty canvas.
    fixed: bool  # Only these colours (a label map or an edge map has no others).
    legend: str  # What the colours mean, for the page.
    names: tuple[tuple[str, str], ...] = ()  # (colour, class name) of a label map, background first.


@dataclasses.dataclass(frozen=True)
class Translation:
    model_input: np.ndarray  # uint8 S x S x C_in (native size: H x W x C_in), as the model was given it.
    output: np.ndarray  # uint8, the model_input's height and width, C_out.
    model: str  # Which model and mode made it.


def _hex(rgb) -> str:
    return "#" + "".join(f"{int(v):02x}" for v in rgb)


def drawing_for(dataset: Optional[str], direction: Optional[str]) -> Drawing:
    """The canvas for a model's inputs: the class colours of the embedded `shapes` label maps on
    the background class, a black pen on white for the edge datasets, else any colour on white."""
    name = (dataset or "").split("/")[0]
    if name == "shapes" and direction == "AtoB":
        colours = tuple(_hex(c) for c in shapes.LABEL_COLOURS)
        names = tuple(zip(colours, shapes.CLASS_NAMES))
        legend = ", ".join(f"{name} {colour}" for colour, name in names)
        # The background class is the empty canvas, and the last brush colour (to paint it back).
        return Drawing(LABELS, colours[1:] + colours[:1], colours[0], True, f"Label map classes: {legend}.", names)
    if name in EDGE_DATASETS and direction == "AtoB":
        return Drawing(EDGES, ("#000000",), "#ffffff", True, "Edges: a black pen on white.")
    return Drawing(COLOUR, ("#000000", "#ffffff", "#ff0000", "#00a000", "#0000ff"), "#ffffff", False,
                   "Any colour.")


class DemoModel:
    """One model behind the page, deterministic and (where the model has dropout) paper mode."""

    def __init__(self, name: str, open_mode: Callable[[InferenceMode], Translator], has_dropout: bool,
                 drawing: Drawing, max_pixels: int, examples: tuple[str, ...] = ()):
        self.name = name
        self.has_dropout = has_dropout  # Paper mode differs from deterministic.
        self.drawing = drawing
        self.max_pixels = max_pixels
        self.examples = examples
        self._open_mode = open_mode
        self._translators: dict[bool, Translator] = {False: open_mode(DETERMINISTIC)}
        self._lock = threading.Lock()

    @property
    def image_size(self) -> int:
        return self._translators[False].image_size

    @property
    def native(self) -> bool:
        """Each input is translated at its own size (`--native_size`), not resized to `image_size`."""
        return self._translators[False].native

    def translator(self, paper: bool) -> Translator:
        """The deterministic translator, or the paper-mode one (opened on first use: a second
        copy of the weights that a page used deterministically never needs)."""
        paper = paper and self.has_dropout
        with self._lock:
            if paper not in self._translators:
                self._translators[paper] = self._open_mode(PAPER)
            return self._translators[paper]

    def translate(self, data: bytes, name: Optional[str], paper: bool) -> Translation:
        """Encoded image bytes (`name` for messages) -> the model's input and output as uint8.
        Raises ImageError (the policy's refusal) or InferenceError."""
        decoded = images.decode_bytes(data, self.max_pixels, name)
        translator = self.translator(paper)
        prepared = translator.prepare(decoded.pixels)
        try:
            output = np.asarray(translator(prepared.numpy()[None], 0))
        except images.ImageError as e:  # Native size: its padded size is over the cap.
            raise InferenceError(e.problem) from None
        except tf.errors.OpError as e:  # The model refused the image (e.g. a size it cannot take).
            raise InferenceError(f"the model cannot translate it: {op_message(e)}") from None
        if not np.isfinite(output).all():
            raise InferenceError("the model produced NaN/Inf")
        return Translation(images.to_uint8(prepared).numpy(), images.to_uint8(output[0]).numpy(),
                           translator.description)


# ----------------------------------------------------------------------------- building one


def load_demo_model(config: DemoConfig, examples_dir: Optional[str] = None) -> DemoModel:
    """The model `config` names, opened deterministic; the run's held-out inputs written as PNG
    examples into `examples_dir` when the run is known (a workdir, or the run an export was
    made from)."""
    request = config.model
    if request.serving_url:
        return DemoModel(f"TensorFlow Serving model '{request.model_name}' at {request.serving_url}",
                         serving.opener(request.serving_url, request.model_name), True, drawing_for(None, None),
                         request.pixel_cap)
    source = request.resolve()
    run = source.train or (TrainConfig.load(source.run_workdir) if source.run_workdir else None)
    direction = source.direction or (run and run.data.direction)
    drawing = drawing_for(run.data.dataset if run else None, direction)

    def open_mode(mode: InferenceMode) -> Translator:
        return request.translator(source, mode)

    model = DemoModel(f"{source.kind} {source.path}", open_mode, source.has_dropout, drawing, request.pixel_cap)
    if run and examples_dir and config.num_examples:
        model.examples = write_held_out_inputs(run, config.num_examples, examples_dir)
    return model


def write_held_out_inputs(run: TrainConfig, count: int, folder: str) -> tuple[str, ...]:
    """The first `count` held-out inputs of the run's dataset, as the run's held-out monitor
    sees them (test-time preprocessing), written as PNGs into `folder`. None (with a warning)
    when the dataset cannot be read here: the page works without examples."""
    try:
        dataset = pipeline.load_paired_dataset(run.data)
        pairs = pipeline.first_held_out_pairs(dataset, run.data, run.model.input_nc, run.model.output_nc, count,
                                              run.model.size_multiple)
        inputs = [input_image for input_image, _ in pairs]
    except (DatasetError, tf.errors.OpError) as e:
        logging.warning("No examples: the run's dataset %s cannot be read here (%s).", run.data.dataset, e)
        return ()
    paths = []
    for index, image in enumerate(inputs):
        path = os.path.join(folder, f"held_out_{index:03d}.png")
        writing.write_file(path, tf.io.encode_png(images.to_uint8(image)).numpy())
        paths.append(path)
    return tuple(paths)
