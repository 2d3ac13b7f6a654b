"""The systemd unit examples in docs/systemd/ are valid units (systemd-analyze verify, where the machine has it)
and start maskwatch with options that exist."""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from maskwatch.cli import build_parser

UNITS = Path(__file__).resolve().parents[1] / "docs" / "systemd"
MASKWATCH = Path(sys.executable).parent / "maskwatch"


def _units(tmp_path: Path) -> list[Path]:
    out = []
    for unit in sorted(UNITS.glob("*.service")):
        name = unit.name.replace("@.service", "@door.service")
        text = unit.read_text().replace("/opt/maskwatch/.venv/bin/maskwatch", str(MASKWATCH))
        (tmp_path / name).write_text(text)
        out.append(tmp_path / name)
    return out


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed here")
def test_units_verify(tmp_path):
    units = _units(tmp_path)
    assert len(units) == 2
    r = subprocess.run(["systemd-analyze", "verify", *map(str, units)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and not r.stderr.strip(), r.stderr + r.stdout


def test_units_run_maskwatch_with_options_that_exist(tmp_path):
    parser = build_parser()
    for unit in _units(tmp_path):
        line = next(ln for ln in unit.read_text().splitlines() if ln.startswith("ExecStart="))
        argv = shlex.split(line.removeprefix("ExecStart=").replace("${CAMERA}", "rtsp://cam/stream").replace("%i", "door"))
        assert argv[0] == str(MASKWATCH)
        args = parser.parse_args(argv[1:])  # exits (SystemExit) on an unknown option
        assert args.command in ("watch", "serve")
