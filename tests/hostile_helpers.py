"""Helpers for tests/test_hostile.py (issue 6): a shell-command marker short enough to fit in a
63-byte name, snapshots of the server's roles, tampering with a backup folder the way an attacker
with write access would (fixing the checksums afterwards), and reading a CLI run.

Nothing here mocks PostgreSQL or its tools, and nothing depends on how the engine lays out its
files beyond what the manifest itself says (`files[].name`, `files[].role`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import psycopg

from tasks.engine import pgtools
from tasks.engine.conn import Target
from tasks.engine.platform import SUPABASE
from tests.helpers import fingerprints, psql, schema_dump

# --- a marker that a `\!` shell command would create -------------------------------------------


class Marker:
    """`touch {marker.path}` in a name or file creates `marker.file` (under tmp_path).

    Identifiers hold at most 63 bytes and pytest's tmp_path is longer than that, so the command
    goes through a short symlink (in a private temporary directory) that points at tmp_path: the
    file itself lands under tmp_path, whatever the working directory of the process that runs
    the command."""

    def __init__(self, folder: Path):
        self.base = Path(tempfile.mkdtemp(prefix="fm"))
        self.link = self.base / "d"
        self.link.symlink_to(folder, target_is_directory=True)
        self.path = f"{self.link}/m"  # what the hostile text names
        assert len(self.path.encode()) <= 24, f"temporary directory too long for a 63-byte name: {self.path}"
        self.file = folder / "m"
        self.shell = f"\\! touch {self.path}"

    def exists(self) -> bool:
        return self.file.exists()

    def close(self) -> None:
        self.link.unlink(missing_ok=True)
        self.base.rmdir()


# --- roles -------------------------------------------------------------------------------------

ROLE_FLAGS = "rolsuper, rolreplication, rolbypassrls, rolcanlogin, rolcreaterole, rolcreatedb, rolinherit, rolconnlimit"


def roles(target: Target) -> dict[str, tuple]:
    """Every role of the target's server with its attributes (roles are server-wide)."""
    with target.connect() as conn:
        return {r[0]: tuple(r[1:]) for r in conn.execute(f"SELECT rolname, {ROLE_FLAGS} FROM pg_roles ORDER BY 1")}


def assert_roles_kept(admin: Target, before: dict[str, tuple], *, may_add: bool, context: str = "") -> None:
    """Every role the server had is exactly as it was, and no role is SUPERUSER, REPLICATION or
    BYPASSRLS that was not before. With `may_add`, new plain roles are allowed (a restore that
    went ahead creates the backup's missing roles, and its plan lists them)."""
    after = roles(admin)
    changed = {r: (before[r], after.get(r)) for r in before if after.get(r) != before[r]}
    assert not changed, f"roles changed (attributes: {ROLE_FLAGS}): {changed}\n{context}"
    added = set(after) - set(before)
    assert not {r for r in added if any(after[r][:3])}, f"new privileged roles: {sorted(added)}\n{context}"
    assert may_add or not added, f"roles created: {sorted(added)}\n{context}"


def undo_role_changes(admin: Target, before: dict[str, tuple]) -> None:
    """Put the server's roles back as `before` had them (after a test that a vulnerable restore
    let escalate or create roles): new roles dropped, escalated attributes taken back."""
    after = roles(admin)
    for name in sorted(set(after) - set(before)):
        _quietly(admin, f"DROP OWNED BY {ident(name)} CASCADE; DROP ROLE IF EXISTS {ident(name)}")
    for name, attrs in before.items():
        if name in after and after[name][:3] != attrs[:3]:
            flags = zip(attrs[:3], ("SUPERUSER", "REPLICATION", "BYPASSRLS"), strict=True)
            words = [("" if on else "NO") + word for on, word in flags]
            _quietly(admin, f"ALTER ROLE {ident(name)} {' '.join(words)}")


def drop_roles(admin: Target, *names: str) -> None:
    for name in names:
        _quietly(admin, f"DROP ROLE IF EXISTS {ident(name)}")


def _quietly(target: Target, sql: str) -> None:
    """For cleanup: a role that still owns objects somewhere stays, and the test's own failure
    is what gets reported."""
    with contextlib.suppress(psycopg.Error):
        psql(target, sql)


def ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


# --- comparing databases -----------------------------------------------------------------------

SUPABASE_APP_SCHEMAS = ["public", "supabase_migrations"]
SUPABASE_DATA_SCHEMAS = ["auth", "storage"]


# The platform's own migration bookkeeping: never backed up, so it differs between projects.
PLATFORM_BOOKKEEPING = ("auth.schema_migrations", "storage.migrations")


def supabase_state(platform, target: Target, extra_schemas: tuple[str, ...] = ()) -> tuple[dict, str]:
    """A Supabase-shaped project as its owner would miss it: every app and platform-data table's
    rows (less the platform's migration bookkeeping) and the whole database's schema (platform
    schemas included), read as the superuser."""
    admin = platform.admin(target.dbname)
    schemas = SUPABASE_APP_SCHEMAS + SUPABASE_DATA_SCHEMAS + list(extra_schemas)
    rows = {k: v for k, v in fingerprints(admin, SUPABASE, schemas).items() if k not in PLATFORM_BOOKKEEPING}
    return rows, schema_dump(admin)


def column_acls(target: Target, table: str) -> dict[str, str | None]:
    """column name -> its ACL (grantees and privileges), for every column of `table`."""
    with target.connect() as conn:
        return dict(
            conn.execute(
                "SELECT attname, attacl::text FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
                (table,),
            ).fetchall()
        )


# --- dump files as the runbook makes them ------------------------------------------------------


def plain_dump(source: Target, *flags: str) -> str:
    """`pg_dump` to plain SQL with the source server's own major version, as the runbook does."""
    with source.connect() as conn:
        major = conn.info.server_version // 10000
    suite = pgtools.pick(pgtools.discover(), at_least=major, prefer=major)
    return pgtools.run([suite.tool("pg_dump"), *flags, "--no-password", f"--dbname={source.conninfo()}"], env=source.tool_env()).decode()


# --- tampering with a backup folder ------------------------------------------------------------


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def manifest_path(folder: Path) -> Path:
    return folder / "manifest.json"


def read_manifest(folder: Path) -> dict[str, Any]:
    return json.loads(manifest_path(folder).read_text())


def write_manifest(folder: Path, manifest: dict[str, Any]) -> None:
    manifest_path(folder).write_text(json.dumps(manifest, indent=2) + "\n")


