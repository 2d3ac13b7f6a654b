"""The evaluation commands and tools as a user meets them: what they print about the data, the files --out gets and
refuses to overwrite, soup's members, extract-faces' output folder, the models list, help texts and benchmark tables."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
from conftest import VOC, copy_voc, needs_shared, run_cli

from maskwatch.errors import InputError

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
BUNDLED = Path(__file__).resolve().parents[1] / "maskwatch" / "assets" / "mask_classifier.onnx"
TRAIN_STEMS, TEST_STEMS = ["maksssksksss10", "maksssksksss100"], ["maksssksksss0", "maksssksksss130"]


def strict_json(line: str) -> dict:
    """json.loads that refuses NaN and Infinity, as strict parsers (JavaScript's JSON.parse, jq) do."""
    def refuse(name: str) -> None:
        raise ValueError(f"{name} is not JSON")
    return json.loads(line, parse_constant=refuse)


def relabel(src: Path, dst: Path, name: str) -> Path:
    """A copy of the VOC set ``src`` whose every object is of class ``name``."""
    shutil.copytree(src, dst)
    for x in (dst / "annotations").glob("*.xml"):
        text = x.read_text()
        for old in ("with_mask", "without_mask", "mask_weared_incorrect"):
            text = text.replace(f"<name>{old}</name>", f"<name>{name}</name>")
        x.write_text(text)
    return dst


@pytest.fixture
def two_photos(tmp_path) -> Path:
    if not (VOC / "images").is_dir():
        pytest.skip(f"{VOC} not found (shared data absent)")
    return copy_voc(tmp_path / "set", ["maksssksksss0", "maksssksksss130"])


@pytest.fixture
def with_junk(two_photos) -> Path:
    """two_photos plus a photo that cannot be read and an object of a class no loader knows."""
    x = two_photos / "annotations" / "broken.xml"
    x.write_text((two_photos / "annotations" / "maksssksksss0.xml").read_text().replace("maksssksksss0.jpg", "broken.jpg"))
    (two_photos / "images" / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    x = two_photos / "annotations" / "maksssksksss130.xml"
    x.write_text(x.read_text().replace("</annotation>", "<object><name>person</name><bndbox><xmin>1</xmin>"
                                       "<ymin>1</ymin><xmax>20</xmax><ymax>20</ymax></bndbox></object></annotation>"))
    return two_photos


# ---------------------------------------------------------------- 1. what the data loader and the reader passed over
@needs_shared
def test_evaluate_detection_says_what_the_loader_and_the_reader_passed_over(with_junk):
    rc, out, err = run_cli(["evaluate-detection", str(with_junk), "-q"])
    assert rc == 0, err
    assert "maskwatch: warning:" in err and "not a mask class" in err  # the loader's warning, as evaluate prints it
    assert "skipped 1 unreadable image(s)" in err and "broken.jpg" in err
    rc, _, err_e = run_cli(["evaluate", "mask_classifier", str(with_junk), "-q"])
    assert rc == 0 and "not a mask class" in err_e and "skipped 1 unreadable image(s)" in err_e  # one way for both


@needs_shared
def test_evaluate_detection_counts_the_photos_and_faces_it_measured_on(with_junk):
    rc, out, err = run_cli(["evaluate-detection", str(with_junk), "-q"])
    assert rc == 0, err
    r = strict_json(out)
    assert len(r["skipped"]) == 1 and r["photos"] == 2 and r["faces"] == 7  # 3 + 4 annotated faces in the photos read
    assert "| 2 photo(s), 7 face(s) |" in err


@needs_shared
def test_soup_val_says_what_the_loader_passed_over(with_junk, tmp_path):
    pytest.importorskip("onnx")
    shutil.copy(BUNDLED, tmp_path / "a.onnx")
    shutil.copy(BUNDLED, tmp_path / "b.onnx")
    big = copy_voc(tmp_path / "val", ["maksssksksss104", "maksssksksss108", "maksssksksss134", "maksssksksss100"])
    shutil.copy(with_junk / "annotations" / "maksssksksss130.xml", big / "annotations")  # the unknown-class object
    shutil.copy(with_junk / "images" / "maksssksksss130.jpg", big / "images")
    shutil.copy(big / "annotations" / "maksssksksss100.xml", big / "annotations" / "cut.xml")  # a photo cut short
    (big / "images" / "cut.jpg").write_bytes((big / "images" / "maksssksksss100.jpg").read_bytes()[:300])
    rc, _, err = run_cli(["soup", str(tmp_path / "a.onnx"), str(tmp_path / "b.onnx"), "--out", str(tmp_path / "s.onnx"),
                          "--val", str(big), "-q"])
    assert rc == 0, err
    assert "maskwatch: warning:" in err and "not a mask class" in err and "fitted on" in err
    assert "skipped 1 unreadable image(s)" in err and "cut.jpg" in err, err


@needs_shared
def test_evaluate_detection_without_a_mask_or_no_mask_ap_gives_null_not_nan(two_photos, tmp_path):
    only_incorrect = relabel(two_photos, tmp_path / "inc", "mask_weared_incorrect")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rc, out, err = run_cli(["evaluate-detection", str(only_incorrect), "-q"])
    assert rc == 0, err
    r = strict_json(out)  # NaN would not parse
    assert r["map50"] is None and set(r["ap50"]) == {"mask_incorrect"}
    assert "mAP50(mask/no-mask)=- " in err and "nan" not in err
    assert not [w for w in caught if issubclass(w.category, RuntimeWarning)], [str(w.message) for w in caught]


@needs_shared
def test_evaluate_detection_refuses_a_set_with_no_face_of_a_known_class(two_photos, tmp_path):
    other = relabel(two_photos, tmp_path / "other", "person")
    rc, out, err = run_cli(["evaluate-detection", str(other), "-q"])
    assert rc == 2 and out == "" and "error:" in err
    assert "person" in err or "not a mask class" in err  # the loader's word on what it skipped (a warning or its error)
    assert "class folders?" not in err  # not the message for a set without boxes
    from maskwatch.datasets import Dataset, LabelledImage
    from maskwatch.eval.detection import evaluate_detection

    unboxed = Dataset([LabelledImage(p, [], []) for p in sorted((two_photos / "images").iterdir())])
    with pytest.raises(InputError, match="no annotated face of a class maskwatch knows"):
        evaluate_detection(_NeverCalled(), unboxed)


class _NeverCalled:
    def detect(self, image):  # noqa: ANN001, ANN201
        raise AssertionError("evaluate_detection ran the model on a set it should have refused")


@needs_shared
def test_evaluate_detection_refuses_when_every_photo_with_a_face_is_unreadable(two_photos):
    from maskwatch.datasets import load_source
    from maskwatch.eval.detection import evaluate_detection
    from maskwatch.pipeline import Detector

    ds = load_source(str(two_photos))
    for im in ds.images:
        im.path.write_bytes(b"junk")
    with pytest.raises(InputError, match="no annotated face is left.*2 unreadable"):
        evaluate_detection(Detector(), ds)


# ---------------------------------------------------------------- 2. evaluate --out
@pytest.fixture
def two_splits(tmp_path) -> Path:
    if not (VOC / "images").is_dir():
        pytest.skip(f"{VOC} not found (shared data absent)")
    from maskwatch.datasets import load_source

    s = copy_voc(tmp_path / "S", TRAIN_STEMS + TEST_STEMS)
    assert load_source(f"{s}@train").images and load_source(f"{s}@test").images
    return s


def _evaluate(s: Path, out: Path, *more: str) -> tuple[int, str, str]:
    return run_cli(["evaluate", "mask_classifier", f"{s}@train", f"{s}@test", "--out", str(out), "--errors", "-q", *more])


@needs_shared
def test_evaluate_out_names_each_split(two_splits, tmp_path):
    rc, _, err = _evaluate(two_splits, tmp_path / "R")
    assert rc == 0, err
    assert sorted(p.name for p in (tmp_path / "R").iterdir()) == ["S_test_confusion.png", "S_test_errors",
                                                                   "S_train_confusion.png", "S_train_errors"]


@needs_shared
def test_evaluate_out_refuses_an_earlier_run_and_one_file_twice(two_splits, tmp_path):
    assert _evaluate(two_splits, tmp_path / "R")[0] == 0
    before = {p: p.stat().st_mtime_ns for p in (tmp_path / "R").rglob("*")}
    rc, stdout, err = run_cli(["evaluate", "mask_classifier", f"{two_splits}@test", "--out", str(tmp_path / "R"), "-q"])
    assert rc == 2 and stdout == "" and "already exists" in err and "--force" in err
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "R").rglob("*")} == before
    rc, stdout, err = run_cli(["evaluate", "mask_classifier", f"{two_splits}@test", f"{two_splits}@test", "--out",
                               str(tmp_path / "R2"), "-q"])
    assert rc == 2 and "S_test_confusion.png" in err and stdout == ""  # one set twice would write one file twice


