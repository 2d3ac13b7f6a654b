"""End to end: maskwatch.detect / annotate on a real photo, and the `detect` command's JSON and --out."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import VOC, needs_shared

import maskwatch
from maskwatch import CLASS_NAMES, Detections
from maskwatch.cli import main

pytestmark = needs_shared


@pytest.fixture(scope="module")
def detector() -> maskwatch.Detector:
    return maskwatch.Detector(det_size=800)


def test_detect_real_photo_labels_and_probs(voc_image):
    """maskwatch.detect (the photo preset): every face shown is green, red, orange or grey 'uncertain'; a sure
    label's confidence is its probability and reaches its threshold; not_face boxes are gone."""
    from maskwatch.detections import NOT_FACE, UNCERTAIN
    from maskwatch.settings import PHOTO

    img = maskwatch.load_image(voc_image)
    d = maskwatch.detect(img)
    assert isinstance(d, Detections)
    assert len(d) >= 3
    assert set(d.labels) <= set(CLASS_NAMES) | {UNCERTAIN}
    assert "" not in d.labels and NOT_FACE not in d.labels  # every face classified; no box on no face
    assert d.probs.shape == (len(d), len(d.class_names))
    np.testing.assert_allclose(d.probs.sum(axis=1), 1.0, atol=1e-3)
    assert ((d.probs >= 0) & (d.probs <= 1)).all()
    need = {"with_mask": PHOTO["sure_mask"], "without_mask": PHOTO["sure_nomask"], "mask_incorrect": PHOTO["sure_incorrect"]}
    for i, lab in enumerate(d.labels):
        if lab == UNCERTAIN:
            assert d.confidence[i] == pytest.approx(d.probs[i].max())
        else:
            assert d.confidence[i] == pytest.approx(d.probs[i, d.class_names.index(lab)])
            assert d.confidence[i] >= need[lab] and d.face_score[i] >= PHOTO["sure_face_score"]
    if NOT_FACE in d.class_names:
        assert (d.probs[:, d.class_names.index(NOT_FACE)] < PHOTO["not_face_threshold"]).all()
    # Without an operating point, the label is argmax of probability x cost over the face classes (without_mask x 2).
    plain = maskwatch.Detector(det_size=800).detect(img)
    faces = np.array([c != NOT_FACE for c in plain.class_names])
    costs = np.array([2.0 if c == "without_mask" else 1.0 for c in plain.class_names]) * faces
    kept = plain.class_id >= 0
    assert (plain.class_id[kept] == (plain.probs[kept] * costs).argmax(axis=1)).all()
    h, w = img.shape[:2]
    assert (d.xyxy[:, [0, 2]] <= w).all() and (d.xyxy[:, [1, 3]] <= h).all() and (d.xyxy >= 0).all()


def test_detect_with_settings_builds_a_new_detector(voc_image):
    img = maskwatch.load_image(voc_image)
    strict = maskwatch.detect(img, score_threshold=0.9)
    loose = maskwatch.detect(img, score_threshold=0.3)
    assert len(strict) < len(loose)
    assert (strict.face_score >= 0.9).all()
    kept = maskwatch._detectors
    first = next(d for k, d in kept.items() if ("score_threshold", "0.3") in k)
    maskwatch.detect(img, score_threshold=0.3)
    assert next(d for k, d in kept.items() if ("score_threshold", "0.3") in k) is first  # the same settings: reused
    for t in (0.31, 0.32, 0.33, 0.34, 0.35):  # a sweep: models of old settings are freed, not kept for ever
        maskwatch.detect(img, score_threshold=t)
    assert len(kept) == maskwatch.MAX_CACHED_DETECTORS and not any(("score_threshold", "0.3") in k for k in kept)


def test_detect_from_many_threads_with_many_settings(blank):
    """A web app's request threads: the bounded cache must not raise 'dictionary changed size' or KeyError."""
    from concurrent.futures import ThreadPoolExecutor

    def one(i: int) -> int:
        return len(maskwatch.detect(blank, score_threshold=0.5 + 0.01 * (i % 6), det_size=320))

    with ThreadPoolExecutor(8) as pool:
        assert list(pool.map(one, range(48))) == [0] * 48
    assert len(maskwatch._detectors) <= maskwatch.MAX_CACHED_DETECTORS