def file_entries(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    """The manifest's file records, whether `files` is a list of records or a name -> record map."""
    files = manifest.get("files", [])
    if isinstance(files, dict):
        return [dict(v, name=v.get("name", k)) if isinstance(v, dict) else {"name": k} for k, v in files.items()]
    return [f for f in files if isinstance(f, dict)]


def rehash(folder: Path) -> None:
    """Recompute every listed file's size and sha256 in manifest.json, as an attacker who edited
    the files would: the checksums match again. Whatever else protects the manifest is left as is."""
    manifest = read_manifest(folder)
    files = manifest.get("files", [])
    pairs = files.items() if isinstance(files, dict) else ((None, rec) for rec in files)
    for key, rec in pairs:
        if not isinstance(rec, dict):
            continue
        path = folder / rec.get("name", key)
        if not path.is_file():
            continue
        for field in list(rec):
            low = field.lower()
            if low in ("size", "bytes", "size_bytes"):
                rec[field] = path.stat().st_size
            elif low in ("sha256", "sha256sum", "checksum", "digest"):
                rec[field] = sha256(path)
    write_manifest(folder, manifest)


def files_with_role(folder: Path, role: str) -> list[dict[str, Any]]:
    """The manifest's records of the files that carry `role` (e.g. "roles", "additions"): by
    their `role` field, else by a role or file name that contains the word."""
    records = file_entries(read_manifest(folder))
    exact = [r for r in records if r.get("role") == role]
    return exact or [r for r in records if role in str(r.get("role", "")) or role in str(r.get("name", ""))]


def tamper(folder: Path, role: str, sql_payload: str, json_payload: str | None = None) -> list[str]:
    """Add `sql_payload` to every file of the backup that carries `role`: appended to an SQL
    (text) file; in a JSON file, appended to every string value (names, definitions), with every
    privilege flag (super/replication/bypassrls) switched on. Then fix the checksums.
    Returns the names of the files changed."""
    records = files_with_role(folder, role)
    assert records, f"the backup has no {role} file to tamper with: {file_entries(read_manifest(folder))}"
    for rec in records:
        path = folder / rec["name"]
        text = path.read_text()
        try:
            data = json.loads(text)
        except ValueError:
            path.write_text(text + ("" if text.endswith("\n") or not text else "\n") + sql_payload)
        else:
            path.write_text(json.dumps(_inject(data, json_payload if json_payload is not None else sql_payload)))
    rehash(folder)
    return [rec["name"] for rec in records]


_ESCALATE = {"NOSUPERUSER": "SUPERUSER", "NOREPLICATION": "REPLICATION", "NOBYPASSRLS": "BYPASSRLS"}


def _inject(value: Any, payload: str, key: str = "") -> Any:
    low = key.lower()
    if isinstance(value, bool) and any(w in low for w in ("super", "replication", "bypassrls")):
        return True
    if isinstance(value, str):
        return _ESCALATE.get(value.upper(), value + payload)
    if isinstance(value, list):
        return [_inject(v, payload, key) for v in value]
    if isinstance(value, dict):
        return {k: _inject(v, payload, k) for k, v in value.items()}
    return value


def add_file_entry(folder: Path, name: str, role: str = "extra") -> None:
    """List one more file in manifest.json, named `name` relative to the backup folder, with
    the size and sha256 of whatever that name reaches."""
    target = folder / name
    manifest = read_manifest(folder)
    entry = {"name": name, "role": role, "format": "sql", "size": target.stat().st_size, "sha256": sha256(target)}
    if isinstance(manifest.get("files"), dict):
        manifest["files"][name] = entry
    else:
        manifest.setdefault("files", []).append(entry)
    write_manifest(folder, manifest)


# --- reading a CLI run -------------------------------------------------------------------------


def said(res: subprocess.CompletedProcess) -> str:
    """Everything a run printed, with rich's line wrapping undone."""
    return " ".join((res.stdout + "\n" + res.stderr).split())


def mentions(res: subprocess.CompletedProcess, qualified_name: str) -> bool:
    """Whether the run's output names `schema.object`, quoted as an identifier or not."""
    return qualified_name in said(res).replace('"', "")


def shown(res: subprocess.CompletedProcess) -> str:
    return f"exit {res.returncode}\n--- stdout\n{res.stdout}\n--- stderr\n{res.stderr}"


def env_for(url: str, backup_dir: Path, **extra: str) -> dict[str, str]:
    return {"DATABASE_URL": url, "BACKUP_DIR": str(backup_dir), "COLUMNS": "300", **extra}


def unsigned_with_sql_in_comment(dbs, project: Path, sql: bytes, on: str = "INDEX app.items_pkey") -> tuple[Target, Path, str]:
    """A backup of SOURCE_SQL whose comment on `on` was replaced in the archive by `sql`, run as
    the entry's statement (`COMMENT ... IS '';<sql>`), kept at the same length (TOC strings are
    counted), checksums made to match again and the signature removed: restored only with
    --allow-unsigned. Returns (source, backup folder, backup id)."""
    from tests.fixtures_cli import SOURCE_SQL, engine_backup
    from tests.helpers import archive_bytes, seeded, write_archive_bytes

    pad = "X" * 160
    source = seeded(dbs, "src", SOURCE_SQL + f"COMMENT ON {on} IS '{pad}';")
    bdir = project / "backups"
    backup_id = engine_backup(source, bdir)
    folder = bdir / backup_id
    dump = folder / "app.dump"
    raw = archive_bytes(dump)
    old = f"'{pad}'".encode()
    new = b"'';" + sql
    assert len(new) <= len(old) and raw.count(old) == 1
    write_archive_bytes(dump, raw.replace(old, new + b"-" * (len(old) - len(new))))
    rehash(folder)
    (folder / "manifest.hmac").unlink()
    return source, bdir, backup_id
