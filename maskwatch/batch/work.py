"""What runs inside a worker: one chunk of items in, one part file out.

Each worker process loads one :class:`~maskwatch.pipeline.Detector` per settings (once, with one CPU thread) and
keeps it for every chunk it is given. Reading, decoding and detecting happen per item under one try/except: a
corrupt, truncated, huge, missing or unfetchable input becomes a row with an ``error`` message, never a failed
chunk. Rows are the JSON records of ``maskwatch detect`` (:func:`~maskwatch.detections.frame_record`).
"""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np

from ..detections import frame_record
from ..errors import MaskwatchError
from .inputs import VIDEO_SUFFIXES, Item, is_url
from .store import part_path, stats_path, write_atomic

_DETECTORS: dict[str, Any] = {}
MAX_DOWNLOAD = 64 * 1024 * 1024  # bytes: a URL that sends more is refused
URL_TIMEOUT = 30.0  # seconds


def detector_for(settings: dict[str, Any]) -> Any:
    """This process's Detector for ``settings`` (made once; one thread, as a worker gets one core)."""
    key = json.dumps(settings, sort_keys=True, default=str)
    if key not in _DETECTORS:
        import cv2

        from ..pipeline import Detector

        cv2.setNumThreads(1)
        kw: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in settings.items()}
        _DETECTORS[key] = Detector(**{**kw, "threads": 1})
    return _DETECTORS[key]


def _fetch(url: str) -> bytes:
    req = urllib.request.Request(url, headers={"User-Agent": "maskwatch-batch"})
    try:
        with urllib.request.urlopen(req, timeout=URL_TIMEOUT) as r:  # noqa: S310  (http and https only, checked by is_url)
            data: bytes = r.read(MAX_DOWNLOAD + 1)
    except urllib.error.HTTPError as e:
        raise MaskwatchError(f"{url}: the server answered {e.code} {e.reason}") from None
    except (urllib.error.URLError, OSError, ValueError) as e:
        reason = getattr(e, "reason", e)
        raise MaskwatchError(f"{url}: cannot be fetched ({reason})") from None
    if len(data) > MAX_DOWNLOAD:
        raise MaskwatchError(f"{url}: larger than {MAX_DOWNLOAD // 2**20} MB; refused")
    return data


class _Videos:
    """Frames of the video files in one chunk, read forwards (one open file at a time)."""

    def __init__(self) -> None:
        self.path: str | None = None
        self.cap: Any = None
        self.pos = 0
        self.end: int | None = None  # where the open file turned out to end (a truncated video): one answer for all

    def frame(self, item: Item) -> np.ndarray:
        import cv2

        from ..video import open_video_file

        if item.source == self.path and self.end is not None and item.frame >= self.end:
            raise self._ended(item)
        if item.source != self.path or item.frame < self.pos:
            self.close()
            self.cap = open_video_file(item.source)
            self.path, self.pos = item.source, 0
            if not self.cap.isOpened():
                raise MaskwatchError(f"{item.source}: not a video OpenCV can open")
            if item.frame > 0:
                self.cap.set(cv2.CAP_PROP_POS_FRAMES, item.frame)
                self.pos = int(self.cap.get(cv2.CAP_PROP_POS_FRAMES))
        while self.pos < item.frame:  # grab() skips without decoding the picture
            if not self.cap.grab():
                self.end = self.pos
                raise self._ended(item)
            self.pos += 1
        ok, img = self.cap.read()
        self.pos += 1
        if not ok or img is None:
            self.end = item.frame
            raise self._ended(item)
        return np.ascontiguousarray(img)

    def _ended(self, item: Item) -> MaskwatchError:
        return MaskwatchError(f"{item.source}: frame {item.frame} cannot be read: the video is truncated or damaged "
                              f"from frame {self.end} on")

    def close(self) -> None:
        if self.cap is not None:
            self.cap.release()
        self.cap, self.path, self.end = None, None, None


