"""Issue 7: back up and restore a HOSTED Supabase project as its own `postgres`, which is not a
superuser (tests/supabase/hosted.sql: hosted's grants, supautils emulated, real pg_cron where the
server has it), on PostgreSQL 15 and 17.

The app (tests/supabase/app.sql + hosted_app.sql + the jobs below): RLS, a trigger on auth.users,
storage policies, a realtime publication table, a partitioned table, large objects, a
materialized view, pg_cron jobs (PostgreSQL 15: Debian's postgresql-15-cron; the PostgreSQL 17
wheel has none, so the pg_cron parts are skipped there with the reason) and a supabase_migrations
history. It is backed up and restored as `postgres` into a brand-new project and over the same
project, and must come back with every table, object, grant and job identical; and the four
failures the issue lists must not happen.
"""

from __future__ import annotations

import pytest

from tasks.engine import catalog
from tasks.engine.dump import create_backup
from tasks.engine.errors import BackupError
from tasks.engine.platform import SUPABASE
from tasks.engine.restore import execute_reset, execute_restore, plan_reset, plan_restore
from tasks.engine.storage import LocalStore
from tests.helpers import fingerprints, scalar, schema_dump
from tests.supabase_platform import APP_ROLES, APP_USERS, HOSTED_PLATFORM_ROLES, HostedPlatform

APP_SCHEMAS = ["public", "supabase_migrations"]
PLATFORM_DATA = ["auth", "storage"]
PLATFORM_MIGRATIONS = ("auth.schema_migrations", "storage.migrations")

# Schedules that never fire while the tests run (29 February; the scheduler is stopped anyway).
JOBS_SQL = """
SELECT cron.schedule('nightly-cleanup', '0 0 29 2 *', $$DELETE FROM public.scenarios WHERE title = 'never'$$);
SELECT cron.schedule('refresh-revenue', '15 3 29 2 *', 'REFRESH MATERIALIZED VIEW CONCURRENTLY public.project_revenue');
SELECT cron.schedule('weekly report', '0 4 29 2 1', $$SELECT count(*) FROM public.projects$$);
SELECT cron.alter_job(jobid, active := false) FROM cron.job WHERE jobname = 'weekly report';
"""
# One run in the history (pg_cron writes it as its scheduler runs a job): history, not restored.
HISTORY_SQL = """
INSERT INTO cron.job_run_details (jobid, runid, job_pid, database, username, command, status, return_message,
                                  start_time, end_time)
SELECT jobid, 4711, 123, 'postgres', 'postgres', command, 'succeeded', 'DELETE 0',
       '2026-10-01 00:00:00+00', '2026-10-01 00:00:01+00'
FROM cron.job WHERE jobname = 'nightly-cleanup'
"""


# -- helpers ------------------------------------------------------------------------------------


def backup(target, tmp_path, **kw):
    store = LocalStore(tmp_path / "backups")
    result = create_backup(target, store, **kw)
    return store, catalog.load(store, result.backup_id), result


def restore(store, b, target, **kw):
    plan = plan_restore(store, b, target, **kw)
    execute_restore(plan, store)
    return plan


def fresh_platform(request, like: HostedPlatform) -> HostedPlatform:
    """A new cluster of the same major that has never seen the app's roles: a brand-new project."""
    platform = HostedPlatform(like.suite, label="new")
    platform.start()
    request.addfinalizer(platform.stop)
    return platform


def has_cron(platform: HostedPlatform, target) -> bool:
    return bool(scalar(platform.admin(target), "SELECT count(*) FROM pg_extension WHERE extname = 'pg_cron'"))


def make_app(platform: HostedPlatform, *, cron: bool) -> object:
    """A fresh project with the whole app loaded as `postgres` (jobs where pg_cron exists)."""
    project = platform.new_project()
    if cron and not platform.cron_missing:
        platform.enable_pg_cron(project)
    platform.load_app(project)
    if cron and not platform.cron_missing:
        with project.connect() as conn:
            conn.execute(JOBS_SQL)
            conn.commit()
        with platform.admin(project).connect() as conn:
            conn.execute(HISTORY_SQL)
    return project


def contents(platform, target) -> dict:
    """Every app table and every platform data table (less the platform's migration history)."""
    fp = fingerprints(platform.admin(target), SUPABASE, APP_SCHEMAS + PLATFORM_DATA)
    return {k: v for k, v in fp.items() if k not in PLATFORM_MIGRATIONS}


