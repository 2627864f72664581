"""The runbook's hand-made plain-SQL files (`dump-DATE.sql`, or `schema-DATE.sql` +
`data-DATE.sql`) made into a real backup of this tool, by loading them into a throwaway local
PostgreSQL first. The target is only read (its roles, platform schemas and, for a lone data file,
its app schema); it is never written.

Why not stream the files into the target's psql: a file is SQL we did not write. Edited line by
line it loses `BEGIN;` lines inside values and function bodies, a top-level `COMMIT;` commits a
restore halfway, and psql obeys its backslash commands (`\\! id` runs a shell command here).
Loaded into a throwaway database, any of that costs nothing, and what comes out is an ordinary
backup (manifest, checksums, row counts, archives chosen by table of contents) that the guarded
restore then applies all-or-nothing.

The throwaway server is of the target's major version and shaped like the target after its reset:
its roles (attributes and memberships, never passwords), its database's owner, encoding and
grants, the loading role's search_path, and on Supabase the DDL of the platform's schemas (auth,
storage, extensions, ...) without the app's triggers and policies on them, the platform's
publications and the `public` schema's grants. The files are then loaded by psql, fed on stdin,
in one session and one transaction, with meta-commands disabled (`\\restrict`), as a role named
like the target's user but never a superuser: a superuser could run programs on this machine
(`COPY ... TO PROGRAM`), which is what disabling meta-commands is for. Its other powers are kept:
when the target's user is a superuser, the loading role is a member of every other role while
loading (owners and grants resolve as they would), and it may set session_replication_role.

psql's \\restrict is not enough on its own: it obeys `\\unrestrict` with any spelling of the key
(`\\unrestrict 'a\\x62c'`, mid-line after SQL), and psql 17.10 runs backticks in its argument even
while restricted. So a file may hold `\\unrestrict` only as the closing line of pg_dump's own
`\\restrict K` block; any other occurrence is refused before anything starts. pg_dump's blocks are
fed as they are; everything around them (the `SET session_replication_role = replica;` and
`RESET ALL;` that `supabase db dump --data-only` writes around pg_dump's output, or a whole
hand-written file) inside a `\\restrict` of ours, so no byte of a file is read by psql unrestricted.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from psycopg import sql

from . import additions, catalog, dbinfo, pgtools, toc
from .catalog import Backup
from .conn import Target
from .dump import create_backup
from .errors import BackupError, Interrupted, RestoreFailed, ToolsMissing, UsageError
from .platform import Platform, detect
from .sandbox import Cluster, server_suite
from .storage import LocalStore

Step = Callable[[str], None]
CHUNK = 1 << 20

# psql learned \restrict in these minor releases (CVE-2025-8714); 18 and later have it.
RESTRICT_SINCE = {13: 22, 14: 19, 15: 14, 16: 10, 17: 6}

# Settings (of the loading role, of the database) that change how SQL text is read and run;
# the files load with the target's values. Timeouts and application settings (secrets) stay behind.
COPIED_SETTINGS = (
    "search_path",
    "datestyle",
    "intervalstyle",
    "timezone",
    "standard_conforming_strings",
    "check_function_bodies",
    "default_text_search_config",
)

# Predefined roles that read or write server files or run programs: never granted in the sandbox.
DANGEROUS_ROLES = ("pg_execute_server_program", "pg_read_server_files", "pg_write_server_files")

PRIVILEGES = {
    "SELECT",
    "INSERT",
    "UPDATE",
    "DELETE",
    "TRUNCATE",
    "REFERENCES",
    "TRIGGER",
    "EXECUTE",
    "USAGE",
    "CREATE",
    "CONNECT",
    "TEMPORARY",
    "MAINTAIN",
}
DEFACL_OBJECTS = {"r": "TABLES", "S": "SEQUENCES", "f": "FUNCTIONS", "T": "TYPES", "n": "SCHEMAS"}

_HEADER = re.compile(rb"\\restrict ([A-Za-z0-9]+)")
_UNRESTRICT = b"\\unrestrict"
_PSQL_LINE = re.compile(r"^psql:<stdin>:(\d+): (.*)$")
_NOT_LOADED_HINT = (
    "the files were tried in a throwaway database only; the target was not touched. Fix the file, or restore one of this tool's own backups"
)


# --- the files -----------------------------------------------------------------------------------


@dataclass
class _Piece:
    """A run of whole lines of a file: pg_dump's own `\\restrict K` ... `\\unrestrict K` block
    (`own_key` set; fed as it is), or anything else (fed inside a \\restrict of ours)."""

    start: int  # byte offset
    end: int
    first_line: int  # 1-based
    lines: int
    own_key: bytes | None = None


@dataclass
class RunbookFile:
    path: Path
    kind: str  # dump | schema | data
    pieces: list[_Piece] = field(default_factory=list)
    lines: int = 0
    size: int = 0
    sha256: str = ""

    @property
    def name(self) -> str:
        return self.path.name


def _kinds(files: list[Path]) -> tuple[list[RunbookFile], str]:
    """The files in load order and the kind of backup they make."""
    found: dict[str, RunbookFile] = {}
    for path in files:
        path = Path(path)
        m = catalog.LEGACY_RE.match(path.name)
        if not m:
            raise UsageError(f"{path.name} is not a runbook file name", "expected dump-DATE.sql, or schema-DATE.sql and data-DATE.sql")
        if m.group(1) in found:
            raise UsageError(
                f"Two runbook {m.group(1)} files given: {found[m.group(1)].name} and {path.name}",
                "pass one set: dump-DATE.sql, or schema-DATE.sql and data-DATE.sql",
            )
        if not path.is_file():
            raise UsageError(f"Runbook file {path} does not exist or is not a file", "check the path")
        found[m.group(1)] = RunbookFile(path, m.group(1))
    if not found:
        raise UsageError("No runbook files given", "pass dump-DATE.sql, or schema-DATE.sql and data-DATE.sql")
    if "dump" in found and len(found) > 1:
        raise UsageError(
            "A runbook dump file is complete on its own; it cannot be combined with schema or data files",
            "pass dump-DATE.sql alone, or schema-DATE.sql and data-DATE.sql",
        )
    ordered = [found[k] for k in ("dump", "schema", "data") if k in found]
    kind = "full" if "dump" in found or len(found) == 2 else ordered[0].kind
    return ordered, kind


def _refuse(f: RunbookFile, lineno: int | None, what: str) -> RestoreFailed:
    where = f"{f.name} line {lineno}" if lineno else f.name
    return RestoreFailed(f"Runbook file {where} {what}", _NOT_LOADED_HINT)


class _KeyClash(Exception):
    """A file happens to contain one of our random strings: pick new ones."""


def _scan(f: RunbookFile, ours: list[bytes], keys_seen: set[bytes]) -> None:
    """One pass over a file: size, sha256, line count, its pieces, and the check that keeps psql
    from ever obeying a meta-command from it: `\\unrestrict` may occur only as the closing line
    of pg_dump's own block (`\\restrict K` ... `\\unrestrict K`, a key no other block uses).

    Why that is enough: psql obeys only `\\unrestrict` while restricted, and every byte outside
    pg_dump's blocks is fed inside a `\\restrict` of ours with a key absent from the files. If a
    file hides a closing line in a comment or quoted string, psql stays restricted under a key
    that nothing later in the stream can name."""
    h = hashlib.sha256()
    n = offset = 0
    piece_start, piece_line = 0, 1
    key: bytes | None = None
    with open(f.path, "rb") as fh:
        for line in fh:
            n += 1
            h.update(line)
            if any(k in line for k in ours):
                raise _KeyClash
            bare = line.rstrip(b"\r\n")
            if key is None:
                m = _HEADER.fullmatch(bare)
                if m:
                    if m.group(1) in keys_seen:
                        raise _refuse(f, n, "reuses the psql key of another pg_dump \\restrict line; refused")
                    if offset > piece_start:
                        f.pieces.append(_Piece(piece_start, offset, piece_line, n - piece_line))
                    key, piece_start, piece_line = m.group(1), offset, n
                    keys_seen.add(key)
                elif _UNRESTRICT in line:
                    raise _refuse(
                        f,
                        n,
                        "holds a psql \\unrestrict command outside pg_dump's own \\restrict block; "
                        "refused, since it would let the file run psql meta-commands (shell commands)",
                    )
            elif bare == _UNRESTRICT + b" " + key:
                f.pieces.append(_Piece(piece_start, offset + len(line), piece_line, n - piece_line + 1, key))
                key, piece_start, piece_line = None, offset + len(line), n + 1
            elif _UNRESTRICT in line:
                raise _refuse(
                    f,
                    n,
                    "holds a psql \\unrestrict command other than pg_dump's own closing line; "
                    "refused, since it would let the file run psql meta-commands (shell commands)",
                )
            offset += len(line)
    if key is not None:
        raise _refuse(f, piece_line, "starts pg_dump's \\restrict block without its closing \\unrestrict line (cut short?); refused")
    if offset > piece_start:
        f.pieces.append(_Piece(piece_start, offset, piece_line, n - piece_line + 1))
    f.lines, f.size, f.sha256 = n, offset, h.hexdigest()


def _scan_all(files: list[RunbookFile]) -> tuple[bytes, bytes]:
    """Scan every file; returns (a base for our \\restrict keys, our end-of-file token), random
    and absent from all files."""
    while True:
        ours = [secrets.token_hex(16).encode(), secrets.token_hex(16).encode()]
        keys_seen: set[bytes] = set()
        try:
            for f in files:
                f.pieces = []
                _scan(f, ours, keys_seen)
            return ours[0], ours[1]
        except _KeyClash:
            continue


# --- facts about the target ------------------------------------------------------------------------


@dataclass
class _Role:
    name: str
    superuser: bool
    inherit: bool
    createrole: bool
    createdb: bool
    login: bool
    replication: bool
    bypassrls: bool
    connlimit: int


@dataclass
class _Facts:
    server: dbinfo.ServerInfo
    platform: Platform
    bootstrap: str
    roles: list[_Role]
    memberships: list[tuple[str, str, bool, bool | None, bool | None]]  # role, member, admin, inherit, set
    db_owner: str
    encoding: str
    db_acl: list[tuple[str | None, str, bool]] | None  # (grantee or None for PUBLIC, privilege, grantable)
    user_settings: list[tuple[bool, str, str]]  # (this database only, name, value) of the loading role
    db_settings: list[tuple[str, str]]
    global_default_acls: list[tuple[str, str, list[tuple[str | None, str, bool]]]]
    extensions: list[tuple[str, str]]  # (name, schema)
    app_schemas: list[str]
    platform_schemas: list[str]
    public_owner: str | None
    publications: list[dict]
    additions: list[additions.Addition]

    @property
    def user(self) -> str:
        return self.server.current_user


def _acl(conn: psycopg.Connection, query: str, params=()) -> list[tuple[str | None, str, bool]]:
    rows = conn.execute(
        "SELECT CASE WHEN a.grantee = 0 THEN NULL ELSE pg_catalog.pg_get_userbyid(a.grantee) END,"
        f" a.privilege_type, a.is_grantable FROM ({query}) q(acl), pg_catalog.aclexplode(q.acl) a ORDER BY 1, 2",
        params,
    ).fetchall()
    return [(r[0], r[1], bool(r[2])) for r in rows]


def _settings(rows: list, wanted=COPIED_SETTINGS) -> list[tuple[str, str]]:
    out = []
    for config in rows:
        for item in config or []:
            name, _, value = item.partition("=")
            if name.lower() in wanted:
                out.append((name.lower(), value))
    return out


def _gather(conn: psycopg.Connection) -> _Facts:
    server = dbinfo.server_info(conn)
    platform = detect(conn)
    bootstrap = conn.execute("SELECT rolname FROM pg_catalog.pg_roles WHERE oid = 10").fetchone()[0]
    roles = [
        _Role(*r)
        for r in conn.execute(
            "SELECT rolname, rolsuper, rolinherit, rolcreaterole, rolcreatedb, rolcanlogin, rolreplication,"
            " rolbypassrls, rolconnlimit FROM pg_catalog.pg_roles WHERE rolname !~ '^pg_' ORDER BY 1"
        )
    ]
    options = "m.inherit_option, m.set_option" if server.major >= 16 else "NULL::bool, NULL::bool"
    memberships = [
        tuple(r)
        for r in conn.execute(
            "SELECT DISTINCT pg_catalog.pg_get_userbyid(m.roleid), pg_catalog.pg_get_userbyid(m.member), m.admin_option, "
            + options
            + " FROM pg_catalog.pg_auth_members m ORDER BY 1, 2"
        )
    ]
    owner, encoding, has_acl = conn.execute(
        "SELECT pg_catalog.pg_get_userbyid(datdba), pg_catalog.pg_encoding_to_char(encoding), datacl IS NOT NULL"
        " FROM pg_catalog.pg_database WHERE datname = current_database()"
    ).fetchone()  # type: ignore[misc]
    db_acl = _acl(conn, "SELECT datacl FROM pg_catalog.pg_database WHERE datname = current_database()") if has_acl else None
    user_settings = [
        (bool(db), name, value)
        for db, config in conn.execute(
            "SELECT s.setdatabase <> 0, s.setconfig FROM pg_catalog.pg_db_role_setting s"
            " WHERE s.setrole = (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = current_user)"
            " AND s.setdatabase IN (0, (SELECT oid FROM pg_catalog.pg_database WHERE datname = current_database()))"
            " ORDER BY 1"
        )
        for name, value in _settings([config])
    ]
    db_settings = _settings(
        [
            r[0]
            for r in conn.execute(
                "SELECT s.setconfig FROM pg_catalog.pg_db_role_setting s WHERE s.setrole = 0"
                " AND s.setdatabase = (SELECT oid FROM pg_catalog.pg_database WHERE datname = current_database())"
            )
        ]
    )
    global_default_acls = [
        (role, objtype, _acl(conn, "SELECT defaclacl FROM pg_catalog.pg_default_acl WHERE oid = %s", (oid,)))
        for oid, role, objtype in conn.execute(
            "SELECT oid, pg_catalog.pg_get_userbyid(defaclrole), defaclobjtype::text FROM pg_catalog.pg_default_acl"
            " WHERE defaclnamespace = 0 ORDER BY 2, 3"
        )
    ]
    extensions = [
        (r[0], r[1])
        for r in conn.execute(
            "SELECT e.extname, n.nspname FROM pg_catalog.pg_extension e JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace ORDER BY 1"
        )
    ]
    app = dbinfo.app_schemas(conn, platform)
    platform_schemas = []
    if platform.name != "postgres":
        platform_schemas = [s for s in dbinfo.schemas(conn) if s not in app and not platform.is_system(s) and s != "public"]
    public_owner = conn.execute("SELECT pg_catalog.pg_get_userbyid(nspowner) FROM pg_catalog.pg_namespace WHERE nspname = 'public'").fetchone()
    publications = []
    for name, pub_owner, alltables, ins, upd, dele, trunc, viaroot in conn.execute(
        "SELECT pubname, pg_catalog.pg_get_userbyid(pubowner), puballtables, pubinsert, pubupdate, pubdelete,"
        " pubtruncate, pubviaroot FROM pg_catalog.pg_publication ORDER BY 1"
    ).fetchall():
        if not platform.is_platform_publication(name):
            continue
        tables = (
            [
                (s, t)
                for s, t in conn.execute(
                    "SELECT schemaname, tablename FROM pg_catalog.pg_publication_tables WHERE pubname = %s ORDER BY 1, 2", (name,)
                )
                if s in platform_schemas
            ]
            if not alltables
            else []
        )
        publish = ", ".join(w for w, on in (("insert", ins), ("update", upd), ("delete", dele), ("truncate", trunc)) if on)
        publications.append({"name": name, "owner": pub_owner, "all_tables": alltables, "publish": publish, "via_root": viaroot, "tables": tables})
    found = additions.find(conn, platform) if platform_schemas else []
    return _Facts(
        server=server,
        platform=platform,
        bootstrap=bootstrap,
        roles=roles,
        memberships=memberships,
        db_owner=owner,
        encoding=encoding,
        db_acl=db_acl,
        user_settings=user_settings,
        db_settings=db_settings,
        global_default_acls=global_default_acls,
        extensions=extensions,
        app_schemas=app,
        platform_schemas=platform_schemas,
        public_owner=public_owner[0] if public_owner else None,
        publications=publications,
        additions=found,
    )


# --- shaping the throwaway server ---------------------------------------------------------------------


@dataclass
class _Sandbox:
    cluster: Cluster
    admin: str
    dbname: str
    loader: str
    loader_password: str = field(default_factory=lambda: secrets.token_urlsafe(18))
    lent_roles: list[str] = field(default_factory=list)  # memberships given to the loader while loading
    helper: str | None = None  # a role all others belong to while loading: CREATE where owners need it

    def admin_target(self, dbname: str | None = None) -> Target:
        return self.cluster.target(dbname or self.dbname)

    def loader_target(self) -> Target:
        return Target(
            params={"host": "127.0.0.1", "port": str(self.cluster.port), "user": self.loader, "dbname": self.dbname}, password=self.loader_password
        )


def _sandbox_admin(facts: _Facts) -> str:
    """The throwaway server's superuser: named like the target's bootstrap superuser (so objects
    it owns there, supabase_admin's on Supabase, keep their owner), unless that is the role the
    files are loaded as, which must not be a superuser here."""
    if facts.bootstrap != facts.user:
        return facts.bootstrap
    names = {r.name for r in facts.roles}
    name, n = "fortress_sandbox", 1
    while name in names:
        n += 1
        name = f"fortress_sandbox_{n}"
    return name


def _grant_membership(major: int, role: str, member: str, admin: bool, inherit: bool | None, set_: bool | None) -> sql.Composed:
    stmt = sql.SQL("GRANT {} TO {}").format(sql.Identifier(role), sql.Identifier(member))
    if major >= 16:
        opts = [sql.SQL("ADMIN {}").format(sql.SQL("TRUE" if admin else "FALSE"))]
        if inherit is not None:
            opts.append(sql.SQL("INHERIT {}").format(sql.SQL("TRUE" if inherit else "FALSE")))
        if set_ is not None:
            opts.append(sql.SQL("SET {}").format(sql.SQL("TRUE" if set_ else "FALSE")))
        return stmt + sql.SQL(" WITH ") + sql.SQL(", ").join(opts)
    return stmt + (sql.SQL(" WITH ADMIN OPTION") if admin else sql.SQL(""))


def _copy_roles(conn: psycopg.Connection, facts: _Facts, box: _Sandbox) -> None:
    major = conn.info.server_version // 10000
    flag = lambda on, word: sql.SQL(word if on else "NO" + word)
    for r in facts.roles:
        if r.name == box.admin:
            continue
        # Never a superuser here: SQL from a file run as (or SET ROLE to) a superuser could run
        # programs on this machine. Nor CREATEROLE: on PostgreSQL 15 that may grant any role,
        # pg_execute_server_program included (review finding). Nor REPLICATION. The roles exist
        # here only to own and be granted things; the target keeps its own attributes.
        conn.execute(
            sql.SQL("CREATE ROLE {} WITH NOSUPERUSER NOCREATEROLE NOREPLICATION {} {} {} {} CONNECTION LIMIT {}").format(
                sql.Identifier(r.name),
                flag(r.inherit, "INHERIT"),
                flag(r.createdb, "CREATEDB"),
                flag(r.login or r.name == box.loader, "LOGIN"),
                flag(r.bypassrls, "BYPASSRLS"),
                sql.Literal(int(r.connlimit)),
            )
        )
    present = {row[0] for row in conn.execute("SELECT rolname FROM pg_catalog.pg_roles")}
    for role, member, admin, inherit, set_ in facts.memberships:
        if role not in present or member not in present or role in DANGEROUS_ROLES or role == box.admin or member == box.admin:
            continue
        conn.execute(_grant_membership(major, role, member, admin, inherit, set_))
    if any(r.name == facts.user and r.superuser for r in facts.roles):
        _lend_superuser_powers(conn, facts, box, major)
    if major >= 15:
        # supautils lets Supabase's postgres set it; data files (and our quiet data load) need it.
        conn.execute(sql.SQL("GRANT SET ON PARAMETER session_replication_role TO {}").format(sql.Identifier(box.loader)))
    conn.execute(sql.SQL("ALTER ROLE {} PASSWORD {}").format(sql.Identifier(box.loader), sql.Literal(box.loader_password)))


def _lend_superuser_powers(conn: psycopg.Connection, facts: _Facts, box: _Sandbox, major: int) -> None:
    """A superuser on the target may give objects to any role (which then needs no CREATE on the
    schema or database) and act for any role. The loading role gets the same reach over the
    target's ordinary roles while loading: it is lent every other role, and every role belongs to
    a helper role holding CREATE on the database, on `public` and (by default privileges) on each
    schema the files create. All of it is taken back before the backup reads the database."""
    names = {r.name for r in facts.roles}
    helper, n = "fortress_loading", 1
    while helper in names:
        n += 1
        helper = f"fortress_loading_{n}"
    conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(helper)))
    box.helper = helper
    for r in facts.roles:
        if r.name == box.admin:
            continue
        conn.execute(_grant_membership(major, helper, r.name, False, True if major >= 16 else None, None))
        if r.name == box.loader:
            continue
        member_already, cycle = conn.execute(
            "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_auth_members m JOIN pg_catalog.pg_roles a ON a.oid = m.roleid"
            " JOIN pg_catalog.pg_roles b ON b.oid = m.member WHERE a.rolname = %s AND b.rolname = %s),"
            " pg_catalog.pg_has_role(%s, %s, 'MEMBER')",
            (r.name, box.loader, r.name, box.loader),
        ).fetchone()  # type: ignore[misc]
        if member_already or cycle:
            continue
        conn.execute(_grant_membership(major, r.name, box.loader, True, True if major >= 16 else None, True if major >= 16 else None))
        box.lent_roles.append(r.name)


def _helper_grants(conn: psycopg.Connection, box: _Sandbox) -> None:
    """In the new database: what the helper role holds while loading (see _lend_superuser_powers)."""
    if not box.helper:
        return
    helper = sql.Identifier(box.helper)
    conn.execute(sql.SQL("GRANT CREATE ON DATABASE {} TO {}").format(sql.Identifier(box.dbname), helper))
    conn.execute(sql.SQL("GRANT CREATE ON SCHEMA public TO {}").format(helper))
    conn.execute(sql.SQL("ALTER DEFAULT PRIVILEGES FOR ROLE {} GRANT CREATE ON SCHEMAS TO {}").format(sql.Identifier(box.loader), helper))


def _create_database(conn: psycopg.Connection, facts: _Facts, box: _Sandbox) -> None:
    db = sql.Identifier(box.dbname)
    conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(db))  # only `postgres` can exist: initdb's
    conn.execute(
        sql.SQL("CREATE DATABASE {} WITH TEMPLATE template0 OWNER {} ENCODING {}").format(
            db, sql.Identifier(facts.db_owner), sql.Literal(facts.encoding)
        )
    )
    if facts.db_acl is not None:
        conn.execute(sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(db))
        for grantee, priv, grantable in facts.db_acl:
            if priv in PRIVILEGES:
                conn.execute(
                    sql.SQL("GRANT {} ON DATABASE {} TO {}{}").format(
                        sql.SQL(priv),
                        db,
                        sql.Identifier(grantee) if grantee else sql.SQL("PUBLIC"),
                        sql.SQL(" WITH GRANT OPTION" if grantable else ""),
                    )
                )


def _apply_settings(conn: psycopg.Connection, facts: _Facts, box: _Sandbox, step: Step) -> None:
    """ALTER ROLE/DATABASE ... SET x FROM CURRENT after set_config: the value is parsed exactly as
    the server parses it (a search_path list stays a list), no SQL assembled from it."""
    db = sql.Identifier(box.dbname)
    user = sql.Identifier(box.loader)
    wanted = [
        (sql.SQL("ALTER ROLE {} IN DATABASE {}").format(user, db) if in_db else sql.SQL("ALTER ROLE {}").format(user), name, value)
        for in_db, name, value in facts.user_settings
    ]
    wanted += [(sql.SQL("ALTER DATABASE {}").format(db), name, value) for name, value in facts.db_settings]
    for prefix, name, value in wanted:
        try:
            with conn.transaction():
                conn.execute("SELECT pg_catalog.set_config(%s, %s, true)", (name, value))
                conn.execute(prefix + sql.SQL(" SET {} FROM CURRENT").format(sql.Identifier(name)))
        except psycopg.Error:
            step(f"the target's setting {name} = {value} does not apply here; left at its default")


def _copy_default_acls(conn: psycopg.Connection, facts: _Facts) -> None:
    """Default privileges not bound to a schema (they survive the restore's reset): each one
    replaces the built-in default, so it is rebuilt from nothing."""
    present = {row[0] for row in conn.execute("SELECT rolname FROM pg_catalog.pg_roles")}
    for role, objtype, acl in facts.global_default_acls:
        what = DEFACL_OBJECTS.get(objtype)
        if not what or role not in present:
            continue
        head = sql.SQL("ALTER DEFAULT PRIVILEGES FOR ROLE {} ").format(sql.Identifier(role))
        conn.execute(head + sql.SQL("REVOKE ALL ON {} FROM PUBLIC").format(sql.SQL(what)))
        conn.execute(head + sql.SQL("REVOKE ALL ON {} FROM {}").format(sql.SQL(what), sql.Identifier(role)))
        for grantee, priv, grantable in acl:
            if priv in PRIVILEGES and (grantee is None or grantee in present):
                conn.execute(
                    head
                    + sql.SQL("GRANT {} ON {} TO {}{}").format(
                        sql.SQL(priv),
                        sql.SQL(what),
                        sql.Identifier(grantee) if grantee else sql.SQL("PUBLIC"),
                        sql.SQL(" WITH GRANT OPTION" if grantable else ""),
                    )
                )


def _check_extensions(conn: psycopg.Connection, facts: _Facts, suite: pgtools.PgSuite) -> None:
    available = {r[0] for r in conn.execute("SELECT name FROM pg_catalog.pg_available_extensions")}
    missing = sorted(name for name, _ in facts.extensions if name not in available)
    if missing:
        raise ToolsMissing(
            f"The throwaway PostgreSQL {suite.version} server here cannot create extensions the target has: " + ", ".join(missing),
            f"install the packages that provide them for PostgreSQL {suite.major} on this machine, or load the runbook files elsewhere",
        )


def _pattern(name: str) -> str:
    """A pg_dump name pattern matching exactly `name` (quoted: no wildcards, no case folding)."""
    return '"' + name.replace('"', '""') + '"'


def _copy_ddl(
    facts: _Facts, target: Target, box: _Sandbox, suite: pgtools.PgSuite, schemas: list[str], keep_public_contents: bool, workdir: Path
) -> None:
    """pg_dump --schema-only of `schemas` of the target (as its own user), restored into the
    throwaway database as its superuser, less the app's triggers and policies on platform tables
    (the restore's reset drops them; their functions are the files' business) and less `CREATE
    SCHEMA public` (the database has it). Of `public` only its own grants, comment and default
    privileges, unless `keep_public_contents`."""
    in_dump = set(schemas)
    archive = workdir / f"target-{secrets.token_hex(4)}.dump"
    args = [suite.tool("pg_dump"), "--format=custom", "--schema-only", "--no-password", f"--file={archive}", f"--dbname={target.conninfo()}"]
    args += [f"--schema={_pattern(s)}" for s in schemas]
    # pg_dump --schema leaves extensions out; those living in the copied schemas come along
    # (not those in `public` on Supabase: the reset drops them with the rest of public's contents).
    args += [f"--extension={_pattern(e)}" for e, s in facts.extensions if s in in_dump and (s != "public" or keep_public_contents)]
    try:
        pgtools.run(args, env=target.tool_env(), stdout=subprocess.DEVNULL)
    except pgtools.ToolError as exc:
        raise BackupError(
            f"pg_dump could not read the schemas {', '.join(schemas)} of {target.display()}: {exc.stderr_tail}",
            "the target's user must be able to dump them; nothing was changed",
        ) from None
    added = {(a.schema, "TRIGGER" if a.kind == "trigger" else "POLICY", a.table, a.name) for a in facts.additions}

    def keep(e: toc.Entry) -> bool:
        if e.desc == "SCHEMA" and e.names("public"):
            return False
        for schema, what, table, name in added:
            if e.schema == schema and (
                (e.desc == what and e.tag_owner.startswith(f"{table} {name} "))
                or (e.desc == "COMMENT" and e.tag_owner.startswith(f"{what} {name} ON {table} "))
            ):
                return False
        if e.schema == "public" and not keep_public_contents:
            return e.desc == "DEFAULT ACL"
        return True

    entries = [e for e in toc.read(suite, archive) if keep(e)]
    # Privileges go on their own, errors ignored: on a hosted project some name members of
    # extensions this server builds differently (pgjwt's functions), and loading the files
    # needs the schemas and tables, not every grant on the platform's functions.
    admin = box.admin_target()
    try:
        toc.load(suite, archive, entries, admin, workdir)
    except pgtools.ToolError as exc:
        raise BackupError(
            f"The target's schemas {', '.join(schemas)} could not be recreated in the throwaway database: {exc.stderr_tail}",
            "nothing was changed on the target",
        ) from None


def _copy_publications(conn: psycopg.Connection, facts: _Facts) -> None:
    """The platform's publications (Supabase's supabase_realtime): the app's schema file adds its
    tables to them."""
    for pub in facts.publications:
        name = sql.Identifier(pub["name"])
        conn.execute(
            sql.SQL("CREATE PUBLICATION {}{} WITH (publish = {}, publish_via_partition_root = {})").format(
                name, sql.SQL(" FOR ALL TABLES" if pub["all_tables"] else ""), sql.Literal(pub["publish"]), sql.Literal(bool(pub["via_root"]))
            )
        )
        for schema, table in pub["tables"]:
            conn.execute(sql.SQL("ALTER PUBLICATION {} ADD TABLE ONLY {}").format(name, dbinfo.qualified(schema, table)))
        if not pub["all_tables"]:  # a FOR ALL TABLES publication must stay a superuser's
            conn.execute(sql.SQL("ALTER PUBLICATION {} OWNER TO {}").format(name, sql.Identifier(pub["owner"])))


# --- loading the files ----------------------------------------------------------------------------------


@dataclass
class _Segment:
    first_line: int  # 1-based line of the stream where it starts
    lines: int
    file: RunbookFile | None  # None: our own lines
    file_line: int = 0  # the file's line at first_line


def _stream(files: list[RunbookFile], key: bytes, token: bytes) -> tuple[list, list[_Segment]]:
    """What psql reads: every file's bytes unchanged and in order; pg_dump's own \\restrict
    blocks as they are, everything else inside `\\restrict KEY` ... `\\unrestrict KEY` of ours.
    After each file, `;` (runs a last statement left without one, as psql does at the end of a
    file) and an \\echo of a token that proves psql read that far outside any quote or comment.
    A data file loads with session_replication_role = replica, as the restore's own data loads
    do: the app's triggers stay quiet and foreign keys are not checked row by row."""
    parts: list = []
    segments: list[_Segment] = []
    line = 1
    wraps = 0

    def ours(text: bytes) -> None:
        nonlocal line
        if text:
            parts.append(text)
            segments.append(_Segment(line, text.count(b"\n"), None))
            line += text.count(b"\n")

    for i, f in enumerate(files):
        if f.kind == "data":
            ours(b"SET session_replication_role = replica;\n")
        for p in f.pieces:
            wrap = key + b"n" + str(wraps).encode()
            if p.own_key is None:
                wraps += 1
                ours(b"\\restrict " + wrap + b"\n")
            parts.append((f, p))
            segments.append(_Segment(line, p.lines, f, p.first_line))
            line += p.lines
            if p.own_key is None:
                ours((b"" if _ends_with_newline(f, p) else b"\n") + b"\\unrestrict " + wrap + b"\n")
            elif not _ends_with_newline(f, p):
                ours(b"\n")
        ours(b";\n\\echo fortress-" + str(i).encode() + b"-" + token + b"\n")
    return parts, segments


def _ends_with_newline(f: RunbookFile, p: _Piece) -> bool:
    with open(f.path, "rb") as fh:
        fh.seek(p.end - 1)
        return fh.read(1) == b"\n"


def _chunks(parts: list) -> Iterator[bytes]:
    for part in parts:
        if isinstance(part, bytes):
            yield part
            continue
        f, p = part
        with open(f.path, "rb") as fh:
            fh.seek(p.start)
            left = p.end - p.start
            while left > 0 and (chunk := fh.read(min(CHUNK, left))):
                left -= len(chunk)
                yield chunk


def _first_error(err: bytes) -> tuple[int | None, str]:
    lines = err.decode("utf-8", "replace").splitlines()
    for raw in lines:
        m = _PSQL_LINE.match(raw)
        text = m.group(2) if m else raw
        if re.match(r"(?:psql: )?(ERROR|FATAL|PANIC|error):", text.strip()):
            return (int(m.group(1)) if m else None), " ".join(text.split())
    picked = [ln.strip() for ln in lines if ln.strip()][-1:]
    return None, " ".join(" ".join(picked).split()) or "psql stopped early"


def _locate(segments: list[_Segment], lineno: int | None) -> tuple[RunbookFile | None, int | None]:
    if lineno is None:
        return None, None
    for seg in segments:
        if seg.first_line <= lineno < seg.first_line + max(seg.lines, 1):
            return seg.file, (seg.file_line + lineno - seg.first_line) if seg.file else None
    return None, None


def _load(files: list[RunbookFile], box: _Sandbox, key: bytes, token: bytes) -> None:
    suite = box.cluster.suite
    parts, segments = _stream(files, key, token)
    target = box.loader_target()
    argv = pgtools.psql_argv(suite, target.conninfo(), "--single-transaction", f"--output={os.devnull}", "--file=-")
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = pgtools.popen(argv, env=target.tool_env(), stdin=subprocess.PIPE, stdout=out, stderr=err)
        try:
            try:
                assert proc.stdin is not None
                for chunk in _chunks(parts):
                    proc.stdin.write(chunk)
                proc.stdin.close()
            except BrokenPipeError:
                pass  # psql stopped on an error; its message is in err
            proc.wait()
        except BaseException:
            pgtools.stop(proc)
            raise
        finally:
            try:
                if proc.stdin is not None:
                    proc.stdin.close()
            except OSError:
                pass
        out.seek(0)
        echoed = out.read().decode("utf-8", "replace").split()
        err.seek(0)
        stderr = err.read()
    expected = [f"fortress-{i}-{token.decode()}" for i in range(len(files))]
    if proc.returncode == 0 and echoed == expected:
        return
    reached = files[min(sum(1 for e in expected if e in echoed), len(files) - 1)]
    lineno, text = _first_error(stderr)
    f, at = _locate(segments, lineno)
    if lineno is None and proc.returncode == 2:
        raise BackupError(f"psql could not work in the throwaway database: {text}", "nothing was changed on the target")
    if proc.returncode == 0:
        # psql reached the end without seeing our marks: the file ends inside a quoted string,
        # identifier or comment, which swallowed what followed it.
        raise _refuse(reached, None, "ends inside an unfinished quoted string, identifier or comment; refused")
    if "backslash commands are restricted" in text:
        what = "holds a psql meta-command (a backslash command), refused: runbook files may hold only SQL"
    elif "\\unrestrict" in text or "\\restrict" in text:
        what = f"does not load ({text}): a comment or quoted string left open swallowed pg_dump's closing line?"
    else:
        what = f"does not load: {text}"
    raise _refuse(f or reached, at, what)


# --- the whole job ----------------------------------------------------------------------------------------


def runbook_backup(
    files: list[Path], *, target: Target, store_root: Path, pg_bin_dir: str | None = None, step: Step = lambda m: None
) -> tuple[LocalStore, Backup]:
    """Load runbook files into a throwaway server shaped like `target` and back that up into a
    LocalStore under `store_root` (a temporary folder the caller owns and deletes). Returns the
    store and the backup, whose manifest says under "origin" which files it came from.

    Raises before the target could be touched (it is only read): RestoreFailed when a file is
    refused or does not load, naming the file, the line and psql's first error; ToolsMissing when
    no psql here can disable meta-commands, or the server here lacks an extension the target has;
    UsageError for names that are not a runbook file set."""
    ordered, kind = _kinds(files)
    step("checking the runbook files")
    key, token = _scan_all(ordered)

    step(f"connecting to {target.display()}")
    with target.connect(autocommit=True) as conn:
        facts = _gather(conn)
    major = facts.server.major
    try:
        suite = server_suite(major, pg_bin_dir)
    except ToolsMissing:
        suite = server_suite(None, pg_bin_dir)
        step(f"no PostgreSQL {major} server binaries here; loading the files into PostgreSQL {suite.version} instead")
    since = RESTRICT_SINCE.get(suite.major, 0)
    if suite.major < 18 and suite.minor < since:
        raise ToolsMissing(
            f"psql {suite.version} cannot disable meta-commands (\\restrict), so runbook files cannot be loaded safely",
            f"update PostgreSQL {suite.major} to {suite.major}.{since} or newer",
        )
    tools = pgtools.pick(
        pgtools.discover(pg_bin_dir),
        at_least=major,
        prefer=major,
        tools=("pg_dump", "pg_restore"),
        purpose=f"reading a PostgreSQL {facts.server.version} server",
    )

    admin = _sandbox_admin(facts)
    cluster = Cluster(suite, superuser=admin)
    box = _Sandbox(cluster=cluster, admin=admin, dbname=target.dbname, loader=facts.user)
    names = [f.name for f in ordered]
    try:
        step(f"starting a throwaway PostgreSQL {suite.version} server")
        cluster.start()
        with tempfile.TemporaryDirectory(prefix="fortress-runbook-") as tmp:
            work = Path(tmp)
            step("copying the target's roles (no passwords) and database settings")
            with box.admin_target("template1").connect(autocommit=True) as conn:
                _copy_roles(conn, facts, box)
                _create_database(conn, facts, box)
            with box.admin_target().connect(autocommit=True) as conn:
                _check_extensions(conn, facts, suite)
                _apply_settings(conn, facts, box, step)
                _copy_default_acls(conn, facts)
                _helper_grants(conn, box)
                if facts.platform.name != "postgres" and facts.public_owner:
                    conn.execute(sql.SQL("ALTER SCHEMA public OWNER TO {}").format(sql.Identifier(facts.public_owner)))
            schemas = list(facts.platform_schemas)
            if facts.platform.name != "postgres":
                schemas.append("public")  # its grants and default privileges, which the reset keeps
            if kind == "data":
                schemas += [s for s in facts.app_schemas if s not in schemas]
            if schemas:
                step("copying the target's " + ("platform and app schemas" if kind == "data" else "platform schemas") + ": " + ", ".join(schemas))
                _copy_ddl(facts, target, box, tools, schemas, keep_public_contents=kind == "data", workdir=work)
            with box.admin_target().connect(autocommit=True) as conn:
                _copy_publications(conn, facts)
                _same_platform(conn, facts, "before loading the files")
            step("loading " + " then ".join(names) + " (one transaction, psql meta-commands disabled)")
            _load(ordered, box, key, token)
            with box.admin_target().connect(autocommit=True) as conn:
                _give_back(conn, facts, box)
                _same_platform(conn, facts, "after loading the files")
        step("backing up the loaded database")
        store = LocalStore(Path(store_root))
        result = create_backup(
            box.admin_target(),
            store,
            kind=kind,
            label="runbook files: " + " + ".join(names),
            pg_bin_dir=pg_bin_dir,
            step=lambda m: None,
            origin=_origin(ordered, target, suite),
        )
        return store, catalog.load(store, result.backup_id)
    except (KeyboardInterrupt, Interrupted):
        raise Interrupted("Interrupted while loading the runbook files into a throwaway database; the target was not touched") from None
    finally:
        try:
            step("stopping the throwaway server")
        finally:
            cluster.stop()


def _give_back(conn: psycopg.Connection, facts: _Facts, box: _Sandbox) -> None:
    """Take back what only the load needed, before the backup reads the roles."""
    loader = sql.Identifier(box.loader)
    for role in box.lent_roles:
        conn.execute(sql.SQL("REVOKE {} FROM {}").format(sql.Identifier(role), loader))
    if box.helper:
        helper = sql.Identifier(box.helper)
        conn.execute(sql.SQL("ALTER DEFAULT PRIVILEGES FOR ROLE {} REVOKE CREATE ON SCHEMAS FROM {}").format(loader, helper))
        conn.execute(sql.SQL("DROP OWNED BY {}").format(helper))  # its grants on schemas and the database
        conn.execute(sql.SQL("DROP ROLE {}").format(helper))
    if conn.info.server_version >= 150000:
        conn.execute(sql.SQL("REVOKE SET ON PARAMETER session_replication_role FROM {}").format(loader))
    login = any(r.name == box.loader and r.login for r in facts.roles)
    conn.execute(sql.SQL("ALTER ROLE {} WITH {} PASSWORD NULL").format(loader, sql.SQL("LOGIN" if login else "NOLOGIN")))


def _same_platform(conn: psycopg.Connection, facts: _Facts, when: str) -> None:
    found = detect(conn)
    if found.name != facts.platform.name:
        raise RestoreFailed(
            f"The throwaway database does not look like a {facts.platform.name} project {when} "
            f"(it looks like {found.name}); the runbook files dropped or changed platform schemas?",
            _NOT_LOADED_HINT,
        )


def _origin(files: list[RunbookFile], target: Target, suite: pgtools.PgSuite) -> dict:
    """Which runbook files, with their checksums, the backup was made from, shaped like which target."""
    return {
        "runbook_files": [f.name for f in files],
        "files": [{"name": f.name, "size": f.size, "sha256": f.sha256} for f in files],
        "loaded_in": f"throwaway PostgreSQL {suite.version}",
        "shaped_like": target.display(),
    }
