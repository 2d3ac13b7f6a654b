"""The Arduino link (maskwatch/serial_link.py): target angles, the exact bytes on a pyserial ``loop://`` port and
on a real pseudo-terminal, dry run, a missing port, an unplugged port and reconnecting."""

from __future__ import annotations

import io
import os
import re
import select
import sys
import time
import types

import pytest
from conftest import wait_for

from maskwatch import CLASS_NAMES, Detections, InputError
from maskwatch.serial_link import FINAL_MESSAGE, SerialSignal, encode, open_serial, target_angles

W, H = 640, 480
# Worked by hand: box [100, 40, 200, 160] -> w=100, h=120 -> cx = 100 + 50 = 150, cy = 40 + 40 = 80
# -> x = 180 - 150*180/640 = 137.8125 -> 138;  y = 80*180/480 = 30.
BOX_A, MSG_A = [100, 40, 200, 160], b"X138Y30\n"
# [400, 200, 480, 320] -> cx = 440, cy = 240 -> x = 180 - 123.75 = 56.25 -> 56;  y = 90.
BOX_B, MSG_B = [400, 200, 480, 320], b"X56Y90\n"
IDLE_MSG = b"X0Y0\n"

needs_pty = pytest.mark.skipif(not hasattr(os, "openpty") or sys.platform == "win32", reason="needs a POSIX pseudo-terminal")


def faces(*rows: tuple[list[float], str, float]) -> Detections:
    """Detections from (box xyxy pixels, label, confidence) rows; label '' = not classified."""
    if not rows:
        return Detections.empty()
    return Detections(
        [r[0] for r in rows],
        [0.9] * len(rows),
        class_id=[CLASS_NAMES.index(r[1]) if r[1] else -1 for r in rows],
        confidence=[r[2] for r in rows],
    )


UNMASKED_A = faces((BOX_A, "without_mask", 0.9))
UNMASKED_B = faces((BOX_B, "without_mask", 0.9))
MASKED = faces((BOX_A, "with_mask", 0.99), (BOX_B, "with_mask", 0.8))
NOBODY = Detections.empty()


# -- target_angles and encode ---------------------------------------------------------------------------------


def test_hand_worked_example():
    assert target_angles(UNMASKED_A, W, H) == (138, 30)
    assert encode(*target_angles(UNMASKED_A, W, H)) == MSG_A
    assert target_angles(UNMASKED_B, W, H) == (56, 90)
    assert target_angles(faces((BOX_A, "mask_incorrect", 0.6)), W, H) == (138, 30)


@pytest.mark.parametrize("dets", [MASKED, NOBODY, faces((BOX_A, "", 0.0))], ids=["everyone-masked", "nobody", "unclassified"])
def test_idle_when_no_unmasked_face(dets):
    assert target_angles(dets, W, H) == (0, 0)
    assert encode(*target_angles(dets, W, H)) == IDLE_MSG


@pytest.mark.parametrize(
    "rows, expected",
    [
        # without_mask beats mask_incorrect even when much smaller
        ([([0, 0, 320, 480], "mask_incorrect", 0.99), (BOX_B, "without_mask", 0.5)], (56, 90)),
        # mask_incorrect beats with_mask
        ([([0, 0, 320, 480], "with_mask", 0.99), (BOX_A, "mask_incorrect", 0.5)], (138, 30)),
        # among the same label the largest area wins, whatever the confidence
        # ([90, 30, 210, 170]: 120x140 px, cx = 150, cy = 30 + 46.67 -> y = 28.75 -> 29)
        ([(BOX_B, "without_mask", 0.99), ([90, 30, 210, 170], "without_mask", 0.51)], (138, 29)),
        # equal areas (100x120 px): the higher confidence wins ([400, 200, 500, 320]: cx = 450 -> 53.4375 -> 53)
        ([(BOX_A, "without_mask", 0.6), ([400, 200, 500, 320], "without_mask", 0.7)], (53, 90)),
        ([(BOX_A, "without_mask", 0.8), ([400, 200, 500, 320], "without_mask", 0.7)], (138, 30)),
        # a full tie: the earlier face
        ([(BOX_A, "without_mask", 0.8), ([400, 200, 500, 320], "without_mask", 0.8)], (138, 30)),
    ],
)
def test_most_urgent_face(rows, expected):
    dets = faces(*rows)
    assert target_angles(dets, W, H) == expected


