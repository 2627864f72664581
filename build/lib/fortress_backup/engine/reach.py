"""What a reset's CASCADE would reach beyond the objects it names.

A reset drops the app's schemas (`DROP SCHEMA ... CASCADE`), empties `public` object by object
(`DROP <kind> ... CASCADE`) and empties platform tables (`TRUNCATE ONLY ... CASCADE`). CASCADE
follows the catalog, not the plan: a view in `extensions` over an app table is dropped with it,
a foreign key on `billing.orders` that references an app table is dropped, a table whose foreign
key references `auth.users` is emptied with it. This module says which objects that would be,
before anything runs, so the plan can list them (or refuse).

How: the closure is computed from the catalog the way PostgreSQL computes it, in one recursive
query over `pg_depend` (DROP: findDependentObjects in dependency.c) and a walk over the foreign
keys of `pg_constraint` (TRUNCATE: heap_truncate_find_FKs in heap.c, climbing partition parents).
Nothing is dropped or truncated to find out: the queries only read the catalog, take no lock on
any table, and run in a read-only transaction (or savepoint) that is rolled back.

Why not run the reset inside a SAVEPOINT and collect PostgreSQL's "drop cascades to" notices:
the notice lists at most 100 objects ("and 250 other objects (see server log for list)"), shows
what went by an auto dependency (a partition of an app table that lives in another schema!) only
at DEBUG2, names a truncated table without its schema, is worded in the server's lc_messages
(which a hosted user cannot change), and the DROPs would take ACCESS EXCLUSIVE locks on every
table they touch (platform tables included) and fire the platform's event triggers, on a live
database, during planning. The tests use that method the other way round: as the oracle the
query must agree with.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import NamedTuple, Protocol

import psycopg


class Address(NamedTuple):
    """An object as pg_depend names it: its catalog, its oid, and a column number (0: whole)."""

    classid: int
    objid: int
    subid: int = 0


class _HasAddress(Protocol):
    @property
    def classid(self) -> int: ...
    @property
    def objid(self) -> int: ...


class _Addition(Protocol):
    @property
    def kind(self) -> str: ...  # "trigger" | "policy"
    @property
    def schema(self) -> str: ...
    @property
    def table(self) -> str: ...
    @property
    def name(self) -> str: ...


@dataclass(frozen=True, order=True)
class Reached:
    """One object outside the given schemas that the reset's CASCADE would drop or empty."""

    schema: str | None  # where it lives (a trigger, policy, rule or default: its table's schema);
    #                     None for objects of the whole database (event trigger, cast, ...)
    description: str  # "view extensions.app_summary (would be dropped)"
    kind: str  # pg_identify_object's type: "view", "table constraint", "table", ...
    identity: str  # pg_identify_object's identity: "orders_user_fk on billing.orders"
    effect: str  # "dropped" | "emptied"


# --- DROP ... CASCADE ----------------------------------------------------------------------------

# From the seeds, repeatedly: every object that depends on one reached (any dependency type; a
# whole object takes the dependents of its columns, a column only its own), and every object a
# reached one is an internal part or extension member of (PostgreSQL turns the drop of a part into
# the drop of its owner, except for the objects the statement names, where it refuses instead).
# Self-references of a whole object (a partitioned table's key columns) are skipped, as there.
_DROP_CLOSURE = """
WITH RECURSIVE reach(classid, objid, objsubid, named) AS (
  SELECT *, true FROM unnest(%(classids)s::pg_catalog.oid[], %(objids)s::pg_catalog.oid[],
                             %(subids)s::pg_catalog.int4[])
  UNION
  SELECT x.classid, x.objid, x.objsubid, false
    FROM reach r CROSS JOIN LATERAL (
      SELECT d.classid, d.objid, d.objsubid FROM pg_catalog.pg_depend d
       WHERE d.refclassid = r.classid AND d.refobjid = r.objid
         AND (r.objsubid = 0 OR d.refobjsubid = r.objsubid)
         AND d.deptype <> 'p'
         AND NOT (r.objsubid = 0 AND d.classid = r.classid AND d.objid = r.objid)
      UNION ALL
      SELECT d.refclassid, d.refobjid, d.refobjsubid FROM pg_catalog.pg_depend d
       WHERE NOT r.named AND d.classid = r.classid AND d.objid = r.objid
         AND (r.objsubid = 0 OR d.objsubid = r.objsubid)
         AND d.deptype IN ('i', 'e')
         AND NOT (r.objsubid = 0 AND d.refclassid = r.classid AND d.refobjid = r.objid)
    ) x
)
SELECT DISTINCT classid, objid, objsubid FROM reach
"""


