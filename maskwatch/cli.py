"""The ``maskwatch`` command: a thin shell over the library. JSON on stdout, messages on stderr."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .detections import frame_record
from .errors import InputError, MaskwatchError
from .events import DEFAULT_DB
from .settings import LIVE, PHOTO, SURE_SETTINGS, add_arguments, det_sizes, detector_kwargs, on_off, train_workers
from .settings import PHOTO_DET_SIZE as PHOTO_DET_SIZES

DETECT_SETTINGS = ["face_detector", "classifier", "score_threshold", "nms_threshold", "det_size", "upscale", "threads",
                   "nomask_cost", "flip", *SURE_SETTINGS]
PHOTO_DET_SIZE = ",".join(map(str, PHOTO_DET_SIZES))  # as a command-line value: "800,1600"
PHOTO_DEFAULTS = {**PHOTO, "det_size": PHOTO_DET_SIZE}  # photos: accuracy first (two passes, mirrored faces too)
VIDEO_DEFAULTS = dict(LIVE)  # video and live: speed first (faces at an entrance are large)
VIDEO_DET_SIZE = LIVE["det_size"]


def _err(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _detector(args: argparse.Namespace):  # noqa: ANN202
    from .pipeline import Detector

    return Detector(**detector_kwargs(args))


def _bar(total: int | None, desc: str, unit: str, quiet: bool = False):  # noqa: ANN202
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit=unit, disable=quiet or None, file=sys.stderr, dynamic_ncols=True)


# ---------------------------------------------------------------- detect
def cmd_detect(args: argparse.Namespace) -> int:
    import cv2

    from .annotate import BoxAnnotator, blur_faces
    from .images import load_image

    files: list[Path] = []
    for p in args.paths:
        found = _expand_glob(p)
        if not found:
            raise InputError(f"{p}: the folder holds no image ({', '.join(s for s in ('.jpg', '.png', '.bmp', '.webp'))} ...)")
        files += found
    out = Path(args.out) if args.out else None
    if out and out.exists() and not out.is_dir():
        raise InputError(f"--out {out}: is a file; give a folder for the annotated copies")
    targets: list[Path] = []
    if out:
        _check_output_folder(out, args.paths)
        written: set[Path] = set()
        targets = [_unique(out / _relative(f, args.paths).with_suffix(".jpg"), written) for f in files]
        _check_outputs(targets, files, args.force)
    det = _detector(args)
    annot = BoxAnnotator()
    failed: list[str] = []
    counts: dict[str, int] = {}
    with _bar(len(files), "detecting", "img", args.quiet or len(files) < 2) as bar:
        for k, f in enumerate(files):
            bar.update(1)
            try:
                img = load_image(f)
            except InputError as e:
                failed.append(str(e))
                _err(f"maskwatch: skipped {e}")
                continue
            d = det.detect(img)
            for lab in d.labels:
                counts[lab] = counts.get(lab, 0) + 1
            print(json.dumps(frame_record(str(f), img.shape[1], img.shape[0], d)), flush=True)
            if out:
                vis = blur_faces(img, d) if args.blur_faces else img
                target = targets[k]
                target.parent.mkdir(parents=True, exist_ok=True)
                if not cv2.imwrite(str(target), annot.annotate(vis, d)):
                    raise InputError(f"{target}: cannot write the annotated image here; check the folder and free space")
    n_ok = len(files) - len(failed)
    _err(f"maskwatch: {n_ok} image(s) done, {len(failed)} failed; faces: " + (", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "none")
         + (f"; annotated copies in {out}" if out else ""))
    return 1 if failed else 0


def _expand_glob(pattern: str) -> list[Path]:
    """Images of a path, or of a glob pattern the shell did not expand ('*.jpg' in quotes, or on Windows)."""
    import glob

    from .images import find_images

    if Path(pattern).exists() or not any(c in pattern for c in "*?["):
        return find_images(pattern)
    matches = sorted(glob.glob(pattern, recursive=True))
    if not matches:
        raise InputError(f"{pattern}: no file matches this pattern; check the folder and the spelling")
    return sorted({f for m in matches for f in find_images(m)})


def _check_output_folder(out: Path, inputs: Sequence[str]) -> None:
    """Refuse an output folder that is an input folder or inside one: the next run would read its annotated copies
    as photos, and a copy could replace an original."""
    o = out.resolve()
    for p in inputs:
        rp = Path(p).resolve()
        if rp.is_dir() and (o == rp or rp in o.parents):
            raise InputError(f"--out {out}: is inside the input folder {p}; maskwatch never writes among the originals "
                             "(a later run would read the annotated copies as photos). Choose a folder outside it")


def _check_outputs(targets: Sequence[Path], inputs: Sequence[Path], force: bool) -> None:
    """Never write over an input; overwrite an earlier output only with --force (every command the same)."""
    src = {Path(p).resolve() for p in inputs}
    for t in targets:
        if t.resolve() in src:
            raise InputError(f"{t}: is one of the inputs; maskwatch never writes over an input. Choose another output")
    if not force:
        existing = [t for t in targets if t.exists()]
        if existing:
            more = f" (and {len(existing) - 1} more)" if len(existing) > 1 else ""
            raise InputError(f"{existing[0]}{more}: already exists; pass --force to overwrite, or choose another output")


def _open_for_writing(path: str):  # noqa: ANN202
    p = Path(path)
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        return open(p, "w")
    except OSError as e:
        raise InputError(f"{p}: cannot write here ({e.strerror}); choose another path") from None


def _unique(target: Path, written: set[Path]) -> Path:
    """``target``, or target with _2, _3 ... when this run already wrote that name (a.jpg and a.png, or the same
    name in two folders)."""
    candidate, k = target, 1
    while candidate in written:
        k += 1
        candidate = target.with_name(f"{target.stem}_{k}{target.suffix}")
    written.add(candidate)
    return candidate


def _relative(f: Path, roots: Sequence[str]) -> Path:
    for r in roots:
        rp = Path(r)
        if rp.is_dir():
            try:
                return f.relative_to(rp)
            except ValueError:
                continue
    return Path(f.name)


# ---------------------------------------------------------------- monitoring (video, watch)
def _add_monitor_arguments(sp: argparse.ArgumentParser, events_default: str | None) -> None:
    g = sp.add_argument_group("monitoring (tracks, events, alerts, Arduino)")
    g.add_argument("--no-track", action="store_true", help="per-frame labels only: no tracking, smoothing or events")
    g.add_argument("--camera", help="camera name written into events (default: the source)")
    g.add_argument("--events", default=events_default, help="SQLite event log to write ('' = none; the default lives in "
                   "the per-user data folder, MASKWATCH_DATA moves it)")
    g.add_argument("--retention-days", type=float, default=30.0, help="delete events older than this from the log")
    g.add_argument("--confirm-frames", type=int, default=5, help="frames a face must read unmasked before its one event (0 = off)")
    g.add_argument("--confirm-seconds", type=float, default=0.0, help="or seconds it must read unmasked (0 = off)")
    g.add_argument("--alert-incorrect", action="store_true", help="a wrongly worn mask raises events too")
    g.add_argument("--snapshots", action="store_true", help="store a face image with each event (off: no face is stored)")
    g.add_argument("--event-json", action="store_true", help="print each event as a JSON line on stdout")
    g.add_argument("--webhook", help="POST each event as JSON to this URL (queued and retried when it is down)")
    g.add_argument("--sound", action="store_true", help="ring the terminal bell on each event")
    g.add_argument("--serial", metavar="PORT", help="Arduino serial port (e.g. /dev/ttyACM0): X<angle>Y<angle> at 9600 baud")
    g.add_argument("--serial-dry-run", action="store_true", help="print what would be sent to the Arduino instead")
    g.add_argument("--serial-interval", type=int, default=200, help="ms between two serial messages")


def _build_monitor(args: argparse.Namespace, det: Any, source: str):  # noqa: ANN202
    """A Monitor with the sinks the options ask for, and the objects to close at the end."""
    from .events import EventDispatcher, EventLog, EventLogSink, JsonLinesSink, Outbox, SoundSink, WebhookSink, data_dir
    from .monitor import Monitor

    for name in ("confirm_frames", "serial_interval"):
        if getattr(args, name) < 0:
            raise InputError(f"'{name}={getattr(args, name)}' is invalid. Valid values are 0 or more")
    if args.confirm_seconds < 0 or args.retention_days <= 0:
        raise InputError("--confirm-seconds must be 0 or more and --retention-days above 0")
    closers: list[Any] = []
    sinks: list[Any] = []
    if args.events:
        log = EventLog(args.events, retention_days=args.retention_days)
        closers.append(log)
        sinks.append(EventLogSink(log))
    if args.event_json:
        sinks.append(JsonLinesSink(sys.stdout))
    if args.webhook:
        outbox = Outbox(args.events or str(data_dir() / "outbox.db"))
        closers.append(outbox)
        sinks.append(WebhookSink(args.webhook, outbox))
    if args.sound:
        sinks.append(SoundSink())
    serial = None
    if args.serial or args.serial_dry_run:
        from .serial_link import SerialSignal

        serial = SerialSignal(args.serial or "dry-run", interval_ms=args.serial_interval, dry_run=args.serial_dry_run,
                              out=sys.stderr if args.serial_dry_run else None)
        closers.append(serial)
    closers = sinks + closers  # sinks flush first, then the log and outbox close
    labels = ("without_mask", "mask_incorrect") if args.alert_incorrect else ("without_mask",)
    mon = Monitor(det, camera=args.camera or source, confirm_frames=args.confirm_frames, confirm_seconds=args.confirm_seconds,
                  alert_labels=labels, snapshots=args.snapshots, dispatcher=EventDispatcher(sinks), serial=serial)
    return mon, closers


def _close_all(closers: list[Any]) -> None:
    """Close sinks, log, outbox and serial link; say what could not be delivered or written."""
    for c in closers:
        name = type(c).__name__
        try:
            undelivered = c.count() if name == "Outbox" else 0  # the webhook sink closed (and flushed) before this
            result = c.close()
        except Exception as e:  # a sink that fails to close must not hide the others' errors
            _err(f"maskwatch: warning: closing {name}: {e}")
            continue
        if name == "EventLog" and result:
            _err(f"maskwatch: warning: {result} event(s) could not be written to {c.path}: {c.last_error}")
        elif name == "Outbox" and undelivered:
            _err(f"maskwatch: warning: {undelivered} event(s) not yet delivered to the webhook are kept in {c.path}; "
                 "they are sent when maskwatch next runs with the same --webhook and --events")
        elif getattr(c, "last_error", None):
            _err(f"maskwatch: warning: {name}: {c.last_error}")


def _monitor_summary(mon: Any) -> str:
    if mon is None:
        return ""
    counts = ", ".join(f"{k} {v}" for k, v in mon.counts().items())
    return f"; people seen: {counts}; events: {len(mon.events)}"


# ---------------------------------------------------------------- video
def cmd_video(args: argparse.Namespace) -> int:
    from .annotate import BoxAnnotator, blur_faces
    from .video import VideoSink, VideoSource

    if args.json and Path(args.json).resolve() == Path(args.out).resolve():
        raise InputError(f"--json {args.json}: is the --out video too; give them two names")
    _check_outputs([Path(args.out)] + ([Path(args.json)] if args.json else []), [Path(args.input)], args.force)
    det = _detector(args)
    annot = BoxAnnotator()
    jfile = None
    mon, closers = (None, []) if args.no_track else _build_monitor(args, det, str(args.input))
    frames = faces = masked = 0
    t0 = time.perf_counter()
    try:
        with VideoSource(args.input) as src, VideoSink(args.out, src.width, src.height, src.fps) as sink:
            jfile = _open_for_writing(args.json) if args.json else None
            with _bar(src.frame_count or None, "video", "frame", args.quiet) as bar:
                for i, frame in enumerate(src):
                    d = mon.process(frame, t=i / src.fps) if mon else det.detect(frame)
                    frames += 1
                    faces += len(d)
                    masked += sum(lab == "with_mask" for lab in d.labels)
                    vis = blur_faces(frame, d) if args.blur_faces else frame
                    sink.write(annot.annotate(vis, d, copy=not args.blur_faces))
                    if jfile:
                        jfile.write(json.dumps(frame_record(str(args.input), src.width, src.height, d, i, i / src.fps)) + "\n")
                    bar.update(1)
            ended_early = src.ended_early
            sink_warning = sink.warning
    finally:
        if jfile:
            jfile.close()
        _close_all(closers)
    if frames == 0:
        raise InputError(f"{args.input}: the video has no readable frame")
    secs = time.perf_counter() - t0
    share = f"{masked / faces:.1%}" if faces else "n/a"
    _err(f"maskwatch: {frames} frames, {faces} faces, {share} masked, {frames / secs:.1f} frames/s; wrote {args.out}"
         + _monitor_summary(mon)
         + ("; WARNING: the video ended before its stated length (truncated file?)" if ended_early else ""))
    if sink_warning:
        _err(f"maskwatch: note: {sink_warning}")
    return 0


# ---------------------------------------------------------------- watch
def cmd_watch(args: argparse.Namespace) -> int:
    import cv2

    from .annotate import BoxAnnotator, blur_faces, draw_fps
    from .video import FPSMonitor, VideoSource

    det = _detector(args)
    annot, fps = BoxAnnotator(), FPSMonitor()
    window = "maskwatch (q or Esc quits)"
    with VideoSource(args.source, open_timeout=args.timeout, read_timeout=args.timeout, reconnect=args.reconnect,
                     on_state=lambda state, detail: _err(f"maskwatch watch: {detail}")) as src:
        mon, closers = (None, []) if args.no_track else _build_monitor(args, det, str(args.source))
        restore = _stop_on_signals(src.stop)
        try:
            for frame in src:
                d = mon.process(frame) if mon else det.detect(frame)
                fps.tick()
                if args.json:
                    h, w = frame.shape[:2]
                    t = (fps.frames - 1) / src.fps if src.is_file else time.time()
                    print(json.dumps(frame_record(str(args.source), w, h, d, fps.frames - 1, t)), flush=True)
                if not args.headless:
                    vis = blur_faces(frame, d) if args.blur_faces else frame
                    img = draw_fps(annot.annotate(vis, d), fps.fps)
                    try:
                        cv2.imshow(window, img)
                        key = cv2.waitKey(1) & 0xFF
                    except cv2.error:
                        raise InputError("cannot open a window: this OpenCV build has no GUI (opencv-python-headless) or there is "
                                         "no display. For the live window: pip uninstall -y opencv-python-headless && "
                                         "pip install 'opencv-python<5'; on a server use --headless") from None
                    if key in (ord("q"), 27):
                        break
                if args.max_frames and fps.frames >= args.max_frames:
                    break
        finally:
            restore()
            _close_all(closers)
            if not args.headless:
                with contextlib.suppress(cv2.error):  # headless OpenCV build: there was no window
                    cv2.destroyAllWindows()
        stopped = src.stopped
    _err(f"maskwatch: {fps.frames} frames at {fps.fps:.1f} frames/s" + _monitor_summary(mon))
    if stopped:
        _err(f"maskwatch watch: error: {stopped}")
        return 1
    return 0


def _reconnect(text: str) -> int | None:
    if text.strip().lower() in ("forever", "always", "inf"):
        return None
    n = int(text)
    if n < 0:
        raise ValueError(text)
    return n


_reconnect.__name__ = "forever or a number of attempts"


def _stop_on_signals(stop: Callable[[], None]) -> Callable[[], None]:
    """SIGTERM (systemd, docker stop) and SIGINT (Ctrl-C) call ``stop`` instead of killing the process, so the loop
    ends, pending events are flushed and the summary is printed. Returns a function that restores the handlers."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    old = {sig: signal.signal(sig, lambda *_: stop()) for sig in (signal.SIGTERM, signal.SIGINT)}
    def restore() -> None:
        for sig, handler in old.items():
            signal.signal(sig, handler)

    return restore


