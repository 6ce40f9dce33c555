"""A small client for the exported generator behind TensorFlow Serving: REST (JSON) and gRPC.

The request builders follow Serving's documented contract and can be checked against the
SavedModel's own SignatureDefs (`serving.request_checks`) before a server is involved.

    REST  POST http://HOST:8501/v1/models/NAME[/versions/V]:predict
          {"signature_name": "serving_default", "instances": [{"b64": "<base64 JPEG/PNG>"}, ...]}
          -> {"predictions": [{"output_bytes": {"b64": "<base64 PNG>"}, "output": [[[...]]]}, ...]}
    gRPC  tensorflow.serving.PredictionService/Predict on HOST:8500 with a PredictRequest

gRPC needs `tensorflow-serving-api` and `grpcio` (both installed with the package); REST needs
nothing beyond the standard library and NumPy.
"""

from __future__ import annotations

import base64
import json
import math
import urllib.parse
from typing import Any, Optional, Sequence

import numpy as np

from pix2pix_tf.errors import Pix2pixError
from pix2pix_tf.inference.artifacts import (
    INPUT_NAME,
    OUTPUT_BYTES,
    OUTPUT_FLOAT,
    SIGNATURE_BYTES,
    SIGNATURE_FLOAT,
    SIGNATURE_FLOAT_DETERMINISTIC,
    SIGNATURE_PNG,
)
from pix2pix_tf.serving import http_post

# gRPC clients default to a 4 MB receive limit; a batch of 256x256 float outputs is larger.
GRPC_MESSAGE_LIMIT = 256 * 1024 * 1024



class ServingRequestError(Pix2pixError, ValueError):
    """A request that does not fit the model's signature, or a server's error answer."""


# ----------------------------------------------------------------------------- REST


def rest_url(host: str, model_name: str, version: Optional[int] = None, port: int = 8501) -> str:
    """The predict URL of Serving's REST API. `host` is `http(s)://HOST[:PORT]`, `HOST:PORT` or
    `HOST` (then `port`), an IPv6 address with or without brackets; anything else is refused
    here, so that no address reaches the transport as a raw ValueError. The model name is
    percent-encoded: a URL path carries only ASCII, and `/` or `:` would change its meaning."""
    try:
        base = http_post.base_url(host, port)
    except http_post.TransportError as e:
        raise ServingRequestError(str(e)) from e
    path = f"/v1/models/{urllib.parse.quote(model_name, safe='')}"
    return base + path + (f"/versions/{version}" if version is not None else "") + ":predict"


def rest_bytes_request(images: Sequence[bytes], signature_name: str = SIGNATURE_BYTES) -> dict[str, Any]:
    """Row-format body for the encoded-image signatures: each image is `{"b64": ...}`, the form
    Serving requires for DT_STRING binary data."""
    if not images:
        raise ServingRequestError("No images to send.")
    return {"signature_name": signature_name,
            "instances": [{"b64": base64.b64encode(bytes(image)).decode("ascii")} for image in images]}


def rest_float_request(images: np.ndarray, signature_name: str = SIGNATURE_FLOAT) -> dict[str, Any]:
    """Columnar body for the float signatures: `images` float32 [N, H, W, C] in [-1, 1]."""
    images = np.asarray(images, np.float32)
    if images.ndim != 4:
        raise ServingRequestError(f"images must be [N, H, W, C], got shape {images.shape}.")
    return {"signature_name": signature_name, "inputs": {INPUT_NAME: images.tolist()}}


def parse_rest_response(body: dict[str, Any]) -> dict[str, Any]:
    """Serving's JSON answer -> {output name: list of PNG bytes, or float32 array}; an answer
    of another form is a ServingRequestError, whatever is wrong with it."""
    try:
        return _parse_rest_response(body)
    except (KeyError, IndexError, TypeError, ValueError, AttributeError) as e:  # binascii.Error is a ValueError.
        if isinstance(e, ServingRequestError):
            raise
        raise ServingRequestError(f"The answer is not Serving's predict answer ({type(e).__name__}: {e}): "
                                  f"{str(body)[:200]}") from e


def _parse_rest_response(body: dict[str, Any]) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise ServingRequestError(f"The answer is not a JSON object: {str(body)[:200]}")
    if "error" in body:
        raise ServingRequestError(f"TensorFlow Serving answered: {body['error']}")
    if "predictions" in body:
        rows = body["predictions"]
        if rows and _is_value(rows[0]):  # A one-output signature: the values themselves, unnamed.
            columns = {_single_output_name(rows[0]): rows}
        else:
            columns = {name: [row[name] for row in rows] for name in (rows[0] if rows else {})}
    elif "outputs" in body:
        outputs = body["outputs"]
        if isinstance(outputs, list) and outputs and _is_value(outputs[0]):
            columns = {_single_output_name(outputs[0]): outputs}
        else:
            columns = outputs
    else:
        raise ServingRequestError(f"Unexpected answer (neither 'predictions' nor 'outputs'): {str(body)[:200]}")
    if not isinstance(columns, dict):
        raise ServingRequestError(f"Unexpected answer (outputs neither named nor a list): {str(body)[:200]}")
    return {name: _from_json(name, values) for name, values in columns.items()}


