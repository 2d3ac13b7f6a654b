"""OpenCV's res10 SSD face detector (the founding documents' detector), TensorFlow uint8 weights, 300x300 input."""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from ..errors import ModelError
from ..models import resolve
from .base import FaceDetector


class SSDDetector(FaceDetector):
    name = "ssd"

    def __init__(self, model: str = "ssd_pb", config: str = "ssd_pbtxt", input_size: int = 300, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        pb, pbtxt = resolve(model), resolve(config)
        try:
            self._net = cv2.dnn.readNetFromTensorflow(str(pb), str(pbtxt))
        except cv2.error as e:
            raise ModelError(f"{pb}: the SSD face detector could not load it ({str(e).strip().splitlines()[-1][:160]})") from None
        self.input_size = input_size

    def _detect(self, image_bgr: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        h, w = image_bgr.shape[:2]
        s = self.input_size
        self._net.setInput(cv2.dnn.blobFromImage(image_bgr, 1.0, (s, s), (104, 117, 123), swapRB=False, crop=False))
        det = self._net.forward()[0, 0]
        det = det[det[:, 2] >= min(self.score_threshold, 0.3)]
        boxes = det[:, 3:7] * np.array([w, h, w, h], np.float32)
        return boxes.astype(np.float32), det[:, 2].astype(np.float32), None
