"""The batch command: photo archives and video files on Dask, resumable."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from ..settings import LIVE, PHOTO
from .common import (
    DETECT_SETTINGS,
    PHOTO_DEFAULTS,
    VIDEO_DEFAULTS,
    _bar,
    _check_output_folder,
    _err,
    _say_left_out,
)
from .options import add_arguments


def cmd_batch(args: argparse.Namespace) -> int:
    import logging

    from ..batch import run_batch

    preset = dict(LIVE if args.mode == "live" else PHOTO)
    given = {n: getattr(args, n) for n in DETECT_SETTINGS if hasattr(args, n)}  # options not given are absent (SUPPRESS)
    settings = {**preset, **given}
    for name in ("distributed", "distributed.nanny", "distributed.scheduler", "distributed.worker"):
        logging.getLogger(name).setLevel(logging.ERROR)  # Dask's INFO lines would bury the progress bar
    bar = _bar(None, "batch", "img", args.quiet)
    state = {"chunks": 0}

    def progress(chunks_done: int, items_done: int, total: int) -> None:
        bar.total = total
        bar.n = items_done
        state["chunks"] = chunks_done
        bar.set_postfix_str(f"chunks {chunks_done}", refresh=False)
        bar.refresh()

    from ..images import IMAGE_SUFFIXES, VIDEO_SUFFIXES

    _check_output_folder(Path(args.out), args.inputs, outputs="result files")
    _say_left_out(args.inputs, IMAGE_SUFFIXES + VIDEO_SUFFIXES, "images or videos")
    try:
        res = run_batch(args.inputs, args.out, settings=settings, address=args.address, workers=args.workers,
                        chunk=args.chunk, fmt=args.format, every_seconds=args.every_seconds, every_frames=args.every_frames,
                        force=args.force, memory_limit=args.memory_limit, progress=progress)
    finally:
        bar.close()
    faces = ", ".join(f"{k} {v}" for k, v in sorted(res.faces.items())) or "none"
    again = " (resumed: earlier chunks kept)" if res.chunks_done_before else ""
    _err(f"maskwatch: {res.items} item(s) in {res.chunks} chunk(s){again}; {res.errors} of them failed (see the 'error' "
         f"column); faces: {faces}; this run {res.items_run} item(s) in {res.seconds:.1f} s ({res.rate:.1f}/s). "
         f"Output in {res.out}/parts, summary in {res.out}/summary.json")
    for k, why in res.chunks_failed:
        _err(f"maskwatch: warning: chunk {k} failed twice and was left for the next run: {why}")
    if res.chunks_failed:
        _err("maskwatch: run the same command again to finish the failed chunks")
        return 1
    return 0


def parser_batch(cmd: Callable[..., argparse.ArgumentParser]) -> None:
    b = cmd("batch", "detect faces and masks in a photo archive or video files on Dask (one machine or a cluster); "
            "Parquet or JSON-lines output, resumable (needs the 'batch' extra)",
            "maskwatch batch photos/ 'more/**/*.jpg' list.txt --out results/ --workers 2\n"
            "  maskwatch batch cctv/*.mp4 --every-seconds 2 --mode live --out cctv-results/\n"
            "  maskwatch batch photos/ --out results/ --address tcp://scheduler:8786\n"
            "read it: duckdb -c \"SELECT f.label, count(*) FROM (SELECT unnest(faces) f FROM 'results/parts/*.parquet') GROUP BY 1\"\n"
            "settings default to the photo preset (" + ", ".join(f"{k} {v}" for k, v in PHOTO_DEFAULTS.items()) + ") or, with "
            "--mode live, the live preset (" + ", ".join(f"{k} {v}" for k, v in VIDEO_DEFAULTS.items()) + ")")
    b.add_argument("inputs", nargs="+", metavar="INPUT", help="image or video files, folders (recursive), quoted glob patterns, "
                   ".txt lists (one path or http(s) URL a line) or URLs")
    b.add_argument("--out", required=True, help="output folder: parts/part-NNNNNN.parquet (or .jsonl), manifest.json, summary.json; "
                   "the same command run again resumes it")
    b.add_argument("--address", help="Dask scheduler of a cluster (tcp://host:8786); its workers must see the same files "
                   "and the output folder, and have maskwatch installed. Default: a local cluster on 127.0.0.1")
    b.add_argument("--workers", type=int, default=0, help="local worker processes, one thread each (0 = one per core)")
    b.add_argument("--chunk", type=int, default=64, help="items per chunk: the unit of work, of retry and of resume")
    b.add_argument("--format", choices=["parquet", "jsonl"], default="parquet",
                   help="parquet (one row per image or frame, faces nested) or jsonl (the JSON lines of maskwatch detect, "
                        "plus an 'error' key for inputs that failed)")
    b.add_argument("--mode", choices=["photo", "live"], default="photo", help="settings preset: photo (accuracy first, as "
                   "detect) or live (speed first, as video)")
    b.add_argument("--every-seconds", type=float, help="videos: one frame every this many seconds of video (default 1)")
    b.add_argument("--every-frames", type=int, help="videos: every N-th frame instead")
    b.add_argument("--memory-limit", help="local workers: memory each may use before Dask restarts it (e.g. 2GB; default: "
                   "the machine's memory shared among them)")
    b.add_argument("--force", action="store_true", help="replace an output folder that holds a run over other inputs or "
                   "settings (only the files a batch run writes are removed)")
    add_arguments(b, DETECT_SETTINGS, {n: argparse.SUPPRESS for n in DETECT_SETTINGS})
