"""Stand-ins for TensorFlow Serving's front ends (conftest.py's `servers` fixture): REST and gRPC
predict over a SavedModel; and a server that answers wrongly in the ways a client must survive
(`misbehaving_server`).

The Serving binary cannot be installed here. The stand-ins implement the parts of its
documented predict contract that the client relies on (REST: row/columnar JSON, {"b64"}
for DT_STRING inputs and for outputs named *_bytes; gRPC: PredictionService/Predict with
output_filter) on top of the real SavedModel signatures, so a round trip exercises real
HTTP, real gRPC and the real model.
"""

from __future__ import annotations

import base64
import contextlib
import json
import threading
import time
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Iterator

import grpc
import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc


class FakeServing:
    """REST + gRPC predict over one SavedModel, as TensorFlow Serving documents them."""

    def __init__(self, saved_model: str, model_name: str):
        self.model = tf.saved_model.load(saved_model)
        self.name = model_name

    def run(self, signature_name: str, inputs: dict) -> dict:
        function = self.model.signatures[signature_name]
        return {k: v.numpy() for k, v in function(**{k: tf.constant(v) for k, v in inputs.items()}).items()}

    # REST: decode {"b64"} for string inputs; wrap *_bytes outputs back into {"b64"}.
    def rest(self, path: str, body: dict) -> tuple[int, dict]:
        if not path.startswith(f"/v1/models/{self.name}") or not path.endswith(":predict"):
            return 404, {"error": f"Servable not found for request: {path}"}
        name = body.get("signature_name", "serving_default")
        if "instances" in body:
            values = [base64.b64decode(v["b64"]) if isinstance(v, dict) else v for v in body["instances"]]
        else:
            values = body["inputs"]["images"]
        try:
            outputs = self.run(name, {"images": np.array(values, dtype=object if isinstance(values[0], bytes)
                                                          else np.float32)})
        except (tf.errors.InvalidArgumentError, ValueError, TypeError) as e:
            return 400, {"error": str(e)}

        def encode(key, value):
            if key.endswith("_bytes"):
                return {"b64": base64.b64encode(value).decode()}
            return value.tolist()

        # A one-output signature's values come back unnamed.
        if "instances" in body:
            count = len(next(iter(outputs.values())))
            rows = [{k: encode(k, v[i]) for k, v in outputs.items()} for i in range(count)]
            return 200, {"predictions": [next(iter(r.values())) for r in rows] if len(outputs) == 1 else rows}
        columns = {k: ([encode(k, x) for x in v] if k.endswith("_bytes") else v.tolist()) for k, v in outputs.items()}
        return 200, {"outputs": next(iter(columns.values())) if len(columns) == 1 else columns}

    def predict(self, request, context):
        inputs = {k: tf.make_ndarray(v) for k, v in request.inputs.items()}
        try:
            outputs = self.run(request.model_spec.signature_name or "serving_default", inputs)
        except tf.errors.InvalidArgumentError as e:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(e))
        response = predict_pb2.PredictResponse()
        response.model_spec.CopyFrom(request.model_spec)
        for key, value in outputs.items():
            if not request.output_filter or key in request.output_filter:
                response.outputs[key].CopyFrom(tf.make_tensor_proto(value))
        return response


@contextlib.contextmanager
def serving(saved_model: str) -> Iterator[dict]:
    """{"rest": URL, "grpc": address, "fake": its FakeServing} of stand-ins serving `saved_model`."""
    fake = FakeServing(saved_model, "tiny")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 (http.server's naming)
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            status, answer = fake.rest(self.path, body)
            data = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=http.serve_forever, daemon=True).start()

    class Servicer(prediction_service_pb2_grpc.PredictionServiceServicer):
        def Predict(self, request, context):  # noqa: N802 (the generated stub's naming)
            return fake.predict(request, context)

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(Servicer(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()

    try:
        yield {"rest": f"http://127.0.0.1:{http.server_address[1]}", "grpc": f"127.0.0.1:{port}", "fake": fake}
    finally:
        server.stop(0)
        http.shutdown()


# ----------------------------------------------------------------------------- servers that misbehave


class Misbehaving(BaseHTTPRequestHandler):
    """A server at the REST address that answers each model name (the path's) wrongly in one way."""

    protocol_version = "HTTP/1.1"

    def do_POST(self):  # noqa: N802 (http.server's naming)
        self.rfile.read(int(self.headers["Content-Length"]))
        behaviour = self.path.split("/v1/models/")[1].split(":")[0]
        if not hasattr(Misbehaving, behaviour):  # As Serving answers a model it does not have, with the raw path.
            return self.answer(404, json.dumps({"error": f"no model at {self.path}"}).encode())
        getattr(self, behaviour)()

    def answer(self, status: int, body: bytes, content_type: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def trickle(self):  # One byte of a never-ending answer every 0.3 s: each read is quick, the whole never ends.
        self.send_response(200)
        self.send_header("Content-Length", "100000")
        self.end_headers()
        try:
            for _ in range(100):
                self.wfile.write(b" ")
                self.wfile.flush()
                time.sleep(0.3)
        except OSError:
            pass

    def trickle_headers(self):  # The status line itself, a byte at a time.
        try:
            for byte in b"HTTP/1.1 200 OK\r\nX-Slow: " + b"x" * 100:
                self.wfile.write(bytes([byte]))
                self.wfile.flush()
                time.sleep(0.3)
        except OSError:
            pass

    def html(self):
        self.answer(200, b"<html><body>It works!</body></html>", "text/html")

    def list(self):
        self.answer(200, b"[1, 2, 3]")

    def deep(self):  # Valid JSON nested deeper than Python's stack: json.loads raised RecursionError.
        self.answer(200, b"[" * 100_000 + b"]" * 100_000)

    def no_outputs(self):
        self.answer(200, b'{"model_version": "1"}')

    def other_output(self):
        self.answer(200, json.dumps({"predictions": [{"scores": 1, "labels": 2}]}).encode())

    def bad_base64(self):
        self.answer(200, json.dumps({"predictions": [{"b64": "not base64!"}]}).encode())

    def too_many(self):  # Two outputs for the one image sent: which is whose?
        png = base64.b64encode(b"\x89PNG").decode()
        self.answer(200, json.dumps({"predictions": [{"b64": png}, {"b64": png}]}).encode())

    def bytes_not_a_list(self):
        self.answer(200, json.dumps({"outputs": {"output_bytes": "abc"}}).encode())

    def ragged(self):
        self.answer(200, json.dumps({"outputs": {"output": [[[[0.0]]], [[[0.0], [1.0]]]]}}).encode())

    def hang_up(self):
        self.close_connection = True
        self.connection.shutdown(2)

    def broken_off(self):
        self.send_response(200)
        self.send_header("Content-Length", "1000")
        self.end_headers()
        self.wfile.write(b'{"predictions": [')
        self.close_connection = True

    def html_error(self):
        self.answer(502, b"<html>Bad Gateway</html>", "text/html")

    def log_message(self, *args):
        pass


@contextlib.contextmanager
def misbehaving_server() -> Iterator[str]:
    """The address of a `Misbehaving` server."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), Misbehaving)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