def test_blank_image_gives_empty_detections(detector, blank):
    d = detector.detect(blank)
    assert d is not None
    assert isinstance(d, Detections)
    assert len(d) == 0
    assert d.to_records() == []
    assert d.class_names == detector.class_names
    d2 = maskwatch.detect(blank)
    assert d2 is not None and len(d2) == 0


def test_detector_accepts_grayscale_array(detector, voc_image):
    img = maskwatch.load_image(voc_image)
    grey = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
    d = detector.detect(grey)
    assert len(d) >= 1


@pytest.mark.parametrize("make, message", [
    (lambda img: img.astype(np.float32), "a float image must hold values 0..1 (this one has 0..255)"),
    (lambda img: np.full((64, 64, 3), np.nan, np.float32), "NaN or infinite"),
    (lambda img: np.zeros((0, 0, 3), np.uint8), "0x0 px, too small"),
    (lambda img: np.zeros((0, 100, 3), np.uint8), "100x0 px, too small"),
    (lambda img: img[:5], "x5 px, too small"),
])
def test_image_arrays_that_would_give_a_wrong_answer_or_a_raw_error_are_refused(detector, voc_image, make, message):
    """A float image of 0..255 turned white and gave no face, silently; empty uint8 arrays raised ZeroDivisionError or
    cv2.error."""
    img = maskwatch.load_image(voc_image)
    with pytest.raises(maskwatch.InputError, match=re.escape(message)):
        detector.detect(make(img))
    assert detector.detect((img / 255.0).astype(np.float32)).labels == detector.detect(img).labels  # 0..1 floats work


def test_annotate_and_load_image_say_what_they_take(detector, voc_image):
    img = maskwatch.load_image(voc_image)
    d = detector.detect(img)
    for image, dets, message in ((None, d, "got NoneType"), (str(voc_image), d, "got str"),
                                 (img.astype(np.float32) / 255, d, "got float32 array of shape"),
                                 (img, None, "takes the Detections that detect() returned, got NoneType"),
                                 (img, d.to_records(), "got list")):
        with pytest.raises(maskwatch.InputError, match=re.escape(message)):
            maskwatch.annotate(image, dets)
    for path, message in ((None, "got NoneType"), (img, "an image array needs no loading"), (b"x.jpg", "got bytes")):
        with pytest.raises(maskwatch.InputError, match=re.escape(message)):
            maskwatch.load_image(path)


def test_annotate_draws_on_a_copy_where_faces_are(detector, voc_image):
    img = maskwatch.load_image(voc_image)
    before = img.copy()
    d = detector.detect(img)
    assert len(d) >= 1
    out = maskwatch.annotate(img, d)
    assert out.shape == img.shape and out.dtype == np.uint8
    np.testing.assert_array_equal(img, before)  # the input is left alone
    diff = np.any(out != img, axis=2)
    for x1, y1, x2, y2 in d.xyxy.round().astype(int):
        # The box outline is drawn: pixels along each face's box changed.
        ring = np.zeros_like(diff)
        ring[max(y1 - 1, 0) : y2 + 2, max(x1 - 1, 0) : x2 + 2] = True  # a 3 px band on the box's edge
        ring[y1 + 2 : y2 - 1, x1 + 2 : x2 - 1] = False
        assert diff[ring].mean() > 0.3  # a 1 px outline is a third of it
    # Far from every face nothing is drawn (bottom-right corner of this photo has no face).
    assert not diff[-40:, -40:].any()
    # No faces: the copy is identical.
    np.testing.assert_array_equal(maskwatch.annotate(img, Detections.empty()), img)


