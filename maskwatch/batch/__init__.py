"""Batch processing of photo archives and video files on Dask distributed: one machine by default, a cluster by address.

``run_batch(inputs, out)`` (and ``maskwatch batch``) plans the sorted list of items (images, URLs, sampled video
frames), cuts it into fixed chunks, and has Dask run :func:`~maskwatch.batch.work.process_chunk` on each chunk not
yet done: one part file per chunk under ``OUT/parts``, written atomically. A re-run of the same command resumes;
``OUT/manifest.json`` refuses a resume when the inputs or settings changed. Dask does the scheduling, retries and
worker restarts; maskwatch only decides what a chunk is. Needs the ``batch`` extra (dask, distributed, pyarrow).
"""

from __future__ import annotations

import json
import math
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import InputError
from .inputs import Item, expand_inputs
from .store import FORMATS, done_chunks, manifest_for, prepare, read_stats, write_atomic

CONNECT_TIMEOUT = 5.0  # seconds to wait for a scheduler given by address


@dataclass
class BatchResult:
    """What a run did. ``chunks_failed`` are left for the next run (the same command resumes them)."""

    out: Path
    items: int
    chunks: int
    chunks_done_before: int
    chunks_run: int
    chunks_failed: list[tuple[int, str]] = field(default_factory=list)
    errors: int = 0
    faces: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    items_run: int = 0
    resumed: bool = False

    @property
    def rate(self) -> float:
        """Items per second of this run (the chunks it ran)."""
        return self.items_run / self.seconds if self.seconds > 0 else 0.0

    def summary(self) -> dict[str, Any]:
        return {"out": str(self.out), "items": self.items, "chunks": self.chunks, "chunks_done_before": self.chunks_done_before,
                "chunks_run": self.chunks_run, "chunks_failed": [{"chunk": k, "error": e} for k, e in self.chunks_failed],
                "errors": self.errors, "faces": dict(sorted(self.faces.items())), "seconds": round(self.seconds, 2),
                "items_this_run": self.items_run, "items_per_second": round(self.rate, 2), "resumed": self.resumed}


def _client(address: str | None, workers: int, memory_limit: str | None) -> tuple[Any, Any]:
    """A Dask client and the local cluster it runs (None for a remote scheduler). Local: worker processes of one
    thread each, every socket on 127.0.0.1."""
    try:
        import dask
        from distributed import Client, LocalCluster
    except ImportError as e:
        raise InputError(f"batch runs need the 'batch' extra ({e.name} is missing): pip install 'maskwatch[batch]'") from None
    if address:
        try:
            return Client(address, timeout=CONNECT_TIMEOUT), None
        except (OSError, TimeoutError, ValueError) as e:
            raise InputError(f"--address {address}: no Dask scheduler answered within {CONNECT_TIMEOUT:.0f} s ({e}); start one "
                             "with `dask scheduler` (and workers with `dask worker ADDRESS`), or leave --address out to run "
                             "on this machine") from None
    import logging

    conf = {
        # A chunk whose worker dies is rerun once on another worker, then reported (and left for the next run).
        "distributed.scheduler.allowed-failures": 1,
        # Dask's nanny makes glibc return freed memory to the system at once (MALLOC_TRIM_THRESHOLD_=64 KiB), so every
        # photo's large buffers are mapped and faulted in again; with these, and a calmer event loop and no
        # profiler, a worker's per-photo time fell from about 23 to 21 ms (benchmarks/batch_speed.py, 640 photos).
        "distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": 256 * 2**20,
        "distributed.nanny.pre-spawn-environ.MALLOC_MMAP_THRESHOLD_": 256 * 2**20,
        "distributed.admin.tick.interval": "1s",
        "distributed.worker.profile.enabled": False,
    }
    with dask.config.set(conf):
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                               dashboard_address="127.0.0.1:0", memory_limit=memory_limit or "auto",
                               silence_logs=logging.CRITICAL)  # failures come back in BatchResult, said once and clearly
    return Client(cluster), cluster


