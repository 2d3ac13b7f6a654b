"""Events: the Event record, the SQLite event log (filters, paging, retention, reopening, read-only and full disk),
the outbox and the sinks (JSON lines, webhook against a real loopback HTTP server: down, slow, restart; sound)."""

from __future__ import annotations

import base64
import io
import json
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from conftest import free_port, wait_for

from maskwatch import Detections
from maskwatch.errors import InputError
from maskwatch.events import (
    Event,
    EventDispatcher,
    EventLog,
    EventLogSink,
    JsonLinesSink,
    Outbox,
    SoundSink,
    WebhookSink,
)


def _event(t: float | None = None, camera: str = "door", label: str = "without_mask", track_id: int = 7,
           snapshot: bytes | None = None) -> Event:
    return Event(time=time.time() if t is None else t, camera=camera, track_id=track_id, label=label,
                 confidence=0.9731, box=[10.4, 20.6, 50, 80], snapshot=snapshot)


class _Hook:
    """A webhook receiver on 127.0.0.1 (http.server in a thread). delay: seconds before answering; status: the
    HTTP status it answers. ``answered`` holds the JSON bodies of requests answered without delay."""

    def __init__(self, port: int = 0, delay: float = 0.0, status: int = 200) -> None:
        self.delay, self.status = delay, status
        self.received: list[dict] = []
        self.answered: list[dict] = []
        self.headers: list[dict] = []
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                hook.received.append(body)
                hook.headers.append(dict(self.headers))
                delay, status = hook.delay, hook.status
                if not delay and status < 400:  # recorded before the answer: the client may look right after it
                    hook.answered.append(body)
                if delay:
                    time.sleep(delay)
                try:
                    self.send_response(status)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                except OSError:
                    return

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/events"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hook():
    h = _Hook()
    yield h
    h.close()


# ---------------------------------------------------------------------------------------------------------- Event


def test_event_to_dict_is_json_safe_and_round_trips():
    e = _event(t=1714564800.25, snapshot=b"\xff\xd8jpeg")
    assert e.box == [10, 21, 50, 80] and all(type(v) is int for v in e.box)
    assert len(e.id) == 32 and e.id != _event().id
    d = e.to_dict()
    assert d["iso_time"] == "2024-05-01T12:00:00.250Z"
    assert "snapshot" not in d
    assert json.loads(json.dumps(d)) == d
    ds = e.to_dict(include_snapshot=True)
    assert base64.b64decode(ds["snapshot"]) == b"\xff\xd8jpeg"
    assert Event.from_dict(ds) == e


def test_event_from_detections_with_snapshot_only_when_asked():
    dets = Detections([[20, 30, 60, 90]], [0.9], class_id=[1], confidence=[0.8], probs=[[0.1, 0.8, 0.1]], tracker_id=[3])
    frame = np.full((120, 160, 3), 100, np.uint8)
    e = Event.from_detections(dets, 0, camera="cam1", time=5.0, frame=frame)
    assert (e.track_id, e.label, e.box, e.snapshot) == (3, "without_mask", [20, 30, 60, 90], None)
    e = Event.from_detections(dets, 0, camera="cam1", time=5.0, frame=frame, snapshot=True)
    assert e.snapshot is not None and e.snapshot[:2] == b"\xff\xd8"


# ------------------------------------------------------------------------------------------------------- EventLog


def test_event_log_query_filters_paging_newest_first(tmp_path: Path):
    base = time.time() - 1000
    with EventLog(tmp_path / "events.db") as log:
        events = [_event(t=base + i, camera=("door", "hall")[i % 2], label=("without_mask", "mask_incorrect")[i % 3 == 0],
                         track_id=i) for i in range(10)]
        for e in events:
            assert log.add(e) is True
        assert log.count() == 10 and log.pending == []
        got = log.query()
        assert [e.track_id for e in got] == list(range(9, -1, -1))  # newest first
        assert got[0] == events[9]
        assert [e.track_id for e in log.query(since=base + 3, until=base + 6)] == [5, 4, 3]  # since <= t < until
        assert [e.track_id for e in log.query(camera="hall")] == [9, 7, 5, 3, 1]
        assert [e.track_id for e in log.query(label="mask_incorrect")] == [9, 6, 3, 0]
        assert [e.track_id for e in log.query(camera="door", label="without_mask")] == [8, 4, 2]
        assert [e.track_id for e in log.query(limit=3)] == [9, 8, 7]
        assert [e.track_id for e in log.query(limit=3, offset=3)] == [6, 5, 4]
        assert [e.track_id for e in log.query(limit=3, offset=9)] == [0]
        assert log.count(camera="hall") == 5 and log.count(since=base + 8) == 2 and log.count(label="nobody") == 0