def test_cli_detect_json_line(voc_image, capsys):
    rc = main(["detect", str(voc_image), "-q"])
    cap = capsys.readouterr()
    assert rc == 0, cap.err
    lines = [x for x in cap.out.splitlines() if x.strip()]
    assert len(lines) == 1
    rec = json.loads(lines[0])
    assert set(rec) == {"source", "width", "height", "faces"}
    assert rec["source"] == str(voc_image)
    assert (rec["width"], rec["height"]) == (512, 366)
    assert len(rec["faces"]) >= 3
    for f in rec["faces"]:
        assert set(f) == {"box", "face_score", "label", "confidence", "probs"}
        assert len(f["box"]) == 4 and all(isinstance(v, int) for v in f["box"])
        assert f["label"] in (*CLASS_NAMES, "uncertain")
        assert set(f["probs"]) <= {*CLASS_NAMES, "not_face"}
        assert sum(f["probs"].values()) == pytest.approx(1.0, abs=2e-3)
        shown = max(f["probs"].values()) if f["label"] == "uncertain" else f["probs"][f["label"]]
        assert f["confidence"] == pytest.approx(shown, abs=1e-4)
    assert "1 image(s) done, 0 failed" in cap.err


def test_cli_detect_out_writes_annotated_jpg(voc_image, tmp_path, capsys):
    src = tmp_path / "in" / "scene.png"
    src.parent.mkdir()
    cv2.imwrite(str(src), cv2.imread(str(voc_image)))
    out = tmp_path / "annotated"
    rc = main(["detect", str(src.parent), "--out", str(out), "-q"])
    err = capsys.readouterr().err
    assert rc == 0, err
    written = out / "scene.jpg"
    assert written.is_file(), list(out.rglob("*"))
    ann = cv2.imread(str(written))
    orig = cv2.imread(str(src))
    assert ann is not None and ann.shape == orig.shape
    assert np.abs(ann.astype(int) - orig.astype(int)).mean() > 0.5  # boxes and captions drawn
    assert str(out) in err


def test_cli_detect_blur_faces(voc_image, tmp_path, capsys):
    out = tmp_path / "blurred"
    rc = main(["detect", str(voc_image), "--out", str(out), "--blur-faces", "-q"])
    assert rc == 0
    rec = json.loads(capsys.readouterr().out.splitlines()[0])
    ann = cv2.imread(str(out / (Path(voc_image).stem + ".jpg")))
    orig = cv2.imread(str(voc_image))
    x1, y1, x2, y2 = rec["faces"][0]["box"]
    inner_a = ann[y1 + 4 : y2 - 4, x1 + 4 : x2 - 4].astype(float)
    inner_o = orig[y1 + 4 : y2 - 4, x1 + 4 : x2 - 4].astype(float)
    # Pixelated: far less fine detail inside the face box than the original.
    assert np.abs(np.diff(inner_a, axis=1)).mean() < 0.6 * np.abs(np.diff(inner_o, axis=1)).mean()


def test_cli_detect_nested_folders_keep_structure(voc_image, tmp_path, capsys):
    root = tmp_path / "photos"
    (root / "day1").mkdir(parents=True)
    (root / "day2").mkdir()
    shutil.copy(voc_image, root / "day1" / "x.jpg")
    shutil.copy(voc_image, root / "day2" / "x.jpg")  # same name in two folders: both kept
    out = tmp_path / "out"
    rc = main(["detect", str(root), "--out", str(out), "-q"])
    cap = capsys.readouterr()
    assert rc == 0, cap.err
    assert len(cap.out.splitlines()) == 2
    assert (out / "day1" / "x.jpg").is_file() and (out / "day2" / "x.jpg").is_file()


def test_cli_detect_out_is_an_existing_file(voc_image, tmp_path):
    import subprocess
    import sys

    not_a_folder = tmp_path / "results.txt"
    not_a_folder.write_text("keep me")
    r = subprocess.run([sys.executable, "-m", "maskwatch.cli", "detect", str(voc_image), "--out", str(not_a_folder), "-q"],
                       capture_output=True, text=True, timeout=120, cwd=Path(__file__).resolve().parents[1])
    assert "Traceback" not in r.stderr, r.stderr[-1500:]
    assert r.returncode != 0
    assert str(not_a_folder) in r.stderr
    assert not_a_folder.read_text() == "keep me"


