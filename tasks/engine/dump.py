"""`backup`: the runbook's dump step, made consistent, checksummed and atomic.

One backup = one folder named by its UTC time, holding:
  roles.json           the app's roles as data: attributes, memberships, settings (full, schema)
  app.dump             pg_dump custom-format archive of the app's schemas: schema and/or data
  platform.dump        data of the platform's schemas (Supabase auth users, storage rows, ...)
  platform-schema.dump schema of the platform tables the app added triggers or policies to
  manifest.json        what is inside, from where, with sizes, sha256s and row counts
  manifest.hmac        HMAC of manifest.json under the signing key

All dumps read one exported snapshot, and the row counts are taken in that same snapshot, so the
counts describe exactly what the archives hold and a restore can be checked against them.
The custom format is chosen for restores: pg_restore can emit its sections separately (data
before indexes and constraints), select entries, and later run in parallel.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import psycopg

from . import additions, catalog, contenthash, dbinfo, drillplatform, pgtools, roles, sqltext, zstream
from . import manifest as manifest_mod
from . import project as project_mod
from .conn import Target
from .errors import BackupError, ConnectionFailed, Interrupted, ToolsMissing
from .platform import detect
from .storage import LocalStore, Store

KINDS = ("full", "schema", "data")
Step = Callable[[str], None]


@dataclass
class BackupResult:
    backup_id: str
    path: Path
    manifest: dict[str, Any]
    created_dir: bool
    gitignore_updated: list[str]  # lines added to the project's .gitignore


def ensure_gitignore(backup_dir: Path, project: Path) -> list[str]:
    """Add BACKUP_DIR and `.env` to the project's .gitignore unless a pattern there already
    covers them; the lines added."""
    return project_mod.ensure_ignored(project, backup_dir)


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _lock_timeout_error(target: Target, lock_timeout_ms: int, detail: str) -> BackupError:
    return BackupError(
        f"The backup of {target.dbname} waited {lock_timeout_ms / 1000:g} s (LOCK_TIMEOUT) for a table lock another session holds "
        f"(an ACCESS EXCLUSIVE lock: a migration, VACUUM FULL, LOCK TABLE) and stopped; nothing was kept ({detail})",
        "find the session with pg_blocking_pids / pg_stat_activity, let it finish, then run the backup again (or raise LOCK_TIMEOUT)",
    )


def _explain_tool_error(exc: pgtools.ToolError, target: Target, lock_timeout_ms: int = 0) -> BackupError:
    text = exc.stderr_tail
    low = text.lower()
    if exc.tool == "zstd":  # zstream.cause: why the compressor stopped
        return BackupError(
            f"{text}, while compressing the backup of {target.dbname}; nothing was kept",
            "free space where backups are written (df -h) or raise the file size limit, then run the backup again",
        )
    if "lock timeout" in low or "could not obtain lock" in low:
        return _lock_timeout_error(target, lock_timeout_ms, text)
    if "server version mismatch" in low:
        return ToolsMissing(f"{exc.tool} is older than the server: {text}", "install a newer PostgreSQL client, or set PG_BIN_DIR")
    if "password authentication failed" in low or "connection to server" in low:
        return ConnectionFailed(f"{exc.tool} could not connect to {target.display()}: {text}", "check DATABASE_URL and the password")
    if "permission denied" in low:
        return BackupError(f"{exc.tool}: {text}", f"the user {target.user!r} cannot read everything; back up as the database owner")
    return BackupError(f"{exc.tool} failed: {text}", "see the message above; nothing was written")


@lru_cache(maxsize=8)
def compression(suite: pgtools.PgSuite) -> str:
    """zstd level 1 on every server version. pg_dump 16+ writes it itself (probed: a pg_dump
    may be built without zstd); for older ones the server's own pg_dump writes an uncompressed
    archive that the `zstd` tool compresses on its own core (zstream: "zstd-stream"). gzip
    level 1 only where neither is possible (gzip 6, pg_dump's default, tripled the backup time
    for 8% less size)."""
    if suite.major >= 16:
        probe = subprocess.run(
            [suite.tool("pg_dump"), "--compress=zstd:1", "--schema-only", "--no-password", "--dbname=host=/nonexistent-fortress-probe port=1"],
            capture_output=True,
            text=True,
            env={"PATH": os.environ.get("PATH", "")},
            timeout=20,
        )
        if "compress" not in probe.stderr.lower():
            return "zstd:1"
    if zstream.tool() is not None:
        return STREAM
    return "1"


STREAM = "zstd-stream"


def _format(suite: pgtools.PgSuite) -> str:
    return zstream.FORMAT if compression(suite) == STREAM else "custom"


def _pg_dump_args(suite: pgtools.PgSuite, target: Target, out: Path, snapshot: str, lock_timeout_ms: int, stream: bool | None = None) -> list[str]:
    """`out`: where the archive goes; with zstd-stream compression (`stream`, by default when
    `compression` says so) pg_dump writes to its stdout instead (`_Dump`) and `out` is only the
    name the caller chose. A file written by pg_dump itself is gzip level 1 then."""
    stream = compression(suite) == STREAM if stream is None else stream
    level = compression(suite) if compression(suite) != STREAM else "1"
    return [
        suite.tool("pg_dump"),
        "--format=custom",
        "--compress=0" if stream else f"--compress={level}",
        *([] if stream else [f"--file={out}"]),
        f"--snapshot={snapshot}",
        # pg_dump locks every table it dumps (ACCESS SHARE) before reading any: behind an
        # ACCESS EXCLUSIVE lock it would wait silently, without end
        f"--lock-wait-timeout={lock_timeout_ms}ms",
        "--no-password",
        f"--dbname={target.conninfo()}",
    ] + (["--no-sync"] if not stream and out.is_fifo() else [])  # a pipe into encryption or upload: the store syncs what it keeps


class _Dump:
    """One pg_dump run writing `out`: directly, or through zstd (zstream) when its compression
    is zstd-stream. `wait()` returns the exit status and, streamed, the archive's raw size."""

    def __init__(self, suite: pgtools.PgSuite, args: list[str], out: Path, env: dict[str, str], errf):
        self.compressor = zstream.Compressor(out, env) if compression(suite) == STREAM else None
        try:
            stdout = subprocess.PIPE if self.compressor else subprocess.DEVNULL
            self.proc = pgtools.popen(args, env=env, stdin=subprocess.DEVNULL, stdout=stdout, stderr=errf)
        except BaseException:
            if self.compressor:
                self.compressor.stop()
            raise
        if self.compressor:
            assert self.proc.stdout is not None
            self.compressor.feed(self.proc.stdout)

    def wait(self) -> tuple[int, int | None]:
        rc = self.proc.wait()
        if self.compressor is None:
            return rc, None
        if rc != 0:
            # zstd dying first (disk full, file size limit, killed) breaks pg_dump's pipe: its
            # cause, not pg_dump's "could not write", is what to report
            died = self.compressor.failed()
            self.compressor.stop()
            if died is not None:
                raise died
            return rc, None
        return rc, self.compressor.finish()

    def stop(self) -> None:
        pgtools.stop(self.proc)
        if self.compressor:
            self.compressor.stop()


