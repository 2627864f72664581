"""invoke restore / invoke reset"""

from __future__ import annotations

import os
import shlex
from collections.abc import Callable
from contextlib import contextmanager
from functools import partial
from typing import Any

from . import _ui
from ._flags import task
from .engine import catalog, dbinfo
from .engine import undo as undo_mod
from .engine.conn import Target
from .engine.dump import undo_point
from .engine.errors import BackupError, ConfigError, Declined, Interrupted, NotFound, RestoreFailed, UsageError
from .engine.manifest import signing_key
from .engine.objects import is_remote
from .engine.restore import execute_reset, execute_restore, parallel, plan_reset, plan_restore, source
from .engine.storage import LocalStore
from .engine.stores import local_store, remote_store
from .engine.watch import ServerWatch


def _schemas(text: str | None) -> tuple[str, ...]:
    return tuple(s.strip() for s in (text or "").split(",") if s.strip())


def _target(settings):
    url = settings.target_url or settings.database_url
    if not url:
        raise ConfigError("No restore target", "pass --target URL, or set TARGET_DATABASE_URL or DATABASE_URL")
    # A target URL (--target, TARGET_DATABASE_URL) carries its own password, else PGPASSWORD (or
    # ~/.pgpass); SUPABASE_DB_PASSWORD belongs to DATABASE_URL and is only reused for it. libpq's
    # PG* variables fill in what the URL lacks, once, for every connection and tool of the run.
    tgt = Target.from_url(url, settings.password if not settings.target_url else None, settings.pg_env)
    if tgt.password is None and settings.sources.get("target_url", "").startswith("flag"):
        tgt = _password_for(tgt, settings)
    if tgt.resolved_from:
        _ui.step(f"target {tgt.display()}: {tgt.resolution()} (the URL does not say)")
    return tgt


def _password_for(tgt: Target, settings) -> Target:
    """`--target URL` without a password (as the printed undo command has it, since argv is
    visible to every user): the password of TARGET_DATABASE_URL or DATABASE_URL (environment,
    then `.env`) when that URL names the same server, database and user."""
    import dataclasses

    from .engine.settings import read_dotenv

    dotenv = read_dotenv(settings.project_root) if settings.project_root else {}
    candidates = [(os.environ.get("TARGET_DATABASE_URL") or dotenv.get("TARGET_DATABASE_URL"), None)]
    candidates.append((settings.database_url, settings.password))
    for candidate, fallback in candidates:
        if not candidate:
            continue
        try:
            other = Target.from_url(candidate, fallback, settings.pg_env)
        except BackupError:
            continue
        if other.password and (other.host, other.port, other.dbname, other.user) == (tgt.host, tgt.port, tgt.dbname, tgt.user):
            return dataclasses.replace(tgt, password=other.password)
    return tgt


