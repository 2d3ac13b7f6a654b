"""A batch run's output folder: the manifest that makes resuming safe, and the parts written atomically.

Layout of ``OUT``::

    manifest.json            inputs (count and sha256 of the sorted item list), settings, chunk size, format
    parts/part-000012.parquet  rows of chunk 12 (or .jsonl); present = the chunk is done
    chunks/part-000012.json    that chunk's counts (images, faces per label, errors, seconds), kept apart so that
                             parts/ holds nothing but data (pandas, DuckDB and Polars read the folder as one table)
    summary.json             the whole run's counts and throughput, rewritten at the end of every run

A part is written to a temporary name and renamed into place (atomic on one file system), after its counts file,
so a killed run never leaves half a part and a present part always has its counts.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

from ..errors import InputError
from .inputs import Item

FORMAT_VERSION = 1
FORMATS = ("parquet", "jsonl")


def plan_hash(items: list[Item]) -> str:
    h = hashlib.sha256()
    for it in items:
        h.update(f"{it.source}\t{it.frame}\n".encode())
    return h.hexdigest()


def manifest_for(items: list[Item], settings: dict[str, Any], chunk: int, fmt: str) -> dict[str, Any]:
    return {"maskwatch_batch": FORMAT_VERSION, "items": len(items), "items_sha256": plan_hash(items),
            "first": items[0].key() if items else "", "chunk": chunk, "format": fmt,
            "settings": {k: list(v) if isinstance(v, tuple) else v for k, v in sorted(settings.items())}}


def part_path(out: Path, index: int, fmt: str) -> Path:
    return out / "parts" / f"part-{index:06d}.{fmt}"


def stats_path(out: Path, index: int) -> Path:
    return out / "chunks" / f"part-{index:06d}.json"


def _differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    why = []
    if old.get("items_sha256") != new["items_sha256"]:
        why.append(f"the inputs ({old.get('items')} items then, {new['items']} now)")
    for key in ("chunk", "format"):
        if old.get(key) != new[key]:
            why.append(f"--{key} ({old.get(key)} then, {new[key]} now)")
    from ..settings import SETTINGS

    def then(k: str) -> Any:  # a run of an earlier release stored only the settings it was given: the rest were defaults
        default = SETTINGS[k].default if k in SETTINGS else None
        return old.get("settings", {}).get(k, list(default) if isinstance(default, tuple) else default)

    changed = sorted(k for k in set(old.get("settings", {})) | set(new["settings"]) if then(k) != new["settings"].get(k))
    if changed:
        why.append("settings " + ", ".join(f"{k} ({then(k)} then, {new['settings'].get(k)} now)" for k in changed))
    return why


def prepare(out: Path, manifest: dict[str, Any], force: bool) -> bool:
    """Make ``out`` ready for this run; True if it resumes an earlier run of the same plan. Refuses a folder that
    holds another run (unless ``force``, which removes only what a batch run writes) or files that are not a run's."""
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out}: is a file; give a folder for the batch output")
    mpath = out / "manifest.json"
    ours = {"manifest.json", "parts", "chunks", "summary.json"}
    if out.is_dir():
        present = {p.name for p in out.iterdir()}
        if present and not mpath.exists():
            raise InputError(f"--out {out}: the folder is not empty and holds no maskwatch batch run; choose an empty or new folder "
                             "(maskwatch never deletes files it did not write)")
        if mpath.exists():
            try:
                old = json.loads(mpath.read_text())
            except (OSError, ValueError) as e:
                raise InputError(f"{mpath}: unreadable ({e}); choose a new --out folder") from None
            why = _differences(old, manifest)
            if not why:
                for folder in ("parts", "chunks"):
                    for tmp in (out / folder).glob("*.tmp*"):  # left by a killed run
                        tmp.unlink(missing_ok=True)
                return True
            if not force:
                raise InputError(f"--out {out}: holds a batch run that differs in " + "; ".join(why)
                                 + ". Resume it with the same command, add --force to replace it, or choose a new --out folder")
            if present - ours:
                raise InputError(f"--out {out}: also holds files a batch run did not write ({', '.join(sorted(present - ours)[:3])}); "
                                 "--force will not delete them. Choose a new --out folder")
            shutil.rmtree(out / "parts", ignore_errors=True)
            shutil.rmtree(out / "chunks", ignore_errors=True)
            (out / "summary.json").unlink(missing_ok=True)
    (out / "parts").mkdir(parents=True, exist_ok=True)
    (out / "chunks").mkdir(exist_ok=True)
    write_atomic(mpath, json.dumps(manifest, indent=1).encode())
    return False


def write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def done_chunks(out: Path, n_chunks: int, fmt: str) -> set[int]:
    return {k for k in range(n_chunks) if part_path(out, k, fmt).exists()}


def read_stats(out: Path, index: int) -> dict[str, Any]:
    try:
        return json.loads(stats_path(out, index).read_text())
    except (OSError, ValueError):
        return {}
