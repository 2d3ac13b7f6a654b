"""Labelled data sets: class folders, Pascal VOC and YOLO scene sets, read into one list of labelled faces.

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

from .errors import InputError
from .images import HEIF_SUFFIXES, IMAGE_SUFFIXES, load_image

_ALIASES = {
    "withmask": "with_mask", "mask": "with_mask", "masked": "with_mask", "good": "with_mask",
    "withoutmask": "without_mask", "nomask": "without_mask", "unmasked": "without_mask", "bare": "without_mask",
    "maskwearedincorrect": "mask_incorrect", "maskwornincorrect": "mask_incorrect", "maskincorrect": "mask_incorrect",
    "incorrectmask": "mask_incorrect", "incorrect": "mask_incorrect", "maskworn_incorrectly": "mask_incorrect",
    "maskwornincorrectly": "mask_incorrect", "improperlyworn": "mask_incorrect", "bad": "mask_incorrect",
    "withincorrectmask": "mask_incorrect", "wrongmask": "mask_incorrect", "rightmask": "with_mask",  # ilc-2021, maskdetect-cn
    "incorrectlyworn": "mask_incorrect", "wornincorrectly": "mask_incorrect",
}
# (No "0" / "1": which of them is masked is a guess; such folders are named in a warning instead.)
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
    if fold:
        assign_groups(ds.images)
        ds.images = [im for im in ds.images if split_of(im.group) == fold]
    if not ds.images:
        raise InputError(f"{spec}: no labelled image found")
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
    if any(root.glob("*.xml")) or any((root / "annotations").glob("*.xml")):
        return "voc"
    if (root / "labels").is_dir() and any((root / "labels").glob("*.txt")):
        return "yolo"
    return "folders"


def _load_folders(root: Path) -> Dataset:
    ds = Dataset()
    class_dirs = [d for d in sorted(root.rglob("*")) if d.is_dir() and canonical_label(d.name)]
    if canonical_label(root.name):
        class_dirs.insert(0, root)
    if not class_dirs:
        subs = ", ".join(sorted(d.name for d in root.iterdir() if d.is_dir())[:8]) or "none"
        raise InputError(
            f"{root}: no class sub-folder found (sub-folders: {subs}); expected with_mask/, without_mask/ and optionally "
            "mask_incorrect/ (or spellings like WithMask, no_mask, mask_weared_incorrect), or a VOC/YOLO scene set"
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
    skipped = 0
    for d in class_dirs:
        label = canonical_label(d.name)
        for f in sorted(d.iterdir()):
            if not f.is_file():
                continue
            if f.suffix.lower() not in IMAGE_SUFFIXES:
                skipped += 1
                continue
            ds.images.append(LabelledImage(f, [None], [str(label)]))
    if skipped:
        ds.warnings.append(f"{root}: skipped {skipped} file(s) that are not images")
    if not ds.images:
        raise InputError(f"{root}: the class folders ({', '.join(d.name for d in class_dirs)}) hold no image")
    return ds


def _find_image(root: Path, stem: str, hint: str | None = None) -> Path | None:
    cands = []
    if hint:
        cands += [root / "images" / hint, root / hint]
    for suf in IMAGE_SUFFIXES:
        cands += [root / "images" / f"{stem}{suf}", root / f"{stem}{suf}"]
    return next((c for c in cands if c.is_file()), None)


def _load_voc(root: Path) -> Dataset:
    ds = Dataset()
    xmls = sorted(root.glob("*.xml")) or sorted((root / "annotations").glob("*.xml"))
    missing = bad_boxes = unknown = 0
    for x in xmls:
        try:
            tree = ET.parse(x).getroot()
        except ET.ParseError as e:
            ds.warnings.append(f"{x}: not valid XML ({e}); skipped")
            continue
        img = _find_image(root, x.stem, tree.findtext("filename"))
        if img is None:
            missing += 1
            continue
        w = float(tree.findtext("size/width") or 0)
        h = float(tree.findtext("size/height") or 0)
        boxes: list[tuple[float, float, float, float] | None] = []
        labels: list[str] = []
        for obj in tree.iter("object"):
            label = canonical_label(obj.findtext("name") or "")
            if label is None:
                unknown += 1
                continue
            try:
                b = [float(obj.findtext(f"bndbox/{k}") or "") for k in ("xmin", "ymin", "xmax", "ymax")]
            except (TypeError, ValueError):
                bad_boxes += 1
                continue
            box = _clip_box(b, w, h)
            if box is None:
                bad_boxes += 1
                continue
            boxes.append(box)
            labels.append(label)
        ds.images.append(LabelledImage(img, boxes, labels))
    if missing:
        ds.warnings.append(f"{root}: {missing} annotation file(s) name an image that does not exist; skipped")
    if bad_boxes:
        ds.warnings.append(f"{root}: {bad_boxes} box(es) of zero size or outside the image; skipped")
    if unknown:
        ds.warnings.append(f"{root}: {unknown} object(s) with a class name that is not a mask class; skipped")
    return ds


def _load_yolo(root: Path) -> Dataset:
    ds = Dataset()
    names_file = root / "classes.txt"
    names = names_file.read_text().split() if names_file.is_file() else ["no_mask", "mask"]
    id_to_label = {i: canonical_label(n) for i, n in enumerate(names)}
    missing = bad = 0
    for t in sorted((root / "labels").glob("*.txt")):
        img = _find_image(root, t.stem)
        if img is None:
            missing += 1
            continue
        size = _image_size(img)
        if size is None:
            ds.warnings.append(f"{img}: not a readable image; skipped")
            continue
        w, h = size
        boxes: list[tuple[float, float, float, float] | None] = []
        labels: list[str] = []
        for line in t.read_text().splitlines():
            parts = line.split()
            if not parts:
                continue
            try:
                c, cx, cy, bw, bh = int(parts[0]), *map(float, parts[1:5])
            except (ValueError, IndexError):
                bad += 1
                continue
            box = _clip_box([(cx - bw / 2) * w, (cy - bh / 2) * h, (cx + bw / 2) * w, (cy + bh / 2) * h], w, h)
            if box is None or id_to_label.get(c) is None:
                bad += 1
                continue
            boxes.append(box)
            labels.append(str(id_to_label[c]))
        ds.images.append(LabelledImage(img, boxes, labels))
    if missing:
        ds.warnings.append(f"{root}: {missing} label file(s) without an image; skipped")
    if bad:
        ds.warnings.append(f"{root}: {bad} label line(s) malformed, of an unknown class, or of zero size; skipped")
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

