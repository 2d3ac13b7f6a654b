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
    """Draws each face's box and caption on a copy of a BGR image. Style is set once here."""

    def __init__(self, thickness: int | None = None, font_scale: float | None = None, show_track: bool = True) -> None:
        self.thickness, self.font_scale, self.show_track = thickness, font_scale, show_track

    def annotate(self, image_bgr: np.ndarray, detections: Detections, copy: bool = True) -> np.ndarray:
        img = image_bgr.copy() if copy else image_bgr
        h, w = img.shape[:2]
        t = self.thickness or max(1, int(round(min(h, w) / 300)))
        fs = self.font_scale or max(0.35, min(h, w) / 1200)
        for i, label in enumerate(detections.labels):
            x1, y1, x2, y2 = (int(round(float(v))) for v in detections.xyxy[i])
            colour = COLOURS.get(label, COLOURS[""])
            cv2.rectangle(img, (x1, y1), (x2, y2), colour, 1 if label == "uncertain" else t)  # uncertain: thin grey
            text = CAPTIONS.get(label, label)
            if label and label != "uncertain":
                text += f": {detections.confidence[i] * 100:.2f}%"
            if self.show_track and detections.tracker_id[i] >= 0:
                text = f"#{detections.tracker_id[i]} " + text
            (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, fs, 1)
            ty = y1 - 3 if y1 - th - base - 3 >= 0 else y2 + th + 3
            cv2.rectangle(img, (x1, ty - th - 2), (x1 + tw + 2, ty + base - 1), colour, -1)
            cv2.putText(img, text, (x1 + 1, ty - 1), cv2.FONT_HERSHEY_SIMPLEX, fs, (255, 255, 255), 1, cv2.LINE_AA)
        return img


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


def annotate(image_bgr: np.ndarray, detections: Detections) -> np.ndarray:
    """An annotated copy of a BGR image: green/red/orange boxes with "Mask: 99.12%" captions."""
    return BoxAnnotator().annotate(image_bgr, detections)
