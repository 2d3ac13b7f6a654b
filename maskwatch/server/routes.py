"""The routes: module-level functions, each given the server's state and the token check as FastAPI dependencies.

``pages`` (the dashboard, docs, health) need no token; ``api`` routes need the bearer token; ``media`` routes (images and
the event stream, which browsers load through <img> and EventSource) also take the ``maskwatch_token_<port>`` cookie
the dashboard sets (SameSite=Strict) or ``?token=``.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import re
import time
import urllib.parse
from typing import Annotated, Any, Literal

import cv2
from fastapi import APIRouter, Depends, File, Query, Request, UploadFile
from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from ..annotate import blur_faces
from ..detections import CLASS_NAMES, frame_record
from ..errors import InputError
from ..images import ImageTooLarge, check_image_header, decode_reduced, looks_like_image
from .cameras import CameraWorker
from .errors import ApiError, error_responses, invalid
from .state import State
from .stats import iso, share, time_param

Since = Annotated[str | None, Query(description="from this time on: ISO-8601 (2024-05-01T12:00:00Z) or unix seconds")]
Until = Annotated[str | None, Query(description="before this time: ISO-8601 or unix seconds")]
Label = Literal["with_mask", "without_mask", "mask_incorrect"]
_bearer = HTTPBearer(auto_error=False, description="the API token (maskwatch serve --token)")
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


def get_state(request: Request) -> State:
    return request.app.state.maskwatch  # type: ignore[no-any-return]


StateDep = Annotated[State, Depends(get_state)]


def _authorize(st: State, credentials: HTTPAuthorizationCredentials | None, query_token: str | None = None) -> None:
    token = st.settings.token
    if not token:
        return
    given = credentials.credentials if credentials else query_token
    if not given:
        raise ApiError(401, "this server needs an API token: send 'Authorization: Bearer <token>'",
                       headers={"WWW-Authenticate": "Bearer"})
    if not hmac.compare_digest(given.encode(), token.encode()):
        raise ApiError(401, "wrong API token", headers={"WWW-Authenticate": "Bearer"})


def require_token(st: StateDep, credentials: Credentials) -> None:
    _authorize(st, credentials)


COOKIE = "maskwatch_token"
"""The dashboard's cookie for <img> and EventSource (which send no headers): ``maskwatch_token_<port>`` (a cookie is
shared by every port of a host, so two servers on one host each keep their own), its value percent-encoded."""


def _cookie_tokens(request: Request) -> list[str]:
    return [urllib.parse.unquote(v) for k, v in request.cookies.items() if k == COOKIE or k.startswith(COOKIE + "_")]


def _authorize_any(st: State, credentials: HTTPAuthorizationCredentials | None, request: Request,
                   query_token: str | None) -> None:
    """The header or ``?token=``, else any of the dashboard's cookies."""
    cookies = _cookie_tokens(request)
    if credentials or query_token or not cookies:
        return _authorize(st, credentials, query_token)
    for given in cookies:
        try:
            return _authorize(st, None, given)
        except ApiError as e:
            refused = e
    raise refused


def require_token_or_query(
    st: StateDep,
    credentials: Credentials,
    request: Request,
    token: Annotated[str | None, Query(description="the API token, for <img> and EventSource (no headers); the "
                                       "dashboard sends it as its cookie instead")] = None,
) -> None:
    _authorize_any(st, credentials, request, token)


pages = APIRouter()
api = APIRouter(prefix="/v1", dependencies=[Depends(require_token)], responses=error_responses(401, 422))
media = APIRouter(prefix="/v1", dependencies=[Depends(require_token_or_query)], responses=error_responses(401, 404, 422))


# ---------------------------------------------------------------- page and health

@pages.get("/", include_in_schema=False)
def index(st: StateDep) -> HTMLResponse:
    return HTMLResponse(st.index_html, headers={"Cache-Control": "no-cache"})


@pages.get("/docs", include_in_schema=False)
def docs(st: StateDep) -> HTMLResponse:
    """The routes, rendered from /openapi.json by a page that needs no CDN (Swagger UI loads from one). The page
    holds no data (as the dashboard's does not); the schema it reads is behind the token."""
    return HTMLResponse(st.docs_html, headers={"Cache-Control": "no-cache"})