@needs_shared
def test_evaluate_out_force_empties_the_errors_folder_first(two_splits, tmp_path):
    assert _evaluate(two_splits, tmp_path / "R")[0] == 0
    stale = tmp_path / "R" / "S_test_errors" / "with_mask_as_without_mask" / "stale.jpg"
    stale.parent.mkdir(exist_ok=True)
    stale.write_bytes(b"an earlier run's crop")
    rc, _, err = _evaluate(two_splits, tmp_path / "R", "--force")
    assert rc == 0, err
    assert not stale.exists() and (tmp_path / "R" / "S_test_errors" / "errors.csv").is_file()


def test_evaluate_out_that_is_a_file_is_refused_before_any_work(tmp_path, monkeypatch):
    import maskwatch.classifier

    def no_model(*a, **k):
        raise AssertionError("the model was loaded before --out was checked")

    monkeypatch.setattr(maskwatch.classifier, "MaskClassifier", no_model)
    afile = tmp_path / "afile"
    afile.write_text("mine")
    rc, out, err = run_cli(["evaluate", "mask_classifier", str(tmp_path / "data@test"), "--out", str(afile), "-q"])
    assert rc == 2 and "is a file; give a folder" in err and afile.read_text() == "mine"


def test_set_names_carry_the_split():
    from maskwatch.cli.evaluate import _set_name

    assert _set_name("data/masks-voc-dev@test") == "masks-voc-dev_test"
    assert _set_name("data/masks-voc-dev/") == "masks-voc-dev"


