"""Face detectors, chosen by name. Each is a small object with ``detect(image_bgr) -> Detections``."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from .base import FaceDetector
from .haar import HaarDetector
from .ssd import SSDDetector
from .yunet import YuNetDetector

FACE_DETECTORS: dict[str, Callable[..., FaceDetector]] = {
    "yunet": YuNetDetector,
    "yunet_masks": partial(YuNetDetector, model="yunet_masks"),  # YuNet tuned on real masked scenes (MODEL_CARD.md)
    "ssd": SSDDetector,
    "haar": HaarDetector,
}
DEFAULT_FACE_DETECTOR = "yunet_masks"  # the tuned YuNet (MODEL_CARD.md); "yunet" is the original


def create_face_detector(name: str = DEFAULT_FACE_DETECTOR, **kwargs: Any) -> FaceDetector:
    """A face detector from the registry (``yunet``, ``yunet_masks``, ``ssd``, ``haar``), or a YuNet-format ONNX file by
    path (what ``maskwatch train-detector`` writes); kwargs go to its constructor."""
    from ..errors import InputError

    if name not in FACE_DETECTORS and name.endswith(".onnx"):
        if not Path(name).is_file():
            raise InputError(f"face detector {name}: no such file; give a registry name ({', '.join(FACE_DETECTORS)}) or a YuNet ONNX path")
        return YuNetDetector(model=name, **kwargs)
    if name not in FACE_DETECTORS:
        raise InputError(f"unknown face detector '{name}'; choose one of: {', '.join(FACE_DETECTORS)}, or a YuNet ONNX file path")
    return FACE_DETECTORS[name](**kwargs)


__all__ = ["FACE_DETECTORS", "DEFAULT_FACE_DETECTOR", "FaceDetector", "create_face_detector"]
