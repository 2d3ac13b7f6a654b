"""Photo mode's face detector and sizes, chosen by measurement: face AP@0.5, recall (all, masked, bare, under 16 px),
false boxes per photo and time per photo, for each detector and set of det sizes, on scene photos as they are.

    python benchmarks/photo_detector.py [SCENES ...] [--configs yunet:800,1600 yunet_masks:1024 ...] [--score 0.5]

SCENES default to every scene set's @val split (choose here, report on @test with `maskwatch evaluate-detection`).
A config is DETECTOR:SIZE[,SIZE...] (DETECTOR: a registry name or a YuNet ONNX path). Recall and false boxes are
counted at the detector's face-score floor --score; AP ranks every box above --floor. Time: median of detect() alone
(no decoding, no classifier), one process, all cores.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from _frames import SHARED as _SHARED  # noqa: E402  (../shared, or where MASKWATCH_SHARED points)

from maskwatch.boxes import iou_matrix
from maskwatch.datasets import iter_images, load_source
from maskwatch.detectors import create_face_detector
from maskwatch.eval.detection import face_ap, match_faces
from maskwatch.settings import det_sizes

DETECT = _SHARED / "data" / "detect"
SETS = ("masks-voc-dev", "masks-yolo-extra", "ilc-2021", "maskdetect-cn")
CONFIGS = ("yunet:800,1600", "yunet:1024", "yunet_masks:800", "yunet_masks:1024", "yunet_masks:1280", "yunet_masks:800,1600")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("scenes", nargs="*")
    ap.add_argument("--configs", nargs="*", default=list(CONFIGS))
    ap.add_argument("--score", type=float, default=0.5, help="face-score floor for recall and false boxes")
    ap.add_argument("--floor", type=float, default=0.1, help="face-score floor for AP")
    args = ap.parse_args()
    photos = []
    for spec in args.scenes or [f"{DETECT / s}@val" for s in SETS]:
        for im, img in iter_images(load_source(spec).images, []):
            photos.append((img, np.array([b for b in im.boxes if b is not None], np.float32).reshape(-1, 4), list(im.labels)))
    n_gt = sum(len(g) for _, g, _ in photos)
    print(f"{len(photos)} photos, {n_gt} annotated faces; recall and false boxes at face score >= {args.score}")
    print("| detector | det sizes | face AP@0.5 | recall | masked | bare | <16 px | false boxes/photo | ms/photo |")
    print("|---|---|---|---|---|---|---|---|---|")
    for conf in args.configs:
        name, _, sizes = conf.partition(":")
        fd = create_face_detector(name, det_size=det_sizes(sizes or "800,1600"), score_threshold=args.floor)
        scored: list[tuple[float, bool]] = []
        hits: dict[str, list[int]] = {}
        false = 0
        times = []
        for img, gt, labels in photos:
            t0 = time.perf_counter()
            det = fd.detect(img)
            times.append(time.perf_counter() - t0)
            match = match_faces(gt, det.xyxy, np.argsort(-det.face_score, kind="stable"))
            scored += [(float(s), bool(m >= 0)) for s, m in zip(det.face_score, match)]
            sure = det.face_score >= args.score
            false += int(((match < 0) & sure).sum())
            ious = iou_matrix(gt, det.xyxy[sure])
            found = ious.max(1) >= 0.5 if ious.size else np.zeros(len(gt), bool)
            side = np.minimum(gt[:, 2] - gt[:, 0], gt[:, 3] - gt[:, 1])
            for key, f in [*zip(labels, found), *(("<16", f) for f, s in zip(found, side) if s < 16), *(("all", f) for f in found)]:
                h = hits.setdefault(key, [0, 0])
                h[0] += int(f)
                h[1] += 1
        ap50 = face_ap(scored, n_gt)

        def r(key: str, hits: dict[str, list[int]] = hits) -> str:
            h = hits.get(key, [0, 0])
            return f"{h[0] / h[1]:.3f}" if h[1] else "-"

        print(f"| {name} | {sizes} | {ap50:.3f} | {r('all')} | {r('with_mask')} | {r('without_mask')} | {r('<16')} | "
              f"{false / len(photos):.2f} | {1000 * np.median(times):.1f} |", flush=True)


if __name__ == "__main__":
    main()
