"""One set of settings: each key's type, default and meaning, shared by the CLI (``--face-detector``), Python
keyword arguments (``face_detector=``) and, later, settings files. Checked in one place."""

from __future__ import annotations

import numbers
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .detectors import DEFAULT_FACE_DETECTOR, FACE_DETECTORS
from .errors import InputError


def det_sizes(text: str | int | tuple) -> int | tuple[int, ...]:
    """'800' -> 800; '800,1600' -> (800, 1600) (a multi-scale pass). Raises ValueError on anything else."""
    if isinstance(text, (int, tuple)):
        return text
    parts = [int(p) for p in str(text).replace(" ", "").split(",") if p]
    if not parts:
        raise ValueError(text)
    return parts[0] if len(parts) == 1 else tuple(parts)


det_sizes.__name__ = "size[,size...]"

PHOTO_DET_SIZE = 1024
"""Face-detection size for photos: one pass of the tuned detector at a longer side of 1024 px (as accurate as the
previous two passes at 800 and 1600, a quarter of the time: benchmarks/photo_detector.py). The default of
``maskwatch detect``, ``maskwatch.detect()``, the server's uploads and ``evaluate --boxes detector``."""
PHOTO_FACE_DETECTOR = "yunet_masks"



def on_off(text: str | bool) -> bool:
    """'on'/'off', 'true'/'false', 'yes'/'no', '1'/'0' (any case) -> bool. Raises ValueError on anything else."""
    if isinstance(text, bool):
        return text
    t = str(text).strip().lower()
    if t in ("on", "true", "yes", "1"):
        return True
    if t in ("off", "false", "no", "0"):
        return False
    raise ValueError(text)


on_off.__name__ = "on|off"


def flip_mode(text: str | bool) -> bool | str:
    """--flip: on/off as :func:`on_off`, or 'auto' (mirror only the faces the first look is not sure of)."""
    if isinstance(text, str) and text.strip().lower() == "auto":
        return "auto"
    return on_off(text)


flip_mode.__name__ = "on|off|auto"


@dataclass(frozen=True)
class Setting:
    name: str
    type: Callable[[str], Any]
    default: Any
    help: str
    lo: float | None = None
    hi: float | None = None
    choices: tuple[str, ...] | None = None
    path_suffix: str | None = None  # besides the choices, a file path ending in this (".onnx") is valid


SETTINGS: dict[str, Setting] = {
    s.name: s
    for s in [
        Setting("face_detector", str, DEFAULT_FACE_DETECTOR, "face detector: " + ", ".join(FACE_DETECTORS) + ", or the path of a "
                "YuNet ONNX file (maskwatch train-detector)", choices=tuple(FACE_DETECTORS), path_suffix=".onnx"),
        Setting("classifier", str, "mask_classifier", "mask classifier: an ONNX path, or the bundled 'mask_classifier'"),
        Setting("score_threshold", float, 0.5, "minimum face-detector score, 0..1", 0.0, 1.0),
        Setting("nms_threshold", float, 0.3, "IoU above which overlapping face boxes merge, 0..1", 0.01, 1.0),
        Setting("det_size", det_sizes, 640, "longer side (px) an image is resized to for face detection; 0 = as is; "
                "several, comma-separated (800,1600), run one pass each and merge the faces", 64, 4096),
        Setting("upscale", float, None, "fixed resize factor for face detection (overrides --det-size)", 0.1, 4.0),
        Setting("threads", int, None, "CPU threads for the classifier (None = all cores)", 1, 256),
        Setting("nomask_cost", float, 2.0, "how much worse a bare face called masked is than a false alarm: the label "
                "is the class with the highest probability x cost (1 = plain argmax)", 1.0, 100.0),
        Setting("flip", flip_mode, False, "on: also classify each face mirrored left-right and average the two (twice "
                "the classifier's time); auto: only the faces the first look is not sure of (no class at 0.95); "
                "photo commands default to auto, video ones to off"),
        Setting("sure_face_score", float, 0.0, "faces the detector scores below this are shown grey '?' (uncertain): "
                "no label, no event", 0.0, 1.0),
        Setting("sure_mask", float, 0.0, "green 'Mask' only when P(with_mask) is at least this; below, grey '?'", 0.0, 1.0),
        Setting("sure_nomask", float, 0.0, "red 'No Mask' (and alerts) only when P(without_mask) is at least this; below, "
                "grey '?'", 0.0, 1.0),
        Setting("sure_incorrect", float, 0.0, "orange 'Incorrect' only when P(mask_incorrect) is at least this; below, "
                "grey '?'", 0.0, 1.0),
        Setting("not_face_threshold", float, 0.5, "a box whose P(not_face) is at least this is no face (a hand, a bag, "
                "the back of a head) and is removed; for classifiers with a not_face class", 0.01, 1.0),
        # The live monitor and its event log (watch, video, serve): checked here, by MonitorSettings, for every caller.
        Setting("confirm_frames", int, 5, "frames a face must read unmasked before its one event (0 = off)", 0, 100_000),
        Setting("confirm_seconds", float, 0.0, "or seconds it must read unmasked (0 = off)", 0.0, 86_400.0),
        Setting("retention_days", float, 30.0, "delete events older than this from the log (and drop webhook events "
                "undelivered that long)", 0.001, 36_500.0),
        Setting("serial_interval", int, 200, "ms between two messages to the Arduino", 1, 60_000),
    ]
}

