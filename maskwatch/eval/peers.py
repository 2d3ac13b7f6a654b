"""Peer models we measure ourselves against (not used by the product pipeline).

AIZOO FaceMaskDetection 360: a single-stage SSD that finds faces and says Mask / NoMask in one pass
(``../shared/models/MODELS.md`` gives its anchors and decoding, reproduced here).
"""

from __future__ import annotations

import cv2
import numpy as np

from ..detections import Detections
from ..detectors.base import nms
from ..errors import ModelError
from ..models import PEERS, ModelFile, resolve

PEERS["aizoo"] = ModelFile(
    "aizoo", "aizoo_facemask_360.onnx", None,
    ("9232b5b2b6fe58ead1900cb2dc6f18a025caaf5c93945e52f25c0ce8b022a2f8",),
    "AIZOO FaceMaskDetection 360 (peer model for comparison; an ONNX export of AIZOO's model360.pth, "
    "no official ONNX download exists)", "MIT",
)


def aizoo_anchors(fmaps: tuple[int, ...] = (45, 23, 12, 6, 4)) -> np.ndarray:
    sizes = [[0.04, 0.056], [0.08, 0.11], [0.16, 0.22], [0.32, 0.45], [0.64, 0.72]]
    out = []
    for f, (s1, s2) in zip(fmaps, sizes):
        c = (np.arange(f) + 0.5) / f
        cx, cy = np.meshgrid(c, c)
        wh = [(s1, s1), (s2, s2), (s1 * 0.62**0.5, s1 / 0.62**0.5), (s1 * 0.42**0.5, s1 / 0.42**0.5)]
        a = np.stack([np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], -1) for w, h in wh], 2)
        out.append(a.reshape(-1, 4))
    return np.concatenate(out)


class AizooDetector:
    """``detect(image_bgr) -> Detections`` with class_names (with_mask, without_mask); AIZOO's defaults conf 0.5, IoU 0.4."""

    name = "aizoo"

    def __init__(self, model: str = "aizoo", score_threshold: float = 0.5, nms_threshold: float = 0.4) -> None:
        path = resolve(model)
        try:
            self.net = cv2.dnn.readNet(str(path))
        except cv2.error as e:
            raise ModelError(f"{path}: could not load the AIZOO model ({str(e).strip().splitlines()[-1][:120]})") from None
        self.anchors = aizoo_anchors()
        self.score_threshold, self.nms_threshold = score_threshold, nms_threshold
        self.class_names = ("with_mask", "without_mask")

    def detect(self, image_bgr: np.ndarray) -> Detections:
        h, w = image_bgr.shape[:2]
        self.net.setInput(cv2.dnn.blobFromImage(cv2.cvtColor(image_bgr, cv2.COLOR_BGR2RGB), 1 / 255.0, (360, 360)), "data")
        loc, cls = self.net.forward(["loc", "cls"])
        a = self.anchors
        aw, ah = a[:, 2] - a[:, 0], a[:, 3] - a[:, 1]
        d = loc[0] * np.array([0.1, 0.1, 0.2, 0.2])
        cx, cy = d[:, 0] * aw + (a[:, 0] + a[:, 2]) / 2, d[:, 1] * ah + (a[:, 1] + a[:, 3]) / 2
        bw, bh = np.exp(d[:, 2]) * aw * w, np.exp(d[:, 3]) * ah * h
        x1, y1 = cx * w - bw / 2, cy * h - bh / 2
        boxes = np.stack([x1, y1, x1 + bw, y1 + bh], 1).astype(np.float32)
        score = cls[0].max(1)
        keep = score >= self.score_threshold
        boxes, probs, score = boxes[keep], cls[0][keep], score[keep]
        idx = nms(boxes, score, self.nms_threshold)
        p = probs[idx] / np.maximum(probs[idx].sum(1, keepdims=True), 1e-6)
        return Detections(boxes[idx], score[idx], class_id=probs[idx].argmax(1), confidence=score[idx], probs=p,
                          class_names=self.class_names)
