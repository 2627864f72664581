"""A helper process dying mid-stream ends the command promptly, never in a hang.

A PostgreSQL 15 backup pipes pg_dump's uncompressed archive through the `zstd` tool (zstream).
When zstd dies (disk full, file size limit, killed), pg_dump must not be left blocked on a full
pipe holding its snapshot and table locks: the backup fails in one line naming the cause, and
keeps nothing. A restore reading an archive whose pg_restore script never shows pg_restore's
preamble refuses without waiting on a pg_restore blocked on a full pipe.
"""

from __future__ import annotations

import resource
import time

from tests.conftest import run_invoke
from tests.fixtures_cli import error_line
from tests.helpers import psql, scalar

LIMIT = 2 << 20  # above every file Python writes itself (roles.json, the manifest, .pyc files)


def _fsize_limit() -> None:
    resource.setrlimit(resource.RLIMIT_FSIZE, (LIMIT, LIMIT))


def _pg_dump_sessions(target) -> int:
    return scalar(target, "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pg_dump' AND pid <> pg_backend_pid()")


def test_backup_whose_compressor_dies_fails_instead_of_hanging(dbs15, project):
    source = dbs15.new("zdie")
    # ~8 MB of random bytes: zstd cannot shrink them below the file size limit
    psql(
        source,
        "CREATE TABLE public.blobs AS SELECT i, decode(string_agg(md5(random()::text), ''), 'hex') AS b "
        "FROM generate_series(1, 64) i, generate_series(1, 8000) j GROUP BY i",
    )
    res = run_invoke(["backup"], cwd=project, env={"DATABASE_URL": dbs15.url(source)}, timeout=120, preexec_fn=_fsize_limit)
    assert res.returncode == 1, res.stdout + res.stderr
    line = error_line(res)
    assert "zstd stopped" in line and "file size limit" in line and "nothing was kept" in line, line
    left = list((project / ".backups").iterdir()) if (project / ".backups").exists() else []
    assert not [p for p in left if p.is_dir()], left  # no backup folder, no staging folder
    deadline = time.monotonic() + 10  # the server notices a client gone on its next send
    while _pg_dump_sessions(source) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _pg_dump_sessions(source) == 0
