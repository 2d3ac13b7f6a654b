"""Video in and out: files, webcams and network streams as frames; an annotated-video writer; an FPS meter."""

from __future__ import annotations

import contextlib
import errno
import os
import re
import socket
import threading
import time
import urllib.parse
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from .errors import InputError
from .images import normalize_image


def parse_source(source: str | int) -> str | int:
    """A webcam index ("0" -> 0), a URL (rtsp://, http://) or a file path."""
    if isinstance(source, int):
        return source
    s = str(source).strip()
    return int(s) if s.isdigit() else s


STREAM_SCHEMES = ("rtsp", "rtsps", "http", "https", "rtmp", "udp", "tcp")


def is_stream(source: str | int) -> bool:
    return isinstance(source, str) and source.split("://")[0].lower() in STREAM_SCHEMES


def shown_source(source: str | int) -> str:
    """A source as messages may show it: a URL without its user name, password and query (which may carry a
    token): ``rtsp://admin:pw@cam:554/live?key=k`` -> ``rtsp://cam:554/live``; anything else as it is."""
    s = str(source)
    if isinstance(source, int) or "://" not in s:
        return s
    try:
        p = urllib.parse.urlsplit(s)
    except ValueError:  # "http://[cam/x": a broken address; show none of what follows the scheme
        return s.split("://")[0] + "://..."
    netloc = p.netloc.rpartition("@")[2]  # host[:port], as written
    return urllib.parse.urlunsplit((p.scheme, netloc, p.path, "", ""))


class StreamOpenError(InputError):
    """A stream URL that could not be opened. ``reason``: why, in FFmpeg's words made plain, with a hint (None where
    PyAV is not installed or gives no reason); ``lasting``: a kind of answer that waiting does not change by itself
    (HTTP 404/401/403, a host name that does not resolve, not a video) rather than a camera that is off or booting."""

    def __init__(self, message: str, reason: str | None = None, lasting: bool = False) -> None:
        super().__init__(message)
        self.reason, self.lasting = reason, lasting


PROBE_TIMEOUT = 3.0
"""Seconds :func:`stream_failure` gives FFmpeg (PyAV) to answer; it runs only when OpenCV's open failed fast."""


class _AvLogLevel:
    """PyAV's log level is the process's: raised to ERROR while probes run, then put back as it was."""

    lock = threading.Lock()
    probes = 0
    before: int | None = None


def stream_failure(url: str, timeout: float = PROBE_TIMEOUT) -> tuple[str, bool] | None:
    """Why a stream URL cannot be opened, asked once of FFmpeg through PyAV (OpenCV gives no reason): (reason with a
    hint, lasting), e.g. ("HTTP 404 Not Found: check the path in the URL", True). None where PyAV is not installed,
    the URL opens now, or no answer came within ``timeout`` (+1) seconds. Never names the URL's user, password or
    query."""
    try:
        import av  # type: ignore[import-not-found]  # noqa: F401
    except ImportError:
        return None
    found: list[tuple[str, bool] | None] = []

    def probe() -> None:
        with contextlib.suppress(Exception):
            found.append(_probe(url, timeout))

    t = threading.Thread(target=probe, name="maskwatch-stream-probe", daemon=True)  # a name lookup has no timeout
    t.start()
    t.join(timeout + 1.0)
    return found[0] if found else None


def _probe(url: str, timeout: float) -> tuple[str, bool] | None:
    import av
    import av.logging as avlog  # type: ignore[import-not-found]

    with _AvLogLevel.lock:  # FFmpeg logs the details (a name that does not resolve) only at a log level; captured here
        if _AvLogLevel.probes == 0:
            _AvLogLevel.before = avlog.get_level()
            avlog.set_level(avlog.ERROR)
        _AvLogLevel.probes += 1
    try:
        with avlog.Capture() as logs:  # this thread's messages only
            try:
                container = av.open(url, timeout=timeout)
            except av.error.FFmpegError as e:
                error: BaseException | None = e
            else:
                container.close()
                error = None
    finally:
        with _AvLogLevel.lock:
            _AvLogLevel.probes -= 1
            if _AvLogLevel.probes == 0:
                avlog.set_level(_AvLogLevel.before)
    if error is None:
        return None
    said = [_scrub(str(m[2]).strip(), url) for m in logs if len(m) > 2 and str(m[2]).strip()]
    return _plain_reason(av.error, error, url, said)