def _run_dump(suite: pgtools.PgSuite, args: list[str], out: Path, env: dict[str, str]) -> int | None:
    with tempfile.TemporaryFile() as errf:
        dump = _Dump(suite, args, out, env, errf)
        try:
            rc, raw = dump.wait()
        except BaseException:
            dump.stop()
            raise
        if rc != 0:
            errf.seek(0)
            raise pgtools.ToolError("pg_dump", rc, pgtools.tail(errf.read()))
    return raw


def create_backup(
    target: Target,
    store: Store,
    *,
    kind: str = "full",
    label: str | None = None,
    pg_bin_dir: str | None = None,
    now: dt.datetime | None = None,
    step: Step = lambda msg: None,
    signing_key: manifest_mod.SigningKey | None = None,
    origin: dict[str, Any] | None = None,
    locked: bool = False,
    lock_timeout_ms: int = 30_000,
    content_hashes: bool = False,
    context: dict[str, Any] | None = None,
    project: Path | None = None,
) -> BackupResult:
    """`content_hashes`: record every table's content hash (contenthash.py) for drills; off by
    default, since it more than doubles a backup's time (bench/content_hash.py).
    `context`: recorded (and signed) as the manifest's "context" (predeploy: git commit, CI run).
    `project`: the app repository whose .gitignore keeps the backups out (default: the one the
    working directory is in).
    `origin`: recorded in the manifest (signed with it) when the backup was made from
    something other than a live database (the runbook's files, loaded in a sandbox)."""
    if kind not in KINDS:
        raise BackupError(f"Unknown backup kind {kind!r}", f"use one of {', '.join(KINDS)}")
    key = signing_key or manifest_mod.signing_key(None, create=True)
    # A database that cannot be reached leaves no folder and no .gitignore line behind.
    target.connect(autocommit=True).close()
    created_dir = store.ensure()
    # Ignored before the first byte of a backup lands, so it can never be committed by accident.
    gitignore = ensure_gitignore(store.root, project or project_mod.find_root(Path.cwd())) if isinstance(store, LocalStore) else []
    with contextlib.nullcontext() if locked else store.lock():
        result = _create(target, store, kind, label, pg_bin_dir, now, step, key, origin, lock_timeout_ms, content_hashes, context)
    result.created_dir, result.gitignore_updated = created_dir, gitignore
    return result


