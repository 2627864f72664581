"""Executing a frozen restore plan: one psql session, one transaction.

BEGIN
  roles                 missing ones created from roles.json; existing ones left as they are
  reset                 the app's schemas, publications, large objects, its triggers and
                        policies on platform tables; platform tables the backup refills are
                        emptied (or, for --data-only, the backup's tables)
  pre-data + data       tables, then rows: no index, constraint or trigger exists yet
  platform data         auth users, storage rows: loaded quietly (quiet.py)
  privileges            GRANTs after the rows, as pg_restore orders them
  post-data             indexes, constraints, triggers, policies, matview refreshes; then
                        the app's triggers and policies on platform tables
  row-count check       raises, so a short restore rolls back
  transaction check     raises if something in the backup ended the transaction early
COMMIT                  written only if every step succeeded
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from .. import catalog, quiet, sqltext, toc
from ..errors import IntegrityError, Interrupted, RestoreFailed, UsageError
from ..storage import Store
from . import archive, statements
from .plan import RestorePlan, entries
from .session import Session, run

Step = Callable[[str], None]


@dataclass
class RestoreResult:
    backup_id: str
    target: str
    tables_checked: int
    bytes_sent: int
    login_roles: list[str]


def _is_lo(e: toc.Entry) -> bool:
    return e.desc in ("BLOB", "BLOB METADATA") or (e.desc in ("ACL", "COMMENT", "SECURITY LABEL") and e.tag_owner.startswith("LARGE OBJECT "))


def execute_restore(
    plan: RestorePlan,
    store: Store,
    *,
    step: Step = lambda m: None,
    progress: Callable[[int], None] | None = None,
    lock_timeout_ms: int = 30_000,
    jobs: int = 1,
    undo_taken: bool = True,
) -> RestoreResult:
    """`lock_timeout_ms`: how long any statement of the restore waits for a lock before the
    restore rolls back (a queued ACCESS EXCLUSIVE request holds up every reader of its table).
    `jobs` > 1: rows, indexes and constraints by `pg_restore --jobs` (parallel.py): not one
    transaction; the caller allows it only after an undo point (`undo_taken`) or into an empty
    target, which must then still be empty when its first step runs."""
    if jobs > 1:
        from .parallel import execute_parallel

        return execute_parallel(plan, store, jobs=jobs, step=step, progress=progress, lock_timeout_ms=lock_timeout_ms, require_empty=not undo_taken)
    backup = plan.backup
    if backup.legacy:
        raise UsageError("Runbook files are restored through a backup made from them in a sandbox", "use `invoke restore`, which does that first")
    env = plan.target.tool_env()
    channel = "fortress_restore_" + sqltext.restrict_key()[:16]
    appname = "fortress-restore-" + channel[-16:]
    timeout = f"{lock_timeout_ms}ms"

    def factory(errf: IO[bytes]) -> Session:
        session = Session(plan.suite, plan.target, errf, progress, application_name=appname)
        session.lock_timeout = timeout  # also what pg_restore's `SET lock_timeout = 0` becomes
        return session

    def body(s: Session) -> None:
        s.sql(statements.begin_sql(timeout, channel, statements.POWER_START, statements.ROLES_START))
        if plan.roles.sql:
            step("roles")
            s.sql(plan.roles.sql)
        if plan.mode == "data":
            # quiet before the TRUNCATE: an ON TRUNCATE trigger must not fire either
            s.sql(quiet.start_sql(plan.truncate_tables, replica=plan.replica_mode, temp_table=plan.temp_ok))
        step("resetting the app's schemas" if plan.mode != "data" else f"emptying {len(plan.truncate_tables)} tables")
        s.sql(plan.reset_sql)
        _archives(plan, store, s, env, step)
        if plan.mode == "data":
            s.sql(quiet.end_sql(plan.truncate_tables, replica=plan.replica_mode, temp_table=plan.temp_ok))
        server_wide(plan, s, step)
        step("checking row counts against the manifest")
        s.sql(statements.check_sql(plan.checks, _fresh(plan)))
        s.sql(statements.POWER_CHECK)
        s.sql(statements.roles_check([r.name for r in plan.roles.create], [(m.role, m.member) for m in plan.roles.grants], plan.server.current_user))
        s.sql(statements.TXN_CHECK)
        # a file written to (even in place) since its checksum was checked: nothing is committed
        catalog.require_unchanged(plan.pinned, plan.pinned_stamps, plan.backup.id, f"rolled back, {plan.target.dbname} is unchanged")

    # A NOTIFY is delivered only when its transaction commits: one that arrives although the
    # restore failed means something in the backup committed part of it (COMMIT in an entry).
    try:
        return _execute(plan, step, factory, body, channel, appname, lock_timeout_ms)
    finally:
        catalog.unpin(plan.pinned)


def server_wide(plan: RestorePlan, s: Session, step: Step) -> None:
    """pg_cron jobs the backup schedules, and (restoring an undo point) what the undone restore
    added server-wide: after the load, before the checks."""
    if plan.cron_sql:
        step(f"scheduling {len(plan.cron_jobs)} pg_cron jobs")
        s.sql(plan.cron_sql)
    if plan.undo_sql:
        step("removing what the undone restore added")
        s.sql(plan.undo_sql)


def _fresh(plan: RestorePlan) -> set[tuple[str, str]]:
    """Tables this restore's transaction creates or empties before loading them."""
    if plan.mode == "data":
        return set(plan.truncate_tables)
    fresh = set(plan.platform_tables)
    if plan.mode == "full":
        # the reset dropped every app table (a survivor would make CREATE TABLE fail)
        fresh |= {(t.schema, t.name) for t in plan.backup.record.tables if t.section == "app"}
    return fresh


