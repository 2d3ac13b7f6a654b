"""Detections: the result type (construction, validation, indexing, labels, JSON records)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from maskwatch import CLASS_NAMES, Detections


def _labelled() -> Detections:
    xyxy = [[10, 20, 50, 70], [100.4, 100.6, 140.5, 160.49], [0, 0, 9, 9]]
    probs = [[0.9, 0.05, 0.05], [0.1, 0.7, 0.2], [0.2, 0.2, 0.6]]
    return Detections(
        xyxy,
        [0.95, 0.8, 0.55],
        class_id=[0, 1, 2],
        confidence=[0.9, 0.7, 0.6],
        probs=probs,
    )


def test_construction_normalises_dtypes_and_shapes():
    d = Detections([[1, 2, 3, 4], [5, 6, 7, 8]], [0.5, 0.75])
    assert len(d) == 2
    assert d.xyxy.dtype == np.float32 and d.xyxy.shape == (2, 4)
    assert d.face_score.dtype == np.float32 and d.face_score.shape == (2,)
    # Unclassified defaults: class -1, zero confidence, zero probs over CLASS_NAMES, tracker -1.
    assert d.class_id.tolist() == [-1, -1]
    assert d.confidence.tolist() == [0.0, 0.0]
    assert d.probs.shape == (2, len(CLASS_NAMES))
    assert not d.probs.any()
    assert d.tracker_id.tolist() == [-1, -1]
    assert d.landmarks is None
    np.testing.assert_allclose(d.width, [2, 2])
    np.testing.assert_allclose(d.height, [2, 2])


def test_flat_box_list_is_reshaped():
    d = Detections(np.arange(8), [1, 1])
    assert d.xyxy.shape == (2, 4)
    assert d.xyxy[1].tolist() == [4, 5, 6, 7]


@pytest.mark.parametrize("column", ["face_score", "class_id", "confidence", "tracker_id"])
def test_column_length_mismatch_raises_helpful_value_error(column):
    kwargs = {"face_score": [0.9, 0.8]}
    kwargs[column] = [1, 2, 3]  # three rows for two boxes
    with pytest.raises(ValueError) as e:
        Detections([[0, 0, 10, 10], [5, 5, 20, 20]], **kwargs)
    msg = str(e.value)
    assert column in msg
    assert "3" in msg and "2" in msg
    assert "one row per face" in msg


def test_probs_with_wrong_number_of_columns_raises_helpful_error():
    with pytest.raises(ValueError) as e:
        Detections([[0, 0, 10, 10]], [0.9], probs=[[0.5, 0.5]])  # 2 columns, 3 class names
    msg = str(e.value)
    assert "probs" in msg and "class_names" in msg, msg  # not numpy's bare "cannot reshape array ..."


def test_probs_with_wrong_number_of_rows_raises_helpful_error():
    with pytest.raises(ValueError) as e:
        Detections([[0, 0, 10, 10], [5, 5, 20, 20]], [0.9, 0.8], probs=np.full((3, 3), 1 / 3))  # 3 rows for 2 boxes
    msg = str(e.value)
    assert "probs" in msg and "row" in msg, msg  # names the column and the row mismatch


def test_empty():
    d = Detections.empty()
    assert len(d) == 0
    assert d.xyxy.shape == (0, 4)
    assert d.probs.shape == (0, len(CLASS_NAMES))
    assert d.labels == []
    assert d.to_records() == []
    assert list(d) == []
    two = Detections.empty(("with_mask", "without_mask"))
    assert two.class_names == ("with_mask", "without_mask")
    assert two.probs.shape == (0, 2)


def test_boolean_mask_indexing():
    d = _labelled()
    sub = d[d.face_score > 0.7]
    assert isinstance(sub, Detections)
    assert len(sub) == 2
    np.testing.assert_allclose(sub.face_score, [0.95, 0.8])
    assert sub.labels == ["with_mask", "without_mask"]
    np.testing.assert_allclose(sub.probs[1], [0.1, 0.7, 0.2])
    none = d[np.zeros(3, bool)]
    assert len(none) == 0 and none.probs.shape == (0, 3)
    assert len(d) == 3  # the original is untouched


def test_int_indexing_and_iteration():
    d = _labelled()
    one = d[1]
    assert isinstance(one, Detections)
    assert len(one) == 1
    np.testing.assert_allclose(one.xyxy[0], [100.4, 100.6, 140.5, 160.49], rtol=1e-6)
    assert one.labels == ["without_mask"]
    last = d[np.int64(-1)]
    assert last.labels == ["mask_incorrect"]
    assert [x.labels[0] for x in d] == ["with_mask", "without_mask", "mask_incorrect"]
    arr = d[np.array([2, 0])]
    assert arr.labels == ["mask_incorrect", "with_mask"]


def test_indexing_keeps_landmarks_and_tracker_ids():
    lm = np.arange(2 * 5 * 2, dtype=np.float32).reshape(2, 5, 2)
    d = Detections([[0, 0, 10, 10], [5, 5, 20, 20]], [0.9, 0.8], tracker_id=[7, 8], landmarks=lm)
    sub = d[1]
    assert sub.tracker_id.tolist() == [8]
    np.testing.assert_array_equal(sub.landmarks[0], lm[1])


def test_labels():
    d = _labelled()
    assert d.labels == ["with_mask", "without_mask", "mask_incorrect"]
    unclassified = Detections([[0, 0, 10, 10]], [0.9])
    assert unclassified.labels == [""]
    two = Detections([[0, 0, 10, 10]], [0.9], class_id=[1], probs=[[0.2, 0.8]], confidence=[0.8],
                     class_names=("with_mask", "without_mask"))
    assert two.labels == ["without_mask"]


def test_to_records_exact_keys_and_types():
    recs = _labelled().to_records()
    assert len(recs) == 3
    for r in recs:
        assert set(r) == {"box", "face_score", "label", "confidence", "probs"}
        assert isinstance(r["box"], list) and len(r["box"]) == 4
        assert all(type(v) is int for v in r["box"])
        assert type(r["face_score"]) is float
        assert type(r["label"]) is str and r["label"] in CLASS_NAMES
        assert type(r["confidence"]) is float
        assert isinstance(r["probs"], dict) and list(r["probs"]) == list(CLASS_NAMES)
        assert all(type(v) is float for v in r["probs"].values())
    assert recs[0]["box"] == [10, 20, 50, 70]
    assert recs[1]["box"] == [100, 101, 140, 160]  # rounded to the nearest pixel
    assert recs[0]["face_score"] == pytest.approx(0.95, abs=1e-4)
    assert recs[1]["label"] == "without_mask"
    assert recs[1]["confidence"] == pytest.approx(0.7, abs=1e-4)
    assert recs[2]["probs"] == pytest.approx({"with_mask": 0.2, "without_mask": 0.2, "mask_incorrect": 0.6}, abs=1e-4)
    json.dumps(recs)  # plain JSON types only


def test_to_records_unclassified_and_tracked():
    d = Detections([[0, 0, 10, 10]], [0.9], tracker_id=[3])
    (r,) = d.to_records()
    assert set(r) == {"box", "face_score", "track_id"}  # no label/confidence/probs when not classified
    assert r["track_id"] == 3 and type(r["track_id"]) is int


def test_share_masked_counts_only_the_faces_it_is_sure_of():
    from maskwatch.detections import share_masked

    assert share_masked({"with_mask": 217, "without_mask": 117, "mask_incorrect": 1, "uncertain": 169}) == 217 / 335
    assert share_masked({"uncertain": 4}) is None and share_masked({}) is None
