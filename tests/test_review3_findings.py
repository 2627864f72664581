"""Review 3 of issue 8's guard rails, as an attacker and as a tired newcomer. Each test reproduces
one finding and fails because of it (the engine is not fixed here). Real clusters, the real CLI."""

from __future__ import annotations

import fcntl
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from tasks.engine.errors import ExitCode
from tests.conftest import PASSWORD, REPO
from tests.fixtures_cli import SOURCE_SQL, TARGET_SQL, cli_env, engine_backup, wait_for
from tests.helpers import psql, scalar, seeded, state


def _env(dbs, target, bdir, **extra):
    return {"DATABASE_URL": dbs.url(target), "BACKUP_DIR": str(bdir), **extra}


def _localhost_url(dbs, dbname: str) -> str:
    return dbs.url(dbs.cluster.target(dbname)).replace("@127.0.0.1:", "@localhost:")


# --- protected targets --------------------------------------------------------------------------


def test_protected_target_is_changed_by_yes_alone_when_spelled_localhost(dbs15, project, invoke_cli):
    """PROTECTED_TARGETS names the database as 127.0.0.1; the same server and database reached
    as `localhost` (the README's own example URL form) is restored on --yes alone. catalog.py
    already treats localhost/127.0.0.1/socket as one host for --date; is_named_by does not."""
    dbs = dbs15
    source, target = seeded(dbs, "src", SOURCE_SQL), seeded(dbs, "dst", TARGET_SQL)
    bdir = project / "backups"
    backup_id = engine_backup(source, bdir)
    before = state(target)
    env = {
        "DATABASE_URL": _localhost_url(dbs, target.dbname),
        "BACKUP_DIR": str(bdir),
        "PROTECTED_TARGETS": f"postgresql://postgres@127.0.0.1:{dbs.cluster.port}/{target.dbname}",
    }
    res = invoke_cli("restore", "--id", backup_id, "--yes", "--no-undo", env=env)
    assert res.returncode == ExitCode.DECLINED and state(target) == before, (
        f"protected target restored on --yes alone (exit {res.returncode}); target changed: {state(target) != before}"
    )


def test_protected_supabase_direct_url_does_not_protect_the_same_project_through_the_pooler(project, invoke_cli):
    """PROTECTED_TARGETS holds the project's direct URL (what the dashboard shows first); the
    same project through the session pooler (what the README recommends on IPv4) is not
    protected: reset --yes goes on to connect (exit 4 here, no network) instead of refusing (7)."""
    ref = "abcdefghijklmnopqrst"
    env = {
        "TARGET_DATABASE_URL": f"postgresql://postgres.{ref}:pw@aws-0-eu-central-1.pooler.supabase.com:5432/postgres",
        "PROTECTED_TARGETS": f"postgresql://postgres@db.{ref}.supabase.co:5432/postgres",
        "BACKUP_DIR": str(project / "backups"),
        "PGCONNECT_TIMEOUT": "2",
    }
    res = invoke_cli("reset", "--yes", "--no-undo", env=env, timeout=60)
    assert res.returncode == ExitCode.DECLINED, f"not treated as protected (exit {res.returncode}): {res.stderr[-400:]}"


# --- one resolved target ------------------------------------------------------------------------


def test_pgservice_connects_to_another_server_than_the_plan_shows_and_skips_protection(dbs15, project, invoke_cli):
    """A URL without a port plus PGSERVICE (a service file naming the port): the plan shows
    `127.0.0.1:5432`, every tool connects to the service's port, the manifest records 5432, and
    PROTECTED_TARGETS naming the real host:port does not match. Target.from_url leaves `port`
    unset whenever `service` is present, but display() prints 5432."""
    dbs = dbs15
    source, target = seeded(dbs, "src", SOURCE_SQL), seeded(dbs, "dst", TARGET_SQL)
    bdir = project / "backups"
    backup_id = engine_backup(source, bdir)
    before = state(target)
    svc = project / "pg_service.conf"
    svc.write_text(f"[prod]\nport={dbs.cluster.port}\n")
    env = {
        "DATABASE_URL": f"postgresql://postgres@127.0.0.1/{target.dbname}",  # no port
        "PGSERVICE": "prod",
        "PGSERVICEFILE": str(svc),
        "PGPASSWORD": PASSWORD,
        "BACKUP_DIR": str(bdir),
        "PROTECTED_TARGETS": f"postgresql://postgres@127.0.0.1:{dbs.cluster.port}/{target.dbname}",
    }
    res = invoke_cli("restore", "--id", backup_id, "--yes", "--no-undo", env=env)
    changed = state(target) != before
    shown = re.findall(r"postgresql://\S+", res.stderr + res.stdout)
    assert not changed, (
        f"protected target on :{dbs.cluster.port} restored on --yes alone; the run showed {sorted(set(shown))} (exit {res.returncode})"
    )


