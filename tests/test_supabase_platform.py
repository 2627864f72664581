"""Sanity checks: the Supabase-shaped platform (tests/supabase_platform.py) is shaped as claimed,
on PostgreSQL 15 and 17. These test the fixture, not the backup tool."""

from __future__ import annotations

import json

import psycopg
import pytest
from psycopg import errors

from tasks.engine import platform as engine_platform
from tasks.engine.conn import Target
from tests.conftest import PASSWORD

pytest.register_assert_rewrite("tests.supabase_platform")  # imported here before it is a plugin
from tests.supabase_platform import APP_LOGIN_PASSWORD, APP_LOGIN_ROLE, APP_ROLES, APP_USERS, SupabasePlatform  # noqa: E402

# Until conftest registers the plugin; a no-op once it does (pytest skips registered plugins).
pytest_plugins = ["tests.supabase_platform"]

ALICE, ZOE, CAROL = APP_USERS["alice"], APP_USERS["zoe"], APP_USERS["carol"]


@pytest.fixture
def project(supa):
    """A fresh, empty project database on the version's `a` platform."""
    target = supa.new_project()
    yield target
    supa.drop_project(target.dbname)


@pytest.fixture
def app(supa, project):
    supa.load_app(project)
    return project


def claims(conn: psycopg.Connection, sub: str | None, role: str = "authenticated", **extra) -> None:
    """Act like PostgREST: set request.jwt.claims for the rest of the transaction."""
    payload = "" if sub is None else json.dumps({"sub": sub, "role": role, **extra})
    conn.execute("SELECT set_config('request.jwt.claims', %s, true)", (payload,))


def one(conn: psycopg.Connection, query: str, params=None):
    return conn.execute(query, params).fetchone()[0]


# -- postgres: a privileged non-superuser ---------------------------------------------------------
def test_postgres_is_not_superuser_but_can_set_session_replication_role(project):
    with project.connect() as conn:
        row = conn.execute(
            "SELECT current_user, rolsuper, rolcreaterole, rolcreatedb, rolreplication, rolbypassrls FROM pg_roles WHERE rolname = current_user"
        ).fetchone()
        assert row == ("postgres", False, True, True, True, True)
        conn.execute("SET session_replication_role = replica")
        assert one(conn, "SHOW session_replication_role") == "replica"
        # ...but other superuser-only settings stay out of reach, as on Supabase without supautils
        with pytest.raises(errors.InsufficientPrivilege):
            conn.execute("SET log_statement = 'all'")


def test_postgres_owns_its_database_and_public(supa, project):
    with supa.admin(project).connect() as conn:
        owner = one(conn, "SELECT datdba::regrole::text FROM pg_database WHERE datname = current_database()")
        assert owner == "postgres"
    with project.connect() as conn:
        assert one(conn, "SELECT has_schema_privilege('public', 'CREATE')")
        assert one(conn, "SELECT has_database_privilege(current_database(), 'CREATE')")


def test_url_logs_in_as_postgres_with_the_special_password(supa, project):
    url = supa.url(project)
    assert PASSWORD not in url
    with Target.from_url(url).connect() as conn:
        assert one(conn, "SELECT current_user") == "postgres"


# -- the platform's shape ------------------------------------------------------------------------
def test_reserved_roles_have_the_documented_attributes(project):
    with project.connect() as conn:
        rows = {
            r[0]: r[1:]
            for r in conn.execute("SELECT rolname, rolcanlogin, rolinherit, rolbypassrls, rolcreaterole, rolreplication, rolsuper FROM pg_roles")
        }
        assert rows["anon"] == (False, True, False, False, False, False)
        assert rows["authenticated"] == (False, True, False, False, False, False)
        assert rows["service_role"] == (False, True, True, False, False, False)
        assert rows["authenticator"] == (True, False, False, False, False, False)
        assert rows["supabase_auth_admin"] == (True, False, False, False, False, False)
        assert rows["supabase_storage_admin"] == (True, False, False, True, False, False)
        assert rows["supabase_realtime_admin"] == (True, False, False, True, True, False)
        assert rows["supabase_replication_admin"][0] and rows["supabase_replication_admin"][4]
        assert rows["supabase_read_only_user"][:3] == (True, True, True)
        assert rows["dashboard_user"][3:5] == (True, True)
        assert rows["supabase_admin"][-1] is True
        for name in ("pgbouncer", "supabase_functions_admin"):
            assert name in rows

        settings = dict(
            conn.execute("SELECT r.rolname, s.setconfig FROM pg_db_role_setting s JOIN pg_roles r ON r.oid = s.setrole WHERE s.setdatabase = 0")
        )
        assert "statement_timeout=3s" in settings["anon"]
        assert "statement_timeout=8s" in settings["authenticated"]
        assert "statement_timeout=8s" in settings["authenticator"]

        for api in ("anon", "authenticated", "service_role"):
            assert one(conn, "SELECT pg_has_role('authenticator', %s, 'MEMBER')", (api,))
            assert one(conn, "SELECT pg_has_role('postgres', %s, 'MEMBER')", (api,))
        admin_option = one(conn, "SELECT pg_has_role('postgres', 'anon', 'USAGE WITH ADMIN OPTION')")
        assert admin_option == (conn.info.server_version >= 160000)


