"""The web dashboard and HTTP API, against the real server: uvicorn in a background thread on a free loopback port,
spoken to over HTTP with http.client. Cameras: the demo (real photos from ../shared), a short clip that is deleted
while it plays, and a URL on a closed port."""

from __future__ import annotations

import http.client
import json
import re
import socket
import sys
import threading
import time
import uuid
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import SHARED, needs_shared, wait_for

from maskwatch import InputError

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")


class Running:
    """A served app: ``get``/``post`` return (status, headers, body); ``stop`` shuts uvicorn down."""

    def __init__(self, app) -> None:
        from maskwatch.server import bind, make_server

        sock = bind("127.0.0.1", 0)
        self.port = sock.getsockname()[1]
        self.server = make_server(app)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [sock]}, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            assert self.thread.is_alive() and time.monotonic() < deadline, "the server did not start"
            time.sleep(0.02)

    def request(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None,
                timeout: float = 10) -> tuple[int, dict, bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            r = conn.getresponse()
            return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
        finally:
            conn.close()

    def get(self, path: str, **kw) -> tuple[int, dict, bytes]:
        return self.request("GET", path, **kw)

    def json(self, path: str, **kw) -> tuple[int, dict]:
        status, headers, body = self.get(path, **kw)
        assert headers["content-type"].startswith("application/json"), (path, headers)
        return status, json.loads(body)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(15)
        assert not self.thread.is_alive(), "the server did not stop"


def _multipart(data: bytes, filename: str = "photo.jpg", field: str = "file", ctype: str = "image/jpeg") -> tuple[bytes, dict]:
    b = uuid.uuid4().hex
    body = (f'--{b}\r\nContent-Disposition: form-data; name="{field}"; filename="{filename}"\r\n'
            f"Content-Type: {ctype}\r\n\r\n").encode() + data + f"\r\n--{b}--\r\n".encode()
    return body, {"Content-Type": f"multipart/form-data; boundary={b}"}


def _cameras(srv: Running) -> dict[str, dict]:
    status, body = srv.json("/v1/cameras")
    assert status == 200
    return {c["id"]: c for c in body["cameras"]}


def _assert_error(status: int, headers: dict, body: bytes, expected: int | tuple[int, ...]) -> dict:
    assert status in ((expected,) if isinstance(expected, int) else expected), (status, body[:300])
    assert headers["content-type"].startswith("application/json")
    doc = json.loads(body)
    assert set(doc) == {"error", "detail"} and isinstance(doc["error"], str) and doc["error"]
    return doc


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    """One server for the module: demo camera (480x360), 'door' (a 6-frame clip) and 'yard' (a closed port)."""
    if not (SHARED / "models" / "face_detection_yunet.onnx").is_file():
        pytest.skip(f"models not found in {SHARED}")
    from _scene import scene_frames, write_video

    from maskwatch.server import ServerSettings, create_app

    tmp = tmp_path_factory.mktemp("server")
    clip = write_video(tmp / "door.mp4", [f[::2, ::2] for f in scene_frames(6)], fps=10)
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    settings = ServerSettings(events=str(tmp / "events.db"), demo=True, demo_size=(480, 360), shared=str(SHARED),
                              cameras=[f"{clip}=door", f"http://admin:pw123@127.0.0.1:{closed}/live.mjpg?key=k456=yard"],
                              detector={"det_size": 320}, open_timeout=2, reconnect_wait=0.2, max_retries=1)
    app = create_app(settings)
    running = Running(app)
    running.clip = clip
    running.events_db = tmp / "events.db"
    yield running
    running.stop()


@pytest.fixture(scope="module")
def stored(srv):
    """Five events of camera 'test-cam' written to the server's event log by another connection, 20 s apart."""
    from maskwatch.events import Event, EventLog

    now = time.time()
    labels = ["without_mask", "without_mask", "mask_incorrect", "without_mask", "mask_incorrect"]
    events = [Event(time=now - 100 + 20 * i, camera="test-cam", track_id=i, label=lab, confidence=0.9, box=[1, 2, 30, 40])
              for i, lab in enumerate(labels)]
    with EventLog(srv.events_db) as log:
        for e in events:
            log.add(e)
    return events


# ------------------------------------------------------------------------------------------------ health, cameras


@needs_shared
def test_healthz_and_openapi(srv):
    # the yard camera is a stream that never answers: the server is up, but degraded (503, for a load balancer)
    wait_for(lambda: _cameras(srv)["yard"]["status"] != "starting")
    status, body = srv.json("/healthz")
    assert status == 503 and body["status"] == "degraded"
    assert body["cameras"]["total"] == 3 and body["cameras"]["up"] + body["cameras"]["down"] <= 3
    assert body["cameras"]["states"]["yard"]["status"] in ("reconnecting", "down") and body["cameras"]["states"]["yard"]["reason"]
    status, schema = srv.json("/openapi.json")
    assert status == 200
    for path in ("/v1/detect", "/v1/cameras", "/v1/cameras/{camera_id}/stream.mjpg", "/v1/cameras/{camera_id}/frame.jpg",
                 "/v1/events", "/v1/events/stream", "/v1/stats", "/healthz"):
        assert path in schema["paths"], path
    status, headers, page = srv.get("/")
    assert status == 200 and headers["content-type"].startswith("text/html")
    for needle in (b'id="cameras"', b'id="events"', b'id="chart"', b'id="upload"', b'id="upload-file"',
                   b'id="upload-result"', b'name="viewport"'):
        assert needle in page, needle
    assert b"://cdn" not in page and b"<script src" not in page  # self-contained


@needs_shared
def test_demo_camera_streams_and_its_frame_changes(srv):
    cams = wait_for(lambda: (c := _cameras(srv))["demo"]["status"] == "ok" and c["demo"]["frames"] > 3 and c)
    assert cams, _cameras(srv)
    demo = cams["demo"]
    assert demo["kind"] == "demo" and demo["name"] == "demo" and demo["fps"] > 0
    assert set(demo["counts"]) == {"with_mask", "without_mask", "mask_incorrect", "uncertain"} and set(demo["seen"]) == set(demo["counts"])
    assert demo["stream"] == "/v1/cameras/demo/stream.mjpg" and demo["frame"] == "/v1/cameras/demo/frame.jpg"
    frames = []
    for _ in range(2):
        status, headers, jpeg = srv.get("/v1/cameras/demo/frame.jpg")
        assert status == 200 and headers["content-type"] == "image/jpeg" and jpeg[:2] == b"\xff\xd8"
        frames.append(jpeg)
        time.sleep(0.5)
    assert frames[0] != frames[1]
    assert _assert_error(*srv.get("/v1/cameras/nope/frame.jpg"), 404)["detail"]["cameras"] == ["demo", "door", "yard"]


@needs_shared
def test_mjpeg_stream_yields_jpeg_parts(srv):
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)
    try:
        conn.request("GET", "/v1/cameras/demo/stream.mjpg")
        r = conn.getresponse()
        assert r.status == 200 and r.getheader("content-type") == "multipart/x-mixed-replace; boundary=frame"
        parts = []
        while len(parts) < 2:
            assert r.readline() == b"--frame\r\n"
            head = {}
            while (line := r.readline()) != b"\r\n":
                k, v = line.decode().split(":", 1)
                head[k.strip().lower()] = v.strip()
            assert head["content-type"] == "image/jpeg"
            jpeg = r.read(int(head["content-length"]))
            assert r.read(2) == b"\r\n"
            assert jpeg[:2] == b"\xff\xd8" and jpeg[-2:] == b"\xff\xd9"
            parts.append(jpeg)
        assert parts[0] != parts[1]
    finally:
        conn.close()


