"""What the app added onto platform tables: triggers (an `on_auth_user_created` trigger on
auth.users) and row-level-security policies (on storage.objects). pg_dump never sees them,
since their tables live in excluded platform schemas, and `supabase db dump` loses them; we
capture them as SQL from the catalog and put them back after the app's schema is restored.

A trigger counts as the app's when its function lives outside the platform's schemas, or in
`extensions` / `supabase_functions`, where the platform keeps functions for apps to call
(moddatetime, database-webhook http_request); the platform's own triggers call functions of
their own schema (storage.protect_delete). Every policy on a platform table counts as the app's
(the platform ships none; `supabase db reset` drops them all for the same reason), except on
tables that belong to an extension (pg_cron's cron.job comes with its own policy).
"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg

from .platform import Platform

_CMD = {"r": "SELECT", "a": "INSERT", "w": "UPDATE", "d": "DELETE", "*": "ALL"}


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


@dataclass(frozen=True)
class Addition:
    kind: str  # "trigger" | "policy"
    schema: str
    table: str
    name: str
    create_sql: str

    @property
    def label(self) -> str:
        return f"{self.kind} {self.name} on {self.schema}.{self.table}"

    @property
    def drop_sql(self) -> str:
        what = "TRIGGER" if self.kind == "trigger" else "POLICY"
        return f"DROP {what} IF EXISTS {_ident(self.name)} ON {_ident(self.schema)}.{_ident(self.table)};"


APP_FUNCTION_SCHEMAS = ("extensions", "supabase_functions")

_NOT_EXTENSION_TABLE = (
    " AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d WHERE d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass"
    " AND d.objid = c.oid AND d.deptype = 'e')"
)


def find(conn: psycopg.Connection, platform: Platform) -> list[Addition]:
    managed = [r[0] for r in conn.execute("SELECT nspname FROM pg_namespace") if platform.is_managed(r[0])]
    if not managed:
        return []
    # Fully qualified names in the generated SQL, whatever the session's search_path.
    conn.execute("SELECT pg_catalog.set_config('search_path', '', true)")
    out: list[Addition] = []
    for schema, table, name, definition, enabled, fschema in conn.execute(
        "SELECT n.nspname, c.relname, t.tgname, pg_catalog.pg_get_triggerdef(t.oid), t.tgenabled::text, fn.nspname"
        " FROM pg_catalog.pg_trigger t JOIN pg_catalog.pg_class c ON c.oid = t.tgrelid"
        " JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
        " JOIN pg_catalog.pg_proc p ON p.oid = t.tgfoid JOIN pg_catalog.pg_namespace fn ON fn.oid = p.pronamespace"
        " WHERE NOT t.tgisinternal AND n.nspname = ANY(%s)" + _NOT_EXTENSION_TABLE + " ORDER BY 1, 2, 3",
        (managed,),
    ):
        if platform.is_managed(fschema) and fschema not in APP_FUNCTION_SCHEMAS:
            continue
        sql = definition + ";"
        qualified = f"{_ident(schema)}.{_ident(table)}"
        if enabled == "D":
            sql += f"\nALTER TABLE {qualified} DISABLE TRIGGER {_ident(name)};"
        elif enabled == "R":
            sql += f"\nALTER TABLE {qualified} ENABLE REPLICA TRIGGER {_ident(name)};"
        elif enabled == "A":
            sql += f"\nALTER TABLE {qualified} ENABLE ALWAYS TRIGGER {_ident(name)};"
        out.append(Addition("trigger", schema, table, name, sql))
    for schema, table, name, permissive, cmd, roles, qual, check in conn.execute(
        "SELECT n.nspname, c.relname, p.polname, p.polpermissive, p.polcmd::text,"
        " ARRAY(SELECT CASE WHEN r = 0 THEN 'public' ELSE (SELECT rolname FROM pg_catalog.pg_roles WHERE oid = r) END"
        "       FROM unnest(p.polroles) AS r),"
        " pg_catalog.pg_get_expr(p.polqual, p.polrelid), pg_catalog.pg_get_expr(p.polwithcheck, p.polrelid)"
        " FROM pg_catalog.pg_policy p JOIN pg_catalog.pg_class c ON c.oid = p.polrelid"
        " JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = ANY(%s)" + _NOT_EXTENSION_TABLE
        + " ORDER BY 1, 2, 3",
        (managed,),
    ):
        to = ", ".join("PUBLIC" if r == "public" else _ident(r) for r in roles)
        sql = (
            f"CREATE POLICY {_ident(name)} ON {_ident(schema)}.{_ident(table)}"
            f" AS {'PERMISSIVE' if permissive else 'RESTRICTIVE'} FOR {_CMD[cmd]} TO {to}"
            + (f" USING ({qual})" if qual else "")
            + (f" WITH CHECK ({check})" if check else "")
            + ";"
        )
        out.append(Addition("policy", schema, table, name, sql))
    return out


def to_sql(additions: list[Addition]) -> str:
    lines = [f"-- {a.label}\n{a.create_sql}" for a in additions]
    return "\n".join(lines) + ("\n" if lines else "")
