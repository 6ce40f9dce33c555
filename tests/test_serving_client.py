"""The serving client: its REST and gRPC requests are checked against the exported SavedModel's
own SignatureDefs, then sent over loopback to stand-ins for TensorFlow Serving's front ends
(tests/serving_stand_ins.py: real HTTP, real gRPC and the real model), and to servers that
answer wrongly.
"""

from __future__ import annotations

import base64
import importlib.util
import json
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

from pix2pix_tf.inference import artifacts
from pix2pix_tf.serving import client as sc
from pix2pix_tf.serving import request_checks as checks

from export_helpers import ROOT
from programs import run_program


@pytest.fixture(scope="module")
def signatures(export) -> dict:
    return checks.signature_defs(export["deterministic"])


def png(shape=(50, 70, 3), seed=0) -> bytes:
    return tf.io.encode_png(np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)).numpy()


def test_the_client_imports_without_tensorflow():
    """A client process (or a web front end) sends images without loading TensorFlow: the
    names it needs come from the TensorFlow-free pix2pix_tf.inference.artifacts."""
    probe = ("import sys, pix2pix_tf.serving.client; "
             "print(sorted(m for m in ('tensorflow', 'keras') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "[]"


def test_signature_names_are_the_documented_contract(signatures):
    assert set(signatures) == {sc.SIGNATURE_BYTES, sc.SIGNATURE_PNG, sc.SIGNATURE_FLOAT,
                               sc.SIGNATURE_FLOAT_DETERMINISTIC, artifacts.SIGNATURE_NATIVE}
    for name, signature in signatures.items():
        assert list(signature.inputs) == [sc.INPUT_NAME], name
        assert signature.method_name == "tensorflow/serving/predict"
    assert set(signatures[sc.SIGNATURE_BYTES].outputs) == {sc.OUTPUT_BYTES, sc.OUTPUT_FLOAT}
    assert set(signatures[sc.SIGNATURE_PNG].outputs) == {sc.OUTPUT_BYTES}
    assert set(signatures[artifacts.SIGNATURE_NATIVE].outputs) == {sc.OUTPUT_BYTES, sc.OUTPUT_FLOAT}
    assert sc.OUTPUT_BYTES.endswith("_bytes")  # Serving's REST API then answers {"b64": ...}.


def test_requests_fit_the_signature(signatures):
    images = [png(seed=1), png((30, 30, 1), seed=2)]
    checks.check_rest_request(sc.rest_bytes_request(images), signatures)
    checks.check_rest_request(sc.rest_bytes_request(images, sc.SIGNATURE_PNG), signatures)
    checks.check_rest_request(sc.rest_float_request(np.zeros((2, 128, 128, 3))), signatures)
    checks.check_grpc_request(sc.grpc_bytes_request("tiny", images, output_filter=[sc.OUTPUT_BYTES]), signatures)
    floats = sc.grpc_float_request("tiny", np.zeros((1, 256, 128, 3)), sc.SIGNATURE_FLOAT_DETERMINISTIC, version=2)
    checks.check_grpc_request(floats, signatures)
    body = json.loads(json.dumps(sc.rest_bytes_request(images)))  # What goes over the wire.
    assert base64.b64decode(body["instances"][1]["b64"]) == images[1]


@pytest.mark.parametrize("body,message", [
    ({"signature_name": "translate", "instances": [{"b64": "AA=="}]}, "no signature 'translate'"),
    ({"instances": [[0.0, 1.0]]}, "DT_STRING"),
    ({"instances": [{"image": {"b64": "AA=="}}]}, "unknown inputs"),
    ({"signature_name": "translate_float", "inputs": {"images": [[[[0.0] * 4] * 128] * 128]}}, "does not fit"),
    ({"signature_name": "translate_float", "inputs": {"images": [[0.0] * 3] * 5}}, "does not fit"),
    ({"signature_name": "translate_float", "inputs": {"images": [[["a"]]]}}, "numbers"),
    ({"instances": [{"b64": "AA=="}], "inputs": {}}, "exactly one of"),
    ({"instances": [{"b64": "not base64!"}]}, r"Not a predict request Serving could read \(Error: "),
    ({"signature_name": "translate_float", "inputs": {"images": [[0.0], [0.0, 1.0]]}}, "Not a predict request"),
    ({"signature_name": "translate_float", "inputs": {"imgs": [[[[0.0] * 3] * 128] * 128]}},
     r"inputs name unknown inputs \['imgs'\]; the signature has \['images'\]"),
    (["not", "an", "object"], "A predict body is a JSON object, got list"),
    # A bare value in the columnar form is a scalar to Serving: its characters or keys were counted as the batch.
    ({"inputs": "aGVsbG8="}, r"input 'images': shape \[\] does not fit the signature's \[-1\]"),
    ({"inputs": {"images": "aGVsbG8="}}, r"input 'images': shape \[\] does not fit the signature's \[-1\]"),
    ({"inputs": {"b64": "aGVsbG8="}}, r"input 'images': shape \[\] does not fit the signature's \[-1\]"),
    ({"inputs": []}, "input 'images' is an empty batch: send at least one image."),
    ({"signature_name": "translate_float", "inputs": {"images": 0.5}}, r"shape \[\] does not fit"),
])
def test_bad_rest_bodies_are_refused(signatures, body, message):
    with pytest.raises(sc.ServingRequestError, match=message):
        checks.check_rest_request(body, signatures)


def test_a_saved_model_pb_that_is_missing_or_not_one_is_refused_naming_it(tmp_path):
    with pytest.raises(sc.ServingRequestError, match=f"Cannot read {tmp_path / 'saved_model.pb'}: No such file"):
        checks.signature_defs(str(tmp_path))
    (tmp_path / "saved_model.pb").write_bytes(b"\xff" * 10)
    with pytest.raises(sc.ServingRequestError, match="is not a SavedModel's saved_model.pb"):
        checks.signature_defs(str(tmp_path))


def test_bad_grpc_requests_are_refused(signatures):
    request = sc.grpc_float_request("tiny", np.zeros((1, 128, 128, 1)))
    with pytest.raises(sc.ServingRequestError, match=r"shape \[1, 128, 128, 1\]"):
        checks.check_grpc_request(request, signatures)
    request = sc.grpc_bytes_request("tiny", [png()])
    request.model_spec.signature_name = sc.SIGNATURE_FLOAT
    with pytest.raises(sc.ServingRequestError, match="dtype DT_STRING"):
        checks.check_grpc_request(request, signatures)
    with pytest.raises(sc.ServingRequestError, match="output_filter"):
        checks.check_grpc_request(sc.grpc_bytes_request("tiny", [png()], output_filter=["png"]), signatures)
    with pytest.raises(sc.ServingRequestError, match="No images"):
        sc.grpc_bytes_request("tiny", [])


def test_rest_and_grpc_round_trips_give_the_signature_s_pictures(servers):
    images = [png(seed=3), png((40, 40, 4), seed=4)]
    expected = servers["fake"].run("serving_default", {"images": np.array(images, dtype=object)})
    rest = sc.RestClient(servers["rest"], "tiny", version=2)
    assert rest.url.endswith("/v1/models/tiny/versions/2:predict")
    via_rest = rest.translate(images)
    grpc_client = sc.GrpcClient(servers["grpc"], "tiny")
    via_grpc = grpc_client.translate(images)
    for got in (via_rest, via_grpc):
        assert len(got) == 2
        for picture, reference in zip(got, expected["output_bytes"]):
            assert np.array_equal(tf.io.decode_png(picture).numpy(), tf.io.decode_png(reference).numpy())
    both = sc.parse_rest_response(rest.post(sc.rest_bytes_request(images, sc.SIGNATURE_BYTES)))
    assert set(both) == {sc.OUTPUT_BYTES, sc.OUTPUT_FLOAT} and both[sc.OUTPUT_FLOAT].shape == (2, 128, 128, 3)
    floats = np.random.default_rng(5).uniform(-1, 1, (1, 128, 128, 3)).astype(np.float32)
    reference = servers["fake"].run("translate_float_deterministic", {"images": floats})["output"]
    np.testing.assert_allclose(rest.translate_float(floats, deterministic=True), reference, atol=1e-6)
    np.testing.assert_array_equal(grpc_client.translate_float(floats, deterministic=True), reference)
    grpc_client.close()


def test_server_errors_reach_the_caller_as_messages(servers):
    rest = sc.RestClient(servers["rest"], "tiny")
    with pytest.raises(sc.ServingRequestError, match="HTTP 400.*empty"):
        rest.translate([b""])
    with pytest.raises(sc.ServingRequestError, match="HTTP 404"):
        sc.RestClient(servers["rest"], "other").translate([png()])
    grpc_client = sc.GrpcClient(servers["grpc"], "tiny")
    with pytest.raises(sc.ServingRequestError, match="INVALID_ARGUMENT.*not JPEG, PNG"):
        grpc_client.translate([b"plain text"])
    grpc_client.close()
    with pytest.raises(sc.ServingRequestError, match="refused|Connection"):
        sc.RestClient("http://127.0.0.1:9", "tiny", timeout=5).translate([png()])


@pytest.mark.parametrize("behaviour", ["trickle", "trickle_headers"])
def test_one_deadline_bounds_the_whole_request(misbehaving, behaviour):
    """A server that sends a byte every 0.3 s renews every socket timeout; the client's
    timeout is for the whole request, headers and body alike."""
    client = sc.RestClient(misbehaving, behaviour, timeout=1.0)
    start = time.monotonic()
    with pytest.raises(sc.ServingRequestError, match=r"no complete answer within 1 s") as caught:
        client.translate([b"x"])
    assert time.monotonic() - start < 3.0  # Generous: the deadline is 1 s, a trickled answer lasts 30 s.
    assert str(caught.value).startswith(client.url)


@pytest.mark.parametrize("behaviour,message", [
    ("html", r"the answer \(HTTP 200, 35 bytes\) is not JSON: '<html><body>It works!"),
    ("list", "is JSON list, not an object"),
    ("deep", r"the answer \(HTTP 200, 200000 bytes\) is not JSON: '\[\[\["),
    ("no_outputs", "neither 'predictions' nor 'outputs'"),
    ("other_output", "the answer has no 'output_bytes' output"),
    ("bad_base64", "not Serving's predict answer"),
    ("too_many", r"the answer holds 2 output\(s\) for the 1 image\(s\) sent"),
    ("bytes_not_a_list", "'output_bytes' is not a list of one value per image"),
    ("hang_up", "closed the connection without answering"),
    ("broken_off", "broke off after 17 bytes"),
    ("html_error", "HTTP 502: <html>Bad Gateway</html>"),
])
def test_every_transport_or_parsing_failure_is_a_serving_request_error_naming_the_url(misbehaving, behaviour,
                                                                                      message):
    client = sc.RestClient(misbehaving, behaviour, timeout=10)
    with pytest.raises(sc.ServingRequestError, match=message) as caught:
        client.translate([b"x"])
    assert str(caught.value).startswith(client.url + ": ")


def test_a_float_answer_of_ragged_shape_is_a_serving_request_error(misbehaving):
    client = sc.RestClient(misbehaving, "ragged", timeout=10)
    with pytest.raises(sc.ServingRequestError, match="not Serving's predict answer") as caught:
        client.translate_float(np.zeros((1, 8, 8, 3), np.float32))
    assert str(caught.value).startswith(client.url)


def test_an_answer_over_the_size_cap_is_refused(misbehaving):
    client = sc.RestClient(misbehaving, "html", timeout=10, max_answer_bytes=10)
    with pytest.raises(sc.ServingRequestError, match="larger than 10 bytes"):
        client.translate([b"x"])
    with pytest.raises(sc.ServingRequestError, match="positive number of seconds"):
        sc.RestClient(misbehaving, "html", timeout=float("nan"))


# ----------------------------------------------------------------------------- the address and the model name


def test_a_host_and_port_without_a_scheme_is_an_http_address(misbehaving):
    """`HOST:PORT` is http://HOST:PORT (it was http://HOST:PORT:8501, a raw ValueError when
    sent); a bare IPv6 address gets its brackets; a bare host gets the port argument."""
    port = misbehaving.rsplit(":", 1)[1]
    client = sc.RestClient(f"127.0.0.1:{port}", "html", timeout=10)
    assert client.url == f"{misbehaving}/v1/models/html:predict"
    with pytest.raises(sc.ServingRequestError, match="is not JSON"):  # It reached the server.
        client.translate([b"x"])
    assert sc.rest_url("::1", "m") == "http://[::1]:8501/v1/models/m:predict"
    assert sc.rest_url("[::1]:9000", "m") == "http://[::1]:9000/v1/models/m:predict"
    assert sc.rest_url("localhost", "m", version=2, port=9000) == "http://localhost:9000/v1/models/m/versions/2:predict"


@pytest.mark.parametrize("address", ["http://127.0.0.1:99999", "localhost:8501:8501", "127.0.0.1:abc",
                                     "localhost:0", "ftp://127.0.0.1:8501", "http://:8501", "http://[::1"])
def test_an_address_that_is_no_http_url_is_refused_naming_it(address):
    with pytest.raises(sc.ServingRequestError) as caught:
        sc.RestClient(address, "m")
    message = str(caught.value)
    assert message.startswith(f"{address}: ") and "expected http://HOST:PORT" in message, message
    assert "\n" not in message


def test_the_model_name_is_percent_encoded_in_the_path(misbehaving):
    """A name outside ASCII was a raw UnicodeEncodeError; `/` or `:` would change the path."""
    client = sc.RestClient(misbehaving, "é/x:y", timeout=10)
    assert client.url == f"{misbehaving}/v1/models/%C3%A9%2Fx%3Ay:predict"
    with pytest.raises(sc.ServingRequestError, match=r"HTTP 404: no model at /v1/models/%C3%A9%2Fx%3Ay:predict") \
            as caught:
        client.translate([b"x"])
    assert str(caught.value).startswith(client.url + ": ")


@pytest.mark.skipif(importlib.util.find_spec("gradio") is None, reason="the demo needs Gradio (the demo extra)")
def test_the_demo_takes_host_and_port_and_refuses_a_bad_address_in_one_line(misbehaving):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        free = s.getsockname()[1]
    port = misbehaving.rsplit(":", 1)[1]
    for address, message in (
            (f"127.0.0.1:{port}", f"error: TensorFlow Serving does not answer as a pix2pix export: {misbehaving}/v1/"
                                  "models/html:predict: the answer (HTTP 200, 35 bytes) is not JSON"),
            ("http://127.0.0.1:99999", "error: http://127.0.0.1:99999: not an address of TensorFlow Serving's REST "
                                       "API; expected http://HOST:PORT")):
        result = run_program("demo", f"--serving_url={address}", "--model_name=html", f"--port={free}")
        assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-2000:]
        lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
        assert len(lines) == 1 and lines[0].startswith(message), lines
