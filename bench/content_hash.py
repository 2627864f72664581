"""What recording per-table content hashes costs a backup, and what a drill costs.

    uv run python bench/content_hash.py [--rows 2000000] [--pg 17] [--repeat 3]

Loads bench.py's Fortress-Modeler-shaped database (`--rows` line items) into a throwaway
cluster, then times create_backup with content hashes off and on (best of `--repeat`, each
alternated so cache effects hit both alike), and one verify at each level of the hashed backup.
Prints the times and the ratio hashed/plain: the README's numbers and BACKUP_CONTENT_HASHES's
default come from it.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench import load  # noqa: E402
from tasks.engine import catalog, verify  # noqa: E402
from tasks.engine.dump import create_backup  # noqa: E402
from tasks.engine.sandbox import Cluster, server_suite  # noqa: E402
from tasks.engine.storage import LocalStore  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=2_000_000)
    ap.add_argument("--pg", type=int, default=None)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    with Cluster(server_suite(args.pg)) as cluster, tempfile.TemporaryDirectory(prefix="fortress-bench-") as tmp:
        source = cluster.create_database("bench")
        load(source, args.rows)
        store = LocalStore(Path(tmp) / "backups")
        times: dict[bool, list[float]] = {False: [], True: []}
        last = ""
        for _ in range(args.repeat):
            for hashes in (False, True):
                t0 = time.monotonic()
                r = create_backup(source, store, content_hashes=hashes)
                times[hashes].append(time.monotonic() - t0)
                if hashes:
                    last = r.backup_id
                else:
                    store.delete(r.backup_id)
        plain, hashed = min(times[False]), min(times[True])
        print(f"PostgreSQL {cluster.suite.version}, {args.rows} line items (+11,000 rows)")
        print(f"backup without content hashes  {plain:8.2f} s")
        print(f"backup with content hashes     {hashed:8.2f} s   ratio {hashed / plain:.2f}")
        backup = catalog.load(store, last)
        for level in verify.LEVELS:
            t0 = time.monotonic()
            res = verify.verify_backup(store, backup, level, record_result=False)
            print(f"verify --level {level:8s}       {time.monotonic() - t0:8.2f} s   {res.summary()}")


if __name__ == "__main__":
    main()
