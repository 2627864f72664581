"""Supabase fidelity on a Supabase-shaped platform (tests/supabase_platform.py), PostgreSQL 15
and 17: a project with app data, auth users, storage rows, custom roles, a trigger on auth.users,
policies on storage.objects and realtime tables restores into a FRESH project identically, over
the SAME project without duplicates, and across 15 <-> 17."""

from __future__ import annotations

import pytest

from tasks.engine import catalog
from tasks.engine.dump import create_backup
from tasks.engine.platform import SUPABASE
from tasks.engine.restore import execute_restore, plan_restore, source
from tasks.engine.storage import LocalStore
from tests.helpers import fingerprints, scalar, schema_dump
from tests.supabase_platform import APP_USERS, SupabasePlatform

# What the app owns (DDL + data) and the platform tables whose rows are the app's.
APP_SCHEMAS = ["public", "supabase_migrations"]
PLATFORM_DATA = ["auth", "storage"]


def contents(platform, target) -> dict:
    """Every app table and every platform data table, fingerprinted as the superuser."""
    admin = platform.admin(target.dbname)
    return fingerprints(admin, SUPABASE, APP_SCHEMAS + PLATFORM_DATA)


def whole_schema(platform, target) -> str:
    """pg_dump --schema-only of the whole database (platform schemas included) as superuser."""
    return schema_dump(platform.admin(target.dbname))


def backup(target, tmp_path, **kw):
    store = LocalStore(tmp_path / "backups")
    result = create_backup(target, store, **kw)
    return store, catalog.load(store, result.backup_id), result


def restore(store, b, target, **kw):
    """As `invoke restore` does it: runbook files become a backup in a throwaway database first."""
    with source(store, b, target) as (store, b):
        plan = plan_restore(store, b, target, **kw)
        execute_restore(plan, store)
    return plan


def without_platform_migrations(fp: dict) -> dict:
    return {k: v for k, v in fp.items() if k not in ("auth.schema_migrations", "storage.migrations")}


@pytest.mark.parametrize("major", [15, 17])
def test_restore_into_a_new_project(major, request, tmp_path):
    src_platform = request.getfixturevalue(f"supa{major}_a")
    # a cluster that has never seen the app's custom roles, whatever ran before
    dst_platform = SupabasePlatform(src_platform.suite, label="new")
    dst_platform.start()
    request.addfinalizer(dst_platform.stop)
    source = src_platform.new_project()
    src_platform.load_app(source)
    target = dst_platform.new_project()
    assert scalar(target, "SELECT count(*) FROM pg_roles WHERE rolname LIKE 'fortress%'") == 0

    store, b, result = backup(source, tmp_path)
    m = result.manifest
    assert m["source"]["platform"] == "supabase"
    assert {"auth", "storage"} <= set(m["platform_data_schemas"])
    assert "supabase_migrations" in m["app_schemas"]
    added = {(a["kind"], a["schema"], a["table"], a["name"]) for a in m["platform_additions"]}
    assert ("trigger", "auth", "users", "on_auth_user_created") in added
    assert any(k == "policy" and (s, t) == ("storage", "objects") for k, s, t, _ in added)
    assert set(m["roles"]["app"]) >= {"fortress_app", "fortress_reporter"}
    assert not set(m["roles"]["app"]) & {"anon", "authenticated", "service_role", "postgres", "supabase_admin"}

    plan = restore(store, b, target)
    assert plan.platform.name == "supabase"
    assert plan.login_roles == ["fortress_reporter"]

    # app schema, app data, auth and storage rows
    assert without_platform_migrations(contents(dst_platform, target)) == without_platform_migrations(contents(src_platform, source))
    # grants, policies, the trigger on auth.users, storage policies, realtime membership, the
    # platform's own objects: the whole schema is identical, nothing doubled, nothing lost
    assert whole_schema(dst_platform, target) == whole_schema(src_platform, source)
    # the trigger did not fire during the load: one profile per user, no more
    assert scalar(target, "SELECT count(*) FROM public.profiles") == len(APP_USERS)
    assert scalar(target, "SELECT count(*) FROM pg_publication_tables WHERE pubname = 'supabase_realtime'") >= 1
    # the platform's event trigger exists once, still the platform's
    assert (
        scalar(dst_platform.admin(target.dbname), "SELECT string_agg(evtname || ':' || pg_get_userbyid(evtowner), ',') FROM pg_event_trigger")
        == "pgrst_ddl_watch:supabase_admin"
    )
    # custom roles exist in the new cluster, the LOGIN one without its password
    with dst_platform.admin().connect() as conn:
        roles = dict(
            conn.execute("SELECT rolname, rolpassword IS NULL FROM pg_authid WHERE rolname IN ('fortress_app', 'fortress_reporter')").fetchall()
        )
    assert roles == {"fortress_app": True, "fortress_reporter": True}
    # a new signup on the restored project still runs the app's trigger
    with target.connect() as conn:
        conn.execute("INSERT INTO auth.users (id, email, aud, role) VALUES (gen_random_uuid(), 'new@x.test', 'authenticated', 'authenticated')")
        assert conn.execute("SELECT count(*) FROM public.profiles").fetchone()[0] == len(APP_USERS) + 1
        conn.rollback()


