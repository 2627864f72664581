"""Which backups a retention policy keeps: a pure function from (backups, policy, now) to a plan.

The policy is the usual one of backup tools (restic, borg): the newest `keep_last` backups, and
the newest backup of each of the newest `keep_daily` days, `keep_weekly` ISO weeks and
`keep_monthly` months that have a backup. Buckets are counted per source database, so backups of
two databases in one store never crowd each other out. On top of the policy, whatever it says:

- the newest backup of each source is kept;
- the newest verified backup is kept (so the only verified one is never removed);
- undo points (taken by restore and reset) are kept for `undo_days`, `pre-deploy` labelled
  backups for `predeploy_days`; after that they are counted like any other backup (undo
  points never fill a bucket: they are copies of a target before a change, not of a source).

Every decision carries its reasons, so the printed plan says why each backup stays or goes.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from .errors import UsageError

PREDEPLOY_MARK = "pre-deploy"


@dataclass(frozen=True)
class Policy:
    keep_last: int = 0
    keep_daily: int = 0
    keep_weekly: int = 0
    keep_monthly: int = 0
    undo_days: int = 14
    predeploy_days: int = 30

    @property
    def empty(self) -> bool:
        return not (self.keep_last or self.keep_daily or self.keep_weekly or self.keep_monthly)

    def describe(self) -> str:
        parts = [
            f"{n} {what}"
            for n, what in (
                (self.keep_last, "last"),
                (self.keep_daily, "daily"),
                (self.keep_weekly, "weekly"),
                (self.keep_monthly, "monthly"),
            )
            if n
        ]
        return ", ".join(parts) + f"; undo points {self.undo_days} days, pre-deploy backups {self.predeploy_days} days"


@dataclass(frozen=True)
class Item:
    """What retention knows of one backup."""

    id: str
    created: dt.datetime  # aware, UTC
    source: str = ""  # backups are bucketed per source
    undo_point: bool = False
    label: str = ""
    verified: bool = False

    @property
    def predeploy(self) -> bool:
        return PREDEPLOY_MARK in self.label.lower()


@dataclass(frozen=True)
class Decision:
    id: str
    keep: bool
    reasons: tuple[str, ...]  # why it is kept; or why it goes (one reason)

    @property
    def reason(self) -> str:
        return "; ".join(self.reasons)


def check_policy(policy: Policy) -> None:
    for name in ("keep_last", "keep_daily", "keep_weekly", "keep_monthly", "undo_days", "predeploy_days"):
        value = getattr(policy, name)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise UsageError(f"{name.replace('_', '-')} must be a whole number of 0 or more (got {value!r})", "pass for example --keep-daily 7")
    if policy.empty:
        raise UsageError(
            "The retention policy keeps nothing (--keep-last, --keep-daily, --keep-weekly and --keep-monthly are all 0)",
            "pass at least one of them, or set BACKUP_KEEP_DAILY (and the like) in .env",
        )


def _buckets(items: list[Item], count: int, key: Callable[[dt.datetime], object], what: str, keep: dict[str, list[str]]) -> None:
    """Newest first: the newest backup of each of the newest `count` buckets."""
    seen: list[object] = []
    for item in items:
        k = key(item.created)
        if k in seen:
            continue
        if len(seen) >= count:
            break
        seen.append(k)
        keep.setdefault(item.id, []).append(f"{what} {len(seen)} of {count}")


def _week(t: dt.datetime) -> object:
    y, w, _ = t.isocalendar()
    return (y, w)


def plan_prune(backups: Iterable[Item], policy: Policy, now: dt.datetime) -> list[Decision]:
    """The plan, newest backup first. Raises UsageError for an empty or invalid policy."""
    check_policy(policy)
    items = sorted(backups, key=lambda b: (b.created, b.id), reverse=True)
    keep: dict[str, list[str]] = {}
    by_source: dict[str, list[Item]] = {}
    for item in items:
        by_source.setdefault(item.source, []).append(item)
    for source_items in by_source.values():
        keep.setdefault(source_items[0].id, []).append("newest backup" + (" of its source" if len(by_source) > 1 else ""))
        counted = [i for i in source_items if not i.undo_point]
        if policy.keep_last:
            for n, item in enumerate(counted[: policy.keep_last], 1):
                keep.setdefault(item.id, []).append(f"last {n} of {policy.keep_last}")
        _buckets(counted, policy.keep_daily, lambda t: t.date(), "daily", keep)
        _buckets(counted, policy.keep_weekly, _week, "weekly", keep)
        _buckets(counted, policy.keep_monthly, lambda t: (t.year, t.month), "monthly", keep)
    verified = [i for i in items if i.verified]
    if verified:
        keep.setdefault(verified[0].id, []).append("newest verified backup")
    for item in items:
        age = now - item.created
        if item.undo_point and age < dt.timedelta(days=policy.undo_days):
            keep.setdefault(item.id, []).append(f"undo point younger than {policy.undo_days} days")
        if item.predeploy and age < dt.timedelta(days=policy.predeploy_days):
            keep.setdefault(item.id, []).append(f"pre-deploy backup younger than {policy.predeploy_days} days")
    out = []
    for item in items:
        if item.id in keep:
            out.append(Decision(item.id, True, tuple(keep[item.id])))
        elif item.undo_point:
            out.append(Decision(item.id, False, (f"undo point older than {policy.undo_days} days",)))
        else:
            out.append(Decision(item.id, False, ("not kept by the policy",)))
    return out