@needs_shared
def test_a_camera_that_goes_away_is_reported_while_the_demo_keeps_streaming(srv):
    door = wait_for(lambda: _cameras(srv)["door"]["status"] == "ok")
    assert door, _cameras(srv)["door"]
    srv.clip.unlink()  # the file disappears: the next loop cannot open it
    cams = wait_for(lambda: (c := _cameras(srv))["door"]["status"] in ("reconnecting", "down") and c)
    assert cams, _cameras(srv)["door"]
    assert "no such video file" in cams["door"]["reason"] and cams["door"]["fps"] == 0
    yard = wait_for(lambda: (c := _cameras(srv))["yard"]["status"] in ("reconnecting", "down") and c["yard"])
    assert yard and yard["reason"] and yard["kind"] == "http" and yard["source"].startswith("http://127.0.0.1:")
    assert "/live.mjpg" in yard["reason"] and not {"admin", "pw123", "k456"} & set(re.split(r"\W+", json.dumps(yard)))
    first = srv.get("/v1/cameras/demo/frame.jpg")[2]
    assert wait_for(lambda: srv.get("/v1/cameras/demo/frame.jpg")[2] != first, timeout=5)
    assert _cameras(srv)["demo"]["status"] == "ok"
    status, health = srv.json("/healthz")
    assert status == 503 and health["status"] == "degraded"
    assert health["cameras"]["up"] >= 1 and health["cameras"]["down"] >= 2


