"""maskwatch batch on a real LocalCluster bound to 127.0.0.1: rows, errors, kill and resume, refusals, JSON lines."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import DATA, needs_shared, phone_video

pytest.importorskip("distributed")
pq = pytest.importorskip("pyarrow.parquet")

from maskwatch.batch import expand_inputs, run_batch  # noqa: E402
from maskwatch.errors import InputError  # noqa: E402
from maskwatch.settings import PHOTO  # noqa: E402

ILC = DATA / "detect" / "ilc-2021" / "images"
pytestmark = [needs_shared, pytest.mark.slow]
FAST = {"det_size": 640, "flip": False}  # one pass: the tests check plumbing, not accuracy


def _photos(n: int) -> list[Path]:
    files = sorted(ILC.glob("*.jpg"))[:n]
    if len(files) < n:
        pytest.skip(f"{ILC}: fewer than {n} photos")
    return files


@pytest.fixture
def inputs(tmp_path: Path) -> Path:
    """30 real photos and four broken files in one folder."""
    d = tmp_path / "in"
    d.mkdir()
    for f in _photos(30):
        (d / f.name).write_bytes(f.read_bytes())
    (d / "garbage.jpg").write_bytes(b"not a jpeg at all")
    (d / "empty.png").write_bytes(b"")
    good = _photos(1)[0].read_bytes()
    (d / "truncated.jpg").write_bytes(good[: len(good) // 3])
    (d / "broken.mp4").write_bytes(b"\x00" * 100)
    return d


def _rows(out: Path) -> list[dict]:
    return pq.read_table(out / "parts").to_pylist()


def test_one_row_per_input_with_errors(inputs: Path, tmp_path: Path) -> None:
    listed = tmp_path / "list.txt"
    listed.write_text(f"# extra inputs\n{tmp_path / 'missing.jpg'}\nhttp://127.0.0.1:9/nothing.jpg\n")
    res = run_batch([str(inputs), str(listed)], tmp_path / "out", settings=FAST, workers=2, chunk=8)
    rows = _rows(tmp_path / "out")
    assert len(rows) == 36 == res.items
    assert sorted(r["source"] for r in rows) == sorted({r["source"] for r in rows})
    errors = {Path(r["source"]).name: r["error"] for r in rows if r["error"]}
    assert set(errors) == {"garbage.jpg", "empty.png", "truncated.jpg", "broken.mp4", "missing.jpg", "nothing.jpg"}
    assert "truncated" in errors["truncated.jpg"] and "empty" in errors["empty.png"]
    assert "no such file" in errors["missing.jpg"] and "cannot be fetched" in errors["nothing.jpg"]
    good = [r for r in rows if not r.get("error")]
    assert all(r["width"] > 0 and r["height"] > 0 for r in good)
    assert sum(len(r["faces"]) for r in good) > 30
    face = next(f for r in good for f in r["faces"])
    assert set(face) == {"box", "face_score", "label", "confidence", "probs"} and len(face["box"]) == 4
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["errors"] == 6 and summary["items"] == 36 and summary["chunks"] == 5
    assert sum(summary["faces"].values()) == sum(len(r["faces"]) for r in good)


def test_video_frames_sampled(tmp_path: Path) -> None:
    img = cv2.resize(cv2.imread(str(_photos(1)[0])), (320, 240))
    path = tmp_path / "clip.avi"
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (320, 240))
    for k in range(30):  # 3 s at 10 frames/s
        vw.write(np.roll(img, k, axis=1))
    vw.release()
    items = expand_inputs([str(path)], every_seconds=0.5)
    assert [it.frame for it in items] == [0, 5, 10, 15, 20, 25] and items[1].time == 0.5
    run_batch([str(path)], tmp_path / "out", settings=FAST, workers=1, chunk=4, every_seconds=0.5)
    rows = sorted(_rows(tmp_path / "out"), key=lambda r: r["frame"])
    assert [(r["frame"], r["time"]) for r in rows] == [(f, f / 10) for f in (0, 5, 10, 15, 20, 25)]
    assert all(r["width"] == 320 and not r["error"] for r in rows)


def test_a_phone_video_filmed_sideways_is_read_upright(tmp_path: Path) -> None:
    """The rotation tag of a phone video is applied: rows give the upright size and the faces `video` finds."""
    upright = cv2.resize(cv2.imread(str(_photos(1)[0])), (320, 240))
    path = phone_video(tmp_path / "phone.mp4", upright, 90, frames=10)
    run_batch([str(path)], tmp_path / "out", settings=FAST, workers=1, chunk=4, every_frames=5)
    rows = sorted(_rows(tmp_path / "out"), key=lambda r: r["frame"])
    assert [(r["frame"], r["width"], r["height"], r["error"]) for r in rows] == [(0, 320, 240, None), (5, 320, 240, None)]
    import maskwatch

    assert len(rows[0]["faces"]) == len(maskwatch.detect(upright, **FAST)) > 0


def test_a_truncated_video_gives_good_rows_then_one_answer_for_the_rest(tmp_path: Path) -> None:
    """A video cut short (a copy interrupted): the frames before the cut are rows, every sampled frame after it
    says where the file ends, the same for all (it said 13, then 15)."""
    pytest.importorskip("av")
    from maskwatch.video import VideoSink

    img = cv2.resize(cv2.imread(str(_photos(1)[0])), (320, 240))
    whole = tmp_path / "whole.mp4"
    with VideoSink(whole, 320, 240, 10.0) as sink:  # H.264, index first (faststart): a cut file still opens
        for k in range(30):
            sink.write(np.roll(img, 4 * k, axis=1))
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size * 4 // 5])
    run_batch([str(cut)], tmp_path / "out", settings=FAST, workers=1, chunk=64, every_frames=3, fmt="jsonl")
    rows = sorted((json.loads(line) for p in (tmp_path / "out" / "parts").glob("*.jsonl") for line in p.read_text().splitlines()),
                  key=lambda r: r["frame"])
    good = [r for r in rows if not r.get("error")]
    bad = [r for r in rows if r.get("error")]
    assert len(rows) == 10 and good and bad and max(r["frame"] for r in good) < min(r["frame"] for r in bad)
    assert len({r["error"].split("cannot be read")[1] for r in bad}) == 1, [r["error"] for r in bad]
    assert bad[0]["error"].endswith(f"truncated or damaged from frame {bad[0]['frame']} on")


def test_killed_run_resumes_every_input_once(inputs: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "maskwatch.cli", "batch", str(inputs), "--out", str(out), "--chunk", "1",
           "--workers", "1", "--det-size", "640", "--flip", "off", "-q"]
    proc = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 60
        while time.time() < deadline and len(list((out / "parts").glob("*.parquet"))) < 3:
            time.sleep(0.1)
        assert len(list((out / "parts").glob("*.parquet"))) >= 3, "the run wrote no parts within 60 s"
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the CLI and its Dask workers, mid-run
        proc.wait()
    done_before = len(list((out / "parts").glob("*.parquet")))
    assert done_before < 34, "the run finished before it could be killed"
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert "resumed" in res.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["chunks_done_before"] == done_before and summary["chunks_run"] == 34 - done_before
    sources = [r["source"] for r in _rows(out)]
    assert len(sources) == 34 and len(set(sources)) == 34
    assert not list(out.rglob("*.tmp*"))


def test_changed_settings_or_inputs_refuse_to_resume(inputs: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    run_batch([str(inputs)], out, settings=FAST, workers=1, chunk=16)
    again = run_batch([str(inputs)], out, settings=FAST, workers=1, chunk=16)
    assert again.resumed and again.chunks_run == 0 and again.chunks_done_before == 3
    with pytest.raises(InputError, match=rf"differs in settings sure_nomask \({PHOTO['sure_nomask']} then, 0.95 now\).*--force"):
        run_batch([str(inputs)], out, settings={**FAST, "sure_nomask": 0.95}, workers=1, chunk=16)
    with pytest.raises(InputError, match=r"score_threshold \(0.5 then, 0.6 now\)"):  # said "None then": not given
        run_batch([str(inputs)], out, settings={**FAST, "score_threshold": 0.6}, workers=1, chunk=16)
    manifest = json.loads((out / "manifest.json").read_text())  # a run of an earlier release stored fewer settings
    del manifest["settings"]["score_threshold"], manifest["settings"]["nms_threshold"]
    (out / "manifest.json").write_text(json.dumps(manifest))
    assert run_batch([str(inputs)], out, settings=FAST, workers=1, chunk=16).chunks_run == 0  # defaults then: resumes
    (inputs / "new.jpg").write_bytes(_photos(31)[-1].read_bytes())
    with pytest.raises(InputError, match=r"the inputs \(34 items then, 35 now\)"):
        run_batch([str(inputs)], out, settings=FAST, workers=1, chunk=16)
    res = run_batch([str(inputs)], out, settings=FAST, workers=1, chunk=16, force=True)
    assert res.chunks_run == 3 and len(_rows(out)) == 35


def test_jsonl_equals_detect(tmp_path: Path) -> None:
    files = [str(f) for f in _photos(6)]
    det = subprocess.run([sys.executable, "-m", "maskwatch.cli", "detect", *files, "-q"], capture_output=True, text=True, timeout=120)
    assert det.returncode == 0, det.stderr
    expected = sorted((json.loads(line) for line in det.stdout.splitlines()), key=lambda r: r["source"])
    run_batch(files, tmp_path / "out", workers=2, chunk=4, fmt="jsonl")
    got = sorted((json.loads(line) for p in sorted((tmp_path / "out" / "parts").glob("*.jsonl"))
                  for line in p.read_text().splitlines()), key=lambda r: r["source"])
    assert got == expected


def test_an_archive_of_iphone_heic_photos_gives_the_rows_detect_gives(tmp_path: Path) -> None:
    """HEIC photos in a batch folder (the heic extra) are read as `detect` reads them, not left out."""
    from test_images import _heic

    from maskwatch.images import load_image

    d = tmp_path / "in"
    d.mkdir()
    for f in _photos(2):
        (d / (f.stem + ".HEIC")).write_bytes(_heic(np.ascontiguousarray(load_image(f)[:, :, ::-1])))
    det = subprocess.run([sys.executable, "-m", "maskwatch.cli", "detect", str(d), "-q"], capture_output=True, text=True, timeout=120)
    assert det.returncode == 0, det.stderr
    expected = sorted((json.loads(line) for line in det.stdout.splitlines()), key=lambda r: r["source"])
    run_batch([str(d)], tmp_path / "out", workers=1, chunk=4, fmt="jsonl")
    got = sorted((json.loads(line) for p in sorted((tmp_path / "out" / "parts").glob("*.jsonl"))
                  for line in p.read_text().splitlines()), key=lambda r: r["source"])
    assert len(got) == 2 and got == expected and all(r["source"].endswith(".HEIC") for r in got)


def test_bad_inputs_say_what_is_wrong(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="unknown setting.*detsize"):
        run_batch([str(_photos(1)[0])], tmp_path / "o0", settings={"detsize": 640})
    with pytest.raises(InputError, match="no input given"):
        run_batch([], tmp_path / "o1")
    with pytest.raises(InputError, match="no such file or folder"):
        run_batch([str(tmp_path / "nope")], tmp_path / "o1")
    empty = tmp_path / "empty.txt"
    empty.write_text("# nothing\n\n")
    with pytest.raises(InputError, match="holds no path or URL"):
        run_batch([str(empty)], tmp_path / "o1")
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(InputError, match="not empty and holds no maskwatch batch run"):
        run_batch([str(_photos(1)[0])], other)
    t0 = time.time()
    with pytest.raises(InputError, match="no Dask scheduler answered"):
        run_batch([str(_photos(1)[0])], tmp_path / "o2", address="tcp://127.0.0.1:1")
    assert time.time() - t0 < 15


def test_dying_worker_is_reported_and_left_for_the_next_run(tmp_path: Path) -> None:
    # 80 MB is less than a worker needs to load the models: its nanny kills it, twice, and the chunk is given up.
    res = run_batch([str(f) for f in _photos(3)], tmp_path / "out", settings=FAST, workers=1, chunk=4, memory_limit="80MB")
    assert [k for k, _ in res.chunks_failed] == [0]
    assert "died" in res.chunks_failed[0][1] and "--memory-limit" in res.chunks_failed[0][1]
    again = run_batch([str(f) for f in _photos(3)], tmp_path / "out", settings=FAST, workers=1, chunk=4)
    assert again.resumed and again.chunks_run == 1 and not again.chunks_failed


def test_cli_batch_summary_and_duckdb_reading(inputs: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    res = subprocess.run([sys.executable, "-m", "maskwatch.cli", "batch", str(inputs), "--out", str(out), "--workers", "2",
                          "--det-size", "640", "--flip", "off", "-q"], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert "34 item(s) in 1 chunk(s); 4 of them failed" in res.stderr
    assert "left out" not in res.stderr  # every file of the folder is an image or a video (the broken ones are rows)
    duckdb = pytest.importorskip("duckdb")
    n = duckdb.sql(f"SELECT count(*) FROM (SELECT unnest(faces) AS f FROM '{out}/parts/*.parquet') WHERE f.label IS NOT NULL").fetchall()[0]
    assert n[0] == sum(json.loads((out / "summary.json").read_text())["faces"].values())


def test_cli_batch_names_the_files_it_does_not_read_and_never_writes_among_the_inputs(tmp_path: Path) -> None:
    d = tmp_path / "archive"
    d.mkdir()
    (d / "p.jpg").write_bytes(_photos(1)[0].read_bytes())
    (d / "IMG_0001.CR2").write_bytes(b"raw photo")
    (d / "notes.txt").write_text("hi")

    def batch(out: Path) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "maskwatch.cli", "batch", str(d), "--out", str(out), "--workers", "1",
                               "--det-size", "640", "--flip", "off", "--format", "jsonl", "-q"],
                              capture_output=True, text=True, timeout=120)

    res = batch(tmp_path / "out")
    assert res.returncode == 0, res.stderr
    assert "left out 2 file(s) that are not images or videos it reads (.cr2 1, .txt 1)" in res.stderr
    res = batch(d / "results")
    assert res.returncode == 2 and "is inside the input folder" in res.stderr and not (d / "results").exists()


def test_runs_on_a_cluster_given_by_address(tmp_path: Path) -> None:
    from distributed import LocalCluster

    files = [str(f) for f in _photos(5)]
    with LocalCluster(n_workers=1, threads_per_worker=1, host="127.0.0.1", dashboard_address="127.0.0.1:0") as cluster:
        res = run_batch(files, tmp_path / "out", settings=FAST, address=cluster.scheduler_address, chunk=2)
        assert len(cluster.scheduler.workers) == 1  # the cluster outlives the run: run_batch closes only its client
    assert res.chunks_run == 3 and not res.chunks_failed
    assert sorted(r["source"] for r in _rows(tmp_path / "out")) == sorted(files)