def _create(target, store, kind, label, pg_bin_dir, now, step, key, origin, lock_timeout_ms, content_hashes=False, context=None) -> BackupResult:
    started = dt.datetime.now(dt.UTC)
    step(f"connecting to {target.display()}")
    conn = target.connect(autocommit=True)
    try:
        info = dbinfo.server_info(conn)
        platform = detect(conn)
        suite = pgtools.pick(
            pgtools.discover(pg_bin_dir), at_least=info.major, prefer=info.major, tools=("pg_dump",), purpose=f"a PostgreSQL {info.version} server"
        )
        step(f"server PostgreSQL {info.version} ({platform.name}); using pg_dump {suite.version}")
        app_schemas = dbinfo.app_schemas(conn, platform)
        managed_present = [s for s in dbinfo.schemas(conn) if platform.is_managed(s)]
        data_schemas = [s for s in platform.data_schemas if s in managed_present]
        # The counting session must not be cut short by the role's own limits (pg_dump resets its);
        # but it waits for a table lock no longer than pg_dump does.
        conn.execute("SET statement_timeout = 0")
        conn.execute(f"SET lock_timeout = {int(lock_timeout_ms)}")
        conn.execute("SET idle_in_transaction_session_timeout = 0")
        conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        snapshot = conn.execute("SELECT pg_export_snapshot()").fetchone()[0]
        backup_id = catalog.new_id(now or started, set(store.ids()))
        env = target.tool_env()
        files: list[dict[str, Any]] = []
        manifest: dict[str, Any] = {}
        # `out` says where each file goes: the staging folder, or a pipe into encryption / upload
        with store.staging(backup_id) as folder, store.writer(folder) as out:
            login: list[str] = []
            app_roles: list[str] = []
            skipped_roles: list[str] = []
            if kind in ("full", "schema"):
                step("reading roles (never passwords)")
                everyone = [r[0] for r in conn.execute("SELECT rolname FROM pg_catalog.pg_roles ORDER BY 1")]
                made = dbinfo.platform_made_roles(conn) if platform.name == "supabase" else set()
                skipped_roles = [r for r in everyone if platform.is_reserved_role(r) or r in made or r == info.current_user]
                app_roles = [r for r in everyone if r not in skipped_roles]
                role_set = roles.read(conn, app_roles)
                login = [r.name for r in role_set.roles if r.login]
                out.write_bytes("roles.json", role_set.to_json().encode())
                files.append({"name": "roles.json", "role": "roles", "format": "json"})

            raw_sizes: dict[str, int | None] = {}
            app_path = out.path("app.dump")
            app_args = _pg_dump_args(suite, target, app_path, snapshot, lock_timeout_ms)
            app_args.append("--large-objects" if suite.major >= 16 else "--blobs")
            if kind == "schema":
                app_args.append("--schema-only")
            elif kind == "data":
                app_args.append("--data-only")
            for pattern in platform.managed_patterns:
                app_args.append(f"--exclude-schema={pattern}")
            for schema in dbinfo.schemas(conn):
                # platform-owned schemas off the list (extension-made, supabase_admin's)
                if platform.name == "supabase" and platform.is_app_schema(schema) and schema not in app_schemas and not schema.startswith("pg_"):
                    app_args.append(f"--exclude-schema={sqltext.pattern(schema)}")
            step(f"dumping {'schema and data' if kind == 'full' else kind} of schemas: {', '.join(app_schemas) or '(none)'}")
            # stderr to a file: while we count rows, a full stderr pipe must not stall pg_dump.
            with tempfile.TemporaryFile() as errf:
                dump = _Dump(suite, app_args, app_path, env, errf)
                try:
                    # Count rows in the same snapshot while pg_dump works.
                    tabs = dbinfo.tables(conn, app_schemas + data_schemas)
                    counts = dbinfo.row_counts(conn, tabs) if kind != "schema" else {}
                    for name in dbinfo.filtered_config_tables(conn):
                        counts.pop(name, None)
                    hashes = contenthash.snapshot_hashes(conn, tabs) if content_hashes and kind != "schema" else None
                    returncode, raw_sizes["app.dump"] = dump.wait()
                except psycopg.errors.LockNotAvailable:
                    dump.stop()
                    raise _lock_timeout_error(target, lock_timeout_ms, "counting rows") from None
                except pgtools.ToolError as exc:
                    raise _explain_tool_error(exc, target, lock_timeout_ms) from None
                except BaseException:
                    dump.stop()
                    raise
                errf.seek(0)
                err = errf.read()
            if returncode != 0:
                raise _explain_tool_error(pgtools.ToolError("pg_dump", returncode, pgtools.tail(err)), target, lock_timeout_ms)
            files.append({"name": "app.dump", "role": "app", "format": _format(suite)})

            added: list[additions.Addition] = []
            if kind in ("full", "schema") and managed_present:
                added = additions.find(conn, platform)
                if added:
                    step("dumping the platform tables the app added triggers or policies to (schema only)")
                    path = out.path("platform-schema.dump")
                    args = _pg_dump_args(suite, target, path, snapshot, lock_timeout_ms) + ["--schema-only"]
                    args += [f"--table={sqltext.pattern(s, t)}" for s, t in sorted({(a.schema, a.table) for a in added})]
                    try:
                        raw_sizes["platform-schema.dump"] = _run_dump(suite, args, path, env)
                    except pgtools.ToolError as exc:
                        raise _explain_tool_error(exc, target, lock_timeout_ms) from None
                    files.append({"name": "platform-schema.dump", "role": "platform-schema", "format": _format(suite)})
            drill = None
            if kind in ("full", "schema") and platform.name == "supabase" and managed_present:
                step("recording the platform's schemas (for restore drills only; never restored)")
                try:
                    ddl_args = _pg_dump_args(suite, target, folder / drillplatform.FILE, snapshot, lock_timeout_ms, stream=False)
                    drill = drillplatform.record(conn, managed_present, ddl_args, env)
                except pgtools.ToolError as exc:
                    raise _explain_tool_error(exc, target, lock_timeout_ms) from None
                files.append(drill.pop("file"))

            if kind in ("full", "data") and data_schemas:
                step(f"dumping platform data: {', '.join(data_schemas)}")
                path = out.path("platform.dump")
                args = _pg_dump_args(suite, target, path, snapshot, lock_timeout_ms) + ["--data-only"]
                args += [f"--schema={s}" for s in data_schemas]
                args += [f"--exclude-table={t}" for t in platform.excluded_data_tables]
                try:
                    raw_sizes["platform.dump"] = _run_dump(suite, args, path, env)
                except pgtools.ToolError as exc:
                    raise _explain_tool_error(exc, target, lock_timeout_ms) from None
                files.append({"name": "platform.dump", "role": "platform", "format": _format(suite)})
            acl_roles = dbinfo.default_acl_roles(conn) if kind != "data" else []
            exts = dbinfo.extensions(conn)
            jobs = dbinfo.cron_jobs(conn) if kind != "schema" else None
            conn.execute("COMMIT")

            step("checksumming")
            for f in files:
                f.update(out.finish(f["name"]))
                if raw_sizes.get(f["name"]) is not None:
                    f["raw_size"] = raw_sizes[f["name"]]  # the archive before zstd compressed it
            excluded = set(platform.excluded_data_tables)
            manifest = {
                "format": catalog.FORMAT_VERSION,
                "id": backup_id,
                "kind": kind,
                "label": label or "",
                "created_at": started.isoformat().replace("+00:00", "Z"),
                "completed_at": dt.datetime.now(dt.UTC).isoformat().replace("+00:00", "Z"),
                "source": {
                    "url": target.display(),
                    "host": target.host,
                    "port": target.port,
                    "database": info.database,
                    "user": info.current_user,
                    "server_version": info.version,
                    "server_version_num": info.version_num,
                    "platform": platform.name,
                },
                "tools": {"pg_dump": suite.version, "compression": compression(suite)},
                "contents": {
                    "roles": kind in ("full", "schema"),
                    "schema": kind in ("full", "schema"),
                    "data": kind in ("full", "data"),
                },
                "app_schemas": app_schemas,
                "managed_schemas": managed_present,
                "platform_data_schemas": data_schemas if kind != "schema" else [],
                "platform_additions": [a.to_dict() for a in added],
                "default_acl_roles": acl_roles,
                "extensions": [{"name": n, "schema": s, "version": v} for n, s, v in exts],
                "cron_jobs": jobs,
                "roles": {"app": app_roles, "login_without_password": login, "skipped": skipped_roles},
                "files": files,
                "tables": [
                    {
                        "schema": s,
                        "name": t,
                        "kind": {"r": "table", "p": "partitioned", "m": "matview"}[k],
                        "rows": counts.get(f"{s}.{t}"),
                        "section": "app" if s in app_schemas else "platform",
                    }
                    for s, t, k in tabs
                    if s in app_schemas or f"{s}.{t}" not in excluded
                ],
            }
            if origin is not None:
                manifest["origin"] = origin
            contenthash.record(manifest, hashes)
            if drill is not None:
                manifest["drill_platform"] = drill
            if context:
                manifest["context"] = context
            if out.manifest_fields():
                manifest.update(out.manifest_fields())
                manifest["format"] = manifest_mod.FORMAT_ENCRYPTED
            catalog.write_manifest(folder, manifest)
            manifest_mod.sign(folder, key)
    except KeyboardInterrupt:
        raise Interrupted("Backup interrupted", "nothing was kept; run `invoke backup` again") from None
    except psycopg.Error as exc:
        raise BackupError(
            f"Database error during backup: {' '.join(str(exc).split())}", "nothing was kept; check the message and run the backup again"
        ) from None
    finally:
        conn.close()
    step(f"backup {backup_id} complete")
    return BackupResult(backup_id, store.local_path(backup_id, ""), manifest, False, [])


def undo_point(
    target: Target,
    store: Store,
    *,
    before: str,
    pg_bin_dir: str | None = None,
    step: Step = lambda msg: None,
    signing_key: manifest_mod.SigningKey | None = None,
    lock_timeout_ms: int = 30_000,
) -> BackupResult:
    """A full backup of `target` taken right before a restore or reset changes it, labelled and
    recorded as that change's undo point; `invoke restore --id ID` puts the target back. The
    caller holds the backup folder's lock."""
    label = f"undo point: before {before}"
    return create_backup(
        target,
        store,
        kind="full",
        label=label,
        pg_bin_dir=pg_bin_dir,
        step=step,
        signing_key=signing_key,
        origin={"undo_for": before},
        locked=True,
        lock_timeout_ms=lock_timeout_ms,
    )
