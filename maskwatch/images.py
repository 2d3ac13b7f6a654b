"""Reading images from disk with checks that name the file and say what to do."""

from __future__ import annotations

import contextlib
import functools
import os
import re
import threading
import zlib
from collections.abc import Iterator
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
DECODE_BUDGET = 8
"""Bytes per pixel of ``max_pixels`` that :func:`decode_reduced` (the server's uploads) lets an image take to decode
whole: 400 MB at 50 MP, what OpenCV takes for an 8-bit RGBA image at the limit. JPEG (decoded reduced) and PNG
(decoded a strip at a time) take far less; a 16-bit RGBA TIFF takes 16 bytes a pixel, an 8-bit RGB JPEG 2000 about
18: such an upload over the budget is refused (:class:`ImageTooLarge`) rather than taking gigabytes."""
_STRIP_PIXELS = 1 << 18  # pixels converted to 8-bit BGR at a time (no full-size float or 16-bit copies)
_PNG_STRIP_BYTES = 4 << 20  # a PNG whose pixel data is larger is inflated and decoded this much at a time
_SERIAL_BYTES = 64 << 20  # decode_reduced: decodes that take more run one at a time (uploads decoded at once)
_large_decodes = threading.Lock()


class ImageTooLarge(InputError):
    """An image over the pixel limit, or too large to decode within the memory allowed (HTTP 413 on the server)."""


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
    """Decode encoded image bytes (JPEG, PNG, ...) to BGR uint8; see :func:`load_image`.

    A large PNG (8 or 16 bits, not interlaced) is decoded a strip at a time, anything else whole; the 8-bit BGR
    result is made a strip at a time too, so memory is about the decoded image's, with no full-size copies."""
    if not data:
        raise InputError(f"{name}: the file is empty")
    if data[:2] == b"\xff\xd8" and b"\xff\xd9" not in data[-1024:]:
        raise InputError(f"{name}: the JPEG is truncated (no end-of-image marker); re-copy or re-export the file")
    check_image_header(data, name, max_pixels)
    if is_heif(data):
        return normalize_image(_decode_heif(data, name, max_pixels), name, max_pixels)
    orientation = exif_orientation(data)
    png = _png_layout(data)
    if png is not None and png[1] * _png_stride(*png) > _PNG_STRIP_BYTES:
        w, h = png[0], png[1]
        _check_dims(*((h, w) if orientation in (5, 6, 7, 8) else (w, h)), name, max_pixels)
        return orient(_decode_png_strips(data, name, *png), orientation)
    img = _imdecode(data, cv2.IMREAD_UNCHANGED, name)  # (UNCHANGED ignores EXIF orientation)
    if img is None:
        raise InputError(f"{name}: not an image OpenCV can decode (JPEG, PNG, BMP, WebP, TIFF, GIF); is it really an image?")
    check_size(np.swapaxes(img, 0, 1) if orientation in (5, 6, 7, 8) else img, name, max_pixels)  # as a viewer shows it
    return orient(normalize_image(img, name, max_pixels), orientation)  # turned after: 3 bytes a pixel, not up to 8


