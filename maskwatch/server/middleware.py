"""ASGI middleware that answers before a request body is read: size limit, photo slots, token for uploads."""

from __future__ import annotations

import hmac
import threading

from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class _UploadLimit:
    """413 (JSON) for a request body over ``limit`` bytes: one announced too large (Content-Length) is answered before
    the route runs; one without Content-Length is counted as it arrives. (uvicorn reads and drops what the client
    still sends after the answer, so the client gets the 413 rather than a reset connection.)"""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app, self.limit = app, limit
        self.message = f"the upload is over the {limit / (1024 * 1024):g} MB limit; send a smaller image"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope["headers"]).get(b"content-length", b"")
        if length.strip().isdigit() and int(length) > self.limit:
            answer = JSONResponse({"error": self.message, "detail": {"max_bytes": self.limit}}, status_code=413)
            return await answer(scope, receive, send)
        total = 0

        async def counted() -> Message:
            nonlocal total
            msg = await receive()
            total += len(msg.get("body", b""))
            if total > self.limit:  # FastAPI hands an HTTPException raised while it reads the body to the handlers
                raise StarletteHTTPException(413, self.message)
            return msg

        await self.app(scope, counted, send)


class _PhotoSlots:
    """503 (JSON, Retry-After: 1) for a photo upload when ``slots`` are all taken, before any of its body is read:
    uploads in progress are bounded, so is the memory they hold (the body, the decoded image, the detector's copies)."""

    def __init__(self, app: ASGIApp, slots: threading.BoundedSemaphore, count: int) -> None:
        self.app, self.slots, self.count = app, slots, count

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"].rstrip("/") != "/v1/detect":
            return await self.app(scope, receive, send)
        if not self.slots.acquire(blocking=False):
            answer = JSONResponse({"error": f"busy: {self.count} photos are being processed; retry in a second",
                                   "detail": {"max_pending": self.count}}, status_code=503, headers={"Retry-After": "1"})
            return await answer(scope, receive, send)
        try:
            await self.app(scope, receive, send)
        finally:
            self.slots.release()


class _TokenBeforeUpload:
    """401 (JSON) for a POST to /v1 without the right bearer token, before any of its body is read: an
    unauthenticated client cannot make the server take in an upload."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app, self.expected = app, token.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and scope["path"].startswith("/v1/"):
            scheme, _, given = dict(scope["headers"]).get(b"authorization", b"").partition(b" ")
            if scheme.lower() != b"bearer" or not hmac.compare_digest(given.strip(), self.expected):
                answer = JSONResponse({"error": "this route needs the API token: send 'Authorization: Bearer <token>'",
                                       "detail": None}, status_code=401, headers={"WWW-Authenticate": "Bearer"})
                return await answer(scope, receive, send)
        await self.app(scope, receive, send)
