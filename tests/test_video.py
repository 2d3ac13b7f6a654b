"""Video files, cameras and streams: annotated output, clear errors for bad sources, timeouts instead of hangs."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import free_port, needs_shared, phone_video, wait_for

from maskwatch import InputError
from maskwatch.video import VideoSource, parse_source

ROOT = Path(__file__).resolve().parents[1]
W, H, FPS, N = 320, 240, 10.0, 20


def _run_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "maskwatch.cli", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)


def _make_video(path: Path, scene: Path, fourcc: str) -> Path:
    img = cv2.imread(str(scene))  # 512 x 366 photo with faces
    assert img is not None
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), FPS, (W, H))
    assert writer.isOpened()
    for i in range(N):
        x = i * 9  # the crop pans right, so faces move between frames
        writer.write(np.ascontiguousarray(img[40 : 40 + H, x : x + W]))
    writer.release()
    return path


def _read_all(path: Path) -> tuple[int, int, int, float]:
    cap = cv2.VideoCapture(str(path))
    assert cap.isOpened(), path
    n = 0
    while cap.read()[0]:
        n += 1
    w, h, fps = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)), cap.get(cv2.CAP_PROP_FPS)
    cap.release()
    return n, w, h, fps


@pytest.fixture
def clip(tmp_path, voc_image) -> Path:
    return _make_video(tmp_path / "in.mp4", voc_image, "mp4v")


def test_parse_source():
    assert parse_source("0") == 0
    assert parse_source(" 3 ") == 3
    assert parse_source("rtsp://cam/x") == "rtsp://cam/x"
    assert parse_source("clip.mp4") == "clip.mp4"


@needs_shared
def test_video_command_writes_annotated_video_and_json(clip, tmp_path):
    out, jpath = tmp_path / "out" / "annotated.mp4", tmp_path / "faces.jsonl"
    r = _run_cli("video", str(clip), "--out", str(out), "--json", str(jpath), "-q")
    assert "Traceback" not in r.stderr
    assert r.returncode == 0, r.stderr
    n, w, h, fps = _read_all(out)
    assert abs(n - N) <= 1
    assert (w, h) == (W, H)
    assert fps == pytest.approx(FPS, abs=0.1)
    lines = [json.loads(x) for x in jpath.read_text().splitlines() if x.strip()]
    assert len(lines) == N
    assert [x["frame"] for x in lines] == list(range(N))
    assert lines[1]["time"] == pytest.approx(1 / FPS, abs=1e-3)
    assert all((x["width"], x["height"]) == (W, H) for x in lines)
    assert sum(len(x["faces"]) for x in lines) >= N  # the photo's faces are found in the frames
    assert f"{N} frames" in r.stderr
    labels = [f["label"] for x in lines for f in x["faces"]]
    sure = [lab for lab in labels if lab != "uncertain"]
    share = f"{sure.count('with_mask') / len(sure):.1%} masked"
    assert share + (f" of the {len(sure)} it is sure of" if len(sure) < len(labels) else "") in r.stderr, r.stderr
    assert "WARNING" not in r.stderr
    # The output is annotated, not a plain copy: frames differ from the input.
    a, b = cv2.VideoCapture(str(clip)), cv2.VideoCapture(str(out))
    fa, fb = a.read()[1], b.read()[1]
    a.release(), b.release()
    assert np.abs(fa.astype(int) - fb.astype(int)).max() > 100


@needs_shared
@pytest.mark.parametrize("degrees", [90, 180, 270])
def test_phone_video_with_a_rotation_tag_is_read_upright(tmp_path, voc_image, degrees):
    """A phone films sideways and tags the file with the rotation a player applies: frames, sizes, boxes and the
    annotated output are those of the upright video, and the faces are found as in the upright photo."""
    import maskwatch

    upright = np.ascontiguousarray(cv2.imread(str(voc_image))[40 : 40 + H, :W])
    src = phone_video(tmp_path / "phone.mp4", upright, degrees)

    with VideoSource(str(src)) as source:  # the library's reader: upright frames and sizes
        assert (source.width, source.height) == (W, H)
        frame = next(iter(source))
    assert frame.shape == upright.shape
    assert np.abs(frame.astype(int) - upright.astype(int)).mean() < 10  # the codec's loss, not a turned picture
    out, jpath = tmp_path / "out.mp4", tmp_path / "faces.jsonl"
    r = _run_cli("video", str(src), "--out", str(out), "--json", str(jpath), "-q")
    assert r.returncode == 0, r.stderr
    lines = [json.loads(x) for x in jpath.read_text().splitlines() if x.strip()]
    assert [(x["width"], x["height"]) for x in lines] == [(W, H)] * 3
    assert _read_all(out)[1:3] == (W, H)
    expected = maskwatch.detect(upright)
    assert len(expected) >= 2
    got = np.array([f["box"] for f in lines[0]["faces"]], float)
    assert len(got) == len(expected)
    for box in expected.xyxy:  # each face of the upright photo is found where it is, within the codec's loss
        err = np.abs(got - box).max(1).min()
        assert err <= 4, (box, got)


def test_unreadable_video(tmp_path):
    bad = tmp_path / "notes.mp4"
    bad.write_text("not a video at all\n" * 50)
    r = _run_cli("video", str(bad), "--out", str(tmp_path / "o.mp4"), "--face-detector", "haar", "-q")
    assert "Traceback" not in r.stderr
    assert r.returncode != 0
    assert str(bad) in r.stderr
    assert "not a video" in r.stderr
    assert not (tmp_path / "o.mp4").exists()


def test_missing_video(tmp_path):
    with pytest.raises(InputError, match="no such video file"):
        VideoSource(tmp_path / "missing.mp4")


def _cut(clip: Path, keep: float) -> Path:
    """A copy of ``clip`` cut after the first ``keep`` of its bytes (a download or a copy that stopped)."""
    data = clip.read_bytes()
    cut = clip.with_name("cut" + clip.suffix)
    cut.write_bytes(data[: int(len(data) * keep)])
    return cut


@needs_shared
def test_truncated_mp4(tmp_path, voc_image):
    # mp4v/MP4 keeps its index (moov) at the end: cut at 60% the file cannot be opened at all.
    cut = _cut(_make_video(tmp_path / "in.mp4", voc_image, "mp4v"), 0.6)
    r = _run_cli("video", str(cut), "--out", str(tmp_path / "o.mp4"), "-q")
    assert "Traceback" not in r.stderr
    if r.returncode == 0:
        assert "WARNING" in r.stderr and "ended before" in r.stderr
    else:
        assert str(cut) in r.stderr
        assert "not a video" in r.stderr or "corrupt" in r.stderr or "truncated" in r.stderr


@needs_shared
def test_truncated_avi_processes_frames_and_warns(tmp_path, voc_image):
    # AVI/MJPG frames are self-contained: a file cut at 60% still plays its first frames.
    cut = _cut(_make_video(tmp_path / "in.avi", voc_image, "MJPG"), 0.6)
    out, jpath = tmp_path / "o.avi", tmp_path / "o.jsonl"
    r = _run_cli("video", str(cut), "--out", str(out), "--json", str(jpath), "-q")
    assert "Traceback" not in r.stderr
    assert r.returncode == 0, r.stderr
    frames = len(jpath.read_text().splitlines())
    assert 1 <= frames < N
    assert f"{frames} frames" in r.stderr
    assert "WARNING" in r.stderr and "ended before" in r.stderr
    assert abs(_read_all(out)[0] - frames) <= 1


def test_missing_camera_index():
    t = time.monotonic()
    r = _run_cli("watch", "99", "--headless", "--max-frames", "1", "--face-detector", "haar", timeout=60)
    assert time.monotonic() - t < 20
    assert "Traceback" not in r.stderr
    assert r.returncode != 0
    assert "camera 99" in r.stderr
    assert "cannot be opened" in r.stderr


class _SilentServer:
    """A loopback TCP server that accepts connections and never sends a byte."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.conns: list[socket.socket] = []
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(conn)

    def close(self) -> None:
        self.sock.close()
        for c in self.conns:
            c.close()


