"""The export targets, one line each, in the order they run: a target may read the records of
those above it (`Target.needs`). export.py declares their flags and the exporter runs them from
this tuple; a new format is its declaration (flags, options: TensorFlow-free), the module that
writes it, and one line here."""

from __future__ import annotations

from pix2pix_tf.export import onnx_target, saved_model_target, tflite_target, web_target
from pix2pix_tf.export.target import Target

TARGETS: tuple[Target, ...] = (
    saved_model_target.TARGET,  # First: every other artifact is checked against the SavedModel.
    tflite_target.TARGET,
    web_target.TARGET,  # After tflite: the page runs one of its files.
    onnx_target.TARGET,
)
