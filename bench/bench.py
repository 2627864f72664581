"""Backup/restore speed and memory against the raw runbook commands, on the same data, in one run.

    uv run python bench/bench.py [--rows 2000000] [--pg 15]

Starts a throwaway cluster, loads a Fortress-Modeler-shaped database with `--rows` line items
(indexes, foreign keys, a trigger), then times:
  runbook backup   pg_dump --schema-only > schema.sql; pg_dump --data-only > data.sql
  ours backup      create_backup (roles + custom-format archive + row counts + sha256)
  runbook restore  fresh database; psql -f schema.sql; psql -f data.sql   (not atomic)
  ours restore     plan + execute_restore (one transaction, verified row counts)
and prints each time, the ratio ours/runbook, sizes, and this process's peak RSS (the engine
streams; its memory must not grow with the data).
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tasks.engine import catalog, dbinfo, pgtools  # noqa: E402
from tasks.engine.dump import create_backup  # noqa: E402
from tasks.engine.platform import POSTGRES  # noqa: E402
from tasks.engine.restore import execute_restore, plan_restore  # noqa: E402
from tasks.engine.sandbox import Cluster, server_suite  # noqa: E402
from tasks.engine.storage import LocalStore  # noqa: E402

SCHEMA = """
CREATE TABLE projects (id bigint PRIMARY KEY, name text NOT NULL, settings jsonb NOT NULL);
CREATE TABLE scenarios (id bigint PRIMARY KEY, project_id bigint NOT NULL REFERENCES projects(id), name text, growth numeric(7,4));
CREATE TABLE line_items (id bigint PRIMARY KEY, scenario_id bigint NOT NULL REFERENCES scenarios(id),
    label text NOT NULL, month date NOT NULL, amount numeric(14,2) NOT NULL, note text);
CREATE INDEX line_items_scenario_month ON line_items (scenario_id, month);
CREATE INDEX line_items_label ON line_items (label);
CREATE FUNCTION touch() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN NEW.note := coalesce(NEW.note, 'touched'); RETURN NEW; END $$;
CREATE TRIGGER line_items_touch BEFORE INSERT ON line_items FOR EACH ROW EXECUTE FUNCTION touch();
"""


def load(target, rows: int) -> None:
    with target.connect(autocommit=True, search_path=None) as conn:
        conn.execute(SCHEMA)
        conn.execute("ALTER TABLE line_items DISABLE TRIGGER line_items_touch")
        conn.execute("INSERT INTO projects SELECT g, 'project ' || g, jsonb_build_object('k', g) FROM generate_series(1, 1000) g")
        conn.execute("INSERT INTO scenarios SELECT g, 1 + g % 1000, 'scenario ' || g, (g % 100) / 1000.0 FROM generate_series(1, 10000) g")
        conn.execute(
            "INSERT INTO line_items SELECT g, 1 + g %% 10000, 'label ' || (g %% 500), date '2026-01-01' + (g %% 700),"
            " (g %% 100000) / 7.0, CASE WHEN g %% 3 = 0 THEN NULL ELSE md5(g::text) END FROM generate_series(1, %s) g",
            (rows,),
        )
        conn.execute("ALTER TABLE line_items ENABLE TRIGGER line_items_touch")
        conn.execute("VACUUM ANALYZE")


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=2_000_000)
    ap.add_argument("--pg", type=int, default=None)
    args = ap.parse_args()
    suite = server_suite(args.pg)
    with Cluster(suite) as cluster, tempfile.TemporaryDirectory(prefix="fortress-bench-") as tmp:
        tmp = Path(tmp)
        source = cluster.create_database("bench_src")
        load(source, args.rows)
        env = source.tool_env()
        tools = pgtools.pick(pgtools.discover(), at_least=suite.major, prefer=suite.major, tools=("pg_dump", "psql"))

        def runbook_backup():
            for flag, name in (("--schema-only", "schema.sql"), ("--data-only", "data.sql")):
                with open(tmp / name, "wb") as f:
                    pgtools.run([tools.tool("pg_dump"), flag, f"--dbname={source.conninfo()}"], env=env, stdout=f)

        def runbook_restore():
            target = cluster.create_database("bench_runbook")
            for name in ("schema.sql", "data.sql"):
                pgtools.run(
                    [tools.tool("psql"), "--quiet", "--no-psqlrc", "--set=ON_ERROR_STOP=1", f"--dbname={target.conninfo()}", "-f", str(tmp / name)],
                    env=target.tool_env(),
                    stdout=subprocess.DEVNULL,
                )
            return target

        store = LocalStore(tmp / "backups")
        rb_backup, _ = timed(runbook_backup)
        our_backup, result = timed(lambda: create_backup(source, store))
        rb_restore, rb_target = timed(runbook_restore)
        ours_target = cluster.create_database("bench_ours")

        def ours_restore():
            plan = plan_restore(store, catalog.load(store, result.backup_id), ours_target)
            return execute_restore(plan, store)

        our_restore, _ = timed(ours_restore)
        with source.connect() as a, ours_target.connect() as b, rb_target.connect() as c:
            tabs = dbinfo.tables(a, dbinfo.app_schemas(a, POSTGRES))
            fa = dbinfo.fingerprints(a, tabs)
            same_ours = fa == dbinfo.fingerprints(b, tabs)
            same_runbook = fa == dbinfo.fingerprints(c, tabs)
        rb_size = sum((tmp / n).stat().st_size for n in ("schema.sql", "data.sql"))
        our_size = sum(f["size"] for f in result.manifest["files"])
        rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"PostgreSQL {suite.version}, {args.rows:,} line items (+11,000 other rows)")
        print(f"{'step':<10}{'runbook s':>11}{'ours s':>9}{'ours/runbook':>14}")
        print(f"{'backup':<10}{rb_backup:>11.2f}{our_backup:>9.2f}{our_backup / rb_backup:>14.2f}")
        print(f"{'restore':<10}{rb_restore:>11.2f}{our_restore:>9.2f}{our_restore / rb_restore:>14.2f}")
        print(f"size: runbook {rb_size / 2**20:.1f} MiB plain SQL, ours {our_size / 2**20:.1f} MiB (ratio {our_size / rb_size:.2f})")
        print(f"peak RSS of this process (engine + driver): {rss_mb:.0f} MiB")
        print(f"restored identical to source: ours {same_ours}, runbook {same_runbook} (the runbook's data load fires the trigger)")


if __name__ == "__main__":
    main()
