"""The model registry: explicit paths, missing files, downloads with checksums, broken or mismatched classifiers."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import needs_shared

from maskwatch import ModelError, models
from maskwatch.classifier import MaskClassifier
from maskwatch.cli import main
from maskwatch.models import REGISTRY, ModelFile, resolve

ROOT = Path(__file__).resolve().parents[1]


def _run_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "maskwatch.cli", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)


@pytest.fixture
def empty_dirs(tmp_path, monkeypatch) -> tuple[Path, Path]:
    """MASKWATCH_MODELS and MASKWATCH_CACHE pointing at two empty folders."""
    m, c = tmp_path / "models", tmp_path / "cache"
    m.mkdir()
    c.mkdir()
    monkeypatch.setenv("MASKWATCH_MODELS", str(m))
    monkeypatch.setenv("MASKWATCH_CACHE", str(c))
    return m, c


def _classifier_onnx(path: Path, side: int, meta_size: int, class_names=("with_mask", "without_mask")) -> Path:
    """A tiny classifier ONNX: input [N,3,side,side] -> Flatten -> MatMul -> Softmax -> 'probs', with maskwatch metadata."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    k = len(class_names)
    w = numpy_helper.from_array(np.full((3 * side * side, k), 1e-4, np.float32), "w")
    nodes = [
        helper.make_node("Flatten", ["input"], ["flat"], axis=1),
        helper.make_node("MatMul", ["flat", "w"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probs"], axis=1),
    ]
    graph = helper.make_graph(
        nodes, "tiny",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, side, side])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["N", k])],
        initializer=[w],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    meta = {"class_names": list(class_names), "input_size": meta_size, "margin": 0.2, "mean": [0.485, 0.456, 0.406],
            "std": [0.229, 0.224, 0.225]}
    helper.set_model_props(model, {"maskwatch": json.dumps(meta)})
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


# ---------------------------------------------------------------- resolve


def test_resolve_explicit_existing_path(tmp_path):
    p = tmp_path / "mine.onnx"
    p.write_bytes(b"anything")
    assert resolve(p) == p
    assert resolve(str(p)) == p


def test_resolve_unknown_missing_path(tmp_path):
    p = tmp_path / "nowhere" / "model.onnx"
    with pytest.raises(ModelError) as e:
        resolve(p)
    assert str(p) in str(e.value)
    assert "no such model file" in str(e.value)


def test_resolve_finds_file_in_maskwatch_models(empty_dirs, monkeypatch):
    m, _ = empty_dirs
    (m / "found.bin").write_bytes(b"the pinned bytes")
    digest = hashlib.sha256(b"the pinned bytes").hexdigest()
    monkeypatch.setitem(REGISTRY, "test_found", ModelFile("test_found", "found.bin", None, (digest,), "test"))
    assert resolve("test_found") == m / "found.bin"


def test_a_found_file_that_is_not_the_pinned_one_is_refused_with_the_fix(empty_dirs, monkeypatch):
    """A copy cut short, or another release under the pinned name, is not loaded as if it were the tested model."""
    m, c = empty_dirs
    digest = hashlib.sha256(b"the pinned bytes").hexdigest()
    monkeypatch.setitem(REGISTRY, "test_found", ModelFile("test_found", "found.bin", "https://example.org/found.bin",
                                                          (digest,), "test"))
    (m / "found.bin").write_bytes(b"the pinned by")  # truncated
    with pytest.raises(ModelError) as e:
        resolve("test_found")
    msg = str(e.value)
    assert str(m / "found.bin") in msg and "13 bytes" in msg and digest in msg
    assert "Fix: replace it with the pinned file (https://example.org/found.bin)" in msg and "give its path" in msg
    assert resolve(m / "found.bin") == m / "found.bin"  # by its path: the user's own file, used as it is
    (m / "found.bin").unlink()
    (c / "found.bin").write_bytes(b"damaged")  # in the download cache: deleting it is the fix
    with pytest.raises(ModelError, match=r"Fix: delete it .*downloaded again"):
        resolve("test_found")
    (c / "found.bin").write_bytes(b"the pinned bytes")  # mended (new size and time): checked again, not remembered
    assert resolve("test_found") == c / "found.bin"