def whole_schema(platform, target) -> str:
    """pg_dump --schema-only of the whole database, platform included, as the superuser: every
    object, policy, trigger, grant, default privilege, publication membership."""
    return schema_dump(platform.admin(target))


def jobs(platform, target) -> list[tuple]:
    if not has_cron(platform, target):
        return []
    with platform.admin(target).connect() as conn:
        return conn.execute("SELECT jobname, schedule, command, database, username, active FROM cron.job ORDER BY jobname").fetchall()


def history(platform, target) -> list[tuple]:
    if not has_cron(platform, target):
        return []
    with platform.admin(target).connect() as conn:
        return conn.execute("SELECT runid, command, status FROM cron.job_run_details ORDER BY runid").fetchall()


def large_objects(platform, target) -> list[tuple]:
    with platform.admin(target).connect() as conn:
        return conn.execute(
            "SELECT pg_get_userbyid(m.lomowner), m.lomacl::text, obj_description(m.oid, 'pg_largeobject'), "
            "       md5(lo_get(m.oid)) FROM pg_largeobject_metadata m ORDER BY 4"
        ).fetchall()


def memberships(platform) -> set[tuple]:
    """Every membership on the cluster, with grantor and admin option."""
    with platform.admin("template1").connect() as conn:
        return set(
            conn.execute(
                "SELECT r.rolname, m.rolname, g.rolname, a.admin_option FROM pg_auth_members a "
                "JOIN pg_roles r ON r.oid = a.roleid JOIN pg_roles m ON m.oid = a.member "
                "JOIN pg_roles g ON g.oid = a.grantor"
            ).fetchall()
        )


def platform_memberships(platform) -> set[tuple]:
    """Memberships that involve no app role: the platform's, which a restore must never change."""
    return {m for m in memberships(platform) if m[0] not in APP_ROLES and m[1] not in APP_ROLES}


def extension_acls(platform, target) -> list[tuple]:
    with platform.admin(target).connect() as conn:
        return conn.execute(
            "SELECT p.oid::regprocedure::text, p.proacl::text FROM pg_proc p JOIN pg_depend d "
            "ON d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e' ORDER BY 1"
        ).fetchall()


def state(platform, target) -> dict:
    return {
        "contents": contents(platform, target),
        "schema": whole_schema(platform, target),
        "jobs": jobs(platform, target),
        "large objects": large_objects(platform, target),
        "matview": scalar(platform.admin(target), "SELECT string_agg(name || '=' || revenue, ',' ORDER BY name) FROM public.project_revenue"),
    }


def assert_same(after: dict, before: dict) -> None:
    for key in before:
        assert after[key] == before[key], f"{key} differ"


# -- the platform itself (so a failure below is the engine's, not the setup's) -------------------


def test_platform_is_hosted_shaped(hosted):
    project = hosted.new_project()
    hosted.load_app(project)
    with project.connect() as conn:
        row = conn.execute(
            "SELECT rolsuper, rolcreatedb, rolcreaterole, rolreplication, rolbypassrls FROM pg_roles WHERE rolname = current_user"
        ).fetchone()
        assert row == (False, True, True, True, True)
        granted = {
            r[0]
            for r in conn.execute("SELECT b.rolname FROM pg_auth_members m JOIN pg_roles b ON b.oid = m.roleid WHERE m.member = 'postgres'::regrole")
        }
        assert {
            "anon",
            "authenticated",
            "service_role",
            "pg_read_all_data",
            "pg_monitor",
            "pg_signal_backend",
            "duckdb_role",
            "supabase_superuser",
        } <= granted
        assert not granted & {"supabase_auth_admin", "supabase_storage_admin", "supabase_realtime_admin"}
        q = (
            "SELECT has_schema_privilege('auth', 'CREATE'), has_schema_privilege('storage', 'CREATE'), "
            "has_table_privilege('storage.objects', 'DELETE WITH GRANT OPTION'), "
            "has_table_privilege('auth.users', 'INSERT, TRUNCATE, TRIGGER, REFERENCES'), "
            "has_table_privilege('auth.schema_migrations', 'INSERT'), "
            "has_function_privilege('extensions.algorithm_sign(text,text,text)', 'EXECUTE WITH GRANT OPTION')"
        )
        assert conn.execute(q).fetchone() == (False, False, True, True, False, True)
        # supautils' allowed settings: session_replication_role
        conn.execute("SET session_replication_role = replica")
        conn.execute("RESET session_replication_role")
        # policy and trigger grants on platform tables, and nothing more
        conn.execute("CREATE POLICY probe ON auth.users FOR SELECT USING (false)")
        conn.execute("DROP POLICY probe ON auth.users")
        conn.execute("DROP TRIGGER on_auth_user_created ON auth.users")
        conn.rollback()
        for refused in (
            "ALTER TABLE auth.users ENABLE ROW LEVEL SECURITY",
            "COMMENT ON POLICY \"Avatars are public\" ON storage.objects IS 'x'",
            "ALTER TABLE auth.users ENABLE ALWAYS TRIGGER on_auth_user_created",
            "GRANT SELECT ON auth.users TO fortress_app",
            "DROP TABLE storage.buckets CASCADE",
        ):
            with pytest.raises(Exception, match="must be owner|no privileges|permission denied"):
                conn.execute(refused)
            conn.rollback()
    # the platform's grants on extension members have no pg_init_privs entry: pg_dump writes them
    assert (
        scalar(hosted.admin(project), "SELECT count(*) FROM pg_init_privs WHERE objoid = 'extensions.algorithm_sign(text,text,text)'::regprocedure")
        == 0
    )
    if not hosted.cron_missing:
        hosted.enable_pg_cron(project)
        with project.connect() as conn:
            conn.execute("SELECT cron.schedule('probe', '0 0 29 2 *', 'SELECT 1')")
            assert conn.execute("SELECT username FROM cron.job WHERE jobname = 'probe'").fetchone() == ("postgres",)
            with pytest.raises(Exception, match="permission denied for table job"):
                conn.execute("DELETE FROM cron.job")


