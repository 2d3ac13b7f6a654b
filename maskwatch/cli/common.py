"""What every command shares: settings lists and presets, messages, progress bars, the help formatter."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from ..errors import InputError
from ..settings import LIVE, PHOTO, SURE_SETTINGS
from ..settings import PHOTO_DET_SIZE as PHOTO_DET_SIZES
from .options import detector_kwargs

DETECT_SETTINGS = ["face_detector", "classifier", "score_threshold", "nms_threshold", "det_size", "upscale", "threads",
                   "nomask_cost", "flip", *SURE_SETTINGS]
PHOTO_DET_SIZE = str(PHOTO_DET_SIZES) if isinstance(PHOTO_DET_SIZES, int) else ",".join(map(str, PHOTO_DET_SIZES))  # as typed
PHOTO_DEFAULTS = {**PHOTO, "det_size": PHOTO_DET_SIZE}  # photos: accuracy first (two passes, mirrored faces too)
VIDEO_DEFAULTS = dict(LIVE)  # video and live: speed first (faces at an entrance are large)


def _err(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _detector(args: argparse.Namespace):  # noqa: ANN202
    from ..pipeline import Detector

    return Detector(**detector_kwargs(args))


def _bar(total: int | None, desc: str, unit: str, quiet: bool = False):  # noqa: ANN202
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit=unit, disable=quiet or None, file=sys.stderr, dynamic_ncols=True)


def _open_for_writing(path: str):  # noqa: ANN202
    p = Path(path)
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        return open(p, "w")
    except OSError as e:
        raise InputError(f"{p}: cannot write here ({e.strerror}); choose another path") from None


class _Formatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Keeps the example's line breaks and shows every default."""


def _check_output_folder(out: Path, inputs: Sequence[str]) -> None:
    """Refuse an output folder that is an input folder or inside one: the next run would read its annotated copies
    as photos, and a copy could replace an original."""
    o = out.resolve()
    for p in inputs:
        rp = Path(p).resolve()
        if rp.is_dir() and (o == rp or rp in o.parents):
            raise InputError(f"--out {out}: is inside the input folder {p}; maskwatch never writes among the originals "
                             "(a later run would read the annotated copies as photos). Choose a folder outside it")


def _check_outputs(targets: Sequence[Path], inputs: Sequence[Path], force: bool) -> None:
    """Never write over an input; overwrite an earlier output only with --force (every command the same)."""
    src = {Path(p).resolve() for p in inputs}
    for t in targets:
        if t.resolve() in src:
            raise InputError(f"{t}: is one of the inputs; maskwatch never writes over an input. Choose another output")
    if not force:
        existing = [t for t in targets if t.exists()]
        if existing:
            more = f" (and {len(existing) - 1} more)" if len(existing) > 1 else ""
            raise InputError(f"{existing[0]}{more}: already exists; pass --force to overwrite, or choose another output")


def _stop_on_signals(stop: Callable[[], None]) -> Callable[[], None]:
    """SIGTERM (systemd, docker stop) and SIGINT (Ctrl-C) call ``stop`` instead of killing the process, so the loop
    ends, pending events are flushed and the summary is printed. Returns a function that restores the handlers."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    old = {sig: signal.signal(sig, lambda *_: stop()) for sig in (signal.SIGTERM, signal.SIGINT)}
    def restore() -> None:
        for sig, handler in old.items():
            signal.signal(sig, handler)

    return restore


EPILOG = "Models come from MASKWATCH_MODELS, the package, or ~/.cache/maskwatch (see `maskwatch models`)."