# ---------------------------------------------------------------- models
def cmd_models(args: argparse.Namespace) -> int:
    from .models import REGISTRY, find, search_paths, sha256_of

    rows = []
    for name, m in REGISTRY.items():
        path = find(name)
        ok = None
        if path and m.sha256:
            ok = sha256_of(path) in m.sha256
        rows.append({"name": name, "file": m.filename, "found": str(path) if path else None,
                     "checksum_ok": ok, "url": m.url, "about": m.about, "licence": m.licence,
                     "searched": [str(p) for p in search_paths(name)]})
    if args.json:
        for r in rows:
            print(json.dumps(r))
        return 0
    for r in rows:
        state = "missing" if not r["found"] else ("ok" if r["checksum_ok"] in (True, None) else "CHECKSUM MISMATCH")
        where = str(r["found"] or "(not found; " + (f"downloads from {r['url']}" if r["url"] else "no download") + ")")
        print(f"{r['name']:22} {state:8} {where}  [licence: {r['licence'] or 'unknown'}]")
    return 0


# ---------------------------------------------------------------- train / evaluate
def cmd_train(args: argparse.Namespace) -> int:
    try:
        from .train.trainer import TrainConfig, train
    except ImportError as e:
        raise InputError(f"training needs the 'train' extra ({e.name} is missing): pip install 'maskwatch[train]'") from None
    if args.device not in ("auto", "cpu") and not args.device.startswith("cuda"):
        raise InputError(f"--device {args.device}: use 'auto', 'cpu' or 'cuda'")
    if args.device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise InputError(f"--device {args.device}: this PyTorch sees no CUDA GPU; use --device cpu (or auto)")
    if Path(args.out).exists() and not Path(args.out).is_dir():
        raise InputError(f"--out {args.out}: is a file; give a folder for the model and its reports")
    cfg = TrainConfig(data=args.data, out=args.out, val=args.val or [], input_size=args.input_size, epochs=args.epochs,
                      head_epochs=args.head_epochs, batch=args.batch, lr=args.lr, patience=args.patience,
                      pretrained=None if args.pretrained == "none" else args.pretrained, seed=args.seed,
                      workers=args.workers, max_images=args.max_images, force=args.force, resume=args.resume,
                      device=args.device, finetune_from=args.finetune_from, nomask_weight=args.nomask_weight,
                      source_balance=args.source_balance, erase=args.erase, ema=args.ema, scene_boxes=args.scene_boxes,
                      not_face=args.not_face, not_face_max_score=args.not_face_max_score, select=args.select,
                      init=args.init, class_weight_cap=args.class_weight_cap)
    import logging

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("maskwatch train: %(message)s"))
    logging.getLogger("maskwatch.train").addHandler(handler)
    res = train(cfg, progress=not args.quiet)
    rep = res["validation"]
    from .eval.metrics import format_report

    _err(format_report(rep, res["validation_by_size"]))
    _err(f"maskwatch: model written to {Path(args.out) / 'mask_classifier.onnx'}; report, confusion.png, curves.png, metrics.json beside it")
    return 0


