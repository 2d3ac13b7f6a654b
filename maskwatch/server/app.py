"""The web dashboard and HTTP API: ``create_app(settings) -> FastAPI``, and ``bind`` / ``make_server`` to run it.

Routes (OpenAPI schema at ``/openapi.json``, browsable at ``/docs``):

* ``GET /`` the dashboard page; ``GET /healthz`` liveness and cameras up/down (no token needed).
* ``POST /v1/detect`` a photo (multipart field ``file``) -> one JSON line of ``maskwatch detect``; ``?annotated=1``
  -> the annotated JPEG.
* ``GET /v1/cameras``, ``/v1/cameras/{id}``, ``/v1/cameras/{id}/frame.jpg``, ``/v1/cameras/{id}/stream.mjpg`` (MJPEG).
* ``GET /v1/events`` (paged, filtered), ``/v1/events/stream`` (Server-Sent Events), ``/v1/stats`` (share masked
  per camera per time bucket).

Security: with a token, every ``/v1`` route needs ``Authorization: Bearer <token>``; the image and event-stream routes
(which browsers load through ``<img>`` and ``EventSource``, that cannot send headers) also take ``?token=``. Binding
to anything but loopback without a token is refused; without a token only loopback names are answered in the Host header
(DNS rebinding) and a POST from another site's page is refused (CSRF). Every answer carries security headers (a
Content-Security-Policy on the pages). Every error is JSON ``{"error": "...", "detail": ...}``.

This module prints nothing; uvicorn logs through ``logging``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import socket

import uvicorn
from fastapi import FastAPI

from ..errors import InputError
from . import limits
from .errors import install_error_handlers
from .middleware import LOOPBACK_NAMES, _Guard, _hostname, _PhotoSlots, _TokenBeforeUpload, _UploadLimit, csp_for
from .routes import api, media, pages
from .state import MIN_TOKEN, ServerSettings, State

__all__ = ["MIN_TOKEN", "ServerSettings", "State", "bind", "create_app", "make_server"]


def create_app(settings: ServerSettings | None = None) -> FastAPI:
    """The dashboard and API for these settings. Loads the models, opens the event log and builds the demo video now
    (errors are raised here: InputError, ModelError); the camera threads start with the app (its lifespan)."""
    state = State(settings or ServerSettings())
    s = state.settings

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):  # noqa: ANN202
        state.start()
        try:
            yield
        finally:
            await asyncio.to_thread(state.close)

    app = FastAPI(title="maskwatch", version=__import__("maskwatch").__version__, lifespan=lifespan,
                  description="Face-mask detection: live cameras, events, statistics and photo upload.",
                  docs_url=None, redoc_url=None, openapi_url=None)  # served by routes.pages: offline, and behind the token
    app.state.maskwatch = state
    app.add_middleware(_UploadLimit, limit=state.max_upload)
    app.add_middleware(_PhotoSlots, slots=state.photo_slots, count=s.max_pending,  # runs before the upload limit
                       idle_s=s.upload_idle_s)
    if s.token:
        app.add_middleware(_TokenBeforeUpload, token=s.token)
    hosts = None
    if not s.token or s.allowed_hosts:  # without a token: only names of this machine's loopback (DNS rebinding)
        bound = {s.host.strip("[]").lower()} if s.host and s.host not in ("0.0.0.0", "::", "") else set()
        hosts = frozenset(LOOPBACK_NAMES | bound | {_hostname(h.strip()) or h.strip().lower() for h in s.allowed_hosts})
    # Cross-site POSTs matter without a token only: with one, a POST needs the Authorization header, which another
    # site's page cannot send without a CORS preflight this server refuses.
    app.add_middleware(_Guard, csp=csp_for(state.index_html, state.docs_html), hosts=hosts,  # added last: runs first
                       check_origin=not s.token)
    install_error_handlers(app)
    for router in (pages, api, media):
        app.include_router(router)
    return app


def bind(host: str = "127.0.0.1", port: int = 8000) -> socket.socket:
    """A listening socket (port 0: a free one). InputError when the address cannot be used."""
    try:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        return socket.create_server((host, int(port)), family=family, reuse_port=False)
    except OSError as e:
        raise InputError(f"cannot listen on {host}:{port} ({e.strerror or e}); is another server on that port? "
                         f"choose another with --port") from None


class Server(uvicorn.Server):
    """uvicorn's server that ends the app's endless responses (MJPEG, event stream) first when it shuts down, so
    it does not wait on them; says an accept that fails for want of file descriptors once a minute (asyncio wrote a
    traceback for each, thousands a second); and gives a TLS client ``limits.HEAD_TIMEOUT`` seconds for its handshake
    (asyncio's default is 60)."""

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        loop = asyncio.get_running_loop()
        limits.accept_error_handler(loop)
        if self.config.ssl is None:
            return await super().startup(sockets)
        # uvicorn passes no handshake timeout to loop.create_server: add it for this call (make_server's loop is
        # asyncio's; another, such as uvloop's, may not take the attribute and keeps its own timeout).
        try:
            loop.create_server = functools.partial(loop.create_server,  # type: ignore[method-assign]
                                                   ssl_handshake_timeout=limits.HEAD_TIMEOUT)
        except AttributeError:
            return await super().startup(sockets)
        try:
            await super().startup(sockets)
        finally:
            del loop.create_server

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        state = getattr(getattr(self.config.app, "state", None), "maskwatch", None)
        if state is not None:
            state.closing.set()
        await super().shutdown(sockets)


def make_server(app: FastAPI, log_level: str = "warning", *, tls_cert: str | None = None, tls_key: str | None = None,
                max_connections: int = limits.MAX_CONNECTIONS) -> Server:
    """A uvicorn server for the app; run it with ``server.run(sockets=[bind(host, port)])`` (blocks; Ctrl-C stops).

    HTTPS with ``tls_cert`` (PEM, the chain) and ``tls_key`` (unless the key is in the cert file); InputError when
    they cannot be loaded. At most ``max_connections`` connections at once (fewer when the file descriptors left
    under RLIMIT_NOFILE are fewer), each request head within ``limits.HEAD_TIMEOUT`` seconds; uvicorn's warnings at
    most once a minute each (see ``limits``)."""
    limits.check_tls(tls_cert, tls_key)
    state = getattr(getattr(app, "state", None), "maskwatch", None)
    cap, backlog = limits.connection_limits(max_connections, cameras=len(state.cameras) if state is not None else 0)
    config = uvicorn.Config(app, log_level=log_level, access_log=False, lifespan="on", timeout_graceful_shutdown=3,
                            http=limits.protocol_class(cap), loop="asyncio", limit_concurrency=cap + 1, backlog=backlog,
                            ssl_certfile=tls_cert, ssl_keyfile=tls_key)
    # The protocol keeps connections at the cap; uvicorn's limit (503 once reached) bounds the requests in progress.
    uvicorn_log = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, limits.OncePerMinute) for f in uvicorn_log.filters):
        uvicorn_log.addFilter(limits.OncePerMinute())  # "Invalid HTTP request received." for each bad request
    return Server(config)
