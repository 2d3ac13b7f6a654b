"""What every face detector shares: settings, upscaling for small faces, NMS, box clipping."""

from __future__ import annotations

import cv2
import numpy as np

from ..detections import Detections
from ..errors import InputError


class FaceDetector:
    """Base class. ``detect(image_bgr)`` -> Detections with xyxy pixel boxes (of the image passed in) and face scores.

    score_threshold: minimum face score, 0..1 (the documents use 0.5). nms_threshold: IoU above which
    overlapping boxes are merged. det_size: the image is resized so that its longer side is this many
    pixels before detection (800 finds 10-20 px faces in 400 px photos; 320 is fast on 640x480 video;
    0 = as is). upscale: a fixed resize factor instead of det_size. Boxes are always mapped back to the
    input image. min_face: smallest box side kept, in pixels of the input image.
    """

    name = "base"

    def __init__(self, score_threshold: float = 0.5, nms_threshold: float = 0.3, det_size: int = 640,
                 upscale: float | None = None, min_face: float = 4.0) -> None:
        if not 0.0 <= score_threshold <= 1.0:
            raise InputError(f"score_threshold={score_threshold} is invalid; valid values are between 0.0 and 1.0")
        if not 0.0 < nms_threshold <= 1.0:
            raise InputError(f"nms_threshold={nms_threshold} is invalid; valid values are in (0.0, 1.0]")
        if upscale is not None and not 0.1 <= upscale <= 4.0:
            raise InputError(f"upscale={upscale} is invalid; valid values are between 0.1 and 4.0")
        if det_size != 0 and not 64 <= det_size <= 4096:
            raise InputError(f"det_size={det_size} is invalid; valid values are 0 (no resize) or 64..4096 pixels")
        self.det_size = det_size
        self.score_threshold = score_threshold
        self.nms_threshold = nms_threshold
        self.upscale = upscale
        self.min_face = min_face

    def detect(self, image_bgr: np.ndarray) -> Detections:
        """Faces in a BGR uint8 image (h, w, 3)."""
        if image_bgr.ndim != 3 or image_bgr.shape[2] != 3 or image_bgr.dtype != np.uint8:
            raise InputError(f"expected a BGR uint8 image of shape (h, w, 3), got {image_bgr.dtype} {image_bgr.shape}; use maskwatch.load_image")
        h, w = image_bgr.shape[:2]
        img = image_bgr
        scale = self.scale_for(w, h)
        if abs(scale - 1.0) > 1e-3:
            img = cv2.resize(image_bgr, (max(1, int(round(w * scale))), max(1, int(round(h * scale)))),
                             interpolation=cv2.INTER_LINEAR if scale > 1 else cv2.INTER_AREA)
        boxes, scores, landmarks = self._detect(img)
        if len(boxes) == 0:
            return Detections.empty()
        sx, sy = w / img.shape[1], h / img.shape[0]
        boxes = boxes * np.array([sx, sy, sx, sy], np.float32)
        if landmarks is not None:
            landmarks = landmarks * np.array([sx, sy], np.float32)
        keep = scores >= self.score_threshold
        boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, w)
        boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, h)
        keep &= (boxes[:, 2] - boxes[:, 0] >= self.min_face) & (boxes[:, 3] - boxes[:, 1] >= self.min_face)
        boxes, scores = boxes[keep], scores[keep]
        landmarks = landmarks[keep] if landmarks is not None else None
        idx = nms(boxes, scores, self.nms_threshold)
        return Detections(boxes[idx], scores[idx], landmarks=None if landmarks is None else landmarks[idx])

    def scale_for(self, w: int, h: int) -> float:
        """The resize factor used for a w x h image (upscale if set, else det_size / longer side, capped at 4)."""
        if self.upscale is not None:
            return self.upscale
        if self.det_size == 0:
            return 1.0
        return min(4.0, self.det_size / max(w, h))

    def _detect(self, image_bgr: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """Subclasses: raw boxes (n, 4) xyxy pixels of ``image_bgr``, scores (n,), landmarks (n, 5, 2) or None."""
        raise NotImplementedError


def nms(boxes: np.ndarray, scores: np.ndarray, iou: float) -> np.ndarray:
    """Indices kept by greedy non-maximum suppression (xyxy boxes), highest score first."""
    if len(boxes) == 0:
        return np.zeros(0, np.int64)
    xywh = np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], 1).tolist()
    keep = cv2.dnn.NMSBoxes(xywh, scores.astype(float).tolist(), 0.0, iou)
    keep = np.array(keep, np.int64).reshape(-1)
    return keep[np.argsort(-scores[keep], kind="stable")]
