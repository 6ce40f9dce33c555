"""What the demo's server refuses before Gradio reads a request (ASGI middleware).

- A body larger than one upload of the largest file an image within --max_pixels can be, with
  room for the form around it (`max_request_bytes`): Gradio's own cap is per file, and one
  request can carry a thousand files.
- A file given by URL: Gradio fetches a file object whose `path` is an http(s) URL, from the
  internet, for any caller of its API; the page itself only sends files it uploaded.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.formparsers import MultiPartException

from pix2pix_tf import image_files

_URL_PREFIXES = ("http://", "https://")  # What Gradio downloads (client_utils.is_http_url_like).


def max_request_bytes(max_pixels: int) -> int:
    """The largest request body the demo reads: one upload of the largest file an image within the
    cap can be, with room for the multipart form around it."""
    return image_files.max_file_bytes(max_pixels) + 2**20


class BodyTooLarge(MultiPartException):
    """Raised, as it reads, to the server's handler of a request whose body passed the cap: a
    multipart form's parser (Gradio's) then removes the files it had begun and answers 413."""

    def __init__(self, max_bytes: int) -> None:
        super().__init__(f"The request is larger than this demo takes: over the maximum allowed size of {max_bytes} "
                         "bytes (an image within --max_pixels, with room for the form around it).")


def names_a_file_url(body: bytes) -> bool:
    """Whether a JSON body holds a file object whose `path` is a URL (what Gradio would fetch)."""
    try:
        pending = [json.loads(body)]
    except (ValueError, RecursionError):
        return False  # Not JSON: Gradio refuses it itself.
    while pending:  # A walk, not a recursion: the nesting is the caller's.
        value = pending.pop()
        if isinstance(value, dict):
            path = value.get("path")
            if isinstance(path, str) and path.lower().startswith(_URL_PREFIXES):
                return True
            pending.extend(value.values())
        elif isinstance(value, list):
            pending.extend(value)
    return False


class RequestGuard:
    """ASGI middleware: 413 for a body over `max_bytes` (from its Content-Length before a byte is
    read, or as it arrives), 403 for a JSON body that names a file by URL."""

    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope["headers"])
        length = headers.get(b"content-length", b"0")
        if not length.isdigit() or int(length) > self.max_bytes:
            return await _answer(send, 413, BodyTooLarge(self.max_bytes).message)
        receive = self._counted(receive)
        if scope["method"] == "POST" and not headers.get(b"content-type", b"").startswith(b"multipart/"):
            try:
                body = await _read_body(receive)
            except BodyTooLarge as e:
                return await _answer(send, 413, e.message)
            if names_a_file_url(body):
                return await _answer(send, 403, "This demo takes files uploaded to it, not URLs to fetch.")
            receive = _replayed(body, receive)
        await self._serve(scope, receive, send)

    def _counted(self, receive: Any) -> Any:
        received = 0

        async def counted() -> dict:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_bytes:
                raise BodyTooLarge(self.max_bytes)
            return message

        return counted

    async def _serve(self, scope: dict, receive: Any, send: Any) -> None:
        started = False

        async def noted_send(message: dict) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, noted_send)
        except BodyTooLarge as e:  # A multipart parser lets it through after removing its files.
            if not started:
                await _answer(send, 413, e.message)


async def _read_body(receive: Any) -> bytes:
    chunks, more = [], True
    while more:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        more = message.get("more_body", False)
    return b"".join(chunks)


def _replayed(body: bytes, receive: Any) -> Any:
    """The body, read already, as one message; then what the client sends next (its disconnect)."""
    sent = False

    async def replay() -> dict:
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay


async def _answer(send: Any, status: int, text: str) -> None:
    data = text.encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"text/plain"), (b"content-length", str(len(data)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": data})
