"""A Ctrl-C (or SIGTERM) that arrives while the tool forks a PostgreSQL tool must not be lost.

CPython runs logging's at-fork handlers right after every fork; a KeyboardInterrupt raised
inside one is printed ("Exception ignored in: _releaseLock") and dropped, and the task goes on:
seen as a restore that kept running, waiting for a lock, after Ctrl-C. Real processes: a child
Python spawns tools in a loop under the tasks' signal handling; the test presses Ctrl-C at random
moments and every press must stop it."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

CHILD = f"""
import sys, time
sys.path.insert(0, {str(ROOT)!r})
import logging  # its at-fork handlers, as the tool's imports register them
from tasks import _ui
from tasks.engine import pgtools
with _ui._stop_signals_interrupt():
    try:
        print("READY", flush=True)
        end = time.monotonic() + 8
        while time.monotonic() < end:
            pgtools.popen(["true"], env={{}}).wait()
        print("LOST", flush=True)
    except KeyboardInterrupt:
        print("INTERRUPTED", flush=True)
"""


def test_ctrl_c_while_forking_is_never_lost(tmp_path):
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    outcomes = []
    for _ in range(15):
        proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert proc.stdout is not None and proc.stdout.readline().strip() == "READY", proc.communicate()
        time.sleep(0.1 + random.random() * 0.3)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
        outcomes.append("INTERRUPTED" in out)
        assert "Exception ignored" not in err, err
    assert all(outcomes), f"{outcomes.count(False)} of {len(outcomes)} Ctrl-C presses were lost while forking"


KEY_CHILD = f"""
import sys, time
sys.path.insert(0, {str(ROOT)!r})
from tasks.engine import manifest
start = float(sys.argv[1])
while time.time() < start:
    pass
print(manifest.signing_key(None, create=True).key_id)
"""


def test_first_backups_at_once_agree_on_one_signing_key(tmp_path):
    """Two CI jobs' first backups on a new machine create the per-user signing key at the same
    moment: neither may read it half-written ("damaged") or fail on the other's file, and both
    must sign with the same key."""
    script = tmp_path / "key.py"
    script.write_text(KEY_CHILD)
    env = {"XDG_CONFIG_HOME": str(tmp_path / "config"), "PATH": "/usr/bin:/bin"}
    for attempt in range(3):
        env["XDG_CONFIG_HOME"] = str(tmp_path / f"config{attempt}")
        start = time.time() + 1.5
        procs = [
            subprocess.Popen([sys.executable, str(script), str(start)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
            for _ in range(6)
        ]
        results = [p.communicate(timeout=60) for p in procs]
        errors = [err for _, err in results if err.strip()]
        assert not errors, errors[0]
        assert len({out.strip() for out, _ in results}) == 1, results