@task(
    auto_shortflags=False,  # Invoke runs out of letters for its flags and prints `--=STRING`
    help={
        "date": "UTC date of the backup to restore, YYYY-MM-DD; the newest complete one of that day.",
        "id": "Exact backup id (see `invoke list`), instead of --date.",
        "target": "Database to restore into (default: TARGET_DATABASE_URL, then DATABASE_URL). Its app schemas are replaced. "
        "`sandbox`: a new throwaway local PostgreSQL, left running, as a development copy. "
        "Prefer TARGET_DATABASE_URL for a URL with a password: argv is visible to every user.",
        "any_source": "Let --date pick a backup made from another database than the target (by default only the target's own).",
        "jobs": "N > 1: load rows, indexes and constraints with pg_restore --jobs N. NOT one transaction: allowed only "
        "with the undo point (the default) or into an empty target; a full backup only.",
        "yes": "Confirm without a prompt (for scripts and CI). Without a terminal and without --yes, restore refuses.",
        "schema_only": "Restore roles and schema only; the target's tables end up empty.",
        "data_only": "Restore rows only, into the tables that already exist in the target.",
        "backup_dir": "Folder holding the backups (default: BACKUP_DIR or .backups).",
        "also_reach": "SCHEMA[,SCHEMA...]: allow the reset to also drop or empty objects in these schemas outside "
        "the app's (the plan lists them). Without it such a restore is refused.",
        "undo": "Take an undo point first: a backup of the target as it is, which `invoke restore --id` puts back (default on; --no-undo skips it).",
        "confirm_target": "With --yes on a protected target (PROTECTED_TARGETS): the target database's name, as a person would type it.",
        "lock_timeout": "How long the restore waits for a table lock before it rolls back, e.g. 30s (default: LOCK_TIMEOUT or 30s).",
        "json": "Print JSON events (plan, steps, progress every 10 s, the result) on stdout, one a line, for CI (also BACKUP_OUTPUT=json).",
        "allow_unsigned": "Restore a backup whose manifest is not signed with this machine's key "
        "(BACKUP_SIGNING_KEY); only if you trust where it came from.",
        "table": "SCHEMA.TABLE: restore only this table's rows (repeatable); other tables, the schema and grants stay as they are. "
        "A foreign key the rows would break refuses the restore, naming the table to add.",
        "schema": "NAME: restore only the rows of this schema's tables (repeatable).",
        "into_schema": "NAME: put the chosen tables (--table/--schema) from the backup into this new schema, beside the live ones, "
        "which stay untouched (e.g. restored_2026_11_24).",
    },
    iterable=["table", "schema"],
)
@_ui.guarded
def restore(
    c,
    date=None,
    id=None,
    target=None,
    yes=False,
    schema_only=False,
    data_only=False,
    backup_dir=None,
    allow_unsigned=False,
    also_reach=None,
    undo=True,
    confirm_target=None,
    lock_timeout=None,
    any_source=False,
    table=None,
    schema=None,
    into_schema=None,
    json=False,
    jobs=1,
):
    """Restore a backup (guarded): verify checksums, show the plan, confirm, replace in one transaction."""
    if table or schema or into_schema is not None:
        if schema_only or data_only or also_reach:
            raise UsageError(
                "--table, --schema and --into-schema restore rows of chosen tables", "leave out --schema-only, --data-only and --also-reach"
            )
        from .restore_tables import restore_tables

        restore_tables(
            tables=tuple(table or ()),
            schemas=tuple(schema or ()),
            into_schema=into_schema,
            date=date,
            id=id,
            target=target,
            yes=yes,
            backup_dir=backup_dir,
            allow_unsigned=allow_unsigned,
            undo=undo,
            confirm_target=confirm_target,
            lock_timeout=lock_timeout,
            any_source=any_source,
        )
        return
    if schema_only and data_only:
        raise UsageError("--schema-only and --data-only exclude each other", "pass at most one of them")
    sandbox = target == "sandbox"
    if sandbox:  # started once the backup is known (its version), below
        target, yes, any_source, undo = None, True, True, False
    settings = _ui.settings_from(backup_dir=backup_dir, lock_timeout=lock_timeout, target=target)
    store = local_store(settings)
    mode = "schema" if schema_only else "data" if data_only else None
    tgt: Target | None = None
    protected = False
    if not sandbox:
        tgt, protected = _resolved_target(settings, yes, confirm_target)
    src = catalog.source_key(tgt.host, tgt.port, tgt.dbname, tgt.user) if tgt is not None else None
    backup_store: Any = store  # where the backup is: the local folder, else the object store
    try:
        backup = catalog.resolve(store, date=date, backup_id=id, mode=mode or "full", target=src, any_source=any_source)
    except NotFound:
        if not is_remote(settings.store):
            raise
        backup_store = remote_store(settings)
        _ui.step(f"not in {store.describe()}: looking in {backup_store.describe()}")
        backup = catalog.resolve(backup_store, date=date, backup_id=id, mode=mode or "full", target=src, any_source=any_source)
    if undo and store.root.is_dir() and not os.access(store.root, os.W_OK):
        _ui.warn(f"{store.root} is read-only: no undo point can be kept there (pass --no-undo to say so)")
        undo = False
    if backup.legacy and yes and not allow_unsigned:
        # refused before the files are even loaded into a throwaway database
        raise Declined(
            f"The runbook files {', '.join(backup.legacy_files)} carry no signature; nothing was changed",
            "restore them only if you trust where they came from: add --allow-unsigned",
        )
    dev = None
    if sandbox:
        dev, tgt = _start_sandbox(backup, settings)
    assert tgt is not None
    done: list = []  # the restore's result once it has committed
    try:
        key = signing_key(settings.signing_key, create=undo)
        with (
            store.lock(reading=True, step=_ui.step),
            source(backup_store, backup, tgt, pg_bin_dir=settings.pg_bin_dir, step=_ui.step) as (plan_store, backup),
        ):
            plan = plan_restore(
                plan_store,
                backup,
                tgt,
                mode=mode,
                pg_bin_dir=settings.pg_bin_dir,
                step=_ui.step,
                signing_key=key,
                also_reach=_schemas(also_reach),
            )
            jobs = _jobs_allowed(int(jobs), undo, plan)
            undo_row = ("undo point", "none: the target is a new throwaway server") if dev is not None else _undo_row(undo, plan.target_size)
            rows = (
                plan.summary_rows()
                + [undo_row]
                + _jobs_rows(jobs, undo and dev is None)
                + ([("protected", "yes (PROTECTED_TARGETS)")] if protected else [])
            )
            _ui.show_plan(rows, "Restore plan")
            for w in plan.warnings:
                _ui.warn(w)
            _unsigned_gate(backup.id, plan.authenticity, yes=yes, allow_unsigned=allow_unsigned)
            _ui.confirm_by_name(tgt.dbname, f"replace the contents of database '{tgt.dbname}' on {tgt.host}", yes=yes)
            point = _undo_point(undo, tgt, store, f"restoring {backup.id} into {tgt.display()}", settings, key)
            if point is not None and key is not None:
                # what this restore adds server-wide, which restoring the undo point removes again
                undo_mod.write(
                    point.path,
                    undo_mod.Aftermath(
                        backup.id,
                        roles=tuple(r.name for r in plan.roles.create),
                        extensions=plan.create_extensions,
                        cron_jobs=tuple(j.name for j in plan.backup.record.cron_jobs or () if j.name),
                    ),
                    key,
                )
            watch = ServerWatch(tgt, rows_total=sum(n for _s, _t, n in plan.checks) or None) if plan.mode != "schema" else None
            say_undo = partial(_undo_said, point, tgt, settings, backup_dir)
            with _ui.Activity("restoring", watch=watch) as activity, _undo_kept_only_if_needed(point, store, say_undo):
                result = execute_restore(
                    plan,
                    plan_store,
                    step=activity.step,
                    progress=activity.progress,
                    lock_timeout_ms=settings.lock_timeout_ms,
                    jobs=jobs,
                    undo_taken=point is not None,
                )
                done.append(result)
        _ui.say(
            f"restored {result.backup_id} into {result.target} in {activity.elapsed:.1f} s; "
            + (
                f"{result.tables_checked} {'table matches' if result.tables_checked == 1 else 'tables match'} the manifest's row counts"
                if result.tables_checked
                else "no row counts to check"
            )
        )
        _undo_said(point, tgt, settings, backup_dir)
        if dev is not None:
            _ui.say(
                f"development copy running at {dev.display}; its URL with the password is in {dev.url_file}: "
                f'export DATABASE_URL="$(cat {dev.url_file})". Stop and remove it with: {dev.stop_command}'
            )
        if plan.cron_jobs:
            _ui.note(f"pg_cron jobs are scheduled on this database now and will run: {'; '.join(plan.cron_jobs)}")
        if plan.roles.create:
            names = ", ".join(r.name for r in plan.roles.create)
            _ui.note(
                f"roles created by this restore: {names}. Roles are server-wide"
                + (": its undo point removes them again if nothing uses them." if point is not None else ".")
            )
        if plan.undo_roles:
            kept = sorted(_still_there(tgt, plan.undo_roles))
            gone = [r for r in plan.undo_roles if r not in kept]
            _ui.note(
                (f"removed the roles the undone restore had created: {', '.join(gone)}. " if gone else "")
                + (f"kept {', '.join(kept)}: still in use (owns or is granted something on this server)." if kept else "")
            )
        if result.login_roles:
            _ui.note(
                "login roles come back without passwords (backups never hold them): "
                + ", ".join(result.login_roles)
                + ". Set them with ALTER ROLE name PASSWORD '...'."
            )
    except KeyboardInterrupt:
        if not done:
            raise
        # Ctrl-C, SIGTERM or SIGHUP after COMMIT: say what is true
        raise Interrupted(
            f"the restore of {done[0].backup_id} into {done[0].target} had completed when it was interrupted",
            "the target holds the backup now" + (f"; its undo point is {point.backup_id}" if point is not None else ""),
            target_unchanged=False,
        ) from None
    finally:
        if dev is not None and not done:
            _remove_sandbox(dev)