def cmd_train_detector(args: argparse.Namespace) -> int:
    try:
        from .train.detector import DetectorTrainConfig, train_detector
    except ImportError as e:
        raise InputError(f"training needs the 'train' extra ({e.name} is missing): pip install 'maskwatch[train]'") from None
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {args.out}: is a file; give a folder for the detector and its history")
    if out.is_dir() and (out / "last.pt").exists() and not (args.resume or args.force):
        raise InputError(f"--out {args.out}: holds an earlier run; add --resume to continue it, --force to start over, "
                         "or give a new folder")
    if args.force and (out / "last.pt").exists():
        (out / "last.pt").unlink()
    cfg = DetectorTrainConfig(data=args.data, val=args.val or [], out=args.out, base=args.base, epochs=args.epochs,
                              batch=args.batch, lr=args.lr, crop=args.crop, min_side=args.min_side,
                              max_side=args.max_side, ignore_score=args.ignore_score, val_det_size=args.val_det_size,
                              seed=args.seed, threads=args.threads, limit=args.max_images)

    def report(row: dict) -> None:
        ap = f", val face AP {row['val_face_ap']:.3f} recall {row['val_recall']:.3f}" if "val_face_ap" in row else ""
        loss = f" loss {row['train_loss']:.3f} ({row['seconds']:.0f} s)" if "train_loss" in row else " (before training)"
        _err(f"maskwatch train-detector: epoch {row['epoch']}{loss}{ap}{' *best*' if row.get('best') else ''}")

    res = train_detector(cfg, resume=args.resume, progress=not args.quiet, on_epoch=report)
    _err(f"maskwatch: detector written to {out / 'face_detector.onnx'} (best validation face AP {res['best_val_face_ap']:.3f}); "
         f"use it with --face-detector {out / 'face_detector.onnx'}; history.json beside it")
    return 0


