"""The operating point: uncertain faces (grey '?', no event) and not_face boxes (removed), on the real models."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from conftest import needs_shared

import maskwatch
from maskwatch.annotate import COLOURS, BoxAnnotator
from maskwatch.classifier import MaskClassifier
from maskwatch.detections import MODEL_CLASSES, NOT_FACE, UNCERTAIN, UNCERTAIN_ID, Detections
from maskwatch.monitor import Monitor
from maskwatch.tracking import Tracker

pytestmark = needs_shared


def _fixed(clf: MaskClassifier, probs: np.ndarray, names: tuple[str, ...] = MODEL_CLASSES) -> MaskClassifier:
    """The real classifier, answering ``probs`` (one row per face, cycled) instead of running the network."""
    clf.class_names = names
    clf.predict = lambda crops: np.resize(np.asarray(probs, np.float32), (len(crops), len(names)))  # type: ignore[method-assign]
    return clf


def test_decide_marks_faces_below_their_threshold_uncertain():
    clf = MaskClassifier(nomask_cost=1.0, sure={"with_mask": 0.7, "without_mask": 0.9}, sure_face_score=0.6)
    names = clf.class_names
    p = np.zeros((5, len(names)), np.float32)
    p[0, names.index("without_mask")] = 0.95  # sure bare
    p[1, names.index("without_mask")] = 0.85  # bare, but not sure enough for red
    p[2, names.index("with_mask")] = 0.75  # sure mask
    p[3, names.index("with_mask")] = 0.95  # sure mask, but a low face score
    p[4, names.index("with_mask")] = 0.65  # mask below its threshold
    p[p.sum(1) < 1, names.index("mask_incorrect")] += 1 - p[p.sum(1) < 1].sum(1)  # rows sum to 1
    ids = clf.decide(p, np.array([0.9, 0.9, 0.9, 0.5, 0.9]))
    assert ids.tolist() == [names.index("without_mask"), UNCERTAIN_ID, names.index("with_mask"), UNCERTAIN_ID, UNCERTAIN_ID]
    assert MaskClassifier().decide(p).min() >= 0  # no thresholds: never uncertain
    conf = clf.confidence(p, ids)
    np.testing.assert_allclose(conf, [0.95, 0.85, 0.75, 0.95, 0.65], atol=1e-6)
    with pytest.raises(maskwatch.InputError, match="between 0 and 1"):
        MaskClassifier(sure={"without_mask": 1.5})


def test_shown_confidence_is_never_below_the_threshold(voc_image):
    """A red box's confidence is P(without_mask) itself, at least sure_nomask: 'No Mask 26 %' cannot happen."""
    img = maskwatch.load_image(voc_image)
    d = maskwatch.Detector(det_size=800, sure_nomask=0.8, sure_mask=0.6, nomask_cost=2.0).detect(img)
    assert len(d) >= 3
    for i, lab in enumerate(d.labels):
        if lab == "without_mask":
            assert d.confidence[i] >= 0.8
            assert d.confidence[i] == pytest.approx(d.probs[i, d.class_names.index("without_mask")])
        elif lab == "with_mask":
            assert d.confidence[i] >= 0.6


def test_uncertain_faces_in_json_and_drawing(voc_image):
    img = maskwatch.load_image(voc_image)
    d = maskwatch.Detector(det_size=800, nomask_cost=1.0, sure_mask=0.99, sure_nomask=0.99, sure_incorrect=0.99).detect(img)
    assert len(d) >= 3
    assert d.labels == [UNCERTAIN if p.max() < 0.99 else d.class_names[int(p.argmax())] for p in d.probs]
    k = d.labels.index(UNCERTAIN)
    rec = d.to_records()[k]
    assert rec["label"] == "uncertain" and set(rec["probs"]) == set(d.class_names)
    assert rec["confidence"] == pytest.approx(max(rec["probs"].values()), abs=1e-4)
    json.dumps(rec)


def test_not_face_boxes_are_removed_unless_kept(voc_image):
    img = maskwatch.load_image(voc_image)
    p = np.zeros((2, 4), np.float32)
    p[0, MODEL_CLASSES.index(NOT_FACE)] = 0.9
    p[1, MODEL_CLASSES.index("without_mask")] = 0.9
    p[:, MODEL_CLASSES.index("with_mask")] += 0.1
    full = maskwatch.Detector(det_size=800, classifier=_fixed(MaskClassifier(nomask_cost=1.0), p), keep_not_face=True).detect(img)
    assert len(full) >= 3 and full.labels[:2] == [NOT_FACE, "without_mask"]
    shown = maskwatch.Detector(det_size=800, classifier=_fixed(MaskClassifier(nomask_cost=1.0), p)).detect(img)
    assert NOT_FACE not in shown.labels
    assert len(shown) == sum(lab != NOT_FACE for lab in full.labels)
    np.testing.assert_array_equal(shown.xyxy, full.xyxy[np.array(full.labels) != NOT_FACE])
    assert shown.class_names == MODEL_CLASSES  # the JSON keeps P(not_face) beside the others
    assert "not_face" in shown.to_records()[0]["probs"]


