"""What every command shares: settings lists and presets, messages, progress bars, the help formatter."""

from __future__ import annotations

import argparse
import sys
from collections import Counter
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


def _log_to_stderr(prefix: str, *names: str) -> None:
    """Show the warnings of these library loggers (a camera, the serial port, the webhook changing state) on
    stderr as "PREFIX: message", once per logger however often a command runs in one process."""
    import logging

    for name in names:
        logger = logging.getLogger(name)
        if not any(getattr(h, "maskwatch_cli", False) for h in logger.handlers):
            handler = logging.StreamHandler(sys.stderr)
            handler.setFormatter(logging.Formatter(f"{prefix}: %(message)s"))
            handler.maskwatch_cli = True  # type: ignore[attr-defined]
            logger.addHandler(handler)


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
    """Keeps the example's line breaks and shows every default, unless the help says its own "(default: ...)" or
    the default is None ("not given", which tells a user nothing: the help says what happens then)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.help and ("(default:" in action.help or action.default is None):
            return action.help
        return super()._get_help_string(action)


def _glob_matches(pattern: str) -> list[str] | None:
    """What a glob pattern the shell did not expand ('*.jpg' in quotes, or on Windows) matches; None for a path."""
    import glob

    if Path(pattern).exists() or not any(c in pattern for c in "*?["):
        return None
    return sorted(glob.glob(pattern, recursive=True))


def _say_left_out(paths: Sequence[str], reads: tuple[str, ...] | None = None, what: str = "images") -> None:
    """Tell the user which files of the given folders (or of folders a quoted glob matches) a folder search passed
    over (stderr; nothing when none). ``reads``: the endings the command reads (default: images)."""
    from ..images import IMAGE_SUFFIXES, VIDEO_SUFFIXES

    reads = reads or IMAGE_SUFFIXES
    folders = [m for p in paths for m in (_glob_matches(p) or [p]) if Path(m).is_dir()]
    left_out = _other_files(folders, reads)
    if left_out:
        videos = set(left_out) & set(VIDEO_SUFFIXES)
        most = sorted(left_out.items(), key=lambda kv: (-kv[1], kv[0]))  # most first, ties by name: the same every run
        _err(f"maskwatch: left out {sum(left_out.values())} file(s) that are not {what} it reads ("
             + ", ".join(f"{k} {v}" for k, v in most[:6]) + (", ..." if len(left_out) > 6 else "") + ")"
             + ("; videos go to `maskwatch video` or `maskwatch batch`" if videos else ""))


def _other_files(paths: Sequence[str], reads: tuple[str, ...]) -> Counter[str]:
    """Files under the given folders that a folder search for ``reads`` passes over, by ending ('.mov': 3): said,
    not silent. Hidden files and folders (.git/, .thumbnails/) are not counted."""
    files: set[Path] = set()  # a folder and its subfolder both given: each file once
    for p in map(Path, paths):
        if p.is_dir():
            files |= {f.resolve() for f in p.rglob("*") if f.is_file() and f.suffix.lower() not in reads
                      and not any(part.startswith(".") for part in f.relative_to(p).parts)}
    return Counter(f.suffix.lower() or "(no ending)" for f in files)


def _check_output_folder(out: Path, inputs: Sequence[str], option: str = "--out", outputs: str = "annotated copies") -> None:
    """Refuse an output folder that is an input folder or inside one, or that holds an input file (the photo's own
    folder, or one above it): the next run would read its outputs (named ``outputs`` in the message; ``option``
    names the argument) as inputs, and an output could replace an original. A quoted glob is checked by what it
    matches."""
    o = out.resolve()
    for given in inputs:
        for p in _glob_matches(given) or [given]:
            rp = Path(p).resolve()
            if rp.is_dir() and (o == rp or rp in o.parents):
                raise InputError(f"{option} {out}: is inside the input folder {p}; maskwatch never writes among the "
                                 f"originals (a later run would read the {outputs} as inputs). Choose a folder outside it")
            if rp.is_file() and o in rp.parents:
                raise InputError(f"{option} {out}: holds the input {p}; maskwatch never writes among the originals "
                                 f"(a later run would read the {outputs} as inputs). Choose a folder outside it")


def _check_outputs(targets: Sequence[Path], inputs: Sequence[Path], force: bool, folders: Sequence[Path] = ()) -> None:
    """Never write over an input; overwrite an earlier output only with --force (every command the same).
    ``folders``: output folders the command fills (an existing one is an earlier run's; a file there is refused)."""
    src = {Path(p).resolve() for p in inputs}
    for t in [*targets, *folders]:
        if t.resolve() in src:
            raise InputError(f"{t}: is one of the inputs; maskwatch never writes over an input. Choose another output")
    for t in targets:
        if t.is_dir():
            raise InputError(f"{t}: is a folder; give the name of a file to write")
    for t in folders:
        if t.exists() and not t.is_dir():
            raise InputError(f"{t}: is a file; give a folder (or remove the file)")
    if not force:
        existing = [t for t in [*targets, *folders] if t.exists()]
        if existing:
            more = f" (and {len(existing) - 1} more)" if len(existing) > 1 else ""
            raise InputError(f"{existing[0]}{more}: already exists; pass --force to overwrite, or choose another output")


def _say_data_problems(warnings: Sequence[str] = (), skipped: Sequence[str] = ()) -> None:
    """What a labelled data set's loader passed over (its ``warnings``: unknown classes, bad boxes, missing images)
    and the images that could not be read when evaluated (``skipped``), on stderr: every command that reads labelled
    data says them the same way."""
    for w in warnings:
        _err(f"maskwatch: warning: {w}")
    if skipped:
        _err(f"maskwatch: skipped {len(skipped)} unreadable image(s): " + "; ".join(skipped[:3])
             + ("; ..." if len(skipped) > 3 else ""))


def _stop_on_signals(stop: Callable[[], None]) -> Callable[[], None]:
    """SIGTERM (systemd, docker stop) and SIGINT (Ctrl-C) call ``stop`` instead of killing the process, so the loop
    ends, pending events are flushed and the summary is printed. Returns a function that restores the handlers."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def handler(*_: object) -> None:
        # Not stop() here: a handler runs in the main thread between two bytecodes, possibly while that thread holds
        # the very lock stop() needs (threading.Event.set inside Event.wait): a deadlock that ignored SIGTERM.
        threading.Thread(target=stop, name="maskwatch-stop", daemon=True).start()

    old = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}

    def restore() -> None:
        for sig, handler in old.items():
            signal.signal(sig, handler)

    return restore


EPILOG = "Models come from MASKWATCH_MODELS, the package, or ~/.cache/maskwatch (see `maskwatch models`)."