def test_missing_model_without_download_explains_the_fix(empty_dirs):
    import maskwatch.eval.peers  # noqa: F401

    m, c = empty_dirs
    with pytest.raises(ModelError) as e:
        resolve("aizoo")
    msg = str(e.value)
    assert "aizoo_facemask_360.onnx" in msg
    assert str(m) in msg and str(c) in msg  # the searched folders
    assert "no public download" in msg
    assert "Fix:" in msg and "MASKWATCH_MODELS" in msg
    assert not any(c.iterdir())  # nothing half-written in the cache


def test_resolve_with_download_off(empty_dirs):
    with pytest.raises(ModelError, match="downloads are off"):
        resolve("yunet", download=False)


# ---------------------------------------------------------------- downloads


@pytest.fixture
def served_file(tmp_path) -> tuple[Path, str]:
    src = tmp_path / "server" / "weights.bin"
    src.parent.mkdir()
    src.write_bytes(os.urandom(200_000))
    return src, hashlib.sha256(src.read_bytes()).hexdigest()


def test_download_from_file_url_checks_sha256(empty_dirs, served_file, monkeypatch):
    _, cache = empty_dirs
    src, digest = served_file
    monkeypatch.setitem(REGISTRY, "test_weights", ModelFile("test_weights", "test_weights.bin", src.as_uri(), (digest,), "test"))
    seen: list[tuple[int, int]] = []
    got = resolve("test_weights", progress=lambda done, total: seen.append((done, total)))
    assert got == cache / "test_weights.bin"
    assert got.read_bytes() == src.read_bytes()
    assert seen and seen[-1][0] == src.stat().st_size
    assert sorted(p.name for p in cache.iterdir()) == ["test_weights.bin"]  # no temporary files left
    # Second call: found in the cache, not downloaded again.
    src.unlink()
    assert resolve("test_weights") == got


def test_download_with_wrong_checksum_is_refused(empty_dirs, served_file, monkeypatch):
    _, cache = empty_dirs
    src, _ = served_file
    monkeypatch.setitem(REGISTRY, "test_weights", ModelFile("test_weights", "test_weights.bin", src.as_uri(), ("0" * 64,), "test"))
    with pytest.raises(ModelError) as e:
        resolve("test_weights")
    msg = str(e.value)
    assert "checksum" in msg
    assert "test_weights.bin" in msg
    assert not (cache / "test_weights.bin").exists()
    assert list(cache.iterdir()) == []  # the bad download was removed, not left as a temp file


def test_download_from_unreachable_url(empty_dirs, tmp_path, monkeypatch):
    url = (tmp_path / "does-not-exist.bin").as_uri()
    monkeypatch.setitem(REGISTRY, "test_weights", ModelFile("test_weights", "test_weights.bin", url, ("0" * 64,), "test"))
    with pytest.raises(ModelError) as e:
        resolve("test_weights")
    assert "download" in str(e.value) and url in str(e.value)


def test_download_cut_off_half_way_leaves_no_partial_file(empty_dirs, monkeypatch):
    """A connection that drops mid-file (Content-Length promised, then a reset) is a ModelError naming the URL,
    and no half-written temporary file is left in the cache to pile up."""
    import http.server
    import socket
    import struct
    import threading
    import time

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *a):  # noqa: ANN002
            pass

        def do_GET(self):  # noqa: N802
            self.send_response(200)
            self.send_header("Content-Length", "200000")
            self.end_headers()
            self.wfile.write(b"x" * 50_000)
            self.wfile.flush()
            time.sleep(0.2)
            # then the connection is reset (RST, as a dropped link looks), not closed in order
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()

    srv = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{srv.server_address[1]}/weights.bin"
    _, cache = empty_dirs
    monkeypatch.setitem(REGISTRY, "test_weights", ModelFile("test_weights", "test_weights.bin", url, ("0" * 64,), "test"))
    try:
        with pytest.raises(ModelError) as e:
            resolve("test_weights")
    finally:
        srv.shutdown()
        srv.server_close()
    assert url in str(e.value) and "download" in str(e.value)
    assert list(cache.iterdir()) == []