def test_restore_over_the_same_project_replaces_auth_data(supa, tmp_path):
    project = supa.new_project()
    supa.load_app(project)
    before_data = contents(supa, project)
    before_schema = whole_schema(supa, project)
    store, b, _ = backup(project, tmp_path)

    # life goes on: a signup (its trigger adds a profile), an upload, a new policy and table
    with project.connect() as conn:
        conn.execute("INSERT INTO auth.users (id, email, aud, role) VALUES (gen_random_uuid(), 'late@x.test', 'authenticated', 'authenticated')")
        conn.execute("INSERT INTO storage.objects (bucket_id, name) SELECT id, 'late.png' FROM storage.buckets LIMIT 1")
        conn.execute("CREATE POLICY late_policy ON storage.objects FOR SELECT USING (false)")
        conn.execute("CREATE TABLE public.late (id int)")
        conn.execute("DELETE FROM public.scenarios")
        conn.commit()

    restore(store, b, project)

    assert contents(supa, project) == before_data
    assert whole_schema(supa, project) == before_schema
    assert scalar(project, "SELECT count(*) FROM auth.users") == len(APP_USERS)
    assert scalar(project, "SELECT count(*) FROM public.profiles") == len(APP_USERS)


@pytest.mark.parametrize("src_major,dst_major", [(17, 15), (15, 17)])
def test_cross_version_restore(src_major, dst_major, request, tmp_path):
    src_platform = request.getfixturevalue(f"supa{src_major}_a")
    dst_platform = request.getfixturevalue(f"supa{dst_major}_b")
    source = src_platform.new_project()
    src_platform.load_app(source)
    # The PostgreSQL 17 wheel ships no uuid-ossp (hosted Supabase 17 has it); an app using it
    # could not be restored there, and the restore would say so and roll back.
    with src_platform.admin(source).connect() as conn:
        conn.execute('DROP EXTENSION IF EXISTS "uuid-ossp"')
        conn.commit()
    native = dst_platform.new_project()
    dst_platform.load_app(native)  # the same app made natively on the target's version
    target = dst_platform.new_project()

    store, b, _ = backup(source, tmp_path)
    restore(store, b, target)

    assert without_platform_migrations(contents(dst_platform, target)) == without_platform_migrations(contents(src_platform, source))
    expected = whole_schema(dst_platform, native)
    if src_major < dst_major:
        # PostgreSQL 17 added MAINTAIN; made natively there, the app's "all but write" grants
        # to anon include it, while the source's (15) never had it. The restore keeps the
        # source's privileges, which is the faithful result.
        expected = expected.replace(",MAINTAIN ON", " ON")
    assert whole_schema(dst_platform, target) == expected