def _plain_reason(E: Any, e: BaseException, url: str, said: list[str]) -> tuple[str, bool]:  # noqa: N803
    """(reason, lasting) of PyAV's error ``e`` (its ``av.error`` module is ``E``) and FFmpeg's log lines ``said``."""
    p = urllib.parse.urlsplit(url)
    scheme = p.scheme.lower()
    try:
        port = p.port
    except ValueError:
        port = None
    port = port or {"http": 80, "https": 443, "rtsp": 554, "rtsps": 322, "rtmp": 1935}.get(scheme)
    host = p.hostname or "?"
    proto = "RTSP" if scheme.startswith("rtsp") else "HTTP"
    strerror = _scrub(str(getattr(e, "strerror", "") or "").strip(), url)
    if _is(e, E, "HTTPUnauthorizedError"):
        if p.username is None:
            return (f"{proto} 401 Unauthorized: the camera wants a user name and password; put them in the URL, "
                    f"{scheme}://USER:PASSWORD@{p.netloc.rpartition('@')[2]}/..."), True
        return f"{proto} 401 Unauthorized: check the user name and password", True
    if _is(e, E, "HTTPForbiddenError"):
        return f"{proto} 403 Forbidden: check the user name and password, and that this user may view the stream", True
    if _is(e, E, "HTTPNotFoundError"):
        return f"{proto} 404 Not Found: check the path in the URL", True
    if _is(e, E, "HTTPBadRequestError"):
        return f"{proto} 400 Bad Request: check the URL", True
    if _is(e, E, "HTTPTooManyRequestsError"):
        return f"{proto} 429 Too Many Requests: the camera limits its viewers; is another program reading it?", False
    if _is(e, E, "HTTPClientError"):
        return f"{proto} error ({strerror or '4xx'}): check the URL", True
    if _is(e, E, "HTTPServerError"):
        return f"{proto} 5xx Server Error: the camera's server failed; it may still be starting", False
    if _is(e, E, "ProtocolNotFoundError"):
        return f"this FFmpeg cannot open {scheme}:// URLs: check the start of the URL", True
    if _is(e, E, "InvalidDataError"):
        what = "a web page or a login form?" if proto == "HTTP" else "another kind of server on this port?"
        return f"the server answers, but not with a video FFmpeg can read; {what} Check the path and the port", True
    if isinstance(e, ConnectionRefusedError):
        return f"connection refused: nothing listens on port {port} of {host}; is the camera on, and is the port right?", False
    if isinstance(e, ConnectionResetError):
        return "the connection was reset by the camera", False
    if isinstance(e, TimeoutError) or _is(e, E, "ExitError"):  # ExitError: PyAV's timeout
        return "no answer", False
    code = getattr(e, "errno", None)
    if code in (errno.ENETUNREACH, errno.EHOSTUNREACH):
        return f"{host} cannot be reached ({strerror.lower() or 'unreachable'}): check the address and the network", False
    if any("resolve hostname" in m for m in said) or (code == errno.EIO and not said and not _resolves(host)):
        return f"the host name {host} does not resolve: check it", True
    detail = said[-1].rstrip(".") if said else strerror or type(e).__name__
    if scheme in ("https", "rtsps") and any("TLS" in m or "SSL" in m for m in said):
        return (f"the secure (TLS) connection failed, FFmpeg says: {detail}; does port {port} speak {scheme}? "
                f"Check the port, or try {scheme[:-1]}://"), True
    return f"FFmpeg says: {detail}", False


def _is(e: BaseException, E: Any, name: str) -> bool:  # noqa: N803
    """``e`` is an ``av.error.<name>`` (False where this PyAV has no such class)."""
    cls = getattr(E, name, None)
    return isinstance(cls, type) and isinstance(e, cls)


def _resolves(host: str) -> bool:
    try:
        socket.getaddrinfo(host, None)
    except (OSError, UnicodeError):
        return False
    return True


def _scrub(text: str, url: str) -> str:
    """FFmpeg's ``text`` without the URL's user name, password or query, should it have said them."""
    p = urllib.parse.urlsplit(url)
    text = text.replace(url, shown_source(url))
    for secret in (p.password, p.query):
        if secret:
            text = text.replace(secret, "***")
    if p.username:
        text = re.sub(rf"(?<!\w){re.escape(p.username)}(?!\w)", "***", text)
    return text


