"""The checks behind the config: one message for each wrong value, whether it came from a
flag, a program's request or config.json (read back field by field: `typed_section`).

TensorFlow-free, like `pix2pix_tf.config`: flags' help and the export's declarations use both.
"""

from __future__ import annotations

import json
import math
import types
import typing
from typing import Any, Optional

from pix2pix_tf.errors import ConfigError

# The largest --max_pixels: 2**32 (65536 x 65536), over what the formats and TensorFlow's decoders
# hold (JPEG and GIF sides stop at 65535, WebP's at 16383; its PNG decoder refuses 2**29 pixels),
# so no cap of use is refused; every size computed from it stays far inside int64, the graph's
# integers (a read's byte cap, 8 bytes a pixel: 32 GiB). A larger value, or a typo of 20 digits,
# is refused in one line instead of failing inside every image read.
MAX_PIXELS_LIMIT = 2**32
# Upper bounds of `check_positive`'s values: name -> (bound, why it is there).
MAX_THREADS = 256
_UPPER_BOUNDS = {"max_pixels": (MAX_PIXELS_LIMIT, "65536 x 65536, more than any image TensorFlow decodes"),
                 # onnxruntime made a thread per one asked for, memory without end.
                 "threads": (MAX_THREADS, "more than the cores of the machines this runs on")}


def check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    """Refuses --`name`=`value` unless it is one of `choices`, naming them."""
    if value not in choices:
        raise ConfigError(f"--{name}={value!r} is not one of {', '.join(choices)}.")


def check_side_within_cap(flag: str, side: int, max_pixels: int) -> None:
    """Refuses --`flag`=`side` when a `side`x`side` image is over the pixel cap: it would end in an
    out-of-memory error after the work started, where the cap promises a bound."""
    if side * side > max_pixels:
        raise ConfigError(f"--{flag}={side} makes {side}x{side} images ({side * side} pixels), over "
                          f"--max_pixels={max_pixels}: use a smaller --{flag} or a larger --max_pixels.")


def check_number(name: str, value: float) -> None:
    """Refuses NaN and infinities, which no comparison with a bound catches (NaN < 0 is false)."""
    if not math.isfinite(value):
        raise ConfigError(f"--{name} must be a finite number, got {value}.")


def check_seed(seed: Optional[int]) -> None:
    """Refuses a seed TensorFlow cannot hold: seeds become tf.int64 tensors."""
    if seed is not None and not -2**63 <= seed < 2**63:
        raise ConfigError(f"--seed must be a 64-bit integer (below 2**63 in magnitude), got {seed}.")


def check_positive(**values: Optional[int]) -> None:
    """Refuses sizes, counts and caps below 1, or above their bound where one is set
    (`_UPPER_BOUNDS`); None: not given, the default applies."""
    for name, value in values.items():
        if value is not None and value < 1:
            raise ConfigError(f"--{name} must be at least 1, got {value}.")
        bound, why = _UPPER_BOUNDS.get(name, (None, ""))
        if value is not None and bound is not None and value > bound:
            raise ConfigError(f"--{name} must be at most {bound} ({why}), got {value}.")


def typed_section(part_cls: type, name: str, values: Any, source: str) -> Any:
    """One section of config.json as `part_cls`, each field checked against its type hint."""
    if not isinstance(values, dict):
        raise ConfigError(f"{source}: section '{name}' must be a JSON object, not {json_kind(values)}.")
    hints = typing.get_type_hints(part_cls)
    unknown = sorted(set(values) - set(hints))
    if unknown:
        raise ConfigError(f"{source}: unknown keys in '{name}': {unknown}")
    return part_cls(**{key: _typed_value(f"{name}.{key}", value, hints[key], source)
                       for key, value in values.items()})


def _typed_value(field: str, value: Any, hint: Any, source: str) -> Any:
    """`value` if it has the type `hint` (int, float, bool, str, or Optional of one), else a
    ConfigError. Strict: JSON true is not an int, "64" is not a number; an int is a float."""
    allowed = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)
    if value is None and type(None) in allowed:
        return None
    kind = next(t for t in allowed if t is not type(None))
    if kind is float and type(value) in (int, float) and math.isfinite(value):
        return float(value)
    if type(value) is kind and kind in (int, bool, str):
        return value
    expected = {int: "an integer", float: "a finite number", bool: "true or false", str: "a string"}.get(
        kind, getattr(kind, "__name__", str(kind)))
    optional = " or null" if type(None) in allowed else ""
    raise ConfigError(f"{source}: {field} must be {expected}{optional}, not {json.dumps(value)}. "
                      "Correct the file, or start the run again in a new --workdir.")


def json_kind(value: Any) -> str:
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean", int: "a number",
             float: "a number", type(None): "null"}
    return names.get(type(value), type(value).__name__)
