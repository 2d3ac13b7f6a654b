"""Photo commands: detect (images and folders), explain (heatmaps), extract-faces (crops for data sets)."""

from __future__ import annotations

import argparse
import json
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

from ..detections import frame_record
from ..errors import InputError
from .common import (
    DETECT_SETTINGS,
    PHOTO_DEFAULTS,
    PHOTO_DET_SIZE,
    _bar,
    _check_output_folder,
    _check_outputs,
    _detector,
    _err,
    _glob_matches,
    _say_left_out,
)
from .options import add_arguments, detector_kwargs, number


def cmd_detect(args: argparse.Namespace) -> int:
    import cv2

    from ..annotate import BoxAnnotator, blur_faces
    from ..images import IMAGE_SUFFIXES, load_image

    files: list[Path] = []
    for p in args.paths:
        found = _expand_glob(p)
        if not found:
            raise InputError(f"{p}: the folder holds no image ({', '.join(s for s in ('.jpg', '.png', '.bmp', '.webp'))} ...)")
        files += found
    first: dict[Path, Path] = {}
    times: Counter[Path] = Counter()
    for f in files:  # each file once, under the name and in the place it was first given
        r = f.resolve()
        first.setdefault(r, f)
        times[r] += 1
    if len(first) < len(files):
        twice = sum(1 for n in times.values() if n > 1)
        _err(f"maskwatch: {twice} photo(s) were given more than once (a folder and a photo in it, or two names of one "
             "folder); each is read once")
        files = list(first.values())
    _say_left_out(args.paths)
    out = Path(args.out) if args.out else None
    one_file = out is not None and out.suffix.lower() in OUT_IMAGE_SUFFIXES and not out.is_dir()  # --out result.jpg
    if one_file and (len(files) != 1 or len(args.paths) != 1 or not Path(args.paths[0]).is_file()):
        given = f"{len(files)} photos were given" if len(files) != 1 else "a folder or pattern was given"
        raise InputError(f"--out {out}: names one image, but {given}; give a folder for the annotated copies")
    if out is not None and not one_file and out.suffix.lower() in IMAGE_SUFFIXES and not out.is_dir():
        raise InputError(f"--out {out}: names a {out.suffix} image; an annotated copy is written as "
                         f"{', '.join(OUT_IMAGE_SUFFIXES)} (or give a folder)")
    if out and out.exists() and not out.is_dir() and not one_file:
        raise InputError(f"--out {out}: is a file; give a folder for the annotated copies")
    targets: list[Path] = []
    if out:
        _check_output_folder(out, args.paths)
        written: set[Path] = set()
        targets = [out] if one_file else [_unique(out / _relative(f, args.paths).with_suffix(".jpg"), written) for f in files]
        _check_outputs(targets, files, args.force)
    det = _detector(args)
    annot = BoxAnnotator()
    failed: list[str] = []
    counts: dict[str, int] = {}
    with _bar(len(files), "detecting", "img", args.quiet or len(files) < 2) as bar:
        for k, f in enumerate(files):
            bar.update(1)
            try:
                img = load_image(f)
            except InputError as e:
                failed.append(str(e))
                _err(f"maskwatch: skipped {e}")
                continue
            d = det.detect(img)
            for lab in d.labels:
                counts[lab] = counts.get(lab, 0) + 1
            print(json.dumps(frame_record(str(f), img.shape[1], img.shape[0], d)), flush=True)
            if out:
                vis = blur_faces(img, d) if args.blur_faces else img
                target = targets[k]
                target.parent.mkdir(parents=True, exist_ok=True)
                if not cv2.imwrite(str(target), annot.annotate(vis, d)):
                    raise InputError(f"{target}: cannot write the annotated image here; check the folder and free space")
    n_ok = len(files) - len(failed)
    _err(f"maskwatch: {n_ok} image(s) done, {len(failed)} failed; faces: " + (", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "none")
         + (f"; annotated copy: {out}" if out and targets == [out] else f"; annotated copies in {out}" if out else ""))
    return 1 if failed else 0


def _expand_glob(pattern: str) -> list[Path]:
    """Images of a path, or of a glob pattern the shell did not expand."""
    from ..images import find_images

    matches = _glob_matches(pattern)
    if matches is None:
        return find_images(pattern)
    if not matches:
        raise InputError(f"{pattern}: no file matches this pattern; check the folder and the spelling")
    return sorted({f for m in matches for f in find_images(m)})


OUT_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")  # --out of one photo may name the annotated file


def _unique(target: Path, written: set[Path]) -> Path:
    """``target``, or target with _2, _3 ... when this run already wrote that name (a.jpg and a.png, or the same
    name in two folders)."""
    candidate, k = target, 1
    while candidate in written:
        k += 1
        candidate = target.with_name(f"{target.stem}_{k}{target.suffix}")
    written.add(candidate)
    return candidate


def _relative(f: Path, roots: Sequence[str]) -> Path:
    for r in roots:
        rp = Path(r)
        if rp.is_dir():
            try:
                return f.relative_to(rp)
            except ValueError:
                continue
    return Path(f.name)


def cmd_explain(args: argparse.Namespace) -> int:
    from ..explain import explain_image, explain_video
    from ..images import IMAGE_SUFFIXES

    src = Path(args.input)
    if src.is_dir():
        raise InputError(f"{src}: is a folder; explain takes one image or one video file (for every photo of a folder, "
                         "use detect)")
    image = src.suffix.lower() in IMAGE_SUFFIXES
    # Not beside the input: a later `detect` of that folder would read the heatmap sheet as a photo.
    out = args.out or str(Path("runs") / "explain" / (src.stem + ("_explain.jpg" if image else "_explain.mp4")))
    if not args.out:
        try:
            _check_output_folder(Path(out).parent, [str(src.parent)])
        except InputError:
            raise InputError(f"the default output {out} would lie among the photos of {src.parent} (a later detect of "
                             f"that folder would read it as a photo); give --out a file outside it, e.g. --out "
                             f"../{Path(out).name}") from None
    _check_outputs([Path(out)], [src], args.force)
    det = _detector(args)
    if image:
        n = explain_image(det, src, out)
        _err(f"maskwatch: {n} face(s) explained; wrote {out}")
    else:
        notes: list[str] = []
        with _bar(None, "explain", "frame", args.quiet) as bar:
            n = explain_video(det, args.input, out, progress=bar.update, max_frames=args.max_frames, notes=notes)
        _err(f"maskwatch: {n} frame(s); wrote {out}")
        if notes:
            _err(f"maskwatch: note: {'; '.join(notes)}")
    return 0


def cmd_extract_faces(args: argparse.Namespace) -> int:
    import cv2

    from ..crops import crop_faces
    from ..detectors import create_face_detector
    from ..images import find_images, load_image

    if not 16 <= args.size <= 1024:
        raise InputError(f"--size {args.size}: give the crop side in pixels, between 16 and 1024")
    if not 0 <= args.margin <= 2:
        raise InputError(f"--margin {args.margin}: give a fraction of the face box's longer side, between 0 and 2")
    kw = detector_kwargs(args)
    fd = create_face_detector(kw["face_detector"], score_threshold=kw["score_threshold"], nms_threshold=kw["nms_threshold"],
                              det_size=kw["det_size"], upscale=kw["upscale"])
    files = find_images(args.input)
    if not files:
        raise InputError(f"{args.input}: the folder holds no image")
    _say_left_out([args.input])
    out = Path(args.output)
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: is a file; give a folder for the face crops")
    _check_output_folder(out, [args.input], "OUT", "face crops")
    out.mkdir(parents=True, exist_ok=True)
    n = failed = 0
    written: set[Path] = set()
    with _bar(len(files), "extracting", "img", args.quiet) as bar:
        for f in files:
            bar.update(1)
            try:
                img = load_image(f)
            except InputError as e:
                failed += 1
                _err(f"maskwatch: skipped {e}")
                continue
            d = fd.detect(img)
            rel = _relative(f, [args.input])
            for i, crop in enumerate(crop_faces(img, d.xyxy, args.size, args.margin)):
                target = _unique(out / rel.parent / f"{rel.stem}_face{i}.jpg", written)
                if target.exists() and not args.force:
                    raise InputError(f"{target}: already exists (crops of an earlier run?); pass --force to overwrite, "
                                     "or choose another folder")
                target.parent.mkdir(parents=True, exist_ok=True)
                if not cv2.imwrite(str(target), crop[:, :, ::-1]):
                    raise InputError(f"{target}: cannot write the face crop here; check the folder and free space")
                n += 1
    _err(f"maskwatch: {n} face(s) from {len(files) - failed} image(s) written to {out}; {failed} failed")
    return 1 if failed else 0


def parser_detect(cmd: Callable[..., argparse.ArgumentParser]) -> None:
    d = cmd("detect", "detect faces and masks in images and folders; one JSON line per image on stdout",
            "maskwatch detect photos/ --out annotated/")
    d.add_argument("paths", nargs="+", metavar="PATH", help="image files or folders (searched recursively)")
    d.add_argument("--out", help="folder for annotated copies (for one photo, also a file: --out result.jpg)")
    d.add_argument("--blur-faces", action="store_true", help="pixelate faces in the annotated copies")
    d.add_argument("--force", action="store_true", help="overwrite output files of an earlier run (inputs are never overwritten)")
    add_arguments(d, DETECT_SETTINGS, PHOTO_DEFAULTS)


def parser_explain(cmd: Callable[..., argparse.ArgumentParser]) -> None:
    x = cmd("explain", "class-activation heatmaps over each face, beside the frame (image or video)",
            "maskwatch explain photo.jpg --out photo_explain.jpg")
    x.add_argument("input", metavar="IMAGE|VIDEO")
    x.add_argument("--out", help="output image or video (default: runs/explain/NAME_explain.jpg or .mp4 in the current "
                   "folder; not beside the input, where a later detect would read it as a photo)")
    x.add_argument("--max-frames", type=number(int, 0), default=0, help="video: stop after this many frames (0 = all)")
    x.add_argument("--force", action="store_true", help="overwrite output files of an earlier run (inputs are never overwritten)")
    add_arguments(x, DETECT_SETTINGS, PHOTO_DEFAULTS)


def parser_extract_faces(cmd: Callable[..., argparse.ArgumentParser]) -> None:
    xf = cmd("extract-faces", "save every detected face as a crop (for building data sets)", "maskwatch extract-faces photos/ faces/")
    xf.description = (
        "save every detected face as a crop (for building data sets): OUT/STEM_faceN.jpg for the N-th face (from 0) of\n"
        "the photo STEM.*; the sub-folders of a folder IN are mirrored (IN/a/b.jpg gives OUT/a/b_face0.jpg ...). OUT may\n"
        "not lie among the photos (a later run would read the crops as photos).")
    xf.add_argument("input", metavar="IN", help="image or folder (searched recursively)")
    xf.add_argument("output", metavar="OUT",
                    help="folder for the crops, STEM_faceN.jpg (sub-folders of IN mirrored); not IN, nor inside it, nor "
                         "the folder of the image IN")
    xf.add_argument("--size", type=int, default=128, help="crop side, pixels (16-1024)")
    xf.add_argument("--margin", type=float, default=0.2, help="margin around the face box, fraction of its longer side (0-2)")
    xf.add_argument("--force", action="store_true", help="overwrite output files of an earlier run (inputs are never overwritten)")
    add_arguments(xf, ["face_detector", "score_threshold", "nms_threshold", "det_size", "upscale"], {"det_size": PHOTO_DET_SIZE})
