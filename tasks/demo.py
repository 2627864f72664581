"""invoke demo"""

from __future__ import annotations

from . import _ui
from ._flags import task
from .engine.demo import run_demo
from .engine.errors import BackupError


@task(help={"pg": "PostgreSQL major version for the throwaway server (default: newest installed)."})
@_ui.guarded
def demo(c, pg=None):
    """Try it safely: throwaway local database -> backup -> restore -> compare, then clean up."""
    result = run_demo(_ui.step, major=int(pg) if pg else None)
    rows = [(t, a, b, "identical" if same else "DIFFERENT") for t, a, b, same in result.rows]
    _ui.out.print(
        _ui.table(
            f"Source vs restored (PostgreSQL {result.server_version}, backup {result.backup_id})",
            ["table", "source rows", "restored rows", "contents"],
            rows,
        )
    )
    if not result.all_match:
        raise BackupError("The restored database differs from the source", "this is a bug; please report it")
    _ui.out.print("demo complete: every table matches; the throwaway cluster and backups were removed")
