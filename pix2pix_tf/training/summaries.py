"""What a run shows: TensorBoard scalars and images, and PNG sample grids in workdir/samples."""

from __future__ import annotations

import contextlib
from typing import Iterator, Sequence

import numpy as np
import tensorflow as tf
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from pix2pix_tf import writing
from pix2pix_tf.errors import Pix2pixError
from pix2pix_tf.images import op_message

COLUMNS = ("input", "target", "output")
PAD_GREY = 128  # Around held-out images smaller than their row or column in a grid: neither black nor white.


def to_uint8(image: np.ndarray) -> np.ndarray:
    """[-1, 1] float -> uint8 RGB (a 1-channel image is shown grey)."""
    image = np.clip((np.asarray(image) + 1.0) * 127.5 + 0.5, 0, 255).astype(np.uint8)
    return np.repeat(image, 3, axis=-1) if image.shape[-1] == 1 else image


def grid_image(rows: Sequence[Sequence[np.ndarray]]) -> np.ndarray:
    """One uint8 image of rows of input | target | output, for TensorBoard.

    Held-out images need not share a size (`--preprocess=none` keeps each one's native size),
    so every cell is padded with neutral grey to its row's tallest image and its column's
    widest, the image in the cell's top left corner: the columns stay aligned."""
    cells = [[to_uint8(x) for x in row] for row in rows]
    heights = [max(cell.shape[0] for cell in row) for row in cells]
    widths = [max(row[c].shape[1] for row in cells) for c in range(len(cells[0]))]
    return np.concatenate([np.concatenate([_padded(cell, height, width) for cell, width in zip(row, widths)], axis=1)
                           for row, height in zip(cells, heights)], axis=0)


def _padded(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """`image` (uint8 RGB) in the top left corner of a `height` x `width` grey cell."""
    cell = np.full((height, width, 3), PAD_GREY, np.uint8)
    cell[:image.shape[0], :image.shape[1]] = image
    return cell


def offscreen_figure(figsize: tuple[float, float]) -> Figure:
    """A matplotlib figure drawn straight onto a PNG canvas: no display needed, and no backend
    selected (`matplotlib.use` would change it for the whole process)."""
    fig = Figure(figsize=figsize)
    FigureCanvasAgg(fig)
    return fig


def save_grid_png(path: str, rows: Sequence[Sequence[np.ndarray]], title: str) -> None:
    """A labelled matplotlib grid of input | target | output rows."""
    fig = offscreen_figure((3 * len(COLUMNS), 3 * len(rows)))
    axes = fig.subplots(len(rows), len(COLUMNS), squeeze=False)
    for r, row in enumerate(rows):
        for c, image in enumerate(row):
            axes[r, c].imshow(to_uint8(image))
            axes[r, c].axis("off")
            if r == 0:
                axes[r, c].set_title(COLUMNS[c])
    fig.suptitle(title)
    fig.tight_layout()
    writing.write_figure(path, fig, dpi=80)


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
