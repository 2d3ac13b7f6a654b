"""`maskwatch explain` (heatmaps beside the frame) and `maskwatch extract-faces` (face crops for data sets)."""

from __future__ import annotations

import shutil

import cv2
from conftest import VOC, needs_shared, run_cli


@needs_shared
def test_explain_image_is_twice_as_wide(voc_image, tmp_path):
    out = tmp_path / "x.jpg"
    rc, _, err = run_cli(["explain", str(voc_image), "--out", str(out), "-q"])
    assert rc == 0, err
    src = cv2.imread(str(voc_image))
    vis = cv2.imread(str(out))
    assert vis is not None
    assert vis.shape == (src.shape[0], 2 * src.shape[1], 3)
    assert "face(s) explained" in err
    n = int(err.split("maskwatch: ")[1].split(" face")[0])
    assert n >= 1
    # the right half carries the heatmaps: it differs from the left (annotated) half and from the photo
    left, right = vis[:, : src.shape[1]].astype(int), vis[:, src.shape[1] :].astype(int)
    assert abs(right - left).mean() > 0.5


@needs_shared
def test_explain_missing_image(tmp_path):
    rc, _, err = run_cli(["explain", str(tmp_path / "nope.jpg"), "--out", str(tmp_path / "x.jpg"), "-q"])
    assert rc == 2 and "Traceback" not in err and "nope.jpg" in err


@needs_shared
def test_extract_faces_writes_crops_of_size(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    stems = ["maksssksksss0", "maksssksksss100", "maksssksksss104"]
    for s in stems:
        shutil.copy(VOC / "images" / f"{s}.jpg", src)
    out = tmp_path / "faces"
    rc, _, err = run_cli(["extract-faces", str(src), str(out), "--size", "48", "-q"])
    assert rc == 0, err
    crops = sorted(out.glob("*.jpg"))
    assert len(crops) >= 3
    assert {c.name.split("_face")[0] for c in crops} <= set(stems)
    for c in crops:
        img = cv2.imread(str(c))
        assert img is not None and img.shape == (48, 48, 3), c
    assert f"{len(crops)} face(s) from 3 image(s)" in err


@needs_shared
def test_extract_faces_empty_folder(tmp_path):
    (tmp_path / "in").mkdir()
    rc, _, err = run_cli(["extract-faces", str(tmp_path / "in"), str(tmp_path / "out"), "-q"])
    assert rc == 2 and "Traceback" not in err and "no image" in err


@needs_shared
def test_explain_of_a_video_that_states_no_frame_rate_says_25_is_assumed(tmp_path):
    """As `maskwatch video` does: a file whose stated rate is no frame rate (5000/s here; 0 or a stream's clock in
    others) is written at 25 frames/s, and the user is told."""
    from _scene import scene_frames, write_video

    clip = write_video(tmp_path / "odd.mp4", [f[::2, ::2] for f in scene_frames(3)], fps=5000)
    rc, _, err = run_cli(["explain", str(clip), "--out", str(tmp_path / "x.webm"), "--max-frames", "2", "-q"])
    assert rc == 0, err
    assert f"maskwatch: note: {clip} states no usable frame rate; the output assumes 25 frames/s" in err, err
    cap = cv2.VideoCapture(str(tmp_path / "x.webm"))
    assert cap.get(cv2.CAP_PROP_FPS) == 25
    rc, _, err = run_cli(["explain", str(write_video(tmp_path / "ok.mp4", scene_frames(2), fps=10)), "--out",
                          str(tmp_path / "y.webm"), "-q"])
    assert rc == 0 and "note:" not in err, err
