"""The Arduino link: point a pan/tilt turret at the most urgent unmasked face, over a serial port.

Protocol (9600 baud by default, ASCII, one message per line)::

    X<x angle>Y<y angle>\\n        e.g. b"X138Y30\\n"; both angles are integer degrees 0..180
    X0Y0\\n                       everyone is masked, or nobody is there (the LED goes off)

The firmware that reads it is ``firmware/maskwatch/maskwatch.ino`` (servos on pins 11 and 10, LED on pin 12;
its parser is ``firmware/maskwatch/protocol.h``).

Three pieces:

* :func:`target_angles` turns one frame's :class:`~maskwatch.detections.Detections` into the two angles;
* :func:`encode` turns the angles into the bytes of one message;
* :class:`SerialSignal` owns the port: ``update()`` is called once per video frame and never waits on the
  port; a background thread sends the newest message every ``interval_ms`` milliseconds, reconnects when the
  port is missing, busy or unplugged, and records what went wrong in ``last_error``.

This module never prints (except the dry-run lines, to the stream it is given) and never exits the process.
pyserial (``pip install 'maskwatch[serial]'``) is needed only for a real port, not for dry runs.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any, TextIO

from .detections import Detections
from .errors import InputError

ANGLE_MIN = 0
ANGLE_MAX = 180
IDLE: tuple[int, int] = (0, 0)
"""The angles sent when nobody needs pointing at: everyone is masked, or there is no face."""

URGENCY: tuple[str, ...] = ("without_mask", "mask_incorrect")
"""Labels that get the turret's attention, most urgent first. 'with_mask' and unclassified faces never do."""

SENT_KEEP = 1000
"""How many of the last messages :attr:`SerialSignal.sent` keeps."""


log = logging.getLogger("maskwatch.serial")
"""The port's changes of state, once each (could not be opened, unplugged, connected): `watch` shows them."""


def target_angles(detections: Detections, width: int, height: int) -> tuple[int, int]:
    """Servo angles (integer degrees, 0..180) for the most urgent unmasked face of one frame.

    ``detections.xyxy`` are boxes x1, y1, x2, y2 in pixels of a frame ``width`` x ``height`` pixels.
    The target face is the first that exists of: label 'without_mask', then 'mask_incorrect'; within that
    label the largest box area wins, and equal areas go to the higher ``confidence`` (then the earlier face).

    The aim point is the upper centre of the face (the eyes, roughly): ``cx = x1 + w/2``, ``cy = y1 + h/3``
    (pixels). Then ``x = 180 - cx*180/width`` (the pan servo is mirrored: the left edge of the image is
    180 degrees) and ``y = cy*180/height``, each rounded with Python's ``round`` and clamped to 0..180, except
    that a real target's x is at least 1: the firmware reads x = 0 as "everyone masked" and turns the LED off.

    Returns :data:`IDLE` ``(0, 0)`` when no face is 'without_mask' or 'mask_incorrect' (everyone is masked,
    or nobody is there). Raises :class:`~maskwatch.errors.InputError` for a width or height that is not > 0.
    """
    if not width > 0 or not height > 0:
        raise InputError(f"target_angles needs the frame size in pixels (width > 0, height > 0); got {width}x{height}")
    labels = detections.labels
    for wanted in URGENCY:
        best: tuple[float, float] | None = None
        best_i = -1
        for i, label in enumerate(labels):
            if label != wanted:
                continue
            x1, y1, x2, y2 = (float(v) for v in detections.xyxy[i])
            key = (max(0.0, x2 - x1) * max(0.0, y2 - y1), float(detections.confidence[i]))
            if best is None or key > best:  # strict: among full ties the earlier face stays
                best, best_i = key, i
        if best_i >= 0:
            x1, y1, x2, y2 = (float(v) for v in detections.xyxy[best_i])
            cx = x1 + (x2 - x1) / 2.0
            cy = y1 + (y2 - y1) / 3.0
            # x = 0 means "nobody to point at" to the firmware (LED off): a face at the very right edge aims at 1.
            return max(1, _angle(180.0 - cx * 180.0 / width)), _angle(cy * 180.0 / height)
    return IDLE


