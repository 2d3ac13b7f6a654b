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
to anything but loopback without a token is refused. Every error is JSON ``{"error": "...", "detail": ...}``.

This module prints nothing; uvicorn logs through ``logging``.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hmac
import json
import math
import re
import shutil
import socket
import tempfile
import threading
import time
import weakref
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import cv2
import uvicorn
from fastapi import APIRouter, Depends, FastAPI, File, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..annotate import BoxAnnotator, blur_faces
from ..detections import CLASS_NAMES, frame_record
from ..errors import InputError
from ..events import DEFAULT_DB, Event, Sink, is_loopback
from ..images import MAX_PIXELS, check_image_header, decode_reduced
from ..monitor import MonitorSettings, build_sinks, close_all
from ..pipeline import Detector
from ..settings import PHOTO, PHOTO_DET_SIZE, SURE_SETTINGS, check
from .cameras import CameraSpec, CameraWorker, parse_camera
from .demo import write_demo_video

STATIC = Path(__file__).resolve().parent / "static"
# Magic numbers of the formats decode_image reads: anything else is not an image (415).
_IMAGE_MAGIC = (b"\xff\xd8", b"\x89PNG\r\n\x1a\n", b"BM", b"II*\x00", b"MM\x00*", b"\x00\x00\x00\x0cjP  ",
                b"\xffO\xffQ", b"P1", b"P2", b"P3", b"P4", b"P5", b"P6")


@dataclass
class ServerSettings:
    """Everything ``maskwatch serve`` can be told; the defaults are the command's.

    cameras: ``SOURCE[=NAME]`` strings or CameraSpecs. demo: loop the demo video as a camera (None: only when no
    camera is given). token: API token (required when host is not loopback). events: SQLite event log ('' = in
    memory). detector: Detector keyword arguments for the cameras (det_size 320); photo_det_size, photo_flip: det_size
    and flip for uploaded photos ((800, 1600) and True, as ``maskwatch detect``). max_upload_mb: upload limit; max_pixels: image size limit.
    """

    host: str = "127.0.0.1"
    port: int = 8000
    cameras: list[str | CameraSpec] = field(default_factory=list)
    demo: bool | None = None
    token: str | None = None
    events: str = DEFAULT_DB
    retention_days: float = 30.0
    max_upload_mb: float = 10.0
    max_pixels: int = MAX_PIXELS
    max_pending: int = 4  # photos decoded or detected at once; more get 503 with Retry-After (memory stays bounded)
    detector: dict[str, Any] = field(default_factory=lambda: {"det_size": 320})
    photo_det_size: int | tuple[int, ...] = PHOTO_DET_SIZE
    photo_flip: bool = True
    confirm_frames: int = 5
    blur_faces: bool = False
    jpeg_quality: int = 80
    open_timeout: float = 10.0
    reconnect_wait: float = 1.0
    max_retries: int = 5
    demo_size: tuple[int, int] = (640, 480)
    demo_fps: float = 12.0
    shared: str | None = None  # where the demo's photos are (default: MASKWATCH_SHARED or ../shared)


class ErrorBody(BaseModel):
    """Every error answer."""

    error: str
    detail: Any = None


