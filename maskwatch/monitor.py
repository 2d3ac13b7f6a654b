"""The live monitor: pipeline -> tracker -> one event per person confirmed unmasked -> sinks and the Arduino.

``Monitor.process(frame, t)`` runs every stage for one frame and returns the tracked Detections. The event rule:
a track whose smoothed label is ``without_mask`` (and, if asked, ``mask_incorrect``), sure (not ``uncertain``), with
its whole box inside the frame, for ``confirm_frames`` consecutive frames or ``confirm_seconds`` seconds gives exactly
one event. A face cut by the frame edge never counts: half a mask reads as none.
"""

from __future__ import annotations

import time
from typing import Any, Protocol

import numpy as np

from .detections import Detections
from .pipeline import Detector
from .tracking import Tracker


class _Emits(Protocol):
    def emit(self, event: Any) -> Any: ...  # EventDispatcher.emit returns how many sinks took the event


class _Signals(Protocol):
    def update(self, detections: Detections, width: int, height: int) -> Any: ...  # SerialSignal.update returns the message


class Monitor:
    """camera: name written into events. confirm_frames / confirm_seconds: how long a face must read as
    unmasked (smoothed) before its one event; whichever comes first (0 turns that rule off).
    alert_labels: labels that count as unmasked. snapshots: attach a JPEG of the face to events (off by default).
    dispatcher: where events go (``maskwatch.events.EventDispatcher``); serial: ``SerialSignal`` or None."""

    def __init__(self, detector: Detector, camera: str = "camera0", tracker: Tracker | None = None,
                 confirm_frames: int = 5, confirm_seconds: float = 0.0, alert_labels: tuple[str, ...] = ("without_mask",),
                 snapshots: bool = False, dispatcher: _Emits | None = None, serial: _Signals | None = None) -> None:
        self.detector, self.camera = detector, camera
        self.tracker = tracker or Tracker(decide=detector.classifier.decide)
        self.confirm_frames, self.confirm_seconds = confirm_frames, confirm_seconds
        self.alert_labels = alert_labels
        self.snapshots = snapshots
        self.dispatcher, self.serial = dispatcher, serial
        self.events: list[Any] = []  # events emitted in this run (also sent to the dispatcher)
        self.frames = 0
        self._alerting: dict[int, tuple[int, float]] = {}  # track id -> (frames, since) read as alert, inside the frame

    def process(self, frame_bgr: np.ndarray, t: float | None = None) -> Detections:
        """One frame (BGR uint8); t: its time in seconds, for tracking and confirm_seconds (default: now; a video
        file passes its frame time). Events are stamped with the wall-clock time. Returns tracked Detections."""
        t = time.time() if t is None else t
        dets = self.tracker.update(self.detector.detect(frame_bgr), t, frame_bgr)
        self.frames += 1
        labels = dets.labels
        h, w = frame_bgr.shape[:2]
        alerting: dict[int, tuple[int, float]] = {}
        for i, tid in enumerate(dets.tracker_id):
            x1, y1, x2, y2 = dets.xyxy[i]
            if labels[i] not in self.alert_labels or x1 <= 1 or y1 <= 1 or x2 >= w - 1 or y2 >= h - 1:
                continue  # not alerting, or cut by the frame edge: the count starts again
            frames, since = self._alerting.get(int(tid), (0, t))
            alerting[int(tid)] = (frames + 1, since)
            tr = self.tracker.track(int(tid))
            if tr is None or tr.event_sent:
                continue
            by_frames = self.confirm_frames and frames + 1 >= self.confirm_frames
            by_time = self.confirm_seconds and t - since >= self.confirm_seconds
            if by_frames or by_time:
                tr.event_sent = True
                self._emit(frame_bgr, dets, i, t)
        self._alerting = alerting
        if self.serial is not None:
            self.serial.update(dets, frame_bgr.shape[1], frame_bgr.shape[0])
        return dets

    def counts(self) -> dict[str, int]:
        return self.tracker.counts()

    def _emit(self, frame: np.ndarray, dets: Detections, i: int, t: float) -> None:
        from .events import Event

        ev = Event.from_detections(dets, i, self.camera, frame=frame, snapshot=self.snapshots)  # stamped now
        self.events.append(ev)
        if self.dispatcher is not None:
            self.dispatcher.emit(ev)
