"""Labelled data sets: class folders, Pascal VOC and YOLO scene sets, read into one list of labelled faces.

Accepted layouts (:data:`LAYOUTS`): class folders (``with_mask/``, ``without_mask/``, ``mask_incorrect/`` or other
spellings, :func:`canonical_label`); Pascal VOC (``annotations/*.xml`` + ``images/``, the standard
``Annotations/`` + ``JPEGImages/``, or the xmls beside the images; an xml is paired with the image of its own name
first, its ``<filename>`` second, and its boxes are clipped to the real, upright image); YOLO (``labels/*.txt`` +
``images/``, Ultralytics' mirrored ``images/train`` + ``labels/train``, Roboflow's ``train/images`` +
``train/labels``, or LabelImg's txt files beside the images), with the class names from ``classes.txt`` (one per
line) or ``data.yaml`` / ``dataset.yaml`` (``names:``). What cannot be read is counted in ``Dataset.warnings``,
with the first few files (and lines, and class names) it happened in.

A source is a path, optionally followed by ``@train``, ``@val`` or ``@test``: a fixed, deterministic split of
the source's images (grouped by perceptual hash, so near-duplicates stay together). ``@test`` is about a
quarter of the images: what models are measured on, never trained or tuned on. ``@val`` is about an eighth,
for early stopping, calibration and choosing thresholds. ``@train`` is the rest (about 5/8): the ``@val``
images are not in it. ``masks-voc-dev@test`` is what the default model is measured on.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from .dataset_files import (
    NAME_FILES,
    YAML_FILES,
    ImageSize,
    Tally,
    header_size,
    names_from_lines,
    read_text,
    read_text_lenient,
    rel,
    stored_to_upright,
    yaml_has_key,
    yaml_names,
    yaml_nc,
)
from .errors import InputError
from .images import HEIF_SUFFIXES, IMAGE_SUFFIXES, load_image

# Class spellings, keyed by the name lower-cased with everything but letters and digits removed. Exact keys only:
# no substring rule, so "incorrectly masked" can never read as "masked" (tests/test_datasets.py checks it).
_ALIASES = {
    "withmask": "with_mask", "mask": "with_mask", "masked": "with_mask", "good": "with_mask",
    "withoutmask": "without_mask", "nomask": "without_mask", "unmasked": "without_mask", "bare": "without_mask",
    "maskwearedincorrect": "mask_incorrect", "maskwornincorrect": "mask_incorrect", "maskincorrect": "mask_incorrect",
    "incorrectmask": "mask_incorrect", "incorrect": "mask_incorrect",
    "maskwornincorrectly": "mask_incorrect", "improperlyworn": "mask_incorrect", "bad": "mask_incorrect",
    "withincorrectmask": "mask_incorrect", "wrongmask": "mask_incorrect", "rightmask": "with_mask",  # ilc-2021, maskdetect-cn
    "incorrectlyworn": "mask_incorrect", "wornincorrectly": "mask_incorrect",
    # Kaggle "Face Mask Detection" (medical masks, wobot): face_with_mask, face_no_mask, face_with_mask_incorrect
    # (its face_other_covering, mask_surgical, mask_colorful, hat ... are not faces with a mask state: unknown)
    "facewithmask": "with_mask", "facenomask": "without_mask", "facewithoutmask": "without_mask",
    "facewithmaskincorrect": "mask_incorrect", "facewithincorrectmask": "mask_incorrect",
    # MaskedFace-Net (correctly / incorrectly masked faces; its incorrect kinds Mask_Chin, Mask_Mouth_Chin, Mask_Nose_Mouth)
    "correctlymasked": "with_mask", "correctlymaskedface": "with_mask", "cmfd": "with_mask",
    "incorrectlymasked": "mask_incorrect", "incorrectlymaskedface": "mask_incorrect", "imfd": "mask_incorrect",
    "maskchin": "mask_incorrect", "maskmouthchin": "mask_incorrect", "masknosemouth": "mask_incorrect",
    # other spellings seen in public sets and tools (Roboflow, FSOFT "wearing masks incorrectly", ...)
    "withmaskincorrect": "mask_incorrect", "withmaskincorrectly": "mask_incorrect", "maskedincorrectly": "mask_incorrect",
    "maskincorrectlyworn": "mask_incorrect", "incorrectlywornmask": "mask_incorrect", "maskwearincorrect": "mask_incorrect",
    "wearingmaskincorrectly": "mask_incorrect", "wearingmasksincorrectly": "mask_incorrect", "maskwrong": "mask_incorrect",
    "improperlymasked": "mask_incorrect", "impropermask": "mask_incorrect", "maskimproper": "mask_incorrect",
    "improperlywornmask": "mask_incorrect", "maskimproperlyworn": "mask_incorrect", "maskworncorrectly": "with_mask",
    "correctmask": "with_mask", "maskcorrect": "with_mask", "wearingmask": "with_mask", "wearingmasks": "with_mask",
    "withmasks": "with_mask", "maskon": "with_mask",
    "notwearingmask": "without_mask", "notwearingmasks": "without_mask", "withoutmasks": "without_mask",
    "nomasks": "without_mask", "maskoff": "without_mask",
}
# (No "0" / "1": which of them is masked is a guess; such folders are named in a warning instead. No "face_mask" /
# "facemask" either: a folder of that name is as often a whole data set (datasets/face_mask/) as a class.)
LAYOUTS = (
    "class folders (with_mask/, without_mask/, mask_incorrect/, or spellings like WithMask, no_mask, "
    "mask_weared_incorrect); Pascal VOC (annotations/*.xml + images/, Annotations/ + JPEGImages/, or the xmls beside "
    "the images); YOLO (labels/*.txt + images/, mirrored images/train + labels/train, train/images + train/labels, or "
    "the txt files beside the images; class names in classes.txt, one per line, or data.yaml names: [...])"
)
SPLIT_BUCKETS = 8  # a group's bucket is crc32(group) % 8: @test = buckets 0 and 4 (crc32 % 4 == 0, about 25 %),
VAL_BUCKET = 1  # @val = bucket 1 (about 12.5 %), @train = every other bucket (about 62.5 %)
SPLITS = ("train", "val", "test")


def split_of(group: str) -> str:
    """'train', 'val' or 'test': the fixed split an image group belongs to."""
    bucket = zlib.crc32(group.encode()) % SPLIT_BUCKETS
    return "test" if bucket % 4 == 0 else "val" if bucket == VAL_BUCKET else "train"


def canonical_label(name: str) -> str | None:
    """Map a class spelling (``WithMask``, ``mask_weared_incorrect``, ``no_mask`` ...) to a maskwatch label, or None."""
    key = re.sub(r"[^a-z0-9]", "", name.lower())
    return _ALIASES.get(key)


@dataclass
class LabelledImage:
    """One image with its faces: boxes xyxy in pixels (None = the whole image is one face crop) and labels."""

    path: Path
    boxes: list[tuple[float, float, float, float] | None]
    labels: list[str]  # maskwatch labels (canonical_label): files whose class is unknown are not loaded
    source: str = ""
    group: str = ""


@dataclass
class Dataset:
    images: list[LabelledImage] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for im in self.images:
            for lab in im.labels:
                out[lab] = out.get(lab, 0) + 1
        return out


def load_source(spec: str) -> Dataset:
    """Read one source spec (``PATH`` or ``PATH@train`` / ``PATH@test``)."""
    path, _, fold = spec.partition("@") if "@" in Path(spec).name else (spec, "", "")
    if fold not in ("", *SPLITS):
        raise InputError(f"{spec}: unknown split '@{fold}'; use PATH, PATH@train, PATH@val or PATH@test")
    root = Path(path)
    if not root.exists():
        raise InputError(f"{root}: no such folder; check the path")
    if not root.is_dir():
        raise InputError(f"{root}: is a file; a data set is a folder of class sub-folders, or a VOC or YOLO scene set")
    kind = detect_kind(root)
    ds = {"voc": _load_voc, "yolo": _load_yolo, "folders": _load_folders}[kind](root)
    for im in ds.images:
        im.source = str(root)
    if not ds.images:
        raise InputError(f"{spec}: no labelled image found" + (": " + "; ".join(ds.warnings) if ds.warnings else ""))
    if fold:
        n = len(ds.images)
        assign_groups(ds.images)
        ds.images = [im for im in ds.images if split_of(im.group) == fold]
        if not ds.images:
            raise InputError(f"{spec}: no labelled image found in @{fold} (the whole set has {n} image(s); the split "
                             "is by near-duplicate groups, so a very small set can leave one split empty)")
    return ds


def iter_images(images: list[LabelledImage], skipped: list[str],
                progress: Callable[[int], None] | None = None) -> Iterator[tuple[LabelledImage, np.ndarray]]:
    """Each labelled image with its pixels (BGR uint8, upright), in order. An image that cannot be read is left out
    and its message appended to ``skipped``; ``progress(1)`` is called for every image, read or not."""
    for im in images:
        if progress:
            progress(1)
        try:
            img = load_image(im.path)
        except InputError as e:
            skipped.append(str(e))
            continue
        yield im, img


def load_sources(specs: list[str]) -> Dataset:
    out = Dataset()
    for spec in specs:
        ds = load_source(spec)
        out.images += ds.images
        out.warnings += ds.warnings
    return out


def detect_kind(root: Path) -> str:
    """'voc', 'yolo' or 'folders' (class folders, also what is tried when no scene layout is found)."""
    if _voc_layout(root) is not None:
        return "voc"
    if _yolo_parts(root):
        return "yolo"
    return "folders"


# ---------------------------------------------------------------- finding files
_ANNOTATION_DIRS = ("annotations", "annotation", "xml", "xmls")
_IMAGE_DIRS = ("images", "jpegimages", "imgs", "img")


def _child_dirs(root: Path, names: tuple[str, ...]) -> list[Path]:
    """Sub-folders of ``root`` whose name, in any case, is one of ``names`` (in that order)."""
    try:
        subs = [d for d in root.iterdir() if d.is_dir()]
    except OSError:
        return []
    return [d for n in names for d in sorted(subs) if d.name.lower() == n]


def _is_image(f: Path) -> bool:
    return f.suffix.lower() in IMAGE_SUFFIXES


class _ImageIndex:
    """Image files by folder, found whatever the case of their suffix (``x.JPG``) or, failing that, of their name.
    Each folder is listed once, into look-up tables by stem and by name (exact and casefolded), each keeping the
    first file in the folder's order (image suffix, then name)."""

    def __init__(self) -> None:
        self._dirs: dict[Path, list[Path]] = {}
        self._tables: dict[Path, tuple[dict[str, Path], dict[str, Path], dict[str, Path], dict[str, Path]]] = {}

    def files(self, folder: Path) -> list[Path]:
        if folder not in self._dirs:
            try:
                self._dirs[folder] = sorted((f for f in folder.iterdir() if _is_image(f) and f.is_file()),
                                            key=lambda f: (IMAGE_SUFFIXES.index(f.suffix.lower()), f.name))
            except OSError:
                self._dirs[folder] = []
        return self._dirs[folder]

    def _table(self, folder: Path) -> tuple[dict[str, Path], dict[str, Path], dict[str, Path], dict[str, Path]]:
        """(stem, casefolded stem, name, casefolded name) -> the first such file of ``folder``."""
        if folder not in self._tables:
            stems: dict[str, Path] = {}
            fstems: dict[str, Path] = {}
            names: dict[str, Path] = {}
            fnames: dict[str, Path] = {}
            for f in self.files(folder):
                stems.setdefault(f.stem, f)
                fstems.setdefault(f.stem.casefold(), f)
                names.setdefault(f.name, f)
                fnames.setdefault(f.name.casefold(), f)
            self._tables[folder] = (stems, fstems, names, fnames)
        return self._tables[folder]

    def find(self, folders: list[Path], stem: str) -> Path | None:
        """The image named ``stem`` + an image suffix: the first folder that has one; the exact name before one in
        another case."""
        for folder in folders:
            stems, fstems, _, _ = self._table(folder)
            hit = stems.get(stem) or fstems.get(stem.casefold())
            if hit:
                return hit
        return None

    def find_name(self, folders: list[Path], name: str) -> Path | None:
        """The image file called ``name`` (any case)."""
        for folder in folders:
            _, _, names, fnames = self._table(folder)
            hit = names.get(name) or fnames.get(name.casefold())
            if hit:
                return hit
        return None


