"""Throughput of `maskwatch batch` on real scene photos against a plain single-process loop, and Dask's cost per chunk.

    python benchmarks/batch_speed.py [--images 2000] [--workers 1,2] [--chunk 64] [--mode photo]

Photos: the sorted images of every scene set in ../shared/data/detect (repeated if fewer than --images). Rows:
a plain loop (one process, ``Detector`` with all cores, as `maskwatch detect`), the same loop with one thread (what
one batch worker does), then `batch` with each worker count (the whole run: cluster start, scheduling, decoding,
detection, Parquet writing). Then the scheduler's round trip for an empty task, and what that is per image at this
chunk size. Each batch run writes to a fresh temporary folder.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from _frames import SHARED as _SHARED  # noqa: E402  (../shared, or where MASKWATCH_SHARED points)

from maskwatch.batch import Item, run_batch
from maskwatch.images import IMAGE_SUFFIXES, load_image
from maskwatch.pipeline import Detector
from maskwatch.settings import LIVE, PHOTO

DETECT = _SHARED / "data" / "detect"


def photos(n: int) -> list[str]:
    files = sorted(str(f) for f in DETECT.rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise SystemExit(f"no photos under {DETECT}")
    return (files * (n // len(files) + 1))[:n]


def plain_loop(files: list[str], settings: dict, threads: int | None) -> float:
    det = Detector(**settings, threads=threads)
    t0 = time.perf_counter()
    for f in files:
        det.detect(load_image(f))
    return time.perf_counter() - t0


def empty_task_ms(workers: int, n: int = 400) -> float:
    """Median-free mean round trip of an empty task through a local scheduler (submit -> result), in ms."""
    from distributed import Client, LocalCluster, wait

    with LocalCluster(n_workers=workers, threads_per_worker=1, host="127.0.0.1", dashboard_address="127.0.0.1:0") as cluster, \
            Client(cluster) as client:
        client.gather(client.map(_noop, range(20), pure=False))  # warm up
        t0 = time.perf_counter()
        wait(client.map(_noop, range(n), pure=False))
        return 1000 * (time.perf_counter() - t0) / n * workers  # per task, per worker slot


def _noop(x: int) -> int:
    return x


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=2000)
    ap.add_argument("--workers", default="1,2")
    ap.add_argument("--chunk", type=int, default=64)
    ap.add_argument("--mode", choices=["photo", "live"], default="photo")
    ap.add_argument("--skip-plain", action="store_true", help="only the batch rows")
    args = ap.parse_args()
    settings = dict(PHOTO if args.mode == "photo" else LIVE)
    files = photos(args.images)
    size_in = sum(os.path.getsize(f) for f in files)
    print(f"{len(files)} photos ({len(set(files))} distinct, {size_in / len(files) / 1024:.0f} KB each on average), "
          f"{args.mode} preset, chunk {args.chunk}, {os.cpu_count()} cores")
    print("| run | seconds | images/s | vs plain loop, 1 thread | mean s of work per chunk |")
    print("|---|---|---|---|---|")
    base = None
    if not args.skip_plain:
        for threads, name in ((None, "plain loop, one process, all cores"), (1, "plain loop, one process, 1 thread")):
            t = plain_loop(files, settings, threads)
            if threads == 1:
                base = len(files) / t
            print(f"| {name} | {t:.1f} | {len(files) / t:.2f} | {'' if base is None else '1.00x'} | |", flush=True)
    rates = {}
    bytes_out = 0
    for w in (int(v) for v in args.workers.split(",")):
        with tempfile.TemporaryDirectory() as d:
            t0 = time.perf_counter()
            res = run_batch([], Path(d) / "out", settings=settings, workers=w, chunk=args.chunk, plan=[Item(f) for f in files])
            t = time.perf_counter() - t0
            if res.chunks_failed:
                raise SystemExit(f"batch --workers {w}: chunks failed: {res.chunks_failed[:3]}")
            bytes_out = sum(p.stat().st_size for p in (Path(d) / "out" / "parts").iterdir())
            work = [json.loads(p.read_text())["seconds"] for p in (Path(d) / "out" / "chunks").iterdir()]
        rates[w] = len(files) / t
        rel = f"{rates[w] / base:.2f}x" if base else ""
        chunk_s = sum(work) / len(work)
        print(f"| batch --workers {w} (whole run) | {t:.1f} | {rates[w]:.2f} | {rel} | {chunk_s:.2f} |", flush=True)
    if len(rates) > 1:
        ws = sorted(rates)
        print(f"\nscaling: {ws[-1]} workers run {rates[ws[-1]] / rates[ws[0]]:.2f}x the rate of {ws[0]}")
    rt = empty_task_ms(2)
    print(f"scheduler round trip of an empty task: {rt:.2f} ms per task per worker slot; a chunk of {args.chunk} takes "
          f"{chunk_s:.2f} s of work in its worker ({1000 * chunk_s / args.chunk:.1f} ms per image), so scheduling is "
          f"{100 * rt / 1000 / chunk_s:.3f} % of the work")
    print(f"bytes per image: {size_in / len(files) / 1024:.0f} KB read, {bytes_out / len(files):.0f} B of Parquet written")


if __name__ == "__main__":
    main()
