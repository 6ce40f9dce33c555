"""One HTTP POST under one deadline, for the REST serving client (`serving.client.RestClient`).

`socket` timeouts bound each read or write, so a server that sends a byte just inside the
timeout keeps a client waiting without end; here a timer shuts the socket down when the
deadline of the whole request passes, which ends any read or write in progress.
Standard library only: a client process need not load TensorFlow.
"""

from __future__ import annotations

import contextlib
import http.client
import ipaddress
import socket
import threading
import urllib.parse

# The largest answer read: a batch of 16 images of 512x512x3 floats, as JSON text, with room.
MAX_ANSWER_BYTES = 1 << 30


class TransportError(Exception):
    """The request did not complete; the message says how (the caller names the URL)."""


def base_url(host: str, port: int) -> str:
    """`host` (`http(s)://HOST[:PORT]`, `HOST:PORT`, `HOST`, an IPv6 address with or without
    brackets) as `scheme://host:port`; a TransportError naming it when it is no HTTP address."""
    if "://" in host:
        base = host
    elif _is_ipv6(host):
        base = f"http://[{host}]:{port}"
    else:
        base = f"http://{host}" if ":" in host else f"http://{host}:{port}"
    try:
        parts = urllib.parse.urlsplit(base)
        # `port` raises ValueError for a port that is no number or out of range; 0 is none to connect to.
        valid = parts.port != 0 and parts.scheme in ("http", "https") and bool(parts.hostname)
    except ValueError:  # Also an unclosed IPv6 bracket.
        valid = False
    if not valid:
        raise TransportError(f"{host}: not an address of TensorFlow Serving's REST API; expected "
                             f"http://HOST:PORT (or HOST:PORT, or HOST for port {port}).")
    return base.rstrip("/")


def _is_ipv6(host: str) -> bool:
    try:
        return isinstance(ipaddress.ip_address(host), ipaddress.IPv6Address)
    except ValueError:
        return False


def post(url: str, data: bytes, timeout: float, max_bytes: int = MAX_ANSWER_BYTES) -> tuple[int, bytes]:
    """(HTTP status, answer bytes) of POSTing JSON `data` to `url`, all of it within `timeout`
    seconds; an answer over `max_bytes` is refused."""
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError as e:  # A port that is no number or out of range: the caller's URL, not a traceback.
        raise TransportError(f"not an HTTP URL ({e}).") from e
    kind = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    expired = threading.Event()
    connection = kind(parts.hostname, port, timeout=timeout)

    def expire() -> None:
        expired.set()
        with contextlib.suppress(OSError, AttributeError):  # No socket yet, or already closed.
            connection.sock.shutdown(socket.SHUT_RDWR)

    timer = threading.Timer(timeout, expire)
    timer.daemon = True
    timer.start()
    try:
        connection.connect()
        if expired.is_set():  # Connected just as the deadline passed.
            raise TimeoutError
        connection.request("POST", urllib.parse.urlunsplit(("", "", parts.path, parts.query, "")), body=data,
                           headers={"Content-Type": "application/json"})
        answer = connection.getresponse()
        raw = _read(answer, max_bytes)
        if expired.is_set():  # A shut-down socket can end a body without a length early, silently.
            raise TimeoutError
        return answer.status, raw
    except (OSError, http.client.HTTPException, ValueError) as e:  # ValueError: a name IDNA cannot encode.
        if expired.is_set() or isinstance(e, TimeoutError):
            raise TransportError(f"no complete answer within {timeout:g} s (the timeout, for the whole "
                                 "request).") from None
        raise TransportError(_failure(e)) from e
    finally:
        timer.cancel()
        connection.close()


def _read(answer: http.client.HTTPResponse, max_bytes: int) -> bytes:
    chunks, size = [], 0
    while chunk := answer.read(1 << 16):
        size += len(chunk)
        if size > max_bytes:
            raise TransportError(f"the answer is larger than {max_bytes} bytes; send fewer images per request.")
        chunks.append(chunk)
    if answer.length:  # Read in parts, a body shorter than its Content-Length ends without an error.
        raise http.client.IncompleteRead(b"".join(chunks), answer.length)
    return b"".join(chunks)


def preview(raw: bytes) -> str:
    """The start of an answer, for a message."""
    return raw[:120].decode("utf-8", "replace").strip()


def _failure(error: Exception) -> str:
    """What went wrong on the way, as a user reads it."""
    if isinstance(error, ConnectionRefusedError):
        return "connection refused: is TensorFlow Serving running there, on its REST port?"
    if isinstance(error, http.client.RemoteDisconnected):
        return "the server closed the connection without answering."
    if isinstance(error, http.client.IncompleteRead):
        return f"the answer broke off after {len(error.partial)} bytes."
    if isinstance(error, socket.gaierror):
        return f"unknown host ({error.strerror})."
    return f"{type(error).__name__}: {error}"
