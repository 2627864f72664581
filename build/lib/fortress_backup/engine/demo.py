"""`invoke demo`: the whole loop on a throwaway local PostgreSQL, no account needed.

start a cluster -> load a sample Fortress Modeler database -> back it up -> restore it into a
second, empty database -> compare both table by table -> remove everything. The cluster and the
backup folder are temporary and removed also on Ctrl-C or error.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from . import dbinfo
from .catalog import load
from .dump import create_backup
from .platform import POSTGRES
from .restore import execute_restore, plan_restore
from .sandbox import Cluster
from .storage import LocalStore

Step = Callable[[str], None]


@dataclass
class DemoResult:
    backup_id: str
    server_version: str
    rows: list[tuple[str, int, int, bool]]  # table, source rows, restored rows, identical

    @property
    def all_match(self) -> bool:
        return bool(self.rows) and all(r[3] for r in self.rows)


def sample_sql() -> str:
    return resources.files(__package__).joinpath("demo_data.sql").read_text()


def run_demo(step: Step = lambda m: None, *, major: int | None = None) -> DemoResult:
    from .sandbox import server_suite

    suite = server_suite(major)
    step(f"starting a throwaway PostgreSQL {suite.version} cluster")
    with Cluster(suite) as cluster, tempfile.TemporaryDirectory(prefix="fortress-demo-") as tmp:
        source = cluster.create_database("fortress_demo")
        with source.connect() as conn:
            conn.execute(sample_sql())
        step("loaded the sample Fortress Modeler database (users, projects, models, scenarios, line items)")
        store = LocalStore(Path(tmp) / "backups")
        result = create_backup(source, store, kind="full", label="demo", step=step)
        restored = cluster.create_database("fortress_restored")
        backup = load(store, result.backup_id)
        plan = plan_restore(store, backup, restored, step=step)
        execute_restore(plan, store, step=step)
        step("comparing every table, row by row")
        with source.connect() as a, restored.connect() as b:
            tabs = dbinfo.tables(a, dbinfo.app_schemas(a, POSTGRES))
            fa, fb = dbinfo.fingerprints(a, tabs), dbinfo.fingerprints(b, tabs)
        rows = [(name, fa[name][0], fb.get(name, (0, ""))[0], fa[name] == fb.get(name)) for name in sorted(fa)]
        return DemoResult(result.backup_id, cluster.suite.version, rows)
