"""Evaluation commands: evaluate (the classifier on labelled faces), evaluate-detection (end to end on scene photos)."""

from __future__ import annotations

import argparse
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import InputError
from .common import (
    DETECT_SETTINGS,
    PHOTO_DEFAULTS,
    PHOTO_DET_SIZES,
    _bar,
    _check_outputs,
    _detector,
    _err,
    _say_data_problems,
)
from .options import add_arguments


def cmd_evaluate(args: argparse.Namespace) -> int:
    from ..classifier import MaskClassifier
    from ..datasets import load_source
    from ..eval.classification import evaluate_classifier
    from ..eval.metrics import confusion_png, format_report

    if args.errors and not args.out:
        raise InputError("--errors needs --out FOLDER: the misclassified faces are written there")
    out = Path(args.out) if args.out else None
    names = [_set_name(spec) for spec in args.data]
    if out is not None:  # before any work: a bad --out would otherwise fail after the whole evaluation
        if out.exists() and not out.is_dir():
            raise InputError(f"--out {out}: is a file; give a folder for the confusion matrices"
                             + (" and the misclassified faces" if args.errors else ""))
        twice = next((n for n in names if names.count(n) > 1), None)
        if twice is not None:
            raise InputError(f"two of DATA would both write {out / twice}_confusion.png (the same set and split given "
                             "twice, or two folders of one name); evaluate them in separate runs or into other --out folders")
        _check_outputs([out / f"{n}_confusion.png" for n in names], [], args.force,
                       folders=[out / f"{n}_errors" for n in names] if args.errors else [])
    clf = MaskClassifier(args.model, threads=args.threads, nomask_cost=args.nomask_cost, flip=args.flip)
    fd = None
    if args.boxes == "detector":
        from ..detectors import create_face_detector

        fd = create_face_detector(args.face_detector, det_size=PHOTO_DET_SIZES, threads=args.threads)
    for spec, name in zip(args.data, names):
        ds = load_source(spec)
        _say_data_problems(ds.warnings)
        errors = out / f"{name}_errors" if out is not None and args.errors else None
        if errors is not None and errors.is_dir():  # --force: an earlier run's crops would sit beside the new errors.csv
            shutil.rmtree(errors)
        with _bar(len(ds.images), f"evaluating {spec}", "img", args.quiet) as bar:
            r = evaluate_classifier(clf, ds, progress=bar.update, face_detector=fd, errors_dir=errors)
        print(json.dumps({"data": spec, "model": str(clf.path), **r}))
        _err(f"== {spec}\n" + format_report(r["report"], r["by_size"]))
        if r["unknown_class"]:
            _err(f"faces of classes the model does not know, and what it called them: {r['unknown_class']}")
        _say_data_problems(skipped=r["skipped"])
        if fd is not None:
            _err(f"{r['snapped']} face(s) cropped around the detector's box; the rest (missed by the detector) around the annotated one")
        if errors is not None:
            _err(f"{r['errors']} misclassified face(s) written to {errors}/ (surest mistakes first; errors.csv lists them)")
        if out is not None:
            out.mkdir(parents=True, exist_ok=True)
            confusion_png(r["report"], str(out / f"{name}_confusion.png"))
    return 0


def _set_name(spec: str) -> str:
    """What a data set's outputs are named after: its folder's name and split, ``masks-voc-dev_test`` for
    ``.../masks-voc-dev@test`` (``masks-voc-dev`` without one), so that two splits of one set do not share files."""
    path, _, fold = spec.partition("@") if "@" in Path(spec).name else (spec, "", "")
    name = Path(path).name or Path(path).resolve().name
    return f"{name}_{fold}" if fold else name


def cmd_evaluate_detection(args: argparse.Namespace) -> int:
    from ..datasets import load_source
    from ..eval.detection import evaluate_detection

    models: list[tuple[str, Any]] = [(f"maskwatch ({args.face_detector})", _detector(args))]
    if args.peer == "aizoo":
        from ..eval.peers import AizooDetector

        models.append(("aizoo_facemask_360", AizooDetector()))
    for spec in args.scenes:
        ds = load_source(spec)
        _say_data_problems(ds.warnings)
        for i, (name, model) in enumerate(models):
            with _bar(len(ds.images), f"{name} on {spec}", "img", args.quiet) as bar:
                r = evaluate_detection(model, ds, progress=bar.update)
            print(json.dumps({"data": spec, "model": name, **r}))
            if i == 0:  # the same images for every model: said once
                _say_data_problems(skipped=r["skipped"])
            ap = " ".join(f"AP50[{k}]={v:.3f}" for k, v in r["ap50"].items())
            by = " ".join(f"{k}:{'-' if v is None else f'{v:.2f}'}" for k, v in r["face_recall_by_size"].items())
            by_label = " ".join(f"{k} {v:.2f}" for k, v in r["face_recall_by_label"].items())
            _err(f"{spec} | {name} | {r['photos']} photo(s), {r['faces']} face(s) | mAP50(mask/no-mask)={_fmt(r['map50'])} {ap} | "
                 f"face recall {r['face_recall']:.3f} ({by}; {by_label}) | {r['ms_per_photo']:.1f} ms/photo")
            shown = " ".join(f"{lab} P {_fmt(v['precision'])} (loose {_fmt(v['loose_precision'])}) R {_fmt(v['recall'])}"
                             if lab != "uncertain" else f"grey {v['shown']}" for lab, v in r["labels"].items())
            _err(f"   shown: {shown} | false boxes/photo {r['false_boxes_per_photo']:.2f} | false red boxes/100 photos "
                 f"{r['false_red_per_100_photos']:.1f} (loose {r['false_red_loose_per_100_photos']:.1f})")
            if r["intervals"]:
                _err(f"   {_intervals(r['intervals'])}")
    return 0


