"""Evaluate a mask classifier on labelled data: crops from the ground-truth boxes, report per class and size."""

from __future__ import annotations

import csv
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..boxes import snap_to_detections
from ..classifier import MaskClassifier
from ..crops import crop_faces, whole_image_box
from ..datasets import Dataset, iter_images
from ..images import load_image
from . import metrics


def evaluate_classifier(clf: MaskClassifier, ds: Dataset, progress: Callable[[int], None] | None = None,
                        batch: int = 64, face_detector: Any = None, errors_dir: str | os.PathLike | None = None,
                        with_probs: bool = False) -> dict[str, Any]:
    """Classify every labelled face of ``ds`` (crops cut from its boxes the way run time cuts them).

    ``face_detector``: if given, each true box is replaced by the detected face box it overlaps best (IoU >= 0.5),
    the framing the classifier gets at run time; faces it misses keep their true box (``snapped`` counts the
    replaced ones). Face sizes are always those of the true boxes.
    ``errors_dir``: also write every misclassified face there (see :func:`write_errors`); ``errors`` then
    counts them.
    Returns ``report`` (per class), ``by_size`` (shorter box side, px), ``unknown_class`` (faces of a class
    the model does not know, e.g. mask_incorrect for a two-class model: what they were called) and ``skipped``;
    with ``with_probs`` also, per face, ``probs`` (n x len(class_names), the model's probabilities) and ``truth``
    (its label) as arrays.
    """
    names = clf.class_names
    crops: list[np.ndarray] = []
    labels: list[str] = []
    sizes: list[float] = []
    probs: list[np.ndarray] = []
    where: list[tuple[Path, np.ndarray, bool]] = []  # image, crop box, whole-image sample: for the error gallery
    skipped: list[str] = []
    queued = n_snapped = 0
    for im, img in iter_images(ds.images, skipped, progress):
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
        where += [(im.path, b, ib is None) for b, ib in zip(framing, im.boxes)]
        labels += im.labels
        sizes += np.minimum(arr[:, 2] - arr[:, 0], arr[:, 3] - arr[:, 1]).tolist()
        queued += len(arr)
        if queued >= batch:
            probs.append(clf.predict(np.concatenate(crops)))
            crops, queued = [], 0
    if crops:
        probs.append(clf.predict(np.concatenate(crops)))
    prob = np.concatenate(probs) if probs else np.zeros((0, len(names)), np.float32)
    pred = clf.decide(prob)
    lab = np.array(labels)
    known = np.isin(lab, names) if len(lab) else np.zeros(0, bool)
    yt = np.array([names.index(x) for x in lab[known]], np.int64)
    yp = pred[known]
    sz = np.array(sizes, np.float32)[known]
    unknown: dict[str, dict[str, int]] = {}
    for x, p in zip(lab[~known], pred[~known]):
        d = unknown.setdefault(str(x), {})
        d[names[int(p)]] = d.get(names[int(p)], 0) + 1
    result: dict[str, Any] = {
        "report": metrics.report(yt, yp, names),
        "by_size": metrics.report_by_size(yt, yp, sz, names),
        "unknown_class": unknown,
        "skipped": skipped,
        "snapped": n_snapped,
    }
    if with_probs:
        result.update(probs=prob, truth=lab)
    if errors_dir is not None:
        wrong = np.flatnonzero(known)[yp != yt]
        result["errors"] = write_errors(errors_dir, [where[i] for i in wrong], lab[wrong].tolist(),
                                        [names[int(p)] for p in pred[wrong]], prob[wrong], names, clf.margin)
    return result


def write_errors(folder: str | os.PathLike, faces: list[tuple[Path, np.ndarray, bool]], truth: list[str], predicted: list[str],
                 probs: np.ndarray, class_names: tuple[str, ...], margin: float, tile: int = 128) -> int:
    """Save each misclassified face for a person to look at: ``TRUE_as_PREDICTED/NNN_STEM_K.jpg``.

    ``faces``: (image path, crop box xyxy px, whole-image sample) per face. Each JPEG shows the crop the
    classifier saw and, for faces in scenes, beside it the face in its surroundings (three times the box, the
    box drawn in yellow), ``tile`` px high.
    NNN is the probability of the wrong class in percent, so the surest mistakes sort first; often they are
    label errors. ``errors.csv`` lists image, box, truth, prediction and the probabilities. Returns the count.
    """
    import cv2

    from ..crops import crop_square, square_boxes

    root = Path(folder)
    root.mkdir(parents=True, exist_ok=True)
    loaded: Path | None = None  # faces come grouped by image: decode each image once
    with open(root / "errors.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["image", "x1", "y1", "x2", "y2", "truth", "predicted", *(f"p_{c}" for c in class_names), "file"])
        for k, ((path, box, whole), t, p, pr) in enumerate(zip(faces, truth, predicted, probs)):
            if path != loaded:
                img, loaded = load_image(path), path
            view = crop_square(img, square_boxes(box, margin)[0], tile)
            if not whole:  # a face-crop image has no surroundings to show
                wide = square_boxes(box, margin, scale=3.0)[0]
                ctx = crop_square(img, wide, tile)
                f = tile / (wide[2] - wide[0])
                x1, y1, x2, y2 = ((np.asarray(box, np.float32) - wide[[0, 1, 0, 1]]) * f).round().astype(int)
                cv2.rectangle(ctx, (int(x1), int(y1)), (int(x2), int(y2)), (0, 255, 255), 1)
                view = np.hstack([view, ctx])
            sub = root / f"{t}_as_{p}"
            sub.mkdir(exist_ok=True)
            name = f"{int(round(100 * float(pr[class_names.index(p)]))):03d}_{Path(path).stem[:60]}_{k}.jpg"
            cv2.imwrite(str(sub / name), view)
            w.writerow([str(path), *(f"{v:.1f}" for v in box), t, p, *(f"{v:.4f}" for v in pr), f"{sub.name}/{name}"])
    return len(faces)
