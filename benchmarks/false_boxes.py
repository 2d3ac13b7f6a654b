"""The boxes the photo pipeline shows on no annotated face, counted by kind and put on a contact sheet to look at.

    python benchmarks/false_boxes.py [SCENES ...] [--mode photo|live] [--sheet false.jpg] [--max 240] [--label L]

SCENES default to every scene set's @test split. A shown box (any label, grey "uncertain" included, not_face boxes
removed: what a user sees, and what ``maskwatch evaluate-detection`` counts as "false boxes per photo") is false
when it matches no annotated face one to one at IoU >= 0.5. Counted automatically per set: framed differently
(IoU 0.3-0.5 with an annotated face) or on no annotated face (IoU < 0.3), by face score and by label. Whether a box
on no annotated face is a real face the annotators skipped or junk (a hand, a bag, the back of a head) needs eyes:
the sheet shows those boxes, highest face score first, each tagged with its set's initial, face score and label
(R red, G green, O orange, ? grey), with a margin of context around the box (the box itself in yellow).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from maskwatch.boxes import iou_matrix
from maskwatch.datasets import iter_images, load_source
from maskwatch.eval.detection import match_faces
from maskwatch.pipeline import Detector
from maskwatch.settings import LIVE, PHOTO

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _frames import SHARED as _SHARED  # noqa: E402  (../shared, or where MASKWATCH_SHARED points)
from _sheets import context_tile, write_sheet  # noqa: E402

DETECT = _SHARED / "data" / "detect"
SETS = ("masks-voc-dev", "masks-yolo-extra", "ilc-2021", "maskdetect-cn")
SHORT = {"without_mask": "R", "with_mask": "G", "mask_incorrect": "O", "uncertain": "?"}
BANDS = (0.5, 0.7, 0.9, 1.01)  # face-score bands: below the photo point's sure face score, sure, very sure
TILE = 112


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("scenes", nargs="*")
    ap.add_argument("--mode", choices=["photo", "live"], default="photo")
    ap.add_argument("--sheet", help="write the contact sheet of boxes on no annotated face here (.jpg)")
    ap.add_argument("--max", type=int, default=240, help="at most this many boxes on the sheet")
    ap.add_argument("--label", help="put only boxes shown with this label on the sheet (without_mask: the red ones)")
    args = ap.parse_args()
    det = Detector(**(PHOTO if args.mode == "photo" else LIVE))
    print(f"{args.mode} preset; a box is false when it matches no annotated face at IoU >= 0.5")
    header = ["set", "photos", "boxes shown", "false", "framed differently (IoU 0.3-0.5)", "on no annotated face",
              *(f"of them face score {lo:.1f}-{min(hi, 1):.1f}" for lo, hi in zip(BANDS, BANDS[1:])), "of them red",
              "false per photo"]
    print("| " + " | ".join(header) + " |")
    print("|---" * len(header) + "|")  # one cell per column, or markdown renders no table
    tiles: list[tuple[float, np.ndarray]] = []
    for spec in args.scenes or [f"{DETECT / s}@test" for s in SETS]:
        name = Path(spec.split("@")[0]).name
        n_img = n_box = n_false = n_framed = n_red = 0
        bands = [0] * (len(BANDS) - 1)
        for im, img in iter_images(load_source(spec).images, []):
            d = det.detect(img)
            n_img += 1
            n_box += len(d)
            gt = np.array([b for b in im.boxes if b is not None], np.float32).reshape(-1, 4)
            match = match_faces(gt, d.xyxy, np.argsort(-d.face_score, kind="stable"), 0.5)
            ious = iou_matrix(gt, d.xyxy)
            best = ious.max(0) if ious.size else np.zeros(len(d))
            for i in np.nonzero(match < 0)[0]:
                n_false += 1
                if best[i] >= 0.3:
                    n_framed += 1
                    continue
                s, lab = float(d.face_score[i]), d.labels[i]
                bands[int(np.searchsorted(BANDS, s, side="right")) - 1] += 1
                n_red += int(lab == "without_mask")
                if args.label and lab != args.label:
                    continue
                t = context_tile(img, d.xyxy[i], TILE, 0.5, (0, 255, 255), f"{name[:1]}{s:.2f}{SHORT.get(lab, lab[:1])}",
                                 (255, 0, 255))
                tiles.append((s, t))
        off = n_false - n_framed
        print(f"| {name} | {n_img} | {n_box} | {n_false} | {n_framed} | {off} | " + " | ".join(map(str, bands))
              + f" | {n_red} | {n_false / max(n_img, 1):.2f} |")
    if args.sheet and tiles:
        tiles.sort(key=lambda t: -t[0])
        n_cells = write_sheet(args.sheet, [t for _, t in tiles[: args.max]], cols=12)
        print(f"sheet: {args.sheet} ({n_cells} cells, {min(len(tiles), args.max)} boxes on no annotated face, "
              "highest face score first)")


if __name__ == "__main__":
    main()
