"""`invoke restore --jobs N`: rows, indexes and constraints loaded by `pg_restore --jobs N`.

A parallel restore cannot be one transaction (each pg_restore worker has its own connection), so
it runs only where that is safe to give up: after an undo point of the target was taken, or into
an empty target (tasks/restore.py checks which; the plan shown says so). It runs in three steps:

  1. one psql transaction, as the default restore: roles, reset, schema (pre-data), platform
     data; its checks (power, roles, transaction) before its COMMIT
  2. `pg_restore --jobs N --exit-on-error` straight into the target: the app's rows and its
     post-data (indexes, constraints, triggers, policies) from the chosen entries only
  3. one psql transaction: privileges, the app's triggers and policies on platform tables,
     pg_cron jobs, then every check of the default restore (row counts with count(*); who holds
     power, which roles exist, compared with what was recorded before step 1) before COMMIT

A failure in step 1 leaves the target unchanged; in steps 2 and 3 it leaves it partly restored,
and the error says so (the undo point puts it back).
"""

from __future__ import annotations

import contextlib
import os
import stat
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

from .. import catalog, pgtools, pipes, quiet, sqltext, toc, zstream
from ..errors import Interrupted, RestoreFailed, UsageError
from ..storage import Store
from . import execute, statements
from .plan import RestorePlan, entries
from .session import Session

Step = Callable[[str], None]


def execute_parallel(
    plan: RestorePlan,
    store: Store,
    *,
    jobs: int,
    step: Step = lambda m: None,
    progress: Callable[[int], None] | None = None,
    lock_timeout_ms: int = 30_000,
) -> execute.RestoreResult:
    if plan.mode != "full" or plan.backup.legacy:
        raise UsageError("--jobs restores a full backup only", "drop --jobs, or restore a full backup")
    try:
        return _run(plan, jobs, step, progress, lock_timeout_ms)
    finally:
        catalog.unpin(plan.pinned)


def _run(plan: RestorePlan, jobs: int, step: Step, progress, lock_timeout_ms: int) -> execute.RestoreResult:
    record = plan.backup.record
    app_file = record.file("app")
    if app_file is None:
        raise RestoreFailed(f"Backup {plan.backup.id} has no app archive", "restore another backup")
    app = catalog.pinned_path(plan.pinned[app_file.name])
    env = plan.target.tool_env()
    timeout = f"{lock_timeout_ms}ms"
    chosen = entries(plan, plan.suite, app)
    pre_ids = {e.dump_id for e in toc.read(plan.suite, app, ["pre-data"])}
    later_ids = {e.dump_id for e in toc.read(plan.suite, app, ["data", "post-data"])}
    is_acl = lambda e: e.desc in ("ACL", "DEFAULT ACL")  # noqa: E731
    schema_acl = lambda e: e.desc == "ACL" and e.schema == "-" and e.tag_owner.startswith("SCHEMA ")  # noqa: E731
    # who holds power and which roles exist, before anything changes: step 3 compares with these
    with plan.target.connect(autocommit=True) as conn:
        power = conn.execute(statements._POWER).fetchone()[0]
        roles_now = conn.execute(f"SELECT coalesce(pg_catalog.jsonb_agg(x), '[]')::text FROM ({statements._ROLES_NOW}) s").fetchone()[0]

    def transaction(s: Session, channel: str) -> None:
        s.sql(
            "SELECT pg_catalog.set_config('search_path', '', false);\n"
            f"SET lock_timeout = {sqltext.literal(timeout)};\n"
            "SET client_min_messages = warning;\nSET standard_conforming_strings = on;\nBEGIN;\n"
            + statements.TXN_START
            + f"\nSELECT pg_catalog.set_config('fortress.power', {sqltext.literal(power)}, true);"
            + f"\nSELECT pg_catalog.set_config('fortress.roles', {sqltext.literal(roles_now)}, true);"
            + f"\nNOTIFY {sqltext.ident(channel)};\n"
        )

    def checks(s: Session, counts: bool) -> None:
        if counts:
            step("checking row counts against the manifest")
            s.sql(statements.check_sql(plan.checks))
        s.sql(statements.POWER_CHECK)
        s.sql(statements.roles_check([r.name for r in plan.roles.create], [(m.role, m.member) for m in plan.roles.grants], plan.server.current_user))
        s.sql(statements.TXN_CHECK)

    def first(s: Session, channel: str) -> None:
        transaction(s, channel)
        if plan.roles.sql:
            step("roles")
            s.sql(plan.roles.sql)
        step("resetting the app's schemas")
        s.sql(plan.reset_sql)
        step("loading schema")
        pre = [e for e in chosen if e.dump_id in pre_ids and not is_acl(e)]
        execute._feed(plan, s, app, env, [e for e in pre if e.desc == "SCHEMA"])
        execute._feed(plan, s, app, env, [e for e in chosen if schema_acl(e)], acl=True)
        execute._feed(plan, s, app, env, [e for e in pre if e.desc != "SCHEMA"])
        platform_file = record.file("platform")
        if platform_file:
            step("loading platform data")
            path = catalog.pinned_path(plan.pinned[platform_file.name])
            s.sql(quiet.start_sql(plan.platform_tables, replica=plan.replica_mode, temp_table=plan.temp_ok))
            execute._feed(plan, s, path, env, toc.read(plan.suite, path, ["data"]))
            s.sql(quiet.end_sql(plan.platform_tables, replica=plan.replica_mode, temp_table=plan.temp_ok))
        checks(s, counts=False)

    def third(s: Session, channel: str) -> None:
        transaction(s, channel)
        execute._feed(plan, s, app, env, [e for e in chosen if is_acl(e) and not schema_acl(e)], acl=True)
        schema_file = record.file("platform-schema")
        if schema_file and plan.addition_oids:
            step("re-adding the app's triggers and policies on platform tables")
            path = catalog.pinned_path(plan.pinned[schema_file.name])
            execute._feed(
                plan, s, path, env, [e for e in toc.read(plan.suite, path) if e.desc in ("TRIGGER", "POLICY") and e.oid in plan.addition_oids]
            )
        execute.server_wide(plan, s, step)
        checks(s, counts=True)

    _session(plan, first, step, progress, lock_timeout_ms)
    try:
        step(f"loading rows, indexes and constraints with {jobs} parallel jobs")
        rest = [e for e in chosen if e.dump_id in later_ids and not is_acl(e)]
        _pg_restore_jobs(plan, app, env, rest, jobs)
        result = _session(plan, third, step, progress, lock_timeout_ms)
    except (RestoreFailed, Interrupted) as exc:
        raise type(exc)(
            f"Parallel restore of {plan.target.dbname} failed after its schema was committed; the target is partly restored: "
            + exc.message.replace(f"{plan.target.dbname} is unchanged", "this step was rolled back"),
            "put the target back with its undo point (`invoke list` shows it, labelled `undo point: before restoring ...`: "
            "`invoke restore --id ID`), or fix the cause and restore again",
            target_unchanged=False,
        ) from None
    return result