def _start_sandbox(backup, settings):
    """`--target sandbox`: a throwaway server of the backup's own major version where installed."""
    from .engine import devcopy

    dev = devcopy.start(settings.pg_bin_dir, devcopy.backup_major(backup))
    _ui.step(f"started PostgreSQL {dev.version} ({dev.why}) at {dev.display}: a development copy that stays running")
    # the URL names host, port, user, database and password: none is filled in from .env
    return dev, Target.from_url(dev.url, None, {})


def _remove_sandbox(dev) -> None:
    """A restore into the sandbox that did not complete: the server and its folder go."""
    try:
        dev.remove()
    except Exception:  # the error that brought us here is the one to report
        _ui.warn(f"could not remove the throwaway server at {dev.display}; remove it with: {dev.stop_command}")
        return
    _ui.step(f"removed the throwaway server at {dev.display} (the restore into it did not complete)")


def _resolved_target(settings, yes: bool, confirm_target: str | None) -> tuple[Target, bool]:
    """The target as every connection and tool of this run will reach it, and whether it is
    protected: checked on the URL as given (before any connection), and again on what a first
    connection found (a service file may name another host or port)."""
    given = _target(settings)
    protected = _protected(settings, given, yes, confirm_target)
    tgt = given.resolved()
    if tgt is not given:
        _ui.step(f"target {tgt.display()}: {tgt.resolution()}")
        protected = _protected(settings, tgt, yes, confirm_target) or protected
    return tgt, protected


