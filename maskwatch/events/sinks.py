"""Where events go: the sink interface, JSON lines, the terminal bell, the event log, and the dispatcher."""

from __future__ import annotations

import json
import sys
import threading
import time as _time
from collections.abc import Iterable
from typing import TextIO

from .event import Event
from .eventlog import EventLog

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

    def close_note(self) -> str | None:
        """After :meth:`close`: the last delivery problem, or None."""
        return f"{type(self).__name__}: {self.last_error}" if self.last_error else None

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
