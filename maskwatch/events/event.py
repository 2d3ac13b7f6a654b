"""The event of the live monitor (one person confirmed unmasked) and its optional face snapshot."""

from __future__ import annotations

import base64
import datetime as _dt
import math
import time as _time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class Event:
    """One confirmed observation: a tracked face that wears no mask (or wears it wrongly).

    time: unix seconds. camera: the camera's name. track_id: the tracker's id of the face. label and confidence:
    the classifier's verdict. box: x1, y1, x2, y2 in pixels of the frame. snapshot: JPEG bytes of the face, only
    when asked for (off by default). id: a unique hex id (uuid4), so a sink can recognise a repeat.
    """

    time: float
    camera: str
    track_id: int
    label: str
    confidence: float
    box: list[int]  # xyxy pixels, rounded
    snapshot: bytes | None = None
    id: str = field(default_factory=lambda: uuid.uuid4().hex)

    def __post_init__(self) -> None:
        self.time = float(self.time)
        if not math.isfinite(self.time):
            raise ValueError(f"Event.time must be finite unix seconds, got {self.time}")
        self.camera = str(self.camera)
        self.track_id = int(self.track_id)
        self.label = str(self.label)
        self.confidence = float(self.confidence)
        if not math.isfinite(self.confidence):
            raise ValueError(f"Event.confidence must be a finite number, got {self.confidence}")
        box = [int(round(float(v))) for v in np.asarray(self.box, dtype=np.float64).reshape(-1)]
        if len(box) != 4:
            raise ValueError(f"Event.box must be 4 numbers (x1, y1, x2, y2 in pixels), got {len(box)}: {self.box!r}")
        self.box = box
        if self.snapshot is not None:
            self.snapshot = bytes(self.snapshot)
        self.id = str(self.id)

    @property
    def iso_time(self) -> str:
        """The time as ISO-8601 UTC, e.g. ``2024-05-01T12:00:00.250Z``."""
        t = _dt.datetime.fromtimestamp(self.time, tz=_dt.UTC)
        return t.isoformat(timespec="milliseconds").replace("+00:00", "Z")

    def to_dict(self, include_snapshot: bool = False) -> dict[str, Any]:
        """A JSON-safe dict. The snapshot (base64 of the JPEG) only when ``include_snapshot`` and there is one."""
        d: dict[str, Any] = {
            "id": self.id,
            "time": self.time,
            "iso_time": self.iso_time,
            "camera": self.camera,
            "track_id": self.track_id,
            "label": self.label,
            "confidence": round(self.confidence, 4),
            "box": list(self.box),
        }
        if include_snapshot and self.snapshot is not None:
            d["snapshot"] = base64.b64encode(self.snapshot).decode("ascii")
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Event:
        """The inverse of :meth:`to_dict` (``iso_time`` is ignored; ``snapshot`` may be base64 or absent)."""
        snap = d.get("snapshot")
        if isinstance(snap, str):
            snap = base64.b64decode(snap)
        kwargs: dict[str, Any] = dict(
            time=d["time"], camera=d["camera"], track_id=d["track_id"], label=d["label"],
            confidence=d["confidence"], box=d["box"], snapshot=snap,
        )
        if d.get("id"):
            kwargs["id"] = d["id"]
        return cls(**kwargs)

    @classmethod
    def from_detections(
        cls,
        detections: Any,
        index: int,
        camera: str,
        time: float | None = None,
        frame: np.ndarray | None = None,
        snapshot: bool = False,
    ) -> Event:
        """The event for row ``index`` of a :class:`~maskwatch.detections.Detections` (tracked, classified).

        time defaults to now. With ``snapshot=True`` and a ``frame`` (BGR), the face is cut out and stored as JPEG.
        """
        i = int(index)
        labels = detections.labels
        snap = make_snapshot(frame, detections.xyxy[i]) if (snapshot and frame is not None) else None
        return cls(
            time=_time.time() if time is None else time,
            camera=camera,
            track_id=int(detections.tracker_id[i]),
            label=labels[i],
            confidence=float(detections.confidence[i]),
            box=detections.xyxy[i].tolist(),  # rounded to whole pixels by __post_init__
            snapshot=snap,
        )


def make_snapshot(frame: np.ndarray | None, box: Sequence[float], margin: float = 0.2, quality: int = 85) -> bytes | None:
    """JPEG bytes of the face in ``box`` (x1, y1, x2, y2 pixels) with ``margin`` (a fraction of the box) around it,
    clipped to the frame. None when there is no frame or the box lies outside it."""
    if frame is None or getattr(frame, "ndim", 0) < 2:
        return None
    import cv2

    h, w = frame.shape[:2]
    x1, y1, x2, y2 = (float(v) for v in box)
    mx, my = (x2 - x1) * margin, (y2 - y1) * margin
    a, b = max(0, int(math.floor(x1 - mx))), max(0, int(math.floor(y1 - my)))
    c, d = min(w, int(math.ceil(x2 + mx))), min(h, int(math.ceil(y2 + my)))
    if c <= a or d <= b:
        return None
    crop = np.ascontiguousarray(frame[b:d, a:c])
    if crop.dtype != np.uint8:
        crop = np.clip(crop, 0, 255).astype(np.uint8)
    ok, buf = cv2.imencode(".jpg", crop, [int(cv2.IMWRITE_JPEG_QUALITY), int(quality)])
    return buf.tobytes() if ok else None