def _unique(paths: list[Path]) -> list[Path]:
    out: list[Path] = []
    for p in paths:
        if p not in out:
            out.append(p)
    return out


def _unlabelled(folders: list[tuple[Path, bool]], used: set[Path]) -> Tally:
    """Images in ``folders`` ((folder, recursive)) that no annotation or label file was paired with."""
    t = Tally()
    seen: set[Path] = set()
    for folder, recursive in folders:
        files = folder.rglob("*") if recursive else folder.iterdir()
        for f in sorted(files):
            if f not in seen and f not in used and _is_image(f) and f.is_file():
                seen.add(f)
                t.add(str(f))
    return t


def _unlabelled_warning(root: Path, t: Tally, what: str, empty: str) -> str:
    return (f"{root}: {t.n} image(s) have no {what}; left out (maskwatch reads a photo without labels as unlabelled, "
            f"not as 'no faces'; to count one as a photo with no faces, give it {empty}): "
            + ", ".join(rel(Path(w), root) for w in t.where) + (", ..." if t.more else ""))


# ---------------------------------------------------------------- class folders
def _load_folders(root: Path) -> Dataset:
    ds = Dataset()
    class_dirs = [d for d in sorted(root.rglob("*")) if d.is_dir() and canonical_label(d.name)]
    if canonical_label(root.name):
        class_dirs.insert(0, root)
    if not class_dirs:
        subs = ", ".join(sorted(d.name for d in root.iterdir() if d.is_dir())[:8]) or "none"
        raise InputError(
            f"{root}: no class sub-folder found (sub-folders: {subs}), and no VOC or YOLO scene set either. "
            f"Accepted layouts: {LAYOUTS}"
        )
    parents = sorted({str(d.parent.relative_to(root)) if d != root else "." for d in class_dirs})
    if len(parents) > 1:
        ds.warnings.append(f"{root}: class folders found under several sub-folders ({', '.join(parents[:6])}); all are "
                           "merged into one set. To keep splits apart (train/ test/), pass each sub-folder on its own")
    known = set(class_dirs)

    def others(folder: Path) -> list[Path]:  # sub-folders of ``folder`` that are no class folder and hold none
        return [x for x in sorted(folder.iterdir()) if x.is_dir() and x not in known and not x.name.startswith(".")
                and not any(k.is_relative_to(x) for k in known)]

    def images(folder: Path) -> int:
        return sum(1 for f in folder.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)

    for parent in sorted({d.parent for d in class_dirs if d != root}):  # a sibling of a class folder: said, not dropped
        for other in others(parent):
            n = images(other)
            if n:
                ds.warnings.append(f"{other}: left out {n} image(s): '{other.name}' is not a class maskwatch knows "
                                   "(with_mask, without_mask, mask_incorrect, or spellings like no_mask, "
                                   "mask_weared_incorrect); rename the folder to train on it")
    for d in class_dirs:  # images a level deeper than a class folder (with_mask/2021/): said, not dropped in silence
        deeper = others(d)
        n = sum(images(x) for x in deeper)
        if n:
            ds.warnings.append(f"{d}: left out {n} image(s) in its sub-folder(s) {', '.join(x.name + '/' for x in deeper[:4])}: "
                               "a class folder's images are read from the folder itself; move them up to train on them")
    skipped = Tally()
    for d in class_dirs:
        label = canonical_label(d.name)
        for f in sorted(d.iterdir()):
            if not f.is_file():
                continue
            if f.suffix.lower() not in IMAGE_SUFFIXES:
                skipped.add(rel(f, root))
                continue
            ds.images.append(LabelledImage(f, [None], [str(label)]))
    if skipped:
        ds.warnings.append(f"{root}: skipped {skipped.n} file(s) that are not images ({skipped.places()})")
    if not ds.images:
        raise InputError(f"{root}: the class folders ({', '.join(d.name for d in class_dirs)}) hold no image")
    return ds