class ApiError(Exception):
    def __init__(self, status: int, error: str, detail: Any = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(error)
        self.status, self.error, self.detail, self.headers = status, error, detail, headers


def _errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    return {c: {"model": ErrorBody} for c in codes}


# ------------------------------------------------------------------------------------------------- live events


class LiveEvents(Sink):
    """The latest events in memory, numbered, for the Server-Sent Events stream of the dashboard."""

    name = "live"

    def __init__(self, keep: int = 500) -> None:
        super().__init__()
        self._items: deque[tuple[int, dict[str, Any]]] = deque(maxlen=keep)
        self._seq = 0
        self._lock = threading.Lock()

    def send(self, event: Event) -> None:
        with self._lock:
            self._seq += 1
            self._items.append((self._seq, event.to_dict()))

    @property
    def last(self) -> int:
        with self._lock:
            return self._seq

    def after(self, seq: int) -> list[tuple[int, dict[str, Any]]]:
        with self._lock:
            return [item for item in self._items if item[0] > seq]


# ---------------------------------------------------------------------------------------------------- the state


def _slug(name: str, taken: set[str]) -> str:
    base = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "camera"
    slug, k = base, 2
    while slug in taken:
        slug, k = f"{base}-{k}", k + 1
    taken.add(slug)
    return slug


class _State:
    """What the routes share: settings, event log, cameras, the photo detector, and the flag that ends streams."""

    def __init__(self, settings: ServerSettings) -> None:
        s = self.settings = settings
        if not (0 <= int(s.port) <= 65535):
            raise InputError(f"'port={s.port}' is invalid. Valid 'port' values are between 0 and 65535")
        if not is_loopback(s.host) and not s.token:
            raise InputError(f"binding to {s.host or 'all addresses'} puts the cameras on the network: give an API token "
                             f"(--token or the MASKWATCH_TOKEN environment variable), or bind to 127.0.0.1")
        if not is_loopback(s.host) and len(s.token or "") < MIN_TOKEN:
            raise InputError(f"the API token has {len(s.token or '')} characters; off loopback it needs at least {MIN_TOKEN} "
                             "(e.g. python -c 'import secrets; print(secrets.token_urlsafe(24))')")
        if not s.max_upload_mb > 0 or s.confirm_frames < 0:
            raise InputError(f"max_upload_mb must be above 0 and confirm_frames 0 or more, got {s.max_upload_mb} and "
                             f"{s.confirm_frames}")
        check("det_size", s.photo_det_size)
        specs = [c if isinstance(c, CameraSpec) else parse_camera(c) for c in s.cameras]
        self.closing = threading.Event()
        self.max_upload = int(s.max_upload_mb * 1024 * 1024)
        photo_sure = {k: PHOTO[k] for k in SURE_SETTINGS}  # uploads are photos: the photo operating point
        self.photo_detector = Detector(**{**s.detector, **photo_sure, "det_size": s.photo_det_size, "flip": s.photo_flip})
        self.photo_lock = threading.Lock()
        if s.max_pending < 1:
            raise InputError(f"max_pending must be 1 or more, got {s.max_pending}")
        self.photo_slots = threading.BoundedSemaphore(s.max_pending)
        sizes = s.photo_det_size if isinstance(s.photo_det_size, tuple) else (s.photo_det_size,)
        self.photo_side = max([v for v in sizes if v] or [0]) or 4096  # decode no larger than the detector looks
        self.annotator = BoxAnnotator()
        self.live = LiveEvents()
        # One event log and dispatcher shared by every camera (the log before the live stream: stored, then streamed).
        self.sinks = build_sinks(MonitorSettings(events=s.events or ":memory:", retention_days=s.retention_days,
                                                 confirm_frames=s.confirm_frames), extra=[self.live])
        self.dispatcher, self.log = self.sinks.dispatcher, self.sinks.log
        try:
            self._start_cameras(s, specs)
        except BaseException:
            close_all(self.sinks.closers)
            raise
        self.index_html = (STATIC / "index.html").read_text(encoding="utf-8")
        self.docs_html = (STATIC / "docs.html").read_text(encoding="utf-8")

    def _start_cameras(self, s: ServerSettings, specs: list[CameraSpec]) -> None:
        self.demo_dir: str | None = None
        if s.demo or (s.demo is None and not specs):
            self.demo_dir = tempfile.mkdtemp(prefix="maskwatch-demo-")
            weakref.finalize(self, shutil.rmtree, self.demo_dir, True)
            path = str(Path(self.demo_dir) / "demo.mp4")
            write_demo_video(path, (int(s.demo_size[0]), int(s.demo_size[1])), s.demo_fps, s.shared)
            specs.insert(0, CameraSpec(path, "demo", kind="demo"))
        taken: set[str] = set()
        self.cameras: dict[str, CameraWorker] = {}
        for spec in specs:
            cam_id = _slug(spec.name, taken)
            self.cameras[cam_id] = CameraWorker(
                cam_id, spec, Detector(**s.detector), self.dispatcher, confirm_frames=s.confirm_frames,
                blur=s.blur_faces, jpeg_quality=s.jpeg_quality, open_timeout=s.open_timeout,
                reconnect_wait=s.reconnect_wait, max_retries=s.max_retries, size_hint=(int(s.demo_size[0]), int(s.demo_size[1])))

    def start(self) -> None:
        for w in self.cameras.values():
            w.start()

    def close(self) -> None:
        self.closing.set()
        for w in self.cameras.values():
            w.request_stop()
        for w in self.cameras.values():
            w.stop()
        close_all(self.sinks.closers)
        if self.demo_dir:
            shutil.rmtree(self.demo_dir, ignore_errors=True)

    def camera(self, cam_id: str) -> CameraWorker:
        w = self.cameras.get(cam_id)
        if w is None:
            raise ApiError(404, f"no camera '{cam_id}'", {"cameras": list(self.cameras)})
        return w


# ------------------------------------------------------------------------------------------------ query helpers


def _invalid(where: str, name: str, msg: str, value: Any) -> RequestValidationError:
    return RequestValidationError([{"type": "value_error", "loc": (where, name), "msg": msg, "input": value}])


def _time_param(name: str, value: str | None) -> float | None:
    """ISO-8601 (``2024-05-01T12:00:00Z``; no zone = UTC) or unix seconds -> unix seconds."""
    if value is None or value == "":
        return None
    try:
        t = float(value)
    except ValueError:
        pass
    else:
        if not math.isfinite(t):
            raise _invalid("query", name, f"'{value}' is not a time: give ISO-8601 or unix seconds", value)
        return t
    try:
        when = dt.datetime.fromisoformat(value.strip().replace(" ", "T"))
    except ValueError:
        raise _invalid("query", name, f"'{value}' is not a time: give ISO-8601 (2024-05-01T12:00:00Z) or unix seconds",
                       value) from None
    return (when if when.tzinfo else when.replace(tzinfo=dt.UTC)).timestamp()


def _iso(t: float) -> str:
    return dt.datetime.fromtimestamp(t, tz=dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _share(counts: dict[str, int]) -> float | None:
    labelled = sum(counts.values())
    return round(counts.get("with_mask", 0) / labelled, 4) if labelled else None


Since = Annotated[str | None, Query(description="from this time on: ISO-8601 (2024-05-01T12:00:00Z) or unix seconds")]
Until = Annotated[str | None, Query(description="before this time: ISO-8601 or unix seconds")]
Label = Literal["with_mask", "without_mask", "mask_incorrect"]
MIN_TOKEN = 16  # characters an API token needs when the server listens beyond loopback
_bearer = HTTPBearer(auto_error=False, description="the API token (maskwatch serve --token)")
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


# ----------------------------------------------------------------------------------------------- body size limit


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


# -------------------------------------------------------------------------------------------------------- the app


def create_app(settings: ServerSettings | None = None) -> FastAPI:
    """The dashboard and API for these settings. Loads the models, opens the event log and builds the demo video now
    (errors are raised here: InputError, ModelError); the camera threads start with the app (its lifespan)."""
    state = _State(settings or ServerSettings())
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
                  docs_url=None, redoc_url=None, openapi_url=None)  # served below: offline, and behind the token
    app.state.maskwatch = state
    app.add_middleware(_UploadLimit, limit=state.max_upload)
    app.add_middleware(_PhotoSlots, slots=state.photo_slots, count=s.max_pending)  # runs before the upload limit
    if s.token:
        app.add_middleware(_TokenBeforeUpload, token=s.token)  # added last, so it runs first

    def _authorize(credentials: HTTPAuthorizationCredentials | None, query_token: str | None = None) -> None:
        if not s.token:
            return
        given = credentials.credentials if credentials else query_token
        if not given:
            raise ApiError(401, "this server needs an API token: send 'Authorization: Bearer <token>'",
                           headers={"WWW-Authenticate": "Bearer"})
        if not hmac.compare_digest(given.encode(), s.token.encode()):
            raise ApiError(401, "wrong API token", headers={"WWW-Authenticate": "Bearer"})

    def require_token(credentials: Credentials) -> None:
        _authorize(credentials)

    def require_token_or_query(
        credentials: Credentials,
        token: Annotated[str | None, Query(description="the API token, for <img> and EventSource (no headers)")] = None,
    ) -> None:
        _authorize(credentials, token)

    api = APIRouter(prefix="/v1", dependencies=[Depends(require_token)], responses=_errors(401, 422))
    media = APIRouter(prefix="/v1", dependencies=[Depends(require_token_or_query)], responses=_errors(401, 404, 422))

    # ---------------------------------------------------------------- errors: always {"error", "detail"}

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse({"error": exc.error, "detail": exc.detail}, status_code=exc.status, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        detail, parts = [], []
        for e in exc.errors():
            loc = [str(x) for x in e.get("loc", ())]
            where = f"{loc[0]} parameter '{'.'.join(loc[1:])}'" if len(loc) > 1 else ".".join(loc) or "request"
            parts.append(f"{where}: {e.get('msg')}")
            item = {"loc": loc, "msg": e.get("msg"), "type": e.get("type")}
            if isinstance(e.get("input"), (str, int, float)) and len(str(e["input"])) <= 200:
                item["input"] = e["input"]
            detail.append(item)
        return JSONResponse({"error": "invalid request: " + "; ".join(parts), "detail": detail}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        text = {404: f"not found: {request.method} {request.url.path}", 405: f"method {request.method} not allowed here"}
        return JSONResponse({"error": text.get(exc.status_code, str(exc.detail)), "detail": None},
                            status_code=exc.status_code, headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _server_error(request: Request, exc: Exception) -> JSONResponse:
        # The traceback goes to the server's log; the client learns only the kind of failure.
        return JSONResponse({"error": "internal error; see the server's log", "detail": type(exc).__name__}, status_code=500)

    # ---------------------------------------------------------------- page and health

    @app.get("/", include_in_schema=False)
    def index() -> HTMLResponse:
        return HTMLResponse(state.index_html, headers={"Cache-Control": "no-cache"})

    @app.get("/docs", include_in_schema=False)
    def docs(credentials: Credentials, token: Annotated[str | None, Query()] = None) -> HTMLResponse:
        """The routes, rendered from /openapi.json by a page that needs no CDN (Swagger UI loads from one)."""
        _authorize(credentials, token)
        return HTMLResponse(state.docs_html, headers={"Cache-Control": "no-cache"})

    @app.get("/openapi.json", include_in_schema=False)
    def openapi(credentials: Credentials, token: Annotated[str | None, Query()] = None) -> JSONResponse:
        _authorize(credentials, token)
        return JSONResponse(app.openapi())

    @app.get("/healthz", summary="health: 200 and status 'ok' when every camera sends frames and the event log "
             "writes; 503 and status 'degraded' otherwise (for a load balancer or a systemd watchdog)",
             responses={503: {"description": "a camera is down or reconnecting, or the event log cannot write"}})
    def healthz() -> JSONResponse:
        states = {cid: {"status": w.status, "reason": w.reason} for cid, w in state.cameras.items()}
        up = sum(w.status == "ok" for w in state.cameras.values())
        starting = sum(w.status == "starting" for w in state.cameras.values())
        log_error = state.log.last_error
        ok = up + starting == len(state.cameras) and not log_error
        body = {"status": "ok" if ok else "degraded",
                "cameras": {"total": len(state.cameras), "up": up, "down": len(state.cameras) - up - starting,
                            "states": states},
                "event_log": log_error or "ok"}
        return JSONResponse(body, status_code=200 if ok else 503)

    # ---------------------------------------------------------------- photos

    @api.post("/detect", summary="faces and masks in one photo: the JSON line of `maskwatch detect`",
              responses={200: {"content": {"application/json": {}, "image/jpeg": {}},
                               "description": "{source, width, height, faces}; the annotated JPEG with annotated=1"},
                         **_errors(413, 415, 503)})
    def detect(
        request: Request,
        file: Annotated[UploadFile | None, File(description="the photo: JPEG, PNG, BMP, WebP, TIFF")] = None,
        annotated: Annotated[bool, Query(description="answer the annotated JPEG instead of JSON")] = False,
    ) -> Response:
        ctype = request.headers.get("content-type", "")
        if not ctype.lower().startswith("multipart/form-data"):
            raise ApiError(415, f"send the photo as multipart/form-data in the field 'file', not as '{ctype or 'no content type'}'",
                           {"content_type": ctype or None})
        if file is None:
            raise ApiError(422, "no photo: send it in the multipart field 'file'")
        name = re.split(r"[\\/]", file.filename or "")[-1] or "upload"
        data = file.file.read(state.max_upload + 1)
        if not data.startswith(_IMAGE_MAGIC) and not (data[:4] == b"RIFF" and data[8:12] == b"WEBP"):
            raise ApiError(415, f"{name}: not an image (JPEG, PNG, BMP, WebP, TIFF)",
                           {"content_type": file.content_type, "bytes": len(data)})
        try:
            check_image_header(data, name, s.max_pixels)  # decompression bombs: before anything is decoded
        except InputError as e:
            raise ApiError(413, str(e), {"max_pixels": s.max_pixels}) from None
        try:
            image, scale = decode_reduced(data, name, s.max_pixels, state.photo_side)
        except InputError as e:
            raise ApiError(422, str(e)) from None
        del data
        with state.photo_lock:
            faces = state.photo_detector.detect(image)
        if annotated:  # drawn on the image as decoded (a very large photo comes back smaller)
            vis = blur_faces(image, faces) if s.blur_faces else image
            jpeg = cv2.imencode(".jpg", state.annotator.annotate(vis, faces, copy=not s.blur_faces),
                                [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()
            return Response(jpeg, media_type="image/jpeg")
        height, width = (round(v / scale) for v in image.shape[:2])
        if scale != 1.0:  # boxes in the original photo's pixels
            faces.xyxy = faces.xyxy / scale
            if faces.landmarks is not None:
                faces.landmarks = faces.landmarks / scale
        return JSONResponse(frame_record(name, width, height, faces))

    # ---------------------------------------------------------------- cameras

    @api.get("/cameras", summary="the cameras: status, frames/s, faces in the current frame, people seen")
    def cameras() -> dict[str, Any]:
        return {"cameras": [_camera_info(w) for w in state.cameras.values()]}

    @api.get("/cameras/{camera_id}", summary="one camera", responses=_errors(404))
    def camera(camera_id: str) -> dict[str, Any]:
        return _camera_info(state.camera(camera_id))

    def _camera_info(w: CameraWorker) -> dict[str, Any]:
        info = w.info()
        info["last_frame"] = _iso(info["last_frame"]) if info["last_frame"] else None
        info["stream"] = f"/v1/cameras/{w.id}/stream.mjpg"
        info["frame"] = f"/v1/cameras/{w.id}/frame.jpg"
        return info

    @media.get("/cameras/{camera_id}/frame.jpg", summary="the latest annotated frame",
               response_class=Response, responses={200: {"content": {"image/jpeg": {}}}})
    def frame(camera_id: str) -> Response:
        _, jpeg = state.camera(camera_id).latest()
        return Response(jpeg, media_type="image/jpeg", headers={"Cache-Control": "no-store"})

    @media.get("/cameras/{camera_id}/stream.mjpg", summary="the annotated frames as MJPEG (multipart/x-mixed-replace)",
               response_class=StreamingResponse, responses={200: {"content": {"multipart/x-mixed-replace": {}}}})
    async def stream(camera_id: str) -> StreamingResponse:
        worker = state.camera(camera_id)

        async def parts():  # noqa: ANN202
            last = -1
            while not state.closing.is_set():
                seq, jpeg = worker.latest()
                if seq != last and jpeg:
                    last = seq
                    yield (b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n" % len(jpeg)) + jpeg + b"\r\n"
                await asyncio.sleep(0.02)

        return StreamingResponse(parts(), media_type="multipart/x-mixed-replace; boundary=frame",
                                 headers={"Cache-Control": "no-store"})

    # ---------------------------------------------------------------- events and statistics

    @api.get("/events", summary="stored events, newest first, paged and filtered (no face snapshots)")
    def events(
        limit: Annotated[int, Query(ge=1, le=500, description="events per page")] = 50,
        offset: Annotated[int, Query(ge=0, le=2**62, description="events to skip")] = 0,
        since: Since = None,
        until: Until = None,
        camera: Annotated[str | None, Query(description="camera name, as in the events")] = None,
        label: Annotated[Label | None, Query(description="label of the event")] = None,
    ) -> dict[str, Any]:
        t0, t1 = _time_param("since", since), _time_param("until", until)
        try:
            rows = state.log.query(since=t0, until=t1, camera=camera, label=label, limit=limit, offset=offset)
            total = state.log.count(since=t0, until=t1, camera=camera, label=label)
        except InputError as e:
            raise ApiError(503, str(e)) from None
        return {"events": [e.to_dict() for e in rows], "total": total, "limit": limit, "offset": offset}

    @media.get("/events/stream", summary="new events as Server-Sent Events (one JSON event per message)",
               response_class=StreamingResponse, responses={200: {"content": {"text/event-stream": {}}}})
    async def event_stream(request: Request) -> StreamingResponse:
        last_id = request.headers.get("last-event-id", "")
        start = int(last_id) if last_id.isdigit() else state.live.last

        async def messages():  # noqa: ANN202
            last, quiet = start, 0.0
            yield "retry: 3000\n\n"
            while not state.closing.is_set():
                items = state.live.after(last)
                for seq, ev in items:
                    last = seq
                    yield f"id: {seq}\ndata: {json.dumps(ev)}\n\n"
                quiet = 0.0 if items else quiet + 0.25
                if quiet >= 15:
                    quiet = 0.0
                    yield ": keep-alive\n\n"
                await asyncio.sleep(0.25)

        return StreamingResponse(messages(), media_type="text/event-stream", headers={"Cache-Control": "no-store"})

    @api.get("/stats", summary="per camera per time bucket: faces seen by label and share masked; events by label")
    def stats(
        bucket: Annotated[int, Query(ge=5, le=86400, description="bucket length, seconds")] = 60,
        since: Annotated[str | None, Query(description="from (ISO-8601 or unix seconds); default: one hour ago")] = None,
        until: Until = None,
        camera: Annotated[str | None, Query(description="only this camera (name)")] = None,
    ) -> dict[str, Any]:
        now = time.time()
        t1 = _time_param("until", until)
        t1 = now if t1 is None else t1
        t0 = _time_param("since", since)
        t0 = t1 - 3600 if t0 is None else t0
        if t1 <= t0 or (t1 - t0) / bucket > 5000:
            raise _invalid("query", "since", "give since < until, at most 5000 buckets apart", since)
        first = int(t0 // bucket) * bucket

        def slot(t: float) -> int:
            return int(t // bucket) * bucket

        table: dict[str, dict[int, dict[str, Any]]] = {}

        def cell(cam: str, start: int) -> dict[str, Any]:
            row = table.setdefault(cam, {}).get(start)
            if row is None:
                row = table[cam][start] = {"frames": 0, "faces": dict.fromkeys(CLASS_NAMES, 0),
                                           "events": dict.fromkeys(CLASS_NAMES, 0)}
            return row

        for w in state.cameras.values():
            if camera is not None and w.spec.name != camera:
                continue
            table.setdefault(w.spec.name, {})
            for start, n, faces in w.buckets(first, t1):
                row = cell(w.spec.name, slot(start))
                row["frames"] += n
                for lab, k in faces.items():
                    row["faces"][lab] = row["faces"].get(lab, 0) + k
        try:
            evs = state.log.query(since=first, until=t1, camera=camera, limit=None)
        except InputError as e:
            raise ApiError(503, str(e)) from None
        for ev in evs:
            row = cell(ev.camera, slot(ev.time))
            row["events"][ev.label] = row["events"].get(ev.label, 0) + 1
        ids = {w.spec.name: w.id for w in state.cameras.values()}
        out = []
        for cam, rows in table.items():
            buckets = [{"start": start, "iso_start": _iso(start), "frames": r["frames"], "faces": r["faces"],
                        "share_masked": _share(r["faces"]), "events": r["events"], "events_total": sum(r["events"].values())}
                       for start, r in sorted(rows.items())]
            out.append({"camera": cam, "id": ids.get(cam), "buckets": buckets})
        return {"bucket": bucket, "since": first, "until": t1, "cameras": out}

    app.include_router(api)
    app.include_router(media)
    return app


# ----------------------------------------------------------------------------------------------------- running it


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
    it does not wait on them."""

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        state = getattr(getattr(self.config.app, "state", None), "maskwatch", None)
        if state is not None:
            state.closing.set()
        await super().shutdown(sockets)


def make_server(app: FastAPI, log_level: str = "warning") -> Server:
    """A uvicorn server for the app; run it with ``server.run(sockets=[bind(host, port)])`` (blocks; Ctrl-C stops)."""
    return Server(uvicorn.Config(app, log_level=log_level, access_log=False, lifespan="on", timeout_graceful_shutdown=3))