def test_schemas_the_platform_owns_off_the_list_are_left_alone(supa, tmp_path):
    """Like `supabase db reset`: a schema owned by supabase_admin (or made by an extension) is
    the platform's even when its name is on no list: not dumped, not dropped."""
    project = supa.new_project()
    supa.load_app(project)
    with supa.admin(project).connect() as conn:
        conn.execute("CREATE SCHEMA platform_extra AUTHORIZATION supabase_admin")
        conn.execute("CREATE TABLE platform_extra.state (v int); INSERT INTO platform_extra.state VALUES (7)")
        conn.commit()
    store, b, result = backup(project, tmp_path)
    assert "platform_extra" not in result.manifest["app_schemas"]
    plan = restore(store, b, project)
    assert "platform_extra" not in dict(plan.drop_schemas)
    assert scalar(supa.admin(project), "SELECT v FROM platform_extra.state") == 7


# The Supabase CLI's own dump, as the runbook made it (pkg/migration/scripts/dump_*.sh): pg_dump
# with the CLI's schema lists and flags, and the sed rewrites that matter for a restore.
CLI_SCHEMA_EXCLUDED = (
    "information_schema|pg_*|_analytics|_realtime|_supavisor|auth|etl|extensions|pgbouncer|"
    "realtime|storage|supabase_functions|supabase_migrations|cron|dbdev|graphql|graphql_public|"
    "net|pgmq|pgsodium|pgsodium_masks|pgtle|repack|tiger|tiger_data|timescaledb_*|"
    "_timescaledb_*|topology|vault"
)
CLI_DATA_EXCLUDED = (
    "information_schema|pg_*|graphql|graphql_public|pgsodium|pgsodium_masks|pgtle|repack|tiger|"
    "tiger_data|timescaledb_*|_timescaledb_*|topology|vault|etl|extensions|pgbouncer|realtime|"
    "supabase_migrations|_analytics|_realtime|_supavisor"
)
CLI_SEDS = [
    (r"(?m)^CREATE SCHEMA \"", 'CREATE SCHEMA IF NOT EXISTS "'),
    (r"(?m)^CREATE PUBLICATION \"supabase_realtime", r"-- \g<0>"),
    (r"(?m)^(CREATE EVENT TRIGGER |ALTER EVENT TRIGGER |         WHEN TAG IN |   EXECUTE FUNCTION )", r"-- \g<0>"),
    (r"(?m)^ALTER DEFAULT PRIVILEGES FOR ROLE \"supabase_admin\"", r"-- \g<0>"),
    (r"(?m)^COMMENT ON EXTENSION .*$", r"-- \g<0>"),
    (r"(?m)^SET transaction_timeout = 0;", r"-- \g<0>"),
]


def cli_dump(project, folder, day):
    import re
    import subprocess

    from tasks.engine import pgtools

    with project.connect() as conn:
        major = conn.info.server_version // 10000
    suite = pgtools.pick(pgtools.discover(), at_least=major, prefer=major)
    base = [suite.tool("pg_dump"), "--quote-all-identifier", f"--dbname={project.conninfo()}"]
    schema = subprocess.run(
        base + ["--schema-only", f"--exclude-schema={CLI_SCHEMA_EXCLUDED}"], env=project.tool_env(), capture_output=True, text=True, check=True
    ).stdout
    for pattern, repl in CLI_SEDS:
        schema = re.sub(pattern, repl, schema)
    data = subprocess.run(
        base
        + [
            "--data-only",
            "--column-inserts",
            "--rows-per-insert",
            "100000",
            f"--exclude-schema={CLI_DATA_EXCLUDED}",
            "--exclude-table",
            "auth.schema_migrations",
            "--exclude-table",
            "storage.migrations",
            "--schema",
            "*",
        ],
        env=project.tool_env(),
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    data = re.sub(r"(?m)^SET transaction_timeout = 0;", r"-- \g<0>", data)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"schema-{day}.sql").write_text(schema)
    (folder / f"data-{day}.sql").write_text("SET session_replication_role = replica;\n\n" + data + "RESET ALL;\n")