# ---------------------------------------------------------------- Pascal VOC
@dataclass
class _VocLayout:
    xmls: list[Path]
    annotations: Path  # the folder the xmls are in (or under)
    image_dirs: list[Path]  # where an xml's image is looked for, in order
    scan: list[tuple[Path, bool]]  # (folder, recursive): where images without an xml are counted


def _is_voc_xml(path: Path) -> bool:
    """Whether the file's root element is a Pascal VOC <annotation> (not, say, a stray info.xml)."""
    try:
        for _, el in ET.iterparse(path, events=("start",)):
            return el.tag == "annotation"
    except (ET.ParseError, OSError, UnicodeDecodeError):
        return False
    return False


def _xml_files(folder: Path, recursive: bool = False) -> list[Path]:
    files = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(f for f in files if f.suffix.lower() == ".xml" and f.is_file())


def _voc_layout(root: Path) -> _VocLayout | None:
    image_dirs = _child_dirs(root, _IMAGE_DIRS)
    for ann in _child_dirs(root, _ANNOTATION_DIRS):  # annotations/ (any case) + images/ or JPEGImages/
        xmls = _xml_files(ann) or _xml_files(ann, recursive=True)  # sub-folders mirrored in the image folder
        if xmls:
            return _VocLayout(xmls, ann, [*image_dirs, root], [(d, True) for d in image_dirs] or [(root, False)])
    xmls = _xml_files(root)  # the xmls beside the images
    if any(_is_voc_xml(x) for x in xmls):
        return _VocLayout(xmls, root, [root, *image_dirs], [(root, False), *((d, True) for d in image_dirs)])
    return None


