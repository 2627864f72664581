"""Second review round (attacker and newcomer), after the first round's fixes. Each test is a
reproduction that fails for the reason of its finding. Real clusters, nothing mocked."""

from __future__ import annotations

import json
import os
import tempfile
import uuid
from pathlib import Path

import pytest

from tasks.engine import catalog
from tasks.engine.dump import create_backup
from tasks.engine.errors import RestoreFailed
from tasks.engine.restore import execute_restore, plan_restore
from tasks.engine.storage import LocalStore
from tests.helpers import psql, scalar
from tests.hostile_helpers import drop_roles


@pytest.fixture
def shared_dir():
    """A folder the throwaway server's user can write to too."""
    folder = Path(tempfile.mkdtemp(prefix="fortress-review2-"))
    os.chmod(folder, 0o1777)
    yield folder
    for p in folder.iterdir():
        p.unlink()
    folder.rmdir()


def _backup(target, tmp_path):
    store = LocalStore(tmp_path / "backups")
    result = create_backup(target, store)
    return store, catalog.load(store, result.backup_id)


def _restore(store, b, target, **kw):
    plan = plan_restore(store, b, target, **kw)
    execute_restore(plan, store)
    return plan


# --- 1. the power check is the only guard on the backup's functions; it misses what matters ------


def test_check_function_gains_no_login_role_that_reads_everything_on_hosted(hosted, tmp_path):
    """Hosted: a developer role's CHECK function runs as `postgres` (CREATEROLE, member of
    pg_read_all_data) while rows load. It creates a LOGIN role with a password it knows and
    makes it a member of pg_read_all_data (auth.users' password hashes, vault.secrets) and
    authenticated. None of this is in the power check; the plan never mentioned the role."""
    dev, evil = f"dev{uuid.uuid4().hex[:6]}", f"evil{uuid.uuid4().hex[:6]}"
    src = hosted.new_project(f"src_{uuid.uuid4().hex[:6]}")
    psql(src, f"CREATE ROLE {dev} NOLOGIN; GRANT {dev} TO postgres; CREATE SCHEMA devs AUTHORIZATION {dev}")
    try:
        psql(
            src,
            f"""SET ROLE {dev};
CREATE FUNCTION devs.ok(int) RETURNS boolean LANGUAGE plpgsql AS $f$
BEGIN
  BEGIN
    EXECUTE 'CREATE ROLE {evil} LOGIN PASSWORD ''known-pw''';
    BEGIN EXECUTE 'GRANT pg_read_all_data TO {evil}'; EXCEPTION WHEN others THEN NULL; END;  -- 15
    EXECUTE 'GRANT authenticated TO {evil}';
  EXCEPTION WHEN others THEN NULL;  -- at the source `{dev}` may not: nothing happens
  END;
  RETURN true;
END $f$;
CREATE TABLE devs.t (id int CHECK (devs.ok(id)));
INSERT INTO devs.t VALUES (1);""",
        )
        assert not scalar(hosted.admin(src), f"SELECT count(*) FROM pg_roles WHERE rolname = '{evil}'")
        store, b = _backup(src, tmp_path)
        target = hosted.new_project()
        # refused before COMMIT: the plan lists no such role
        with pytest.raises(RestoreFailed, match="roles or memberships its plan does not list"):
            _restore(store, b, target)
        got = scalar(
            hosted.admin("template1"),
            f"SELECT string_agg(g.rolname, ', ') FROM pg_roles r LEFT JOIN pg_auth_members m ON m.member = r.oid "
            f"LEFT JOIN pg_roles g ON g.oid = m.roleid WHERE r.rolname = '{evil}'",
        )
        assert got is None, f"a restore as hosted postgres (exit 0) left a LOGIN role {evil}, password known to the source, member of: {got}"
    finally:
        hosted.drop_project(src.dbname)
        hosted.new_project()
        drop_roles(hosted.admin("template1"), evil, dev)


# --- 2. pg_cron jobs -------------------------------------------------------------------------------


def _cron_project(platform):
    project = platform.new_project()
    platform.enable_pg_cron(project)
    return project


def _jobs(platform, target):
    with platform.admin(target).connect() as conn:
        return conn.execute("SELECT jobname, command, database, username FROM cron.job ORDER BY jobid").fetchall()


def test_postgres_job_keeps_running_as_postgres_when_a_superuser_restores(hosted15_a, tmp_path):
    """A job of `postgres` (the backup's user) comes back as a job of whoever restores: restored
    by the platform's superuser (self-hosted, the CLI's local stack) it runs as a superuser, though
    `postgres` exists on the target. Over the same project the old job is not even replaced
    (unschedule looks for the superuser's job of that name), so it runs twice."""
    hosted = hosted15_a
    project = _cron_project(hosted)
    psql(project, "SELECT cron.schedule('nightly', '0 0 29 2 *', $$SELECT current_user$$)")
    store, b = _backup(project, tmp_path)
    plan = _restore(store, b, hosted.admin(project))
    jobs = _jobs(hosted, project)
    assert jobs == [("nightly", "SELECT current_user", "postgres", "postgres")], f"plan said {plan.cron_jobs} (no user shown); jobs now: {jobs}"


