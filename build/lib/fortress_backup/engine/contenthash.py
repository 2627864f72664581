"""Per-table content hashes that do not depend on row order, for restore drills.

A backup records, in the dump's own snapshot, one hash per ordinary table; a drill restores the
backup into a throwaway server and computes the same hash there. Equal hashes mean the restored
table holds the same multiset of rows as the source did when the archive was written, whatever
order the rows were loaded in.

The hash of a table is the sum, modulo 2**64 for each half, of the md5 of every row's text
(`ROW(columns in name order)::text`): a multiset hash, so order-independent, computed by the
server in one scan with constant memory (no sort, no string_agg). Corruption, a swapped data
block or a lost row changes it; an adversary who can rewrite a backup is the signature's
business (manifest.hmac), not this one's.

A row's text depends on session settings (time zone, date and interval style, float digits,
bytea output, monetary locale) and on column order; both sides fix the settings below and list
columns by name, so the source and a restored copy (whose inherited columns may come in another
order) agree. Only ordinary tables (and partitions) are hashed: a partitioned parent's rows are
its partitions', a materialized view is refreshed on restore from the restored rows.
"""

from __future__ import annotations

from collections.abc import Callable

import psycopg
from psycopg import sql

ALGORITHM = "md5-sum128-v1"  # recorded in the manifest; a drill compares only hashes of the same algorithm

# (setting, value) fixed, for the current transaction only, before rows are turned into text
SETTINGS = (
    ("search_path", "pg_catalog"),
    ("timezone", "UTC"),
    ("datestyle", "ISO, MDY"),
    ("intervalstyle", "postgres"),
    ("extra_float_digits", "1"),
    ("bytea_output", "hex"),
    ("lc_monetary", "C"),
)

_MOD = 1 << 64


def _columns(conn: psycopg.Connection, schema: str, table: str) -> list[str]:
    rows = conn.execute(
        "SELECT a.attname FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_class c ON c.oid = a.attrelid"
        " JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
        ' WHERE n.nspname = %s AND c.relname = %s AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attname COLLATE "C"',
        (schema, table),
    ).fetchall()
    return [r[0] for r in rows]


def table_query(schema: str, table: str, columns: list[str]) -> sql.Composed:
    """count(*) and the two 64-bit halves' sums (as numeric text) of one table's row md5s."""
    row = sql.SQL("ROW({})").format(sql.SQL(", ").join(sql.SQL("t.{}").format(sql.Identifier(c)) for c in columns))
    half = (
        "coalesce(pg_catalog.sum(('x' || pg_catalog.substr(h, {}, 16))::pg_catalog.bit(64)::pg_catalog.int8::pg_catalog.numeric), 0)::pg_catalog.text"
    )
    return sql.SQL(
        "SELECT pg_catalog.count(*), "
        + half.format(1)
        + ", "
        + half.format(17)
        + " FROM (SELECT pg_catalog.md5(({})::pg_catalog.text) AS h FROM ONLY {}.{} t) s"
    ).format(row, sql.Identifier(schema), sql.Identifier(table))


def combine(first: str, second: str) -> str:
    return f"{int(first) % _MOD:016x}{int(second) % _MOD:016x}"


def fix_settings(conn: psycopg.Connection) -> None:
    """Fix how rows print, for the current transaction (the caller holds one open)."""
    for name, value in SETTINGS:
        conn.execute("SELECT pg_catalog.set_config(%s, %s, true)", (name, value))


def table_hashes(
    conn: psycopg.Connection, tabs: list[tuple[str, str, str]], *, progress: Callable[[str], None] | None = None
) -> dict[str, tuple[int, str]]:
    """ "schema.table" -> (rows, hash) for every ordinary table of `tabs` ((schema, table,
    relkind) as dbinfo.tables gives them). Runs inside the caller's transaction (the dump's
    snapshot at backup time), after fix_settings()."""
    fix_settings(conn)
    out: dict[str, tuple[int, str]] = {}
    for schema, table, kind in tabs:
        if kind != "r":
            continue
        if progress:
            progress(f"{schema}.{table}")
        count, first, second = conn.execute(table_query(schema, table, _columns(conn, schema, table))).fetchone()  # type: ignore[misc]
        out[f"{schema}.{table}"] = (int(count), combine(first, second))
    return out


def snapshot_hashes(conn: psycopg.Connection, tabs: list[tuple[str, str, str]]) -> dict[str, str]:
    """The call a backup makes in its snapshot transaction: "schema.table" -> hash. The fixed
    settings are undone afterwards (rolled back to a savepoint; the snapshot stays), so the
    rest of the backup's queries run as before."""
    conn.execute("SAVEPOINT fortress_content_hash")
    try:
        return {name: digest for name, (_, digest) in table_hashes(conn, tabs).items()}
    finally:
        conn.execute("ROLLBACK TO SAVEPOINT fortress_content_hash")
        conn.execute("RELEASE SAVEPOINT fortress_content_hash")


def database_hashes(conn: psycopg.Connection, tabs: list[tuple[str, str, str]]) -> dict[str, tuple[int, str]]:
    """What a drill computes on the restored copy: one read-only transaction."""
    with conn.transaction():
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        return table_hashes(conn, tabs)


def record(manifest: dict, hashes: dict[str, str] | None) -> None:
    """Add the hashes to a manifest's tables (format 2, extended compatibly: readers that do
    not know "hash" ignore it). None: hashes were not taken (setting off, schema-only)."""
    if hashes is None:
        return
    manifest["content_hash"] = {"algorithm": ALGORITHM, "settings": dict(SETTINGS)}
    for t in manifest.get("tables", []):
        name = f"{t['schema']}.{t['name']}"
        if name in hashes and t.get("rows") is not None:
            t["hash"] = hashes[name]
