"""Class-activation heatmaps (Grad-CAM from the classifier's last feature map) over each face, shown beside
the annotated frame. The map is computed on the face as it is, for the label the pipeline gave it (with
``flip`` on, or ``"auto"`` for a face the first look was not sure of, that label comes from the face and its mirror
image averaged, and so does the map)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from .annotate import BoxAnnotator
from .crops import square_boxes
from .errors import InputError
from .images import load_image
from .pipeline import Detector
from .video import VideoSink, VideoSource


def explain_frame(det: Detector, frame_bgr: np.ndarray, alpha: float = 0.5) -> tuple[np.ndarray, int]:
    """(h, 2w, 3) BGR: left the annotated frame, right the frame with each face's heatmap blended over it;
    and the number of faces."""
    d = det.detect(frame_bgr)
    left = BoxAnnotator().annotate(frame_bgr, d)
    right = frame_bgr.copy()
    if len(d):
        clf = det.classifier
        maps, _ = clf.heatmaps(clf.crops(frame_bgr, d), d.class_id)
        h, w = frame_bgr.shape[:2]
        for box, cam in zip(square_boxes(d.xyxy, clf.margin), maps):
            x1, y1, x2, y2 = (int(round(float(v))) for v in box)
            side = x2 - x1
            if side < 2:
                continue
            heat = cv2.applyColorMap((cv2.resize(cam, (side, y2 - y1)) * 255).astype(np.uint8), cv2.COLORMAP_JET)
            cx1, cy1, cx2, cy2 = max(0, x1), max(0, y1), min(w, x2), min(h, y2)
            if cx2 <= cx1 or cy2 <= cy1:
                continue
            roi = right[cy1:cy2, cx1:cx2]
            hpart = heat[cy1 - y1 : cy2 - y1, cx1 - x1 : cx2 - x1]
            right[cy1:cy2, cx1:cx2] = cv2.addWeighted(roi, 1 - alpha, hpart, alpha, 0)
        right = BoxAnnotator().annotate(right, d, copy=False)
    return np.hstack([left, right]), len(d)


def explain_image(det: Detector, path: str | os.PathLike, out: str | os.PathLike) -> int:
    """Write the side-by-side heatmap image for one photo; returns the number of faces."""
    img = load_image(path)
    vis, n = explain_frame(det, img)
    out = Path(out)
    if out.suffix.lower() not in (".jpg", ".jpeg", ".png", ".bmp", ".webp"):
        raise InputError(f"--out {out}: give an image file name (.jpg or .png)")
    out.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(out), vis):
        raise InputError(f"{out}: cannot write the image here; check the folder and free space")
    return n


def explain_video(det: Detector, source: str, out: str | os.PathLike, progress: Callable[[int], None] | None = None,
                  max_frames: int = 0, notes: list[str] | None = None) -> int:
    """Write a side-by-side heatmap video (twice the width of the input); returns the number of frames. ``notes``,
    if given, gets what the user should know about the result, as ``maskwatch video`` says it: a video that states
    no usable frame rate (the output assumes ``ASSUMED_FPS``), an output browsers do not play."""
    n = 0
    with VideoSource(source) as src, VideoSink(out, src.width * 2, src.height, src.fps) as sink:
        if notes is not None:
            if sink.warning:
                notes.append(sink.warning)
            if not src.fps_stated:
                notes.append(f"{source} states no usable frame rate; the output assumes {src.fps:g} frames/s")
        for frame in src:
            sink.write(explain_frame(det, frame)[0])
            n += 1
            if progress:
                progress(1)
            if max_frames and n >= max_frames:
                break
    return n
