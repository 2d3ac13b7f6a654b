"""Evaluate a mask classifier on labelled data: crops from the ground-truth boxes, report per class and size."""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from . import metrics
from .classifier import MaskClassifier
from .crops import crop_faces, whole_image_box
from .datasets import Dataset
from .detection_eval import snap_to_detections
from .errors import InputError
from .images import load_image


def evaluate_classifier(clf: MaskClassifier, ds: Dataset, progress: Callable[[int], None] | None = None,
                        batch: int = 64, face_detector: Any = None) -> dict[str, Any]:
    """Classify every labelled face of ``ds`` (crops cut from its boxes the way run time cuts them).

    ``face_detector``: if given, each true box is replaced by the detected face box it overlaps best (IoU >= 0.5),
    the framing the classifier gets at run time; faces it misses keep their true box (``snapped`` counts the
    replaced ones). Face sizes are always those of the true boxes.
    Returns ``report`` (per class), ``by_size`` (shorter box side, px), ``unknown_class`` (faces of a class
    the model does not know, e.g. mask_incorrect for a two-class model: what they were called) and ``skipped``.
    """
    names = clf.class_names
    crops: list[np.ndarray] = []
    labels: list[str] = []
    sizes: list[float] = []
    preds: list[np.ndarray] = []
    skipped: list[str] = []
    queued = n_snapped = 0
    for im in ds.images:
        if progress:
            progress(1)
        try:
            img = load_image(im.path)
        except InputError as e:
            skipped.append(str(e))
            continue
        h, w = img.shape[:2]
        boxes = [b if b is not None else whole_image_box(w, h, clf.margin) for b in im.boxes]
        if not boxes:
            continue
        arr = np.array(boxes, np.float32)
        framing = arr
        if face_detector is not None and all(b is not None for b in im.boxes):
            framing, snapped = snap_to_detections(arr, face_detector.detect(img).xyxy)
            n_snapped += int(snapped.sum())
        crops.append(crop_faces(img, framing, clf.input_size, clf.margin))
        labels += im.labels
        sizes += np.minimum(arr[:, 2] - arr[:, 0], arr[:, 3] - arr[:, 1]).tolist()
        queued += len(arr)
        if queued >= batch:
            preds.append(clf.decide(clf.predict(np.concatenate(crops))))
            crops, queued = [], 0
    if crops:
        preds.append(clf.decide(clf.predict(np.concatenate(crops))))
    pred = np.concatenate(preds) if preds else np.zeros(0, np.int64)
    lab = np.array(labels)
    known = np.isin(lab, names) if len(lab) else np.zeros(0, bool)
    yt = np.array([names.index(x) for x in lab[known]], np.int64)
    yp = pred[known]
    sz = np.array(sizes, np.float32)[known]
    unknown: dict[str, dict[str, int]] = {}
    for x, p in zip(lab[~known], pred[~known]):
        d = unknown.setdefault(str(x), {})
        d[names[int(p)]] = d.get(names[int(p)], 0) + 1
    return {
        "report": metrics.report(yt, yp, names),
        "by_size": metrics.report_by_size(yt, yp, sz, names),
        "unknown_class": unknown,
        "skipped": skipped,
        "snapped": n_snapped,
    }