# ---------------------------------------------------------------- broken classifiers


def test_corrupt_onnx_classifier_in_cli(tmp_path):
    bad = tmp_path / "broken.onnx"
    bad.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    img = tmp_path / "x.png"
    cv2.imwrite(str(img), np.full((64, 64, 3), 127, np.uint8))
    r = _run_cli("detect", str(img), "--classifier", str(bad), "--face-detector", "haar", "-q")
    assert "Traceback" not in r.stderr
    assert r.returncode != 0
    assert str(bad) in r.stderr
    assert "not a loadable ONNX model" in r.stderr
    assert r.stdout == ""


def test_classifier_with_input_shape_not_matching_metadata(tmp_path):
    good = _classifier_onnx(tmp_path / "good.onnx", side=64, meta_size=64)
    clf = MaskClassifier(good)  # the well-formed twin loads and runs
    assert clf.class_names == ("with_mask", "without_mask")
    probs = clf.predict(np.zeros((2, 64, 64, 3), np.uint8))
    assert probs.shape == (2, 2)
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-5)

    bad = _classifier_onnx(tmp_path / "bad.onnx", side=32, meta_size=64)
    with pytest.raises(ModelError) as e:
        MaskClassifier(bad)
    msg = str(e.value)
    assert str(bad) in msg
    assert "32" in msg and "64" in msg


def test_classifier_with_unknown_class_names(tmp_path):
    p = _classifier_onnx(tmp_path / "odd.onnx", side=64, meta_size=64, class_names=("with_mask", "hat"))
    with pytest.raises(ModelError, match="hat"):
        MaskClassifier(p)


def test_mismatched_classifier_in_cli(tmp_path):
    bad = _classifier_onnx(tmp_path / "bad.onnx", side=32, meta_size=64)
    img = tmp_path / "x.png"
    cv2.imwrite(str(img), np.full((64, 64, 3), 127, np.uint8))
    r = _run_cli("detect", str(img), "--classifier", str(bad), "--face-detector", "haar", "-q")
    assert "Traceback" not in r.stderr
    assert r.returncode != 0
    assert "does not match" in r.stderr


# ---------------------------------------------------------------- maskwatch models


@needs_shared
def test_models_command_lists_yunet_found(capsys):
    assert main(["models", "--json"]) == 0
    rows = {r["name"]: r for r in map(json.loads, capsys.readouterr().out.splitlines())}
    assert set(REGISTRY) <= set(rows)
    y = rows["yunet"]
    assert y["found"] and Path(y["found"]).is_file()
    assert Path(y["found"]).name == "face_detection_yunet.onnx"
    assert y["checksum_ok"] is True
    assert rows["mask_classifier"]["found"]
    assert rows["haar"]["found"] and Path(rows["haar"]["found"]).is_file()  # the README's table lists it: so does this

    assert main(["models"]) == 0
    table = capsys.readouterr().out.splitlines()
    (line,) = [x for x in table if x.startswith("yunet ")]
    assert " ok " in line and "face_detection_yunet.onnx" in line and "[licence: MIT]" in line
    assert y["licence"] == "MIT"  # the registry's licence of each file is shown, not only stored


def test_models_command_reports_missing(empty_dirs, capsys):
    import maskwatch.eval.peers  # noqa: F401

    assert main(["models"]) == 0
    table = capsys.readouterr().out.splitlines()
    (peer,) = [x for x in table if x.startswith("aizoo ")]  # `--peer aizoo` needs it: listed, marked as a yardstick
    assert "missing" in peer and "peer model" in peer
    (line,) = [x for x in table if x.startswith("ssd_pb ")]
    assert "missing" in line
    assert models.find("aizoo") is None