def test_runbook_files_from_supabase_db_dump_restore_over_the_same_project(supa, tmp_path):
    from tasks.engine.storage import LocalStore as Store

    project = supa.new_project()
    supa.load_app(project)
    before = contents(supa, project)
    cli_dump(project, tmp_path / "backups", "2026-11-20")
    with project.connect() as conn:
        conn.execute("INSERT INTO auth.users (id, email, aud, role) VALUES (gen_random_uuid(), 'late@x.test', 'authenticated', 'authenticated')")
        conn.commit()

    store = Store(tmp_path / "backups")
    b = catalog.resolve(store, date="2026-11-20")
    assert b.legacy_files == ["schema-2026-11-20.sql", "data-2026-11-20.sql"]
    plan = restore(store, b, project)
    assert {("auth", "users"), ("storage", "objects")} <= set(plan.platform_tables)
    # what the CLI's dump cannot carry is said before anything is touched
    assert any("on_auth_user_created" in w and "storage.objects" in w for w in plan.warnings)
    # users replaced, not duplicated; the late signup is gone with its profile
    assert scalar(project, "SELECT count(*) FROM auth.users") == len(APP_USERS)
    after = contents(supa, project)
    for name in ("auth.users", "auth.identities", "storage.objects", "public.projects", "public.scenarios", "public.profiles"):
        assert after[name] == before[name], name


def test_data_only_restore_on_a_project_replaces_rows_quietly(supa, tmp_path):
    project = supa.new_project()
    supa.load_app(project)
    before = contents(supa, project)
    schema = whole_schema(supa, project)
    store, b, _ = backup(project, tmp_path)
    with project.connect() as conn:
        conn.execute("INSERT INTO auth.users (id, email, aud, role) VALUES (gen_random_uuid(), 'late@x.test', 'authenticated', 'authenticated')")
        conn.execute("DELETE FROM public.scenarios")
        conn.commit()
    plan = restore(store, b, project, mode="data")
    assert ("auth", "users") in plan.truncate_tables
    assert contents(supa, project) == before
    assert whole_schema(supa, project) == schema  # every trigger and constraint as it was
    assert scalar(project, "SELECT count(*) FROM public.profiles") == len(APP_USERS)


def test_reset_on_a_project_keeps_the_platform_and_its_data(supa):
    from tasks.engine.restore import execute_reset, plan_reset

    project = supa.new_project()
    supa.load_app(project)
    users = scalar(project, "SELECT count(*) FROM auth.users")
    plan = plan_reset(project)
    assert set(dict(plan.drop_schemas)) == {"public", "supabase_migrations"}
    assert "trigger on_auth_user_created on auth.users" in plan.drop_additions
    execute_reset(plan)
    assert (
        scalar(
            project,
            "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = 'public' AND c.relkind IN ('r', 'v', 'm', 'S')",
        )
        == 0
    )
    assert scalar(project, "SELECT count(*) FROM auth.users") == users
    assert scalar(project, "SELECT count(*) FROM pg_policies WHERE schemaname = 'storage'") == 0
    assert scalar(project, "SELECT count(*) FROM pg_trigger WHERE tgname = 'on_auth_user_created'") == 0
    assert scalar(project, "SELECT count(*) FROM pg_publication WHERE pubname = 'supabase_realtime'") == 1
    # the platform's grants and default privileges on public survive
    assert scalar(project, "SELECT has_schema_privilege('anon', 'public', 'USAGE')")
    assert scalar(project, "SELECT count(*) FROM pg_default_acl d JOIN pg_namespace n ON n.oid = d.defaclnamespace WHERE n.nspname = 'public'") >= 1