def test_flip_averages_the_face_and_its_mirror():
    from maskwatch.classifier import MaskClassifier

    plain, flipped = MaskClassifier(), MaskClassifier(flip=True)
    crops = np.random.default_rng(1).integers(0, 255, (3, plain.input_size, plain.input_size, 3), dtype=np.uint8)
    want = (plain.predict(crops) + plain.predict(np.ascontiguousarray(crops[:, :, ::-1]))) / 2
    got = flipped.predict(crops)
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert not np.allclose(got, plain.predict(crops), atol=1e-4)  # random crops: the mirror changes the answer
    np.testing.assert_allclose(got.sum(1), 1, atol=1e-5)
    assert flipped.predict(crops[:0]).shape == (0, len(flipped.class_names))


def test_auto_flip_mirrors_only_the_faces_the_first_look_is_not_sure_of(voc_image):
    """flip="auto": a crop whose first look reaches FLIP_SURE keeps it; the others get the mirror averaged in,
    exactly as flip=True gives them; the heatmaps follow the same views."""
    from maskwatch.classifier import FLIP_SURE, MaskClassifier
    from maskwatch.detectors import create_face_detector

    plain, full, auto = MaskClassifier(), MaskClassifier(flip=True), MaskClassifier(flip="auto")
    img = maskwatch.load_image(voc_image)
    real = plain.crops(img, create_face_detector("yunet", det_size=800).detect(img))
    noise = np.random.default_rng(3).integers(0, 255, (4, plain.input_size, plain.input_size, 3), dtype=np.uint8)
    crops = np.concatenate([real, noise])
    first = plain.predict(crops)
    sure = first.max(1) >= FLIP_SURE
    assert sure.any() and not sure.all()  # both kinds in this batch, or the test says nothing
    got = auto.predict(crops)
    np.testing.assert_allclose(got[sure], first[sure], atol=1e-6)
    np.testing.assert_allclose(got[~sure], full.predict(crops)[~sure], atol=1e-5)
    ids = auto.decide(got)
    maps, probs = auto.heatmaps(crops, ids)
    np.testing.assert_allclose(probs, got, atol=1e-5)
    np.testing.assert_allclose(maps[sure], plain.heatmaps(crops, ids)[0][sure], atol=1e-4)
    np.testing.assert_allclose(maps[~sure], full.heatmaps(crops, ids)[0][~sure], atol=1e-4)
    with pytest.raises(maskwatch.InputError, match="flip"):
        MaskClassifier(flip="sometimes")


def test_flip_auto_in_a_settings_file(tmp_path):
    from maskwatch.cli import build_parser
    from maskwatch.cli.options import load_settings_file

    sub = build_parser()._subparsers._group_actions[0].choices["detect"]  # type: ignore[union-attr]
    cfg = tmp_path / "mw.toml"
    cfg.write_text('flip = "auto"\n')
    assert load_settings_file(str(cfg), sub)["flip"] == "auto"
    cfg.write_text("flip = false\n")
    assert load_settings_file(str(cfg), sub)["flip"] is False
    cfg.write_text('flip = "half"\n')
    with pytest.raises(maskwatch.InputError, match="on or off .*or auto"):
        load_settings_file(str(cfg), sub)


def test_many_faces_are_classified_in_bounded_calls():
    """A crowd photo's faces go to onnxruntime in calls of at most MAX_VIEWS crops (its arena keeps the largest
    call's buffers: 250 flipped faces in one call held 1.6 GB), with the same answers as one face at a time."""
    from maskwatch.classifier import MAX_VIEWS, MaskClassifier

    clf = MaskClassifier(flip=True)
    sizes: list[int] = []
    real_run = clf.session.run

    def run(outputs, feeds):  # noqa: ANN001, ANN202
        sizes.append(len(next(iter(feeds.values()))))
        return real_run(outputs, feeds)

    clf.session.run = run  # type: ignore[method-assign]
    crops = np.random.default_rng(2).integers(0, 255, (3 * MAX_VIEWS + 5, clf.input_size, clf.input_size, 3), dtype=np.uint8)
    got = clf.predict(crops)
    assert max(sizes) <= MAX_VIEWS and sum(sizes) == 2 * len(crops)  # each face and its mirror, in bounded calls
    one = np.concatenate([clf.predict(crops[i : i + 1]) for i in range(0, len(crops), 7)])
    np.testing.assert_allclose(got[::7], one, atol=1e-5)
    sizes.clear()
    maps, probs = clf.heatmaps(crops)
    assert max(sizes) <= MAX_VIEWS and maps.shape[0] == len(crops)
    np.testing.assert_allclose(probs, got, atol=1e-5)