def _protected(settings, tgt: Target, yes: bool, confirm_target: str | None) -> bool:
    """A protected target (PROTECTED_TARGETS) is never changed on --yes alone."""
    if not any(tgt.is_named_by(spec) for spec in settings.protected_targets):
        return False
    if yes and confirm_target != tgt.dbname:
        raise Declined(
            f"{tgt.display()} is a protected target (PROTECTED_TARGETS) and --yes alone does not change it; nothing was changed",
            f"pass --confirm-target {tgt.dbname} as well, or run it in a terminal and type the name",
        )
    return True


def _jobs_allowed(jobs: int, undo: bool, plan) -> int:
    """A parallel restore is not one transaction: only with an undo point, or into an empty target."""
    if jobs < 1:
        raise UsageError(f"--jobs {jobs} is not a number of jobs", "pass --jobs 2 or more, or leave it out")
    if jobs > 1 and plan.mode != "full":
        raise UsageError("--jobs restores a full backup only", "drop --jobs, or drop --schema-only/--data-only")
    app = plan.backup.record.file("app") if jobs > 1 and not plan.backup.legacy else None
    if app is not None and app.encrypted:
        raise UsageError(parallel.ENCRYPTED_REFUSAL, "drop --jobs: the one-transaction restore streams the plaintext straight into psql")
    if jobs > 1 and not undo and not plan.target_empty:
        raise UsageError(
            "--jobs is not one transaction, so it needs the undo point (or an empty target), and --no-undo was given; nothing was changed",
            "drop --no-undo, or drop --jobs for the one-transaction restore",
        )
    return jobs


def _unsigned_gate(backup_id: str, authenticity, *, yes: bool, allow_unsigned: bool) -> None:
    """A backup this machine cannot authenticate: refused under --yes unless --allow-unsigned,
    said before the prompt otherwise."""
    if authenticity.ok or allow_unsigned:
        return
    if yes:
        raise Declined(
            f"Backup {backup_id} is {authenticity.text}; nothing was changed",
            "restore it only if you trust where it came from: add --allow-unsigned, or set BACKUP_SIGNING_KEY to the key it was made with",
        )
    _ui.warn(f"this backup is {authenticity.text}: restore it only if you trust where it came from")


def _jobs_rows(jobs: int, undo: bool = True) -> list[tuple[str, str]]:
    if jobs <= 1:
        return []
    back = "the undo point puts it back" if undo else "it was empty: restore again"
    return [
        (
            "transaction",
            f"NOT one: schema and platform data commit first, then rows, indexes and constraints load with {jobs} parallel jobs; "
            f"a failure after that leaves the target partly restored ({back})",
        )
    ]


def _still_there(tgt: Target, names: tuple[str, ...]) -> set[str]:
    try:
        with tgt.connect(autocommit=True) as conn:
            return dbinfo.existing_roles(conn, list(names))
    except Exception:  # only a note; the restore has committed
        return set()


def _undo_row(undo: bool, size: int) -> tuple[str, str]:
    if undo:
        return ("undo point", f"a backup of the target first (its database is {_ui.human_size(size)} now); --no-undo skips it")
    return ("undo point", "none (--no-undo): the target's current contents will not be kept")


def _undo_point(undo: bool, tgt: Target, store: LocalStore, before: str, settings, key):
    if not undo:
        return None
    try:
        with _ui.Activity("taking an undo point") as activity:
            return undo_point(
                tgt,
                store,
                before=before,
                pg_bin_dir=settings.pg_bin_dir,
                step=activity.step,
                signing_key=key,
                lock_timeout_ms=settings.lock_timeout_ms,
            )
    except BackupError as exc:
        if isinstance(exc, RestoreFailed | Interrupted):
            raise
        holders = ""
        if "lock" in exc.message.lower():
            with tgt.connect(autocommit=True) as conn:
                holders = "; held by: " + (", ".join(dbinfo.lock_holders(conn)) or "a session that has ended since")
        raise RestoreFailed(
            f"Could not take the undo point of {tgt.display()}, so nothing was changed: {exc.message}{holders}",
            "fix the cause and run this again, or pass --no-undo to go on without an undo point",
        ) from None


