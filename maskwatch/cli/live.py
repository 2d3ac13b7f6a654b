"""Video and live commands: video (annotate a file), watch (a webcam or stream, with tracking, events, Arduino)."""

from __future__ import annotations

import argparse
import contextlib
import json
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..detections import UNCERTAIN, frame_record, share_masked
from ..errors import InputError
from ..events import DEFAULT_DB
from .common import (
    DETECT_SETTINGS,
    VIDEO_DEFAULTS,
    _bar,
    _check_outputs,
    _detector,
    _err,
    _log_to_stderr,
    _open_for_writing,
    _stop_on_signals,
)
from .options import add_arguments, number


def _add_monitor_arguments(sp: argparse.ArgumentParser, events_default: str | None) -> None:
    g = sp.add_argument_group("monitoring (tracks, events, alerts, Arduino)")
    g.add_argument("--no-track", action="store_true", help="per-frame labels only: no tracking, smoothing or events")
    g.add_argument("--camera", help="camera name written into events (default: the source; a URL without its user name, password and query)")
    where = ("(default: %(default)s, in the per-user data folder, which MASKWATCH_DATA moves; '' = none)" if events_default
             else "(default: none; the summary still counts the events)")
    g.add_argument("--events", default=events_default, help=f"SQLite event log to write {where}")
    add_arguments(g, ["retention_days", "confirm_frames", "confirm_seconds"])  # the settings table's help and defaults
    g.add_argument("--alert-incorrect", action="store_true", help="a wrongly worn mask raises events too")
    g.add_argument("--snapshots", action="store_true", help="store a face image with each event (off: no face is stored)")
    g.add_argument("--event-json", action="store_true", help="print each event as a JSON line on stdout")
    g.add_argument("--webhook", help="POST each event as JSON to this URL (queued and retried when it is down)")
    g.add_argument("--sound", action="store_true", help="ring the terminal bell on each event")
    g.add_argument("--serial", metavar="PORT", help="Arduino serial port (e.g. /dev/ttyACM0): X<angle>Y<angle> at 9600 baud")
    g.add_argument("--serial-dry-run", action="store_true", help="print what would be sent to the Arduino instead")
    add_arguments(g, ["serial_interval"])


def _build_monitor(args: argparse.Namespace, det: Any, settings: Any):  # noqa: ANN202
    """The monitor of ``settings`` (``monitor.build_monitor``), and the objects to close at the end. The serial
    port's and the webhook's changes of state are shown on stderr while it runs, not only at the end."""
    from ..monitor import build_monitor

    _log_to_stderr(f"maskwatch {getattr(args, 'command', 'watch')}", "maskwatch.serial", "maskwatch.webhook")
    return build_monitor(det, settings)


def _monitor_settings(args: argparse.Namespace, source: str):  # noqa: ANN202
    """The options' ``MonitorSettings``, checked (a clear error before a camera or file is opened)."""
    from ..monitor import MonitorSettings

    return MonitorSettings(camera=args.camera or source, events=args.events, retention_days=args.retention_days,
                        confirm_frames=args.confirm_frames, confirm_seconds=args.confirm_seconds,
                        alert_incorrect=args.alert_incorrect, snapshots=args.snapshots, event_json=args.event_json,
                        webhook=args.webhook, sound=args.sound, serial=args.serial, serial_dry_run=args.serial_dry_run,
                        serial_interval=args.serial_interval)


def _close_all(closers: list[Any]) -> None:
    """Close sinks, log, outbox and serial link; say what could not be delivered or written."""
    from ..monitor import close_all

    for note in close_all(closers):
        _err(f"maskwatch: warning: {note}")


def _monitor_summary(mon: Any) -> str:
    if mon is None:
        return ""
    counts = ", ".join(f"{k} {v}" for k, v in mon.counts().items()) or "none"
    return f"; people seen: {counts}; events: {mon.n_events}"


def cmd_video(args: argparse.Namespace) -> int:
    from ..annotate import BoxAnnotator, blur_faces
    from ..video import VideoSink, VideoSource

    if args.json and Path(args.json).resolve() == Path(args.out).resolve():
        raise InputError(f"--json {args.json}: is the --out video too; give them two names")
    _check_outputs([Path(args.out)] + ([Path(args.json)] if args.json else []), [Path(args.input)], args.force)
    det = _detector(args)
    annot = BoxAnnotator()
    jfile = None
    mon, closers = (None, []) if args.no_track else _build_monitor(args, det, _monitor_settings(args, str(args.input)))
    frames = faces = 0
    labels: Counter[str] = Counter()
    t0 = time.perf_counter()
    try:
        with VideoSource(args.input) as src, VideoSink(args.out, src.width, src.height, src.fps) as sink:
            jfile = _open_for_writing(args.json) if args.json else None
            with _bar(src.frame_count or None, "video", "frame", args.quiet) as bar:
                for i, frame in enumerate(src):
                    d = mon.process(frame, t=i / src.fps) if mon else det.detect(frame)
                    frames += 1
                    faces += len(d)
                    labels.update(d.labels)
                    vis = blur_faces(frame, d) if args.blur_faces else frame
                    sink.write(annot.annotate(vis, d, copy=not args.blur_faces))
                    if jfile:
                        jfile.write(json.dumps(frame_record(str(args.input), src.width, src.height, d, i, i / src.fps)) + "\n")
                    bar.update(1)
            ended_early = src.ended_early
            sink_warning = sink.warning
            if not src.fps_stated:
                sink_warning = ((sink_warning + "; ") if sink_warning else "") + (
                    f"{args.input} states no usable frame rate; times and the output assume {src.fps:g} frames/s")
    finally:
        if jfile:
            jfile.close()
        _close_all(closers)
    if frames == 0:
        raise InputError(f"{args.input}: the video has no readable frame")
    secs = time.perf_counter() - t0
    s, unsure = share_masked(labels), labels.get(UNCERTAIN, 0)
    share = f"{s:.1%} masked" + (f" of the {faces - unsure} it is sure of" if unsure else "") if s is not None else "none sure"
    _err(f"maskwatch: {frames} frames, {faces} faces, {share}, {frames / secs:.1f} frames/s; wrote {args.out}"
         + _monitor_summary(mon)
         + ("; WARNING: the video ended before its stated length (truncated file?)" if ended_early else ""))
    if sink_warning:
        _err(f"maskwatch: note: {sink_warning}")
    return 0


