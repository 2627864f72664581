"""What a user relies on without seeing it: the password stays secret, Ctrl-C leaves nothing
half-done, two runs never clobber each other, and backups are private files git ignores.

Real PostgreSQL and real pg tools throughout; the only stand-ins are logging wrapper scripts
that `exec` the real binaries, to see the argv every tool was started with.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import re
import shlex
import signal
import stat
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from urllib.parse import quote

import pytest

from tasks.engine.errors import ExitCode
from tests.conftest import PASSWORD
from tests.fixtures_cli import (
    RESTORE_PSQL,
    SOURCE_SQL,
    TARGET_SQL,
    assert_no_secret,
    engine_backup,
    error_line,
    lock_waiters,
    processes_mentioning,
    sessions,
    start_invoke,
    tree,
    wait_for,
)
from tests.helpers import fingerprints, psql, scalar, seeded, state

TOOLS = ("pg_dump", "pg_restore", "psql")


def _wrappers(folder: Path, real_bindir: Path, log: Path) -> None:
    """A bin folder whose tools log their argv (and whether PGPASSWORD is set, never its value)
    and then become the real tool."""
    folder.mkdir()
    for name in TOOLS:
        script = folder / name
        script.write_text(
            "#!/bin/bash\n"
            f'printf \'%s\\tPGPASSWORD=%s\\n\' "$0 $*" "${{PGPASSWORD:+set}}" >> {shlex.quote(str(log))}\n'
            f'exec {shlex.quote(str(real_bindir / name))} "$@"\n'
        )
        script.chmod(0o755)


def _finished(proc: subprocess.Popen, timeout: float = 60) -> subprocess.CompletedProcess:
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError(f"invoke did not finish within {timeout}s: {err}") from None
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def test_password_never_leaks(dbs, project, invoke_cli):
    cluster = dbs.cluster
    admin = cluster.target()
    suffix = uuid.uuid4().hex[:8]
    login_role, role_password = f"leak_login_{suffix}", f"role-pw-{suffix}"
    psql(admin, f"CREATE ROLE {login_role} LOGIN PASSWORD '{role_password}'")
    try:
        source = seeded(dbs, "src", SOURCE_SQL)
        psql(source, f"GRANT SELECT ON app.items TO {login_role}")
        target = seeded(dbs, "dst", TARGET_SQL)
        hashed = scalar(admin, f"SELECT rolpassword FROM pg_authid WHERE rolname = '{login_role}'")
        assert hashed.startswith("SCRAM-SHA-256$")  # the source really holds a password hash

        log = project / "argv.log"
        bindir = project / "pgbin"
        _wrappers(bindir, cluster.suite.bindir, log)
        bdir = project / "backups"
        common = {"BACKUP_DIR": str(bdir), "PG_BIN_DIR": str(bindir), "COLUMNS": "300"}

        # password inside DATABASE_URL (percent-encoded) for the backup ...
        backup = invoke_cli("backup", env={**common, "DATABASE_URL": dbs.url(source)})
        assert backup.returncode == 0, backup.stderr
        (backup_id,) = [p.name for p in bdir.iterdir() if not p.name.startswith(".")]
        # ... and in PGPASSWORD, next to a URL without one, for the restore
        bare_url = f"postgresql://postgres@127.0.0.1:{cluster.port}/{target.dbname}"
        restore = invoke_cli("restore", "--id", backup_id, "--yes", env={**common, "DATABASE_URL": bare_url, "PGPASSWORD": PASSWORD})
        assert restore.returncode == 0, restore.stderr
        listing = invoke_cli("list", "--verify", env=common)
        config = invoke_cli("config", env={**common, "DATABASE_URL": dbs.url(source)})
        assert listing.returncode == 0 and config.returncode == 0

        # the restore really happened, through the wrapped tools
        src = fingerprints(source)
        assert {k: v for k, v in fingerprints(target).items() if k in src} == src
        calls = [ln for ln in log.read_text().splitlines() if " --version\t" not in ln]
        used = {os.path.basename(ln.split()[0]) for ln in calls}
        assert used == set(TOOLS), calls
        # every tool that connected to the server (probes aside) got the password, from its environment
        connecting = [ln for ln in calls if f"port={cluster.port}" in ln]
        assert {os.path.basename(ln.split()[0]) for ln in connecting} >= {"pg_dump", "psql"}, calls
        assert all(ln.endswith("PGPASSWORD=set") for ln in connecting), calls

        # never in argv, never in what the user sees, never in a file of the backup
        for ln in calls:
            assert_no_secret(ln)
        for res in (backup, restore, listing, config):
            assert_no_secret(res.stdout, res.stderr)
        files = [p for p in bdir.rglob("*") if p.is_file()]
        assert {"manifest.json", "manifest.hmac", "app.dump", "roles.json"} <= {p.name for p in files}
        for p in files:
            assert_no_secret(p.read_bytes(), extra=(role_password, hashed))

        # the LOGIN role travelled, its password hash did not
        roles_json = (bdir / backup_id / "roles.json").read_text()
        travelled = {r["name"]: r for r in json.loads(roles_json)["roles"]}
        assert travelled[login_role]["login"] is True
        assert "SCRAM-SHA-256" not in roles_json
        assert not re.search(r"md5[0-9a-f]{32}", roles_json)
        assert "password" not in roles_json.lower()
    finally:
        for name in list(dbs.created):
            cluster.drop_database(name)
        psql(admin, f"DROP ROLE IF EXISTS {login_role}")


def test_ctrl_c_during_backup_keeps_nothing(dbs15, project, invoke_cli):
    dbs = dbs15
    admin = dbs.cluster.target()
    source = seeded(dbs, "src", SOURCE_SQL)
    bdir = project / "backups"
    env = {"DATABASE_URL": dbs.url(source), "BACKUP_DIR": str(bdir)}

    holder = source.connect()
    try:
        holder.execute("LOCK TABLE app.items IN ACCESS EXCLUSIVE MODE")
        proc = start_invoke(["backup"], cwd=project, env=env)
        res = _interrupt_while(
            proc, lambda: lock_waiters(admin, source.dbname, "pg_dump"), what="pg_dump to wait for the table lock", running=str(bdir)
        )

        assert res.returncode == ExitCode.INTERRUPTED, res.stdout + res.stderr
        assert "interrupted" in error_line(res).lower()
        assert processes_mentioning(str(bdir)) == [], "a pg_dump outlived the interrupted backup"
        assert [p.name for p in bdir.iterdir() if p.name != ".lock"] == []  # no backup, no .tmp-* staging
        listing = invoke_cli("list", env=env)
        assert "no backups in" in listing.stdout, listing.stdout
        # no server session of the backup is left waiting either (pg_dump's, or our row counts')
        wait_for(lambda: not sessions(admin, source.dbname, "pg_dump"), timeout=10, what="pg_dump's server session to end")
        ours = set(sessions(admin, source.dbname, "fortress-backup")) - {holder.info.backend_pid}
        assert not ours, "the backup's own session is still on the server"
    finally:
        holder.rollback()
        holder.close()


def _interrupt_while(proc, blocked, *, what: str, running: str, sig: int = signal.SIGINT):
    """Wait until `blocked()` says the tool is stuck on our lock, then press Ctrl-C (SIGINT to
    invoke, as a terminal does; or send `sig`, as CI does on a cancel) and return how invoke finished."""
    try:
        wait_for(lambda: blocked() or proc.poll() is not None, what=what)
        assert proc.poll() is None, proc.communicate()
        assert processes_mentioning(running), f"the tool ({running}) should be running now"
        os.kill(proc.pid, sig)
        return _finished(proc, timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_ctrl_c_during_restore_changes_nothing(dbs15, project, invoke_cli):
    dbs = dbs15
    admin = dbs.cluster.target()
    source = seeded(dbs, "src", SOURCE_SQL)
    target = seeded(dbs, "dst", TARGET_SQL)
    bdir = project / "backups"
    backup_id = engine_backup(source, bdir)
    before, files = state(target), tree(bdir)

    holder = target.connect()
    try:
        holder.execute("LOCK TABLE precious.ledger IN ACCESS SHARE MODE")  # a plain reader, mid-transaction
        proc = start_invoke(["restore", "--id", backup_id, "--yes"], cwd=project, env={"DATABASE_URL": dbs.url(target), "BACKUP_DIR": str(bdir)})
        psql_marker = f"dbname={target.dbname}"
        res = _interrupt_while(
            proc, lambda: lock_waiters(admin, target.dbname, RESTORE_PSQL), what="the restore's DROP SCHEMA to wait for the lock", running=psql_marker
        )

        assert res.returncode == ExitCode.INTERRUPTED, res.stdout + res.stderr
        line = error_line(res)
        assert "interrupted" in line.lower() and "unchanged" in line
        assert processes_mentioning(psql_marker) == [], "psql outlived the interrupted restore"
        assert processes_mentioning(str(bdir)) == [], "pg_restore outlived the interrupted restore"
        # nor does its server session linger in the lock queue, where its ACCESS EXCLUSIVE request
        # would hold up every other client of the table until the holder ends
        wait_for(lambda: not sessions(admin, target.dbname, RESTORE_PSQL), timeout=10, what="the interrupted restore's server session to end")
        with target.connect() as other_reader:
            other_reader.execute("SET lock_timeout = '3s'")
            assert other_reader.execute("SELECT count(*) FROM precious.ledger").fetchone()[0] == 60
        # the lock holder is not harmed: it finishes its transaction normally
        assert holder.execute("SELECT count(*) FROM precious.ledger").fetchone()[0] == 60
        holder.commit()
    finally:
        holder.close()
    assert state(target) == before
    assert tree(bdir) == files


def test_two_backups_in_the_same_second_get_distinct_ids(dbs15, project, invoke_cli):
    dbs = dbs15
    source = seeded(dbs, "src", SOURCE_SQL)
    target = seeded(dbs, "dst", TARGET_SQL)
    bdir = project / "backups"
    second = dt.datetime(2026, 11, 25, 12, 0, 0, 400000, tzinfo=dt.UTC)
    first_id = engine_backup(source, bdir, second)
    psql(source, "INSERT INTO app.items VALUES (301, 'added between the two backups')")
    second_id = engine_backup(source, bdir, second.replace(microsecond=900000))
    assert (first_id, second_id) == ("2026-11-25T120000Z", "2026-11-25T120000Z-2")

    env = {"DATABASE_URL": dbs.url(target), "BACKUP_DIR": str(bdir), "COLUMNS": "300"}
    listing = invoke_cli("list", "--verify", env=env)
    assert listing.returncode == 0, listing.stderr
    listed = [ln for ln in listing.stdout.splitlines() if "2026-11-25T120000Z" in ln]
    assert len(listed) == 2 and all("ok" in ln for ln in listed), listing.stdout
    # --date picks the newer of the two, and it is the one with the extra row
    res = invoke_cli("restore", "--date", "2026-11-25", "--any-source", "--yes", env=env)
    assert res.returncode == 0, res.stderr
    assert f"restored {second_id} " in res.stdout
    assert scalar(target, "SELECT count(*) FROM app.items") == 301


def test_a_second_run_while_one_holds_the_folder_is_busy(dbs15, project, invoke_cli):
    dbs = dbs15
    admin = dbs.cluster.target()
    source = seeded(dbs, "src", SOURCE_SQL)
    target = seeded(dbs, "dst", TARGET_SQL)
    bdir = project / "backups"
    earlier = engine_backup(source, bdir, dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC))
    before = state(target)
    env = {"DATABASE_URL": dbs.url(source), "BACKUP_DIR": str(bdir)}

    holder = source.connect()
    holder.execute("LOCK TABLE app.items IN ACCESS EXCLUSIVE MODE")
    first = start_invoke(["backup", "--label", "first"], cwd=project, env=env)
    try:
        wait_for(lambda: lock_waiters(admin, source.dbname, "pg_dump") or first.poll() is not None, what="the first backup to be under way")
        assert first.poll() is None, first.communicate()

        again = invoke_cli("backup", env=env, timeout=30)
        assert again.returncode == ExitCode.BUSY, again.stdout + again.stderr
        line = error_line(again)
        assert f"Another backup, restore or prune is using {bdir}" in line
        assert "wait for it to finish" in line.lower()

        restore = invoke_cli("restore", "--id", earlier, "--target", dbs.url(target), "--yes", env=env, timeout=30)
        assert restore.returncode == ExitCode.BUSY, restore.stdout + restore.stderr
        error_line(restore)
        assert state(target) == before
    finally:
        holder.rollback()
        holder.close()
    res = _finished(first)
    # the refused runs did not disturb the one under way
    assert res.returncode == 0, res.stderr
    ids = sorted(p.name for p in bdir.iterdir() if not p.name.startswith("."))
    assert len(ids) == 2 and ids[0] == earlier, ids
    assert not list(bdir.glob(".tmp-*"))


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_backups_are_private_and_ignored_by_git_once(dbs15, project, invoke_cli):
    dbs = dbs15
    source = seeded(dbs, "src", SOURCE_SQL)
    env = {"DATABASE_URL": dbs.url(source)}  # BACKUP_DIR defaults to .backups
    old = os.umask(0)  # the most permissive umask: privacy must not depend on the user's
    try:
        for _ in range(2):
            res = invoke_cli("backup", env=env)
            assert res.returncode == 0, res.stderr
    finally:
        os.umask(old)

    bdir = project / ".backups"
    assert _mode(bdir) == 0o700
    backups = [p for p in bdir.iterdir() if not p.name.startswith(".")]
    assert len(backups) == 2
    for folder in backups:
        assert _mode(folder) == 0o700, folder
        names = {p.name: _mode(p) for p in folder.iterdir()}
        assert {"manifest.json", "manifest.hmac", "app.dump", "roles.json"} <= names.keys()
        assert set(names.values()) == {0o600}, names
    assert (project / ".gitignore").read_text() == ".backups/\n.env\n"


@pytest.mark.parametrize("existing", ["node_modules/\n/.backups\n.env", "/.backups/\n*.log\n.env*\n", ".backups\n*.env\n", ".backups/*\n/.env\n"])
def test_gitignore_untouched_when_it_already_ignores_backups(dbs15, project, invoke_cli, existing):
    dbs = dbs15
    source = seeded(dbs, "src", SOURCE_SQL)
    gitignore = project / ".gitignore"
    gitignore.write_text(existing)
    stamp = gitignore.stat().st_mtime_ns

    res = invoke_cli("backup", env={"DATABASE_URL": dbs.url(source)})

    assert res.returncode == 0, res.stderr
    assert (project / ".backups").is_dir()
    assert gitignore.read_text() == existing
    assert gitignore.stat().st_mtime_ns == stamp
    assert "gitignore" not in res.stderr


def test_throwaway_servers_get_none_of_our_secrets(monkeypatch):
    """Review finding: a sandbox server (which runs the runbook files' SQL) inherited our whole
    environment, DATABASE_URL and passwords included."""
    from tasks.engine.sandbox import Cluster, server_suite

    monkeypatch.setenv("DATABASE_URL", "postgresql://u:env-secret-1@h/db")
    monkeypatch.setenv("PGPASSWORD", "env-secret-2")
    monkeypatch.setenv("BACKUP_SIGNING_KEY", "env-secret-3" * 4)
    with Cluster(server_suite(15)) as cluster:
        pid = int((cluster.root / "data" / "postmaster.pid").read_text().splitlines()[0])
        environ = Path(f"/proc/{pid}/environ").read_bytes()
        assert b"env-secret" not in environ
        # and a database name with a quote is a name, not SQL
        weird = 'we"ird db'
        cluster.create_database(weird)
        cluster.drop_database(weird)


# --- issue 8: no hangs behind locks; SIGTERM, SIGHUP and SIGKILL leave nothing behind ---------


def test_restore_blocked_by_a_lock_rolls_back_within_the_timeout_naming_the_blocker(dbs15, project, invoke_cli):
    dbs = dbs15
    source = seeded(dbs, "src", SOURCE_SQL)
    target = seeded(dbs, "dst", TARGET_SQL)
    bdir = project / "backups"
    backup_id = engine_backup(source, bdir)
    before = state(target)

    holder = target.connect()
    try:
        holder.execute("SET application_name = 'nightly-report'")
        holder.execute("LOCK TABLE precious.ledger IN ACCESS SHARE MODE")  # a reader, mid-transaction
        started = time.monotonic()
        res = invoke_cli(
            "restore", "--id", backup_id, "--yes", env={"DATABASE_URL": dbs.url(target), "BACKUP_DIR": str(bdir), "LOCK_TIMEOUT": "2s"}, timeout=60
        )
        took = time.monotonic() - started
        assert res.returncode == ExitCode.RESTORE_FAILED, res.stdout + res.stderr
        line = error_line(res)
        assert f"pid {holder.info.backend_pid} (nightly-report, idle in transaction since " in line, line
        assert "waited 2 s (LOCK_TIMEOUT)" in line and "unchanged" in line and "pg_terminate_backend" in line, line
        # the status named the blocker while waiting
        assert f"waiting for a lock held by pid {holder.info.backend_pid} (nightly-report" in res.stderr, res.stderr
        assert took < 25, f"the restore took {took:.0f} s"
        # the holder is unharmed and no session of the restore is left queued before it
        assert holder.execute("SELECT count(*) FROM precious.ledger").fetchone()[0] == 60
        holder.commit()
    finally:
        holder.close()
    assert state(target) == before


def test_backup_behind_an_access_exclusive_lock_stops_with_a_clear_message(dbs15, project, invoke_cli):
    dbs = dbs15
    admin = dbs.cluster.target()
    source = seeded(dbs, "src", SOURCE_SQL)
    bdir = project / "backups"
    holder = source.connect()
    try:
        holder.execute("LOCK TABLE app.items IN ACCESS EXCLUSIVE MODE")
        started = time.monotonic()
        res = invoke_cli("backup", env={"DATABASE_URL": dbs.url(source), "BACKUP_DIR": str(bdir), "LOCK_TIMEOUT": "2s"}, timeout=60)
        took = time.monotonic() - started
    finally:
        holder.rollback()
        holder.close()
    assert res.returncode == ExitCode.FAILED, res.stdout + res.stderr
    line = error_line(res)
    assert "waited 2 s (LOCK_TIMEOUT) for a table lock" in line and "nothing was kept" in line, line
    assert took < 25, f"the backup took {took:.0f} s"
    assert [p.name for p in bdir.iterdir() if p.name != ".lock"] == []
    assert processes_mentioning(str(bdir)) == []
    wait_for(lambda: not sessions(admin, source.dbname, "pg_dump"), timeout=10, what="pg_dump's server session to end")


def test_sigterm_during_backup_keeps_nothing(dbs15, project):
    dbs = dbs15
    admin = dbs.cluster.target()
    source = seeded(dbs, "src", SOURCE_SQL)
    bdir = project / "backups"
    holder = source.connect()
    try:
        holder.execute("LOCK TABLE app.items IN ACCESS EXCLUSIVE MODE")
        proc = start_invoke(["backup"], cwd=project, env={"DATABASE_URL": dbs.url(source), "BACKUP_DIR": str(bdir)})
        res = _interrupt_while(
            proc, lambda: lock_waiters(admin, source.dbname, "pg_dump"), what="pg_dump to wait", running=str(bdir), sig=signal.SIGTERM
        )
    finally:
        holder.rollback()
        holder.close()
    assert res.returncode == 143, res.stdout + res.stderr
    assert "interrupted by SIGTERM" in error_line(res)
    assert processes_mentioning(str(bdir)) == [], "a pg_dump outlived the stopped backup"
    assert [p.name for p in bdir.iterdir() if p.name != ".lock"] == []  # no .tmp-* staging


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_sigterm_or_sighup_during_a_blocked_restore_changes_nothing(dbs15, project, sig):
    dbs = dbs15
    admin = dbs.cluster.target()
    source = seeded(dbs, "src", SOURCE_SQL)
    target = seeded(dbs, "dst", TARGET_SQL)
    bdir = project / "backups"
    backup_id = engine_backup(source, bdir)
    before = state(target)
    holder = target.connect()
    try:
        holder.execute("LOCK TABLE precious.ledger IN ACCESS SHARE MODE")
        proc = start_invoke(["restore", "--id", backup_id, "--yes"], cwd=project, env={"DATABASE_URL": dbs.url(target), "BACKUP_DIR": str(bdir)})
        marker = f"dbname={target.dbname}"
        res = _interrupt_while(proc, lambda: lock_waiters(admin, target.dbname, RESTORE_PSQL), what="the restore to wait", running=marker, sig=sig)
        assert res.returncode == 128 + sig, res.stdout + res.stderr
        line = error_line(res)
        assert f"interrupted by {signal.Signals(sig).name}" in line and "unchanged" in line, line
        assert processes_mentioning(marker) == [], "psql outlived the stopped restore"
        wait_for(lambda: not sessions(admin, target.dbname, RESTORE_PSQL), timeout=10, what="the restore's server session to end")
        holder.commit()  # the blocker ends: nothing may go on and commit now
        time.sleep(1)
    finally:
        holder.close()
    assert state(target) == before


def test_sigkill_during_a_restore_leaves_no_orphan_and_nothing_committed(dbs15, project, invoke_cli):
    """The tool itself is killed (no clean-up of ours runs): its psql must neither go on to a
    COMMIT when the blocker ends nor keep its queued lock; the next run removes the leftovers."""
    dbs = dbs15
    admin = dbs.cluster.target()
    source = seeded(dbs, "src", SOURCE_SQL)
    target = seeded(dbs, "dst", TARGET_SQL)
    bdir = project / "backups"
    backup_id = engine_backup(source, bdir)
    before = state(target)
    holder = target.connect()
    try:
        holder.execute("LOCK TABLE precious.ledger IN ACCESS SHARE MODE")
        env = {"DATABASE_URL": dbs.url(target), "BACKUP_DIR": str(bdir)}
        proc = start_invoke(["restore", "--id", backup_id, "--yes"], cwd=project, env=env)
        marker = f"dbname={target.dbname}"
        try:
            wait_for(lambda: lock_waiters(admin, target.dbname, RESTORE_PSQL) or proc.poll() is not None, what="the restore to wait")
            assert proc.poll() is None, proc.communicate()
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        wait_for(lambda: not processes_mentioning(marker) and not processes_mentioning(str(bdir)), timeout=2, what="psql and pg_restore to die")
        wait_for(lambda: not sessions(admin, target.dbname, RESTORE_PSQL), timeout=10, what="the restore's server session to end")
        holder.commit()
        time.sleep(1)
    finally:
        holder.close()
    assert state(target) == before
    leftovers = lambda: list(Path(tempfile.gettempdir()).glob(f"fortress-{proc.pid}-*.list"))  # noqa: E731
    listing = invoke_cli("list", env=env)
    assert listing.returncode == 0, listing.stderr
    assert leftovers() == []


def test_sigkill_during_backup_the_next_list_removes_the_staging_folder(dbs15, project, invoke_cli):
    dbs = dbs15
    admin = dbs.cluster.target()
    source = seeded(dbs, "src", SOURCE_SQL)
    bdir = project / "backups"
    env = {"DATABASE_URL": dbs.url(source), "BACKUP_DIR": str(bdir)}
    holder = source.connect()
    try:
        holder.execute("LOCK TABLE app.items IN ACCESS EXCLUSIVE MODE")
        proc = start_invoke(["backup"], cwd=project, env=env)
        try:
            wait_for(lambda: lock_waiters(admin, source.dbname, "pg_dump") or proc.poll() is not None, what="pg_dump to wait")
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        wait_for(lambda: not processes_mentioning(str(bdir)), timeout=2, what="pg_dump to die with the tool")
    finally:
        holder.rollback()
        holder.close()
    assert list(bdir.glob(".tmp-*")), "the killed backup should have left its staging folder"
    listing = invoke_cli("list", env=env)
    assert listing.returncode == 0, listing.stderr
    assert list(bdir.glob(".tmp-*")) == []


def test_list_keeps_a_staging_folder_while_another_run_holds_the_lock(project, invoke_cli):
    from filelock import FileLock

    bdir = project / "backups"
    bdir.mkdir(mode=0o700)
    live = bdir / ".tmp-2026-11-30T120000Z-abc"
    live.mkdir()
    (live / "app.dump").write_bytes(b"being written")
    with FileLock(str(bdir / ".lock")):
        res = invoke_cli("list", env={"BACKUP_DIR": str(bdir)})
        assert res.returncode == 0, res.stderr
        assert live.is_dir() and "being written by a backup or restore running now" in res.stderr
    res = invoke_cli("list", env={"BACKUP_DIR": str(bdir)})
    assert res.returncode == 0 and not live.exists(), res.stderr


def test_pgport_and_target_database_url_make_one_target_for_every_connection(dbs, project, invoke_cli):
    """A URL without a port and PGPORT in the environment: the planning connection (libpq reads
    PGPORT) and psql (whose environment has no PG* variables) once went to two servers. PGPORT
    now fills in the port the URL lacks, once, for both, and the plan shows it. The target and
    its password come from TARGET_DATABASE_URL: nothing secret in argv."""
    cluster = dbs.cluster
    source = seeded(dbs, "src", SOURCE_SQL)
    target = seeded(dbs, "dst", TARGET_SQL)
    bdir = project / "backups"
    backup_id = engine_backup(source, bdir)
    log, bindir = project / "argv.log", project / "pgbin"
    _wrappers(bindir, cluster.suite.bindir, log)
    no_port = f"postgresql://postgres:{quote(PASSWORD, safe='')}@127.0.0.1/{target.dbname}"
    env = {"TARGET_DATABASE_URL": no_port, "PGPORT": str(cluster.port), "BACKUP_DIR": str(bdir), "PG_BIN_DIR": str(bindir), "COLUMNS": "300"}

    res = invoke_cli("restore", "--id", backup_id, "--yes", env=env)

    assert res.returncode == 0, res.stderr
    shown = " ".join(res.stderr.split())
    assert f"target postgresql://postgres@127.0.0.1:{cluster.port}/{target.dbname}: port from PGPORT (the URL does not say)" in shown
    assert f"postgresql://postgres@127.0.0.1:{cluster.port}/{target.dbname} (PostgreSQL" in shown  # the plan's target row
    assert f"restored {backup_id} into postgresql://postgres@127.0.0.1:{cluster.port}/{target.dbname}" in " ".join(res.stdout.split())
    src = fingerprints(source)
    assert {k: v for k, v in fingerprints(target).items() if k in src} == src
    calls = [ln for ln in log.read_text().splitlines() if " --version\t" not in ln]
    # what connects to a server (pg_dump's zstd probe names a socket that does not exist)
    connecting = [ln for ln in calls if "dbname=" in ln and "nonexistent-fortress-probe" not in ln]
    assert connecting and all(f"port={cluster.port}" in ln and ln.endswith("PGPASSWORD=set") for ln in connecting), calls
    for ln in calls:
        assert_no_secret(ln)
    assert_no_secret(res.stdout, res.stderr)


@contextlib.contextmanager
def read_only(folder: Path):
    """The folder as read-only media: a read-only bind mount as root (for whom chmod stops
    nothing), chmod -R a-w otherwise."""
    if os.geteuid() != 0:
        subprocess.run(["chmod", "-R", "a-w", str(folder)], check=True)
        try:
            yield
        finally:
            subprocess.run(["chmod", "-R", "u+w", str(folder)], check=True)
        return
    if subprocess.run(["mount", "--bind", str(folder), str(folder)], capture_output=True).returncode != 0:
        pytest.skip("cannot bind-mount here")
    try:
        subprocess.run(["mount", "-o", "remount,ro,bind", str(folder)], check=True, capture_output=True)
        yield
    finally:
        subprocess.run(["umount", str(folder)], check=True)


def test_restore_list_and_verify_from_a_read_only_folder(dbs15, project, invoke_cli):
    dbs = dbs15
    source = seeded(dbs, "src", SOURCE_SQL)
    target = seeded(dbs, "dst", TARGET_SQL)
    bdir = project / "backups"
    backup_id = engine_backup(source, bdir)
    (bdir / ".lock").unlink(missing_ok=True)
    files = tree(bdir)
    env = {"DATABASE_URL": dbs.url(target), "BACKUP_DIR": str(bdir), "COLUMNS": "300"}

    with read_only(bdir):
        with pytest.raises(OSError):
            (bdir / "probe").write_text("")
        listing = invoke_cli("list", "--verify", env=env)
        res = invoke_cli("restore", "--date", backup_id[:10], "--any-source", "--yes", env=env)
        assert tree(bdir) == files

    assert listing.returncode == 0, listing.stderr
    assert [ln for ln in listing.stdout.splitlines() if backup_id in ln and " ok " in f"{ln} "], listing.stdout
    assert res.returncode == 0, res.stderr
    assert f"{bdir} is read-only: reading it without the folder's lock (nothing can change it)" in " ".join(res.stderr.split())
    assert f"restored {backup_id} " in res.stdout
    src = fingerprints(source)
    assert {k: v for k, v in fingerprints(target).items() if k in src} == src
