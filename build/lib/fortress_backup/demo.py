"""invoke demo"""

from __future__ import annotations

from . import _ui
from ._flags import task
from .engine.demo import run_demo
from .engine.errors import BackupError, UsageError


@task(
    help={
        "pg": "PostgreSQL major version for the throwaway server, e.g. 15 or 17 (default: newest installed).",
        "json": "Print JSON events on stdout, one a line (also BACKUP_OUTPUT=json).",
    }
)
@_ui.guarded
def demo(c, pg=None, json=False):
    """Try it safely: throwaway local database -> backup -> restore -> compare, then clean up."""
    if pg is not None and not (str(pg).isdigit() and 9 < int(pg) < 100):
        raise UsageError(f"--pg {pg!r} is not a PostgreSQL major version", "pass for example --pg 15 or --pg 17")
    result = run_demo(_ui.step, major=int(pg) if pg else None)
    rows = [(t, a, b, "identical" if same else "DIFFERENT") for t, a, b, same in result.rows]
    _ui.emit(
        _ui.out,
        _ui.table(
            f"Source vs restored (PostgreSQL {result.server_version}, backup {result.backup_id})",
            ["table", "source rows", "restored rows", "contents"],
            rows,
        ),
    )
    if not result.all_match:
        raise BackupError("The restored database differs from the source", "this is a bug; please report it")
    _ui.say("demo complete: every table matches; the throwaway cluster and backups were removed")
