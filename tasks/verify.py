"""invoke verify"""

from __future__ import annotations

from . import _notify, _ui
from ._flags import task
from .engine import catalog
from .engine.errors import IntegrityError, NotFound, UsageError
from .engine.manifest import signing_key
from .engine.objects import is_remote
from .engine.storage import LocalStore
from .engine.stores import local_store, remote_store
from .engine.verify import LEVELS, RESULTS, check_key, verify_backup


@task(
    help={
        "date": "Verify the newest backup of this UTC date (YYYY-MM-DD).",
        "id": "Verify the backup with this id (see `invoke list`).",
        "all": "Verify every backup in BACKUP_DIR (with --remote: in the object store).",
        "level": "quick (checksums), archive (also read every archive to the end) or drill (also restore into a "
        "throwaway server and compare every table); default drill.",
        "allow_unsigned": "Drill a backup whose manifest this machine cannot authenticate (its code runs in the throwaway server).",
        "backup_dir": "Folder holding the backups (default: BACKUP_DIR or .backups).",
        "remote": "Verify backups in the object store (BACKUP_STORE). Without it a backup not found locally is looked for there.",
    }
)
@_notify.on_failure("verify")
@_ui.guarded
def verify(c, date=None, id=None, all=False, level="drill", allow_unsigned=False, backup_dir=None, remote=False):  # noqa: A002 (flag names)
    """Prove a backup restores: checksums, archives read to the end, a restore drill compared table by table."""
    if level not in LEVELS:
        raise UsageError(f"--level {level!r} is not a level", "use --level quick, archive or drill")
    if sum(bool(x) for x in (date, id, all)) > 1:
        raise UsageError("--date, --id and --all exclude each other", "pass one of them (none: the newest backup)")
    settings = _ui.settings_from(backup_dir=backup_dir)
    key = signing_key(settings.signing_key, create=False)

    def chosen(store) -> list[catalog.Backup]:
        if date or id:
            return [catalog.resolve(store, date=date, backup_id=id)]
        ours = [b for b in catalog.all_backups(store)[0] if not b.legacy]
        if not ours:
            raise NotFound(f"No backups to verify in {store.describe()}", "run `invoke backup` first")
        return ours if all else ours[-1:]

    # as restore finds a backup: the local folder first, then the object store
    store = remote_store(settings) if remote else local_store(settings)
    try:
        backups = chosen(store)
    except NotFound:
        if remote or not is_remote(settings.store):
            raise
        store = remote_store(settings)
        _ui.step(f"not in {local_store(settings).describe()}: looking in {store.describe()}")
        backups = chosen(store)
    for b in backups:  # a missing or wrong key fails here, before any backup is verified
        check_key(store, b, level)
    failed = []
    for b in backups:
        with _ui.Activity(f"verifying {b.id} ({level})") as activity:
            result = verify_backup(
                store, b, level, signing_key=key, pg_bin_dir=settings.pg_bin_dir, allow_unsigned=allow_unsigned, step=activity.step
            )
        for note in result.notes:
            _ui.warn(note)
        for m in result.mismatches:
            _ui.err.print(f"[red]mismatch:[/red] {_ui.escape(m)}")
        _ui.out.print(f"{b.id}: {_ui.escape(result.summary())}")
        if not isinstance(store, LocalStore) and not any("not recorded" in n for n in result.notes):
            _ui.step(f"result recorded beside the backup: {store.describe()}/{b.id}/{RESULTS}")
        if not result.ok:
            failed.append(result)
    if failed:
        first = failed[0]
        what = first.error or first.mismatches[0]
        raise IntegrityError(
            f"{len(failed)} of {len(backups)} backup{'s' if len(backups) != 1 else ''} failed verification ({first.backup_id}: {what})",
            "do not rely on it; take a new backup with `invoke backup`",
        )
