"""One thread per camera for the web dashboard: frames in, the live monitor per frame, the latest annotated JPEG out.

A :class:`CameraWorker` opens a :class:`~maskwatch.video.VideoSource` (webcam index, file, rtsp/http URL), runs a
:class:`~maskwatch.monitor.Monitor` on every frame (its events go to the dispatcher it is given) and keeps what the
dashboard shows: the latest annotated JPEG, frames/s, the faces of the current frame by label, the people seen so far,
and the faces seen per label in 5-second buckets (for the chart, with or without events). A file is played at its own
frame rate and loops forever. A camera that stops, or cannot be opened, is retried with back-off: its ``status`` is
``"reconnecting"`` and then, after ``max_retries`` failed tries in a row, ``"down"`` (still retried every
``max_wait`` s), with the reason in ``reason`` (for a stream that answers but cannot be opened, FFmpeg's reason with a
hint where PyAV is installed: "HTTP 404 Not Found: check the path in the URL"); the other cameras are not affected.
Each change of status is logged once, and so is each new reason that waiting may not cure (HTTP 404/401/403, a host
name that does not resolve, not a video) met while the camera is failing.
"""

from __future__ import annotations

import logging
import re
import textwrap
import threading
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from ..annotate import BoxAnnotator, blur_faces, draw_fps
from ..errors import InputError
from ..monitor import MonitorSettings, Sinks, build_monitor
from ..pipeline import Detector
from ..video import FPSMonitor, StreamOpenError, VideoSource, is_stream, parse_source, shown_source

log = logging.getLogger("maskwatch.server")
"""Each change of a camera's state, once (down, reconnecting, frames again): ``serve`` shows it on stderr."""

BUCKET_S = 5  # resolution of the per-camera face counts kept in memory
HISTORY_S = 24 * 3600  # how long they are kept


@dataclass(frozen=True)
class CameraSpec:
    """A camera to open: source (webcam index, file path or stream URL) and the name written into its events."""

    source: str | int
    name: str
    kind: str = ""  # "webcam", "file", "rtsp", "http", ... ; "" = from the source

    @property
    def source_kind(self) -> str:
        if self.kind:
            return self.kind
        if isinstance(self.source, int):
            return "webcam"
        return str(self.source).split("://")[0].lower() if is_stream(self.source) else "file"

    @property
    def shown(self) -> str:
        """The source without what may be secret: a URL loses its user, password and query; a file its folder."""
        if isinstance(self.source, int):
            return f"webcam {self.source}"
        if is_stream(self.source):
            return shown_source(self.source)
        return re.split(r"[\\/]", str(self.source))[-1]


def parse_camera(text: str) -> CameraSpec:
    """``SOURCE[=NAME]`` -> CameraSpec. ``0=door``, ``video.mp4``, ``rtsp://cam/live=yard``. A URL whose query ends in
    ``key=value`` keeps that '=' (``rtsp://cam/live?channel=1`` has no name; add ``=NAME`` after it to name it)."""
    text = str(text).strip()
    source, name = text, ""
    left, sep, right = text.rpartition("=")
    if sep and left and right:
        last_param = re.split(r"[?&]", left)[-1] if "?" in left else None
        is_query_value = last_param is not None and "=" not in last_param
        if not is_query_value and "/" not in right and "://" not in right:
            source, name = left, right.strip()
    if not source:
        raise InputError(f"camera '{text}': give SOURCE[=NAME], e.g. 0=door, video.mp4 or rtsp://cam.local/stream=yard")
    src = parse_source(source)
    return CameraSpec(src, name or CameraSpec(src, "").shown)


