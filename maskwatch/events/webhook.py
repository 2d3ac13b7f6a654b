"""The webhook sink: each event POSTed as JSON from a background thread, through the outbox, retried with back-off."""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import json
import logging
import os
import socket
import threading
import time as _time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from typing import Any

from ..errors import InputError
from .event import Event
from .outbox import Outbox
from .sinks import Sink

log = logging.getLogger("maskwatch.webhook")


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
    ``max_backoff_s``): an event is never dropped, unless ``max_age_s`` is given: then an event still undelivered
    that long after it was queued is dropped (counted in ``expired``; ``watch`` passes the event log's
    ``--retention-days``, so a receiver that was down for weeks is not flooded with weeks-old alerts). On start,
    what the outbox holds for this sink from an earlier run is sent at once. ``name`` keys this sink's entries in the outbox; by default it is derived from the URL (a hash,
    so a token in the URL is not stored twice), so events queued for one URL are never posted to another.
    Delivery is at-least-once: a receiver may see an event twice (same ``id``) after a timeout.

    Several sinks with the same ``name`` (two ``watch`` processes, or a program's sink beside one, on one ``--events``
    file and one ``--webhook``) share the waiting events: each entry is claimed in the outbox before it is posted, so
    only one of them posts it. A claim lasts ``lease_s`` (default ``max(60, 10 * timeout_s)``: far longer than a post
    can take); one left by a process killed mid-post runs out then, and another sink posts the event.
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
        max_age_s: float | None = None,
        lease_s: float | None = None,
    ) -> None:
        super().__init__()
        parts = urllib.parse.urlsplit(str(url))
        if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
            raise InputError(f"webhook URL {url!r}: give an http:// or https:// URL with a host, "
                             f"e.g. http://127.0.0.1:8080/events")
        if not timeout_s > 0:
            raise InputError(f"webhook timeout_s must be > 0 seconds, got {timeout_s}")
        if max_age_s is not None and not max_age_s > 0:
            raise InputError(f"webhook max_age_s must be > 0 seconds or None (keep until delivered), got {max_age_s}")
        if lease_s is not None and not lease_s > 0:
            raise InputError(f"webhook lease_s must be > 0 seconds or None (the default), got {lease_s}")
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
        self.max_age_s = None if max_age_s is None else float(max_age_s)
        self.expired = 0
        # Claims in a shared outbox: who (host, process, this sink) and for how long.
        self.lease_s = max(60.0, 10.0 * self.timeout_s) if lease_s is None else float(lease_s)
        self._owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:12]}"
        self._trouble = False  # delivery failing: said once, and once when it recovers (logger maskwatch.webhook)
        self._next_expiry = 0.0
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

    def _expire(self) -> None:
        """Drop entries older than ``max_age_s`` (at most once a minute)."""
        now = _time.time()
        if self.max_age_s is None or now < self._next_expiry:
            return
        self._next_expiry = now + 60.0
        n = self.outbox.expire(self.name, now - self.max_age_s)
        if n:
            self.expired += n
            log.warning("webhook %s: dropped %d undelivered event(s) older than %g days", self._shown, n,
                        self.max_age_s / 86400)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.clear()
            try:
                self._expire()
            except Exception as e:  # never let the worker die
                self.last_error = f"webhook {self._shown}: outbox expiry failed ({type(e).__name__}: {e})"
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
            posted = False
            for rid, payload, attempts in rows:
                if self._stop.is_set():
                    break
                if not self.outbox.claim(rid, self._owner, self.lease_s):
                    continue  # another sink or process posts it (or has), or the file cannot be written now
                posted = True
                try:
                    err = self._post(payload)
                except Exception as e:  # never let the worker die
                    err = f"webhook {self._shown}: {type(e).__name__}: {e}"
                if err is None:
                    self.outbox.done(rid)
                    self.delivered += 1
                    if self._trouble:  # recovered: said once, and no stale warning at exit
                        self._trouble, self.last_error = False, None
                        log.warning("webhook %s: delivering again", self._shown)
                    continue
                self.last_error = err
                if not self._trouble:
                    self._trouble = True
                    log.warning("%s; events wait in the outbox and are retried", err)
                self.failures += 1
                delay = self._delay(attempts + 1)
                self.outbox.retry_later(rid, delay, self._owner)
                # Back off as a whole (do not hammer a down server with the rest of the batch); a new send does not
                # cut the wait short, close() does.
                self._stop.wait(delay)
                break
            if rows and not posted:  # none could be claimed: do not spin on an unwritable file
                self._wake.wait(0.2)

    def close_note(self) -> str | None:
        """What is still wrong at the end (not trouble it recovered from), and how many events expired undelivered."""
        notes = [self.last_error] if self.last_error else []
        if self.expired and self.max_age_s is not None:
            notes.append(f"webhook {self._shown}: dropped {self.expired} undelivered event(s) older than "
                         f"{self.max_age_s / 86400:g} days")
        return f"{type(self).__name__}: " + "; ".join(notes) if notes else None

    def __repr__(self) -> str:
        return f"WebhookSink({self._shown!r}, name={self.name!r}, delivered={self.delivered})"
