"""maskwatch: find every face in a photo or video and tell whether it wears a mask, wears it wrongly, or none.

Three lines::

    import maskwatch
    image = maskwatch.load_image("photo.jpg")          # BGR uint8
    faces = maskwatch.detect(image)                     # Detections: xyxy pixel boxes, labels, probabilities
    cv2.imwrite("out.jpg", maskwatch.annotate(image, faces))
"""

from __future__ import annotations

import numpy as np

from .annotate import annotate
from .detections import CLASS_NAMES, Detections
from .errors import InputError, MaskwatchError, ModelError
from .images import load_image
from .pipeline import Detector
from . import video  # noqa: F401  (VideoSource, VideoSink, FPSMonitor)

__version__ = "0.1.0"
_default: Detector | None = None


def detect(image: np.ndarray, **settings: object) -> Detections:
    """Faces with mask labels in a BGR uint8 image. The first call loads the default models; later calls reuse
    them. With keyword settings (as :class:`Detector` takes) a new Detector is built for this call."""
    global _default
    if settings:
        return Detector(**settings).detect(image)  # type: ignore[arg-type]
    if _default is None:
        _default = Detector()
    return _default.detect(image)


__all__ = ["CLASS_NAMES", "Detections", "Detector", "InputError", "MaskwatchError", "ModelError", "annotate", "detect", "load_image"]
