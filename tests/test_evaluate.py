"""Metrics, classifier evaluation on scene sets, and detection evaluation (AP, IoU, face recall)."""

from __future__ import annotations

import hashlib
import json
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from conftest import VOC, copy_voc, needs_shared, run_cli

from maskwatch.boxes import iou_matrix
from maskwatch.datasets import load_source
from maskwatch.detections import CLASS_NAMES, Detections
from maskwatch.eval import metrics
from maskwatch.eval.detection import evaluate_detection, voc_ap

BUNDLED = Path(__file__).resolve().parents[1] / "maskwatch" / "assets" / "mask_classifier.onnx"
EVAL_STEMS = ["maksssksksss0", "maksssksksss10", "maksssksksss100", "maksssksksss104", "maksssksksss108", "maksssksksss130"]


def gt_objects(stems: list[str]) -> list[tuple[str, tuple[float, ...]]]:
    """Ground truth read straight from the XML (independent of maskwatch.datasets), canonical names."""
    out = []
    names = {"with_mask": "with_mask", "without_mask": "without_mask", "mask_weared_incorrect": "mask_incorrect"}
    for s in stems:
        for o in ET.parse(VOC / "annotations" / f"{s}.xml").getroot().iter("object"):
            out.append((names[o.findtext("name")], tuple(float(o.findtext(f"bndbox/{k}")) for k in ("xmin", "ymin", "xmax", "ymax"))))
    return out


@pytest.fixture
def tiny_voc(tmp_path) -> Path:
    if not (VOC / "images").is_dir():
        pytest.skip(f"{VOC} not found (shared data absent)")
    return copy_voc(tmp_path / "voc", EVAL_STEMS)