def cmd_batch(args: argparse.Namespace) -> int:
    import logging

    from .batch import run_batch

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

    try:
        res = run_batch(args.inputs, args.out, settings=settings, address=args.address, workers=args.workers,
                        chunk=args.chunk, fmt=args.format, every_seconds=args.every_seconds, every_frames=args.every_frames,
                        force=args.force, memory_limit=args.memory_limit, progress=progress)
    finally:
        bar.close()
    faces = ", ".join(f"{k} {v}" for k, v in sorted(res.faces.items())) or "none"
    again = " (resumed: earlier chunks kept)" if res.chunks_done_before else ""
    _err(f"maskwatch: {res.items} item(s) in {res.chunks} chunk(s){again}; {res.errors} input(s) failed (see the 'error' "
         f"column); faces: {faces}; this run {res.items_run} item(s) in {res.seconds:.1f} s ({res.rate:.1f}/s). "
         f"Output in {res.out}/parts, summary in {res.out}/summary.json")
    for k, why in res.chunks_failed:
        _err(f"maskwatch: warning: chunk {k} failed twice and was left for the next run: {why}")
    if res.chunks_failed:
        _err("maskwatch: run the same command again to finish the failed chunks")
        return 1
    return 0


def cmd_soup(args: argparse.Namespace) -> int:
    try:
        import onnx  # noqa: F401  (the train extra)

        from .train.soup import average_models
    except ImportError as e:
        raise InputError(f"averaging models needs the 'train' extra ({e.name} is missing): pip install 'maskwatch[train]'") from None
    meta = average_models(args.models, args.out, force=args.force)
    _err(f"maskwatch: averaged {len(meta['data']['soup'])} models into {args.out}; "
         f"check it with: maskwatch evaluate {args.out} DATA")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .classifier import MaskClassifier
    from .datasets import load_source
    from .eval.classification import evaluate_classifier
    from .eval.metrics import confusion_png, format_report

    if args.errors and not args.out:
        raise InputError("--errors needs --out FOLDER: the misclassified faces are written there")
    clf = MaskClassifier(args.model, threads=args.threads, nomask_cost=args.nomask_cost, flip=args.flip)
    fd = None
    if args.boxes == "detector":
        from .detectors import create_face_detector, takes_threads

        extra = {"threads": args.threads} if takes_threads(args.face_detector) else {}
        fd = create_face_detector(args.face_detector, det_size=PHOTO_DET_SIZES, **extra)
    for spec in args.data:
        ds = load_source(spec)
        for w in ds.warnings:
            _err(f"maskwatch: warning: {w}")
        name = Path(spec.split("@")[0]).name
        errors = Path(args.out) / f"{name}_errors" if args.errors else None
        with _bar(len(ds.images), f"evaluating {spec}", "img", args.quiet) as bar:
            r = evaluate_classifier(clf, ds, progress=bar.update, face_detector=fd, errors_dir=errors)
        print(json.dumps({"data": spec, "model": str(clf.path), **r}))
        _err(f"== {spec}\n" + format_report(r["report"], r["by_size"]))
        if r["unknown_class"]:
            _err(f"faces of classes the model does not know, and what it called them: {r['unknown_class']}")
        if r["skipped"]:
            _err(f"skipped {len(r['skipped'])} unreadable image(s)")
        if fd is not None:
            _err(f"{r['snapped']} face(s) cropped around the detector's box; the rest (missed by the detector) around the annotated one")
        if errors is not None:
            _err(f"{r['errors']} misclassified face(s) written to {errors}/ (surest mistakes first; errors.csv lists them)")
        if args.out:
            Path(args.out).mkdir(parents=True, exist_ok=True)
            confusion_png(r["report"], str(Path(args.out) / f"{name}_confusion.png"))
    return 0


