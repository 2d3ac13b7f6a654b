"""Every red box the strict count calls wrong, numbered on a contact sheet to judge by eye, and where the annotated
bare faces went: the two halves of "red precision >= 0.90 at red recall >= 0.85".

    python benchmarks/red_audit.py [SCENES ...] [--mode photo|live] [--label without_mask] [--sheet DIR]
        [--set KEY=V,...]

SCENES default to every scene set's @test split. A shown box of the label (red for without_mask) is right, strictly,
when it is matched one to one (IoU >= 0.5, highest face score first) with an annotated face of that label, as in
``maskwatch evaluate-detection``. The others are listed and, with --sheet, drawn on DIR/SET.png, numbered, each tile
with the context around the box and its kind: "other LABEL" (on an annotated face of another label), "framed"
(IoU 0.3-0.5 with an annotated face: boxed in another style) or "none" (on no annotated face). Whether such a box
is a real error or a face the annotators skipped or boxed differently needs eyes: count them on the sheet.

Each annotated face of the label is put in one of: shown with the label, shown with another label, grey for its
face score (below the preset's sure_face_score), grey for its probability (the label's probability below its
threshold), removed as not_face, boxed differently (no box at IoU >= 0.5, one at 0.3-0.5: found, but framed in
another style than the annotators'), or missed by the face detector.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from maskwatch.boxes import iou_matrix
from maskwatch.datasets import iter_images, load_source
from maskwatch.detections import NOT_FACE, UNCERTAIN
from maskwatch.eval.detection import match_faces
from maskwatch.pipeline import Detector
from maskwatch.settings import LIVE, PHOTO

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _frames import SHARED as _SHARED  # noqa: E402  (../shared, or where MASKWATCH_SHARED points)
from _sheets import context_tile, write_sheet  # noqa: E402
from operating_points import point_arg  # noqa: E402  (the same KEY=V,... as its --before)

DETECT = _SHARED / "data" / "detect"
SETS = ("masks-voc-dev", "masks-yolo-extra", "ilc-2021", "maskdetect-cn")
TILE = 160
FATES = ("shown", "other label", "grey: face score", "grey: probability", "removed as not_face",
         "boxed differently", "missed")


def tile(img: np.ndarray, box: np.ndarray, caption: str) -> np.ndarray:
    """A TILE x (TILE + 20) BGR tile: the box (red outline) with one box-width of context each side, a caption below."""
    return context_tile(img, box, TILE, 1.0, (0, 0, 255), caption, (0, 0, 0), below=True, fill=255)


def audit(det: Detector, spec: str, label: str, sure_face: float, sheet: Path | None) -> tuple[int, list[str], dict[str, int]]:
    """One set: how many boxes are shown ``label``, a table row per strictly wrong one (numbered as on the sheet,
    written to ``sheet`` if given), and the fates of its annotated faces of ``label``."""
    rows: list[str] = []
    tiles: list[np.ndarray] = []
    fates = dict.fromkeys(FATES, 0)
    n_shown = 0
    for im, img in iter_images(load_source(spec).images, []):
        d = det.detect(img)  # keep_not_face: all boxes, for the fates; what a user sees is the rest
        labels = np.array(d.labels, dtype=object)
        gt = np.array([b for b in im.boxes if b is not None], np.float32).reshape(-1, 4)
        gt_labels = [x for x, b in zip(im.labels, im.boxes) if b is not None]
        shown = np.flatnonzero(labels != NOT_FACE)
        order = np.argsort(-d.face_score[shown], kind="stable")
        match = match_faces(gt, d.xyxy[shown], order)  # as evaluate-detection: the boxes a user sees
        ious = iou_matrix(d.xyxy[shown], gt)
        for j, i in enumerate(shown):
            if labels[i] != label:
                continue
            n_shown += 1
            truth = gt_labels[match[j]] if match[j] >= 0 else ""
            if truth == label:
                continue
            best = float(ious[j].max()) if ious.size else 0.0
            kind = f"other {truth}" if truth else ("framed" if best >= 0.3 else "none")
            k = len(rows)
            rows.append(f"| {k} | {im.path.name} | {kind} | {best:.2f} | {d.face_score[i]:.2f} | {d.confidence[i]:.2f} "
                        f"| {d.xyxy[i, 2] - d.xyxy[i, 0]:.0f} | {' '.join(f'{v:.0f}' for v in d.xyxy[i])} |")
            tiles.append(tile(img, d.xyxy[i], f"{k} {kind[:14]} {best:.2f}"))
        every = match_faces(gt, d.xyxy, np.argsort(-d.face_score, kind="stable"))  # every box, not_face too
        found = {int(g): i for i, g in enumerate(every) if g >= 0}
        for g, lab in enumerate(gt_labels):
            if lab != label:
                continue
            if g not in found:
                near = iou_matrix(gt[g : g + 1], d.xyxy)
                fates["boxed differently" if near.size and near.max() >= 0.3 else "missed"] += 1
                continue
            b = found[g]
            if labels[b] == NOT_FACE:
                fates["removed as not_face"] += 1
            elif labels[b] == UNCERTAIN:
                fates["grey: face score" if d.face_score[b] < sure_face else "grey: probability"] += 1
            else:
                fates["shown" if labels[b] == label else "other label"] += 1
    if sheet is not None and tiles:
        write_sheet(str(sheet), tiles, cols=8, fill=255)
    return n_shown, rows, fates


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("scenes", nargs="*")
    ap.add_argument("--mode", choices=["photo", "live"], default="photo")
    ap.add_argument("--label", default="without_mask", choices=["without_mask", "with_mask", "mask_incorrect"])
    ap.add_argument("--sheet", type=Path, help="write one numbered contact sheet per set here (DIR/SET.png)")
    ap.add_argument("--set", type=point_arg, default={}, metavar="KEY=V,...",
                    help="another operating point than the preset's, e.g. sure_face_score=0.7,sure_nomask=0.6 (on @val "
                         "splits: to see what a lower point would show before choosing it)")
    args = ap.parse_args()
    preset = dict(PHOTO if args.mode == "photo" else LIVE)
    preset.update(args.set)
    det = Detector(**preset, keep_not_face=True)
    if args.sheet:
        args.sheet.mkdir(parents=True, exist_ok=True)
    table = []
    for spec in args.scenes or [f"{DETECT / s}@test" for s in SETS]:
        name = Path(spec.split("@")[0]).name
        sheet = args.sheet / f"{name}.png" if args.sheet else None
        n_shown, rows, fates = audit(det, spec, args.label, preset["sure_face_score"], sheet)
        print(f"\n## {spec} ({args.mode} preset{''.join(f', {k}={v}' for k, v in args.set.items())}): {n_shown} boxes shown "
              f"{args.label}, {len(rows)} of them not on an annotated face of that label")
        if rows:
            if sheet is not None:
                print(f"sheet: {sheet}")
            print("| # | photo | kind | best IoU | face score | P(label) | width px | box x1 y1 x2 y2 |\n|---|---|---|---|---|---|---|---|")
            print("\n".join(rows))
        table.append(f"| {name} | {sum(fates.values())} | " + " | ".join(str(fates[f]) for f in FATES) + " |")
    print(f"\nwhere the annotated {args.label} faces went ({args.mode} preset)\n| set | faces | " + " | ".join(FATES)
          + " |\n" + "|---" * (len(FATES) + 2) + "|\n" + "\n".join(table))


if __name__ == "__main__":
    main()
