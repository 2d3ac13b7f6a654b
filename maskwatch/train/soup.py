"""Average the weights of several trained classifiers into one ("model soup", Wortsman et al. 2022).

Runs that start from the same ImageNet backbone and the same head initialisation (the same ``--seed``) and
differ only in their settings (loss weight, sampling, augmentation, EMA) end up close enough that the average
of their weights is itself a good model, usually better than each member, at the cost of one model at run
time. Runs with different seeds start their heads from different random weights: their average is noise.

The average is taken over the ONNX files' initializers (float32 arithmetic, stored back in each tensor's own
type), i.e. over convolution weights with BatchNorm already folded in; the head weights kept in the metadata
for Grad-CAM are averaged the same way. No member's calibration (temperature) is the soup's: it gets the geometric
mean of theirs as a stand-in, and ``maskwatch.train.calibration.calibrate`` (``maskwatch soup --val``) fits its own.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError

META_KEY = "maskwatch"
SAME = ("format", "class_names", "input_size", "margin", "mean", "std", "scale", "color", "layout")


def _load(path: Path) -> tuple[Any, dict[str, Any]]:
    import onnx

    if not path.is_file():
        raise InputError(f"{path}: no such file; give maskwatch classifier .onnx files")
    try:
        model = onnx.load(str(path))
    except Exception as e:  # protobuf's DecodeError and friends: not an ONNX file
        raise InputError(f"{path}: not an ONNX model ({type(e).__name__})") from None
    if model.ir_version == 0 or not model.graph.node:  # a few junk bytes can parse as an empty protobuf message
        raise InputError(f"{path}: not an ONNX model (no network in it); give maskwatch classifier .onnx files")
    meta = next((p.value for p in model.metadata_props if p.key == META_KEY), None)
    if meta is None:
        raise InputError(f"{path}: an ONNX file without maskwatch metadata; only models from `maskwatch train` can be averaged")
    try:
        parsed = json.loads(meta)
        head = parsed["head"]
        for key in ("fc1_w", "fc1_b", "fc2_w", "fc2_b"):
            base64.b64decode(head[key], validate=True)
    except (ValueError, KeyError, TypeError):
        raise InputError(f"{path}: its maskwatch metadata is damaged (no readable head weights); re-export the model") from None
    return model, parsed


def members(paths: list[str | os.PathLike]) -> list[Path]:
    """The files of a soup's members: paths, or the registry name ``mask_classifier`` (as ``maskwatch evaluate``
    takes it). One file given twice (under any name) is refused: the soup of a model with itself is that model."""
    from ..models import REGISTRY, resolve

    files = [resolve(str(p)) if str(p) in REGISTRY else Path(p) for p in paths]
    seen: dict[Path, str | os.PathLike] = {}
    for p, f in zip(paths, files):
        key = f.resolve()
        if key in seen:
            same = "" if str(seen[key]) == str(p) else f" (the same file as {seen[key]})"
            raise InputError(f"{p}: given twice{same}; averaging a model with itself changes nothing: give two or "
                             "more different runs")
        seen[key] = p
    return files


def average_models(paths: list[str | os.PathLike], out: str | os.PathLike, force: bool = False) -> dict[str, Any]:
    """Write the uniform weight average of ``paths`` (maskwatch classifier ONNX files, or ``mask_classifier``) to
    ``out``, which may not be one of them; each file once (:func:`members`).

    Every file must have the same graph (tensor names and shapes) and the same classes, input size, margin and
    normalisation. Returns the metadata written (``data.soup`` lists each member's file name and sha256).
    """
    import onnx
    from onnx import numpy_helper

    if len(paths) < 2:
        raise InputError(f"give at least two models to average (got {len(paths)})")
    files = members(paths)
    out = Path(out)
    if out.resolve() in {f.resolve() for f in files}:
        raise InputError(f"{out}: is one of the models averaged; maskwatch never writes over an input. Choose another output")
    if out.exists() and not force:
        raise InputError(f"{out}: already exists; pass --force to overwrite it")
    loaded = [_load(f) for f in files]
    base, base_meta = loaded[0]
    names = [i.name for i in base.graph.initializer]
    for f, (m, meta) in zip(files[1:], loaded[1:]):
        for key in SAME:
            if meta.get(key) != base_meta.get(key):
                raise InputError(f"{f}: {key} {meta.get(key)!r} differs from {files[0]}'s {base_meta.get(key)!r}; "
                                 "only models trained with the same classes and input settings can be averaged")
        seeds = (meta.get("data", {}).get("seed"), base_meta.get("data", {}).get("seed"))
        if None not in seeds and seeds[0] != seeds[1]:
            raise InputError(f"{f}: trained with --seed {seeds[0]}, {files[0]} with --seed {seeds[1]}; runs with other seeds "
                             "start from other random head weights and their average is not a model")
        if [i.name for i in m.graph.initializer] != names or [n.op_type for n in m.graph.node] != [n.op_type for n in base.graph.node]:
            raise InputError(f"{f}: a different network from {files[0]}; only models of one architecture and export can be averaged")
    for k, init in enumerate(base.graph.initializer):
        arrs = [numpy_helper.to_array(m.graph.initializer[k]) for m, _ in loaded]
        if any(a.shape != arrs[0].shape for a in arrs):
            raise InputError(f"tensor {init.name}: shapes {[a.shape for a in arrs]} differ; the models have different widths")
        if not np.issubdtype(arrs[0].dtype, np.floating):
            continue
        avg = np.mean([a.astype(np.float32) for a in arrs], axis=0).astype(arrs[0].dtype)
        init.CopyFrom(numpy_helper.from_array(avg, init.name))
    meta = dict(base_meta)
    temps = [float(m.get("temperature", 1.0)) for _, m in loaded]
    meta["temperature"] = float(np.exp(np.mean(np.log(temps))))  # a stand-in: calibrate() fits the soup's own
    head = dict(meta["head"])
    for key in ("fc1_w", "fc1_b", "fc2_w", "fc2_b"):
        parts = [np.frombuffer(base64.b64decode(m["head"][key]), np.float16).astype(np.float32) for _, m in loaded]
        head[key] = base64.b64encode(np.mean(parts, axis=0).astype(np.float16).tobytes()).decode()
    meta["head"] = head
    meta["data"] = dict(meta.get("data", {}))
    meta["data"]["soup"] = [{"file": "/".join(f.parts[-2:]), "sha256": hashlib.sha256(f.read_bytes()).hexdigest(),
                             "best_epoch": m.get("data", {}).get("best_epoch"), "temperature": m.get("temperature")}
                            for f, (_, m) in zip(files, loaded)]
    meta["data"]["calibration"] = "the geometric mean of the members' temperatures, not fitted on data"
    del base.metadata_props[:]
    base.metadata_props.append(onnx.StringStringEntryProto(key=META_KEY, value=json.dumps(meta)))
    onnx.checker.check_model(base)
    out.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(base, str(out))
    return meta
