"""Events of the live monitor and everything after they are emitted: the SQLite event log, a persistent outbox and
the sinks (JSON lines, webhook, sound, event log).

The tracker decides *when* a face is confirmed unmasked and builds one :class:`Event`; this module stores and
delivers it. Nothing here may stop the video loop: sinks never raise on a delivery failure (they record
``last_error``), and no event is lost:

* :class:`EventLog` keeps events it cannot write (read-only file, full disk) in memory (``pending``) and writes them
  on the next :meth:`EventLog.add` or :meth:`EventLog.flush`.
* :class:`WebhookSink` puts each event into an :class:`Outbox` (a SQLite table) first and posts it from a background
  thread, with a timeout and exponential backoff; what was not delivered is sent again after a restart.

Only the standard library is used (sqlite3, urllib, threading, json), plus OpenCV for the optional face snapshot.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as _dt
import hashlib
import ipaddress
import json
import math
import os
import socket
import sqlite3
import sys
import threading
import time as _time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from .errors import InputError

__all__ = [
    "Event",
    "EventLog",
    "Outbox",
    "Sink",
    "JsonLinesSink",
    "WebhookSink",
    "SoundSink",
    "EventLogSink",
    "EventDispatcher",
    "make_snapshot",
]

def data_dir() -> Path:
    """Where maskwatch keeps its databases by default: ``MASKWATCH_DATA``; else ``%APPDATA%/maskwatch`` on Windows;
    else ``$XDG_DATA_HOME/maskwatch`` (``~/.local/share/maskwatch``), the per-user data folder of the XDG rule."""
    if os.environ.get("MASKWATCH_DATA"):
        return Path(os.environ["MASKWATCH_DATA"])
    if sys.platform == "win32" and os.environ.get("APPDATA"):
        return Path(os.environ["APPDATA"]) / "maskwatch"
    return Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share") / "maskwatch"


DEFAULT_DB = str(data_dir() / "events.db")
"""The default event log (and webhook outbox): in the per-user data folder, not wherever the command runs."""


# --------------------------------------------------------------------------------------------------------- Event


@dataclass
class Event:
    """One confirmed observation: a tracked face that wears no mask (or wears it wrongly).

    time: unix seconds. camera: the camera's name. track_id: the tracker's id of the face. label and confidence:
    the classifier's verdict. box: x1, y1, x2, y2 in pixels of the frame. snapshot: JPEG bytes of the face, only
    when asked for (off by default). id: a unique hex id (uuid4), so a sink can recognise a repeat.
    """

    time: float
    camera: str
    track_id: int
    label: str
    confidence: float
    box: list[int]  # xyxy pixels, rounded
    snapshot: bytes | None = None
    id: str = field(default_factory=lambda: uuid.uuid4().hex)

    def __post_init__(self) -> None:
        self.time = float(self.time)
        if not math.isfinite(self.time):
            raise ValueError(f"Event.time must be finite unix seconds, got {self.time}")
        self.camera = str(self.camera)
        self.track_id = int(self.track_id)
        self.label = str(self.label)
        self.confidence = float(self.confidence)
        if not math.isfinite(self.confidence):
            raise ValueError(f"Event.confidence must be a finite number, got {self.confidence}")
        box = [int(round(float(v))) for v in np.asarray(self.box, dtype=np.float64).reshape(-1)]
        if len(box) != 4:
            raise ValueError(f"Event.box must be 4 numbers (x1, y1, x2, y2 in pixels), got {len(box)}: {self.box!r}")
        self.box = box
        if self.snapshot is not None:
            self.snapshot = bytes(self.snapshot)
        self.id = str(self.id)

    @property
    def iso_time(self) -> str:
        """The time as ISO-8601 UTC, e.g. ``2024-05-01T12:00:00.250Z``."""
        t = _dt.datetime.fromtimestamp(self.time, tz=_dt.UTC)
        return t.isoformat(timespec="milliseconds").replace("+00:00", "Z")

    def to_dict(self, include_snapshot: bool = False) -> dict[str, Any]:
        """A JSON-safe dict. The snapshot (base64 of the JPEG) only when ``include_snapshot`` and there is one."""
        d: dict[str, Any] = {
            "id": self.id,
            "time": self.time,
            "iso_time": self.iso_time,
            "camera": self.camera,
            "track_id": self.track_id,
            "label": self.label,
            "confidence": round(self.confidence, 4),
            "box": list(self.box),
        }
        if include_snapshot and self.snapshot is not None:
            d["snapshot"] = base64.b64encode(self.snapshot).decode("ascii")
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Event:
        """The inverse of :meth:`to_dict` (``iso_time`` is ignored; ``snapshot`` may be base64 or absent)."""
        snap = d.get("snapshot")
        if isinstance(snap, str):
            snap = base64.b64decode(snap)
        kwargs: dict[str, Any] = dict(
            time=d["time"], camera=d["camera"], track_id=d["track_id"], label=d["label"],
            confidence=d["confidence"], box=d["box"], snapshot=snap,
        )
        if d.get("id"):
            kwargs["id"] = d["id"]
        return cls(**kwargs)

    @classmethod
    def from_detections(
        cls,
        detections: Any,
        index: int,
        camera: str,
        time: float | None = None,
        frame: np.ndarray | None = None,
        snapshot: bool = False,
    ) -> Event:
        """The event for row ``index`` of a :class:`~maskwatch.detections.Detections` (tracked, classified).

        time defaults to now. With ``snapshot=True`` and a ``frame`` (BGR), the face is cut out and stored as JPEG.
        """
        i = int(index)
        labels = detections.labels
        snap = make_snapshot(frame, detections.xyxy[i]) if (snapshot and frame is not None) else None
        return cls(
            time=_time.time() if time is None else time,
            camera=camera,
            track_id=int(detections.tracker_id[i]),
            label=labels[i],
            confidence=float(detections.confidence[i]),
            box=detections.xyxy[i].tolist(),  # rounded to whole pixels by __post_init__
            snapshot=snap,
        )


def make_snapshot(frame: np.ndarray | None, box: Sequence[float], margin: float = 0.2, quality: int = 85) -> bytes | None:
    """JPEG bytes of the face in ``box`` (x1, y1, x2, y2 pixels) with ``margin`` (a fraction of the box) around it,
    clipped to the frame. None when there is no frame or the box lies outside it."""
    if frame is None or getattr(frame, "ndim", 0) < 2:
        return None
    import cv2

    h, w = frame.shape[:2]
    x1, y1, x2, y2 = (float(v) for v in box)
    mx, my = (x2 - x1) * margin, (y2 - y1) * margin
    a, b = max(0, int(math.floor(x1 - mx))), max(0, int(math.floor(y1 - my)))
    c, d = min(w, int(math.ceil(x2 + mx))), min(h, int(math.ceil(y2 + my)))
    if c <= a or d <= b:
        return None
    crop = np.ascontiguousarray(frame[b:d, a:c])
    if crop.dtype != np.uint8:
        crop = np.clip(crop, 0, 255).astype(np.uint8)
    ok, buf = cv2.imencode(".jpg", crop, [int(cv2.IMWRITE_JPEG_QUALITY), int(quality)])
    return buf.tobytes() if ok else None


# ------------------------------------------------------------------------------------------------ SQLite helpers


def _explain(what: str, path: str, err: BaseException) -> str:
    """A clear message for a SQLite error: what, where, why and what to do."""
    text = str(err)
    low = text.lower()
    if "readonly" in low or "read-only" in low:
        return (f"{what} {path} is read-only ({text}); make the file and its folder writable, "
                f"or choose another path for it")
    if "full" in low:
        return f"{what} {path}: the disk is full ({text}); free some space, or choose a path on another disk"
    if "unable to open" in low or "cannot open" in low:
        return (f"{what} {path} cannot be opened ({text}); check that its folder exists, is a folder and is "
                f"writable, or choose another path")
    if "locked" in low or "busy" in low:
        return f"{what} {path} is locked by another program ({text}); close that program or choose another path"
    if "not a database" in low or "malformed" in low or "corrupt" in low:
        return f"{what} {path} is not a SQLite database or is damaged ({text}); move it away or choose another path"
    if "closed" in low:
        return f"{what} {path} is closed ({text})"
    return f"{what} {path}: {text}; check the path, its permissions and the free disk space"


def _connect(path: str | Path, what: str, schema: str) -> tuple[sqlite3.Connection, str]:
    """Open (creating if needed) a SQLite database in WAL mode with ``schema``, and check it can be written.

    Accepts a file path, ``":memory:"``, or a ``file:`` URI (e.g. ``file:events.db?mode=ro``). Raises InputError
    naming the path and what to do when it cannot be opened or written.
    """
    uri = isinstance(path, str) and path.startswith("file:")
    if uri or str(path) == ":memory:":
        target, shown = str(path), str(path)
    else:
        p = Path(path).expanduser()
        shown = str(p)
        if p.is_dir():
            raise InputError(f"{what} {shown} is a folder; give a file path such as {p / DEFAULT_DB}")
        try:
            p.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise InputError(f"{what} {shown}: cannot create its folder {p.parent} ({e.strerror or e}); "
                             f"choose a path in a writable folder") from None
        if not p.parent.is_dir():
            raise InputError(f"{what} {shown}: {p.parent} is not a folder; choose a path in a writable folder")
        target = str(p)
    conn: sqlite3.Connection | None = None
    try:
        conn = sqlite3.connect(target, uri=uri, timeout=1.0, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.executescript(schema)
        # A write probe: a read-only file or URI (mode=ro) passes everything above but fails here.
        conn.execute("BEGIN IMMEDIATE")
        try:
            v = conn.execute("PRAGMA user_version").fetchone()[0]
            conn.execute(f"PRAGMA user_version={int(v)}")
        finally:
            conn.execute("ROLLBACK")
    except sqlite3.Error as e:
        if conn is not None:
            with contextlib.suppress(sqlite3.Error):
                conn.close()
        raise InputError(_explain(what, shown, e)) from None
    return conn, shown


@contextlib.contextmanager
def _transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        with contextlib.suppress(sqlite3.Error):
            conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _timestamp(t: Any) -> float | None:
    if t is None:
        return None
    if isinstance(t, _dt.datetime):
        if t.tzinfo is None:
            t = t.replace(tzinfo=_dt.UTC)
        return t.timestamp()
    return float(t)


# ------------------------------------------------------------------------------------------------------ EventLog

_EVENTS_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    id TEXT PRIMARY KEY,
    time REAL NOT NULL,
    camera TEXT NOT NULL,
    track_id INTEGER NOT NULL,
    label TEXT NOT NULL,
    confidence REAL NOT NULL,
    box TEXT NOT NULL,
    snapshot BLOB
);
CREATE INDEX IF NOT EXISTS events_time ON events(time);
"""


