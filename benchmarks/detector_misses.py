"""The annotated faces a face detector misses, counted by kind and shown on a contact sheet to look at.

    python benchmarks/detector_misses.py [SCENES ...] [--detector yunet] [--det-size 800,1600] [--sheet misses.jpg]

SCENES default to every scene set's @test split. A face is missed when no detector box (at the photo defaults'
face-score floor) overlaps it at IoU >= 0.5. Counted automatically: by true label, by size, and cut by the frame edge
(the annotated box touches the border). Side faces and hands over the mouth need eyes: the sheet shows every missed
face of at least --min-side px with no box even at IoU 0.3 (largest first, with its label: M mask, B bare, I incorrect, E at the edge) so they
can be counted by looking.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

from maskwatch.boxes import iou_matrix
from maskwatch.datasets import iter_images, load_source
from maskwatch.detectors import create_face_detector
from maskwatch.settings import PHOTO, det_sizes

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _frames import SHARED as _SHARED  # noqa: E402  (../shared, or where MASKWATCH_SHARED points)
from _sheets import write_sheet  # noqa: E402

DETECT = _SHARED / "data" / "detect"
SETS = ("masks-voc-dev", "masks-yolo-extra", "ilc-2021", "maskdetect-cn")
SHORT = {"with_mask": "M", "without_mask": "B", "mask_incorrect": "I"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("scenes", nargs="*")
    ap.add_argument("--detector", default="yunet", help="registry name or YuNet ONNX path")
    ap.add_argument("--det-size", type=det_sizes, default=PHOTO["det_size"])
    ap.add_argument("--score", type=float, default=0.5, help="face-score floor (the detector's default)")
    ap.add_argument("--sheet", help="write the contact sheet of missed faces here (.jpg)")
    ap.add_argument("--min-side", type=int, default=16, help="smallest missed face put on the sheet, px")
    ap.add_argument("--max", type=int, default=160, help="at most this many faces on the sheet")
    args = ap.parse_args()
    fd = create_face_detector(args.detector, det_size=args.det_size, score_threshold=args.score)
    total: dict[str, list[int]] = {}
    edge = [0, 0]
    crops: list[tuple[float, np.ndarray, str]] = []
    for spec in args.scenes or [f"{DETECT / s}@test" for s in SETS]:
        for im, img in iter_images(load_source(spec).images, []):
            gt = np.array([b for b in im.boxes if b is not None], np.float32).reshape(-1, 4)
            det = fd.detect(img)
            ious = iou_matrix(gt, det.xyxy)
            found = ious.max(1) >= 0.5 if ious.size else np.zeros(len(gt), bool)
            near = ious.max(1) >= 0.3 if ious.size else np.zeros(len(gt), bool)  # a box there, framed otherwise
            h, w = img.shape[:2]
            for (x1, y1, x2, y2), lab, f, nf in zip(gt, im.labels, found, near):
                row = total.setdefault(lab, [0, 0, 0])
                row[0] += int(not f)
                row[1] += 1
                row[2] += int(not nf)
                at_edge = x1 <= 2 or y1 <= 2 or x2 >= w - 2 or y2 >= h - 2
                edge[0] += int(at_edge and not f)
                edge[1] += int(at_edge)
                side = min(x2 - x1, y2 - y1)
                if not nf and side >= args.min_side:  # on the sheet: no box at all there (framing misses left out)
                    m = 0.3 * max(x2 - x1, y2 - y1)
                    a, b = int(max(0, x1 - m)), int(max(0, y1 - m))
                    c, d = int(min(w, x2 + m)), int(min(h, y2 + m))
                    crops.append((side, img[b:d, a:c], SHORT.get(lab, "?") + ("E" if at_edge else "")))
    print(f"detector {args.detector} det_size {args.det_size}: missed faces (IoU < 0.5 with every box)")
    print("| true label | missed | of them, no box even at IoU 0.3 | faces | recall |")
    print("|---|---|---|---|---|")
    for lab, (miss, n, far) in sorted(total.items()):
        print(f"| {lab} | {miss} | {far} | {n} | {1 - miss / n:.3f} |")
    print(f"| cut by the frame edge | {edge[0]} | | {edge[1]} | {1 - edge[0] / max(edge[1], 1):.3f} |")
    print(f"missed faces of at least {args.min_side} px: {len(crops)}")
    if args.sheet and crops:
        crops.sort(key=lambda t: -t[0])
        tiles = []
        for _, crop, tag in crops[: args.max]:
            t = cv2.resize(crop, (96, 96), interpolation=cv2.INTER_AREA if crop.shape[0] > 96 else cv2.INTER_LINEAR)
            cv2.putText(t, tag, (3, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 255, 255), 1, cv2.LINE_AA)
            tiles.append(t)
        write_sheet(args.sheet, tiles, cols=12)
        print(f"sheet: {args.sheet} ({min(len(crops), args.max)} faces, largest first)")


if __name__ == "__main__":
    main()
