"""`invoke reset` on its own: the runbook's `db reset`, guarded, for the app's objects only."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import psycopg
import psycopg.errors

from .. import additions, dbinfo, reach
from ..conn import Target
from ..errors import RestoreFailed
from ..platform import Platform, detect
from ..sqltext import restrict_key
from . import statements
from .execute import BlockerWatch
from .plan import check_reach


@dataclass(frozen=True)
class ResetPlan:
    target: Target
    server: dbinfo.ServerInfo
    platform: Platform
    drop_schemas: tuple[tuple[str, int], ...]
    drop_publications: tuple[str, ...]
    drop_additions: tuple[str, ...]
    large_objects: int
    sql: str
    reached: tuple[reach.Reached, ...] = ()
    target_size: int = 0


def plan_reset(target: Target, also_reach: tuple[str, ...] = ()) -> ResetPlan:
    """The app's schemas, publications, large objects and its triggers and policies on platform
    tables. Platform data (auth users, storage rows) is kept."""
    with target.connect(autocommit=True) as conn:
        server = dbinfo.server_info(conn)
        platform = detect(conn)
        present = dbinfo.app_schemas(conn, platform)
        tabs = dbinfo.tables(conn, present)
        pubs = tuple(p for p in dbinfo.publications(conn) if not platform.is_platform_publication(p))
        found = additions.find(conn, platform)
        los = dbinfo.large_object_count(conn)
        public_objects = dbinfo.schema_objects(conn, "public") if platform.name == "supabase" else None
        reached = check_reach(
            reach.reached_outside(conn, inside=present, drop_schemas=present, drop_objects=public_objects or (), drop_additions=found),
            also_reach,
            "reset",
        )
        sql = statements.reset_sql(
            drop_schemas=present,
            publications=pubs,
            large_objects=los > 0,
            public_contents=None if public_objects is None else [dbinfo.drop_sql(o) for o in public_objects],
            drop_additions=[a.drop_sql for a in found],
        )
        return ResetPlan(
            target=target,
            server=server,
            platform=platform,
            drop_schemas=tuple((s, sum(1 for t in tabs if t[0] == s)) for s in present),
            drop_publications=pubs,
            drop_additions=tuple(a.label for a in found),
            large_objects=los,
            sql=sql,
            reached=reached,
            target_size=dbinfo.database_size(conn),
        )


def execute_reset(plan: ResetPlan, lock_timeout_ms: int = 30_000, step: Callable[[str], None] = lambda m: None) -> None:
    """`step` hears, while the reset waits for a lock, which sessions hold it."""
    appname = "fortress-reset-" + restrict_key()[:16]
    try:
        with plan.target.connect(autocommit=True) as monitor, plan.target.connect() as conn:
            conn.execute("SELECT pg_catalog.set_config('application_name', %s, false)", (appname,))
            conn.commit()
            with BlockerWatch(monitor, appname, step), conn.transaction():
                conn.execute("SET LOCAL client_min_messages = warning")
                # never queue silently in front of the app's readers: give up, name who holds the lock
                conn.execute(f"SET LOCAL lock_timeout = {int(lock_timeout_ms)}")
                conn.execute(plan.sql.encode())
    except psycopg.errors.LockNotAvailable:
        with plan.target.connect(autocommit=True) as conn:
            holders = dbinfo.lock_holders(conn)
        raise RestoreFailed(
            f"Reset waited {lock_timeout_ms / 1000:g} s for a table lock and was rolled back, {plan.target.dbname} is unchanged; "
            f"held by: {', '.join(holders) or 'a session that has ended since'}",
            "let that session finish (or end it with pg_terminate_backend(pid)), then run the reset again; LOCK_TIMEOUT sets how long to wait",
        ) from None
    except psycopg.Error as exc:
        raise RestoreFailed(
            f"Reset failed and was rolled back, {plan.target.dbname} is unchanged: {' '.join(str(exc).split())}",
            "nothing was dropped; check the message",
        ) from None
