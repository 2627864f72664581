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
import shutil
import signal
import stat
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

from .. import catalog, pgtools, quiet, sqltext, toc, zstream
from ..errors import IntegrityError, Interrupted, RestoreFailed, UsageError
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
    require_empty: bool = False,
) -> execute.RestoreResult:
    """`require_empty`: no undo point was taken, so the target must still hold nothing of the
    app's when step 1 runs (it was empty when the plan was made, before the prompt)."""
    if plan.mode != "full" or plan.backup.legacy:
        raise UsageError("--jobs restores a full backup only", "drop --jobs, or restore a full backup")
    try:
        return _run(plan, jobs, step, progress, lock_timeout_ms, require_empty)
    finally:
        catalog.unpin(plan.pinned)


def _run(plan: RestorePlan, jobs: int, step: Step, progress, lock_timeout_ms: int, require_empty: bool) -> execute.RestoreResult:
    record = plan.backup.record
    app_file = record.file("app")
    if app_file is None:
        raise RestoreFailed(f"Backup {plan.backup.id} has no app archive", "restore another backup")
    if app_file.encrypted:
        raise UsageError(ENCRYPTED_REFUSAL, "drop --jobs: the one-transaction restore streams the plaintext straight into psql")
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
            statements.begin_sql(
                timeout,
                channel,
                f"SELECT pg_catalog.set_config('fortress.power', {sqltext.literal(power)}, true);",
                f"SELECT pg_catalog.set_config('fortress.roles', {sqltext.literal(roles_now)}, true);",
            )
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
        if require_empty:
            s.sql(statements.still_empty_check([n for n, _ in plan.drop_schemas], plan.namespace_objects))
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
        unchanged_files()

    def unchanged_files() -> None:
        # a file written to (even in place) since its checksum was checked: the step is not committed
        catalog.require_unchanged(plan.pinned, plan.pinned_stamps, plan.backup.id, f"{plan.target.dbname} is unchanged")

    # The seekable copy pg_restore's workers need is made before anything changes: a full disk,
    # a damaged archive or Ctrl-C while it is written leave the target as it was.
    with _seekable(app, env, app_file.raw_size, step) as path:
        unchanged_files()
        _session(plan, first, step, progress, lock_timeout_ms)
        try:
            step(f"loading rows, indexes and constraints with {jobs} parallel jobs")
            rest = [e for e in chosen if e.dump_id in later_ids and not is_acl(e)]
            _pg_restore_jobs(plan, path, env, rest, jobs)
            result = _session(plan, third, step, progress, lock_timeout_ms)
        except (RestoreFailed, Interrupted) as exc:
            what = exc.message.replace(f"{plan.target.dbname} is unchanged", "this step was rolled back")
            raise _partly(plan, what, type(exc), require_empty) from None
        except KeyboardInterrupt:
            raise _partly(plan, "interrupted", Interrupted, require_empty) from None
        except Exception as exc:  # a full disk, a tool that could not start: the schema step is committed all the same
            raise _partly(plan, " ".join(str(exc).split()) or type(exc).__name__, RestoreFailed, require_empty) from None
    return result


ENCRYPTED_REFUSAL = (
    "--jobs needs the archive's plaintext in a file its parallel workers can seek in, and an encrypted backup's "
    "plaintext is never written to disk; nothing was changed"
)


def _partly(plan: RestorePlan, what: str, kind: type[RestoreFailed] | type[Interrupted], was_empty: bool) -> RestoreFailed | Interrupted:
    hint = (
        "it held nothing of the app's before and no undo point was taken: fix the cause and restore again (it replaces what is there)"
        if was_empty
        else "put the target back with its undo point (the command is printed above; `invoke list` shows it, labelled "
        "`undo point: before restoring ...`), or fix the cause and restore again"
    )
    return kind(
        f"Parallel restore of {plan.target.dbname} failed after its schema was committed; the target is partly restored: {what}",
        hint,
        target_unchanged=False,
    )


def _session(plan: RestorePlan, body: Callable[[Session, str], None], step: Step, progress, lock_timeout_ms: int) -> execute.RestoreResult:
    channel = "fortress_restore_" + sqltext.restrict_key()[:16]
    appname = "fortress-restore-" + channel[-16:]

    def factory(errf: IO[bytes]) -> Session:
        session = Session(plan.suite, plan.target, errf, progress, application_name=appname)
        session.lock_timeout = f"{lock_timeout_ms}ms"
        return session

    return execute._execute(plan, step, factory, lambda s: body(s, channel), channel, appname, lock_timeout_ms)


