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
from .detections import CLASS_NAMES, Detections
from .errors import InputError, ModelError


DEFAULT_NOMASK_COST = 2.0
"""A bare face called masked costs twice a false alarm: the same weight the training loss gives without_mask
(TrainConfig.nomask_weight). On masks-voc-dev@test it moved without_mask recall from 0.939 to 0.970."""


class MaskClassifier:
    """Loads the model once. ``classify(image_bgr, detections)`` returns the detections with labels.

    ``model``: a path to a maskwatch classifier ONNX file, or the registry name ``mask_classifier`` (the
    model bundled with the package). ``threads``: onnxruntime intra-op threads (default: all cores).
    ``nomask_cost``: how much worse a bare face called masked is than the reverse; the label is the class with
    the highest probability x cost (1 = plain argmax). ``probs`` stay the model's probabilities.
    ``flip``: also classify each crop mirrored left-right and average the two (one batched call, twice the
    work); on masks-yolo-extra it raised balanced accuracy from 0.930 to 0.942.
    """

    def __init__(self, model: str | os.PathLike = "mask_classifier", threads: int | None = None,
                 nomask_cost: float = DEFAULT_NOMASK_COST, flip: bool = False) -> None:
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
        self.flip = bool(flip)
        # Map model classes onto maskwatch's CLASS_NAMES columns (a two-class model leaves mask_incorrect at 0).
        unknown = [c for c in self.model_classes if c not in CLASS_NAMES]
        if unknown:
            raise ModelError(f"{self.path}: unknown class names {unknown}; expected a subset of {CLASS_NAMES}")
        self.class_names = tuple(c for c in CLASS_NAMES if c in self.model_classes)
        self._order = [self.model_classes.index(c) for c in self.class_names]

    def decide(self, probs: np.ndarray) -> np.ndarray:
        """Class ids (n,) for probabilities (n, k) over ``class_names``: argmax of probability x cost."""
        if len(probs) == 0:
            return np.zeros(0, np.int64)
        costs = np.array([self.nomask_cost if c == "without_mask" else 1.0 for c in self.class_names], np.float32)
        return (np.asarray(probs) * costs).argmax(1)

    def predict(self, crops_rgb: np.ndarray) -> np.ndarray:
        """Probabilities (n, len(class_names)) for (n, S, S, 3) uint8 RGB crops, one batched call."""
        if len(crops_rgb) == 0:
            return np.zeros((0, len(self.class_names)), np.float32)
        n = len(crops_rgb)
        if self.flip:
            crops_rgb = np.concatenate([crops_rgb, crops_rgb[:, :, ::-1]])
        (probs,) = self.session.run(["probs"], {self.input_name: to_input(crops_rgb)})
        if self.flip:
            probs = (probs[:n] + probs[n:]) / 2
        return probs[:, self._order]

    def crops(self, image_bgr: np.ndarray, detections: Detections) -> np.ndarray:
        return crop_faces(image_bgr, detections.xyxy, self.input_size, self.margin)

    def classify(self, image_bgr: np.ndarray, detections: Detections) -> Detections:
        """Add class_id, confidence and probs to ``detections`` (faces in the BGR image, xyxy pixels)."""
        probs = self.predict(self.crops(image_bgr, detections))
        ids = self.decide(probs)
        out = Detections(detections.xyxy, detections.face_score, class_names=self.class_names,
                         probs=probs, class_id=ids, confidence=probs[np.arange(len(ids)), ids],
                         tracker_id=detections.tracker_id, landmarks=detections.landmarks, data=dict(detections.data))
        return out

    def heatmaps(self, crops_rgb: np.ndarray, class_ids: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Grad-CAM maps (n, S, S) float 0..1 for the predicted (or given) class of each crop, and the probs.

        Computed from the model's last convolutional feature map and the head weights stored in the file. With
        ``flip`` on, the map is the mean of the crop's map and the mirrored crop's map (mirrored back), like
        the probabilities, so the map explains the label that was given.
        """
        n = len(crops_rgb)
        views = np.concatenate([crops_rgb, crops_rgb[:, :, ::-1]]) if self.flip else crops_rgb
        (probs, fmap) = self.session.run(["probs", "features"], {self.input_name: to_input(views)})
        if self.flip:
            probs = (probs[:n] + probs[n:]) / 2
        if class_ids is None:
            class_ids = self.decide(probs[:, self._order])
        model_ids = np.array([self._order[int(c)] for c in class_ids], np.int64)  # w2's rows: the model's class order
        if self.flip:
            cams = self._cams(fmap, np.concatenate([model_ids, model_ids]))
            cams = (cams[:n] + cams[n:, :, ::-1]) / 2
        else:
            cams = self._cams(fmap, model_ids)
        peak = cams.reshape(n, -1).max(1) if n else np.zeros(0, np.float32)
        maps = np.where(peak[:, None, None] > 0, cams / np.maximum(peak, 1e-12)[:, None, None], cams)
        return maps.astype(np.float32), probs[:, self._order]

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