class EventLog:
    """The event log: a SQLite file (WAL mode), safe to share between threads.

    path: the database file (its folder is created), ``":memory:"``, or a ``file:`` URI. retention_days: events
    older than this are deleted (on open, then at most once an hour on :meth:`add`, or by :meth:`purge`); None
    keeps everything.

    Opening a path that cannot be written raises :class:`~maskwatch.errors.InputError` naming the path and the fix.
    A write that fails later (full disk, file made read-only) never raises: the event stays in :attr:`pending`, the
    reason is in :attr:`last_error`, and the next :meth:`add` or :meth:`flush` writes it.
    """

    PURGE_EVERY_S = 3600.0

    def __init__(self, path: str | Path = DEFAULT_DB, retention_days: float | None = 30) -> None:
        if retention_days is not None and not (float(retention_days) > 0):
            raise InputError(f"event log retention_days must be > 0 days or None (keep all), got {retention_days}")
        self.retention_days = None if retention_days is None else float(retention_days)
        self.last_error: str | None = None
        self._lock = threading.RLock()
        self._pending: list[Event] = []
        self._closed = False
        self._conn, self.path = _connect(path, "event database", _EVENTS_SCHEMA)
        self._last_purge = _time.monotonic()
        if self.retention_days is not None:
            try:
                self.purge()
            except InputError as e:
                self.last_error = str(e)

    # -- writing

    @property
    def pending(self) -> list[Event]:
        """Events not written yet (the database could not be written); a copy."""
        with self._lock:
            return list(self._pending)

    def add(self, event: Event) -> bool:
        """Store an event. Never raises on a database fault: returns False and keeps it pending (see class doc)."""
        with self._lock:
            self._pending.append(event)
            ok = self._write_pending()
            if ok and self.retention_days is not None and _time.monotonic() - self._last_purge > self.PURGE_EVERY_S:
                with contextlib.suppress(InputError):
                    self.purge()
            return ok

    def flush(self) -> int:
        """Try again to write the pending events; returns how many are still pending (0: all written)."""
        with self._lock:
            self._write_pending()
            return len(self._pending)

    def _write_pending(self) -> bool:
        if not self._pending:
            return True
        if self._closed:
            self.last_error = f"event database {self.path} is closed; {len(self._pending)} event(s) kept in memory"
            return False
        rows = [
            (e.id, e.time, e.camera, e.track_id, e.label, e.confidence, json.dumps(e.box), e.snapshot)
            for e in self._pending
        ]
        try:
            with _transaction(self._conn) as c:
                c.executemany(
                    "INSERT OR IGNORE INTO events (id, time, camera, track_id, label, confidence, box, snapshot) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    rows,
                )
        except sqlite3.Error as e:
            self.last_error = _explain("event database", self.path, e) + f"; {len(self._pending)} event(s) kept in memory"
            return False
        self._pending.clear()
        self.last_error = None
        return True

    def purge(self, now: float | None = None) -> int:
        """Delete the events older than the retention period; returns how many. 0 when retention_days is None."""
        if self.retention_days is None:
            return 0
        cutoff = (_time.time() if now is None else _timestamp(now)) - self.retention_days * 86400.0  # type: ignore[operator]
        with self._lock:
            self._check_open()
            try:
                with _transaction(self._conn) as c:
                    n = c.execute("DELETE FROM events WHERE time < ?", (cutoff,)).rowcount
            except sqlite3.Error as e:
                raise InputError(_explain("event database", self.path, e)) from None
            self._last_purge = _time.monotonic()
            return int(n)

    # -- reading

    @staticmethod
    def _where(since: Any, until: Any, camera: str | None, label: str | None) -> tuple[str, list[Any]]:
        clauses: list[str] = []
        args: list[Any] = []
        if since is not None:
            clauses.append("time >= ?")
            args.append(_timestamp(since))
        if until is not None:
            clauses.append("time < ?")
            args.append(_timestamp(until))
        if camera is not None:
            clauses.append("camera = ?")
            args.append(str(camera))
        if label is not None:
            clauses.append("label = ?")
            args.append(str(label))
        return (" WHERE " + " AND ".join(clauses)) if clauses else "", args

    def query(
        self,
        since: float | _dt.datetime | None = None,
        until: float | _dt.datetime | None = None,
        camera: str | None = None,
        label: str | None = None,
        limit: int | None = 100,
        offset: int = 0,
    ) -> list[Event]:
        """Stored events, newest first. since <= time < until (unix seconds or datetimes); camera and label match
        exactly; limit (None: all) and offset page through the result."""
        where, args = self._where(since, until, camera, label)
        sql = ("SELECT id, time, camera, track_id, label, confidence, box, snapshot FROM events"
               f"{where} ORDER BY time DESC, rowid DESC LIMIT ? OFFSET ?")
        args += [-1 if limit is None else max(0, int(limit)), max(0, int(offset))]
        with self._lock:
            self._check_open()
            try:
                rows = self._conn.execute(sql, args).fetchall()
            except sqlite3.Error as e:
                raise InputError(_explain("event database", self.path, e)) from None
        return [
            Event(time=t, camera=cam, track_id=tid, label=lab, confidence=conf, box=json.loads(box),
                  snapshot=None if snap is None else bytes(snap), id=eid)
            for eid, t, cam, tid, lab, conf, box, snap in rows
        ]

    def count(
        self,
        since: float | _dt.datetime | None = None,
        until: float | _dt.datetime | None = None,
        camera: str | None = None,
        label: str | None = None,
    ) -> int:
        """How many stored events match (same filters as :meth:`query`; pending events are not counted)."""
        where, args = self._where(since, until, camera, label)
        with self._lock:
            self._check_open()
            try:
                return int(self._conn.execute(f"SELECT COUNT(*) FROM events{where}", args).fetchone()[0])
            except sqlite3.Error as e:
                raise InputError(_explain("event database", self.path, e)) from None

    # -- life cycle

    def _check_open(self) -> None:
        if self._closed:
            raise InputError(f"event database {self.path} is closed; open a new EventLog")

    def close(self) -> int:
        """Write what is pending (if possible) and close. Returns how many events could not be written."""
        with self._lock:
            if self._closed:
                return len(self._pending)
            self._write_pending()
            self._closed = True
            with contextlib.suppress(sqlite3.Error):
                self._conn.close()
            return len(self._pending)

    def __enter__(self) -> EventLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"EventLog({self.path!r}, retention_days={self.retention_days}, pending={len(self._pending)})"


