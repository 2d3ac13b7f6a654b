"""What every face detector shares: settings, upscaling for small faces, NMS, box clipping."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from ..detections import Detections
from ..errors import InputError


class FaceDetector:
    """Base class. ``detect(image_bgr)`` -> Detections with xyxy pixel boxes (of the image passed in) and face scores.

    score_threshold: minimum face score, 0..1 (the documents use 0.5). nms_threshold: IoU above which
    overlapping boxes are merged. det_size: the image is resized so that its longer side is this many
    pixels before detection (800 finds 10-20 px faces in 400 px photos; 320 is fast on 640x480 video;
    0 = as is); several sizes, e.g. (800, 1600), run one pass each and merge the faces by NMS (small and large
    faces both found, at the cost of the passes). upscale: a fixed resize factor instead of det_size. Boxes are always mapped back to the
    input image. min_face: smallest box side kept, in pixels of the input image. threads: CPU threads for detectors
    that run on onnxruntime (None = all cores); the OpenCV ones ignore it.
    """

    name = "base"

    def __init__(self, score_threshold: float = 0.5, nms_threshold: float = 0.3, det_size: int | Sequence[int] = 640,
                 upscale: float | None = None, min_face: float = 4.0, threads: int | None = None) -> None:
        from ..settings import check  # the one table of ranges (imported here: settings lists the detectors)

        for name, value in (("score_threshold", score_threshold), ("nms_threshold", nms_threshold), ("upscale", upscale)):
            check(name, value)
        sizes = (det_size,) if isinstance(det_size, (int, np.integer)) else tuple(det_size)
        for size in sizes:
            check("det_size", int(size))
        if not sizes:
            raise InputError("det_size is empty; give one size (640) or several for a multi-scale pass (800,1600)")
        self.det_sizes = sizes
        self.det_size = sizes[0]
        self.score_threshold = score_threshold
        self.nms_threshold = nms_threshold
        self.upscale = upscale
        self.min_face = min_face
        self.threads = threads  # CPU threads of an onnxruntime detector (None = all cores); others ignore it

    def detect(self, image_bgr: np.ndarray) -> Detections:
        """Faces in a BGR uint8 image (h, w, 3)."""
        if image_bgr.ndim != 3 or image_bgr.shape[2] != 3 or image_bgr.dtype != np.uint8:
            raise InputError(f"expected a BGR uint8 image of shape (h, w, 3), got {image_bgr.dtype} {image_bgr.shape}; use maskwatch.load_image")
        h, w = image_bgr.shape[:2]
        found = [self._detect_at(image_bgr, scale) for scale in self.scales_for(w, h)]
        boxes = np.concatenate([f[0] for f in found])
        if len(boxes) == 0:
            return Detections.empty()
        scores = np.concatenate([f[1] for f in found])
        # A pass that found nothing has no landmarks to give: it must not drop the other passes' landmarks.
        parts = [f[2] if f[2] is not None or len(f[0]) else np.zeros((0, 5, 2), np.float32) for f in found]
        landmarks: np.ndarray | None = None if any(p is None for p in parts) else np.concatenate([p for p in parts if p is not None])
        keep = scores >= self.score_threshold
        boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, w)
        boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, h)
        keep &= (boxes[:, 2] - boxes[:, 0] >= self.min_face) & (boxes[:, 3] - boxes[:, 1] >= self.min_face)
        boxes, scores = boxes[keep], scores[keep]
        landmarks = landmarks[keep] if landmarks is not None else None
        idx = nms(boxes, scores, self.nms_threshold)
        return Detections(boxes[idx], scores[idx], landmarks=None if landmarks is None else landmarks[idx])

    def _detect_at(self, image_bgr: np.ndarray, scale: float) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """Raw faces found in the image resized by ``scale``, mapped back to its pixels."""
        h, w = image_bgr.shape[:2]
        img = image_bgr
        if abs(scale - 1.0) > 1e-3:
            img = cv2.resize(image_bgr, (max(1, int(round(w * scale))), max(1, int(round(h * scale)))),
                             interpolation=cv2.INTER_LINEAR if scale > 1 else cv2.INTER_AREA)
        boxes, scores, landmarks = self._detect(img)
        sx, sy = w / img.shape[1], h / img.shape[0]
        boxes = (boxes * np.array([sx, sy, sx, sy], np.float32)).reshape(-1, 4)
        if landmarks is not None:
            landmarks = landmarks * np.array([sx, sy], np.float32)
        return boxes, scores.reshape(-1), landmarks

    def scales_for(self, w: int, h: int) -> list[float]:
        """The resize factors used for a w x h image: ``upscale`` if set, else det_size / longer side for each
        det_size (capped at 4; 0 = 1.0). Several det_sizes are several passes whose faces are merged by NMS."""
        if self.upscale is not None:
            return [self.upscale]
        scales: list[float] = []
        for size in self.det_sizes:
            s = 1.0 if size == 0 else min(4.0, size / max(w, h))
            if all(abs(s - t) > 1e-3 for t in scales):
                scales.append(s)
        return scales

    def _detect(self, image_bgr: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """Subclasses: raw boxes (n, 4) xyxy pixels of ``image_bgr``, scores (n,), landmarks (n, 5, 2) or None."""
        raise NotImplementedError


def nms(boxes: np.ndarray, scores: np.ndarray, iou: float) -> np.ndarray:
    """Indices kept by greedy non-maximum suppression (xyxy boxes), highest score first."""
    if len(boxes) == 0:
        return np.zeros(0, np.int64)
    xywh = np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], 1).tolist()
    kept = np.array(cv2.dnn.NMSBoxes(xywh, scores.astype(float).tolist(), 0.0, iou), np.int64).reshape(-1)
    return kept[np.argsort(-scores[kept], kind="stable")]
