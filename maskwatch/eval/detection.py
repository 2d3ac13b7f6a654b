"""End-to-end accuracy on scene sets (VOC or YOLO): AP@0.5 per class and face recall by face size."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Protocol

import numpy as np

from ..boxes import iou_matrix
from ..datasets import Dataset, iter_images
from ..detections import Detections
from ..errors import InputError
from .metrics import SIZE_BINS


class _Detects(Protocol):
    def detect(self, image: np.ndarray) -> Detections: ...


def match_faces(truth: np.ndarray, found: np.ndarray, order: np.ndarray, iou: float = 0.5) -> np.ndarray:
    """For each detected box (m, 4), the index of the true box (n, 4) it is matched to, or -1: one to one, boxes
    taken in ``order`` (highest score first), each to the free true box it overlaps most at IoU >= ``iou``."""
    match = np.full(len(found), -1, np.int64)
    ious = iou_matrix(np.asarray(found, np.float32).reshape(-1, 4), np.asarray(truth, np.float32).reshape(-1, 4))
    used = np.zeros(ious.shape[1], bool)
    for i in order:
        if not ious.shape[1]:
            break
        cand = np.where(used, -1.0, ious[i])
        g = int(cand.argmax())
        if cand[g] >= iou:
            match[i], used[g] = g, True
    return match


def face_outcomes(model: _Detects, ds: Dataset, iou: float = 0.5,
                  progress: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Every box ``model`` returns on the scene images of ``ds``, with what it lies on, for choosing thresholds
    (``benchmarks/operating_points.py``) and counting false alarms.

    Returns arrays over boxes: ``face_score``, ``probs`` (n, k over ``class_names``), ``truth`` (the label of the
    annotated face matched one to one at IoU >= ``iou``, or "" for a box on no annotated face), ``best_iou`` (with
    any annotated face), ``best_label`` (the label of that face, "" where there is none) and ``image`` (index among
    the images read); per annotated face: ``gt_labels``, ``gt_found`` (matched by some box), ``gt_image``; ``n_images``;
    ``skipped``."""
    scores: list[np.ndarray] = []
    probs: list[np.ndarray] = []
    best_iou: list[np.ndarray] = []
    best_label: list[str] = []
    truth: list[str] = []
    image: list[int] = []
    gt_labels: list[str] = []
    gt_found: list[bool] = []
    gt_image: list[int] = []
    skipped: list[str] = []
    names: tuple[str, ...] = ()
    for k, (im, img) in enumerate(iter_images(ds.images, skipped, progress)):
        det = model.detect(img)
        names = det.class_names
        gt = np.array([b for b in im.boxes if b is not None], np.float32).reshape(-1, 4)
        match = match_faces(gt, det.xyxy, np.argsort(-det.face_score, kind="stable"), iou)
        scores.append(det.face_score)
        probs.append(det.probs)
        ious = iou_matrix(det.xyxy, gt)
        best_iou.append(ious.max(1) if ious.size else np.zeros(len(det), np.float32))
        best_label += [im.labels[int(g)] for g in ious.argmax(1)] if ious.size else [""] * len(det)
        truth += [im.labels[g] if g >= 0 else "" for g in match]
        image += [k] * len(det)
        gt_labels += list(im.labels)
        gt_image += [k] * len(im.labels)
        found = np.zeros(len(gt), bool)
        found[match[match >= 0]] = True
        gt_found += found.tolist()
    return {
        "class_names": names, "face_score": np.concatenate(scores) if scores else np.zeros(0, np.float32),
        "probs": np.concatenate(probs) if probs else np.zeros((0, len(names)), np.float32),
        "truth": np.array(truth, dtype=object), "image": np.array(image, np.int64),
        "best_iou": np.concatenate(best_iou) if best_iou else np.zeros(0, np.float32),
        "best_label": np.array(best_label, dtype=object),
        "gt_labels": np.array(gt_labels, dtype=object), "gt_found": np.array(gt_found, bool),
        "gt_image": np.array(gt_image, np.int64), "n_images": len(ds.images) - len(skipped), "skipped": skipped,
    }


