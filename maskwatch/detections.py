"""`Detections`: the one result type that flows through the whole pipeline.

Boxes are ``xyxy`` in pixels of the original image (x1, y1, x2, y2; floats). The face detector fills
``xyxy`` and ``face_score``; the mask classifier adds ``class_id``, ``confidence`` and ``probs``; the tracker adds
``tracker_id``. An image with no face gives an empty Detections, never ``None``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

CLASS_NAMES: tuple[str, ...] = ("with_mask", "without_mask", "mask_incorrect")
"""The face labels maskwatch speaks. A classifier may know a subset (two-class models have no mask_incorrect)."""
NOT_FACE = "not_face"
"""The class of a box the face detector found on something that is no face (a hand, a bag, the back of a head).
The pipeline removes such boxes; they never reach a sink or raise an event."""
MODEL_CLASSES: tuple[str, ...] = CLASS_NAMES + (NOT_FACE,)
"""Every class a classifier may output, in maskwatch's column order."""
UNCERTAIN = "uncertain"
"""The label of a face the system is not sure of (a low face score, or no class clearly ahead): drawn thin grey
"?", reported with its probabilities, never an event, a webhook or a signal to the Arduino."""
UNCERTAIN_ID = -2
"""``class_id`` of an uncertain face (-1 = not classified)."""


@dataclass
class Detections:
    """Parallel arrays, one row per face.

    xyxy: (n, 4) float32 pixel boxes. face_score: (n,) detector confidence 0..1.
    class_id: (n,) int index into ``class_names`` (-1 = not classified, -2 = uncertain). confidence: (n,) probability
    of that class (of the most likely class for an uncertain face).
    probs: (n, k) probabilities over ``class_names``. tracker_id: (n,) int or -1.
    landmarks: optional (n, 5, 2) face landmarks (pixels) when the detector gives them.
    """

    xyxy: np.ndarray
    face_score: np.ndarray
    # None at construction means "not classified / not tracked": __post_init__ always fills these columns.
    class_id: np.ndarray = None  # type: ignore[assignment]
    confidence: np.ndarray = None  # type: ignore[assignment]
    probs: np.ndarray = None  # type: ignore[assignment]
    class_names: tuple[str, ...] = CLASS_NAMES
    tracker_id: np.ndarray = None  # type: ignore[assignment]
    landmarks: np.ndarray | None = None
    data: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.xyxy = np.asarray(self.xyxy, dtype=np.float32).reshape(-1, 4) if np.size(self.xyxy) else np.zeros((0, 4), np.float32)
        n = len(self.xyxy)
        self.face_score = _column(self.face_score, n, "face_score", np.float32)
        if self.class_id is None:
            self.class_id = np.full(n, -1, np.int64)
        self.class_id = _column(self.class_id, n, "class_id", np.int64)
        if self.confidence is None:
            self.confidence = np.zeros(n, np.float32)
        self.confidence = _column(self.confidence, n, "confidence", np.float32)
        if self.probs is None:
            self.probs = np.zeros((n, len(self.class_names)), np.float32)
        k = len(self.class_names)
        probs = np.asarray(self.probs, np.float32)
        if n == 0 and probs.size == 0:
            probs = np.zeros((0, k), np.float32)
        if probs.shape != (n, k):
            raise ValueError(f"Detections.probs has shape {probs.shape} but must be ({n}, {k}): one row per face, one column per entry of class_names {self.class_names}")
        self.probs = probs
        if self.tracker_id is None:
            self.tracker_id = np.full(n, -1, np.int64)
        self.tracker_id = _column(self.tracker_id, n, "tracker_id", np.int64)
        if self.landmarks is not None:
            self.landmarks = np.asarray(self.landmarks, np.float32).reshape(n, 5, 2)

    @classmethod
    def empty(cls, class_names: Sequence[str] = CLASS_NAMES) -> Detections:
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), class_names=tuple(class_names))

    def __len__(self) -> int:
        return len(self.xyxy)

    def __getitem__(self, index: Any) -> Detections:
        """Rows by boolean mask, integer array or slice; returns a new Detections."""
        if isinstance(index, (int, np.integer)):
            index = [int(index)]
        return replace(
            self,
            xyxy=self.xyxy[index],
            face_score=self.face_score[index],
            class_id=self.class_id[index],
            confidence=self.confidence[index],
            probs=self.probs[index],
            tracker_id=self.tracker_id[index],
            landmarks=None if self.landmarks is None else self.landmarks[index],
            data={k: v[index] if isinstance(v, np.ndarray) and v.ndim and len(v) == len(self) else v for k, v in self.data.items()},
        )

    def __iter__(self) -> Iterator[Detections]:
        for i in range(len(self)):
            yield self[i]

    @property
    def labels(self) -> list[str]:
        """Label per face: a class name, 'uncertain', or '' where not classified."""
        return [label_name(self.class_names, int(c)) for c in self.class_id]

    @property
    def width(self) -> np.ndarray:
        return self.xyxy[:, 2] - self.xyxy[:, 0]

    @property
    def height(self) -> np.ndarray:
        return self.xyxy[:, 3] - self.xyxy[:, 1]

    def to_records(self) -> list[dict[str, Any]]:
        """One dict per face in the JSON-lines shape: box (ints, pixels), face_score, label, confidence, probs."""
        out = []
        for i in range(len(self)):
            rec: dict[str, Any] = {
                "box": [int(round(float(v))) for v in self.xyxy[i]],
                "face_score": round(float(self.face_score[i]), 4),
            }
            if self.class_id[i] >= 0 or self.class_id[i] == UNCERTAIN_ID:
                rec["label"] = label_name(self.class_names, int(self.class_id[i]))
                rec["confidence"] = round(float(self.confidence[i]), 4)
                rec["probs"] = {n: round(float(p), 4) for n, p in zip(self.class_names, self.probs[i])}
            if self.tracker_id[i] >= 0:
                rec["track_id"] = int(self.tracker_id[i])
            out.append(rec)
        return out