def test_event_log_retention_purge(tmp_path: Path):
    now = time.time()
    path = tmp_path / "events.db"
    log = EventLog(path, retention_days=1)
    old, new = _event(t=now - 2 * 86400), _event(t=now - 3600)
    log.add(old)
    log.add(new)
    assert log.count() == 2
    assert log.purge(now=now) == 1
    assert [e.id for e in log.query()] == [new.id]
    log.add(_event(t=now - 5 * 86400))
    log.close()
    with EventLog(path, retention_days=1) as log:  # opening purges too
        assert [e.id for e in log.query()] == [new.id]
    with EventLog(path, retention_days=None) as log:  # keep everything
        log.add(_event(t=1.0))
        assert log.purge() == 0 and log.count() == 2


def test_event_log_survives_reopening(tmp_path: Path):
    path = tmp_path / "sub" / "events.db"  # the folder is created
    e = _event(snapshot=b"\xff\xd8face")
    with EventLog(path) as log:
        log.add(e)
    with EventLog(str(path)) as log:
        assert log.query() == [e]
        assert log._conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_event_log_thread_safe(tmp_path: Path):
    with EventLog(tmp_path / "events.db") as log:
        def work(k: int) -> None:
            for i in range(50):
                log.add(_event(track_id=k * 100 + i))

        threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert log.count() == 200 and log.pending == []


