"""Training: end to end on a tiny data set, resume/force, bad input, class names, splits, crops, augmentation.

Kept fast: ~40 face images, input 32 px, 1 head epoch + 1 fine-tune epoch, no worker processes. One
module-scoped training run is shared by the tests that inspect its output.
"""

from __future__ import annotations

import json
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import CLASSIFY, VOC, needs_shared, run_cli
from conftest import MODELS as ROOT_MODELS

from maskwatch.crops import crop_faces, whole_image_box
from maskwatch.datasets import Dataset, LabelledImage, assign_groups, canonical_label, load_source
from maskwatch.errors import InputError

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")

from maskwatch import cli  # noqa: E402
from maskwatch.train.augment import augment, center_view  # noqa: E402
from maskwatch.train.cropset import build_cropset  # noqa: E402
from maskwatch.train.trainer import TrainConfig, prepare_crops, stratified_group_split, train  # noqa: E402

CHANDRIKA = CLASSIFY / "chandrikadeb7"
SIZE = 32  # classifier input for the tests (the smallest sensible size: MobileNetV2 has output stride 32)
N_PER_CLASS = 20
FAST = dict(epochs=1, head_epochs=1, workers=0, input_size=SIZE, batch=16, device="cpu")
FAST_CLI = ["--epochs", "1", "--head-epochs", "1", "--workers", "0", "--input-size", str(SIZE), "--batch", "16",
            "--device", "cpu", "-q"]


# ---------------------------------------------------------------- helpers
def copy_class_images(dst: Path, classes=("with_mask", "without_mask"), n: int = N_PER_CLASS, start: int = 0) -> Path:
    for c in classes:
        (dst / c).mkdir(parents=True, exist_ok=True)
        for f in sorted((CHANDRIKA / c).iterdir())[start : start + n]:
            shutil.copy(f, dst / c / f.name)
    return dst


