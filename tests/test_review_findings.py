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
        psql(
            source,
            f"""SET ROLE {eve};
CREATE FUNCTION public.ok(int) RETURNS boolean LANGUAGE plpgsql AS $f$
BEGIN
  IF (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user) THEN
    EXECUTE 'ALTER ROLE {eve} SUPERUSER';
  END IF;
  RETURN true;
END $f$;
CREATE TABLE public.t (id int CHECK (public.ok(id)));
INSERT INTO public.t VALUES (1);""",
        )
        bdir = project / "backups"
        backup_id = engine_backup(source, bdir)  # signed with this machine's key
        target = dbs.new("dst")
        before = state(target)
        res = invoke_cli("restore", "--id", backup_id, "--yes", env=env_for(dbs.url(target), bdir))
        # refused before COMMIT by the power check, everything rolled back
        assert res.returncode == 6 and "power over the server" in res.stderr, shown(res)
        assert state(target) == before
        assert not scalar(admin, f"SELECT rolsuper FROM pg_roles WHERE rolname = '{eve}'"), (
            f"an ordinary table owner's CHECK function made {eve} SUPERUSER during the restore:\n" + shown(res)
        )
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
    bdir = _runbook(
        project,
        f"""CREATE TABLE public.t (x int);
GRANT pg_execute_server_program TO CURRENT_USER;
COPY (SELECT 1) TO PROGRAM 'id > {shared_dir}/pwned';
""",
    )
    # no --yes and no terminal: the restore must refuse before doing anything with the file
    res = invoke_cli("restore", "--date", DAY, env=env_for(dbs15.url(target), bdir))
    assert res.returncode != 0, shown(res)
    assert not (shared_dir / "pwned").exists(), (
        "a runbook file ran a shell command on the restoring machine, though the restore was never confirmed:\n" + shown(res)
    )


def test_runbook_file_cannot_hijack_the_sandbox_superusers_search_path(dbs17, project, invoke_cli, shared_dir):
    """The loading role owns the throwaway database: it sets the database's search_path so the
    superuser's own catalog queries (current_setting(...) in dbinfo.server_info) call its function."""
    target = seeded(dbs17, "dst", TARGET_SQL)
    bdir = _runbook(
        project,
        r"""CREATE TABLE public.t (x int);
CREATE FUNCTION public.current_setting(text) RETURNS text LANGUAGE plpgsql AS $f$
BEGIN
  IF (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user) THEN
    EXECUTE 'COPY (SELECT 1) TO PROGRAM ''id > MARK/pwned''';
  END IF;
  RETURN pg_catalog.current_setting($1);
END $f$;
DO $d$ BEGIN EXECUTE pg_catalog.format('ALTER DATABASE %I SET search_path = public, pg_catalog',
                                       pg_catalog.current_database()); END $d$;
""".replace("MARK", str(shared_dir)),
    )
    res = invoke_cli("restore", "--date", DAY, env=env_for(dbs17.url(target), bdir))
    assert res.returncode != 0, shown(res)
    assert not (shared_dir / "pwned").exists(), (
        "a runbook file ran a shell command on the restoring machine, though the restore was never confirmed:\n" + shown(res)
    )


# --- 3. `invoke backup` as a superuser runs the database owner's functions -------------------------


def test_backup_runs_no_function_of_the_database_owner(dbs, project, invoke_cli):
    owner = f"own{uuid.uuid4().hex[:6]}"
    admin = dbs.cluster.target()
    name = f"app_{uuid.uuid4().hex[:6]}"
    psql(admin, f"CREATE ROLE {owner} LOGIN PASSWORD 'pw'")
    psql(admin, f"CREATE DATABASE {name} OWNER {owner}")
    try:
        as_owner = dbs.cluster.target(name)
        psql(
            as_owner,
            f"""SET ROLE {owner};
CREATE FUNCTION public.current_setting(text) RETURNS text LANGUAGE plpgsql AS $f$
BEGIN
  IF (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user) THEN
    EXECUTE 'ALTER ROLE {owner} SUPERUSER';
  END IF;
  RETURN pg_catalog.current_setting($1);
END $f$;
CREATE TABLE public.t (x int);
ALTER DATABASE {name} SET search_path = public, pg_catalog;""",
        )
        res = invoke_cli("backup", env={"DATABASE_URL": dbs.cluster.url(name), "BACKUP_DIR": str(project / "b")})
        assert res.returncode == 0, shown(res)
        assert not scalar(admin, f"SELECT rolsuper FROM pg_roles WHERE rolname = '{owner}'"), (
            f"`invoke backup` as a superuser made the database owner {owner} SUPERUSER:\n" + shown(res)
        )
    finally:
        dbs.cluster.drop_database(name)
        drop_roles(admin, owner)


