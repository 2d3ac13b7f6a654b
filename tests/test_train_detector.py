"""Fine-tuning the face detector: YuNet's graph runs in PyTorch as in onnxruntime, one tiny epoch trains, exports and
detects, a run resumes, and the CLI refuses to overwrite an earlier run."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import MODELS, VOC, copy_voc, needs_shared

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")

from maskwatch.detectors import create_face_detector  # noqa: E402
from maskwatch.images import load_image  # noqa: E402
from maskwatch.train.detector import DetectorTrainConfig, random_view, simota, train_detector  # noqa: E402
from maskwatch.train.onnx_net import OnnxNet, write_weights  # noqa: E402

pytestmark = needs_shared
YUNET = MODELS / "face_detection_yunet.onnx"


def test_torch_graph_matches_onnxruntime_and_writes_back() -> None:
    import onnxruntime as ort

    model = onnx.load(str(YUNET))
    net = OnnxNet(model)
    x = np.random.default_rng(0).uniform(0, 255, (1, 3, 96, 128)).astype(np.float32)
    ref = ort.InferenceSession(model.SerializeToString()).run(None, {"input": x})
    with torch.no_grad():
        got = net(torch.from_numpy(x))
    for name, r in zip(net.output_names, ref):
        np.testing.assert_allclose(got[name].numpy(), r, atol=1e-4)
    with torch.no_grad():
        next(iter(net.params.values())).mul_(0.5)
    out = write_weights(net, model)
    assert [n.op_type for n in out.graph.node] == [n.op_type for n in model.graph.node]
    changed = ort.InferenceSession(out.SerializeToString()).run(None, {"input": x})
    assert not np.allclose(changed[0], ref[0])


def test_views_keep_boxes_on_the_faces() -> None:
    img = np.zeros((400, 600, 3), np.uint8)
    img[100:160, 200:250] = 255  # a white "face"
    cfg = DetectorTrainConfig(crop=256, min_side=300, max_side=900)
    rng = np.random.default_rng(1)
    seen = 0
    for _ in range(40):
        view, keep, ignore, kept = random_view(img, np.array([[200, 100, 250, 160]], np.float32), cfg, rng)
        assert list(kept) == ([0] if len(keep) else [])
        assert view.shape == (256, 256, 3)
        for x1, y1, x2, y2 in keep:
            seen += 1
            inner = view[int(y1) + 2 : int(y2) - 2, int(x1) + 2 : int(x2) - 2].astype(np.float32)
            assert inner.mean() > 150  # the box still lies on the white patch (after scale, crop and flip)
    assert seen > 5


def test_simota_gives_each_face_positives_near_its_centre() -> None:
    from maskwatch.train.detector import _points

    pts, strides = _points(128)
    gt = torch.tensor([[40.0, 40.0, 72.0, 80.0]])
    boxes = torch.cat([pts - 16, pts + 16], 1)  # every point predicts a 32x32 box around itself
    p, g, iou = simota(torch.full((len(pts),), 0.5), boxes, gt, pts, strides)
    assert len(p) >= 1 and (g == 0).all() and (iou > 0.3).all()
    centre = (pts[p] - torch.tensor([56.0, 60.0])).abs()
    assert (centre <= 2.5 * strides[p, None]).all()


@pytest.mark.slow
def test_one_tiny_epoch_trains_exports_detects_and_resumes(tmp_path: Path) -> None:
    data = copy_voc(tmp_path / "train", ["maksssksksss0", "maksssksksss10", "maksssksksss100", "maksssksksss102"])
    val = copy_voc(tmp_path / "val", ["maksssksksss104", "maksssksksss106"])
    cfg = DetectorTrainConfig(data=[str(data)], val=[str(val)], out=str(tmp_path / "run"), base=str(YUNET), epochs=2,
                              batch=2, crop=320, min_side=400, max_side=800, val_det_size=640, lr=1e-4)

    def stop_after_first(row: dict) -> None:
        if row["epoch"] == 1:
            raise KeyboardInterrupt  # as if the run were stopped after its first epoch

    with pytest.raises(KeyboardInterrupt):
        train_detector(cfg, on_epoch=stop_after_first)
    res = train_detector(cfg, resume=True)
    assert [h["epoch"] for h in res["history"]] == [0, 1, 2] and res["train_photos"] == 4
    model = tmp_path / "run" / "face_detector.onnx"
    assert model.is_file() and (tmp_path / "run" / "last.pt").is_file()
    fd = create_face_detector(str(model), det_size=800)
    faces = fd.detect(load_image(VOC / "images" / "maksssksksss0.jpg"))
    assert len(faces) >= 2  # a lightly tuned YuNet still finds the faces of a real photo
    with pytest.raises(Exception, match="other settings \\(epochs 2 then, 3 now\\)"):  # it named none
        train_detector(DetectorTrainConfig(**{**cfg.__dict__, "epochs": 3}), resume=True)
    import os  # the same run, its folder spelt another way and other threads: resumes (it was refused)

    again = train_detector(DetectorTrainConfig(**{**cfg.__dict__, "out": os.path.relpath(tmp_path / "run"), "threads": 1}),
                           resume=True)
    assert [h["epoch"] for h in again["history"]] == [0, 1, 2]
    cli = [sys.executable, "-m", "maskwatch.cli", "train-detector", str(data), "--out", str(tmp_path / "run"), "-q"]
    r = subprocess.run(cli, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "--resume" in r.stderr and "--force" in r.stderr


def test_data_without_face_boxes_is_refused_clearly(tmp_path: Path) -> None:
    (tmp_path / "faces" / "with_mask").mkdir(parents=True)
    shutil.copy(VOC / "images" / "maksssksksss0.jpg", tmp_path / "faces" / "with_mask" / "a.jpg")
    with pytest.raises(Exception, match="no photo with face boxes"):
        train_detector(DetectorTrainConfig(data=[str(tmp_path / "faces")], out=str(tmp_path / "run"), base=str(YUNET)))
