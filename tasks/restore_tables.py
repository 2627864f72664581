"""`invoke restore --table/--schema [--into-schema NAME]`: chosen tables only, guarded like a
full restore (plan, typed confirmation, undo point). Called by tasks/restore.py."""

from __future__ import annotations

import os

from . import _ui
from .engine import catalog, sqltext
from .engine.errors import UsageError
from .engine.manifest import signing_key
from .engine.restore.tables import execute_tables, plan_tables
from .engine.storage import LocalStore
from .restore import _resolved_target, _undo_kept_only_if_needed, _undo_point, _undo_row, _undo_said, _unsigned_gate


def restore_tables(
    *,
    tables: tuple[str, ...],
    schemas: tuple[str, ...],
    into_schema: str | None,
    date,
    id,
    target,
    yes,
    backup_dir,
    allow_unsigned,
    undo,
    confirm_target,
    lock_timeout,
    any_source,
) -> None:
    if into_schema is not None and not (tables or schemas):
        raise UsageError("--into-schema needs the tables to restore", "add --table SCHEMA.TABLE or --schema NAME")
    settings = _ui.settings_from(backup_dir=backup_dir, lock_timeout=lock_timeout, target=target)
    store = LocalStore(settings.backup_dir)
    tgt, protected = _resolved_target(settings, yes, confirm_target)
    src = catalog.source_key(tgt.host, tgt.port, tgt.dbname, tgt.user)
    backup = catalog.resolve(store, date=date, backup_id=id, mode="data", target=src, any_source=any_source)
    beside = into_schema is not None
    if beside:
        undo = False  # nothing of the target's changes; the plan says how to undo
    elif undo and store.root.is_dir() and not os.access(store.root, os.W_OK):
        _ui.warn(f"{store.root} is read-only: no undo point can be kept there (pass --no-undo to say so)")
        undo = False
    key = signing_key(settings.signing_key, create=undo)
    with store.lock(reading=True, step=_ui.step):
        plan = plan_tables(
            store,
            backup,
            tgt,
            tables=tables,
            schemas=schemas,
            into_schema=into_schema,
            pg_bin_dir=settings.pg_bin_dir,
            signing_key=key,
            step=_ui.step,
        )
        try:
            rows = plan.summary_rows()
            if not beside:
                rows.append(_undo_row(undo, plan.target_size))
            if protected:
                rows.append(("protected", "yes (PROTECTED_TARGETS)"))
            _ui.show_plan(rows, "Table restore plan")
            for w in plan.warnings:
                _ui.warn(w)
            _unsigned_gate(backup.id, plan.authenticity, yes=yes, allow_unsigned=allow_unsigned)
            if plan.links:
                # a key the backup's rows would break refuses the restore now, before anything is
                # asked or changed: the whole restore is rehearsed and rolled back
                with _ui.Activity("checking foreign keys (rehearsal, rolled back)") as activity:
                    execute_tables(plan, commit=False, step=activity.step, lock_timeout_ms=settings.lock_timeout_ms)
            names = ", ".join(f"{s}.{t}" for s, t, _ in plan.tables)
            action = (
                f"create schema '{into_schema}' with {len(plan.tables)} tables of the backup in database '{tgt.dbname}'"
                if beside
                else f"replace the rows of {names} in database '{tgt.dbname}' on {tgt.host}"
            )
            _ui.confirm_by_name(tgt.dbname, action, yes=yes)
            point = None
            if not beside:
                point = _undo_point(undo, tgt, store, f"restoring {names} of {backup.id} into {tgt.display()}", settings, key)
            with _ui.Activity("restoring tables") as activity, _undo_kept_only_if_needed(point, store):
                result = execute_tables(plan, step=activity.step, lock_timeout_ms=settings.lock_timeout_ms)
        finally:
            catalog.unpin(plan.pinned)
    where = ", ".join(f"{s}.{t}" for s, t in result.tables)
    if beside:
        _ui.out.print(
            _ui.escape(f"restored {where} from {result.backup_id} beside the live data in {activity.elapsed:.1f} s; ")
            + _ui.escape(f"{len(result.tables)} {'table matches' if len(result.tables) == 1 else 'tables match'} the manifest's row counts. ")
            + _ui.escape(f"Remove the copy with DROP SCHEMA {sqltext.ident(into_schema or '')} CASCADE")
        )
    else:
        _ui.out.print(
            _ui.escape(f"restored the rows of {where} from {result.backup_id} in {activity.elapsed:.1f} s; ")
            + f"{len(result.tables)} {'table matches' if len(result.tables) == 1 else 'tables match'} the manifest's row counts"
        )
        _undo_said(point, tgt, settings, backup_dir)