def run_batch(inputs: list[str], out: str | Path, *, settings: dict[str, Any] | None = None, address: str | None = None,
              workers: int = 0, chunk: int = 64, fmt: str = "parquet", every_seconds: float | None = None,
              every_frames: int | None = None, force: bool = False, memory_limit: str | None = None,
              progress: Callable[[int, int, int], None] | None = None, plan: list[Item] | None = None) -> BatchResult:
    """Detect faces and masks in every input, on Dask. ``settings``: :class:`~maskwatch.pipeline.Detector` keyword
    arguments (default: the photo preset, as ``maskwatch detect``). ``workers``: local worker processes (0 = one per
    core; ignored with ``address``). ``progress(chunks_done, items_done, items_total)`` is called as chunks finish
    (items counted also for chunks done before). Returns a :class:`BatchResult`, also written to ``OUT/summary.json``."""
    import os

    from ..settings import DETECTOR_SETTINGS, PHOTO, SETTINGS, check

    known = set(DETECTOR_SETTINGS)

    if fmt not in FORMATS:
        raise InputError(f"--format {fmt}: use one of {', '.join(FORMATS)}")
    if not 1 <= chunk <= 100_000:
        raise InputError(f"--chunk {chunk}: give 1 to 100000 items per chunk")
    if workers < 0:
        raise InputError(f"--workers {workers}: give 1 or more (0 = one per core)")
    conf = {**{n: SETTINGS[n].default for n in known}, **PHOTO, **(settings or {})}  # every setting: the manifest says all
    unknown = sorted(set(conf) - known - {"keep_not_face"})
    if unknown:
        raise InputError(f"unknown setting(s) {', '.join(unknown)}; batch takes the Detector's settings: {', '.join(sorted(known))}")
    for name, value in conf.items():
        if name in known:
            check(name, value)
    conf.pop("threads", None)  # a worker has one thread
    items = plan if plan is not None else expand_inputs(list(inputs), every_seconds, every_frames)
    if not items:
        raise InputError("the inputs hold no image or video")
    outp = Path(out)
    resumed = prepare(outp, manifest_for(items, conf, chunk, fmt), force)
    n_chunks = math.ceil(len(items) / chunk)
    done = done_chunks(outp, n_chunks, fmt)
    todo = [k for k in range(n_chunks) if k not in done]
    res = BatchResult(outp, len(items), n_chunks, len(done), 0, resumed=resumed)
    items_done = sum(min(chunk, len(items) - k * chunk) for k in done)
    if progress:
        progress(len(done), items_done, len(items))
    t0 = time.perf_counter()
    if todo:
        client, cluster = _client(address, workers or os.cpu_count() or 1, memory_limit)
        try:
            from distributed import as_completed

            run_id = uuid.uuid4().hex[:8]
            wire_conf = {k: list(v) if isinstance(v, tuple) else v for k, v in conf.items()}
            futures = {}
            for k in todo:
                part = [(it.source, it.frame, it.time) for it in items[k * chunk : (k + 1) * chunk]]
                fut = client.submit(_run_chunk, k, part, wire_conf, str(outp.resolve()), fmt, key=f"maskwatch-chunk-{k}-{run_id}",
                                    retries=1, pure=False)
                futures[fut] = k
            for fut in as_completed(futures):
                k = futures[fut]
                try:
                    stats = fut.result()
                except Exception as e:  # KilledWorker, a full disk, ...: reported, the chunk stays for the next run
                    res.chunks_failed.append((k, _why(e)))
                    continue
                res.chunks_run += 1
                res.items_run += stats["items"]
                items_done += stats["items"]
                if progress:
                    progress(len(done) + res.chunks_run, items_done, len(items))
        finally:
            client.close()
            if cluster is not None:
                cluster.close()
    res.seconds = time.perf_counter() - t0
    for k in done_chunks(outp, n_chunks, fmt):
        st = read_stats(outp, k)
        res.errors += int(st.get("errors", 0))
        for lab, n in st.get("faces", {}).items():
            res.faces[lab] = res.faces.get(lab, 0) + int(n)
    write_atomic(outp / "summary.json", json.dumps(res.summary(), indent=1).encode())
    return res


def _why(e: BaseException) -> str:
    if type(e).__name__ == "KilledWorker":
        return ("the worker process running it died, twice (out of memory, killed from outside, or a crash in native "
                "code); give workers more memory (--memory-limit, fewer --workers) or a smaller --chunk")
    return f"{type(e).__name__}: {e}"[:300]


def _run_chunk(index: int, items: list[tuple[str, int, float]], settings: dict[str, Any], out: str, fmt: str) -> dict[str, Any]:
    from .work import process_chunk

    return process_chunk(index, items, settings, out, fmt)


__all__ = ["BatchResult", "Item", "expand_inputs", "run_batch"]