# ----------------------------------------------------------------------------------------------------- photos


@needs_shared
def test_detect_answers_what_the_cli_prints(srv, voc_image, capsys):
    from maskwatch.cli import main

    assert main(["detect", str(voc_image), "--quiet"]) == 0
    cli = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    body, headers = _multipart(voc_image.read_bytes(), filename=voc_image.name)
    status, h, answer = srv.request("POST", "/v1/detect", body=body, headers=headers)
    assert status == 200 and h["content-type"] == "application/json", answer[:300]
    got = json.loads(answer)
    assert list(got) == ["source", "width", "height", "faces"] == list(cli)
    assert got["source"] == voc_image.name == Path(cli["source"]).name
    assert (got["width"], got["height"]) == (cli["width"], cli["height"]) == (512, 366)
    assert got["faces"] == cli["faces"] and len(got["faces"]) >= 3
    assert all(set(f) == {"box", "face_score", "label", "confidence", "probs"} for f in got["faces"])

    status, h, jpeg = srv.request("POST", "/v1/detect?annotated=1", body=body, headers=headers)
    assert status == 200 and h["content-type"] == "image/jpeg" and jpeg[:2] == b"\xff\xd8"
    import cv2
    import numpy as np

    assert cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR).shape == (366, 512, 3)


@needs_shared
def test_an_iphone_heic_upload_is_read_as_the_cli_reads_it(srv, voc_image, tmp_path, capsys):
    """A phone's HEIC photo (with the heic extra) is not refused as 'not an image': the same faces as `detect`."""
    from test_images import _heic

    from maskwatch.cli import main
    from maskwatch.images import load_image

    f = tmp_path / "IMG_0003.HEIC"
    f.write_bytes(_heic(load_image(voc_image)[:, :, ::-1].copy()))
    assert main(["detect", str(f), "--quiet"]) == 0
    cli = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    body, headers = _multipart(f.read_bytes(), filename=f.name, ctype="image/heic")
    status, _, answer = srv.request("POST", "/v1/detect", body=body, headers=headers)
    assert status == 200, answer[:300]
    got = json.loads(answer)
    assert (got["width"], got["height"]) == (cli["width"], cli["height"]) == (512, 366)
    assert got["faces"] == cli["faces"] and len(got["faces"]) >= 3


@needs_shared
def test_upload_that_is_not_an_image(srv):
    body, headers = _multipart(b"hello, I am a text file\n", filename="notes.txt", ctype="text/plain")
    doc = _assert_error(*srv.request("POST", "/v1/detect", body=body, headers=headers), (415, 422))
    assert "not an image" in doc["error"]
    doc = _assert_error(*srv.request("POST", "/v1/detect", body=b'{"image": 1}', headers={"Content-Type": "application/json"}),
                        (415, 422))
    assert "multipart/form-data" in doc["error"]
    body, headers = _multipart(b"\xff\xd8\xff\xe0", field="photo")  # the wrong field name
    assert "'file'" in _assert_error(*srv.request("POST", "/v1/detect", body=body, headers=headers), 422)["error"]
    body, headers = _multipart(b"\xff\xd8\xff\xe0 not really a jpeg \xff\xd9")
    _assert_error(*srv.request("POST", "/v1/detect", body=body, headers=headers), 422)


@needs_shared
def test_upload_over_the_limit_gets_413_and_the_server_keeps_answering(srv):
    body, headers = _multipart(b"\xff\xd8" + bytes(50 * 1024 * 1024))
    doc = _assert_error(*srv.request("POST", "/v1/detect", body=body, headers=headers, timeout=30), 413)
    assert "10 MB" in doc["error"] and doc["detail"]["max_bytes"] == 10 * 1024 * 1024
    assert srv.json("/healthz")[0] in (200, 503)


