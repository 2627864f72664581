"""What the app added onto platform tables: triggers (an `on_auth_user_created` trigger on
auth.users) and row-level-security policies (on storage.objects). pg_dump never sees them in
the app's archive, since their tables live in excluded platform schemas, and `supabase db dump`
loses them. A backup records which ones there are (kind, table, name, oid: data, not SQL) and
dumps the platform tables they sit on schema-only into `platform-schema.dump`; a restore picks
exactly those entries from that archive's table of contents, by oid, so pg_restore writes them.

A trigger counts as the app's when its function lives outside the platform's schemas, or in
`extensions` / `supabase_functions`, where the platform keeps functions for apps to call
(moddatetime, database-webhook http_request); the platform's own triggers call functions of
their own schema (storage.protect_delete). Every policy on a platform table counts as the app's
(the platform ships none; `supabase db reset` drops them all for the same reason), except on
tables that belong to an extension (pg_cron's cron.job comes with its own policy).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg

from . import sqltext
from .errors import IntegrityError
from .platform import Platform


@dataclass(frozen=True)
class Addition:
    kind: str  # "trigger" | "policy"
    schema: str
    table: str
    name: str
    oid: int = 0  # at the source: picks the entry from platform-schema.dump's table of contents
    function_schema: str = ""  # a trigger's function's schema (read from the target, never from a backup)

    @property
    def label(self) -> str:
        return f"{self.kind} {self.name} on {self.schema}.{self.table}"

    @property
    def drop_sql(self) -> str:
        what = "TRIGGER" if self.kind == "trigger" else "POLICY"
        return f"DROP {what} IF EXISTS {sqltext.ident(self.name)} ON {sqltext.qualified(self.schema, self.table)};"

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "schema": self.schema, "table": self.table, "name": self.name, "oid": self.oid}

    @staticmethod
    def from_dict(d: Any) -> Addition:
        try:
            a = Addition(d["kind"], d["schema"], d["table"], d["name"], d["oid"])
            ok = (
                a.kind in ("trigger", "policy")
                and all(isinstance(x, str) for x in (a.schema, a.table, a.name))
                and isinstance(a.oid, int)
                and not isinstance(a.oid, bool)
            )
        except (KeyError, TypeError):
            ok = False
        if not ok:
            raise IntegrityError(
                "The backup's manifest lists a platform addition of the wrong shape", "restore another backup; this one is damaged or was edited"
            )
        return a


APP_FUNCTION_SCHEMAS = ("extensions", "supabase_functions")

_NOT_EXTENSION_TABLE = (
    " AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d WHERE d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass"
    " AND d.objid = c.oid AND d.deptype = 'e')"
)


def find(conn: psycopg.Connection, platform: Platform) -> list[Addition]:
    managed = [r[0] for r in conn.execute("SELECT nspname FROM pg_catalog.pg_namespace") if platform.is_managed(r[0])]
    if not managed:
        return []
    out: list[Addition] = []
    for oid, schema, table, name, fschema in conn.execute(
        "SELECT t.oid::int8, n.nspname, c.relname, t.tgname, fn.nspname"
        " FROM pg_catalog.pg_trigger t JOIN pg_catalog.pg_class c ON c.oid = t.tgrelid"
        " JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
        " JOIN pg_catalog.pg_proc p ON p.oid = t.tgfoid JOIN pg_catalog.pg_namespace fn ON fn.oid = p.pronamespace"
        " WHERE NOT t.tgisinternal AND n.nspname = ANY(%s)" + _NOT_EXTENSION_TABLE + " ORDER BY 2, 3, 4",
        (managed,),
    ):
        if platform.is_managed(fschema) and fschema not in APP_FUNCTION_SCHEMAS:
            continue
        out.append(Addition("trigger", schema, table, name, oid, fschema))
    for oid, schema, table, name in conn.execute(
        "SELECT p.oid::int8, n.nspname, c.relname, p.polname"
        " FROM pg_catalog.pg_policy p JOIN pg_catalog.pg_class c ON c.oid = p.polrelid"
        " JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = ANY(%s)" + _NOT_EXTENSION_TABLE + " ORDER BY 2, 3, 4",
        (managed,),
    ):
        out.append(Addition("policy", schema, table, name, oid))
    return out
