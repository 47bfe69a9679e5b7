"""Request body cap that answers in the one error shape.

Starlette's RequestBodyLimitMiddleware (FastAPI's `max_body_size`) answers 413 in plain text, which would
break the `{"error": ...}` contract senders and tests rely on; this is the same check with our body.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import error_response


class _TooLarge(HTTPException):
    """An HTTPException because FastAPI turns any other error raised while it reads a body into a 400; this
    one it re-raises, and the app's handler renders it as 413 in the one error shape."""

    def __init__(self, max_bytes: int) -> None:
        super().__init__(413, f"request body over {max_bytes} bytes")
        self.details = {"limit_bytes": max_bytes}


class BodySizeLimit:
    """`max_bytes` for every body, except on the paths of `per_path` (pattern, cap): uploads have their own cap."""

    def __init__(self, app: ASGIApp, max_bytes: int, per_path: Sequence[tuple[re.Pattern[str], int]] = ()) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.per_path = per_path

    def limit(self, path: str) -> int:
        return next((cap for pattern, cap in self.per_path if pattern.fullmatch(path)), self.max_bytes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        max_bytes = self.limit(scope["path"])
        declared = Headers(scope=scope).get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > max_bytes:
            await self._reject(scope, receive, send, max_bytes)
            return
        received = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > max_bytes:
                    raise _TooLarge(max_bytes)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _TooLarge:
            if started:
                raise
            await self._reject(scope, receive, send, max_bytes)

    async def _reject(self, scope: Scope, receive: Receive, send: Send, max_bytes: int) -> None:
        response = error_response(
            413, "payload_too_large", f"request body over {max_bytes} bytes", {"limit_bytes": max_bytes}
        )
        await response(scope, receive, send)
