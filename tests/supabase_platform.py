"""A Supabase-shaped platform on throwaway PostgreSQL 15/17 clusters (pytest plugin).

Each `SupabasePlatform` is one cluster whose bootstrap superuser is `supabase_admin` (as in the
Supabase image). `new_project()` makes a database that looks like a NEW Supabase project before
any app data exists (tests/supabase/platform.sql: reserved roles, auth/storage/realtime/...
schemas, platform triggers, the supabase_realtime publication, a platform event trigger), owned by
the non-superuser `postgres` that apps and backup tools log in as. `load_app()` adds an app
(tests/supabase/app.sql) the way a Supabase user would, as `postgres`.

What the platform leaves out or fakes is listed at the top of platform.sql; the big ones: no
supautils (emulated with a parameter grant and pre-2024 memberships of postgres in
supabase_auth_admin/supabase_storage_admin), no pg_graphql/vault/pg_net, no pooler, and only the
core auth/storage tables.

Fixtures: `supa15_a`, `supa15_b`, `supa17_a`, `supa17_b` (session scope; two independent
clusters per major, so a restore can go into a cluster that never saw the app's custom roles) and
`supa` (runs a test on supa15_a and supa17_a). Register with
`pytest_plugins = ["tests.supabase_platform"]`.

HOSTED Supabase, where `postgres` is not a superuser (issue 7): `HostedPlatform` adds
tests/supabase/hosted.sql over platform.sql (hosted's grants as of October 2026, supautils'
policy grants emulated; its header lists every deviation) and real pg_cron where the server has
it. Fixtures `hosted15_a`, `hosted15_b`, `hosted17_a`, `hosted17_b` (session scope) and `hosted`
(hosted15_a and hosted17_a). Each is ONE project at a time, the database `postgres`, as on hosted.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from psycopg import sql

from tasks.engine.conn import Target
from tasks.engine.sandbox import Cluster, server_suite
from tests.conftest import PASSWORD

HERE = Path(__file__).resolve().parent / "supabase"
PLATFORM_SQL = HERE / "platform.sql"
APP_SQL = HERE / "app.sql"

# supabase_admin's password. Hosted projects never reveal it; tests only use it for assertions
# and setup. Needs quoting too, so a tool that leaks the wrong password is caught either way.
ADMIN_PW = "adm1n pw/@:%'\"supa"

# The app's custom LOGIN role and its password as set in app.sql (must never travel in a backup).
APP_LOGIN_ROLE = "fortress_reporter"
APP_LOGIN_PASSWORD = "reporter-Secret-4711"
APP_ROLES = ("fortress_app", "fortress_reporter")
APP_USERS = {
    "alice": "11111111-1111-4111-8111-111111111111",
    "zoe": "22222222-2222-4222-8222-222222222222",
    "carol": "33333333-3333-4333-8333-333333333333",
}


class SupabasePlatform:
    """One throwaway cluster shaped like Supabase. Use as a context manager."""

    def __init__(self, suite=None, *, label: str = ""):
        self.cluster = Cluster(suite, password=ADMIN_PW, superuser="supabase_admin")
        self.suite = self.cluster.suite
        self.major = self.suite.major
        self.label = label
        self.projects: list[str] = []

    # -- lifecycle ---------------------------------------------------------------------
    def __enter__(self) -> SupabasePlatform:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> None:
        self.cluster.start()

    def stop(self) -> None:
        self.cluster.stop()

    def __repr__(self) -> str:
        return f"<SupabasePlatform pg{self.major}{self.label and '-' + self.label} port={self.cluster.port}>"

    # -- projects ----------------------------------------------------------------------
    def new_project(self, name: str | None = None) -> Target:
        """A fresh database shaped like a new Supabase project, owned by `postgres`; returns a
        target logging in as `postgres` with the conftest PASSWORD."""
        name = name or f"proj_{uuid.uuid4().hex[:8]}"
        with self.cluster.target().connect(autocommit=True, search_path=None) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        self.projects.append(name)
        with self.admin(name).connect(search_path=None) as conn:
            conn.execute(PLATFORM_SQL.read_text())
            conn.execute(sql.SQL("ALTER ROLE postgres PASSWORD {}").format(sql.Literal(PASSWORD)))
            conn.execute(sql.SQL("ALTER DATABASE {} OWNER TO postgres").format(sql.Identifier(name)))
        return self.target(name)

    def drop_project(self, name: str) -> None:
        self.cluster.drop_database(name)
        if name in self.projects:
            self.projects.remove(name)

    def target(self, name: str) -> Target:
        """Log in as `postgres` (what a Supabase user and a backup tool get)."""
        return Target(
            params={"host": "127.0.0.1", "port": str(self.cluster.port), "user": "postgres", "dbname": name},
            password=PASSWORD,
        )

    def admin(self, name: str = "postgres") -> Target:
        """Log in as the superuser `supabase_admin` (for setup and assertions only)."""
        if isinstance(name, Target):
            name = name.dbname
        return self.cluster.target(name)

    def load_app(self, target: Target) -> None:
        """Run app.sql as `postgres` in the target's database, in one transaction."""
        assert target.user == "postgres", "the app is loaded as postgres, like on Supabase"
        with target.connect(search_path=None) as conn:
            conn.execute(APP_SQL.read_text())

    def url(self, target: Target) -> str:
        """Percent-encoded postgresql:// URL for DATABASE_URL (user and password of the target)."""
        return self.cluster.url(target.dbname, user=target.user, password=target.password or "")


