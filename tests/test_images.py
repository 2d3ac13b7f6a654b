"""Bad and unusual image input: every case gives a clear InputError (library) or message + exit code (CLI)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

import maskwatch
from maskwatch import InputError, load_image
from maskwatch.cli import main

ROOT = Path(__file__).resolve().parents[1]


def _write(path: Path, img: np.ndarray, ext: str = ".png") -> Path:
    ok, buf = cv2.imencode(ext, img)
    assert ok
    path.write_bytes(buf.tobytes())
    return path


def _textured(h: int = 120, w: int = 160) -> np.ndarray:
    rng = np.random.default_rng(0)
    img = cv2.resize(rng.integers(0, 256, (h // 8, w // 8, 3), dtype=np.uint8), (w, h), interpolation=cv2.INTER_CUBIC)
    return img


def _run_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "maskwatch.cli", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)


def test_missing_path(tmp_path):
    p = tmp_path / "nope.jpg"
    with pytest.raises(InputError) as e:
        maskwatch.load_image(p)
    assert str(p) in str(e.value)
    assert "no such file" in str(e.value)


def test_folder_passed_to_load_image(tmp_path):
    with pytest.raises(InputError, match="folder"):
        maskwatch.load_image(tmp_path)


def test_cli_folder_without_images(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("no pictures here")
    rc = main(["detect", str(tmp_path), "--face-detector", "haar"])
    cap = capsys.readouterr()
    assert rc != 0
    assert cap.out == ""
    assert str(tmp_path) in cap.err
    assert "no image" in cap.err
    assert "Traceback" not in cap.err


def test_cli_says_which_files_of_a_folder_it_left_out(tmp_path, capsys):
    """A phone's folder: the photo is read, the video, the RAW file and the notes are named as left out (hidden
    files are not), so a count of faces is never silently short of files."""
    _write(tmp_path / "a.png", _textured())
    (tmp_path / "sub").mkdir()
    _write(tmp_path / "sub" / "c.png", _textured())
    (tmp_path / ".git").mkdir()
    for name in ("clip.MOV", "IMG_1.CR2", "notes.txt", ".DS_Store", ".git/HEAD", "sub/b.mpg"):
        (tmp_path / name).write_bytes(b"x")
    assert main(["detect", str(tmp_path), str(tmp_path / "sub"), "--face-detector", "haar", "-q"]) == 0
    err = capsys.readouterr().err  # hidden files and folders are not counted; sub/ given twice counts once
    assert "left out 4 file(s)" in err and ".mov 1" in err and ".cr2 1" in err and ".txt 1" in err and ".mpg 1" in err, err
    assert "maskwatch video" in err
    # a quoted glob: the files it names are tried (and fail, as if the shell had expanded it); its folders searched
    assert main(["detect", str(tmp_path / "*"), "--face-detector", "haar", "-q"]) == 1
    assert "left out 1 file(s) that are not images it reads (.mpg 1)" in capsys.readouterr().err
    assert main(["detect", str(tmp_path / "a.png"), "--face-detector", "haar", "-q"]) == 0
    assert "left out" not in capsys.readouterr().err  # a file named on its own: nothing is searched
    assert main(["extract-faces", str(tmp_path), str(tmp_path.parent / f"{tmp_path.name}_faces"), "--face-detector", "haar", "-q"]) == 0
    assert "left out 4 file(s)" in capsys.readouterr().err  # extract-faces searches folders the same way


def test_cli_missing_path(tmp_path, capsys):
    rc = main(["detect", str(tmp_path / "missing.jpg"), "--face-detector", "haar"])
    err = capsys.readouterr().err
    assert rc != 0
    assert "no such file" in err


def test_text_file_named_jpg(tmp_path):
    p = tmp_path / "fake.jpg"
    p.write_text("this is not a picture\n" * 20)
    with pytest.raises(InputError) as e:
        maskwatch.load_image(p)
    assert str(p) in str(e.value)
    assert "not an image" in str(e.value)


def test_empty_file(tmp_path):
    p = tmp_path / "empty.png"
    p.write_bytes(b"")
    with pytest.raises(InputError, match="empty"):
        maskwatch.load_image(p)


def test_truncated_jpeg(tmp_path):
    ok, buf = cv2.imencode(".jpg", _textured(), [cv2.IMWRITE_JPEG_QUALITY, 95])
    assert ok
    data = buf.tobytes()
    whole = tmp_path / "whole.jpg"
    whole.write_bytes(data)
    assert maskwatch.load_image(whole).shape == (120, 160, 3)  # the intact file loads
    half = tmp_path / "half.jpg"
    half.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError) as e:
        maskwatch.load_image(half)
    assert str(half) in str(e.value)
    assert "truncated" in str(e.value)


def test_grayscale_png_loads_as_bgr(tmp_path):
    grey = np.tile(np.arange(0, 200, 2, dtype=np.uint8), (50, 1))  # 50 x 100 gradient
    img = maskwatch.load_image(_write(tmp_path / "grey.png", grey))
    assert img.dtype == np.uint8 and img.shape == (50, 100, 3)
    for c in range(3):
        np.testing.assert_array_equal(img[:, :, c], grey)


def test_rgba_png_composited_over_white(tmp_path):
    bgra = np.zeros((40, 60, 4), np.uint8)
    bgra[:, :, :3] = (10, 20, 200)  # BGR: red-ish
    bgra[:, :20, 3] = 0      # fully transparent -> white
    bgra[:, 20:40, 3] = 255  # opaque -> the colour itself
    bgra[:, 40:, 3] = 128    # half -> between
    img = maskwatch.load_image(_write(tmp_path / "rgba.png", bgra))
    assert img.dtype == np.uint8 and img.shape == (40, 60, 3)
    assert (img[:, :20] == 255).all()
    assert (img[:, 20:40] == (10, 20, 200)).all()
    mid = img[0, 50].astype(int)
    expect = np.array([10, 20, 200]) * 128 / 255 + 255 * (1 - 128 / 255)
    assert np.abs(mid - expect).max() <= 2


@pytest.mark.parametrize("channels", [1, 3])
def test_16bit_png_scaled_to_8bit(tmp_path, channels):
    h, w = 30, 40
    if channels == 1:
        img16 = np.full((h, w), 40000, np.uint16)
        expect = (156, 156, 156)
    else:
        img16 = np.zeros((h, w, 3), np.uint16)
        img16[:, :] = (65535, 256 * 100, 0)
        expect = (255, 100, 0)
    p = _write(tmp_path / "deep.png", img16)
    assert cv2.imread(str(p), cv2.IMREAD_UNCHANGED).dtype == np.uint16  # really a 16-bit file
    img = maskwatch.load_image(p)
    assert img.dtype == np.uint8 and img.shape == (h, w, 3)
    assert tuple(int(v) for v in img[5, 5]) == expect


def test_one_pixel_image(tmp_path):
    p = _write(tmp_path / "dot.png", np.zeros((1, 1, 3), np.uint8))
    with pytest.raises(InputError) as e:
        maskwatch.load_image(p)
    assert "1x1" in str(e.value)
    assert "too small" in str(e.value)


def test_huge_image_refused_before_decoding(tmp_path, monkeypatch):
    p = _write(tmp_path / "huge.png", np.zeros((12000, 12000), np.uint8))
    assert p.stat().st_size < 5_000_000  # zeros compress well: a decompression bomb

    def no_decode(*a, **k):
        raise AssertionError("the 144 MP image was decoded instead of being refused from its header")

    monkeypatch.setattr(cv2, "imdecode", no_decode)
    with pytest.raises(InputError) as e:
        maskwatch.load_image(p)
    msg = str(e.value)
    assert "12000x12000" in msg
    assert "MP limit" in msg


def test_max_pixels_argument(tmp_path):
    p = _write(tmp_path / "mid.png", np.zeros((100, 100, 3), np.uint8))
    assert maskwatch.load_image(p).shape == (100, 100, 3)
    with pytest.raises(InputError, match="MP limit"):
        maskwatch.load_image(p, max_pixels=5000)


def test_cli_folder_with_one_bad_file(tmp_path, voc_image):
    folder = tmp_path / "photos"
    folder.mkdir()
    shutil.copy(voc_image, folder / "a_scene.jpg")
    _write(folder / "b_plain.png", _textured())
    (folder / "c_broken.jpg").write_text("definitely not a jpeg")
    r = _run_cli("detect", str(folder), "-q")
    assert "Traceback" not in r.stderr
    assert r.returncode == 1, r.stderr
    lines = [json.loads(x) for x in r.stdout.splitlines() if x.strip()]
    assert [Path(x["source"]).name for x in lines] == ["a_scene.jpg", "b_plain.png"]
    assert len(lines[0]["faces"]) >= 1
    assert "c_broken.jpg" in r.stderr
    assert "2 image(s) done, 1 failed" in r.stderr


# ---------------------------------------------------------------- EXIF orientation (phone photos)
def _tagged_jpeg(stored_bgr: np.ndarray, orientation: int, order: bytes = b"II") -> bytes:
    """A JPEG of ``stored_bgr`` with an EXIF APP1 segment holding the orientation tag, as a phone writes it."""
    bo = "little" if order == b"II" else "big"
    ifd = (1).to_bytes(2, bo) + (0x0112).to_bytes(2, bo) + (3).to_bytes(2, bo) + (1).to_bytes(4, bo)
    ifd += orientation.to_bytes(2, bo) + b"\x00\x00" + (0).to_bytes(4, bo)
    tiff = order + (42).to_bytes(2, bo) + (8).to_bytes(4, bo) + ifd
    app1 = b"\xff\xe1" + (2 + 6 + len(tiff)).to_bytes(2, "big") + b"Exif\x00\x00" + tiff
    ok, enc = cv2.imencode(".jpg", stored_bgr, [cv2.IMWRITE_JPEG_QUALITY, 95])
    assert ok
    return enc.tobytes()[:2] + app1 + enc.tobytes()[2:]


# How a camera stores an upright picture for each tag: the inverse of what the tag tells a viewer to do.
_STORE = {1: lambda a: a, 2: lambda a: a[:, ::-1], 3: lambda a: a[::-1, ::-1], 4: lambda a: a[::-1],
          5: lambda a: a.transpose(1, 0, 2), 6: lambda a: np.rot90(a, 1), 7: lambda a: np.rot90(a, 2).transpose(1, 0, 2),
          8: lambda a: np.rot90(a, -1)}


@pytest.mark.parametrize("orientation", range(1, 9))
def test_phone_photo_is_upright_for_each_of_the_8_exif_orientations(voc_image, tmp_path, orientation):
    """A real photo stored rotated/mirrored and tagged: load_image gives the upright photo (what viewers show),
    its width and height, and the faces are found where they are in the upright photo."""
    import maskwatch

    upright = load_image(voc_image)
    stored = np.ascontiguousarray(_STORE[orientation](upright))
    f = tmp_path / f"phone_{orientation}.jpg"
    f.write_bytes(_tagged_jpeg(stored, orientation, b"II" if orientation % 2 else b"MM"))
    got = load_image(f)
    assert got.shape == upright.shape
    assert np.abs(got.astype(int) - upright.astype(int)).mean() < 3  # the same pixels, up to JPEG noise
    try:
        from PIL import Image, ImageOps

        pil = np.asarray(ImageOps.exif_transpose(Image.open(f)).convert("RGB"))[:, :, ::-1]
        assert np.abs(pil.astype(int) - got.astype(int)).mean() < 1  # Pillow reads the tag the same way
    except ImportError:
        pass
    want = maskwatch.Detector(det_size=800).detect(upright)
    found = maskwatch.Detector(det_size=800).detect(got)
    assert len(want) >= 3 and abs(len(found) - len(want)) <= 1
    from maskwatch.boxes import iou_matrix

    assert (iou_matrix(want.xyxy, found.xyxy).max(1) > 0.7).mean() >= 0.75


def test_exif_orientation_parser_ignores_damage_and_other_formats():
    from maskwatch.images import exif_orientation

    good = _tagged_jpeg(np.zeros((16, 16, 3), np.uint8), 6)
    assert exif_orientation(good) == 6
    assert exif_orientation(good[:30]) == 1  # cut inside the segment
    assert exif_orientation(_tagged_jpeg(np.zeros((16, 16, 3), np.uint8), 9)) == 1  # not a valid value
    assert exif_orientation(b"") == 1 and exif_orientation(b"\x89PNG\r\n\x1a\n") == 1
    ok, png = cv2.imencode(".png", np.zeros((16, 16, 3), np.uint8))
    assert exif_orientation(png.tobytes()) == 1


def _heic(rgb: np.ndarray, orientation: int = 1) -> bytes:
    """A real HEIC file of ``rgb`` as an iPhone writes it: pillow-heif turns the EXIF tag into the container's
    rotation (``irot``/``imir``)."""
    import io

    pillow_heif = pytest.importorskip("pillow_heif", reason="the heic extra (pillow-heif) is not installed")
    from PIL import Image

    pillow_heif.register_heif_opener()
    exif = Image.Exif()
    exif[0x0112] = orientation
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="HEIF", quality=95, exif=exif.tobytes())
    return buf.getvalue()


@pytest.mark.parametrize("orientation", [1, 6])
def test_iphone_heic_photo_is_read_upright_and_its_faces_found(voc_image, tmp_path, orientation):
    """A real photo saved as HEIC (with the heic extra) reads as the same pixels a JPEG of it gives, turned as a viewer
    shows it, and `detect` finds the same faces in a folder holding it."""
    upright = load_image(voc_image)
    f = tmp_path / "IMG_0001.HEIC"
    f.write_bytes(_heic(np.ascontiguousarray(upright[:, :, ::-1]), orientation))
    got = load_image(f)
    want = upright if orientation == 1 else np.ascontiguousarray(np.rot90(upright, -1))  # tag 6: turn 90 degrees clockwise
    assert got.shape == want.shape and got.dtype == np.uint8
    assert np.abs(got.astype(int) - want.astype(int)).mean() < 4  # the same pixels, up to HEVC noise
    if orientation == 1:
        found = maskwatch.Detector(det_size=800).detect(got)
        assert len(found) >= 3
        r = _run_cli("detect", str(tmp_path), "-q")
        assert r.returncode == 0, r.stderr
        rec = json.loads(r.stdout)
        assert rec["source"].endswith("IMG_0001.HEIC") and len(rec["faces"]) >= 3


def test_heic_without_the_extra_is_skipped_with_the_fix_not_in_silence(tmp_path, monkeypatch):
    """A folder of phone photos holding HEIC files: without pillow-heif each is reported as skipped, saying how to
    read it; a damaged HEIC says so."""
    from maskwatch.images import decode_image

    fake = b"\x00\x00\x00\x1cftypheic\x00\x00\x00\x00mif1heic" + b"\x00" * 64
    monkeypatch.setitem(sys.modules, "pillow_heif", None)  # as if the extra were not installed
    with pytest.raises(InputError, match=r"HEIC/HEIF photo .*maskwatch\[heic\]"):
        decode_image(fake, "IMG_0002.HEIC")
    monkeypatch.delitem(sys.modules, "pillow_heif")
    pytest.importorskip("pillow_heif", reason="the heic extra (pillow-heif) is not installed")
    with pytest.raises(InputError, match="cannot be decoded"):
        decode_image(fake, "IMG_0002.HEIC")
    (tmp_path / "IMG_0002.HEIC").write_bytes(fake)
    r = _run_cli("detect", str(tmp_path), "-q")
    assert r.returncode == 1 and "IMG_0002.HEIC" in r.stderr and "1 failed" in r.stderr, r.stderr


def test_gif_is_read_and_a_gif_bomb_refused_from_its_header(voc_image, tmp_path):
    from PIL import Image

    from maskwatch.images import decode_image

    upright = load_image(voc_image)
    f = tmp_path / "a.gif"
    Image.fromarray(np.ascontiguousarray(upright[:, :, ::-1])).save(f)
    got = load_image(f)
    assert got.shape == upright.shape and np.abs(got.astype(int) - upright.astype(int)).mean() < 20  # 256 colours
    bomb = b"GIF89a" + (30000).to_bytes(2, "little") + (30000).to_bytes(2, "little") + b"\x00" * 20
    with pytest.raises(InputError, match="30000x30000 px"):
        decode_image(bomb, "bomb.gif")


def test_heic_bomb_is_refused_before_decoding():
    from maskwatch.images import decode_image

    data = _heic(np.zeros((64, 64, 3), np.uint8))
    with pytest.raises(InputError, match="over the 0 MP limit; downscale") as e:
        decode_image(data, "big.heic", max_pixels=4000)
    assert "cannot be decoded" not in str(e.value)  # said as what it is, not as damage


def test_heic_photos_in_class_folders_are_training_data(voc_image, tmp_path):
    """A class folder of phone photos (HEIC) is read for training as at run time, hashes included."""
    from maskwatch.datasets import dhash, load_source

    for label in ("with_mask", "without_mask"):
        (tmp_path / label).mkdir()
    rgb = np.ascontiguousarray(load_image(voc_image)[:, :, ::-1])
    (tmp_path / "with_mask" / "IMG_1.HEIC").write_bytes(_heic(rgb))
    _write(tmp_path / "without_mask" / "b.png", _textured())
    ds = load_source(str(tmp_path))
    assert sorted(im.path.name for im in ds.images) == ["IMG_1.HEIC", "b.png"] and not ds.warnings, ds.warnings
    assert dhash(tmp_path / "with_mask" / "IMG_1.HEIC") is not None
