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

from .db import DEFAULT_DB, data_dir
from .event import Event, make_snapshot
from .eventlog import EventLog
from .outbox import Outbox
from .sinks import EventDispatcher, EventLogSink, JsonLinesSink, Sink, SoundSink
from .webhook import WebhookSink, is_loopback

__all__ = [
    "DEFAULT_DB", "Event", "EventDispatcher", "EventLog", "EventLogSink", "JsonLinesSink", "Outbox", "Sink", "SoundSink",
    "WebhookSink", "data_dir", "is_loopback", "make_snapshot",
]
