"""A fixed set of real 640x480 frames with 1-3 faces each, from ../shared/data/detect (for the benchmarks)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("MASKWATCH_SHARED", ROOT.parent / "shared"))
os.environ.setdefault("MASKWATCH_MODELS", str(SHARED / "models"))


def real_frames(n: int = 40, max_faces: int = 3) -> list[np.ndarray]:
    """The first ``n`` scene photos (sorted by name, masks-yolo-extra then masks-voc-dev) with 1..max_faces
    labelled faces, letterboxed to 640x480 BGR."""
    sys.path.insert(0, str(ROOT))
    from maskwatch.datasets import load_source

    frames = []
    for name in ("masks-yolo-extra", "masks-voc-dev"):
        src = SHARED / "data" / "detect" / name
        if not src.is_dir():
            raise SystemExit(f"benchmark data not found: {src} (clone the project beside shared/)")
        for im in load_source(str(src)).images:
            img = cv2.imread(str(im.path)) if 1 <= len(im.boxes) <= max_faces else None
            if img is not None:  # an unreadable photo is skipped, not a traceback
                frames.append(letterbox(img, 640, 480))
                if len(frames) == n:
                    return frames
    return frames


def letterbox(img: np.ndarray, w: int, h: int) -> np.ndarray:
    s = min(w / img.shape[1], h / img.shape[0])
    r = cv2.resize(img, (int(img.shape[1] * s), int(img.shape[0] * s)), interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
    out = np.zeros((h, w, 3), np.uint8)
    y, x = (h - r.shape[0]) // 2, (w - r.shape[1]) // 2
    out[y : y + r.shape[0], x : x + r.shape[1]] = r
    return out