def _parse_xml(x: Path) -> tuple[ET.Element | None, str | None, bool]:
    """(root element, error, read as Latin-1): an xml that is not UTF-8 and declares no encoding is read as Latin-1
    (Windows tools write such files)."""
    try:
        return ET.parse(x).getroot(), None, False
    except ET.ParseError as e:
        data = x.read_bytes()
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:
            if b"encoding=" not in data[:200]:
                try:
                    return ET.fromstring(data.decode("latin-1")), None, True
                except ET.ParseError:
                    pass
        return None, str(e), False


def _xml_number(text: str | None) -> tuple[float | None, str | None]:
    """(value, the text when it is not a plain number) of a <size> field; (None, None) when absent or 0."""
    t = (text or "").strip()
    if not t:
        return None, None
    try:
        v = float(t)
    except ValueError:
        return None, t
    return (v, None) if v > 0 else (None, None)


def _load_voc(root: Path) -> Dataset:
    ds = Dataset()
    layout = _voc_layout(root)
    if layout is None:  # detect_kind said VOC
        return ds
    index = _ImageIndex()
    not_xml, not_voc, latin, missing, by_filename, other_name, dup = (Tally() for _ in range(7))
    paired: list[tuple[Path, ET.Element, Path]] = []
    for x in layout.xmls:
        tree, err, was_latin = _parse_xml(x)
        if tree is None:
            not_xml.add(f"{rel(x, root)} ({err})")
            continue
        if tree.tag != "annotation":
            not_voc.add(f"{rel(x, root)} <{tree.tag}>")
            continue
        if was_latin:
            latin.add(rel(x, root))
        sub = x.parent.relative_to(layout.annotations)
        dirs = _unique([*(d / sub for d in layout.image_dirs if sub != Path(".")), *layout.image_dirs, x.parent])
        hint = re.split(r"[\\/]", (tree.findtext("filename") or "").strip())[-1]
        img = index.find(dirs, x.stem)
        if img is not None:
            if hint and Path(hint).stem.casefold() != x.stem.casefold():
                other_name.add(f"{rel(x, root)} says {hint}, used {rel(img, root)}")
        elif hint and (img := index.find_name(dirs, hint) or index.find(dirs, Path(hint).stem)) is not None:
            by_filename.add(f"{rel(x, root)} -> {rel(img, root)}")
        else:
            missing.add(rel(x, root) + (f" ({hint})" if hint else ""))
            continue
        paired.append((x, tree, img))
    # one image, several xmls: keep the xml named like the image
    by_image: dict[Path, list[Path]] = {}
    for x, _, img in paired:
        by_image.setdefault(img, []).append(x)
    keep: set[Path] = set()
    for img, xs in by_image.items():
        best = next((x for x in xs if x.stem == img.stem), None) or next(
            (x for x in xs if x.stem.casefold() == img.stem.casefold()), xs[0])
        keep.add(best)
        if len(xs) > 1:
            dup.add(f"{rel(img, root)}: {', '.join(rel(x, root) for x in xs)}; used {rel(best, root)}")
    bad_size, turned, odd_size, unsure, bad_boxes, unknown = (Tally() for _ in range(6))
    for x, tree, img in paired:
        if x not in keep:
            continue
        real = _upright_size(img)
        (xw, wtext), (xh, htext) = _xml_number(tree.findtext("size/width")), _xml_number(tree.findtext("size/height"))
        if wtext or htext:
            odd_size.add(f"{rel(x, root)}: {wtext or htext!r}")
        turn = 0
        if real is None:  # unreadable (counted when its pixels are read); the xml's size, as before
            w, h = xw or 0.0, xh or 0.0
        else:
            w, h = float(real.width), float(real.height)
            o = real.orientation
            if xw and xh and (xw, xh) != (w, h):
                if o in (5, 6, 7, 8) and (xw, xh) == (real.stored_width, real.stored_height):
                    turn = o  # boxed on the stored pixels by a tool that ignores the EXIF tag
                    turned.add(f"{rel(img, root)} (orientation {o})")
                else:
                    bad_size.add(f"{rel(x, root)}: {xw:g}x{xh:g}, image {real.width}x{real.height}")
            elif o != 1 and (o in (2, 3, 4) or w == h or not (xw and xh)):
                unsure.add(f"{rel(img, root)} (orientation {o})")
        boxes: list[tuple[float, float, float, float] | None] = []
        labels: list[str] = []
        for k, obj in enumerate(tree.iter("object"), 1):
            name = (obj.findtext("name") or "").strip()
            label = canonical_label(name)
            if label is None:
                unknown.add(rel(x, root), name or "(no name)")
                continue
            try:
                b = [float(obj.findtext(f"bndbox/{c}") or "") for c in ("xmin", "ymin", "xmax", "ymax")]
            except (TypeError, ValueError):
                bad_boxes.add(f"{rel(x, root)} object {k}")
                continue
            if turn and real is not None:
                b = list(stored_to_upright((b[0], b[1], b[2], b[3]), turn, real.stored_width, real.stored_height))
            box = _clip_box(b, w, h)
            if box is None:
                bad_boxes.add(f"{rel(x, root)} object {k}")
                continue
            boxes.append(box)
            labels.append(label)
        ds.images.append(LabelledImage(img, boxes, labels))
    warn = ds.warnings.append
    if not_xml:
        warn(f"{root}: {not_xml.n} file(s) not valid XML; skipped ({not_xml.places()})")
    if not_voc:
        warn(f"{root}: {not_voc.n} xml file(s) that are not Pascal VOC annotations (no <annotation> root); skipped "
                  f"({not_voc.places()})")
    if latin:
        warn(f"{root}: {latin.n} xml file(s) not UTF-8 and without an encoding declaration; read as Latin-1 "
                  f"({latin.places()})")
    if missing:
        warn(f"{root}: {missing.n} annotation file(s) name an image that does not exist ({missing.places()}); "
                  "skipped. An xml is paired with the image of its own name, else the one its <filename> names")
    if other_name:
        warn(f"{root}: {other_name.n} annotation file(s) whose <filename> names another image than the xml's own "
                  f"name; paired by name ({other_name.places()})")
    if by_filename:
        warn(f"{root}: {by_filename.n} annotation file(s) have no image of their own name; paired with the image "
                  f"their <filename> names ({by_filename.places()})")
    if dup:
        warn(f"{root}: {dup.n} image(s) have more than one annotation file; each is read once, from one of them "
                  f"({dup.places()})")
    if odd_size:
        warn(f"{root}: {odd_size.n} annotation file(s) with a <size> that is not a number ({odd_size.places()}); "
                  "the image's own size was used")
    if turned:
        warn(f"{root}: {turned.n} photo(s) carry an EXIF rotation and their xml gives the size of the stored "
                  "pixels: the boxes were drawn on the unrotated photo and have been turned to the upright one "
                  f"({turned.places()})")
    if unsure:
        warn(f"{root}: {unsure.n} photo(s) carry an EXIF orientation tag whose effect the xml's <size> cannot "
                  "show (a flip, a half turn, a square photo or no <size>); their boxes are read as drawn on the "
                  f"upright photo, as viewers and maskwatch show it ({unsure.places()})")
    if bad_size:
        warn(f"{root}: {bad_size.n} annotation file(s) give a <size> other than the image's "
                  f"({bad_size.places()}); the boxes are read as pixels of the image as it is, clipped to it")
    if bad_boxes:
        warn(f"{root}: {bad_boxes.n} box(es) of zero size or outside the image ({bad_boxes.places()}); skipped")
    if unknown:
        warn(f"{root}: {unknown.n} object(s) with a class name that is not a mask class: {unknown.kinds_text()} "
                  f"({unknown.places()}); skipped")
    unlabelled = _unlabelled(layout.scan, {img for _, _, img in paired})
    if unlabelled:
        warn(_unlabelled_warning(root, unlabelled, "annotation file", "an xml with no <object>"))
    _refuse_if_no_face_was_usable(root, ds, unknown.n + bad_boxes.n)
    return ds


