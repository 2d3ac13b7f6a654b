"""The dashboard in a real browser: Debian's Chromium driven by Selenium (no browser download). Opens the page
served by `maskwatch serve` on loopback, sees the live image change and an event appear, checks the phone
layout, and saves screenshots under test-output/."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from conftest import ROOT, free_port, needs_shared, wait_for

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
OUT = ROOT / "test-output"

pytestmark = [
    needs_shared,
    pytest.mark.skipif(not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()),
                       reason="Debian's chromium and chromium-driver are not installed (apt-get install chromium chromium-driver)"),
]


@pytest.fixture
def server(tmp_path):
    yield from _serve(tmp_path)


TOKEN = "a-token-of-twenty-chars"


@pytest.fixture
def token_server(tmp_path):
    yield from _serve(tmp_path, "--token", TOKEN)


def _serve(tmp_path, *extra: str):
    port = free_port()
    log = open(tmp_path / "server.log", "w")  # noqa: SIM115  (closed in the finally below, after the server ends)
    proc = subprocess.Popen([sys.executable, "-m", "maskwatch.cli", "serve", "--port", str(port), "--events", str(tmp_path / "ev.db"), *extra],
                            stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path, env={**os.environ, "MASKWATCH_SHARED": str(ROOT.parent / "shared")})
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(120):
            try:
                with urllib.request.urlopen(url + "/healthz", timeout=1) as r:
                    if json.load(r).get("status"):
                        break
            except OSError:
                time.sleep(0.25)
        else:
            pytest.fail("the server did not start: " + (tmp_path / "server.log").read_text()[-2000:])
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.fixture
def browser(tmp_path):
    os.environ["SE_OFFLINE"] = "true"  # Selenium Manager must not try to download a browser or driver
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", f"--user-data-dir={tmp_path / 'chrome'}"):
        opts.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    driver.set_window_size(1280, 900)
    yield driver
    driver.quit()


def _wait(predicate, timeout: float, what: str):
    value = wait_for(predicate, timeout, step=0.25)
    if not value:
        pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")
    return value


def test_dashboard_live_image_events_and_phone_layout(server, browser):
    from selenium.webdriver.common.by import By

    OUT.mkdir(exist_ok=True)
    browser.get(server + "/")
    img = _wait(lambda: browser.find_elements(By.CSS_SELECTOR, "#cameras .camera img.stream"), 30, "a camera stream on the page")[0]
    _wait(lambda: browser.execute_script("return arguments[0].complete && arguments[0].naturalWidth > 0", img), 30,
          "the stream image to load")
    first = img.screenshot_as_png
    changed = _wait(lambda: img.screenshot_as_png != first, 20, "the live image to change")
    assert changed
    fps = browser.find_element(By.CSS_SELECTOR, "#cameras .camera .fps").text
    assert any(ch.isdigit() for ch in fps), fps
    event = _wait(lambda: browser.find_elements(By.CSS_SELECTOR, "#events .event"), 60, "an event in the events panel")[0]
    assert "without_mask" in event.text or "no mask" in event.text.lower(), event.text
    assert browser.find_elements(By.CSS_SELECTOR, "#chart") and browser.find_elements(By.CSS_SELECTOR, "#upload-file")
    chips = browser.execute_script("return [...document.querySelectorAll('#cameras .chip')].map("
                                   "c => [c.textContent, getComputedStyle(c).backgroundColor])")
    assert any(text.startswith("Not sure") for text, _ in chips), chips  # the grey faces are counted in view too
    assert all(bg not in ("rgba(0, 0, 0, 0)", "transparent") for _, bg in chips), chips  # "uncertain" was white on white
    _wait(lambda: browser.find_elements(By.CSS_SELECTOR, "#chart svg text"), 30, "the chart")
    sizes = browser.execute_script("return [...document.querySelectorAll('#chart svg text')].map(t => t.getBoundingClientRect().height)")
    assert min(sizes) >= 9, sizes  # the axis labels were about 7 px tall
    browser.save_screenshot(str(OUT / "dashboard.png"))
    browser.set_window_size(390, 844)  # a phone
    time.sleep(1.0)
    overflow = browser.execute_script("return document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 1, f"the page is {overflow} px wider than a phone screen"
    browser.save_screenshot(str(OUT / "dashboard-phone.png"))


def test_dashboard_without_its_token_says_so_instead_of_showing_an_empty_site(token_server, browser):
    """Opened without the token (or with a wrong one), the page said "No event yet" over a log of events and showed
    nothing where the cameras are; now each panel says the token is needed, and a refused token is named."""
    from selenium.webdriver.common.by import By

    browser.get(token_server + "/")
    _wait(lambda: browser.find_element(By.ID, "token-box").is_displayed(), 30, "the token box")
    _wait(lambda: "once the API token is given" in browser.find_element(By.ID, "events").text, 30, "the events panel's note")
    assert "once the API token is given" in browser.find_element(By.ID, "cameras").text
    assert "No event yet" not in browser.find_element(By.ID, "events").text
    assert "refused" not in browser.find_element(By.ID, "token-box").text
    browser.get(token_server + "/?token=wrong-token-of-twenty-chars")
    _wait(lambda: "was refused" in browser.find_element(By.ID, "token-box").text, 30, "the refused-token message")
    browser.get(token_server + f"/?token={TOKEN}")
    _wait(lambda: browser.find_elements(By.CSS_SELECTOR, "#cameras .camera img.stream"), 30, "the camera with the right token")
    assert not browser.find_element(By.ID, "token-box").is_displayed()
    # Given in the form, the token is in no address: not the page's (history), not the images' (which use the
    # site's cookie), and the live frames still load.
    browser.execute_script("sessionStorage.clear(); for (const c of document.cookie.split('; ')) "
                           "document.cookie = c.split('=')[0] + '=; Path=/; Max-Age=0';")
    browser.get(token_server + "/")
    _wait(lambda: browser.find_element(By.ID, "token-box").is_displayed(), 30, "the token box")
    browser.find_element(By.ID, "token-input").send_keys(TOKEN)
    browser.find_element(By.CSS_SELECTOR, "#token-form button").click()
    _wait(lambda: browser.find_elements(By.CSS_SELECTOR, "#cameras .camera img.stream"), 30, "the camera after the form")
    img = browser.find_element(By.CSS_SELECTOR, "#cameras .camera img.stream")
    _wait(lambda: browser.execute_script("return arguments[0].naturalWidth", img) > 0, 30, "a live frame through the cookie")
    assert "token" not in img.get_attribute("src") and TOKEN not in browser.current_url


@pytest.mark.parametrize("name", ["annotated.webm", "annotated.mp4"])
def test_browser_plays_an_annotated_output_video(tmp_path, browser, name):
    """`maskwatch video --out` writes what Chromium plays: VP9 in .webm, H.264 in .mp4 (with PyAV)."""
    import http.server
    import threading

    from _scene import scene_frames, write_video

    if name.endswith(".mp4"):
        pytest.importorskip("av")
    clip = write_video(tmp_path / "in.mp4", scene_frames(20), fps=10)
    r = subprocess.run([sys.executable, "-m", "maskwatch.cli", "video", str(clip), "--out", str(tmp_path / name), "-q",
                        "--no-track"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "browsers do not play" not in r.stderr, r.stderr
    (tmp_path / "play.html").write_text(f'<video id="v" src="{name}" muted playsinline></video>')
    handler = lambda *a: http.server.SimpleHTTPRequestHandler(*a, directory=str(tmp_path))  # noqa: E731
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        browser.get(f"http://127.0.0.1:{httpd.server_address[1]}/play.html")
        browser.execute_script("document.getElementById('v').play()")
        _wait(lambda: browser.execute_script("const v = document.getElementById('v'); return v.error === null && "
                                             "v.videoWidth === 640 && v.currentTime > 0.3"), 20, f"{name} to play")
    finally:
        httpd.shutdown()


def test_api_docs_page_renders_every_route_offline(server, browser):
    from selenium.webdriver.common.by import By

    browser.get(server + "/docs")
    ops = _wait(lambda: browser.find_elements(By.CSS_SELECTOR, "#ops .op"), 20, "the routes on the /docs page")
    text = " ".join(o.text for o in ops)
    for route in ("/v1/detect", "/v1/events", "/v1/cameras", "/healthz"):
        assert route in text, route
    assert browser.find_element(By.ID, "error").text == ""