@contextmanager
def _undo_kept_only_if_needed(point, store: LocalStore, said: Callable[[], None] = lambda: None):
    """A restore that failed and rolled back left the target as it was: its undo point is a copy
    of nothing new, and goes. Any other outcome keeps it (above all one that is not unchanged),
    and a failure that may have changed the target says how to put it back (`said`)."""
    try:
        yield
    except BackupError as exc:
        if point is not None and exc.target_unchanged:
            store.delete(point.backup_id)
        elif point is not None:
            said()
        raise
    except BaseException:
        if point is not None:
            said()
        raise


def _undo_said(point, tgt: Target, settings, backup_dir_flag: str | None) -> None:
    """The one command that puts the target back, as it must be typed here."""
    if point is None:
        return
    cmd = f"invoke restore --id {point.backup_id}"
    if backup_dir_flag:
        cmd += f" --backup-dir {shlex.quote(str(backup_dir_flag))}"
    if settings.target_url or (settings.database_url and not tgt.is_named_by(settings.database_url)):
        # the password stays where it was (the URL given, TARGET_DATABASE_URL, PGPASSWORD, ~/.pgpass)
        cmd += f" --target {shlex.quote(tgt.display())}"
    _ui.say(f"undo point {point.backup_id}; to put the target back: {cmd}")


@task(
    help={
        "target": "Database to reset (default: TARGET_DATABASE_URL, then DATABASE_URL).",
        "yes": "Confirm without a prompt (for scripts and CI).",
        "also_reach": "SCHEMA[,SCHEMA...]: allow the reset to also drop or empty objects in these schemas outside "
        "the app's (the plan lists them). Without it such a reset is refused.",
        "undo": "Take an undo point first: a backup of the target as it is (default on; --no-undo skips it).",
        "confirm_target": "With --yes on a protected target (PROTECTED_TARGETS): the target database's name.",
        "backup_dir": "Where the undo point goes (default: BACKUP_DIR or .backups).",
        "json": "Print JSON events (plan, steps, the result) on stdout, one a line, for CI (also BACKUP_OUTPUT=json).",
    },
)
@_ui.guarded
def reset(c, target=None, yes=False, also_reach=None, undo=True, confirm_target=None, backup_dir=None, json=False):
    """Drop the app's schemas, publications and large objects (the runbook's db reset), guarded."""
    settings = _ui.settings_from(backup_dir=backup_dir, target=target)
    tgt, protected = _resolved_target(settings, yes, confirm_target)
    plan = plan_reset(tgt, _schemas(also_reach))
    rows = [("target", f"{tgt.display()}  (PostgreSQL {plan.server.version}, {plan.platform.name})")]
    rows += [("will drop", f"schema {s} ({n} tables)") for s, n in plan.drop_schemas]
    rows += [("will drop", f"publication {p}") for p in plan.drop_publications]
    rows += [("will drop", a) for a in plan.drop_additions]
    rows += [("also reaches", r.description) for r in plan.reached]
    if plan.large_objects:
        rows.append(("will drop", f"{plan.large_objects} large objects"))
    rows.append(("keeps", "platform schemas, their data (auth users, storage rows) and roles" if plan.platform.name == "supabase" else "roles"))
    rows.append(_undo_row(undo, plan.target_size))
    if protected:
        rows.append(("protected", "yes (PROTECTED_TARGETS)"))
    _ui.show_plan(rows, "Reset plan")
    _ui.confirm_by_name(tgt.dbname, f"drop every app object in database '{tgt.dbname}' on {tgt.host}", yes=yes)
    store = LocalStore(settings.backup_dir)
    with store.lock():
        point = _undo_point(undo, tgt, store, f"resetting {tgt.display()}", settings, signing_key(settings.signing_key, create=True))
        with _ui.Activity("resetting") as activity, _undo_kept_only_if_needed(point, store):
            execute_reset(plan, settings.lock_timeout_ms, step=activity.step)
    public = "public emptied (the platform's grants on it kept)" if plan.platform.name == "supabase" else "public recreated empty"
    _ui.say(f"reset {tgt.display()}: dropped the app's objects in {len(plan.drop_schemas)} schemas; {public}")
    _undo_said(point, tgt, settings, backup_dir)
