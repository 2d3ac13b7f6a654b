"""maskwatch.datasets: the accepted layouts of labelled data (class folders, Pascal VOC, YOLO), how their files are
read, and what is said about what could not be read. Synthetic sets, written per test (no shared data needed),
except the last test, which checks the shipped scene sets."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import DATA

from maskwatch.datasets import canonical_label, load_source
from maskwatch.errors import InputError


# ---------------------------------------------------------------- helpers
def _photo(path: Path, w: int = 200, h: int = 100, seed: int = 0) -> Path:
    """A noise image (any format by suffix, written by OpenCV) with a white 40x20 rectangle at x 20..60, y 10..30."""
    path.parent.mkdir(parents=True, exist_ok=True)
    img = np.random.default_rng(seed).integers(0, 120, (h, w, 3), dtype=np.uint8)
    img[10:30, 20:60] = 255
    ext = path.suffix.lower() if path.suffix.lower() in (".png", ".bmp") else ".jpg"
    ok, enc = cv2.imencode(ext, img)
    assert ok
    path.write_bytes(enc.tobytes())
    return path


def _voc_xml(filename: str | None, w: int | str | None, h: int | str | None, objects: list[tuple[str, tuple]]) -> str:
    objs = "".join(
        f"<object><name>{n}</name><difficult>0</difficult><bndbox><xmin>{b[0]}</xmin><ymin>{b[1]}</ymin>"
        f"<xmax>{b[2]}</xmax><ymax>{b[3]}</ymax></bndbox></object>" for n, b in objects)
    fn = f"<filename>{filename}</filename>" if filename is not None else ""
    size = f"<size><width>{w}</width><height>{h}</height><depth>3</depth></size>" if w is not None else ""
    return f"<annotation><folder>images</folder>{fn}{size}{objs}</annotation>"


def _write(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def _yolo(root: Path, labels: dict[str, str], names: str | None = "no_mask\nmask\n", names_file: str = "classes.txt",
          suffix: str = ".jpg") -> Path:
    """A YOLO set: images/<stem><suffix> + labels/<stem>.txt for each entry, and a names file."""
    for i, (stem, text) in enumerate(labels.items()):
        _photo(root / "images" / f"{stem}{suffix}", seed=i)
        _write(root / "labels" / f"{stem}.txt", text)
    if names is not None:
        _write(root / names_file, names)
    return root


def _by_name(ds) -> dict:
    return {im.path.name: im for im in ds.images}


def _joined(ds) -> str:
    return " | ".join(ds.warnings)


FACE = "0.2 0.2 0.2 0.2"  # cx cy w h: a 40 x 20 px box at (20, 10) in a 200 x 100 image


# ---------------------------------------------------------------- 1. YOLO class names
@pytest.mark.parametrize("yaml_text", [
    "path: .\ntrain: images\nval: images\nnc: 2\nnames: ['mask', 'no_mask']\n",
    'names: ["mask", "no_mask"]  # Roboflow style\n',
    "names:\n  - mask\n  - no_mask\n",
    "names:\n- mask   # 0\n- 'no_mask'\n",
    "names:\n  0: mask\n  1: no_mask\n",
    "names: {0: mask, 1: no_mask}\n",
    "nc: 2\nnames: [\n  mask,\n  no_mask,\n]\nroboflow:\n  workspace: x\n",
])
@pytest.mark.parametrize("yaml_name", ["data.yaml", "dataset.yaml"])
def test_yolo_class_names_are_read_from_data_yaml(tmp_path, yaml_text, yaml_name):
    """A set with names ['mask', 'no_mask'] used to be read with the guess 0 = no_mask: every label swapped."""
    root = _yolo(tmp_path / "set", {"a": f"0 {FACE}\n", "b": f"1 {FACE}\n"}, names=yaml_text, names_file=yaml_name)
    ds = load_source(str(root))
    by = _by_name(ds)
    assert by["a.jpg"].labels == ["with_mask"]
    assert by["b.jpg"].labels == ["without_mask"]


def test_classes_txt_is_one_name_per_line(tmp_path):
    """'with mask' is one class name, not two; blank lines, spaces and Windows line ends are ignored."""
    root = _yolo(tmp_path / "set", {"a": f"0 {FACE}\n", "b": f"1 {FACE}\n", "c": f"2 {FACE}\n"},
                 names="with mask\r\n\r\n  without mask  \r\nmask worn incorrectly\r\n")
    by = _by_name(load_source(str(root)))
    assert by["a.jpg"].labels == ["with_mask"]
    assert by["b.jpg"].labels == ["without_mask"]
    assert by["c.jpg"].labels == ["mask_incorrect"]


def test_classes_txt_beside_the_label_files_is_the_names_file_not_a_label_file(tmp_path):
    """LabelImg writes classes.txt into the labels folder."""
    root = _yolo(tmp_path / "set", {"a": f"1 {FACE}\n"}, names=None)
    _write(root / "labels" / "classes.txt", "no_mask\nmask\n")
    ds = load_source(str(root))
    assert [im.path.name for im in ds.images] == ["a.jpg"]
    assert ds.images[0].labels == ["with_mask"]
    assert not ds.warnings, ds.warnings


def test_yolo_without_class_names_is_refused_not_guessed(tmp_path):
    root = _yolo(tmp_path / "set", {"a": f"0 {FACE}\n"}, names=None)
    with pytest.raises(InputError, match="classes.txt") as e:
        load_source(str(root))
    assert "data.yaml" in str(e.value) and "no_mask" in str(e.value)


def test_yolo_names_files_that_disagree_are_said(tmp_path):
    root = _yolo(tmp_path / "set", {"a": f"0 {FACE}\n"}, names="no_mask\nmask\n")
    _write(root / "data.yaml", "names: [mask, no_mask]\n")
    ds = load_source(str(root))
    assert ds.images[0].labels == ["without_mask"]  # classes.txt, as before
    assert "classes.txt" in _joined(ds) and "data.yaml" in _joined(ds)


def test_yolo_names_that_are_no_mask_class_are_said(tmp_path):
    root = _yolo(tmp_path / "set", {"a": f"0 {FACE}\n1 0.7 0.7 0.2 0.2\n"}, names="person\nmask\n")
    ds = load_source(str(root))
    assert ds.images[0].labels == ["with_mask"]
    assert "person (1)" in _joined(ds)


# ---------------------------------------------------------------- 2. VOC <filename> vs the xml's own name
def test_voc_xml_is_paired_with_the_image_of_its_own_name(tmp_path):
    """a.xml whose <filename> says b.jpg used to put its boxes on b.jpg (which then had two annotations; a.jpg none)."""
    root = tmp_path / "voc"
    _photo(root / "images" / "a.jpg")
    _photo(root / "images" / "b.jpg", seed=1)
    _write(root / "annotations" / "a.xml", _voc_xml("b.jpg", 200, 100, [("with_mask", (20, 10, 60, 30))]))
    _write(root / "annotations" / "b.xml", _voc_xml("b.jpg", 200, 100, [("without_mask", (100, 50, 150, 90))] * 2))
    ds = load_source(str(root))
    by = _by_name(ds)
    assert len(ds.images) == 2
    assert by["a.jpg"].labels == ["with_mask"]
    assert by["b.jpg"].labels == ["without_mask", "without_mask"]
    assert "a.xml" in _joined(ds) and "b.jpg" in _joined(ds)


def test_voc_filename_is_used_when_no_image_has_the_xml_name(tmp_path):
    root = tmp_path / "voc"
    _photo(root / "images" / "IMG_0001.jpg")
    _write(root / "annotations" / "0001.xml", _voc_xml("IMG_0001.jpg", 200, 100, [("with_mask", (20, 10, 60, 30))]))
    ds = load_source(str(root))
    assert [im.path.name for im in ds.images] == ["IMG_0001.jpg"]
    assert "0001.xml" in _joined(ds) and "IMG_0001.jpg" in _joined(ds)


def test_two_xmls_for_one_image_are_said_and_the_image_counted_once(tmp_path):
    root = tmp_path / "voc"
    _photo(root / "images" / "c.jpg")
    _write(root / "annotations" / "a.xml", _voc_xml("c.jpg", 200, 100, [("with_mask", (20, 10, 60, 30))]))
    _write(root / "annotations" / "c.xml", _voc_xml("c.jpg", 200, 100, [("without_mask", (100, 50, 150, 90))]))
    ds = load_source(str(root))
    assert [im.path.name for im in ds.images] == ["c.jpg"]
    assert ds.images[0].labels == ["without_mask"]  # the xml named like the image
    assert "a.xml" in _joined(ds) and "c.xml" in _joined(ds)


# ---------------------------------------------------------------- 3. VOC <size> against the real image
def _tagged_jpeg(stored_bgr: np.ndarray, orientation: int) -> bytes:
    """A JPEG with an EXIF orientation tag, as a phone writes it."""
    ifd = (1).to_bytes(2, "little") + (0x0112).to_bytes(2, "little") + (3).to_bytes(2, "little") + (1).to_bytes(4, "little")
    ifd += orientation.to_bytes(2, "little") + b"\x00\x00" + (0).to_bytes(4, "little")
    tiff = b"II" + (42).to_bytes(2, "little") + (8).to_bytes(4, "little") + ifd
    app1 = b"\xff\xe1" + (2 + 6 + len(tiff)).to_bytes(2, "big") + b"Exif\x00\x00" + tiff
    ok, enc = cv2.imencode(".jpg", stored_bgr, [cv2.IMWRITE_JPEG_QUALITY, 95])
    assert ok
    return enc.tobytes()[:2] + app1 + enc.tobytes()[2:]


@pytest.mark.parametrize("orientation", [5, 6, 7, 8])
def test_voc_boxes_drawn_on_the_stored_pixels_of_a_rotated_photo_are_turned(tmp_path, orientation):
    """A phone photo (EXIF rotation) boxed in a tool that ignores the tag: the xml's size is the stored one (the
    upright size transposed) and its boxes are on the stored pixels. They used to land in the wrong place."""
    from maskwatch.images import load_image

    stored = np.full((120, 240, 3), 40, np.uint8)  # stored 240 x 120, a white face at x 30..90, y 20..50
    stored[20:50, 30:90] = 255
    root = tmp_path / "voc"
    _write(root / "images" / "phone.jpg", _tagged_jpeg(stored, orientation))
    _write(root / "annotations" / "phone.xml", _voc_xml("phone.jpg", 240, 120, [("with_mask", (30, 20, 90, 50))]))
    ds = load_source(str(root))
    (box,) = ds.images[0].boxes
    upright = load_image(root / "images" / "phone.jpg")
    assert upright.shape[:2] == (240, 120)
    x1, y1, x2, y2 = (int(round(v)) for v in box)
    assert (x2 - x1, y2 - y1) == (30, 60)  # turned: 60 x 30 on the stored pixels
    inside = upright[y1 + 2 : y2 - 2, x1 + 2 : x2 - 2]
    assert inside.mean() > 240, "the box is not on the white face of the upright photo"
    assert "phone.jpg" in _joined(ds) and "EXIF" in _joined(ds)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_header_size_and_box_turning_match_load_image(tmp_path, orientation):
    """The size read from the header is that of load_image's upright array, and a box turned from the stored
    pixels frames the same pixels there, for each of the 8 EXIF orientations."""
    from maskwatch.dataset_files import header_size, stored_to_upright
    from maskwatch.images import load_image

    stored = np.full((120, 240, 3), 40, np.uint8)
    stored[20:50, 30:90] = 255
    f = _write(tmp_path / "p.jpg", _tagged_jpeg(stored, orientation))
    upright = load_image(f)
    size = header_size(f)
    assert size is not None and (size.height, size.width) == upright.shape[:2]
    assert (size.stored_width, size.stored_height, size.orientation) == (240, 120, orientation)
    x1, y1, x2, y2 = (int(round(v)) for v in stored_to_upright((30, 20, 90, 50), orientation, 240, 120))
    assert upright[y1 + 2 : y2 - 2, x1 + 2 : x2 - 2].mean() > 240
    assert upright.mean() < 40 + 255 * ((x2 - x1) * (y2 - y1)) / upright[:, :, 0].size + 5  # and nothing else is white


def test_voc_boxes_of_an_upright_annotated_rotated_photo_are_kept(tmp_path):
    """The same photo boxed in a tool that applies the tag (the xml's size is the upright one): unchanged."""
    stored = np.full((120, 240, 3), 40, np.uint8)
    root = tmp_path / "voc"
    _write(root / "images" / "phone.jpg", _tagged_jpeg(stored, 6))
    _write(root / "annotations" / "phone.xml", _voc_xml("phone.jpg", 120, 240, [("with_mask", (10, 100, 50, 160))]))
    ds = load_source(str(root))
    assert ds.images[0].boxes == [(10, 100, 50, 160)]
    assert not ds.warnings, ds.warnings


def test_voc_size_that_is_not_a_number_is_a_warning_not_a_crash(tmp_path):
    root = tmp_path / "voc"
    _photo(root / "images" / "a.jpg")
    _write(root / "annotations" / "a.xml", _voc_xml("a.jpg", "301px", "100", [("with_mask", (20, 10, 60, 30))]))
    ds = load_source(str(root))
    assert ds.images[0].boxes == [(20, 10, 60, 30)]
    assert "a.xml" in _joined(ds) and "301px" in _joined(ds)


def test_voc_boxes_are_clipped_to_the_real_image_not_the_xml_size(tmp_path):
    root = tmp_path / "voc"
    _photo(root / "images" / "a.jpg")  # 200 x 100
    _write(root / "annotations" / "a.xml", _voc_xml("a.jpg", 1000, 1000, [("with_mask", (150, 50, 400, 300)),
                                                                          ("with_mask", (500, 500, 600, 600))]))
    ds = load_source(str(root))
    assert ds.images[0].boxes == [(150, 50, 200, 100)]
    joined = _joined(ds)
    assert "1000x1000" in joined and "200x100" in joined and "a.xml" in joined
    assert "1 box(es) of zero size or outside the image" in joined


def test_voc_without_size_uses_the_image(tmp_path):
    root = tmp_path / "voc"
    _photo(root / "images" / "a.jpg")
    _write(root / "annotations" / "a.xml", _voc_xml("a.jpg", None, None, [("with_mask", (150, 50, 400, 300))]))
    ds = load_source(str(root))
    assert ds.images[0].boxes == [(150, 50, 200, 100)]
    assert not ds.warnings, ds.warnings


# ---------------------------------------------------------------- 4. upper-case extensions
def test_yolo_image_with_upper_case_extension_is_found(tmp_path):
    root = _yolo(tmp_path / "set", {"x": f"1 {FACE}\n"}, suffix=".JPG")
    ds = load_source(str(root))
    assert [im.path.name for im in ds.images] == ["x.JPG"]
    assert ds.images[0].labels == ["with_mask"]


def test_voc_xml_without_filename_next_to_an_upper_case_image_is_found(tmp_path):
    root = tmp_path / "voc"
    _photo(root / "x.JPG")
    _write(root / "x.xml", _voc_xml(None, 200, 100, [("with_mask", (20, 10, 60, 30))]))
    ds = load_source(str(root))
    assert [im.path.name for im in ds.images] == ["x.JPG"]
    assert ds.images[0].boxes == [(20, 10, 60, 30)]


def test_upper_case_xml_and_label_suffixes_are_read(tmp_path):
    root = tmp_path / "voc"
    _photo(root / "images" / "a.png")
    _write(root / "annotations" / "a.XML", _voc_xml("a.png", 200, 100, [("with_mask", (20, 10, 60, 30))]))
    assert [im.path.name for im in load_source(str(root)).images] == ["a.png"]


# ---------------------------------------------------------------- 5. warnings say where
def test_yolo_warnings_name_the_files_lines_and_classes(tmp_path):
    root = _yolo(tmp_path / "set", {
        "a": f"1 {FACE}\n1 0.5 oops 0.1 0.1\n1 0.5\n3 {FACE}\n",
        "b": f"2 {FACE}\n2 {FACE}\n4 {FACE}\n1 0.5 0.5 0 0\n",
    }, names="no_mask\nmask\nface_other_covering\nhat\nsunglasses\n")
    ds = load_source(str(root))
    joined = _joined(ds)
    assert "2 label line(s) malformed" in joined and "labels/a.txt:2" in joined and "labels/a.txt:3" in joined
    assert "face_other_covering (2)" in joined and "hat (1)" in joined and "sunglasses (1)" in joined
    assert "labels/b.txt:4" in joined  # the zero-size box


def test_voc_warnings_name_the_files_and_classes(tmp_path):
    root = tmp_path / "voc"
    _photo(root / "images" / "a.jpg")
    objs = [("face_other_covering", (1, 1, 20, 20))] * 20 + [("hat", (1, 1, 20, 20)), ("with_mask", (5, 5, 5, 9))]
    _write(root / "annotations" / "a.xml", _voc_xml("a.jpg", 200, 100, objs + [("with_mask", (20, 10, 60, 30))]))
    _write(root / "annotations" / "gone.xml", _voc_xml("gone.jpg", 200, 100, [("with_mask", (20, 10, 60, 30))]))
    ds = load_source(str(root))
    joined = _joined(ds)
    assert "21 object(s) with a class name that is not a mask class" in joined
    assert "face_other_covering (20)" in joined and "hat (1)" in joined
    assert "1 annotation file(s) name an image that does not exist" in joined and "gone.xml" in joined
    assert "1 box(es) of zero size or outside the image" in joined and "a.xml" in joined


def test_no_labelled_image_error_says_why(tmp_path):
    """Every label file without its image (images in the wrong folder): the error used to say only 'no labelled
    image found'."""
    root = tmp_path / "set"
    _write(root / "labels" / "a.txt", f"1 {FACE}\n")
    _write(root / "classes.txt", "no_mask\nmask\n")
    _photo(root / "pictures" / "a.jpg")
    with pytest.raises(InputError, match="no labelled image found") as e:
        load_source(str(root))
    assert "without an image" in str(e.value) and "labels/a.txt" in str(e.value)


def test_set_with_faces_of_unknown_classes_only_is_refused_with_the_classes(tmp_path):
    root = tmp_path / "voc"
    _photo(root / "images" / "a.jpg")
    _write(root / "annotations" / "a.xml", _voc_xml("a.jpg", 200, 100, [("helmet", (20, 10, 60, 30))]))
    with pytest.raises(InputError, match="helmet"):
        load_source(str(root))


def test_class_folder_warnings_name_the_files(tmp_path):
    root = tmp_path / "faces"
    _photo(root / "with_mask" / "a.jpg")
    _photo(root / "without_mask" / "b.jpg")
    _write(root / "with_mask" / "notes.txt", "x")
    ds = load_source(str(root))
    assert "skipped 1 file(s) that are not images" in _joined(ds) and "notes.txt" in _joined(ds)


# ---------------------------------------------------------------- 6. files that are not UTF-8
def test_latin1_classes_txt_is_an_input_error_naming_the_file(tmp_path):
    root = _yolo(tmp_path / "set", {"a": f"0 {FACE}\n"}, names=None)
    _write(root / "classes.txt", "sans_masque\navec_masqué\n".encode("latin-1"))
    with pytest.raises(InputError, match="classes.txt") as e:
        load_source(str(root))
    assert "UTF-8" in str(e.value)


def test_latin1_label_file_is_read_and_said(tmp_path):
    root = _yolo(tmp_path / "set", {"a": f"1 {FACE}\n"})
    _write(root / "labels" / "a.txt", f"1 {FACE}\n# visage masqué\n".encode("latin-1"))
    ds = load_source(str(root))
    assert ds.images[0].labels == ["with_mask"]
    assert "labels/a.txt" in _joined(ds) and "UTF-8" in _joined(ds)


def test_latin1_voc_xml_is_read_and_said(tmp_path):
    root = tmp_path / "voc"
    _photo(root / "images" / "a.jpg")
    _write(root / "annotations" / "a.xml", _voc_xml("a.jpg", 200, 100, [("with_mask", (20, 10, 60, 30))])
           .replace("<folder>images</folder>", "<folder>été</folder>").encode("latin-1"))
    ds = load_source(str(root))
    assert ds.images[0].labels == ["with_mask"]
    assert "a.xml" in _joined(ds) and "UTF-8" in _joined(ds)


# ---------------------------------------------------------------- 7. YOLO polygon lines
def test_yolo_polygon_line_becomes_the_box_around_it(tmp_path):
    """A segmentation line (class x1 y1 x2 y2 ...) used to be read as a box from its first four numbers."""
    poly = "1 0.1 0.1 0.3 0.1 0.3 0.3 0.1 0.3"  # a square 0.1..0.3: 40 x 20 px at (20, 10)
    root = _yolo(tmp_path / "set", {"a": poly + "\n", "b": f"1 {FACE} 0.87\n", "c": "1 0.1 0.1 0.3 0.1 0.3 0.3 0.1\n"})
    ds = load_source(str(root))
    by = _by_name(ds)
    assert by["a.jpg"].boxes == [pytest.approx((20, 10, 60, 30))]
    assert by["b.jpg"].boxes == [pytest.approx((20, 10, 60, 30))]  # a 6th field (a confidence) is accepted
    assert by["c.jpg"].boxes == []  # an odd number of coordinates: malformed
    joined = _joined(ds)
    assert "1 polygon" in joined and "labels/a.txt:1" in joined
    assert "1 label line(s) malformed" in joined and "labels/c.txt:1" in joined


def test_unreadable_names_in_data_yaml_are_an_input_error(tmp_path):
    root = _yolo(tmp_path / "set", {"a": f"0 {FACE}\n"}, names="names: mask, no_mask\n", names_file="data.yaml")
    with pytest.raises(InputError, match="data.yaml"):
        load_source(str(root))


def test_yolo_set_of_photos_without_faces_loads(tmp_path):
    """Empty label files: photos with no face (false alarms for evaluate-detection), not an error."""
    root = _yolo(tmp_path / "set", {"a": "", "b": "\n"})
    ds = load_source(str(root))
    assert [im.boxes for im in ds.images] == [[], []] and not ds.warnings


# ---------------------------------------------------------------- 8. images without a label file
def test_yolo_images_without_a_label_file_are_counted_not_loaded(tmp_path):
    root = _yolo(tmp_path / "set", {"a": f"1 {FACE}\n", "empty": ""})
    _photo(root / "images" / "unlabelled.jpg")
    ds = load_source(str(root))
    assert sorted(_by_name(ds)) == ["a.jpg", "empty.jpg"]  # an empty label file: a photo with no faces
    assert _by_name(ds)["empty.jpg"].boxes == []
    assert "1 image(s) have no label file" in _joined(ds) and "unlabelled.jpg" in _joined(ds)


def test_voc_images_without_an_xml_are_counted_not_loaded(tmp_path):
    root = tmp_path / "voc"
    _photo(root / "images" / "a.jpg")
    _photo(root / "images" / "b.jpg")
    _write(root / "annotations" / "a.xml", _voc_xml("a.jpg", 200, 100, [("with_mask", (20, 10, 60, 30))]))
    ds = load_source(str(root))
    assert [im.path.name for im in ds.images] == ["a.jpg"]
    assert "1 image(s) have no annotation file" in _joined(ds) and "b.jpg" in _joined(ds)


# ---------------------------------------------------------------- 9. layouts
@pytest.mark.parametrize("ann, imgs", [("Annotations", "JPEGImages"), ("annotations", "jpegimages"), ("ANNOTATIONS", "Images")])
def test_standard_voc_layout_is_read(tmp_path, ann, imgs):
    root = tmp_path / "VOC2007"
    _photo(root / imgs / "000001.jpg")
    _write(root / ann / "000001.xml", _voc_xml("000001.jpg", 200, 100, [("with_mask", (20, 10, 60, 30))]))
    _write(root / "ImageSets" / "Main" / "train.txt", "000001\n")
    ds = load_source(str(root))
    assert [im.path.name for im in ds.images] == ["000001.jpg"]
    assert not ds.warnings, ds.warnings


def test_ultralytics_mirrored_split_folders_are_read(tmp_path):
    root = tmp_path / "set"
    for split, stem, cls in (("train", "a", 0), ("val", "b", 1)):
        _photo(root / "images" / split / f"{stem}.jpg")
        _write(root / "labels" / split / f"{stem}.txt", f"{cls} {FACE}\n")
    _write(root / "data.yaml", "path: .\ntrain: images/train\nval: images/val\nnames:\n  0: mask\n  1: no_mask\n")
    ds = load_source(str(root))
    by = _by_name(ds)
    assert by["a.jpg"].labels == ["with_mask"] and by["b.jpg"].labels == ["without_mask"]
    assert by["a.jpg"].path == root / "images" / "train" / "a.jpg"
    # one split folder on its own
    only = load_source(str(root / "images" / "val"))
    assert [im.path.name for im in only.images] == ["b.jpg"] and only.images[0].labels == ["without_mask"]


def test_roboflow_split_folders_are_read(tmp_path):
    root = tmp_path / "export"
    for split, stem in (("train", "a"), ("valid", "b"), ("test", "c")):
        _photo(root / split / "images" / f"{stem}.jpg")
        _write(root / split / "labels" / f"{stem}.txt", f"1 {FACE}\n")
    _write(root / "data.yaml", "train: ../train/images\nval: ../valid/images\n\nnc: 2\nnames: ['mask', 'no-mask']\n")
    ds = load_source(str(root))
    assert sorted(_by_name(ds)) == ["a.jpg", "b.jpg", "c.jpg"]
    assert all(im.labels == ["without_mask"] for im in ds.images)
    valid = load_source(str(root / "valid"))  # one split folder on its own: the names come from the folder above
    assert [im.path.name for im in valid.images] == ["b.jpg"] and valid.images[0].labels == ["without_mask"]
    assert "data.yaml" in _joined(valid)


def test_labelimg_yolo_files_beside_the_images_are_read(tmp_path):
    root = tmp_path / "shots"
    _photo(root / "a.jpg")
    _write(root / "a.txt", f"1 {FACE}\n")
    _write(root / "classes.txt", "no_mask\nmask\n")
    ds = load_source(str(root))
    assert [im.path.name for im in ds.images] == ["a.jpg"] and ds.images[0].labels == ["with_mask"]


def test_stray_xml_in_a_class_folder_root_does_not_make_it_a_voc_set(tmp_path):
    root = tmp_path / "faces"
    _photo(root / "with_mask" / "a.jpg")
    _photo(root / "without_mask" / "b.jpg")
    _write(root / "info.xml", "<?xml version='1.0'?><info><source>scraped</source></info>")
    ds = load_source(str(root))
    assert sorted((im.path.name, im.labels[0]) for im in ds.images) == [("a.jpg", "with_mask"), ("b.jpg", "without_mask")]


def test_unrecognised_layout_error_lists_the_accepted_ones(tmp_path):
    root = tmp_path / "stuff"
    _photo(root / "photos" / "a.jpg")
    _write(root / "boxes" / "a.json", "{}")
    with pytest.raises(InputError, match="no class sub-folder") as e:
        load_source(str(root))
    msg = str(e.value)
    assert "photos" in msg
    for layout in ("with_mask/", "annotations/", "JPEGImages/", "labels/", "images/train", "classes.txt", "data.yaml"):
        assert layout in msg, layout


# ---------------------------------------------------------------- 10. class-name spellings
@pytest.mark.parametrize("name, label", [
    ("face_with_mask", "with_mask"), ("face_no_mask", "without_mask"), ("face_with_mask_incorrect", "mask_incorrect"),
    ("correctly masked", "with_mask"), ("with_mask_incorrect", "mask_incorrect"), ("incorrectly masked", "mask_incorrect"),
    ("mask_worn_incorrectly", "mask_incorrect"), ("Mask_Worn_Incorrectly", "mask_incorrect"), ("No-Mask", "without_mask"),
    ("face_without_mask", "without_mask"), ("mask_incorrectly_worn", "mask_incorrect"), ("wearing_mask", "with_mask"),
    ("not_wearing_mask", "without_mask"), ("wearing mask incorrectly", "mask_incorrect"), ("Mask_Chin", "mask_incorrect"),
    ("Mask_Mouth_Chin", "mask_incorrect"), ("Mask_Nose_Mouth", "mask_incorrect"), ("improperly masked", "mask_incorrect"),
    ("with_mask", "with_mask"), ("without_mask", "without_mask"), ("mask_weared_incorrect", "mask_incorrect"),
    ("with_incorrect_mask", "mask_incorrect"), ("rightmask", "with_mask"), ("nomask", "without_mask"), ("wrongmask", "mask_incorrect"),
    # not faces with a mask state: a mask alone, another covering, a generic face
    ("mask_surgical", None), ("mask_colorful", None), ("face_other_covering", None), ("face", None), ("face_mask", None),
    ("hat", None), ("incorrectly masked dog", None), ("with_mask_2", None),
])
def test_class_name_spellings(name, label):
    assert canonical_label(name) == label


INCORRECT = ["face_with_mask_incorrect", "with_mask_incorrect", "incorrectly masked", "mask_worn_incorrectly",
             "mask_weared_incorrect", "with_incorrect_mask", "incorrectly worn", "mask_incorrectly_worn", "improperly worn",
             "incorrect_mask", "wrong_mask", "wearing mask incorrectly", "mask_chin", "mask_nose_mouth", "Incorrectly-Masked",
             "MaskWornIncorrectly", "masked incorrectly", "mask not worn correctly"]


@pytest.mark.parametrize("name", INCORRECT)
def test_an_incorrectly_worn_spelling_never_reads_as_with_mask(name):
    assert canonical_label(name) in ("mask_incorrect", None)
    assert canonical_label(name) != "with_mask"


def test_no_alias_of_with_mask_says_incorrect_or_wrong():
    from maskwatch.datasets import _ALIASES

    for key, label in _ALIASES.items():
        if any(w in key for w in ("incorrect", "wrong", "improper", "chin", "nose", "bad")):
            assert label == "mask_incorrect", key
        if label == "with_mask":
            assert "not" not in key and "no" not in key.replace("nose", ""), key


# ---------------------------------------------------------------- large sets, image headers, splits, classes.txt
def test_voc_set_of_3000_images_loads_in_seconds_and_lookups_are_not_quadratic(tmp_path):
    """Each xml's image used to be looked for by scanning the folder's whole file list: 20,000 images took a minute."""
    import os
    import time

    from maskwatch.datasets import _ImageIndex

    root, n = tmp_path / "voc", 3000
    src = _photo(tmp_path / "one.jpg", 8, 8)
    (root / "images").mkdir(parents=True)
    (root / "annotations").mkdir()
    for i in range(n):
        os.link(src, root / "images" / f"img_{i:05d}.jpg")
        (root / "annotations" / f"img_{i:05d}.xml").write_text(_voc_xml(f"img_{i:05d}.jpg", 8, 8, [("with_mask", (1, 1, 7, 7))]))
    t = time.perf_counter()
    ds = load_source(str(root))
    assert time.perf_counter() - t < 20  # (about 0.3 s; a generous bound for slow machines)
    assert len(ds.images) == n and not ds.warnings, ds.warnings
    index, folder = _ImageIndex(), root / "images"
    index.files(folder)
    t = time.perf_counter()
    for i in range(n):  # exact stems, stems in another case, names in another case
        assert index.find([folder], f"img_{i:05d}") == folder / f"img_{i:05d}.jpg"
        assert index.find([folder], f"IMG_{i:05d}") == folder / f"img_{i:05d}.jpg"
        assert index.find_name([folder], f"IMG_{i:05d}.JPG") == folder / f"img_{i:05d}.jpg"
    assert index.find([folder], "nothing") is None and index.find_name([folder], "nothing.jpg") is None
    assert time.perf_counter() - t < 1.0  # (about 0.02 s; scanning the list for each took several seconds)


def test_image_lookup_keeps_its_order_of_preference(tmp_path):
    """The exact stem before one in another case; then the image suffix order (.jpg before .png), then the name."""
    from maskwatch.datasets import _ImageIndex

    d = tmp_path / "imgs"
    for name in ("b.png", "B.jpg", "b.JPG", "A.png", "c.txt", "D.JPEG", "d.png"):
        _write(d / name, b"x")
    index = _ImageIndex()
    assert index.find([d], "b") == d / "b.JPG"
    assert index.find([d], "B") == d / "B.jpg"
    assert index.find([d], "a") == d / "A.png"
    assert index.find([d], "d") == d / "d.png"  # exact stem first, whatever the suffix
    assert index.find([d], "c") is None
    assert index.find_name([d], "b.jpg") == d / "B.jpg"  # no exact name: the first in another case (by name)
    assert index.find_name([d], "b.JPG") == d / "b.JPG"
    assert index.find_name([d], "d.jpeg") == d / "D.JPEG"
    assert index.find([tmp_path / "none", d], "b") == d / "b.JPG"  # a folder that does not exist: the next one


@pytest.mark.parametrize("ext", [".bmp", ".webp", ".tif", ".png", ".jpg"])
def test_image_sizes_are_read_from_the_header_of_every_format_it_knows(tmp_path, monkeypatch, ext):
    """BMP, WebP, TIFF, ... used to be decoded whole for their size; and every image had 1 MiB read (now 64 KiB,
    unless the header lies further on: OpenCV writes a TIFF's after its pixels)."""
    import maskwatch.dataset_files as files
    from maskwatch import datasets

    w, h = 400, 300
    ok, enc = cv2.imencode(ext, np.random.default_rng(0).integers(0, 255, (h, w, 3), dtype=np.uint8))
    assert ok and 1 << 16 < len(enc) < 1 << 20  # more than the first read
    f = _write(tmp_path / f"p{ext}", enc.tobytes())
    reads: list[int] = []

    class Spy:
        def __init__(self, *a):
            self.f = open(*a)  # noqa: SIM115 (closed in __exit__)

        def __enter__(self):
            return self

        def __exit__(self, *a):
            self.f.close()

        def read(self, n):
            reads.append(n)
            return self.f.read(n)

    monkeypatch.setattr(files, "open", Spy, raising=False)
    monkeypatch.setattr(datasets, "_image_size", lambda p: pytest.fail(f"{p} decoded for its size"))
    size = datasets._upright_size(f)
    assert size is not None and (size.width, size.height, size.orientation) == (w, h, 1)
    assert sum(reads) <= (1 << 20 if ext == ".tif" else 1 << 16), reads


def test_jpeg_size_and_orientation_beyond_the_first_64_kib_are_read(tmp_path):
    """Big metadata blocks (an ICC profile, Photoshop's) before the frame header: read on, up to 1 MiB."""
    from maskwatch.dataset_files import header_size

    jpeg = _tagged_jpeg(np.full((120, 240, 3), 40, np.uint8), 6)
    app2 = b"\xff\xe2" + (65000).to_bytes(2, "big") + b"ICC_PROFILE\x00" + bytes(65000 - 14)
    f = _write(tmp_path / "p.jpg", jpeg[:2] + app2 + app2 + jpeg[2:])  # the EXIF block starts after 128 KiB
    size = header_size(f)
    assert size is not None and (size.width, size.height, size.orientation) == (120, 240, 6)


@pytest.mark.parametrize("layout", ["ultralytics", "roboflow"])
def test_yolo_split_folders_merged_into_one_set_are_said(tmp_path, layout):
    """Like class folders under train/ and test/, split folders of a YOLO set are merged: said, with the parts."""
    root = tmp_path / "set"
    splits = ("train", "val") if layout == "ultralytics" else ("train", "valid", "test")
    for k, split in enumerate(splits):
        where = (root / "images" / split, root / "labels" / split) if layout == "ultralytics" else (
            root / split / "images", root / split / "labels")
        _photo(where[0] / f"{split}.jpg", seed=k)
        _write(where[1] / f"{split}.txt", f"1 {FACE}\n")
    _write(root / "data.yaml", "names: [no_mask, mask]\n")
    ds = load_source(str(root))
    assert len(ds.images) == len(splits)
    msg = [w for w in ds.warnings if "merged into one set" in w]
    assert len(msg) == 1 and "pass each sub-folder on its own" in msg[0], ds.warnings
    parts = [f"labels/{s}" for s in splits] if layout == "ultralytics" else list(splits)
    assert all(p in msg[0] for p in parts), msg
    one = root / "images" / "val" if layout == "ultralytics" else root / "valid"
    assert not [w for w in load_source(str(one)).warnings if "merged into one set" in w]  # one split on its own: nothing to say


def test_classes_txt_with_all_names_on_one_line_is_read_with_a_warning(tmp_path):
    """The old loader split classes.txt on whitespace: 'no_mask mask' on one line was two names."""
    root = _yolo(tmp_path / "set", {"a": f"0 {FACE}\n", "b": f"1 {FACE}\n"}, names="no_mask mask\n")
    ds = load_source(str(root))
    by = _by_name(ds)
    assert by["a.jpg"].labels == ["without_mask"] and by["b.jpg"].labels == ["with_mask"]
    assert "classes.txt holds one line with spaces; read as 2 names: 0=no_mask, 1=mask" in _joined(ds)
    assert "write one name per line" in _joined(ds)


def test_one_class_name_with_a_space_stays_one_name(tmp_path):
    root = _yolo(tmp_path / "set", {"a": f"0 {FACE}\n", "b": f"0 {FACE}\n"}, names="with mask\n")
    ds = load_source(str(root))
    assert all(im.labels == ["with_mask"] for im in ds.images)
    assert not ds.warnings, ds.warnings


# ---------------------------------------------------------------- the shipped scene sets
SHIPPED = {"masks-voc-dev": (408, 1872), "masks-yolo-extra": (244, 958), "ilc-2021": (1561, 3795), "maskdetect-cn": (134, 309)}


@pytest.mark.skipif(not (DATA / "detect").is_dir(), reason="shared data absent")
@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_shipped_scene_sets_load_whole_and_without_warnings(name):
    ds = load_source(str(DATA / "detect" / name))
    assert (len(ds.images), sum(len(im.labels) for im in ds.images)) == SHIPPED[name]
    assert ds.warnings == []
    if name != "masks-yolo-extra":  # each image has the boxes of its own xml, exactly
        im = ds.images[0]
        xml = ET.parse(DATA / "detect" / name / "annotations" / f"{im.path.stem}.xml").getroot()
        want = [tuple(float(o.findtext(f"bndbox/{k}")) for k in ("xmin", "ymin", "xmax", "ymax")) for o in xml.iter("object")]
        assert im.boxes == want