def _refuse_if_no_face_was_usable(root: Path, ds: Dataset, n_skipped: int) -> None:
    """Faces were annotated but none could be used (all of unknown classes, say): an error with the reasons, not an
    empty evaluation. (Photos whose files list no face at all are a valid set of photos without faces.)"""
    if ds.images and n_skipped and not any(im.labels for im in ds.images):
        raise InputError(f"{root}: no labelled face found in its {len(ds.images)} image(s): " + "; ".join(ds.warnings))


def _upright_size(path: Path) -> ImageSize | None:
    """The image's size as loaded (upright) and as stored, from the header (JPEG, PNG, BMP, WebP, TIFF, ...) or, for
    a format whose header is not read, by decoding it."""
    size = header_size(path)
    if size is not None:
        return size
    wh = _image_size(path)
    return ImageSize(wh[0], wh[1], 1, wh[0], wh[1]) if wh else None


# ---------------------------------------------------------------- YOLO
@dataclass
class _YoloPart:
    labels: Path  # a folder of label files (searched recursively unless flat)
    images: Path  # its mirror: labels/a/b.txt <-> images/a/b.jpg
    flat: bool = False  # LabelImg: the txt files beside the images
    own_images: bool = True  # ``images`` is a folder of images only (searched recursively for unlabelled ones)