@pages.get("/openapi.json", include_in_schema=False)
def openapi(st: StateDep, request: Request, credentials: Credentials, token: Annotated[str | None, Query()] = None) -> JSONResponse:
    _authorize_any(st, credentials, request, token)
    return JSONResponse(request.app.openapi())


@pages.get("/healthz", summary="health: 200 and status 'ok' when every camera sends frames and the event log "
         "writes; 503 and status 'degraded' otherwise (for a load balancer or a systemd watchdog); each camera's "
         "state and reason only with the token, where one is set",
         responses={503: {"description": "a camera is down or reconnecting, or the event log cannot write"}})
def healthz(st: StateDep, credentials: Credentials, token: Annotated[str | None, Query()] = None) -> JSONResponse:
    """Without the token (where one is set) only the status and the counts: each camera's state and reason, and the
    event log's error, name addresses and paths of the site."""
    states = {cid: {"status": w.status, "reason": w.reason} for cid, w in st.cameras.items()}
    up = sum(w.status == "ok" for w in st.cameras.values())
    starting = sum(w.status == "starting" for w in st.cameras.values())
    log_error = st.log.last_error
    ok = up + starting == len(st.cameras) and not log_error
    cams: dict[str, Any] = {"total": len(st.cameras), "up": up, "down": len(st.cameras) - up - starting}
    body: dict[str, Any] = {"status": "ok" if ok else "degraded", "cameras": cams}
    try:
        _authorize(st, credentials, token)
    except ApiError:
        body["event_log"] = "error" if log_error else "ok"
    else:
        cams["states"] = states
        body["event_log"] = log_error or "ok"
    return JSONResponse(body, status_code=200 if ok else 503)


# ---------------------------------------------------------------- photos

@api.post("/detect", summary="faces and masks in one photo: the JSON line of `maskwatch detect`",
          responses={200: {"content": {"application/json": {}, "image/jpeg": {}},
                           "description": "{source, width, height, faces}; the annotated JPEG with annotated=1"},
                     **error_responses(413, 415, 503)})
