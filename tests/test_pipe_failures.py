"""A helper process dying mid-stream ends the command promptly, never in a hang.

A PostgreSQL 15 backup pipes pg_dump's uncompressed archive through the `zstd` tool (zstream).
When zstd dies (disk full, file size limit, killed), pg_dump must not be left blocked on a full
pipe holding its snapshot and table locks: the backup fails in one line naming the cause, and
keeps nothing. A restore reading an archive whose pg_restore script never shows pg_restore's
preamble refuses without waiting on a pg_restore blocked on a full pipe.
"""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
import time

from tasks.engine.errors import ExitCode
from tests.conftest import REPO, run_invoke
from tests.fixtures_cli import SOURCE_SQL, TARGET_SQL, engine_backup, error_line
from tests.helpers import archive_bytes, psql, resign, scalar, seeded, state, write_archive_bytes
from tests.hostile_helpers import env_for, rehash, shown

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


def _with_server_version(archive: bytes, version: bytes) -> bytes:
    """A custom-format archive with its header's server version (pg_restore prints it as
    `-- Dumped from database version ...` at the top of its script) replaced by `version`.
    Header: PGDMP, version (3 bytes), intSize, offSize, format, compression (a byte from archive
    version 1.15, an int before), 7 ints of time, then the database name and the server version
    as strings (an int length: sign byte + intSize bytes, little-endian; then the bytes)."""
    assert archive[:5] == b"PGDMP"
    vmaj, vmin, int_size = archive[5], archive[6], archive[8]
    pos = 11

    def skip_int(at: int) -> tuple[int, int]:
        value = int.from_bytes(archive[at + 1 : at + 1 + int_size], "little")
        return (-value if archive[at] else value), at + 1 + int_size

    pos = pos + 1 if (vmaj, vmin) >= (1, 15) else skip_int(pos)[1]
    for _ in range(7):
        _, pos = skip_int(pos)
    length, pos = skip_int(pos)
    pos += max(length, 0)
    start = pos
    length, pos = skip_int(pos)
    end = pos + max(length, 0)
    return archive[:start] + b"\x00" + len(version).to_bytes(int_size, "little") + version + archive[end:]


def test_script_without_preamble_larger_than_a_pipe_is_refused_not_waited_on(dbs17, project):
    source = seeded(dbs17, "src", SOURCE_SQL)
    target = seeded(dbs17, "dst", TARGET_SQL)
    bdir = project / "backups"
    backup_id = engine_backup(source, bdir)
    folder = bdir / backup_id
    dump = folder / "app.dump"
    # 2 MB of header text before pg_restore's preamble: more than the pipe holds and than the
    # restore reads looking for the preamble
    write_archive_bytes(dump, _with_server_version(archive_bytes(dump), b"17." + b"9" * (2 << 20)))
    rehash(folder)
    resign(folder)
    before = state(target)

    res = run_invoke(["restore", "--id", backup_id, "--yes"], cwd=project, env=env_for(dbs17.url(target), bdir), timeout=60)

    # refused while loading, inside the restore's transaction: rolled back (exit 6), as every
    # refusal of pg_restore's output is
    assert res.returncode == ExitCode.RESTORE_FAILED, shown(res)
    line = error_line(res)
    assert "rolled back" in line and "unchanged" in line and "pg_restore wrote no preamble; nothing of it was run" in line, line
    assert state(target) == before


def _children(pid: int) -> list[tuple[int, list[str]]]:
    """(pid, argv) of the processes whose parent is `pid`."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                ppid = int(f.read().rsplit(b")", 1)[1].split()[1])
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                argv = [a.decode() for a in f.read().split(b"\0") if a]
        except (OSError, ValueError, IndexError):
            continue
        if ppid == pid:
            found.append((int(entry), argv))
    return found


def _fd(pid: int, fd: int) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/fd/{fd}")
    except OSError:
        return None


def _loads_blobs(argv: list[str]) -> bool:
    """A pg_restore writing the rows of public.blobs (its --use-list names them)."""
    for arg in argv:
        if arg.startswith("--use-list="):
            try:
                with open(arg.split("=", 1)[1]) as f:
                    return "TABLE DATA public blobs" in f.read()
            except OSError:
                return False
    return False


def test_restore_whose_decompressor_dies_rolls_back_naming_it(dbs15, project):
    source = seeded(dbs15, "src", SOURCE_SQL)
    # ~16 MB of random bytes: zstd -d still feeds pg_restore while the rows load
    psql(
        source,
        "CREATE TABLE public.blobs AS SELECT i, decode(string_agg(md5(random()::text), ''), 'hex') AS b "
        "FROM generate_series(1, 128) i, generate_series(1, 8000) j GROUP BY i",
    )
    target = seeded(dbs15, "dst", TARGET_SQL)
    bdir = project / "backups"
    backup_id = engine_backup(source, bdir)
    before = state(target)
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "DATABASE_URL", "SUPABASE_", "BACKUP_DIR"))}
    full_env.update(env_for(dbs15.url(target), bdir))
    proc = subprocess.Popen(
        [sys.executable, "-m", "invoke", "--search-root", str(REPO), "restore", "--id", backup_id, "--yes", "--no-undo"],
        cwd=project,
        env=full_env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        seen = []
        for line in proc.stderr:  # the rows are loading: the load's zstd -d is running
            seen.append(line)
            if "loading" in line:
                break
        killed = None
        deadline = time.monotonic() + 20
        while killed is None and time.monotonic() < deadline and proc.poll() is None:
            # the zstd -d whose output is the loading pg_restore's input (not a listing's)
            kids = _children(proc.pid)
            loading = {_fd(pid, 0) for pid, argv in kids if argv and argv[0].endswith("pg_restore") and _loads_blobs(argv)}
            for pid, argv in kids:
                if argv and argv[0].endswith("zstd") and "-d" in argv and _fd(pid, 1) in loading - {None}:
                    os.kill(pid, signal.SIGKILL)
                    killed = pid
            time.sleep(0.01)
        assert killed is not None, "".join(seen)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    res = subprocess.CompletedProcess(proc.args, proc.returncode, out, "".join(seen) + err)
    assert res.returncode == ExitCode.RESTORE_FAILED, shown(res)
    line = error_line(res)
    assert "zstd stopped: it was killed (SIGKILL" in line and "nothing was changed" in line, line
    assert state(target) == before
