"""Memory of a long `watch` run: the live monitor (tracker, events with snapshots, the SQLite event log) fed months
of people passing a door, at the speed of the bookkeeping alone (a stand-in detector gives each person's face for a
few frames; no network runs). Prints the process's resident memory as people go by: it must stay flat.

    python benchmarks/monitor_memory.py [--people 20000] [--every 5000]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from maskwatch.detections import Detections  # noqa: E402
from maskwatch.events import EventDispatcher, EventLog, EventLogSink  # noqa: E402
from maskwatch.monitor import Monitor  # noqa: E402
from maskwatch.tracking import Tracker  # noqa: E402

NAMES = ("with_mask", "without_mask", "mask_incorrect", "not_face")
FRAMES_IN_VIEW, FRAMES_BETWEEN = 8, 18  # a person is seen for 8 frames, then the door is empty (tracks end after 15)


def rss_mb() -> float:
    """Resident memory of this process, MB (Linux /proc; elsewhere the peak from getrusage)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class StandIn:
    """Detector stand-in: the face of the current person (a third of them bare), or none between people."""

    class classifier:  # noqa: N801  (Monitor asks detector.classifier.decide)
        @staticmethod
        def decide(p: np.ndarray, s: np.ndarray | None = None) -> np.ndarray:
            return p[:, :3].argmax(1)

    def __init__(self) -> None:
        self.frame = 0
        self.rng = np.random.default_rng(0)
        self.box = np.zeros(4, np.float32)

    def detect(self, img: np.ndarray) -> Detections:
        k = self.frame % (FRAMES_IN_VIEW + FRAMES_BETWEEN)
        person = self.frame // (FRAMES_IN_VIEW + FRAMES_BETWEEN)
        self.frame += 1
        if k >= FRAMES_IN_VIEW:
            return Detections.empty(NAMES)
        if k == 0:
            x, y = self.rng.integers(40, 200), self.rng.integers(40, 120)
            self.box = np.array([x, y, x + 60, y + 70], np.float32)
        p = np.array([[0.03, 0.95, 0.01, 0.01]] if person % 3 == 0 else [[0.95, 0.03, 0.01, 0.01]], np.float32)
        return Detections(self.box[None] + 2 * k, np.array([0.95]), probs=p, class_id=p[:, :3].argmax(1),
                          confidence=p.max(1), class_names=NAMES)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--people", type=int, default=20000)
    ap.add_argument("--every", type=int, default=5000, help="print a row after this many people")
    a = ap.parse_args()
    rng = np.random.default_rng(1)
    frame = rng.integers(0, 255, (360, 480, 3), dtype=np.uint8)  # texture, so each snapshot JPEG has a real size
    det = StandIn()
    print(f"{'people':>7} | {'frames':>8} | {'events':>7} | {'events in memory':>16} | {'tracker ids':>11} | "
          f"{'people counted':>14} | {'RSS MB':>7}")
    with tempfile.TemporaryDirectory() as tmp:
        log = EventLog(Path(tmp) / "events.db")
        mon = Monitor(det, tracker=Tracker(decide=det.classifier.decide), confirm_frames=3, snapshots=True,  # type: ignore[arg-type]
                      dispatcher=EventDispatcher([EventLogSink(log)]))
        per_person = FRAMES_IN_VIEW + FRAMES_BETWEEN
        for person in range(a.people + 1):
            if person % a.every == 0:
                counted = sum(mon.counts().values())
                # getattr: the same script measures commits before Monitor.n_events (README's "before")
                n_events = getattr(mon, "n_events", len(mon.events))
                ids = len(mon.tracker.tracks) + len(mon.tracker.seen)  # what the tracker holds per face or person
                print(f"{person:>7} | {det.frame:>8} | {n_events:>7} | {len(mon.events):>16} | {ids:>11} | "
                      f"{counted:>14} | {rss_mb():>7.1f}")
            if person == a.people:
                break
            for _ in range(per_person):
                mon.process(frame, t=det.frame / 10)
        log.close()
    print(f"every person counted once and every third one an event with a snapshot; memory after the first "
          f"{a.every} people should stay flat")


if __name__ == "__main__":
    main()
