"""Does a face detector's box style differ from the annotators'? Scale each box's width and height about its centre
and move the centre down by a fraction of its height, and measure face AP@0.5 per set for each style, on scene
photos as they are.

    python benchmarks/box_style.py [SCENES ...] [--detector yunet_masks] [--det-size 1024] [--show W,H,DOWN ...]

SCENES default to every scene set's @val split. Fit on one split and check on another (`--show` the style the first
chose): a style that only one split wants is noise. For yunet_masks at 1024 @val wanted (1.05, 0.975, 0.04) and
@train (1.0, 1.025, -0.02), so its boxes are used as the network gives them (MODEL_CARD.md).
"""

from __future__ import annotations

import argparse
import itertools
from pathlib import Path

import numpy as np
from _frames import SHARED as _SHARED  # noqa: E402  (../shared, or where MASKWATCH_SHARED points)

from maskwatch.datasets import iter_images, load_source
from maskwatch.detectors import create_face_detector
from maskwatch.eval.detection import face_ap, match_faces
from maskwatch.settings import det_sizes

DETECT = _SHARED / "data" / "detect"
SETS = ("masks-voc-dev", "masks-yolo-extra", "ilc-2021", "maskdetect-cn")
WIDTH = (0.95, 0.975, 1.0, 1.025, 1.05, 1.075, 1.1)
HEIGHT = (0.95, 0.975, 1.0, 1.025, 1.05)
DOWN = (-0.02, 0.0, 0.02, 0.04, 0.06)


def restyle(boxes: np.ndarray, style: tuple[float, float, float]) -> np.ndarray:
    """xyxy boxes (n, 4) with width and height scaled by ``style[0]`` and ``style[1]`` about the centre, and the
    centre moved down by ``style[2]`` times the height."""
    sw, sh, down = style
    cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    cy = cy + down * h
    w, h = w * sw, h * sh
    return np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], 1).astype(boxes.dtype)


def style(text: str) -> tuple[float, float, float]:
    w, h, down = (float(v) for v in text.split(","))
    return w, h, down


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("scenes", nargs="*")
    ap.add_argument("--detector", default="yunet_masks")
    ap.add_argument("--det-size", type=det_sizes, default=1024)
    ap.add_argument("--floor", type=float, default=0.1, help="face-score floor for AP")
    ap.add_argument("--top", type=int, default=10, help="rows to print, best first")
    ap.add_argument("--show", type=style, nargs="*", default=[], metavar="W,H,DOWN", help="styles to print too")
    args = ap.parse_args()
    specs = args.scenes or [f"{DETECT / s}@val" for s in SETS]
    fd = create_face_detector(args.detector, det_size=args.det_size, score_threshold=args.floor)
    photos: list[tuple[str, np.ndarray, np.ndarray, np.ndarray]] = []
    for spec in specs:
        name = Path(spec.split("@")[0]).name
        for im, img in iter_images(load_source(spec).images, []):
            gt = np.array([b for b in im.boxes if b is not None], np.float32).reshape(-1, 4)
            det = fd.detect(img)
            photos.append((name, gt, det.xyxy, det.face_score))
    names = list(dict.fromkeys(p[0] for p in photos))  # the sets, in the order given

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
    for total, s in [(ap50(plain), plain)] + [(ap50(s), s) for s in args.show] + rows[: args.top]:
        print(f"| {s[0]} | {s[1]} | {s[2]} | {total:.4f} | " + " | ".join(f"{ap50(s, n):.3f}" for n in names) + " |")
    print(f"best: box_style={rows[0][1]} (first row: the boxes as the detector gives them; then --show, then the best)")


if __name__ == "__main__":
    main()