def share_masked(counts: dict[str, int]) -> float | None:
    """The share of faces wearing a mask among the faces the system is sure of (with_mask / (with_mask +
    without_mask + mask_incorrect)); ``uncertain`` faces are left out, as from every count. None when there is none."""
    sure = sum(counts.get(c, 0) for c in CLASS_NAMES)
    return counts.get("with_mask", 0) / sure if sure else None


def frame_record(source: str, width: int, height: int, faces: Detections, frame: int | None = None,
                 time: float | None = None) -> dict[str, Any]:
    """The one JSON record of an image or a video frame (``maskwatch detect``, ``video --json``, ``watch --json``,
    the server's ``/v1/detect``): source, width and height (pixels of the upright image), frame (index, for video) and
    time (seconds: into the file for a video file, Unix time for a camera or stream), faces (:meth:`Detections.to_records`)."""
    rec: dict[str, Any] = {"source": str(source), "width": int(width), "height": int(height)}
    if frame is not None:
        rec["frame"] = int(frame)
    if time is not None:
        rec["time"] = round(float(time), 3)
    rec["faces"] = faces.to_records()
    return rec


def label_confidence(probs: np.ndarray, class_ids: np.ndarray) -> np.ndarray:
    """The probability of each face's label (n,); for an uncertain or unclassified face, of its most likely class."""
    if len(class_ids) == 0:
        return np.zeros(0, np.float32)
    probs = np.asarray(probs)
    ids = np.asarray(class_ids)
    return np.where(ids >= 0, probs[np.arange(len(ids)), np.maximum(ids, 0)], probs.max(1)).astype(np.float32)


def label_name(class_names: Sequence[str], class_id: int) -> str:
    """The label of a class id: a class name, 'uncertain' (-2) or '' (-1, not classified)."""
    return class_names[class_id] if class_id >= 0 else UNCERTAIN if class_id == UNCERTAIN_ID else ""


def _column(values: Any, n: int, name: str, dtype: type) -> np.ndarray:
    arr: np.ndarray = np.asarray(values, dtype=dtype).reshape(-1)
    if len(arr) != n:
        raise ValueError(f"Detections.{name} has {len(arr)} rows but xyxy has {n}; every column needs one row per face")
    return arr