def cmd_evaluate_detection(args: argparse.Namespace) -> int:
    from .datasets import load_source
    from .eval.detection import evaluate_detection

    models: list[tuple[str, Any]] = [(f"maskwatch ({args.face_detector})", _detector(args))]
    if args.peer == "aizoo":
        from .eval.peers import AizooDetector

        models.append(("aizoo_facemask_360", AizooDetector()))
    for spec in args.scenes:
        ds = load_source(spec)
        for name, model in models:
            with _bar(len(ds.images), f"{name} on {spec}", "img", args.quiet) as bar:
                r = evaluate_detection(model, ds, progress=bar.update)
            print(json.dumps({"data": spec, "model": name, **r}))
            ap = " ".join(f"AP50[{k}]={v:.3f}" for k, v in r["ap50"].items())
            by = " ".join(f"{k}:{'-' if v is None else f'{v:.2f}'}" for k, v in r["face_recall_by_size"].items())
            _err(f"{spec} | {name} | mAP50(mask/no-mask)={r['map50']:.3f} {ap} | face recall {r['face_recall']:.3f} ({by})")
            shown = " ".join(f"{lab} P {_fmt(v['precision'])} R {_fmt(v['recall'])}" if lab != "uncertain" else f"grey {v['shown']}"
                             for lab, v in r["labels"].items())
            _err(f"   shown: {shown} | false boxes/photo {r['false_boxes_per_photo']:.2f} | false red boxes/100 photos "
                 f"{r['false_red_per_100_photos']:.1f}")
    return 0


def _fewer_malloc_arenas(arenas: int = 2) -> None:
    """glibc gives each thread that allocates its own memory arena and rarely returns them: under 20 threads of
    uploads the server's RSS grows by a few hundred MB more than with 2 arenas (benchmarks/server_memory.py).
    Linux with glibc only; MALLOC_ARENA_MAX in the environment wins."""
    import ctypes
    import os

    if os.environ.get("MALLOC_ARENA_MAX") or not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError, AttributeError):  # not glibc (musl, ...): nothing to tune
        ctypes.CDLL("libc.so.6").mallopt(-8, arenas)  # M_ARENA_MAX


def _fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:.3f}"


# ---------------------------------------------------------------- explain / extract-faces
def cmd_explain(args: argparse.Namespace) -> int:
    from .explain import explain_image, explain_video
    from .images import IMAGE_SUFFIXES

    src = Path(args.input)
    image = src.suffix.lower() in IMAGE_SUFFIXES
    out = args.out or str(src.with_name(src.stem + ("_explain.jpg" if image else "_explain.mp4")))
    _check_outputs([Path(out)], [src], args.force)
    det = _detector(args)
    if image:
        n = explain_image(det, src, out)
        _err(f"maskwatch: {n} face(s) explained; wrote {out}")
    else:
        with _bar(None, "explain", "frame", args.quiet) as bar:
            n = explain_video(det, args.input, out, progress=bar.update, max_frames=args.max_frames)
        _err(f"maskwatch: {n} frame(s); wrote {out}")
    return 0


def cmd_extract_faces(args: argparse.Namespace) -> int:
    import cv2

    from .crops import crop_faces
    from .detectors import create_face_detector
    from .images import find_images, load_image

    if not 16 <= args.size <= 1024:
        raise InputError(f"--size {args.size}: give the crop side in pixels, between 16 and 1024")
    if not 0 <= args.margin <= 2:
        raise InputError(f"--margin {args.margin}: give a fraction of the face box's longer side, between 0 and 2")
    kw = detector_kwargs(args)
    fd = create_face_detector(kw["face_detector"], score_threshold=kw["score_threshold"], nms_threshold=kw["nms_threshold"],
                              det_size=kw["det_size"], upscale=kw["upscale"])
    files = find_images(args.input)
    if not files:
        raise InputError(f"{args.input}: the folder holds no image")
    out = Path(args.output)
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: is a file; give a folder for the face crops")
    _check_output_folder(out, [args.input])
    out.mkdir(parents=True, exist_ok=True)
    n = failed = 0
    written: set[Path] = set()
    with _bar(len(files), "extracting", "img", args.quiet) as bar:
        for f in files:
            bar.update(1)
            try:
                img = load_image(f)
            except InputError as e:
                failed += 1
                _err(f"maskwatch: skipped {e}")
                continue
            d = fd.detect(img)
            rel = _relative(f, [args.input])
            for i, crop in enumerate(crop_faces(img, d.xyxy, args.size, args.margin)):
                target = _unique(out / rel.parent / f"{rel.stem}_face{i}.jpg", written)
                if target.exists() and not args.force:
                    raise InputError(f"{target}: already exists (crops of an earlier run?); pass --force to overwrite, "
                                     "or choose another folder")
                target.parent.mkdir(parents=True, exist_ok=True)
                if not cv2.imwrite(str(target), crop[:, :, ::-1]):
                    raise InputError(f"{target}: cannot write the face crop here; check the folder and free space")
                n += 1
    _err(f"maskwatch: {n} face(s) from {len(files) - failed} image(s) written to {out}; {failed} failed")
    return 1 if failed else 0


