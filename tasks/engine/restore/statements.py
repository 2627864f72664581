"""The statements a restore or reset writes itself, all through sqltext."""

from __future__ import annotations

import json
from collections.abc import Iterable

from ..sqltext import do_block, ident, literal, qualified

LO_UNLINK = "SELECT pg_catalog.lo_unlink(oid) FROM pg_catalog.pg_largeobject_metadata;"


def reset_sql(
    *,
    drop_schemas: Iterable[str],
    publications: Iterable[str],
    large_objects: bool,
    public_contents: Iterable[str] | None,
    drop_additions: Iterable[str] = (),
    platform_tables: Iterable[tuple[str, str]] = (),
) -> str:
    """The runbook's `db reset` for the app's objects only; platform schemas are left alone.

    `public_contents`: DROP statements that empty `public` where the platform configured it
    (Supabase); None to drop and recreate `public` exactly as initdb makes it."""
    out = list(drop_additions)
    out += [f"DROP PUBLICATION IF EXISTS {ident(p)};" for p in publications]
    if large_objects:
        out.append(LO_UNLINK)
    out += [f"DROP SCHEMA IF EXISTS {ident(s)} CASCADE;" for s in drop_schemas if s != "public"]
    if public_contents is not None:
        out.extend(public_contents)
    else:
        # pg_dump writes only differences from a default `public`, so recreate exactly that.
        out += [
            "DROP SCHEMA IF EXISTS public CASCADE;",
            "CREATE SCHEMA public;",
            "ALTER SCHEMA public OWNER TO pg_database_owner;",
            "GRANT USAGE ON SCHEMA public TO PUBLIC;",
            "COMMENT ON SCHEMA public IS 'standard public schema';",
        ]
    tables = list(platform_tables)
    if tables:
        # CASCADE only reaches what the plan listed: the plan refuses anything else beforehand.
        out.append("TRUNCATE " + ", ".join(f"ONLY {qualified(*t)}" for t in tables) + " CASCADE;")
    return "\n".join(out) + "\n"


def truncate_sql(tables: list[tuple[str, str]], large_objects: bool, partitioned: Iterable[tuple[str, str]] = ()) -> str:
    out = LO_UNLINK + "\n" if large_objects else ""
    # ONLY before each table: an inheritance child the backup does not list keeps its rows.
    # A partitioned parent cannot be truncated ONLY; it goes whole, its partitions being its rows
    # (and a foreign key declared on it would otherwise block truncating what it references).
    names = [f"ONLY {qualified(*t)}" for t in tables] + [qualified(*t) for t in partitioned]
    if names:
        out += "TRUNCATE " + ", ".join(names) + ";\n"
    return out


def check_sql(checks: Iterable[tuple[str, str, int]], fresh: Iterable[tuple[str, str]] = ()) -> str:
    """A DO block that raises when any table's row count differs from the manifest.

    `fresh`: tables created or emptied (TRUNCATE) inside the restore's transaction. Their rows
    are all this transaction's, so the server's own per-transaction counters (rows inserted,
    none updated or deleted) give the count without reading the table again; a table whose
    counters say anything else (or are off: track_counts) is counted with count(*). The others
    are always counted."""
    fresh = set(fresh)
    lines = []
    for schema, table, rows in checks:
        name = literal(f"{schema}.{table}")
        count = (
            f"SELECT count(*) INTO n FROM ONLY {qualified(schema, table)};\n"
            f"  IF n <> {int(rows)} THEN RAISE EXCEPTION 'restore check failed: % has % rows, the backup has %',"
            f" {name}, n, {int(rows)}; END IF;"
        )
        if (schema, table) in fresh:
            rel = f"{literal(qualified(schema, table))}::pg_catalog.regclass"
            count = (
                f"IF NOT (pg_catalog.pg_stat_get_xact_tuples_inserted({rel}) = {int(rows)}"
                f" AND pg_catalog.pg_stat_get_xact_tuples_deleted({rel}) = 0"
                f" AND pg_catalog.pg_stat_get_xact_tuples_updated({rel}) = 0) THEN\n  {count}\n  END IF;"
            )
        lines.append("  " + count)
    if not lines:
        return ""
    return do_block("DECLARE n bigint; BEGIN\n" + "\n".join(lines) + "\nEND") + "\n"


def _namespace_objects(names: str, into: str = "") -> str:
    return (
        f"SELECT count(*) {into}FROM pg_catalog.pg_depend d JOIN pg_catalog.pg_namespace s ON s.oid = d.refobjid "
        f"WHERE d.refclassid = 'pg_catalog.pg_namespace'::pg_catalog.regclass AND d.deptype = 'n' AND s.nspname = ANY ({names})"
    )


# every object that belongs to a schema depends on it: how many the schemas in %s hold
NAMESPACE_OBJECTS = _namespace_objects("%s")
TARGET_NO_LONGER_EMPTY = "the target was empty when the plan was made but holds objects of the app's now (made while the plan was shown)"


def still_empty_check(schemas: list[str], expected: int) -> str:
    """A DO block that raises unless the schemas a restore without an undo point resets hold
    just the `expected` objects they held when its plan was made."""
    names = "ARRAY[" + ", ".join(literal(n) for n in schemas) + "]::text[]"
    body = f"DECLARE n bigint; BEGIN\n  {_namespace_objects(names, 'INTO n ')};\n"
    body += f"  IF n <> {int(expected)} THEN RAISE EXCEPTION {literal(TARGET_NO_LONGER_EMPTY)}; END IF;\nEND"
    return do_block(body) + "\n"


