"""Whole pipeline (face detection + crops + mask classification) on real 640x480 frames with 1-3 faces:
frames/s and ms per frame (median, p95), for maskwatch with each face detector and for a reproduction of
the founding documents' pipeline (res10 SSD 300x300 + MobileNetV2 at 224x224, one face at a time, and
batched), all in the same run.

    python benchmarks/pipeline_speed.py [--frames 40] [--repeat 3]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _frames import real_frames  # noqa: E402

from maskwatch.classifier import MaskClassifier  # noqa: E402
from maskwatch.crops import crop_faces, to_input  # noqa: E402
from maskwatch.detectors import create_face_detector  # noqa: E402
from maskwatch.pipeline import Detector  # noqa: E402
from maskwatch.settings import LIVE, PHOTO  # noqa: E402


class DocumentsPipeline:
    """res10 SSD (conf > 0.5) -> each face cropped and resized to 224x224 -> MobileNetV2 (ImageNet trunk +
    the documents' head, random head weights: the speed is what counts here) in onnxruntime."""

    def __init__(self, batched: bool) -> None:
        import onnxruntime as ort
        import torch

        from maskwatch.train.model import MaskNet

        self.ssd = create_face_detector("ssd", det_size=0)
        path = Path(tempfile.mkdtemp()) / "mnv2_224.onnx"
        torch.onnx.export(MaskNet(2).eval(), (torch.zeros(1, 3, 224, 224),), str(path), input_names=["input"],
                          output_names=["logits"], dynamic_axes={"input": {0: "n"}}, opset_version=17, dynamo=False)
        self.sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        self.batched = batched

    def detect(self, frame: np.ndarray) -> int:
        d = self.ssd.detect(frame)
        if len(d) == 0:
            return 0
        x = to_input(crop_faces(frame, d.xyxy, 224, 0.0))
        if self.batched:
            self.sess.run(None, {"input": x})
        else:
            for i in range(len(x)):
                self.sess.run(None, {"input": x[i : i + 1]})
        return len(d)


def time_it(fn, frames: list[np.ndarray], repeat: int) -> tuple[np.ndarray, float]:
    for f in frames[:5]:
        fn(f)
    t, faces = [], 0
    for _ in range(repeat):
        for f in frames:
            t0 = time.perf_counter()
            r = fn(f)
            t.append((time.perf_counter() - t0) * 1000)
            faces += r if isinstance(r, int) else len(r)
    return np.array(t), faces / (repeat * len(frames))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=40)
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    frames = real_frames(a.frames)
    clf = MaskClassifier()
    live, photo = LIVE, PHOTO
    rows = [
        (f"maskwatch {live['face_detector']} det_size={live['det_size']} (video default)",
         Detector(live["face_detector"], clf, det_size=live["det_size"]).detect),
        ("maskwatch yunet det_size=320 (an earlier video default)", Detector("yunet", clf, det_size=320).detect),
        ("maskwatch yunet_masks det_size=320", Detector("yunet_masks", clf, det_size=320).detect),
        ("maskwatch yunet_masks det_size=480", Detector("yunet_masks", clf, det_size=480).detect),
        ("maskwatch yunet_masks det_size=640", Detector("yunet_masks", clf, det_size=640).detect),
        ("maskwatch yunet det_size=640", Detector("yunet", clf, det_size=640).detect),
        (f"maskwatch {photo['face_detector']} det_size={photo['det_size']} + flip {photo['flip']} (photo default)",
         Detector(photo["face_detector"], MaskClassifier(flip=photo["flip"]), det_size=photo["det_size"]).detect),
        (f"maskwatch {photo['face_detector']} det_size={photo['det_size']} + flip on",
         Detector(photo["face_detector"], MaskClassifier(flip=True), det_size=photo["det_size"]).detect),
        ("maskwatch yunet det_size=800,1600 + flip (an earlier photo default)",
         Detector("yunet", MaskClassifier(flip=True), det_size=(800, 1600)).detect),
        ("maskwatch ssd", Detector("ssd", clf, det_size=0).detect),
        ("maskwatch haar det_size=320", Detector("haar", clf, det_size=320).detect),
        ("documents: res10 SSD + MobileNetV2 224, per face", DocumentsPipeline(batched=False).detect),
        ("documents: res10 SSD + MobileNetV2 224, batched", DocumentsPipeline(batched=True).detect),
    ]
    print(f"{len(frames)} real frames 640x480 (1-3 labelled faces each), x{a.repeat}; OpenCV threads {cv2.getNumThreads()}")
    print(f"{'pipeline':62} | {'frames/s':>8} | {'median ms':>9} | {'p95 ms':>7} | {'faces/frame':>11}")
    results = {}
    for name, fn in rows:
        t, fpf = time_it(fn, frames, a.repeat)
        results[name] = 1000 / t.mean()
        print(f"{name:62} | {1000 / t.mean():8.1f} | {np.median(t):9.2f} | {np.percentile(t, 95):7.2f} | {fpf:11.2f}")
    base = results["documents: res10 SSD + MobileNetV2 224, per face"]
    print(f"speed-up of the video default over the documents' per-face pipeline: {results[rows[0][0]] / base:.1f}x")


if __name__ == "__main__":
    main()
