"""`invoke prune`'s engine: the backups of a store as retention items, and applying a plan.

The plan itself is pure (retention.plan_prune); this module only reads manifests and deletes.
Runbook files (hand-made `dump-DATE.sql`) are never touched: they are not this tool's.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from . import catalog
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


def verified(b: catalog.Backup) -> bool:
    """Whether a verification of this backup passed: `verify` (issue 10) records its result
    under the manifest's `verified` key or a signed side record; until then, none is."""
    v: Any = b.manifest.get("verified")
    return isinstance(v, dict) and v.get("ok") is True


def items(backups: list[catalog.Backup]) -> list[Item]:
    out = []
    for b in backups:
        if b.legacy:
            continue
        src = catalog.backup_source(b)
        out.append(
            Item(
                id=b.id,
                created=_created(b),
                source=src.describe() if src else "",
                undo_point=b.undo_point,
                label=b.label,
                verified=verified(b),
            )
        )
    return out


def apply(store: Any, plan: list[Decision], step: Callable[[str], None] = lambda m: None) -> list[str]:
    """Delete what the plan removes, oldest first; the caller holds the store's lock. Returns the
    ids removed."""
    removed = []
    for d in sorted((d for d in plan if not d.keep), key=lambda d: d.id):
        step(f"removing {d.id}")
        store.delete(d.id)
        removed.append(d.id)
    return removed
