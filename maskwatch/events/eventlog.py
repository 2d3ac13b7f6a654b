"""The SQLite event log: every event, kept for ``retention_days``; events it cannot write wait in memory."""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import sqlite3
import threading
import time as _time
from pathlib import Path
from typing import Any

from ..errors import InputError
from .db import DEFAULT_DB, _connect, _explain, _timestamp, _transaction
from .event import Event

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
    reason is in :attr:`last_error`, and the next :meth:`add` or :meth:`flush` writes it. At most ``MAX_PENDING``
    events wait; beyond that the oldest are dropped and counted in :attr:`dropped` (and in the message).
    """

    PURGE_EVERY_S = 3600.0
    MAX_PENDING = 10_000  # events kept in memory while the database cannot be written; the oldest go first

    def __init__(self, path: str | Path = DEFAULT_DB, retention_days: float | None = 30) -> None:
        if retention_days is not None and not (float(retention_days) > 0):
            raise InputError(f"event log retention_days must be > 0 days or None (keep all), got {retention_days}")
        self.retention_days = None if retention_days is None else float(retention_days)
        self.last_error: str | None = None
        self._lock = threading.RLock()
        self._pending: list[Event] = []
        self.dropped = 0  # events lost because more than MAX_PENDING waited for the database
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
            extra = len(self._pending) - self.MAX_PENDING
            if extra > 0:  # a long outage must not end in running out of memory
                del self._pending[:extra]
                self.dropped += extra
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

    def _lost(self) -> str:
        return f", {self.dropped} older one(s) dropped (at most {self.MAX_PENDING} are kept)" if self.dropped else ""

    def _write_pending(self) -> bool:
        if not self._pending:
            return True
        if self._closed:
            self.last_error = f"event database {self.path} is closed; {len(self._pending)} event(s) kept in memory{self._lost()}"
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
            self.last_error = _explain("event database", self.path, e) + f"; {len(self._pending)} event(s) kept in memory{self._lost()}"
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

    def close_note(self) -> str | None:
        """After :meth:`close`: what a user should hear (events that could not be written), or None."""
        left = len(self._pending)
        return f"{left} event(s) could not be written to {self.path}: {self.last_error}" if left else None

    def __enter__(self) -> EventLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"EventLog({self.path!r}, retention_days={self.retention_days}, pending={len(self._pending)})"


# -------------------------------------------------------------------------------------------------------- Outbox
