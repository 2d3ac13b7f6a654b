"""The demo camera of ``maskwatch serve``: a short looping video, so the dashboard shows something on a fresh machine.

It is built from real photos with face boxes (the YOLO set ``data/detect/masks-yolo-extra`` in the shared data folder:
``MASKWATCH_SHARED``, else ``../shared`` from the current folder): a slide show of a few photos, each slowly zoomed
towards its faces so the tracker sees motion. Without those photos it is made of moving coloured shapes and the text
"demo: no sample photos found", so the server still runs. Frames are BGR uint8.
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from ..errors import InputError

PHOTOS = Path("data") / "detect" / "masks-yolo-extra"
NO_PHOTOS = "demo: no sample photos found"


def shared_dir() -> Path:
    """The shared data folder: ``MASKWATCH_SHARED``; else ``shared/`` beside this checkout of maskwatch (found
    wherever ``serve`` is started from); else ``../shared`` relative to the current folder."""
    if os.environ.get("MASKWATCH_SHARED"):
        return Path(os.environ["MASKWATCH_SHARED"])
    beside = Path(__file__).resolve().parents[3] / "shared"
    return beside if beside.is_dir() else Path("..") / "shared"


def _pick_photos(folder: Path, size: tuple[int, int], n: int) -> list[tuple[np.ndarray, list]]:
    """Up to n photos whose 1-4 faces stay at least 50 px high once fitted into ``size``: first those with both bare
    and masked faces, then the others; by file name within each (always the same). The set is read by
    :mod:`maskwatch.datasets` (any VOC or YOLO scene set); faces are (label, x1, y1, x2, y2) in pixels."""
    from ..datasets import load_source
    from ..errors import InputError

    try:
        ds = load_source(str(folder))
    except InputError:
        return []
    width, height = size
    found = []
    for im in sorted(ds.images, key=lambda im: im.path.name):
        faces = [(lab, *b) for lab, b in zip(im.labels, im.boxes) if b is not None]
        if not 1 <= len(faces) <= 4:
            continue
        img = cv2.imread(str(im.path))
        if img is None:
            continue
        h, w = img.shape[:2]
        if min(f[4] - f[2] for f in faces) * min(width / w, height / h) < 50:
            continue
        found.append((len({f[0] for f in faces}) < 2, im.path.stem, img, faces))
    return [(img, faces) for _, _, img, faces in sorted(found, key=lambda x: x[:2])[:n]]


def _background(width: int, height: int) -> np.ndarray:
    return np.tile(np.linspace(60, 140, width, dtype=np.uint8)[None, :, None], (height, 1, 3))


def _caption(frame: np.ndarray, text: str) -> None:
    h = frame.shape[0]
    cv2.putText(frame, text, (8, h - 10), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(frame, text, (8, h - 10), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1, cv2.LINE_AA)


def photo_frames(folder: Path, size: tuple[int, int] = (640, 480), fps: float = 12.0, seconds_per_photo: float = 2.5,
                 photos: int = 6) -> list[np.ndarray]:
    """The slide show from a scene set (YOLO or VOC); [] when it holds no suitable photo."""
    width, height = size
    per_photo = max(2, int(round(fps * seconds_per_photo)))
    frames = []
    for img, faces in _pick_photos(folder, size, photos):
        h, w = img.shape[:2]
        scale = min(width / w, height / h)
        nw, nh = int(w * scale), int(h * scale)
        canvas = _background(width, height)
        ox, oy = (width - nw) // 2, (height - nh) // 2
        canvas[oy : oy + nh, ox : ox + nw] = cv2.resize(img, (nw, nh), interpolation=cv2.INTER_AREA)
        # Zoom towards the middle of the faces: 1.0 -> 1.15 over the photo's frames.
        cx = ox + scale * float(np.mean([(f[1] + f[3]) / 2 for f in faces]))
        cy = oy + scale * float(np.mean([(f[2] + f[4]) / 2 for f in faces]))
        for j in range(per_photo):
            z = 1.0 + 0.15 * j / (per_photo - 1)
            m = np.array([[z, 0, (1 - z) * cx], [0, z, (1 - z) * cy]], np.float32)
            frame = cv2.warpAffine(canvas, m, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
            _caption(frame, "maskwatch demo: sample photos (masks-yolo-extra)")
            frames.append(frame)
    return frames


def shape_frames(size: tuple[int, int] = (640, 480), fps: float = 12.0, seconds: float = 6.0) -> list[np.ndarray]:
    """Moving coloured shapes and the text "demo: no sample photos found" (no face in them)."""
    width, height = size
    n = max(2, int(round(fps * seconds)))
    frames = []
    for i in range(n):
        a = 2 * np.pi * i / n
        f = _background(width, height)
        cv2.circle(f, (int(width * (0.5 + 0.35 * np.cos(a))), int(height * (0.5 + 0.3 * np.sin(a)))), height // 8,
                   (60, 180, 60), -1, cv2.LINE_AA)
        x = int((width - height // 4) * i / (n - 1))
        cv2.rectangle(f, (x, height // 6), (x + height // 4, height // 6 + height // 4), (40, 140, 230), -1)
        cv2.circle(f, (width - x - 1, height * 3 // 4), height // 10, (50, 50, 220), -1, cv2.LINE_AA)
        (tw, th), _ = cv2.getTextSize(NO_PHOTOS, cv2.FONT_HERSHEY_SIMPLEX, 0.8, 2)
        org = ((width - tw) // 2, (height + th) // 2)
        cv2.putText(f, NO_PHOTOS, org, cv2.FONT_HERSHEY_SIMPLEX, 0.8, (0, 0, 0), 4, cv2.LINE_AA)
        cv2.putText(f, NO_PHOTOS, org, cv2.FONT_HERSHEY_SIMPLEX, 0.8, (255, 255, 255), 2, cv2.LINE_AA)
        frames.append(f)
    return frames


def write_demo_video(path: str | os.PathLike, size: tuple[int, int] = (640, 480), fps: float = 12.0,
                     shared: str | os.PathLike | None = None) -> str:
    """Write the demo video (MP4) to ``path``; returns what it shows: "sample photos" or NO_PHOTOS."""
    folder = Path(shared) if shared is not None else shared_dir()
    frames = photo_frames(folder / PHOTOS, size, fps) if (folder / PHOTOS / "labels").is_dir() else []
    what = "sample photos" if frames else NO_PHOTOS
    frames = frames or shape_frames(size, fps)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)  # type: ignore[attr-defined]
    if not writer.isOpened():
        raise InputError(f"{path}: cannot write the demo video here; check that the folder is writable")
    try:
        for f in frames:
            writer.write(f)
    finally:
        writer.release()
    return what