def drop_closure(conn: psycopg.Connection, seeds: Iterable[Address]) -> set[Address]:
    """Everything `DROP ... CASCADE` of each seed would drop, the seeds included. A column whose
    whole table is dropped is left out (it goes with the table)."""
    seeds = list(dict.fromkeys(seeds))
    if not seeds:
        return set()
    rows = conn.execute(
        _DROP_CLOSURE,
        {
            "classids": [s.classid for s in seeds],
            "objids": [s.objid for s in seeds],
            "subids": [s.subid for s in seeds],
        },
    ).fetchall()
    found = {Address(int(c), int(o), int(s)) for c, o, s in rows}
    return {a for a in found if a.subid == 0 or Address(a.classid, a.objid) not in found}


# --- TRUNCATE ... CASCADE ------------------------------------------------------------------------


def truncate_closure(conn: psycopg.Connection, tables: Iterable[int], dropped: frozenset[Address] | set[Address] = frozenset()) -> set[int]:
    """Oids of the tables `TRUNCATE ONLY <tables> CASCADE` would empty besides `tables`, after the
    `dropped` objects are gone (their foreign keys no longer cascade). As ExecuteTruncate: add the
    tables with a foreign key to one being emptied until none is new; a foreign key cloned onto a
    partition also counts for the table its top-level constraint references."""
    pg_constraint = _regclass(conn, "pg_constraint")
    fks = {
        int(oid): (int(conrelid), int(confrelid), int(parent))
        for oid, conrelid, confrelid, parent in conn.execute(
            "SELECT oid, conrelid, confrelid, conparentid FROM pg_catalog.pg_constraint WHERE contype = 'f'"
        )
        if Address(pg_constraint, int(oid)) not in dropped
    }
    start = list(dict.fromkeys(tables))
    relids = list(start)
    while True:
        new = _find_fks(fks, relids)
        if not new:
            break
        relids.extend(new)
    return set(relids) - set(start)


def _find_fks(fks: dict[int, tuple[int, int, int]], relation_ids: list[int]) -> list[int]:
    """heap_truncate_find_FKs: tables not in `relation_ids` with a foreign key into them."""
    given = set(relation_ids)
    oids = set(relation_ids)
    while True:
        result: set[int] = set()
        parents: list[int] = []
        for conrelid, confrelid, parent in fks.values():
            if confrelid not in oids:
                continue
            if parent and parent not in parents:
                parents.append(parent)
            if conrelid not in given:
                result.add(conrelid)
        restart = False
        for parent in parents:  # grows while it is walked: climbs to the top-level constraint
            if parent not in fks:
                continue
            _, confrelid, grandparent = fks[parent]
            if grandparent:
                if grandparent not in parents:
                    parents.append(grandparent)
            elif confrelid not in oids:
                oids.add(confrelid)
                restart = True
        if not restart:
            return sorted(result)


# --- naming what was found -----------------------------------------------------------------------