# -- Done when: a brand-new project and the same project ----------------------------------------


@pytest.mark.parametrize("major", [15, 17])
def test_restore_into_a_brand_new_project(major, request, tmp_path):
    src = request.getfixturevalue(f"hosted{major}_a")
    source = make_app(src, cron=True)
    before = state(src, source)
    src_history = history(src, source)
    dst = fresh_platform(request, src)
    target = dst.new_project()
    if before["jobs"]:
        dst.enable_pg_cron(target)  # the user enables pg_cron in the new project's dashboard
    dst_platform_members = platform_memberships(dst)

    store, b, result = backup(source, tmp_path)
    restore(store, b, target)

    assert_same(state(dst, target), before)
    if before["jobs"]:
        assert src_history, "the source had history to leave behind"
        assert history(dst, target) == [], "cron.job_run_details is history: not restored"
    assert scalar(target, "SELECT count(*) FROM public.profiles") == len(APP_USERS)
    assert platform_memberships(dst) == dst_platform_members
    with dst.admin().connect() as conn:
        assert dict(conn.execute("SELECT rolname, rolpassword IS NULL FROM pg_authid WHERE rolname = ANY(%s)", [list(APP_ROLES)]).fetchall()) == {
            r: True for r in APP_ROLES
        }


def test_restore_over_the_same_project(hosted, tmp_path):
    """The runbook: `reset`, then restore over the same project, as `postgres`."""
    project = make_app(hosted, cron=True)
    before = state(hosted, project)
    members = platform_memberships(hosted)
    store, b, _ = backup(project, tmp_path)

    # life goes on: a signup (its trigger adds a profile), an upload, a policy, a table, a large
    # object, a new job and a changed one
    with project.connect() as conn:
        conn.execute("INSERT INTO auth.users (id, email, aud, role) VALUES (gen_random_uuid(), 'late@x.test', 'authenticated', 'authenticated')")
        conn.execute("INSERT INTO storage.objects (bucket_id, name) VALUES ('avatars', 'late.png')")
        conn.execute("CREATE POLICY late_policy ON storage.objects FOR SELECT USING (false)")
        conn.execute("CREATE TABLE public.late (id int)")
        conn.execute("DELETE FROM public.revenue_lines WHERE month < '2025-01-01'")
        conn.execute("SELECT lo_from_bytea(0, 'late')")
        if before["jobs"]:
            conn.execute("SELECT cron.schedule('late job', '0 0 29 2 *', 'SELECT 2')")
            conn.execute("SELECT cron.alter_job(jobid, command := 'SELECT 3') FROM cron.job WHERE jobname = 'nightly-cleanup'")
        conn.commit()

    execute_reset(plan_reset(project))
    restore(store, b, project)

    after = state(hosted, project)
    if before["jobs"]:
        # jobs the backup does not name are the target's; the backup's come back as they were
        assert ("late job", "0 0 29 2 *", "SELECT 2", "postgres", "postgres", True) in after["jobs"]
        after["jobs"] = [j for j in after["jobs"] if j[0] != "late job"]
    assert_same(after, before)
    assert scalar(project, "SELECT count(*) FROM public.profiles") == len(APP_USERS)
    assert platform_memberships(hosted) == members