def test_monitor_raises_no_event_for_an_uncertain_track():
    """A face that reads bare at 0.6 for many frames: red without thresholds, uncertain with sure_nomask 0.8."""
    frame = np.full((480, 640, 3), 127, np.uint8)
    face = Detections([[200, 150, 280, 250]], [0.95])

    class _Fixed:
        def __init__(self, clf: MaskClassifier) -> None:
            self.classifier = clf

        def detect(self, image: np.ndarray) -> Detections:
            probs = np.array([[0.4, 0.6, 0.0]], np.float32)
            ids = self.classifier.decide(probs, face.face_score)
            return Detections(face.xyxy, face.face_score, class_id=ids, confidence=self.classifier.confidence(probs, ids),
                              probs=probs, class_names=("with_mask", "without_mask", "mask_incorrect"))

    loose = MaskClassifier(nomask_cost=1.0)
    strict = MaskClassifier(nomask_cost=1.0, sure={"without_mask": 0.8})
    for clf, events in ((loose, 1), (strict, 0)):
        clf.class_names = ("with_mask", "without_mask", "mask_incorrect")
        mon = Monitor(_Fixed(clf), confirm_frames=3)  # type: ignore[arg-type]
        for k in range(10):
            dets = mon.process(frame, t=k / 10)
        assert len(mon.events) == events
        assert dets.labels == (["without_mask"] if events else [UNCERTAIN])


def test_tracker_counts_uncertain_people():
    tr = Tracker(decide=lambda p, s=None: np.full(len(p), UNCERTAIN_ID), min_hits=1)
    d = Detections([[10, 10, 50, 50]], [0.9], probs=[[0.5, 0.5, 0.0]])
    out = tr.update(d, 0.0)
    assert out.labels == [UNCERTAIN] and tr.counts().get(UNCERTAIN) == 1


def test_masked_face_cut_by_the_frame_edge_raises_no_event():
    """A face whose box runs off the frame reads bare (half a mask is no mask to the classifier): no event until
    the whole face is in the frame and still reads bare for confirm_frames frames."""
    frame = np.full((480, 640, 3), 127, np.uint8)
    names = ("with_mask", "without_mask", "mask_incorrect")

    class _Walk:
        """A bare-reading face entering from the left edge, then fully in view."""

        def __init__(self) -> None:
            self.classifier = MaskClassifier(nomask_cost=1.0)
            self.classifier.class_names = names
            self.k = 0

        def detect(self, image: np.ndarray) -> Detections:
            x1 = -40 + 8 * self.k
            self.k += 1
            return Detections([[x1, 100, x1 + 80, 200]], [0.9], class_id=[1], confidence=[0.95],
                              probs=[[0.05, 0.95, 0.0]], class_names=names)

    walk = _Walk()
    mon = Monitor(walk, confirm_frames=3)  # type: ignore[arg-type]
    for k in range(5):  # x1 = -40 ... -8: cut by the left edge
        mon.process(frame, t=k / 10)
    assert list(mon.events) == [] and mon.n_events == 0
    for k in range(5, 12):
        mon.process(frame, t=k / 10)
    assert len(mon.events) == 1
    assert mon.events[0].box[0] >= 0


def test_drawn_uncertain_box_is_thin(voc_image):
    img = np.full((200, 200, 3), 255, np.uint8)
    d = Detections([[50, 50, 150, 150]], [0.9], class_id=[UNCERTAIN_ID], confidence=[0.5], probs=[[0.5, 0.5, 0.0]])
    out = BoxAnnotator(thickness=4).annotate(img, d)
    grey = np.array(COLOURS[UNCERTAIN], np.uint8)
    assert (out[100, 50] == grey).all() and (out[100, 52] == 255).all()
    sure = Detections([[50, 50, 150, 150]], [0.9], class_id=[1], confidence=[0.9], probs=[[0.1, 0.9, 0.0]])
    out2 = BoxAnnotator(thickness=4).annotate(img, sure)
    assert (out2[100, 51] == np.array(COLOURS["without_mask"], np.uint8)).all()
    assert cv2.countNonZero(cv2.cvtColor(np.abs(out2.astype(int) - out.astype(int)).astype(np.uint8), cv2.COLOR_BGR2GRAY)) > 0


def test_not_face_is_a_gate_with_its_own_threshold():
    """A box is not_face only when P(not_face) reaches the threshold; else it gets the best face class, even when
    not_face is the single most likely class (a face the model half-doubts is not thrown away)."""
    p = np.array([[0.35, 0.20, 0.0, 0.45], [0.30, 0.10, 0.0, 0.60], [0.10, 0.85, 0.0, 0.05]], np.float32)
    clf = _fixed(MaskClassifier(nomask_cost=1.0, not_face_threshold=0.5), p)
    assert [clf.class_names[i] for i in clf.decide(p)] == ["with_mask", NOT_FACE, "without_mask"]
    clf.not_face_threshold = 0.7
    assert [clf.class_names[i] for i in clf.decide(p)] == ["with_mask", "with_mask", "without_mask"]
    clf.sure = {"with_mask": 0.5}
    assert clf.decide(p).tolist()[:2] == [UNCERTAIN_ID, UNCERTAIN_ID]  # P(with_mask) 0.35 / 0.30: not sure
    with pytest.raises(maskwatch.InputError, match="not_face_threshold"):
        MaskClassifier(not_face_threshold=0.0)
