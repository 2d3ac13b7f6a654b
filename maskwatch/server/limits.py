"""What keeps ``maskwatch serve`` reachable when clients misbehave: file descriptors, connections, request heads,
TLS files, and logs that cannot flood.

uvicorn alone waits for ever on a connection that sent half a request head and sets no cap on connections: about a
thousand such connections took every file descriptor (soft limit 1024), ``accept`` then failed in a tight loop that
wrote hundreds of MB of tracebacks, the dashboard stopped answering and a file camera could not open its file.
Here, as far as it can be done in-process:

* ``raise_open_files_limit`` lifts the soft RLIMIT_NOFILE to the hard limit;
* ``protocol_class`` is uvicorn's h11 protocol with a deadline for each request head (``HEAD_TIMEOUT`` seconds from
  the connection, or from the end of the previous answer on a kept-alive one) and a cap on connections (from the file
  descriptors left): over the cap, the connection that has waited longest for its head (at least a second) is closed
  to make room, else the new one is answered 503 and closed; one client address may keep at most half the cap
  waiting for heads (the same rule among its own), so that one host on the LAN cannot take every place;
* ``accept_error_handler`` and ``OncePerMinute`` say a repeated error once a minute, with a count.

A reverse proxy with header timeouts in front of a server reachable beyond loopback is still the better defence:
a process cannot refuse connections it has not accepted, and TLS handshakes hold a descriptor before they count.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import ssl
import time
from pathlib import Path
from typing import Any, ClassVar

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from ..errors import InputError

log = logging.getLogger("maskwatch.server")

HEAD_TIMEOUT = 10.0  # seconds a connection has to send a complete request head (and a TLS client its handshake)
MAX_CONNECTIONS = 1000  # connections open at once, at most; fewer when the file descriptors left are fewer
FD_RESERVE = 64  # file descriptors kept for everything else: camera files and streams, the event log, uploads, models
EVICT_AFTER = 1.0  # seconds a connection must have waited for its head before a new one may take its place
_OUT_OF_FDS = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)


def raise_open_files_limit() -> str | None:
    """Raise the soft RLIMIT_NOFILE to the hard limit (systemd's soft default is 1024). None when done or nothing
    to do; otherwise why not, for a log line."""
    try:
        import resource
    except ImportError:  # Windows
        return None
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard
    if target == resource.RLIM_INFINITY:  # Linux refuses more than fs.nr_open, macOS more than OPEN_MAX
        try:
            target = int(Path("/proc/sys/fs/nr_open").read_text())
        except (OSError, ValueError):
            target = 10240
    if soft != resource.RLIM_INFINITY and soft >= target:
        return None
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (OSError, ValueError) as e:
        return (f"could not raise the open files limit from {soft} to {target} ({e}); it bounds the connections served "
                "at once (raise it with LimitNOFILE= or ulimit -n)")
    return None


def open_fds() -> int:
    """File descriptors this process has open now (0 where that cannot be counted)."""
    for folder in ("/proc/self/fd", "/dev/fd"):
        try:
            return len(os.listdir(folder))
        except OSError:
            continue
    return 0


def connection_limits(max_connections: int = MAX_CONNECTIONS, cameras: int = 0) -> tuple[int, int]:
    """(cap, backlog): how many connections to hold at once, and the listen queue. The cap is ``max_connections``,
    fewer when the file descriptors left under the soft RLIMIT_NOFILE (less those open now, ``FD_RESERVE`` and 8 a
    camera) are fewer: of those, half (up to 256) stay free for a burst, since asyncio accepts up to a listen queue's
    worth at once before the protocol can count (and close) one; the queue is half of that room (16 to 2048)."""
    left = 1 << 30
    try:
        import resource

        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        if soft != resource.RLIM_INFINITY:
            left = soft - open_fds() - FD_RESERVE - 8 * cameras
    except ImportError:
        pass
    cap = max(8, min(max_connections, left - min(left // 2, 256)))
    return cap, max(16, min(2048, (left - cap) // 2))


def check_tls(cert: str | None, key: str | None) -> None:
    """InputError, saying what is wrong, unless ``cert`` (and ``key``, when the key is not in the cert file) exist and
    load as a PEM certificate chain and its unencrypted private key."""
    if cert is None:
        if key is not None:
            raise InputError("--tls-key needs --tls-cert (the certificate that goes with the key)")
        return
    texts = {}
    for what, path in (("certificate", cert), ("private key", key)):
        if path is None:
            continue
        try:
            texts[path] = Path(path).read_bytes()[: 1 << 20]
        except OSError as e:
            raise InputError(f"TLS {what} {path}: {'no such file' if not Path(path).exists() else e.strerror or e}") from None
    key_file = key or cert
    why = None
    if b"-----BEGIN CERTIFICATE-----" not in texts[cert]:
        why = f"{cert} holds no PEM certificate (-----BEGIN CERTIFICATE-----)"
    elif b"PRIVATE KEY-----" not in texts[key_file]:
        why = f"{key_file} holds no PEM private key" + ("; give the key with --tls-key" if key is None else "")
    elif b"ENCRYPTED" in texts[key_file]:
        why = f"the private key in {key_file} is encrypted; give an unencrypted one (openssl pkey -in KEY -out key.pem)"
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    if why is None:
        try:  # a password callback, so that an encrypted key is an error here rather than a prompt in the server
            ctx.load_cert_chain(cert, key, password=lambda: b"")
        except (ssl.SSLError, OSError, ValueError) as e:
            why = ("the private key does not belong to the certificate" if getattr(e, "reason", None) == "KEY_VALUES_MISMATCH"
                   else f"{getattr(e, 'reason', None) or e}")
    if why is not None:
        raise InputError(f"cannot use the TLS certificate {cert}" + (f" and key {key}" if key else "") + f": {why}")


class _Throttle:
    """Says whether to log a key now: the first time, then at most once per ``every`` seconds, with how many times
    it came meanwhile."""

    def __init__(self, every: float = 60.0) -> None:
        self.every = every
        self._last: dict[Any, float] = {}
        self._quiet: dict[Any, int] = {}

    def __call__(self, key: Any) -> int | None:
        """None: stay quiet (counted). Else log, noting the returned count of times left unsaid since last time."""
        now = time.monotonic()
        last = self._last.get(key)
        if last is not None and now - last < self.every:
            self._quiet[key] = self._quiet.get(key, 0) + 1
            return None
        self._last[key] = now
        return self._quiet.pop(key, 0)


def _more(count: int) -> str:
    return f" ({count} more time{'s' if count != 1 else ''} since it was last said; said at most once a minute)" if count else ""


class OncePerMinute(logging.Filter):
    """Lets each message (by its format string) through once a minute, with a count of those it held back: a client
    that sends 10,000 bad requests (uvicorn's "Invalid HTTP request received.") or connections over the cap writes a
    line a minute, not 10,000."""

    def __init__(self, every: float = 60.0) -> None:
        super().__init__()
        self._throttle = _Throttle(every)

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.ERROR and record.exc_info:  # an application error: each one matters
            return True
        count = self._throttle((record.name, str(record.msg)))
        if count is None:
            return False
        if count:
            record.msg, record.args = record.getMessage() + _more(count), None
        return True


def accept_error_handler(loop: asyncio.AbstractEventLoop) -> None:
    """Install on ``loop`` an exception handler that says "cannot accept connections (too many open files)" once a
    minute with a count, instead of asyncio's traceback for every failed accept (thousands a second), and passes
    every other error to the handler that was there."""
    previous = loop.get_exception_handler()
    throttle = _Throttle()

    def handler(lp: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        if isinstance(exc, OSError) and exc.errno in _OUT_OF_FDS and "accept" in str(context.get("message", "")):
            count = throttle(exc.errno)
            if count is not None:
                log.warning("cannot accept connections: %s%s", exc.strerror or exc, _more(count))
            return
        if previous is not None:
            previous(lp, context)
        else:
            lp.default_exception_handler(context)

    loop.set_exception_handler(handler)


_BUSY_BODY = b'{"error": "too many connections; try again", "detail": null}\n'
_BUSY = (b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\nconnection: close\r\n"
         b"content-length: %d\r\n\r\n%s" % (len(_BUSY_BODY), _BUSY_BODY))


class CappedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a deadline on each request head and at most ``cap`` connections, of which one
    client address may keep at most half waiting for their heads (see the module). Subclass it per server
    (``protocol_class``): the class holds the connections waiting for a head."""

    cap: ClassVar[int] = MAX_CONNECTIONS
    head_timeout: ClassVar[float] = HEAD_TIMEOUT
    waiting: ClassVar[dict[CappedH11Protocol, float]] = {}  # waiting for a request head -> since when; oldest first
    by_peer: ClassVar[dict[str, dict[CappedH11Protocol, None]]] = {}  # the same, by client address
    closed: ClassVar[set[CappedH11Protocol]] = set()  # closed here, still in uvicorn's connections until lost
    refused: ClassVar[_Throttle] = _Throttle()
    _head_timer: asyncio.TimerHandle | None = None
    _peer = ""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._peer = str(self.client[0]) if self.client else ""
        self._track()
        mine = self.by_peer.get(self._peer, {})
        if len(mine) > max(4, self.cap // 2):  # one client cannot hold every place: others still get in
            self._make_room(mine, "peer", f"{self._peer} has {len(mine) - 1} connections waiting for a request head")
        elif len(self.connections) - len(self.closed) > self.cap:
            self._make_room(self.waiting, "cap", f"{self.cap} are open, the most it serves at once")

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._track()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._track()  # kept alive: the next head has head_timeout too (uvicorn's keep-alive timer ends silence)

    def connection_lost(self, exc: Exception | None) -> None:
        self._forget()
        self.closed.discard(self)
        super().connection_lost(exc)

    def _track(self) -> None:
        if self.transport.is_closing():
            self._forget()
        elif self.conn.their_state is h11.IDLE:  # no request head yet, or a kept-alive connection before its next
            if self not in self.waiting:
                self.waiting[self] = self.loop.time()
                self.by_peer.setdefault(self._peer, {})[self] = None
                self._head_timer = self.loop.call_later(self.head_timeout, self._head_timed_out)
        elif self in self.waiting:
            self._forget()  # the head is in

    def _forget(self) -> None:
        if self.waiting.pop(self, None) is not None:
            mine = self.by_peer.get(self._peer, {})
            mine.pop(self, None)
            if not mine:
                self.by_peer.pop(self._peer, None)
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _close(self) -> None:
        self._forget()
        self.closed.add(self)
        self.transport.close()

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self in self.waiting:
            self._close()

    def _make_room(self, among: dict[CappedH11Protocol, Any], key: str, why: str) -> None:
        """Over a cap: close the connection ``among`` those waiting that has waited longest for its head, when that
        is a second or more (an idle client's, not a new one's that is still sending); else answer this one 503 and
        close it."""
        oldest = next((p for p in among if p is not self), None)
        if oldest is not None and self.loop.time() - self.waiting[oldest] >= EVICT_AFTER:
            oldest._close()
            return
        self.transport.write(_BUSY)
        self._close()
        count = self.refused(key)
        if count is not None:
            log.warning("refused a connection: %s%s", why, _more(count))


def protocol_class(cap: int, head_timeout: float = HEAD_TIMEOUT) -> type[CappedH11Protocol]:
    """A ``CappedH11Protocol`` for one server (``uvicorn.Config(http=...)``): at most ``cap`` connections, each
    request head within ``head_timeout`` seconds."""
    return type("CappedH11Protocol", (CappedH11Protocol,), {"cap": cap, "head_timeout": head_timeout, "waiting": {},
                                                            "by_peer": {}, "closed": set(), "refused": _Throttle()})