def train_workers() -> int:
    """Data-loading processes for training by default (the trainer's and the CLI's): one per core, at most 8."""
    import os

    return min(8, os.cpu_count() or 1)


MONITOR_SETTINGS = ("confirm_frames", "confirm_seconds", "retention_days", "serial_interval")
"""Settings of the live monitor and its event log (``monitor.MonitorSettings``), not of the Detector."""
DETECTOR_SETTINGS = tuple(n for n in SETTINGS if n not in MONITOR_SETTINGS)
"""The settings that are :class:`~maskwatch.pipeline.Detector` keyword arguments."""

SURE_SETTINGS = ("sure_face_score", "sure_mask", "sure_nomask", "sure_incorrect", "not_face_threshold")
"""The operating point: when a face is shown as sure (benchmarks/operating_points.py chooses them)."""

# The operating points were chosen by `python benchmarks/operating_points.py` on the @val splits of the scene sets
# but maskdetect-cn (whole-head boxes; never on @test) for the bundled classifier: per label, the lowest probability
# (red and green at least 0.5) at which shown labels reach precision 0.90 (0.60 for mask_incorrect), else the best
# F0.5; the face-score and not_face thresholds with the best summed F0.5 of with_mask and without_mask.
# MODEL_CARD.md has the table.
PHOTO: dict[str, Any] = {"face_detector": PHOTO_FACE_DETECTOR, "det_size": PHOTO_DET_SIZE, "flip": "auto", "nomask_cost": 1.0,
                         "sure_face_score": 0.9, "sure_mask": 0.76, "sure_nomask": 0.77, "sure_incorrect": 0.4,
                         "not_face_threshold": 0.5}
"""The photo preset (detect, evaluate-detection, explain, uploads, ``maskwatch.detect()``): accuracy first."""
LIVE: dict[str, Any] = {"face_detector": "yunet_masks", "det_size": 640, "flip": False, "nomask_cost": 1.0,
                        "sure_face_score": 0.95, "sure_mask": 0.5, "sure_nomask": 0.59, "sure_incorrect": 0.4,
                        "not_face_threshold": 0.5}
"""The live preset (video, watch, the dashboard's cameras): speed first; the tracker smooths labels over frames."""


def _plain(value: Any) -> Any:
    """numpy and other numbers as Python's (np.float32(0.5) -> 0.5, np.int64(640) -> 640); anything else as it is."""
    if isinstance(value, bool) or not isinstance(value, numbers.Number):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    return value


def coerce(name: str, value: Any) -> Any:
    """A setting given from Python, as the CLI would read it, then :func:`check`-ed: text through the setting's
    type ("0.5", "800,1600", "on"), numpy numbers as Python's, a whole float for an int (512.0), a list of sizes as
    a tuple. Errors name the setting and what it takes."""
    s = SETTINGS[name]
    if value is None or s.type is str:
        return check(name, value)
    whole = s.type in (int, det_sizes)

    def number(v: Any) -> Any:
        v = _plain(v)
        if whole and isinstance(v, float) and v.is_integer():
            v = int(v)
        if isinstance(v, bool) or not isinstance(v, int if whole else (int, float)):
            raise ValueError(v)
        return v

    try:
        if isinstance(value, str):
            value = s.type(value)
        elif s.type is det_sizes and isinstance(value, (list, tuple)):
            value = tuple(number(v) for v in value)
        elif s.type in (int, float, det_sizes):
            value = number(value)
    except (TypeError, ValueError):
        kind = getattr(s.type, "__name__", "")
        want = {"int": "a whole number", "float": "a number", "size[,size...]": "a size in px or a tuple of sizes"}.get(kind, kind)
        raise InputError(f"'{name}={value!r}' is invalid: give {want}") from None
    return check(name, value)


def check(name: str, value: Any) -> Any:
    """Validate one setting; errors say the valid range, like "'score_threshold=1.5' is invalid ..."."""
    s = SETTINGS[name]
    if value is None:
        return value
    if s.choices and value not in s.choices and not (s.path_suffix and str(value).endswith(s.path_suffix)):
        extra = f", or the path of a {s.path_suffix} file" if s.path_suffix else ""
        raise InputError(f"'{name}={value}' is invalid. Valid '{name}' values are: {', '.join(s.choices)}{extra}")
    if name == "det_size" and isinstance(value, tuple):
        for v in value:
            check(name, v)
        return value
    if s.lo is not None and not (s.lo <= value <= s.hi) and not (name == "det_size" and value == 0):
        raise InputError(f"'{name}={value}' is invalid. Valid '{name}' values are between {s.lo} and {s.hi}")
    return value