@contextlib.contextmanager
def _seekable(archive: Path, env: dict[str, str], raw_size: int | None, step: Step) -> Iterator[Path]:
    """pg_restore --jobs reads the archive at its entries' offsets: a zstd-wrapped one (PG 15) is
    decompressed first into a file with no name (O_TMPFILE: it goes with this process, even on
    SIGKILL), checked against the signed raw size, never written beyond it (a zstd bomb), and
    only where that much space is free. An encrypted backup never gets here (ENCRYPTED_REFUSAL)."""
    if stat.S_ISFIFO(os.stat(archive).st_mode):
        raise UsageError(ENCRYPTED_REFUSAL, "drop --jobs: the one-transaction restore streams the plaintext straight into psql")
    if not zstream.is_zstd(archive):
        yield archive
        return
    name = Path(os.path.realpath(archive)).name
    folder = tempfile.gettempdir()
    if raw_size is not None:
        free = shutil.disk_usage(folder).free
        if free < raw_size + (64 << 20):
            raise RestoreFailed(
                f"--jobs decompresses {name} to {raw_size / 2**20:.0f} MiB in {folder}, which has {free / 2**20:.0f} MiB free; nothing was changed",
                "free some space, point TMPDIR at a larger disk, or drop --jobs (the one-transaction restore needs no copy)",
            )
    step(f"decompressing the archive for {name}'s parallel workers")
    with _anonymous_file(folder) as (fd, path):
        try:
            with open(archive, "rb") as src:
                proc = pgtools.popen(
                    [zstream.need_tool(), "-d", "-q", "-c"], env=env, stdin=src, stdout=fd, stderr=subprocess.PIPE, max_file_size=raw_size
                )
                try:
                    _, err = proc.communicate()
                except BaseException:
                    pgtools.stop(proc)
                    raise
        except KeyboardInterrupt:
            raise Interrupted("Restore interrupted while the archive was decompressed; the target is unchanged") from None
        if proc.returncode == -signal.SIGXFSZ:
            raise IntegrityError(
                f"{name} decompresses to more than the {raw_size} bytes its manifest records; nothing was changed",
                "the backup is damaged or was tampered with: restore another backup",
            )
        if proc.returncode != 0:
            raise RestoreFailed(f"zstd cannot read {name}: {pgtools.tail(err)}; nothing was changed", "restore another backup")
        got = os.fstat(fd).st_size
        if raw_size is not None and got != raw_size:
            raise IntegrityError(
                f"{name} decompresses to {got} bytes, not the {raw_size} its manifest records; nothing was changed",
                "the backup is damaged or was tampered with: restore another backup",
            )
        yield path


@contextlib.contextmanager
def _anonymous_file(folder: str) -> Iterator[tuple[int, Path]]:
    """A file with no name in `folder`, readable by pg_restore (and the workers it forks, which
    open the path again) as /dev/fd/N. Where the file system has no O_TMPFILE, a named file in a
    private folder, removed when done."""
    try:
        fd = os.open(folder, os.O_TMPFILE | os.O_RDWR, 0o600)
    except (AttributeError, OSError):
        fd = -1
    if fd >= 0:
        try:
            yield fd, Path(f"/dev/fd/{fd}")
        finally:
            os.close(fd)
        return
    with tempfile.TemporaryDirectory(prefix="fortress-jobs-", dir=folder) as tmp:
        fd = os.open(Path(tmp) / "archive.dump", os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            yield fd, Path(f"/dev/fd/{fd}")
        finally:
            os.close(fd)


def _pg_restore_jobs(plan: RestorePlan, archive: Path, env: dict[str, str], chosen: list[toc.Entry], jobs: int) -> None:
    if not chosen:
        return
    listfile = toc.write_list(chosen)
    try:
        with tempfile.TemporaryFile() as errf:
            path = archive
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
                raise Interrupted("interrupted while pg_restore --jobs loaded rows", target_unchanged=False) from None
            except BaseException:
                pgtools.stop(proc)
                raise
            if proc.returncode != 0:
                errf.seek(0)
                raise RestoreFailed(f"pg_restore --jobs {jobs} failed: {pgtools.tail(errf.read())}", "see the message")
    finally:
        listfile.unlink(missing_ok=True)