# -- the four failures --------------------------------------------------------------------------

MINIMAL_APP = """
CREATE TABLE public.notes (id int PRIMARY KEY, owner uuid DEFAULT auth.uid(), body text);
ALTER TABLE public.notes ENABLE ROW LEVEL SECURITY;
CREATE POLICY "own notes" ON public.notes FOR ALL TO authenticated USING (owner = (SELECT auth.uid()));
INSERT INTO public.notes (id, body) SELECT g, 'note ' || g FROM generate_series(1, 100) AS g;
"""


@pytest.mark.parametrize("major", [15, 17])
def test_extension_member_grants_are_not_replayed(major, request, tmp_path):
    """Failure 1: the platform's default privileges give postgres X*/supabase_admin on every
    extension member (pgjwt's algorithm_sign ...); replayed as postgres they fail with "grant
    options cannot be granted back to your own grantor". A one-table app into a fresh project."""
    src = request.getfixturevalue(f"hosted{major}_a")
    dst = request.getfixturevalue(f"hosted{major}_b")
    source = src.new_project()
    with source.connect() as conn:
        conn.execute(MINIMAL_APP)
        conn.commit()
    target = dst.new_project()
    acls = extension_acls(dst, target)
    assert any("algorithm_sign" in name and "postgres=X*/supabase_admin" in (acl or "") for name, acl in acls)

    store, b, _ = backup(source, tmp_path)
    restore(store, b, target)

    assert scalar(target, "SELECT count(*) FROM public.notes") == 100
    assert extension_acls(dst, target) == acls
    assert whole_schema(dst, target) == whole_schema(src, source)


def test_target_without_pg_cron_is_refused_before_anything_changes(hosted15_a, hosted15_b, tmp_path):
    """Failure 2: the target never enabled pg_cron (and postgres may not create it): the restore
    must stop before any change, naming the extension and where to enable it."""
    source = make_app(hosted15_a, cron=True)
    if hosted15_a.cron_missing:
        pytest.skip(f"pg_cron: {hosted15_a.cron_missing}")
    target = hosted15_b.new_project()
    hosted15_b.load_app(target)  # an older copy of the app lives there
    before = state(hosted15_b, target)
    store, b, _ = backup(source, tmp_path)

    with pytest.raises(BackupError) as info:
        restore(store, b, target)

    text = str(info.value)
    assert "pg_cron" in text
    assert "Database" in text and "Extensions" in text, text
    assert "newer platform version" not in text, text
    assert_same(state(hosted15_b, target), before)


def test_pg_cron_jobs_come_back_through_cron_schedule(hosted15_a, hosted15_b, tmp_path):
    """Failure 3: postgres may only SELECT cron.job; jobs come back through pg_cron's functions,
    replacing the target's jobs of the same names, keeping the others; history stays behind."""
    source = make_app(hosted15_a, cron=True)
    if hosted15_a.cron_missing:
        pytest.skip(f"pg_cron: {hosted15_a.cron_missing}")
    src_jobs = jobs(hosted15_a, source)
    target = hosted15_b.new_project()
    hosted15_b.enable_pg_cron(target)
    with target.connect() as conn:
        conn.execute("SELECT cron.schedule('nightly-cleanup', '0 1 29 2 *', 'SELECT 0')")  # same name, other job
        conn.execute("SELECT cron.schedule('target only', '0 2 29 2 *', 'SELECT 1')")
        conn.commit()
    store, b, _ = backup(source, tmp_path)

    restore(store, b, target)

    assert jobs(hosted15_b, target) == sorted(src_jobs + [("target only", "0 2 29 2 *", "SELECT 1", "postgres", "postgres", True)])
    assert history(hosted15_b, target) == []


