"""What every command pays before it does anything: the modules it imports and the tool
versions it asks for. Small databases feel this as the tool's whole cost (README, Measured)."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tasks.engine import pgtools
from tests.conftest import REPO


def test_backup_and_restore_do_not_load_the_sql_parser():
    """pglast (PostgreSQL's parser, the largest import) is only for `diff`, `schema` and table
    restores; loading the task collection must not pay for it."""
    code = "import sys, tasks; print(sorted(m for m in sys.modules if m.split('.')[0] == 'pglast'))"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_tool_versions_are_asked_side_by_side(tmp_path, monkeypatch):
    """Each suite found costs a `pg_dump --version`: they run side by side. Each fake pg_dump
    here answers only once all three have started, so asked one after another, none would."""
    dirs = []
    for i in range(3):
        d = tmp_path / f"pg{i}" / "bin"
        d.mkdir(parents=True)
        exe = d / "pg_dump"
        every = f"[ -e {tmp_path}/started0 ] && [ -e {tmp_path}/started1 ] && [ -e {tmp_path}/started2 ]"
        exe.write_text(
            f"#!/bin/sh\ntouch {tmp_path}/started{i}\n"
            f"for _ in $(seq 100); do {every} && break; sleep 0.05; done\n"
            f"{every} && echo 'pg_dump (PostgreSQL) 1{5 + i}.{i}'\n"
        )
        exe.chmod(exe.stat().st_mode | stat.S_IXUSR)
        dirs.append(str(d))
    monkeypatch.setattr(pgtools, "candidate_dirs", lambda configured=None: dirs)
    pgtools._probed.clear()
    try:
        found = pgtools.discover()
    finally:
        pgtools._probed.clear()
    assert [s.version for s in found] == ["17.2", "16.1", "15.0"]


def test_a_probe_that_does_not_answer_is_stopped_with_what_it_started(tmp_path, monkeypatch):
    d = tmp_path / "slow"
    d.mkdir()
    (d / "pg_dump").write_text(f"#!/bin/sh\nsleep 300 &\necho $! > {tmp_path}/child\nwait\n")
    os.chmod(d / "pg_dump", 0o755)
    monkeypatch.setattr(pgtools, "candidate_dirs", lambda configured=None: [str(d)])
    pgtools._probed.clear()
    try:
        assert pgtools._probe_all([str(d)], timeout=1.0) == [None]
    finally:
        pgtools._probed.clear()
    child = int((tmp_path / "child").read_text())
    for _ in range(50):
        if not Path(f"/proc/{child}").exists() or Path(f"/proc/{child}/stat").read_text().split()[2] == "Z":
            break
        time.sleep(0.1)
    else:
        pytest.fail("the probe's own child was left running")


def test_a_probe_that_fails_or_is_missing_is_skipped(tmp_path, monkeypatch):
    good, bad = tmp_path / "good", tmp_path / "bad"
    for d, body in ((good, "echo 'pg_dump (PostgreSQL) 15.4'"), (bad, "echo nonsense; exit 3")):
        d.mkdir()
        (d / "pg_dump").write_text(f"#!/bin/sh\n{body}\n")
        os.chmod(d / "pg_dump", 0o755)
    monkeypatch.setattr(pgtools, "candidate_dirs", lambda configured=None: [str(bad), str(good), str(tmp_path / "missing")])
    pgtools._probed.clear()
    try:
        assert [(s.version, s.bindir) for s in pgtools.discover()] == [("15.4", Path(good))]
    finally:
        pgtools._probed.clear()