@pytest.mark.parametrize("scheme", ["rtsp", "http"])
def test_silent_stream_times_out(scheme):
    srv = _SilentServer()
    try:
        url = f"{scheme}://127.0.0.1:{srv.port}/x"
        t = time.monotonic()
        try:
            r = _run_cli("watch", url, "--headless", "--timeout", "2", "--reconnect", "0", "--face-detector", "haar", timeout=60)
        except subprocess.TimeoutExpired:
            pytest.fail(f"`maskwatch watch {url} --timeout 2` hung for 60 s against a silent server")
        took = time.monotonic() - t
    finally:
        srv.close()
    assert srv.conns, "the stream was never even tried (no connection reached the server)"
    assert took < 30, f"took {took:.1f} s with --timeout 2"
    assert "Traceback" not in r.stderr
    assert r.returncode != 0
    assert url in r.stderr
    assert "did not answer" in r.stderr


def test_watch_that_gives_up_says_so_once():
    url = f"http://127.0.0.1:{free_port()}/video"  # refused at once, twice
    r = _run_cli("watch", url, "--headless", "--timeout", "2", "--reconnect", "1", "--face-detector", "haar", timeout=60)
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    assert r.stderr.count("gave up after 1 reconnect attempt(s)") == 1, r.stderr
    assert r.stderr.count("could not be opened") == 2, r.stderr  # the first try, and the error at the end