def voc_ap(recall: np.ndarray, precision: np.ndarray) -> float:
    """All-point interpolated average precision (VOC 2010+)."""
    r = np.concatenate([[0.0], recall, [1.0]])
    p = np.concatenate([[0.0], precision, [0.0]])
    for i in range(len(p) - 2, -1, -1):
        p[i] = max(p[i], p[i + 1])
    idx = np.nonzero(r[1:] != r[:-1])[0]
    return float(np.sum((r[idx + 1] - r[idx]) * p[idx + 1]))


def face_ap(scored: list[tuple[float, bool]], n_gt: int) -> float:
    """AP@0.5 of face boxes regardless of class: ``scored`` holds (face score, matched to an annotated face) for every
    box, ``n_gt`` the annotated faces."""
    if not scored:
        return 0.0
    ranked = sorted(scored, key=lambda t: -t[0])
    tp = np.cumsum([t[1] for t in ranked])
    fp = np.cumsum([not t[1] for t in ranked])
    return voc_ap(tp / max(n_gt, 1), tp / np.maximum(tp + fp, 1))


LOOSE_IOU = 0.3
"""A box at IoU 0.3-0.5 with a face that nothing else matched lies on that face, framed another way."""

SHOWN_LABELS = ("without_mask", "with_mask", "mask_incorrect")
"""The labels whose precision and recall get intervals (red, green, orange)."""


def photo_resamples(n: int, resamples: int = 1000, seed: int = 0) -> np.ndarray:
    """(resamples, n) weights: how often each of ``n`` photos is drawn in each resample with replacement (seeded).
    A figure summed over photos is ``weights @ per_photo``; photos, not boxes, are the unit: faces in one photo are
    not independent."""
    rng = np.random.default_rng(seed)
    return np.stack([np.bincount(rng.integers(0, n, n), minlength=n) for _ in range(resamples)]).astype(np.float64)


def percentile_band(values: np.ndarray, level: float = 0.9) -> tuple[float, float] | None:
    """The central ``level`` interval of ``values`` (NaN left out), or None when there is none."""
    v = values[~np.isnan(values)]
    if not v.size:
        return None
    return float(np.percentile(v, 50 * (1 - level))), float(np.percentile(v, 50 * (1 + level)))


def bootstrap_intervals(counts: np.ndarray, resamples: int = 1000, level: float = 0.9, seed: int = 0) -> dict[str, Any]:
    """Percentile intervals of each shown label's precision and recall and of false red boxes per 100 photos, over
    ``resamples`` resamples of the photos (``photo_resamples``). ``counts``: (photos, len(SHOWN_LABELS), 3) boxes
    shown with the label, of them right, annotated faces of the label. A value with nothing to count (no box shown,
    no face) in a resample is left out of that bound; None when it never has one."""
    if not 0.0 < level < 1.0:
        raise ValueError(f"level={level} is invalid; valid values are between 0 and 1 (e.g. 0.9)")
    n = len(counts)
    if n == 0 or resamples <= 0:
        return {}
    sums = (photo_resamples(n, resamples, seed) @ counts.reshape(n, -1)).reshape(resamples, *counts.shape[1:])

    def band(num: np.ndarray, den: np.ndarray) -> list[float] | None:
        with np.errstate(invalid="ignore", divide="ignore"):
            b = percentile_band(np.where(den > 0, num / np.where(den > 0, den, 1), np.nan), level)
        return None if b is None else list(b)

    out: dict[str, Any] = {"level": level, "resamples": resamples}
    for k, lab in enumerate(SHOWN_LABELS):
        shown, right, gt = sums[:, k, 0], sums[:, k, 1], sums[:, k, 2]
        out[lab] = {"precision": band(right, shown), "recall": band(right, gt)}
    red = SHOWN_LABELS.index("without_mask")
    out["false_red_per_100_photos"] = list(percentile_band(100 * (sums[:, red, 0] - sums[:, red, 1]) / n, level) or ())
    return out