def cmd_watch(args: argparse.Namespace) -> int:
    import cv2

    from ..annotate import BoxAnnotator, blur_faces, draw_fps
    from ..video import FPSMonitor, VideoSource, shown_source

    # The handlers go in first: loading the models, a stream that takes --timeout to answer, the event log and the
    # serial port all take time, and a SIGTERM then used to kill watch with no summary. It stops the source once
    # there is one (at once if the signal came before).
    stopping = threading.Event()
    sources: list[VideoSource] = []

    def stop() -> None:
        stopping.set()
        for s in list(sources):
            s.stop()

    def say_state(state: str, detail: str) -> None:
        if state != "gave up":  # that is said once, as the error at the end
            _err(f"maskwatch watch: {detail}")

    annot, fps, mon = BoxAnnotator(), FPSMonitor(), None
    window = "maskwatch (q or Esc quits)"
    restore = _stop_on_signals(stop)
    try:
        det = _detector(args)
        settings = None if args.no_track else _monitor_settings(args, shown_source(args.source))  # checked before the camera opens
        with VideoSource(args.source, open_timeout=args.timeout, read_timeout=args.timeout, reconnect=args.reconnect,
                         wait_to_open=True, on_state=say_state) as src:
            sources.append(src)
            if stopping.is_set():
                src.stop()
            mon, closers = (None, []) if settings is None else _build_monitor(args, det, settings)
            try:
                for frame in src:
                    d = mon.process(frame) if mon else det.detect(frame)
                    fps.tick()
                    if args.json:
                        h, w = frame.shape[:2]
                        t = (fps.frames - 1) / src.fps if src.is_file else time.time()
                        print(json.dumps(frame_record(shown_source(args.source), w, h, d, fps.frames - 1, t)), flush=True)
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
                _close_all(closers)
                if not args.headless:
                    with contextlib.suppress(cv2.error):  # headless OpenCV build: there was no window
                        cv2.destroyAllWindows()
            stopped = src.stopped
    finally:
        restore()
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


def parser_video(cmd: Callable[..., argparse.ArgumentParser]) -> None:
    v = cmd("video", "annotate a video file; optional JSON lines per frame", "maskwatch video in.mp4 --out out.mp4 --json faces.jsonl")
    v.add_argument("input", metavar="IN", help="video file")
    v.add_argument("--out", required=True, help="annotated video to write, same size and fps: .webm (VP9, plays in browsers), "
                   ".mp4 (H.264 with PyAV installed, else MPEG-4 Part 2, which browsers refuse) or .avi (Motion JPEG)")
    v.add_argument("--json", help="write one JSON line per frame to this file")
    v.add_argument("--blur-faces", action="store_true", help="pixelate faces in the output video")
    v.add_argument("--force", action="store_true", help="overwrite output files of an earlier run (inputs are never overwritten)")
    add_arguments(v, DETECT_SETTINGS, VIDEO_DEFAULTS)
    _add_monitor_arguments(v, events_default=None)


def parser_watch(cmd: Callable[..., argparse.ArgumentParser]) -> None:
    w = cmd("watch", "live view of a webcam, video file or rtsp/http stream (q or Esc quits)", "maskwatch watch 0")
    w.add_argument("source", metavar="SOURCE", help="webcam index (0), video file, or rtsp:// / http:// URL")
    w.add_argument("--headless", action="store_true", help="no window (servers, no screen); combine with --json")
    w.add_argument("--json", action="store_true", help="print one JSON line per frame on stdout")
    w.add_argument("--blur-faces", action="store_true", help="pixelate faces in the window")
    w.add_argument("--max-frames", type=number(int, 0), default=0,
                   help="stop after this many frames (0 = run until the source ends)")
    w.add_argument("--timeout", type=number(float, 0, 3600, above=True), default=10.0,
                   help="seconds to wait for a stream to answer or send a frame")
    w.add_argument("--reconnect", type=_reconnect, default=None, metavar="forever|N",
                   help="when a camera or stream stops sending (a reboot, a network cut): reopen it for ever "
                        "(default: forever), or give up after N attempts in a row; waits grow from 1 s to 30 s. A stream that does not answer at the "
                        "start is waited for the same way; a file or webcam index that cannot be opened is an error at once, and a file ends as files do")
    add_arguments(w, DETECT_SETTINGS, VIDEO_DEFAULTS)
    _add_monitor_arguments(w, events_default=DEFAULT_DB)
