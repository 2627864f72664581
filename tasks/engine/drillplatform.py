"""The platform a restore drill needs, recorded at backup time and rebuilt in a throwaway server.

A Supabase backup holds the app and the platform's *data* (auth users, storage rows), never the
platform's DDL: a restore goes into a project that has it. A drill restores into a throwaway
local PostgreSQL, which has no auth or storage schema. So a Supabase backup also records, in the
dump's snapshot, `platform-ddl.dump`: `pg_dump --schema-only` of the platform's schemas (and the
extensions living in them), plus, in the manifest's "drill_platform", the platform's roles (names
only), its bootstrap superuser and its publications. A drill builds a matching throwaway project
from these (build()), then restores the backup there with the ordinary restore code.

`platform-ddl.dump` is used by drills only; a restore never reads it (its file role is not one
the restore knows), so nothing of it ever reaches a real database.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from . import dbinfo, pgtools, sqltext, toc
from .conn import Target
from .errors import BackupError, IntegrityError, ToolsMissing
from .platform import by_name

FILE = "platform-ddl.dump"
ROLE = "platform-ddl"
Step = Callable[[str], None]


def record(conn: psycopg.Connection, managed: list[str], dump_args: list[str], env: dict[str, str]) -> dict[str, Any]:
    """pg_dump --schema-only of the platform's schemas into the archive that `dump_args`
    (pg_dump, custom format, the backup's snapshot, --file) name; returns the manifest's
    "drill_platform" record, with the file entry under "file" for the caller to take out."""
    exts = [(name, schema) for name, schema, _ in dbinfo.extensions(conn) if schema in managed]
    args = [*dump_args, "--schema-only"]
    args += [f"--schema={sqltext.pattern(s)}" for s in managed]
    args += [f"--extension={sqltext.pattern(e)}" for e, _ in exts]
    pgtools.run(args, env=env, stdout=subprocess.DEVNULL)
    bootstrap = conn.execute("SELECT rolname FROM pg_catalog.pg_roles WHERE oid = 10").fetchone()[0]
    platform = by_name("supabase")
    roles = [
        r[0]
        for r in conn.execute("SELECT rolname FROM pg_catalog.pg_roles WHERE rolname !~ '^pg_' ORDER BY 1")
        if platform.is_reserved_role(r[0]) or r[0] in dbinfo.platform_made_roles(conn)
    ]
    pubs = [
        {
            "name": name,
            "owner": owner,
            "all_tables": bool(alltables),
            "publish": ", ".join(w for w, on in zip(("insert", "update", "delete", "truncate"), flags, strict=True) if on),
        }
        for name, owner, alltables, *flags in conn.execute(
            "SELECT pubname, pg_catalog.pg_get_userbyid(pubowner), puballtables, pubinsert, pubupdate, pubdelete, pubtruncate"
            " FROM pg_catalog.pg_publication ORDER BY 1"
        ).fetchall()
        if platform.is_platform_publication(name)
    ]
    return {
        "file": {"name": FILE, "role": ROLE, "format": "custom"},
        "bootstrap": bootstrap,
        "roles": roles,
        "schemas": managed,
        "extensions": [e for e, _ in exts],
        "publications": pubs,
    }


def _strs(value: Any, backup_id: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise IntegrityError(f"Backup {backup_id} has a drill_platform record of the wrong shape", "drill another backup; this one was edited")
    return value


def superuser_for(manifest: dict[str, Any], backup_id: str) -> str:
    """The throwaway server's superuser: the source's bootstrap superuser on Supabase (objects it
    owns keep their owner), else the backup's own user (a plain server's `postgres`)."""
    drill = manifest.get("drill_platform")
    if isinstance(drill, dict) and isinstance(drill.get("bootstrap"), str):
        return drill["bootstrap"]
    src = manifest.get("source") or {}
    user = src.get("user") if isinstance(src, dict) else None
    return user if isinstance(user, str) and user else "postgres"


def build(
    admin: Target, dbname: str, manifest: dict[str, Any], backup_id: str, archive: Path | None, suite: pgtools.PgSuite, workdir: Path, step: Step
) -> list[str]:
    """Make `dbname` in the throwaway server (connected to as its superuser through `admin`) look
    like the project the backup came from before the app: the roles the backup does not carry
    (platform roles, the backup's own user; names only, NOLOGIN), and on Supabase the platform's
    schemas from `archive` (platform-ddl.dump) and its publications. Returns notes for the result."""
    notes: list[str] = []
    drill = manifest.get("drill_platform")
    src = manifest.get("source") or {}
    skipped = (manifest.get("roles") or {}).get("skipped") or []
    wanted = set(_strs(skipped, backup_id))
    if isinstance(drill, dict):
        wanted |= set(_strs(drill.get("roles") or [], backup_id))
    user = src.get("user") if isinstance(src.get("user"), str) else None
    if user:
        wanted.add(user)
    with admin.connect(autocommit=True) as conn:
        present = {r[0] for r in conn.execute("SELECT rolname FROM pg_catalog.pg_roles")}
        for role in sorted(r for r in wanted if r not in present and not r.startswith("pg_")):
            conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(role)))
        owner = user or admin.user or "postgres"
        conn.execute(
            sql.SQL("CREATE DATABASE {} WITH TEMPLATE template0 ENCODING 'UTF8' OWNER {}").format(sql.Identifier(dbname), sql.Identifier(owner))
        )
    if src.get("platform") != "supabase":
        return notes
    if not isinstance(drill, dict) or archive is None:
        raise IntegrityError(
            f"Backup {backup_id} comes from a Supabase project but does not record the platform's schemas (made before drills existed)",
            "drill a newer backup, or verify this one with --level archive",
        )
    target = admin.with_dbname(dbname)
    with target.connect(autocommit=True) as conn:
        available = {r[0] for r in conn.execute("SELECT name FROM pg_catalog.pg_available_extensions")}
    missing = sorted(e for e in _strs(drill.get("extensions") or [], backup_id) if e not in available)
    if missing:
        raise ToolsMissing(
            f"The throwaway PostgreSQL {suite.version} server cannot create the platform's extensions " + ", ".join(missing),
            f"install them for PostgreSQL {suite.major} on this machine, or verify with --level archive",
        )
    step("building a throwaway project with the backup's recorded platform schemas")
    additions = {a.get("oid") for a in manifest.get("platform_additions") or [] if isinstance(a, dict)}

    def keep(e: toc.Entry) -> bool:
        # the app's triggers and policies on platform tables come back with the restore itself
        if e.oid and e.oid in additions:
            return False
        if e.desc in ("COMMENT",) and any(e.tag_owner.startswith(w) for w in ("TRIGGER ", "POLICY ")):
            return False
        return not (e.desc == "SCHEMA" and e.names("public"))

    entries = [e for e in toc.read(suite, archive) if keep(e)]
    try:
        complete = toc.load(suite, archive, entries, target, workdir)
    except pgtools.ToolError as exc:
        raise BackupError(
            f"The backup's recorded platform schemas could not be built in the throwaway server: {exc.stderr_tail}",
            "verify with --level archive meanwhile; this is a bug worth reporting",
        ) from None
    if not complete:
        notes.append("some of the platform's privileges could not be recreated in the throwaway project (as for runbook files)")
    with target.connect(autocommit=True) as conn:
        for pub in drill.get("publications") or []:
            if not isinstance(pub, dict) or not isinstance(pub.get("name"), str):
                continue
            name = sql.Identifier(pub["name"])
            publish = str(pub.get("publish") or "insert, update, delete, truncate")
            conn.execute(
                sql.SQL("CREATE PUBLICATION {}{} WITH (publish = {})").format(
                    name, sql.SQL(" FOR ALL TABLES" if pub.get("all_tables") else ""), sql.Literal(publish)
                )
            )
            if not pub.get("all_tables") and isinstance(pub.get("owner"), str):
                conn.execute(sql.SQL("ALTER PUBLICATION {} OWNER TO {}").format(name, sql.Identifier(pub["owner"])))
    return notes