# --- no hangs -----------------------------------------------------------------------------------


def test_reset_behind_an_open_transaction_waits_forever_without_a_word(dbs15, project, invoke_cli):
    """`invoke reset` runs its DROP SCHEMA through psycopg with no lock_timeout and no blocker
    watch: behind one idle-in-transaction reader it waits without end (and its queued ACCESS
    EXCLUSIVE request stalls every other reader of the table). LOCK_TIMEOUT does not apply."""
    dbs = dbs15
    target = seeded(dbs, "dst", SOURCE_SQL)
    blocker = target.connect(search_path=None)
    try:
        blocker.execute("SELECT count(*) FROM app.items")  # an open transaction holding ACCESS SHARE
        try:
            res = invoke_cli("reset", "--yes", "--no-undo", env=_env(dbs, target, project / "backups", LOCK_TIMEOUT="2s"), timeout=25)
        except subprocess.TimeoutExpired as exc:
            pytest.fail(f"reset still waiting after 25 s with LOCK_TIMEOUT=2s; its stderr so far: {exc.stderr!r}")
        assert res.returncode == ExitCode.RESTORE_FAILED, res.stderr
        assert str(blocker.info.backend_pid) in res.stderr, res.stderr
        # and while it waited, the status line named the blocker (not only the final message)
        assert f"waiting for a lock held by pid {blocker.info.backend_pid} (" in res.stderr, res.stderr
    finally:
        blocker.close()


# --- signals ------------------------------------------------------------------------------------


def _full_pipe() -> tuple[int, int]:
    """A pipe whose buffer is already full: whoever writes to it next blocks."""
    r, w = os.pipe()
    flags = fcntl.fcntl(w, fcntl.F_GETFL)
    fcntl.fcntl(w, fcntl.F_SETFL, flags | os.O_NONBLOCK)
    try:
        while True:
            os.write(w, b"x" * 4096)
    except BlockingIOError:
        pass
    fcntl.fcntl(w, fcntl.F_SETFL, flags)
    return r, w


def test_sigterm_after_the_commit_says_nothing_was_changed(dbs15, project):
    """A CI job cancelled right after the restore committed (here: while its last lines are
    being written, stdout being a slow pipe) exits 143 with "nothing was changed": the target
    holds the backup, the undo point is kept, but neither is said. `_ui._run` turns every
    KeyboardInterrupt into that message, whatever already happened."""
    dbs = dbs15
    source, target = seeded(dbs, "src", SOURCE_SQL), seeded(dbs, "dst", TARGET_SQL)
    bdir = project / "backups"
    backup_id = engine_backup(source, bdir)
    after = state(source)
    r, w = _full_pipe()
    errpath = project / "stderr.txt"
    with open(errpath, "w") as errf:
        proc = subprocess.Popen(
            [sys.executable, "-m", "invoke", "--search-root", str(REPO), "restore", "--id", backup_id, "--yes"],
            cwd=project,
            env=cli_env(_env(dbs, target, bdir)),
            stdin=subprocess.DEVNULL,
            stdout=w,
            stderr=errf,
            start_new_session=True,
        )
    os.close(w)
    try:
        wait_for(lambda: scalar(target, "SELECT count(*) FROM app.items") == 300, timeout=60, what="the restore's commit")
        time.sleep(1.0)  # the tool is now blocked writing its "restored ..." line
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    finally:
        os.close(r)
        if proc.poll() is None:
            proc.kill()
    err = errpath.read_text()
    assert state(target) == after  # the restore did happen
    assert proc.returncode == 128 + signal.SIGTERM
    assert "nothing was changed" not in err, f"target was restored, yet the tool said: {err.splitlines()[-1]!r}"


# --- undo ---------------------------------------------------------------------------------------


def _undo_command(res) -> str:
    m = re.search(r"to put the target back: (invoke restore .*)$", res.stdout, re.M)
    assert m, res.stdout
    return m.group(1).strip()