@needs_shared
def test_decompression_bomb_is_refused_before_decoding(srv):
    def chunk(kind: bytes, data: bytes) -> bytes:
        return len(data).to_bytes(4, "big") + kind + data + zlib.crc32(kind + data).to_bytes(4, "big")

    ihdr = (60000).to_bytes(4, "big") * 2 + bytes([8, 2, 0, 0, 0])
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 1000)) + chunk(b"IEND", b"")
    assert len(png) < 200
    body, headers = _multipart(png, filename="bomb.png", ctype="image/png")
    doc = _assert_error(*srv.request("POST", "/v1/detect", body=body, headers=headers), (413, 422))
    assert "60000x60000" in doc["error"]
    assert srv.json("/healthz")[0] in (200, 503)


# ----------------------------------------------------------------------------------------------- events, stats


@needs_shared
def test_events_paging_and_filters(srv, stored):
    status, page = srv.json("/v1/events?camera=test-cam&limit=2")
    assert status == 200 and page["total"] == 5 and page["limit"] == 2 and page["offset"] == 0
    assert [e["track_id"] for e in page["events"]] == [4, 3]  # newest first
    assert all("snapshot" not in e and e["camera"] == "test-cam" for e in page["events"])
    assert [e["track_id"] for e in srv.json("/v1/events?camera=test-cam&limit=2&offset=4")[1]["events"]] == [0]
    assert srv.json("/v1/events?camera=test-cam&label=mask_incorrect")[1]["total"] == 2
    t2 = stored[2].time
    assert srv.json(f"/v1/events?camera=test-cam&since={t2}")[1]["total"] == 3
    iso = stored[2].iso_time
    assert srv.json(f"/v1/events?camera=test-cam&until={iso}")[1]["total"] == 2
    assert srv.json(f"/v1/events?camera=test-cam&since={stored[1].time}&until={stored[3].time}")[1]["total"] == 2
    assert srv.json("/v1/events?limit=500")[0] == 200
    for bad in ("limit=abc", "limit=0", "limit=501", "offset=-1", "since=notadate", "until=2024-13-45", "label=hat"):
        doc = _assert_error(*srv.get(f"/v1/events?{bad}"), 422)
        assert bad.split("=")[0] in doc["error"], doc


@needs_shared
def test_stats_buckets_from_frames_and_events(srv, stored):
    assert wait_for(lambda: _cameras(srv)["demo"]["frames"] > 5)
    status, stats = srv.json("/v1/stats?bucket=60")
    assert status == 200 and stats["bucket"] == 60
    by_cam = {c["camera"]: c for c in stats["cameras"]}
    demo = by_cam["demo"]["buckets"]
    assert demo and sum(b["frames"] for b in demo) > 5 and all(b["start"] % 60 == 0 for b in demo)
    shares = [b["share_masked"] for b in demo if b["share_masked"] is not None]
    assert shares and all(0 <= s <= 1 for s in shares)
    for b in demo:  # the share among the faces it is sure of: grey (uncertain) faces are not counted as bare
        f = b["faces"]
        sure = f.get("with_mask", 0) + f.get("without_mask", 0) + f.get("mask_incorrect", 0)
        assert b["share_masked"] == (round(f.get("with_mask", 0) / sure, 4) if sure else None), b
    assert sum(sum(b["faces"].values()) for b in demo) > 0
    test_cam = by_cam["test-cam"]["buckets"]
    assert sum(b["events_total"] for b in test_cam) == 5 and by_cam["test-cam"]["id"] is None
    assert sum(b["events"]["mask_incorrect"] for b in test_cam) == 2
    _assert_error(*srv.get("/v1/stats?bucket=abc"), 422)
    _assert_error(*srv.get("/v1/stats?since=yesterday"), 422)


@needs_shared
def test_event_stream_is_server_sent_events(srv):
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)
    try:
        conn.request("GET", "/v1/events/stream")
        r = conn.getresponse()
        assert r.status == 200 and r.getheader("content-type").startswith("text/event-stream")
        assert r.readline() == b"retry: 3000\n"
    finally:
        conn.close()


# ------------------------------------------------------------------------------------------------------ security


