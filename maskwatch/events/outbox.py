"""A persistent outbox (a SQLite table) of events still to deliver to a webhook, keyed by URL."""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
import time as _time
from pathlib import Path
from typing import Any

from .db import DEFAULT_DB, _add_columns, _connect, _explain, _transaction

_OUTBOX_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    sink TEXT NOT NULL,
    payload TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_try REAL NOT NULL,
    created REAL NOT NULL,
    claimed_by TEXT,
    claimed_until REAL
);
CREATE INDEX IF NOT EXISTS outbox_due ON outbox(sink, next_try);
"""
# Added after the first release: a file written before them gets them on open (ALTER TABLE ADD COLUMN).
_CLAIM_COLUMNS = {"claimed_by": "TEXT", "claimed_until": "REAL"}
# An entry may be posted unless someone holds a claim on it whose lease has not run out.
_FREE = "(claimed_until IS NULL OR claimed_until <= ?)"
_CANNOT_WRITE = {8, 10, 13}  # SQLITE_READONLY, SQLITE_IOERR, SQLITE_FULL (primary result codes)


class Outbox:
    """A persistent delivery queue (table ``outbox`` in a SQLite file), so undelivered events survive a restart.

    path: its own file or the event log's file (the table is separate). Thread-safe. When the file cannot be
    written (full disk), an entry is kept in memory (negative id, ``last_error`` says why) and moved into the file
    by a later :meth:`due` once it can be written again; at most ``MAX_MEMORY`` such entries wait (the oldest go
    first, counted in ``dropped``), so a long outage does not end in running out of memory.

    Several processes may share one file: a poster claims an entry (:meth:`claim`: a lease, taken in a write
    transaction) before posting it, and :meth:`due` leaves out entries someone else holds, so each is posted by one
    of them only. A claim is released by :meth:`done` or :meth:`retry_later`; one left by a process that died runs
    out after its lease and the entry is due again (never lost).
    """

    MAX_MEMORY = 10_000

    def __init__(self, path: str | Path = DEFAULT_DB) -> None:
        self.last_error: str | None = None
        self._lock = threading.RLock()
        self._mem: dict[int, list[Any]] = {}  # id -> [sink, payload_json, attempts, next_try, created]
        self._mem_next = -1
        self._mem_claims: dict[int, tuple[str, float]] = {}  # id of an in-memory entry -> (owner, claimed until)
        self.dropped = 0
        self._closed = False
        self._conn, self.path = _connect(path, "outbox database", _OUTBOX_SCHEMA)
        try:
            _add_columns(self._conn, "outbox", _CLAIM_COLUMNS, "outbox database", self.path)
        except Exception:
            with contextlib.suppress(sqlite3.Error):
                self._conn.close()
            raise

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
            while len(self._mem) > self.MAX_MEMORY:  # ids count down: the largest is the oldest
                del self._mem[max(self._mem)]
                self.dropped += 1
            if self.dropped:
                self.last_error = f"{self.last_error}; {self.dropped} older undelivered entries dropped (at most {self.MAX_MEMORY} wait in memory)"
            return rid

    def _mem_free(self, id: int, now: float) -> bool:
        """An in-memory entry nobody holds a live claim on."""
        claim = self._mem_claims.get(id)
        return claim is None or claim[1] <= now

    def _migrate(self, sink_name: str) -> None:
        """Move this sink's in-memory entries into the file, if it can be written now (not those being posted)."""
        now = _time.time()
        ids = [i for i, r in self._mem.items() if r[0] == sink_name and self._mem_free(i, now)]
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
            self._mem_claims.pop(i, None)

    def due(self, sink_name: str, now: float | None = None, limit: int = 100) -> list[tuple[int, dict[str, Any], int]]:
        """Entries of a sink whose next try has come and that nobody holds a live claim on, oldest first:
        (id, payload, attempts). Only candidates: :meth:`claim` one before posting it."""
        now = _time.time() if now is None else float(now)
        with self._lock:
            self._migrate(sink_name)
            out: list[tuple[int, dict[str, Any], int]] = []
            if not self._closed:
                try:
                    rows = self._conn.execute(
                        f"SELECT id, payload, attempts FROM outbox WHERE sink = ? AND next_try <= ? AND {_FREE} "
                        "ORDER BY id LIMIT ?",
                        (sink_name, now, now, int(limit)),
                    ).fetchall()
                    out = [(int(i), json.loads(p), int(a)) for i, p, a in rows if self._mem_free(int(i), now)]
                except sqlite3.Error as e:
                    self._fail(e)
            mem = sorted(((i, r) for i, r in self._mem.items()
                          if r[0] == sink_name and r[3] <= now and self._mem_free(i, now)), key=lambda x: -x[0])
            # Those in memory first: the file could not take them (a full disk), so they are the newest alerts, and
            # a file of waiting entries must not keep them out of every batch.
            return ([(i, json.loads(r[1]), int(r[2])) for i, r in mem] + out)[: int(limit)]

    def claim(self, id: int, owner: str, lease_s: float, now: float | None = None) -> bool:
        """Take an entry to post it: True when this ``owner`` now holds it for ``lease_s`` seconds; False when it is
        gone (delivered), not due, held by someone else whose lease has not run out, or the file cannot be written
        (``last_error`` says why). One write transaction, so of several processes only one gets it."""
        now = _time.time() if now is None else float(now)
        until = now + max(0.0, float(lease_s))
        with self._lock:
            if id < 0:
                r = self._mem.get(id)
                if r is None or r[3] > now or not self._mem_free(id, now):
                    return False
                self._mem_claims[id] = (owner, until)
                return True
            if self._closed:
                return False
            if not self._mem_free(id, now):  # held in memory (below) by a sink of this process
                return False
            try:
                with _transaction(self._conn) as c:
                    n = c.execute(
                        f"UPDATE outbox SET claimed_by = ?, claimed_until = ? WHERE id = ? AND next_try <= ? AND {_FREE}",
                        (owner, until, int(id), now, now),
                    ).rowcount
                return n == 1
            except sqlite3.Error as e:
                self._fail(e)
                if (getattr(e, "sqlite_errorcode", 0) or 0) & 0xFF not in _CANNOT_WRITE:
                    return False  # busy (another process writes): its turn
                # The file cannot be written (a full disk): no other process can claim in it either, so a claim in
                # memory keeps this process's sinks apart, and alerts still go out (they went nowhere).
                try:
                    row = self._conn.execute(f"SELECT 1 FROM outbox WHERE id = ? AND next_try <= ? AND {_FREE}",
                                             (int(id), now, now)).fetchone()
                except sqlite3.Error:
                    return False
                if row is None:
                    return False
                self._mem_claims[id] = (owner, until)
                return True

    def done(self, id: int) -> None:
        """Delivered: remove the entry (and its claim)."""
        with self._lock:
            if id < 0:
                self._mem.pop(id, None)
                self._mem_claims.pop(id, None)
                return
            if self._closed:
                return
            try:
                with _transaction(self._conn) as c:
                    c.execute("DELETE FROM outbox WHERE id = ?", (int(id),))
            except sqlite3.Error as e:
                self._fail(e)  # (a claim in memory stays till its lease ends: not posted again at once)
            else:
                self._mem_claims.pop(id, None)

    def retry_later(self, id: int, delay_s: float, owner: str | None = None) -> None:
        """Not delivered: count the attempt, release ``owner``'s claim and make the entry due again in ``delay_s``
        seconds. Nothing happens to an entry someone else holds a live claim on (its lease ran out and they took it)."""
        now = _time.time()
        when = now + max(0.0, float(delay_s))
        with self._lock:
            if id < 0:
                claim = self._mem_claims.get(id)
                if id in self._mem and (claim is None or claim[0] == owner or claim[1] <= now):
                    self._mem[id][2] += 1
                    self._mem[id][3] = when
                    self._mem_claims.pop(id, None)
                return
            if self._closed:
                return
            try:
                with _transaction(self._conn) as c:
                    c.execute(
                        "UPDATE outbox SET attempts = attempts + 1, next_try = ?, claimed_by = NULL, claimed_until = NULL "
                        f"WHERE id = ? AND (claimed_by IS ? OR {_FREE})",
                        (when, int(id), owner, now),
                    )
            except sqlite3.Error as e:
                self._fail(e)
                if id in self._mem_claims:  # held in memory (a full disk): held till its next try instead
                    self._mem_claims[id] = (self._mem_claims[id][0], when)
            else:
                self._mem_claims.pop(id, None)

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

    def expire(self, sink_name: str, before: float) -> int:
        """Remove a sink's entries queued before ``before`` (unix seconds); returns how many."""
        with self._lock:
            old = [i for i, r in self._mem.items() if r[0] == sink_name and r[4] < before]
            for i in old:
                del self._mem[i]
                self._mem_claims.pop(i, None)
            n = len(old)
            if self._closed:
                return n
            try:
                with _transaction(self._conn) as c:
                    n += c.execute("DELETE FROM outbox WHERE sink = ? AND created < ?", (sink_name, float(before))).rowcount
            except sqlite3.Error as e:
                self._fail(e)
            return n

    def next_try(self, sink_name: str) -> float | None:
        """When the next entry of a sink is due (unix seconds; an entry someone holds: not before its lease runs
        out), or None when it has none."""
        with self._lock:
            times = [max(r[3], self._mem_claims.get(i, ("", 0.0))[1]) for i, r in self._mem.items() if r[0] == sink_name]
            if not self._closed:
                try:
                    t = self._conn.execute("SELECT MIN(MAX(next_try, COALESCE(claimed_until, 0))) FROM outbox "
                                           "WHERE sink = ?", (sink_name,)).fetchone()[0]
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
            try:
                self.left_at_close = self.count()
            except Exception:  # the count is for the closing note only
                self.left_at_close = 0
            for sink in {r[0] for r in self._mem.values()}:
                self._migrate(sink)
            self._closed = True
            with contextlib.suppress(sqlite3.Error):
                self._conn.close()

    def close_note(self) -> str | None:
        """After :meth:`close`: what a user should hear (events not yet delivered), or None."""
        left = getattr(self, "left_at_close", 0)
        if not left:
            return None
        return (f"{left} event(s) not yet delivered to the webhook are kept in {self.path}; they are sent when maskwatch "
                "next runs with the same --webhook and --events")

    def __enter__(self) -> Outbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Outbox({self.path!r})"
