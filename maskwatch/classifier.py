"""The mask classifier at run time: an ONNX model run by onnxruntime, one batch per frame.

Input: face crops cut by :func:`maskwatch.crops.crop_faces` (RGB, square, the model's input size).
Output: probabilities over the model's class names, written into :class:`Detections`.
"""

from __future__ import annotations

import base64
import json
import os
from typing import Any

import numpy as np

from .crops import crop_faces, to_input
from .detections import MODEL_CLASSES, NOT_FACE, UNCERTAIN_ID, Detections, label_confidence
from .errors import InputError, ModelError

DEFAULT_NOMASK_COST = 2.0
"""A bare face called masked costs twice a false alarm: the same weight the training loss gives without_mask
(TrainConfig.nomask_weight). On masks-voc-dev@test it moved without_mask recall from 0.939 to 0.970."""
MAX_VIEWS = 16
"""Crops per onnxruntime call. Its memory arena keeps the largest call's buffers for the life of the session (at
96 px about 5 MB a crop: a crowd photo of 250 faces, flipped, in one call held 1.6 GB); in calls of 16 it stays
near 40 MB, and the photo pipeline ran as fast (89.5 against 88.6 photos/s on 150 ilc-2021 photos)."""
FLIP_SURE = 0.95
"""``flip="auto"``: a face whose first look gives some class at least this probability is not looked at mirrored.
On the four scene sets' @val faces (photo operating point) 57 % of the faces skip the mirror and 13 of 889 labels
change, none for the worse in sum (MODEL_CARD.md)."""


def flip_value(flip: bool | str | None) -> bool | str:
    """``flip`` as MaskClassifier keeps it: True, False or "auto" (None: False). Raises InputError otherwise."""
    if flip not in (True, False, None, "auto"):
        raise InputError(f"flip={flip!r} is invalid; valid values are True, False and 'auto'")
    return "auto" if flip == "auto" else bool(flip)


