"""The serve command: the web dashboard and HTTP API."""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Callable

from ..errors import InputError
from ..events import DEFAULT_DB
from ..settings import PHOTO, det_sizes, flip_mode
from .common import (
    DETECT_SETTINGS,
    PHOTO_DET_SIZE,
    VIDEO_DEFAULTS,
    _err,
    _log_to_stderr,
    _stop_on_signals,
)
from .options import add_arguments, detector_kwargs


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


def _token(args: argparse.Namespace) -> str | None:
    """--token, else the first line of --token-file, else MASKWATCH_TOKEN (a token on the command line is shown by
    ps to every local user; a file or the environment is not)."""
    import os

    if args.token:
        return str(args.token)
    if args.token_file:
        try:
            with open(args.token_file, encoding="utf-8-sig") as f:  # (a BOM from Notepad is not the token)
                token = f.readline().strip()
        except (OSError, UnicodeDecodeError) as e:
            raise InputError(f"--token-file {args.token_file}: cannot read it ({getattr(e, 'strerror', None) or e})") from None
        if not token:
            raise InputError(f"--token-file {args.token_file}: its first line is empty; put the token there")
        return token
    return os.environ.get("MASKWATCH_TOKEN") or None


def cmd_serve(args: argparse.Namespace) -> int:
    import importlib.util

    try:
        from ..events import is_loopback
        from ..server import ServerSettings, bind, create_app, make_server
        from ..server.limits import check_tls, raise_open_files_limit
    except ImportError as e:
        raise InputError(f"maskwatch serve needs the 'web' extra ({e.name} is missing): pip install 'maskwatch[web]'") from None
    if not (importlib.util.find_spec("python_multipart") or importlib.util.find_spec("multipart")):
        raise InputError("maskwatch serve needs the 'web' extra (python-multipart is missing): pip install 'maskwatch[web]'")
    settings = ServerSettings(host=args.host, port=args.port, cameras=args.camera or [],
                              token=_token(args), events=args.events,
                              retention_days=args.retention_days, max_upload_mb=args.max_upload_mb, max_pending=args.max_pending,
                              detector=detector_kwargs(args), photo_det_size=args.photo_det_size, photo_flip=args.photo_flip,
                              confirm_frames=args.confirm_frames, blur_faces=args.blur_faces, shared=args.demo_data,
                              allowed_hosts=tuple(args.allowed_host or ()))
    check_tls(args.tls_cert, args.tls_key)  # before the models load
    _fewer_malloc_arenas()
    if (why := raise_open_files_limit()) is not None:
        _err(f"maskwatch serve: {why}")
    _log_to_stderr("maskwatch serve", "maskwatch.server", "maskwatch.webhook")  # each change of state, once
    app = create_app(settings)
    sock = bind(settings.host, settings.port)
    try:
        server = make_server(app, tls_cert=args.tls_cert, tls_key=args.tls_key)
    except BaseException:
        sock.close()
        raise
    host, port = sock.getsockname()[:2]
    if not args.tls_cert and not is_loopback(settings.host):
        _err("maskwatch serve: warning: without TLS the API token and the camera video travel unencrypted on the "
             "network; give --tls-cert/--tls-key or put a TLS reverse proxy in front")
    cams = ", ".join(w.spec.name for w in app.state.maskwatch.cameras.values()) or "none"
    scheme = "https" if args.tls_cert else "http"
    _err(f"maskwatch: dashboard on {scheme}://{'[' + host + ']' if ':' in host else host}:{port}/"
         + ("#token=<your token> (or give it in the page)" if settings.token else "") + f" (cameras: {cams}; events in {args.events or 'memory'}); "
         "Ctrl-C stops")
    # uvicorn shuts down on SIGTERM or SIGINT (cameras stopped, events flushed), then raises the signal again for the
    # handler that was there before it: ours, which lets the process end with its summary and exit code 0.
    restore = _stop_on_signals(lambda: None)
    try:
        server.run(sockets=[sock])
    finally:
        restore()
    _err(f"maskwatch: server stopped; events in {args.events or 'memory (not kept)'}")
    return 0


def parser_serve(cmd: Callable[..., argparse.ArgumentParser]) -> None:
    sv = cmd("serve", "web dashboard and HTTP API: live annotated cameras, events, share masked, photo test (needs the 'web' extra)",
             "maskwatch serve --camera 0=door --camera rtsp://cam.local/stream=yard   # then open http://127.0.0.1:8000/")
    sv.add_argument("--host", default="127.0.0.1", help="address to listen on; anything but loopback needs --token")
    sv.add_argument("--port", type=int, default=8000, help="port to listen on")
    sv.add_argument("--camera", action="append", metavar="SOURCE[=NAME]",
                    help="a camera: webcam index, video file (loops) or rtsp/http URL, optionally =NAME; repeatable. "
                         "None: a demo camera looping a sample video")
    tok = sv.add_mutually_exclusive_group()
    tok.add_argument("--token", help="API token every /v1 request must send (Authorization: Bearer TOKEN); ps shows it "
                                     "to every local user: prefer --token-file or the MASKWATCH_TOKEN environment variable "
                                     "(the default)")
    tok.add_argument("--token-file", metavar="FILE", help="read the API token from the first line of FILE")
    sv.add_argument("--allowed-host", action="append", metavar="NAME",
                    help="a host name the server answers to besides 127.0.0.1, localhost and the --host address (e.g. "
                         "the name a reverse proxy passes in Host); repeatable. Without a token only these are answered "
                         "(a web page cannot reach the dashboard under another name)")
    sv.add_argument("--tls-cert", metavar="FILE", help="serve HTTPS with this PEM certificate (chain); off loopback "
                    "without it the token and the video travel unencrypted")
    sv.add_argument("--tls-key", metavar="FILE", help="the certificate's private key, PEM, unencrypted (default: in the "
                    "--tls-cert file)")
    sv.add_argument("--events", default=DEFAULT_DB, help="SQLite event log ('' = in memory only; the default lives in the "
                    "per-user data folder, MASKWATCH_DATA moves it)")
    add_arguments(sv, ["retention_days", "confirm_frames"])  # the settings table's help and defaults
    sv.add_argument("--max-upload-mb", type=float, default=10.0, help="largest photo upload, MB")
    sv.add_argument("--max-pending", type=int, default=4, help="photo uploads processed at once; more are answered 503 "
                    "with Retry-After: 1 (keeps memory bounded under load)")
    sv.add_argument("--blur-faces", action="store_true", help="pixelate faces in the streams and annotated photos")
    sv.add_argument("--demo-data", metavar="FOLDER",
                    help="where the demo camera's sample photos are: a folder holding data/detect/masks-yolo-extra "
                         "(default: MASKWATCH_SHARED, else the shared/ folder beside this maskwatch checkout); without "
                         "them the demo shows moving shapes")
    sv.add_argument("--photo-det-size", type=det_sizes, default=PHOTO_DET_SIZE, help="--det-size for uploaded photos (as detect)")
    sv.add_argument("--photo-flip", type=flip_mode, default=PHOTO["flip"], metavar="on|off|auto",
                    help="--flip for uploaded photos (as detect)")
    add_arguments(sv, DETECT_SETTINGS, VIDEO_DEFAULTS)
