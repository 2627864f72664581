"""Backup and restore speed, CPU and memory against the raw PostgreSQL tools, same data, one run.

    uv run --frozen python bench/bench.py [--size 1024] [--rounds 3] [--pg 15 17] [--db mixed wide big] [--jobs 2]

For each PostgreSQL version it starts a throwaway cluster, builds the databases (`--size` MB
each, about), then runs `--rounds` rounds; in each round every method runs once, in an order
that rotates from round to round (so a slow moment of the machine hits every method alike):

  backups   raw pg_dump -f plain.sql | the runbook's split files (schema.sql, data.sql with
            --disable-triggers) | pg_dump -Fd -j N | `invoke backup`
  restores  psql -f plain.sql | psql -f schema.sql then data.sql | pg_restore -j N of the -Fd
            dump | `invoke restore --yes --no-undo` (one transaction, checked)

Every restore goes into a fresh database and is checked by row counts against the source.
`invoke` runs as a user runs it (a subprocess), wrapped so that its own peak memory and its
children's are reported apart. Printed: medians of wall time, client CPU (every process the
method started), server CPU (the cluster's processes), peak RSS of the tool process and of its
largest child, output size, and the ratios the README's targets are stated in.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tasks.engine import pgtools  # noqa: E402
from tasks.engine.sandbox import Cluster, server_suite  # noqa: E402

WRAP = Path(__file__).with_name("_measured.py")
PYCACHE = Path(tempfile.gettempdir()) / "fortress-bench-pycache"


def build(cluster: Cluster, kind: str, size_mb: int, bindir: Path) -> str:
    db = f"src_{kind}"
    target = cluster.create_database(db)
    env = target.tool_env()
    psql = [str(bindir / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", f"--dbname={target.conninfo()}"]
    if kind == "mixed":
        # the database: pgbench with foreign keys, plus jsonb documents with a GIN index and a trigger
        scale = max(1, int(size_mb * 0.6 / 15))
        pgbench = [str(bindir / "pgbench"), "-i", "-q", "-s", str(scale), "--foreign-keys", target.conninfo()]
        subprocess.run(pgbench, env=env, check=True, capture_output=True)
        docs = max(1000, size_mb * 200)
        sql = f"""
CREATE TABLE docs (id bigint PRIMARY KEY, body jsonb NOT NULL, updated_at timestamptz);
CREATE FUNCTION touch() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN NEW.updated_at := now(); RETURN NEW; END $$;
INSERT INTO docs SELECT g, jsonb_build_object('title', 'document ' || g, 'tags', jsonb_build_array('t' || g % 50, 't' || g % 7),
  'author', jsonb_build_object('id', g % 5000, 'name', md5((g % 5000)::text)), 'score', g % 1000, 'text', repeat(md5(g::text), 8)), now()
  FROM generate_series(1, {docs}) g;
CREATE INDEX docs_body ON docs USING gin (body);
CREATE TRIGGER docs_touch BEFORE INSERT OR UPDATE ON docs FOR EACH ROW EXECUTE FUNCTION touch();
"""
    elif kind == "wide":
        # less compressible: wide jsonb of random numbers and words, random bytea, many indexes and foreign keys
        n = max(1000, size_mb * 700)
        sql = f"""
CREATE TABLE customers (id bigint PRIMARY KEY, name text NOT NULL, email text NOT NULL, profile jsonb NOT NULL);
CREATE TABLE orders (id bigint PRIMARY KEY, customer_id bigint NOT NULL REFERENCES customers, total numeric(12,2),
  created timestamptz NOT NULL, items jsonb NOT NULL, note text);
