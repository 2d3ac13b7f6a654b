"""The server's guard: Host and Origin checks (DNS rebinding, CSRF), security headers, what /healthz tells a
stranger, odd headers, tokens that are no secret."""

from __future__ import annotations

import socket

import pytest
from conftest import needs_shared
from test_server import Running, _assert_error, _multipart

from maskwatch import InputError

pytest.importorskip("fastapi")


@pytest.fixture(scope="module")
def open_srv():
    """No token (so loopback only), no camera."""
    from maskwatch.server import ServerSettings, create_app

    srv = Running(create_app(ServerSettings(events="", demo=False, allowed_hosts=("cams.clinic.example:443",))))
    yield srv
    srv.stop()


@needs_shared
def test_a_server_without_token_answers_only_to_its_own_names(open_srv):
    """A page the operator opens may rebind its own name to 127.0.0.1: without a token such a request was answered
    with the cameras, the events and the live frames."""
    port = open_srv.port
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", "cams.clinic.example", "CAMS.clinic.example:443"):
        assert open_srv.json("/v1/cameras", headers={"Host": host})[0] == 200, host
    for host in (f"attacker.example:{port}", f"rebind.attacker.example:{port}", ""):
        doc = _assert_error(*open_srv.get("/v1/cameras", headers={"Host": host}), 400)
        assert "--allowed-host" in doc["error"]
    assert open_srv.get("/", headers={"Host": "attacker.example"})[0] == 400


@needs_shared
def test_a_photo_posted_from_another_sites_page_is_refused(open_srv):
    body, headers = _multipart(b"not an image at all")
    doc = _assert_error(*open_srv.request("POST", "/v1/detect", body=body,
                                          headers={**headers, "Origin": "http://evil.example"}), 403)
    assert "another site" in doc["error"]
    _assert_error(*open_srv.request("POST", "/v1/detect", body=body, headers={**headers, "Origin": "null"}), 403)
    for origin in (f"http://127.0.0.1:{open_srv.port}", None):  # the dashboard itself; curl (no Origin)
        extra = {"Origin": origin} if origin else {}
        status = open_srv.request("POST", "/v1/detect", body=body, headers={**headers, **extra})[0]
        assert status == 415, (origin, status)  # got through to the route, which says it is not an image


@needs_shared
def test_every_answer_carries_the_security_headers(open_srv):
    status, headers, page = open_srv.get("/")
    assert status == 200
    csp = headers["content-security-policy"]
    assert "frame-ancestors 'none'" in csp and "'sha256-" in csp and "'unsafe-inline'" not in csp.split("script-src")[1].split(";")[0]
    for path in ("/", "/docs", "/v1/cameras", "/healthz", "/v1/cameras/nope/frame.jpg"):
        h = open_srv.get(path)[1]
        assert h["x-content-type-options"] == "nosniff" and h["x-frame-options"] == "DENY", path
        assert h["referrer-policy"] == "no-referrer", path
    assert open_srv.get("/v1/cameras")[1]["cache-control"] == "no-store"


def test_the_page_scripts_are_hashed_into_the_policy():
    import base64
    import hashlib
    import re

    from maskwatch.server.middleware import csp_for
    from maskwatch.server.state import STATIC

    page = (STATIC / "index.html").read_text(encoding="utf-8")
    scripts = re.findall(r"<script>(.*?)</script>", page, flags=re.S)
    assert scripts and "<script " not in page  # an inline script with attributes would escape the hashing
    csp = csp_for(page)
    for body in scripts:
        assert base64.b64encode(hashlib.sha256(body.encode()).digest()).decode() in csp


@needs_shared
def test_healthz_tells_a_stranger_only_the_counts(tmp_path):
    """Each camera's reason names its address or file path: only with the token."""
    from maskwatch.server import ServerSettings, create_app

    token = "Zq3xV9sLr2Kd7pWm4Tn8"
    srv = Running(create_app(ServerSettings(token=token, events="", demo=False, open_timeout=1, reconnect_wait=0.2,
                                            cameras=[f"{tmp_path}/private/recordings/x.mp4=hall"])))
    try:
        from conftest import wait_for

        auth = {"Authorization": f"Bearer {token}"}
        wait_for(lambda: srv.json("/healthz", headers=auth)[1]["cameras"]["states"]["hall"]["status"] != "starting",
                 timeout=20)
        status, stranger = srv.json("/healthz")
        assert status == 503 and stranger["status"] == "degraded" and stranger["cameras"]["down"] == 1
        assert "states" not in stranger["cameras"] and "private" not in str(stranger)
        status, known = srv.json("/healthz", headers=auth)
        assert status == 503 and "private" in known["cameras"]["states"]["hall"]["reason"]
    finally:
        srv.stop()


