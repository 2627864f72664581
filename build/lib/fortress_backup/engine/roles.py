"""Roles travel as data (`roles.json`): names, attributes, memberships, settings and comments read
from the catalog. A restore turns that data into statements itself, through sqltext, so a
backup can never carry a statement of its own.

What a restore may do with roles, whatever the backup says:
- create a role the target server lacks, with LOGIN, INHERIT, CREATEDB, CONNECTION LIMIT and
  VALID UNTIL as recorded; never SUPERUSER, REPLICATION, BYPASSRLS or CREATEROLE (on PostgreSQL 15
  CREATEROLE may grant itself any role; a role that had them at the source is created without
  them, and the plan says so);
- never alter, comment on or change the settings of a role the target already has (roles are
  server-wide and may serve other databases there);
- grant memberships only where one side is a role this restore creates, never membership in a
  superuser role or in the roles that reach the server's files and programs;
- never set a `*_preload_libraries` parameter (that loads code into the server).
Passwords are never backed up: created LOGIN roles need a new one, and the restore says which.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import psycopg

from . import sqltext
from .errors import IntegrityError

FORMAT = 1
# Membership in these reaches the server's files and programs (COPY ... PROGRAM, pg_read_file).
DANGEROUS_GROUPS = ("pg_execute_server_program", "pg_read_server_files", "pg_write_server_files")
# GUCs whose value is a list of quoted items (pg_dumpall splits these the same way).
LIST_GUCS = (
    "search_path",
    "temp_tablespaces",
    "unix_socket_directories",
    "session_preload_libraries",
    "local_preload_libraries",
    "shared_preload_libraries",
)


@dataclass(frozen=True)
class Role:
    name: str
    login: bool = False
    inherit: bool = True
    createdb: bool = False
    createrole: bool = False
    connection_limit: int = -1
    valid_until: str | None = None
    comment: str | None = None
    settings: tuple[tuple[str, str], ...] = ()  # (parameter, value) set for the role everywhere
    # attributes only a superuser has; recorded so the plan can say they are not restored
    superuser: bool = False
    replication: bool = False
    bypassrls: bool = False


@dataclass(frozen=True)
class Membership:
    role: str  # the group
    member: str
    admin: bool = False
    inherit: bool | None = None  # PostgreSQL 16+ options; None: the server's default
    set: bool | None = None


@dataclass(frozen=True)
class RoleSet:
    roles: tuple[Role, ...] = ()
    memberships: tuple[Membership, ...] = ()

    def names(self) -> list[str]:
        return [r.name for r in self.roles]

    def to_json(self) -> str:
        return (
            json.dumps(
                {
                    "format": FORMAT,
                    "roles": [{**r.__dict__, "settings": [list(s) for s in r.settings]} for r in self.roles],
                    "memberships": [m.__dict__ for m in self.memberships],
                },
                indent=2,
            )
            + "\n"
        )

    @staticmethod
    def from_json(text: str) -> RoleSet:
        try:
            data = json.loads(text)
            if not isinstance(data, dict) or data.get("format") != FORMAT:
                raise ValueError("unknown format")
            roles = tuple(_role(r) for r in data["roles"])
            memberships = tuple(_membership(m) for m in data["memberships"])
        except (ValueError, KeyError, TypeError) as exc:
            raise IntegrityError(
                f"The backup's roles.json is not valid ({exc})", "restore another backup; this one is damaged or was edited"
            ) from None
        return RoleSet(roles, memberships)


def _typed(value: Any, kind: type | tuple[type, ...], what: str) -> Any:
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise TypeError(f"{what} has the wrong type")
    return value


def _role(d: dict[str, Any]) -> Role:
    settings = tuple((_typed(k, str, "setting"), _typed(v, str, "setting")) for k, v in d.get("settings", []))
    return Role(
        name=_typed(d["name"], str, "name"),
        login=_typed(d.get("login", False), bool, "login"),
        inherit=_typed(d.get("inherit", True), bool, "inherit"),
        createdb=_typed(d.get("createdb", False), bool, "createdb"),
        createrole=_typed(d.get("createrole", False), bool, "createrole"),
        connection_limit=_typed(d.get("connection_limit", -1), int, "connection_limit"),
        valid_until=_typed(d.get("valid_until"), (str, type(None)), "valid_until"),
        comment=_typed(d.get("comment"), (str, type(None)), "comment"),
        settings=settings,
        superuser=_typed(d.get("superuser", False), bool, "superuser"),
        replication=_typed(d.get("replication", False), bool, "replication"),
        bypassrls=_typed(d.get("bypassrls", False), bool, "bypassrls"),
    )


def _membership(d: dict[str, Any]) -> Membership:
    return Membership(
        role=_typed(d["role"], str, "role"),
        member=_typed(d["member"], str, "member"),
        admin=_typed(d.get("admin", False), bool, "admin"),
        inherit=_typed(d.get("inherit"), (bool, type(None)), "inherit"),
        set=_typed(d.get("set"), (bool, type(None)), "set"),
    )


# --- backup ------------------------------------------------------------------------------


def read(conn: psycopg.Connection, keep: Iterable[str]) -> RoleSet:
    """The roles named in `keep` and every membership that involves one of them."""
    names = sorted(set(keep))
    if not names:
        return RoleSet()
    rows = conn.execute(
        "SELECT r.rolname, r.rolcanlogin, r.rolinherit, r.rolcreatedb, r.rolcreaterole, r.rolconnlimit,"
        " r.rolvaliduntil::text, pg_catalog.shobj_description(r.oid, 'pg_authid'), r.rolsuper, r.rolreplication,"
        " r.rolbypassrls, ARRAY(SELECT pg_catalog.unnest(s.setconfig)) "
        " FROM pg_catalog.pg_roles r LEFT JOIN pg_catalog.pg_db_role_setting s"
        "   ON s.setrole = r.oid AND s.setdatabase = 0"
        " WHERE r.rolname = ANY(%s) ORDER BY 1",
        (names,),
    ).fetchall()
    roles = []
    for name, login, inherit, createdb, createrole, connlimit, valid, comment, su, repl, bypass, config in rows:
        settings = tuple((k, v) for k, _, v in (item.partition("=") for item in (config or []) if "=" in item))
        roles.append(Role(name, login, inherit, createdb, createrole, connlimit, valid, comment, settings, su, repl, bypass))
    pg16 = conn.info.server_version >= 160000
    options = "m.inherit_option, m.set_option" if pg16 else "NULL::bool, NULL::bool"
    memberships = [
        Membership(g, m, admin, inh, st)
        for g, m, admin, inh, st in conn.execute(
            "SELECT g.rolname, u.rolname, m.admin_option, "
            + options
            + " FROM pg_catalog.pg_auth_members m JOIN pg_catalog.pg_roles g ON g.oid = m.roleid"
            " JOIN pg_catalog.pg_roles u ON u.oid = m.member"
            " WHERE g.rolname = ANY(%s) OR u.rolname = ANY(%s) ORDER BY 1, 2",
            (names, names),
        )
    ]
    # one row per (group, member): PG16+ may hold several grantors' grants of the same membership
    # (the creator's implicit ADMIN grant, then `grant prisma to postgres`): what they add up to
    unique: dict[tuple[str, str], Membership] = {}
    for m in memberships:
        was = unique.get((m.role, m.member))
        if was is not None:
            m = Membership(m.role, m.member, admin=m.admin or was.admin, inherit=_either(m.inherit, was.inherit), set=_either(m.set, was.set))
        unique[(m.role, m.member)] = m
    return RoleSet(tuple(roles), tuple(unique.values()))


def _either(a: bool | None, b: bool | None) -> bool | None:
    return None if a is None and b is None else bool(a) or bool(b)


# --- restore -----------------------------------------------------------------------------


@dataclass(frozen=True)
class RolePlan:
    create: tuple[Role, ...] = ()
    keep: tuple[str, ...] = ()  # the backup's roles the target has: left as they are
    grants: tuple[Membership, ...] = ()
    refused: tuple[str, ...] = ()  # what the backup asked for and will not be done, with why
    warnings: tuple[str, ...] = ()
    sql: str = ""

    @property
    def login_roles(self) -> list[str]:
        return [r.name for r in self.create if r.login]

    def shown(self) -> list[str]:
        """Each role to create with its attributes, for the plan."""
        out = []
        for r in self.create:
            attrs = ["LOGIN" if r.login else "NOLOGIN"]
            attrs += [a for a, on in (("CREATEDB", r.createdb), ("NOINHERIT", not r.inherit)) if on]
            out.append(f"{r.name} ({' '.join(attrs)})")
        return out


@dataclass(frozen=True)
class TargetRoles:
    """Facts of the target server, read at plan time."""

    existing: frozenset[str]
    superusers: frozenset[str]
    current_user: str
    major: int
    dbname: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def facts(conn: psycopg.Connection, names: Iterable[str]) -> TargetRoles:
    wanted = sorted(set(names))
    existing = {r[0] for r in conn.execute("SELECT rolname FROM pg_catalog.pg_roles WHERE rolname = ANY(%s)", (wanted,))}
    supers = {r[0] for r in conn.execute("SELECT rolname FROM pg_catalog.pg_roles WHERE rolsuper OR rolreplication OR rolbypassrls")}
    user, dbname = conn.execute("SELECT current_user, current_database()").fetchone()  # type: ignore[misc]
    return TargetRoles(frozenset(existing), frozenset(supers), user, conn.info.server_version // 10000, dbname)


def plan(backup: RoleSet, target: TargetRoles) -> RolePlan:
    """Pure: which roles to create, which memberships to grant, what is refused and why."""
    create = tuple(r for r in backup.roles if r.name not in target.existing and r.name != target.current_user)
    keep = tuple(r.name for r in backup.roles if r.name in target.existing)
    created = {r.name for r in create}
    refused: list[str] = []
    warnings: list[str] = []
    for r in create:
        lost = [
            a
            for a, on in (("SUPERUSER", r.superuser), ("REPLICATION", r.replication), ("BYPASSRLS", r.bypassrls), ("CREATEROLE", r.createrole))
            if on
        ]
        if lost:
            refused.append(f"{' '.join(lost)} for role {r.name} (created without)")
        for k, _ in r.settings:
            if k.endswith("preload_libraries"):
                refused.append(f"setting {k} of role {r.name} (it loads code into the server)")
    grants = []
    for m in backup.memberships:
        if m.role not in created and m.member not in created:
            continue  # between roles the target already has: their own business
        if m.member == target.current_user:
            if m.role not in created:
                continue  # the restoring user's own membership in a role it has: not ours to change
            # e.g. Supabase's Prisma guide (`grant prisma to postgres`): without it the restoring
            # user may not give the new role its tables. Never with ADMIN: PostgreSQL 16+ gave the
            # creator that already, and granting it back to oneself is an error.
            m = Membership(m.role, m.member, admin=False, inherit=m.inherit, set=m.set)
        if m.role in target.superusers or m.role in DANGEROUS_GROUPS:
            refused.append(f"membership of {m.member} in {m.role} (it would give {m.role}'s powers)")
            continue
        if target.major < 16 and m.inherit is False:
            warnings.append(f"{m.member} now inherits the privileges of {m.role} (PostgreSQL {target.major} has no INHERIT FALSE grants)")
        grants.append(m)
    return RolePlan(create, keep, tuple(grants), tuple(refused), tuple(warnings), restore_sql(create, grants, target.major))


def _setting_sql(role: str, name: str, value: str) -> str | None:
    if name.endswith("preload_libraries"):
        return None
    parts = name.split(".")
    if not all(parts):
        return None
    param = ".".join(sqltext.ident(p) for p in parts)
    if name in LIST_GUCS:
        values = ", ".join(sqltext.literal(v) for v in split_list(value))
    else:
        values = sqltext.literal(value)
    return f"ALTER ROLE {sqltext.ident(role)} SET {param} TO {values};"


def split_list(value: str) -> list[str]:
    """A list GUC's stored value into its items: `"$user", public` -> ['$user', 'public']."""
    items, cur, quoted, i = [], [], False, 0
    while i < len(value):
        ch = value[i]
        if quoted:
            if ch == '"' and value[i + 1 : i + 2] == '"':
                cur.append('"')
                i += 1
            elif ch == '"':
                quoted = False
            else:
                cur.append(ch)
        elif ch == '"':
            quoted = True
        elif ch == ",":
            items.append("".join(cur).strip())
            cur = []
        else:
            cur.append(ch)
        i += 1
    items.append("".join(cur).strip())
    return [v for v in items if v]