def test_the_printed_undo_command_does_not_work_as_printed_after_backup_dir(dbs15, project, invoke_cli):
    """`restore --backup-dir X` prints `invoke restore --id ID`, without --backup-dir: run as
    printed (with --yes, as a script would) it looks in .backups and finds no such backup."""
    dbs = dbs15
    source, target = seeded(dbs, "src", SOURCE_SQL), seeded(dbs, "dst", TARGET_SQL)
    bdir = project / "archive"
    backup_id = engine_backup(source, bdir)
    before = state(target)
    env = {"DATABASE_URL": dbs.url(target)}
    res = invoke_cli("restore", "--id", backup_id, "--yes", "--backup-dir", str(bdir), env=env)
    assert res.returncode == 0, res.stderr
    printed = _undo_command(res).split()
    assert printed[:2] == ["invoke", "restore"]
    again = invoke_cli(*printed[1:], "--yes", env=env)
    assert again.returncode == 0, f"`{' '.join(printed)}` as printed: exit {again.returncode}: {again.stderr.strip().splitlines()[-1]}"
    assert state(target) == before


def test_the_printed_undo_command_after_target_says_the_word_url(dbs15, project, invoke_cli):
    """`restore --target URL` prints `... --target URL` literally: not one command that puts the
    target back; the newcomer who drops the placeholder restores the undo point into DATABASE_URL."""
    dbs = dbs15
    source, target = seeded(dbs, "src", SOURCE_SQL), seeded(dbs, "dst", TARGET_SQL)
    bdir = project / "backups"
    backup_id = engine_backup(source, bdir)
    env = {"DATABASE_URL": dbs.url(source), "BACKUP_DIR": str(bdir)}
    res = invoke_cli("restore", "--id", backup_id, "--yes", "--target", dbs.url(target), env=env)
    assert res.returncode == 0, res.stderr
    printed = _undo_command(res)
    assert not printed.endswith("--target URL"), f"printed: {printed!r}"


def test_a_restore_says_which_roles_it_created_and_its_undo_removes_them(dbs15, project, invoke_cli):
    """The restore creates the backup's missing roles (with their memberships); restoring its undo
    point removes them again (nothing uses them), so the server is back to where it was."""
    dbs = dbs15
    admin = dbs.cluster.target()
    role = f"rv3_intruder_{os.getpid()}"
    source = seeded(dbs, "src", SOURCE_SQL)
    psql(admin, f"CREATE ROLE {role} NOLOGIN")
    psql(source, f"GRANT SELECT ON app.items TO {role}")
    bdir = project / "backups"
    backup_id = engine_backup(source, bdir)
    psql(source, f"REVOKE SELECT ON app.items FROM {role}")
    psql(admin, f"DROP ROLE {role}")
    target = seeded(dbs, "dst", TARGET_SQL)
    env = _env(dbs, target, bdir)
    try:
        res = invoke_cli("restore", "--id", backup_id, "--yes", env=env)
        assert res.returncode == 0, res.stderr
        said = " ".join(res.stderr.split())
        assert f"roles created by this restore: {role}" in said and "its undo point removes them again" in said, said
        undo = invoke_cli(*_undo_command(res).split()[1:], "--yes", "--no-undo", env=env)
        assert undo.returncode == 0, undo.stderr
        assert scalar(admin, f"SELECT count(*) FROM pg_roles WHERE rolname = '{role}'") == 0, undo.stderr
    finally:
        for db in (target,):
            try:
                psql(db, f"DROP OWNED BY {role}")
            except Exception:
                pass
        psql(admin, f"DROP ROLE IF EXISTS {role}")


def test_restore_behind_an_access_exclusive_lock_never_names_the_blocker(dbs15, project, invoke_cli):
    """A migration holds ACCESS EXCLUSIVE on a table of the target. With the undo point on (the
    default) the restore must still end within LOCK_TIMEOUT naming the blocking pid, as the
    README promises for restores."""
    dbs = dbs15
    source, target = seeded(dbs, "src", SOURCE_SQL), seeded(dbs, "dst", TARGET_SQL)
    bdir = project / "backups"
    backup_id = engine_backup(source, bdir)
    blocker = target.connect(search_path=None)
    try:
        blocker.execute("LOCK TABLE app.items IN ACCESS EXCLUSIVE MODE")
        started = time.monotonic()
        try:
            res = invoke_cli("restore", "--id", backup_id, "--yes", env=_env(dbs, target, bdir, LOCK_TIMEOUT="2s"), timeout=40)
        except subprocess.TimeoutExpired as exc:
            pytest.fail(f"restore still waiting after 40 s with LOCK_TIMEOUT=2s: {exc.stderr!r}")
        took = time.monotonic() - started
        assert res.returncode != 0
        assert str(blocker.info.backend_pid) in res.stderr, f"after {took:.0f} s, exit {res.returncode}: {res.stderr.strip().splitlines()[-1]}"
    finally:
        blocker.close()
