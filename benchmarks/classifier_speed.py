"""Mask classifier alone, onnxruntime on the CPU: ms per face (batch 1) and per batch of 8.

    python benchmarks/classifier_speed.py [--model PATH] [--threads 2] [--runs 300]
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from maskwatch.classifier import MaskClassifier


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="mask_classifier")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--runs", type=int, default=300)
    a = ap.parse_args()
    clf = MaskClassifier(a.model, threads=a.threads)
    s = clf.input_size
    rng = np.random.default_rng(0)
    print(f"model {clf.path} ({clf.path.stat().st_size / 1e6:.1f} MB), input {s}x{s}, classes {clf.class_names}, threads {a.threads}")
    print(f"{'batch':>5} | {'median ms/batch':>15} | {'p95 ms/batch':>12} | {'median ms/face':>14}")
    for b in (1, 8):
        crops = rng.integers(0, 255, (b, s, s, 3), dtype=np.uint8)
        for _ in range(20):
            clf.predict(crops)
        times = []
        for _ in range(a.runs):
            t0 = time.perf_counter()
            clf.predict(crops)
            times.append((time.perf_counter() - t0) * 1000)
        t = np.array(times)
        print(f"{b:>5} | {np.median(t):15.2f} | {np.percentile(t, 95):12.2f} | {np.median(t) / b:14.2f}")


if __name__ == "__main__":
    main()