# -------------------------------------------------------------------------------------------------------- Outbox

_OUTBOX_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    sink TEXT NOT NULL,
    payload TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_try REAL NOT NULL,
    created REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS outbox_due ON outbox(sink, next_try);
"""


class Outbox:
    """A persistent delivery queue (table ``outbox`` in a SQLite file), so undelivered events survive a restart.

    path: its own file or the event log's file (the table is separate). Thread-safe. When the file cannot be
    written (full disk), an entry is kept in memory (negative id, ``last_error`` says why) and moved into the file
    by a later :meth:`due` once it can be written again.
    """

    def __init__(self, path: str | Path = DEFAULT_DB) -> None:
        self.last_error: str | None = None
        self._lock = threading.RLock()
        self._mem: dict[int, list[Any]] = {}  # id -> [sink, payload_json, attempts, next_try, created]
        self._mem_next = -1
        self._closed = False
        self._conn, self.path = _connect(path, "outbox database", _OUTBOX_SCHEMA)

    def _fail(self, e: sqlite3.Error) -> None:
        self.last_error = _explain("outbox database", self.path, e)

    def put(self, sink_name: str, payload: dict[str, Any]) -> int:
        """Queue a JSON-able payload for a sink, due now; returns its id. Never raises on a database fault."""
        text = json.dumps(payload, separators=(",", ":"))
        now = _time.time()
        with self._lock:
            if not self._closed:
                try:
                    with _transaction(self._conn) as c:
                        cur = c.execute(
                            "INSERT INTO outbox (sink, payload, attempts, next_try, created) VALUES (?, ?, 0, ?, ?)",
                            (sink_name, text, now, now),
                        )
                    return int(cur.lastrowid or 0)
                except sqlite3.Error as e:
                    self._fail(e)
            else:
                self.last_error = f"outbox database {self.path} is closed; entry kept in memory"
            rid = self._mem_next
            self._mem_next -= 1
            self._mem[rid] = [sink_name, text, 0, now, now]
            return rid

    def _migrate(self, sink_name: str) -> None:
        """Move this sink's in-memory entries into the file, if it can be written now."""
        ids = [i for i, r in self._mem.items() if r[0] == sink_name]
        if not ids or self._closed:
            return
        try:
            with _transaction(self._conn) as c:
                c.executemany(
                    "INSERT INTO outbox (sink, payload, attempts, next_try, created) VALUES (?, ?, ?, ?, ?)",
                    [tuple(self._mem[i]) for i in sorted(ids, reverse=True)],
                )
        except sqlite3.Error as e:
            self._fail(e)
            return
        for i in ids:
            del self._mem[i]

    def due(self, sink_name: str, now: float | None = None, limit: int = 100) -> list[tuple[int, dict[str, Any], int]]:
        """Entries of a sink whose next try has come, oldest first: (id, payload, attempts)."""
        now = _time.time() if now is None else float(now)
        with self._lock:
            self._migrate(sink_name)
            out: list[tuple[int, dict[str, Any], int]] = []
            if not self._closed:
                try:
                    rows = self._conn.execute(
                        "SELECT id, payload, attempts FROM outbox WHERE sink = ? AND next_try <= ? ORDER BY id LIMIT ?",
                        (sink_name, now, int(limit)),
                    ).fetchall()
                    out = [(int(i), json.loads(p), int(a)) for i, p, a in rows]
                except sqlite3.Error as e:
                    self._fail(e)
            mem = sorted(((i, r) for i, r in self._mem.items() if r[0] == sink_name and r[3] <= now), key=lambda x: -x[0])
            out += [(i, json.loads(r[1]), int(r[2])) for i, r in mem]
            return out[: int(limit)]

    def done(self, id: int) -> None:
        """Delivered: remove the entry."""
        with self._lock:
            if id < 0:
                self._mem.pop(id, None)
                return
            if self._closed:
                return
            try:
                with _transaction(self._conn) as c:
                    c.execute("DELETE FROM outbox WHERE id = ?", (int(id),))
            except sqlite3.Error as e:
                self._fail(e)

    def retry_later(self, id: int, delay_s: float) -> None:
        """Not delivered: count the attempt and make the entry due again in ``delay_s`` seconds."""
        when = _time.time() + max(0.0, float(delay_s))
        with self._lock:
            if id < 0:
                if id in self._mem:
                    self._mem[id][2] += 1
                    self._mem[id][3] = when
                return
            if self._closed:
                return
            try:
                with _transaction(self._conn) as c:
                    c.execute("UPDATE outbox SET attempts = attempts + 1, next_try = ? WHERE id = ?", (when, int(id)))
            except sqlite3.Error as e:
                self._fail(e)

    def reschedule(self, sink_name: str, when: float | None = None) -> None:
        """Make all entries of a sink due at ``when`` (default now), e.g. to resend at once after a restart."""
        when = _time.time() if when is None else float(when)
        with self._lock:
            for r in self._mem.values():
                if r[0] == sink_name:
                    r[3] = when
            if self._closed:
                return
            try:
                with _transaction(self._conn) as c:
                    c.execute("UPDATE outbox SET next_try = ? WHERE sink = ?", (when, sink_name))
            except sqlite3.Error as e:
                self._fail(e)

    def next_try(self, sink_name: str) -> float | None:
        """When the next entry of a sink is due (unix seconds), or None when it has none."""
        with self._lock:
            times = [r[3] for r in self._mem.values() if r[0] == sink_name]
            if not self._closed:
                try:
                    t = self._conn.execute("SELECT MIN(next_try) FROM outbox WHERE sink = ?", (sink_name,)).fetchone()[0]
                    if t is not None:
                        times.append(float(t))
                except sqlite3.Error as e:
                    self._fail(e)
            return min(times) if times else None

    def count(self, sink_name: str | None = None) -> int:
        """Entries waiting (for one sink, or for all)."""
        with self._lock:
            n = sum(1 for r in self._mem.values() if sink_name is None or r[0] == sink_name)
            if self._closed:
                return n
            try:
                if sink_name is None:
                    n += self._conn.execute("SELECT COUNT(*) FROM outbox").fetchone()[0]
                else:
                    n += self._conn.execute("SELECT COUNT(*) FROM outbox WHERE sink = ?", (sink_name,)).fetchone()[0]
            except sqlite3.Error as e:
                self._fail(e)
            return int(n)

    def close(self) -> None:
        """Close the file. Entries still in memory (the file could not be written) are lost with the process."""
        with self._lock:
            if self._closed:
                return
            for sink in {r[0] for r in self._mem.values()}:
                self._migrate(sink)
            self._closed = True
            with contextlib.suppress(sqlite3.Error):
                self._conn.close()

    def __enter__(self) -> Outbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Outbox({self.path!r})"


