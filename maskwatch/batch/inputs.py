"""What a batch run reads: folders, glob patterns, list files and URLs, and video files expanded into sampled frames.

An :class:`Item` is one image (a file or an http(s) URL) or one frame of a video file. The plan is sorted and
fixed before any work starts, so that chunk ``k`` of a run is the same items every time it is resumed.
"""

from __future__ import annotations

import glob
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError
from ..images import IMAGE_SUFFIXES, VIDEO_SUFFIXES, find_images

LIST_SUFFIXES = (".txt", ".lst", ".list")


@dataclass(frozen=True, order=True)
class Item:
    """One unit of work. ``frame`` is -1 for an image; for a video, the frame index and ``time`` its seconds into the file."""

    source: str
    frame: int = -1
    time: float = -1.0

    @property
    def is_video(self) -> bool:
        return self.frame >= 0

    def key(self) -> str:
        return self.source if self.frame < 0 else f"{self.source}#{self.frame}"


def is_url(text: str) -> bool:
    return text.startswith(("http://", "https://"))


def _media(path: Path) -> list[Path]:
    """Image and video files under a folder (recursive) or the file itself."""
    return find_images(path, IMAGE_SUFFIXES + VIDEO_SUFFIXES)


def _from_list(path: Path) -> list[str]:
    """Paths and URLs of a list file: one per line, blank lines and # comments skipped; relative paths are relative to
    the list file's folder."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"{path}: cannot read this list of inputs ({e}); it should be a UTF-8 text file, one path or URL a line") from None
    out = []
    for line in lines:
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        out.append(line if is_url(line) or Path(line).is_absolute() else str(path.parent / line))
    return out


def _video_frames(path: Path, every_seconds: float | None, every_frames: int | None) -> list[Item]:
    """The sampled frames of a video file: every ``every_frames``-th frame, or one every ``every_seconds``."""
    import cv2

    from ..video import ASSUMED_FPS, MAX_FPS, MIN_FPS, open_video_file

    cap = open_video_file(path)
    try:
        if not cap.isOpened():
            raise InputError(f"{path}: not a video OpenCV can open (MP4, AVI, MKV, WebM ...); is the file complete?")
        n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
    finally:
        cap.release()
    if n <= 0:
        raise InputError(f"{path}: the video reports no frames; re-encode it (ffmpeg -i IN -c:v libx264 OUT.mp4)")
    if not MIN_FPS <= fps <= MAX_FPS:  # NaN too: the rule of `video` and `watch`
        fps = ASSUMED_FPS
    step = every_frames if every_frames else max(1, int(round((every_seconds or 1.0) * fps)))
    return [Item(str(path), f, round(f / fps, 3)) for f in range(0, n, step)]


def expand_inputs(inputs: list[str], every_seconds: float | None = None, every_frames: int | None = None) -> list[Item]:
    """The sorted, de-duplicated items of ``inputs``: image or video files, folders (searched recursively), glob
    patterns (quoted, ``'photos/**/*.jpg'``), list files (``.txt``: one path or URL a line) and http(s) URLs. Videos
    are sampled one frame every ``every_seconds`` (default 1 s), or every ``every_frames``-th frame."""
    if every_seconds is not None and every_seconds <= 0:
        raise InputError(f"--every-seconds {every_seconds}: give a positive number of seconds")
    if every_frames is not None and every_frames < 1:
        raise InputError(f"--every-frames {every_frames}: give 1 or more")
    if not inputs:
        raise InputError("no input given; pass image or video files, folders, glob patterns, list files or URLs")
    sources: set[str] = set()
    for spec in inputs:
        if is_url(spec):
            sources.add(spec)
            continue
        p = Path(spec)
        if p.is_file() and p.suffix.lower() in LIST_SUFFIXES:
            listed = _from_list(p)
            if not listed:
                raise InputError(f"{p}: the list holds no path or URL")
            for entry in listed:
                if is_url(entry):
                    sources.add(entry)
                else:  # a listed file that is missing becomes an error row, not a refusal of the whole run
                    sources.update(str(f) for f in (_media(Path(entry)) if Path(entry).is_dir() else [Path(entry)]))
            continue
        if p.exists():
            found = _media(p)
            if not found:
                raise InputError(f"{p}: the folder holds no image or video ({', '.join(IMAGE_SUFFIXES[:4])}, .mp4 ...)")
            sources.update(str(f) for f in found)
            continue
        if any(c in spec for c in "*?["):
            matches = sorted(glob.glob(spec, recursive=True))
            files = [f for m in matches for f in _media(Path(m))]
            if not files:
                raise InputError(f"{spec}: no image or video matches this pattern; check the folder and the spelling")
            sources.update(str(f) for f in files)
            continue
        raise InputError(f"{spec}: no such file or folder; check the path")
    items: list[Item] = []
    for s in sorted(sources):
        if not is_url(s) and Path(s).suffix.lower() in VIDEO_SUFFIXES and Path(s).is_file():
            try:
                items += _video_frames(Path(s), every_seconds, every_frames)
            except InputError:  # a broken video is one error row (the worker says why), not a refused run
                items.append(Item(s))
        else:
            items.append(Item(s))
    return items