EXTENSION_OWNED = """
-- pg_cron and pg_net are not installed here; imitate what they leave: tables owned by an
-- extension (hstore stands in), pg_cron's own policy on cron.job, rows in pg_net's queue.
CREATE EXTENSION IF NOT EXISTS hstore SCHEMA extensions;
CREATE SCHEMA IF NOT EXISTS cron; CREATE SCHEMA IF NOT EXISTS net;
CREATE TABLE cron.job (jobid bigserial PRIMARY KEY, schedule text, command text, username text DEFAULT current_user);
ALTER TABLE cron.job ENABLE ROW LEVEL SECURITY;
CREATE POLICY cron_job_policy ON cron.job USING (username = CURRENT_USER);
CREATE TABLE net._http_response (id bigint, status_code int);
ALTER EXTENSION hstore ADD TABLE cron.job;
ALTER EXTENSION hstore ADD TABLE net._http_response;
GRANT USAGE ON SCHEMA cron, net TO postgres;
GRANT SELECT ON cron.job, net._http_response TO postgres;
GRANT ALL ON ALL SEQUENCES IN SCHEMA cron TO postgres;  -- as Supabase grants on cron
CREATE FUNCTION extensions.touch_updated_at() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN NEW.updated_at := now(); RETURN NEW; END $$;
"""


def test_extension_owned_tables_and_platform_functions(supa, tmp_path):
    source, target = supa.new_project(), supa.new_project()
    for project in (source, target):
        with supa.admin(project).connect() as conn:
            conn.execute(EXTENSION_OWNED)
            conn.commit()
    supa.load_app(source)
    with supa.admin(source).connect() as conn:
        conn.execute("INSERT INTO net._http_response SELECT g, 200 FROM generate_series(1, 5) g")
        conn.commit()
    with source.connect() as conn:
        # an app trigger on a platform table that calls a function the platform provides
        conn.execute("CREATE TRIGGER app_touch BEFORE UPDATE ON auth.users FOR EACH ROW EXECUTE FUNCTION extensions.touch_updated_at()")
        conn.commit()
    store, b, result = backup(source, tmp_path)
    m = result.manifest
    added = {(a["kind"], a["schema"], a["table"], a["name"]) for a in m["platform_additions"]}
    assert ("trigger", "auth", "users", "app_touch") in added
    assert not any(a["name"] == "cron_job_policy" for a in m["platform_additions"])  # pg_cron's, not the app's
    assert not any(t["schema"] == "net" for t in m["tables"])  # pg_dump never carries those rows
    restore(store, b, target)
    assert scalar(target, "SELECT count(*) FROM pg_trigger WHERE tgname = 'app_touch'") == 1
    assert scalar(supa.admin(target), "SELECT count(*) FROM pg_policy WHERE polname = 'cron_job_policy'") == 1
    restore(store, b, source)  # over the same project: pg_cron's policy is not the app's to drop


def test_restore_as_the_platform_superuser_keeps_its_default_privileges_in_platform_schemas(supa, tmp_path):
    """Review finding: the restore reset the connecting user's default privileges everywhere, so a
    restore as supabase_admin took away what storage's future tables get."""
    project = supa.new_project()
    supa.load_app(project)
    admin = supa.admin(project)
    query = (
        "SELECT n.nspname, d.defaclobjtype::text, d.defaclacl::text FROM pg_default_acl d"
        " JOIN pg_namespace n ON n.oid = d.defaclnamespace"
        " WHERE d.defaclrole = 'supabase_admin'::regrole AND n.nspname <> 'public' ORDER BY 1, 2"
    )
    with admin.connect() as conn:
        before = conn.execute(query).fetchall()
    assert any(row[0] == "storage" for row in before)
    store, b, _ = backup(project, tmp_path)
    restore(store, b, admin)
    with admin.connect() as conn:
        assert conn.execute(query).fetchall() == before
