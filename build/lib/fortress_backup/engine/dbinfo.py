"""Catalog queries through psycopg: server facts, the app's tables and row counts, fingerprints
for comparing two databases, and what a reset would drop. No parsing of psql's text output."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import psycopg
from psycopg import sql

from .platform import Platform


@dataclass(frozen=True)
class ServerInfo:
    version_num: int
    version: str
    current_user: str
    is_superuser: bool
    database: str

    @property
    def major(self) -> int:
        return self.version_num // 10000


def server_info(conn: psycopg.Connection) -> ServerInfo:
    row = conn.execute(
        "SELECT current_setting('server_version_num')::int, current_setting('server_version'),"
        " current_user, (SELECT rolsuper FROM pg_roles WHERE rolname = current_user), current_database()"
    ).fetchone()
    version = row[1].split(" ")[0]
    return ServerInfo(row[0], version, row[2], bool(row[3]), row[4])


def can_set_replication_role(conn: psycopg.Connection) -> bool:
    """Whether this session may SET session_replication_role (superuser, a PG15+ GRANT SET, or
    Supabase's supautils). Probed, not guessed, inside a transaction that is rolled back."""
    try:
        with conn.transaction(force_rollback=True):
            conn.execute("SET LOCAL session_replication_role = replica")
        return True
    except psycopg.Error:
        return False


def schemas(conn: psycopg.Connection) -> list[str]:
    return [r[0] for r in conn.execute("SELECT nspname FROM pg_namespace ORDER BY 1")]


def app_schemas(conn: psycopg.Connection, platform: Platform) -> list[str]:
    """The app's schemas. On Supabase, as for `supabase db reset`, a schema an extension created
    or one owned by supabase_admin is the platform's even when its name is not on the list."""
    rows = conn.execute(
        "SELECT n.nspname, pg_get_userbyid(n.nspowner),"
        " EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_namespace'::regclass AND d.objid = n.oid AND d.deptype = 'e')"
        " FROM pg_namespace n ORDER BY 1"
    ).fetchall()
    out = []
    for name, owner, by_extension in rows:
        if not platform.is_app_schema(name) or name.startswith("pg_temp"):
            continue
        if platform.name == "supabase" and name != "public" and (by_extension or owner == "supabase_admin"):
            continue
        out.append(name)
    return out


def tables(conn: psycopg.Connection, schema_names: list[str]) -> list[tuple[str, str, str]]:
    """(schema, table, relkind) of ordinary, partitioned tables and materialized views, less the
    tables an extension owns and pg_dump never dumps the rows of (pg_net's response queue): only
    an extension's configuration tables carry data in a dump."""
    if not schema_names:
        return []
    rows = conn.execute(
        "SELECT n.nspname, c.relname, c.relkind::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE c.relkind IN ('r','p','m') AND n.nspname = ANY(%s)"
        " AND NOT EXISTS (SELECT 1 FROM pg_depend d JOIN pg_extension e ON e.oid = d.refobjid"
        "   WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e'"
        "   AND NOT c.oid = ANY(coalesce(e.extconfig, '{}')))"
        " ORDER BY 1, 2",
        (schema_names,),
    ).fetchall()
    return [(r[0], r[1], r[2]) for r in rows]


def filtered_config_tables(conn: psycopg.Connection) -> set[str]:
    """Extension configuration tables dumped with a WHERE condition: their dumped row count is
    not their row count, so they get no count to check."""
    rows = conn.execute(
        "SELECT n.nspname || '.' || c.relname FROM pg_extension e, unnest(e.extconfig, e.extcondition) AS x(rel, cond)"
        " JOIN pg_class c ON c.oid = x.rel JOIN pg_namespace n ON n.oid = c.relnamespace WHERE coalesce(x.cond, '') <> ''"
    ).fetchall()
    return {r[0] for r in rows}


def qualified(schema: str, table: str) -> sql.Composed:
    return sql.SQL("{}.{}").format(sql.Identifier(schema), sql.Identifier(table))


def row_counts(conn: psycopg.Connection, tabs: list[tuple[str, str, str]]) -> dict[str, int]:
    """Exact counts, keyed "schema.table". Materialized views that were never populated count as 0."""
    out: dict[str, int] = {}
    for schema, table, kind in tabs:
        if kind == "m":
            populated = conn.execute("SELECT ispopulated FROM pg_matviews WHERE schemaname = %s AND matviewname = %s", (schema, table)).fetchone()
            if not populated or not populated[0]:
                out[f"{schema}.{table}"] = 0
                continue
        query = sql.SQL("SELECT count(*) FROM ONLY {}" if kind == "r" else "SELECT count(*) FROM {}").format(qualified(schema, table))
        out[f"{schema}.{table}"] = conn.execute(query).fetchone()[0]
    return out


def fingerprints(conn: psycopg.Connection, tabs: list[tuple[str, str, str]]) -> dict[str, tuple[int, str]]:
    """Per table: (rows, md5 over the sorted md5s of every row's text). Equal fingerprints mean
    equal contents regardless of physical order; NULLs, bytea, jsonb, arrays all go through ::text."""
    out: dict[str, tuple[int, str]] = {}
    for schema, table, kind in tabs:
        if kind == "p":
            continue  # its rows are counted in its partitions
        query = sql.SQL("SELECT count(*), md5(coalesce(string_agg(h, '' ORDER BY h), '')) FROM (SELECT md5(t::text) AS h FROM ONLY {} t) s").format(
            qualified(schema, table)
        )
        if kind == "m":
            populated = conn.execute("SELECT ispopulated FROM pg_matviews WHERE schemaname = %s AND matviewname = %s", (schema, table)).fetchone()
            if not populated or not populated[0]:
                out[f"{schema}.{table}"] = (0, "not populated")
                continue
            query = sql.SQL("SELECT count(*), md5(coalesce(string_agg(h, '' ORDER BY h), '')) FROM (SELECT md5(t::text) AS h FROM {} t) s").format(
                qualified(schema, table)
            )
        count, digest = conn.execute(query).fetchone() or (0, "")
        out[f"{schema}.{table}"] = (count, digest)
    return out


def large_object_count(conn: psycopg.Connection) -> int:
    return conn.execute("SELECT count(*) FROM pg_largeobject_metadata").fetchone()[0]


def publications(conn: psycopg.Connection) -> list[str]:
    return [r[0] for r in conn.execute("SELECT pubname FROM pg_publication ORDER BY 1")]


def event_triggers(conn: psycopg.Connection) -> list[tuple[str, str]]:
    """(event trigger, schema of its function)."""
    return [
        (r[0], r[1])
        for r in conn.execute(
            "SELECT e.evtname, n.nspname FROM pg_event_trigger e JOIN pg_proc p ON p.oid = e.evtfoid"
            " JOIN pg_namespace n ON n.oid = p.pronamespace ORDER BY 1"
        )
    ]


# Top-level objects in a schema, for emptying `public` on a platform that configured the schema
# itself (Supabase grants and default privileges on it): dropping and recreating the schema would
# lose those, so its contents are dropped instead. Objects that exist only as part of another go
# with their owner: a table's row type and identity sequence, a type's array and multirange (an
# internal dependency, 'i'), an extension's members ('e'), and a serial sequence, a partition or an
# extended statistics object whose owner lies in the same schema (an auto dependency, 'a').
# Only the object's own dependencies count (objsubid = 0): a partitioned table's key columns
# depend internally on the table itself, which must not make the table look like a part.
# Names are qualified (the caller runs this with an empty search_path) so the statements mean
# the same objects in any session.
_SCHEMA_OBJECTS = """
WITH objs AS (
  SELECT 'pg_catalog.pg_class'::pg_catalog.regclass AS classid, c.oid,
         CASE c.relkind WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW' WHEN 'S' THEN 'SEQUENCE'
                        WHEN 'f' THEN 'FOREIGN TABLE' ELSE 'TABLE' END AS kind,
         pg_catalog.format('%%I.%%I', n.nspname, c.relname) AS name
    FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
   WHERE n.nspname = %(schema)s AND c.relkind IN ('r','p','v','m','S','f')
  UNION ALL
  SELECT 'pg_catalog.pg_proc'::pg_catalog.regclass, p.oid,
         CASE p.prokind WHEN 'a' THEN 'AGGREGATE' WHEN 'p' THEN 'PROCEDURE' ELSE 'FUNCTION' END,
         pg_catalog.format('%%I.%%I(%%s)', n.nspname, p.proname, pg_catalog.pg_get_function_identity_arguments(p.oid))
    FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = %(schema)s
  UNION ALL
  SELECT 'pg_catalog.pg_type'::pg_catalog.regclass, t.oid, CASE t.typtype WHEN 'd' THEN 'DOMAIN' ELSE 'TYPE' END,
         pg_catalog.format('%%I.%%I', n.nspname, t.typname)
    FROM pg_catalog.pg_type t JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace
   WHERE n.nspname = %(schema)s
     AND (t.typrelid = 0 OR (SELECT relkind FROM pg_catalog.pg_class WHERE oid = t.typrelid) = 'c')
  UNION ALL
  SELECT 'pg_catalog.pg_operator'::pg_catalog.regclass, o.oid, 'OPERATOR',
         pg_catalog.format('%%I.%%s (%%s, %%s)', n.nspname, o.oprname,
                           CASE o.oprleft WHEN 0 THEN 'NONE' ELSE pg_catalog.format_type(o.oprleft, NULL) END,
                           CASE o.oprright WHEN 0 THEN 'NONE' ELSE pg_catalog.format_type(o.oprright, NULL) END)
    FROM pg_catalog.pg_operator o JOIN pg_catalog.pg_namespace n ON n.oid = o.oprnamespace WHERE n.nspname = %(schema)s
  UNION ALL
  SELECT 'pg_catalog.pg_opfamily'::pg_catalog.regclass, o.oid, 'OPERATOR FAMILY',
         pg_catalog.format('%%I.%%I USING %%I', n.nspname, o.opfname, a.amname)
    FROM pg_catalog.pg_opfamily o JOIN pg_catalog.pg_namespace n ON n.oid = o.opfnamespace
    JOIN pg_catalog.pg_am a ON a.oid = o.opfmethod WHERE n.nspname = %(schema)s
  UNION ALL
  SELECT 'pg_catalog.pg_opclass'::pg_catalog.regclass, o.oid, 'OPERATOR CLASS',
         pg_catalog.format('%%I.%%I USING %%I', n.nspname, o.opcname, a.amname)
    FROM pg_catalog.pg_opclass o JOIN pg_catalog.pg_namespace n ON n.oid = o.opcnamespace
    JOIN pg_catalog.pg_am a ON a.oid = o.opcmethod WHERE n.nspname = %(schema)s
  UNION ALL
  SELECT 'pg_catalog.pg_collation'::pg_catalog.regclass, o.oid, 'COLLATION', pg_catalog.format('%%I.%%I', n.nspname, o.collname)
    FROM pg_catalog.pg_collation o JOIN pg_catalog.pg_namespace n ON n.oid = o.collnamespace WHERE n.nspname = %(schema)s
  UNION ALL
  SELECT 'pg_catalog.pg_conversion'::pg_catalog.regclass, o.oid, 'CONVERSION', pg_catalog.format('%%I.%%I', n.nspname, o.conname)
    FROM pg_catalog.pg_conversion o JOIN pg_catalog.pg_namespace n ON n.oid = o.connamespace WHERE n.nspname = %(schema)s
  UNION ALL
  SELECT 'pg_catalog.pg_ts_config'::pg_catalog.regclass, o.oid, 'TEXT SEARCH CONFIGURATION', pg_catalog.format('%%I.%%I', n.nspname, o.cfgname)
    FROM pg_catalog.pg_ts_config o JOIN pg_catalog.pg_namespace n ON n.oid = o.cfgnamespace WHERE n.nspname = %(schema)s
  UNION ALL
  SELECT 'pg_catalog.pg_ts_dict'::pg_catalog.regclass, o.oid, 'TEXT SEARCH DICTIONARY', pg_catalog.format('%%I.%%I', n.nspname, o.dictname)
    FROM pg_catalog.pg_ts_dict o JOIN pg_catalog.pg_namespace n ON n.oid = o.dictnamespace WHERE n.nspname = %(schema)s
  UNION ALL
  SELECT 'pg_catalog.pg_ts_parser'::pg_catalog.regclass, o.oid, 'TEXT SEARCH PARSER', pg_catalog.format('%%I.%%I', n.nspname, o.prsname)
    FROM pg_catalog.pg_ts_parser o JOIN pg_catalog.pg_namespace n ON n.oid = o.prsnamespace WHERE n.nspname = %(schema)s
  UNION ALL
  SELECT 'pg_catalog.pg_ts_template'::pg_catalog.regclass, o.oid, 'TEXT SEARCH TEMPLATE', pg_catalog.format('%%I.%%I', n.nspname, o.tmplname)
    FROM pg_catalog.pg_ts_template o JOIN pg_catalog.pg_namespace n ON n.oid = o.tmplnamespace WHERE n.nspname = %(schema)s
  UNION ALL
  SELECT 'pg_catalog.pg_statistic_ext'::pg_catalog.regclass, o.oid, 'STATISTICS', pg_catalog.format('%%I.%%I', n.nspname, o.stxname)
    FROM pg_catalog.pg_statistic_ext o JOIN pg_catalog.pg_namespace n ON n.oid = o.stxnamespace WHERE n.nspname = %(schema)s
  UNION ALL
  SELECT 'pg_catalog.pg_extension'::pg_catalog.regclass, e.oid, 'EXTENSION', pg_catalog.format('%%I', e.extname)
    FROM pg_catalog.pg_extension e JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace WHERE n.nspname = %(schema)s
)
SELECT kind, name, classid::pg_catalog.oid, oid FROM objs o
 WHERE NOT EXISTS (
   SELECT 1 FROM pg_catalog.pg_depend d
    WHERE d.classid = o.classid AND d.objid = o.oid AND d.objsubid = 0
      AND (d.deptype IN ('i', 'e')
           OR (d.deptype = 'a'
               AND (pg_catalog.pg_identify_object(d.refclassid, d.refobjid, 0)).schema = %(schema)s)))
 ORDER BY kind = 'EXTENSION', kind, name
"""


class SchemaObject(NamedTuple):
    """A top-level object of a schema: its DROP keyword, qualified name (with the argument types
    of a function or operator, the access method of an operator class) and catalog address."""

    kind: str  # "TABLE", "FUNCTION", "OPERATOR CLASS", ...
    name: str
    classid: int  # the catalog it lives in (pg_class, pg_proc, ...), as pg_depend names it
    objid: int


def schema_objects(conn: psycopg.Connection, schema: str) -> list[SchemaObject]:
    """What emptying `schema` drops by name, everything else in it going with these."""
    with conn.transaction(force_rollback=True):
        conn.execute("SELECT pg_catalog.set_config('search_path', '', true)")
        rows = conn.execute(_SCHEMA_OBJECTS, {"schema": schema}).fetchall()
    return [SchemaObject(kind, name, int(classid), int(objid)) for kind, name, classid, objid in rows]


def drop_sql(o: SchemaObject) -> str:
    # o.name comes from format('%I.%I', ...) on the server: quoted as identifiers there
    return f"DROP {o.kind} IF EXISTS {o.name} CASCADE;"


def schema_contents_drop_sql(conn: psycopg.Connection, schema: str) -> list[str]:
    return [drop_sql(o) for o in schema_objects(conn, schema)]


def roles_not_usable(conn: psycopg.Connection, names: list[str]) -> set[str]:
    """Of `names`, the roles the current user can neither be nor act for (owner changes and
    default privileges for them would fail)."""
    if not names:
        return set()
    rows = conn.execute(
        "SELECT r FROM unnest(%s::text[]) AS r WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r)"
        " OR NOT pg_has_role(current_user, r, 'USAGE')",
        (names,),
    ).fetchall()
    return {r[0] for r in rows}


_DEFACL_OBJTYPE = {"r": "TABLES", "S": "SEQUENCES", "f": "FUNCTIONS", "T": "TYPES", "n": "SCHEMAS"}


def clear_own_default_privileges_sql(conn: psycopg.Connection, schemas: list[str]) -> list[str]:
    """Statements that return the current user's default privileges to the built-in ones.

    A restore creates every object as the connecting user, so that user's default privileges
    (Supabase's platform gives `postgres` GRANT ALL to anon/authenticated/service_role in
    public) would add grants the source's objects did not have, or (a global REVOKE EXECUTE
    FROM PUBLIC) take away ones they had; pg_dump's ACL statements assume built-in defaults.
    Reset first, the archive's own DEFAULT ACL entries restore them exactly, after the objects
    exist. Only in `schemas` (the app's, which the restore replaces) and the user's global ones:
    the platform's schemas keep their defaults (a restore as supabase_admin must not change what
    storage's new tables get)."""
    rows = conn.execute(
        "SELECT d.defaclobjtype::text, n.nspname, a.grantee = 0, CASE WHEN a.grantee = 0 THEN NULL"
        " ELSE pg_get_userbyid(a.grantee) END, a.grantee = d.defaclrole"
        " FROM pg_default_acl d LEFT JOIN pg_namespace n ON n.oid = d.defaclnamespace,"
        " LATERAL aclexplode(d.defaclacl) a"
        " WHERE d.defaclrole = (SELECT oid FROM pg_roles WHERE rolname = current_user)"
        "   AND (n.nspname IS NULL OR n.nspname = ANY(%s))"
        " GROUP BY 1, 2, 3, 4, 5 ORDER BY 1, 2, 4",
        (list(schemas),),
    ).fetchall()
    out = []
    globals_seen = set()
    for objtype, schema, to_public, grantee, to_self in rows:
        what = _DEFACL_OBJTYPE.get(objtype)
        if not what:
            continue
        if schema is None:
            globals_seen.add(objtype)
            if to_self or to_public:
                continue  # part of the built-in default, granted back below
        where = f" IN SCHEMA {sql.Identifier(schema).as_string(conn)}" if schema else ""
        who = "PUBLIC" if to_public else sql.Identifier(grantee).as_string(conn)
        out.append(f"ALTER DEFAULT PRIVILEGES{where} REVOKE ALL ON {what} FROM {who};")
    me = sql.Identifier(conn.execute("SELECT current_user").fetchone()[0]).as_string(conn)
    for objtype in sorted(globals_seen):
        what = _DEFACL_OBJTYPE[objtype]
        # Built-in: the owner holds everything; PUBLIC may execute functions and use types.
        out.append(f"ALTER DEFAULT PRIVILEGES GRANT ALL ON {what} TO {me};")
        if objtype == "f":
            out.append("ALTER DEFAULT PRIVILEGES GRANT EXECUTE ON FUNCTIONS TO PUBLIC;")
        elif objtype == "T":
            out.append("ALTER DEFAULT PRIVILEGES GRANT USAGE ON TYPES TO PUBLIC;")
    return out


def existing_roles(conn: psycopg.Connection, names: list[str]) -> set[str]:
    if not names:
        return set()
    return {r[0] for r in conn.execute("SELECT rolname FROM pg_roles WHERE rolname = ANY(%s)", (names,))}


def default_acl_roles(conn: psycopg.Connection) -> list[str]:
    return [r[0] for r in conn.execute("SELECT DISTINCT pg_get_userbyid(defaclrole) FROM pg_default_acl ORDER BY 1")]


def extensions(conn: psycopg.Connection) -> list[tuple[str, str, str]]:
    """(name, schema, version) of every extension but plpgsql."""
    return [
        (r[0], r[1], r[2])
        for r in conn.execute(
            "SELECT e.extname, n.nspname, e.extversion FROM pg_catalog.pg_extension e"
            " JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace WHERE e.extname <> 'plpgsql' ORDER BY 1"
        )
    ]


def creatable_extensions(conn: psycopg.Connection, names: list[str], superuser: bool) -> dict[str, str]:
    """For each name: "" when this role may create it here, else why not (for the message)."""
    privileged = {
        p.strip() for p in (conn.execute("SELECT pg_catalog.current_setting('supautils.privileged_extensions', true)").fetchone()[0] or "").split(",")
    }
    out = {}
    for name in names:
        available, trusted = conn.execute(
            "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_available_extensions WHERE name = %s),"
            " coalesce((SELECT bool_or(trusted) FROM pg_catalog.pg_available_extension_versions WHERE name = %s), false)",
            (name, name),
        ).fetchone() or (False, False)
        if not available:
            out[name] = "not installed on this server"
        elif superuser or trusted or name in privileged:
            out[name] = ""
        else:
            out[name] = "only a superuser (or the platform) may create it"
    return out


def cron_jobs(conn: psycopg.Connection) -> list[dict[str, object]] | None:
    """pg_cron's jobs, or None when pg_cron is not installed or its jobs cannot be read."""
    if not conn.execute(
        "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_extension WHERE extname = 'pg_cron') AND pg_catalog.has_table_privilege('cron.job', 'SELECT')"
    ).fetchone()[0]:
        return None
    return [
        {"name": r[0], "schedule": r[1], "command": r[2], "database": r[3], "username": r[4], "active": r[5]}
        for r in conn.execute("SELECT jobname, schedule, command, database, username, active FROM cron.job ORDER BY jobid")
    ]


def platform_made_roles(conn: psycopg.Connection) -> set[str]:
    """Roles a hosting platform made, recognised by what the platform did rather than by name
    (platform releases add roles: duckdb_role in 2026): roles supautils reserves, and roles whose
    memberships the bootstrap superuser granted (to anyone but their creator's implicit
    PostgreSQL 16+ self-grant) or that were granted to the bootstrap superuser itself."""
    reserved = {
        r.strip().rstrip("*")
        for r in (conn.execute("SELECT pg_catalog.current_setting('supautils.reserved_roles', true)").fetchone()[0] or "").split(",")
        if r.strip()
    }
    pg16 = conn.info.server_version >= 160000
    # PostgreSQL 16+ records the membership it gives a role's creator (any CREATEROLE role, the
    # app's own admins included) as granted by the bootstrap superuser, with ADMIN: that one says
    # nothing about who made the role.
    creator = "(m.admin_option AND (SELECT u.rolcreaterole OR u.rolsuper FROM pg_catalog.pg_roles u WHERE u.oid = m.member))" if pg16 else "false"
    made = {
        r[0]
        for r in conn.execute(
            "SELECT g.rolname FROM pg_catalog.pg_auth_members m JOIN pg_catalog.pg_roles g ON g.oid = m.roleid"
            " WHERE (m.grantor = 10 AND NOT " + creator + ") OR m.member = 10"
        )
    }
    return made | {r[0] for r in conn.execute("SELECT rolname FROM pg_catalog.pg_roles WHERE rolname = ANY(%s)", (sorted(reserved),))}


def database_size(conn: psycopg.Connection) -> int:
    return int(conn.execute("SELECT pg_catalog.pg_database_size(pg_catalog.current_database())").fetchone()[0])


def lock_holders(conn: psycopg.Connection) -> list[str]:
    """The other sessions of this database that hold table locks now, for a message that names
    them: "pid 4711 (psql, idle in transaction since 10:42:01)"."""
    rows = conn.execute(
        "SELECT DISTINCT a.pid, coalesce(nullif(a.application_name, ''), 'no application name'), coalesce(a.state, '?'),"
        " pg_catalog.to_char(coalesce(a.xact_start, a.query_start), 'HH24:MI:SS')"
        " FROM pg_catalog.pg_locks l JOIN pg_catalog.pg_stat_activity a ON a.pid = l.pid"
        " WHERE l.granted AND l.locktype = 'relation' AND l.pid <> pg_catalog.pg_backend_pid()"
        "   AND l.database = (SELECT oid FROM pg_catalog.pg_database WHERE datname = pg_catalog.current_database())"
        " ORDER BY 1"
    ).fetchall()
    return [f"pid {pid} ({app}, {state}" + (f" since {since})" if since else ")") for pid, app, state, since in rows]
