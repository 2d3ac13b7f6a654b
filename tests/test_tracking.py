"""Tracker: stable ids, smoothed labels, people counts. Synthetic detections, no model needed."""

from __future__ import annotations

import numpy as np
import pytest

from maskwatch.detections import Detections
from maskwatch.tracking import Tracker

NAMES = ("with_mask", "without_mask", "mask_incorrect")
MASK, BARE = [0.95, 0.04, 0.01], [0.03, 0.96, 0.01]


def dets(boxes, probs) -> Detections:
    p = np.array(probs, np.float32).reshape(-1, 3)
    return Detections(np.array(boxes, np.float32).reshape(-1, 4), np.full(len(p), 0.9), probs=p,
                      class_id=p.argmax(1), confidence=p.max(1), class_names=NAMES)


def test_ids_stay_with_moving_faces():
    tr = Tracker()
    ids = []
    for i in range(30):
        out = tr.update(dets([[10 + 8 * i, 100, 60 + 8 * i, 160], [500, 50 + 2 * i, 560, 120 + 2 * i]], [BARE, MASK]), t=i / 10)
        ids.append(out.tracker_id.tolist())
    assert all(x == ids[0] for x in ids)
    assert ids[0][0] != ids[0][1]


def test_small_fast_face_without_overlap_keeps_its_id():
    """A 12 px face moving 10 px a frame: consecutive boxes barely overlap; the centre-distance fallback holds it."""
    tr = Tracker()
    ids = {int(tr.update(dets([[10 + 10 * i, 100, 22 + 10 * i, 112]], [BARE]), t=i).tracker_id[0]) for i in range(15)}
    assert ids == {1}


def test_one_bad_frame_does_not_flip_the_smoothed_label():
    tr = Tracker(window=10)
    labels = []
    for i in range(20):
        p = MASK if i == 10 else BARE  # one blurred frame reads as masked
        out = tr.update(dets([[100, 100, 160, 170]], [p]), t=i)
        labels.append(out.labels[0])
        assert out.data["raw_probs"][0].argmax() == (0 if i == 10 else 1)
    assert labels == ["without_mask"] * 20


def test_a_real_change_does_win_after_the_window():
    tr = Tracker(window=6)
    labels = [tr.update(dets([[100, 100, 160, 170]], [BARE if i < 10 else MASK]), t=i).labels[0] for i in range(20)]
    assert labels[:10] == ["without_mask"] * 10
    assert labels[-1] == "with_mask"
    assert labels.count("with_mask") < 10  # it took a few frames to change


def test_lost_track_expires_and_a_new_face_gets_a_new_id():
    tr = Tracker(max_missed=3)
    first = tr.update(dets([[100, 100, 160, 170]], [BARE]), t=0).tracker_id[0]
    for i in range(1, 6):
        tr.update(Detections.empty(NAMES), t=i)
    assert tr.tracks == []
    again = tr.update(dets([[100, 100, 160, 170]], [BARE]), t=6).tracker_id[0]
    assert again != first


def test_counts_people_not_frames():
    tr = Tracker(min_hits=3)
    for i in range(10):
        tr.update(dets([[10, 10, 60, 70], [300, 10, 350, 70]], [BARE, MASK]), t=i)
    tr.update(dets([[600, 300, 640, 350]], [MASK]), t=11)  # one frame only: not a person yet
    assert tr.counts() == {"with_mask": 1, "without_mask": 1, "mask_incorrect": 0, "uncertain": 0}


def test_months_of_people_keep_the_counts_but_not_the_memory():
    """Each person who has left is counted and forgotten: the tracker's memory stays that of the faces in view."""
    tr = Tracker(min_hits=3, max_missed=2)
    for person in range(300):
        x = 20 + 2 * (person % 50)
        for k in range(4):
            tr.update(dets([[x, 10, x + 50, 70]], [BARE if person % 3 else MASK]), t=10 * person + k)
        for k in range(4):
            tr.update(Detections.empty(NAMES), t=10 * person + 4 + k)
    assert tr.counts() == {"with_mask": 100, "without_mask": 200, "mask_incorrect": 0, "uncertain": 0}
    assert tr.tracks == [] and len(tr.seen) == 0


def test_empty_frames_give_empty_detections():
    out = Tracker().update(Detections.empty(NAMES), t=0)
    assert len(out) == 0 and out.class_names == NAMES


def test_the_classifier_decision_rule_applies_to_smoothed_labels():
    """With a cost of 2 on without_mask, a face at 40 % bare / 60 % masked is called without_mask."""
    costs = np.array([1.0, 2.0, 1.0])
    tr = Tracker(decide=lambda p, s=None: (p * costs).argmax(1))
    out = tr.update(dets([[100, 100, 160, 170]], [[0.6, 0.4, 0.0]]), t=0)
    assert out.labels == ["without_mask"] and out.confidence[0] == pytest.approx(0.4)
    assert Tracker().update(dets([[100, 100, 160, 170]], [[0.6, 0.4, 0.0]]), t=0).labels == ["with_mask"]
