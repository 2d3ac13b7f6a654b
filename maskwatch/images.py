"""Reading images from disk with checks that name the file and say what to do."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import cv2
import numpy as np

from .errors import InputError

HEIF_SUFFIXES = (".heic", ".heif")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".jp2", ".pgm", ".ppm", ".gif", *HEIF_SUFFIXES)
"""File endings a folder is searched for. HEIC/HEIF (iPhone photos) decode with the ``heic`` extra (pillow-heif);
without it such a file is reported as skipped, with the fix, not passed over in silence."""
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".ts")
"""Video file endings (``maskwatch batch`` samples their frames; ``detect`` points them there)."""
HEIF_BRANDS = (b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1")
MAX_PIXELS = 50_000_000  # 50 megapixels: larger images are refused (about 150 MB decoded)
MIN_SIDE = 8


def load_image(path: str | os.PathLike, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Read an image file as a **BGR** uint8 array (h, w, 3).

    Grayscale is expanded to 3 channels, alpha is composited over white, 16-bit is scaled to 8-bit. The EXIF
    orientation tag (phone photos; JPEG, PNG, WebP), or a HEIC photo's own rotation (with the ``heic`` extra), is
    applied, so the array is upright as a viewer shows it and boxes refer to it. Raises :class:`InputError` for a
    missing, unreadable, truncated, tiny or huge image.
    """
    if not isinstance(path, (str, os.PathLike)):
        hint = " (an image array needs no loading: pass it to detect() as it is)" if isinstance(path, np.ndarray) else ""
        raise InputError(f"load_image() takes the path of an image file, got {type(path).__name__}{hint}")
    p = Path(path)
    if not p.exists():
        raise InputError(f"{p}: no such file; check the path")
    if p.is_dir():
        raise InputError(f"{p}: is a folder; pass an image file (or use a command that takes folders)")
    if p.suffix.lower() in VIDEO_SUFFIXES:
        raise InputError(f"{p}: is a video, not a photo; annotate it with `maskwatch video`, or sample its frames "
                         "with `maskwatch batch`")
    try:
        data = np.fromfile(str(p), np.uint8)
    except OSError as e:
        raise InputError(f"{p}: cannot be read ({e.strerror})") from None
    return decode_image(data.tobytes(), str(p), max_pixels)