@pytest.mark.parametrize(
    "box, expected",
    [
        ([-300, -300, -100, -200], (180, 0)),  # off the top-left: x > 180 and y < 0 are clamped
        ([700, 500, 900, 800], (1, 180)),  # off the bottom-right (x is at least 1 for a real target)
        ([0, 0, 640, 480], (90, 60)),  # the whole frame: cx = 320, cy = 160
        ([0, 0, 0, 0], (180, 0)),  # a degenerate box at the origin
        # at the right edge: cx = 639 -> 0.28 -> 0, raised to 1 so the firmware does not read "everyone masked"
        ([638, 456, 640, 480], (1, 174)),
    ],
)
def test_clamping_and_edges(box, expected):
    assert target_angles(faces((box, "without_mask", 0.9)), W, H) == expected


def test_rounding_is_pythons_round():
    # 360 x 360 frame: x = 180 - cx/2, y = cy/2. cx = 179 -> 90.5 -> 90 (half to even); cx = 181 -> 89.5 -> 90;
    # cy = 0 + 3/3 = 1 -> 0.5 -> 0;  cy = 3 -> 1.5 -> 2.
    assert target_angles(faces(([178, 0, 180, 3], "without_mask", 0.9)), 360, 360) == (90, 0)
    assert target_angles(faces(([180, 2, 182, 5], "without_mask", 0.9)), 360, 360) == (90, 2)


def test_bad_frame_size():
    with pytest.raises(InputError, match="width > 0"):
        target_angles(UNMASKED_A, 0, 480)


def test_encode():
    assert encode(138, 30) == b"X138Y30\n"
    assert encode(0, 0) == FINAL_MESSAGE == b"X0Y0\n"
    assert encode(180, 180) == b"X180Y180\n"


def test_bad_settings():
    with pytest.raises(InputError, match="interval"):
        SerialSignal("loop://", interval_ms=0, dry_run=True)
    with pytest.raises(InputError, match="reconnect"):
        SerialSignal("loop://", reconnect_s=0, dry_run=True)


# -- exact bytes: pyserial loop:// ----------------------------------------------------------------------------


class KeepOpen:
    """Wraps the loop:// port so that SerialSignal.close() leaves it readable (to see the final X0Y0)."""

    def __init__(self, port):
        self.port, self.closed = port, False

    def write(self, data: bytes) -> int:
        return self.port.write(data)

    def close(self) -> None:
        self.closed = True


def test_exact_bytes_on_loop_port():
    serial = pytest.importorskip("serial")
    loop = serial.serial_for_url("loop://", timeout=0)
    wrapper = KeepOpen(loop)
    got = bytearray()

    def read_until(tail: bytes) -> bool:
        return wait_for(lambda: got.extend(loop.read(4096)) or got.endswith(tail))

    with SerialSignal("loop://", interval_ms=10, port_factory=lambda port, baud: wrapper) as sig:
        assert sig.update(UNMASKED_A, W, H) == MSG_A
        assert read_until(MSG_A)
        sig.update(MASKED, W, H)
        assert read_until(IDLE_MSG)
        sig.update(UNMASKED_B, W, H)
        assert read_until(MSG_B)
        sig.update(NOBODY, W, H)
        assert read_until(IDLE_MSG)
        assert sig.status()["connected"] is True
    assert wrapper.closed
    got.extend(loop.read(4096))
    assert re.fullmatch(rb"(X138Y30\n)+(X0Y0\n)+(X56Y90\n)+(X0Y0\n)+", bytes(got)), bytes(got)
    assert sig.sent[-1] == FINAL_MESSAGE  # close() sent one last X0Y0
    assert b"".join(sig.sent) == bytes(got)
    assert sig.status()["messages_sent"] == len(sig.sent)
    assert sig.status()["last_error"] is None