def _angle(value: float) -> int:
    return min(ANGLE_MAX, max(ANGLE_MIN, int(round(value))))


def encode(x: int, y: int) -> bytes:
    """The bytes of one message: ``b"X%dY%d\\n"`` (angles in integer degrees), e.g. ``encode(90, 45) == b"X90Y45\\n"``."""
    return b"X%dY%d\n" % (int(x), int(y))


FINAL_MESSAGE = encode(*IDLE)


def open_serial(port: str, baud: int) -> Any:
    """Open ``port`` (a device such as /dev/ttyACM0 or COM3, or a pyserial URL such as ``loop://``) at ``baud``
    bits/s, with reads that never wait and writes that give up after 0.5 s. Raises what pyserial raises."""
    import serial  # optional dependency: maskwatch[serial]

    return serial.serial_for_url(port, baudrate=baud, timeout=0, write_timeout=0.5)


class SerialSignal:
    """Sends the turret's target over a serial port without ever holding up the video loop.

    ``port``: a serial device (``/dev/ttyACM0``, ``COM3``) or a pyserial URL (``loop://``). ``baud``: bits per
    second (the firmware uses 9600). ``interval_ms``: milliseconds between two messages; the newest message is
    (re)sent on every tick and older ones are dropped, so nothing queues up. ``dry_run``: open no port; write
    each message that would be sent, as text without the newline (``X90Y45``), as one line to ``out``
    (default ``sys.stdout``). ``reconnect_s``: seconds between two attempts to open a port that is missing,
    busy or was unplugged. ``port_factory(port, baud)``: how to open the port (default :func:`open_serial`);
    tests inject an already-open object. It needs ``write(bytes)`` and ``close()``.

    Nothing is sent before the first :meth:`update`. :meth:`close` (or leaving a ``with`` block) stops the
    thread and sends a last ``X0Y0\\n`` if the port is open. Port trouble never raises out of this class: it
    closes the port, keeps the reason in :attr:`last_error` (naming the port) and retries.

    Attributes: ``sent`` (the last 1000 messages actually written, as bytes), ``messages_sent`` (how many in
    all), ``last_error`` (str or None; kept after a reconnect as a record of the last trouble).
    """

    def __init__(
        self,
        port: str,
        baud: int = 9600,
        interval_ms: int = 200,
        dry_run: bool = False,
        out: TextIO | None = None,
        reconnect_s: float = 2.0,
        port_factory: Callable[[str, int], Any] | None = None,
    ) -> None:
        if not baud > 0:
            raise InputError(f"serial baud rate must be > 0 bits/s; got {baud}")
        if not interval_ms > 0:
            raise InputError(f"serial interval must be > 0 ms; got {interval_ms}")
        if not reconnect_s > 0:
            raise InputError(f"serial reconnect delay must be > 0 s; got {reconnect_s}")
        if not dry_run and port_factory is None:
            try:
                import serial  # noqa: F401
            except ImportError as exc:
                raise InputError(f"sending to serial port {port!r} needs pyserial: pip install 'maskwatch[serial]' "
                                 f"(or use the dry run, which needs no port) [{exc}]") from None
        self.port = port
        self.baud = int(baud)
        self.interval_ms = interval_ms
        self.dry_run = dry_run
        self.out: TextIO = out if out is not None else sys.stdout
        self.reconnect_s = float(reconnect_s)
        self._factory = port_factory or open_serial
        self.sent: deque[bytes] = deque(maxlen=SENT_KEEP)
        self.messages_sent = 0
        self.last_error: str | None = None
        self._latest: bytes | None = None
        self._updated = 0.0  # time.monotonic() of the last update()
        self.stale_s = max(1.0, 5 * interval_ms / 1000.0)  # no update() this long (a camera down): X0Y0, not the old aim
        self._trouble = False  # the port's state last logged: each change once (logger "maskwatch.serial")
        self._conn: Any = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name=f"maskwatch-serial {port}", daemon=True)
        self._thread.start()

    # -- the video loop's side: cheap, never touches the port --------------------------------------------------

    def update(self, detections: Detections, width: int, height: int) -> bytes:
        """Aim at this frame's most urgent unmasked face (see :func:`target_angles`; boxes in pixels of a
        ``width`` x ``height`` frame). Stores the message for the writer thread and returns its bytes;
        never waits on the port and never raises because of it."""
        message = encode(*target_angles(detections, width, height))
        with self._lock:
            self._latest, self._updated = message, time.monotonic()
        return message

    @property
    def message(self) -> bytes | None:
        """The newest message handed to :meth:`update` (None before the first)."""
        with self._lock:
            return self._latest

    def status(self) -> dict[str, Any]:
        """``port``, ``connected`` (the port is open; always True in a dry run), ``last_error`` (str or None),
        ``messages_sent`` (int) and ``dry_run``."""
        return {
            "port": self.port,
            "connected": self.dry_run or self._conn is not None,
            "last_error": self.last_error,
            "messages_sent": self.messages_sent,
            "dry_run": self.dry_run,
        }

    def close(self) -> None:
        """Stop the writer thread; it sends a last ``X0Y0\\n`` if the port is open (or prints it in a dry run)
        and closes the port. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=2.0)

    def close_note(self) -> str | None:
        """After :meth:`close`: the trouble with the port if it was still there at the end, or None."""
        return f"serial link: {self.last_error}" if self.last_error and self._trouble else None  # not trouble that ended

    def __enter__(self) -> SerialSignal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the writer thread: the only code that touches the port ------------------------------------------------

    def _run(self) -> None:
        interval = self.interval_ms / 1000.0
        next_open = 0.0
        try:
            while not self._stop.is_set():
                if not self.dry_run and self._conn is None and time.monotonic() >= next_open and not self._open():
                    next_open = time.monotonic() + self.reconnect_s
                with self._lock:
                    message = self._latest
                    if message is not None and time.monotonic() - self._updated > self.stale_s:
                        message = FINAL_MESSAGE  # the video stopped (a camera outage): do not keep aiming at the past
                sendable = message is not None and (self.dry_run or self._conn is not None)
                if sendable and message is not None and not self._send(message) and not self.dry_run:
                    next_open = time.monotonic() + self.reconnect_s
                self._stop.wait(interval)
        finally:
            if self.dry_run or self._conn is not None:
                self._send(FINAL_MESSAGE)
            self._drop()

    def _open(self) -> bool:
        try:
            conn = self._factory(self.port, self.baud)
        except Exception as exc:  # SerialException (missing, busy, no permission), OSError, ValueError (bad URL)
            self.last_error = (f"serial port {self.port!r} could not be opened: {exc} "
                               f"(is the Arduino plugged in, and is no other program using the port? "
                               f"retrying every {self.reconnect_s:g} s)")
            self._tell(True)
            return False
        self._conn = conn
        self._tell(False)
        return True

    def _tell(self, trouble: bool) -> None:
        """Log each change of the port's state once: trouble (with the reason), then "connected" when it is over."""
        if trouble != self._trouble:
            self._trouble = trouble
            if trouble:
                log.warning("%s", self.last_error)
            else:
                log.warning("serial port %r connected", self.port)

    def _send(self, message: bytes) -> bool:
        try:
            if self.dry_run:
                self.out.write(message.decode("ascii").rstrip("\n") + "\n")
                self.out.flush()
            else:
                self._conn.write(message)
        except Exception as exc:  # SerialException / SerialTimeoutException / OSError: unplugged, or nobody reads
            where = "the dry-run output" if self.dry_run else f"serial port {self.port!r}"
            self.last_error = (f"writing to {where} failed: {exc}"
                               + ("" if self.dry_run else f" (unplugged? closed it; retrying every {self.reconnect_s:g} s)"))
            if not self.dry_run:
                self._drop()
                self._tell(True)
            return False
        self.sent.append(message)
        self.messages_sent += 1
        return True

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()


__all__ = ["FINAL_MESSAGE", "IDLE", "SerialSignal", "encode", "open_serial", "target_angles"]
