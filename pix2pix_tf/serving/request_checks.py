"""Requests checked against a SavedModel's own SignatureDefs, read from `saved_model.pb` with
protobufs alone: a client built with `serving.client` agrees with the model it talks to on
input names, dtypes and shapes before a server is involved."""

from __future__ import annotations

import base64
import os
from typing import Any, Sequence

import numpy as np

from pix2pix_tf.inference.artifacts import SIGNATURE_BYTES
from pix2pix_tf.serving.client import ServingRequestError

_DTYPE_NAMES = {1: "DT_FLOAT", 3: "DT_INT32", 4: "DT_UINT8", 7: "DT_STRING", 9: "DT_INT64"}


def signature_defs(saved_model_dir: str) -> dict[str, Any]:
    """The SignatureDefs of a SavedModel's 'serve' MetaGraph, parsed from saved_model.pb."""
    from google.protobuf.message import DecodeError
    from tensorflow.core.protobuf import saved_model_pb2

    path = os.path.join(saved_model_dir, "saved_model.pb")
    model = saved_model_pb2.SavedModel()
    try:
        with open(path, "rb") as f:
            model.ParseFromString(f.read())
    except OSError as e:
        raise ServingRequestError(f"Cannot read {path}: {e.strerror or e}.") from e
    except DecodeError as e:
        raise ServingRequestError(f"{path} is not a SavedModel's saved_model.pb ({e}).") from e
    for meta_graph in model.meta_graphs:
        if "serve" in meta_graph.meta_info_def.tags:
            return {k: v for k, v in meta_graph.signature_def.items() if not k.startswith("__")}
    raise ServingRequestError(f"{path} has no 'serve' MetaGraph: TensorFlow Serving could not load it.")


def _signature(signatures: dict[str, Any], name: str) -> Any:
    if name not in signatures:
        raise ServingRequestError(f"The model has no signature {name!r}; it has {sorted(signatures)}.")
    return signatures[name]


def _check_shape(what: str, shape: Sequence[int], tensor_info: Any) -> None:
    expected = [d.size for d in tensor_info.tensor_shape.dim]
    if tensor_info.tensor_shape.unknown_rank:
        return
    if len(shape) != len(expected) or any(e != -1 and e != s for e, s in zip(expected, shape)):
        raise ServingRequestError(f"{what}: shape {list(shape)} does not fit the signature's {expected}.")


def check_grpc_request(request: Any, signatures: dict[str, Any]) -> None:
    """Raises unless the PredictRequest's inputs are exactly the signature's, with its dtypes
    and compatible shapes, and its output_filter names real outputs."""
    signature = _signature(signatures, request.model_spec.signature_name or SIGNATURE_BYTES)
    if set(request.inputs) != set(signature.inputs):
        raise ServingRequestError(f"inputs {sorted(request.inputs)} != the signature's {sorted(signature.inputs)}.")
    for name, tensor in request.inputs.items():
        info = signature.inputs[name]
        if tensor.dtype != info.dtype:
            raise ServingRequestError(f"input {name!r}: dtype {_DTYPE_NAMES.get(tensor.dtype, tensor.dtype)} != the "
                                      f"signature's {_DTYPE_NAMES.get(info.dtype, info.dtype)}.")
        _check_shape(f"input {name!r}", [d.size for d in tensor.tensor_shape.dim], info)
    unknown = set(request.output_filter) - set(signature.outputs)
    if unknown:
        raise ServingRequestError(f"output_filter {sorted(unknown)}: no such outputs ({sorted(signature.outputs)}).")


def check_rest_request(body: dict[str, Any], signatures: dict[str, Any]) -> None:
    """Raises a ServingRequestError unless the JSON body fits the signature as Serving would
    read it: names (row or columnar form), {"b64": ...} for DT_STRING, numbers for DT_FLOAT,
    and shapes; whatever else is wrong with it (not an object, bad base64, ragged numbers)."""
    if not isinstance(body, dict):
        raise ServingRequestError(f"A predict body is a JSON object, got {type(body).__name__}.")
    try:
        _check_rest_request(body, signatures)
    except (KeyError, IndexError, TypeError, ValueError, AttributeError) as e:  # binascii.Error is a ValueError.
        if isinstance(e, ServingRequestError):
            raise
        raise ServingRequestError(f"Not a predict request Serving could read ({type(e).__name__}: {e}).") from e


def _check_rest_request(body: dict[str, Any], signatures: dict[str, Any]) -> None:
    signature = _signature(signatures, body.get("signature_name", SIGNATURE_BYTES))
    names = sorted(signature.inputs)
    if ("instances" in body) == ("inputs" in body):
        raise ServingRequestError("A predict body has exactly one of 'instances' (row) or 'inputs' (columnar).")
    if "instances" in body:
        rows = body["instances"]
        if not isinstance(rows, list) or not rows:
            raise ServingRequestError("'instances' must be a non-empty list.")
        named = [isinstance(row, dict) and set(row) != {"b64"} for row in rows]  # {"b64"} is a value.
        if any(named) and not all(named):
            raise ServingRequestError("instances mix named-input objects and bare values.")
        if not any(named):
            if len(names) != 1:
                raise ServingRequestError(f"The signature has inputs {names}: name them in each instance.")
            columns = {names[0]: rows}
        else:
            columns = {name: [row.get(name) for row in rows] for name in names}
            extra = set().union(*(set(row) for row in rows)) - set(names)
            if extra:
                raise ServingRequestError(f"instances name unknown inputs {sorted(extra)}; the signature has {names}.")
    else:
        given = body["inputs"]
        if isinstance(given, dict) and set(given) != {"b64"} and set(given) - set(names):  # {"b64"} is a value.
            raise ServingRequestError(f"inputs name unknown inputs {sorted(set(given) - set(names))}; the signature "
                                      f"has {names}.")
        columns = given if isinstance(given, dict) and set(given) <= set(names) else {names[0]: given}
        if isinstance(given, dict) and set(given) != set(names) and set(given) <= set(names):
            raise ServingRequestError(f"inputs {sorted(given)} != the signature's {names}.")
    for name, values in columns.items():
        info = signature.inputs[name]
        if values == []:
            raise ServingRequestError(f"input {name!r} is an empty batch: send at least one image.")
        if info.dtype == 7:
            batch = values if isinstance(values, list) else [values]  # A bare value is a scalar to Serving.
            bad = [v for v in batch if not (isinstance(v, dict) and set(v) == {"b64"}) and not isinstance(v, str)]
            if bad:
                raise ServingRequestError(f"input {name!r} is DT_STRING: send each image as {{\"b64\": ...}}.")
            for v in batch:
                if isinstance(v, dict):
                    base64.b64decode(v["b64"], validate=True)
            shape = [len(values)] if isinstance(values, list) else []
        else:
            array = np.asarray(values)
            if array.dtype == object or not np.issubdtype(array.dtype, np.number):
                raise ServingRequestError(f"input {name!r} is {_DTYPE_NAMES.get(info.dtype)}: send nested lists of "
                                          "numbers of one shape.")
            shape = list(array.shape)
        _check_shape(f"input {name!r}", shape, info)
