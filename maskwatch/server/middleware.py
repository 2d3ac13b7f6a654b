"""ASGI middleware that answers before a request body is read: size limit, photo slots, token for uploads; and the
guard that checks Host and Origin and adds the security headers to every answer."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import re
import threading
import urllib.parse

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
    uploads in progress are bounded, so is the memory they hold (the body, the decoded image, the detector's copies).
    A slot's body must keep coming: 408 after ``idle_s`` seconds without a byte or ``total_s`` in all, so clients
    that open an upload and stall cannot hold every slot (they did, for ever: every later photo got 503)."""

    def __init__(self, app: ASGIApp, slots: threading.BoundedSemaphore, count: int, idle_s: float = 10.0,
                 total_s: float = 120.0) -> None:
        self.app, self.slots, self.count, self.idle_s, self.total_s = app, slots, count, idle_s, total_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"].rstrip("/") != "/v1/detect":
            return await self.app(scope, receive, send)
        if not self.slots.acquire(blocking=False):
            answer = JSONResponse({"error": f"busy: {self.count} photos are being processed; retry in a second",
                                   "detail": {"max_pending": self.count}}, status_code=503, headers={"Retry-After": "1"})
            return await answer(scope, receive, send)
        deadline = asyncio.get_running_loop().time() + self.total_s
        complete = False

        async def timed() -> Message:
            nonlocal complete
            if complete:  # the body is in: what follows (a disconnect) is not timed
                return await receive()
            left = min(self.idle_s, deadline - asyncio.get_running_loop().time())
            try:
                msg = await asyncio.wait_for(receive(), timeout=max(0.0, left))
            except TimeoutError:
                raise StarletteHTTPException(408, f"the upload stalled (no data for {self.idle_s:g} s, or not complete "
                                             f"within {self.total_s:g} s); send it again") from None
            complete = msg["type"] != "http.request" or not msg.get("more_body", False)
            return msg

        try:
            await self.app(scope, timed, send)
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


LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "::1"})


def _hostname(value: str) -> str:
    """The host of a Host header or an Origin (no port, no brackets, lower case): '[::1]:8000' -> '::1'."""
    netloc = urllib.parse.urlsplit(value).netloc if "://" in value else value
    try:
        return (urllib.parse.urlsplit("//" + netloc).hostname or "").lower()
    except ValueError:
        return ""


def csp_for(*pages: str) -> str:
    """A Content-Security-Policy that lets these pages' own inline scripts run (by their sha256) and nothing else:
    no script, frame or form from elsewhere, no framing of the dashboard."""
    hashes = []
    for html in pages:
        for body in re.findall(r"<script>(.*?)</script>", html, flags=re.S):
            digest = hashlib.sha256(body.encode()).digest()
            hashes.append("'sha256-" + base64.b64encode(digest).decode() + "'")
    return ("default-src 'self'; script-src 'self' " + " ".join(hashes) + "; style-src 'self' 'unsafe-inline'; "
            "img-src 'self' blob: data:; connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
            "frame-ancestors 'none'")


class _Guard:
    """Every answer gets the security headers (no sniffing, no framing, no referrer, same-origin resources; the
    pages their Content-Security-Policy; ``/v1`` JSON ``Cache-Control: no-store``).

    ``hosts``: the Host names allowed (None: any). A server without a token is on loopback and trusts whoever reaches
    it, so a web page the operator opens must not reach it under another name (DNS rebinding: 400) or post photos to
    it from another site (``check_origin``: a POST whose Origin is neither the server itself nor an allowed host, or
    is ``null``: 403)."""

    def __init__(self, app: ASGIApp, csp: str, hosts: frozenset[str] | None, check_origin: bool = True) -> None:
        self.app, self.csp, self.hosts, self.check_origin = app, csp.encode(), hosts, check_origin

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope["headers"])
        host = headers.get(b"host", b"").decode("latin-1")
        if self.hosts is not None and _hostname(host) not in self.hosts:
            answer = JSONResponse({"error": f"this server answers to {', '.join(sorted(self.hosts))}, not '{host[:100]}' "
                                   "(serve --allowed-host NAME adds a name, e.g. for a reverse proxy)", "detail": None},
                                  status_code=400)
            return await self._answer(answer, scope, receive, send)
        origin = headers.get(b"origin", b"").decode("latin-1")
        if self.check_origin and scope["method"] not in ("GET", "HEAD", "OPTIONS") and origin:
            o = "" if origin == "null" else _hostname(origin)  # null: a sandboxed frame, a no-referrer form, a file:
            # page; no site of its own to trust: refused
            if not o or (o != _hostname(host) and (self.hosts is None or o not in self.hosts)):
                answer = JSONResponse({"error": f"a request from the page of another site ({origin[:100]}) is refused; "
                                       "if that page is this server's own behind a proxy, give serve --allowed-host "
                                       "NAME", "detail": None}, status_code=403)
                return await self._answer(answer, scope, receive, send)
        api = scope["path"].startswith("/v1/")

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                have = {k.lower() for k, _ in message.get("headers", [])}
                extra = [(b"x-content-type-options", b"nosniff"), (b"x-frame-options", b"DENY"),
                         (b"referrer-policy", b"no-referrer"), (b"cross-origin-resource-policy", b"same-origin")]
                ctype = dict(message.get("headers", [])).get(b"content-type", b"")
                if ctype.startswith(b"text/html"):
                    extra.append((b"content-security-policy", self.csp))
                if api and b"cache-control" not in have:
                    extra.append((b"cache-control", b"no-store"))
                message["headers"] = list(message.get("headers", [])) + [(k, v) for k, v in extra if k not in have]
            await send(message)

        await self.app(scope, receive, with_headers)

    async def _answer(self, answer: JSONResponse, scope: Scope, receive: Receive, send: Send) -> None:
        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = list(message.get("headers", [])) + [(b"x-content-type-options", b"nosniff")]
            await send(message)

        await answer(scope, receive, with_headers)
