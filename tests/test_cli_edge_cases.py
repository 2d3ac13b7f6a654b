"""Edge cases a user meets on the command line: each gives a clear message (or the right output), no traceback."""

from __future__ import annotations

import shutil

import cv2
import numpy as np
import pytest
from conftest import CLASSIFY, VOC, needs_shared

import maskwatch
from maskwatch.cli import main
from maskwatch.datasets import load_source
from maskwatch.images import check_image_header


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
    assert rc == 2 and "never writes over an input" in err
    assert clip.stat().st_size == size


@needs_shared
def test_detect_keeps_same_named_photos_apart(tmp_path, capsys):
    for d, src in (("x1", "maksssksksss0.jpg"), ("x2", "maksssksksss2.jpg")):
        (tmp_path / d).mkdir()
        shutil.copy(VOC / "images" / src, tmp_path / d / "p.jpg")
    rc, out, _ = run(capsys, "detect", str(tmp_path / "x1" / "p.jpg"), str(tmp_path / "x2" / "p.jpg"), "--out", str(tmp_path / "o"), "-q")
    assert rc == 0 and len(out.splitlines()) == 2
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["p.jpg", "p_2.jpg"]


@needs_shared
def test_a_photo_given_twice_is_read_and_counted_once(tmp_path, capsys):
    d = tmp_path / "p"
    d.mkdir()
    for src in ("maksssksksss0.jpg", "maksssksksss2.jpg"):
        shutil.copy(VOC / "images" / src, d / src)
    _, once, _ = run(capsys, "detect", str(d), "-q")
    rc, out, err = run(capsys, "detect", str(d / "maksssksksss2.jpg"), str(d), str(tmp_path / "p" / "." / ""), "-q")
    assert rc == 0 and "2 photo(s) were given more than once" in err and "2 image(s) done" in err
    assert [json_source(x) for x in out.splitlines()] == [str(d / "maksssksksss2.jpg"), str(d / "maksssksksss0.jpg")]
    assert sorted(out.splitlines()) == sorted(once.splitlines())


def json_source(line: str) -> str:
    import json

    return json.loads(line)["source"]


def test_a_video_given_to_detect_says_which_command_reads_it(tmp_path, capsys):
    clip = tmp_path / "door.mp4"
    clip.write_bytes(b"\x00" * 64)
    rc, _, err = run(capsys, "detect", str(clip), "-q")
    assert rc == 1 and "is a video, not a photo; annotate it with `maskwatch video`" in err


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
def test_explain_output_name_and_folder(tmp_path, capsys, monkeypatch):
    img = str(VOC / "images" / "maksssksksss0.jpg")
    rc, _, err = run(capsys, "explain", img, "--out", str(tmp_path / "x.txt"))
    assert rc == 2 and "image file name" in err
    rc, _, _ = run(capsys, "explain", img, "--out", str(tmp_path / "new" / "dir" / "x.jpg"))
    assert rc == 0 and (tmp_path / "new" / "dir" / "x.jpg").is_file()
    photos = tmp_path / "photos"
    photos.mkdir()
    shutil.copy(img, photos / "p.jpg")
    with monkeypatch.context() as m:  # no --out: under runs/explain of the current folder, not among the photos
        m.chdir(tmp_path)
        rc, _, err = run(capsys, "explain", str(photos / "p.jpg"))
    assert rc == 0 and (tmp_path / "runs" / "explain" / "p_explain.jpg").is_file() and sorted(photos.iterdir()) == [photos / "p.jpg"]
    with monkeypatch.context() as m:  # run from among the photos: runs/explain/ would be inside their folder
        m.chdir(photos)
        rc, _, err = run(capsys, "explain", "p.jpg")
    assert rc == 2 and "would lie among the photos" in err and sorted(photos.iterdir()) == [photos / "p.jpg"]


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


# ---------------------------------------------------------------- originals are never touched; outputs need --force
@needs_shared
def test_detect_out_in_the_input_folder_is_refused_and_the_original_stays(tmp_path, capsys):
    photos = tmp_path / "photos"
    photos.mkdir()
    shutil.copy(VOC / "images" / "maksssksksss0.jpg", photos / "a.jpg")
    before = (photos / "a.jpg").read_bytes()
    for out in (photos, photos / "annotated"):
        rc, stdout, err = run(capsys, "detect", str(photos), "--out", str(out), "-q")
        assert rc == 2 and "inside the input folder" in err and stdout == ""
    rc, _, err = run(capsys, "detect", str(photos / "a.jpg"), "--out", str(photos), "--force", "-q")
    assert rc == 2 and "holds the input" in err and "never writes" in err  # not even with --force
    assert (photos / "a.jpg").read_bytes() == before and sorted(p.name for p in photos.iterdir()) == ["a.jpg"]


