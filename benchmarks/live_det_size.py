"""Live mode's face-detection size, chosen by measurement: face AP@0.5 (any class) on scene photos letterboxed into
640x480 frames, as a camera would deliver them, against the time a frame takes, for each det-size.

    python benchmarks/live_det_size.py [SCENES ...] [--sizes 320,480,640] [--repeat 3]

SCENES default to every scene set's @val split; --detectors compares face detectors (default: YuNet and the tuned one). Pair the table with `python benchmarks/pipeline_speed.py` (real
frames/s of the whole pipeline with 1-3 faces): the live default should be the most accurate size that keeps at least
60 frames/s there.
"""

from __future__ import annotations

import argparse
import time

import cv2
import numpy as np
from _frames import SHARED as _SHARED  # noqa: E402  (../shared, or where MASKWATCH_SHARED points)

from maskwatch.datasets import iter_images, load_source
from maskwatch.detectors import create_face_detector
from maskwatch.eval.detection import face_ap, match_faces

DETECT = _SHARED / "data" / "detect"
SETS = ("masks-voc-dev", "masks-yolo-extra", "ilc-2021", "maskdetect-cn")


def letterbox(img: np.ndarray, boxes: np.ndarray, w: int = 640, h: int = 480) -> tuple[np.ndarray, np.ndarray]:
    """The image scaled to fit w x h (aspect kept, grey bars), and its xyxy boxes in the frame's pixels."""
    s = min(w / img.shape[1], h / img.shape[0])
    nw, nh = int(round(img.shape[1] * s)), int(round(img.shape[0] * s))
    frame = np.full((h, w, 3), 114, np.uint8)
    x0, y0 = (w - nw) // 2, (h - nh) // 2
    frame[y0 : y0 + nh, x0 : x0 + nw] = cv2.resize(img, (nw, nh), interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
    return frame, boxes * s + np.array([x0, y0, x0, y0], np.float32)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("scenes", nargs="*")
    ap.add_argument("--sizes", default="320,480,640")
    ap.add_argument("--repeat", type=int, default=3, help="timed passes over the frames")
    ap.add_argument("--detectors", default="yunet,yunet_masks", help="face detectors to compare (registry names or ONNX paths)")
    args = ap.parse_args()
    frames, truths = [], []
    skipped: list[str] = []
    for spec in args.scenes or [f"{DETECT / s}@val" for s in SETS]:
        for im, img in iter_images(load_source(spec).images, skipped):
            frame, gt = letterbox(img, np.array(im.boxes, np.float32).reshape(-1, 4))
            frames.append(frame)
            truths.append(gt)
    n_gt = sum(len(g) for g in truths)
    print(f"{len(frames)} frames 640x480 (letterboxed scene photos), {n_gt} annotated faces; {len(skipped)} unreadable")
    print("| detector | det-size | face AP@0.5 | face recall | boxes/frame | median ms/frame (detector alone) |")
    print("|---|---|---|---|---|---|")
    for name, size in ((n, int(v)) for n in args.detectors.split(",") for v in args.sizes.split(",")):
        fd = create_face_detector(name, det_size=size)
        scored: list[tuple[float, bool]] = []
        found = 0
        for frame, gt in zip(frames, truths):
            det = fd.detect(frame)
            match = match_faces(gt, det.xyxy, np.argsort(-det.face_score, kind="stable"))
            scored += [(float(s), bool(m >= 0)) for s, m in zip(det.face_score, match)]
            found += int((match >= 0).sum())
        ap50 = face_ap(scored, n_gt)
        times = []
        for _ in range(args.repeat):
            for frame in frames:
                t0 = time.perf_counter()
                fd.detect(frame)
                times.append(time.perf_counter() - t0)
        print(f"| {name} | {size} | {ap50:.3f} | {found / n_gt:.3f} | {len(scored) / len(frames):.2f} | {1000 * np.median(times):.2f} |")


if __name__ == "__main__":
    main()
