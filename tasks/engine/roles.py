"""Roles travel as the statements `pg_dumpall --roles-only --no-role-passwords` writes, minus
the platform's own roles and the connecting role. At restore they are made idempotent (a role
that exists is altered, not recreated) and adapted to the target server's version.

Passwords are never dumped: restored LOGIN roles need a new password, and restore says which.
"""

from __future__ import annotations

import re
from typing import Callable, Iterable

IDENT = r'(?:"(?:[^"]|"")+"|[A-Za-z_][A-Za-z0-9_$]*)'
_CREATE = re.compile(rf"^CREATE ROLE ({IDENT});$")
_ALTER = re.compile(rf"^ALTER ROLE ({IDENT})(?=[\s;])")
_COMMENT = re.compile(rf"^COMMENT ON ROLE ({IDENT}) IS")
_SECLABEL = re.compile(rf"^SECURITY LABEL FOR {IDENT} ON ROLE ({IDENT}) IS")
_GRANT = re.compile(rf"^GRANT ({IDENT}) TO ({IDENT})(.*);$", re.S)


def unquote(ident: str) -> str:
    if ident.startswith('"'):
        return ident[1:-1].replace('""', '"')
    return ident.lower()


def split_statements(script: str) -> list[str]:
    """Split SQL into statements on semicolons outside quotes; drop comment and blank lines
    between statements and psql meta-commands (\\connect, \\restrict)."""
    out: list[str] = []
    buf: list[str] = []
    in_single = in_double = False
    i, n = 0, len(script)
    while i < n:
        ch = script[i]
        if not buf and not in_single and not in_double:
            if ch in " \t\r\n":
                i += 1
                continue
            if script.startswith("--", i) or ch == "\\":
                nl = script.find("\n", i)
                i = n if nl < 0 else nl + 1
                continue
        buf.append(ch)
        if in_single:
            if ch == "'":
                in_single = False
        elif in_double:
            if ch == '"':
                in_double = False
        elif ch == "'":
            in_single = True
        elif ch == '"':
            in_double = True
        elif ch == ";":
            out.append("".join(buf).strip())
            buf = []
        i += 1
    if "".join(buf).strip():
        out.append("".join(buf).strip())
    return out


def roles_in(stmt: str) -> list[str]:
    for rx in (_CREATE, _ALTER, _COMMENT, _SECLABEL):
        m = rx.match(stmt)
        if m:
            return [unquote(m.group(1))]
    m = _GRANT.match(stmt)
    if m:
        return [unquote(m.group(1)), unquote(m.group(2))]
    return []


def filter_roles(script: str, skip: Callable[[str], bool]) -> tuple[list[str], list[str], list[str]]:
    """(kept statements, app roles kept, roles skipped). A membership grant is kept when at
    least one side is an app role (the app granted something to or from a platform role)."""
    kept: list[str] = []
    app_roles: list[str] = []
    skipped: set[str] = set()
    for stmt in split_statements(script):
        if stmt.upper().startswith("SET "):
            continue
        names = roles_in(stmt)
        if not names:
            continue
        if _GRANT.match(stmt):
            if all(skip(r) for r in names):
                continue
        elif skip(names[0]):
            skipped.add(names[0])
            continue
        m = _CREATE.match(stmt)
        if m:
            app_roles.append(unquote(m.group(1)))
        kept.append(stmt)
    return kept, app_roles, sorted(skipped)


def downgrade_warnings(statements: Iterable[str], target_major: int) -> list[str]:
    """Memberships whose meaning a server before 16 cannot keep: there every grant inherits."""
    if target_major >= 16:
        return []
    out = []
    for stmt in statements:
        g = _GRANT.match(stmt)
        if g and re.search(r"INHERIT FALSE", g.group(3)):
            out.append(f"{unquote(g.group(2))} now inherits the privileges of {unquote(g.group(1))} "
                       f"(PostgreSQL {target_major} has no INHERIT FALSE grants)")
    return out


def login_roles(statements: Iterable[str]) -> list[str]:
    out = []
    for stmt in statements:
        m = _ALTER.match(stmt)
        if m and re.search(r"\bWITH\b.*\bLOGIN\b", stmt) and not re.search(r"\bNOLOGIN\b", stmt):
            out.append(unquote(m.group(1)))
    return out


def created_roles(statements: Iterable[str]) -> list[str]:
    return [unquote(m.group(1)) for stmt in statements if (m := _CREATE.match(stmt))]


def restore_sql(statements: Iterable[str], *, target_major: int, target_superuser: bool,
                current_user: str | None = None, existing: Iterable[str] = ()) -> str:
    """Statements made safe to run inside the restore transaction on this target.

    Roles are server-wide: a role the target server already has is left exactly as it is (its
    attributes, settings and comment may serve other databases there); only missing roles are
    created and given the backup's attributes and memberships."""
    existing = set(existing)
    out: list[str] = []
    for stmt in statements:
        names = roles_in(stmt)
        if names and all(n in existing for n in names):
            continue  # a role, or a membership between roles, the server already has: its own business
        m = _CREATE.match(stmt)
        if m:
            # CREATE ROLE is transactional; an existing role is kept and altered below.
            out.append(
                "DO $fortress$ BEGIN " + stmt +
                " EXCEPTION WHEN duplicate_object THEN NULL; END $fortress$;"
            )
            continue
        g = _GRANT.match(stmt)
        if g:
            if current_user is not None and unquote(g.group(2)) == current_user:
                # Membership of the restoring user itself: PG16+ gives a role's creator ADMIN on
                # it already, and granting it back to oneself is an error.
                continue
            tail = g.group(3)
            # GRANTED BY needs superuser (or naming oneself) and its grantor may not exist.
            tail = re.sub(rf"\s+GRANTED BY {IDENT}", "", tail)
            if target_major < 16:
                # PG16 added INHERIT/SET membership options; older servers know only ADMIN OPTION.
                admin = re.search(r"ADMIN (?:OPTION|TRUE)", tail)
                tail = " WITH ADMIN OPTION" if admin else ""
            out.append(f"GRANT {g.group(1)} TO {g.group(2)}{tail};")
            continue
        if not target_superuser and _ALTER.match(stmt):
            # Only a superuser may hand out these attributes; keep the rest of the role.
            stmt = re.sub(r"\s(NO)?(SUPERUSER|REPLICATION|BYPASSRLS)\b", "", stmt)
        out.append(stmt)
    return "\n".join(out) + ("\n" if out else "")
