"""The live monitor: pipeline -> tracker -> one event per person confirmed unmasked -> sinks and the Arduino.

``Monitor.process(frame, t)`` runs every stage for one frame and returns the tracked Detections. The event rule:
a track whose smoothed label is ``without_mask`` (and, if asked, ``mask_incorrect``), sure (not ``uncertain``), with
its whole box inside the frame, for ``confirm_frames`` consecutive frames or ``confirm_seconds`` seconds gives exactly
one event. A face cut by the frame edge never counts: half a mask reads as none.
"""

from __future__ import annotations

import sys
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TextIO

import numpy as np

from .detections import Detections
from .pipeline import Detector
from .settings import check
from .tracking import Tracker


class _Emits(Protocol):
    def emit(self, event: Any) -> Any: ...  # EventDispatcher.emit returns how many sinks took the event


class _Signals(Protocol):
    def update(self, detections: Detections, width: int, height: int) -> Any: ...  # SerialSignal.update returns the message


class Monitor:
    """camera: name written into events. confirm_frames / confirm_seconds: how long a face must read as
    unmasked (smoothed) before its one event; whichever comes first (0 turns that rule off).
    alert_labels: labels that count as unmasked. snapshots: attach a JPEG of the face to events (off by default).
    dispatcher: where events go (``maskwatch.events.EventDispatcher``); serial: ``SerialSignal`` or None.
    ``events`` (a deque: ``list(mon.events)`` to slice it) holds the latest ``KEEP_EVENTS`` events of the run,
    ``n_events`` counts all of them."""

    KEEP_EVENTS = 1000

    def __init__(self, detector: Detector, camera: str = "camera0", tracker: Tracker | None = None,
                 confirm_frames: int = 5, confirm_seconds: float = 0.0, alert_labels: tuple[str, ...] = ("without_mask",),
                 snapshots: bool = False, dispatcher: _Emits | None = None, serial: _Signals | None = None) -> None:
        self.detector, self.camera = detector, camera
        self.tracker = tracker or Tracker(decide=detector.classifier.decide)
        self.confirm_frames, self.confirm_seconds = confirm_frames, confirm_seconds
        self.alert_labels = alert_labels
        self.snapshots = snapshots
        self.dispatcher, self.serial = dispatcher, serial
        # The latest events of this run (all were sent to the dispatcher); bounded, so months of a busy door (with
        # snapshots) do not fill the memory. n_events counts them all.
        self.events: deque[Any] = deque(maxlen=self.KEEP_EVENTS)
        self.n_events = 0
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
        self.n_events += 1
        if self.dispatcher is not None:
            self.dispatcher.emit(ev)


# ----------------------------------------------------------------------------------------------- composition root


class Closer(Protocol):
    def close(self) -> Any: ...
    def close_note(self) -> str | None: ...  # after close: what a user should hear, or None


@dataclass
class MonitorSettings:
    """What the live monitor is told (``watch``, ``video``, each camera of ``serve``). events: SQLite event log path
    (None or '' = none). webhook: URL events are POSTed to (queued in the outbox beside the event log). event_json:
    JSON lines on ``stdout``. serial: Arduino port; serial_dry_run prints the messages on ``stderr`` instead."""

    camera: str = "camera0"
    events: str | None = None
    retention_days: float = 30.0
    confirm_frames: int = 5
    confirm_seconds: float = 0.0
    alert_incorrect: bool = False
    snapshots: bool = False
    event_json: bool = False
    webhook: str | None = None
    sound: bool = False
    serial: str | None = None
    serial_dry_run: bool = False
    serial_interval: int = 200

    def __post_init__(self) -> None:
        for name in ("confirm_frames", "confirm_seconds", "retention_days", "serial_interval"):
            check(name, getattr(self, name))

    @property
    def alert_labels(self) -> tuple[str, ...]:
        return ("without_mask", "mask_incorrect") if self.alert_incorrect else ("without_mask",)


@dataclass
class Sinks:
    """Where a monitor's events go: the dispatcher, the event log (None without one), the serial link, and what to
    close at the end, in order (sinks flush first, then the log, the outbox and the port)."""

    dispatcher: Any
    log: Any = None
    serial: Any = None
    closers: list[Any] = field(default_factory=list)


def build_sinks(s: MonitorSettings, extra: Sequence[Any] = (), stdout: TextIO | None = None,
                stderr: TextIO | None = None) -> Sinks:
    """The sinks ``s`` asks for (event log, JSON lines, webhook, bell, serial), plus ``extra`` sinks after them."""
    from .events import EventDispatcher, EventLog, EventLogSink, JsonLinesSink, Outbox, SoundSink, WebhookSink, data_dir

    closers: list[Any] = []
    sinks: list[Any] = []
    log = None
    if s.events:
        log = EventLog(s.events, retention_days=s.retention_days)
        closers.append(log)
        sinks.append(EventLogSink(log))
    if s.event_json:
        sinks.append(JsonLinesSink(stdout or sys.stdout))
    if s.webhook:
        outbox = Outbox(s.events or str(data_dir() / "outbox.db"))
        closers.append(outbox)
        sinks.append(WebhookSink(s.webhook, outbox, max_age_s=s.retention_days * 86400.0))  # as old as the log keeps
    if s.sound:
        sinks.append(SoundSink())
    serial = None
    if s.serial or s.serial_dry_run:
        from .serial_link import SerialSignal

        serial = SerialSignal(s.serial or "dry-run", interval_ms=s.serial_interval, dry_run=s.serial_dry_run,
                              out=(stderr or sys.stderr) if s.serial_dry_run else None)
        closers.append(serial)
    sinks += list(extra)
    return Sinks(EventDispatcher(sinks), log, serial, sinks + closers)


def build_monitor(detector: Detector, s: MonitorSettings, sinks: Sinks | None = None) -> tuple[Monitor, list[Any]]:
    """The one way a live monitor is assembled: ``(Monitor, closers)``. ``sinks``: shared ones (the server's cameras
    share one event log); by default built from ``s`` and closed with the returned closers."""
    own = sinks is None
    sinks = build_sinks(s) if sinks is None else sinks
    mon = Monitor(detector, camera=s.camera, confirm_frames=s.confirm_frames, confirm_seconds=s.confirm_seconds,
                  alert_labels=s.alert_labels, snapshots=s.snapshots, dispatcher=sinks.dispatcher,
                  serial=sinks.serial if own else None)
    return mon, sinks.closers if own else []


def close_all(closers: Sequence[Closer]) -> list[str]:
    """Close each in order; the notes a user should hear (undelivered or unwritten events, port trouble)."""
    notes = []
    for c in closers:
        try:
            c.close()
        except Exception as e:  # one that fails to close must not hide the others
            notes.append(f"closing {type(c).__name__}: {e}")
            continue
        note = c.close_note()
        if note:
            notes.append(note)
    return notes
