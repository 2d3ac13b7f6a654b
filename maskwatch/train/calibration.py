"""Calibration: the temperature T that turns a classifier's softmax(logits) into softmax(logits / T), probabilities
that mean what they say (Guo et al. 2017). ``maskwatch train`` fits it on its validation crops; ``maskwatch soup``
fits it again for the averaged model on labelled sources (``calibrate``), since no member's temperature is the
soup's. Torch-free (NumPy and the run-time classifier)."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..datasets import Dataset, load_sources
from ..errors import InputError
from ..settings import PHOTO_DET_SIZE, PHOTO_FACE_DETECTOR
from .soup import META_KEY


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """Temperature T (0.25-10) minimising the negative log-likelihood of softmax(logits / T) on held-out crops
    (Guo et al. 2017): probabilities that mean what they say. A golden-section search on log T."""
    z = np.asarray(logits, np.float64)
    y = np.asarray(labels, np.int64)

    def nll(log_t: float) -> float:
        s = z / np.exp(log_t)
        s = s - s.max(1, keepdims=True)
        return float(np.mean(np.log(np.exp(s).sum(1)) - s[np.arange(len(y)), y]))

    a, b = np.log(0.25), np.log(10.0)
    g = (np.sqrt(5) - 1) / 2
    c, d = b - g * (b - a), a + g * (b - a)
    for _ in range(60):
        if nll(c) < nll(d):
            b, d = d, c
            c = b - g * (b - a)
        else:
            a, c = c, d
            d = a + g * (b - a)
    return float(np.exp((a + b) / 2))


def calibrate(model: str | os.PathLike, specs: list[str], scene_detector: str = f"{PHOTO_FACE_DETECTOR}:{PHOTO_DET_SIZE}",
              progress: Callable[[int], None] | None = None, ds: Dataset | None = None,
              skipped: list[str] | None = None) -> tuple[float, int]:
    """Fit the temperature of ``model`` (a maskwatch classifier ONNX file) on the labelled faces of ``specs`` (class
    folders or scene sets, e.g. ``SET@val``), cropped as at run time (scene faces framed by ``scene_detector``'s
    matching box, ``NAME:SIZES``), and write it into the file's metadata. Returns (temperature, faces used).
    Faces of a class the model cannot output are left out. ``ds``: ``specs`` already loaded (not read again).
    ``skipped``, if given, gets the messages of the images that could not be read."""
    import onnx

    from ..classifier import MaskClassifier
    from ..eval.classification import evaluate_classifier
    from .cropset import scene_face_detector

    clf = MaskClassifier(model)
    clf.temperature = 1.0  # the raw softmax: its log is the logits up to a constant per face
    res = evaluate_classifier(clf, ds if ds is not None else load_sources(specs), progress=progress, face_detector=scene_face_detector(scene_detector),
                              with_probs=True)
    if skipped is not None:
        skipped.extend(res["skipped"])
    known = np.isin(res["truth"], clf.class_names)
    if known.sum() < 20:
        raise InputError(f"calibration needs at least 20 labelled faces of the model's classes in {', '.join(specs)}; "
                         f"found {int(known.sum())}")
    labels = np.array([clf.class_names.index(t) for t in res["truth"][known]], np.int64)
    temperature = fit_temperature(np.log(np.maximum(res["probs"][known], 1e-12)), labels)
    m = onnx.load(str(model))
    prop = next(p for p in m.metadata_props if p.key == META_KEY)
    meta = json.loads(prop.value)
    meta["temperature"] = float(temperature)
    meta.setdefault("data", {})["calibration"] = {"faces": int(known.sum()), "sources": [str(s) for s in specs],
                                                  "scene_detector": scene_detector}
    prop.value = json.dumps(meta)
    onnx.save(m, str(Path(model)))
    return temperature, int(known.sum())
