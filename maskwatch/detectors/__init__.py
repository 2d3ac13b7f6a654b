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

YUNET_MASKS_BOX_STYLE = (1.05, 0.975, 0.04)
"""The tuned YuNet's boxes are a little narrow and high against the annotators' (all four scene sets agree): 5 %
wider, 2.5 % lower, the centre 4 % of the height further down: face AP@0.5 on the @val splits 0.757 -> 0.773
(``python benchmarks/box_style.py``, MODEL_CARD.md)."""

FACE_DETECTORS: dict[str, Callable[..., FaceDetector]] = {
    "yunet": YuNetDetector,
    # YuNet tuned on real masked scenes (MODEL_CARD.md)
    "yunet_masks": partial(YuNetDetector, model="yunet_masks", box_style=YUNET_MASKS_BOX_STYLE),
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


def registry_box_style(name: str) -> tuple[float, float, float] | None:
    """The box style a registry detector applies (``YUNET_MASKS_BOX_STYLE``), None for none or for a file path."""
    return getattr(FACE_DETECTORS.get(name), "keywords", {}).get("box_style")


__all__ = ["FACE_DETECTORS", "DEFAULT_FACE_DETECTOR", "YUNET_MASKS_BOX_STYLE", "FaceDetector", "create_face_detector",
           "registry_box_style"]
