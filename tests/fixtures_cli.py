"""Helpers shared by test_bad_input.py and test_safety.py: seeding small databases, reading the
one-line error of a CLI run, snapshotting a folder, watching processes and server sessions.

Nothing here mocks PostgreSQL or its tools.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote

from tasks.engine.conn import Target
from tasks.engine.dump import create_backup
from tasks.engine.storage import LocalStore
from tests.conftest import PASSWORD, REPO

# An app with a few hundred rows in two schemas; what a backup holds.
SOURCE_SQL = """
CREATE SCHEMA app;
CREATE TABLE app.items (id int PRIMARY KEY, v text NOT NULL);
INSERT INTO app.items SELECT g, md5(g::text) FROM generate_series(1, 300) g;
CREATE TABLE app.notes (id serial PRIMARY KEY, item_id int REFERENCES app.items(id), body text);
INSERT INTO app.notes (item_id, body) SELECT g, 'note ' || g FROM generate_series(1, 40) g;
CREATE TABLE public.settings (k text PRIMARY KEY, v text);
INSERT INTO public.settings VALUES ('theme', 'dark'), ('lang', 'en');
"""

# What a restore target holds before the restore: different rows, an extra schema. A failed or
# refused restore must leave exactly this behind.
TARGET_SQL = """
CREATE SCHEMA app;
CREATE TABLE app.items (id int PRIMARY KEY, v text NOT NULL, extra int);
INSERT INTO app.items SELECT g, 'target ' || g, g FROM generate_series(1, 25) g;
CREATE SCHEMA precious;
CREATE TABLE precious.ledger (id int PRIMARY KEY, amount numeric);
INSERT INTO precious.ledger SELECT g, g * 1.5 FROM generate_series(1, 60) g;
CREATE TABLE public.settings (k text PRIMARY KEY, v text);
INSERT INTO public.settings VALUES ('theme', 'light');
"""

SECRET_FORMS = (PASSWORD, quote(PASSWORD, safe=""), quote(PASSWORD), "s3cr3t")


def engine_backup(source: Target, backup_dir: Path, when: dt.datetime | None = None) -> str:
    """A real backup made through the engine (faster than the CLI for test setup)."""
    return create_backup(source, LocalStore(backup_dir), now=when).backup_id


def tree(root: Path) -> dict[str, tuple[int, int, str]]:
    """relative path -> (mode, size, sha256) of every file and folder under root."""
    out: dict[str, tuple[int, int, str]] = {}
    if not root.exists():
        return out
    for p in sorted(root.rglob("*")):
        st = p.lstat()
        digest = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else ""
        out[str(p.relative_to(root))] = (st.st_mode, st.st_size if p.is_file() else 0, digest)
    return out


def error_line(res: subprocess.CompletedProcess, *, only_line: bool = False) -> str:
    """The one `error: <message>. <hint>.` line a failed run ends with. Progress lines may come
    before it; nothing may come after it, and there is no traceback."""
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert lines, f"no stderr; stdout was {res.stdout!r}"
    assert "Traceback" not in res.stderr, res.stderr
    errors = [ln for ln in lines if ln.startswith("error:")]
    assert len(errors) == 1, res.stderr
    assert lines[-1] == errors[0], res.stderr
    if only_line:
        assert len(lines) == 1, res.stderr
    line = errors[0]
    # message + hint, each ending in a period
    assert line.endswith("."), line
    return line


def assert_no_secret(*texts: str | bytes, extra: tuple[str, ...] = ()) -> None:
    """No form of the password (raw, percent-encoded, or its distinctive start) in any text,
    also where a console wrapped a long line in the middle of it."""
    for text in texts:
        blob = text.decode("utf-8", "replace") if isinstance(text, bytes) else text
        variants = {blob, blob.replace("\n", ""), blob.replace("\n", " "), re.sub(r"[ \t]*\n[ \t]*", "", blob)}
        for secret in SECRET_FORMS + extra:
            for v in variants:
                assert secret not in v, f"secret {secret!r} leaked into: {blob[:2000]!r}"


def closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cli_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment conftest.run_invoke gives `invoke`, for runs started with Popen."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "DATABASE_URL", "SUPABASE_", "BACKUP_DIR"))}
    env.update(extra or {})
    return env


def start_invoke(args: list[str], *, cwd: Path, env: dict[str, str]) -> subprocess.Popen:
    """`invoke` in the background, no terminal, its own process group (so only it gets our SIGINT)."""
    return subprocess.Popen(
        [sys.executable, "-m", "invoke", "--search-root", str(REPO), *args],
        cwd=cwd,
        env=cli_env(env),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def processes_mentioning(marker: str) -> list[str]:
    """Command lines of live processes (not zombies) whose argv contains `marker`."""
    found = []
    me = os.getpid()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            raw = (entry / "cmdline").read_bytes()
            status = (entry / "status").read_text()
        except OSError:
            continue
        if not raw or "\nState:\tZ" in status:
            continue
        cmd = raw.replace(b"\0", b" ").decode("utf-8", "replace")
        if marker in cmd:
            found.append(f"{entry.name}: {cmd}")
    return found


def wait_for(predicate, timeout: float = 20.0, interval: float = 0.05, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


# psql's server session during a restore (its application_name; a LIKE pattern)
RESTORE_PSQL = "fortress-restore-%"


def lock_waiters(admin: Target, dbname: str, application: str) -> list[int]:
    """Server sessions of `application` (a LIKE pattern) on `dbname` that are waiting for a lock."""
    with admin.connect(autocommit=True) as conn:
        return [
            r[0]
            for r in conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = %s AND application_name LIKE %s AND wait_event_type = 'Lock'", (dbname, application)
            )
        ]


def sessions(admin: Target, dbname: str, application: str) -> list[int]:
    with admin.connect(autocommit=True) as conn:
        return [r[0] for r in conn.execute("SELECT pid FROM pg_stat_activity WHERE datname = %s AND application_name = %s", (dbname, application))]