def decode_image(data: bytes, name: str = "<bytes>", max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Decode encoded image bytes (JPEG, PNG, ...) to BGR uint8; see :func:`load_image`."""
    if not data:
        raise InputError(f"{name}: the file is empty")
    if data[:2] == b"\xff\xd8" and b"\xff\xd9" not in data[-1024:]:
        raise InputError(f"{name}: the JPEG is truncated (no end-of-image marker); re-copy or re-export the file")
    check_image_header(data, name, max_pixels)
    if is_heif(data):
        return normalize_image(_decode_heif(data, name, max_pixels), name, max_pixels)
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)  # (UNCHANGED ignores EXIF orientation)
    if img is None:
        raise InputError(f"{name}: not an image OpenCV can decode (JPEG, PNG, BMP, WebP, TIFF, GIF); is it really an image?")
    return normalize_image(orient(img, exif_orientation(data)), name, max_pixels)


# Magic numbers of the formats decode_image reads (WebP and HEIF need more than a prefix: looks_like_image).
IMAGE_MAGIC = (b"\xff\xd8", b"\x89PNG\r\n\x1a\n", b"BM", b"II*\x00", b"MM\x00*", b"\x00\x00\x00\x0cjP  ",
               b"\xffO\xffQ", b"P1", b"P2", b"P3", b"P4", b"P5", b"P6", b"GIF87a", b"GIF89a")


def looks_like_image(data: bytes) -> bool:
    """Whether the bytes start like a format :func:`decode_image` reads (a cheap check before decoding)."""
    return data.startswith(IMAGE_MAGIC) or (data[:4] == b"RIFF" and data[8:12] == b"WEBP") or is_heif(data)


def is_heif(data: bytes) -> bool:
    """A HEIC/HEIF file (an ISO base media file whose ``ftyp`` brand is one of HEIF's), as iPhones save photos."""
    return data[4:8] == b"ftyp" and data[8:12] in HEIF_BRANDS


def _decode_heif(data: bytes, name: str, max_pixels: int) -> np.ndarray:
    """HEIC/HEIF bytes -> BGR(A) uint8, upright: libheif applies the file's rotation and mirroring (the container's
    ``irot``/``imir``, which HEIF uses instead of the EXIF tag). Needs pillow-heif (``pip install 'maskwatch[heic]'``)."""
    try:
        import pillow_heif
    except ImportError:
        raise InputError(f"{name}: a HEIC/HEIF photo (the format iPhones save); install the heic extra to read it "
                         "(pip install 'maskwatch[heic]', which adds pillow-heif), or convert it to JPEG") from None
    import io

    def damaged(e: Exception) -> InputError:
        return InputError(f"{name}: the HEIC/HEIF file cannot be decoded ({e}); re-copy or re-export it")

    try:
        heif = pillow_heif.open_heif(io.BytesIO(data), convert_hdr_to_8bit=True)  # reads the header only
    except (ValueError, RuntimeError, OSError) as e:
        raise damaged(e) from None
    w, h = heif.size
    if w * h > max_pixels:  # a bomb is refused before its pixels are decoded
        raise InputError(f"{name}: the image is {w}x{h} px ({w * h / 1e6:.0f} MP), over the {max_pixels / 1e6:.0f} MP limit; downscale it first")
    try:
        rgb = np.asarray(heif)
    except (ValueError, RuntimeError, OSError) as e:
        raise damaged(e) from None
    if rgb.ndim == 3 and rgb.shape[2] == 4:
        return cv2.cvtColor(rgb, cv2.COLOR_RGBA2BGRA)
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR) if rgb.ndim == 3 else rgb


def decode_reduced(data: bytes, name: str = "<bytes>", max_pixels: int = MAX_PIXELS, max_side: int = 1600) -> tuple[np.ndarray, float]:
    """Decode for detection only: a large JPEG is decoded at 1/2, 1/4 or 1/8 of its size (libjpeg's DCT scaling,
    far less memory and time) while its longer side stays at least ``max_side`` px; other images are decoded whole
    and shrunk the same way. Returns (BGR uint8 upright image, scale), scale = returned size / original size, so
    boxes found in it divide by scale to be in the original's pixels."""
    if data[:2] == b"\xff\xd8" and b"\xff\xd9" in data[-1024:]:
        check_image_header(data, name, max_pixels)
        w, h = _jpeg_size(data)
        factor = next((f for f in (8, 4, 2) if w and h and max(w, h) / f >= max_side), 1)
        if factor > 1:
            flag = {2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4, 8: cv2.IMREAD_REDUCED_COLOR_8}[factor]
            img = cv2.imdecode(np.frombuffer(data, np.uint8), flag | cv2.IMREAD_IGNORE_ORIENTATION)
            if img is not None:
                img = normalize_image(orient(img, exif_orientation(data)), name, max_pixels)
                full = max(w, h)
                return img, max(img.shape[:2]) / full
    img = decode_image(data, name, max_pixels)
    longer = max(img.shape[:2])
    if longer > 2 * max_side:
        scale = max_side / longer
        return cv2.resize(img, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA), scale
    return img, 1.0


def _jpeg_size(data: bytes) -> tuple[int, int]:
    """(width, height) from a JPEG's frame header, or (0, 0)."""
    i = 2
    while i + 9 < len(data):
        if data[i] != 0xFF:
            i += 1
            continue
        marker = data[i + 1]
        if marker in (0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF):
            return int.from_bytes(data[i + 7 : i + 9], "big"), int.from_bytes(data[i + 5 : i + 7], "big")
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            i += 2
            continue
        i += 2 + int.from_bytes(data[i + 2 : i + 4], "big")
    return 0, 0


def orient(img: np.ndarray, orientation: int) -> np.ndarray:
    """The upright image for an EXIF orientation value (1-8; anything else: unchanged), as viewers show it."""
    if orientation == 2:
        return cv2.flip(img, 1)
    if orientation == 3:
        return cv2.rotate(img, cv2.ROTATE_180)
    if orientation == 4:
        return cv2.flip(img, 0)
    if orientation == 5:
        return cv2.transpose(img)
    if orientation == 6:
        return cv2.rotate(img, cv2.ROTATE_90_CLOCKWISE)
    if orientation == 7:
        return cv2.rotate(cv2.transpose(img), cv2.ROTATE_180)
    if orientation == 8:
        return cv2.rotate(img, cv2.ROTATE_90_COUNTERCLOCKWISE)
    return img


def exif_orientation(data: bytes) -> int:
    """The EXIF orientation tag (0x0112) of a JPEG (APP1), PNG (eXIf) or WebP (EXIF) file's bytes; 1 if none."""
    tiff = b""
    if data[:2] == b"\xff\xd8":
        i = 2
        while i + 4 <= len(data) and data[i] == 0xFF:
            marker, size = data[i + 1], int.from_bytes(data[i + 2 : i + 4], "big")
            if marker == 0xE1 and data[i + 4 : i + 10] == b"Exif\x00\x00":
                tiff = data[i + 10 : i + 2 + size]
                break
            if marker == 0xDA:  # start of scan: no metadata after it
                break
            i += 2 + size
    elif data[:8] == b"\x89PNG\r\n\x1a\n":
        i = 8
        while i + 8 <= len(data):
            size, kind = int.from_bytes(data[i : i + 4], "big"), data[i + 4 : i + 8]
            if kind == b"eXIf":
                tiff = data[i + 8 : i + 8 + size]
                break
            if kind in (b"IDAT", b"IEND"):
                break
            i += 12 + size
    elif data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        i = 12
        while i + 8 <= len(data):
            kind, size = data[i : i + 4], int.from_bytes(data[i + 4 : i + 8], "little")
            if kind == b"EXIF":
                tiff = data[i + 8 : i + 8 + size]
                tiff = tiff[6:] if tiff[:6] == b"Exif\x00\x00" else tiff
                break
            i += 8 + size + (size & 1)
    return _tiff_orientation(tiff)


def _tiff_orientation(tiff: bytes) -> int:
    if len(tiff) < 8 or tiff[:2] not in (b"II", b"MM"):
        return 1
    order: Literal["little", "big"] = "little" if tiff[:2] == b"II" else "big"
    ifd = int.from_bytes(tiff[4:8], order)
    if ifd + 2 > len(tiff):
        return 1
    for k in range(int.from_bytes(tiff[ifd : ifd + 2], order)):
        e = ifd + 2 + 12 * k
        if e + 12 > len(tiff):
            break
        if int.from_bytes(tiff[e : e + 2], order) == 0x0112:
            value = int.from_bytes(tiff[e + 8 : e + 10], order)
            return value if 1 <= value <= 8 else 1
    return 1


def check_size(img: np.ndarray, name: str = "<array>", max_pixels: int | None = MAX_PIXELS) -> None:
    """Refuse an image array too small to hold a face (a side under ``MIN_SIDE`` px, an empty array) or over
    ``max_pixels`` (None: no limit)."""
    h, w = img.shape[:2]
    if min(h, w) < MIN_SIDE:
        raise InputError(f"{name}: the image is {w}x{h} px, too small to hold a face (at least {MIN_SIDE}x{MIN_SIDE} px)")
    if max_pixels is not None and h * w > max_pixels:
        raise InputError(f"{name}: the image is {w}x{h} px ({h * w / 1e6:.0f} MP), over the {max_pixels / 1e6:.0f} MP limit; downscale it first")


def normalize_image(img: np.ndarray, name: str = "<array>", max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Any decoded array -> BGR uint8 (h, w, 3), with the same checks as :func:`load_image`.

    Accepts (h, w), (h, w, 1), (h, w, 3) BGR and (h, w, 4) BGRA; uint8, uint16 (full 16-bit range) or float in
    0..1 (a float image with values above 1, or NaN, is refused: it is most likely 0..255 and would turn white).
    """
    if not isinstance(img, np.ndarray):
        raise InputError(f"{name}: expected a numpy image array (h, w, 3) BGR uint8, got {type(img).__name__}")
    if img.ndim not in (2, 3) or (img.ndim == 3 and img.shape[2] not in (1, 3, 4)):
        raise InputError(f"{name}: expected an image of shape (h, w), (h, w, 3) or (h, w, 4), got {img.shape}")
    check_size(img, name, max_pixels)
    h, w = img.shape[:2]
    if img.dtype == np.uint16:
        img = (img >> 8).astype(np.uint8)
    elif img.dtype in (np.float16, np.float32, np.float64):
        lo, hi = float(np.min(img)), float(np.max(img))
        if not (np.isfinite(lo) and np.isfinite(hi)):
            raise InputError(f"{name}: the float image holds NaN or infinite values")
        if hi > 1.0 + 1e-6 or lo < -1e-6:
            raise InputError(f"{name}: a float image must hold values 0..1 (this one has {lo:g}..{hi:g}); for 0..255 "
                             "pixels pass image.astype(np.uint8)")
        img = np.clip(img * 255.0 + 0.5, 0, 255).astype(np.uint8)
    elif img.dtype != np.uint8:
        raise InputError(f"{name}: unsupported pixel type {img.dtype}; expected uint8 or uint16")
    if img.ndim == 2 or img.shape[2] == 1:
        return cv2.cvtColor(img.reshape(h, w), cv2.COLOR_GRAY2BGR)
    if img.shape[2] == 4:
        alpha = img[:, :, 3:4].astype(np.float32) / 255.0
        return (img[:, :, :3].astype(np.float32) * alpha + 255.0 * (1 - alpha)).astype(np.uint8)
    return img


def check_image_header(data: bytes, name: str, max_pixels: int) -> None:
    """Refuse decompression bombs before decoding: read width and height from PNG, JPEG, BMP, WebP and GIF headers.
    Other formats (TIFF ...) are bounded by OpenCV's own pixel limit, which maskwatch sets to ``MAX_PIXELS``."""
    w = h = 0
    if data[:2] == b"BM" and len(data) >= 26:
        w, h = abs(int.from_bytes(data[18:22], "little", signed=True)), abs(int.from_bytes(data[22:26], "little", signed=True))
    elif data[:4] == b"RIFF" and data[8:12] == b"WEBP" and len(data) >= 30:
        chunk = data[12:16]
        if chunk == b"VP8X":
            w, h = 1 + int.from_bytes(data[24:27], "little"), 1 + int.from_bytes(data[27:30], "little")
        elif chunk == b"VP8L":
            bits = int.from_bytes(data[21:25], "little")
            w, h = 1 + (bits & 0x3FFF), 1 + ((bits >> 14) & 0x3FFF)
        elif chunk == b"VP8 ":
            w, h = int.from_bytes(data[26:28], "little") & 0x3FFF, int.from_bytes(data[28:30], "little") & 0x3FFF
    elif data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) >= 24:
        w, h = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    elif data[:2] == b"\xff\xd8":
        w, h = _jpeg_size(data)
    elif data[:6] in (b"GIF87a", b"GIF89a") and len(data) >= 10:
        w, h = int.from_bytes(data[6:8], "little"), int.from_bytes(data[8:10], "little")
    if w * h > max_pixels:
        raise InputError(f"{name}: the image is {w}x{h} px ({w * h / 1e6:.0f} MP), over the {max_pixels / 1e6:.0f} MP limit; downscale it first")


def find_images(path: str | os.PathLike, suffixes: tuple[str, ...] = IMAGE_SUFFIXES) -> list[Path]:
    """Image files under ``path`` (a file, or a folder searched recursively), sorted by name; ``suffixes``: the
    file endings searched for (``batch`` adds video files)."""
    p = Path(path)
    if not p.exists():
        raise InputError(f"{p}: no such file or folder; check the path")
    if p.is_file():
        return [p]
    return sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in suffixes)

