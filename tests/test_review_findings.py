"""Review findings on the restore/runbook change (issue 6), each a reproduction that fails for
the reason of its finding. Real clusters, real CLI, nothing mocked."""

from __future__ import annotations

import os
import tempfile
import uuid
from pathlib import Path

import pytest

from tests.fixtures_cli import SOURCE_SQL, TARGET_SQL, engine_backup
from tests.helpers import psql, scalar, seeded, state
from tests.hostile_helpers import drop_roles, env_for, shown

DAY = "2026-11-20"


@pytest.fixture
def shared_dir():
    """A folder the throwaway server's user can write to too (it runs as postgres/nobody under root)."""
    folder = Path(tempfile.mkdtemp(prefix="fortress-review-"))
    os.chmod(folder, 0o1777)
    yield folder
    for p in folder.iterdir():
        p.unlink()
    folder.rmdir()


# --- 1. a function body in a signed backup makes the restoring superuser grant SUPERUSER -----------

def test_check_constraint_function_in_a_signed_backup_grants_nothing(dbs, project, invoke_cli):
    eve = f"eve{uuid.uuid4().hex[:6]}"
    admin = dbs.cluster.target()
    psql(admin, f"CREATE ROLE {eve} LOGIN")
    try:
        source = dbs.new("src")
        psql(source, f"GRANT CREATE ON SCHEMA public TO {eve}")
        psql(source, f"""SET ROLE {eve};
CREATE FUNCTION public.ok(int) RETURNS boolean LANGUAGE plpgsql AS $f$
BEGIN
  IF (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user) THEN
    EXECUTE 'ALTER ROLE {eve} SUPERUSER';
  END IF;
  RETURN true;
END $f$;
CREATE TABLE public.t (id int CHECK (public.ok(id)));
INSERT INTO public.t VALUES (1);""")
        bdir = project / "backups"
        backup_id = engine_backup(source, bdir)  # signed with this machine's key
        target = dbs.new("dst")
        res = invoke_cli("restore", "--id", backup_id, "--yes", env=env_for(dbs.url(target), bdir))
        assert res.returncode == 0, shown(res)
        assert not scalar(admin, f"SELECT rolsuper FROM pg_roles WHERE rolname = '{eve}'"), \
            f"an ordinary table owner's CHECK function made {eve} SUPERUSER during the restore:\n" + shown(res)
    finally:
        dbs.cleanup()
        dbs.created.clear()
        drop_roles(admin, eve)


# --- 2. a runbook file runs a shell command on this machine, before any plan or confirmation -------

def _runbook(project, text: str) -> Path:
    bdir = project / "backups"
    bdir.mkdir(exist_ok=True)
    (bdir / f"dump-{DAY}.sql").write_text(text)
    return bdir


def test_runbook_file_cannot_lend_itself_server_program_rights_on_15(dbs15, project, invoke_cli, shared_dir):
    """PostgreSQL 15 CREATEROLE may grant any non-superuser role, pg_execute_server_program
    included; the loading role keeps the target user's CREATEROLE in the throwaway server."""
    target = seeded(dbs15, "dst", TARGET_SQL)
    bdir = _runbook(project, f"""CREATE TABLE public.t (x int);
GRANT pg_execute_server_program TO CURRENT_USER;
COPY (SELECT 1) TO PROGRAM 'id > {shared_dir}/pwned';
""")
    # no --yes and no terminal: the restore must refuse before doing anything with the file
    res = invoke_cli("restore", "--date", DAY, env=env_for(dbs15.url(target), bdir))
    assert res.returncode != 0, shown(res)
    assert not (shared_dir / "pwned").exists(), \
        "a runbook file ran a shell command on the restoring machine, though the restore was never confirmed:\n" \
        + shown(res)


def test_runbook_file_cannot_hijack_the_sandbox_superusers_search_path(dbs17, project, invoke_cli, shared_dir):
    """The loading role owns the throwaway database: it sets the database's search_path so the
    superuser's own catalog queries (current_setting(...) in dbinfo.server_info) call its function."""
    target = seeded(dbs17, "dst", TARGET_SQL)
    bdir = _runbook(project, r"""CREATE TABLE public.t (x int);
CREATE FUNCTION public.current_setting(text) RETURNS text LANGUAGE plpgsql AS $f$
BEGIN
  IF (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user) THEN
    EXECUTE 'COPY (SELECT 1) TO PROGRAM ''id > MARK/pwned''';
  END IF;
  RETURN pg_catalog.current_setting($1);
END $f$;
DO $d$ BEGIN EXECUTE pg_catalog.format('ALTER DATABASE %I SET search_path = public, pg_catalog',
                                       pg_catalog.current_database()); END $d$;
""".replace("MARK", str(shared_dir)))
    res = invoke_cli("restore", "--date", DAY, env=env_for(dbs17.url(target), bdir))
    assert res.returncode != 0, shown(res)
    assert not (shared_dir / "pwned").exists(), \
        "a runbook file ran a shell command on the restoring machine, though the restore was never confirmed:\n" \
        + shown(res)


# --- 3. `invoke backup` as a superuser runs the database owner's functions -------------------------

def test_backup_runs_no_function_of_the_database_owner(dbs, project, invoke_cli):
    owner = f"own{uuid.uuid4().hex[:6]}"
    admin = dbs.cluster.target()
    name = f"app_{uuid.uuid4().hex[:6]}"
    psql(admin, f"CREATE ROLE {owner} LOGIN PASSWORD 'pw'")
    psql(admin, f"CREATE DATABASE {name} OWNER {owner}")
    try:
        as_owner = dbs.cluster.target(name)
        psql(as_owner, f"""SET ROLE {owner};
CREATE FUNCTION public.current_setting(text) RETURNS text LANGUAGE plpgsql AS $f$
BEGIN
  IF (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user) THEN
    EXECUTE 'ALTER ROLE {owner} SUPERUSER';
  END IF;
  RETURN pg_catalog.current_setting($1);
END $f$;
CREATE TABLE public.t (x int);
ALTER DATABASE {name} SET search_path = public, pg_catalog;""")
        res = invoke_cli("backup", env={"DATABASE_URL": dbs.cluster.url(name), "BACKUP_DIR": str(project / "b")})
        assert res.returncode == 0, shown(res)
        assert not scalar(admin, f"SELECT rolsuper FROM pg_roles WHERE rolname = '{owner}'"), \
            f"`invoke backup` as a superuser made the database owner {owner} SUPERUSER:\n" + shown(res)
    finally:
        dbs.cluster.drop_database(name)
        drop_roles(admin, owner)
