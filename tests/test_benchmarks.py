"""Every benchmark still runs: each with tiny settings, from the installed package, printing its table."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import VOC, needs_shared

pytestmark = [needs_shared, pytest.mark.slow]
BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
VAL = f"{VOC}@val"


@pytest.mark.parametrize("script, args, needle", [
    ("classifier_speed.py", ["--runs", "3"], "ms/face"),
    ("monitor_speed.py", ["--frames", "4", "--repeat", "1"], "tracking and events cost"),
    ("monitor_memory.py", ["--people", "60", "--every", "30"], "     60 |     1560 |      20 |               20 |           0 |"),
    ("pipeline_speed.py", ["--frames", "3", "--repeat", "1"], "speed-up of the video default"),
    ("box_framing.py", [VAL], "IoU>=0.5"),
    ("operating_points.py", [VAL, "--mode", "photo", "--report", VAL, "--before", "sure_face_score=0.5"], "chosen point minus"),
    ("live_det_size.py", [VAL, "--sizes", "320", "--repeat", "1"], "| yunet_masks | 320 |"),
    ("photo_detector.py", [VAL, "--configs", "yunet:320"], "| yunet | 320 |"),
    ("box_style.py", [VAL, "--det-size", "320", "--top", "2", "--show", "1.05,0.975,0.04"], "| 1.05 | 0.975 | 0.04 |"),
    ("detector_misses.py", [VAL, "--det-size", "320", "--sheet", "misses.jpg"], "sheet: misses.jpg"),
    ("false_boxes.py", [VAL, "--mode", "live", "--sheet", "false.jpg"], "false per photo"),
    ("red_audit.py", [VAL, "--mode", "live", "--sheet", "red", "--set", "sure_nomask=0.9"], "preset, sure_nomask=0.9)"),
    ("batch_speed.py", ["--images", "24", "--chunk", "8", "--mode", "live"], "scheduling is"),
    ("server_memory.py", ["--uploads", "6", "--threads", "2", "--large-every", "3"], "after 6 uploads"),
])
def test_benchmark_runs_and_prints_its_table(script, args, needle, tmp_path):
    if script == "batch_speed.py":
        pytest.importorskip("distributed")
    if script == "pipeline_speed.py":
        pytest.importorskip("torch")  # it exports the founding documents' model to compare with
    r = subprocess.run([sys.executable, str(BENCH / script), *args], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    assert needle in r.stdout, r.stdout[-2000:]


def _load(name: str):
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_red_audit_accounts_for_every_bare_face_and_every_red_box(tmp_path):
    from maskwatch.datasets import load_source
    from maskwatch.pipeline import Detector
    from maskwatch.settings import LIVE

    ra = _load("red_audit")
    sheet = tmp_path / "s.png"
    n_shown, wrong, fates = ra.audit(Detector(**LIVE, keep_not_face=True), VAL, "without_mask", LIVE["sure_face_score"], sheet)
    n_bare = sum(lab == "without_mask" for im in load_source(VAL).images for lab in im.labels)
    assert sum(fates.values()) == n_bare > 0
    assert fates["shown"] == n_shown - len(wrong)  # a strictly right red box is a bare face shown red, one to one
    assert sheet.is_file() == bool(wrong)  # a sheet only where there is something to look at
    assert fates["grey: face score"] + fates["grey: probability"] > 0  # the live point leaves some grey


def test_paired_difference_is_zero_for_the_same_point_and_sure_for_a_clear_gain():
    op = _load("operating_points")
    rng = np.random.default_rng(0)
    n_img, per = 60, 3
    image = np.repeat(np.arange(n_img), per)
    truth = np.array(["without_mask"] * len(image), dtype=object)
    p_nomask = rng.uniform(0.55, 1.0, len(image))
    probs = np.stack([1 - p_nomask, p_nomask, np.zeros_like(p_nomask)], 1)
    o = {"class_names": np.array(["with_mask", "without_mask", "mask_incorrect"], dtype=object), "probs": probs,
         "face_score": np.ones(len(image)), "truth": truth, "image": image, "gt_image": image,
         "gt_labels": truth.copy(), "n_images": np.array(n_img)}
    a = {"sure_face_score": 0.5, "sure_nomask": 0.9, "sure_mask": 0.5, "not_face_threshold": 1.01}
    same = op.paired_difference(o, a, a, resamples=200)
    assert same["without_mask"]["recall"] == (0.0, 0.0, 0.0)
    lower = op.paired_difference(o, a, {**a, "sure_nomask": 0.6}, resamples=200)
    d, lo, hi = lower["without_mask"]["recall"]
    assert d > 0.3 and 0 < lo <= d <= hi  # every right box above 0.9 is still shown: recall can only rise
    assert lower["without_mask"]["false alarms / 100 photos"][:3] == (0.0, 0.0, 0.0)
    assert op.point_arg("sure_face_score=0.95,sure_mask=0.8") == {"sure_face_score": 0.95, "sure_mask": 0.8}
    with pytest.raises(argparse.ArgumentTypeError):
        op.point_arg("face=0.9")
