"""Face detectors, chosen by name. Each is a small object with ``detect(image_bgr) -> Detections``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .base import FaceDetector
from .haar import HaarDetector
from .ssd import SSDDetector
from .yunet import YuNetDetector

FACE_DETECTORS: dict[str, Callable[..., FaceDetector]] = {
    "yunet": YuNetDetector,
    "ssd": SSDDetector,
    "haar": HaarDetector,
}
DEFAULT_FACE_DETECTOR = "yunet"


def create_face_detector(name: str = DEFAULT_FACE_DETECTOR, **kwargs: Any) -> FaceDetector:
    """A face detector from the registry (``yunet``, ``ssd``, ``haar``); kwargs go to its constructor."""
    from ..errors import InputError

    if name not in FACE_DETECTORS:
        raise InputError(f"unknown face detector '{name}'; choose one of: {', '.join(FACE_DETECTORS)}")
    return FACE_DETECTORS[name](**kwargs)


__all__ = ["FACE_DETECTORS", "DEFAULT_FACE_DETECTOR", "FaceDetector", "create_face_detector"]