# ---------------------------------------------------------------- 3. soup's members and output
@pytest.fixture
def members(tmp_path) -> tuple[Path, Path]:
    pytest.importorskip("onnx")
    m1, m2 = tmp_path / "m1.onnx", tmp_path / "m2.onnx"
    shutil.copy(BUNDLED, m1)
    shutil.copy(BUNDLED, m2)
    return m1, m2


def test_soup_never_writes_over_a_member(members):
    m1, m2 = members
    before = m1.read_bytes()
    rc, _, err = run_cli(["soup", str(m1), str(m2), "--out", str(m1.parent / "." / m1.name), "--force"])
    assert rc == 2 and "is one of the inputs" in err and m1.read_bytes() == before


def test_soup_takes_each_member_once(members, tmp_path):
    m1, m2 = members
    rc, _, err = run_cli(["soup", str(m1), str(tmp_path / "." / "m2.onnx"), str(m2), "--out", str(tmp_path / "s.onnx")])
    assert rc == 2 and "given twice" in err and not (tmp_path / "s.onnx").exists()


def test_soup_takes_the_registry_name_evaluate_takes(members, tmp_path):
    rc, _, err = run_cli(["soup", "mask_classifier", str(members[1]), "--out", str(tmp_path / "s.onnx")])
    assert rc == 0 and "averaged 2 models" in err, err
    rc, _, err = run_cli(["soup", "mask_classifier", str(BUNDLED), "--out", str(tmp_path / "t.onnx")])
    assert rc == 2 and "given twice" in err  # the name and the file it names are one member


def test_soup_says_a_junk_file_is_not_an_onnx_model(members, tmp_path):
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"xx")  # parses as an empty protobuf message
    rc, _, err = run_cli(["soup", str(junk), str(members[1]), "--out", str(tmp_path / "t.onnx")])
    assert rc == 2 and "junk.onnx: not an ONNX model" in err and "metadata" not in err


# ---------------------------------------------------------------- 4. output folders never hold an input file
@needs_shared
def test_extract_faces_into_the_photos_own_folder_is_refused(tmp_path, voc_image):
    photos = tmp_path / "photos"
    (photos / "sub").mkdir(parents=True)
    shutil.copy(voc_image, photos / "sub" / "a.jpg")
    for out in (photos / "sub", photos):
        rc, _, err = run_cli(["extract-faces", str(photos / "sub" / "a.jpg"), str(out), "-q"])
        assert rc == 2 and "holds the input" in err
    assert sorted(p.name for p in photos.rglob("*")) == ["a.jpg", "sub"]
    rc, _, err = run_cli(["extract-faces", str(photos / "sub" / "a.jpg"), str(photos / "sub" / "faces"), "-q"])
    assert rc == 0, err  # a folder of its own beside the photo is fine, as before
    shutil.copy(voc_image, photos / "b.png")
    rc, _, err = run_cli(["detect", str(photos / "b.png"), "--out", str(photos), "-q"])
    assert rc == 2 and "holds the input" in err and not (photos / "b.jpg").exists()  # detect checks the same way