def test_a_project_with_an_unnamed_job_can_be_restored(hosted15_a, tmp_path):
    """cron.schedule(schedule, command), the form pg_cron's README shows first, makes a job
    without a name. The backup records it (name null); the restore passes NULL as the name to
    cron.schedule_in_database, which refuses it: every restore of such a project fails (exit 6),
    into a new project and over the same one."""
    hosted = hosted15_a
    project = _cron_project(hosted)
    psql(project, "SELECT cron.schedule('0 0 29 2 *', $$SELECT 1$$)")
    store, b = _backup(project, tmp_path)
    try:
        _restore(store, b, project)
    except Exception as exc:
        pytest.fail(f"a project with one unnamed pg_cron job cannot be restored: {exc}")
    jobs = _jobs(hosted, project)
    assert len(jobs) == 1, f"a restore over the same project left {len(jobs)} copies of one job: {jobs}"


# --- 3. platform roles recognised by the bootstrap superuser's grants: app roles lost on 16+ -------


def test_app_roles_created_with_createrole_self_grant_travel(hosted17_a, tmp_path):
    """PostgreSQL 16+: every CREATE ROLE by a non-superuser records an implicit membership of its
    creator, granted by the bootstrap superuser. platform_made_roles takes a role for the
    platform's unless that grant went to the backup's user: a role created by a delegated
    CREATEROLE admin (an app role made by an app role) is silently left out of the backup (only
    the manifest's "skipped" list shows it); restoring into a new project then fails at its GRANTs."""
    hosted = hosted17_a
    admin_role, reader, reporter = (f"{p}{uuid.uuid4().hex[:6]}" for p in ("admin", "reader", "reporter"))
    project = hosted.new_project()
    psql(
        project,
        f"""CREATE TABLE public.sales (id int);
SET createrole_self_grant = 'set, inherit';
CREATE ROLE {reader} NOLOGIN;
RESET createrole_self_grant;
CREATE ROLE {admin_role} NOLOGIN CREATEROLE;
GRANT {admin_role} TO postgres;
SET ROLE {admin_role};
CREATE ROLE {reporter} NOLOGIN;
RESET ROLE;
GRANT SELECT ON public.sales TO {reader}, {reporter};""",
    )
    try:
        store, b = _backup(project, tmp_path)
        app_roles = set(b.record.app_roles)
        skipped = set(json.loads(b.manifest_bytes)["roles"]["skipped"])
        assert {reader, reporter} <= app_roles, f"app roles left out of the backup as platform roles: {sorted({reader, reporter} & skipped)}"
    finally:
        hosted.new_project()
        drop_roles(hosted.admin("template1"), reader, reporter, admin_role)


# --- 4. newcomer: Supabase's own Prisma recipe makes every restore into a new project fail ------------


@pytest.mark.parametrize("major", [15, 17])
def test_tables_owned_by_a_prisma_role_restore_into_a_new_project(major, request, tmp_path):
    """Supabase's Prisma guide: `create user prisma ...; grant prisma to postgres; grant usage,
    create on schema public to prisma`, then Prisma migrates as `prisma`. Restoring that project
    into a new one as `postgres` fails: the membership of postgres in the role it creates is
    skipped ("PG16+ gives a role's creator ADMIN already"; 15 gives nothing, 16+ gives no SET),
    and the schema privileges the new owner needs come only after the data. The replica says
    `must be member of role "prisma"` (15); exit 6 both ways."""
    src = request.getfixturevalue(f"hosted{major}_a")
    dst = request.getfixturevalue(f"hosted{major}_b")
    role = f"prisma{uuid.uuid4().hex[:6]}"
    source = src.new_project()
    psql(
        source,
        f"""CREATE USER {role} WITH PASSWORD 'x' CREATEDB;
GRANT {role} TO postgres;
GRANT USAGE ON SCHEMA public TO {role};
GRANT CREATE ON SCHEMA public TO {role};
SET ROLE {role};
CREATE TABLE public.orders (id int PRIMARY KEY, total numeric);
INSERT INTO public.orders VALUES (1, 9.5);""",
    )
    try:
        store, b = _backup(source, tmp_path)
        target = dst.new_project()
        try:
            _restore(store, b, target)
        except Exception as exc:
            pytest.fail(f"a project set up by Supabase's Prisma guide cannot be restored into a new project: {exc}")
        assert scalar(dst.admin(target), "SELECT pg_get_userbyid(relowner) FROM pg_class WHERE oid = 'public.orders'::regclass") == role
    finally:
        for p in (src, dst):
            p.new_project()
            drop_roles(p.admin("template1"), role)
