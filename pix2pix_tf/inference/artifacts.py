"""The export's contract with its users: file, signature and tensor names, and its metadata.

export/ writes these artifacts; inference/ and serving/ read them, so the contract lives here,
below both. TensorFlow-free, so that the serving client (and any script) can import it without
loading TensorFlow. The names are a contract with clients (docs/serving.md): never rename them.
"""

from __future__ import annotations

import os
import re
from typing import Any, Optional

from absl import logging

from pix2pix_tf import regular_files
from pix2pix_tf.config import NORMS
from pix2pix_tf.errors import ConfigError

SAVED_MODEL_FILE = "saved_model.pb"
VERSION_FOLDER = re.compile(r"[0-9]+")  # A version's folder: ASCII digits (str.isdigit takes '²' too).
METADATA_FILE = "pix2pix_export.json"  # in <version>/assets.extra/
WARMUP_FILE = "tf_serving_warmup_requests"  # in <version>/assets.extra/
TFLITE_REPORT = "report.json"  # beside the .tflite files of one version
MODEL_CARD = "MODEL_CARD.md"  # in <version>/assets.extra/ and beside the .tflite files

SIGNATURE_BYTES = "serving_default"
SIGNATURE_PNG = "translate_png"
SIGNATURE_FLOAT = "translate_float"
SIGNATURE_FLOAT_DETERMINISTIC = "translate_float_deterministic"
SIGNATURE_NATIVE = "translate_native"  # Encoded images translated at their own size (inference.geometry).
INPUT_NAME = "images"
OUTPUT_BYTES = "output_bytes"  # The `_bytes` suffix makes Serving's REST API answer {"b64": ...}.
OUTPUT_FLOAT = "output"

TFLITE_VARIANTS = ("float32", "float16", "dynamic_int8", "int8")
INT8_IO_TYPES = ("float32", "int8", "uint8")


def metadata_path(saved_model_dir: str) -> str:
    return os.path.join(saved_model_dir, "assets.extra", METADATA_FILE)


def warmup_path(saved_model_dir: str) -> str:
    return os.path.join(saved_model_dir, "assets.extra", WARMUP_FILE)


def model_card_path(saved_model_dir: str) -> str:
    """The SavedModel's model card (assets.extra/: TensorFlow Serving reads only its warmup file there)."""
    return os.path.join(saved_model_dir, "assets.extra", MODEL_CARD)


def tflite_report_path(tflite_file: str) -> str:
    return os.path.join(os.path.dirname(tflite_file), TFLITE_REPORT)


def _read_record(path: str) -> Optional[dict[str, Any]]:
    """The export's record at `path`, read bounded and checked; None when there is none."""
    value = regular_files.read_json_object(path)
    return None if value is None else checked_record(path, value)


# What the programs read from an export's record of itself (the SavedModel's metadata, the
# TFLite report, the ONNX file's metadata_props), and what each must be.
# Sides and channels go into TensorFlow's int32 shapes; the pixel caps into int64 counts.
_POSITIVE_INTEGERS = {"image_size": 2**31 - 1, "size_multiple": 2**31 - 1, "input_nc": 2**31 - 1,
                      "output_nc": 2**31 - 1, "max_pixels": 2**63 - 1, "max_request_pixels": 2**63 - 1}
_STRINGS = ("direction", "checkpoint", "norm")


def checked_record(where: str, record: dict[str, Any]) -> dict[str, Any]:
    """`record` if each value the programs read from it has its type, else one refusal naming
    `where` (the file) and the value: a hand-edited or foreign record, not a traceback."""
    def refuse(key: str, expected: str) -> None:
        raise ConfigError(f"{where}: {key} is {record[key]!r}, not {expected}: was it written by export.py?")

    for key, most in _POSITIVE_INTEGERS.items():
        value = record.get(key)
        if value is not None and (type(value) is not int or not 1 <= value <= most):
            refuse(key, f"a positive integer of at most {most}")
    for key in _STRINGS:
        if record.get(key) is not None and not isinstance(record[key], str):
            refuse(key, "a string")
    if record.get("norm") is not None and record["norm"] not in NORMS:
        refuse("norm", f"one of {', '.join(NORMS)}")
    mode = record.get("mode")
    if mode is not None and not (isinstance(mode, dict) and all(isinstance(v, bool) for v in mode.values())):
        refuse("mode", 'an object of true/false values ({"dropout": ..., "batch_statistics": ...})')
    return record


def read_metadata(saved_model_dir: str) -> dict[str, Any]:
    """What export wrote about a SavedModel (sizes, channels, direction, mode); {} if absent."""
    return _read_record(metadata_path(saved_model_dir)) or {}


def read_tflite_report(tflite_file: str) -> dict[str, Any]:
    """The report export wrote beside a .tflite file (direction, variants, checks); {} if absent,
    or if it lists no file of this name and size: another export's report beside a copied file
    would lend it that export's run, mode and norm."""
    path = tflite_report_path(tflite_file)
    report = _read_record(path) or {}
    if report and not _lists(report, tflite_file):
        logging.warning("%s lists no %s of %d bytes: it is another export's report, not used.", path,
                        os.path.basename(tflite_file), os.path.getsize(tflite_file))
        return {}
    return report


def _lists(report: dict[str, Any], tflite_file: str) -> bool:
    variants = report.get("variants")
    entries = variants.values() if isinstance(variants, dict) else ()
    name, size = os.path.basename(tflite_file), os.path.getsize(tflite_file)
    return any(isinstance(e, dict) and e.get("file") == name and e.get("size_bytes") == size for e in entries)


def resolve_saved_model(path: str) -> str:
    """A SavedModel folder: `path` itself, or the highest integer version inside it (Serving's
    layout, as export.py writes it)."""
    if os.path.exists(os.path.join(path, SAVED_MODEL_FILE)):
        return path
    if os.path.isdir(path):
        versions = sorted((int(n), n) for n in os.listdir(path)
                          if VERSION_FOLDER.fullmatch(n) and os.path.exists(os.path.join(path, n, SAVED_MODEL_FILE)))
        if versions:
            return os.path.join(path, versions[-1][1])  # As named: a zero-padded "01" too.
    raise ConfigError(f"--saved_model={path}: no {SAVED_MODEL_FILE} there nor in an integer version folder.")
