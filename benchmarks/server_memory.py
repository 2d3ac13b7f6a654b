"""The dashboard server's memory under upload load: RSS before, after a warm-up and after N photo uploads from
many threads (a mix of ordinary photos and very large ones), with the answers' status codes and time.

    python benchmarks/server_memory.py [--uploads 500] [--threads 20] [--large-every 5] [--tree PATH]

The server runs in its own process (no camera, event log in memory). ``--tree`` runs it from another checkout of
maskwatch (e.g. ``git worktree add /tmp/before COMMIT``) to measure before and after a change.
Real photos come from ../shared/data/detect; every ``--large-every``-th upload is one of them upscaled to 48 MP.
"""

from __future__ import annotations

import argparse
import http.client
import json
import socket
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
from _frames import SHARED as _SHARED  # noqa: E402  (../shared, or where MASKWATCH_SHARED points)

DETECT = _SHARED / "data" / "detect"
SERVER = """
import sys
if sys.argv[2]:  # another checkout: ahead of the installed (editable) maskwatch, whose finder would win otherwise
    sys.meta_path = [f for f in sys.meta_path if "editable" not in type(f).__module__.lower()]
    sys.path.insert(0, sys.argv[2])
import maskwatch
print(maskwatch.__file__, file=sys.stderr, flush=True)
from maskwatch.server import ServerSettings, bind, create_app, make_server
from maskwatch import cli
getattr(cli, "_fewer_malloc_arenas", lambda: None)()  # as `maskwatch serve` does (absent before that change)
app = create_app(ServerSettings(events="", demo=False, max_upload_mb=60))
sock = bind("127.0.0.1", int(sys.argv[1]))
make_server(app).run(sockets=[sock])
"""


def rss_mb(pid: int) -> tuple[float, float]:
    """(current RSS, peak RSS) of a process, MB."""
    status = Path(f"/proc/{pid}/status").read_text()
    val = {line.split(":")[0]: float(line.split()[1]) / 1024 for line in status.splitlines() if line.startswith(("VmRSS", "VmHWM"))}
    return val["VmRSS"], val["VmHWM"]


def upload(port: int, data: bytes) -> tuple[int, float, int]:
    """POST one photo as a well-behaved client does: on 503, wait Retry-After seconds and send it again.
    Returns (final status, seconds in all, 503 answers on the way)."""
    b = uuid.uuid4().hex
    body = (f'--{b}\r\nContent-Disposition: form-data; name="file"; filename="p.jpg"\r\nContent-Type: image/jpeg\r\n\r\n'
            ).encode() + data + f"\r\n--{b}--\r\n".encode()
    t0, busy = time.perf_counter(), 0
    while True:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
        try:
            conn.request("POST", "/v1/detect", body=body, headers={"Content-Type": f"multipart/form-data; boundary={b}"})
            r = conn.getresponse()
            r.read()
        finally:
            conn.close()
        if r.status != 503 or busy >= 100:
            return r.status, time.perf_counter() - t0, busy
        busy += 1
        time.sleep(float(r.getheader("Retry-After") or 1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--uploads", type=int, default=500)
    ap.add_argument("--threads", type=int, default=20)
    ap.add_argument("--large-every", type=int, default=5, help="every N-th upload is a 48 MP photo (0 = none)")
    ap.add_argument("--tree", help="run the server from this maskwatch checkout instead of the installed package")
    args = ap.parse_args()

    photos = sorted((DETECT / "ilc-2021" / "images").glob("*.jpg"))[:40] + sorted((DETECT / "masks-voc-dev" / "images").glob("*.jpg"))[:40]
    if not photos:
        sys.exit(f"no photos in {DETECT}; this benchmark needs ../shared")
    small = [p.read_bytes() for p in photos]
    base = cv2.imread(str(photos[0]))
    if base is None:
        sys.exit(f"cannot read {photos[0]}")
    f = (48e6 / (base.shape[0] * base.shape[1])) ** 0.5
    large = cv2.imencode(".jpg", cv2.resize(base, None, fx=f, fy=f, interpolation=cv2.INTER_LINEAR), [cv2.IMWRITE_JPEG_QUALITY, 80])[1].tobytes()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    tree = str(Path(args.tree).resolve()) if args.tree else ""
    proc = subprocess.Popen([sys.executable, "-c", SERVER, str(port), tree], stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None  # stderr=PIPE
    served_from = proc.stderr.readline().strip()
    try:
        for _ in range(200):
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
                conn.request("GET", "/healthz")
                json.loads(conn.getresponse().read())
                break
            except OSError:
                time.sleep(0.2)
        started = rss_mb(proc.pid)
        jobs = [large if args.large_every and k % args.large_every == args.large_every - 1 else small[k % len(small)]
                for k in range(args.uploads)]
        warm = min(100, len(jobs) // 5)
        rows = [("started", *started, "-", "-", "-")]
        with ThreadPoolExecutor(args.threads) as pool:
            for name, part in (("after warm-up", jobs[:warm]), (f"after {args.uploads} uploads", jobs[warm:])):
                t0 = time.perf_counter()
                res = list(pool.map(lambda d: upload(port, d), part))
                secs = time.perf_counter() - t0
                codes: dict[int, int] = {}
                for c, _, _ in res:
                    codes[c] = codes.get(c, 0) + 1
                answers = json.dumps(codes) + f", {sum(n for *_, n in res)} x 503 retried"
                rows.append((name, *rss_mb(proc.pid), answers, f"{len(part) / secs:.1f}",
                             f"{1000 * np.median([t for _, t, _ in res]):.0f}"))  # upload() gives seconds
    finally:
        proc.terminate()
        proc.wait(20)
    large_ones = f"every {args.large_every}-th a {len(large) / 1e6:.1f} MB 48 MP JPEG, the rest" if args.large_every else "all"
    print(f"server from {served_from}; {args.uploads} uploads from {args.threads} threads, {large_ones} real photos")
    print("| moment | RSS MB | peak RSS MB | answers | uploads/s | median ms |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r[0]} | {r[1]:.0f} | {r[2]:.0f} | {r[3]} | {r[4]} | {r[5]} |")


if __name__ == "__main__":
    main()