@pytest.mark.parametrize("major", [15, 17])
def test_platform_roles_and_their_memberships_never_travel(major, request, tmp_path):
    """Failure 4: duckdb_role (made by the platform, granted to postgres WITH ADMIN OPTION and to
    supabase_admin) is no app role: not in the backup, its memberships never replayed."""
    src = request.getfixturevalue(f"hosted{major}_a")
    source = src.new_project()
    src.load_app(source, hosted_extras=False)
    store, b, result = backup(source, tmp_path)

    app_roles = set(result.manifest["roles"]["app"])
    assert app_roles == set(APP_ROLES), f"platform roles taken for the app's: {sorted(app_roles - set(APP_ROLES))}"
    roles_file = store.local_path(b.id, "roles.json").read_text()
    for role in HOSTED_PLATFORM_ROLES:
        assert role not in roles_file

    dst = fresh_platform(request, src)
    target = dst.new_project()
    members = platform_memberships(dst)
    restore(store, b, target)
    assert platform_memberships(dst) == members
    assert ("fortress_app", "fortress_reporter") in {(r, m) for r, m, _, _ in memberships(dst)}


@pytest.mark.parametrize("major", [15, 17])
def test_missing_extension_the_role_may_create_comes_back(major, request, tmp_path):
    """Extensions: one the target lacks but `postgres` may create (here a trusted one, citext; on
    hosted any of supautils' privileged extensions) is created inside the restore's transaction,
    before the table that needs it."""
    src = request.getfixturevalue(f"hosted{major}_a")
    dst = request.getfixturevalue(f"hosted{major}_b")
    source = src.new_project()
    with source.connect() as conn:
        conn.execute("CREATE EXTENSION citext WITH SCHEMA extensions")
        conn.execute("CREATE TABLE public.members (email extensions.citext PRIMARY KEY)")
        conn.execute("INSERT INTO public.members VALUES ('Ann@Example.com'), ('bob@example.com')")
        conn.commit()
    target = dst.new_project()
    store, b, result = backup(source, tmp_path)
    assert "citext" in {e["name"] for e in result.manifest["extensions"]}

    restore(store, b, target)

    assert scalar(target, "SELECT count(*) FROM public.members WHERE email = 'ann@example.COM'") == 1
    assert whole_schema(dst, target) == whole_schema(src, source)


# -- the other paths, as `postgres` ---------------------------------------------------------------


def test_schema_only_then_data_only_as_postgres(hosted, tmp_path):
    """The runbook's split restore: schema into a new project, then the rows over it."""
    project = make_app(hosted, cron=False)
    before = state(hosted, project)
    store, b, _ = backup(project, tmp_path)
    target = hosted.new_project()  # the same cluster: the app's roles exist, as after a first restore

    restore(store, b, target, mode="schema")
    assert scalar(hosted.admin(target), "SELECT count(*) FROM public.projects") == 0
    assert whole_schema(hosted, target) == before["schema"]

    restore(store, b, target, mode="data")
    assert contents(hosted, target) == before["contents"]
    assert whole_schema(hosted, target) == before["schema"]


def test_undo_as_postgres_removes_the_jobs_and_extension_the_restore_added(hosted15_a, hosted15_b, tmp_path, invoke_cli):
    """Undo on hosted, as the non-superuser `postgres`: the restore scheduled pg_cron jobs and
    created an extension the project did not have; restoring its undo point puts the project back
    exactly, jobs and extensions included."""
    if hosted15_a.cron_missing:
        pytest.skip(f"pg_cron: {hosted15_a.cron_missing}")
    source = make_app(hosted15_a, cron=True)
    with source.connect() as conn:
        conn.execute("CREATE EXTENSION citext WITH SCHEMA extensions")
        conn.execute("CREATE TABLE public.members (email extensions.citext PRIMARY KEY)")
        conn.commit()
    target = hosted15_b.new_project()
    hosted15_b.enable_pg_cron(target)
    hosted15_b.load_app(target)
    with target.connect() as conn:
        conn.execute("SELECT cron.schedule('target only', '0 2 29 2 *', 'SELECT 1')")
        conn.commit()
    before = state(hosted15_b, target)
    store, b, _ = backup(source, tmp_path)
    env = {"DATABASE_URL": hosted15_b.url(target), "BACKUP_DIR": str(store.root)}

    res = invoke_cli("restore", "--id", b.id, "--yes", env=env)
    assert res.returncode == 0, res.stderr
    assert len(jobs(hosted15_b, target)) == 4
    undo = res.stdout.split("invoke restore --id ")[1].split()[0]

    res = invoke_cli("restore", "--id", undo, "--yes", "--no-undo", env=env)
    assert res.returncode == 0, res.stderr
    assert_same(state(hosted15_b, target), before)
    assert scalar(target, "SELECT count(*) FROM pg_extension WHERE extname = 'citext'") == 0