def detect(
    st: StateDep,
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
    data = file.file.read(st.max_upload + 1)
    if not looks_like_image(data):  # anything else is not an image (415)
        raise ApiError(415, f"{name}: not an image (JPEG, PNG, BMP, WebP, TIFF, GIF, HEIC)",
                       {"content_type": file.content_type, "bytes": len(data)})
    try:
        check_image_header(data, name, st.settings.max_pixels)  # decompression bombs: before anything is decoded
    except InputError as e:
        raise ApiError(413, str(e), {"max_pixels": st.settings.max_pixels}) from None
    try:  # too large to decode within the memory an upload may take (or over a limit only OpenCV read): 413 too
        image, scale = decode_reduced(data, name, st.settings.max_pixels, st.photo_side)
    except ImageTooLarge as e:
        raise ApiError(413, str(e), {"max_pixels": st.settings.max_pixels}) from None
    except InputError as e:
        raise ApiError(422, str(e)) from None
    del data
    with st.photo_lock:
        faces = st.photo_detector.detect(image)
    if annotated:  # drawn on the image as decoded (a very large photo comes back smaller)
        vis = blur_faces(image, faces) if st.settings.blur_faces else image
        jpeg = cv2.imencode(".jpg", st.annotator.annotate(vis, faces, copy=not st.settings.blur_faces),
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
def cameras(st: StateDep) -> dict[str, Any]:
    return {"cameras": [_camera_info(w) for w in st.cameras.values()]}


@api.get("/cameras/{camera_id}", summary="one camera", responses=error_responses(404))
def camera(st: StateDep, camera_id: str) -> dict[str, Any]:
    return _camera_info(st.camera(camera_id))


def _camera_info(w: CameraWorker) -> dict[str, Any]:
    info = w.info()
    info["last_frame"] = iso(info["last_frame"]) if info["last_frame"] else None
    info["stream"] = f"/v1/cameras/{w.id}/stream.mjpg"
    info["frame"] = f"/v1/cameras/{w.id}/frame.jpg"
    return info


@media.get("/cameras/{camera_id}/frame.jpg", summary="the latest annotated frame",
           response_class=Response, responses={200: {"content": {"image/jpeg": {}}}})
def frame(st: StateDep, camera_id: str) -> Response:
    _, jpeg = st.camera(camera_id).latest()
    return Response(jpeg, media_type="image/jpeg", headers={"Cache-Control": "no-store"})


@media.get("/cameras/{camera_id}/stream.mjpg", summary="the annotated frames as MJPEG (multipart/x-mixed-replace)",
           response_class=StreamingResponse, responses={200: {"content": {"multipart/x-mixed-replace": {}}}})
async def stream(st: StateDep, camera_id: str) -> StreamingResponse:
    worker = st.camera(camera_id)

    async def parts():  # noqa: ANN202
        last = -1
        while not st.closing.is_set():
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
    st: StateDep,
    limit: Annotated[int, Query(ge=1, le=500, description="events per page")] = 50,
    offset: Annotated[int, Query(ge=0, le=2**62, description="events to skip")] = 0,
    since: Since = None,
    until: Until = None,
    camera: Annotated[str | None, Query(description="camera name, as in the events")] = None,
    label: Annotated[Label | None, Query(description="label of the event")] = None,
) -> dict[str, Any]:
    t0, t1 = time_param("since", since), time_param("until", until)
    try:
        rows = st.log.query(since=t0, until=t1, camera=camera, label=label, limit=limit, offset=offset)
        total = st.log.count(since=t0, until=t1, camera=camera, label=label)
    except InputError as e:
        raise ApiError(503, str(e)) from None
    return {"events": [e.to_dict() for e in rows], "total": total, "limit": limit, "offset": offset}


@media.get("/events/stream", summary="new events as Server-Sent Events (one JSON event per message)",
           response_class=StreamingResponse, responses={200: {"content": {"text/event-stream": {}}}})
async def event_stream(st: StateDep, request: Request) -> StreamingResponse:
    last_id = request.headers.get("last-event-id", "")
    start = int(last_id) if re.fullmatch(r"[0-9]{1,18}", last_id) else st.live.last  # not isdigit(): "²" is a digit

    async def messages():  # noqa: ANN202
        last, quiet = start, 0.0
        yield "retry: 3000\n\n"
        while not st.closing.is_set():
            items = st.live.after(last)
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
    st: StateDep,
    bucket: Annotated[int, Query(ge=5, le=86400, description="bucket length, seconds")] = 60,
    since: Annotated[str | None, Query(description="from (ISO-8601 or unix seconds); default: one hour ago")] = None,
    until: Until = None,
    camera: Annotated[str | None, Query(description="only this camera (name)")] = None,
) -> dict[str, Any]:
    now = time.time()
    t1 = time_param("until", until)
    t1 = now if t1 is None else t1
    t0 = time_param("since", since)
    t0 = t1 - 3600 if t0 is None else t0
    if t1 <= t0 or (t1 - t0) / bucket > 5000:
        raise invalid("query", "since", "give since < until, at most 5000 buckets apart", since)
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

    for w in st.cameras.values():
        if camera is not None and w.spec.name != camera:
            continue
        table.setdefault(w.spec.name, {})
        for start, n, faces in w.buckets(first, t1):
            row = cell(w.spec.name, slot(start))
            row["frames"] += n
            for lab, k in faces.items():
                row["faces"][lab] = row["faces"].get(lab, 0) + k
    try:
        evs = st.log.query(since=first, until=t1, camera=camera, limit=None)
    except InputError as e:
        raise ApiError(503, str(e)) from None
    for ev in evs:
        row = cell(ev.camera, slot(ev.time))
        row["events"][ev.label] = row["events"].get(ev.label, 0) + 1
    ids = {w.spec.name: w.id for w in st.cameras.values()}
    out = []
    for cam, rows in table.items():
        buckets = [{"start": start, "iso_start": iso(start), "frames": r["frames"], "faces": r["faces"],
                    "share_masked": share(r["faces"]), "events": r["events"], "events_total": sum(r["events"].values())}
                   for start, r in sorted(rows.items())]
        out.append({"camera": cam, "id": ids.get(cam), "buckets": buckets})
    return {"bucket": bucket, "since": first, "until": t1, "cameras": out}

