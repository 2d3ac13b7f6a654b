"""A test video made from real photos: an unmasked face moves across a 640x480 frame and grows, while a masked
face stands still. Frames are built in memory (BGR uint8); ground truth boxes are approximate."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from conftest import YOLO as _YOLO_SET  # ../shared, or where MASKWATCH_SHARED points

YOLO = _YOLO_SET / "images"
# A bare face, about 70 x 90 px in its photo. (Until the four-class model this was Coronavirus-6.jpg's woman in a pink
# headscarf, whom that model calls mask_incorrect: a known limit, MODEL_CARD.md. The tests here are about tracking.)
UNMASKED = ("106422407-1583254930844gettyimages-1204567270.jpg", (550, 195, 622, 287))
MASKED = ("china-health-canada-2.jpg", (432, 141, 568, 321))  # a surgical mask, about 140 x 180 px


def _patch(name: str, box: tuple[int, int, int, int], context: float = 1.8) -> np.ndarray:
    img = cv2.imread(str(YOLO / name))
    if img is None:
        raise FileNotFoundError(YOLO / name)
    x1, y1, x2, y2 = box
    cx, cy, side = (x1 + x2) / 2, (y1 + y2) / 2, max(x2 - x1, y2 - y1) * context
    h, w = img.shape[:2]
    a, b = int(max(0, cx - side / 2)), int(max(0, cy - side / 2))
    return img[b : int(min(h, cy + side / 2)), a : int(min(w, cx + side / 2))].copy()


def scene_frames(n: int = 40, width: int = 640, height: int = 480) -> list[np.ndarray]:
    """n frames: the unmasked face goes left to right and from 110 to 170 px; the masked face stays at the right."""
    bare, masked = _patch(*UNMASKED, context=1.4), _patch(*MASKED)
    masked = cv2.resize(masked, (170, int(170 * masked.shape[0] / masked.shape[1])))
    background = np.tile(np.linspace(90, 170, width, dtype=np.uint8)[None, :, None], (height, 1, 3))
    frames = []
    for i in range(n):
        f = background.copy()
        f[40 : 40 + masked.shape[0], width - 200 : width - 200 + masked.shape[1]] = masked
        s = 110 + 60 * i / max(1, n - 1)
        p = cv2.resize(bare, (int(s), int(s * bare.shape[0] / bare.shape[1])))
        x = int(10 + (width - 260 - p.shape[1]) * i / max(1, n - 1))
        y = 200 + int(20 * np.sin(i / 4))
        y = min(y, height - p.shape[0])
        f[y : y + p.shape[0], x : x + p.shape[1]] = p
        frames.append(f)
    return frames


def write_video(path: Path, frames: list[np.ndarray], fps: float = 10.0) -> Path:
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (frames[0].shape[1], frames[0].shape[0]))
    for f in frames:
        vw.write(f)
    vw.release()
    return path