def restore_sql(create: Iterable[Role], grants: Iterable[Membership], target_major: int) -> str:
    out: list[str] = []
    for r in create:
        attrs = [
            "LOGIN" if r.login else "NOLOGIN",
            "INHERIT" if r.inherit else "NOINHERIT",
            "CREATEDB" if r.createdb else "NOCREATEDB",
            "NOCREATEROLE",
            f"CONNECTION LIMIT {int(r.connection_limit)}",
        ]
        if r.valid_until is not None:
            attrs.append(f"VALID UNTIL {sqltext.literal(r.valid_until)}")
        out.append(f"CREATE ROLE {sqltext.ident(r.name)} WITH {' '.join(attrs)};")
        if r.comment is not None:
            out.append(f"COMMENT ON ROLE {sqltext.ident(r.name)} IS {sqltext.literal(r.comment)};")
        for name, value in r.settings:
            stmt = _setting_sql(r.name, name, value)
            if stmt:
                out.append(stmt)
    for m in grants:
        options = []
        if target_major >= 16:
            if m.admin:
                options.append("ADMIN TRUE")
            if m.inherit is not None:
                options.append(f"INHERIT {'TRUE' if m.inherit else 'FALSE'}")
            if m.set is not None:
                options.append(f"SET {'TRUE' if m.set else 'FALSE'}")
        elif m.admin:
            options.append("ADMIN OPTION")
        tail = f" WITH {', '.join(options)}" if options else ""
        out.append(f"GRANT {sqltext.ident(m.role)} TO {sqltext.ident(m.member)}{tail};")
    return "\n".join(out) + ("\n" if out else "")