@needs_shared
def test_json_path_in_missing_folder(clip, tmp_path):
    jpath = tmp_path / "no" / "such" / "folder" / "faces.jsonl"
    r = _run_cli("video", str(clip), "--out", str(tmp_path / "o.mp4"), "--json", str(jpath), "-q")
    assert "Traceback" not in r.stderr, r.stderr[-1500:]
    if r.returncode == 0:  # creating the folder (as --out does) is fine too
        assert len(jpath.read_text().splitlines()) == N
    else:
        assert str(jpath) in r.stderr


# ---------------------------------------------------------------- a camera that reboots
class _MJPEG:
    """A real HTTP MJPEG camera on loopback (multipart/x-mixed-replace, as IP cameras serve it) that can be
    switched off and on again on the same port."""

    def __init__(self, frames: list[np.ndarray], port: int = 0) -> None:
        import http.server
        import socketserver
        import threading

        jpegs = [cv2.imencode(".jpg", f)[1].tobytes() for f in frames]
        halt = threading.Event()

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a):  # noqa: ANN002
                pass

            def do_GET(self):  # noqa: N802
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.end_headers()
                i = 0
                try:
                    while not halt.is_set():
                        j = jpegs[i % len(jpegs)]
                        self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n" % len(j) + j + b"\r\n")
                        i += 1
                        time.sleep(0.03)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
            daemon_threads = True
            allow_reuse_address = True

        self.halt, self.server = halt, Server(("127.0.0.1", port), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/stream.mjpg"

    def off(self) -> None:
        self.halt.set()
        self.server.shutdown()
        self.server.server_close()


@needs_shared
def test_a_camera_that_reboots_is_reconnected_and_each_state_change_reported_once():
    import threading

    from _scene import scene_frames

    cam = _MJPEG(scene_frames(6))
    states: list[tuple[str, str]] = []
    src = VideoSource(cam.url, open_timeout=2, read_timeout=2, reconnect=None, reconnect_wait=0.2, max_wait=0.5,
                      on_state=lambda state, detail: states.append((state, detail)))
    after, rebooted, port = 0, [], cam.port
    for frames, _ in enumerate(src, 1):
        if frames == 15:
            cam.off()  # the camera reboots: 3 s without a server, then back on the same port
            threading.Timer(3.0, lambda: rebooted.append(_MJPEG(scene_frames(6), port))).start()
        if [s for s, _ in states] == ["down", "up"]:
            after += 1
        if after >= 10:
            break
    src.close()
    rebooted[0].off()
    assert [s for s, _ in states] == ["down", "up"], states  # once each, not once per attempt
    assert "until it is back" in states[0][1] and src.outages == 1 and src.stopped is None


@needs_shared
def test_watch_waits_for_a_camera_that_is_down_when_it_starts(tmp_path):
    """After a power cut the server may boot before its IP camera: watch (reconnect forever, the default) keeps
    trying, says so once, and starts watching when the camera answers, instead of exiting with a usage error."""
    from _scene import scene_frames

    port, cams = free_port(), []
    url = f"http://127.0.0.1:{port}/video"
    threading.Timer(3.0, lambda: cams.append(_MJPEG(scene_frames(6), port))).start()
    try:
        r = _run_cli("watch", url, "--headless", "--json", "--max-frames", "5", "--timeout", "2", "--events", "",
                     "--det-size", "320", timeout=90)
    finally:
        time.sleep(0.1)
        for c in cams:
            c.off()
    assert r.returncode == 0, r.stderr
    assert len(r.stdout.splitlines()) == 5
    assert r.stderr.count("could not be opened") == 1 and "retrying until it answers" in r.stderr, r.stderr
    assert "first frames after" in r.stderr and "Traceback" not in r.stderr


@needs_shared
def test_watch_keeps_a_streams_password_and_token_out_of_its_json_events_and_messages(tmp_path):
    """The camera's default name and the JSON records' source are the URL without user, password and query: they
    go into the event log, the webhook's payloads and stdout, where a password has no business."""
    import sqlite3

    from _scene import scene_frames

    cam = _MJPEG(scene_frames(6))
    url = cam.url.replace("http://", "http://admin:s3cret@") + "?token=t0k3n"
    db = tmp_path / "ev.db"
    try:
        r = _run_cli("watch", url, "--headless", "--json", "--max-frames", "5", "--timeout", "5", "--events", str(db),
                     "--det-size", "320", "--confirm-frames", "1", timeout=90)
    finally:
        cam.off()
    assert r.returncode == 0, r.stderr
    recs = [json.loads(line) for line in r.stdout.splitlines()]
    assert len(recs) == 5 and {x["source"] for x in recs} == {cam.url}
    for secret in ("s3cret", "t0k3n", "admin"):
        assert secret not in r.stdout and secret not in r.stderr
    with sqlite3.connect(db) as conn:
        cams = {c for (c,) in conn.execute("SELECT DISTINCT camera FROM events")}
    assert cams <= {cam.url}  # (no event at all if nobody bare was confirmed)


def test_a_stream_that_never_answers_gives_up_after_its_attempts_with_the_reason():
    url = f"http://127.0.0.1:{free_port()}/video"  # nothing listens: refused at once
    states: list[tuple[str, str]] = []
    src = VideoSource(url, open_timeout=2, reconnect=2, reconnect_wait=0.05, wait_to_open=True,
                      on_state=lambda state, detail: states.append((state, detail)))
    assert (src.width, src.height) == (0, 0) and list(src) == []
    assert [s for s, _ in states] == ["down", "gave up"]
    assert "could not be opened" in states[0][1] and "up to 2 times" in states[0][1]
    assert src.stopped.startswith(f"{url}: could not be opened") and src.stopped.endswith("gave up after 2 reconnect attempt(s)")
    for kw in ({"reconnect": 0, "wait_to_open": True}, {"reconnect": 2}):  # an error at once (video, explain, serve)
        with pytest.raises(InputError, match="could not be opened"):
            VideoSource(url, open_timeout=2, **kw)


@needs_shared
def test_watch_ends_cleanly_on_sigterm_with_its_summary(tmp_path):
    """systemd stops a service with SIGTERM: watch flushes its events, prints its summary and exits 0."""
    import signal
    import subprocess
    import sys

    from _scene import scene_frames

    cam = _MJPEG(scene_frames(10))
    proc = subprocess.Popen([sys.executable, "-m", "maskwatch.cli", "watch", cam.url, "--headless", "--json",
                             "--events", str(tmp_path / "ev.db"), "--det-size", "320"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first = proc.stdout.readline()  # a frame was processed
        assert first.startswith("{"), proc.stderr.read()
        rec = json.loads(first)  # the same record as detect and video --json: sizes, frame index, Unix time for a stream
        assert list(rec) == ["source", "width", "height", "frame", "time", "faces"]
        assert (rec["width"], rec["height"]) == (640, 480) and rec["frame"] == 0 and rec["time"] > 1.7e9
        time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=20)
    finally:
        proc.kill()
        cam.off()
    assert proc.returncode == 0, err
    assert "frames at" in err and "Traceback" not in err
    assert (tmp_path / "ev.db").exists()


def test_watch_ends_cleanly_on_sigterm_that_comes_while_it_starts(tmp_path):
    """A SIGTERM while the models load or the stream is still being opened (a camera that accepts the connection
    and says nothing for --timeout seconds) ends watch as one later does: summary, exit 0 (it was killed by the signal)."""
    import signal
    import socket
    import subprocess
    import sys

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(4)  # accepts, never answers
    url = f"http://127.0.0.1:{silent.getsockname()[1]}/video"
    proc = subprocess.Popen([sys.executable, "-m", "maskwatch.cli", "watch", url, "--headless", "--timeout", "6",
                             "--events", str(tmp_path / "ev.db")], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(2.5)  # importing, loading the models or opening the stream: before any frame
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
        silent.close()
    assert proc.returncode == 0, (proc.returncode, err)
    assert "0 frames at" in err and "Traceback" not in err


# ---------------------------------------------------------------- outputs a browser plays
@pytest.mark.parametrize("name, codec", [("out.webm", "vp9"), ("out.mp4", "h264"), ("odd.mp4", "h264"), ("out.avi", "mjpeg"),
                                         ("out.mkv", "h264"), ("out.mov", "h264")])
def test_video_sink_writes_a_codec_browsers_play(tmp_path, name, codec):
    from maskwatch.video import VideoSink

    if codec == "h264":
        pytest.importorskip("av")
    w, h = (321, 241) if name.startswith("odd") else (320, 240)
    frames = [np.full((h, w, 3), 20 * i, np.uint8) for i in range(10)]
    with VideoSink(tmp_path / name, w, h, 10.0) as sink:
        for f in frames:
            sink.write(f)
    assert sink.codec == codec and sink.warning is None
    cap = cv2.VideoCapture(str(tmp_path / name))
    got = []
    while True:
        ok, f = cap.read()
        if not ok:
            break
        got.append(f)
    cap.release()
    assert len(got) == 10
    assert abs(int(got[5][: h - 1, : w - 1].mean()) - 100) <= 6  # the frames' content survived the encoding


def test_mp4_without_pyav_falls_back_with_a_clear_message(tmp_path, monkeypatch):
    import builtins

    from maskwatch.video import VideoSink

    real = builtins.__import__
    monkeypatch.setattr(builtins, "__import__", lambda n, *a, **k: (_ for _ in ()).throw(ImportError(n)) if n == "av" else real(n, *a, **k))
    with VideoSink(tmp_path / "x.mp4", 64, 48, 10.0) as sink:
        sink.write(np.zeros((48, 64, 3), np.uint8))
    assert sink.codec == "mpeg4" and "browsers do not play" in sink.warning and ".webm" in sink.warning
    assert "pip install av" in sink.warning


def test_a_video_name_it_cannot_write_is_refused_before_any_file_is_made(tmp_path):
    from maskwatch.video import VideoSink

    with pytest.raises(InputError, match=r"x\.gif: cannot write a video with this name; use \.webm"):
        VideoSink(tmp_path / "new" / "x.gif", 64, 48, 10.0)
    assert not (tmp_path / "new").exists()


@needs_shared
@pytest.mark.parametrize("fps", [0.5, 300.0])
def test_time_lapse_and_slow_motion_keep_their_frame_rate(tmp_path, voc_image, fps):
    """A CCTV time-lapse export (one frame every 2 s) and a slow-motion clip: the output plays at the input's
    rate and the JSON times are seconds into the file, not a made-up 25 frames/s."""
    img = np.ascontiguousarray(cv2.imread(str(voc_image))[:H, :W])
    src = tmp_path / "in.avi"
    writer = cv2.VideoWriter(str(src), cv2.VideoWriter_fourcc(*"MJPG"), fps, (W, H))
    for _ in range(4):
        writer.write(img)
    writer.release()
    out, jpath = tmp_path / "out.avi", tmp_path / "f.jsonl"
    r = _run_cli("video", str(src), "--out", str(out), "--json", str(jpath), "-q", "--det-size", "320")
    assert r.returncode == 0, r.stderr
    assert [json.loads(x)["time"] for x in jpath.read_text().splitlines()] == [round(i / fps, 3) for i in range(4)]
    assert _read_all(out)[3] == pytest.approx(fps, rel=1e-3)
    assert "frame rate" not in r.stderr


def test_webm_output_prints_no_opencv_tag_warning(tmp_path):
    """OpenCV complains on the C stderr that WebM has no 'VP90' tag, then writes VP9 anyway: the user sees nothing."""
    import subprocess
    import sys

    code = ("import numpy as np; from maskwatch.video import VideoSink\n"
            f"s = VideoSink({str(tmp_path / 'x.webm')!r}, 64, 48, 10.0)\n"
            "s.write(np.zeros((48, 64, 3), np.uint8)); s.close(); print(s.codec)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.strip() == "vp9"
    assert "not supported" not in r.stderr and r.stderr.strip() == "", r.stderr


def test_video_sink_converts_grey_and_bgra_frames_and_refuses_what_it_cannot_write(tmp_path):
    """Grey frames were skipped by OpenCV with only its own log line (a video of 0 frames); a float frame raised
    cv2.error, None an AttributeError, fps 0 'cannot write a video here'."""
    from maskwatch.video import VideoSink

    out = tmp_path / "grey.avi"
    with VideoSink(out, 64, 48, 10.0) as sink:
        for i in range(4):
            sink.write(np.full((48, 64), 60 * i, np.uint8))
        sink.write(np.full((48, 64, 4), 200, np.uint8))  # BGRA
    assert _read_all(out)[0] == 5
    with VideoSink(tmp_path / "f.avi", 64, 48, 10.0) as sink:
        for bad, message in ((np.full((48, 64, 3), 200.0, np.float32), "values 0..1"), (None, "got NoneType")):
            with pytest.raises(InputError, match=message):
                sink.write(bad)
    for size, fps in (((64, 48), 0.0), ((64, 48), None), ((64.0, 48), 25.0), ((0, 48), 25.0)):
        with pytest.raises(InputError, match="cannot write a .* video at .* frames/s"):
            VideoSink(tmp_path / "z.avi", *size, fps)


def test_a_file_that_is_no_video_is_blamed_on_the_input_not_the_output(tmp_path):
    bad = tmp_path / "g.jpg"
    bad.write_bytes(b"GARBAGEGARBAGE")
    r = _run_cli("video", str(bad), "--out", str(tmp_path / "o.webm"), "-q", "--face-detector", "haar")
    assert r.returncode == 2 and f"{bad}: not a video OpenCV can read" in r.stderr, r.stderr


# ---------------------------------------------------------------- why a stream cannot be opened
class _Answers:
    """A loopback HTTP server that answers every request with one status (404: a typo in the path), on a given port."""

    def __init__(self, status: int, port: int = 0) -> None:
        import http.server
        import socketserver

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a):  # noqa: ANN002
                pass

            def do_GET(self):  # noqa: N802
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

        class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
            daemon_threads = True
            allow_reuse_address = True

        self.server = Server(("127.0.0.1", port), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def off(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _watch_until(url: str, said: str, timeout: float = 60) -> tuple[int, str]:
    """`maskwatch watch URL` (reconnect forever, the default) until stderr says ``said``; then SIGTERM, as systemd
    stops it: (exit code: 0, or -15 where the signal came before watch's handler was set; all of stderr)."""
    import signal

    proc = subprocess.Popen([sys.executable, "-m", "maskwatch.cli", "watch", url, "--headless", "--timeout", "2",
                             "--events", "", "--face-detector", "haar"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, cwd=ROOT)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stderr.readline, "")), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + timeout
        while not any(said in x for x in lines) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)
    finally:
        proc.kill()
    reader.join(5)
    return proc.returncode, "".join(lines)


def test_watch_says_a_stream_answers_404_with_a_hint_and_never_the_credentials():
    """A typo in the path of a systemd unit's URL: the camera's server answers 404 for ever. watch keeps retrying (a
    camera's web server may answer 404 while it boots) but says why, with what to check; the user name, password and
    query (a token) of the URL are in no line."""
    cam = _Answers(404)
    try:
        rc, err = _watch_until(f"http://admin:pw123@127.0.0.1:{cam.port}/typo.mjpg?key=k456", "could not be opened")
    finally:
        cam.off()
    assert rc in (0, -15) and "Traceback" not in err, err
    assert (f"http://127.0.0.1:{cam.port}/typo.mjpg: could not be opened (HTTP 404 Not Found: check the path in the URL); "
            "retrying until it answers") in err, err
    assert not {"admin", "pw123", "k456"} & set(re.split(r"\W+", err)), err


def test_watch_says_a_closed_port_refuses_the_connection():
    port = free_port()
    rc, err = _watch_until(f"rtsp://127.0.0.1:{port}/live", "could not be opened")
    assert rc in (0, -15) and "Traceback" not in err, err
    assert (f"rtsp://127.0.0.1:{port}/live: could not be opened (connection refused: nothing listens on port {port} of "
            "127.0.0.1; is the camera on, and is the port right?); retrying until it answers") in err, err


def test_why_a_stream_cannot_be_opened_is_said_again_once_when_it_turns_into_one_waiting_may_not_cure(monkeypatch):
    """Refused (the camera is off) and then HTTP 404 (its web server is up, the path is wrong): the 404 is said once
    more, however many attempts meet it; back to refused (it reboots) is not news. Without PyAV: no reason, as before."""
    port = free_port()
    url = f"http://camuser9:secret1@127.0.0.1:{port}/typo"
    states: list[tuple[str, str]] = []
    src = VideoSource(url, open_timeout=2, reconnect=None, reconnect_wait=0.02, max_wait=0.05, wait_to_open=True,
                      on_state=lambda state, detail: states.append((state, detail)))
    attempts = []
    real_open = src._open
    monkeypatch.setattr(src, "_open", lambda: attempts.append(1) or real_open())
    runner = threading.Thread(target=lambda: list(src), daemon=True)
    runner.start()
    cam = None
    try:
        assert wait_for(lambda: len(attempts) >= 3)  # refused a few times: said once, at the start
        cam = _Answers(404, port)
        assert wait_for(lambda: len(states) >= 2)
        n = len(attempts)
        assert wait_for(lambda: len(attempts) >= n + 5)  # 404 a few more times
        cam.off()
        cam = None
        n = len(attempts)
        assert wait_for(lambda: len(attempts) >= n + 3)  # refused again
    finally:
        src.stop()
        runner.join(10)
        if cam:
            cam.off()
    assert [s for s, _ in states] == ["down", "down"], states
    assert states[0][1] == (f"http://127.0.0.1:{port}/typo: could not be opened (connection refused: nothing listens on port "
                            f"{port} of 127.0.0.1; is the camera on, and is the port right?); retrying until it answers")
    assert states[1][1] == (f"http://127.0.0.1:{port}/typo: could not be opened (HTTP 404 Not Found: check the path in the "
                            "URL); still retrying until it answers")
    assert not {"camuser9", "secret1"} & set(re.split(r"\W+", str(states))), states
    monkeypatch.setitem(sys.modules, "av", None)  # PyAV not installed: the reason is not known, the message as before
    with pytest.raises(InputError, match=r"could not be opened after \d+\.\d s \(connection refused, no such stream, or not a video\)"):
        VideoSource(url, open_timeout=2)


def test_a_misspelt_protocol_is_named_and_its_credentials_are_not():
    with pytest.raises(InputError) as e:
        VideoSource("htp://admin:pw123@cam.local/live")
    assert str(e.value) == ("htp://cam.local/live: no such video file, and 'htp' is not a stream protocol maskwatch opens "
                            "(rtsp, rtsps, http, https, rtmp, udp, tcp); check the start of the URL")