def _platform(major: int, label: str):
    try:
        suite = server_suite(major)
    except Exception as exc:  # pragma: no cover - reported as a skip with the reason
        pytest.skip(f"PostgreSQL {major} server binaries not available: {exc}")
    with SupabasePlatform(suite, label=label) as platform:
        yield platform


@pytest.fixture(scope="session")
def supa15_a():
    yield from _platform(15, "a")


@pytest.fixture(scope="session")
def supa15_b():
    yield from _platform(15, "b")


@pytest.fixture(scope="session")
def supa17_a():
    yield from _platform(17, "a")


@pytest.fixture(scope="session")
def supa17_b():
    yield from _platform(17, "b")


@pytest.fixture(params=[15, 17], ids=["supa15", "supa17"])
def supa(request) -> SupabasePlatform:
    """Runs a test once per supported major, on that major's `a` platform."""
    return request.getfixturevalue(f"supa{request.param}_a")


# -- hosted Supabase: `postgres` is not a superuser -------------------------------------------

HOSTED_SQL = HERE / "hosted.sql"
HOSTED_CRON_SQL = HERE / "hosted_pg_cron.sql"
HOSTED_APP_SQL = HERE / "hosted_app.sql"
# Roles and memberships the hosted platform makes (hosted.sql); never the app's.
HOSTED_PLATFORM_ROLES = ("duckdb_role", "supabase_superuser", "supabase_etl_admin", "supabase_policy_grants")


