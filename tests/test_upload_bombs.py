"""Small uploads that cost a lot to decode: PNM and TIFF headers over the pixel limit (413, not a 500 from OpenCV's
own limit), a 49 MP RGBA PNG of a few hundred KB (a strip at a time: a couple of hundred MB, not gigabytes), and
formats OpenCV decodes whole refused when they would take more than the budget. Decoded pixels of ordinary photos
are the same as before: OpenCV's whole decode, 16-bit scaled and alpha composited over white at full size."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
import tracemalloc
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import VOC, needs_shared, run_cli

from maskwatch import InputError, load_image
from maskwatch import images as mw_images
from maskwatch.images import ImageTooLarge, decode_image, decode_reduced, exif_orientation, orient
from maskwatch.settings import PHOTO_DET_SIZE

ROOT = Path(__file__).resolve().parents[1]
UPLOAD_SIDE = PHOTO_DET_SIZE  # what the server decodes uploads to (State.photo_side with the default det_size)


# ------------------------------------------------------------------------------------------------ files


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _pgm_bomb() -> bytes:
    return b"P5\n60000 60000\n255\n" + b"\0" * 1000


def _tiff_with_size(w: int, h: int, img: np.ndarray | None = None) -> bytes:
    """A real TIFF (OpenCV's, little-endian) of a small image whose width and height tags say ``w`` x ``h``."""
    ok, buf = cv2.imencode(".tif", np.full((64, 64, 3), 100, np.uint8) if img is None else img)
    assert ok
    b = bytearray(buf.tobytes())
    assert b[:4] == b"II*\x00"
    ifd = struct.unpack("<I", b[4:8])[0]
    patched = 0
    for k in range(struct.unpack("<H", b[ifd : ifd + 2])[0]):
        e = ifd + 2 + 12 * k
        tag, kind = struct.unpack("<HH", b[e : e + 4])
        if tag in (256, 257):
            value = w if tag == 256 else h
            b[e + 8 : e + 12] = struct.pack("<H", value) + b"\0\0" if kind == 3 else struct.pack("<I", value)
            patched += 1
    assert patched == 2
    return bytes(b)


def _big_endian_tiff(w: int, h: int) -> bytes:
    """A minimal big-endian (MM) grey TIFF header saying ``w`` x ``h``, with LONG size tags and a few pixels."""
    entries = [(256, 4, 1, w), (257, 4, 1, h), (258, 3, 1, 8 << 16), (259, 3, 1, 1 << 16), (262, 3, 1, 1 << 16),
               (273, 4, 1, 8 + 2 + 12 * 8 + 4), (277, 3, 1, 1 << 16), (279, 4, 1, 64)]
    ifd = struct.pack(">H", len(entries)) + b"".join(struct.pack(">HHII", *e) for e in entries) + b"\0\0\0\0"
    return b"MM\x00*" + struct.pack(">I", 8) + ifd + bytes(64)


BOMBS = {
    "x.pgm": _pgm_bomb(),
    "x.ppm": b"P6\n# a comment, as GIMP writes one\n60000 60000\n255\n" + b"\0" * 1000,
    "x.pbm": b"P4 60000 60000 " + b"\0" * 1000,
    "x.tif": _tiff_with_size(60000, 60000),
    "mm.tif": _big_endian_tiff(60000, 60000),
}


def _png(pixels: np.ndarray, colour: int, filters: tuple[int, ...] = (0, 1, 2, 3, 4), idat_size: int = 0,
         extra: bytes = b"") -> bytes:
    """A PNG of ``pixels`` ((h, w, samples) in the file's order: grey, grey + alpha, RGB, RGBA; uint8 or uint16),
    its rows filtered by turns with ``filters`` (0 none, 1 sub, 2 up, 3 average, 4 Paeth), the pixel data split into
    IDAT chunks of ``idat_size`` bytes (0: one), ``extra`` chunks before them."""
    h, w, samples = pixels.shape
    depth = 16 if pixels.dtype == np.uint16 else 8
    raw = np.ascontiguousarray(pixels, ">u2" if depth == 16 else np.uint8).view(np.uint8).reshape(h, -1).astype(np.int32)
    bpp = samples * depth // 8
    rows, above = [], np.zeros(raw.shape[1], np.int32)
    for y in range(h):
        cur = raw[y]
        left = np.concatenate([np.zeros(bpp, np.int32), cur[:-bpp]])
        upleft = np.concatenate([np.zeros(bpp, np.int32), above[:-bpp]])
        f = filters[y % len(filters)]
        if f == 0:
            pred = np.zeros_like(cur)
        elif f == 1:
            pred = left
        elif f == 2:
            pred = above
        elif f == 3:
            pred = (left + above) // 2
        else:
            p = left + above - upleft
            pa, pb, pc = np.abs(p - left), np.abs(p - above), np.abs(p - upleft)
            pred = np.where((pa <= pb) & (pa <= pc), left, np.where(pb <= pc, above, upleft))
        rows.append(bytes([f]) + ((cur - pred) % 256).astype(np.uint8).tobytes())
        above = cur
    z = zlib.compress(b"".join(rows), 6)
    step = idat_size or len(z)
    idat = b"".join(_chunk(b"IDAT", z[i : i + step]) for i in range(0, len(z), step))
    ihdr = struct.pack(">IIBBBBB", w, h, depth, colour, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + extra + idat + _chunk(b"IEND", b"")


def _flat_png(path: Path, w: int, h: int, bgra: tuple[int, int, int, int], depth: int) -> Path:
    """A w x h RGBA PNG of one colour as a bomb is made (a few hundred KB): the first row, then rows 'as above'."""
    b, g, r, a = bgra
    row = b"\x00" + np.tile(np.array([r, g, b, a], ">u2" if depth == 16 else np.uint8), w).tobytes()
    z = zlib.compressobj(9)
    parts = [z.compress(row)] + [z.compress(b"\x02" + bytes(len(row) - 1)) for _ in range(h - 1)] + [z.flush()]
    ihdr = struct.pack(">IIBBBBB", w, h, depth, 6, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", b"".join(parts)) + _chunk(b"IEND", b""))
    return path


def _with_exif_orientation(png: bytes, orientation: int) -> bytes:
    tiff = b"MM\x00*" + struct.pack(">IHHHIHH", 8, 1, 0x0112, 3, 1, orientation, 0) + b"\0\0\0\0"
    return png[:33] + _chunk(b"eXIf", tiff) + png[33:]


def _reference(data: bytes) -> np.ndarray:
    """What maskwatch made of these bytes before: OpenCV's whole decode, turned upright, 16-bit shifted to 8 and
    alpha composited over white in float32, all at full size."""
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    img = orient(img, exif_orientation(data))
    if img.dtype == np.uint16:
        img = (img >> 8).astype(np.uint8)
    if img.ndim == 2 or img.shape[2] == 1:
        return cv2.cvtColor(img.reshape(img.shape[:2]), cv2.COLOR_GRAY2BGR)
    if img.shape[2] == 4:
        alpha = img[:, :, 3:4].astype(np.float32) / 255.0
        return (img[:, :, :3].astype(np.float32) * alpha + 255.0 * (1 - alpha)).astype(np.uint8)
    return img


def _reference_reduced(data: bytes, max_side: int) -> np.ndarray:
    img = _reference(data)
    longer = max(img.shape[:2])
    if longer > 2 * max_side:
        return cv2.resize(img, None, fx=max_side / longer, fy=max_side / longer, interpolation=cv2.INTER_AREA)
    return img


def _assert_same(got: np.ndarray, want: np.ndarray, what: str) -> None:
    assert got.shape == want.shape and got.dtype == np.uint8, (what, got.shape, want.shape)
    diff = int(np.abs(got.astype(np.int16) - want.astype(np.int16)).max())
    assert diff <= 1, f"{what}: differs by up to {diff} grey levels"


# ------------------------------------------------------------------------------------------------ the server


@pytest.fixture(scope="module")
def server():
    """The real app (no camera, no event log), served on a loopback port; only used by tests marked needs_shared."""
    from test_server import Running

    from maskwatch.server import ServerSettings, create_app

    running = Running(create_app(ServerSettings(events="", demo=False)))
    yield running
    running.stop()


def _post(srv, data: bytes, name: str) -> tuple[int, dict]:
    from test_server import _multipart

    status, headers, body = srv.request("POST", "/v1/detect", *_multipart(data, filename=name, ctype="application/octet-stream"),
                                        timeout=60)
    assert headers["content-type"].startswith("application/json"), (status, body[:200])
    return status, json.loads(body)


@needs_shared
@pytest.mark.parametrize("name", list(BOMBS))
def test_pnm_and_tiff_bombs_get_413_with_the_pixel_limit_message(server, name):
    """OpenCV's own limit answered these with a 500 (cv2.error escaped the route)."""
    status, doc = _post(server, BOMBS[name], name)
    assert status == 413, doc
    assert doc["error"] == f"{name}: the image is 60000x60000 px (3600 MP), over the 50 MP limit; downscale it first"
    assert doc["detail"] == {"max_pixels": 50_000_000}
    assert server.json("/healthz")[0] in (200, 503)


@needs_shared
def test_an_upload_that_would_take_too_much_memory_to_decode_whole_gets_413(server):
    """A 49 MP 16-bit RGBA TIFF (under the pixel limit) takes OpenCV 16 bytes a pixel, 784 MB, to decode: refused
    from its header (a real one was decoded, taking 2 GB). The same photo as PNG is decoded, in strips."""
    tiff = _tiff_with_size(7000, 7000, np.full((64, 64, 4), 40000, np.uint16))
    status, doc = _post(server, tiff, "scan.tif")
    assert status == 413, doc
    assert "7000x7000 px" in doc["error"] and "784 MB to decode" in doc["error"] and "400 MB allowed" in doc["error"]
    assert "JPEG or PNG" in doc["error"]


@needs_shared
def test_a_size_only_opencv_refuses_is_413_not_a_crash(tmp_path):
    """A server whose --max-pixels is above OpenCV's own limit: what OpenCV refuses is a 413 too, not a 500."""
    from test_server import Running

    from maskwatch.server import ServerSettings, create_app

    running = Running(create_app(ServerSettings(events="", demo=False, max_pixels=10**10)))
    try:
        status, doc = _post(running, _pgm_bomb(), "x.pgm")
    finally:
        running.stop()
    assert status == 413, doc
    assert doc["error"].startswith("x.pgm: the image is larger than OpenCV decodes") and "OPENCV_IO_MAX_IMAGE_PIXELS" in doc["error"]


# ------------------------------------------------------------------------------------------------ library and CLI


@pytest.mark.parametrize("name", list(BOMBS))
def test_pnm_and_tiff_bombs_are_input_errors_for_load_image(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(BOMBS[name])
    with pytest.raises(ImageTooLarge) as e:
        load_image(path)
    assert isinstance(e.value, InputError)
    assert str(e.value) == f"{path}: the image is 60000x60000 px (3600 MP), over the 50 MP limit; downscale it first"
    with pytest.raises(InputError, match="over the 50 MP limit"):
        decode_reduced(BOMBS[name], name)


def test_what_opencv_refuses_to_decode_is_an_input_error():
    """With a limit above OpenCV's, its cv2.error (an assertion in validateInputImageSize) is an InputError."""
    for name in ("x.pgm", "x.tif"):
        with pytest.raises(ImageTooLarge, match=f"^{name}: the image is larger than OpenCV decodes"):
            decode_image(BOMBS[name], name, max_pixels=10**10)


@needs_shared
def test_the_cli_says_a_bomb_is_over_the_limit_without_a_traceback(tmp_path):
    for name in ("x.pgm", "x.tif"):
        path = tmp_path / name
        path.write_bytes(BOMBS[name])
        rc, out, err = run_cli(["detect", str(path), "-q"])  # an exception escaping main() fails here
        assert rc == 1 and out == ""
        assert f"{path}: the image is 60000x60000 px (3600 MP), over the 50 MP limit" in err
        assert "Traceback" not in err and "cv2.error" not in err
    r = subprocess.run([sys.executable, "-m", "maskwatch.cli", "detect", str(tmp_path / "x.pgm"), "-q"], capture_output=True,
                       text=True, timeout=120, cwd=ROOT)
    assert r.returncode == 1 and "over the 50 MP limit" in r.stderr and "Traceback" not in r.stderr, r.stderr


# ------------------------------------------------------------------------------------------------ memory

_MEASURE = """
import json, resource, sys
import numpy as np
from maskwatch.images import decode_reduced
data = open(sys.argv[1], "rb").read()
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
img, scale = decode_reduced(data, "big.png", max_side=int(sys.argv[2]))
grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
print(json.dumps({"grown_mb": grown / 1024, "shape": img.shape, "scale": scale,
                  "colours": np.unique(img.reshape(-1, 3), axis=0).tolist()}))
"""


@pytest.mark.parametrize("depth", [8, 16])
def test_a_49_mp_rgba_png_decodes_to_the_upload_size_in_a_few_hundred_mb(tmp_path, depth):
    """7000 x 7000 RGBA, one colour, half transparent: a 210 KB (8-bit) or 390 KB (16-bit) file that took 1.7 and
    2.0 GB to decode (16-bit and float32 copies at full size); now a strip at a time, about the 147 MB result."""
    bgra16 = (40 * 257, 120 * 257, 200 * 257, 128 * 257)
    bgra = bgra16 if depth == 16 else tuple(v >> 8 for v in bgra16)
    path = _flat_png(tmp_path / "big.png", 7000, 7000, bgra, depth)
    assert path.stat().st_size < 500_000
    r = subprocess.run([sys.executable, "-c", _MEASURE, str(path), str(UPLOAD_SIDE)], capture_output=True, text=True,
                       timeout=300, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)
    assert got["shape"] == [UPLOAD_SIDE, UPLOAD_SIDE, 3] and got["scale"] == pytest.approx(UPLOAD_SIDE / 7000)
    px = np.array([[bgra]], np.uint16 if depth == 16 else np.uint8)
    assert got["colours"] == _reference(cv2.imencode(".png", px)[1].tobytes()).reshape(-1, 3).tolist()  # over white
    assert got["grown_mb"] < 600, f"decoding took {got['grown_mb']:.0f} MB more"


# ------------------------------------------------------------------------------------------------ the same pixels


def _photo(stem: str, scale: float) -> np.ndarray:
    p = VOC / "images" / f"{stem}.jpg"
    if not p.is_file():
        pytest.skip(f"{p} not found (shared data absent)")
    img = cv2.imread(str(p))
    return cv2.resize(img, None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC) if scale != 1 else img


def _formats(bgr: np.ndarray) -> dict[str, bytes]:
    """A photo as the files people upload: 8-bit RGB/RGBA, 16-bit RGB/RGBA and grey PNG, grey + alpha, JPEG, a
    turned PNG (EXIF 6), 16-bit RGBA TIFF, WebP with alpha, 16-bit PGM."""
    h, w = bgr.shape[:2]
    alpha = np.clip(np.arange(w)[None, :] * 300 // w - 20, 0, 255).astype(np.uint8).repeat(h, 0)  # clear to opaque
    rng = np.random.default_rng(0)
    b16 = bgr.astype(np.uint16) * 256 + rng.integers(0, 256, bgr.shape, dtype=np.uint16)
    a16 = alpha.astype(np.uint16) * 257
    gray = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
    bgra = np.dstack([bgr, alpha])

    def enc(ext: str, img: np.ndarray, *params: int) -> bytes:
        ok, buf = cv2.imencode(ext, img, list(params))
        assert ok
        return buf.tobytes()

    return {
        "rgb8.png": enc(".png", bgr), "rgba8.png": enc(".png", bgra), "rgb16.png": enc(".png", b16),
        "rgba16.png": enc(".png", np.dstack([b16, a16])), "gray8.png": enc(".png", gray),
        "gray16.png": enc(".png", gray.astype(np.uint16) * 257),
        "graya8.png": _png(np.dstack([gray, alpha]), 4, filters=(4, 1, 3, 2, 0)),
        "paeth.png": enc(".png", bgra, cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_FILTER_PAETH),
        "turned.png": _with_exif_orientation(enc(".png", bgra), 6),
        "photo.jpg": enc(".jpg", bgr, cv2.IMWRITE_JPEG_QUALITY, 90),
        "rgba16.tif": enc(".tif", np.dstack([b16, a16])), "rgba8.webp": enc(".webp", bgra, cv2.IMWRITE_WEBP_QUALITY, 101),
        "gray16.pgm": enc(".pgm", gray.astype(np.uint16) * 257),
    }


@pytest.mark.parametrize(("stem", "scale"), [("maksssksksss0", 1), ("maksssksksss10", 5)])
def test_real_photos_decode_to_the_same_pixels_as_before_without_full_size_copies(tmp_path, stem, scale):
    """load_image (the CLI) and decode_reduced (uploads): the pixels of OpenCV's whole decode made 8-bit BGR at full
    size (exact here; 1 grey level allowed). The 5x photo (2000 x 1505) is above the PNG strip size. Memory (numpy's
    and OpenCV's arrays, as tracemalloc sees them): a PNG takes about its 8-bit result, anything else the array
    OpenCV decodes and the result, each plus a few strips; 16-bit or float32 copies at full size took far more."""
    tracemalloc.start()
    try:
        for name, data in _formats(_photo(stem, scale)).items():
            path = tmp_path / name
            path.write_bytes(data)
            _assert_same(load_image(path), _reference(data), f"load_image {name}")
            decoded = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
            h, w = decoded.shape[:2]
            allowed = 3 * h * w * (2 if "turned" in name else 1) + (0 if name.endswith(".png") else decoded.nbytes) + (32 << 20)
            del decoded
            tracemalloc.reset_peak()
            start = tracemalloc.get_traced_memory()[0]
            got, factor = decode_reduced(data, name, max_side=UPLOAD_SIDE)
            took = tracemalloc.get_traced_memory()[1] - start
            assert took <= allowed, f"decode_reduced {name} took {took / 1e6:.0f} MB, more than {allowed / 1e6:.0f} MB"
            if factor in (0.5, 0.25, 0.125) and name.endswith(".jpg"):  # decoded reduced by libjpeg, as before
                assert max(got.shape[:2]) >= UPLOAD_SIDE
            else:
                _assert_same(got, _reference_reduced(data, UPLOAD_SIDE), f"decode_reduced {name}")
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize(("colour", "samples"), [(0, 1), (2, 3), (4, 2), (6, 4)])
@pytest.mark.parametrize("depth", [8, 16])
def test_png_strips_with_every_filter_are_the_whole_decode(monkeypatch, colour, samples, depth):
    """Strips of a few rows (each led by the row above, which a strip's first row may refer to), with every filter
    type, the pixel data in IDAT chunks of odd sizes: the same as OpenCV's whole decode. A damaged or truncated
    one is an InputError."""
    monkeypatch.setattr(mw_images, "_PNG_STRIP_BYTES", 3000)
    photo = _photo("maksssksksss0", 1)[:97, :131]
    rng = np.random.default_rng(depth)
    rgb = photo[:, :, ::-1].astype(np.uint16) * 256 + rng.integers(0, 256, photo.shape, dtype=np.uint16)
    alpha = rng.integers(0, 65536, photo.shape[:2], dtype=np.uint16)[:, :, None]
    grey = rgb[:, :, 1:2]
    pixels = {0: grey, 2: rgb, 4: np.dstack([grey, alpha]), 6: np.dstack([rgb, alpha])}[colour]
    pixels = pixels if depth == 16 else (pixels >> 8).astype(np.uint8)
    data = _png(pixels, colour, idat_size=777, extra=_chunk(b"gAMA", struct.pack(">I", 45455)))
    assert mw_images._png_layout(data) is not None and 97 * mw_images._png_stride(131, 97, depth, colour) > 3000
    _assert_same(decode_image(data, "strips.png"), _reference(data), f"colour type {colour}, {depth}-bit")
    assert cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED).shape[:2] == (97, 131)
    with pytest.raises(InputError, match="truncated or damaged"):
        decode_image(data[: len(data) // 2], "half.png")
    broken = bytearray(data)
    broken[len(data) // 2] ^= 0xFF
    with pytest.raises(InputError, match="truncated or damaged"):
        decode_image(bytes(broken), "broken.png")
