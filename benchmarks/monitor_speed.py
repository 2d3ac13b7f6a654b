"""The live monitor (tracking, smoothing, events into SQLite, serial dry run) against the plain pipeline on
the same frames: frames/s and ms per frame. The frames are the replay video of the tests (a real unmasked face
moving and growing, a real masked face standing still; 640x480), repeated.

    python benchmarks/monitor_speed.py [--frames 40] [--repeat 5]
"""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import _frames  # noqa: E402,F401  (sets MASKWATCH_MODELS)
from _scene import scene_frames  # noqa: E402

from maskwatch import Detector  # noqa: E402
from maskwatch.events import EventDispatcher, EventLog, EventLogSink  # noqa: E402
from maskwatch.monitor import Monitor  # noqa: E402
from maskwatch.serial_link import SerialSignal  # noqa: E402
from maskwatch.settings import LIVE  # noqa: E402


def run_interleaved(fns, frames: list[np.ndarray], repeat: int) -> list[np.ndarray]:
    """Time each function on each frame in turn (frame by frame), so drift in the machine's speed hits all alike."""
    t: list[list[float]] = [[] for _ in fns]
    for r in range(repeat):
        for i, f in enumerate(frames):
            for k, fn in enumerate(fns):
                t0 = time.perf_counter()
                fn(f, (r * len(frames) + i) / 10)
                t[k].append((time.perf_counter() - t0) * 1000)
    return [np.array(x) for x in t]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=40)
    ap.add_argument("--repeat", type=int, default=5)
    a = ap.parse_args()
    frames = scene_frames(a.frames)
    det = Detector(**{k: LIVE[k] for k in ("face_detector", "det_size", "flip")})  # the live preset's pipeline
    with tempfile.TemporaryDirectory() as tmp:
        log = EventLog(Path(tmp) / "events.db")
        sig = SerialSignal("dry-run", dry_run=True, out=io.StringIO(), interval_ms=50)
        mon = Monitor(det, dispatcher=EventDispatcher([EventLogSink(log)]), serial=sig)
        for f in frames[:5]:
            det.detect(f)
        plain, monitored = run_interleaved([lambda f, t: det.detect(f), mon.process], frames, a.repeat)
        rows = [(f"plain pipeline ({LIVE['face_detector']} det_size={LIVE['det_size']})", plain), ("monitor: + tracker, events, SQLite, serial", monitored)]
        sig.close()
        log.close()
    print(f"{a.frames} frames 640x480 (2 faces each) x{a.repeat}")
    print(f"{'pipeline':44} | {'frames/s':>8} | {'median ms':>9} | {'p95 ms':>7}")
    for name, t in rows:
        print(f"{name:44} | {1000 / t.mean():8.1f} | {np.median(t):9.2f} | {np.percentile(t, 95):7.2f}")
    print(f"tracking and events cost {np.median(rows[1][1]) - np.median(rows[0][1]):.2f} ms a frame (median)")


if __name__ == "__main__":
    main()