def _execute(
    plan: RestorePlan,
    step: Step,
    factory: Callable[[IO[bytes]], Session],
    body: Callable[[Session], None],
    channel: str,
    appname: str,
    lock_timeout_ms: int,
) -> RestoreResult:
    # psql's exit status alone proves nothing: a COPY left open by the backup swallows the rest of
    # the input (the checks, COMMIT) as its data, and psql still exits 0 at the end. The last
    # statement before COMMIT sends a NOTIFY with a token only this process knows, delivered only
    # if that transaction commits: no token, no success.
    token = sqltext.restrict_key()

    def sealed(s: Session) -> None:
        body(s)
        s.sql(f"NOTIFY {sqltext.ident(channel)}, {sqltext.literal(token)};\n")

    with plan.target.connect(autocommit=True) as monitor:
        monitor.execute(f"LISTEN {sqltext.ident(channel)}")
        monitor.execute("SELECT 1")  # pg_stat_activity shows a session's last query: not the channel's name
        watch = BlockerWatch(monitor, appname, step)
        try:
            with watch:
                session = run(factory, sealed, plan.target.dbname)
        except (RestoreFailed, Interrupted, IntegrityError) as caught:
            exc = caught
            if isinstance(caught, IntegrityError):
                # an archive that could not be read midway: psql was stopped before COMMIT
                exc = RestoreFailed(f"Restore failed and was rolled back, {plan.target.dbname} is unchanged: {caught.message}", caught.hint)
            committed = any(True for _ in monitor.notifies(timeout=1.0, stop_after=1))
            if "restore check failed" in exc.message and not committed:
                raise RestoreFailed(
                    exc.message,
                    "the backup's archive and its manifest disagree, so running it again "
                    "fails the same way: restore another backup (see `invoke list`)",
                ) from None
            if committed or statements.TXN_EARLY_END in exc.message:
                raise RestoreFailed(
                    f"Restore of {plan.target.dbname} failed after a statement in the backup ended its transaction "
                    "early: the target is NOT unchanged, part of the restore was committed",
                    "restore a trusted backup now (see `invoke list`); this one was changed by someone",
                    target_unchanged=False,
                ) from None
            if isinstance(exc, RestoreFailed) and "lock timeout" in exc.message:
                raise _lock_timeout(plan.target.dbname, lock_timeout_ms, watch.seen) from None
            if exc is not caught:
                raise exc from None
            raise
        payloads = []
        for n in monitor.notifies(timeout=10.0):
            payloads.append(n.payload)
            if n.payload == token:
                break
        if token not in payloads:
            if payloads:  # the transaction's first NOTIFY was delivered: something committed early
                raise RestoreFailed(
                    f"Restore of {plan.target.dbname} did not run its checks and COMMIT, and a statement in the backup committed part "
                    "of it: the target is NOT unchanged",
                    "restore a trusted backup now (see `invoke list`); this one was changed by someone",
                    target_unchanged=False,
                )
            raise RestoreFailed(
                f"Restore of {plan.target.dbname} never reached its COMMIT (something in the backup swallowed the rest of the "
                f"restore, such as a COPY left open); rolled back, {plan.target.dbname} is unchanged",
                "this backup's archive was changed by someone: restore another backup (see `invoke list`)",
            )
    return RestoreResult(plan.backup.id, plan.target.display(), len(plan.checks), session.sent, plan.login_roles)


