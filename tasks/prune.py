"""invoke prune"""

from __future__ import annotations

import datetime as dt
import sys

from . import _ui
from ._flags import task
from .engine import catalog
from .engine import prune as prune_engine
from .engine.errors import Declined
from .engine.manifest import signing_key
from .engine.retention import Policy, plan_prune
from .engine.stores import open_store


@task(
    auto_shortflags=False,  # Invoke runs out of letters for its flags and prints `--=STRING`
    help={
        "keep_last": "Keep the newest N backups (default: BACKUP_KEEP_LAST or 3).",
        "keep_daily": "Keep the newest backup of each of the last N days that have one (default: BACKUP_KEEP_DAILY or 7).",
        "keep_weekly": "Keep the newest backup of each of the last N weeks (default: BACKUP_KEEP_WEEKLY or 4).",
        "keep_monthly": "Keep the newest backup of each of the last N months (default: BACKUP_KEEP_MONTHLY or 12).",
        "apply": "Remove what the plan says without asking. Without it, prune asks in a terminal and only prints the plan elsewhere.",
        "backup_dir": "Folder holding the backups (default: BACKUP_DIR or .backups).",
        "remote": "Prune the object store (BACKUP_STORE) instead of the local folder; also removes uploads cut off midway "
        "(files without a manifest) last written longer ago than --upload-grace.",
        "upload_grace": "With --remote: how old an upload without a manifest must be to count as cut off, e.g. 2d "
        "(default: BACKUP_UPLOAD_GRACE or 24h); a younger one may still be running and is never removed.",
    },
)
@_ui.guarded
def prune(c, keep_last=None, keep_daily=None, keep_weekly=None, keep_monthly=None, apply=False, backup_dir=None, remote=False, upload_grace=None):
    """Remove old backups by a retention policy: print the plan (keep/remove and why), then apply it."""
    settings = _ui.settings_from(
        backup_dir=backup_dir,
        keep_last=keep_last,
        keep_daily=keep_daily,
        keep_weekly=keep_weekly,
        keep_monthly=keep_monthly,
        upload_grace=upload_grace,
    )
    r = settings.retention
    policy = Policy(
        keep_last=r["keep_last"],
        keep_daily=r["keep_daily"],
        keep_weekly=r["keep_weekly"],
        keep_monthly=r["keep_monthly"],
        undo_days=r["keep_undo_days"],
        predeploy_days=r["keep_predeploy_days"],
    )
    store = open_store(settings, remote=remote)
    with store.lock():
        backups, problems = catalog.all_backups(store)
        found, unauthenticated = prune_engine.items(backups, store, signing_key(settings.signing_key, create=False))
        now = dt.datetime.now(dt.UTC)
        plan = plan_prune(found, policy, now)
        grace = dt.timedelta(seconds=settings.upload_grace_s)
        uploads = prune_engine.leftovers(store, now, grace, settings.upload_grace)
        for p in problems:
            _ui.warn(f"{p} (left as it is)")
        remove = [d for d in plan if not d.keep]
        cut_off = [u for u in uploads if u.remove]
        rows = [(d.id, "keep" if d.keep else "REMOVE", d.reason) for d in plan]
        rows += [(i, "keep", "not signed with this machine's key: never counted, never removed") for i in unauthenticated]
        rows += [(u.id, "REMOVE" if u.remove else "keep", u.reason) for u in uploads]
        rows.sort()
        title = f"Prune plan for {store.describe()} (policy: {policy.describe()})"
        _ui.out.print(_ui.table(title, ["id", "action", "why"], rows) if rows else f"no backups in {store.describe()}")
        uploads_text = f" and {len(cut_off)} cut-off upload{'s' if len(cut_off) != 1 else ''}" if cut_off else ""
        if not remove and not cut_off:
            _ui.out.print(f"nothing to remove: {len(plan)} backups kept")
            return
        if not apply:
            if not sys.stdin.isatty():
                _ui.out.print(f"plan only: {len(remove)} of {len(plan)} backups{uploads_text} would be removed; pass --apply to remove them")
                return
            try:
                _ui.confirm_by_name("prune", f"remove {len(remove)} backups{uploads_text} from {store.describe()}", yes=False, what="the word")
            except Declined:
                raise Declined("Not confirmed; no backup was removed", None) from None
        with _ui.Activity("pruning") as activity:
            removed = prune_engine.apply(store, plan, step=activity.step)
            cleaned = prune_engine.remove_leftovers(store, cut_off, grace, step=activity.step)
        cleaned_text = f"; removed {len(cleaned)} cut-off upload{'s' if len(cleaned) != 1 else ''}" if cut_off else ""
        _ui.out.print(f"removed {len(removed)} backups, kept {len(plan) - len(removed)}{cleaned_text}")