# --------------------------------------------------------------------------------------------------------- Sinks


class Sink:
    """Where events go. ``send`` never raises on a delivery failure and never blocks for long; the reason of the
    last failure is in ``last_error``. ``close`` releases what the sink holds."""

    name = "sink"

    def __init__(self) -> None:
        self.last_error: str | None = None

    def send(self, event: Event) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def close(self) -> None:
        pass

    def __enter__(self) -> Sink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class JsonLinesSink(Sink):
    """One JSON line per event (:meth:`Event.to_dict`) on a text stream; sys.stdout (at send time) by default."""

    name = "jsonl"

    def __init__(self, stream: TextIO | None = None, include_snapshot: bool = False) -> None:
        super().__init__()
        self.stream = stream
        self.include_snapshot = include_snapshot
        self._lock = threading.Lock()

    def send(self, event: Event) -> None:
        try:
            line = json.dumps(event.to_dict(include_snapshot=self.include_snapshot)) + "\n"
            stream = self.stream if self.stream is not None else sys.stdout
            with self._lock:
                stream.write(line)
                stream.flush()
        except Exception as e:  # a closed stream, a broken pipe: never stop the video loop
            self.last_error = f"JSON lines sink: cannot write the event ({type(e).__name__}: {e})"


class SoundSink(Sink):
    """A local alert: the terminal bell (``\\a``) on stderr, at most once every ``min_interval_s`` seconds."""

    name = "sound"

    def __init__(self, min_interval_s: float = 2.0, stream: TextIO | None = None) -> None:
        super().__init__()
        self.min_interval_s = float(min_interval_s)
        self.stream = stream
        self.rings = 0
        self._last: float | None = None
        self._lock = threading.Lock()

    def send(self, event: Event) -> None:
        now = _time.monotonic()
        with self._lock:
            if self._last is not None and now - self._last < self.min_interval_s:
                return
            self._last = now
        try:
            stream = self.stream if self.stream is not None else sys.stderr
            stream.write("\a")
            stream.flush()
            self.rings += 1
        except Exception as e:
            self.last_error = f"sound sink: cannot ring the bell ({type(e).__name__}: {e})"


