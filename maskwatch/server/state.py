"""The server's settings and state: the cameras, the photo detector, the shared event log and the live events."""

from __future__ import annotations

import re
import shutil
import tempfile
import threading
import weakref
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..annotate import BoxAnnotator
from ..errors import InputError
from ..events import DEFAULT_DB, Event, Sink, is_loopback
from ..images import MAX_PIXELS
from ..monitor import MonitorSettings, build_sinks, close_all
from ..pipeline import Detector
from ..settings import PHOTO, PHOTO_DET_SIZE, SURE_SETTINGS, check
from .cameras import CameraSpec, CameraWorker, parse_camera
from .demo import write_demo_video
from .errors import ApiError

STATIC = Path(__file__).resolve().parent / "static"


@dataclass
class ServerSettings:
    """Everything ``maskwatch serve`` can be told; the defaults are the command's.

    cameras: ``SOURCE[=NAME]`` strings or CameraSpecs. demo: loop the demo video as a camera (None: only when no
    camera is given). token: API token (required when host is not loopback). events: SQLite event log ('' = in
    memory). allowed_hosts: names (besides 127.0.0.1, localhost, ::1 and the bound address) a request's Host may
    give; without a token only those are answered (DNS rebinding); with a token any, unless names are given. detector: Detector keyword arguments for the cameras (det_size 320); photo_det_size, photo_flip: det_size
    and flip for uploaded photos (the photo preset's, as ``maskwatch detect``). max_upload_mb: upload limit; max_pixels: image size limit.
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
    upload_idle_s: float = 10.0  # an upload that sends nothing for this long gets 408 and frees its slot
    detector: dict[str, Any] = field(default_factory=lambda: {"det_size": 320})
    photo_det_size: int | tuple[int, ...] = PHOTO_DET_SIZE
    photo_flip: bool | str = PHOTO["flip"]
    confirm_frames: int = 5
    blur_faces: bool = False
    jpeg_quality: int = 80
    open_timeout: float = 10.0
    reconnect_wait: float = 1.0
    max_retries: int = 5
    demo_size: tuple[int, int] = (640, 480)
    demo_fps: float = 12.0
    shared: str | None = None  # where the demo's photos are (default: MASKWATCH_SHARED or ../shared)
    allowed_hosts: tuple[str, ...] = ()  # Host names besides loopback's the server answers to (a reverse proxy's name)


MIN_TOKEN = 16  # characters an API token needs when the server listens beyond loopback
MIN_TOKEN_DISTINCT = 5  # and different characters: "aaaaaaaaaaaaaaaa" or "abab..." is no secret (random hex of
# 16 characters has fewer than 5 once in ~10^8 draws; 10 refused a quarter of them)


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


class State:
    """What the routes share: settings, event log, cameras, the photo detector, and the flag that ends streams."""

    def __init__(self, settings: ServerSettings) -> None:
        s = self.settings = settings
        if not (0 <= int(s.port) <= 65535):
            raise InputError(f"'port={s.port}' is invalid. Valid 'port' values are between 0 and 65535")
        if not is_loopback(s.host) and not s.token:
            raise InputError(f"binding to {s.host or 'all addresses'} puts the cameras on the network: give an API token "
                             f"(--token or the MASKWATCH_TOKEN environment variable), or bind to 127.0.0.1")
        if s.token is not None and (not s.token.strip() or any(c.isspace() for c in s.token)):
            raise InputError("the API token must not be blank or hold spaces (a browser or curl cannot send it as given); "
                             "e.g. python -c 'import secrets; print(secrets.token_urlsafe(24))'")
        if not is_loopback(s.host) and len(s.token or "") < MIN_TOKEN:
            raise InputError(f"the API token has {len(s.token or '')} characters; off loopback it needs at least {MIN_TOKEN} "
                             "(e.g. python -c 'import secrets; print(secrets.token_urlsafe(24))')")
        if not is_loopback(s.host) and s.token and len(set(s.token)) < MIN_TOKEN_DISTINCT:
            raise InputError(f"the API token has only {len(set(s.token))} different characters: off "
                             f"loopback it needs {MIN_TOKEN_DISTINCT} or more, not a repeated or counted string "
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