def _imdecode(data: bytes, flags: int, name: str) -> np.ndarray | None:
    """cv2.imdecode, with OpenCV's errors (an image over its own size limit, a damaged file) as InputError."""
    try:
        return cv2.imdecode(np.frombuffer(data, np.uint8), flags)
    except cv2.error as e:
        reason = str(getattr(e, "err", "") or e).strip()
        if "CV_IO_MAX_IMAGE" in reason:  # validateInputImageSize: a size read from a header we do not parse
            limit = int(os.environ.get("OPENCV_IO_MAX_IMAGE_PIXELS", MAX_PIXELS))
            raise ImageTooLarge(f"{name}: the image is larger than OpenCV decodes (its header says over the {limit / 1e6:.0f} "
                                "MP limit, OPENCV_IO_MAX_IMAGE_PIXELS, or a side over 1048576 px); downscale it first") from None
        raise InputError(f"{name}: the image cannot be decoded (OpenCV: {reason}); re-copy or re-export the file") from None


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
        raise _over_limit(name, w, h, max_pixels)
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
    boxes found in it divide by scale to be in the original's pixels.

    This is what the server decodes uploads with, so memory is bounded: a PNG (8 or 16 bits, not interlaced) is
    decoded a strip at a time (about 3 bytes a pixel in all); an image that OpenCV must decode whole and that would take more than
    ``DECODE_BUDGET`` bytes a pixel of ``max_pixels`` (a 16-bit RGBA TIFF over 25 MP, say) is refused with
    :class:`ImageTooLarge`; and large decodes run one at a time, however many uploads arrive at once."""
    check_image_header(data, name, max_pixels)
    if data[:2] == b"\xff\xd8" and b"\xff\xd9" in data[-1024:]:
        w, h = _jpeg_size(data)
        factor = next((f for f in (8, 4, 2) if w and h and max(w, h) / f >= max_side), 1)
        if factor > 1:
            flag = {2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4, 8: cv2.IMREAD_REDUCED_COLOR_8}[factor]
            img = _imdecode(data, flag | cv2.IMREAD_IGNORE_ORIENTATION, name)
            if img is not None:
                img = normalize_image(orient(img, exif_orientation(data)), name, max_pixels)
                full = max(w, h)
                return img, max(img.shape[:2]) / full
    cost = decode_cost(data)
    if cost > DECODE_BUDGET * max_pixels:
        w, h = image_size(data)
        raise ImageTooLarge(f"{name}: the image is {w}x{h} px, which takes about {cost / 1e6:.0f} MB to decode (its "
                            f"format is decoded whole), over the {DECODE_BUDGET * max_pixels / 1e6:.0f} MB allowed; "
                            "send it as JPEG or PNG, or downscale it")
    with _large_decodes if cost > _SERIAL_BYTES or is_heif(data) else contextlib.nullcontext():
        img = decode_image(data, name, max_pixels)
        longer = max(img.shape[:2])
        if longer > 2 * max_side:
            scale = max_side / longer
            return cv2.resize(img, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA), scale
    return img, 1.0


def decode_cost(data: bytes) -> int:
    """About the most memory, in bytes, that :func:`decode_image` takes for these bytes, from the header (0 where
    the header gives no size): a large PNG is decoded in strips into the 8-bit BGR result (3 bytes a pixel);
    anything else OpenCV decodes whole, into w x h x channels x bytes a sample, which its Python binding then copies
    (twice that), and JPEG 2000 besides into 32-bit planes (OpenJPEG's, 4 bytes a sample)."""
    w, h, channels, sample = _header(data)
    png = _png_layout(data)
    if png is not None and h * _png_stride(*png) > _PNG_STRIP_BYTES:
        return 3 * w * h + 2 * _PNG_STRIP_BYTES
    channels, sample = channels or 4, sample or 1  # unknown: as 8-bit RGBA
    cost = 2 * w * h * max(3, min(channels, 4)) * sample  # at least the 8-bit BGR result
    if data.startswith((b"\x00\x00\x00\x0cjP  ", b"\xffO\xffQ")):
        cost += 4 * w * h * channels
    return cost


def _jpeg_size(data: bytes) -> tuple[int, int]:
    """(width, height) from a JPEG's frame header, or (0, 0) (none before the scan)."""
    i = 2
    while i + 9 < len(data):
        if data[i] != 0xFF:
            i += 1
            continue
        marker = data[i + 1]
        if marker in (0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF):
            return int.from_bytes(data[i + 7 : i + 9], "big"), int.from_bytes(data[i + 5 : i + 7], "big")
        if marker in (0xD8, 0x01, 0xFF) or 0xD0 <= marker <= 0xD7:
            i += 1 if marker == 0xFF else 2  # 0xFF 0xFF: a fill byte before the marker
            continue
        if marker == 0xDA:  # the scan starts: no frame header came
            return 0, 0
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
    _check_dims(w, h, name, max_pixels)


def _check_dims(w: int, h: int, name: str, max_pixels: int | None) -> None:
    if min(h, w) < MIN_SIDE:
        raise InputError(f"{name}: the image is {w}x{h} px, too small to hold a face (at least {MIN_SIDE}x{MIN_SIDE} px)")
    if max_pixels is not None and h * w > max_pixels:
        raise _over_limit(name, w, h, max_pixels)


def _over_limit(name: str, w: int, h: int, max_pixels: int) -> ImageTooLarge:
    return ImageTooLarge(f"{name}: the image is {w}x{h} px ({w * h / 1e6:.0f} MP), over the {max_pixels / 1e6:.0f} MP "
                         "limit; downscale it first")


def normalize_image(img: np.ndarray, name: str = "<array>", max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Any decoded array -> BGR uint8 (h, w, 3), with the same checks as :func:`load_image`.

    Accepts (h, w), (h, w, 1), (h, w, 3) BGR and (h, w, 4) BGRA; uint8, uint16 (full 16-bit range) or float in
    0..1 (a float image with values above 1, or NaN, is refused: it is most likely 0..255 and would turn white).
    The array given is never changed (an 8-bit BGR one is returned as it is).
    """
    if not isinstance(img, np.ndarray):
        raise InputError(f"{name}: expected a numpy image array (h, w, 3) BGR uint8, got {type(img).__name__}")
    if img.ndim not in (2, 3) or (img.ndim == 3 and img.shape[2] not in (1, 3, 4)):
        raise InputError(f"{name}: expected an image of shape (h, w), (h, w, 3) or (h, w, 4), got {img.shape}")
    check_size(img, name, max_pixels)
    if img.dtype in (np.float16, np.float32, np.float64):
        lo, hi = float(np.min(img)), float(np.max(img))
        if not (np.isfinite(lo) and np.isfinite(hi)):
            raise InputError(f"{name}: the float image holds NaN or infinite values")
        if hi > 1.0 + 1e-6 or lo < -1e-6:
            raise InputError(f"{name}: a float image must hold values 0..1 (this one has {lo:g}..{hi:g}); for 0..255 "
                             "pixels pass image.astype(np.uint8)")
        img = np.clip(img * 255.0 + 0.5, 0, 255).astype(np.uint8)
    elif img.dtype not in (np.uint8, np.uint16):
        raise InputError(f"{name}: unsupported pixel type {img.dtype}; expected uint8 or uint16")
    return _to_bgr8(img)


def _to_bgr8(img: np.ndarray) -> np.ndarray:
    """A uint8 or uint16 (h, w), (h, w, 1), (h, w, 3) or (h, w, 4) array -> BGR uint8: 16-bit is scaled to 8-bit (the
    high byte), alpha composited over white. Only the result is full size (no 16-bit or float copies)."""
    h, w = img.shape[:2]
    if img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3:
        return img
    if img.dtype == np.uint8 and (img.ndim == 2 or img.shape[2] == 1):
        return cv2.cvtColor(img.reshape(h, w), cv2.COLOR_GRAY2BGR)
    out = np.empty((h, w, 3), np.uint8)
    _into_bgr8(img, out)
    return out


def _into_bgr8(img: np.ndarray, out: np.ndarray) -> None:
    """Convert an image into ``out`` (BGR uint8 of its size), a quarter megapixel of rows at a time."""
    step = max(1, _STRIP_PIXELS // max(img.shape[1], 1))
    for y in range(0, img.shape[0], step):
        src, dst = img[y : y + step], out[y : y + step]
        if src.dtype == np.uint16:
            src = (src >> 8).astype(np.uint8)
        if src.ndim == 2:
            dst[:] = src[:, :, None]
        elif src.shape[2] in (1, 3):
            dst[:] = src
        else:
            np.take(_over_white(), (src[:, :, 3:4].astype(np.uint16) << 8) | src[:, :, :3], out=dst, mode="clip")


@functools.cache
def _over_white() -> np.ndarray:
    """Colour values composited over white, indexed by alpha * 256 + value: maskwatch's float32 arithmetic of ever
    (value * a + 255 * (1 - a), a = alpha / 255, truncated), as a table: the same bytes, faster, no float copies."""
    alpha = np.arange(256, dtype=np.float32)[:, None] / 255.0
    value = np.arange(256, dtype=np.float32)[None, :]
    return (value * alpha + 255.0 * (1 - alpha)).astype(np.uint8).ravel()


# ---------------------------------------------------------------- PNG, a strip at a time

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_SAMPLES = {0: 1, 2: 3, 4: 2, 6: 4}  # colour type -> samples a pixel: grey, RGB, grey + alpha, RGBA


def _png_layout(data: bytes) -> tuple[int, int, int, int] | None:
    """(width, height, bit depth, colour type) of a PNG that can be decoded in strips: 8 or 16 bits, grey or colour,
    with or without alpha, not interlaced, no transparent colour (tRNS), not animated; None for any other image."""
    if not data.startswith(_PNG_SIGNATURE) or len(data) < 33 or data[8:16] != b"\x00\x00\x00\x0dIHDR":
        return None
    if zlib.crc32(data[12:29]) != int.from_bytes(data[29:33], "big"):
        return None  # a damaged header: OpenCV (libpng) says so
    w, h = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    depth, colour, compression, filtering, interlace = data[24:29]
    if not (w and h) or depth not in (8, 16) or colour not in _PNG_SAMPLES or compression or filtering or interlace:
        return None
    i = 33
    while i + 8 <= len(data):  # the chunks before the pixels
        kind = data[i + 4 : i + 8]
        if kind == b"IDAT":
            return w, h, depth, colour
        if kind in (b"tRNS", b"acTL"):
            return None
        i += 12 + int.from_bytes(data[i : i + 4], "big")
    return None


def _png_stride(w: int, h: int, depth: int, colour: int) -> int:
    """Bytes of one row of a PNG's pixel data: the filter byte and the samples."""
    return 1 + w * _PNG_SAMPLES[colour] * depth // 8


def _png_chunk(kind: bytes, *parts: bytes) -> list[bytes]:
    """A PNG chunk of the parts (joined once, with the whole PNG: no copies of a strip's bytes on the way)."""
    crc = zlib.crc32(kind)
    for part in parts:
        crc = zlib.crc32(part, crc)
    return [sum(map(len, parts)).to_bytes(4, "big"), kind, *parts, crc.to_bytes(4, "big")]


def _png_pixel_data(data: bytes, name: str) -> Iterator[memoryview]:
    """The IDAT chunks' contents, CRC-checked (libpng refuses a damaged one too)."""
    view, i, seen = memoryview(data), 33, False
    while i + 8 <= len(data):
        size, kind = int.from_bytes(data[i : i + 4], "big"), data[i + 4 : i + 8]
        end = i + 8 + size
        if kind == b"IDAT":
            if end + 4 > len(data) or zlib.crc32(view[i + 4 : end]) != int.from_bytes(data[end : end + 4], "big"):
                raise InputError(f"{name}: the PNG is truncated or damaged (a broken IDAT chunk); re-copy or re-export the file")
            seen = True
            yield view[i + 8 : end]
        elif seen:  # the IDAT chunks are consecutive
            return
        i = end + 4


def _decode_png_strips(data: bytes, name: str, w: int, h: int, depth: int, colour: int) -> np.ndarray:
    """A PNG (see :func:`_png_layout`) -> BGR uint8, as :func:`_to_bgr8` makes of OpenCV's whole decode, but with
    about 3 bytes a pixel in all: the pixel data is inflated a strip of rows at a time, and each strip is decoded by
    OpenCV as a PNG of its own, led by the row above it (unfiltered, so the strip's first row can refer to it)."""
    stride = _png_stride(w, h, depth, colour)
    rows = max(1, _PNG_STRIP_BYTES // stride)
    out = np.empty((h, w, 3), np.uint8)
    inflate = zlib.decompressobj()
    pending, above, y = bytearray(), b"", 0

    def damaged(why: str) -> InputError:
        return InputError(f"{name}: the PNG is truncated or damaged ({why}); re-copy or re-export the file")

    def strips(final: bool) -> None:
        nonlocal above, y
        while y < h and (len(pending) >= min(rows, h - y) * stride or (final and pending)):
            n = min(rows, h - y)
            if len(pending) < n * stride:
                raise damaged(f"{y + len(pending) // stride} of {h} rows")
            lead = 1 if above else 0
            store = zlib.compressobj(0)  # stored, not compressed: OpenCV only copies it out again
            with memoryview(pending) as rows_data:
                stored = [store.compress(b"\x00" + above) if above else b"", store.compress(rows_data[: n * stride]), store.flush()]
            del pending[: n * stride]
            ihdr = w.to_bytes(4, "big") + (n + lead).to_bytes(4, "big") + bytes([depth, colour, 0, 0, 0])
            png = b"".join([_PNG_SIGNATURE, *_png_chunk(b"IHDR", ihdr), *_png_chunk(b"IDAT", *stored), *_png_chunk(b"IEND")])
            del stored
            strip = _imdecode(png, cv2.IMREAD_UNCHANGED, name)
            del png
            if strip is None or strip.shape[0] != n + lead:
                raise damaged(f"rows {y} to {y + n}")
            strip = strip[lead:]
            last = strip[-1]
            if colour == 2:
                last = last[:, ::-1]  # BGR -> the file's RGB
            elif colour == 4:
                last = last[:, [0, 3]]  # OpenCV expands grey + alpha to BGRA
            elif colour == 6:
                last = last[:, [2, 1, 0, 3]]
            above = np.ascontiguousarray(last, ">u2" if depth == 16 else np.uint8).tobytes()
            _into_bgr8(strip, out[y : y + n])
            y += n

    try:
        for piece in _png_pixel_data(data, name):
            rest: bytes | memoryview = piece
            while rest and y < h:
                pending += inflate.decompress(rest, 1 << 20)  # at most 1 MB out at a time: no bomb inflated whole
                rest = inflate.unconsumed_tail
                strips(False)
        if y < h:
            pending += inflate.flush()
    except zlib.error as e:
        raise damaged(f"zlib: {e}") from None
    strips(True)
    if y < h:
        raise damaged(f"{y} of {h} rows")
    return out


def check_image_header(data: bytes, name: str, max_pixels: int) -> None:
    """Refuse decompression bombs before decoding: read width and height from PNG, JPEG, BMP, WebP, GIF, TIFF,
    PNM (PBM, PGM, PPM) and JPEG 2000 headers. Others (HEIC is checked when opened) are bounded by OpenCV's own pixel
    limit, which maskwatch sets to ``MAX_PIXELS`` (an image over it is refused with the same :class:`ImageTooLarge`)."""
    w, h = image_size(data)
    if w * h > max_pixels:
        raise _over_limit(name, w, h, max_pixels)


def image_size(data: bytes) -> tuple[int, int]:
    """(width, height) read from an image file's header, or (0, 0) where this format's header is not read."""
    return _header(data)[:2]


_PNM_SPACE = rb"(?:\s|#[^\r\n]*)+"
_PNM_HEADER = re.compile(rb"P([1-6])" + _PNM_SPACE + rb"(\d{1,10})" + _PNM_SPACE + rb"(\d{1,10})(?:" + _PNM_SPACE + rb"(\d{1,10}))?")


def _header(data: bytes) -> tuple[int, int, int, int]:
    """(width, height, channels, bytes a sample) from the header; 0 for what it does not say (or is not read)."""
    w = h = channels = sample = 0
    if data[:2] == b"BM" and len(data) >= 26:
        w, h = abs(int.from_bytes(data[18:22], "little", signed=True)), abs(int.from_bytes(data[22:26], "little", signed=True))
        channels, sample = (4 if int.from_bytes(data[28:30], "little") == 32 else 3), 1
    elif data[:4] == b"RIFF" and data[8:12] == b"WEBP" and len(data) >= 30:
        chunk = data[12:16]
        if chunk == b"VP8X":
            w, h = 1 + int.from_bytes(data[24:27], "little"), 1 + int.from_bytes(data[27:30], "little")
        elif chunk == b"VP8L":
            bits = int.from_bytes(data[21:25], "little")
            w, h = 1 + (bits & 0x3FFF), 1 + ((bits >> 14) & 0x3FFF)
        elif chunk == b"VP8 ":
            w, h = int.from_bytes(data[26:28], "little") & 0x3FFF, int.from_bytes(data[28:30], "little") & 0x3FFF
        channels, sample = 4, 1
    elif data[:8] == _PNG_SIGNATURE and len(data) >= 24:
        w, h = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
        depth, colour = (data[24], data[25]) if len(data) >= 26 else (8, 6)
        channels, sample = {0: 1, 2: 3}.get(colour, 4), 2 if depth == 16 else 1  # palette, grey + alpha: BGRA
    elif data[:2] == b"\xff\xd8":
        (w, h), channels, sample = _jpeg_size(data), 3, 1
    elif data[:6] in (b"GIF87a", b"GIF89a") and len(data) >= 10:
        w, h = int.from_bytes(data[6:8], "little"), int.from_bytes(data[8:10], "little")
        channels, sample = 4, 1
    elif data[:4] in (b"II*\x00", b"MM\x00*"):
        w, h, channels, sample = _tiff_header(data)
    elif data[:1] == b"P" and (m := _PNM_HEADER.match(data, 0, 4096)):
        kind, w, h = int(m[1]), int(m[2]), int(m[3])
        channels, sample = (3 if kind in (3, 6) else 1), (2 if kind not in (1, 4) and int(m[4] or 0) > 255 else 1)
    elif data.startswith((b"\x00\x00\x00\x0cjP  ", b"\xffO\xffQ")):
        w, h, channels, sample = _jpeg2000_header(data)
    return w, h, channels, sample


def _tiff_header(data: bytes) -> tuple[int, int, int, int]:
    """(width, height, samples a pixel, bytes a sample) of a TIFF's first image (the one OpenCV reads)."""
    order: Literal["little", "big"] = "little" if data[:2] == b"II" else "big"

    def u(at: int, size: int) -> int:
        return int.from_bytes(data[at : at + size], order)

    ifd = u(4, 4)
    if ifd + 2 > len(data):
        return 0, 0, 0, 0
    tags: dict[int, int] = {}
    for k in range(u(ifd, 2)):
        e = ifd + 2 + 12 * k
        if e + 12 > len(data):
            break
        tag, kind, count = u(e, 2), u(e + 2, 2), u(e + 4, 4)
        size = {3: 2, 4: 4}.get(kind)  # SHORT, LONG
        if tag in (256, 257, 258, 277) and size and count:
            at = e + 8 if size * count <= 4 else u(e + 8, 4)  # the first value: in the entry, or where it points
            tags[tag] = u(at, size)
    return tags.get(256, 0), tags.get(257, 0), tags.get(277, 1), (tags.get(258, 1) + 7) // 8


def _jpeg2000_header(data: bytes) -> tuple[int, int, int, int]:
    """(width, height, components, bytes a sample) from a JPEG 2000 codestream's SIZ marker (in a JP2 file, the
    codestream box's)."""
    i = 0
    if data[:4] != b"\xffO\xffQ":  # a JP2 file: find the codestream box
        while i + 8 <= len(data):
            size, kind, head = int.from_bytes(data[i : i + 4], "big"), data[i + 4 : i + 8], 8
            if size == 1:
                size, head = int.from_bytes(data[i + 8 : i + 16], "big"), 16
            if kind == b"jp2c":
                i += head
                break
            if size < head:
                return 0, 0, 0, 0
            i += size
    siz = data[i : i + 45]
    if len(siz) < 45 or siz[:4] != b"\xffO\xffQ":
        return 0, 0, 0, 0
    x, y, x0, y0 = (int.from_bytes(siz[k : k + 4], "big") for k in (8, 12, 16, 20))
    bits = (siz[42] & 0x7F) + 1
    return max(0, x - x0), max(0, y - y0), int.from_bytes(siz[40:42], "big"), 2 if bits > 8 else 1


def find_images(path: str | os.PathLike, suffixes: tuple[str, ...] = IMAGE_SUFFIXES) -> list[Path]:
    """Image files under ``path`` (a file, or a folder searched recursively), sorted by name; ``suffixes``: the
    file endings searched for (``batch`` adds video files)."""
    p = Path(path)
    if not p.exists():
        raise InputError(f"{p}: no such file or folder; check the path")
    if p.is_file():
        return [p]
    return sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in suffixes)