# ---------------------------------------------------------------- serve
def cmd_serve(args: argparse.Namespace) -> int:
    import importlib.util
    import os

    try:
        from .server import ServerSettings, bind, create_app, make_server
    except ImportError as e:
        raise InputError(f"maskwatch serve needs the 'web' extra ({e.name} is missing): pip install 'maskwatch[web]'") from None
    if not (importlib.util.find_spec("python_multipart") or importlib.util.find_spec("multipart")):
        raise InputError("maskwatch serve needs the 'web' extra (python-multipart is missing): pip install 'maskwatch[web]'")
    settings = ServerSettings(host=args.host, port=args.port, cameras=args.camera or [],
                              token=args.token or os.environ.get("MASKWATCH_TOKEN") or None, events=args.events,
                              retention_days=args.retention_days, max_upload_mb=args.max_upload_mb, max_pending=args.max_pending,
                              detector=detector_kwargs(args), photo_det_size=args.photo_det_size, photo_flip=args.photo_flip,
                              confirm_frames=args.confirm_frames, blur_faces=args.blur_faces, shared=args.demo_data)
    _fewer_malloc_arenas()
    app = create_app(settings)
    sock = bind(settings.host, settings.port)
    host, port = sock.getsockname()[:2]
    cams = ", ".join(w.spec.name for w in app.state.maskwatch.cameras.values()) or "none"
    _err(f"maskwatch: dashboard on http://{'[' + host + ']' if ':' in host else host}:{port}/"
         + ("?token=<your token>" if settings.token else "") + f" (cameras: {cams}; events in {args.events or 'memory'}); "
         "Ctrl-C stops")
    # uvicorn shuts down on SIGTERM or SIGINT (cameras stopped, events flushed), then raises the signal again for the
    # handler that was there before it: ours, which lets the process end with its summary and exit code 0.
    restore = _stop_on_signals(lambda: None)
    try:
        make_server(app).run(sockets=[sock])
    finally:
        restore()
    _err(f"maskwatch: server stopped; events in {args.events or 'memory (not kept)'}")
    return 0


# ---------------------------------------------------------------- parser
class _Formatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Keeps the example's line breaks and shows every default."""