def test_platform_schemas_tables_and_owners(supa, project):
    with supa.admin(project).connect() as conn:
        # supabase_admin's search_path includes auth (as on Supabase): qualify every name
        conn.execute("SET search_path = pg_catalog")
        owners = dict(conn.execute("SELECT nspname, nspowner::regrole::text FROM pg_namespace"))
        assert owners["auth"] == owners["storage"] == "supabase_admin"
        assert owners["pgbouncer"] == "pgbouncer"
        assert {"extensions", "realtime", "graphql_public"} <= owners.keys()

        tables = dict(
            conn.execute(
                "SELECT c.oid::regclass::text, c.relowner::regrole::text FROM pg_class c"
                " WHERE c.relkind = 'r' AND c.relnamespace::regnamespace::text IN ('auth', 'storage')"
            )
        )
        for t in ("users", "identities", "refresh_tokens", "audit_log_entries", "instances", "sessions", "schema_migrations"):
            assert tables[f"auth.{t}"] == "supabase_auth_admin"
        for t in ("migrations", "buckets", "objects"):
            assert tables[f"storage.{t}"] == "supabase_storage_admin"

        generated = set(conn.execute("SELECT attrelid::regclass::text || '.' || attname::text FROM pg_attribute WHERE attgenerated = 's'").fetchall())
        assert {("auth.users.confirmed_at",), ("auth.identities.email",), ("storage.objects.path_tokens",)} <= generated

        rls = dict(
            conn.execute(
                "SELECT oid::regclass::text, relrowsecurity FROM pg_class WHERE oid IN ('storage.objects'::regclass, 'storage.buckets'::regclass)"
            )
        )
        assert rls == {"storage.objects": True, "storage.buckets": True}

        triggers = set(
            conn.execute(
                "SELECT tgrelid::regclass::text, tgname FROM pg_trigger WHERE NOT tgisinternal AND tgrelid::regclass::text LIKE 'storage.%'"
            ).fetchall()
        )
        assert triggers == {
            ("storage.objects", "update_objects_updated_at"),
            ("storage.objects", "protect_objects_delete"),
            ("storage.buckets", "protect_buckets_delete"),
        }

        assert conn.execute("SELECT evtname, evtowner::regrole::text, evtfoid::regproc::text, evtevent FROM pg_event_trigger").fetchall() == [
            ("pgrst_ddl_watch", "supabase_admin", "extensions.pgrst_ddl_watch", "ddl_command_end")
        ]

        pub = conn.execute(
            "SELECT pubowner::regrole::text, (SELECT count(*) FROM pg_publication_tables t"
            " WHERE t.pubname = p.pubname) FROM pg_publication p WHERE pubname = 'supabase_realtime'"
        ).fetchone()
        assert pub == ("postgres", 0)

        exts = dict(conn.execute("SELECT extname, extnamespace::regnamespace::text FROM pg_extension"))
        assert exts["pgcrypto"] == exts["pg_stat_statements"] == "extensions"
        has_uuid_ossp = one(conn, "SELECT count(*) > 0 FROM pg_available_extensions WHERE name = 'uuid-ossp'")
        assert ("uuid-ossp" in exts) == has_uuid_ossp

        defaults = {
            r[0]: r[1]
            for r in conn.execute(
                "SELECT defaclrole::regrole::text || ':' || defaclobjtype::text, defaclacl::text[] FROM pg_default_acl"
                " WHERE defaclnamespace = 'public'::regnamespace"
            )
        }
        for owner in ("postgres", "supabase_admin"):
            for kind in "rfS":
                acl = " ".join(defaults[f"{owner}:{kind}"])
                for grantee in ("anon", "authenticated", "service_role"):
                    assert f"{grantee}=" in acl, (owner, kind, acl)

        assert one(conn, "SELECT count(*) FROM auth.schema_migrations") > 0
        assert one(conn, "SELECT count(*) FROM storage.migrations") > 0


