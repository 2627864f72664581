"""What belongs to the hosting platform rather than to the app.

On a Supabase project the schemas below are created and migrated by the platform (and by the
extensions it ships). Their DDL is never dumped or dropped; the *data* of the few that hold the
app's own records (auth users, storage object rows, ...) is backed up and restored. The lists
follow the Supabase CLI's `db dump` (see README, "What a backup covers").

A bare PostgreSQL has no platform: every non-system schema is the app's, including one that
happens to be called `auth`.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass

import psycopg

SYSTEM_SCHEMAS = ("pg_catalog", "information_schema", "pg_toast")
SYSTEM_PATTERNS = ("pg_*",)

# Schemas whose DDL the platform owns (never dumped as DDL, never dropped on reset): the
# Supabase CLI's InternalSchemas, less `supabase_migrations`, which holds the app's migration
# history (the CLI creates it for `db push`; it is owned by postgres) and travels as app schema so
# `supabase db push` still agrees with a restored database.
SUPABASE_MANAGED_SCHEMAS = (
    "_analytics",
    "_realtime",
    "_supavisor",
    "auth",
    "etl",
    "extensions",
    "pgbouncer",
    "realtime",
    "storage",
    "supabase_functions",
    # owned by extensions the platform installs
    "cron",
    "dbdev",
    "graphql",
    "graphql_public",
    "net",
    "pgmq",
    "pgsodium",
    "pgsodium_masks",
    "pgtle",
    "repack",
    "tiger",
    "tiger_data",
    "timescaledb_*",
    "_timescaledb_*",
    "topology",
    "vault",
)

# Managed schemas whose rows are the app's data and travel with a backup (the CLI's data dump
# includes these: auth users, storage object rows, queues). pg_cron's jobs are not among them:
# on hosted projects `postgres` may only read cron.job, so jobs travel as jobs (manifest
# "cron_jobs") and come back through cron.schedule_in_database(); cron.job_run_details is
# history and is not backed up.
SUPABASE_DATA_SCHEMAS = ("auth", "storage", "supabase_functions", "net", "pgmq", "dbdev")

# Tables inside those schemas that record the platform's own state, not the app's.
SUPABASE_EXCLUDED_DATA_TABLES = (
    "auth.schema_migrations",
    "storage.migrations",
    "supabase_functions.migrations",
    "storage.buckets_vectors",
    "storage.vector_indexes",
)

# Roles the platform creates (fnmatch patterns); a backup never recreates or alters them.
SUPABASE_RESERVED_ROLES = (
    "anon",
    "authenticated",
    "authenticator",
    "cli_login_*",
    "dashboard_user",
    "pgbouncer",
    "postgres",
    "service_role",
    "supabase_*",
    "pgsodium_keyholder",
    "pgsodium_keyiduser",
    "pgsodium_keymaker",
    "pgtle_admin",
)

PLATFORM_PUBLICATIONS = ("supabase_realtime*", "realtime_messages*")


@dataclass(frozen=True)
class Platform:
    name: str  # "supabase" | "postgres"
    managed_patterns: tuple[str, ...] = ()
    data_schemas: tuple[str, ...] = ()
    excluded_data_tables: tuple[str, ...] = ()
    reserved_roles: tuple[str, ...] = ()
    publications: tuple[str, ...] = ()

    def is_system(self, schema: str) -> bool:
        return schema in SYSTEM_SCHEMAS or any(fnmatch.fnmatchcase(schema, p) for p in SYSTEM_PATTERNS)

    def is_managed(self, schema: str) -> bool:
        return any(fnmatch.fnmatchcase(schema, p) for p in self.managed_patterns)

    def is_app_schema(self, schema: str) -> bool:
        return not self.is_system(schema) and not self.is_managed(schema)

    def is_reserved_role(self, role: str) -> bool:
        return role.startswith("pg_") or any(fnmatch.fnmatchcase(role, p) for p in self.reserved_roles)

    def is_platform_publication(self, name: str) -> bool:
        return any(fnmatch.fnmatchcase(name, p) for p in self.publications)


POSTGRES = Platform(name="postgres", reserved_roles=("postgres",))
SUPABASE = Platform(
    name="supabase",
    managed_patterns=SUPABASE_MANAGED_SCHEMAS,
    data_schemas=SUPABASE_DATA_SCHEMAS,
    excluded_data_tables=SUPABASE_EXCLUDED_DATA_TABLES,
    reserved_roles=SUPABASE_RESERVED_ROLES,
    publications=PLATFORM_PUBLICATIONS,
)


def detect(conn: psycopg.Connection) -> Platform:
    """Supabase if the platform's admin role and auth schema are both there."""
    row = conn.execute(
        "SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'supabase_admin'),       EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = 'auth')"
    ).fetchone()
    return SUPABASE if row and row[0] and row[1] else POSTGRES


def by_name(name: str) -> Platform:
    return SUPABASE if name == "supabase" else POSTGRES