def _intervals(iv: dict[str, Any]) -> str:
    """One line: the bootstrap intervals of evaluate_detection, red, green and orange."""
    def band(b: list[float] | None, fmt: str = ".3f") -> str:
        return "-" if b is None else f"{b[0]:{fmt}}-{b[1]:{fmt}}"
    parts = [f"{name} P {band(iv[lab]['precision'])} R {band(iv[lab]['recall'])}"
             for name, lab in (("red", "without_mask"), ("green", "with_mask"), ("orange", "mask_incorrect"))
             if iv[lab]["precision"] is not None or iv[lab]["recall"] is not None]
    return (f"{100 * iv['level']:.0f} % intervals over {iv['resamples']} resamples of the photos: " + " | ".join(parts)
            + f" | false red/100 photos {band(iv['false_red_per_100_photos'], '.1f')}")


def _fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:.3f}"


def parser_evaluate(cmd: Callable[..., argparse.ArgumentParser]) -> None:
    e = cmd("evaluate", "classification report of a model on labelled folders or scene sets (crops from the true boxes)",
            "maskwatch evaluate maskwatch/assets/mask_classifier.onnx data/scenes@test --out reports")
    e.description = (
        "classification report of a model on labelled folders or scene sets (crops from the true boxes): one JSON line\n"
        "per data set on stdout (the report, by class and by face size), the readable report on stderr. With --out,\n"
        "each data set's files are named after its folder and split: OUT/SET_SPLIT_confusion.png (masks-voc-dev@test:\n"
        "masks-voc-dev_test_confusion.png; SET_confusion.png for a set given without a split), and with --errors\n"
        "OUT/SET_SPLIT_errors/.")
    e.add_argument("model", metavar="MODEL", help="classifier ONNX file, or 'mask_classifier' (bundled)")
    e.add_argument("data", nargs="+", metavar="DATA", help="class folders or VOC/YOLO scene sets (PATH@test for the held-out part)")
    e.add_argument("--out", help="folder for the confusion-matrix PNGs: SET_SPLIT_confusion.png for each DATA")
    e.add_argument("--errors", action="store_true",
                   help="also save every misclassified face into OUT/SET_SPLIT_errors/TRUE_as_PREDICTED/ (the crop the model "
                        "saw beside its surroundings) with an errors.csv: to find label errors and what the model gets wrong")
    e.add_argument("--force", action="store_true",
                   help="overwrite output files of an earlier run (inputs are never overwritten); an earlier errors "
                        "folder is emptied first")
    add_arguments(e, ["face_detector", "threads", "nomask_cost", "flip"], PHOTO_DEFAULTS)  # the labels of run time
    e.add_argument("--boxes", choices=["truth", "detector"], default="truth",
                   help="crop around the annotated boxes, or around the face detector's boxes that match them (IoU >= 0.5, "
                        "--face-detector at the photo det-sizes): how the classifier sees the faces at run time")


def parser_evaluate_detection(cmd: Callable[..., argparse.ArgumentParser]) -> None:
    ed = cmd("evaluate-detection", "end-to-end AP@0.5 per class and face recall by size on VOC/YOLO scene sets",
             "maskwatch evaluate-detection data/scenes@test --peer aizoo")
    ed.description = (
        "end-to-end AP@0.5 per class and face recall by size on VOC/YOLO scene sets, and what a user sees: precision\n"
        "and recall of each label shown and false red boxes per 100 photos. A box is right when it is matched one to\n"
        "one at IoU >= 0.5 with an annotated face of its label; 'loose' also counts as right a box at IoU 0.3-0.5 with\n"
        "an unmatched face of its label (the face boxed in another style, e.g. a whole head). The last line gives\n"
        "90 % intervals of red, green and orange precision and recall over 1000 resamples of the photos: when two\n"
        "runs on the same photos give intervals that do not overlap, the difference is not luck; when they overlap\n"
        "widely, they show no evidence of one.\n"
        "Output: one JSON line per set and model on stdout (map50 is null where no mask/no-mask AP exists), the\n"
        "summary on stderr; no files are written.")
    ed.add_argument("scenes", nargs="+", metavar="SCENES",
                    help="VOC or YOLO scene folders; SET@test measures on the held-out quarter (SET@val, SET@train: the "
                         "other fixed splits), the part models are reported on")
    ed.add_argument("--peer", choices=["aizoo"], help="also measure a peer model on the same sets")
    add_arguments(ed, DETECT_SETTINGS, PHOTO_DEFAULTS)
