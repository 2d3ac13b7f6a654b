"""The models command: the registry and where each file was found."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable


def cmd_models(args: argparse.Namespace) -> int:
    from ..eval import peers  # noqa: F401  (adds the peer models to PEERS)
    from ..models import PEERS, REGISTRY, ModelFile, find, search_paths, sha256_of

    def row(name: str, m: ModelFile, peer: bool) -> dict:
        path = find(name)
        ok = None
        if path and m.sha256:
            ok = sha256_of(path) in m.sha256
        return {"name": name, "file": m.filename, "found": str(path) if path else None,
                "checksum_ok": ok, "url": m.url, "about": m.about, "licence": m.licence,
                "searched": [str(p) for p in search_paths(name)], "peer": peer}

    rows = [row(name, m, False) for name, m in REGISTRY.items()]
    from pathlib import Path

    from ..detectors.haar import DEFAULT_CASCADE, cascade_path

    where = cascade_path()  # not a download: opencv-python 4.x ships it (5.0 and some builds do not)
    haar = Path(where) if where else None
    rows.append({"name": "haar", "file": DEFAULT_CASCADE, "found": str(haar) if haar and haar.is_file() else None,
                 "checksum_ok": None, "url": None, "about": "OpenCV's Haar cascade, inside opencv-python 4.x",
                 "licence": "BSD-3-Clause (OpenCV)", "searched": [str(haar)] if haar else [], "peer": False})
    rows += [row(name, m, True) for name, m in PEERS.items()]  # other projects' models: yardsticks for --peer, benchmarks
    if args.json:
        for r in rows:
            print(json.dumps(r))
        return 0
    for r in rows:
        state = "missing" if not r["found"] else ("ok" if r["checksum_ok"] in (True, None) else "CHECKSUM MISMATCH")
        where = str(r["found"] or "(not found; " + (f"downloads from {r['url']}" if r["url"] else "no download") + ")")
        peer = f" [peer model, for benchmarks and evaluate-detection --peer {r['name']}]" if r["peer"] else ""
        print(f"{r['name']:22} {state:8} {where}  [licence: {r['licence'] or 'unknown'}]{peer}")
    return 0


def parser_models(cmd: Callable[..., argparse.ArgumentParser]) -> None:
    m = cmd("models", "list the model registry (and the peer models benchmarks compare with) and where each file was found",
            "maskwatch models")
    m.add_argument("--json", action="store_true", help="JSON lines instead of a table")
