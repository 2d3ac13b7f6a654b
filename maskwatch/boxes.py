"""Box geometry shared by the runtime, training and evaluation: IoU matrices, snapping boxes to detections,
and the detections that lie on no annotated face. Boxes are xyxy float pixels (x1, y1, x2, y2)."""

from __future__ import annotations

import numpy as np


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU between every xyxy box of a (n, 4) and b (m, 4) -> (n, m)."""
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)), np.float32)
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-9)


def snap_to_detections(truth: np.ndarray, found: np.ndarray, iou: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """Replace each true box (n, 4 xyxy) by the detected box (m, 4) it overlaps best, one to one, greedily by IoU,
    where that IoU is at least ``iou``: the framing the classifier gets at run time. Returns (boxes, snapped mask);
    true boxes without a match stay as they are."""
    out = np.array(truth, np.float32, copy=True).reshape(-1, 4)
    snapped = np.zeros(len(out), bool)
    ious = iou_matrix(out, np.asarray(found, np.float32).reshape(-1, 4))
    while ious.size and ious.max() >= iou:
        g, d = np.unravel_index(int(ious.argmax()), ious.shape)
        out[g], snapped[g] = found[d], True
        ious[g, :], ious[:, d] = -1, -1
    return out, snapped


NOT_FACE_IOU = 0.3
"""A detected box whose IoU with every annotated face is below this lies on no face (training's not_face crops)."""


def off_faces(truth: np.ndarray, found: np.ndarray, iou: float = NOT_FACE_IOU) -> np.ndarray:
    """Boolean mask over ``found`` (m, 4): the detections that overlap no true box (n, 4) at ``iou`` or more."""
    found = np.asarray(found, np.float32).reshape(-1, 4)
    ious = iou_matrix(found, np.asarray(truth, np.float32).reshape(-1, 4))
    return ious.max(1) < iou if ious.size else np.ones(len(found), bool)