@needs_shared
def test_detect_of_one_photo_writes_the_file_out_names(tmp_path, capsys):
    """`detect a.jpg --out result.jpg` writes result.jpg (not a folder of that name), under the same rules: never an
    input, an earlier result only with --force, and a file name for several photos is refused."""
    import cv2

    src = tmp_path / "a.jpg"
    shutil.copy(VOC / "images" / "maksssksksss0.jpg", src)
    out = tmp_path / "res" / "result.png"
    rc, stdout, err = run(capsys, "detect", str(src), "--out", str(out), "-q")
    assert rc == 0 and out.is_file() and "annotated copy: " in err and stdout.count("\n") == 1
    assert cv2.imread(str(out)).shape == cv2.imread(str(src)).shape
    rc, _, err = run(capsys, "detect", str(src), "--out", str(out), "-q")
    assert rc == 2 and "already exists" in err
    assert run(capsys, "detect", str(src), "--out", str(out), "-q", "--force")[0] == 0
    rc, _, err = run(capsys, "detect", str(src), str(tmp_path / "res" / "result.png"), "--out", str(tmp_path / "two.jpg"), "-q")
    assert rc == 2 and "names one image, but 2 photos" in err and not (tmp_path / "two.jpg").exists()
    rc, _, err = run(capsys, "detect", str(tmp_path / "res"), "--out", str(tmp_path / "one.jpg"), "-q")
    assert rc == 2 and "a folder or pattern was given" in err  # a folder of one photo: still a folder
    rc, _, err = run(capsys, "detect", str(src), "--out", str(tmp_path / "result.tif"), "-q")
    assert rc == 2 and "names a .tif image" in err and not (tmp_path / "result.tif").exists()  # not a folder of that name
    before = src.read_bytes()
    rc, _, err = run(capsys, "detect", str(src), "--out", str(src), "-q", "--force")
    assert rc == 2 and "never writes over an input" in err and src.read_bytes() == before


@needs_shared
def test_an_earlier_output_is_overwritten_only_with_force(tmp_path, capsys):
    src = tmp_path / "a.jpg"
    shutil.copy(VOC / "images" / "maksssksksss0.jpg", src)
    out = tmp_path / "out"
    assert run(capsys, "detect", str(src), "--out", str(out), "-q")[0] == 0
    rc, _, err = run(capsys, "detect", str(src), "--out", str(out), "-q")
    assert rc == 2 and "already exists" in err and "--force" in err
    assert run(capsys, "detect", str(src), "--out", str(out), "-q", "--force")[0] == 0
    # explain: the same rule for one output file, and the input itself is never the output
    target = tmp_path / "x.jpg"
    target.write_bytes(b"mine")
    rc, _, err = run(capsys, "explain", str(src), "--out", str(target))
    assert rc == 2 and "already exists" in err and target.read_bytes() == b"mine"
    rc, _, err = run(capsys, "explain", str(src), "--out", str(src), "--force")
    assert rc == 2 and "never writes over an input" in err
    # extract-faces into a folder holding crops of an earlier run
    assert run(capsys, "extract-faces", str(src), str(tmp_path / "faces"), "-q")[0] == 0
    rc, _, err = run(capsys, "extract-faces", str(src), str(tmp_path / "faces"), "-q")
    assert rc == 2 and "already exists" in err
    assert run(capsys, "extract-faces", str(src), str(tmp_path / "faces"), "-q", "--force")[0] == 0


@needs_shared
@pytest.mark.parametrize("command", ["detect", "video", "explain", "extract-faces", "train", "soup"])
def test_an_output_folder_that_cannot_be_created_is_a_clear_error(tmp_path, capsys, command):
    """The output's parent is a file (what a read-only parent does for root, who ignores chmod)."""
    from _scene import scene_frames, write_video

    blocker = tmp_path / "blocker"
    blocker.write_text("a file, not a folder")
    bad = blocker / "sub"
    photo = tmp_path / "a.jpg"
    shutil.copy(VOC / "images" / "maksssksksss0.jpg", photo)
    clip = write_video(tmp_path / "clip.mp4", scene_frames(3))
    model = maskwatch.classifier.MaskClassifier().path
    argv = {
        "detect": ["detect", str(photo), "--out", str(bad / "out")],
        "video": ["video", str(clip), "--out", str(bad / "out.mp4")],
        "explain": ["explain", str(photo), "--out", str(bad / "x.jpg")],
        "extract-faces": ["extract-faces", str(photo), str(bad / "faces")],
        "train": ["train", str(CLASSIFY / "chandrikadeb7"), "--out", str(bad / "run"), "--max-images", "2"],
        "soup": ["soup", str(model), str(shutil.copy(model, tmp_path / "twin.onnx")), "--out", str(bad / "soup.onnx")],
    }[command]
    if command in ("train", "soup"):
        pytest.importorskip("torch")
    rc, _, err = run(capsys, *argv, "-q") if command not in ("soup",) else run(capsys, *argv)
    assert rc == 2, err
    assert "error:" in err and str(blocker) in err