def test_output_folder_check_for_files_folders_and_quoted_globs(tmp_path):
    from maskwatch.cli.common import _check_output_folder

    (tmp_path / "in" / "x").mkdir(parents=True)
    (tmp_path / "in" / "x" / "a.jpg").write_bytes(b"")
    a = str(tmp_path / "in" / "x" / "a.jpg")
    for bad, given in ((tmp_path / "in" / "x", a), (tmp_path / "in", a), (tmp_path / "in" / "x", str(tmp_path / "in" / "*" / "*.jpg")),
                       (tmp_path / "in" / "x" / "deeper", str(tmp_path / "in"))):
        with pytest.raises(InputError, match="never writes among the originals"):
            _check_output_folder(bad, [given])
    _check_output_folder(tmp_path / "in" / "x" / "crops", [a])  # a sub-folder of the photo's folder: allowed
    _check_output_folder(tmp_path / "out", [a, str(tmp_path / "in")])
    _check_output_folder(tmp_path / "in" / "x" / "result.jpg", [a])  # detect a.jpg --out result.jpg beside it


# ---------------------------------------------------------------- 5. models lists the peer model
def test_models_lists_the_peer_model_that_peer_aizoo_needs(capsys):
    from maskwatch.cli import main

    assert main(["models", "--json"]) == 0
    rows = {r["name"]: r for r in map(json.loads, capsys.readouterr().out.splitlines())}
    assert rows["aizoo"]["peer"] is True and rows["aizoo"]["file"] == "aizoo_facemask_360.onnx"
    assert rows["yunet"]["peer"] is False
    assert main(["models"]) == 0
    (line,) = [x for x in capsys.readouterr().out.splitlines() if x.startswith("aizoo ")]
    assert "peer model" in line and "--peer aizoo" in line


# ---------------------------------------------------------------- 6. explain of a folder
def test_explain_of_a_folder_says_it_takes_an_image_or_a_video(tmp_path):
    rc, _, err = run_cli(["explain", str(tmp_path), "--out", str(tmp_path.parent / "x.jpg")])
    assert rc == 2 and "explain takes one image or one video file" in err and "webcam" not in err


# ---------------------------------------------------------------- 7. help
def _help(command: str) -> str:
    from maskwatch.cli import build_parser

    return " ".join(build_parser().get_default("_subparsers")[command].format_help().split())


def test_help_says_where_the_results_go():
    ed = _help("evaluate-detection")
    assert "SET@test" in ed and "stdout" in ed
    ev = _help("evaluate")
    assert "stdout" in ev and "SET_SPLIT_confusion.png" in ev and "SET_SPLIT_errors/" in ev and "--force" in ev
    xf = _help("extract-faces")
    assert "STEM_faceN.jpg" in xf and "mirrored" in xf


# ---------------------------------------------------------------- 8. benchmark tables
def _tables(stdout: str) -> list[list[list[str]]]:
    tables: list[list[list[str]]] = []
    previous = False
    for line in stdout.splitlines():
        row = line.startswith("|")
        if row and not previous:
            tables.append([])
        if row:
            tables[-1].append([c.strip() for c in line.strip().strip("|").split("|")])
        previous = row
    return tables


@needs_shared
@pytest.mark.slow
@pytest.mark.parametrize("script, args", [
    ("false_boxes.py", [f"{VOC}@val", "--mode", "live"]),
    ("server_memory.py", ["--uploads", "6", "--threads", "2", "--large-every", "0"]),
])
def test_benchmark_tables_are_well_formed(script, args, tmp_path):
    r = subprocess.run([sys.executable, str(BENCH / script), *args], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    (table,) = _tables(r.stdout)
    assert {len(row) for row in table} == {len(table[0])}, r.stdout  # the separator row too: else no markdown table
    if script == "server_memory.py":
        col = table[0].index("median ms")
        ms = [float(row[col]) for row in table[2:] if row[col] != "-"]
        assert ms and min(ms) >= 1.0, r.stdout  # milliseconds: an upload through the detector takes more than 1 ms


def test_box_framing_docstring_says_what_it_runs():
    doc = " ".join((BENCH / "box_framing.py").read_text().split('"""')[1].split())
    assert "the photo defaults" not in doc
    assert "--flip on" in doc and "no sure thresholds" in doc