EPILOG = "Models come from MASKWATCH_MODELS, the package, or ~/.cache/maskwatch (see `maskwatch models`)."


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="maskwatch", description="Find faces and tell whether each wears a mask.", epilog=EPILOG)
    p.add_argument("--version", action="version", version=f"maskwatch {__import__('maskwatch').__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)
    subparsers: dict[str, argparse.ArgumentParser] = {}
    p.set_defaults(_subparsers=subparsers)

    def cmd(name: str, help: str, example: str) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=help, description=help, epilog="example:\n  " + example, formatter_class=_Formatter)
        sp.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
        sp.add_argument("--config", metavar="FILE", help="settings file (TOML or YAML); keys are this command's option names, "
                        "options given on the command line win")
        subparsers[name] = sp
        return sp

    d = cmd("detect", "detect faces and masks in images and folders; one JSON line per image on stdout",
            "maskwatch detect photos/ --out annotated/")
    d.add_argument("paths", nargs="+", metavar="PATH", help="image files or folders (searched recursively)")
    d.add_argument("--out", help="folder for annotated copies")
    d.add_argument("--blur-faces", action="store_true", help="pixelate faces in the annotated copies")
    d.add_argument("--force", action="store_true", help="overwrite output files of an earlier run (inputs are never overwritten)")
    add_arguments(d, DETECT_SETTINGS, PHOTO_DEFAULTS)

    v = cmd("video", "annotate a video file; optional JSON lines per frame", "maskwatch video in.mp4 --out out.mp4 --json faces.jsonl")
    v.add_argument("input", metavar="IN", help="video file")
    v.add_argument("--out", required=True, help="annotated video to write, same size and fps: .webm (VP9, plays in browsers), "
                   ".mp4 (H.264 with PyAV installed, else MPEG-4 Part 2, which browsers refuse) or .avi (Motion JPEG)")
    v.add_argument("--json", help="write one JSON line per frame to this file")
    v.add_argument("--blur-faces", action="store_true", help="pixelate faces in the output video")
    v.add_argument("--force", action="store_true", help="overwrite output files of an earlier run (inputs are never overwritten)")
    add_arguments(v, DETECT_SETTINGS, VIDEO_DEFAULTS)
    _add_monitor_arguments(v, events_default=None)

    w = cmd("watch", "live view of a webcam, video file or rtsp/http stream (q or Esc quits)", "maskwatch watch 0")
    w.add_argument("source", metavar="SOURCE", help="webcam index (0), video file, or rtsp:// / http:// URL")
    w.add_argument("--headless", action="store_true", help="no window (servers, no screen); combine with --json")
    w.add_argument("--json", action="store_true", help="print one JSON line per frame on stdout")
    w.add_argument("--blur-faces", action="store_true", help="pixelate faces in the window")
    w.add_argument("--max-frames", type=int, default=0, help="stop after this many frames (0 = run until the source ends)")
    w.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for a stream to answer or send a frame")
    w.add_argument("--reconnect", type=_reconnect, default=None, metavar="forever|N",
                   help="when a camera or stream stops sending (a reboot, a network cut): reopen it for ever (default: "
                        "forever), or give up after N attempts in a row; waits grow from 1 s to 30 s. A file ends as files do")
    add_arguments(w, DETECT_SETTINGS, VIDEO_DEFAULTS)
    _add_monitor_arguments(w, events_default=DEFAULT_DB)

    m = cmd("models", "list the model registry and where each file was found", "maskwatch models")
    m.add_argument("--json", action="store_true", help="JSON lines instead of a table")

    td = cmd("train-detector", "fine-tune the YuNet face detector on VOC/YOLO scene sets (needs the 'train' extra)",
             "maskwatch train-detector data/scenes@train --val data/scenes@val --out runs/detector --epochs 20")
    td.add_argument("data", nargs="+", metavar="DATA", help="VOC or YOLO scene sets with face boxes; PATH@train picks the fixed training split")
    td.add_argument("--out", required=True, help="output folder (face_detector.onnx, last.onnx, last.pt, history.json)")
    td.add_argument("--val", nargs="*", help="scene sets that choose the epoch kept (face AP@0.5, one pass at --val-det-size)")
    td.add_argument("--base", default="yunet", help="YuNet ONNX to start from: registry name or path")
    td.add_argument("--epochs", type=int, default=20, help="passes over the training photos (about 90 s each for 1,500 photos on 2 cores)")
    td.add_argument("--batch", type=int, default=8, help="views per step")
    td.add_argument("--lr", type=float, default=1e-4, help="AdamW peak learning rate (warm-up, then cosine decay)")
    td.add_argument("--crop", type=int, default=640, help="side of the square training view, pixels (multiple of 32)")
    td.add_argument("--min-side", type=int, default=480, help="smallest longer side a photo is rescaled to before cropping, pixels")
    td.add_argument("--max-side", type=int, default=1600, help="largest longer side a photo is rescaled to before cropping, pixels")
    td.add_argument("--ignore-score", type=float, default=0.7,
                    help="boxes the original detector finds at this score on no annotated face are ignored, not taught as "
                         "background (annotators leave many real faces unboxed)")
    td.add_argument("--val-det-size", type=int, default=1024, help="detection size for the validation pass")
    td.add_argument("--seed", type=int, default=0, help="random seed (views, order)")
    td.add_argument("--threads", type=int, default=0, help="PyTorch threads (0 = one per core)")
    td.add_argument("--max-images", type=int, default=0, help="use only the first N training photos (0 = all)")
    td.add_argument("--resume", action="store_true", help="continue the run in --out from its last finished epoch")
    td.add_argument("--force", action="store_true", help="start over in an --out folder that holds an earlier run")

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

    t = cmd("train", "train a mask classifier on class folders and/or VOC/YOLO scene sets (needs the 'train' extra)",
            "maskwatch train data/faces data/scenes@train --out runs/mine --epochs 20")
    t.add_argument("data", nargs="+", metavar="DATA", help="class folders (with_mask/, without_mask/, mask_incorrect/) or VOC/YOLO scene sets; PATH@train / PATH@test pick a fixed 75/25 split")
    t.add_argument("--out", required=True, help="output folder (model, report, plots, log)")
    t.add_argument("--val", nargs="*", help="explicit validation sources (default: a stratified 80/20 split of DATA)")
    t.add_argument("--input-size", type=int, default=64, help="classifier input, pixels")
    t.add_argument("--epochs", type=int, default=20, help="fine-tuning epochs (early stopping may end sooner)")
    t.add_argument("--head-epochs", type=int, default=3, help="epochs on the frozen backbone first")
    t.add_argument("--finetune-from", type=int, default=8, help="first backbone block trained in fine-tuning (0 = all)")
    t.add_argument("--batch", type=int, default=32, help="batch size")
    t.add_argument("--lr", type=float, default=1e-4, help="Adam learning rate for fine-tuning")
    t.add_argument("--patience", type=int, default=5, help="early stopping: epochs without a better validation score")
    t.add_argument("--select", choices=["f1", "recall", "loss"], default="f1",
                   help="the epoch kept: best macro F1 over the classes on the validation crops, best mean recall, or lowest "
                        "validation loss; the kept model's probabilities are then calibrated on the validation crops")
    t.add_argument("--pretrained", default="imagenet", help="'imagenet', a torchvision mobilenet_v2 .pth, or 'none'")
    t.add_argument("--init", metavar="MODEL.onnx",
                   help="start from a classifier made by maskwatch train (e.g. the previous default) instead of ImageNet: "
                        "its weights, BatchNorm frozen; classes it lacks (not_face) start random")
    t.add_argument("--seed", type=int, default=0, help="random seed (split, sampling, augmentation)")
    t.add_argument("--workers", type=int, default=train_workers(), help="data-loading processes (one per core, at most 8)")
    t.add_argument("--device", default="auto", help="'auto', 'cpu' or 'cuda'")
    t.add_argument("--max-images", type=int, default=0, help="use at most this many images per source (0 = all)")
    t.add_argument("--nomask-weight", type=float, default=2.0, help="extra loss weight on without_mask (a bare face called masked is the costly error)")
    t.add_argument("--class-weight-cap", type=float, default=3.0,
                   help="a rare class's extra loss weight (the square root of its rarity) is capped here; 1 = none, the "
                        "sampler's balancing only (rare classes weighted twice over get over-predicted)")
    t.add_argument("--source-balance", type=float, default=0.5, help="sampling weight per source ~ size^-x: 0 = as the data comes, 1 = every source equally")
    t.add_argument("--erase", type=float, default=0.0, help="probability of random erasing (a rectangle of noise or colour) per training view")
    t.add_argument("--scene-boxes", choices=["truth", "detector"], default="detector",
                   help="scene sets (VOC/YOLO): crop around the annotated boxes, or around the face detector's box that matches "
                        "each one ('detector': IoU >= 0.5, the framing the classifier gets at run time; faces it misses keep "
                        "their annotated box)")
    t.add_argument("--not-face", type=on_off, default="on", metavar="on|off",
                   help="also learn a not_face class from the face detector's boxes that overlap no annotated face (IoU < 0.3) "
                        "in the scene sets: hands, bags, backs of heads. At run time such boxes are removed (needs --scene-boxes detector)")
    t.add_argument("--not-face-max-score", type=float, default=0.8,
                   help="leave out of not_face the boxes the face detector scores above this: most are real faces the "
                        "annotators skipped")
    t.add_argument("--ema", type=float, default=0.0, help="keep an exponential moving average of the weights with this decay per step and export it (0 = off; e.g. 0.999)")
    t.add_argument("--force", action="store_true", help="overwrite a model already in --out")
    t.add_argument("--resume", action="store_true", help="continue from --out/last.pt")

    so = cmd("soup", "average the weights of models trained from the same start (same --seed, other settings): one model, "
             "usually better than each (a 'model soup'); needs the 'train' extra",
             "maskwatch soup runs/a/mask_classifier.onnx runs/b/mask_classifier.onnx --out runs/soup.onnx")
    so.add_argument("models", nargs="+", metavar="MODEL", help="two or more classifier .onnx files from `maskwatch train`")
    so.add_argument("--out", required=True, help="the averaged model (.onnx)")
    so.add_argument("--force", action="store_true", help="overwrite --out if it exists")

    e = cmd("evaluate", "classification report of a model on labelled folders or scene sets (crops from the true boxes)",
            "maskwatch evaluate maskwatch/assets/mask_classifier.onnx data/scenes@test")
    e.add_argument("model", metavar="MODEL", help="classifier ONNX file, or 'mask_classifier' (bundled)")
    e.add_argument("data", nargs="+", metavar="DATA", help="class folders or VOC/YOLO scene sets (PATH@test for the held-out part)")
    e.add_argument("--out", help="folder for confusion-matrix PNGs")
    e.add_argument("--errors", action="store_true",
                   help="also save every misclassified face into OUT/SET_errors/TRUE_as_PREDICTED/ (the crop the model saw "
                        "beside its surroundings) with an errors.csv: to find label errors and what the model gets wrong")
    add_arguments(e, ["face_detector", "threads", "nomask_cost", "flip"])
    e.add_argument("--boxes", choices=["truth", "detector"], default="truth",
                   help="crop around the annotated boxes, or around the face detector's boxes that match them (IoU >= 0.5, "
                        "--face-detector at the photo det-sizes): how the classifier sees the faces at run time")

    ed = cmd("evaluate-detection", "end-to-end AP@0.5 per class and face recall by size on VOC/YOLO scene sets",
             "maskwatch evaluate-detection data/scenes --peer aizoo")
    ed.add_argument("scenes", nargs="+", metavar="SCENES", help="VOC or YOLO scene folders")
    ed.add_argument("--peer", choices=["aizoo"], help="also measure a peer model on the same sets")
    add_arguments(ed, DETECT_SETTINGS, PHOTO_DEFAULTS)

    x = cmd("explain", "class-activation heatmaps over each face, beside the frame (image or video)",
            "maskwatch explain photo.jpg --out photo_explain.jpg")
    x.add_argument("input", metavar="IMAGE|VIDEO")
    x.add_argument("--out", help="output image or video (default: next to the input, *_explain.jpg/.mp4)")
    x.add_argument("--max-frames", type=int, default=0, help="video: stop after this many frames (0 = all)")
    x.add_argument("--force", action="store_true", help="overwrite output files of an earlier run (inputs are never overwritten)")
    add_arguments(x, DETECT_SETTINGS, PHOTO_DEFAULTS)

    xf = cmd("extract-faces", "save every detected face as a crop (for building data sets)", "maskwatch extract-faces photos/ faces/")
    xf.add_argument("input", metavar="IN", help="image or folder")
    xf.add_argument("output", metavar="OUT", help="folder for the crops")
    xf.add_argument("--size", type=int, default=128, help="crop side, pixels (16-1024)")
    xf.add_argument("--margin", type=float, default=0.2, help="margin around the face box, fraction of its longer side (0-2)")
    xf.add_argument("--force", action="store_true", help="overwrite output files of an earlier run (inputs are never overwritten)")
    add_arguments(xf, ["face_detector", "score_threshold", "nms_threshold", "det_size", "upscale"], {"det_size": PHOTO_DET_SIZE})

    sv = cmd("serve", "web dashboard and HTTP API: live annotated cameras, events, share masked, photo test (needs the 'web' extra)",
             "maskwatch serve --camera 0=door --camera rtsp://cam.local/stream=yard   # then open http://127.0.0.1:8000/")
    sv.add_argument("--host", default="127.0.0.1", help="address to listen on; anything but loopback needs --token")
    sv.add_argument("--port", type=int, default=8000, help="port to listen on")
    sv.add_argument("--camera", action="append", metavar="SOURCE[=NAME]",
                    help="a camera: webcam index, video file (loops) or rtsp/http URL, optionally =NAME; repeatable. "
                         "None: a demo camera looping a sample video")
    sv.add_argument("--token", help="API token every /v1 request must send (Authorization: Bearer TOKEN); "
                                    "default: the MASKWATCH_TOKEN environment variable")
    sv.add_argument("--events", default=DEFAULT_DB, help="SQLite event log ('' = in memory only; the default lives in the "
                    "per-user data folder, MASKWATCH_DATA moves it)")
    sv.add_argument("--retention-days", type=float, default=30.0, help="delete events older than this from the log")
    sv.add_argument("--max-upload-mb", type=float, default=10.0, help="largest photo upload, MB")
    sv.add_argument("--max-pending", type=int, default=4, help="photo uploads processed at once; more are answered 503 "
                    "with Retry-After: 1 (keeps memory bounded under load)")
    sv.add_argument("--confirm-frames", type=int, default=5, help="frames a face must read unmasked before its one event")
    sv.add_argument("--blur-faces", action="store_true", help="pixelate faces in the streams and annotated photos")
    sv.add_argument("--demo-data", metavar="FOLDER",
                    help="where the demo camera's sample photos are: a folder holding data/detect/masks-yolo-extra "
                         "(default: MASKWATCH_SHARED, else the shared/ folder beside this maskwatch checkout); without "
                         "them the demo shows moving shapes")
    sv.add_argument("--photo-det-size", type=det_sizes, default=PHOTO_DET_SIZE, help="--det-size for uploaded photos (as detect)")
    sv.add_argument("--photo-flip", type=on_off, default="on", metavar="on|off", help="--flip for uploaded photos (as detect)")
    add_arguments(sv, DETECT_SETTINGS, VIDEO_DEFAULTS)
    return p