def test_the_engine_detects_supabase(project):
    with project.connect() as conn:
        assert engine_platform.detect(conn) is engine_platform.SUPABASE


def test_platform_migration_tables_grant_postgres_only_select_directly(project):
    """Direct grants are today's (SELECT only); membership in the admin roles (an emulation, see
    platform.sql) still lets postgres write them, so only the ACL is checked here."""
    with project.connect() as conn:
        for table in ("auth.schema_migrations", "storage.migrations"):
            acl = one(conn, "SELECT relacl::text FROM pg_class WHERE oid = %s::regclass", (table,))
            assert "postgres=r/" in acl, (table, acl)
            assert one(conn, f"SELECT count(*) FROM {table}") > 0


# -- auth helpers --------------------------------------------------------------------------------
def test_auth_functions_read_request_jwt_claims(project):
    with project.connect() as conn:
        assert conn.execute("SELECT auth.uid(), auth.role(), auth.email(), auth.jwt()").fetchone() == (None, None, None, None)
        claims(conn, ALICE, email="alice@example.com")
        conn.execute("SET LOCAL ROLE authenticated")  # the API roles may call them
        uid, role, email, jwt = conn.execute("SELECT auth.uid()::text, auth.role(), auth.email(), auth.jwt()").fetchone()
        assert (uid, role, email) == (ALICE, "authenticated", "alice@example.com")
        assert jwt["sub"] == ALICE
        # the legacy per-claim setting wins over the JSON (coalesce order)
        conn.execute("SELECT set_config('request.jwt.claim.sub', %s, true)", (ZOE,))
        assert one(conn, "SELECT auth.uid()::text") == ZOE
        conn.rollback()
        for api in ("anon", "authenticated", "service_role"):
            assert one(conn, "SELECT has_function_privilege(%s, 'auth.uid()', 'EXECUTE')", (api,))


# -- storage's platform triggers -----------------------------------------------------------------
def test_protect_delete_blocks_a_plain_delete_on_storage_objects(app):
    with app.connect() as conn:
        with pytest.raises(errors.InsufficientPrivilege, match="Direct deletion from storage tables"):
            conn.execute("DELETE FROM storage.objects")
        conn.rollback()
        with pytest.raises(errors.InsufficientPrivilege):
            conn.execute("DELETE FROM storage.buckets WHERE false")  # statement-level: fires anyway
        conn.rollback()
        # the Storage API's way
        conn.execute("SET LOCAL storage.can_delete = 'true'")
        assert conn.execute("DELETE FROM storage.objects").rowcount == 3
        conn.rollback()
        # a restore's way: replica mode skips ordinary triggers
        conn.execute("SET LOCAL session_replication_role = replica")
        assert conn.execute("DELETE FROM storage.objects").rowcount == 3
        conn.rollback()
        assert one(conn, "SELECT count(*) FROM storage.objects") == 3


def test_update_objects_updated_at_fires(app):
    with app.connect() as conn:
        before = one(conn, "SELECT updated_at FROM storage.objects WHERE bucket_id = 'avatars'")
        after = one(conn, "UPDATE storage.objects SET metadata = '{}' WHERE bucket_id = 'avatars' RETURNING updated_at")
        assert after > before
        conn.rollback()