def begin_sql(lock_timeout: str, channel: str, *settings: str) -> str:
    """How every restore transaction starts: no name resolved through the database's own
    search_path (its owner could put a `count()` of theirs first; pg_restore's scripts set theirs
    per entry), the lock timeout, BEGIN, the transaction's id (TXN_CHECK), `settings` (what the
    checks before COMMIT compare with), and the first NOTIFY, which tells an early COMMIT apart."""
    return (
        "SELECT pg_catalog.set_config('search_path', '', false);\n"
        f"SET lock_timeout = {literal(lock_timeout)};\n"
        "SET client_min_messages = warning;\nSET standard_conforming_strings = on;\nBEGIN;\n"
        + "\n".join((TXN_START, *settings))
        + f"\nNOTIFY {ident(channel)};\n"
    )


# The restore's transaction must be the one that commits: a statement in a backup could end it
# early (COMMIT, ROLLBACK). The transaction's id is noted at the start, in a setting that does
# not outlive it, and checked right before COMMIT.
TXN_START = "SELECT pg_catalog.set_config('fortress.restore_txn', pg_catalog.txid_current()::text, true);"
TXN_EARLY_END = "the restore's transaction was ended early by a statement in the backup"
TXN_CHECK = do_block(
    "BEGIN IF pg_catalog.current_setting('fortress.restore_txn', true) IS DISTINCT FROM "
    "pg_catalog.txid_current()::text THEN RAISE EXCEPTION " + literal(TXN_EARLY_END) + "; END IF; END"
)


# Nothing in a restore may hand out power over the server: the roles that are superusers or
# may replicate, bypass RLS or create roles, and who is a member of those or of the roles that
# reach the server's files and programs, are noted at the start and must be the same right
# before COMMIT. The backup's own functions (a CHECK constraint, a column default) run as the
# restoring user while rows load; this is what stops one of them granting itself more.
_POWER = (
    "SELECT pg_catalog.md5(coalesce(pg_catalog.string_agg(x, ',' ORDER BY x), '')) FROM ("
    " SELECT r.rolname || ':' || r.rolsuper::text || r.rolreplication::text || r.rolbypassrls::text"
    "        || r.rolcreaterole::text AS x FROM pg_catalog.pg_roles r"
    "  WHERE r.rolsuper OR r.rolreplication OR r.rolbypassrls OR r.rolcreaterole"
    " UNION ALL"
    " SELECT g.rolname || '>' || u.rolname FROM pg_catalog.pg_auth_members m"
    "   JOIN pg_catalog.pg_roles g ON g.oid = m.roleid JOIN pg_catalog.pg_roles u ON u.oid = m.member"
    "  WHERE g.rolsuper OR g.rolreplication OR g.rolbypassrls OR g.rolcreaterole"
    "     OR g.rolname IN ('pg_execute_server_program', 'pg_read_server_files', 'pg_write_server_files')) s"
)
POWER_START = f"SELECT pg_catalog.set_config('fortress.power', ({_POWER}), true);"
POWER_CHANGED = (
    "the restore would have changed who holds power over the server (superuser, replication, bypassrls, createrole, or membership in such roles)"
)
POWER_CHECK = do_block(
    f"BEGIN IF pg_catalog.current_setting('fortress.power', true) IS DISTINCT FROM ({_POWER}) THEN "
    f"RAISE EXCEPTION {literal(POWER_CHANGED)}; END IF; END"
)

# Nor may anything create a role or a membership the plan did not list (a CHECK function of the
# backup's, running as the restoring user, making itself a LOGIN role that reads everything).
_ROLES_NOW = (
    "SELECT pg_catalog.jsonb_build_array('r', r.rolname) AS x FROM pg_catalog.pg_roles r"
    " UNION ALL SELECT pg_catalog.jsonb_build_array('m', g.rolname, u.rolname) FROM pg_catalog.pg_auth_members m"
    " JOIN pg_catalog.pg_roles g ON g.oid = m.roleid JOIN pg_catalog.pg_roles u ON u.oid = m.member"
)
ROLES_START = f"SELECT pg_catalog.set_config('fortress.roles', (SELECT coalesce(pg_catalog.jsonb_agg(x), '[]') FROM ({_ROLES_NOW}) s)::text, true);"
ROLES_CHANGED = "the restore would have created roles or memberships its plan does not list"


def roles_check(created: list[str], grants: list[tuple[str, str]], current_user: str) -> str:
    planned = [["r", r] for r in created] + [["m", g, m] for g, m in grants]
    planned += [["m", r, current_user] for r in created]  # PostgreSQL 16+: the creator's own membership
    return do_block(
        "DECLARE extra jsonb; BEGIN\n"
        f"SELECT pg_catalog.jsonb_agg(x) INTO extra FROM (SELECT x FROM ({_ROLES_NOW}) n"
        " EXCEPT SELECT x FROM pg_catalog.jsonb_array_elements(pg_catalog.current_setting('fortress.roles', true)::jsonb) s(x)"
        f" EXCEPT SELECT x FROM pg_catalog.jsonb_array_elements({literal(json.dumps(planned))}::jsonb) p(x)) d;\n"
        f"IF extra IS NOT NULL THEN RAISE EXCEPTION {literal(ROLES_CHANGED + ': %')}, extra; END IF;\nEND"
    )
