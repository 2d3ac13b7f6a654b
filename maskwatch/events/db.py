"""Where the event databases live and the SQLite helpers the event log and the outbox share."""

from __future__ import annotations

import contextlib
import datetime as _dt
import os
import sqlite3
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..errors import InputError


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


def _add_columns(conn: sqlite3.Connection, table: str, columns: dict[str, str], what: str, shown: str) -> None:
    """Migrate a database written before ``columns`` existed: add each missing one (name -> SQL type) in place.

    There are no schema versions (``user_version`` is only the write probe of :func:`_connect`, and one file may hold
    both the event log and the outbox): the table's own column list says what is missing. Checked and added inside
    one write transaction, so two processes opening an old file at once add each column once. Raises InputError.
    """
    try:
        with _transaction(conn) as c:
            have = {row[1] for row in c.execute(f"PRAGMA table_info({table})")}
            for name, decl in columns.items():
                if name not in have:
                    c.execute(f"ALTER TABLE {table} ADD COLUMN {name} {decl}")
    except sqlite3.Error as e:
        raise InputError(_explain(what, shown, e)) from None


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