def evaluate_detection(model: _Detects, ds: Dataset, iou: float = 0.5, progress: Callable[[int], None] | None = None,
                       classes: tuple[str, ...] = ("with_mask", "without_mask", "mask_incorrect"),
                       bootstrap: int = 1000) -> dict[str, Any]:
    """Run ``model`` on every image; AP@iou per class (a prediction is its argmax class, scored face_score x
    confidence; ground-truth faces of a class the model cannot output are ignored, not missed) and face recall
    (any class) by the ground truth's shorter side and by its true label (masked faces found, bare faces found).

    Also what a user sees, at the model's operating point: per shown label (``uncertain`` included), the boxes
    shown with it, the share of them on an annotated face of that label (precision; boxes matched one to one at
    ``iou``, highest face score first) and the share of that label's faces shown with it (recall);
    ``false_boxes_per_photo`` (boxes on no annotated face) and ``false_red_per_100_photos`` (without_mask shown on
    a face of another label or on none). ``loose_precision`` and ``false_red_loose_per_100_photos`` also count as
    right a box that overlaps, at IoU ``LOOSE_IOU`` up to ``iou``, a face of its label that no box matched: the face
    boxed in another style (maskdetect-cn's boxes take in whole heads), not a false alarm. ``intervals``: 90 %
    intervals of red, green and orange precision and recall and of false red boxes per 100 photos over ``bootstrap``
    resamples of the photos (``bootstrap_intervals``; 0: none), to tell a change from the luck of the draw.
    ``map50``: the mean AP of with_mask and without_mask, None where neither has one; ``photos``: the photos read,
    ``faces``: the annotated faces in them. Raises InputError when no annotated face of a class in ``classes`` is
    left (the annotations name other classes, or every photo with one is unreadable)."""
    n_gt = {c: 0 for c in classes}
    matched_per_class: dict[str, list[tuple[float, bool]]] = {c: [] for c in classes}
    recall_hits: dict[str, list[int]] = {name: [0, 0] for name, _, _ in SIZE_BINS}
    label_hits: dict[str, list[int]] = {}  # true label -> [faces found, faces]
    skipped: list[str] = []
    model_classes: tuple[str, ...] | None = None
    shown: dict[str, list[int]] = {}  # label -> [boxes shown, of them on a face of that label: matched, loosely]
    n_gt_all: dict[str, int] = {}
    off_face = n_images = 0
    per_photo: list[np.ndarray] = []  # (SHOWN_LABELS, 3): shown, right, annotated, per photo
    if not any(b is not None for im in ds.images for b in im.boxes):
        if any(b is None for im in ds.images for b in im.boxes):
            raise InputError("the data set has no face boxes (class folders?); end-to-end evaluation needs a VOC or YOLO "
                             "scene set; for face crops use `maskwatch evaluate`")
        raise InputError(f"no annotated face of a class maskwatch knows is left ({', '.join(classes)}, or a spelling of "
                         "them such as mask_weared_incorrect): the annotations name other classes or no face (the "
                         "loader's warnings say what it skipped); rename the classes, or give another scene set")
    times: list[float] = []
    for im, img in iter_images(ds.images, skipped, progress):
        t0 = time.perf_counter()
        det = model.detect(img)
        times.append(time.perf_counter() - t0)
        model_classes = det.class_names
        n_images += 1
        gt = np.array([b for b in im.boxes if b is not None], np.float32).reshape(-1, 4)
        gl = np.array(im.labels)
        match = match_faces(gt, det.xyxy, np.argsort(-det.face_score, kind="stable"), iou)
        off_face += int((match < 0).sum())
        for lab in im.labels:
            n_gt_all[lab] = n_gt_all.get(lab, 0) + 1
        photo = np.zeros((len(SHOWN_LABELS), 3), np.int32)
        for k, lab in enumerate(SHOWN_LABELS):
            photo[k, 2] = int((gl == lab).sum())
        per_photo.append(photo)
        ious = iou_matrix(gt, det.xyxy)
        taken = np.zeros(len(gt), bool)
        taken[match[match >= 0]] = True
        for i, (lab, g) in enumerate(zip(det.labels, match)):
            row = shown.setdefault(lab, [0, 0, 0])
            right = int(g >= 0 and im.labels[g] == lab)
            row[0] += 1
            row[1] += right
            if lab in SHOWN_LABELS:
                photo[SHOWN_LABELS.index(lab), :2] += (1, right)
            near = int(ious[:, i].argmax()) if len(gt) else -1
            loose = g < 0 and near >= 0 and ious[near, i] >= LOOSE_IOU and not taken[near] and im.labels[near] == lab
            if loose:
                taken[near] = True  # one loose box a face, as one matched box a face
            row[2] += right + int(loose)
        side = np.minimum(gt[:, 2] - gt[:, 0], gt[:, 3] - gt[:, 1]) if len(gt) else np.zeros(0)
        found = ious.max(1) >= iou if ious.size else np.zeros(len(gt), bool)
        for lab, f in zip(im.labels, found):
            hits = label_hits.setdefault(lab, [0, 0])
            hits[0] += int(f)
            hits[1] += 1
        for name, lo, hi in SIZE_BINS:
            m = (side >= lo) & (side < hi)
            recall_hits[name][0] += int(found[m].sum())
            recall_hits[name][1] += int(m.sum())
        # AP ranks every box: an uncertain face counts as its most likely class (thresholds only decide what is shown)
        ranked = np.where(det.class_id >= 0, det.class_id, det.probs.argmax(1) if len(det) else det.class_id)
        labels = [det.class_names[int(c)] if c >= 0 else "" for c in ranked]
        score = det.face_score * (det.probs[np.arange(len(det)), ranked] if len(det) else det.confidence)
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
    total = [sum(v[0] for v in recall_hits.values()), sum(v[1] for v in recall_hits.values())]
    if total[1] == 0:
        raise InputError(f"no annotated face is left to evaluate: {len(skipped)} unreadable image(s) skipped"
                         + (f" ({skipped[0]}{'; ...' if len(skipped) > 1 else ''})" if skipped else "")
                         + "; the images that were read hold no annotated face")
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
    mask_nomask = [ap[c] for c in ap if c != "mask_incorrect"]
    per_label = {lab: {"shown": v[0], "right": v[1], "precision": v[1] / v[0] if v[0] and lab != "uncertain" else None,
                       "loose_precision": v[2] / v[0] if v[0] and lab != "uncertain" else None,
                       "recall": v[1] / n_gt_all[lab] if n_gt_all.get(lab) else None} for lab, v in sorted(shown.items())}
    red = shown.get("without_mask", [0, 0, 0])
    return {
        "labels": per_label,
        "false_boxes_per_photo": off_face / max(n_images, 1),
        "false_red_per_100_photos": 100 * (red[0] - red[1]) / max(n_images, 1),
        "false_red_loose_per_100_photos": 100 * (red[0] - red[2]) / max(n_images, 1),
        "ap50": ap,
        "map50": float(np.mean(mask_nomask)) if mask_nomask else None,  # None: no with_mask/without_mask AP exists
        "photos": n_images,  # read (``skipped``: not)
        "faces": total[1],  # annotated, in the photos read
        "face_recall": total[0] / max(total[1], 1),
        "face_recall_by_size": {k: (v[0] / v[1] if v[1] else None) for k, v in recall_hits.items()},
        "faces_by_size": {k: v[1] for k, v in recall_hits.items()},
        "face_recall_by_label": {k: v[0] / v[1] for k, v in sorted(label_hits.items())},
        "gt_counts": n_gt,
        "ms_per_photo": 1000 * float(np.median(times)) if times else None,  # median, detect() alone (no decoding)
        "intervals": bootstrap_intervals(np.array(per_photo).reshape(-1, len(SHOWN_LABELS), 3), bootstrap),
        "skipped": skipped,
    }