def test_only_the_newest_message_is_sent():
    serial = pytest.importorskip("serial")
    loop = serial.serial_for_url("loop://", timeout=0)
    with SerialSignal("loop://", interval_ms=50, port_factory=lambda port, baud: KeepOpen(loop)) as sig:
        t0 = time.monotonic()
        for i in range(2000):  # a fast video loop: many targets between two ticks
            sig.update(faces(([i % 600, 40, i % 600 + 40, 100], "without_mask", 0.9)), W, H)
        last = sig.update(UNMASKED_A, W, H)
        assert wait_for(lambda: len(sig.sent) > 0 and sig.sent[-1] == last)
        elapsed = time.monotonic() - t0
        assert len(sig.sent) <= elapsed / 0.05 + 2, "messages must not queue up"
    assert len(sig.sent) <= 1000


def test_open_serial_settings():
    pytest.importorskip("serial")
    port = open_serial("loop://", 9600)
    try:
        assert port.baudrate == 9600 and port.timeout == 0 and port.write_timeout == 0.5
    finally:
        port.close()


# -- exact bytes: a real pseudo-terminal ----------------------------------------------------------------------


def _read_pty(master: int, got: bytearray, tail: bytes, timeout: float = 2.0) -> bool:
    end = time.monotonic() + timeout
    while not got.endswith(tail) and time.monotonic() < end:
        ready, _, _ = select.select([master], [], [], 0.02)
        if ready:
            got.extend(os.read(master, 4096))
    return got.endswith(tail)


def _drain(master: int, got: bytearray, size: int, timeout: float = 2.0) -> None:
    end = time.monotonic() + timeout
    while len(got) < size and time.monotonic() < end:
        ready, _, _ = select.select([master], [], [], 0.02)
        if ready:
            got.extend(os.read(master, 4096))


@pytest.fixture
def pty():
    """A pseudo-terminal pair: ``master`` is our end of the cable, ``name`` the port SerialSignal opens. A test
    that closes ``master`` itself sets it to -1."""
    pytest.importorskip("serial")
    master, slave = os.openpty()
    p = types.SimpleNamespace(master=master, name=os.ttyname(slave))
    yield p
    if p.master >= 0:
        os.close(p.master)
    os.close(slave)


@needs_pty
def test_exact_bytes_on_a_pty(pty):
    master, name = pty.master, pty.name
    got = bytearray()
    with SerialSignal(name, interval_ms=10) as sig:
        sig.update(UNMASKED_A, W, H)
        assert _read_pty(master, got, MSG_A), bytes(got)
        sig.update(NOBODY, W, H)
        assert _read_pty(master, got, IDLE_MSG), bytes(got)
        sig.update(UNMASKED_B, W, H)
        assert _read_pty(master, got, MSG_B), bytes(got)
        sig.update(MASKED, W, H)
        assert _read_pty(master, got, IDLE_MSG), bytes(got)
        assert sig.status() == {"port": name, "connected": True, "last_error": None,
                                "messages_sent": sig.messages_sent, "dry_run": False}
    # Every byte written (the final X0Y0 from close() included) reached the other end, unchanged.
    written = b"".join(sig.sent)
    assert sig.sent[-1] == FINAL_MESSAGE and len(sig.sent) == sig.messages_sent < 1000
    _drain(master, got, len(written))
    assert bytes(got) == written
    # Raw bytes: no "\r\n" translation by the tty, no echo, whole messages only.
    assert re.fullmatch(rb"(X138Y30\n)+(X0Y0\n)+(X56Y90\n)+(X0Y0\n)+", bytes(got)), bytes(got)