def _load(item: Item, videos: _Videos) -> tuple[np.ndarray, int]:
    """(BGR uint8 upright image, bytes read)."""
    from ..images import decode_image, load_image

    if item.is_video:
        return videos.frame(item), 0
    if is_url(item.source):
        data = _fetch(item.source)
        return decode_image(data, item.source), len(data)
    if Path(item.source).suffix.lower() in VIDEO_SUFFIXES and Path(item.source).is_file():
        raise MaskwatchError(f"{item.source}: not a video OpenCV can open, or it reports no frames; is the file complete?")
    img = load_image(item.source)
    return img, os.path.getsize(item.source)


def error_row(item: Item, message: str) -> dict[str, Any]:
    row: dict[str, Any] = {"source": item.source, "width": None, "height": None}
    if item.is_video:
        row["frame"], row["time"] = item.frame, item.time
    row["faces"] = []
    row["error"] = message
    return row


def process_chunk(index: int, items: list[tuple[str, int, float]], settings: dict[str, Any], out: str, fmt: str) -> dict[str, Any]:
    """Detect faces and masks in one chunk and write its part; returns the chunk's counts. Runs in a worker."""
    t0 = time.perf_counter()
    det = detector_for(settings)
    rows: list[dict[str, Any]] = []
    labels: dict[str, int] = {}
    errors = bytes_in = 0
    videos = _Videos()
    try:
        for raw in items:
            item = Item(*raw)
            try:
                img, n = _load(item, videos)
                bytes_in += n
                d = det.detect(img)
                rec = frame_record(item.source, img.shape[1], img.shape[0], d,
                                   frame=item.frame if item.is_video else None, time=item.time if item.is_video else None)
                for lab in d.labels:
                    labels[lab] = labels.get(lab, 0) + 1
            except MaskwatchError as e:
                rec, errors = error_row(item, str(e)), errors + 1
            except MemoryError:
                rec, errors = error_row(item, f"{item.source}: too large to decode in this worker's memory"), errors + 1
            except Exception as e:  # one bad input must never cost the chunk: report it in its row
                rec, errors = error_row(item, f"{item.source}: {type(e).__name__}: {e}"), errors + 1
            rows.append(rec)
    finally:
        videos.close()
    root = Path(out)
    data = _encode(rows, fmt, det)
    seconds = time.perf_counter() - t0
    stats = {"chunk": index, "items": len(rows), "errors": errors, "faces": labels, "seconds": round(seconds, 3),
             "bytes_in": bytes_in, "bytes_out": len(data), "worker_pid": os.getpid()}
    write_atomic(stats_path(root, index), json.dumps(stats).encode())
    write_atomic(part_path(root, index, fmt), data)
    return stats


def _encode(rows: list[dict[str, Any]], fmt: str, det: Any) -> bytes:
    if fmt == "jsonl":
        return "".join(json.dumps(r) + "\n" for r in rows).encode()
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pylist([{**r, "error": r.get("error")} for r in rows], schema=parquet_schema(det.classifier.class_names))
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd")
    return buf.getvalue()


def parquet_schema(class_names: tuple[str, ...]) -> Any:
    """One row per image or frame; ``faces`` a list of structs (box x1,y1,x2,y2 pixels, face_score, label,
    confidence, probs per class); ``frame``/``time`` null for images; ``width``/``height`` null and ``error`` set
    for an input that failed."""
    import pyarrow as pa

    face = pa.struct([
        ("box", pa.list_(pa.int32(), 4)), ("face_score", pa.float32()), ("label", pa.string()),
        ("confidence", pa.float32()), ("probs", pa.struct([(n, pa.float32()) for n in class_names])),
    ])
    return pa.schema([
        ("source", pa.string()), ("frame", pa.int64()), ("time", pa.float64()), ("width", pa.int32()),
        ("height", pa.int32()), ("faces", pa.list_(face)), ("error", pa.string()),
    ])