# The schema an object lives in: pg_identify_object's, else (objects with no schema of their own)
# the schema of the table a trigger, policy, rule, default or publication entry belongs to, of an
# operator family's member, of an extension, of a default-privileges entry; a schema is its own.
_OWN_SCHEMA = {
    "pg_trigger": "SELECT _r.relnamespace FROM pg_catalog.pg_trigger _t JOIN pg_catalog.pg_class _r ON _r.oid = _t.tgrelid WHERE _t.oid = {obj}",
    "pg_policy": "SELECT _r.relnamespace FROM pg_catalog.pg_policy _p JOIN pg_catalog.pg_class _r ON _r.oid = _p.polrelid WHERE _p.oid = {obj}",
    "pg_rewrite": "SELECT _r.relnamespace FROM pg_catalog.pg_rewrite _w JOIN pg_catalog.pg_class _r ON _r.oid = _w.ev_class WHERE _w.oid = {obj}",
    "pg_attrdef": "SELECT _r.relnamespace FROM pg_catalog.pg_attrdef _a JOIN pg_catalog.pg_class _r ON _r.oid = _a.adrelid WHERE _a.oid = {obj}",
    "pg_publication_rel": (
        "SELECT _r.relnamespace FROM pg_catalog.pg_publication_rel _p JOIN pg_catalog.pg_class _r ON _r.oid = _p.prrelid WHERE _p.oid = {obj}"
    ),
    "pg_amop": "SELECT _f.opfnamespace FROM pg_catalog.pg_amop _a JOIN pg_catalog.pg_opfamily _f ON _f.oid = _a.amopfamily WHERE _a.oid = {obj}",
    "pg_amproc": (
        "SELECT _f.opfnamespace FROM pg_catalog.pg_amproc _a JOIN pg_catalog.pg_opfamily _f ON _f.oid = _a.amprocfamily WHERE _a.oid = {obj}"
    ),
    "pg_extension": "SELECT _e.extnamespace FROM pg_catalog.pg_extension _e WHERE _e.oid = {obj}",
    "pg_default_acl": "SELECT _d.defaclnamespace FROM pg_catalog.pg_default_acl _d WHERE _d.oid = {obj}",
    "pg_namespace": "SELECT {obj}",
}
_OWN_SCHEMA_15 = {  # catalogs added in PostgreSQL 15
    "pg_publication_namespace": "SELECT _p.pnnspid FROM pg_catalog.pg_publication_namespace _p WHERE _p.oid = {obj}",
}


def _schema_sql(server_version: int, cls: str, obj: str, sub: str) -> str:
    lookups = dict(_OWN_SCHEMA, **(_OWN_SCHEMA_15 if server_version >= 150000 else {}))
    cases = "".join(f" WHEN 'pg_catalog.{catalog}'::pg_catalog.regclass THEN ({q.format(obj=obj)})" for catalog, q in lookups.items())
    return (
        # pg_identify_object quotes a schema name that needs it ("Billing", "[/]"): unquoted here,
        # so it compares with the catalog's names and with --also-reach
        f"coalesce((pg_catalog.parse_ident((pg_catalog.pg_identify_object({cls}, {obj}, {sub})).schema))[1],"
        f" (SELECT nspname FROM pg_catalog.pg_namespace WHERE oid = CASE {cls}{cases} END))"
    )


def _objects_sql(server_version: int) -> str:
    """Per object outside `inside`: type, identity, schema, description, a constraint's kind."""
    return f"""
SELECT o.classid, o.objid, o.objsubid, i.type, i.identity, o.schema,
       pg_catalog.pg_describe_object(o.classid, o.objid, o.objsubid),
       CASE WHEN o.classid = 'pg_catalog.pg_constraint'::pg_catalog.regclass
            THEN (SELECT contype::pg_catalog.text FROM pg_catalog.pg_constraint WHERE oid = o.objid) END
  FROM (SELECT c.*, {_schema_sql(server_version, "c.classid", "c.objid", "c.objsubid")} AS schema
          FROM unnest(%(classids)s::pg_catalog.oid[], %(objids)s::pg_catalog.oid[], %(subids)s::pg_catalog.int4[])
               AS c(classid, objid, objsubid)) o,
       pg_catalog.pg_identify_object(o.classid, o.objid, o.objsubid) i
 WHERE o.schema IS NULL OR NOT o.schema = ANY(%(inside)s)
"""


