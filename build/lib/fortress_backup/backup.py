"""invoke backup"""

from __future__ import annotations

from . import _notify, _ui
from ._flags import task
from .engine.conn import Target
from .engine.dump import create_backup
from .engine.errors import ConfigError, UsageError
from .engine.manifest import signing_key
from .engine.storage import LocalStore
from .engine.stores import write_store
from .engine.watch import ServerWatch


@task(
    help={
        "schema_only": "Dump roles and schema, no rows (the runbook's --schema-only).",
        "data_only": "Dump rows only, no roles or schema (the runbook's --data-only).",
        "label": "A note stored with the backup and shown by `invoke list`, e.g. 'before v2.3 deploy'.",
        "url": "Database to back up (default: DATABASE_URL or SUPABASE_DB_URL).",
        "backup_dir": "Folder for backups (default: BACKUP_DIR or .backups).",
        "json": "Print JSON events (steps, progress every 10 s, the summary) on stdout, one a line, for CI (also BACKUP_OUTPUT=json).",
        "lock_timeout": "How long pg_dump waits for a table lock before the backup stops, e.g. 30s (default: LOCK_TIMEOUT or 30s).",
        "keep_local": "With an object store (BACKUP_STORE): also keep the backup in the local folder (BACKUP_DIR).",
    }
)
@_notify.on_failure("backup")
@_ui.guarded
def backup(c, schema_only=False, data_only=False, label=None, url=None, backup_dir=None, lock_timeout=None, keep_local=False, json=False):
    """Back up the database: roles, schema and data, checksummed, into BACKUP_DIR/<UTC time>/."""
    if schema_only and data_only:
        raise UsageError("--schema-only and --data-only exclude each other", "pass at most one of them")
    settings = _ui.settings_from(url=url, backup_dir=backup_dir, lock_timeout=lock_timeout)
    if not settings.database_url:
        raise ConfigError("No database configured", "set DATABASE_URL in .env or the environment, or pass --url")
    target = Target.from_url(settings.database_url, settings.password, settings.pg_env)
    kind = "schema" if schema_only else "data" if data_only else "full"
    store = write_store(settings, keep_local=keep_local)
    key = signing_key(settings.signing_key, create=True)
    if key and key.created:
        _ui.step(
            f"created this machine's signing key {key.source} (keep it private; a machine that restores these "
            "backups needs the same key, as BACKUP_SIGNING_KEY or in that file)"
        )
    watch = ServerWatch(target, estimate=True) if kind != "schema" else None
    with _ui.Activity("backing up", watch=watch) as activity:
        result = create_backup(
            target,
            store,
            kind=kind,
            label=label,
            pg_bin_dir=settings.pg_bin_dir,
            step=activity.step,
            signing_key=key,
            lock_timeout_ms=settings.lock_timeout_ms,
            content_hashes=settings.content_hashes,
            project=settings.project_root,
        )
    if result.created_dir and isinstance(store, LocalStore):
        _ui.step(f"created {store.root} (mode 0700)")
    if result.gitignore_updated and isinstance(store, LocalStore):
        _ui.step(f"added to {settings.project_root or '.'}/.gitignore: {', '.join(result.gitignore_updated)}")
    m = result.manifest
    # counted as restore checks them: a partitioned table's rows are its partitions' (counted
    # once), a materialized view is named apart (rebuilt from the rows, not a table of them)
    leaves = [t for t in m["tables"] if t.get("kind", "table") == "table"]
    matviews = sum(1 for t in m["tables"] if t.get("kind") == "matview")
    rows = sum(t["rows"] or 0 for t in leaves)
    size = sum(f["size"] for f in m["files"])
    where = store.describe() + "/" + result.backup_id if not isinstance(store, LocalStore) else str(result.path)
    encrypted = f" (encrypted for {len(m['encryption']['recipients'])} age recipients)" if m.get("encryption") else ""
    if _ui.Output.json:
        _ui.Output.event(
            "summary",
            backup_id=result.backup_id,
            kind=m["kind"],
            tables=len(leaves),
            rows=rows,
            bytes=size,
            path=where,
            seconds=round(activity.elapsed, 1),
            label=m.get("label") or "",
            encrypted=bool(m.get("encryption")),
        )
        return
    _ui.say(
        f"backup {result.backup_id}: {m['kind']}, {len(leaves)} tables, {rows} rows, "
        + (f"{matviews} materialized view{'s' if matviews != 1 else ''}, " if matviews else "")
        + f"{_ui.human_size(size)} in {where}{encrypted} ({activity.elapsed:.1f} s)"
    )