def _label_files(folder: Path, recursive: bool = True) -> list[Path]:
    skip = {n.lower() for n in NAME_FILES}
    files = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(f for f in files if f.suffix.lower() == ".txt" and f.name.lower() not in skip and f.is_file())


def _yolo_parts(root: Path) -> list[_YoloPart]:
    for anc in [root, *root.parents][:3]:  # a split folder passed on its own: set/images/val -> set/labels/val
        if anc.name.lower() == "images":
            for lab in _child_dirs(anc.parent, ("labels",)):
                mirror = lab / root.relative_to(anc)
                if mirror.is_dir() and _label_files(mirror):
                    return [_YoloPart(mirror, root)]
            break
    parts = []
    for base in [root, *sorted(d for d in root.iterdir() if d.is_dir() and d.name.lower() not in ("labels", "images"))]:
        for lab in _child_dirs(base, ("labels",)):  # labels/ + images/; Roboflow: train/labels + train/images
            if _label_files(lab):
                imgs = _child_dirs(base, _IMAGE_DIRS)
                parts.append(_YoloPart(lab, imgs[0], own_images=True) if imgs else _YoloPart(lab, base, own_images=False))
    if parts:
        return parts
    if any(_names_file_in(root)):  # LabelImg: a.jpg + a.txt + classes.txt in one folder
        index = _ImageIndex()
        if any(index.find([root], t.stem) for t in _label_files(root, recursive=False)):
            return [_YoloPart(root, root, flat=True, own_images=False)]
    return []


_SPLIT_NAMES = ("train", "training", "val", "valid", "validation", "test", "testing", "dev", "eval")


def _split_parts(root: Path, parts: list[_YoloPart]) -> list[str]:
    """The split folders (train/ val/ test/ ...) that ``parts`` merge: Roboflow's train/labels, valid/labels, ...
    and Ultralytics' labels/train, labels/val, ... (relative to ``root``)."""
    found: list[str] = []
    for part in parts:
        if part.flat:
            continue
        if part.labels.parent != root and part.labels.parent.name.lower() in _SPLIT_NAMES:
            found.append(rel(part.labels.parent, root))
            continue
        try:
            subs = sorted(d for d in part.labels.iterdir() if d.is_dir() and d.name.lower() in _SPLIT_NAMES)
        except OSError:
            continue
        found += [rel(d, root) for d in subs if _label_files(d)]
    return found


def _names_file_in(folder: Path) -> list[Path]:
    try:
        files = {f.name.lower(): f for f in folder.iterdir() if f.is_file()}
    except OSError:
        return []
    return [files[n] for n in (*NAME_FILES, *YAML_FILES) if n in files]