def _is_value(item: Any) -> bool:
    """A value in Serving's JSON (a number, a list, or {"b64": ...}), not an object of named outputs."""
    return not isinstance(item, dict) or set(item) == {"b64"}


def _single_output_name(item: Any) -> str:
    # Serving leaves the name out when a signature has one output: ours are output_bytes or output.
    return OUTPUT_BYTES if isinstance(item, dict) else OUTPUT_FLOAT


def _from_json(name: str, values: list) -> Any:
    if not isinstance(values, list):
        raise ServingRequestError(f"Unexpected answer ('{name}' is not a list of one value per image): "
                                  f"{str(values)[:200]}")
    if name.endswith("_bytes"):
        return [base64.b64decode(v["b64"], validate=True) if isinstance(v, dict) else v.encode("latin-1")
                for v in values]
    return np.asarray(values, np.float32)


def summarize_error(text: str) -> str:
    """The model's own message out of a TensorFlow error text (its graph assertions say
    "assertion failed: [the message] ..."), else the text's first line."""
    marker = "assertion failed: ["
    if marker in text:
        start = text.index(marker) + len(marker)
        return text[start:text.index("]", start)]
    for line in text.strip().splitlines():
        if line.strip() and line.strip() != "Graph execution error:":
            return line.strip()
    return text.strip()


class RestClient:
    """Predict over Serving's REST API with the standard library's HTTP client.

    `timeout` is one deadline for the whole request (connecting, sending, and the last byte of
    the answer), not a limit per socket operation that a server sending a byte at a time
    would renew forever; an answer over `max_answer_bytes` is refused. Every failure, of the
    transport or of the answer's form, is a ServingRequestError that names the URL.
    """

    def __init__(self, host: str, model_name: str, version: Optional[int] = None, port: int = 8501,
                 timeout: float = 60.0, max_answer_bytes: int = http_post.MAX_ANSWER_BYTES):
        if not timeout > 0 or not math.isfinite(timeout):
            raise ServingRequestError(f"The timeout must be a positive number of seconds, got {timeout}.")
        self.url = rest_url(host, model_name, version, port)
        self.timeout = timeout
        self.max_answer_bytes = max_answer_bytes

    def post(self, body: dict[str, Any]) -> dict[str, Any]:
        """Serving's JSON answer to `body`, a dict; its error answers raised with their message."""
        status, raw = self._exchange(json.dumps(body).encode())
        try:
            answer = json.loads(raw)
        except (ValueError, RecursionError):  # RecursionError: arrays nested deeper than Python's stack.
            answer = None
        if status >= 400:  # Serving puts the reason in a JSON body.
            detail = answer.get("error") if isinstance(answer, dict) else None
            detail = summarize_error(str(detail)) if detail else http_post.preview(raw) or "no reason given"
            raise ServingRequestError(f"{self.url}: HTTP {status}: {detail}")
        if not isinstance(answer, dict):
            what = "not JSON" if answer is None else f"JSON {type(answer).__name__}, not an object"
            raise ServingRequestError(f"{self.url}: the answer (HTTP {status}, {len(raw)} bytes) is {what}: "
                                      f"{http_post.preview(raw)!r}. Is this TensorFlow Serving's REST port?")
        return answer

    def predict(self, body: dict[str, Any]) -> dict[str, Any]:
        """`parse_rest_response` of the answer to `body`: {output name: PNG bytes or floats}."""
        try:
            return parse_rest_response(self.post(body))
        except ServingRequestError as e:
            if str(e).startswith(self.url):
                raise
            raise ServingRequestError(f"{self.url}: {e}") from e

    def _exchange(self, data: bytes) -> tuple[int, bytes]:
        try:
            return http_post.post(self.url, data, self.timeout, self.max_answer_bytes)
        except http_post.TransportError as e:
            raise ServingRequestError(f"{self.url}: {e}") from e

    def translate(self, images: Sequence[bytes], signature_name: str = SIGNATURE_PNG) -> list[bytes]:
        """Encoded images in, translated PNG bytes out."""
        answer = self.predict(rest_bytes_request(images, signature_name))
        return one_per_image(self._output(answer, OUTPUT_BYTES), len(images), self.url)

    def translate_float(self, images: np.ndarray, deterministic: bool = False) -> np.ndarray:
        name = SIGNATURE_FLOAT_DETERMINISTIC if deterministic else SIGNATURE_FLOAT
        return one_per_image(self._output(self.predict(rest_float_request(images, name)), OUTPUT_FLOAT), len(images),
                             self.url)

    def _output(self, outputs: dict[str, Any], name: str) -> Any:
        if name not in outputs:
            raise ServingRequestError(f"{self.url}: the answer has no '{name}' output (it has {sorted(outputs)}).")
        return outputs[name]