@needs_pty
def test_pty_unplugged_mid_run_keeps_the_loop_going(pty):
    master, name = pty.master, pty.name
    got = bytearray()
    sig = SerialSignal(name, interval_ms=10, reconnect_s=0.05)
    sig.update(UNMASKED_A, W, H)
    assert _read_pty(master, got, MSG_A)
    os.close(master)  # the cable is pulled: writes to the slave now fail with EIO
    pty.master = -1
    worst = 0.0
    end = time.monotonic() + 0.3
    while time.monotonic() < end:  # the video loop keeps running at full speed
        t = time.perf_counter()
        sig.update(UNMASKED_B, W, H)
        worst = max(worst, time.perf_counter() - t)
        time.sleep(0.002)
    assert worst < 0.5  # far below a blocking write or reopen; generous for a loaded CI machine
    assert wait_for(lambda: sig.status()["last_error"] is not None)
    status = sig.status()
    assert status["connected"] is False
    assert name in status["last_error"]
    t = time.perf_counter()
    sig.close()
    assert time.perf_counter() - t < 1.0


# -- dry run ---------------------------------------------------------------------------------------------------


def test_dry_run_prints_the_exact_text():
    out = io.StringIO()
    with SerialSignal("/dev/does-not-exist", interval_ms=10, dry_run=True, out=out) as sig:
        sig.update(UNMASKED_A, W, H)
        assert wait_for(lambda: "X138Y30\n" in out.getvalue())
        sig.update(MASKED, W, H)
        assert wait_for(lambda: out.getvalue().endswith("X0Y0\n"))
        assert sig.status()["connected"] is True and sig.status()["dry_run"] is True
    text = out.getvalue()
    assert re.fullmatch(r"(X138Y30\n)+(X0Y0\n)+", text), text
    assert sig.last_error is None  # no port was touched


def test_dry_run_defaults_to_stdout(capsys):
    with SerialSignal("COM3", interval_ms=10, dry_run=True) as sig:
        sig.update(UNMASKED_B, W, H)
        assert wait_for(lambda: sig.messages_sent > 0)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "X56Y90" and lines[-1] == "X0Y0"


# -- a missing port, an unplugged port, reconnecting -----------------------------------------------------------


def test_missing_port_never_blocks_or_raises():
    pytest.importorskip("serial")
    t = time.perf_counter()
    sig = SerialSignal("/dev/does-not-exist", interval_ms=10, reconnect_s=0.05)
    assert time.perf_counter() - t < 0.5
    try:
        worst = 0.0
        for _ in range(50):
            t = time.perf_counter()
            assert sig.update(UNMASKED_A, W, H) == MSG_A
            worst = max(worst, time.perf_counter() - t)
        assert worst < 0.5
        assert wait_for(lambda: sig.status()["last_error"] is not None)
        status = sig.status()
        assert "/dev/does-not-exist" in status["last_error"] and "could not be opened" in status["last_error"]
        assert status["connected"] is False and status["messages_sent"] == 0
    finally:
        t = time.perf_counter()
        sig.close()
        assert time.perf_counter() - t < 0.5
    assert list(sig.sent) == []  # no final X0Y0: the port never opened
    sig.close()  # twice is fine


class Cable:
    """A fake port that is unplugged after ``fail_after`` writes, and can be plugged back in."""

    def __init__(self, fail_after: int) -> None:
        self.plugged = True
        self.fail_after = fail_after
        self.writes = 0
        self.opens = 0
        self.data = bytearray()
        self.ports: list[Cable.Port] = []

    class Port:
        def __init__(self, cable: Cable) -> None:
            self.cable, self.closed = cable, False

        def write(self, data: bytes) -> int:
            import serial

            c = self.cable
            if c.plugged and c.writes >= c.fail_after:
                c.plugged = False
            if not c.plugged:
                raise serial.SerialException("write failed: [Errno 5] Input/output error")
            c.writes += 1
            c.data += data
            return len(data)

        def close(self) -> None:
            self.closed = True

    def factory(self, port: str, baud: int) -> Cable.Port:
        import serial

        if not self.plugged:
            raise serial.SerialException(f"[Errno 2] could not open port {port}: No such file or directory")
        assert baud == 9600
        self.opens += 1
        self.ports.append(Cable.Port(self))
        return self.ports[-1]


