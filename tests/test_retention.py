"""Retention plans (`invoke prune`'s pure part) for a year of daily backups: a table of policies
and the exact dates each keeps, plus the rules no policy overrides (newest, newest verified,
undo points and pre-deploy backups for their days, an empty policy refused)."""

from __future__ import annotations

import datetime as dt

import pytest

from tasks.engine.errors import UsageError
from tasks.engine.retention import Item, Policy, plan_prune

UTC = dt.UTC
YEAR = [dt.date(2026, 1, 1) + dt.timedelta(days=n) for n in range(365)]
NOW = dt.datetime(2026, 12, 31, 12, 0, tzinfo=UTC)


def item(day: dt.date, **kw) -> Item:
    return Item(id=f"{day.isoformat()}T020000Z", created=dt.datetime(day.year, day.month, day.day, 2, tzinfo=UTC), **kw)


def kept(plan) -> list[str]:
    return sorted(d.id[:10] for d in plan if d.keep)


def dates(*texts: str) -> list[str]:
    return sorted(f"2026-{t}" for t in texts)


MONTH_ENDS = ("01-31", "02-28", "03-31", "04-30", "05-31", "06-30", "07-31", "08-31", "09-30", "10-31", "11-30", "12-31")

# 2026-12-31 is a Thursday; ISO week 53 of 2026 runs Mon 12-28 .. Sun 2027-01-03.
YEAR_TABLE = [
    (Policy(keep_last=3), dates("12-29", "12-30", "12-31")),
    (Policy(keep_daily=7), dates(*(f"12-{d}" for d in range(25, 32)))),
    (Policy(keep_weekly=4), dates("12-13", "12-20", "12-27", "12-31")),
    (Policy(keep_monthly=12), dates(*MONTH_ENDS)),
    (Policy(keep_monthly=3), dates("10-31", "11-30", "12-31")),
    (Policy(keep_monthly=24), dates(*MONTH_ENDS)),  # more months asked than there are: every month once
    (
        Policy(keep_daily=7, keep_weekly=4, keep_monthly=12),
        dates(*(f"12-{d}" for d in range(25, 32)), "12-20", "12-13", *MONTH_ENDS[:-1]),
    ),
    (
        # every Sunday of 2026 (the newest backup of its ISO week) and the last day
        Policy(keep_weekly=60),
        sorted({d.isoformat() for d in YEAR if d.weekday() == 6} | {"2026-12-31"}),
    ),
]


@pytest.mark.parametrize(("policy", "expected"), YEAR_TABLE, ids=[p.describe().split(";")[0] for p, _ in YEAR_TABLE])
def test_a_year_of_daily_backups_keeps_exactly_the_table(policy, expected):
    plan = plan_prune([item(d) for d in YEAR], policy, NOW)
    assert kept(plan) == expected
    assert len(plan) == 365
    # every decision says why
    assert all(d.reasons for d in plan)
    assert [d.id for d in plan] == sorted((d.id for d in plan), reverse=True)  # newest first


def test_the_combined_policy_keeps_twenty_and_says_which_rule_kept_each():
    plan = {d.id[:10]: d for d in plan_prune([item(d) for d in YEAR], Policy(keep_daily=7, keep_weekly=4, keep_monthly=12), NOW)}
    assert sum(d.keep for d in plan.values()) == 20
    assert plan["2026-12-31"].reasons == ("newest backup", "daily 1 of 7", "weekly 1 of 4", "monthly 1 of 12")
    assert plan["2026-12-20"].reasons == ("weekly 3 of 4",)
    assert plan["2026-01-31"].reasons == ("monthly 12 of 12",)
    assert plan["2026-01-30"].reasons == ("not kept by the policy",)


def test_gaps_do_not_count_as_days_kept():
    # a runner that failed most of December: daily buckets reach back past the gap
    days = [d for d in YEAR if not (dt.date(2026, 12, 5) <= d <= dt.date(2026, 12, 28))]
    plan = plan_prune([item(d) for d in days], Policy(keep_daily=7), NOW)
    assert kept(plan) == dates("12-01", "12-02", "12-03", "12-04", "12-29", "12-30", "12-31")