def test_flip_heatmaps_explain_the_averaged_label(voc_image):
    """With flip on, a face's heatmap is the mean of its own and its mirror's (mirrored back): so the map of a
    mirrored face is the mirrored map, and the probabilities are those predict() gives."""
    from maskwatch.classifier import MaskClassifier
    from maskwatch.detectors import create_face_detector

    plain, flipped = MaskClassifier(), MaskClassifier(flip=True)
    img = maskwatch.load_image(voc_image)
    crops = plain.crops(img, create_face_detector("yunet", det_size=800).detect(img))[:3]  # three real faces
    assert len(crops) == 3
    mirrored = np.ascontiguousarray(crops[:, :, ::-1])
    maps, probs = flipped.heatmaps(crops)
    np.testing.assert_allclose(probs, flipped.predict(crops), atol=1e-5)
    ids = flipped.decide(probs)
    maps_m, _ = flipped.heatmaps(mirrored, ids)
    np.testing.assert_allclose(maps_m, maps[:, :, ::-1], atol=1e-4)
    assert maps.shape == (3, plain.input_size, plain.input_size) and maps.min() >= 0 and maps.max() <= 1
    own, _ = plain.heatmaps(crops, ids)
    assert not np.allclose(own, maps, atol=1e-3)  # the unmirrored view alone is another map
    assert flipped.heatmaps(crops[:0])[0].shape == (0, plain.input_size, plain.input_size)


def test_flip_is_auto_for_photos_and_off_for_video():
    from maskwatch.cli import build_parser

    p = build_parser()
    assert p.parse_args(["detect", "x.jpg"]).flip == "auto"
    assert p.parse_args(["evaluate-detection", "s"]).flip == "auto"
    assert p.parse_args(["video", "in.mp4", "--out", "o.mp4"]).flip is False
    assert p.parse_args(["watch", "0"]).flip is False
    assert p.parse_args(["detect", "x.jpg", "--flip", "off"]).flip is False
    assert p.parse_args(["detect", "x.jpg", "--flip", "auto"]).flip == "auto"
    assert maskwatch.Detector(flip="auto").classifier.flip == "auto"
    assert p.parse_args(["serve"]).photo_flip == "auto" and p.parse_args(["serve"]).flip is False
    assert maskwatch.Detector(flip=True).classifier.flip and not maskwatch.Detector().classifier.flip
    from maskwatch.classifier import MaskClassifier

    clf = MaskClassifier()
    assert maskwatch.Detector(classifier=clf).classifier is clf
    with pytest.raises(maskwatch.InputError, match="flip"):
        maskwatch.Detector(classifier=clf, flip=True)


def test_to_input_is_imagenet_normalised_nchw():
    from maskwatch.crops import IMAGENET_MEAN, IMAGENET_STD, to_input

    x = np.random.default_rng(2).integers(0, 256, (4, 16, 16, 3), dtype=np.uint8)
    want = ((x.astype(np.float64) / 255 - IMAGENET_MEAN) / IMAGENET_STD).transpose(0, 3, 1, 2)
    got = to_input(x)
    assert got.dtype == np.float32 and got.flags["C_CONTIGUOUS"] and got.shape == (4, 3, 16, 16)
    np.testing.assert_allclose(got, want, atol=1e-5)
    np.testing.assert_allclose(to_input(x[:, :, ::-1]), want[:, :, :, ::-1], atol=1e-5)  # strided input too