def _yolo_names(root: Path, parts: list[_YoloPart]) -> tuple[dict[int, str], bool, list[str]]:
    """(class id -> name, whether the lines carry keypoints after the box (a pose set), warnings). Looked for in
    the set's folder, its label folders and (for a split folder passed on its own) the folders above."""
    folders = _unique([root, *(p.labels for p in parts), *(p.labels.parent for p in parts), root.parent,
                       root.parent.parent])
    found = [f for d in folders for f in _names_file_in(d)]
    txt = next((f for f in found if f.name.lower() in NAME_FILES), None)
    yml = None
    ynames: dict[int, str] | None = None
    pose = False
    for f in (f for f in found if f.name.lower() in YAML_FILES):
        text = read_text(f, "data set file")
        try:
            ynames = yaml_names(text)
        except ValueError as e:
            if txt is None:
                raise InputError(f"{f}: its class names cannot be read ({e}); write them as names: [no_mask, mask] "
                                 "(class 0 first), or one per line in classes.txt") from None
            continue
        if ynames is not None:
            yml, pose = f, yaml_has_key(text, "kpt_shape")
            nc = yaml_nc(text)
            break
    warnings: list[str] = []
    if txt is not None:
        names = names_from_lines(read_text(txt, "class-name file"))
        source = txt
        words = names[0].split() if len(names) == 1 else []
        ids = _class_ids_used(parts) if len(words) > 1 else set()
        if ids - {0} and max(ids) < len(words):  # 'no_mask mask' on one line, as the old loader read it
            names = dict(enumerate(words))
            warnings.append(f"{root}: {rel(txt, root)} holds one line with spaces; read as {len(words)} names: "
                            f"{_names_text(names)} (its label files use class ids {', '.join(map(str, sorted(ids)[:6]))}); "
                            "write one name per line")
        if ynames is not None and yml is not None and (
                {i: canonical_label(n) for i, n in ynames.items()} != {i: canonical_label(n) for i, n in names.items()}):
            warnings.append(f"{root}: {rel(txt, root)} and {rel(yml, root)} give different class names "
                            f"({_names_text(names)} / {_names_text(ynames)}); {txt.name} was used")
    elif ynames is not None and yml is not None:
        names, source = ynames, yml
        if nc is not None and nc != len(names):
            warnings.append(f"{root}: {rel(yml, root)} says nc: {nc} but names {len(names)} class(es)")
    else:
        raise InputError(
            f"{root}: a YOLO set without class names: its label files give class ids only, and which one is a masked "
            "face is not guessed. Add classes.txt beside labels/ with one name per line (line 1 = class 0), or a "
            "data.yaml with names: [...]; for the ids of masks-yolo-extra and adityap27's set, classes.txt is "
            "'no_mask' then 'mask'")
    if not names:
        raise InputError(f"{source}: names no class; write one class name per line (line 1 = class 0)")
    if not source.parent.is_relative_to(root) and not any(source.parent == p.labels for p in parts):
        warnings.append(f"{root}: class names read from {source} (above the folder given)")
    if not any(canonical_label(n) for n in names.values()):
        warnings.append(f"{root}: none of the class names in {rel(source, root)} ({_names_text(names)}) is a mask "
                        "class maskwatch knows (with_mask, without_mask, mask_incorrect, or spellings like no_mask)")
    return names, pose, warnings


def _class_ids_used(parts: list[_YoloPart]) -> set[int]:
    """The class ids the label files of ``parts`` use (the first field of their lines)."""
    ids: set[int] = set()
    for part in parts:
        for t in _label_files(part.labels, recursive=not part.flat):
            for line in read_text_lenient(t)[0].splitlines():
                fields = line.split()
                c = _class_id(fields[0]) if fields else None
                if c is not None and c >= 0:
                    ids.add(c)
    return ids


def _names_text(names: dict[int, str]) -> str:
    return ", ".join(f"{i}={n}" for i, n in sorted(names.items())[:6]) + (", ..." if len(names) > 6 else "")


def _class_id(text: str) -> int | None:
    try:
        return int(text)
    except ValueError:
        try:
            v = float(text)
        except ValueError:
            return None
        return int(v) if v.is_integer() else None