# ---------------------------------------------------------------- metrics
def _from_confusion(cm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    yt, yp = [], []
    for i in range(cm.shape[0]):
        for j in range(cm.shape[1]):
            yt += [i] * int(cm[i, j])
            yp += [j] * int(cm[i, j])
    return np.array(yt), np.array(yp)


def test_report_on_known_confusion():
    cm = np.array([[5, 1, 0],
                   [2, 3, 1],
                   [0, 0, 0]])
    yt, yp = _from_confusion(cm)
    r = metrics.report(yt, yp, CLASS_NAMES)
    assert r["confusion"] == cm.tolist()
    assert r["n"] == 12
    assert r["accuracy"] == pytest.approx(8 / 12)
    wm, nm, inc = (r["classes"][c] for c in CLASS_NAMES)
    assert wm["precision"] == pytest.approx(5 / 7)
    assert wm["recall"] == pytest.approx(5 / 6)
    assert wm["f1"] == pytest.approx(2 * (5 / 7) * (5 / 6) / (5 / 7 + 5 / 6))
    assert wm["support"] == 6
    assert nm["precision"] == pytest.approx(3 / 4)
    assert nm["recall"] == pytest.approx(3 / 6)
    assert nm["f1"] == pytest.approx(0.6)
    assert nm["support"] == 6
    assert inc == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    assert r["balanced_accuracy_mask_nomask"] == pytest.approx((5 / 6 + 3 / 6) / 2)
    text = metrics.format_report(r)
    assert "0.7143" in text and "0.8333" in text and "balanced accuracy" in text


def test_report_perfect_and_empty():
    r = metrics.report(np.array([0, 1, 1]), np.array([0, 1, 1]), ("with_mask", "without_mask"))
    assert r["accuracy"] == 1.0 and r["balanced_accuracy_mask_nomask"] == 1.0
    assert all(c["f1"] == 1.0 for c in r["classes"].values())
    e = metrics.report(np.zeros(0, np.int64), np.zeros(0, np.int64), ("with_mask", "without_mask"))
    assert e["n"] == 0 and e["accuracy"] == 0.0 and e["balanced_accuracy_mask_nomask"] is None


def test_report_by_size_bins():
    names = ("with_mask", "without_mask")
    px = np.array([10, 15.9, 16, 20, 31.9, 40, 63.9, 64, 200], np.float32)
    yt = np.array([0, 1, 0, 1, 1, 0, 0, 1, 1])
    yp = np.array([0, 0, 0, 1, 0, 0, 1, 1, 1])
    by = metrics.report_by_size(yt, yp, px, names)
    assert list(by) == ["<16", "16-32", "32-64", ">64"]
    assert [by[k]["n"] for k in by] == [2, 3, 2, 2]
    assert by["<16"]["accuracy"] == pytest.approx(0.5)
    assert by["<16"]["recall"] == {"with_mask": 1.0, "without_mask": 0.0}
    assert by["16-32"]["accuracy"] == pytest.approx(2 / 3)
    assert by["16-32"]["recall"] == {"with_mask": 1.0, "without_mask": 0.5}
    assert by["32-64"]["recall"] == {"with_mask": 0.5}  # only classes with support are listed
    assert by["32-64"]["balanced_accuracy_mask_nomask"] == pytest.approx(0.5)
    assert by[">64"]["accuracy"] == 1.0
    # empty bins are left out
    only_big = metrics.report_by_size(yt[-2:], yp[-2:], px[-2:], names)
    assert list(only_big) == [">64"]


def test_confusion_png(tmp_path):
    import cv2

    r = metrics.report(np.array([0, 1, 1]), np.array([0, 1, 0]), ("with_mask", "without_mask"))
    metrics.confusion_png(r, str(tmp_path / "c.png"))
    img = cv2.imread(str(tmp_path / "c.png"))
    assert img is not None and img.shape[0] > 100


# ---------------------------------------------------------------- classifier evaluation
@needs_shared
def test_evaluate_classifier_support_matches_ground_truth(tiny_voc):
    from maskwatch.classifier import MaskClassifier
    from maskwatch.eval.classification import evaluate_classifier

    clf = MaskClassifier(BUNDLED)
    ds = load_source(str(tiny_voc))
    r = evaluate_classifier(clf, ds)
    gt = gt_objects(EVAL_STEMS)
    known = [lab for lab, _ in gt if lab in clf.class_names]
    rep = r["report"]
    assert rep["n"] == len(known) == sum(c["support"] for c in rep["classes"].values())
    for c in clf.class_names:
        assert rep["classes"][c]["support"] == known.count(c), c
    assert sum(v["n"] for v in r["by_size"].values()) == len(known)
    assert r["skipped"] == []
    assert 0.0 <= rep["accuracy"] <= 1.0
    assert rep["accuracy"] > 0.5  # the bundled model is far better than chance on real faces


@needs_shared
def test_evaluate_classifier_counts_unknown_classes_for_two_class_model(tiny_voc, monkeypatch):
    """A two-class model: mask_incorrect faces are reported under unknown_class, not in the report."""
    from maskwatch.classifier import MaskClassifier
    from maskwatch.eval.classification import evaluate_classifier

    clf = MaskClassifier(BUNDLED)
    full = clf.predict
    monkeypatch.setattr(clf, "class_names", ("with_mask", "without_mask"))
    monkeypatch.setattr(clf, "predict", lambda crops: full(crops)[:, :2])
    r = evaluate_classifier(clf, load_source(str(tiny_voc)))
    gt = [lab for lab, _ in gt_objects(EVAL_STEMS)]
    assert r["report"]["n"] == gt.count("with_mask") + gt.count("without_mask")
    assert sum(r["unknown_class"]["mask_incorrect"].values()) == gt.count("mask_incorrect") > 0


@needs_shared
def test_cli_evaluate_prints_json(tiny_voc, tmp_path):
    rc, out, err = run_cli(["evaluate", str(BUNDLED), str(tiny_voc), "-q", "--out", str(tmp_path / "plots")])
    assert rc == 0, err
    lines = [ln for ln in out.splitlines() if ln.strip()]
    assert len(lines) == 1
    rec = json.loads(lines[0])
    assert rec["data"] == str(tiny_voc)
    assert rec["report"]["n"] == len(gt_objects(EVAL_STEMS))
    assert set(rec) >= {"report", "by_size", "unknown_class", "skipped"}
    assert "precision" in err
    assert (tmp_path / "plots" / "voc_confusion.png").is_file()


def test_cli_evaluate_labels_faces_by_the_photo_presets_rule():
    """The classifier figures are those of the labels a user sees: the photo preset's cost rule and mirroring, not
    the raw Detector's (cost 2), unless asked."""
    from maskwatch.cli import build_parser
    from maskwatch.settings import PHOTO, SETTINGS

    assert SETTINGS["nomask_cost"].default != PHOTO["nomask_cost"]  # else this test shows nothing
    args = build_parser().parse_args(["evaluate", "mask_classifier", "somewhere"])
    assert (args.nomask_cost, args.flip) == (PHOTO["nomask_cost"], PHOTO["flip"])
    args = build_parser().parse_args(["evaluate", "mask_classifier", "somewhere", "--nomask-cost", "2", "--flip", "off"])
    assert (args.nomask_cost, args.flip) == (2.0, False)


@needs_shared
def test_cli_evaluate_bad_model_path(tiny_voc, tmp_path):
    rc, out, err = run_cli(["evaluate", str(tmp_path / "nope.onnx"), str(tiny_voc), "-q"])
    assert rc == 2 and "Traceback" not in err and "nope.onnx" in err


def test_cli_evaluate_missing_data(tmp_path):
    rc, out, err = run_cli(["evaluate", "mask_classifier", str(tmp_path / "nothing"), "-q"])
    assert rc == 2 and "Traceback" not in err and "no such folder" in err


@needs_shared
def test_cli_evaluate_errors_gallery_matches_the_confusion_matrix(tiny_voc, tmp_path):
    """--errors writes exactly the off-diagonal faces of the confusion matrix, each under TRUE_as_PREDICTED/."""
    import csv

    import cv2

    rc, out, err = run_cli(["evaluate", str(BUNDLED), str(tiny_voc), "-q", "--out", str(tmp_path), "--errors",
                            "--nomask-cost", "100"])  # a high cost forces some masked faces to be called bare
    assert rc == 0, err
    rec = json.loads(out)
    cm = np.array(rec["report"]["confusion"])
    names = rec["report"]["class_names"]
    n_wrong = int(cm.sum() - np.trace(cm))
    assert rec["errors"] == n_wrong > 0
    folder = tmp_path / "voc_errors"
    with open(folder / "errors.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == n_wrong
    for i, t in enumerate(names):
        for j, p in enumerate(names):
            files = sorted((folder / f"{t}_as_{p}").glob("*.jpg")) if i != j else []
            assert len(files) == (cm[i, j] if i != j else 0), (t, p)
    for r in rows:
        assert r["truth"] != r["predicted"]
        img = cv2.imread(str(folder / r["file"]))
        assert img.shape == (128, 256, 3)  # the classifier's view beside the surroundings
        pct = int(r["file"].split("/")[1][:3])
        assert pct == round(100 * float(r[f"p_{r['predicted']}"]))


def test_write_errors_face_crop_images_have_no_surroundings(tmp_path):
    import cv2

    from maskwatch.eval.classification import write_errors

    img = np.full((90, 90, 3), 200, np.uint8)
    cv2.imwrite(str(tmp_path / "a.png"), img)
    n = write_errors(tmp_path / "e", [(tmp_path / "a.png", np.array([10, 10, 80, 80], np.float32), True)],
                     ["with_mask"], ["without_mask"], np.array([[0.3, 0.7, 0.0]]), CLASS_NAMES, 0.2)
    assert n == 1
    (f,) = (tmp_path / "e" / "with_mask_as_without_mask").glob("*.jpg")
    assert f.name.startswith("070_a_") and cv2.imread(str(f)).shape == (128, 128, 3)


def test_cli_evaluate_errors_needs_out(tmp_path):
    rc, out, err = run_cli(["evaluate", "mask_classifier", str(tmp_path), "--errors", "-q"])
    assert rc == 2 and "--errors needs --out" in err and "Traceback" not in err


# ---------------------------------------------------------------- detection evaluation
def test_voc_ap_known_curve():
    assert voc_ap(np.array([0.2, 0.4, 0.4, 0.6]), np.array([1.0, 1.0, 0.67, 0.75])) == pytest.approx(0.55)
    assert voc_ap(np.array([0.5, 1.0]), np.array([1.0, 1.0])) == pytest.approx(1.0)
    # a false positive ranked first: precision 0, then 0.5 at full recall
    assert voc_ap(np.array([0.0, 1.0]), np.array([0.0, 0.5])) == pytest.approx(0.5)
    assert voc_ap(np.zeros(0), np.zeros(0)) == 0.0


def test_iou_matrix_values():
    a = np.array([[0, 0, 10, 10], [0, 0, 20, 20]], np.float32)
    b = np.array([[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30], [2, 2, 8, 8]], np.float32)
    m = iou_matrix(a, b)
    assert m.shape == (2, 4)
    assert m[0] == pytest.approx([1.0, 50 / 150, 0.0, 36 / 100])
    assert m[1] == pytest.approx([100 / 400, 100 / 400, 0.0, 36 / 400])
    assert iou_matrix(a, np.zeros((0, 4))).shape == (2, 0)
    assert iou_matrix(np.zeros((0, 4)), b).shape == (0, 4)


class _Oracle:
    """A 'detector' that returns the ground truth of each image (matched by its pixels) with its labels."""

    def __init__(self, ds, drop_every: int = 0) -> None:
        from maskwatch.images import load_image

        self.by_pixels = {hashlib.md5(load_image(im.path).tobytes()).hexdigest(): im for im in ds.images}
        self.drop_every = drop_every

    def detect(self, image):
        im = self.by_pixels[hashlib.md5(image.tobytes()).hexdigest()]
        keep = [i for i in range(len(im.boxes)) if not (self.drop_every and i % self.drop_every == 0)]
        n = len(keep)
        return Detections(np.array([im.boxes[i] for i in keep], np.float32).reshape(-1, 4), np.ones(n),
                          class_id=np.array([CLASS_NAMES.index(im.labels[i]) for i in keep], np.int64),
                          confidence=np.ones(n))


class _Blind:
    def detect(self, image):
        return Detections.empty()


@needs_shared
def test_evaluate_detection_oracle_and_blind(tmp_path):
    stems = ["maksssksksss0", "maksssksksss100", "maksssksksss130"]
    ds = load_source(str(copy_voc(tmp_path / "voc", stems)))
    assert len({im.path for im in ds.images}) == 3
    r = evaluate_detection(_Oracle(ds), ds)
    assert r["face_recall"] == 1.0
    assert r["ap50"] == {"with_mask": 1.0, "without_mask": 1.0, "mask_incorrect": 1.0}
    assert r["map50"] == 1.0
    gt = gt_objects(stems)
    assert r["gt_counts"] == {c: sum(1 for lab, _ in gt if lab == c) for c in CLASS_NAMES}
    assert sum(r["faces_by_size"].values()) == len(gt)
    blind = evaluate_detection(_Blind(), ds)
    assert blind["face_recall"] == 0.0
    assert all(v == 0.0 for v in blind["ap50"].values())
    half = evaluate_detection(_Oracle(ds, drop_every=2), ds)
    assert 0.0 < half["face_recall"] < 1.0


@needs_shared
def test_evaluate_detection_real_detector(tmp_path):
    from maskwatch.pipeline import Detector

    stems = ["maksssksksss0", "maksssksksss100", "maksssksksss104"]
    ds = load_source(str(copy_voc(tmp_path / "voc", stems)))
    r = evaluate_detection(Detector(det_size=800), ds)
    assert isinstance(r["ap50"], dict) and set(r["ap50"]) <= set(CLASS_NAMES) and r["ap50"]
    assert all(0.0 <= v <= 1.0 for v in r["ap50"].values())
    assert 0.0 <= r["face_recall"] <= 1.0
    assert r["face_recall"] > 0.3  # YuNet finds a good part of these faces
    assert r["skipped"] == []
    assert sum(r["faces_by_size"].values()) == len(gt_objects(stems))


# ---------------------------------------------------------------- run-time framing (detector boxes)
def test_snap_to_detections_is_one_to_one_and_needs_the_iou():
    from maskwatch.boxes import snap_to_detections

    truth = np.array([[0, 0, 10, 10], [100, 100, 120, 120], [200, 200, 210, 210]], np.float32)
    found = np.array([[1, 1, 11, 11], [0, 0, 9, 9], [104, 104, 124, 124], [300, 300, 310, 310]], np.float32)
    boxes, snapped = snap_to_detections(truth, found)
    # the first truth box takes the detection it overlaps most (IoU 0.81 beats 0.68); the second has IoU 0.47: kept
    assert snapped.tolist() == [True, False, False]
    np.testing.assert_array_equal(boxes[0], [0, 0, 9, 9])
    np.testing.assert_array_equal(boxes[1:], truth[1:])
    boxes, snapped = snap_to_detections(truth, found, iou=0.4)
    assert snapped.tolist() == [True, True, False] and boxes[1].tolist() == [104, 104, 124, 124]
    assert snap_to_detections(truth, np.zeros((0, 4)))[1].tolist() == [False] * 3
    assert snap_to_detections(np.zeros((0, 4)), found)[0].shape == (0, 4)


class _ShiftedTruth:
    """A stand-in face detector: every true box of the image, moved right by 20 % of its width."""

    def __init__(self, ds):
        self.by_shape = {}
        self.ds = ds

    def detect(self, image):
        for im in self.ds.images:
            from maskwatch.images import load_image

            if load_image(im.path).shape == image.shape:
                b = np.array(im.boxes, np.float32)
                b[:, [0, 2]] += 0.2 * (b[:, 2:3] - b[:, 0:1])
                return Detections(b, np.ones(len(b), np.float32))
        return Detections(np.zeros((0, 4), np.float32), np.zeros(0, np.float32))


@needs_shared
def test_evaluate_and_train_crops_can_use_the_detectors_framing(tiny_voc):
    from maskwatch.classifier import MaskClassifier
    from maskwatch.eval.classification import evaluate_classifier
    from maskwatch.train.cropset import build_cropset

    clf = MaskClassifier(BUNDLED)
    ds = load_source(str(tiny_voc))
    fake = _ShiftedTruth(ds)
    plain, framed = evaluate_classifier(clf, ds), evaluate_classifier(clf, ds, face_detector=fake)
    n = plain["report"]["n"]
    assert plain["snapped"] == 0 and framed["snapped"] == len(gt_objects(EVAL_STEMS))
    assert framed["report"]["n"] == n
    assert {k: v["n"] for k, v in framed["by_size"].items()} == {k: v["n"] for k, v in plain["by_size"].items()}  # true sizes

    truth_cs, _ = build_cropset(ds, 32)
    det_cs, _ = build_cropset(ds, 32, face_detector=fake)
    assert len(truth_cs) == len(det_cs) and (truth_cs.face_px == det_cs.face_px).all()
    differ = sum(truth_cs.jpegs[i] != det_cs.jpegs[i] for i in range(len(det_cs)))
    assert differ == len(det_cs)  # every crop was cut around the moved box

    from maskwatch.train.trainer import TrainConfig, _cache_key

    keys = {_cache_key(TrainConfig(data=[], out="x", scene_boxes=b), ds) for b in ("truth", "detector")}
    assert len(keys) == 2  # a detector-framed crop cache is never mistaken for a truth-framed one


@needs_shared
def test_evaluate_cli_boxes_detector(tiny_voc):
    rc, out, err = run_cli(["evaluate", str(BUNDLED), str(tiny_voc), "--boxes", "detector", "--quiet"])
    assert rc == 0, err
    r = json.loads(out.splitlines()[-1])
    assert 0 < r["snapped"] <= r["report"]["n"] + r["report"]["classes"].get("mask_incorrect", {}).get("support", 0)
    assert "cropped around the detector's box" in err


@needs_shared
def test_training_crops_can_use_the_real_detectors_framing(tiny_voc, tmp_path):
    """The default, --scene-boxes detector, frames scene faces with YuNet's matching boxes (the real detector, not
    a stand-in) and adds its boxes on no annotated face as not_face crops; 'truth' keeps the annotated boxes."""
    from maskwatch.detections import MODEL_CLASSES
    from maskwatch.train.trainer import TrainConfig, prepare_crops

    truth_cfg = TrainConfig(data=[str(tiny_voc)], out=str(tmp_path / "out"), input_size=32, scene_boxes="truth", not_face=False)
    truth_cs, _ = prepare_crops(truth_cfg, truth_cfg.data, tmp_path / "cache")
    cfg = TrainConfig(data=[str(tiny_voc)], out=str(tmp_path / "out"), input_size=32)
    assert cfg.scene_boxes == "detector" and cfg.not_face
    det_cs, _ = prepare_crops(cfg, cfg.data, tmp_path / "cache")
    assert len(list((tmp_path / "cache").glob("crops-*.npz"))) == 2
    faces = det_cs.labels != MODEL_CLASSES.index("not_face")
    assert faces.sum() == len(truth_cs) == len(gt_objects(EVAL_STEMS))
    assert (det_cs.labels[faces] == truth_cs.labels).all() and (det_cs.face_px[faces] == truth_cs.face_px).all()
    moved = sum(a != b for a, b in zip(np.array(det_cs.jpegs, object)[faces], truth_cs.jpegs))
    assert moved >= faces.sum() // 2  # YuNet finds most of these faces, and never frames them exactly as annotated
    assert (truth_cs.score == -1).all() and (det_cs.score[~faces] >= 0.5).all()  # not_face crops keep their face score


class _Shifted(_Oracle):
    """The ground truth moved right by 40 % of each box's width (IoU 0.43 with its face: framed differently)."""

    def detect(self, image):
        det = super().detect(image)
        xyxy = det.xyxy.copy()
        xyxy[:, [0, 2]] += 0.4 * (xyxy[:, 2:3] - xyxy[:, 0:1])
        probs = np.eye(len(CLASS_NAMES), dtype=np.float32)[det.class_id]
        return Detections(xyxy, det.face_score, class_id=det.class_id, confidence=det.confidence, probs=probs)


@needs_shared
def test_face_outcomes_name_the_face_a_box_lies_on_even_when_framed_differently(tmp_path):
    """face_outcomes: a box at IoU 0.3-0.5 with a face matches none (truth ""), but best_label says whose face it
    is: what operating_points.py uses to tell a bare face framed differently from a false alarm."""
    from maskwatch.eval.detection import face_outcomes

    stems = ["maksssksksss0", "maksssksksss100", "maksssksksss130"]
    ds = load_source(str(copy_voc(tmp_path / "voc", stems)))
    o = face_outcomes(_Shifted(ds), ds)
    gt = np.array([lab for im in ds.images for lab in im.labels], dtype=object)  # the oracle's boxes, in order
    assert len(o["best_label"]) == len(o["truth"]) == len(gt) > 0
    assert set(o["truth"]) == {""}
    isolated = np.isclose(o["best_iou"], 0.6 / 1.4, atol=0.02)  # faces with no neighbour overlapping the shift
    assert isolated.sum() >= len(gt) // 2
    assert list(o["best_label"][isolated]) == list(gt[isolated])


@needs_shared
def test_loose_precision_counts_a_face_framed_differently_as_right(tmp_path):
    """Every box moved off its face by 40 % of its width (IoU 0.43): none is right at IoU 0.5, nearly all are right
    loosely (a face of its label, framed another way); an oracle's boxes are right both ways."""
    stems = ["maksssksksss0", "maksssksksss100", "maksssksksss130"]
    ds = load_source(str(copy_voc(tmp_path / "voc", stems)))
    shifted = evaluate_detection(_Shifted(ds), ds)
    red = shifted["labels"]["without_mask"]
    assert red["precision"] == 0.0 and red["loose_precision"] >= 0.75
    assert shifted["false_red_loose_per_100_photos"] < shifted["false_red_per_100_photos"]
    exact = evaluate_detection(_Oracle(ds), ds)
    assert all(v["precision"] == v["loose_precision"] == 1.0 for v in exact["labels"].values())
    assert exact["false_red_loose_per_100_photos"] == exact["false_red_per_100_photos"] == 0.0


def test_bootstrap_intervals_cover_the_estimate_and_shrink_with_more_photos():
    from maskwatch.eval.detection import SHOWN_LABELS, bootstrap_intervals

    rng = np.random.default_rng(1)

    def photos(n):
        c = np.zeros((n, len(SHOWN_LABELS), 3), np.int64)
        red = SHOWN_LABELS.index("without_mask")
        c[:, red, 2] = 2                      # two bare faces a photo
        c[:, red, 0] = 2                      # two red boxes a photo
        c[:, red, 1] = rng.binomial(2, 0.8, n)  # right 80 % of the time
        return c

    small, big = photos(20), photos(2000)
    a, b = bootstrap_intervals(small, 500), bootstrap_intervals(big, 500)
    for c, iv in ((small, a), (big, b)):
        red = SHOWN_LABELS.index("without_mask")
        p = c[:, red, 1].sum() / c[:, red, 0].sum()
        lo, hi = iv["without_mask"]["precision"]
        assert lo <= p <= hi
        assert iv["without_mask"]["recall"] == iv["without_mask"]["precision"]  # shown == annotated here
        f_lo, f_hi = iv["false_red_per_100_photos"]
        assert f_lo <= 100 * (c[:, red, 0] - c[:, red, 1]).sum() / len(c) <= f_hi
    assert (b["without_mask"]["precision"][1] - b["without_mask"]["precision"][0]) < \
        (a["without_mask"]["precision"][1] - a["without_mask"]["precision"][0]) / 3
    assert a["with_mask"] == {"precision": None, "recall": None}  # nothing shown, nothing annotated
    assert bootstrap_intervals(small, 500) == a  # seeded: the same figures every run
    assert bootstrap_intervals(small, 0) == {}


@needs_shared
def test_evaluate_detection_intervals_of_an_oracle_are_exact(tmp_path):
    stems = ["maksssksksss0", "maksssksksss100", "maksssksksss130"]
    ds = load_source(str(copy_voc(tmp_path / "voc", stems)))
    iv = evaluate_detection(_Oracle(ds), ds, bootstrap=200)["intervals"]
    assert iv["with_mask"]["precision"] == [1.0, 1.0] and iv["with_mask"]["recall"] == [1.0, 1.0]
    assert iv["false_red_per_100_photos"] == [0.0, 0.0]
    half = evaluate_detection(_Oracle(ds, drop_every=2), ds, bootstrap=200)
    lo, hi = half["intervals"]["with_mask"]["recall"]
    assert lo <= half["labels"]["with_mask"]["recall"] <= hi and lo < hi


class _Mislabel(_Oracle):
    """The ground truth's boxes with every second label turned, plus one box on no face."""

    def detect(self, image):
        d = super().detect(image)
        ids = d.class_id.copy()
        ids[::2] = (ids[::2] + 1) % len(CLASS_NAMES)
        xyxy = np.vstack([d.xyxy, [[0, 0, 6, 6]]]).astype(np.float32)
        n = len(xyxy)
        return Detections(xyxy, np.ones(n), class_id=np.append(ids, CLASS_NAMES.index("without_mask")),
                          confidence=np.ones(n))


@needs_shared
def test_evaluate_detection_per_photo_counts_add_up_to_its_figures(tmp_path, monkeypatch):
    """The intervals resample per-photo counts: they must sum to the figures the run reports."""
    import maskwatch.eval.detection as detection

    stems = ["maksssksksss0", "maksssksksss100", "maksssksksss130", "maksssksksss104"]
    ds = load_source(str(copy_voc(tmp_path / "voc", stems)))
    seen = {}
    real = detection.bootstrap_intervals
    monkeypatch.setattr(detection, "bootstrap_intervals", lambda c, n: seen.setdefault("c", c) is not None and real(c, n))
    r = evaluate_detection(_Mislabel(ds), ds, bootstrap=50)
    c = seen["c"].sum(0)
    assert len(seen["c"]) == len(stems)
    for k, lab in enumerate(detection.SHOWN_LABELS):
        row = r["labels"].get(lab, {"shown": 0, "right": 0})
        assert (c[k, 0], c[k, 1]) == (row["shown"], row["right"]), lab
        assert c[k, 2] == r["gt_counts"][lab]
    red = detection.SHOWN_LABELS.index("without_mask")
    assert 100 * (c[red, 0] - c[red, 1]) / len(stems) == pytest.approx(r["false_red_per_100_photos"])
    assert r["false_red_per_100_photos"] > 0 and r["labels"]["with_mask"]["precision"] < 1
