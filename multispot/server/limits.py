"""Bounded request bodies: a hostile client cannot make the server buffer more than it allows.

An ASGI middleware, so it sees the body before any route reads it: a declared
``Content-Length`` over the limit is answered 413 at once, and a body sent without one (chunked)
is counted as it arrives and cut off at the limit. ``POST /api/v1/code`` (the code archive) has
its own, larger limit; every other body is JSON and small.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from multispot.errors import ServerError
from multispot.server.errors import error_body


class BodyTooLarge(HTTPException):
    """Raised inside the route that reads the body: an HTTP error, so FastAPI answers it as one."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the request body is larger than {limit} bytes")


class BodyLimit:
    def __init__(self, app: ASGIApp, json_limit: int, upload_limit: int) -> None:
        self.app = app
        self.json_limit = json_limit
        self.upload_limit = upload_limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        limit = self.upload_limit if scope["path"].rstrip("/").endswith("/code") else self.json_limit
        declared = dict(scope.get("headers") or ()).get(b"content-length")
        if declared is not None:
            try:
                too_large = int(declared) > limit
            except ValueError:
                await _refuse(send, 400, "Content-Length is not a number")
                return
            if too_large:
                await _refuse(send, 413, f"the request body is larger than {limit} bytes")
                return
        seen = 0
        started = False

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise BodyTooLarge(limit)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, tracking_send)
        except BodyTooLarge:
            if not started:
                await _refuse(send, 413, f"the request body is larger than {limit} bytes")


async def _refuse(send: Send, status: int, message: str) -> None:
    body: dict[str, Any] = error_body(ServerError(message, status, "body"))
    data = json.dumps(body).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": data})
