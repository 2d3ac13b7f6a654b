"""How the face detector's boxes sit against a scene set's annotated boxes, and what the photo pipeline
returns off the annotated faces. One table per scene set:

- per class: faces, found at IoU >= 0.5, found only at IoU 0.3-0.5 (framed differently), not found (< 0.1);
- the annotated box relative to the matched detected box (IoU >= 0.3): medians of its left and top edge
  offsets and of its width and height, in units of the detected box;
- detections that match no annotated face (IoU < 0.3), by the label the classifier gives them.

    python benchmarks/box_framing.py [SCENES ...] [--detector yunet_masks] [--det-size 1024] [--flip on|off]

Defaults: ../shared/data/detect/masks-voc-dev@test and all of masks-yolo-extra; the photo preset's face detector
and det sizes (with the detector's own score and NMS thresholds). Not the photo preset's labels: the classifier
looks at every face mirrored too (--flip on; the preset's flip is auto), and a label is the class with the highest
probability x cost (without_mask weighted by the classifier's default nomask cost, 2; the preset's is 1), not_face
where P(not_face) >= 0.5, with no sure thresholds: no face is left grey (uncertain).
"""

from __future__ import annotations

import argparse

import numpy as np
from _frames import SHARED as _SHARED  # noqa: E402  (../shared, or where MASKWATCH_SHARED points)

from maskwatch.boxes import iou_matrix
from maskwatch.classifier import MaskClassifier
from maskwatch.datasets import load_source
from maskwatch.detectors import create_face_detector
from maskwatch.images import load_image
from maskwatch.settings import PHOTO, det_sizes, on_off

SHARED = _SHARED / "data" / "detect"


def measure(spec: str, detector, clf: MaskClassifier) -> None:
    ds = load_source(spec)
    per_class: dict[str, list[float]] = {}
    rel: list[tuple[float, float, float, float]] = []
    off: dict[str, int] = {}
    n_det = 0
    for im in ds.images:
        img = load_image(im.path)
        faces = detector.detect(img)
        n_det += len(faces)
        gt = np.array(im.boxes, np.float32).reshape(-1, 4)
        ious = iou_matrix(gt, faces.xyxy)
        for g, lab in enumerate(im.labels):
            best = float(ious[g].max()) if ious.shape[1] else 0.0
            per_class.setdefault(lab, []).append(best)
            if best >= 0.3:
                d = faces.xyxy[int(ious[g].argmax())]
                dw, dh = d[2] - d[0], d[3] - d[1]
                rel.append(((gt[g, 0] - d[0]) / dw, (gt[g, 1] - d[1]) / dh, (gt[g, 2] - gt[g, 0]) / dw, (gt[g, 3] - gt[g, 1]) / dh))
        unmatched = ~(ious.max(0) >= 0.3) if ious.shape[0] else np.ones(len(faces), bool)
        if unmatched.any():
            out = clf.classify(img, faces)
            for i in np.nonzero(unmatched)[0]:
                lab = out.class_names[out.class_id[i]]
                off[lab] = off.get(lab, 0) + 1
    print(f"== {spec}")
    print(f"{'class':>14} | faces | IoU>=0.5 | IoU 0.3-0.5 | not found (<0.1)")
    for lab, v in sorted(per_class.items()):
        a = np.array(v)
        print(f"{lab:>14} | {len(a):5d} | {(a >= 0.5).mean():8.3f} | {((a >= 0.3) & (a < 0.5)).sum():11d} | {(a < 0.1).sum():6d}")
    if rel:
        m = np.median(np.array(rel), 0)
        print(f"annotated box vs detected (medians, in detected-box units): left {m[0]:+.2f}, top {m[1]:+.2f}, "
              f"width x{m[2]:.2f}, height x{m[3]:.2f}  ({len(rel)} pairs)")
    print(f"detections: {n_det}; on no annotated face (IoU < 0.3): {sum(off.values())}, labelled {dict(sorted(off.items()))}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("scenes", nargs="*", default=[f"{SHARED}/masks-voc-dev@test", f"{SHARED}/masks-yolo-extra"])
    ap.add_argument("--detector", default=PHOTO["face_detector"], help="registry name or YuNet ONNX path")
    ap.add_argument("--det-size", type=det_sizes, default=PHOTO["det_size"])
    ap.add_argument("--flip", type=on_off, default="on", help="also classify each face mirrored (default: on)")
    a = ap.parse_args()
    detector = create_face_detector(a.detector, det_size=a.det_size)
    clf = MaskClassifier(flip=a.flip)
    for spec in a.scenes:
        measure(spec, detector, clf)


if __name__ == "__main__":
    main()