def add_junk(folder: Path) -> None:
    """A non-image file, a corrupt .jpg (random bytes) and a truncated JPEG, beside real images."""
    (folder / "notes.txt").write_text("not an image")
    (folder / "corrupt.jpg").write_bytes(np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8).tobytes())
    real = sorted(p for p in folder.iterdir() if p.suffix == ".jpg" and p.name not in ("corrupt.jpg",))[0].read_bytes()
    (folder / "truncated.jpg").write_bytes(real[: len(real) // 2])


def copy_voc(dst: Path, stems: list[str], drop_images: tuple[str, ...] = ()) -> Path:
    (dst / "annotations").mkdir(parents=True, exist_ok=True)
    (dst / "images").mkdir(parents=True, exist_ok=True)
    for s in stems:
        shutil.copy(VOC / "annotations" / f"{s}.xml", dst / "annotations" / f"{s}.xml")
        if s not in drop_images:
            shutil.copy(VOC / "images" / f"{s}.jpg", dst / "images" / f"{s}.jpg")
    return dst


def voc_boxes(stem: str) -> list[tuple[float, float, float, float]]:
    root = ET.parse(VOC / "annotations" / f"{stem}.xml").getroot()
    return [tuple(float(o.findtext(f"bndbox/{k}")) for k in ("xmin", "ymin", "xmax", "ymax")) for o in root.iter("object")]


def assert_clean_error(rc: int, err: str, *needles: str) -> None:
    assert rc == 2, f"exit code {rc}, stderr:\n{err}"
    assert "Traceback" not in err
    assert "error:" in err
    for n in needles:
        assert n.lower() in err.lower(), f"{n!r} not in stderr:\n{err}"


# ---------------------------------------------------------------- one shared training run
@pytest.fixture(scope="module")
def class_data(tmp_path_factory) -> Path:
    if not CHANDRIKA.is_dir():
        pytest.skip(f"{CHANDRIKA} not found (shared data absent)")
    root = copy_class_images(tmp_path_factory.mktemp("faces") / "data")
    add_junk(root / "with_mask")
    (root / "0").mkdir()  # a Keras-style folder name: which class it is, is a guess, so it is named and left out
    (root / "without_mask" / "2021").mkdir()  # a level too deep: named too
    for f in sorted((root / "with_mask").glob("*.jpg"))[:2]:
        shutil.copy(f, root / "0" / f.name)
        shutil.copy(f, root / "without_mask" / "2021" / f.name)
    return root


@pytest.fixture(scope="module")
def trained(class_data, tmp_path_factory) -> dict:
    """``maskwatch train`` (the CLI, in-process) on ~40 faces plus 3 junk files."""
    out = tmp_path_factory.mktemp("run") / "out"
    rc, stdout, stderr = run_cli(["train", str(class_data), "--out", str(out), *FAST_CLI])
    assert rc == 0, stderr
    return {"out": out, "stderr": stderr, "data": class_data}


@pytest.fixture(scope="module")
def resumed(trained, tmp_path_factory) -> dict:
    """A copy of the run, resumed for one more fine-tune epoch; records optimiser-state restores."""
    out = tmp_path_factory.mktemp("resume") / "out"
    shutil.copytree(trained["out"], out)
    calls = []
    orig = torch.optim.Optimizer.load_state_dict

    def spy(self, state):
        calls.append(state)
        return orig(self, state)

    torch.optim.Optimizer.load_state_dict = spy
    try:
        before = (out / "mask_classifier.onnx").stat().st_mtime_ns
        res = train(TrainConfig(data=[str(trained["data"])], out=str(out), **{**FAST, "epochs": 2}, resume=True))
    finally:
        torch.optim.Optimizer.load_state_dict = orig
    return {"out": out, "result": res, "opt_loads": calls, "mtime_before": before}


@needs_shared
def test_train_writes_every_artifact(trained):
    out = trained["out"]
    for name in ("mask_classifier.onnx", "metrics.json", "report.txt", "confusion.png", "curves.png", "train.log"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    m = json.loads((out / "metrics.json").read_text())
    classes = m["validation"]["classes"]
    assert set(classes) == {"with_mask", "without_mask"}
    assert trained["stderr"].count("balanced accuracy (with_mask/without_mask)") == 1  # the report once, not twice
    for c in classes.values():
        for k in ("precision", "recall", "f1"):
            assert 0.0 <= c[k] <= 1.0
        assert c["support"] >= 1
    assert sum(c["support"] for c in classes.values()) == m["validation"]["n"] == m["data"]["val_count"]
    assert [h["epoch"] for h in m["history"]] == [1, 2]
    report = (out / "report.txt").read_text()
    assert "precision" in report and "with_mask" in report and "without_mask" in report
    for png in ("confusion.png", "curves.png"):
        img = cv2.imread(str(out / png))
        assert img is not None and img.shape[0] > 50 and img.shape[1] > 50
    assert "model written to" in trained["stderr"]


@needs_shared
def test_train_skips_junk_files_and_logs_them(trained):
    """3 junk files in with_mask/: notes.txt (not an image suffix) and two unreadable .jpg files."""
    log = (trained["out"] / "train.log").read_text()
    assert "skipped 1 file(s) that are not images" in log
    assert "skipped 2 unreadable image(s)" in log
    m = json.loads((trained["out"] / "metrics.json").read_text())
    n_train = sum(m["data"]["train_counts"].values())
    assert n_train + m["data"]["val_count"] == 2 * N_PER_CLASS  # the junk files became no crop


@needs_shared
def test_train_cli_shows_data_warnings(trained):
    """A user of `maskwatch train` should see that files were skipped, not only find it in train.log."""
    err = trained["stderr"]
    assert "not images" in err and "unreadable" in err, f"no data warning on stderr:\n{err}"
    assert "left out 2 image(s): '0' is not a class maskwatch knows" in err  # it was dropped in silence
    assert "left out 2 image(s) in its sub-folder(s) 2021/" in err
    assert "calibration: the temperature" in err and "give a larger --val" in err  # a handful of validation crops


@needs_shared
def test_trained_model_loads_and_predicts(trained, voc_image):
    from maskwatch.classifier import MaskClassifier
    from maskwatch.images import load_image

    clf = MaskClassifier(trained["out"] / "mask_classifier.onnx")
    assert clf.class_names == ("with_mask", "without_mask")
    assert clf.input_size == SIZE
    img = load_image(voc_image)
    crops = crop_faces(img, np.array(voc_boxes("maksssksksss0")), clf.input_size, clf.margin)
    assert crops.shape == (3, SIZE, SIZE, 3)
    p = clf.predict(crops)
    assert p.shape == (3, 2)
    assert np.all(p >= 0) and np.allclose(p.sum(1), 1.0, atol=1e-4)
    maps, p2 = clf.heatmaps(crops)
    assert maps.shape == (3, SIZE, SIZE)
    assert maps.dtype == np.float32
    assert maps.min() >= 0.0 and maps.max() <= 1.0
    assert np.allclose(p2, p, atol=1e-5)


@needs_shared
def test_trained_onnx_has_probs_and_features_outputs(trained):
    import onnxruntime as ort

    s = ort.InferenceSession(str(trained["out"] / "mask_classifier.onnx"), providers=["CPUExecutionProvider"])
    assert [o.name for o in s.get_outputs()] == ["probs", "features"]
    probs, feats = s.run(None, {s.get_inputs()[0].name: np.zeros((2, 3, SIZE, SIZE), np.float32)})
    assert probs.shape == (2, 2) and feats.ndim == 4 and feats.shape[0] == 2


@needs_shared
def test_resume_continues(resumed):
    res = resumed["result"]
    assert [h["epoch"] for h in res["history"]] == [1, 2, 3]
    m = json.loads((resumed["out"] / "metrics.json").read_text())
    assert len(m["history"]) == 3
    assert (resumed["out"] / "mask_classifier.onnx").stat().st_mtime_ns > resumed["mtime_before"]
    assert "resumed at epoch 3" in (resumed["out"] / "train.log").read_text()


@needs_shared
def test_resume_in_same_phase_restores_optimizer_state(resumed):
    """The checkpoint ended in fine-tuning and the resumed epoch is fine-tuning too: Adam's moments must be
    restored from last.pt (trainer: 'same phase: restore the optimiser state too')."""
    assert len(resumed["opt_loads"]) == 1, "optimizer.load_state_dict was not called on resume within the same phase"


@needs_shared
def test_existing_model_needs_force(trained, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(trained["out"], out)
    with pytest.raises(InputError, match="--force"):
        train(TrainConfig(data=[str(trained["data"])], out=str(out), **FAST))
    rc, _, err = run_cli(["train", str(trained["data"]), "--out", str(out), *FAST_CLI])
    assert_clean_error(rc, err, "--force", "already holds a model")

    model = out / "mask_classifier.onnx"
    model.write_bytes(b"stale")
    res = train(TrainConfig(data=[str(trained["data"])], out=str(out), **FAST, force=True))
    assert model.stat().st_size > 1000
    from maskwatch.classifier import MaskClassifier

    assert MaskClassifier(model).class_names == ("with_mask", "without_mask")
    assert [h["epoch"] for h in res["history"]] == [1, 2]


# ---------------------------------------------------------------- bad input
def test_empty_folder(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match="no class sub-folder"):
        load_source(str(empty))
    rc, _, err = run_cli(["train", str(empty), "--out", str(tmp_path / "out"), *FAST_CLI])
    assert_clean_error(rc, err, str(empty))
    assert not (tmp_path / "out" / "mask_classifier.onnx").exists()


def test_missing_folder(tmp_path):
    rc, _, err = run_cli(["train", str(tmp_path / "nope"), "--out", str(tmp_path / "out"), *FAST_CLI])
    assert_clean_error(rc, err, "no such folder")


@needs_shared
def test_folder_without_class_subfolders(tmp_path):
    root = tmp_path / "pictures"
    for sub in ("cats", "dogs"):
        (root / sub).mkdir(parents=True)
        for f in sorted((CHANDRIKA / "with_mask").iterdir())[:2]:
            shutil.copy(f, root / sub / f.name)
    with pytest.raises(InputError, match="no class sub-folder") as e:
        load_source(str(root))
    assert "cats" in str(e.value) and "with_mask" in str(e.value)
    rc, _, err = run_cli(["train", str(root), "--out", str(tmp_path / "out"), *FAST_CLI])
    assert_clean_error(rc, err, "no class sub-folder", "cats")


def test_class_folders_without_images(tmp_path):
    root = tmp_path / "set"
    (root / "with_mask").mkdir(parents=True)
    (root / "without_mask").mkdir()
    (root / "with_mask" / "readme.txt").write_text("x")
    with pytest.raises(InputError, match="hold no image"):
        load_source(str(root))


def test_missing_imagenet_weights_are_said_before_any_face_is_cropped(tmp_path, monkeypatch):
    """Offline without the ImageNet file, train used to crop every face (minutes on a large set) and then fail."""
    import maskwatch.train.trainer as trainer
    from maskwatch.errors import ModelError

    def missing(name):
        raise ModelError(f"model '{name}' (mobilenet_v2-b0353104.pth) not found and the download failed")

    def no_cropping(*a, **k):
        raise AssertionError("faces were cropped before the weights were looked for")

    monkeypatch.setattr(trainer, "resolve", missing)
    monkeypatch.setattr(trainer, "prepare_crops", no_cropping)
    with pytest.raises(ModelError, match="--pretrained none"):
        train(TrainConfig(data=[str(tmp_path)], out=str(tmp_path / "out"), **FAST, pretrained="imagenet"))
    assert not (tmp_path / "out").exists()


@needs_shared
def test_only_one_class(tmp_path):
    root = copy_class_images(tmp_path / "one", classes=("with_mask",), n=6)
    with pytest.raises(InputError, match="one class only"):
        train(TrainConfig(data=[str(root)], out=str(tmp_path / "out"), **FAST))
    rc, _, err = run_cli(["train", str(root), "--out", str(tmp_path / "out2"), *FAST_CLI])
    assert_clean_error(rc, err, "one class only", "with_mask")


@needs_shared
@pytest.mark.parametrize("opts, needle", [
    (["--input-size", "0"], "input"),
    (["--epochs", "0", "--head-epochs", "0"], "epoch"),
    (["--batch", "0"], "batch"),
    (["--ema", "1"], "ema"),
    (["--erase", "1.5"], "erase"),
    (["--recolour", "1.5"], "recolour"),
    (["--nomask-weight", "0"], "nomask_weight"),
    (["--source-balance", "2"], "source_balance"),
])
def test_train_rejects_bad_settings(tmp_path, opts, needle):
    """Nonsense numeric settings: exit code 2 and a message naming the setting, not a traceback."""
    root = copy_class_images(tmp_path / "d", n=4)
    rc, _, err = run_cli(["train", str(root), "--out", str(tmp_path / "out"), *FAST_CLI, *opts])
    assert_clean_error(rc, err, needle)


@needs_shared
def test_too_few_images_is_a_clean_error_or_works(tmp_path):
    """One photo per class: the validation split must not leave training empty and crash (num_samples=0)."""
    root = copy_class_images(tmp_path / "d", n=1)
    rc, _, err = run_cli(["train", str(root), "--out", str(tmp_path / "out"), *FAST_CLI])
    assert rc in (0, 2), err
    assert "Traceback" not in err
    if rc == 0:
        assert (tmp_path / "out" / "mask_classifier.onnx").is_file()


@needs_shared
def test_non_images_and_corrupt_images_are_skipped_and_counted(tmp_path):
    root = copy_class_images(tmp_path / "d", n=5)
    add_junk(root / "with_mask")
    ds = load_source(str(root))
    names = [im.path.name for im in ds.images]
    assert "notes.txt" not in names
    assert any("skipped 1 file(s) that are not images" in w for w in ds.warnings)
    cs, skipped = build_cropset(ds, SIZE)
    assert len(cs) == 10
    assert len(skipped) == 2
    assert any("corrupt.jpg" in s for s in skipped) and any("truncated.jpg" in s for s in skipped)
    cs2, warnings = prepare_crops(TrainConfig(data=[str(root)], out=str(tmp_path / "o"), **FAST), [str(root)], tmp_path / "cache")
    assert len(cs2) == 10
    assert any("not images" in w for w in warnings)
    assert any("skipped 2 unreadable image(s)" in w for w in warnings)


@needs_shared
def test_crop_cache_follows_data_changes(tmp_path):
    """Fix the data (add the missing class) and run again: the crops must come from the new data, not the cache."""
    root = copy_class_images(tmp_path / "d", classes=("with_mask",), n=4)
    cfg = TrainConfig(data=[str(root)], out=str(tmp_path / "o"), **FAST)
    cs1, _ = prepare_crops(cfg, [str(root)], tmp_path / "cache")
    assert len(cs1) == 4
    copy_class_images(root, classes=("without_mask",), n=4)
    cs2, _ = prepare_crops(cfg, [str(root)], tmp_path / "cache")
    assert len(cs2) == 8, "stale crop cache: the without_mask images added since were ignored"
    assert sorted(set(cs2.labels.tolist())) == [0, 1]


@needs_shared
def test_voc_annotation_naming_missing_image(tmp_path):
    root = copy_voc(tmp_path / "voc", ["maksssksksss0", "maksssksksss10", "maksssksksss100"], drop_images=("maksssksksss10",))
    ds = load_source(str(root))
    assert sorted(im.path.name for im in ds.images) == ["maksssksksss0.jpg", "maksssksksss100.jpg"]
    assert any("1 annotation file(s) name an image that does not exist" in w for w in ds.warnings), ds.warnings
    rc, out, err = run_cli(["evaluate", "mask_classifier", str(root), "-q"])
    assert rc == 0, err
    assert "warning" in err and "does not exist" in err


def _voc_xml(filename: str, w: int, h: int, objects: list[tuple[str, tuple]]) -> str:
    objs = "".join(
        f"<object><name>{n}</name><bndbox><xmin>{b[0]}</xmin><ymin>{b[1]}</ymin><xmax>{b[2]}</xmax><ymax>{b[3]}</ymax></bndbox></object>"
        for n, b in objects
    )
    return f"<annotation><filename>{filename}</filename><size><width>{w}</width><height>{h}</height><depth>3</depth></size>{objs}</annotation>"


@needs_shared
def test_voc_boxes_outside_or_empty_are_clipped_or_skipped(tmp_path, voc_image):
    root = tmp_path / "voc"
    (root / "annotations").mkdir(parents=True)
    (root / "images").mkdir()
    shutil.copy(voc_image, root / "images" / voc_image.name)  # 512 x 366
    objects = [
        ("with_mask", (185, 100, 226, 144)),  # fine
        ("without_mask", (-20, 300, 50, 400)),  # partly outside: clipped to (0, 300, 50, 366)
        ("with_mask", (600, 10, 700, 60)),  # wholly outside: skipped
        ("with_mask", (100, 100, 100, 140)),  # zero width: skipped
        ("without_mask", (200, 200, 150, 150)),  # inverted: skipped
        ("person", (10, 10, 40, 40)),  # not a mask class: skipped
    ]
    (root / "annotations" / "maksssksksss0.xml").write_text(_voc_xml(voc_image.name, 512, 366, objects))
    (root / "annotations" / "broken.xml").write_text("<annotation><object>")
    ds = load_source(str(root))
    assert len(ds.images) == 1
    im = ds.images[0]
    assert im.labels == ["with_mask", "without_mask"]
    assert im.boxes[0] == (185, 100, 226, 144)
    assert im.boxes[1] == (0, 300, 50, 366)
    joined = " | ".join(ds.warnings)
    assert "3 box(es) of zero size or outside the image" in joined
    assert "1 object(s) with a class name that is not a mask class" in joined
    assert "not valid XML" in joined and "broken.xml" in joined
    cs, skipped = build_cropset(ds, SIZE)
    assert len(cs) == 2 and skipped == []


# ---------------------------------------------------------------- class names
@pytest.mark.parametrize("name, label", [
    ("WithMask", "with_mask"), ("with_mask", "with_mask"), ("with mask", "with_mask"), ("Mask", "with_mask"),
    ("without_mask", "without_mask"), ("WithoutMask", "without_mask"), ("no_mask", "without_mask"), ("NoMask", "without_mask"),
    ("mask_weared_incorrect", "mask_incorrect"), ("Mask Worn Incorrectly", "mask_incorrect"), ("mask_incorrect", "mask_incorrect"),
    ("person", None), ("face", None), ("", None), ("with_mask_2", None), ("maskwatch", None),
])
def test_canonical_label(name, label):
    assert canonical_label(name) == label


# ---------------------------------------------------------------- splits
def test_stratified_group_split_keeps_groups_whole_and_classes_balanced():
    rng = np.random.default_rng(1)
    labels, groups = [], []
    for g in range(150):
        c = int(g % 3 == 0)  # 50 groups of class 1, 100 of class 0
        for _ in range(int(rng.integers(1, 4))):
            labels.append(c)
            groups.append(f"g{g}")
    labels = np.array(labels)
    tr, va = stratified_group_split(labels, groups, 0.2, seed=0)
    assert len(np.intersect1d(tr, va)) == 0
    assert sorted(np.concatenate([tr, va]).tolist()) == list(range(len(labels)))
    g = np.array(groups)
    assert not set(g[tr]) & set(g[va])
    for c in (0, 1):
        groups_c = set(g[labels == c])
        frac = len(set(g[va]) & groups_c) / len(groups_c)
        assert frac == pytest.approx(0.2, abs=0.03)
        items = (labels[va] == c).sum() / (labels == c).sum()
        assert 0.1 < items < 0.3
    tr2, va2 = stratified_group_split(labels, groups, 0.2, seed=0)
    assert np.array_equal(va, va2)  # deterministic for a seed


def test_stratified_group_split_mixed_group_stays_together():
    labels = np.array([0, 1, 0, 0, 1, 1, 0, 1, 0, 1])
    groups = ["a", "a", "b", "c", "d", "e", "f", "g", "h", "i"]
    for seed in range(10):
        tr, va = stratified_group_split(labels, groups, 0.3, seed)
        g = np.array(groups)
        assert not set(g[tr]) & set(g[va])
        assert (("a" in set(g[va])) != ("a" in set(g[tr])))


def test_stratified_group_split_keeps_every_class_in_training():
    """A rare class with a single group must not be moved wholly into validation (nothing left to learn from)."""
    labels = np.array([0] * 20 + [1] * 20 + [2, 2])
    groups = [f"a{i}" for i in range(20)] + [f"b{i}" for i in range(20)] + ["rare", "rare"]
    tr, va = stratified_group_split(labels, groups, 0.2, seed=0)
    assert set(labels[tr].tolist()) == {0, 1, 2}


@needs_shared
def test_assign_groups_joins_duplicates_and_resized_copies(tmp_path):
    root = copy_class_images(tmp_path / "d", classes=("with_mask",), n=10)
    first = sorted((root / "with_mask").iterdir())[0]
    shutil.copy(first, root / "with_mask" / "zz_copy.jpg")
    img = cv2.imread(str(first))
    cv2.imwrite(str(root / "with_mask" / "zz_small.png"), cv2.resize(img, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA))
    ds = load_source(str(root))
    assign_groups(ds.images)
    by_name = {im.path.name: im.group for im in ds.images}
    assert by_name["zz_copy.jpg"] == by_name[first.name] == by_name["zz_small.png"]
    others = {g for n, g in by_name.items() if n not in (first.name, "zz_copy.jpg", "zz_small.png")}
    assert by_name[first.name] not in others
    assert len(others) >= 8  # 9 different photos: (almost) each its own group


@needs_shared
def test_train_test_split_of_a_source_is_disjoint_and_complete(tmp_path):
    root = copy_class_images(tmp_path / "d", n=20)
    first = sorted((root / "with_mask").iterdir())[0]
    shutil.copy(first, root / "with_mask" / "zz_dup.jpg")
    full = {im.path for im in load_source(str(root)).images}
    tr = {im.path for im in load_source(f"{root}@train").images}
    va = {im.path for im in load_source(f"{root}@val").images}
    te = {im.path for im in load_source(f"{root}@test").images}
    assert tr and va and te
    assert not tr & te and not tr & va and not va & te
    assert tr | va | te == full
    assert 0.05 < len(te) / len(full) < 0.5
    assert len(va) < len(te) < len(tr)
    # the duplicate pair lands on one side
    dup = {first, root / "with_mask" / "zz_dup.jpg"}
    assert dup <= tr or dup <= va or dup <= te
    # deterministic
    assert {im.path for im in load_source(f"{root}@test").images} == te
    with pytest.raises(InputError, match="unknown split"):
        load_source(f"{root}@dev")


# ---------------------------------------------------------------- crops
def test_crop_faces_shape_dtype_rgb():
    img = np.zeros((100, 120, 3), np.uint8)
    img[:, :, 0] = 255  # pure blue in BGR
    crops = crop_faces(img, np.array([[20, 20, 60, 70], [0, 0, 10, 10]]), 40)
    assert crops.shape == (2, 40, 40, 3) and crops.dtype == np.uint8
    assert np.all(crops[..., 2] == 255) and np.all(crops[..., 0] == 0)  # RGB out: blue is the last channel


def test_crop_faces_box_partly_outside_is_padded():
    img = np.zeros((100, 100, 3), np.uint8)
    img[:50, :50] = (10, 20, 30)
    img[50:, 50:] = (200, 210, 220)
    crops = crop_faces(img, np.array([[-30, -30, 20, 20]]), 32)
    assert crops.shape == (1, 32, 32, 3)
    assert tuple(crops[0, 0, 0]) == (30, 20, 10)  # replicated border of the top-left corner (RGB)
    crops = crop_faces(img, np.array([[90, 90, 140, 130]]), 32)
    assert tuple(crops[0, -1, -1]) == (220, 210, 200)


def test_crop_faces_box_fully_outside():
    img = np.full((60, 80, 3), 77, np.uint8)
    crops = crop_faces(img, np.array([[500, 500, 540, 550], [-100, -100, -60, -50]]), 24)
    assert crops.shape == (2, 24, 24, 3) and crops.dtype == np.uint8


def test_crop_faces_no_boxes():
    crops = crop_faces(np.zeros((50, 50, 3), np.uint8), np.zeros((0, 4)), 32)
    assert crops.shape == (0, 32, 32, 3)


@needs_shared
@pytest.mark.parametrize("size", [32, 64])
def test_training_view_matches_run_time_crop(size):
    """'Training sees what run time sees': the un-augmented training input (centre of the stored context crop)
    is close to crop_faces() of the same box, for scene faces of several sizes and for whole-image crops."""
    from maskwatch.images import load_image

    for stem in ("maksssksksss0", "maksssksksss100", "maksssksksss10"):
        path = VOC / "images" / f"{stem}.jpg"
        boxes = voc_boxes(stem)
        ds = Dataset([LabelledImage(path, list(boxes), ["with_mask"] * len(boxes), source="voc")])
        cs, _ = build_cropset(ds, size)
        ref = crop_faces(load_image(path), np.array(boxes), size)
        for i in range(len(boxes)):
            view = center_view(cs.image(i), size)
            assert view.shape == ref[i].shape == (size, size, 3)
            diff = np.abs(view.astype(np.float32) - ref[i]).mean()
            assert diff < 12, f"{stem} face {i}: mean abs diff {diff:.1f}"
            # and clearly closer than a crop shifted by a quarter of the face
            b = np.array(boxes[i])
            shift = (b[2] - b[0]) / 4
            off = crop_faces(load_image(path), (b + [shift, shift, shift, shift])[None], size)[0]
            assert diff < np.abs(view.astype(np.float32) - off).mean()
    f = sorted((CHANDRIKA / "without_mask").iterdir())[0]
    cs, _ = build_cropset(Dataset([LabelledImage(f, [None], ["without_mask"], source="x")]), size)
    img = load_image(f)
    h, w = img.shape[:2]
    ref = crop_faces(img, np.array([whole_image_box(w, h)]), size)[0]
    assert np.abs(center_view(cs.image(0), size).astype(np.float32) - ref).mean() < 12


# ---------------------------------------------------------------- augmentation
def _ctx() -> np.ndarray:
    rng = np.random.default_rng(5)
    base = cv2.resize(rng.integers(0, 256, (12, 12, 3), dtype=np.uint8), (96, 96), interpolation=cv2.INTER_LINEAR)
    return base


@pytest.mark.parametrize("size", [32, 64])
def test_augment_shape_dtype(size):
    ctx = _ctx()
    for seed in range(8):
        out = augment(ctx, size, np.random.default_rng(seed))
        assert out.shape == (size, size, 3) and out.dtype == np.uint8


def test_augment_deterministic_for_a_seed():
    ctx = _ctx()
    a = augment(ctx, 48, np.random.default_rng(123))
    b = augment(ctx, 48, np.random.default_rng(123))
    assert np.array_equal(a, b)
    others = [augment(ctx, 48, np.random.default_rng(s)) for s in range(5)]
    assert any(not np.array_equal(a, o) for o in others)


def test_center_view_shape():
    v = center_view(_ctx(), 32)
    assert v.shape == (32, 32, 3) and v.dtype == np.uint8


def test_random_erasing_covers_one_rectangle_of_4_to_20_percent():
    from maskwatch.train.augment import _erase

    img = np.full((64, 64, 3), 7, np.uint8)
    for seed in range(50):
        out = _erase(img, np.random.default_rng(seed))
        changed = (out != img).any(2)
        ys, xs = np.nonzero(changed)
        frac = changed.mean()
        assert 0.02 <= frac <= 0.22, frac
        box = (ys.max() - ys.min() + 1) * (xs.max() - xs.min() + 1)
        assert changed.sum() >= 0.9 * box  # one filled rectangle, not scattered pixels
    assert (img == 7).all()  # the input is not modified


def test_recolour_lower_changes_only_where_a_mask_lies():
    from maskwatch.train.augment import recolour_lower

    img = np.zeros((96, 96, 3), np.uint8)
    img[:] = (200, 60, 40)  # a saturated colour, so every hue turn shows
    changed = np.zeros((96, 96), bool)
    for seed in range(20):
        out = recolour_lower(img, np.random.default_rng(seed))
        assert out.shape == img.shape and out.dtype == np.uint8
        changed |= (np.abs(out.astype(int) - img.astype(int)) > 3).any(2)
    assert not changed[:43].any()                 # eyes and forehead (above 45 % of the height) keep their colour
    assert changed[52:78, 36:60].all()            # below the nose to the chin, the mask's place, is recoloured
    assert not changed[:, :15].any() and not changed[:, -15:].any()  # nor the cheeks' edges and the background
    assert (img == (200, 60, 40)).all()           # the input is not modified
    with pytest.raises(InputError, match="recolour"):
        TrainConfig(data=["x"], out=str(Path("unused")), recolour=1.5).validate()


def test_recolour_is_given_to_masked_training_faces_only(monkeypatch):
    """Labels index the classes present: with no with_mask in the data, index 0 is another class."""
    import maskwatch.train.trainer as trainer

    calls: list[float] = []

    def spy(ctx, size, rng, erase=0.0, recolour=0.0):
        calls.append(recolour)
        return center_view(ctx, size)

    monkeypatch.setattr(trainer, "augment", spy)

    class _Crops:
        input_size = 32
        labels = np.array([0, 1, 2, 0])

        def __len__(self):
            return 4

        def image(self, i):
            return _ctx()

    for names, want in ((("with_mask", "without_mask", "mask_incorrect"), [0.3, 0.0, 0.0, 0.3]),
                        (("without_mask", "with_mask", "mask_incorrect"), [0.0, 0.3, 0.0, 0.0]),
                        (("without_mask", "mask_incorrect", "not_face"), [0.0, 0.0, 0.0, 0.0])):
        calls.clear()
        views = trainer._Views(_Crops(), True, 0, recolour=0.3, class_names=names)  # type: ignore[arg-type]
        for i in range(4):
            views[i]
        assert calls == want, names


def test_augment_recolours_when_asked(monkeypatch):
    import maskwatch.train.augment as aug

    seen = []
    monkeypatch.setattr(aug, "recolour_lower", lambda img, rng: seen.append(1) or img)
    ctx = _ctx()
    augment(ctx, 48, np.random.default_rng(3))
    augment(ctx, 48, np.random.default_rng(3), recolour=0.0)
    assert seen == []
    for seed in range(4):
        augment(ctx, 48, np.random.default_rng(seed), recolour=1.0)
    assert len(seen) == 4


def test_ema_follows_the_weights_with_a_warm_up():
    from maskwatch.train.trainer import _EMA

    net = torch.nn.Linear(1, 1, bias=False)
    torch.nn.init.zeros_(net.weight)
    ema = _EMA(net, 0.99)
    with torch.no_grad():
        net.weight.fill_(1.0)
    ema.update(net)  # first step: decay min(0.99, 2/11)
    assert float(ema.net.weight) == pytest.approx(1 - 2 / 11)
    for _ in range(2000):
        ema.update(net)
    assert float(ema.net.weight) == pytest.approx(1.0, abs=1e-6)
    assert not ema.net.weight.requires_grad


@needs_shared
def test_train_with_ema_and_erasing_exports_the_average(class_data, tmp_path):
    """One fine-tuning epoch only, so it is the best one: best.pt and the ONNX head must be the average's weights,
    not the raw ones; resuming continues the average."""
    import base64

    import onnx

    out = tmp_path / "out"
    cfg = {**FAST, "head_epochs": 0, "ema": 0.9, "erase": 0.5}
    res = train(TrainConfig(data=[str(class_data)], out=str(out), **cfg))
    last = torch.load(out / "last.pt", weights_only=False)
    best = torch.load(out / "best.pt", weights_only=False)
    assert best["epoch"] == 1 and last["ema_steps"] > 0
    for k, v in best["model"].items():
        assert torch.equal(v, last["ema"][k]), k
    assert not torch.equal(last["ema"]["fc2.weight"], last["model"]["fc2.weight"])
    meta = json.loads(next(p.value for p in onnx.load(str(out / "mask_classifier.onnx")).metadata_props if p.key == "maskwatch"))
    fc2 = np.frombuffer(base64.b64decode(meta["head"]["fc2_w"]), np.float16).astype(np.float32)
    np.testing.assert_allclose(fc2, last["ema"]["fc2.weight"].numpy().ravel(), atol=1e-3)
    assert res["config"]["ema"] == 0.9 and res["config"]["erase"] == 0.5 and meta["data"]["seed"] == 0

    steps = last["ema_steps"]
    train(TrainConfig(data=[str(class_data)], out=str(out), **{**cfg, "epochs": 2}, resume=True))
    again = torch.load(out / "last.pt", weights_only=False)
    assert again["epoch"] == 1 and again["ema_steps"] == 2 * steps  # one more epoch of steps on the same average


def _twin(model: Path, tmp_path: Path) -> Path:
    """A copy of ``model`` under another name: soup takes each file once."""
    twin = tmp_path / "twin" / model.name
    twin.parent.mkdir(exist_ok=True)
    shutil.copy(model, twin)
    return twin


@needs_shared
def test_soup_of_a_model_with_itself_predicts_the_same(trained, tmp_path, voc_image):
    from maskwatch.classifier import MaskClassifier

    model = trained["out"] / "mask_classifier.onnx"
    out = tmp_path / "soup.onnx"
    rc, _, err = run_cli(["soup", str(model), str(_twin(model, tmp_path)), "--out", str(out)])
    assert rc == 0, err
    a, b = MaskClassifier(model), MaskClassifier(out)
    crops = np.random.default_rng(0).integers(0, 255, (4, SIZE, SIZE, 3), dtype=np.uint8)
    np.testing.assert_allclose(a.predict(crops), b.predict(crops), atol=1e-6)
    assert [m["file"] for m in b.meta["data"]["soup"]] == ["out/mask_classifier.onnx", "twin/mask_classifier.onnx"]
    maps, _ = b.heatmaps(crops)  # the averaged head in the metadata still drives Grad-CAM
    assert maps.shape == (4, SIZE, SIZE) and np.isfinite(maps).all()


@needs_shared
def test_soup_is_calibrated_on_val_or_says_it_is_not(trained, tmp_path):
    """No member's temperature is the soup's: without --val it gets their geometric mean and says so; with --val
    the temperature is fitted on those faces (the negative log-likelihood there is lowest at it)."""
    from maskwatch.classifier import MaskClassifier
    from maskwatch.datasets import load_source
    from maskwatch.eval.classification import evaluate_classifier

    model = trained["out"] / "mask_classifier.onnx"
    member = MaskClassifier(model)
    twin = _twin(model, tmp_path)
    rc, _, err = run_cli(["soup", str(model), str(twin), "--out", str(tmp_path / "plain.onnx")])
    assert rc == 0 and "not fitted on data" in err and "--val" in err, err
    plain = MaskClassifier(tmp_path / "plain.onnx")
    assert plain.temperature == pytest.approx(member.temperature, rel=1e-3)
    assert "not fitted" in plain.meta["data"]["calibration"]

    out = tmp_path / "fitted.onnx"
    rc, _, err = run_cli(["soup", str(model), str(twin), "--out", str(out), "--val", str(trained["data"]), "-q"])
    assert rc == 0, err
    fitted = MaskClassifier(out)
    assert f"temperature {fitted.temperature:.3f}, fitted on" in err
    raw = MaskClassifier(out)
    raw.temperature = 1.0
    res = evaluate_classifier(raw, load_source(str(trained["data"])), with_probs=True)
    known = np.isin(res["truth"], raw.class_names)
    assert fitted.meta["data"]["calibration"]["faces"] == int(known.sum()) >= 20
    y = np.array([raw.class_names.index(t) for t in res["truth"][known]])
    logp = np.log(np.maximum(res["probs"][known], 1e-12))

    def nll(t: float) -> float:
        z = logp / t
        z -= z.max(1, keepdims=True)
        return float(np.mean(np.log(np.exp(z).sum(1)) - z[np.arange(len(y)), y]))

    t = fitted.temperature  # fit_temperature searches 0.25-10: at a bound, only the inner side is a check
    inner = [t * 0.8] if t > 9.9 else [t * 1.25] if t < 0.26 else [t * 0.8, t * 1.25]
    assert nll(t) <= min(*map(nll, inner), nll(1.0)) + 1e-6


@needs_shared
def test_soup_refuses_bad_val_before_writing(trained, tmp_path):
    model = trained["out"] / "mask_classifier.onnx"
    rc, _, err = run_cli(["soup", str(model), str(_twin(model, tmp_path)), "--out", str(tmp_path / "s.onnx"), "--val",
                          str(tmp_path / "nope")])
    assert_clean_error(rc, err, "nope")
    assert not (tmp_path / "s.onnx").exists()


@needs_shared
def test_soup_averages_the_weights(trained, tmp_path):
    import onnx
    from onnx import numpy_helper

    src = trained["out"] / "mask_classifier.onnx"
    m = onnx.load(str(src))
    init = next(i for i in m.graph.initializer if numpy_helper.to_array(i).size > 100)
    arr = numpy_helper.to_array(init)
    init.CopyFrom(numpy_helper.from_array((arr.astype(np.float32) + 1).astype(arr.dtype), init.name))
    other = tmp_path / "b" / "mask_classifier.onnx"
    other.parent.mkdir()
    onnx.save(m, str(other))
    from maskwatch.train.soup import average_models

    average_models([src, other], tmp_path / "soup.onnx")
    got = numpy_helper.to_array(next(i for i in onnx.load(str(tmp_path / "soup.onnx")).graph.initializer if i.name == init.name))
    np.testing.assert_allclose(got.astype(np.float32), arr.astype(np.float32) + 0.5, atol=2e-3)


@needs_shared
def test_soup_bad_input(trained, tmp_path):
    model = trained["out"] / "mask_classifier.onnx"
    rc, _, err = run_cli(["soup", str(model), "--out", str(tmp_path / "s.onnx")])
    assert_clean_error(rc, err, "at least two models")
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a model")
    rc, _, err = run_cli(["soup", str(model), str(junk), "--out", str(tmp_path / "s.onnx")])
    assert_clean_error(rc, err, "junk.onnx", "not an ONNX model")
    import maskwatch

    bundled = Path(maskwatch.__file__).parent / "assets" / "mask_classifier.onnx"  # three classes, 64 px
    rc, _, err = run_cli(["soup", str(model), str(bundled), "--out", str(tmp_path / "s.onnx")])
    assert_clean_error(rc, err, "differs", "same classes")
    (tmp_path / "s.onnx").write_bytes(b"x")
    rc, _, err = run_cli(["soup", str(model), str(_twin(model, tmp_path)), "--out", str(tmp_path / "s.onnx")])
    assert_clean_error(rc, err, "--force")


@needs_shared
def test_soup_refuses_other_seeds_and_damaged_metadata(trained, tmp_path):
    import onnx

    src = trained["out"] / "mask_classifier.onnx"

    def variant(name, change):
        m = onnx.load(str(src))
        prop = next(p for p in m.metadata_props if p.key == "maskwatch")
        prop.value = change(prop.value)
        path = tmp_path / name / "mask_classifier.onnx"
        path.parent.mkdir()
        onnx.save(m, str(path))
        return path

    def other_seed(text):
        meta = json.loads(text)
        meta["data"]["seed"] = meta["data"].get("seed", 0) + 1
        return json.dumps(meta)

    rc, _, err = run_cli(["soup", str(src), str(variant("seed", other_seed)), "--out", str(tmp_path / "s.onnx")])
    assert_clean_error(rc, err, "--seed", "not a model")
    rc, _, err = run_cli(["soup", str(src), str(variant("bad", lambda t: t[:-40])), "--out", str(tmp_path / "s.onnx")])
    assert_clean_error(rc, err, "damaged")


def test_default_model_script_commands_parse():
    """scripts/train_default_model.sh --dry-run: every command it would run is one the CLI accepts."""
    import shlex
    import subprocess

    from maskwatch.cli import build_parser

    root = Path(__file__).resolve().parents[1]
    r = subprocess.run(["bash", str(root / "scripts" / "train_default_model.sh"), "--dry-run", "/tmp/x"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    cmds = [shlex.split(line[2:]) for line in r.stdout.splitlines() if line.startswith("+ maskwatch ")]
    assert [c[1] for c in cmds] == ["train"]
    args = build_parser().parse_args(cmds[0][1:])
    assert args.init == "/tmp/x/previous.onnx" and args.not_face and args.scene_boxes == "detector" and args.select == "f1"
    assert args.class_weight_cap == 1 and args.lr == 5e-5 and args.epochs == 12 and args.head_epochs == 1
    assert len(args.data) == 5 and all(v.endswith("@val") for v in args.val) and len(args.val) == 4
    assert not any(d.endswith("@test") for d in args.data + args.val)  # the reported splits are never trained or tuned on


# ---------------------------------------------------------------- not_face
@needs_shared
@pytest.mark.slow
def test_not_face_crops_come_from_detections_on_no_annotated_face_and_train(class_data, tmp_path):
    """A scene whose annotation skips a face the detector finds: that box becomes a not_face crop (with its face
    score), the annotated faces do not; a model trained on it knows not_face, and the pipeline removes such boxes."""
    import maskwatch
    from maskwatch.boxes import iou_matrix
    from maskwatch.detections import MODEL_CLASSES, NOT_FACE
    from maskwatch.train.cropset import scene_face_detector
    stem = "maksssksksss0"
    scene = copy_voc(tmp_path / "scene", [stem])
    xml = scene / "annotations" / f"{stem}.xml"
    tree = ET.parse(xml)
    found = scene_face_detector(TrainConfig.scene_detector).detect(maskwatch.load_image(scene / "images" / f"{stem}.jpg"))
    boxes = np.array(voc_boxes(stem), np.float32)
    ious = iou_matrix(boxes, found.xyxy)
    drop = int(ious.max(1).argmax())  # the annotated face the detector frames best: "forget" it
    dropped_box = found.xyxy[int(ious[drop].argmax())]
    objs = list(tree.getroot().iter("object"))
    tree.getroot().remove(objs[drop])
    tree.write(xml)

    cfg = TrainConfig(data=[str(scene), str(class_data)], out=str(tmp_path / "out"), **FAST, not_face_max_score=1.0)
    cs, _ = prepare_crops(cfg, cfg.data, tmp_path / "cache")
    nf = np.nonzero(cs.labels == MODEL_CLASSES.index(NOT_FACE))[0]
    assert len(nf) >= 1
    assert all("scene" in cs.source[i] for i in nf)
    assert (cs.score[nf] >= 0.5).all()  # a face score from the detector
    n_scene_faces = sum(1 for i in range(len(cs)) if "scene" in cs.source[i] and cs.labels[i] != MODEL_CLASSES.index(NOT_FACE))
    assert n_scene_faces == len(boxes) - 1
    sides = np.minimum(dropped_box[2] - dropped_box[0], dropped_box[3] - dropped_box[1])
    assert np.isclose(cs.face_px[nf], sides, atol=0.5).any()  # the forgotten face is one of them

    low = TrainConfig(data=cfg.data, out=cfg.out, **FAST, not_face_max_score=0.01)
    from maskwatch.train.trainer import _not_face_rule

    assert (_not_face_rule(cs, low).labels != MODEL_CLASSES.index(NOT_FACE)).all()  # the score rule drops them all
    assert (_not_face_rule(cs, TrainConfig(data=cfg.data, out=cfg.out, **FAST, not_face=False)).labels != MODEL_CLASSES.index(NOT_FACE)).all()

    res = train(cfg)
    assert NOT_FACE in res["data"]["classes"] and res["temperature"] > 0
    clf = maskwatch.classifier.MaskClassifier(tmp_path / "out" / "mask_classifier.onnx")
    assert NOT_FACE in clf.class_names and clf.temperature == pytest.approx(res["temperature"])
    det = maskwatch.Detector(det_size=800, classifier=clf, keep_not_face=True)
    img = maskwatch.load_image(scene / "images" / f"{stem}.jpg")
    kept, shown = det.detect(img), maskwatch.Detector(det_size=800, classifier=clf).detect(img)
    assert len(shown) == sum(lab != NOT_FACE for lab in kept.labels)


def test_not_face_needs_detector_framing(tmp_path):
    with pytest.raises(InputError, match="scene_boxes"):
        TrainConfig(data=["x"], out=str(tmp_path), scene_boxes="truth").validate()
    TrainConfig(data=["x"], out=str(tmp_path), scene_boxes="truth", not_face=False).validate()


def test_fit_temperature_recovers_a_known_temperature():
    from maskwatch.train.calibration import fit_temperature

    rng = np.random.default_rng(0)
    logits = rng.normal(0, 3, (4000, 3))
    p = np.exp(logits / 2.0)
    p /= p.sum(1, keepdims=True)
    labels = np.array([rng.choice(3, p=row) for row in p])  # drawn from softmax(logits / 2)
    assert fit_temperature(logits, labels) == pytest.approx(2.0, rel=0.1)
    assert fit_temperature(logits * 0.5, labels) == pytest.approx(1.0, rel=0.1)


def test_init_from_a_maskwatch_model_reproduces_it_and_adds_new_classes_at_random():
    """--init: the bundled classifier's weights (BatchNorm folded in the file) load into the training network,
    which then computes the same probabilities; a class the file lacks (not_face) gets a new output row."""
    from maskwatch.classifier import MaskClassifier
    from maskwatch.crops import to_input
    from maskwatch.train.model import MaskNet, load_maskwatch_onnx

    clf = MaskClassifier()
    names = tuple(clf.model_classes) + (("not_face",) if "not_face" not in clf.model_classes else ())
    net = MaskNet(len(names))
    assert load_maskwatch_onnx(net, str(clf.path), names) > 100 and net.frozen_bn
    net.eval()
    x = np.random.default_rng(0).integers(0, 255, (5, clf.input_size, clf.input_size, 3), dtype=np.uint8)
    with torch.no_grad():
        logits = net(torch.from_numpy(to_input(x)))[:, : len(clf.model_classes)]
    want = MaskClassifier(clf.path).session.run(["probs"], {clf.input_name: to_input(x)})[0]
    np.testing.assert_allclose(torch.softmax(logits, 1).numpy(), want, atol=1e-4)
    with pytest.raises(ValueError, match="not a maskwatch classifier"):
        load_maskwatch_onnx(MaskNet(2), str(ROOT_MODELS / "face_detection_yunet.onnx"), ("with_mask", "without_mask"))


def test_cli_and_trainer_share_the_workers_default(tmp_path):
    from maskwatch.settings import train_workers

    args = cli.build_parser().parse_args(["train", "x", "--out", str(tmp_path)])
    assert args.workers == TrainConfig(data=["x"], out=str(tmp_path)).workers == train_workers()


def test_a_validation_set_that_is_training_data_is_warned_of():
    from maskwatch.train.trainer import _val_overlap

    assert len(_val_overlap(["d"], ["d"])) == 1 and len(_val_overlap(["d@test"], ["d@test"])) == 1
    assert len(_val_overlap(["d"], ["./d@val"])) == 1  # the whole folder holds its @val split
    assert "holds training images (d@train)" in _val_overlap(["d@train"], ["d"])[0]
    assert _val_overlap(["d@train", "e"], ["d@val", "f"]) == []