class MaskClassifier:
    """Loads the model once. ``classify(image_bgr, detections)`` returns the detections with labels.

    ``model``: a path to a maskwatch classifier ONNX file, or the registry name ``mask_classifier`` (the
    model bundled with the package). ``threads``: onnxruntime intra-op threads (default: all cores).
    ``nomask_cost``: how much worse a bare face called masked is than the reverse; the label is the class with
    the highest probability x cost (1 = plain argmax). ``probs`` stay the model's probabilities.
    ``flip``: ``True``: also classify each crop mirrored left-right and average the two (one batched call, twice
    the work; on masks-yolo-extra it raised balanced accuracy from 0.930 to 0.942); ``"auto"``: mirror only the
    crops whose first look is not sure (no class reaches ``FLIP_SURE``), and average those; ``False``: never.
    ``sure``: the operating point, {label: probability} (0..1): a face whose label's probability is below its
    entry, or whose face score is below ``sure_face_score``, is labelled ``uncertain`` (class id -2) instead.
    Labels missing from ``sure`` are always sure (the default: no uncertain state).
    ``not_face_threshold``: for a model with a ``not_face`` class, a box whose P(not_face) is at least this is
    labelled not_face (the pipeline removes it); every other box gets the best of the face classes, so a face
    the model half-doubts is never called not_face by a plain argmax.
    """

    def __init__(self, model: str | os.PathLike = "mask_classifier", threads: int | None = None,
                 nomask_cost: float = DEFAULT_NOMASK_COST, flip: bool | str = False, sure: dict[str, float] | None = None,
                 sure_face_score: float = 0.0, not_face_threshold: float = 0.5) -> None:
        from .models import onnx_session, resolve

        self.path = resolve(model)
        try:
            self.session = onnx_session(self.path, threads)
        except Exception as e:  # onnxruntime raises its own exception types for corrupt files
            raise ModelError(f"{self.path}: not a loadable ONNX model ({str(e).splitlines()[0][:200]}); re-download or re-export it") from None
        meta = self.session.get_modelmeta().custom_metadata_map.get("maskwatch")
        if not meta:
            raise ModelError(f"{self.path}: an ONNX file without maskwatch metadata; export it with `maskwatch train`")
        self.meta: dict[str, Any] = json.loads(meta)
        self.input_size = int(self.meta["input_size"])
        self.margin = float(self.meta["margin"])
        self.model_classes = tuple(self.meta["class_names"])
        inp = self.session.get_inputs()[0]
        shape = inp.shape
        if len(shape) != 4 or shape[1] != 3 or shape[2] not in (self.input_size, None, "height") or (
            isinstance(shape[2], int) and shape[2] != self.input_size
        ):
            raise ModelError(f"{self.path}: input shape {shape} does not match N x 3 x {self.input_size} x {self.input_size}")
        outs = [o.name for o in self.session.get_outputs()]
        if "probs" not in outs:
            raise ModelError(f"{self.path}: no 'probs' output (outputs: {outs})")
        self.input_name = inp.name
        if not 1.0 <= nomask_cost <= 100.0:
            raise InputError(f"nomask_cost={nomask_cost} is invalid; valid values are between 1 and 100")
        self.nomask_cost = nomask_cost
        self.flip = flip_value(flip)
        self.sure = dict(sure or {})
        for label, p in self.sure.items():
            if not 0.0 <= p <= 1.0:
                raise InputError(f"sure[{label!r}]={p} is invalid; valid values are between 0 and 1 (a probability)")
        if not 0.0 <= sure_face_score <= 1.0:
            raise InputError(f"sure_face_score={sure_face_score} is invalid; valid values are between 0 and 1")
        self.sure_face_score = sure_face_score
        if not 0.0 < not_face_threshold <= 1.0:
            raise InputError(f"not_face_threshold={not_face_threshold} is invalid; valid values are above 0 and at most 1")
        self.not_face_threshold = not_face_threshold
        # Map model classes onto maskwatch's MODEL_CLASSES columns (a two-class model has no mask_incorrect or not_face).
        unknown = [c for c in self.model_classes if c not in MODEL_CLASSES]
        if unknown:
            raise ModelError(f"{self.path}: unknown class names {unknown}; expected a subset of {MODEL_CLASSES}")
        self.class_names = tuple(c for c in MODEL_CLASSES if c in self.model_classes)
        self._order = [self.model_classes.index(c) for c in self.class_names]
        self.temperature = float(self.meta.get("temperature", 1.0))  # calibration fitted on validation crops
        if not 0.05 <= self.temperature <= 20:
            raise ModelError(f"{self.path}: temperature {self.temperature} in its metadata is outside 0.05-20; re-export it")

    def decide(self, probs: np.ndarray, face_score: np.ndarray | None = None) -> np.ndarray:
        """Class ids (n,) for probabilities (n, k) over ``class_names``: not_face where P(not_face) reaches
        ``not_face_threshold``; else the face class with the highest probability x cost, or -2 (uncertain) where
        that class's probability is below its ``sure`` threshold or the face score (n,) below ``sure_face_score``."""
        if len(probs) == 0:
            return np.zeros(0, np.int64)
        probs = np.asarray(probs)
        costs = np.array([self.nomask_cost if c == "without_mask" else 1.0 for c in self.class_names], np.float32)
        nf = self.class_names.index(NOT_FACE) if NOT_FACE in self.class_names else None
        if nf is not None:
            costs[nf] = 0.0  # never the face label
        ids = (probs * costs).argmax(1)
        if self.sure or self.sure_face_score:
            need = np.array([self.sure.get(c, 0.0) for c in self.class_names], np.float32)
            unsure = probs[np.arange(len(ids)), ids] < need[ids]
            if face_score is not None and self.sure_face_score:
                unsure |= np.asarray(face_score) < self.sure_face_score
            ids = np.where(unsure, UNCERTAIN_ID, ids)
        if nf is not None:
            ids = np.where(probs[:, nf] >= self.not_face_threshold, nf, ids)
        return ids

    confidence = staticmethod(label_confidence)  # the probability of each face's label (detections.label_confidence)

    def predict(self, crops_rgb: np.ndarray) -> np.ndarray:
        """Probabilities (n, len(class_names)) for (n, S, S, 3) uint8 RGB crops, in batched calls."""
        return self._look(crops_rgb, ["probs"])[0]

    def _look(self, crops_rgb: np.ndarray, outputs: list[str]) -> tuple[np.ndarray, list[np.ndarray], np.ndarray]:
        """Calibrated probabilities (n, k) in ``class_names`` order, with ``flip`` applied; the raw outputs of every
        view (the n crops, then the mirrored ones), and the indices of the crops that were also looked at mirrored."""
        n = len(crops_rgb)
        if n == 0:
            return np.zeros((0, len(self.class_names)), np.float32), self._run(outputs, crops_rgb), np.zeros(0, np.int64)
        if self.flip is True:
            mirrored = np.arange(n)
            res = self._run(outputs, np.concatenate([crops_rgb, crops_rgb[:, :, ::-1]]))
            probs = self._calibrate(res[0])
            probs = (probs[:n] + probs[n:]) / 2
        else:
            res = self._run(outputs, crops_rgb)
            probs = self._calibrate(res[0])
            mirrored = np.flatnonzero(probs.max(1) < FLIP_SURE) if self.flip == "auto" else np.zeros(0, np.int64)
            if len(mirrored):
                more = self._run(outputs, np.ascontiguousarray(crops_rgb[mirrored, :, ::-1]))
                probs[mirrored] = (probs[mirrored] + self._calibrate(more[0])) / 2
                res = [np.concatenate([a, b]) for a, b in zip(res, more)]
        return probs[:, self._order], res, mirrored

    def _run(self, outputs: list[str], crops_rgb: np.ndarray) -> list[np.ndarray]:
        """The model's ``outputs`` for (n, S, S, 3) uint8 RGB crops, in calls of at most ``MAX_VIEWS`` crops."""
        parts = [self.session.run(outputs, {self.input_name: to_input(crops_rgb[i : i + MAX_VIEWS])})
                 for i in range(0, max(len(crops_rgb), 1), MAX_VIEWS)]  # (an empty batch: one empty call)
        return [np.concatenate([part[k] for part in parts]) for k in range(len(outputs))]

    def _calibrate(self, probs: np.ndarray) -> np.ndarray:
        """softmax(logits / T) from softmax(logits): p ** (1 / T), renormalised."""
        if self.temperature == 1.0:
            return probs
        p = np.power(np.maximum(probs, 1e-12), 1.0 / self.temperature)
        return (p / p.sum(1, keepdims=True)).astype(np.float32)

    def crops(self, image_bgr: np.ndarray, detections: Detections) -> np.ndarray:
        return crop_faces(image_bgr, detections.xyxy, self.input_size, self.margin)

    def classify(self, image_bgr: np.ndarray, detections: Detections) -> Detections:
        """Add class_id, confidence and probs to ``detections`` (faces in the BGR image, xyxy pixels)."""
        probs = self.predict(self.crops(image_bgr, detections))
        ids = self.decide(probs, detections.face_score)
        out = Detections(detections.xyxy, detections.face_score, class_names=self.class_names,
                         probs=probs, class_id=ids, confidence=self.confidence(probs, ids),
                         tracker_id=detections.tracker_id, landmarks=detections.landmarks, data=dict(detections.data))
        return out

    def heatmaps(self, crops_rgb: np.ndarray, class_ids: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Grad-CAM maps (n, S, S) float 0..1 for the predicted (or given) class of each crop, and the probs.

        Computed from the model's last convolutional feature map and the head weights stored in the file. With
        ``flip`` on (or ``"auto"`` and the crop looked at mirrored), the map is the mean of the crop's map and the
        mirrored crop's map (mirrored back), like the probabilities, so the map explains the label that was given.
        """
        n = len(crops_rgb)
        probs, (_, fmap), mirrored = self._look(crops_rgb, ["probs", "features"])
        if class_ids is None:
            class_ids = self.decide(probs)
        class_ids = np.where(np.asarray(class_ids) >= 0, class_ids, probs.argmax(1))  # uncertain: the likeliest
        model_ids = np.array([self._order[int(c)] for c in class_ids], np.int64)  # w2's rows: the model's class order
        cams = self._cams(fmap, np.concatenate([model_ids, model_ids[mirrored]]))
        cams[mirrored] = (cams[mirrored] + cams[n:, :, ::-1]) / 2
        cams = cams[:n]
        peak = cams.reshape(n, -1).max(1) if n else np.zeros(0, np.float32)
        maps = np.where(peak[:, None, None] > 0, cams / np.maximum(peak, 1e-12)[:, None, None], cams)
        return maps.astype(np.float32), probs

    def _cams(self, fmap: np.ndarray, model_ids: np.ndarray) -> np.ndarray:
        """Non-negative class-activation maps (n, S, S), not normalised, from feature maps (n, k, h, w)."""
        import cv2

        head = self.meta["head"]
        (h1, k), (c, _) = head["shapes"]
        w1 = _unb64(head["fc1_w"]).reshape(h1, k)
        b1 = _unb64(head["fc1_b"])
        w2 = _unb64(head["fc2_w"]).reshape(c, h1)
        pooled = fmap.mean(axis=(2, 3))  # (n, k)
        hidden = pooled @ w1.T + b1  # (n, h1)
        out = np.zeros((len(fmap), self.input_size, self.input_size), np.float32)
        for i, cid in enumerate(model_ids):
            grad = (w2[cid] * (hidden[i] > 0)) @ w1  # d logit / d pooled, (k,)
            cam = np.maximum((fmap[i] * grad[:, None, None]).sum(0), 0)
            out[i] = np.maximum(cv2.resize(cam, (self.input_size, self.input_size), interpolation=cv2.INTER_CUBIC), 0)
        return out


def _unb64(s: str) -> np.ndarray:
    return np.frombuffer(base64.b64decode(s), np.float16).astype(np.float32)

