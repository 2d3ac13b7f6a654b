"""Shared test fixtures. Real data and third-party models come from ../shared (skipped with a reason when absent)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("MASKWATCH_SHARED", ROOT.parent / "shared"))
MODELS = SHARED / "models"
DATA = SHARED / "data"
VOC = DATA / "detect" / "masks-voc-dev"
YOLO = DATA / "detect" / "masks-yolo-extra"
CLASSIFY = DATA / "classify"

needs_shared = pytest.mark.skipif(not (MODELS / "face_detection_yunet.onnx").is_file(),
                                  reason=f"third-party models and data not found in {SHARED} (clone beside shared/ to run)")

# Default databases go to the per-user data folder: in tests, a throw-away one (set before maskwatch is imported).
os.environ.setdefault("MASKWATCH_DATA", tempfile.mkdtemp(prefix="maskwatch-test-data-"))

if os.environ.get("MASKWATCH_MODELS"):  # absolute, so that servers started in another folder find it too
    os.environ["MASKWATCH_MODELS"] = str(Path(os.environ["MASKWATCH_MODELS"]).resolve())
elif MODELS.is_dir():
    os.environ["MASKWATCH_MODELS"] = str(MODELS)


def run_cli(argv: list[str]) -> tuple[int, str, str]:
    """Run ``maskwatch ARGV`` in-process: (exit code, stdout, stderr). An exception escaping main() (a traceback for
    the user) fails the test."""
    import contextlib
    import io

    from maskwatch import cli

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = cli.main(argv)
    return rc, out.getvalue(), err.getvalue()


def wait_for(predicate, timeout: float = 15.0, step: float = 0.01):  # noqa: ANN001, ANN201
    """Call ``predicate`` until it returns something true (returned) or ``timeout`` seconds pass (its last value):
    tests wait on a condition, never a fixed sleep."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(step)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now (connections to it are refused)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def copy_voc(dst: Path, stems: list[str]) -> Path:
    """A small VOC scene set at ``dst``: the photos and annotations of ``stems`` from masks-voc-dev."""
    import shutil

    (dst / "annotations").mkdir(parents=True)
    (dst / "images").mkdir()
    for s in stems:
        shutil.copy(VOC / "annotations" / f"{s}.xml", dst / "annotations")
        shutil.copy(VOC / "images" / f"{s}.jpg", dst / "images")
    return dst


@pytest.fixture
def voc_image() -> Path:
    """A real scene photo with several small faces (masked and unmasked): maksssksksss0.jpg, 512x366."""
    p = VOC / "images" / "maksssksksss0.jpg"
    if not p.is_file():
        pytest.skip(f"{p} not found (shared data absent)")
    return p


@pytest.fixture
def blank() -> np.ndarray:
    return np.full((240, 320, 3), 127, np.uint8)


def phone_video(path: Path, upright_bgr: np.ndarray, degrees: int, frames: int = 3, fps: float = 10.0) -> Path:
    """An MP4 as a phone films it: the frames stored turned, with the rotation a player applies (90, 180 or 270
    degrees clockwise) in the track header's display matrix (the tkhd box)."""
    import struct

    import cv2

    stored = cv2.rotate(upright_bgr, {90: cv2.ROTATE_90_COUNTERCLOCKWISE, 180: cv2.ROTATE_180,
                                      270: cv2.ROTATE_90_CLOCKWISE}[degrees])
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, stored.shape[1::-1])
    for _ in range(frames):
        writer.write(stored)
    writer.release()
    data = bytearray(path.read_bytes())
    i = data.find(b"tkhd")
    start = i + 4 + (24 if data[i + 4] == 0 else 36) + 16  # version/flags, times, track, duration; reserved, layer, volume
    assert i > 0 and struct.unpack(">9i", data[start : start + 36]) == (1 << 16, 0, 0, 0, 1 << 16, 0, 0, 0, 1 << 30)
    c, s = {90: (0, 1), 180: (-1, 0), 270: (0, -1)}[degrees]
    data[start : start + 36] = struct.pack(">9i", c << 16, s << 16, 0, -s << 16, c << 16, 0, 0, 0, 1 << 30)
    path.write_bytes(bytes(data))
    return path
