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