@dataclass(frozen=True)
class Blocker:
    pid: int
    application: str
    state: str
    since: str

    def describe(self) -> str:
        return f"pid {self.pid} ({self.application}, {self.state} since {self.since})"


# the sessions holding (or queued before) a lock that psql's session waits for
_BLOCKERS_SQL = """
SELECT b.pid, COALESCE(NULLIF(b.application_name, ''), b.usename::text, 'unknown'),
       COALESCE(b.state, 'unknown'),
       pg_catalog.to_char(pg_catalog.timezone('UTC', COALESCE(b.xact_start, b.state_change, b.backend_start)),
                          'YYYY-MM-DD HH24:MI:SS "UTC"')
FROM pg_catalog.pg_stat_activity w
CROSS JOIN LATERAL pg_catalog.unnest(pg_catalog.pg_blocking_pids(w.pid)) AS x(pid)
JOIN pg_catalog.pg_stat_activity b ON b.pid = x.pid
WHERE w.application_name = %s
ORDER BY 1
"""


class BlockerWatch:
    """While the restore runs, a thread asks the monitor connection every `interval` seconds
    which sessions block psql's (found by its application_name) and reports each new set
    through `step`; `seen` keeps the last non-empty set for the lock-timeout message."""

    def __init__(self, conn, appname: str, step: Step, interval: float = 0.25):
        self.conn, self.appname, self.step, self.interval = conn, appname, step, interval
        self.seen: list[Blocker] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="restore-blocker-watch", daemon=True)

    def __enter__(self) -> BlockerWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        shown: list[Blocker] = []
        while not self._stop.wait(self.interval):
            try:
                rows = self.conn.execute(_BLOCKERS_SQL, (self.appname,)).fetchall()
            except Exception:  # advisory only: the restore itself decides
                return
            now = [Blocker(int(r[0]), str(r[1]), str(r[2]), str(r[3])) for r in rows]
            if now:
                self.seen = now
            if now and [b.pid for b in now] != [b.pid for b in shown]:
                self.step("waiting for a lock held by " + ", ".join(b.describe() for b in now))
            shown = now


def _seconds(ms: int) -> str:
    return f"{ms / 1000:g} s"


def _lock_timeout(dbname: str, lock_timeout_ms: int, blockers: list[Blocker]) -> RestoreFailed:
    if not blockers:
        return RestoreFailed(
            f"Restore of {dbname} waited {_seconds(lock_timeout_ms)} (LOCK_TIMEOUT) for a lock another session holds and was rolled back; "
            f"{dbname} is unchanged",
            "find the session in pg_stat_activity (pg_blocking_pids), wait for it to end or end it with "
            "pg_terminate_backend(pid), then restore again",
        )
    pids = ", ".join(str(b.pid) for b in blockers)
    return RestoreFailed(
        f"Restore of {dbname} waited {_seconds(lock_timeout_ms)} (LOCK_TIMEOUT) for a lock held by "
        + ", ".join(b.describe() for b in blockers)
        + f" and was rolled back; {dbname} is unchanged",
        f"wait for {'that session' if len(blockers) == 1 else 'those sessions'} to end, or end "
        f"{'it' if len(blockers) == 1 else 'them'} with SELECT pg_terminate_backend(pid) for pid {pids}; then restore again",
    )


def _feed(plan: RestorePlan, s: Session, archive_path: Path, env: dict[str, str], chosen: list[toc.Entry], acl: bool = False) -> None:
    if not chosen:
        return
    name = Path(os.path.realpath(archive_path)).name
    maintain = acl and plan.server.major < 17 and plan.suite.major >= 17
    if not maintain and not archive.needs_relay(chosen):
        archive.direct(plan.suite, archive_path, env, chosen, s, plan.server.major, s.lock_timeout, name)
        return
    chunks = archive.stream(plan.suite, archive_path, env, chosen, s.key, name)
    if maintain:
        chunks = archive.without_maintain(chunks, s.key)
    s.script(archive.guarded(chunks, s.key, plan.server.major, s.lock_timeout))