@needs_shared
def test_token_is_required_on_every_v1_route():
    from maskwatch.server import ServerSettings, create_app

    srv = Running(create_app(ServerSettings(token="s3cret-token", events="", demo=False)))
    try:
        for path in ("/v1/cameras", "/v1/events", "/v1/stats", "/v1/cameras/x/frame.jpg", "/v1/events/stream"):
            doc = _assert_error(*srv.get(path), 401)
            assert "token" in doc["error"]
            assert "wrong" in _assert_error(*srv.get(path, headers={"Authorization": "Bearer nope"}), 401)["error"]
        body, headers = _multipart(b"\xff\xd8")
        _assert_error(*srv.request("POST", "/v1/detect", body=body, headers=headers), 401)
        # Without the token, an upload is refused before its body is read: announce 9 MB, send none of it, and
        # the 401 still comes (a server that read the body first would wait for it and time out).
        conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=5)
        conn.putrequest("POST", "/v1/detect")
        conn.putheader("Content-Type", "multipart/form-data; boundary=x")
        conn.putheader("Content-Length", str(9 * 1024 * 1024))
        conn.putheader("Authorization", "Bearer nope")
        conn.endheaders()
        assert conn.getresponse().status == 401
        conn.close()
        assert srv.json("/v1/cameras", headers={"Authorization": "Bearer s3cret-token"}) == (200, {"cameras": []})
        _assert_error(*srv.get("/v1/cameras/x/frame.jpg?token=s3cret-token"), 404)  # the query token works for images
        _assert_error(*srv.get("/v1/events?token=s3cret-token"), 401)  # ... but not for the JSON API
        _assert_error(*srv.get("/openapi.json"), 401)  # the schema and its page are behind the token
        assert srv.get("/docs")[0] == 200  # the page alone: it holds no data, and reads the schema with the token
        assert srv.json("/openapi.json", headers={"Authorization": "Bearer s3cret-token"})[0] == 200
        status, health = srv.json("/healthz")  # no camera, a working event log: healthy
        assert status == 200 and health["status"] == "ok" and srv.get("/")[0] == 200
    finally:
        srv.stop()


