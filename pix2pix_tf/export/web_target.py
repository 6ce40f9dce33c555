"""The web page export target's declaration: its flags, options and folder, and the checks on
them. TensorFlow-free, so that export.py declares the flags (and --help answers) without
TensorFlow; `WORK` (`export.web`) writes, checks and publishes the artifact, imported when
the export runs (`target.Deferred`)."""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Mapping, Optional

from pix2pix_tf.errors import ConfigError
from pix2pix_tf.export.target import Deferred, Flag, Options, Target
from pix2pix_tf.inference.artifacts import TFLITE_VARIANTS

FLAGS = (
    Flag("web", "bool", False, "Also write a static web page running --web_variant in the visitor's browser "
         "(LiteRT.js): <export_dir>/web/<model_name>/<version>/; see docs/web.md."),
    Flag("web_variant", "enum", "dynamic_int8", "The TFLite variant the --web page runs (one of --tflite; "
         "dynamic_int8: a quarter of float32's download, the fastest in WebAssembly).", TFLITE_VARIANTS),
    Flag("web_runtime", "string", None, "The node_modules folder holding LiteRT.js for --web (default: "
         "pix2pix_tf/export/web/node_modules, installed by npm ci there; docs/web.md)."),
)


@dataclasses.dataclass(frozen=True)
class PageOptions:
    """Which TFLite variant the page runs (None: no page), and where LiteRT.js is installed."""

    variant: Optional[str] = None
    runtime: Optional[str] = None  # node_modules holding LiteRT.js; None: the one beside this module.

    @property
    def enabled(self) -> bool:
        return self.variant is not None

    def validate(self) -> PageOptions:
        if self.variant is not None and self.variant not in TFLITE_VARIANTS:
            raise ConfigError(f"--web_variant={self.variant!r} is not one of {', '.join(TFLITE_VARIANTS)}.")
        return self


def options(values: Mapping[str, Any]) -> PageOptions:
    return PageOptions(variant=values["web_variant"] if values["web"] else None, runtime=values["web_runtime"])


def web_base(export_dir: str, model_name: str) -> str:
    """`<export_dir>/web/<model_name>`: the pages' versions, beside the TFLite files'."""
    return os.path.join(export_dir, "web", model_name)


def _validate(options: PageOptions, everything: Mapping[str, Options]) -> None:
    """The page runs one of the TFLite files this export writes, fed with float32."""
    files = everything["tflite"]
    if options.variant not in files.variants:
        raise ConfigError(f"--web runs --web_variant={options.variant} in the page: add it to --tflite (now "
                          f"{','.join(files.variants) or 'empty'}).")
    if options.variant == "int8" and files.int8_io != "float32":
        raise ConfigError(f"--web runs --web_variant=int8 in the page, which feeds it floats: use --int8_io=float32 "
                          f"(now {files.int8_io}), or another --web_variant.")


# The work (loads TensorFlow): pix2pix_tf/export/web/__init__.py.
WORK = "pix2pix_tf.export.web"

TARGET = Target("web", FLAGS, options, web_base, Deferred(WORK, "publish"), needs=("tflite",), validate=_validate,
                check=Deferred(WORK, "check"))