def test_event_log_read_only_path_is_a_clear_input_error(tmp_path: Path):
    path = tmp_path / "events.db"
    EventLog(path).close()
    uri = f"file:{path}?mode=ro"  # a read-only database (works as root too, unlike chmod)
    with pytest.raises(InputError) as err:
        EventLog(uri)
    msg = str(err.value)
    assert str(path) in msg and "read-only" in msg and "writable" in msg

    not_a_folder = tmp_path / "a_file"
    not_a_folder.write_text("x")
    with pytest.raises(InputError) as err:
        EventLog(not_a_folder / "events.db")
    assert str(not_a_folder / "events.db") in str(err.value) and "writable folder" in str(err.value)

    with pytest.raises(InputError, match="is a folder"):
        EventLog(tmp_path)
    with pytest.raises(InputError) as err:
        Outbox(uri)
    assert str(path) in str(err.value) and "read-only" in str(err.value)


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root ignores chmod, so the folder stays writable")
def test_event_log_read_only_folder(tmp_path: Path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        with pytest.raises(InputError) as err:
            EventLog(folder / "events.db")
        assert str(folder / "events.db") in str(err.value)
    finally:
        folder.chmod(0o755)


def test_event_log_full_disk_keeps_events_pending_then_flushes(tmp_path: Path):
    log = EventLog(tmp_path / "events.db")
    first = _event()
    assert log.add(first)
    pages = log._conn.execute("PRAGMA page_count").fetchone()[0]
    log._conn.execute(f"PRAGMA max_page_count = {pages}")  # the "disk" is full now
    big = [_event(snapshot=bytes(20000) + bytes([i])) for i in range(2)]
    assert log.add(big[0]) is False  # no exception: the video loop goes on
    assert log.add(big[1]) is False
    assert [e.id for e in log.pending] == [e.id for e in big]
    assert "disk is full" in log.last_error and str(tmp_path / "events.db") in log.last_error
    assert log.count() == 1
    assert log.flush() == 2  # still full

    log._conn.execute("PRAGMA max_page_count = 1000000")  # space again
    assert log.flush() == 0
    assert log.pending == [] and log.last_error is None
    assert log.count() == 3
    assert {e.id: e.snapshot for e in log.query()}[big[1].id] == big[1].snapshot
    log.close()


def test_a_long_database_outage_keeps_the_latest_events_in_bounded_memory_and_says_so(tmp_path: Path, monkeypatch):
    """Days of a full disk at a busy door must not end in running out of memory: the newest MAX_PENDING events wait,
    the older ones are dropped and counted, and the message says so; once writable, the kept ones are written."""
    monkeypatch.setattr(EventLog, "MAX_PENDING", 5)
    log = EventLog(tmp_path / "events.db")
    assert log.add(_event())
    log._conn.execute(f"PRAGMA max_page_count = {log._conn.execute('PRAGMA page_count').fetchone()[0]}")  # disk full
    waiting = [_event(snapshot=bytes(20000) + bytes([i])) for i in range(8)]
    for e in waiting:
        assert log.add(e) is False
    assert [e.id for e in log.pending] == [e.id for e in waiting[-5:]] and log.dropped == 3
    assert "5 event(s) kept in memory, 3 older one(s) dropped (at most 5 are kept)" in log.last_error
    log._conn.execute("PRAGMA max_page_count = 1000000")
    assert log.flush() == 0 and log.count() == 6
    log.close()


def test_outbox_put_due_done_retry(tmp_path: Path):
    with Outbox(tmp_path / "events.db") as ob:
        a = ob.put("webhook", {"n": 1})
        b = ob.put("webhook", {"n": 2})
        ob.put("other", {"n": 3})
        assert [(p["n"], att) for _, p, att in ob.due("webhook", time.time())] == [(1, 0), (2, 0)]
        ob.retry_later(a, 60)
        assert [i for i, _, _ in ob.due("webhook", time.time())] == [b]
        assert [(i, att) for i, _, att in ob.due("webhook", time.time() + 120)] == [(a, 1), (b, 0)]
        ob.done(b)
        assert ob.count("webhook") == 1 and ob.count() == 2
    # Same file as an event log: separate tables.
    with EventLog(tmp_path / "events.db") as log, Outbox(tmp_path / "events.db") as ob:
        log.add(_event())
        assert log.count() == 1 and ob.count() == 2


# ---------------------------------------------------------------------------------------------------------- sinks


def test_json_lines_sink_one_line_per_event_no_snapshot_unless_asked(capsys):
    events = [_event(snapshot=b"\xff\xd8a"), _event(camera="hall")]
    buf = io.StringIO()
    sink = JsonLinesSink(buf)
    for e in events:
        sink.send(e)
    lines = buf.getvalue().splitlines()
    assert len(lines) == 2 and buf.getvalue().endswith("\n")
    assert [json.loads(s) for s in lines] == [e.to_dict() for e in events]
    assert all("snapshot" not in json.loads(s) for s in lines)

    JsonLinesSink(include_snapshot=True).send(events[0])  # stdout by default
    (line,) = capsys.readouterr().out.splitlines()
    assert base64.b64decode(json.loads(line)["snapshot"]) == b"\xff\xd8a"

    closed = io.StringIO()
    closed.close()
    bad = JsonLinesSink(closed)
    bad.send(events[0])  # never raises
    assert "cannot write" in bad.last_error


def test_sound_sink_rings_at_most_every_two_seconds():
    buf = io.StringIO()
    sink = SoundSink(stream=buf)
    for _ in range(5):
        sink.send(_event())
    assert buf.getvalue() == "\a" and sink.rings == 1
    sink._last -= 2.0  # two seconds later
    sink.send(_event())
    assert buf.getvalue() == "\a\a"


def test_dispatcher_isolates_a_failing_sink(tmp_path: Path):
    class Broken:
        name = "broken"

        def send(self, event: Event) -> None:
            raise RuntimeError("boom")

        def close(self) -> None:
            raise RuntimeError("boom at close")

    buf = io.StringIO()
    log = EventLog(tmp_path / "events.db")
    d = EventDispatcher([Broken(), JsonLinesSink(buf), EventLogSink(log)])
    e = _event()
    assert d.emit(e) == 2
    assert "boom" in d.last_error
    assert json.loads(buf.getvalue()) == e.to_dict()
    assert log.query() == [e]
    d.close()
    log.close()


def test_webhook_delivers_event_json(tmp_path: Path, hook: _Hook):
    sink = WebhookSink(hook.url, Outbox(tmp_path / "events.db"), timeout_s=2.0, headers={"Authorization": "Bearer t"})
    events = [_event(), _event(camera="hall", snapshot=b"\xff\xd8")]
    for e in events:
        sink.send(e)
    assert sink.flush(5.0)
    assert hook.answered == [e.to_dict() for e in events]  # in order, no snapshot by default
    assert sink.delivered == 2 and sink.outbox.count() == 0
    assert hook.headers[0]["Content-Type"] == "application/json" and hook.headers[0]["Authorization"] == "Bearer t"
    sink.close()


def test_webhook_down_queues_without_blocking_then_retries(tmp_path: Path):
    port = free_port()
    outbox = Outbox(tmp_path / "events.db")
    sink = WebhookSink(f"http://127.0.0.1:{port}/events", outbox, timeout_s=1.0, retries=3, backoff_s=0.05)
    e = _event()
    t0 = time.perf_counter()
    sink.send(e)
    assert time.perf_counter() - t0 < 0.5  # the video loop is not held up (generous for a loaded CI machine; a post waits up to 1 s)
    assert wait_for(lambda: sink.failures >= 1)
    assert "refused" in sink.last_error and str(port) in sink.last_error
    assert outbox.count(sink.name) == 1 and sink.delivered == 0  # nothing lost

    server = _Hook(port=port)  # the server comes back on the same port
    try:
        assert sink.flush(5.0)
        assert server.answered == [e.to_dict()] and sink.delivered == 1
    finally:
        sink.close()
        server.close()
        outbox.close()


def test_webhook_slow_server_times_out_and_is_retried(tmp_path: Path, hook: _Hook):
    hook.delay = 1.0  # longer than timeout_s
    outbox = Outbox(tmp_path / "events.db")
    sink = WebhookSink(hook.url, outbox, timeout_s=0.2, retries=2, backoff_s=0.05)
    e = _event()
    sink.send(e)
    assert wait_for(lambda: sink.failures >= 1)
    assert "no answer within 0.2 s" in sink.last_error
    assert outbox.count(sink.name) == 1 and sink.delivered == 0
    hook.delay = 0.0  # the server answers fast again
    assert sink.flush(5.0)
    assert hook.answered == [e.to_dict()] and sink.delivered == 1
    sink.close()
    outbox.close()


def test_webhook_http_error_is_retried(tmp_path: Path, hook: _Hook):
    hook.status = 500
    sink = WebhookSink(hook.url, Outbox(":memory:"), timeout_s=1.0, backoff_s=0.05)
    e = _event()
    sink.send(e)
    assert wait_for(lambda: sink.failures >= 1)
    assert "HTTP 500" in sink.last_error and sink.outbox.count() == 1
    hook.status = 200
    assert sink.flush(5.0) and hook.answered == [e.to_dict()]
    sink.close()


def test_webhook_trouble_is_said_once_while_running_and_not_at_the_end_once_over(tmp_path: Path, hook: _Hook, caplog):
    """All events were delivered after the receiver came back, yet the exit said 'answered HTTP 500'; and a down
    receiver was heard of only at the exit."""
    import logging

    hook.status = 500
    with caplog.at_level(logging.WARNING, logger="maskwatch.webhook"):
        sink = WebhookSink(hook.url, Outbox(":memory:"), timeout_s=1.0, backoff_s=0.05)
        sink.send(_event())
        assert wait_for(lambda: sink.failures >= 2)
        hook.status = 200
        assert sink.flush(5.0)
        sink.close()
    said = [r.getMessage() for r in caplog.records if r.name == "maskwatch.webhook"]
    assert len(said) == 2 and "HTTP 500" in said[0] and said[1].endswith("delivering again"), said
    assert sink.close_note() is None  # nothing is wrong any more


def test_webhook_outbox_survives_a_restart(tmp_path: Path, hook: _Hook):
    path = tmp_path / "outbox.db"
    outbox = Outbox(path)
    hook.status = 503  # the receiver is down for the whole first run
    first = WebhookSink(hook.url, outbox, timeout_s=0.5, backoff_s=30.0)
    e = _event()
    first.send(e)
    assert wait_for(lambda: first.failures >= 1)
    first.close()
    outbox.close()  # the process ends with the event undelivered

    hook.status = 200
    outbox = Outbox(path)
    assert outbox.count(first.name) == 1
    second = WebhookSink(hook.url, outbox, timeout_s=1.0)  # its next try was 30 s away: resent at once on start
    assert second.flush(5.0)
    assert hook.answered == [e.to_dict()] and second.delivered == 1
    second.close()
    outbox.close()


def test_events_queued_for_one_url_are_never_posted_to_another(tmp_path: Path, hook: _Hook):
    path = tmp_path / "outbox.db"
    outbox = Outbox(path)
    gone = f"http://127.0.0.1:{free_port()}/events"
    first = WebhookSink(gone, outbox, timeout_s=0.5, backoff_s=30.0)
    first.send(_event())
    assert wait_for(lambda: first.failures >= 1)
    first.close()
    other = WebhookSink(hook.url, outbox, timeout_s=1.0)  # the next run points at another receiver
    assert other.flush(2.0) and hook.received == [] and other.delivered == 0
    assert outbox.count(first.name) == 1  # still waiting for its own URL
    other.close()
    outbox.close()


def test_outbox_claims_are_exclusive_until_released_or_their_lease_runs_out(tmp_path: Path):
    path = tmp_path / "events.db"
    with Outbox(path) as a, Outbox(path) as b:  # two processes on one file: two connections
        rid = a.put("hook", {"n": 1})
        now = time.time()
        assert a.claim(rid, "a", lease_s=60, now=now)
        assert not b.claim(rid, "b", lease_s=60, now=now)  # a holds it
        assert b.due("hook", now) == [] and b.next_try("hook") == pytest.approx(now + 60)  # due when the lease ends
        assert b.claim(rid, "b", lease_s=60, now=now + 61)  # a's lease ran out (a died): b takes it
        a.retry_later(rid, 0, "a")  # a's late failure leaves b's claim alone
        assert not a.claim(rid, "a", lease_s=60, now=now + 62)
        b.retry_later(rid, 0, "b")  # b's failure releases it and counts the attempt
        assert [(p, att) for _, p, att in a.due("hook")] == [({"n": 1}, 1)]
        assert a.claim(rid, "a", lease_s=60)
        a.done(rid)
        assert not b.claim(rid, "b", lease_s=60) and b.count() == 0  # delivered: gone for everyone


def test_two_posters_sharing_one_outbox_file_post_each_event_exactly_once(tmp_path: Path, hook: _Hook):
    """Two watch processes (or watch and serve) on one --events file with one --webhook: each entry is claimed before
    it is posted, so the receiver gets every event once (without claims both posted what was waiting)."""
    path = tmp_path / "events.db"
    hook.delay = 0.005  # posts take a while, so the two posters overlap
    with Outbox(path) as earlier:  # what an earlier run left undelivered
        for n in range(30):
            earlier.put("hook", {"n": n})
    a = WebhookSink(hook.url, Outbox(path), name="hook", timeout_s=2.0)
    b = WebhookSink(hook.url, Outbox(path), name="hook", timeout_s=2.0)
    live = [_event(track_id=i) for i in range(20)]
    for i, e in enumerate(live):  # and new events from both
        (a if i % 2 else b).send(e)
    try:
        assert a.flush(15.0) and b.flush(15.0)
        got = sorted(json.dumps(p, sort_keys=True) for p in hook.received)
        want = sorted([json.dumps({"n": n}) for n in range(30)] + [json.dumps(e.to_dict(), sort_keys=True) for e in live])
        assert got == want  # every event, each exactly once
        assert a.delivered + b.delivered == 50 and a.delivered and b.delivered  # both took part
        assert a.outbox.count() == 0
    finally:
        for s in (a, b):
            s.close()
            s.outbox.close()


def test_a_claim_left_by_a_poster_that_died_runs_out_and_the_event_is_still_delivered(tmp_path: Path, hook: _Hook):
    path = tmp_path / "events.db"
    dead = Outbox(path)
    rid = dead.put("hook", {"n": 1})
    claimed = time.time()
    assert dead.claim(rid, "killed-mid-post", lease_s=1.0, now=claimed)
    dead.close()  # kill -9 after the claim: never marked delivered, never released
    outbox = Outbox(path)
    sink = WebhookSink(hook.url, outbox, name="hook", timeout_s=1.0)
    try:
        assert not wait_for(lambda: hook.received, timeout=0.4)  # the claim still holds: not posted a second time
        assert wait_for(lambda: hook.answered, timeout=5.0) == [{"n": 1}]  # its lease ran out: posted by the other
        assert time.time() >= claimed + 1.0
        assert sink.flush(5.0) and outbox.count() == 0 and sink.delivered == 1
    finally:
        sink.close()
        outbox.close()


def test_an_outbox_file_written_before_claims_is_migrated_in_place(tmp_path: Path, hook: _Hook):
    import contextlib
    import sqlite3

    path = tmp_path / "events.db"
    with EventLog(path) as log:  # one file for the event log and the outbox, as watch --events uses it
        log.add(_event())
    t = time.time()
    with contextlib.closing(sqlite3.connect(path)) as c:  # the outbox as releases before claims wrote it
        c.executescript("""
            CREATE TABLE outbox (id INTEGER PRIMARY KEY AUTOINCREMENT, sink TEXT NOT NULL, payload TEXT NOT NULL,
                                 attempts INTEGER NOT NULL DEFAULT 0, next_try REAL NOT NULL, created REAL NOT NULL);
            CREATE INDEX outbox_due ON outbox(sink, next_try);
        """)
        c.execute("INSERT INTO outbox (sink, payload, attempts, next_try, created) VALUES ('hook', '{\"n\":1}', 2, ?, ?)",
                  (t + 30, t))
        c.commit()
    with Outbox(path) as ob:
        cols = [r[1] for r in ob._conn.execute("PRAGMA table_info(outbox)")]
        assert cols == ["id", "sink", "payload", "attempts", "next_try", "created", "claimed_by", "claimed_until"]
        assert [(p, att) for _, p, att in ob.due("hook", t + 60)] == [({"n": 1}, 2)]  # the waiting entry is kept
    Outbox(path).close()  # opened again: nothing left to add
    outbox = Outbox(path)
    sink = WebhookSink(hook.url, outbox, name="hook", timeout_s=1.0)
    try:
        assert sink.flush(5.0) and hook.answered == [{"n": 1}]
    finally:
        sink.close()
        outbox.close()
    with EventLog(path) as log:
        assert log.count() == 1


def test_webhook_rejects_a_bad_url(tmp_path: Path):
    with pytest.raises(InputError, match="http"):
        WebhookSink("ftp://127.0.0.1/x", Outbox(":memory:"))


def test_webhook_still_delivers_when_the_outbox_disk_is_full(tmp_path: Path, hook: _Hook):
    outbox = Outbox(tmp_path / "events.db")
    pages = outbox._conn.execute("PRAGMA page_count").fetchone()[0]
    outbox._conn.execute(f"PRAGMA max_page_count = {pages}")
    big = {"blob": "x" * 20000}
    rid = outbox.put("parked", big)  # cannot be written: kept in memory, not lost
    assert rid < 0 and "disk is full" in outbox.last_error and outbox.count("parked") == 1
    sink = WebhookSink(hook.url, outbox, timeout_s=1.0)
    e = _event(snapshot=bytes(20000))
    sink.send(e)
    assert sink.flush(5.0) and hook.answered == [e.to_dict()]
    outbox._conn.execute("PRAGMA max_page_count = 1000000")
    assert [p for _, p, _ in outbox.due("parked")] == [big]  # moved into the file once it can be written
    assert outbox._conn.execute("SELECT COUNT(*) FROM outbox WHERE sink = 'parked'").fetchone()[0] == 1
    sink.close()
    outbox.close()


def test_a_full_disk_does_not_stop_waiting_events_or_new_alerts_going_out(tmp_path: Path, hook: _Hook):
    """Claims are writes: with the disk full none could be taken, so nothing was posted; and 50 waiting file entries
    filled every batch, so a new alert kept in memory never came up either."""
    outbox = Outbox(tmp_path / "events.db")
    sink_name = WebhookSink(hook.url, Outbox(":memory:")).name
    for n in range(60):
        outbox.put(sink_name, {"n": n})
    outbox._conn.execute(f"PRAGMA max_page_count = {outbox._conn.execute('PRAGMA page_count').fetchone()[0]}")
    rid = outbox.put(sink_name, {"n": "new", "blob": "x" * 20000})
    assert rid < 0 and "disk is full" in outbox.last_error
    assert outbox.due(sink_name, limit=50)[0][0] == rid  # the alert in memory first
    sink = WebhookSink(hook.url, outbox, timeout_s=1.0)
    assert sink.flush(20.0), outbox.last_error
    got = sorted(str(p["n"]) for p in hook.answered)
    assert got == sorted([str(n) for n in range(60)] + ["new"])  # each once
    sink.close()
    outbox.close()


def test_an_outbox_file_that_cannot_be_written_at_all_still_posts_each_event_once(tmp_path: Path, hook: _Hook):
    """A claim is a write: where none can be written (a read-only or full file system) this process claims in
    memory, so its events still go out, each once, instead of none."""
    import time

    outbox = Outbox(tmp_path / "events.db")
    name = WebhookSink(hook.url, Outbox(":memory:")).name
    for n in range(5):
        outbox.put(name, {"n": n})
    outbox._conn.execute("PRAGMA query_only = ON")  # every write now fails (SQLITE_READONLY)
    sinks = [WebhookSink(hook.url, outbox, timeout_s=1.0) for _ in range(2)]  # two sinks of one process
    deadline = time.monotonic() + 10
    while len(hook.answered) < 5 and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)  # (a second post of any would come now)
    assert sorted(p["n"] for p in hook.answered) == [0, 1, 2, 3, 4]
    for sink in sinks:
        sink.close(timeout_s=2)
    outbox.close()