def _times(n: int) -> str:
    return "1 time" if n == 1 else f"{n} times"


def open_video_file(path: str | os.PathLike) -> cv2.VideoCapture:
    """A video file opened with FFmpeg, a phone's rotation tag applied: frames (BGR), width and height are upright,
    as a player shows them. (Check ``isOpened()``.)"""
    cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    if not cap.isOpened():  # a build without FFmpeg (or whose FFmpeg plugin does not load): OpenCV's own choice
        cap.release()
        cap = cv2.VideoCapture(str(path))
    cap.set(cv2.CAP_PROP_ORIENTATION_AUTO, 1)  # OpenCV's default today; set so that no build or release changes it
    return cap


MIN_FPS, MAX_FPS = 0.01, 1000.0
"""Frame rates a video file may state; outside them (0, NaN, a stream's clock rate) ``ASSUMED_FPS`` is used."""
ASSUMED_FPS = 25.0
VIDEO_OUT_SUFFIXES = (".mp4", ".webm", ".avi", ".mkv", ".mov")
"""The names :class:`VideoSink` writes: H.264 (with PyAV) or MPEG-4 Part 2 in .mp4/.mkv/.mov, VP9 in .webm, MJPEG in .avi."""


class VideoSource:
    """Frames (BGR uint8) from a file, a webcam index or a stream URL. A context manager.

    open_timeout / read_timeout: seconds before an unanswered stream is given up on (a clear error, never a
    hang). reconnect: for cameras and streams, how many times in a row to reopen after frames stop (None = for
    ever: a door camera that reboots comes back); the first wait is reconnect_wait seconds, doubled after each
    failed attempt up to max_wait. With ``wait_to_open``, a stream (rtsp/http) that cannot be opened at the start
    is retried the same way (a server that boots before its camera; width, height and fps are 0 until it opens);
    otherwise, and always for a file or a webcam index, a source that cannot be opened is an error at once. A
    stream that answers at once but cannot be opened (refused, HTTP 404, 401, a name that does not resolve, not a
    video) is asked once per failed attempt why, of FFmpeg through PyAV when it is installed
    (:func:`stream_failure`), and the reason is in the message (:class:`StreamOpenError`).
    on_state(state, detail) is called once per change: "down" when frames stop (or the stream cannot be opened),
    "up" when they come back, "gave up" at the end; "down" again, once, for each new reason that waiting may not
    cure (HTTP 404/401/403, a host name, not a video) met while it is down, where a camera that is off or booting
    (refused, no answer) is said only in the first "down". Messages name a URL without its user name, password and
    query (``shown_source``). ``stop()`` (from another thread or a signal handler) ends the
    iteration at the next frame or wait. fps: the file's own rate (0.01-1000); ``fps_stated`` is False where the
    file states none and 25 is assumed.
    """

    def __init__(self, source: str | int, open_timeout: float = 10.0, read_timeout: float = 10.0, reconnect: int | None = 5,
                 reconnect_wait: float = 1.0, max_wait: float = 30.0,
                 on_state: Callable[[str, str], None] | None = None, wait_to_open: bool = False) -> None:
        self.source = parse_source(source)
        self.open_timeout, self.read_timeout, self.reconnect = open_timeout, read_timeout, reconnect
        self.reconnect_wait, self.max_wait, self.on_state = reconnect_wait, max_wait, on_state
        self._stop = threading.Event()
        self.outages = 0  # times frames stopped and came back
        self.frames_read = 0
        self.ended_early = False
        self.stopped: str | None = None  # why a camera or stream ended, if it did
        if isinstance(self.source, str) and not is_stream(self.source):
            p = Path(self.source)
            if not p.exists() and "://" in self.source:  # "htp://cam/x", "rstp://...": a misspelt protocol
                raise InputError(f"{shown_source(self.source)}: no such video file, and "
                                 f"'{self.source.split('://')[0]}' is not a stream protocol maskwatch opens "
                                 f"({', '.join(STREAM_SCHEMES)}); check the start of the URL")
            if not p.exists():
                raise InputError(f"{p}: no such video file; check the path (a webcam is a number, e.g. 0)")
            if p.is_dir():
                raise InputError(f"{p}: is a folder; pass a video file, a webcam number or a stream URL")
        self._started_down, self.fps_stated = False, False
        self._told_reasons: tuple[str, ...] = ()
        self.fps, self.frame_count, self.width, self.height = 0.0, 0, 0, 0
        try:
            self.cap = self._open()
        except InputError as e:
            if not (wait_to_open and is_stream(self.source) and (reconnect is None or reconnect > 0)):
                raise
            self.cap, self._started_down = cv2.VideoCapture(), True  # (not opened: __iter__ retries)
            self._told_reasons = (e.reason,) if isinstance(e, StreamOpenError) and e.reason else ()
            self._state("down", f"{e}; retrying" + (" until it answers" if reconnect is None else f" (up to {_times(reconnect)})"))
        else:
            self._read_properties()
            if self.is_file and not (self.width > 0 and self.height > 0):  # FFmpeg "opens" some non-videos at 0 x 0
                self.cap.release()
                raise InputError(f"{self.source}: not a video OpenCV can read (no picture in it: a photo or another "
                                 "kind of file?)")

    def _read_properties(self) -> None:
        fps = float(self.cap.get(cv2.CAP_PROP_FPS) or 0.0)
        self.fps_stated = MIN_FPS <= fps <= MAX_FPS  # time-lapse CCTV exports (0.2 fps) and slow motion (480) are real
        self.fps = fps if self.fps_stated else ASSUMED_FPS
        self.frame_count = int(self.cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0) if self.is_file else 0
        self.width = int(self.cap.get(cv2.CAP_PROP_FRAME_WIDTH))
        self.height = int(self.cap.get(cv2.CAP_PROP_FRAME_HEIGHT))

    @property
    def is_file(self) -> bool:
        return isinstance(self.source, str) and not is_stream(self.source)

    def _open(self) -> cv2.VideoCapture:
        started = time.monotonic()
        if is_stream(self.source):
            os.environ.setdefault("OPENCV_FFMPEG_CAPTURE_OPTIONS", f"timeout;{int(self.open_timeout * 1e6)}|stimeout;{int(self.open_timeout * 1e6)}")
            params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, int(self.open_timeout * 1000), cv2.CAP_PROP_READ_TIMEOUT_MSEC, int(self.read_timeout * 1000)]
            cap = cv2.VideoCapture(self.source, cv2.CAP_FFMPEG, params)
        elif isinstance(self.source, int):
            cap = cv2.VideoCapture(self.source)
        else:
            cap = open_video_file(self.source)
        if not cap.isOpened():
            cap.release()
            if isinstance(self.source, int):
                hint = "try another index, e.g. 0" if self.source != 0 else "is a camera plugged in, and may this user open /dev/video*?"
                raise InputError(f"camera {self.source}: cannot be opened (no such camera, or it is in use); {hint}")
            if is_stream(self.source):
                waited = time.monotonic() - started
                if waited < 0.8 * self.open_timeout:  # an answer, not silence: refused, not found, not a video
                    found = stream_failure(self.source, min(PROBE_TIMEOUT, self.open_timeout))
                    if found:
                        raise StreamOpenError(f"{self.name}: could not be opened ({found[0]})", *found)
                    raise StreamOpenError(f"{self.name}: could not be opened after {waited:.1f} s (connection refused, no "
                                          "such stream, or not a video); check the address, port, path and credentials")
                raise StreamOpenError(f"{self.name}: the stream did not answer within {self.open_timeout:.0f} s; check the "
                                      "URL, network and credentials", "no answer")
            raise InputError(f"{self.source}: not a video OpenCV can read (unknown format or corrupt file)")
        return cap

    def stop(self) -> None:
        """End the iteration at the next frame or reconnect wait (safe from another thread or a signal handler)."""
        self._stop.set()

    @property
    def name(self) -> str:
        """The source as messages show it: ``camera 0``, a file's path, a URL without user, password and query."""
        return f"camera {self.source}" if isinstance(self.source, int) else shown_source(self.source)

    def __iter__(self) -> Iterator[np.ndarray]:
        """Frames until the source ends or :meth:`stop` is called. A camera or stream that stops sending is
        reopened up to ``reconnect`` times in a row (for ever if None), waiting longer after each failure; then
        iteration ends and ``stopped`` says why."""
        failures, down_told, why = 0, self._started_down, ""
        told = set(self._told_reasons)  # the reasons said in this outage
        while not self._stop.is_set():
            ok, frame = self.cap.read()
            if ok and frame is not None:
                if failures:
                    self.outages += 1
                    again = "first frames" if self.frames_read == 0 else "frames again"
                    self._state("up", f"{self.name}: {again} after {failures} reconnect attempt(s)")
                failures, down_told, why = 0, False, ""
                told.clear()
                self.frames_read += 1
                yield frame
                continue
            if self._stop.is_set():
                return
            if not self.is_file and (self.reconnect is None or failures < self.reconnect):
                if failures == 0 and not down_told:
                    down_told = True
                    self._state("down", f"{self.name}: stopped sending frames; reconnecting"
                                + (" until it is back" if self.reconnect is None else f" (up to {_times(self.reconnect)})"))
                wait = min(self.max_wait, self.reconnect_wait * 2 ** failures)
                failures += 1
                self.cap.release()
                if self._stop.wait(wait):
                    return
                try:
                    self.cap = self._open()
                except InputError as e:  # still down: the next attempt waits longer
                    why = str(e)
                    if isinstance(e, StreamOpenError) and e.reason and e.lasting and e.reason not in told:
                        told.add(e.reason)  # a new reason that waiting may not cure: said once
                        until = " until it answers" if self.frames_read == 0 else " until it is back"
                        self._state("down", f"{e}; still retrying"
                                    + (until if self.reconnect is None else f" (up to {_times(self.reconnect)})"))
                else:
                    self._read_properties()
                continue
            if self.is_file and self.frame_count and self.frames_read < self.frame_count - 1:
                self.ended_early = True
            if not self.is_file:
                name = self.name
                if why and self.frames_read == 0:  # never opened: the reason of the last attempt
                    self.stopped = f"{why}; gave up after {failures} reconnect attempt(s)"
                else:
                    self.stopped = (f"{name} stopped sending frames after {self.frames_read} frame(s); "
                                    f"gave up after {failures} reconnect attempt(s)")
                self._state("gave up", self.stopped)
                if self.frames_read == 0 and isinstance(self.source, int):
                    raise InputError(f"camera {self.source}: opened but sends no frames; is another program using it?")
            return

    def _state(self, state: str, detail: str) -> None:
        if self.on_state is not None:
            self.on_state(state, detail)

    def close(self) -> None:
        self.cap.release()

    def __enter__(self) -> VideoSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class VideoSink:
    """Writes BGR frames to a video file of the given size and fps. The codec follows the file name:

    - ``.webm``: VP9 (OpenCV's own FFmpeg, libvpx): plays in every browser; no extra package.
    - ``.mp4``: H.264 (yuv420p, ``faststart``) through PyAV when it is installed (``pip install 'maskwatch[h264]'``;
      its wheels bundle FFmpeg with x264, which is GPL), which browsers and phones play; without PyAV,
      MPEG-4 Part 2 (mp4v), which desktop players open but browsers refuse, and ``warning`` says so. H.264 needs
      even sides: an odd width or height gets one more column or row, a copy of the last.
    - ``.avi``: Motion JPEG.
    - ``.mkv``, ``.mov``: as ``.mp4``.
    Any other name is refused (InputError) before a file is created.
    """

    def __init__(self, path: str | os.PathLike, width: int, height: int, fps: float) -> None:
        self.path = Path(path)
        suffix = self.path.suffix.lower()
        sizes_ok = all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v > 0 for v in (width, height))
        if not (sizes_ok and isinstance(fps, (int, float, np.integer, np.floating)) and MIN_FPS <= fps <= MAX_FPS):
            raise InputError(f"{self.path}: cannot write a {width!r} x {height!r} video at {fps!r} frames/s; give whole "
                             f"sizes above 0 and {MIN_FPS:g} to {MAX_FPS:g} frames/s")
        if suffix not in VIDEO_OUT_SUFFIXES:
            raise InputError(f"{self.path}: cannot write a video with this name; use .webm (VP9, plays in browsers), .mp4 "
                             "(H.264 with PyAV), .mkv, .mov or .avi (Motion JPEG)")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.size: tuple[int, int] = (int(width), int(height))  # (np.int64 sizes)
        self.warning: str | None = None
        self._av: tuple | None = None
        pyav = ""
        if suffix in (".mp4", ".mkv", ".mov"):
            pyav = self._open_h264(*self.size, float(fps))
            if not pyav:
                self.codec = "h264"
                return
        fourcc, self.codec = {".avi": ("MJPG", "mjpeg"), ".webm": ("VP90", "vp9")}.get(suffix, ("mp4v", "mpeg4"))
        # WebM has no codec tags: OpenCV prints "tag 'VP90' is not supported ... format 'webm'" to the C stderr and
        # then writes VP9 as asked. Keep that line off the user's terminal.
        with _quiet_c_stderr(suffix == ".webm"):
            self.writer = cv2.VideoWriter(str(self.path), cv2.VideoWriter_fourcc(*fourcc), float(fps), self.size)  # type: ignore[attr-defined]
        if not self.writer.isOpened():
            raise InputError(f"{self.path}: cannot write a video here; use a .webm, .mp4 or .avi name in a writable folder")
        if self.codec == "mpeg4":
            self.warning = (f"{self.path} is MPEG-4 Part 2, which desktop players open but web browsers do not play ({pyav}); "
                            "for a browser-playable video name the output .webm (VP9)")

    def _open_h264(self, width: int, height: int, fps: float) -> str:
        """Opens an H.264 writer through PyAV: "" when it did, else why not (for the fallback's warning)."""
        try:
            import av  # type: ignore[import-not-found]
        except ImportError:
            return "pip install av for H.264"
        from fractions import Fraction

        try:
            options = {"movflags": "faststart"} if self.path.suffix.lower() in (".mp4", ".mov") else {}
            container = av.open(str(self.path), "w", options=options)
            stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
        except Exception as e:  # no libx264 in this PyAV build, or the file cannot be created: use OpenCV's writer
            return f"PyAV could not write H.264 here: {str(e)[:120]}"
        stream.width, stream.height = width + width % 2, height + height % 2  # yuv420p needs even sides
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": "23", "preset": "veryfast"}
        self._av = (av, container, stream)
        return ""

    def write(self, frame: np.ndarray) -> None:
        """One BGR uint8 (h, w, 3) frame, resized to the sink's size if it differs; grey, BGRA, 16-bit and 0..1
        float frames are converted as :func:`maskwatch.images.normalize_image` does (anything else: InputError)."""
        if not (isinstance(frame, np.ndarray) and frame.dtype == np.uint8 and frame.ndim == 3 and frame.shape[2] == 3):
            frame = normalize_image(frame, f"{self.path}: a frame")
        if (frame.shape[1], frame.shape[0]) != self.size:
            frame = cv2.resize(frame, self.size)
        if self._av is None:
            self.writer.write(frame)
            return
        av, container, stream = self._av
        if (stream.width, stream.height) != self.size:
            frame = cv2.copyMakeBorder(frame, 0, stream.height - self.size[1], 0, stream.width - self.size[0], cv2.BORDER_REPLICATE)
        for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="bgr24")):
            container.mux(packet)

    def close(self) -> None:
        if self._av is None:
            self.writer.release()
            return
        _, container, stream = self._av
        self._av = None
        for packet in stream.encode():
            container.mux(packet)
        container.close()

    def __enter__(self) -> VideoSink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@contextlib.contextmanager
def _quiet_c_stderr(active: bool = True) -> Iterator[None]:
    """Silence what C code writes to file descriptor 2 inside the block (Python's own sys.stderr is unaffected)."""
    if not active:
        yield
        return
    import sys

    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
            try:
                yield
            finally:
                os.dup2(saved, 2)
    finally:
        os.close(saved)


class FPSMonitor:
    """Frames per second over the last ``window`` frames."""

    def __init__(self, window: int = 30) -> None:
        self.times: deque[float] = deque(maxlen=window)
        self.frames = 0

    def tick(self) -> float:
        self.frames += 1
        self.times.append(time.perf_counter())
        return self.fps

    @property
    def fps(self) -> float:
        if len(self.times) < 2:
            return 0.0
        return (len(self.times) - 1) / max(self.times[-1] - self.times[0], 1e-9)