class CameraWorker(threading.Thread):
    """Runs one camera until :meth:`stop`. Read its state with :meth:`info`, :meth:`latest` and :meth:`buckets`.

    id: the camera's id in URLs. detector: its own :class:`Detector` (not shared between threads). dispatcher: where
    the monitor's events go (shared). open_timeout: seconds before a stream that does not answer is given up on.
    reconnect_wait: first wait after a failure, doubled each time up to max_wait; status turns "down" after
    max_retries failures in a row. blur: pixelate faces in the stream. size_hint: the placeholder's size before the
    first frame.
    """

    def __init__(self, cam_id: str, spec: CameraSpec, detector: Detector, dispatcher: Any = None, *,
                 confirm_frames: int = 5, blur: bool = False, jpeg_quality: int = 80, open_timeout: float = 10.0,
                 reconnect_wait: float = 1.0, max_wait: float = 30.0, max_retries: int = 5,
                 size_hint: tuple[int, int] = (640, 480)) -> None:
        super().__init__(name=f"maskwatch-camera-{cam_id}", daemon=True)
        self.id, self.spec = cam_id, spec
        self.monitor, _ = build_monitor(detector, MonitorSettings(camera=spec.name, confirm_frames=confirm_frames),
                                        sinks=Sinks(dispatcher))  # the server's shared sinks; it closes them
        self.labels = tuple(detector.shown_labels)
        self.blur, self.jpeg_quality = blur, int(jpeg_quality)
        self.open_timeout, self.reconnect_wait = float(open_timeout), float(reconnect_wait)
        self.max_wait, self.max_retries = float(max_wait), int(max_retries)
        self._annotator = BoxAnnotator()
        self._fps = FPSMonitor()
        self._stop_event = threading.Event()
        self._lock = threading.Lock()
        self._size = size_hint
        self.status: str = "starting"
        self._told: str | None = None  # the failing state last logged (None: running, or not failed yet)
        self._told_reasons: set[str] = set()  # the open failures' reasons logged since the last frame
        self.reason: str | None = None
        self.frames = 0
        self.last_frame_time: float | None = None
        self._counts = dict.fromkeys(self.labels, 0)
        self._seen = dict.fromkeys(self.labels, 0)
        self._seq, self._jpeg = 0, b""
        self._buckets: dict[int, list[int]] = {}  # bucket start -> [frames, faces of label 0, label 1, ...]
        self._placeholder("starting")

    # -- reading (any thread)

    def info(self) -> dict[str, Any]:
        """A JSON-able summary: id, name, kind, source (safe to show), status, reason, fps, frames, counts (faces in
        the current frame by label), seen (people seen since start, by their latest label), last_frame (unix s)."""
        with self._lock:
            ok = self.status == "ok"
            return {"id": self.id, "name": self.spec.name, "kind": self.spec.source_kind, "source": self.spec.shown,
                    "status": self.status, "reason": self.reason, "fps": round(self._fps.fps, 1) if ok else 0.0,
                    "frames": self.frames, "counts": dict(self._counts) if ok else dict.fromkeys(self.labels, 0),
                    "seen": dict(self._seen), "last_frame": self.last_frame_time}

    def latest(self) -> tuple[int, bytes]:
        """(sequence number, JPEG) of the latest annotated frame (a placeholder while the camera is not ok)."""
        with self._lock:
            return self._seq, self._jpeg

    def buckets(self, since: float, until: float) -> list[tuple[int, int, dict[str, int]]]:
        """(start, frames, faces by label) of the 5-s buckets with since <= start < until, oldest first."""
        with self._lock:
            rows = [(t, v[0], dict(zip(self.labels, v[1:]))) for t, v in self._buckets.items() if since <= t < until]
        return sorted(rows)

    # -- life cycle

    def request_stop(self) -> None:
        """Ask the thread to end (it ends after the frame in hand); :meth:`stop` also waits for it."""
        self._stop_event.set()

    def stop(self, timeout: float = 3.0) -> None:
        """Ask the thread to end and wait for it (at most ``timeout`` s: a stream read may block until it times out)."""
        self._stop_event.set()
        if self.is_alive() and self is not threading.current_thread():
            self.join(timeout)
        with self._lock:
            self.status, self.reason = "stopped", None

    def run(self) -> None:
        failures = 0
        while not self._stop_event.is_set():
            try:
                src = VideoSource(self.spec.source, open_timeout=self.open_timeout, read_timeout=self.open_timeout, reconnect=0)
            except Exception as e:  # InputError (cannot open) or anything OpenCV raises
                failures += 1
                self._failed(_reason(e), failures, e if isinstance(e, StreamOpenError) else None)
                continue
            n, error = 0, None
            try:
                step = 1.0 / src.fps if src.is_file else 0.0  # a file plays at its own speed
                due = time.monotonic()
                for frame in src:
                    self._process(frame)
                    n += 1
                    failures = 0
                    if step:
                        due = max(due + step, time.monotonic() - 1.0)
                        self._stop_event.wait(max(0.0, due - time.monotonic()))
                    if self._stop_event.is_set():
                        break
            except Exception as e:  # a source or a processing error must not end the thread
                error = _reason(e)
            finally:
                src.close()
            if self._stop_event.is_set():
                break
            if src.is_file and n and not error:
                continue  # loop the file
            failures += 1
            self._failed(error or src.stopped or f"{self.spec.shown}: no readable frame", failures)

    # -- worker side

    def _failed(self, reason: str, failures: int, error: StreamOpenError | None = None) -> None:
        status = "reconnecting" if failures <= self.max_retries else "down"
        if is_stream(self.spec.source):  # the messages name the URL: keep its password and query out
            reason = reason.replace(str(self.spec.source), self.spec.shown)
        with self._lock:
            self.status, self.reason = status, reason
        why = error.reason if error is not None else None
        new_why = why is not None and error is not None and error.lasting and why not in self._told_reasons
        if status != self._told or new_why:  # a new status; or, still failing, a new reason waiting may not cure
            self._told = status
            if why is not None:
                self._told_reasons.add(why)
            log.warning("camera %s: %s: %s", self.spec.name, status, reason)
        self._placeholder(f"{status}: {reason}")
        self._stop_event.wait(min(self.reconnect_wait * 2 ** (failures - 1), self.max_wait))

    def _process(self, frame: np.ndarray) -> None:
        now = time.time()
        dets = self.monitor.process(frame, now)
        fps = self._fps.tick()
        vis = blur_faces(frame, dets) if self.blur else frame
        img = draw_fps(self._annotator.annotate(vis, dets, copy=not self.blur), fps)
        jpeg = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, self.jpeg_quality])[1].tobytes()
        per_label = Counter(lab for lab in dets.labels if lab)
        counts = {lab: per_label.get(lab, 0) for lab in self.labels}
        seen = self.monitor.counts()
        start = int(now // BUCKET_S) * BUCKET_S
        with self._lock:
            self.status, self.reason = "ok", None
            told, self._told = self._told, None
            self._told_reasons.clear()
            self.frames += 1
            self.last_frame_time = now
            self._size = (frame.shape[1], frame.shape[0])
            self._seq, self._jpeg = self._seq + 1, jpeg
            self._counts, self._seen = counts, seen
            row = self._buckets.get(start)
            if row is None:
                row = self._buckets[start] = [0] * (1 + len(self.labels))
                while next(iter(self._buckets)) < start - HISTORY_S:
                    del self._buckets[next(iter(self._buckets))]
            row[0] += 1
            for i, lab in enumerate(self.labels):
                row[1 + i] += counts[lab]
        if told is not None:
            log.warning("camera %s: frames again (was %s)", self.spec.name, told)

    def _placeholder(self, text: str) -> None:
        """A grey frame with the camera's name and state, shown while there is no live frame."""
        w, h = self._size
        img = np.full((h, w, 3), 48, np.uint8)
        lines = [self.spec.name] + textwrap.wrap(text, max(20, w // 11), max_lines=8)
        for k, line in enumerate(lines):
            cv2.putText(img, line, (12, 36 + 28 * k), cv2.FONT_HERSHEY_SIMPLEX, 0.6 if k else 0.8, (235, 235, 235),
                        1 if k else 2, cv2.LINE_AA)
        jpeg = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, self.jpeg_quality])[1].tobytes()
        with self._lock:
            self._seq, self._jpeg = self._seq + 1, jpeg


def _reason(e: BaseException) -> str:
    return str(e) if isinstance(e, InputError) else f"{type(e).__name__}: {e}"