class HostedPlatform(SupabasePlatform):
    """One throwaway cluster shaped like a HOSTED Supabase project (tests/supabase/hosted.sql over
    platform.sql): `postgres` is a non-superuser with hosted's grants, supautils' policy grants
    emulated by a stand-in owner role and guard event triggers, pgjwt-like extension functions
    that postgres holds X*/supabase_admin on, and, where the server has it, real pg_cron
    (Debian's postgresql-15-cron) preloaded with cron.database_name = 'postgres'.

    As on hosted, a project is the database `postgres`: `new_project()` drops and recreates it
    (pg_cron can only live in that database). `new_project(name)` makes another database with the
    same platform, where pg_cron cannot be enabled (like a project that never enabled it).
    pg_cron's scheduler stops when the first project replaces `postgres`: no job ever runs, so
    cron.job_run_details only holds what a test writes."""

    def __init__(self, suite=None, *, label: str = ""):
        super().__init__(suite, label=label)
        self.cron_missing: str | None = None  # why pg_cron cannot be enabled here, or None

    def start(self) -> None:
        super().start()
        with self.cluster.target("template1").connect(autocommit=True) as conn:
            available = conn.execute("SELECT EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'pg_cron')").fetchone()[0]
            if not available:
                self.cron_missing = (
                    f"the PostgreSQL {self.suite.version} server in {self.suite.bindir} has no pg_cron "
                    f"(Debian: apt-get install postgresql-{self.major}-cron)"
                )
                return
        assert self.cluster.root is not None
        # (ALTER SYSTEM refuses cron.* before the library is loaded; the file is the server's own)
        with open(self.cluster.root / "data" / "postgresql.conf", "a") as conf:
            conf.write(
                "\n# hosted Supabase: pg_cron (tests/supabase_platform.py)\nshared_preload_libraries = 'pg_cron'\ncron.database_name = 'postgres'\n"
            )
        self._restart()

    def _restart(self) -> None:
        c = self.cluster
        assert c.root is not None
        c._run(
            [str(c._bindir_used / "pg_ctl"), "-D", str(c.root / "data"), "-l", str(c.root / "server.log"), "-m", "fast", "-w", "-t", "60", "restart"]
        )

    def new_project(self, name: str | None = None) -> Target:
        """A fresh hosted project; by default THE project database `postgres` (recreated)."""
        name = name or "postgres"
        with self.cluster.target("template1").connect(autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        if name not in self.projects:
            self.projects.append(name)
        with self.admin(name).connect() as conn:
            conn.execute(PLATFORM_SQL.read_text())
            conn.execute(HOSTED_SQL.read_text())
            conn.execute(sql.SQL("ALTER ROLE postgres PASSWORD {}").format(sql.Literal(PASSWORD)))
            conn.execute(sql.SQL("ALTER DATABASE {} OWNER TO postgres").format(sql.Identifier(name)))
        return self.target(name)

    def enable_pg_cron(self, target: Target) -> None:
        """Enable pg_cron as the dashboard does (as supabase_admin, with hosted's grants); skips
        the test, with the reason, where the server has no pg_cron or the project is not the
        cron database."""
        if self.cron_missing:
            pytest.skip(f"pg_cron: {self.cron_missing}")
        assert target.dbname == "postgres", "pg_cron can only be enabled in the database `postgres` (cron.database_name)"
        with self.admin(target).connect() as conn:
            conn.execute(HOSTED_CRON_SQL.read_text())

    def load_app(self, target: Target, *, hosted_extras: bool = True) -> None:
        """app.sql as `postgres`, then (by default) hosted_app.sql: a partitioned table, large
        objects, a materialized view. Cron jobs are the test's (they need pg_cron)."""
        super().load_app(target)
        if hosted_extras:
            with target.connect() as conn:
                conn.execute(HOSTED_APP_SQL.read_text())


def _hosted(major: int, label: str):
    try:
        suite = server_suite(major)
    except Exception as exc:  # pragma: no cover - reported as a skip with the reason
        pytest.skip(f"PostgreSQL {major} server binaries not available: {exc}")
    with HostedPlatform(suite, label=label) as platform:
        yield platform


@pytest.fixture(scope="session")
def hosted15_a():
    yield from _hosted(15, "hosted-a")


@pytest.fixture(scope="session")
def hosted15_b():
    yield from _hosted(15, "hosted-b")


@pytest.fixture(scope="session")
def hosted17_a():
    yield from _hosted(17, "hosted-a")


@pytest.fixture(scope="session")
def hosted17_b():
    yield from _hosted(17, "hosted-b")


@pytest.fixture(params=[15, 17], ids=["hosted15", "hosted17"])
def hosted(request) -> HostedPlatform:
    """Runs a test once per supported major, on that major's hosted `a` platform."""
    return request.getfixturevalue(f"hosted{request.param}_a")