# -- the app -------------------------------------------------------------------------------------
def test_app_loads_and_its_trigger_on_auth_users_made_profiles(supa, app):
    with app.connect() as conn:
        profiles = dict(conn.execute("SELECT id::text, display_name FROM public.profiles"))
        assert profiles == {ALICE: "Alice", ZOE: 'Zoë Ångström 🚀 "Z"', CAROL: None}
        trig = conn.execute("SELECT tgrelid::regclass::text, tgfoid::regproc::text FROM pg_trigger WHERE tgname = 'on_auth_user_created'").fetchone()
        assert trig == ("auth.users", "public.handle_new_user")  # the tool's connections have no search_path
        assert one(conn, "SELECT confirmed_at FROM auth.users WHERE id = %s", (CAROL,)) is not None
        assert one(conn, "SELECT email FROM auth.identities WHERE provider = 'email' AND user_id = %s", (ALICE,)) == "alice@example.com"
        assert one(conn, "SELECT path_tokens FROM storage.objects WHERE bucket_id = 'avatars'") == [ALICE, "avatar.png"]
        assert one(conn, "SELECT owner_id::text FROM public.projects WHERE name = 'Carol''s keep'") == CAROL
        assert one(conn, "SELECT count(*) FROM public.scenarios") == 5
        assert one(conn, "SELECT count(*) FROM supabase_migrations.schema_migrations") == 2
        assert conn.execute("SELECT schemaname, tablename FROM pg_publication_tables WHERE pubname = 'supabase_realtime'").fetchall() == [
            ("public", "projects")
        ]
        policies = {r[0] for r in conn.execute("SELECT policyname FROM pg_policies WHERE schemaname = 'storage'")}
        assert "Users read own files" in policies
        # deleting a user cascades through the app's FKs (and needs no storage rows gone)
        conn.execute("DELETE FROM auth.users WHERE id = %s", (ZOE,))
        assert one(conn, "SELECT count(*) FROM public.profiles") == 2
        assert one(conn, "SELECT count(*) FROM public.projects") == 3
        conn.rollback()

    with supa.admin(app).connect() as conn:
        roles = dict(conn.execute("SELECT rolname, rolcanlogin FROM pg_roles WHERE rolname LIKE 'fortress%'"))
    assert roles == {"fortress_app": False, "fortress_reporter": True}
    # the custom LOGIN role really has a password (so a test can check it does not travel)
    login = Target(params={**app.params, "user": APP_LOGIN_ROLE}, password=APP_LOGIN_PASSWORD)
    with login.connect() as conn:
        assert one(conn, "SELECT count(*) FROM public.scenarios") == 5  # via fortress_app's policy


def test_rls_on_projects_hides_other_users_rows(app):
    with app.connect() as conn:
        conn.execute("SET LOCAL ROLE authenticated")
        claims(conn, ALICE)
        rows = conn.execute("SELECT owner_id::text FROM public.projects").fetchall()
        assert rows == [(ALICE,), (ALICE,)]
        assert one(conn, "SELECT count(*) FROM public.scenarios") == 3
        # storage: the public avatar plus her own report, not Zoë's
        names = {r[0] for r in conn.execute("SELECT name FROM storage.objects")}
        assert names == {f"{ALICE}/avatar.png", f"{ALICE}/Q1 report – ünïcode.pdf"}
        # a row for someone else is refused by WITH CHECK
        with pytest.raises(errors.InsufficientPrivilege):
            conn.execute("INSERT INTO public.projects (owner_id, name) VALUES (%s, 'sneaky')", (ZOE,))
        conn.rollback()

        conn.execute("SET LOCAL ROLE authenticated")
        claims(conn, ZOE)
        assert one(conn, "SELECT count(*) FROM public.projects") == 1
        conn.rollback()

        conn.execute("SET LOCAL ROLE authenticated")  # no claims at all: nothing
        assert one(conn, "SELECT count(*) FROM public.projects") == 0
        conn.rollback()

        conn.execute("SET LOCAL ROLE anon")
        assert one(conn, "SELECT count(*) FROM public.profiles") == 3
        with pytest.raises(errors.InsufficientPrivilege):
            conn.execute("SELECT count(*) FROM public.scenarios")
        conn.rollback()

        # postgres itself bypasses RLS
        assert one(conn, "SELECT count(*) FROM public.projects") == 4


# -- clusters and re-runs ------------------------------------------------------------------------
@pytest.mark.parametrize("major", [15, 17])
def test_platform_reruns_per_database_and_b_cluster_never_saw_the_app(request, major):
    a = request.getfixturevalue(f"supa{major}_a")
    # A cluster of its own: the session's `b` clusters receive restores from other tests.
    b = SupabasePlatform(a.suite, label="fresh")
    b.start()
    request.addfinalizer(b.stop)
    assert a.cluster.port != b.cluster.port
    first, second = a.new_project(), a.new_project()
    try:
        a.load_app(first)
        a.load_app(second)  # custom roles already exist: still loads
        with second.connect() as conn:
            assert one(conn, "SELECT count(*) FROM public.profiles") == 3
        fresh = b.new_project()
        try:
            with fresh.connect() as conn:
                present = {r[0] for r in conn.execute("SELECT rolname FROM pg_roles WHERE rolname = ANY(%s)", (list(APP_ROLES),))}
                assert present == set()
                assert one(conn, "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'") == 0
                assert one(conn, "SELECT count(*) FROM auth.users") == 0
        finally:
            b.drop_project(fresh.dbname)
    finally:
        a.drop_project(first.dbname)
        a.drop_project(second.dbname)