def test_binding_beyond_loopback_needs_a_token(monkeypatch, capsys):
    from maskwatch.cli import main
    from maskwatch.server import ServerSettings, create_app

    monkeypatch.delenv("MASKWATCH_TOKEN", raising=False)
    with pytest.raises(InputError, match="API token"):
        create_app(ServerSettings(host="0.0.0.0"))
    assert main(["serve", "--host", "0.0.0.0", "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert "maskwatch serve: error: binding to 0.0.0.0" in err and "MASKWATCH_TOKEN" in err and "Traceback" not in err
    with pytest.raises(InputError, match="at least 16"):
        create_app(ServerSettings(host="0.0.0.0", token="short-token"))  # 11 characters: guessable
    create_app(ServerSettings(host="127.0.0.1", token="short"))  # on loopback any token will do


@needs_shared
def test_docs_need_no_internet(srv):
    status, headers, page = srv.get("/docs")
    assert status == 200 and headers["content-type"].startswith("text/html")
    assert b"openapi.json" in page and b"<script src" not in page and b"cdn" not in page.lower()
    assert not re.findall(rb"https?://", page)  # every asset is inline: works on a network with no internet


@needs_shared
def test_an_absurd_offset_is_a_422_not_a_500(srv):
    status, body = srv.json("/v1/events?offset=99999999999999999999999")
    assert status == 422 and "offset" in json.dumps(body)


def test_serve_without_the_web_extra_says_what_to_install(monkeypatch, capsys):
    from maskwatch.cli import main

    for name in [m for m in sys.modules if m == "maskwatch.server" or m.startswith("maskwatch.server.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "fastapi", None)  # import fastapi now fails as if it were not installed
    assert main(["serve"]) == 2
    assert "needs the 'web' extra (fastapi is missing): pip install 'maskwatch[web]'" in capsys.readouterr().err


def test_demo_video_without_sample_photos_still_plays(tmp_path):
    from maskwatch.server.demo import NO_PHOTOS, write_demo_video
    from maskwatch.video import VideoSource

    assert write_demo_video(tmp_path / "demo.mp4", (160, 120), fps=12, shared=tmp_path) == NO_PHOTOS
    with VideoSource(str(tmp_path / "demo.mp4")) as src:
        frames = list(src)
    assert len(frames) == 72 and frames[0].shape == (120, 160, 3) and not (frames[0] == frames[36]).all()


def test_camera_specs():
    from maskwatch.server import parse_camera

    assert (parse_camera("0=door").source, parse_camera("0=door").name) == (0, "door")
    assert parse_camera("2").name == "webcam 2" and parse_camera("2").source_kind == "webcam"
    spec = parse_camera("rtsp://admin:pw@cam.local:554/live?auth=abc=yard")
    assert (spec.source, spec.name) == ("rtsp://admin:pw@cam.local:554/live?auth=abc", "yard")
    assert spec.shown == "rtsp://cam.local:554/live" and spec.source_kind == "rtsp"  # no credentials shown
    spec = parse_camera("rtsp://cam.local/live?channel=1")
    assert spec.source == "rtsp://cam.local/live?channel=1" and spec.name == "rtsp://cam.local/live"
    assert parse_camera("/videos/entrance.mp4").name == "entrance.mp4"
    assert parse_camera("/videos/entrance.mp4=Front door").name == "Front door"


def test_times_that_are_not_finite_are_422(srv):
    for path in ("/v1/stats?since=nan", "/v1/events?since=inf", "/v1/events?until=-inf"):
        _assert_error(*srv.get(path), 422)
    assert srv.json("/v1/stats?since=0&until=86400&bucket=3600")[0] == 200  # until=0 would have meant 'now'


@needs_shared
def test_serve_ends_cleanly_on_sigterm(tmp_path):
    """systemd stops the dashboard with SIGTERM: exit code 0, the cameras stopped and a last line, no traceback."""
    import signal
    import subprocess
    import sys
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "maskwatch.cli", "serve", "--port", str(port), "--events",
                             str(tmp_path / "ev.db")], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        def up() -> bool:
            try:
                return urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1).status == 200
            except OSError:
                return False

        assert wait_for(up, timeout=30), proc.stderr.read() if proc.poll() is not None else "no answer"
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=20)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert "server stopped" in err and "Traceback" not in err


@needs_shared
def test_serve_says_on_stderr_when_a_camera_cannot_be_opened(tmp_path):
    """The operator reading the service log (journalctl) sees a camera that is down, once per change of state,
    not only in /healthz."""
    import signal
    import subprocess
    import sys
    import urllib.error
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    missing = tmp_path / "nofile.mp4"
    proc = subprocess.Popen([sys.executable, "-m", "maskwatch.cli", "serve", "--port", str(port), "--events", "",
                             "--camera", f"{missing}=door"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        def degraded() -> bool:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1)
            except urllib.error.HTTPError as e:
                return e.code == 503
            except OSError:
                pass
            return False

        assert wait_for(degraded, timeout=30), proc.stderr.read() if proc.poll() is not None else "no answer"
        time.sleep(2.5)  # a few more failed attempts: still one line
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert err.count(f"maskwatch serve: camera door: reconnecting: {missing}: no such video file") == 1, err


@needs_shared
def test_a_camera_whose_server_answers_404_says_why_with_a_hint_once_in_the_log_and_in_healthz(caplog):
    """The stream is refused (the camera is off), then answered 404 (its web server is up, the path in the URL is
    wrong): the log says each once, with FFmpeg's reason and what to check, however many attempts meet them; /healthz
    carries the reason. The URL's user name, password and query are in neither."""
    import http.server
    import logging
    import socketserver

    from conftest import free_port

    from maskwatch.pipeline import Detector
    from maskwatch.server.cameras import CameraWorker, parse_camera

    class NotFound(http.server.BaseHTTPRequestHandler):
        def log_message(self, *a):  # noqa: ANN002
            pass

        def do_GET(self):  # noqa: N802
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()

    class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
        daemon_threads = True
        allow_reuse_address = True

    port = free_port()
    spec = parse_camera(f"http://admin:pw123@127.0.0.1:{port}/typo.mjpg?key=k456=yard")
    worker = CameraWorker("yard", spec, Detector(det_size=320), open_timeout=2, reconnect_wait=0.02, max_wait=0.05,
                          max_retries=10_000)
    web = None
    with caplog.at_level(logging.WARNING, logger="maskwatch.server"):
        worker.start()
        try:
            assert wait_for(lambda: "refused" in (worker.reason or "")), worker.info()
            web = Server(("127.0.0.1", port), NotFound)
            threading.Thread(target=web.serve_forever, daemon=True).start()
            assert wait_for(lambda: "404" in (worker.reason or "")), worker.info()
            info = worker.info()
            time.sleep(0.5)  # more attempts meet the 404: no more lines
        finally:
            worker.stop()
            if web:
                web.shutdown()
                web.server_close()
    said = [r.getMessage() for r in caplog.records if r.name == "maskwatch.server"]
    shown = f"http://127.0.0.1:{port}/typo.mjpg"
    assert said == [f"camera yard: reconnecting: {shown}: could not be opened (connection refused: nothing listens on port "
                    f"{port} of 127.0.0.1; is the camera on, and is the port right?)",
                    f"camera yard: reconnecting: {shown}: could not be opened (HTTP 404 Not Found: check the path in the URL)"], said
    assert info["status"] == "reconnecting" and info["reason"] == said[1].split("reconnecting: ")[1]
    assert not {"admin", "pw123", "k456"} & set(re.split(r"\W+", json.dumps([said, info])))


@needs_shared
def test_a_large_upload_is_decoded_small_but_answered_in_the_originals_pixels(voc_image, tmp_path):
    """A 35 MP photo is decoded at 1/4 for detection; width, height and boxes are the original's, where the CLI
    finds the faces in the full-size file."""
    from maskwatch.boxes import iou_matrix
    from maskwatch.cli import main
    from maskwatch.server import ServerSettings, create_app

    big = cv2.resize(cv2.imread(str(voc_image)), None, fx=14, fy=14, interpolation=cv2.INTER_CUBIC)  # 7168 x 5124
    path = tmp_path / "big.jpg"
    cv2.imwrite(str(path), big, [cv2.IMWRITE_JPEG_QUALITY, 85])
    running = Running(create_app(ServerSettings(events="", demo=False, max_upload_mb=40)))
    try:
        status, _, body = running.request("POST", "/v1/detect", *_multipart(path.read_bytes()), timeout=60)
    finally:
        running.stop()
    assert status == 200, body
    got = json.loads(body)
    assert (got["width"], got["height"]) == (big.shape[1], big.shape[0])
    assert len(got["faces"]) >= 3
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["detect", str(path), "-q"]) == 0
    want = json.loads(out.getvalue())
    ious = iou_matrix(np.array([f["box"] for f in want["faces"]], np.float32), np.array([f["box"] for f in got["faces"]], np.float32))
    assert (ious.max(1) > 0.7).mean() >= 0.75


@needs_shared
def test_uploads_beyond_the_pending_limit_get_503_with_retry_after(voc_image, tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    from maskwatch.server import ServerSettings, create_app

    big = cv2.resize(cv2.imread(str(voc_image)), None, fx=8, fy=8)
    data = cv2.imencode(".jpg", big, [cv2.IMWRITE_JPEG_QUALITY, 85])[1].tobytes()
    running = Running(create_app(ServerSettings(events="", demo=False, max_upload_mb=40, max_pending=1)))
    try:
        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(lambda _: running.request("POST", "/v1/detect", *_multipart(data), timeout=60), range(8)))
    finally:
        running.stop()
    codes = sorted(a[0] for a in answers)
    assert 200 in codes and 503 in codes and set(codes) <= {200, 503}, codes
    busy = next(a for a in answers if a[0] == 503)
    assert busy[1]["retry-after"] == "1" and "busy" in json.loads(busy[2])["error"]


def test_the_demo_finds_its_photos_wherever_serve_is_started(tmp_path, monkeypatch):
    from maskwatch.server.demo import shared_dir

    monkeypatch.delenv("MASKWATCH_SHARED", raising=False)
    monkeypatch.chdir(tmp_path)  # not the project's folder: ../shared from here is nothing
    if not SHARED.is_dir():
        pytest.skip(f"{SHARED} not found")
    assert shared_dir().resolve() == SHARED.resolve()
    monkeypatch.setenv("MASKWATCH_SHARED", str(tmp_path))
    assert shared_dir() == tmp_path
