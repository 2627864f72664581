"""invoke list / invoke config"""

from __future__ import annotations

from . import _ui
from ._flags import task
from .engine import catalog
from .engine import verify as verify_mod
from .engine.conn import redact_url
from .engine.errors import BackupError, IntegrityError, UsageError
from .engine.manifest import signing_key
from .engine.storage import LocalStore
from .engine.stores import open_store


def _source(b: catalog.Backup) -> str:
    """Where a backup was made, as a URL without secrets (what `restore --date` matches)."""
    if b.legacy:
        return "unknown (runbook file)"
    if b.runbook_files:
        return "runbook files " + ", ".join(b.runbook_files)
    src = b.manifest.get("source")
    url = src.get("url") if isinstance(src, dict) else None
    return redact_url(str(url)) if url else "unknown"


def _verified(store, b: catalog.Backup, key) -> str:
    """The latest `invoke verify` result recorded next to the manifest (in the object store too)."""
    if b.legacy:
        return ""
    r = verify_mod.latest_result(store, b.id, key)
    if r is None:
        return "never"
    when = str(r.get("started_at", ""))[:16].replace("T", " ")
    text = f"{r['level']} {'ok' if r['ok'] else 'FAILED'} {when}"
    if not r["ok"]:
        first = r.get("error") or (r.get("mismatches") or [""])[0]
        text += f": {first}"
    return text if r.get("authentic") else text + " (unsigned result)"


@task(
    name="list",
    help={
        "backup_dir": "Folder holding the backups (default: BACKUP_DIR or .backups).",
        "verify": "Also recompute every file's sha256 (reads every backup in full).",
        "remote": "List the object store (BACKUP_STORE) instead of the local folder.",
        "json": "Print the listing as JSON (also BACKUP_OUTPUT=json).",
    },
)
@_ui.guarded
def list_(c, backup_dir=None, verify=False, remote=False, json=False):
    """List backups: id, date, kind, size, source database, label and checksum status."""
    settings = _ui.settings_from(backup_dir=backup_dir)
    if not remote and settings.backup_dir.exists() and not settings.backup_dir.is_dir():
        raise UsageError(
            f"BACKUP_DIR {settings.backup_dir} is a file, not a folder", "point BACKUP_DIR (or --backup-dir) at the folder holding the backups"
        )
    store = open_store(settings, remote=remote)
    store.tidy()  # what killed runs left
    backups, problems = catalog.all_backups(store)
    rows: list[tuple[str, ...]] = []
    damaged = 0
    key = signing_key(settings.signing_key, create=False)
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
        if b.manifest.get("encryption"):
            status += ", age-encrypted"
        rows.append((b.id, b.date.isoformat(), b.kind, _ui.human_size(b.size(store)), _source(b), b.label, status, _verified(store, b, key)))
    broken = _damaged(store, {b.id for b in backups}) if isinstance(store, LocalStore) else []
    rows += broken
    rows.sort(key=lambda r: r[0] if catalog.ID_RE.match(r[0]) else "")  # runbook files first, then by time
    if not rows:
        _ui.say(f"no backups in {store.describe()} yet; run `invoke backup`")
    else:
        _show_backups(f"Backups in {store.describe()}", rows)
    for row in broken:
        _ui.warn(row[6].replace("DAMAGED: ", f"backup {row[0]} is damaged: ", 1))
    if not isinstance(store, LocalStore):
        for p in problems:
            _ui.warn(p)
        broken = [(p,) for p in problems]
    for upload in getattr(store, "incomplete", list)():
        _ui.warn(
            f"{store.describe()}/{upload}/ has files but no manifest: an upload running now, or one cut off (never listed or restored; "
            "`invoke prune --remote --apply` removes it once older than BACKUP_UPLOAD_GRACE)"
        )
    for leftover in store.stale_staging():
        _ui.warn(
            f"{leftover} is being written by a backup or restore running now, "
            "or is a killed run's that this user may not remove (never listed or restored)"
        )
    if verify and (damaged or broken):
        bad = damaged + len(broken)
        raise IntegrityError(
            f"{bad} backup{'s' if bad != 1 else ''} failed verification", "do not rely on it; take a new backup with `invoke backup`"
        )


COLUMNS = ["id", "date (UTC)", "kind", "size", "source", "label", "checksums", "verified"]
NARROW = 80  # below this many columns, one block per backup instead of a table


def _damaged(store: LocalStore, loaded: set[str]) -> list[tuple[str, ...]]:
    """Folders named like backups whose manifest is missing, unreadable or malformed: listed as
    damaged, never hidden (nor taken for "no backups")."""
    out: list[tuple[str, ...]] = []
    if not store.root.is_dir():
        return out
    for path in sorted(store.root.iterdir()):
        m = catalog.ID_RE.match(path.name)
        if not m or path.name in loaded or not path.is_dir():
            continue
        if not (path / catalog.MANIFEST).is_file():
            why = "DAMAGED: no manifest.json"
        else:
            try:
                catalog.load(store, path.name)
                continue
            except BackupError as exc:
                why = f"DAMAGED: {exc.message}"
        out.append((path.name, m.group(1), "?", "?", "unknown", "", why, ""))
    return out


def _show_backups(title: str, rows: list[tuple[str, ...]]) -> None:
    """A table where there is room; in a narrow terminal one block per backup, so no word is
    split inside a cell. Piped output is the table, unpadded."""
    if not _ui.Output.json and _ui.out.is_terminal and _ui.out.width < NARROW:
        from rich.table import Table

        _ui.say(title)
        for r in rows:
            block = Table(title=_ui.clean(r[0]), title_justify="left", title_style="bold", show_header=False, box=None, padding=(0, 1))
            block.add_column(no_wrap=True, style="dim")
            block.add_column(overflow="fold")
            for name, value in zip(COLUMNS[2:], r[2:], strict=True):
                if value != "":
                    block.add_row(_ui.clean(name), _ui.clean(value))
            _ui.out.print()
            _ui.out.print(block)
        return
    t = _ui.table(title, COLUMNS, rows)
    for col in t.columns[:2]:  # the id is what `restore --id` takes, with its date: always whole
        col.no_wrap = True
    _ui.emit(_ui.out, t)


@task(help={"backup_dir": "Override BACKUP_DIR to see the effect.", "json": "Print the settings as JSON (also BACKUP_OUTPUT=json)."})
@_ui.guarded
def config(c, backup_dir=None, json=False):
    """Show the effective settings and where each came from (flag, environment, .env, default)."""
    settings = _ui.settings_from(backup_dir=backup_dir)
    rows = settings.describe()
    if settings.project_root is not None:
        rows.append(("project_root", str(settings.project_root), "nearest folder with .git or pyproject.toml"))
    _ui.emit(_ui.out, _ui.table("Settings", ["setting", "value", "from"], rows))
