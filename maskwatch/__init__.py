"""maskwatch: find every face in a photo or video and tell whether it wears a mask, wears it wrongly, or none.

Three lines::

    import maskwatch
    image = maskwatch.load_image("photo.jpg")          # BGR uint8
    faces = maskwatch.detect(image)                     # Detections: xyxy pixel boxes, labels, probabilities
    cv2.imwrite("out.jpg", maskwatch.annotate(image, faces))
"""

from __future__ import annotations

import inspect
import logging
import os
import threading

# OpenCV's own decoder limit, for formats whose header maskwatch does not read (TIFF ...): 50 MP, as MAX_PIXELS.
# It only takes effect if cv2 was not imported before maskwatch.
os.environ.setdefault("OPENCV_IO_MAX_IMAGE_PIXELS", str(50_000_000))
# OpenCV's and FFmpeg's own warnings ("[tcp @ ...] Connection refused", "VIDEOIO(FFMPEG): can't capture by name") come
# before maskwatch's clear message about the same problem; keep them quiet unless the user asks for them.
os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")

import numpy as np  # noqa: E402

from . import video  # noqa: F401  (VideoSource, VideoSink, FPSMonitor)
from .annotate import annotate  # noqa: E402
from .detections import CLASS_NAMES, Detections
from .errors import InputError, MaskwatchError, ModelError
from .images import load_image
from .pipeline import Detector

logging.getLogger("maskwatch").addHandler(logging.NullHandler())  # a library logs; the application shows it (the CLI does)

__version__ = "0.1.0"
from .settings import PHOTO, SURE_SETTINGS  # noqa: E402

_detectors: dict[tuple, Detector] = {}
_detectors_lock = threading.Lock()
_DETECTOR_ARGS = tuple(inspect.signature(Detector.__init__).parameters)[1:]
MAX_CACHED_DETECTORS = 4
"""detect() keeps the Detectors of its last few settings (each holds both models, about 50 MB); older ones are freed."""


def detect(image: np.ndarray, **settings: object) -> Detections:
    """Faces with mask labels in a BGR uint8 image (a photo). The first call loads the models; later calls with
    the same settings reuse them (the last ``MAX_CACHED_DETECTORS`` settings are kept; a sweep over many builds a
    ``Detector`` for each instead). Settings are :class:`Detector`'s keyword arguments (defaults: the photo preset
    ``maskwatch.settings.PHOTO``, as for `maskwatch detect`: the tuned detector at 1024, faces mirrored where the
    first look is not sure, the photo thresholds); for video frames, build one ``Detector(**maskwatch.settings.LIVE)`` and call it per frame."""
    unknown = [k for k in settings if k not in _DETECTOR_ARGS]
    if unknown:
        import difflib

        near = difflib.get_close_matches(unknown[0], _DETECTOR_ARGS, n=1)
        raise InputError(f"detect(): unknown setting '{unknown[0]}'" + (f"; did you mean '{near[0]}'?" if near else "")
                         + f" (settings: {', '.join(_DETECTOR_ARGS)})")
    for k, v in PHOTO.items():
        if (k == "flip" or k in SURE_SETTINGS) and hasattr(settings.get("classifier"), "predict"):
            continue  # a MaskClassifier object brings its own flip and thresholds
        settings.setdefault(k, v)
    key = tuple(sorted((k, repr(v)) for k, v in settings.items()))
    with _detectors_lock:  # request threads of a web app may call detect() at once
        det = _detectors.pop(key, None)
        if det is None:
            det = Detector(**settings)  # type: ignore[arg-type]
        _detectors[key] = det  # the most recently used last
        while len(_detectors) > MAX_CACHED_DETECTORS:
            del _detectors[next(iter(_detectors))]
    return det.detect(image)


def run_batch(inputs: list[str], out: str, **options: object) -> object:
    """Detect faces and masks in every image, URL and sampled video frame of ``inputs`` on Dask, into Parquet (or
    JSON-lines) parts under ``out``; resumable. See :func:`maskwatch.batch.run_batch` (needs the ``batch`` extra)."""
    from .batch import run_batch as _run

    return _run(inputs, out, **options)  # type: ignore[arg-type]


__all__ = ["CLASS_NAMES", "Detections", "Detector", "InputError", "MaskwatchError", "ModelError", "annotate", "detect", "load_image", "run_batch"]