COMMANDS = {
    "detect": cmd_detect, "video": cmd_video, "watch": cmd_watch, "models": cmd_models, "train": cmd_train,
    "train-detector": cmd_train_detector, "batch": cmd_batch, "soup": cmd_soup, "evaluate": cmd_evaluate, "evaluate-detection": cmd_evaluate_detection, "explain": cmd_explain,
    "extract-faces": cmd_extract_faces,
    "serve": cmd_serve,
}


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if getattr(args, "config", None):
            from .settings import load_settings_file

            sp = args._subparsers[args.command]
            sp.set_defaults(**load_settings_file(args.config, sp))
            args = parser.parse_args(argv)  # the command line wins over the file
        return COMMANDS[args.command](args)
    except MaskwatchError as e:
        _err(f"maskwatch {args.command}: error: {e}")
        return 2
    except KeyboardInterrupt:
        _err("maskwatch: interrupted")
        return 130
    except BrokenPipeError:
        return 0
    except OSError as e:  # a folder that cannot be created, a full disk, a read-only file system ...
        where = f" {e.filename}" if e.filename else ""
        _err(f"maskwatch {args.command}: error: cannot write or read{where}: {e.strerror or e}; check the path, its "
             "permissions and the free space")
        return 2


if __name__ == "__main__":
    sys.exit(main())