def _load_yolo(root: Path) -> Dataset:
    ds = Dataset()
    parts = _yolo_parts(root)
    names, pose, name_warnings = _yolo_names(root, parts)
    id_to_label = {i: canonical_label(n) for i, n in names.items()}
    index = _ImageIndex()
    missing, dup, unreadable, latin, malformed, polygons, unknown_id, unknown, bad = (Tally() for _ in range(9))
    used: dict[Path, Path] = {}
    scan: list[tuple[Path, bool]] = []
    for part in parts:
        scan.append((part.images, part.own_images))
        for t in _label_files(part.labels, recursive=not part.flat):
            sub = t.parent.relative_to(part.labels)
            img = index.find(_unique([part.images / sub, part.labels.parent / sub]) if not part.flat else [root], t.stem)
            if img is None:
                if not part.flat:  # beside the images, a txt without an image is some other text file
                    missing.add(rel(t, root))
                continue
            if img in used:
                dup.add(f"{rel(img, root)}: {rel(used[img], root)}, {rel(t, root)}; used {rel(used[img], root)}")
                continue
            used[img] = t
            size = _image_size(img)
            if size is None:
                unreadable.add(rel(img, root))
                continue
            w, h = size
            text, utf8 = read_text_lenient(t)
            if not utf8:
                latin.add(rel(t, root))
            boxes: list[tuple[float, float, float, float] | None] = []
            labels: list[str] = []
            for ln, line in enumerate(text.splitlines(), 1):
                fields = line.split()
                if not fields:
                    continue
                where = f"{rel(t, root)}:{ln}"
                c = _class_id(fields[0])
                try:
                    nums = [float(v) for v in fields[1:]]
                except ValueError:
                    nums = []
                if c is None or len(nums) < 4:
                    malformed.add(where)
                    continue
                if pose or len(nums) in (4, 5):  # class cx cy w h [confidence | keypoints]
                    cx, cy, bw, bh = nums[:4]
                    b = [(cx - bw / 2) * w, (cy - bh / 2) * h, (cx + bw / 2) * w, (cy + bh / 2) * h]
                elif len(nums) % 2 == 0:  # a polygon (segmentation): class x1 y1 x2 y2 x3 y3 ...
                    xs, ys = nums[0::2], nums[1::2]
                    b = [min(xs) * w, min(ys) * h, max(xs) * w, max(ys) * h]
                    polygons.add(where)
                else:
                    malformed.add(where)
                    continue
                if c not in names:
                    unknown_id.add(where, str(c))
                    continue
                label = id_to_label[c]
                if label is None:
                    unknown.add(where, names[c])
                    continue
                box = _clip_box(b, w, h)
                if box is None:
                    bad.add(where)
                    continue
                boxes.append(box)
                labels.append(label)
            ds.images.append(LabelledImage(img, boxes, labels))
    ds.warnings += name_warnings
    warn = ds.warnings.append
    splits = _split_parts(root, parts)
    if len(splits) > 1:
        warn(f"{root}: label files found under several split folders ({', '.join(splits[:6])}); all are merged into "
             "one set. To keep splits apart (train/ test/), pass each sub-folder on its own")
    if missing:
        warn(f"{root}: {missing.n} label file(s) without an image; skipped ({missing.places()}). The image of "
                  "labels/a.txt is images/a.jpg (any image suffix, any case), or a.jpg beside labels/")
    if dup:
        warn(f"{root}: {dup.n} image(s) with more than one label file ({dup.places()})")
    if unreadable:
        warn(f"{root}: {unreadable.n} image(s) not readable; skipped ({unreadable.places()})")
    if latin:
        warn(f"{root}: {latin.n} label file(s) not UTF-8 text; read with the undecodable bytes replaced "
                  f"({latin.places()})")
    if malformed:
        warn(f"{root}: {malformed.n} label line(s) malformed ({malformed.places()}); skipped. A line is "
                  "'class cx cy w h' (normalised 0..1), optionally a confidence, or 'class x1 y1 x2 y2 ...' (a polygon)")
    if polygons:
        warn(f"{root}: {polygons.n} polygon (segmentation) line(s) read as the box around the polygon "
                  f"({polygons.places()})")
    if unknown_id:
        warn(f"{root}: {unknown_id.n} label line(s) of a class id the class names do not name: "
                  f"{unknown_id.kinds_text()} ({unknown_id.places()}); skipped")
    if unknown:
        warn(f"{root}: {unknown.n} object(s) with a class name that is not a mask class: {unknown.kinds_text()} "
                  f"({unknown.places()}); skipped")
    if bad:
        warn(f"{root}: {bad.n} box(es) of zero size or outside the image ({bad.places()}); skipped")
    unlabelled = _unlabelled(scan, set(used))
    if unlabelled:
        warn(_unlabelled_warning(root, unlabelled, "label file", "an empty label file"))
    _refuse_if_no_face_was_usable(root, ds, malformed.n + unknown_id.n + unknown.n + bad.n)
    return ds


def _clip_box(b: list[float], w: float, h: float) -> tuple[float, float, float, float] | None:
    x1, y1, x2, y2 = b
    if w > 0 and h > 0:
        x1, x2 = max(0.0, min(x1, w)), max(0.0, min(x2, w))
        y1, y2 = max(0.0, min(y1, h)), max(0.0, min(y2, h))
    if x2 - x1 < 1 or y2 - y1 < 1:
        return None
    return (x1, y1, x2, y2)


def _grey(path: Path) -> np.ndarray | None:
    """The image as grey uint8, or None if unreadable or over OpenCV's pixel limit. HEIC (the heic extra) is read
    as at run time; other formats by OpenCV directly (fast)."""
    if path.suffix.lower() in HEIF_SUFFIXES:
        try:
            return cv2.cvtColor(load_image(path), cv2.COLOR_BGR2GRAY)
        except InputError:
            return None
    try:
        return cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    except cv2.error:  # e.g. a 20000 x 20000 px image: over OPENCV_IO_MAX_IMAGE_PIXELS; skipped (and counted) later
        return None


def _image_size(path: Path) -> tuple[int, int] | None:
    """(width, height) in pixels, or None if the file is not a readable image."""
    img = _grey(path)
    return (img.shape[1], img.shape[0]) if img is not None else None


def dhash(path: Path) -> int | None:
    """64-bit difference hash of an image (9x8 grey thumbnail), or None if unreadable or over OpenCV's pixel limit."""
    img = _grey(path)
    if img is None:
        return None
    small = cv2.resize(img, (9, 8), interpolation=cv2.INTER_AREA)
    bits = (small[:, 1:] > small[:, :-1]).reshape(-1)
    return int(np.packbits(bits).view(">u8")[0])


def assign_groups(images: list[LabelledImage], max_distance: int = 4) -> None:
    """Set ``im.group`` so that exact and near-duplicate images (dHash hamming <= max_distance) share a group."""
    hashes = np.array([dhash(im.path) or 0 for im in images], dtype=np.uint64)
    parent = list(range(len(images)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for start in range(0, len(hashes), 512):
        chunk = hashes[start : start + 512]
        x = chunk[:, None] ^ hashes[None, :]
        dist = np.unpackbits(x.view(np.uint8).reshape(len(chunk), len(hashes), 8), axis=2).sum(2)
        for a, b in zip(*np.nonzero(dist <= max_distance)):
            ra, rb = find(start + int(a)), find(int(b))
            if ra != rb:
                parent[max(ra, rb)] = min(ra, rb)
    for i, im in enumerate(images):
        rep = images[find(i)]
        im.group = f"{rep.path.parent.name}/{rep.path.name}"

