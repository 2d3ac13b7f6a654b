"""Fit a face detector's box style to the annotators': scale each box's width and height and move its centre down
by a fraction of its height, and measure face AP@0.5 per set for each choice, on scene photos as they are.

    python benchmarks/box_style.py [SCENES ...] [--detector yunet_masks] [--det-size 1024]

SCENES default to every scene set's @val split: choose here (the best face AP over all the faces of the sets), then
report on @test with `maskwatch evaluate-detection`. The detector runs with its own box style off; the chosen style
goes into its registry entry (``maskwatch/detectors/__init__.py``).
"""

from __future__ import annotations

import argparse
import itertools
from pathlib import Path

import numpy as np

from maskwatch.datasets import iter_images, load_source
from maskwatch.detectors import create_face_detector
from maskwatch.detectors.base import restyle
from maskwatch.eval.detection import face_ap, match_faces
from maskwatch.settings import det_sizes

DETECT = Path(__file__).resolve().parents[2] / "shared" / "data" / "detect"
SETS = ("masks-voc-dev", "masks-yolo-extra", "ilc-2021", "maskdetect-cn")
WIDTH = (0.95, 0.975, 1.0, 1.025, 1.05, 1.075, 1.1)
HEIGHT = (0.95, 0.975, 1.0, 1.025, 1.05)
DOWN = (-0.02, 0.0, 0.02, 0.04, 0.06)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("scenes", nargs="*")
    ap.add_argument("--detector", default="yunet_masks")
    ap.add_argument("--det-size", type=det_sizes, default=1024)
    ap.add_argument("--floor", type=float, default=0.1, help="face-score floor for AP")
    ap.add_argument("--top", type=int, default=10, help="rows to print, best first")
    args = ap.parse_args()
    specs = args.scenes or [f"{DETECT / s}@val" for s in SETS]
    fd = create_face_detector(args.detector, det_size=args.det_size, score_threshold=args.floor, box_style=None)
    photos: list[tuple[str, np.ndarray, np.ndarray, np.ndarray]] = []
    for spec in specs:
        name = Path(spec.split("@")[0]).name
        for im, img in iter_images(load_source(spec).images, []):
            gt = np.array([b for b in im.boxes if b is not None], np.float32).reshape(-1, 4)
            det = fd.detect(img)
            photos.append((name, gt, det.xyxy, det.face_score))
    names = sorted({p[0] for p in photos}, key=lambda n: [p[0] for p in photos].index(n))

    def ap50(style: tuple[float, float, float], only: str | None = None) -> float:
        scored: list[tuple[float, bool]] = []
        n_gt = 0
        for name, gt, boxes, scores in photos:
            if only and name != only:
                continue
            match = match_faces(gt, restyle(boxes, style), np.argsort(-scores, kind="stable"))
            scored += [(float(s), bool(m >= 0)) for s, m in zip(scores, match)]
            n_gt += len(gt)
        return face_ap(scored, n_gt)

    n_faces = sum(len(p[1]) for p in photos)
    print(f"{len(photos)} photos, {n_faces} annotated faces; {args.detector} at {args.det_size}, face AP@0.5")
    rows = [(ap50(s), s) for s in itertools.product(WIDTH, HEIGHT, DOWN)]
    rows.sort(key=lambda r: -r[0])
    plain = (1.0, 1.0, 0.0)
    print("| width x | height x | centre down (x height) | face AP, all | " + " | ".join(names) + " |")
    print("|---" * (4 + len(names)) + "|")
    for total, s in [(ap50(plain), plain)] + rows[: args.top]:
        print(f"| {s[0]} | {s[1]} | {s[2]} | {total:.4f} | " + " | ".join(f"{ap50(s, n):.3f}" for n in names) + " |")
    print(f"best: box_style={rows[0][1]} (first row: the boxes as the detector gives them)")


if __name__ == "__main__":
    main()