# --- 4. "rolled back, unchanged" after a statement in the backup committed part of the restore ------


def test_failed_restore_says_unchanged_only_when_nothing_was_committed(dbs, project, invoke_cli):
    """A tampered (unsigned) archive, restored with --allow-unsigned: a COMMIT in a TOC entry, then
    an error. The transaction check only runs at the end, so the error path still says 'unchanged'."""
    from tests.hostile_helpers import unsigned_with_sql_in_comment

    source, bdir, backup_id = unsigned_with_sql_in_comment(dbs, project, b"COMMIT;SELECT 1/0;--", on="TABLE app.items")
    target = seeded(dbs, "dst", TARGET_SQL)
    before = state(target)
    res = invoke_cli("restore", "--id", backup_id, "--yes", "--allow-unsigned", env=env_for(dbs.url(target), bdir))
    assert res.returncode != 0, shown(res)
    if " is unchanged" in res.stderr:
        assert state(target) == before, "the restore said the target is unchanged, but it was reset:\n" + shown(res)


# --- 5. files are verified at plan time and read again after the confirmation ----------------------


def test_files_swapped_after_the_plan_are_not_restored(dbs, project):
    """The prompt can wait for minutes; whoever can write the backup folder swaps app.dump in
    between. The checksums were checked once, before the prompt, and are never checked again."""
    from tasks.engine import catalog
    from tasks.engine.restore import execute_restore, plan_restore
    from tasks.engine.storage import LocalStore

    source = seeded(dbs, "src", SOURCE_SQL)
    other = seeded(dbs, "oth", SOURCE_SQL.replace("md5(g::text)", "'evil ' || g"))  # same row counts
    bdir, odir = project / "backups", project / "other"
    backup_id = engine_backup(source, bdir)
    other_id = engine_backup(other, odir)
    store = LocalStore(bdir)
    target = dbs.new("dst")
    plan = plan_restore(store, catalog.load(store, backup_id), target)
    assert plan.authenticity.ok and plan.checked_files
    (bdir / backup_id / "app.dump").write_bytes((odir / other_id / "app.dump").read_bytes())  # while the prompt waits
    try:
        execute_restore(plan, store)
    except Exception:
        return  # refused: what we want
    assert scalar(target, "SELECT count(*) FROM app.items WHERE v LIKE 'evil%'") == 0, (
        "a file changed after its checksum was verified was restored, and the restore reported success"
    )


# --- newcomer: words and messages -------------------------------------------------------------------


def test_first_backup_says_it_signed_and_where_the_key_is(dbs, project, invoke_cli, tmp_path):
    """The first backup silently creates ~/.config/fortress-backup/signing.key; on any other
    machine every backup is then 'unauthenticated' and the hint says to set BACKUP_SIGNING_KEY
    'to the key it was made with', a key the person never heard of."""
    source = seeded(dbs, "src", SOURCE_SQL)
    res = invoke_cli("backup", env={"DATABASE_URL": dbs.url(source), "BACKUP_DIR": str(project / "b"), "XDG_CONFIG_HOME": str(tmp_path / "cfg")})
    assert res.returncode == 0, shown(res)
    assert (tmp_path / "cfg" / "fortress-backup" / "signing.key").exists()
    assert "signing.key" in res.stdout + res.stderr, "the backup created a signing key without saying so or where it is:\n" + shown(res)


def test_also_reach_help_shows_it_takes_a_schema(invoke_cli):
    res = invoke_cli("restore", "--help")
    assert "--also-reach=STRING" in res.stdout, "--also-reach is shown as an on/off flag:\n" + res.stdout


def test_a_manifest_that_disagrees_with_its_archive_is_not_called_fixable_by_rerunning(dbs, project, invoke_cli):
    from tests.helpers import resign
    from tests.hostile_helpers import read_manifest, write_manifest

    source = seeded(dbs, "src", SOURCE_SQL)
    bdir = project / "backups"
    backup_id = engine_backup(source, bdir)
    m = read_manifest(bdir / backup_id)
    m["tables"][0]["rows"] = 5
    write_manifest(bdir / backup_id, m)
    resign(bdir / backup_id)
    target = dbs.new("dst")
    res = invoke_cli("restore", "--id", backup_id, "--yes", env=env_for(dbs.url(target), bdir))
    assert res.returncode != 0, shown(res)
    last = res.stderr.strip().splitlines()[-1]
    assert "run the restore again" not in last, "the hint sends the person round in a loop: " + last
