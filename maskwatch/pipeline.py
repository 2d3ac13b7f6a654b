"""The pipeline: face detector -> crops -> mask classifier (one batch per frame) -> Detections."""

from __future__ import annotations

import os

import numpy as np

from .classifier import MaskClassifier, flip_value
from .detections import NOT_FACE, UNCERTAIN, Detections
from .detectors import DEFAULT_FACE_DETECTOR, FaceDetector, create_face_detector
from .errors import InputError
from .images import check_size, normalize_image


class Detector:
    """Loads the face detector and the mask classifier once; call :meth:`detect` per image or frame.

    face_detector: registry name (``yunet_masks``, the bundled default tuned on masked scenes; ``yunet``, ``ssd``,
    ``haar``), the path of a YuNet ONNX file (``maskwatch train-detector``) or a FaceDetector object.
    classifier: a classifier ONNX path or ``mask_classifier`` (the bundled model).
    score_threshold: minimum face score 0..1. det_size: longer side (px) images are resized to for face
    detection (1024: the photo preset; 640: the live one; 0 = as is; a tuple such as (800, 1600) runs one pass
    each and merges them; text as on the command line, "800,1600", is read too); upscale: a fixed factor instead.
    Every setting is checked as the CLI checks it (``maskwatch.settings``). nomask_cost: how much worse a bare face called masked is than the reverse (the
    label is argmax of probability x cost; default 2). flip: also classify each face mirrored and average (for
    photos; twice the classifier's time); "auto": only the faces the first look is not sure of. threads:
    onnxruntime threads (default all cores). sure_face_score,
    sure_mask, sure_nomask, sure_incorrect: the operating point (0..1): a face scored below ``sure_face_score`` or
    whose label's probability is below its ``sure_*`` is labelled ``uncertain`` (grey, no event).
    not_face_threshold: boxes with P(not_face) at least this are no face and removed. keep_not_face: keep
    the boxes the classifier calls ``not_face`` (a box on no face: a hand, a bag, the back of a head) instead of
    removing them; for debugging, they never raise an event.
    """

    def __init__(
        self,
        face_detector: str | FaceDetector = DEFAULT_FACE_DETECTOR,
        classifier: str | os.PathLike | MaskClassifier = "mask_classifier",
        score_threshold: float = 0.5,
        nms_threshold: float = 0.3,
        det_size: int | tuple[int, ...] = 640,
        upscale: float | None = None,
        threads: int | None = None,
        nomask_cost: float | None = None,
        flip: bool | str | None = None,
        keep_not_face: bool = False,
        sure_face_score: float = 0.0,
        sure_mask: float = 0.0,
        sure_nomask: float = 0.0,
        sure_incorrect: float = 0.0,
        not_face_threshold: float = 0.5,
    ) -> None:
        from .settings import coerce

        # Checked as the CLI checks them (same ranges and messages; text such as "0.5" or "800,1600" read as there).
        score_threshold, nms_threshold = coerce("score_threshold", score_threshold), coerce("nms_threshold", nms_threshold)
        det_size, upscale, threads = coerce("det_size", det_size), coerce("upscale", upscale), coerce("threads", threads)
        nomask_cost, flip = coerce("nomask_cost", nomask_cost), coerce("flip", flip)
        sure_face_score, sure_mask = coerce("sure_face_score", sure_face_score), coerce("sure_mask", sure_mask)
        sure_nomask, sure_incorrect = coerce("sure_nomask", sure_nomask), coerce("sure_incorrect", sure_incorrect)
        not_face_threshold = coerce("not_face_threshold", not_face_threshold)
        self.keep_not_face = bool(keep_not_face)
        if isinstance(face_detector, FaceDetector):
            self.face_detector = face_detector
        else:
            self.face_detector = create_face_detector(face_detector, score_threshold=score_threshold, nms_threshold=nms_threshold,
                                                      det_size=det_size, upscale=upscale, threads=threads)
        if isinstance(classifier, MaskClassifier):
            if flip is not None and flip_value(flip) != classifier.flip:
                raise InputError(f"flip={flip} conflicts with the MaskClassifier given (flip={classifier.flip}); "
                                 "set it where the classifier is made: MaskClassifier(flip=...)")
            self.classifier = classifier
        else:
            kw: dict = {} if nomask_cost is None else {"nomask_cost": nomask_cost}
            sure = {"with_mask": sure_mask, "without_mask": sure_nomask, "mask_incorrect": sure_incorrect}
            self.classifier = MaskClassifier(classifier, threads=threads, flip=flip_value(flip), sure={k: v for k, v in sure.items() if v},
                                             sure_face_score=sure_face_score, not_face_threshold=not_face_threshold, **kw)

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.classifier.class_names

    @property
    def shown_labels(self) -> tuple[str, ...]:
        """The labels a face can be shown with: the model's face classes and ``uncertain``."""
        return tuple(c for c in self.class_names if c != NOT_FACE) + (UNCERTAIN,)

    def detect(self, image: np.ndarray) -> Detections:
        """Faces with mask labels in a BGR uint8 image (h, w, 3); boxes xyxy in pixels of that image."""
        if not isinstance(image, np.ndarray):
            raise InputError(f"detect() takes an image array (BGR uint8, h x w x 3), got {type(image).__name__}; "
                             "for a file use maskwatch.load_image(path) first")
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            image = normalize_image(image)
        else:  # (a decoded array: no bomb to fear, so no pixel limit; but an empty one has no face)
            check_size(image, max_pixels=None)
        faces = self.face_detector.detect(image)
        if len(faces) == 0:
            return Detections.empty(self.class_names)
        out = self.classifier.classify(image, faces)
        if not self.keep_not_face and NOT_FACE in out.class_names:
            out = out[out.class_id != out.class_names.index(NOT_FACE)]
        return out

    __call__ = detect