class EventLogSink(Sink):
    """Adds each event to an :class:`EventLog` (which keeps it pending when the database cannot be written).
    ``close`` flushes the log; the log itself belongs to the caller."""

    name = "eventlog"

    def __init__(self, log: EventLog) -> None:
        super().__init__()
        self.log = log

    def send(self, event: Event) -> None:
        try:
            self.log.add(event)
            self.last_error = self.log.last_error
        except Exception as e:
            self.last_error = f"event log sink: {type(e).__name__}: {e}"

    def close(self) -> None:
        try:
            self.log.flush()
        except Exception as e:
            self.last_error = f"event log sink: {type(e).__name__}: {e}"


def is_loopback(host: str | None) -> bool:
    if not host:
        return False
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class WebhookSink(Sink):
    """POSTs each event as JSON (:meth:`Event.to_dict`) to a URL, from a background thread.

    ``send`` only queues the event in the :class:`Outbox` (a few milliseconds) and wakes the worker. A failed post
    (connection refused, no answer within ``timeout_s``, HTTP >= 400) keeps the event in the outbox and tries again
    after ``backoff_s``, then 2x, 4x ... (the wait doubles ``retries`` times, then stays there, at most
    ``max_backoff_s``): an event is never dropped. On start, what the outbox holds for this sink from an earlier run
    is sent at once. ``name`` keys this sink's entries in the outbox; by default it is derived from the URL (a hash,
    so a token in the URL is not stored twice), so events queued for one URL are never posted to another.
    Delivery is at-least-once: a receiver may see an event twice (same ``id``) after a timeout.
    """

    def __init__(
        self,
        url: str,
        outbox: Outbox,
        timeout_s: float = 3.0,
        retries: int = 5,
        backoff_s: float = 1.0,
        headers: dict[str, str] | None = None,
        *,
        name: str | None = None,
        include_snapshot: bool = False,
        max_backoff_s: float = 300.0,
    ) -> None:
        super().__init__()
        parts = urllib.parse.urlsplit(str(url))
        if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
            raise InputError(f"webhook URL {url!r}: give an http:// or https:// URL with a host, "
                             f"e.g. http://127.0.0.1:8080/events")
        if not timeout_s > 0:
            raise InputError(f"webhook timeout_s must be > 0 seconds, got {timeout_s}")
        if int(retries) < 0 or not backoff_s >= 0:
            raise InputError(f"webhook retries must be >= 0 and backoff_s >= 0, got {retries} and {backoff_s}")
        self.url = str(url)
        self.outbox = outbox
        self.timeout_s = float(timeout_s)
        self.retries = int(retries)
        self.backoff_s = float(backoff_s)
        self.max_backoff_s = float(max_backoff_s)
        self.headers = dict(headers or {})
        self.name = name or "webhook:" + hashlib.sha256(self.url.encode()).hexdigest()[:16]
        self.include_snapshot = include_snapshot
        self.delivered = 0
        self.failures = 0
        # Display form without query or credentials (a webhook URL may carry a token).
        self._shown = urllib.parse.urlunsplit((parts.scheme, parts.hostname + (f":{parts.port}" if parts.port else ""),
                                               parts.path, "", ""))
        handlers: list[Any] = [urllib.request.ProxyHandler({})] if is_loopback(parts.hostname) else []
        self._opener = urllib.request.build_opener(*handlers)
        self._stop = threading.Event()
        self._wake = threading.Event()
        self.outbox.reschedule(self.name)  # whatever an earlier run left: due now
        self._thread = threading.Thread(target=self._run, name=f"maskwatch-{name}", daemon=True)
        self._thread.start()

    # -- caller side

    def send(self, event: Event) -> None:
        try:
            self.outbox.put(self.name, event.to_dict(include_snapshot=self.include_snapshot))
        except Exception as e:
            self.last_error = f"webhook {self._shown}: cannot queue the event ({type(e).__name__}: {e})"
            return
        if self._stop.is_set():
            self.last_error = f"webhook {self._shown}: sink closed; the event waits in the outbox for the next run"
        self._wake.set()

    def flush(self, timeout_s: float = 10.0) -> bool:
        """Wait until this sink's outbox is empty (True) or ``timeout_s`` passes (False)."""
        deadline = _time.monotonic() + float(timeout_s)
        while True:
            if self.outbox.count(self.name) == 0:
                return True
            if _time.monotonic() >= deadline or not self._thread.is_alive():
                return False
            self._wake.set()
            _time.sleep(0.01)

    def close(self, timeout_s: float | None = None) -> None:
        """Stop the worker (waiting for a post in flight, at most ``timeout_s``, default timeout_s + 1). What was
        not delivered stays in the outbox for the next run."""
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(self.timeout_s + 1.0 if timeout_s is None else timeout_s)

    # -- worker side

    def _delay(self, attempts: int) -> float:
        """The wait after the ``attempts``-th failed try of an entry."""
        doublings = min(max(attempts, 1), max(self.retries, 1)) - 1
        return min(self.backoff_s * (2.0 ** doublings), self.max_backoff_s)

    def _post(self, payload: dict[str, Any]) -> str | None:
        """Post one payload; None when delivered, else why not."""
        data = json.dumps(payload).encode("utf-8")
        headers = {"Content-Type": "application/json", "User-Agent": "maskwatch-events", **self.headers}
        req = urllib.request.Request(self.url, data=data, headers=headers, method="POST")
        try:
            with self._opener.open(req, timeout=self.timeout_s) as resp:
                status = getattr(resp, "status", 200)
                resp.read(1 << 16)
            if status >= 400:
                return f"webhook {self._shown} answered HTTP {status}"
            return None
        except urllib.error.HTTPError as e:
            with contextlib.suppress(Exception):
                e.close()
            return f"webhook {self._shown} answered HTTP {e.code} {e.reason}"
        except urllib.error.URLError as e:
            reason = e.reason
            if isinstance(reason, (TimeoutError, socket.timeout)):
                return f"webhook {self._shown}: no answer within {self.timeout_s:g} s"
            if isinstance(reason, ConnectionRefusedError):
                return f"webhook {self._shown}: connection refused (is the server running?)"
            return f"webhook {self._shown}: {reason}"
        except TimeoutError:
            return f"webhook {self._shown}: no answer within {self.timeout_s:g} s"
        except Exception as e:  # ConnectionResetError, http.client errors, ...
            return f"webhook {self._shown}: {type(e).__name__}: {e}"

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.clear()
            try:
                rows = self.outbox.due(self.name, _time.time(), limit=50)
            except Exception as e:
                self.last_error = f"webhook {self._shown}: outbox unreadable ({type(e).__name__}: {e})"
                self._stop.wait(1.0)
                continue
            if not rows:
                nxt = self.outbox.next_try(self.name)
                wait = 1.0 if nxt is None else min(1.0, max(0.005, nxt - _time.time()))
                self._wake.wait(wait)
                continue
            for rid, payload, attempts in rows:
                if self._stop.is_set():
                    break
                try:
                    err = self._post(payload)
                except Exception as e:  # never let the worker die
                    err = f"webhook {self._shown}: {type(e).__name__}: {e}"
                if err is None:
                    self.outbox.done(rid)
                    self.delivered += 1
                    continue
                self.last_error = err
                self.failures += 1
                delay = self._delay(attempts + 1)
                self.outbox.retry_later(rid, delay)
                # Back off as a whole (do not hammer a down server with the rest of the batch); a new send does not
                # cut the wait short, close() does.
                self._stop.wait(delay)
                break

    def __repr__(self) -> str:
        return f"WebhookSink({self._shown!r}, name={self.name!r}, delivered={self.delivered})"


# ---------------------------------------------------------------------------------------------------- Dispatcher


class EventDispatcher:
    """Sends each event to every sink; a sink that fails (even by raising) does not stop the others."""

    def __init__(self, sinks: Iterable[Sink] = ()) -> None:
        self.sinks: list[Sink] = list(sinks)
        self.last_error: str | None = None

    def add(self, sink: Sink) -> None:
        self.sinks.append(sink)

    def emit(self, event: Event) -> int:
        """Send to every sink; returns how many took it without raising."""
        ok = 0
        for sink in self.sinks:
            try:
                sink.send(event)
                ok += 1
            except Exception as e:
                self.last_error = f"{getattr(sink, 'name', type(sink).__name__)} sink: {type(e).__name__}: {e}"
        return ok

    def close(self) -> None:
        for sink in self.sinks:
            try:
                sink.close()
            except Exception as e:
                self.last_error = f"{getattr(sink, 'name', type(sink).__name__)} sink: closing: {type(e).__name__}: {e}"

    def __enter__(self) -> EventDispatcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