def test_a_long_outbox_outage_keeps_the_latest_entries_in_bounded_memory(tmp_path: Path, monkeypatch):
    monkeypatch.setattr(Outbox, "MAX_MEMORY", 3)
    outbox = Outbox(tmp_path / "events.db")
    outbox._conn.execute(f"PRAGMA max_page_count = {outbox._conn.execute('PRAGMA page_count').fetchone()[0]}")
    for n in range(7):
        assert outbox.put("hook", {"n": n, "blob": "x" * 20000}) < 0
    assert outbox.dropped == 4 and outbox.count("hook") == 3
    assert outbox.last_error.count("4 older undelivered entries dropped (at most 3 wait in memory)") == 1
    outbox._conn.execute("PRAGMA max_page_count = 1000000")
    assert [p["n"] for _, p, _ in outbox.due("hook")] == [4, 5, 6]  # the newest, oldest first
    outbox.close()


def test_a_webhook_down_for_weeks_is_not_flooded_with_alerts_older_than_the_retention(tmp_path: Path):
    """Undelivered events older than max_age_s (watch and serve: --retention-days) are dropped and counted; newer
    ones wait for the receiver."""
    import socket

    with socket.socket() as so:  # a port nobody listens on
        so.bind(("127.0.0.1", 0))
        port = so.getsockname()[1]
    outbox = Outbox(tmp_path / "events.db")
    name = "hook"
    old, new = outbox.put(name, {"n": 1}), outbox.put(name, {"n": 2})
    outbox._conn.execute("UPDATE outbox SET created = ? WHERE id = ?", (time.time() - 40 * 86400, old))
    with pytest.raises(InputError, match="max_age_s"):
        WebhookSink(f"http://127.0.0.1:{port}/x", outbox, name=name, max_age_s=0)
    sink = WebhookSink(f"http://127.0.0.1:{port}/x", outbox, name=name, timeout_s=0.5, max_age_s=30 * 86400)
    deadline = time.time() + 10
    while sink.expired == 0 and time.time() < deadline:
        time.sleep(0.02)
    sink.close()
    assert sink.expired == 1 and [i for i, _, _ in outbox.due(name, time.time() + 1e6)] == [new]
    assert "dropped 1 undelivered event(s) older than 30 days" in sink.close_note()
    outbox.close()


def test_default_databases_live_in_the_per_user_data_folder(monkeypatch, tmp_path):
    import maskwatch.events as ev

    monkeypatch.delenv("MASKWATCH_DATA", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert ev.data_dir() == tmp_path / "xdg" / "maskwatch"
    monkeypatch.setenv("MASKWATCH_DATA", str(tmp_path / "mine"))
    assert ev.data_dir() == tmp_path / "mine"
    import subprocess
    import sys

    code = "from maskwatch.cli import build_parser as b; print(b().parse_args(['watch', '0']).events, b().parse_args(['serve']).events)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         env={**__import__("os").environ, "MASKWATCH_DATA": str(tmp_path / "mine")}, cwd=tmp_path)
    assert out.stdout.split() == [str(tmp_path / "mine" / "events.db")] * 2, out.stderr  # not the current folder