CREATE TABLE attachments (id bigint PRIMARY KEY, order_id bigint NOT NULL REFERENCES orders, data bytea NOT NULL);
INSERT INTO customers SELECT g, 'name ' || (random() * 1e6)::int, 'user' || g || '@example.com',
  (SELECT jsonb_object_agg('field_' || k, CASE WHEN k % 3 = 0 THEN to_jsonb((random() * 1e6)::int)
     WHEN k % 3 = 1 THEN to_jsonb(substr(md5(random()::text), 1, 6)) ELSE to_jsonb(random() < 0.5) END) FROM generate_series(1, 24) k WHERE g > 0)
  FROM generate_series(1::bigint, {n // 4}) g;
INSERT INTO orders SELECT g, 1 + (g * 7919) % {n // 4}, (random() * 10000)::numeric(12,2), timestamptz '2025-01-01' + g * interval '37 seconds',
  jsonb_build_array(jsonb_build_object('sku', (random() * 1e5)::int, 'qty', (random() * 9)::int + 1),
                    jsonb_build_object('sku', (random() * 1e5)::int, 'qty', (random() * 9)::int + 1)),
  CASE WHEN g % 4 = 0 THEN 'gift wrap ' || (random() * 100)::int END
  FROM generate_series(1::bigint, {n}) g;
INSERT INTO attachments SELECT g, 1 + (g * 31) % {n}, decode(md5(random()::text), 'hex') FROM generate_series(1::bigint, {n // 2}) g;
CREATE INDEX ON customers (email); CREATE INDEX ON customers (name); CREATE INDEX ON customers USING gin (profile);
CREATE INDEX ON orders (customer_id); CREATE INDEX ON orders (created); CREATE INDEX ON orders (total);
CREATE INDEX ON attachments (order_id);
"""
    else:  # big: one table holds nearly everything
        n = max(1000, size_mb * 9000)
        sql = f"""
CREATE TABLE kinds (id int PRIMARY KEY, name text NOT NULL);
INSERT INTO kinds SELECT g, 'kind ' || g FROM generate_series(1, 10) g;
CREATE TABLE events (id bigint PRIMARY KEY, kind int NOT NULL REFERENCES kinds, user_id int NOT NULL,
  at timestamptz NOT NULL, amount numeric(12,2), label text);
INSERT INTO events SELECT g, 1 + g % 10, (g * 7919) % 100000, timestamptz '2025-01-01' + g * interval '3 seconds',
  (g % 100000) / 7.0, 'label ' || g % 500 FROM generate_series(1::bigint, {n}) g;
CREATE INDEX ON events (user_id, at);
"""
    subprocess.run([*psql, "-c", sql, "-c", "VACUUM ANALYZE"], env=env, check=True)
    return db


def server_cpu(cluster: Cluster) -> float:
    """CPU seconds of the cluster's processes so far: the postmaster, its ended children
    (counted into its own totals when it reaps them) and the living ones."""
    assert cluster.root is not None
    pid = int((cluster.root / "data" / "postmaster.pid").read_text().split()[0])
    tick = os.sysconf("SC_CLK_TCK")

    def stat(p: int) -> list[str]:
        return Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()

    f = stat(pid)
    total = sum(int(x) for x in f[11:15])
    for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
        try:
            total += sum(int(x) for x in stat(int(child))[11:13])
        except (FileNotFoundError, ProcessLookupError):
            pass
    return total / tick


def counts(url: str, bindir: Path, env: dict[str, str]) -> dict[str, int]:
    q = (
        "SELECT format('%I.%I', schemaname, relname), n FROM pg_stat_user_tables, "
        "LATERAL (SELECT (xpath('/row/n/text()', query_to_xml(format('SELECT count(*) AS n FROM ONLY %I.%I', schemaname, relname),"
        " false, true, '')))[1]::text::bigint AS n) c"
    )
    argv = [str(bindir / "psql"), "-X", "-At", "-F", " ", f"--dbname={url}", "-c", q]
    out = subprocess.run(argv, env=env, check=True, capture_output=True, text=True).stdout
    return dict((line.split(" ")[0], int(line.split(" ")[1])) for line in out.splitlines() if line)


class Bench:
    def __init__(self, cluster: Cluster, bindir: Path, tmp: Path, jobs: int):
        self.cluster, self.bindir, self.tmp, self.jobs = cluster, bindir, tmp, jobs
        self.env = cluster.target("postgres").tool_env()
        self.n = 0

    def url(self, db: str) -> str:
        return self.cluster.target(db).conninfo()

    def fresh(self) -> str:
        self.n += 1
        name = f"dst_{self.n}"
        self.cluster.create_database(name)
        return name

    def sh(self, *argv: str, out: Path | None = None) -> None:
        with open(out, "wb") if out else open(os.devnull, "wb") as f:
            subprocess.run(list(argv), env=self.env, check=True, stdout=f)

    def tool(self, name: str) -> str:
        return str(self.bindir / name)

    def invoke(self, *args: str, db: str, bdir: Path) -> dict:
        stats = self.tmp / "stats.json"
        env = dict(self.env, DATABASE_URL=self.cluster.url(db), BACKUP_DIR=str(bdir), BENCH_STATS=str(stats))
        # as installed: Python's compiled modules cached (kept out of the source tree), not
        # compiled again on every run as PYTHONDONTWRITEBYTECODE would make it
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(PYCACHE)
        done = subprocess.run([sys.executable, str(WRAP), "--search-root", str(ROOT), *args], env=env, cwd=self.tmp, capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"invoke {args[0]} failed: {done.stderr.strip()}")
        return json.loads(stats.read_text())

    def run(self, method: str, src: str) -> dict:
        """One timed run; returns wall, client/server CPU, memory, size, and the restored db."""
        t = self.tmp
        extra: dict = {}
        dst = self.fresh() if "restore" in method else None
        # the previous method's files reach the disk before this one starts, not while it runs
        os.sync()
        r0, s0, w0 = resource.getrusage(resource.RUSAGE_CHILDREN), server_cpu(self.cluster), time.perf_counter()
        if method == "raw backup":
            self.sh(self.tool("pg_dump"), "-f", str(t / "plain.sql"), f"--dbname={self.url(src)}")
            extra["size"] = (t / "plain.sql").stat().st_size
        elif method == "split backup":
            self.sh(self.tool("pg_dump"), "--schema-only", f"--dbname={self.url(src)}", out=t / "schema.sql")
            self.sh(self.tool("pg_dump"), "--data-only", "--disable-triggers", f"--dbname={self.url(src)}", out=t / "data.sql")
            extra["size"] = (t / "schema.sql").stat().st_size + (t / "data.sql").stat().st_size
        elif method == "dir backup":
            shutil.rmtree(t / "dir", ignore_errors=True)
            self.sh(self.tool("pg_dump"), "-Fd", "-j", str(self.jobs), "-f", str(t / "dir"), f"--dbname={self.url(src)}")
            extra["size"] = sum(p.stat().st_size for p in (t / "dir").iterdir())
        elif method == "ours backup":
            shutil.rmtree(t / "backups", ignore_errors=True)
            extra.update(self.invoke("backup", db=src, bdir=t / "backups"))
            folder = next(p for p in (t / "backups").iterdir() if p.is_dir() and not p.name.startswith("."))
            extra["size"] = sum(p.stat().st_size for p in folder.iterdir())
            extra["id"] = folder.name
        elif method == "raw restore":
            self.sh(self.tool("psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-f", str(t / "plain.sql"), f"--dbname={self.url(dst)}")
        elif method == "split restore":
            for f in ("schema.sql", "data.sql"):
                self.sh(self.tool("psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-f", str(t / f), f"--dbname={self.url(dst)}")
        elif method == "dir restore":
            self.sh(self.tool("pg_restore"), "-j", str(self.jobs), f"--dbname={self.url(dst)}", str(t / "dir"))
        elif method in ("ours restore", "ours restore -j"):
            bid = next(p for p in (t / "backups").iterdir() if p.is_dir() and not p.name.startswith(".")).name
            jobs = ["--jobs", str(self.jobs)] if method.endswith("-j") else []
            args = ("restore", "--id", bid, "--target", self.cluster.url(dst), "--yes", "--no-undo", *jobs)
            extra.update(self.invoke(*args, db=src, bdir=t / "backups"))
        r1, s1, w1 = resource.getrusage(resource.RUSAGE_CHILDREN), server_cpu(self.cluster), time.perf_counter()
        out = {"wall": w1 - w0, "client_cpu": r1.ru_utime + r1.ru_stime - r0.ru_utime - r0.ru_stime, "server_cpu": s1 - s0, **extra}
        if dst is not None:
            out["ok"] = counts(self.url(dst), self.bindir, self.env) == counts(self.url(src), self.bindir, self.env)
            self.cluster.drop_database(dst)
        return out


BACKUPS = ["raw backup", "split backup", "dir backup", "ours backup"]
RESTORES = ["raw restore", "split restore", "dir restore", "ours restore", "ours restore -j"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=1024, help="MB per database, about (default 1024)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--pg", type=int, nargs="+", default=[15, 17])
    ap.add_argument("--db", nargs="+", default=["mixed", "wide", "big"], choices=["mixed", "wide", "big"])
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument(
        "--methods",
        nargs="+",
        default=BACKUPS + RESTORES,
        choices=BACKUPS + RESTORES,
        metavar="METHOD",
        help="run only these (for scale runs); ratios need the raw and ours methods",
    )
    ap.add_argument("--json", type=Path, help="also write every measurement here")
    args = ap.parse_args()
    needs = dict(zip(RESTORES, ["raw backup", "split backup", "dir backup", "ours backup", "ours backup"], strict=True))
    missing = sorted({needs[m] for m in args.methods if m in needs and needs[m] not in args.methods})
    if missing:
        ap.error(f"--methods: the restores chosen read what {', '.join(missing)} writes; add it")
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    print(f"machine: {os.cpu_count()} cores, {memory:.0f} GiB; {args.rounds} rounds, medians")
    everything = []
    for major in args.pg:
        suite = server_suite(major)
        tools = pgtools.pick(pgtools.discover(), at_least=major, prefer=major, tools=("pg_dump", "psql", "pg_restore", "pgbench"))
        with Cluster(suite) as cluster, tempfile.TemporaryDirectory(prefix="fortress-bench-") as tmp:
            for kind in args.db:
                t0 = time.perf_counter()
                src = build(cluster, kind, args.size, tools.bindir)
                with cluster.target(src).connect() as c:
                    size = c.execute("SELECT pg_database_size(current_database())").fetchone()[0]
                built = time.perf_counter() - t0
                print(f"\nPostgreSQL {suite.version}, database {kind}: {size / 2**20:.0f} MiB (built in {built:.0f} s)", flush=True)
                b = Bench(cluster, tools.bindir, Path(tmp), args.jobs)
                backups = [m for m in BACKUPS if m in args.methods]
                restores = [m for m in RESTORES if m in args.methods]
                runs: dict[str, list[dict]] = {m: [] for m in backups + restores}
                for r in range(args.rounds):
                    order = backups[r % len(backups) :] + backups[: r % len(backups)]
                    for m in order:  # every backup of this round, then every restore from them
                        runs[m].append(b.run(m, src))
                    order = restores[r % len(restores) :] + restores[: r % len(restores)] if restores else []
                    for m in order:
                        runs[m].append(b.run(m, src))
                report(major, kind, size, runs)
                everything.append({"pg": major, "db": kind, "bytes": size, "runs": runs})
                cluster.drop_database(src)
    if args.json:
        args.json.write_text(json.dumps(everything, indent=1))


def med(runs: list[dict], key: str) -> float:
    vals = [r[key] for r in runs if r.get(key) is not None]
    return statistics.median(vals) if vals else float("nan")


def report(major: int, kind: str, size: int, runs: dict[str, list[dict]]) -> None:
    print(f"{'method':<15}{'wall s':>8}{'client cpu':>11}{'server cpu':>11}{'tool MB':>9}{'kids MB':>9}{'output MB':>10}  checked")
    for m, rs in runs.items():
        tool = f"{med(rs, 'self_rss_mb'):9.0f}" if "self_rss_mb" in rs[0] else f"{'':>9}"
        child = f"{med(rs, 'children_rss_mb'):9.0f}" if "children_rss_mb" in rs[0] else f"{'':>9}"
        size_s = f"{med(rs, 'size') / 2**20:10.1f}" if "size" in rs[0] else f"{'':>10}"
        ok = "" if "ok" not in rs[0] else ("rows match" if all(r["ok"] for r in rs) else "ROWS DIFFER")
        print(f"{m:<15}{med(rs, 'wall'):8.2f}{med(rs, 'client_cpu'):11.2f}{med(rs, 'server_cpu'):11.2f}{tool}{child}{size_s}  {ok}")
    w = {m: med(rs, "wall") for m, rs in runs.items()}
    parts = []

    def ratio(label: str, a: str, b: str, target: str, fmt: str = ".2f", key: str = "wall") -> None:
        if a in runs and b in runs:
            x, y = (w[a], w[b]) if key == "wall" else (med(runs[a], key), med(runs[b], key))
            parts.append(f"{label} {x / y:{fmt}} ({target})")

    ratio("restore ours/psql -f", "ours restore", "raw restore", "target <= 1.05")
    ratio("ours/split", "ours restore", "split restore", "< 1")
    ratio("ours -j/pg_restore -j", "ours restore -j", "dir restore", "target <= 1.05")
    ratio("psql -f/ours -j", "raw restore", "ours restore -j", "target >= 1.3")
    ratio("backup ours/pg_dump -f", "ours backup", "raw backup", "target <= 1.10")
    ratio("size ours/plain", "ours backup", "raw backup", "target <= 0.2", ".3f", "size")
    if "ours restore" in runs:
        own = [r.get("self_cpu", 0) for r in runs["ours restore"]]
        parts.append(f"tool's own CPU in restore {statistics.median(own):.2f} s of {med(runs['ours restore'], 'client_cpu'):.2f} s client CPU")
    print(f"ratios PG{major} {kind}: " + "; ".join(parts), flush=True)


if __name__ == "__main__":
    main()
