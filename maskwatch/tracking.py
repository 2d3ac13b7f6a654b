"""Tracking: a stable id per face across frames, and a per-track label smoothed over recent frames.

IoU association in the way of SORT (constant-velocity prediction of each box, greedy matching by IoU, with a
centre-distance fallback for small fast faces whose boxes no longer overlap). The label of a track is the
classifier's decision on its class probabilities averaged over the last ``window`` frames, so one blurred frame or a turned
head does not flip it.

People who follow each other through the same spot must not become one track: when the frame is given, each face
gets an appearance descriptor (a 12 x 12 grey thumbnail, normalised, and a 2 x 2 grid of hue-saturation
histograms). A track that was missed for ``reid_after`` frames or more continues only with a face that looks
like it (similarity >= ``min_appearance``), and never by the centre-distance fallback; a box that jumps in size
(area ratio over ``max_area_ratio``) never continues a track.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from .boxes import iou_matrix
from .detections import NOT_FACE, UNCERTAIN, Detections, label_confidence, label_name


@dataclass
class Track:
    id: int
    box: np.ndarray  # xyxy pixels, last matched
    velocity: np.ndarray  # xyxy change per frame
    probs: deque = field(default_factory=deque)
    hits: int = 1
    missed: int = 0
    event_sent: bool = False
    appearance: np.ndarray | None = None  # descriptor of the face when last matched

    def predict(self) -> np.ndarray:
        return self.box + self.velocity * (self.missed + 1)

    def smoothed(self) -> np.ndarray:
        return np.mean(np.stack(self.probs), 0)


class Tracker:
    """``update(detections, t) -> Detections`` with ``tracker_id`` set and labels smoothed per track.

    min_iou: IoU needed to continue a track. max_missed: frames a track survives without a detection.
    window: frames of probabilities averaged for the label. min_hits: frames before a track counts as a person.
    decide: (probabilities (n, k), face scores (n,)) -> class ids, the classifier's rule with its operating point
    (``MaskClassifier.decide``; default: argmax). Labels are decided on the smoothed probabilities, so a track is
    sure only when its recent frames agree.
    """

    def __init__(self, min_iou: float = 0.2, max_missed: int = 15, window: int = 10, min_hits: int = 3,
                 decide: Callable[..., np.ndarray] | None = None, reid_after: int = 2, min_appearance: float = 0.8,
                 max_area_ratio: float = 2.5) -> None:
        self.min_iou, self.max_missed, self.window, self.min_hits = min_iou, max_missed, window, min_hits
        self.reid_after, self.min_appearance, self.max_area_ratio = reid_after, min_appearance, max_area_ratio
        self.decide = decide or (lambda p, s=None: p.argmax(1))  # the classifier's rule (MaskClassifier.decide)
        self.tracks: list[Track] = []
        self._next_id = 1
        self.seen: dict[int, str] = {}  # live track id -> last smoothed label, for tracks that became people
        self._gone: Counter[str] = Counter()  # the last labels of people whose tracks ended (bounded memory)
        self.class_names: tuple[str, ...] = ()

    def update(self, detections: Detections, t: float, image: np.ndarray | None = None) -> Detections:
        """Associate this frame's faces with tracks. ``t``: frame time in seconds. ``image``: the frame (BGR), for
        the appearance cue (without it, tracks continue by position alone)."""
        self.class_names = detections.class_names
        n = len(detections)
        pred = np.array([tr.predict() for tr in self.tracks], np.float32).reshape(-1, 4)
        looks = appearance(image, detections.xyxy) if image is not None else [None] * n
        matches = self._match(pred, detections.xyxy, looks)
        ids = np.full(n, -1, np.int64)
        probs = detections.probs.copy()
        matched_tracks = set()
        n_old = len(self.tracks)
        for ti, di in matches:
            tr = self.tracks[ti]
            new_box = detections.xyxy[di].astype(np.float32)
            tr.velocity = 0.5 * tr.velocity + 0.5 * (new_box - tr.box) / (tr.missed + 1)
            tr.box, tr.missed, tr.hits = new_box, 0, tr.hits + 1
            tr.probs.append(detections.probs[di])
            tr.appearance = looks[di]
            matched_tracks.add(ti)
            ids[di] = tr.id
        for di in range(n):
            if ids[di] < 0:
                tr = Track(self._next_id, detections.xyxy[di].astype(np.float32), np.zeros(4, np.float32),
                           deque([detections.probs[di]], maxlen=self.window),
                           appearance=looks[di])
                self._next_id += 1
                self.tracks.append(tr)
                ids[di] = tr.id
        for ti in range(n_old):
            if ti not in matched_tracks:
                self.tracks[ti].missed += 1
        by_id = {tr.id: tr for tr in self.tracks}
        for di in range(n):
            probs[di] = by_id[int(ids[di])].smoothed()
        class_ids = self.decide(probs, detections.face_score) if n else np.zeros(0, np.int64)  # on the smoothed probs
        for di in range(n):
            if by_id[int(ids[di])].hits >= self.min_hits:
                self.seen[int(ids[di])] = label_name(self.class_names, int(class_ids[di]))
        for tr in self.tracks:
            if tr.missed > self.max_missed and tr.id in self.seen:  # an ended track never comes back: count it, forget it
                self._gone[self.seen.pop(tr.id)] += 1
        self.tracks = [tr for tr in self.tracks if tr.missed <= self.max_missed]
        out = Detections(detections.xyxy, detections.face_score, class_id=class_ids, confidence=label_confidence(probs, class_ids),
                         probs=probs, class_names=detections.class_names,
                         tracker_id=ids, landmarks=detections.landmarks, data=dict(detections.data))
        out.data["raw_probs"] = detections.probs
        return out

    def track(self, track_id: int) -> Track | None:
        return next((tr for tr in self.tracks if tr.id == track_id), None)

    def counts(self) -> dict[str, int]:
        """People seen so far (tracks of at least ``min_hits`` frames) by their latest smoothed label."""
        out = {name: 0 for name in self.class_names if name != NOT_FACE} | ({UNCERTAIN: 0} if self.class_names else {})
        for label, k in (self._gone + Counter(self.seen.values())).items():
            out[label] = out.get(label, 0) + k
        return out

    def _match(self, pred: np.ndarray, boxes: np.ndarray, looks: list | np.ndarray) -> list[tuple[int, int]]:
        if len(pred) == 0 or len(boxes) == 0:
            return []
        iou = iou_matrix(pred, boxes)
        # Fallback for small, fast faces: centre distance relative to the face size.
        pc = (pred[:, :2] + pred[:, 2:]) / 2
        bc = (boxes[:, :2] + boxes[:, 2:]) / 2
        size = np.maximum(pred[:, 2:] - pred[:, :2], 1).max(1)
        dist = np.linalg.norm(pc[:, None, :] - bc[None, :, :], axis=2) / size[:, None]
        missed = np.array([tr.missed for tr in self.tracks]) >= self.reid_after
        near = (dist < 1.0) & ~missed[:, None]  # a track back after a gap must overlap, not just be near
        score = np.where(iou >= self.min_iou, 1 + iou, np.where(near, 1 - dist, 0.0))
        area_p = np.prod(np.maximum(pred[:, 2:] - pred[:, :2], 1), 1)
        area_b = np.prod(np.maximum(boxes[:, 2:] - boxes[:, :2], 1), 1)
        ratio = np.maximum(area_p[:, None] / area_b[None, :], area_b[None, :] / area_p[:, None])
        score[ratio > self.max_area_ratio] = 0.0
        for ti in np.nonzero(missed)[0]:  # back after a gap: only a face that looks like the one that left
            a = self.tracks[ti].appearance
            for di in np.nonzero(score[ti] > 0)[0]:
                if a is not None and looks[di] is not None and similarity(a, looks[di]) < self.min_appearance:
                    score[ti, di] = 0.0
        matches = []
        used_t, used_d = set(), set()
        for flat in np.argsort(-score, axis=None):
            ti, di = np.unravel_index(flat, score.shape)
            if score[ti, di] <= 0:
                break
            if ti in used_t or di in used_d:
                continue
            used_t.add(int(ti))
            used_d.add(int(di))
            matches.append((int(ti), int(di)))
        return matches


def appearance(image: np.ndarray, boxes: np.ndarray) -> list[np.ndarray]:
    """One descriptor per xyxy box of a BGR image: a 12 x 12 grey thumbnail (zero mean, unit norm; 144 values)
    and a 2 x 2 grid of 8 x 4 hue-saturation histograms (summing to 1; 128 values)."""
    import cv2

    h, w = image.shape[:2]
    out = []
    for x1, y1, x2, y2 in np.asarray(boxes).round().astype(int):
        patch = image[max(0, y1) : min(h, max(y2, y1 + 1)), max(0, x1) : min(w, max(x2, x1 + 1))]
        if patch.size == 0:
            patch = np.zeros((2, 2, 3), np.uint8)
        small = cv2.resize(patch, (24, 24), interpolation=cv2.INTER_AREA)
        grey = cv2.resize(cv2.cvtColor(small, cv2.COLOR_BGR2GRAY), (12, 12), interpolation=cv2.INTER_AREA).astype(np.float32).ravel()
        grey -= grey.mean()
        grey /= float(np.linalg.norm(grey)) + 1e-6
        hsv = cv2.cvtColor(small, cv2.COLOR_BGR2HSV)
        hists = [cv2.calcHist([hsv[a : a + 12, b : b + 12]], [0, 1], None, [8, 4], [0, 180, 0, 256]).ravel()
                 for a in (0, 12) for b in (0, 12)]
        hist = np.concatenate(hists)
        out.append(np.concatenate([grey, hist / max(float(hist.sum()), 1.0)]).astype(np.float32))
    return out


def similarity(a: np.ndarray, b: np.ndarray) -> float:
    """How alike two faces look, 0..1: the mean of the thumbnails' correlation (clipped at 0) and the
    histograms' Bhattacharyya coefficient. In the tests' replays, frames of one moving face score 0.83-1; the
    next person at the same spot 0.12-0.72 (median 0.44), hence ``min_appearance`` 0.8."""
    corr = max(0.0, float(a[:144] @ b[:144]))
    bc = float(np.sqrt(a[144:] * b[144:]).sum())
    return (corr + bc) / 2
