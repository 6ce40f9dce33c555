"""What a .tflite file contains, read from its flatbuffer: its ops and the types of their tensors.

TensorFlow-free (the flatbuffer schema ships with `ai-edge-litert`), so a script or a test can
ask a file what it really runs instead of trusting a list written by hand:

* `builtin_ops(file)`: the sorted builtin op names, what export writes into report.json and
  what docs/tflite.md's op table is rendered from (`render_op_table`, or
  `python -m pix2pix_tf.export.contents REPORT.json [REPORT.json ...]`);
* `float_ops_inside(file)`: the ops that compute in float between the input and the output:
  none in a full-integer file, whose only float ops are the QUANTIZE that takes a float input
  and the DEQUANTIZE that gives a float output (with --int8_io=int8/uint8, not even those).

The interpreter's own op list is no substitute: it shows XNNPACK's DELEGATE nodes in place of
the ops a delegate took, and a device without that delegate runs the file's ops.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from typing import Any, Sequence

INTEGER_TYPES = ("INT8", "UINT8", "INT16", "INT32", "INT64", "UINT16", "UINT32")
# The float<->integer conversions a full-integer file with float I/O may have at its ends.
_BOUNDARY = {"QUANTIZE": "input", "DEQUANTIZE": "output"}


@dataclasses.dataclass(frozen=True)
class Op:
    """One operator of a .tflite file's main subgraph: its position, builtin name and the
    types of the tensors it reads and writes."""

    index: int
    name: str
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    input_types: tuple[str, ...]
    output_types: tuple[str, ...]

    @property
    def integer(self) -> bool:
        return all(t in INTEGER_TYPES for t in self.input_types + self.output_types)

    def describe(self) -> str:
        return f"#{self.index} {self.name} ({', '.join(self.input_types)} -> {', '.join(self.output_types)})"


@dataclasses.dataclass(frozen=True)
class Graph:
    ops: tuple[Op, ...]
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]


def _names(enum_class: type) -> dict[int, str]:
    return {value: name for name, value in vars(enum_class).items() if not name.startswith("_")}


def read_graph(model: bytes | str) -> Graph:
    """The main subgraph of a .tflite file (path) or buffer (bytes)."""
    from ai_edge_litert import schema_py_generated as schema

    if isinstance(model, str):
        with open(model, "rb") as f:
            model = f.read()
    root = schema.Model.GetRootAs(model, 0)
    op_names, type_names = _names(schema.BuiltinOperator), _names(schema.TensorType)
    codes = []
    for i in range(root.OperatorCodesLength()):
        code = root.OperatorCodes(i)
        # Codes above 127 live in BuiltinCode only; the deprecated byte holds the rest.
        value = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
        codes.append("CUSTOM:" + code.CustomCode().decode() if code.CustomCode() else op_names[value])
    graph = root.Subgraphs(0)

    def types(indices: Sequence[int]) -> tuple[str, ...]:
        return tuple(type_names[graph.Tensors(int(i)).Type()] for i in indices)

    ops = []
    for i in range(graph.OperatorsLength()):
        op = graph.Operators(i)
        inputs = tuple(int(t) for t in op.InputsAsNumpy() if t >= 0) if op.InputsLength() else ()
        outputs = tuple(int(t) for t in op.OutputsAsNumpy() if t >= 0) if op.OutputsLength() else ()
        ops.append(Op(i, codes[op.OpcodeIndex()], inputs, outputs, types(inputs), types(outputs)))
    return Graph(tuple(ops), tuple(int(t) for t in graph.InputsAsNumpy()),
                 tuple(int(t) for t in graph.OutputsAsNumpy()))


def builtin_ops(model: bytes | str) -> list[str]:
    """The sorted names of the ops a .tflite file contains."""
    return sorted({op.name for op in read_graph(model).ops})


def float_ops_inside(model: bytes | str) -> list[str]:
    """The ops that read or write a float tensor, other than the QUANTIZE of a float model input
    and the DEQUANTIZE to a float model output: [] for a file that is integer from end to end."""
    graph = read_graph(model)
    inside = []
    for op in graph.ops:
        if op.integer:
            continue
        end = _BOUNDARY.get(op.name)
        if end == "input" and set(op.inputs) <= set(graph.inputs) or \
                end == "output" and set(op.outputs) <= set(graph.outputs):
            continue
        inside.append(op.describe())
    return inside


# ----------------------------------------------------------------------------- docs/tflite.md's op table


def variant_label(variant: str, entry: dict[str, Any]) -> str:
    """A report variant's row name: the int8 file with integer I/O is its own row."""
    io = entry.get("io_dtype", "float32")
    return f"`{variant}`" if io == "float32" else f"`{variant}` (`--int8_io={io}`)"


def render_op_table(reports: Sequence[dict[str, Any]]) -> str:
    """The markdown table of docs/tflite.md, one row per variant of each report (export's
    report.json), its ops as the file lists them."""
    rows = ["| variant | ops in the file |", "| --- | --- |"]
    seen = set()
    for report in reports:
        for variant, entry in report["variants"].items():
            label = variant_label(variant, entry)
            if label in seen:
                continue
            seen.add(label)
            rows.append(f"| {label} | {', '.join(f'`{op}`' for op in entry['ops'])} |")
    return "\n".join(rows) + "\n"


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print("usage: python -m pix2pix_tf.export.contents REPORT.json [REPORT.json ...]", file=sys.stderr)
        return 2
    reports = []
    for path in argv[1:]:
        with open(path) as f:
            reports.append(json.load(f))
    sys.stdout.write(render_op_table(reports))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
