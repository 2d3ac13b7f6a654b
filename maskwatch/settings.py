"""One set of settings: each key's type, default and meaning, shared by the CLI (``--face-detector``), Python
keyword arguments (``face_detector=``) and, later, settings files. Checked in one place."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any, Callable

from .detectors import DEFAULT_FACE_DETECTOR, FACE_DETECTORS
from .errors import InputError


@dataclass(frozen=True)
class Setting:
    name: str
    type: Callable[[str], Any]
    default: Any
    help: str
    lo: float | None = None
    hi: float | None = None
    choices: tuple[str, ...] | None = None


SETTINGS: dict[str, Setting] = {
    s.name: s
    for s in [
        Setting("face_detector", str, DEFAULT_FACE_DETECTOR, "face detector", choices=tuple(FACE_DETECTORS)),
        Setting("classifier", str, "mask_classifier", "mask classifier: an ONNX path, or the bundled 'mask_classifier'"),
        Setting("score_threshold", float, 0.5, "minimum face-detector score, 0..1", 0.0, 1.0),
        Setting("nms_threshold", float, 0.3, "IoU above which overlapping face boxes merge, 0..1", 0.01, 1.0),
        Setting("det_size", int, 640, "longer side (px) an image is resized to for face detection; 0 = as is", 64, 4096),
        Setting("upscale", float, None, "fixed resize factor for face detection (overrides --det-size)", 0.1, 4.0),
        Setting("threads", int, None, "CPU threads for the classifier (None = all cores)", 1, 256),
    ]
}


def check(name: str, value: Any) -> Any:
    """Validate one setting; errors say the valid range, like "'score_threshold=1.5' is invalid ..."."""
    s = SETTINGS[name]
    if value is None:
        return value
    if s.choices and value not in s.choices:
        raise InputError(f"'{name}={value}' is invalid. Valid '{name}' values are: {', '.join(s.choices)}")
    if s.lo is not None and not (s.lo <= value <= s.hi) and not (name == "det_size" and value == 0):
        raise InputError(f"'{name}={value}' is invalid. Valid '{name}' values are between {s.lo} and {s.hi}")
    return value


def add_arguments(parser: argparse.ArgumentParser, names: list[str], defaults: dict[str, Any] | None = None) -> None:
    """Add ``--name`` options for the given settings (defaults shown in --help)."""
    for name in names:
        s = SETTINGS[name]
        default = (defaults or {}).get(name, s.default)
        parser.add_argument("--" + name.replace("_", "-"), dest=name, type=s.type, default=default,
                            choices=s.choices, help=s.help)


def detector_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    return {n: check(n, getattr(args, n)) for n in SETTINGS if hasattr(args, n)}