def test_several_backups_a_day_keep_the_newest_of_the_day():
    items = [Item(id=f"2026-12-31T{h:02d}0000Z", created=dt.datetime(2026, 12, 31, h, tzinfo=UTC)) for h in (1, 9, 17)]
    items += [item(dt.date(2026, 12, 30))]
    plan = plan_prune(items, Policy(keep_daily=2), NOW)
    assert sorted(d.id for d in plan if d.keep) == ["2026-12-30T020000Z", "2026-12-31T170000Z"]


def test_the_newest_backup_is_kept_whatever_the_policy():
    # the newest is an undo point (never counted in buckets) older than its days: kept anyway
    items = [item(d) for d in YEAR[:30]] + [item(dt.date(2026, 6, 1), undo_point=True)]
    plan = plan_prune(items, Policy(keep_daily=1), dt.datetime(2027, 1, 1, tzinfo=UTC))
    by_id = {d.id: d for d in plan}
    assert by_id["2026-06-01T020000Z"].keep and "newest backup" in by_id["2026-06-01T020000Z"].reasons


def test_the_only_verified_backup_is_never_removed():
    items = [item(d, verified=(d == dt.date(2026, 3, 15))) for d in YEAR]
    plan = {d.id[:10]: d for d in plan_prune(items, Policy(keep_daily=7), NOW)}
    assert plan["2026-03-15"].keep and plan["2026-03-15"].reasons == ("newest verified backup",)
    assert sum(d.keep for d in plan.values()) == 8


def test_undo_points_and_predeploy_backups_are_kept_for_their_days():
    items = [item(d) for d in YEAR]
    items += [
        Item("2026-12-28T100000Z", dt.datetime(2026, 12, 28, 10, tzinfo=UTC), undo_point=True),  # 3 days old
        Item("2026-11-01T100000Z", dt.datetime(2026, 11, 1, 10, tzinfo=UTC), undo_point=True),  # 60 days old
        Item("2026-12-20T100000Z", dt.datetime(2026, 12, 20, 10, tzinfo=UTC), label="CI pre-deploy abc123"),  # 11 days
        Item("2026-10-20T100000Z", dt.datetime(2026, 10, 20, 10, tzinfo=UTC), label="pre-deploy v1"),  # 72 days
    ]
    plan = {d.id: d for d in plan_prune(items, Policy(keep_daily=3, undo_days=14, predeploy_days=30), NOW)}
    assert plan["2026-12-28T100000Z"].reasons == ("undo point younger than 14 days",)
    assert plan["2026-11-01T100000Z"].keep is False and plan["2026-11-01T100000Z"].reasons == ("undo point older than 14 days",)
    assert plan["2026-12-20T100000Z"].reasons == ("pre-deploy backup younger than 30 days",)
    assert plan["2026-10-20T100000Z"].keep is False
    # an undo point never fills a daily bucket: the last three days' own backups are kept
    assert kept(plan.values()) == sorted(["2026-12-29", "2026-12-30", "2026-12-31", "2026-12-28", "2026-12-20"])


def test_buckets_are_counted_per_source():
    a = [Item(f"{d.isoformat()}T020000Z", dt.datetime(d.year, d.month, d.day, 2, tzinfo=UTC), source="prod") for d in YEAR[-10:]]
    b = [Item(f"{d.isoformat()}T030000Z", dt.datetime(d.year, d.month, d.day, 3, tzinfo=UTC), source="staging") for d in YEAR[:5]]
    plan = plan_prune(a + b, Policy(keep_daily=2), NOW)
    assert sorted(d.id for d in plan if d.keep) == [
        "2026-01-04T030000Z",
        "2026-01-05T030000Z",
        "2026-12-30T020000Z",
        "2026-12-31T020000Z",
    ]


@pytest.mark.parametrize("policy", [Policy(), Policy(keep_daily=0, undo_days=30), Policy(keep_daily=-1), Policy(keep_weekly=True)])
def test_an_empty_or_invalid_policy_is_refused(policy):
    with pytest.raises(UsageError) as exc:
        plan_prune([item(d) for d in YEAR], policy, NOW)
    assert exc.value.exit_code == 2
