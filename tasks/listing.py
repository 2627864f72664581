"""invoke list / invoke config"""

from __future__ import annotations

from . import _ui
from ._flags import task
from .engine import catalog
from .engine.conn import redact_url
from .engine.errors import IntegrityError
from .engine.storage import LocalStore


def _source(b: catalog.Backup) -> str:
    """Where a backup was made, as a URL without secrets (what `restore --date` matches)."""
    if b.legacy:
        return "unknown (runbook file)"
    if b.runbook_files:
        return "runbook files " + ", ".join(b.runbook_files)
    src = b.manifest.get("source")
    url = src.get("url") if isinstance(src, dict) else None
    return redact_url(str(url)) if url else "unknown"


@task(
    name="list",
    help={
        "backup_dir": "Folder holding the backups (default: BACKUP_DIR or .backups).",
        "verify": "Also recompute every file's sha256 (reads every backup in full).",
    },
)
@_ui.guarded
def list_(c, backup_dir=None, verify=False):
    """List backups: id, date, kind, size, source database, label and checksum status."""
    settings = _ui.settings_from(backup_dir=backup_dir)
    store = LocalStore(settings.backup_dir)
    store.tidy()  # what killed runs left
    backups, problems = catalog.all_backups(store)
    rows = []
    damaged = 0
    for b in backups:
        if b.legacy:
            status = "no manifest (runbook file)"
        elif verify:
            try:
                catalog.verify_checksums(store, b)
                status = "ok"
            except catalog.IntegrityError as exc:
                status = f"MISMATCH: {exc.message}"
                damaged += 1
        else:
            n = len(b.files())
            status = f"{n} file{'s' if n != 1 else ''} recorded"
        rows.append((b.id, b.date.isoformat(), b.kind, _ui.human_size(b.size(store)), _source(b), b.label, status))
    if not rows:
        _ui.out.print(f"no backups in {store.describe()} yet; run `invoke backup`")
    else:
        t = _ui.table(f"Backups in {store.describe()}", ["id", "date (UTC)", "kind", "size", "source", "label", "checksums"], rows)
        for col in t.columns[:2]:  # the id is what `restore --id` takes, with its date: always whole
            col.no_wrap = True
        _ui.out.print(t)
    for p in problems:
        _ui.err.print(f"[yellow]warning:[/yellow] {p}")
    for leftover in store.stale_staging():
        _ui.err.print(
            f"[yellow]warning:[/yellow] {leftover} is being written by a backup or restore running now, "
            "or is a killed run's that this user may not remove (never listed or restored)"
        )
    if verify and (damaged or problems):
        bad = damaged + len(problems)
        raise IntegrityError(
            f"{bad} backup{'s' if bad != 1 else ''} failed verification", "do not rely on it; take a new backup with `invoke backup`"
        )


@task(help={"backup_dir": "Override BACKUP_DIR to see the effect."})
@_ui.guarded
def config(c, backup_dir=None):
    """Show the effective settings and where each came from (flag, environment, .env, default)."""
    settings = _ui.settings_from(backup_dir=backup_dir)
    _ui.out.print(_ui.table("Settings", ["setting", "value", "from"], settings.describe()))
