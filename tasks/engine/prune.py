"""`invoke prune`'s engine: the backups of a store as retention items, and applying a plan.

The plan itself is pure (retention.plan_prune); this module only reads manifests and deletes.
Runbook files (hand-made `dump-DATE.sql`) are never touched: they are not this tool's.

In an object store, uploads cut off midway (files without a manifest: never a backup) are
planned too (`leftovers`): removed once last written longer ago than the grace
(BACKUP_UPLOAD_GRACE, default 24h), kept while younger (the upload may still be running).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from . import catalog
from . import manifest as manifest_mod
from . import verify as verify_mod
from .retention import Decision, Item


def _created(b: catalog.Backup) -> dt.datetime:
    text = str(b.manifest.get("created_at") or "")
    try:
        when = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
        return when if when.tzinfo else when.replace(tzinfo=dt.UTC)
    except ValueError:
        m = catalog.ID_RE.match(b.id)
        assert m is not None
        return dt.datetime.strptime(f"{m.group(1)}T{m.group(2)}", "%Y-%m-%dT%H%M%S").replace(tzinfo=dt.UTC)


def verified(store: Any, b: catalog.Backup, key: manifest_mod.SigningKey | None) -> bool:
    """Whether the latest `invoke verify` of this backup passed, by a result signed with this
    machine's key (verification.json beside the manifest, also in the object store)."""
    r = verify_mod.latest_result(store, b.id, key)
    return bool(r and r.get("ok") is True and r.get("authentic"))


def authentic(store: Any, b: catalog.Backup, key: manifest_mod.SigningKey | None) -> bool:
    """A manifest this machine cannot authenticate never decides what is deleted: anyone who can
    write the folder (or the bucket) could date one in the future to push real backups out."""
    try:
        return manifest_mod.check(store.local_path(b.id, ""), key, b.manifest_bytes).ok
    except Exception:  # a signature that does not match, an unreadable one
        return False


def items(backups: list[catalog.Backup], store: Any = None, key: manifest_mod.SigningKey | None = None) -> tuple[list[Item], list[str]]:
    """The retention items of the authenticated backups, and the ids of those left out (never
    counted, never removed)."""
    out, unauthenticated = [], []
    for b in backups:
        if b.legacy:
            continue
        if not authentic(store, b, key):
            unauthenticated.append(b.id)
            continue
        src = catalog.backup_source(b)
        out.append(
            Item(
                id=b.id,
                created=_created(b),
                source=src.describe() if src else "",
                undo_point=b.undo_point,
                label=b.label,
                verified=verified(store, b, key),
            )
        )
    return out, unauthenticated


def apply(store: Any, plan: list[Decision], step: Callable[[str], None] = lambda m: None) -> list[str]:
    """Delete what the plan removes, oldest first; the caller holds the store's lock. Returns the
    ids removed."""
    removed = []
    for d in sorted((d for d in plan if not d.keep), key=lambda d: d.id):
        step(f"removing {d.id}")
        store.delete(d.id)
        removed.append(d.id)
    return removed


@dataclass(frozen=True)
class Leftover:
    """Files of an upload that never got its manifest, and what prune does with them."""

    id: str
    last_written: dt.datetime
    remove: bool
    reason: str


def _ago(delta: dt.timedelta) -> str:
    s = max(int(delta.total_seconds()), 0)
    for unit, n in (("d", 86400), ("h", 3600), ("min", 60)):
        if s >= n:
            return f"{s // n}{unit}"
    return f"{s}s"


def plan_leftovers(uploads: dict[str, dt.datetime], now: dt.datetime, grace: dt.timedelta, grace_text: str) -> list[Leftover]:
    """Pure: incomplete upload id -> when it was last written, to a decision for each."""
    out = []
    for upload_id, last in sorted(uploads.items()):
        age = now - last
        written = f"last written {_ago(age)} ago"
        if age > grace:
            out.append(Leftover(upload_id, last, True, f"upload cut off: files without a manifest, {written} (grace {grace_text})"))
        else:
            out.append(Leftover(upload_id, last, False, f"upload without a manifest, {written}: may still be running (grace {grace_text})"))
    return out


def leftovers(store: Any, now: dt.datetime, grace: dt.timedelta, grace_text: str) -> list[Leftover]:
    """The incomplete uploads of an object store, planned (a local folder has none: its staging
    folders are removed under its lock)."""
    if not hasattr(store, "last_written"):
        return []
    return plan_leftovers({i: store.last_written(i) for i in store.incomplete()}, now, grace, grace_text)


def remove_leftovers(store: Any, planned: list[Leftover], grace: dt.timedelta, step: Callable[[str], None] = lambda m: None) -> list[str]:
    """Remove the cut-off uploads the plan removes, each checked again first (it may have
    completed or been written to since). Returns the ids removed."""
    removed = []
    for left in planned:
        if not left.remove:
            continue
        step(f"removing the cut-off upload {left.id}")
        if store.remove_upload(left.id, dt.datetime.now(dt.UTC), grace):
            removed.append(left.id)
        else:
            step(f"{left.id} was written to or completed since the plan: left as it is")
    return removed