def test_extract_faces_size_and_margin_are_checked(tmp_path, capsys):
    for opts, needle in ((["--size", "0"], "--size 0"), (["--margin", "-1"], "--margin -1")):
        rc, _, err = run(capsys, "extract-faces", str(tmp_path), str(tmp_path / "o"), *opts)
        assert rc == 2 and needle in err


@needs_shared
def test_a_quoted_glob_is_expanded_and_a_glob_matching_nothing_says_so(tmp_path, capsys):
    for k in range(2):
        shutil.copy(VOC / "images" / f"maksssksksss{2 * k}.jpg", tmp_path / f"p{k}.jpg")
    rc, out, err = run(capsys, "detect", str(tmp_path / "*.jpg"), "-q")
    assert rc == 0 and len(out.splitlines()) == 2, err
    rc, out, err = run(capsys, "detect", str(tmp_path / "*.png"), "-q")
    assert rc == 2 and "no file matches this pattern" in err


def test_a_refused_stream_is_not_called_silent(capsys):
    import socket
    import time

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nobody listens: refused at once
    t0 = time.monotonic()
    with pytest.raises(maskwatch.InputError) as e:
        maskwatch.video.VideoSource(f"rtsp://127.0.0.1:{port}/live", open_timeout=8)
    assert time.monotonic() - t0 < 6
    assert "did not answer within" not in str(e.value) and "connection refused" in str(e.value)


@needs_shared
def test_training_on_a_folder_with_one_huge_image_skips_it_with_a_count(tmp_path):
    """A 20000 x 20000 px image (over OpenCV's pixel limit) used to end the run in the near-duplicate hashing."""
    from maskwatch.datasets import assign_groups, load_source

    for c in ("with_mask", "without_mask"):
        (tmp_path / c).mkdir()
        for f in sorted((CLASSIFY / "chandrikadeb7" / c).iterdir())[:3]:
            shutil.copy(f, tmp_path / c / f.name)
    cv2.imwrite(str(tmp_path / "with_mask" / "huge.png"), np.zeros((20000, 20000), np.uint8))
    ds = load_source(str(tmp_path))
    assign_groups(ds.images)  # no exception
    torch = pytest.importorskip("torch")  # noqa: F841
    from maskwatch.train.cropset import build_cropset

    cs, skipped = build_cropset(ds, 32)
    assert len(cs) == 6 and len(skipped) == 1 and "huge.png" in skipped[0]


@pytest.mark.parametrize("argv, message", [
    (["watch", "clip.mp4", "--max-frames", "-1"], "argument --max-frames: '-1': give a whole number of 0 or more"),
    (["explain", "clip.mp4", "--max-frames", "-5"], "argument --max-frames: '-5': give a whole number of 0 or more"),
    (["watch", "rtsp://cam/x", "--timeout", "-3"], "argument --timeout: '-3': give a number above 0 and at most 3600"),
    (["watch", "rtsp://cam/x", "--timeout", "0"], "argument --timeout: '0': give a number above 0"),
    (["watch", "clip.mp4", "--serial-interval", "0"], "Valid 'serial_interval' values are between 1 and 60000"),
    (["train-detector", "d", "--out", "o", "--max-images", "-1"], "'-1': give a whole number of 0 or more"),  # dropped a photo
    (["train-detector", "d", "--out", "o", "--threads", "-1"], "'-1': give a whole number of 0 or more and at most 256"),
])
def test_numbers_out_of_range_are_refused_before_anything_runs(capsys, argv, message):
    """Before: --max-frames -1 meant one frame, --timeout -3 was reported as "did not answer within -3 s", and
    --serial-interval 0 passed the settings check only to be refused once a serial link was used."""
    try:
        rc = main(argv)
    except SystemExit as e:
        rc = e.code
    err = capsys.readouterr().err
    assert rc == 2 and message in err and "Traceback" not in err, err


@needs_shared
def test_an_output_file_name_that_is_a_folder_says_so(tmp_path, capsys):
    """Before: "vo: already exists; pass --force to overwrite", and with --force "cannot write here (Is a directory)"."""
    (tmp_path / "vo").mkdir()
    photo = str(VOC / "images" / "maksssksksss0.jpg")
    for argv in (["video", "clip.mp4", "--out", str(tmp_path / "o.mp4"), "--json", str(tmp_path / "vo"), "--force"],
                 ["explain", photo, "--out", str(tmp_path / "vo")]):
        rc, _, err = run(capsys, *argv)
        assert rc == 2 and f"{tmp_path / 'vo'}: is a folder; give the name of a file to write" in err, err


def test_python_dash_m_maskwatch_runs_the_cli():
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-m", "maskwatch", "--version"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.startswith("maskwatch "), (r.stdout, r.stderr)