def _session(plan: RestorePlan, body: Callable[[Session, str], None], step: Step, progress, lock_timeout_ms: int) -> execute.RestoreResult:
    channel = "fortress_restore_" + sqltext.restrict_key()[:16]
    appname = "fortress-restore-" + channel[-16:]

    def factory(errf: IO[bytes]) -> Session:
        session = Session(plan.suite, plan.target, errf, progress, application_name=appname)
        session.lock_timeout = f"{lock_timeout_ms}ms"
        return session

    return execute._execute(plan, step, factory, lambda s: body(s, channel), channel, appname, lock_timeout_ms)


@contextlib.contextmanager
def _seekable(archive: Path, env: dict[str, str]) -> Iterator[Path]:
    """pg_restore --jobs reads the archive at its entries' offsets: a zstd file is decompressed,
    and an encrypted one's plaintext copied, into a private temporary file first (its raw size,
    for the time of the restore)."""
    packed = zstream.is_zstd(archive)
    if not packed and not stat.S_ISFIFO(os.stat(archive).st_mode):
        yield archive
        return
    with tempfile.TemporaryDirectory(prefix="fortress-jobs-") as tmp:
        out = Path(tmp) / "archive.dump"
        if not packed:  # an encrypted backup's plaintext pipe (crypt.Served): copied, kernel to kernel
            with open(archive, "rb") as src, open(out, "xb") as dst:
                pipes.relay(src.fileno(), dst.fileno())
            yield out
            return
        with open(archive, "rb") as src, open(out, "xb") as dst:
            proc = pgtools.popen([zstream.need_tool(), "-d", "-q", "-c"], env=env, stdin=src, stdout=dst, stderr=subprocess.PIPE)
            try:
                _, err = proc.communicate()
            except BaseException:
                pgtools.stop(proc)
                raise
        if proc.returncode != 0:
            raise RestoreFailed(f"zstd cannot read {Path(os.path.realpath(archive)).name}: {pgtools.tail(err)}", "restore another backup")
        yield out


def _pg_restore_jobs(plan: RestorePlan, archive: Path, env: dict[str, str], chosen: list[toc.Entry], jobs: int) -> None:
    if not chosen:
        return
    listfile = toc.write_list(chosen)
    try:
        with _seekable(archive, env) as path, tempfile.TemporaryFile() as errf:
            argv = [
                plan.suite.tool("pg_restore"),
                f"--jobs={int(jobs)}",
                "--exit-on-error",
                f"--use-list={listfile}",
                "--no-password",
                f"--dbname={plan.target.conninfo()}",
                str(path),
            ]
            proc = pgtools.popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=errf)
            try:
                proc.wait()
            except KeyboardInterrupt:
                pgtools.stop(proc)
                raise Interrupted("Parallel restore interrupted", target_unchanged=False) from None
            except BaseException:
                pgtools.stop(proc)
                raise
            if proc.returncode != 0:
                errf.seek(0)
                raise RestoreFailed(f"pg_restore --jobs {jobs} failed: {pgtools.tail(errf.read())}", "see the message")
    finally:
        listfile.unlink(missing_ok=True)
