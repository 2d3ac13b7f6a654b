"""Drawing results: boxes coloured by label with "Mask: 99.12%" captions, an optional FPS counter, face blur."""

from __future__ import annotations

import cv2
import numpy as np

from .detections import Detections

# BGR colours: green = mask worn, red = no mask, orange = worn wrongly, grey = uncertain or not classified.
COLOURS = {"with_mask": (0, 200, 0), "without_mask": (0, 0, 230), "mask_incorrect": (0, 140, 255), "uncertain": (160, 160, 160),
           "": (160, 160, 160)}
CAPTIONS = {"with_mask": "Mask", "without_mask": "No Mask", "mask_incorrect": "Incorrect", "uncertain": "?", "": "Face"}


class BoxAnnotator:
    """Draws each face's box and caption on a copy of a BGR image. Style is set once here.

    Captions scale with their face (between ``MIN_SCALE`` and a size set by the image), stay inside the image,
    and are drawn only where they fit: a caption that would cover another face or another caption is left out,
    biggest faces first, so in a crowd the box colour alone tells the label of the small faces.
    """

    MIN_SCALE = 0.3  # OpenCV font scale below which text is unreadable
    MAX_WIDTH = 2.5  # a caption may be at most this many times as wide as its face box

    def __init__(self, thickness: int | None = None, font_scale: float | None = None, show_track: bool = True) -> None:
        self.thickness, self.font_scale, self.show_track = thickness, font_scale, show_track

    def captions(self, detections: Detections, width: int, height: int) -> list[tuple[int, str, float, tuple[int, int, int, int]]]:
        """Where the captions go: (face index, text, font scale, rect x1, y1, x2, y2 in pixels), only those that fit."""
        top_scale = self.font_scale or max(0.35, min(width, height) / 1200)
        faces = detections.xyxy.round().astype(int)
        placed: list[tuple[int, str, float, tuple[int, int, int, int]]] = []
        order = np.argsort(-(detections.width * detections.height), kind="stable")
        for i in order:
            label = detections.labels[i]
            text = CAPTIONS.get(label, label)
            if label and label != "uncertain":
                text += f": {detections.confidence[i] * 100:.2f}%"
            if self.show_track and detections.tracker_id[i] >= 0:
                text = f"#{detections.tracker_id[i]} " + text
            x1, y1, x2, y2 = faces[i]
            (tw1, _), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 1.0, 1)
            fs = min(top_scale, self.MAX_WIDTH * max(x2 - x1, 1) / tw1)
            if fs < self.MIN_SCALE:
                continue
            (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, fs, 1)
            rw, rh = tw + 2, th + base + 2
            if rw > width or rh > height:
                continue
            rx = int(min(max(x1, 0), width - rw))
            ry = y1 - rh if y1 - rh >= 0 else min(y2 + 1, height - rh)
            rect = (rx, int(ry), rx + rw, int(ry) + rh)
            hits_face = any(_overlap(rect, tuple(faces[j])) for j in range(len(faces)) if j != i)
            hits_caption = any(_overlap(rect, r) for _, _, _, r in placed)
            if not (hits_face or hits_caption):
                placed.append((int(i), text, float(fs), rect))
        return placed

    def annotate(self, image_bgr: np.ndarray, detections: Detections, copy: bool = True) -> np.ndarray:
        """Draws ``detections`` (boxes xyxy in pixels of this image) on a BGR uint8 (h, w, 3) image: a copy, or the
        image itself with ``copy=False``."""
        _check_inputs(image_bgr, detections)
        img = image_bgr.copy() if copy else image_bgr
        h, w = img.shape[:2]
        t = self.thickness or max(1, int(round(min(h, w) / 300)))
        labels = detections.labels
        for i, label in enumerate(labels):
            x1, y1, x2, y2 = (int(round(float(v))) for v in detections.xyxy[i])
            thick = 1 if label == "uncertain" else min(t, max(1, (x2 - x1) // 12))  # uncertain: thin grey
            cv2.rectangle(img, (x1, y1), (x2, y2), COLOURS.get(label, COLOURS[""]), thick)
        for i, text, fs, (rx1, ry1, rx2, ry2) in self.captions(detections, w, h):
            cv2.rectangle(img, (rx1, ry1), (rx2 - 1, ry2 - 1), COLOURS.get(labels[i], COLOURS[""]), -1)
            (_, th), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, fs, 1)
            cv2.putText(img, text, (rx1 + 1, ry1 + th + 1), cv2.FONT_HERSHEY_SIMPLEX, fs, (255, 255, 255), 1, cv2.LINE_AA)
        return img


def _overlap(a: tuple[int, ...], b: tuple[int, ...]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def draw_fps(image_bgr: np.ndarray, fps: float) -> np.ndarray:
    """Write "FPS: 31.2" in the top-left corner, in place."""
    cv2.putText(image_bgr, f"FPS: {fps:.1f}", (10, 25), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(image_bgr, f"FPS: {fps:.1f}", (10, 25), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (255, 255, 255), 1, cv2.LINE_AA)
    return image_bgr


def blur_faces(image_bgr: np.ndarray, detections: Detections, copy: bool = True) -> np.ndarray:
    """Pixelate every face box (privacy)."""
    img = image_bgr.copy() if copy else image_bgr
    h, w = img.shape[:2]
    for x1, y1, x2, y2 in detections.xyxy.astype(int):
        x1, y1, x2, y2 = max(0, x1), max(0, y1), min(w, x2), min(h, y2)
        if x2 - x1 < 2 or y2 - y1 < 2:
            continue
        roi = img[y1:y2, x1:x2]
        small = cv2.resize(roi, (max(1, (x2 - x1) // 8), max(1, (y2 - y1) // 8)), interpolation=cv2.INTER_AREA)
        img[y1:y2, x1:x2] = cv2.resize(small, (x2 - x1, y2 - y1), interpolation=cv2.INTER_NEAREST)
    return img


def _check_inputs(image: object, detections: object) -> None:
    from .errors import InputError

    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        got = f"{image.dtype} array of shape {image.shape}" if isinstance(image, np.ndarray) else type(image).__name__
        raise InputError(f"annotate() draws on a BGR uint8 image array (h, w, 3), got {got}; for a file use "
                         "maskwatch.load_image(path) first")
    if not isinstance(detections, Detections):
        raise InputError(f"annotate() takes the Detections that detect() returned, got {type(detections).__name__}")


def annotate(image_bgr: np.ndarray, detections: Detections) -> np.ndarray:
    """An annotated copy of a BGR uint8 image (h, w, 3): green/red/orange/grey boxes (``detections``, xyxy in pixels
    of this image) with "Mask: 99.12%" captions."""
    return BoxAnnotator().annotate(image_bgr, detections)