def test_unplugged_mid_run_then_reconnects():
    pytest.importorskip("serial")
    cable = Cable(fail_after=3)
    with SerialSignal("/dev/ttyACM0", interval_ms=10, reconnect_s=0.05, port_factory=cable.factory) as sig:
        sig.update(UNMASKED_A, W, H)
        assert wait_for(lambda: not cable.plugged)  # 3 writes went through, the 4th found the cable gone
        assert bytes(cable.data) == MSG_A * 3
        assert wait_for(lambda: sig.status()["last_error"] is not None)
        assert "/dev/ttyACM0" in sig.last_error and "write" in sig.last_error
        assert cable.ports[0].closed
        worst = 0.0
        end = time.monotonic() + 0.2
        while time.monotonic() < end:  # unplugged: the video loop is untouched; reconnects fail quietly
            t = time.perf_counter()
            sig.update(UNMASKED_B, W, H)
            worst = max(worst, time.perf_counter() - t)
            time.sleep(0.002)
        assert worst < 0.5
        assert sig.status()["connected"] is False
        assert "could not open port" in sig.last_error
        assert cable.opens == 1
        cable.fail_after = 10**9
        cable.plugged = True  # plugged back in
        assert wait_for(lambda: cable.opens == 2 and cable.data.endswith(MSG_B))
        assert sig.status()["connected"] is True
    assert cable.data.endswith(MSG_B + FINAL_MESSAGE)
    assert re.fullmatch(rb"(X138Y30\n){3}(X56Y90\n)+X0Y0\n", bytes(cable.data)), bytes(cable.data)
    assert cable.ports[1].closed


def test_a_target_not_refreshed_by_the_video_is_dropped_for_idle():
    """A camera outage stops the video loop: the writer must not keep aiming the turret at who was there."""
    out = io.StringIO()
    with SerialSignal("dry", interval_ms=10, dry_run=True, out=out) as sig:
        sig.stale_s = 0.3
        sig.update(UNMASKED_A, W, H)
        assert wait_for(lambda: out.getvalue().endswith("X0Y0\n"), timeout=3.0)  # no update for 0.3 s: idle
        sig.update(UNMASKED_B, W, H)  # the video is back
        assert wait_for(lambda: out.getvalue().endswith("X56Y90\n"))
    assert re.fullmatch(r"(X138Y30\n)+(X0Y0\n)+(X56Y90\n)+(X0Y0\n)+", out.getvalue()), out.getvalue()


def test_port_trouble_is_logged_once_when_it_starts_and_once_when_it_ends(caplog):
    """A wrong port or an unplugged Arduino was reported only when watch ended (hours later, for a service)."""
    import logging

    pytest.importorskip("serial")
    cable = Cable(fail_after=2)
    with (caplog.at_level(logging.WARNING, logger="maskwatch.serial"),
          SerialSignal("/dev/ttyACM0", interval_ms=10, reconnect_s=0.05, port_factory=cable.factory) as sig):
        sig.update(UNMASKED_A, W, H)
        assert wait_for(lambda: not cable.plugged)
        time.sleep(0.3)  # several failed reopen attempts: still one line
        cable.fail_after, cable.plugged = 10**9, True
        assert wait_for(lambda: cable.opens == 2)
        assert wait_for(lambda: any("connected" in r.getMessage() for r in caplog.records))
    messages = [r.getMessage() for r in caplog.records if r.name == "maskwatch.serial"]
    assert len(messages) == 2 and "failed" in messages[0] and messages[1] == "serial port '/dev/ttyACM0' connected", messages
    assert sig.last_error and sig.close_note() is None  # over by the end: no stale "write failed" at exit
