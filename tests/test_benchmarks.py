"""Every benchmark still runs: each with tiny settings, from the installed package, printing its table."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import VOC, needs_shared

pytestmark = [needs_shared, pytest.mark.slow]
BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
VAL = f"{VOC}@val"


@pytest.mark.parametrize("script, args, needle", [
    ("classifier_speed.py", ["--runs", "3"], "ms/face"),
    ("monitor_speed.py", ["--frames", "4", "--repeat", "1"], "tracking and events cost"),
    ("pipeline_speed.py", ["--frames", "3", "--repeat", "1"], "speed-up of the video default"),
    ("box_framing.py", [VAL], "IoU>=0.5"),
    ("operating_points.py", [VAL, "--mode", "photo"], "chosen:"),
    ("live_det_size.py", [VAL, "--sizes", "320", "--repeat", "1"], "| yunet_masks | 320 |"),
    ("photo_detector.py", [VAL, "--configs", "yunet:320"], "| yunet | 320 |"),
    ("box_style.py", [VAL, "--det-size", "320", "--top", "2", "--show", "1.05,0.975,0.04"], "| 1.05 | 0.975 | 0.04 |"),
    ("detector_misses.py", [VAL, "--det-size", "320", "--sheet", "misses.jpg"], "sheet: misses.jpg"),
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
