"""What a run shows: TensorBoard scalars and images, and PNG sample grids in workdir/samples."""

from __future__ import annotations

import contextlib
import math
from typing import Iterator, Optional, Sequence

import numpy as np
import tensorflow as tf
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from pix2pix_tf import writing
from pix2pix_tf.errors import Pix2pixError, op_message

COLUMNS = ("input", "target", "output")
PAD_GREY = 128  # Around held-out images smaller than their row or column in a grid: neither black nor white.
GAP = 6  # White pixels between a PNG grid's cells and rows.
CAPTION_HEIGHT = 16  # White pixels under each row of a captioned PNG grid, for its caption.
HEADER_HEIGHT = 34  # Pixels above a PNG grid: its title, then its column names.
MIN_GRID_WIDTH = 480  # Pixels: room for a title over a grid of small images.
MAX_GRID_SIDE = 4096  # Pixels: a grid of larger images is drawn shrunk (a sample to look at, not an archive).
GRID_DPI = 72  # Font sizes are in points: at 72 dots per inch a point is a pixel.


def to_uint8(image: np.ndarray) -> np.ndarray:
    """[-1, 1] float -> uint8 RGB (a 1-channel image is shown grey)."""
    image = np.clip((np.asarray(image) + 1.0) * 127.5 + 0.5, 0, 255).astype(np.uint8)
    return np.repeat(image, 3, axis=-1) if image.shape[-1] == 1 else image


def grid_image(rows: Sequence[Sequence[np.ndarray]]) -> np.ndarray:
    """One uint8 image of rows of input | target | output, for TensorBoard.

    Held-out images need not share a size (`--preprocess=none` keeps each one's native size),
    so every cell is padded with neutral grey to its row's tallest image and its column's
    widest, the image in the cell's top left corner: the columns stay aligned."""
    return _Grid(rows, gap_x=0, gap_y=0).image


class _Grid:
    """`rows` of images composed into one picture: each cell padded to its row's height and its
    column's width (see grid_image), cells `gap_x` and rows `gap_y` white pixels apart, and
    `gap_y` more under the last row where `gap_after_last`."""

    def __init__(self, rows: Sequence[Sequence[np.ndarray]], gap_x: int, gap_y: int, gap_after_last: bool = False):
        cells = [[to_uint8(x) for x in row] for row in rows]
        heights, widths = _cell_sizes(rows)
        self.lefts = [sum(widths[:c]) + c * gap_x for c in range(len(widths))]
        self.tops = [sum(heights[:r]) + r * gap_y for r in range(len(heights))]
        self.widths, self.heights = widths, heights
        bottom = self.tops[-1] + heights[-1] + (gap_y if gap_after_last else 0)
        self.image = np.full((bottom, self.lefts[-1] + widths[-1], 3), 255, np.uint8)
        for row, top, height in zip(cells, self.tops, heights):
            for cell, left, width in zip(row, self.lefts, widths):
                self.image[top:top + height, left:left + width] = PAD_GREY
                self.image[top:top + cell.shape[0], left:left + cell.shape[1]] = cell


def _cell_sizes(rows: Sequence[Sequence[np.ndarray]]) -> tuple[list[int], list[int]]:
    """Each row's tallest image's height and each column's widest image's width."""
    heights = [max(np.shape(image)[0] for image in row) for row in rows]
    widths = [max(np.shape(row[c])[1] for row in rows) for c in range(len(rows[0]))]
    return heights, widths


def _shrink_factor(rows: Sequence[Sequence[np.ndarray]]) -> int:
    """1, or the whole factor that brings a grid of large images within MAX_GRID_SIDE."""
    heights, widths = _cell_sizes(rows)
    return max(1, math.ceil(max(sum(heights), sum(widths)) / MAX_GRID_SIDE))


def offscreen_figure(figsize: tuple[float, float]) -> Figure:
    """A matplotlib figure drawn straight onto a PNG canvas: no display needed, and no backend
    selected (`matplotlib.use` would change it for the whole process)."""
    fig = Figure(figsize=figsize)
    FigureCanvasAgg(fig)
    return fig


def save_grid_png(path: str, rows: Sequence[Sequence[np.ndarray]], title: str,
                  columns: Sequence[str] = COLUMNS, captions: Optional[Sequence[str]] = None,
                  metadata: Optional[dict[str, str]] = None) -> str:
    """A PNG of labelled rows of images (input | target | output by default), each image at its
    own pixels (shrunk by a whole factor where the grid would exceed MAX_GRID_SIDE), `captions`
    under the rows if given.

    Why one picture in one axes: an axes per image (matplotlib's subplots) and their layout
    cost several times the drawing itself, and every training draws grids."""
    shrink = _shrink_factor(rows)  # The gaps and offsets below are in the grid's pixels: shrunk with it.
    grid = _Grid(rows, gap_x=GAP * shrink, gap_y=(CAPTION_HEIGHT if captions else GAP) * shrink,
                 gap_after_last=bool(captions))
    height, width = (-(-side // shrink) for side in grid.image.shape[:2])  # As drawn, in the PNG's pixels.
    figure_width, figure_height = max(width, MIN_GRID_WIDTH), height + HEADER_HEIGHT
    margin = (figure_width - width) // 2  # Whole pixels: each pixel of an image on one of the PNG.
    fig = offscreen_figure((figure_width / GRID_DPI, figure_height / GRID_DPI))
    axes = fig.add_axes((margin / figure_width, 0, width / figure_width, height / figure_height))
    axes.imshow(grid.image, interpolation="nearest" if shrink == 1 else "antialiased")
    axes.axis("off")
    for name, left, column_width in zip(columns, grid.lefts, grid.widths):
        axes.text(left + column_width / 2, -3 * shrink, name, ha="center", va="bottom", fontsize=10)
    middle = grid.lefts[len(grid.lefts) // 2] + grid.widths[len(grid.widths) // 2] / 2
    for caption, top, row_height in zip(captions or (), grid.tops, grid.heights):
        axes.text(middle, top + row_height + 2 * shrink, caption, ha="center", va="top", fontsize=8)
    fig.suptitle(title, fontsize=10, y=1 - 3 / figure_height, va="top")
    return writing.write_figure(path, fig, dpi=GRID_DPI, metadata=metadata)


class SummaryError(Pix2pixError):
    """A TensorBoard event or a sample grid could not be written (a full disk, say); the
    training loop saves a checkpoint if it can before stopping."""


class Writer:
    """TensorBoard event files under workdir/logs/train.

    TensorFlow buffers events and writes them on `flush` (or when its queue is full); a
    failure there is raised as a SummaryError naming the folder."""

    def __init__(self, logdir: str):
        self.logdir = logdir
        self._writer = tf.summary.create_file_writer(logdir)

    def scalars(self, step: int, values: dict[str, float]) -> None:
        with self._failure_reported(), self._writer.as_default(step=step):
            for name, value in values.items():
                tf.summary.scalar(name, value)

    def image(self, step: int, name: str, image: np.ndarray) -> None:
        with self._failure_reported(), self._writer.as_default(step=step):
            tf.summary.image(name, image[None], max_outputs=1)

    def flush(self) -> None:
        with self._failure_reported():
            writing.write_point(self.logdir)
            self._writer.flush()

    @contextlib.contextmanager
    def _failure_reported(self) -> Iterator[None]:
        try:
            yield
        except OSError as e:
            raise SummaryError(f"Writing the TensorBoard logs in {self.logdir} failed: {e.strerror or e}.") from e
        except tf.errors.OpError as e:
            raise SummaryError(f"Writing the TensorBoard logs in {self.logdir} failed: {op_message(e)}.") from e