@needs_shared
def test_an_odd_last_event_id_is_ignored_not_a_500(open_srv):
    """str.isdigit() calls '²' a digit and int() refuses it: the event stream answered 500."""
    with socket.create_connection(("127.0.0.1", open_srv.port), timeout=5) as s:
        s.sendall(b"GET /v1/events/stream HTTP/1.1\r\nHost: 127.0.0.1\r\nLast-Event-ID: \xb2\r\n\r\n")
        head = s.recv(4096)
    assert head.startswith(b"HTTP/1.1 200") and b"text/event-stream" in head, head[:200]


@pytest.mark.parametrize("token, needle", [(" " * 16, "blank"), ("abcd efgh ijkl mnop", "spaces"),
                                           ("a" * 16, "different characters"), ("abcdabcdabcdabcd", "different")])
def test_tokens_that_are_no_secret_are_refused_off_loopback(token, needle):
    from maskwatch.server import ServerSettings, create_app

    with pytest.raises(InputError, match=needle):
        create_app(ServerSettings(host="0.0.0.0", token=token, events="", demo=False))


@needs_shared
def test_stalled_uploads_do_not_hold_the_photo_slots():
    """Four connections that announce a 5 MB upload and stop sending held every slot: every photo after them got
    503 until they were closed. Now each stalled one gets 408 after the idle time and frees its slot."""
    import time

    from maskwatch.server import ServerSettings, create_app

    srv = Running(create_app(ServerSettings(events="", demo=False, max_pending=2, upload_idle_s=1.0)))
    stalled = []
    try:
        for _ in range(2):
            s = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
            s.sendall(b"POST /v1/detect HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: multipart/form-data; boundary=b\r\n"
                      b"Content-Length: 5000000\r\n\r\n--b\r\n")
            stalled.append(s)
        time.sleep(0.3)
        body, headers = _multipart(b"not an image")
        assert srv.request("POST", "/v1/detect", body=body, headers=headers)[0] == 503  # both slots taken
        for s in stalled:
            assert s.recv(4096).startswith(b"HTTP/1.1 408")  # after about a second without data
        status = srv.request("POST", "/v1/detect", body=body, headers=headers)[0]
        assert status == 415, status  # a slot again: through to the route
    finally:
        for s in stalled:
            s.close()
        srv.stop()


@needs_shared
@pytest.mark.parametrize("token", ["04942c923d1c8201", "q8Vd+Jk3/LmZ0pR7sT2w=="])
def test_random_hex_and_base64_tokens_are_accepted_off_loopback(token):
    """`openssl rand -hex 8` gives 16 hex characters; a rule of 10 different ones refused a quarter of them."""
    from maskwatch.server import ServerSettings, create_app

    app = create_app(ServerSettings(host="0.0.0.0", token=token, events="", demo=False))  # no InputError
    assert app.state.maskwatch.settings.token == token


@needs_shared
def test_images_and_the_event_stream_take_the_dashboards_cookie_for_any_token():
    """The page percent-encodes the token into its cookie (base64 tokens hold + / =): compared raw, every image and
    the event stream got 401 while the API (header) worked."""
    from maskwatch.server import ServerSettings, create_app

    token = "q8Vd+Jk3/LmZ0pR7sT2w=="
    srv = Running(create_app(ServerSettings(token=token, events="", demo=False)))
    try:
        from urllib.parse import quote

        cookie = {"Cookie": f"maskwatch_token_{srv.port}={quote(token, safe='')}"}
        _assert_error(*srv.get("/v1/cameras/nope/frame.jpg", headers=cookie), 404)  # past the token check
        _assert_error(*srv.get("/v1/cameras/nope/frame.jpg", headers={"Cookie": f"maskwatch_token_{srv.port}=wrong"}), 401)
        assert srv.get("/openapi.json", headers=cookie)[0] == 200
        assert srv.get("/docs")[0] == 200  # the page holds no data; its schema is behind the token
        _assert_error(*srv.get("/openapi.json"), 401)
        with socket.create_connection(("127.0.0.1", srv.port), timeout=5) as s:
            s.sendall(f"GET /v1/events/stream HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: {cookie['Cookie']}\r\n\r\n".encode())
            assert s.recv(4096).startswith(b"HTTP/1.1 200")
    finally:
        srv.stop()


@needs_shared
def test_with_a_token_the_dashboards_upload_through_a_proxy_is_not_called_cross_site():
    """nginx's default proxy_pass sends Host 127.0.0.1:PORT while the browser's Origin is the public name: with a
    token there is nothing to forge (a POST needs the Authorization header), so Origin is not checked."""
    from maskwatch.server import ServerSettings, create_app

    token = "Zq3xV9sLr2Kd7pWm4Tn8"
    srv = Running(create_app(ServerSettings(token=token, events="", demo=False)))
    try:
        body, headers = _multipart(b"not an image at all")
        status = srv.request("POST", "/v1/detect", body=body, headers={**headers, "Origin": "https://cams.example.org",
                                                                     "Authorization": f"Bearer {token}"})[0]
        assert status == 415, status
    finally:
        srv.stop()