def one_per_image(outputs: Any, count: int, server: str) -> Any:
    """`outputs` if it holds one output per image sent: an answer with fewer (or more) would
    pair outputs with the wrong inputs, or lose some, without a word."""
    if len(outputs) != count:
        raise ServingRequestError(f"{server}: the answer holds {len(outputs)} output(s) for the {count} image(s) sent.")
    return outputs


# ----------------------------------------------------------------------------- gRPC


def grpc_bytes_request(model_name: str, images: Sequence[bytes], signature_name: str = SIGNATURE_BYTES,
                       version: Optional[int] = None, output_filter: Sequence[str] = ()) -> Any:
    """A PredictRequest for the encoded-image signatures (DT_STRING [N]). `output_filter`
    (e.g. ["output_bytes"]) asks Serving to return only those outputs."""
    from tensorflow_serving.apis import predict_pb2

    if not images:
        raise ServingRequestError("No images to send.")
    request = predict_pb2.PredictRequest()
    _model_spec(request, model_name, signature_name, version)
    tensor = request.inputs[INPUT_NAME]
    tensor.dtype = 7  # DT_STRING
    tensor.tensor_shape.dim.add().size = len(images)
    tensor.string_val.extend(bytes(image) for image in images)
    request.output_filter.extend(output_filter)
    return request


def grpc_float_request(model_name: str, images: np.ndarray, signature_name: str = SIGNATURE_FLOAT,
                       version: Optional[int] = None) -> Any:
    """A PredictRequest for the float signatures: float32 [N, H, W, C] in [-1, 1]."""
    from tensorflow_serving.apis import predict_pb2

    images = np.ascontiguousarray(images, np.float32)
    if images.ndim != 4:
        raise ServingRequestError(f"images must be [N, H, W, C], got shape {images.shape}.")
    request = predict_pb2.PredictRequest()
    _model_spec(request, model_name, signature_name, version)
    tensor = request.inputs[INPUT_NAME]
    tensor.dtype = 1  # DT_FLOAT
    for size in images.shape:
        tensor.tensor_shape.dim.add().size = size
    tensor.tensor_content = images.tobytes()
    return request


def _model_spec(request: Any, model_name: str, signature_name: str, version: Optional[int]) -> None:
    request.model_spec.name = model_name
    request.model_spec.signature_name = signature_name
    if version is not None:
        request.model_spec.version.value = version


def parse_grpc_response(response: Any) -> dict[str, Any]:
    """PredictResponse -> {output name: list of PNG bytes, or float32 array}."""
    outputs = {}
    for name, tensor in response.outputs.items():
        shape = [d.size for d in tensor.tensor_shape.dim]
        if tensor.dtype == 7:
            outputs[name] = list(tensor.string_val)
        elif tensor.tensor_content:
            outputs[name] = np.frombuffer(tensor.tensor_content, np.float32).reshape(shape)
        else:
            outputs[name] = np.asarray(tensor.float_val, np.float32).reshape(shape)
    return outputs


class GrpcClient:
    """Predict over Serving's gRPC API (port 8500 by default), with a receive limit that fits
    batches of images."""

    def __init__(self, target: str, model_name: str, version: Optional[int] = None, timeout: float = 60.0):
        import grpc
        from tensorflow_serving.apis import prediction_service_pb2_grpc

        options = [("grpc.max_receive_message_length", GRPC_MESSAGE_LIMIT),
                   ("grpc.max_send_message_length", GRPC_MESSAGE_LIMIT)]
        self.channel = grpc.insecure_channel(target, options=options)
        self.stub = prediction_service_pb2_grpc.PredictionServiceStub(self.channel)
        self.target, self.model_name, self.version, self.timeout = target, model_name, version, timeout

    def predict(self, request: Any) -> dict[str, Any]:
        import grpc

        try:
            return parse_grpc_response(self.stub.Predict(request, timeout=self.timeout))
        except grpc.RpcError as e:
            raise ServingRequestError(f"gRPC Predict failed: {e.code().name}: {summarize_error(e.details())}") from e

    def translate(self, images: Sequence[bytes]) -> list[bytes]:
        """Encoded images in, translated PNG bytes out (only the PNG output is sent back)."""
        request = grpc_bytes_request(self.model_name, images, SIGNATURE_BYTES, self.version,
                                     output_filter=[OUTPUT_BYTES])
        return one_per_image(self.predict(request)[OUTPUT_BYTES], len(images), self.target)

    def translate_float(self, images: np.ndarray, deterministic: bool = False) -> np.ndarray:
        name = SIGNATURE_FLOAT_DETERMINISTIC if deterministic else SIGNATURE_FLOAT
        outputs = self.predict(grpc_float_request(self.model_name, images, name, self.version))[OUTPUT_FLOAT]
        return one_per_image(outputs, len(images), self.target)

    def close(self) -> None:
        self.channel.close()
