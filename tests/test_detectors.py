"""Face detectors: empty on blank images, real faces found on a real photo, back-ends agree, settings checked."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import needs_shared

import maskwatch
from maskwatch import Detections, InputError
from maskwatch.boxes import iou_matrix
from maskwatch.cli import main
from maskwatch.detectors import FACE_DETECTORS, create_face_detector


def _voc_boxes(image: Path) -> np.ndarray:
    xml = image.parent.parent / "annotations" / (image.stem + ".xml")
    root = ET.parse(xml).getroot()
    boxes = [[float(o.find("bndbox").find(k).text) for k in ("xmin", "ymin", "xmax", "ymax")] for o in root.iter("object")]
    return np.array(boxes, np.float32)


@pytest.mark.parametrize("name", [pytest.param("yunet", marks=needs_shared), pytest.param("ssd", marks=needs_shared), "haar"])
def test_blank_image_gives_empty_detections(name, blank):
    fd = create_face_detector(name)
    d = fd.detect(blank)
    assert isinstance(d, Detections)
    assert len(d) == 0
    assert d.xyxy.shape == (0, 4)


@needs_shared
def test_yunet_finds_ground_truth_faces(voc_image):
    gt = _voc_boxes(voc_image)
    assert len(gt) == 3
    img = maskwatch.load_image(voc_image)
    d = create_face_detector("yunet", det_size=800).detect(img)
    assert len(d) >= 3
    iou = iou_matrix(gt, d.xyxy)
    matched = int((iou.max(axis=1) >= 0.4).sum())
    assert matched >= 3, f"only {matched} of {len(gt)} faces found; IoU per face {iou.max(axis=1)}"
    assert (d.face_score >= 0.5).all() and (d.face_score <= 1.0).all()
    assert d.landmarks is not None and d.landmarks.shape == (len(d), 5, 2)


@needs_shared
def test_yunet_backends_agree(voc_image):
    img = maskwatch.load_image(voc_image)
    a = create_face_detector("yunet", backend="onnxruntime", det_size=800).detect(img)
    b = create_face_detector("yunet", backend="opencv", det_size=800).detect(img)
    assert len(a) >= 3
    assert len(a) == len(b)
    order_a, order_b = np.argsort(a.xyxy[:, 0]), np.argsort(b.xyxy[:, 0])
    np.testing.assert_allclose(a.xyxy[order_a], b.xyxy[order_b], atol=1.0)
    np.testing.assert_allclose(a.face_score[order_a], b.face_score[order_b], atol=0.01)


@needs_shared
def test_yunet_unknown_backend():
    with pytest.raises(maskwatch.ModelError, match="backend"):
        create_face_detector("yunet", backend="tensorrt")


@pytest.mark.parametrize(
    ("kwargs", "setting"),
    [
        ({"score_threshold": 1.5}, "score_threshold"),
        ({"score_threshold": -0.1}, "score_threshold"),
        ({"det_size": 10}, "det_size"),
        ({"nms_threshold": 0.0}, "nms_threshold"),
        ({"upscale": 10.0}, "upscale"),
    ],
)
def test_invalid_settings_raise_input_error(kwargs, setting):
    with pytest.raises(InputError) as e:
        create_face_detector("haar", **kwargs)
    msg = str(e.value)
    assert setting in msg
    assert str(next(iter(kwargs.values()))) in msg
    assert "valid" in msg


@needs_shared
@pytest.mark.parametrize(("kwargs", "setting"), [({"score_threshold": 1.5}, "score_threshold"), ({"det_size": 10}, "det_size")])
def test_invalid_settings_through_detect(kwargs, setting, blank):
    with pytest.raises(InputError, match=setting):
        maskwatch.detect(blank, **kwargs)


def test_unknown_detector_name():
    with pytest.raises(InputError) as e:
        create_face_detector("retinaface")
    msg = str(e.value)
    assert "retinaface" in msg
    for known in FACE_DETECTORS:
        assert known in msg


def test_unknown_detector_name_in_detector():
    with pytest.raises(InputError, match="retinaface"):
        maskwatch.Detector(face_detector="retinaface")


@pytest.mark.parametrize(("args", "setting"), [(["--score-threshold", "1.5"], "score_threshold"), (["--det-size", "10"], "det_size")])
def test_invalid_settings_in_cli(tmp_path, capsys, args, setting):
    img = tmp_path / "x.png"
    cv2.imwrite(str(img), np.full((64, 64, 3), 127, np.uint8))
    rc = main(["detect", str(img), "--face-detector", "haar", *args])
    err = capsys.readouterr().err
    assert rc != 0
    assert setting in err
    assert "Traceback" not in err


def test_non_bgr_input_raises(blank):
    fd = create_face_detector("haar")
    with pytest.raises(InputError, match="BGR uint8"):
        fd.detect(blank[:, :, 0])
    with pytest.raises(InputError, match="BGR uint8"):
        fd.detect(blank.astype(np.float32))


@needs_shared
def test_det_size_maps_boxes_back_to_original_coordinates(voc_image):
    img = maskwatch.load_image(voc_image)  # 512 x 366
    h, w = img.shape[:2]
    ref = create_face_detector("yunet", det_size=0).detect(img)
    assert len(ref) >= 3
    # The same pixels shown to the network, but the caller's image is twice as big: boxes must double.
    big = cv2.resize(img, (w * 2, h * 2), interpolation=cv2.INTER_LINEAR)
    fd = create_face_detector("yunet", det_size=max(w, h))
    assert fd.scales_for(w * 2, h * 2) == [pytest.approx(0.5)]
    scaled = fd.detect(big)
    assert len(scaled) >= len(ref) - 1
    iou = iou_matrix(ref.xyxy * 2, scaled.xyxy)
    assert (iou.max(axis=1) >= 0.7).sum() >= 3, iou
    # Upscaled detection: boxes still within the original image and near the reference faces.
    for kwargs in ({"det_size": 1600}, {"upscale": 2.0}, {"det_size": 256}):
        d = create_face_detector("yunet", **kwargs).detect(img)
        assert len(d) >= 1, kwargs
        assert (d.xyxy[:, [0, 2]] >= 0).all() and (d.xyxy[:, [0, 2]] <= w).all(), kwargs
        assert (d.xyxy[:, [1, 3]] >= 0).all() and (d.xyxy[:, [1, 3]] <= h).all(), kwargs
        assert (d.xyxy[:, 2] > d.xyxy[:, 0]).all() and (d.xyxy[:, 3] > d.xyxy[:, 1]).all()
        best = iou_matrix(d.xyxy, ref.xyxy).max(axis=1)
        assert (best >= 0.4).sum() >= 1, (kwargs, best)


@needs_shared
def test_boxes_clipped_for_face_at_the_edge(voc_image):
    img = maskwatch.load_image(voc_image)
    ref = create_face_detector("yunet", det_size=800).detect(img)
    x1, y1, x2, y2 = ref.xyxy[np.argmax(ref.xyxy[:, 2] - ref.xyxy[:, 0])].astype(int)
    cut = np.ascontiguousarray(img[:, x1 + (x2 - x1) // 3 :])  # the face is cut by the left border
    d = create_face_detector("yunet", det_size=800, score_threshold=0.3).detect(cut)
    assert (d.xyxy >= 0).all()
    assert (d.xyxy[:, [0, 2]] <= cut.shape[1]).all() and (d.xyxy[:, [1, 3]] <= cut.shape[0]).all()


def test_two_pass_detection_merges_without_duplicates(voc_image):
    """det_size (800, 1600): every face of the 800 pass is kept, more small ones are found, none twice."""
    from maskwatch.boxes import iou_matrix

    img = maskwatch.load_image(voc_image)
    one = create_face_detector("yunet", det_size=800).detect(img)
    two = create_face_detector("yunet", det_size=(800, 1600)).detect(img)
    assert len(two) >= len(one) >= 3
    assert (iou_matrix(one.xyxy, two.xyxy).max(1) > 0.5).all()  # nothing the single pass found is lost
    iou = iou_matrix(two.xyxy, two.xyxy)
    np.fill_diagonal(iou, 0)
    assert iou.max() <= 0.3  # merged by NMS: no face twice


@needs_shared
def test_a_pass_that_finds_nothing_keeps_the_other_passes_landmarks(voc_image):
    import maskwatch
    from maskwatch.detectors import create_face_detector

    img = maskwatch.load_image(voc_image)
    one = create_face_detector("yunet", det_size=800).detect(img)
    both = create_face_detector("yunet", det_size=(800, 64)).detect(img)  # at 64 px nothing is found
    assert len(one) >= 3 and one.landmarks is not None
    assert both.landmarks is not None and len(both) == len(one)
    np.testing.assert_allclose(both.landmarks, one.landmarks, atol=1e-3)


def test_shipped_tuned_detector_finds_the_faces_of_a_real_photo_where_expected(voc_image):
    """The bundled yunet_masks detector (MODEL_CARD.md) on maksssksksss0.jpg at the photo size: the three annotated
    faces (two bare, one masked), each box within 3 px of the boxes it gave when it was shipped."""
    from maskwatch import load_image
    from maskwatch.detectors import create_face_detector
    from maskwatch.models import REGISTRY, resolve, sha256_of
    from maskwatch.settings import PHOTO

    path = resolve("yunet_masks")
    assert path.parent.name == "assets" and sha256_of(path) in REGISTRY["yunet_masks"].sha256
    assert path.stat().st_size < 10 * 2**20
    fd = create_face_detector(PHOTO["face_detector"], det_size=PHOTO["det_size"])
    found = fd.detect(load_image(voc_image))
    expected = np.array([[319, 87, 360, 139], [183, 99, 228, 144], [78, 104, 109, 141]], np.float32)
    assert len(found) == 3 and (found.face_score > 0.9).all()
    order = np.argsort(-found.xyxy[:, 0])
    np.testing.assert_allclose(found.xyxy[order], expected, atol=3)