def _owners_sql(server_version: int) -> str:
    """What each object is a part of (internal, partition, auto, extension dependencies), with the
    owner's schema."""
    return f"""
SELECT c.classid, c.objid, c.objsubid, d.deptype::pg_catalog.text, d.refclassid, d.refobjid, d.refobjsubid,
       {_schema_sql(server_version, "d.refclassid", "d.refobjid", "0")}
  FROM unnest(%(classids)s::pg_catalog.oid[], %(objids)s::pg_catalog.oid[], %(subids)s::pg_catalog.int4[])
       AS c(classid, objid, objsubid)
  JOIN pg_catalog.pg_depend d ON d.classid = c.classid AND d.objid = c.objid
                             AND (c.objsubid = 0 OR d.objsubid = c.objsubid)
 WHERE d.deptype IN ('i', 'P', 'S', 'a', 'x', 'e')
   AND NOT (d.refclassid = c.classid AND d.refobjid = c.objid)
"""


def _arrays(addresses: list[Address]) -> dict[str, list[int]]:
    return {"classids": [a.classid for a in addresses], "objids": [a.objid for a in addresses], "subids": [a.subid for a in addresses]}


def _addition_addresses(conn: psycopg.Connection, found: list[_Addition]) -> list[Address]:
    if not found:
        return []
    rows = conn.execute(
        "SELECT 'pg_catalog.pg_trigger'::pg_catalog.regclass::pg_catalog.oid, t.oid"
        " FROM unnest(%(kinds)s::pg_catalog.text[], %(schemas)s::pg_catalog.text[], %(tables)s::pg_catalog.text[],"
        "             %(names)s::pg_catalog.text[]) AS a(kind, s, r, n)"
        " JOIN pg_catalog.pg_namespace ns ON ns.nspname = a.s JOIN pg_catalog.pg_class c ON c.relnamespace = ns.oid AND c.relname = a.r"
        " JOIN pg_catalog.pg_trigger t ON t.tgrelid = c.oid AND t.tgname = a.n WHERE a.kind = 'trigger'"
        " UNION ALL"
        " SELECT 'pg_catalog.pg_policy'::pg_catalog.regclass::pg_catalog.oid, p.oid"
        " FROM unnest(%(kinds)s::pg_catalog.text[], %(schemas)s::pg_catalog.text[], %(tables)s::pg_catalog.text[],"
        "             %(names)s::pg_catalog.text[]) AS a(kind, s, r, n)"
        " JOIN pg_catalog.pg_namespace ns ON ns.nspname = a.s JOIN pg_catalog.pg_class c ON c.relnamespace = ns.oid AND c.relname = a.r"
        " JOIN pg_catalog.pg_policy p ON p.polrelid = c.oid AND p.polname = a.n WHERE a.kind = 'policy'",
        {
            "kinds": [a.kind for a in found],
            "schemas": [a.schema for a in found],
            "tables": [a.table for a in found],
            "names": [a.name for a in found],
        },
    ).fetchall()
    return [Address(int(c), int(o)) for c, o in rows]


def _regclass(conn: psycopg.Connection, catalog: str) -> int:
    return int(conn.execute("SELECT %s::pg_catalog.regclass::pg_catalog.oid", (f"pg_catalog.{catalog}",)).fetchone()[0])


