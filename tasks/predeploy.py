"""invoke predeploy"""

from __future__ import annotations

import os

from . import _notify, _ui
from ._flags import task
from .engine.conn import Target
from .engine.errors import ConfigError, IntegrityError, UsageError
from .engine.manifest import signing_key
from .engine.predeploy import DEFAULT_BUDGET, run_predeploy
from .engine.settings import parse_duration
from .engine.stores import write_store
from .engine.verify import LEVELS


@task(
    help={
        "level": "How to verify the new backup: quick, archive or drill (default drill).",
        "budget": "Time budget, e.g. 10min (default: PREDEPLOY_BUDGET or 15min); a drill that would not fit is skipped, "
        "saying so, and the backup verified at archive level.",
        "url": "Database to back up (default: DATABASE_URL or SUPABASE_DB_URL).",
        "backup_dir": "Folder for backups (default: BACKUP_DIR or .backups; with BACKUP_STORE set, the object store instead).",
    }
)
@_notify.on_failure("predeploy")
@_ui.guarded
def predeploy(c, level="drill", budget=None, url=None, backup_dir=None):
    """CI hook: back up (labelled pre-deploy, with commit and CI run), verify it, print its restore command; non-zero on any doubt."""
    if level not in LEVELS:
        raise UsageError(f"--level {level!r} is not a level", "use --level quick, archive or drill")
    budget_text = budget or os.environ.get("PREDEPLOY_BUDGET") or DEFAULT_BUDGET
    try:
        budget_ms = parse_duration(budget_text)
    except ConfigError:
        raise UsageError(f"--budget {budget_text!r} is not a duration", "use for example 10min, 600s or 1h") from None
    settings = _ui.settings_from(url=url, backup_dir=backup_dir)
    if not settings.database_url:
        raise ConfigError("No database configured", "set DATABASE_URL in the environment (in CI: from a secret), or pass --url")
    target = Target.from_url(settings.database_url, settings.password, settings.pg_env)
    store = write_store(settings)  # the object store when BACKUP_STORE is one
    key = signing_key(settings.signing_key, create=True)
    with _ui.Activity("pre-deploy backup") as activity:
        result = run_predeploy(
            target,
            store,
            level=level,
            budget_s=budget_ms / 1000,
            signing_key=key,
            pg_bin_dir=settings.pg_bin_dir,
            lock_timeout_ms=settings.lock_timeout_ms,
            step=activity.step,
        )
    v = result.verification
    for note in v.notes:
        _ui.warn(note)
    for m in v.mismatches:
        _ui.err.print(f"[red]mismatch:[/red] {_ui.escape(m)}")
    if not result.ok:
        raise IntegrityError(
            f"pre-deploy backup {result.backup_id} failed verification ({v.error or v.mismatches[0]})",
            "the deploy must not go on: find out why (`invoke verify --id " + result.backup_id + "`), then run predeploy again",
        )
    skipped = f"; {result.drill_skipped}" if result.drill_skipped else ""
    _ui.out.print(
        _ui.escape(f"predeploy ok: backup {result.backup_id} ({result.label}), {v.summary()}{skipped}; restore it with: {result.restore_command}"),
        soft_wrap=True,
    )
