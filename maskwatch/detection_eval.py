"""End-to-end accuracy on scene sets (VOC or YOLO): AP@0.5 per class and face recall by face size."""

from __future__ import annotations

from typing import Any, Callable, Protocol

import numpy as np

from .datasets import Dataset
from .detections import Detections
from .errors import InputError
from .images import load_image
from .metrics import SIZE_BINS


class _Detects(Protocol):
    def detect(self, image: np.ndarray) -> Detections: ...


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


def voc_ap(recall: np.ndarray, precision: np.ndarray) -> float:
    """All-point interpolated average precision (VOC 2010+)."""
    r = np.concatenate([[0.0], recall, [1.0]])
    p = np.concatenate([[0.0], precision, [0.0]])
    for i in range(len(p) - 2, -1, -1):
        p[i] = max(p[i], p[i + 1])
    idx = np.nonzero(r[1:] != r[:-1])[0]
    return float(np.sum((r[idx + 1] - r[idx]) * p[idx + 1]))


def evaluate_detection(model: _Detects, ds: Dataset, iou: float = 0.5, progress: Callable[[int], None] | None = None,
                       classes: tuple[str, ...] = ("with_mask", "without_mask", "mask_incorrect")) -> dict[str, Any]:
    """Run ``model`` on every image; AP@iou per class (a prediction is its argmax class, scored face_score x
    confidence; ground-truth faces of a class the model cannot output are ignored, not missed) and face recall
    (any class) by the ground truth's shorter side."""
    n_gt = {c: 0 for c in classes}
    matched_per_class: dict[str, list[tuple[float, bool]]] = {c: [] for c in classes}
    recall_hits: dict[str, list[int]] = {name: [0, 0] for name, _, _ in SIZE_BINS}
    skipped: list[str] = []
    model_classes: tuple[str, ...] | None = None
    if not any(b is not None for im in ds.images for b in im.boxes):
        raise InputError("the data set has no face boxes (class folders?); end-to-end evaluation needs a VOC or YOLO "
                         "scene set; for face crops use `maskwatch evaluate`")
    for k, im in enumerate(ds.images):
        if progress:
            progress(1)
        try:
            img = load_image(im.path)
        except InputError as e:
            skipped.append(str(e))
            continue
        det = model.detect(img)
        model_classes = det.class_names
        gt = np.array([b for b in im.boxes if b is not None], np.float32).reshape(-1, 4)
        gl = np.array(im.labels)
        ious = iou_matrix(gt, det.xyxy)
        side = np.minimum(gt[:, 2] - gt[:, 0], gt[:, 3] - gt[:, 1]) if len(gt) else np.zeros(0)
        found = ious.max(1) >= iou if ious.size else np.zeros(len(gt), bool)
        for name, lo, hi in SIZE_BINS:
            m = (side >= lo) & (side < hi)
            recall_hits[name][0] += int(found[m].sum())
            recall_hits[name][1] += int(m.sum())
        labels = det.labels
        score = det.face_score * det.confidence
        for c in classes:
            if c not in det.class_names:
                continue
            gi = np.nonzero(gl == c)[0]
            ignore = np.nonzero(~np.isin(gl, det.class_names))[0]  # GT of classes the model cannot say
            n_gt[c] += len(gi)
            pi = [i for i, lab in enumerate(labels) if lab == c]
            used = np.zeros(len(gt), bool)
            for i in sorted(pi, key=lambda i: -score[i]):
                if len(gt) == 0:
                    matched_per_class[c].append((float(score[i]), False))
                    continue
                cand = [(ious[g, i], g) for g in gi if not used[g]]
                best = max(cand, default=(0.0, -1))
                if best[0] >= iou:
                    used[best[1]] = True
                    matched_per_class[c].append((float(score[i]), True))
                elif any(ious[g, i] >= iou for g in ignore):
                    continue
                else:
                    matched_per_class[c].append((float(score[i]), False))
    ap = {}
    for c in classes:
        if model_classes is not None and c not in model_classes or n_gt[c] == 0:
            continue
        m = sorted(matched_per_class[c], key=lambda t: -t[0])
        tp = np.cumsum([t[1] for t in m]) if m else np.zeros(0)
        fp = np.cumsum([not t[1] for t in m]) if m else np.zeros(0)
        rec = tp / n_gt[c] if len(m) else np.zeros(0)
        prec = tp / np.maximum(tp + fp, 1) if len(m) else np.zeros(0)
        ap[c] = voc_ap(rec, prec)
    total = [sum(v[0] for v in recall_hits.values()), sum(v[1] for v in recall_hits.values())]
    return {
        "ap50": ap,
        "map50": float(np.mean([ap[c] for c in ap if c != "mask_incorrect"])) if ap else 0.0,
        "face_recall": total[0] / max(total[1], 1),
        "face_recall_by_size": {k: (v[0] / v[1] if v[1] else None) for k, v in recall_hits.items()},
        "faces_by_size": {k: v[1] for k, v in recall_hits.items()},
        "gt_counts": n_gt,
        "skipped": skipped,
    }
