"""The export targets, one line each, in the order they run: a target may read the records of
those above it (`Target.needs`). export.py declares their flags and the exporter runs them from
this tuple; a new format is its own module and one line here."""

from __future__ import annotations

from pix2pix_tf.export import onnx_model, saved_model, tflite, web
from pix2pix_tf.export.target import Target

TARGETS: tuple[Target, ...] = (
    saved_model.TARGET,  # First: every other artifact is checked against the SavedModel.
    tflite.TARGET,
    web.TARGET,  # After tflite: the page runs one of its files.
    onnx_model.TARGET,
)