@pytest.mark.parametrize("scale", [1.0, 4.0])
def test_crowd_captions_fit_their_faces_stay_inside_and_never_cover_a_face(scale):
    """A dense crowd photo (masks-voc-dev, dozens of small faces) and the same photo as a 4K-class image: every
    caption lies inside the image, covers no other face and no other caption; the biggest faces get theirs."""
    import cv2

    from maskwatch.annotate import BoxAnnotator

    crowd = max(sorted((VOC / "images").glob("*.jpg")), key=lambda p: (VOC / "annotations" / f"{p.stem}.xml").read_text().count("<object>"))
    img = maskwatch.load_image(crowd)
    if scale != 1.0:
        img = cv2.resize(img, None, fx=scale, fy=scale, interpolation=cv2.INTER_LINEAR)
    d = maskwatch.detect(img)
    assert len(d) >= 20
    h, w = img.shape[:2]
    placed = BoxAnnotator().captions(d, w, h)
    assert len(placed) < len(d)  # the small faces go without (at 400 px, all of them: the colours tell)
    rects = [r for _, _, _, r in placed]
    for k, (i, _, fs, (x1, y1, x2, y2)) in enumerate(placed):
        assert 0 <= x1 < x2 <= w and 0 <= y1 < y2 <= h
        assert fs >= BoxAnnotator.MIN_SCALE
        for j, (fx1, fy1, fx2, fy2) in enumerate(d.xyxy.round().astype(int)):
            if j != i:
                assert not (x1 < fx2 and fx1 < x2 and y1 < fy2 and fy1 < y2), "a caption covers another face"
        for r in rects[k + 1 :]:
            assert not (x1 < r[2] and r[0] < x2 and y1 < r[3] and r[1] < y2), "two captions overlap"
    if scale > 1:  # the 4x photo has room for the captions of its biggest faces
        assert int(np.argmax(d.width * d.height)) in [i for i, *_ in placed]
    out = maskwatch.annotate(img, d)
    assert out.shape == img.shape


def test_python_settings_are_read_and_checked_as_the_cli_reads_them(voc_image):
    """det_size="1024" used to be read one character at a time ("'det_size=1' is invalid"), 512.0 raised a raw
    TypeError, threads=0 passed, flip="on" was refused and a misspelt name gave a bare TypeError."""
    img = maskwatch.load_image(voc_image)
    base = maskwatch.detect(img)
    assert maskwatch.detect(img, det_size="1024", flip="auto", score_threshold="0.5").labels == base.labels
    assert maskwatch.Detector(det_size=1024.0, flip="off").detect(img).xyxy.shape == maskwatch.Detector(det_size=1024).detect(img).xyxy.shape
    for kw, message in ((dict(scor_threshold=0.5), "unknown setting 'scor_threshold'; did you mean 'score_threshold'?"),
                        (dict(det_size=512.5), "'det_size=512.5' is invalid: give a size"),
                        (dict(threads=0), "Valid 'threads' values are between 1 and 256"),
                        (dict(sure_mask=2), "'sure_mask=2' is invalid. Valid 'sure_mask' values are between 0.0 and 1.0"),
                        (dict(score_threshold="abc"), "'score_threshold='abc'' is invalid: give a number"),
                        (dict(flip="maybe"), "give on|off|auto")):
        with pytest.raises(maskwatch.InputError, match=re.escape(message)):
            maskwatch.detect(img, **kw)


def test_the_runtime_never_imports_training_or_evaluation_code():
    """The run-time stages (detect, video, monitor, events, serial, dashboard) load neither maskwatch.train,
    maskwatch.eval nor PyTorch: `pip install maskwatch` without extras runs them, and they start fast."""
    import subprocess
    import sys

    code = (
        "import sys, numpy as np, maskwatch\n"
        "import maskwatch.monitor, maskwatch.tracking, maskwatch.events, maskwatch.explain, maskwatch.video, "
        "maskwatch.serial_link, maskwatch.annotate\n"
        "import maskwatch.server.app\n"
        "img = maskwatch.load_image(sys.argv[1])\n"
        "d = maskwatch.detect(img)\n"
        "maskwatch.annotate(img, d)\n"
        "m = maskwatch.monitor.Monitor(maskwatch.Detector(**maskwatch.settings.LIVE))\n"
        "m.process(img)\n"
        "bad = sorted(n for n in sys.modules if n.split('.')[0] == 'torch' or n.startswith(('maskwatch.train', "
        "'maskwatch.eval', 'maskwatch.cli')))\n"
        "print(len(d), bad)\n"
    )
    r = subprocess.run([sys.executable, "-c", code, str(Path(__file__).parents[1] / "docs" / "example.jpg")],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    n, bad = r.stdout.strip().split(" ", 1)
    assert int(n) > 0 and bad == "[]", r.stdout