def reached_outside(
    conn: psycopg.Connection,
    *,
    inside: Iterable[str],
    drop_schemas: Iterable[str] = (),
    drop_objects: Iterable[_HasAddress] = (),
    drop_additions: Iterable[_Addition] = (),
    truncate_tables: Iterable[tuple[str, str]] = (),
) -> list[Reached]:
    """What the reset would drop or empty that lies outside the `inside` schemas (the backup's
    app schemas) and that it does not name itself, sorted by schema.

    drop_schemas: schemas dropped whole (`DROP SCHEMA ... CASCADE`);
    drop_objects: top-level objects dropped with CASCADE (`dbinfo.schema_objects`, or anything
        with `classid` and `objid`);
    drop_additions: the app's triggers and policies on platform tables the reset drops by name
        (`additions.find`): named by the plan, so never reported themselves;
    truncate_tables: (schema, table) emptied with `TRUNCATE ONLY ... CASCADE`, after the drops.

    An object that is only a part of another one being dropped (a view's rule and row type, a
    foreign key's triggers, a toast table) is not listed on its own; a part that lives in another
    schema than its owner (a partition in `billing` of a table in `public`) is. Reads the catalog
    only, in a read-only transaction (or savepoint) that is rolled back; locks no table."""
    inside = sorted(set(inside))
    tables = list(dict.fromkeys(truncate_tables))
    with conn.transaction(force_rollback=True):
        conn.execute("SET TRANSACTION READ ONLY")
        # qualified names in every description, whatever the session's search_path; no JIT (the
        # recursive query's cost estimate can trigger it, which costs up to a second)
        conn.execute("SELECT pg_catalog.set_config('search_path', '', true), pg_catalog.set_config('jit', 'off', true)")
        version = conn.info.server_version
        pg_namespace, pg_class = _regclass(conn, "pg_namespace"), _regclass(conn, "pg_class")
        seeds: list[Address] = []
        names = list(dict.fromkeys(drop_schemas))
        if names:
            seeds += [
                Address(pg_namespace, int(oid))
                for (oid,) in conn.execute("SELECT oid FROM pg_catalog.pg_namespace WHERE nspname = ANY(%s)", (names,))
            ]
        seeds += [Address(int(o.classid), int(o.objid)) for o in drop_objects]
        seeds += _addition_addresses(conn, list(drop_additions))
        dropped = drop_closure(conn, seeds)

        table_oids: list[int] = []
        if tables:
            table_oids = [
                int(oid)
                for (oid,) in conn.execute(
                    "SELECT c.oid FROM unnest(%s::pg_catalog.text[], %s::pg_catalog.text[]) AS t(s, n)"
                    " JOIN pg_catalog.pg_namespace ns ON ns.nspname = t.s"
                    " JOIN pg_catalog.pg_class c ON c.relnamespace = ns.oid AND c.relname = t.n",
                    ([s for s, _ in tables], [n for _, n in tables]),
                )
            ]
        emptied = [Address(pg_class, o) for o in sorted(truncate_closure(conn, table_oids, dropped)) if Address(pg_class, o) not in dropped]

        candidates = sorted(dropped - set(seeds)) + emptied
        if not candidates:
            return []
        rows = conn.execute(_objects_sql(version), dict(_arrays(candidates), inside=inside)).fetchall()
        found = {Address(int(c), int(o), int(s)): rest for c, o, s, *rest in rows}
        parts: set[Address] = set()
        outside_dropped = [a for a in found if a in dropped]
        if outside_dropped:
            for *dep, deptype, rc, ro, rs, owner_schema in conn.execute(_owners_sql(version), _arrays(outside_dropped)):
                obj, owner = Address(*map(int, dep)), Address(int(rc), int(ro), int(rs))
                if owner not in dropped and Address(owner.classid, owner.objid) not in dropped:
                    continue
                # an internal part goes with its owner wherever it lives; an auto-dependent one
                # (a partition, a serial's sequence) only counts as a part in its owner's schema
                # an extension's members with no schema of their own (its casts) go with it
                if deptype in ("i", "P", "S") or owner_schema == found[obj][2] or (deptype == "e" and found[obj][2] is None):
                    parts.add(obj)
    out = []
    for address, (kind, identity, schema, description, contype) in found.items():
        if address in parts:
            continue
        if contype == "f" and description.startswith("constraint "):
            description = "foreign key " + description[len("constraint ") :]
        effect = "dropped" if address in dropped else "emptied"
        out.append(Reached(schema, f"{description} (would be {effect})", kind, identity, effect))
    return sorted(out, key=lambda r: (r.schema or "", r.effect, r.description))
