"""OpenCV's Haar cascade (ships inside opencv-python 4.x, no download). Frontal faces only; a baseline."""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from ..errors import ModelError
from .base import FaceDetector

DEFAULT_CASCADE = "haarcascade_frontalface_default.xml"


def cascade_path(cascade: str = DEFAULT_CASCADE) -> str | None:
    """Where OpenCV keeps a Haar cascade it ships (a path with a folder is taken as it is); None for an OpenCV
    build without them (source and distribution builds may lack ``cv2.data``; OpenCV 5 dropped them)."""
    if "/" in cascade:
        return cascade
    folder = getattr(getattr(cv2, "data", None), "haarcascades", None)
    return folder + cascade if folder else None


class HaarDetector(FaceDetector):
    name = "haar"

    def __init__(self, cascade: str = DEFAULT_CASCADE, min_neighbors: int = 5, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        path = cascade_path(cascade)
        if path is None:
            raise ModelError("this OpenCV build ships no Haar cascades (no cv2.data); install opencv-python-headless<5")
        self._cc = cv2.CascadeClassifier(path)
        if self._cc.empty():
            raise ModelError(f"{path}: Haar cascade not found or unreadable; OpenCV 5 dropped the cascades, install opencv-python-headless<5")
        self.min_neighbors = min_neighbors

    def _detect(self, image_bgr: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        grey = cv2.equalizeHist(cv2.cvtColor(image_bgr, cv2.COLOR_BGR2GRAY))
        rects, _, weights = self._cc.detectMultiScale3(grey, 1.1, self.min_neighbors, minSize=(12, 12), outputRejectLevels=True)
        if len(rects) == 0:
            return np.zeros((0, 4), np.float32), np.zeros(0, np.float32), None
        r = np.asarray(rects, np.float32)
        boxes = np.concatenate([r[:, :2], r[:, :2] + r[:, 2:]], 1)
        # Level weights are unbounded; squash to 0..1 so score_threshold means the same as for other detectors.
        scores = 1 / (1 + np.exp(-(np.asarray(weights, np.float32).reshape(-1))))
        return boxes, scores.astype(np.float32), None
