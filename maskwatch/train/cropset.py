"""Cut labelled face crops (with context around them for augmentation) out of a Dataset, once, into a cache.

Each crop is the square that :func:`maskwatch.crops.crop_faces` would cut at run time, widened by
``CONTEXT`` so that zoom, shift and rotation during training show real pixels. Crops are stored as JPEG
bytes in one ``.npz`` file (small enough to move to another machine).

With a face detector, scene images also give ``not_face`` crops: every detected box that overlaps no annotated
face (IoU < :data:`maskwatch.boxes.NOT_FACE_IOU`), framed exactly as at run time, with its face score kept so
that training can leave out the high-scoring ones (mostly real faces the annotators skipped).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ..boxes import off_faces, snap_to_detections
from ..crops import DEFAULT_MARGIN, crop_square, square_boxes, whole_image_box
from ..datasets import Dataset, assign_groups, iter_images
from ..detections import MODEL_CLASSES, NOT_FACE
from ..errors import InputError

CONTEXT = 1.5
log = logging.getLogger("maskwatch.train")


def context_size(input_size: int) -> int:
    """Stored crop side in pixels: the context square, at least 96 px so one cache serves inputs up to 64-96 px."""
    return max(96, int(round(input_size * CONTEXT)))


@dataclass
class CropSet:
    """Labelled context crops. jpegs: encoded RGB->BGR JPEG bytes; labels: index into MODEL_CLASSES; face_px:
    face box's shorter side in the original image (pixels); group: near-duplicate group of the source image;
    source: source folder; score: the face detector's score of the box the crop is framed on (-1 = framed on
    the annotated box)."""

    jpegs: list[bytes]
    labels: np.ndarray
    face_px: np.ndarray
    group: list[str]
    source: list[str]
    input_size: int
    margin: float
    warnings: list[str] = field(default_factory=list)
    score: np.ndarray = None  # type: ignore[assignment]  # (None: all framed on annotated boxes; filled below)

    def __post_init__(self) -> None:
        if self.score is None:
            self.score = np.full(len(self.labels), -1.0, np.float32)

    def __len__(self) -> int:
        return len(self.labels)

    def image(self, i: int) -> np.ndarray:
        """Context crop i as RGB uint8 (C x C x 3), C = round(input_size * CONTEXT)."""
        img = cv2.imdecode(np.frombuffer(self.jpegs[i], np.uint8), cv2.IMREAD_COLOR)
        assert img is not None, "the crop cache holds only JPEGs that cv2 encoded"
        return img[:, :, ::-1]

    def subset(self, idx: np.ndarray) -> CropSet:
        idx = np.asarray(idx, np.int64)
        return CropSet(
            [self.jpegs[i] for i in idx], self.labels[idx], self.face_px[idx],
            [self.group[i] for i in idx], [self.source[i] for i in idx], self.input_size, self.margin,
            score=self.score[idx],
        )

    def save(self, path: Path) -> None:
        lengths = np.array([len(j) for j in self.jpegs], np.int64)
        np.savez(
            path, blob=np.frombuffer(b"".join(self.jpegs), np.uint8), lengths=lengths, labels=self.labels,
            face_px=self.face_px, group=np.array(self.group), source=np.array(self.source), score=self.score,
            meta=np.array(json.dumps({"input_size": self.input_size, "margin": self.margin, "warnings": self.warnings})),
        )

    @classmethod
    def load(cls, path: Path) -> CropSet:
        z = np.load(path)
        blob, ends = z["blob"].tobytes(), np.cumsum(z["lengths"])
        starts = ends - z["lengths"]
        meta = json.loads(str(z["meta"]))
        return cls(
            [blob[s:e] for s, e in zip(starts, ends)], z["labels"], z["face_px"], list(z["group"]),
            list(z["source"]), meta["input_size"], meta["margin"], meta.get("warnings", []),
            score=z["score"] if "score" in z.files else None,  # type: ignore[arg-type]
        )


def scene_face_detector(spec: str) -> Any:
    """The face detector named by a ``NAME:SIZES`` setting (``--scene-detector``, e.g. ``yunet_masks:1024``) whose
    boxes frame scene faces as at run time."""
    from ..detectors import create_face_detector
    from ..settings import det_sizes

    name, _, sizes = spec.partition(":")
    try:
        size = det_sizes(sizes or "1024")
    except ValueError:
        raise InputError(f"scene_detector={spec}: give NAME:SIZES, e.g. yunet_masks:1024") from None
    return create_face_detector(name, det_size=size)


def build_cropset(
    ds: Dataset,
    input_size: int,
    margin: float = DEFAULT_MARGIN,
    class_names: tuple[str, ...] = MODEL_CLASSES,
    progress: Callable[[int], None] | None = None,
    face_detector: Any = None,
) -> tuple[CropSet, list[str]]:
    """Crops for every labelled face in ``ds``. Unreadable images are skipped and counted (second return value).

    ``face_detector``: if given, the true boxes of scene images are replaced by the detected boxes they overlap
    best (IoU >= 0.5), so training crops are framed as at run time; missed faces keep their true box. Detected
    boxes on no annotated face become ``not_face`` crops (when ``class_names`` has it), with their score."""
    assign_groups(ds.images)
    ctx = context_size(input_size)
    jpegs, labels, face_px, groups, sources, scores = [], [], [], [], [], []
    skipped: list[str] = []
    for im, img in iter_images(ds.images, skipped, progress):
        h, w = img.shape[:2]
        items = [(b, b, lab, -1.0) for b, lab in zip(im.boxes, im.labels)]  # (size box, framing box, label, score)
        if face_detector is not None and all(b is not None for b in im.boxes):  # a scene image (maybe no face)
            found = face_detector.detect(img)
            truth = np.array(im.boxes, np.float32).reshape(-1, 4)
            snapped, hit = snap_to_detections(truth, found.xyxy)
            by_box = {tuple(b): float(s) for b, s in zip(found.xyxy.tolist(), found.face_score)}
            items = [(b, tuple(f), lab, by_box.get(tuple(f), -1.0) if k else -1.0)
                     for b, f, lab, k in zip(im.boxes, snapped.tolist(), im.labels, hit)]
            if NOT_FACE in class_names:
                off = off_faces(truth, found.xyxy)
                items += [(tuple(b), tuple(b), NOT_FACE, float(s)) for b, s in zip(found.xyxy[off].tolist(), found.face_score[off])]
        for box, frame_box, label, score in items:
            if label not in class_names:
                continue
            if box is None:
                box = frame_box = whole_image_box(w, h, margin)
            sq = square_boxes(np.array([frame_box]), margin, scale=CONTEXT)[0]
            crop = crop_square(img, sq, ctx)
            ok, enc = cv2.imencode(".jpg", crop, [cv2.IMWRITE_JPEG_QUALITY, 93])
            if not ok:
                skipped.append(f"{im.path}: a face crop could not be encoded")
                continue
            jpegs.append(enc.tobytes())
            labels.append(class_names.index(label))
            face_px.append(min(box[2] - box[0], box[3] - box[1]))
            groups.append(hashlib.md5(f"{im.source}|{im.group}".encode()).hexdigest()[:12])
            sources.append("/".join(Path(im.source).parts[-2:]))
            scores.append(score)
    cs = CropSet(jpegs, np.array(labels, np.int64), np.array(face_px, np.float32), groups, sources, input_size, margin,
                 score=np.array(scores, np.float32))
    return cs, skipped
