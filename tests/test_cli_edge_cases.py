"""Edge cases a user meets on the command line: each gives a clear message (or the right output), no traceback."""

from __future__ import annotations

import shutil

import cv2
import numpy as np
import pytest

import maskwatch
from maskwatch.cli import main
from maskwatch.datasets import load_source
from maskwatch.images import check_image_header

from conftest import CLASSIFY, VOC, needs_shared


def run(capsys, *argv: str) -> tuple[int, str, str]:
    rc = main(list(argv))
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return rc, out, err


@needs_shared
def test_video_refuses_to_overwrite_its_input(tmp_path, capsys):
    from _scene import scene_frames, write_video

    clip = write_video(tmp_path / "clip.mp4", scene_frames(4))
    size = clip.stat().st_size
    rc, _, err = run(capsys, "video", str(clip), "--out", str(clip), "-q")
    assert rc == 2 and "would overwrite the input" in err
    assert clip.stat().st_size == size


@needs_shared
def test_detect_keeps_same_named_photos_apart(tmp_path, capsys):
    for d, src in (("x1", "maksssksksss0.jpg"), ("x2", "maksssksksss2.jpg")):
        (tmp_path / d).mkdir()
        shutil.copy(VOC / "images" / src, tmp_path / d / "p.jpg")
    rc, out, _ = run(capsys, "detect", str(tmp_path / "x1" / "p.jpg"), str(tmp_path / "x2" / "p.jpg"), "--out", str(tmp_path / "o"), "-q")
    assert rc == 0 and len(out.splitlines()) == 2
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["p.jpg", "p_2.jpg"]


@pytest.mark.parametrize("argv, message", [
    (["--device", "tpu"], "use 'auto', 'cpu' or 'cuda'"),
    (["--pretrained", "{image}"], "not a PyTorch state dict"),
    (["--pretrained", "/no/such.pth"], "no such file"),
])
@needs_shared
def test_train_option_errors(tmp_path, capsys, argv, message):
    data = tmp_path / "d"
    for cls in ("with_mask", "without_mask"):
        (data / cls).mkdir(parents=True)
        for f in sorted((CLASSIFY / "chandrikadeb7" / cls).iterdir())[:3]:
            shutil.copy(f, data / cls / f.name)
    argv = [a.replace("{image}", str(next((data / "with_mask").iterdir()))) for a in argv]
    rc, _, err = run(capsys, "train", str(data), "--out", str(tmp_path / "out"), "--epochs", "1", "--head-epochs", "0",
                     "--workers", "0", "-q", *argv)
    assert rc == 2 and message in err, err


@needs_shared
def test_explain_output_name_and_folder(tmp_path, capsys):
    img = str(VOC / "images" / "maksssksksss0.jpg")
    rc, _, err = run(capsys, "explain", img, "--out", str(tmp_path / "x.txt"))
    assert rc == 2 and "image file name" in err
    rc, _, _ = run(capsys, "explain", img, "--out", str(tmp_path / "new" / "dir" / "x.jpg"))
    assert rc == 0 and (tmp_path / "new" / "dir" / "x.jpg").is_file()


def test_evaluate_detection_needs_boxes(tmp_path, capsys):
    (tmp_path / "with_mask").mkdir()
    (tmp_path / "without_mask").mkdir()
    cv2.imwrite(str(tmp_path / "with_mask" / "a.jpg"), np.full((64, 64, 3), 100, np.uint8))
    cv2.imwrite(str(tmp_path / "without_mask" / "b.jpg"), np.full((64, 64, 3), 100, np.uint8))
    rc, _, err = run(capsys, "evaluate-detection", str(tmp_path), "--face-detector", "haar", "-q")
    assert rc == 2 and "no face boxes" in err


@pytest.mark.parametrize("ext", [".bmp", ".webp", ".png", ".jpg"])
def test_header_check_reads_each_format(ext):
    data = cv2.imencode(ext, np.zeros((300, 500, 3), np.uint8))[1].tobytes()
    with pytest.raises(maskwatch.InputError, match="500x300"):
        check_image_header(data, "x" + ext, 100_000)
    check_image_header(data, "x" + ext, 1_000_000)  # under the limit: no error


def test_detect_on_a_path_says_to_load_it_first():
    with pytest.raises(maskwatch.InputError, match="load_image"):
        maskwatch.Detector(face_detector="haar").detect("photo.jpg")


@needs_shared
def test_class_folders_in_several_splits_are_flagged():
    ds = load_source(str(CLASSIFY / "facemask12k"))
    assert any("several sub-folders" in w for w in ds.warnings)
    assert not load_source(str(CLASSIFY / "facemask12k" / "test")).warnings