def _archives(plan: RestorePlan, store: Store, s: Session, env: dict[str, str], step: Step) -> None:
    record = plan.backup.record
    app_file = record.file("app")
    if app_file is None:
        raise RestoreFailed(f"Backup {plan.backup.id} has no app archive", "restore another backup")
    app = catalog.pinned_path(plan.pinned[app_file.name])
    chosen = entries(plan, plan.suite, app)
    is_acl = lambda e: e.desc in ("ACL", "DEFAULT ACL")  # noqa: E731
    schema_acl = lambda e: e.desc == "ACL" and e.schema == "-" and e.tag_owner.startswith("SCHEMA ")  # noqa: E731
    lo_acl = lambda e: e.desc == "ACL" and e.tag_owner.startswith("LARGE OBJECT ")  # noqa: E731
    if plan.mode == "schema":
        # Large objects are data: like pg_restore --schema-only, create none (archives before
        # 17 would otherwise make empty ones) and so none of their privileges or comments.
        chosen = [e for e in chosen if not _is_lo(e)]
    if plan.mode == "data":
        step("loading data")
        # the data section, plus the large objects' own entries: archives before PostgreSQL 17
        # create large objects in pre-data ("BLOB") and only fill them in the data section
        data_ids = {e.dump_id for e in toc.read(plan.suite, app, ["data"])}
        # materialized views are data too: refreshed from the reloaded rows (their entries sit in
        # post-data, after the rows, in pg_restore's order)
        _feed(plan, s, app, env, [e for e in chosen if (e.dump_id in data_ids or _is_lo(e) or e.desc == "MATERIALIZED VIEW DATA") and not is_acl(e)])
    else:
        # The app's tables are new: their triggers and constraints come only in post-data.
        sections = ["pre-data", "data"] if plan.mode == "full" else ["pre-data"]
        wanted = {e.dump_id for e in toc.read(plan.suite, app, tuple(sections))}
        step("loading schema and data" if plan.mode == "full" else "loading schema")
        pre = [e for e in chosen if e.dump_id in wanted and not is_acl(e)]
        # Schemas and their privileges first: a table's new owner needs CREATE on its schema
        # (Supabase's Prisma guide: `grant create on schema public to prisma`), and a
        # non-superuser may give it the table only then.
        _feed(plan, s, app, env, [e for e in pre if e.desc == "SCHEMA"])
        _feed(plan, s, app, env, [e for e in chosen if schema_acl(e)], acl=True)
        _feed(plan, s, app, env, [e for e in pre if e.desc != "SCHEMA"])
    platform_file = record.file("platform")
    if platform_file and plan.mode in ("full", "data"):
        step("loading platform data")
        platform_archive = catalog.pinned_path(plan.pinned[platform_file.name])
        if plan.mode != "data":
            # Platform tables (auth.users, ...) keep their triggers and constraints.
            s.sql(quiet.start_sql(plan.platform_tables, replica=plan.replica_mode, temp_table=plan.temp_ok))
        _feed(plan, s, platform_archive, env, toc.read(plan.suite, platform_archive, ["data"]))
        if plan.mode != "data":
            s.sql(quiet.end_sql(plan.platform_tables, replica=plan.replica_mode, temp_table=plan.temp_ok))
    # Privileges after the rows, as pg_restore itself orders them; large objects' only when
    # this restore created them.
    _feed(
        plan,
        s,
        app,
        env,
        [e for e in chosen if is_acl(e) and (plan.mode != "data" or lo_acl(e)) and (plan.mode == "data" or not schema_acl(e))],
        acl=True,
    )
    if plan.mode != "data":
        step("building indexes, constraints, triggers and policies")
        wanted = {e.dump_id for e in toc.read(plan.suite, app, ("post-data",))}
        _feed(plan, s, app, env, [e for e in chosen if e.dump_id in wanted and not is_acl(e)])
        schema_file = record.file("platform-schema")
        if schema_file and plan.addition_oids:
            step("re-adding the app's triggers and policies on platform tables")
            path = catalog.pinned_path(plan.pinned[schema_file.name])
            _feed(plan, s, path, env, [e for e in toc.read(plan.suite, path) if e.desc in ("TRIGGER", "POLICY") and e.oid in plan.addition_oids])
