"""Restore and reset, each step in a small module:

plan        facts about the backup and the target -> a frozen RestorePlan (what the person sees)
execute     runs exactly that plan in one psql session, one transaction
session     the psql process: \\restrict, ON_ERROR_STOP, Ctrl-C, what its exit means
archive     pg_restore as the writer of the archive entries the plan chose (by TOC)
statements  the SQL the restore writes itself (through sqltext)
reset       `invoke reset`
"""

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from tempfile import TemporaryDirectory

from ..catalog import Backup
from ..conn import Target
from ..storage import Store
from .execute import RestoreResult, execute_restore
from .plan import RestorePlan, plan_restore
from .reset import ResetPlan, execute_reset, plan_reset


@contextmanager
def source(
    store: Store, backup: Backup, target: Target, *, pg_bin_dir: str | None = None, step: Callable[[str], None] = lambda m: None
) -> Iterator[tuple[Store, Backup]]:
    """The backup a restore plans from: the backup itself, or, for the runbook's hand-made
    files, a backup made from them in a throwaway database (they never reach the target as
    SQL), kept in a temporary folder for as long as the block runs."""
    if not backup.legacy:
        yield store, backup
        return
    from ..runbook import runbook_backup

    with TemporaryDirectory(prefix="fortress-runbook-") as tmp:
        files = [store.local_path("", name) for name in backup.legacy_files]
        yield runbook_backup(files, target=target, store_root=Path(tmp), pg_bin_dir=pg_bin_dir, step=step)


__all__ = ["source", "RestorePlan", "RestoreResult", "ResetPlan", "plan_restore", "execute_restore", "plan_reset", "execute_reset"]
