"""Backup and restore speed, CPU and memory against the raw PostgreSQL tools, same data, one run.

    uv run --frozen python bench/bench.py [--size 1024] [--rounds 3] [--pg 15 17] [--db mixed wide big] [--jobs 2] [--no-durable]

For each PostgreSQL version it starts a throwaway cluster, builds the databases (`--size` MB
each, about), then runs `--rounds` rounds; in each round every method runs once, in an order
that rotates from round to round (so a slow moment of the machine hits every method alike):

  backups   raw pg_dump -f plain.sql | the runbook's split files (schema.sql, data.sql with
            --disable-triggers) | pg_dump -Fd -j N -Z0 (uncompressed: the fast raw path) |
            `invoke backup`
  restores  psql -f plain.sql | psql -f schema.sql then data.sql | pg_restore -j N of the -Fd
            dump | `invoke restore --yes --no-undo` (one transaction, checked; --no-undo: the
            target is a fresh empty database, so there is nothing to undo) | the same with --jobs N

The server is durable by default: fsync, synchronous_commit and full_page_writes on, as on a
real server (`--no-durable`: the test sandbox's fast settings, all off). The header prints the
settings that matter. Before every timed run, untimed: os.sync() (the previous method's files
reach the disk before this one starts) and a CHECKPOINT (so no method pays for the WAL another
one wrote). A backup is done when it is on disk: pg_dump -Fd fsyncs its files itself, and ours
fsyncs what it keeps, but plain-format pg_dump (-f or stdout) does not fsync at all (checked
with `strace -f -e trace=fsync,fdatasync,sync_file_range`: no call), so the raw plain and split
backups are timed up to an fsync of the files they wrote, inside the timed region.

Every restore goes into a fresh database and, outside the timed region, is checked against the
source: row counts of every table, the normalised `pg_dump --schema-only` (comments, blank
lines and the random \\restrict key removed) and every sequence's last_value/is_called. A run
that differs is reported with what differed; no ratio is printed for its method and the bench
exits 1.

`invoke` runs as a user runs it (a subprocess), from a scrubbed environment (PATH, HOME,
locale, TMPDIR, the Python cache prefix, DATABASE_URL, BACKUP_DIR, PGPASSWORD and a signing key
made for the run: none of the caller's BACKUP_STORE, BACKUP_NOTIFY_URL, age recipients, content
hashes, lock timeout or PG_BIN_DIR), wrapped so that its own peak memory and its children's are
reported apart; an untimed `invoke --list` first compiles the modules into the cache. Printed:
medians of wall time, client CPU (every process the method started), server CPU (the cluster's
processes), peak RSS of the tool process and of its largest child, output size; then every
ratio as the median of the per-round paired ratios (a round's runs share the machine's load),
their min-max, and MET / NOT MET against the issue's target. The load average is recorded
before every run; its maximum is printed per database, with a warning above the core count.

Statistics: 3 rounds (the default) give a rough median; `--rounds 5` a steadier one.
Run time and disk: on this project's 2-core machine (shared, load 2-4), one version at
`--size 100 --rounds 1` (three databases, 56-118 MiB each) took 99 s, of which 14 s building.
Time grows about linearly with size and rounds: the default (~1 GB, 3 rounds, 2 versions) is
some 1.5 hours or more, so try `--pg 17 --size 100 --rounds 1` first. Disk, per version (one
runs at a time): the cluster (about 1.2x `--size` per database, with its indexes) plus up to
max_wal_size (1 GB) of WAL, plus the plain, split, directory and ours copies (about 3x `--size`),
all under TMPDIR (RAM if that is a tmpfs): plan for 5x `--size` + 1 GB free.
"""

from __future__ import annotations

import argparse
import difflib
import json
import os
import re
import resource
import secrets
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
from tasks.engine.conn import Target  # noqa: E402
from tasks.engine.errors import BackupError  # noqa: E402
from tasks.engine.sandbox import Cluster, server_suite  # noqa: E402
from tasks.engine.sqltext import qualified  # noqa: E402

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
ALTER TABLE docs ALTER id ADD GENERATED BY DEFAULT AS IDENTITY;
SELECT setval(pg_get_serial_sequence('docs', 'id'), {docs});
CREATE SEQUENCE invoice_numbers START 1000;
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
ALTER TABLE orders ALTER id ADD GENERATED BY DEFAULT AS IDENTITY;
SELECT setval(pg_get_serial_sequence('orders', 'id'), {n});
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
ALTER TABLE events ALTER id ADD GENERATED BY DEFAULT AS IDENTITY;
SELECT setval(pg_get_serial_sequence('events', 'id'), {n});
"""
    subprocess.run([*psql, "-c", sql, "-c", "VACUUM ANALYZE"], env=env, check=True, stdout=subprocess.DEVNULL)
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


def schema(url: str, bindir: Path, env: dict[str, str]) -> list[str]:
    """pg_dump --schema-only, normalised: no comments, no blank lines, no \\restrict/\\unrestrict
    lines (their key is random per run). Equal output: equal tables, indexes, constraints,
    triggers, functions, policies, ownership and privileges."""
    argv = [str(bindir / "pg_dump"), "--schema-only", "--no-password", f"--dbname={url}"]
    out = subprocess.run(argv, env=env, check=True, capture_output=True, text=True).stdout
    return [ln for ln in out.splitlines() if ln.strip() and not ln.startswith("--") and not ln.startswith(("\\restrict", "\\unrestrict"))]


def sequences(target: Target) -> dict[str, tuple[int, bool]]:
    with target.connect() as conn:
        names = conn.execute(
            "SELECT n.nspname, c.relname FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
            "WHERE c.relkind = 'S' ORDER BY 1, 2"
        ).fetchall()
        out = {}
        for nsp, rel in names:
            row = conn.execute(f"SELECT last_value, is_called FROM {qualified(nsp, rel)}").fetchone()
            assert row is not None
            out[f"{nsp}.{rel}"] = (int(row[0]), bool(row[1]))
        return out


def differences(a: dict, b: dict, what: str) -> list[str]:
    """What differs between two name -> value maps, in a few words each."""
    out = [f"{what} {k}: source {a.get(k)}, restored {b.get(k)}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
    return out[:5] + ([f"... and {len(out) - 5} more {what} differences"] if len(out) > 5 else [])


class Source:
    """What a restore must reproduce, read once per source database."""

    def __init__(self, cluster: Cluster, db: str, bindir: Path, env: dict[str, str]):
        url = cluster.target(db).conninfo()
        self.counts, self.schema, self.sequences = counts(url, bindir, env), schema(url, bindir, env), sequences(cluster.target(db))

    def check(self, cluster: Cluster, db: str, bindir: Path, env: dict[str, str]) -> list[str]:
        """Every difference between the restored database `db` and the source; empty: equal."""
        url = cluster.target(db).conninfo()
        found = differences(self.counts, counts(url, bindir, env), "rows of")
        got = schema(url, bindir, env)
        if got != self.schema:
            diff = list(difflib.unified_diff(self.schema, got, "source", "restored", n=0, lineterm=""))[2:]
            body = [ln for ln in diff if not ln.startswith("@@")]
            found.append(f"schema differs ({len(body)} lines): " + " | ".join(body[:6]) + (" | ..." if len(body) > 6 else ""))
        return found + differences(self.sequences, sequences(cluster.target(db)), "sequence")


def scrubbed_env(base: dict[str, str]) -> dict[str, str]:
    """What `invoke` gets: enough to run as a user runs it and none of the caller's backup
    settings (BACKUP_STORE would upload to their bucket, BACKUP_NOTIFY_URL fire their webhooks,
    BACKUP_CONTENT_HASHES, BACKUP_AGE_RECIPIENTS, LOCK_TIMEOUT, PG_BIN_DIR change what is measured)."""
    keep = {"PATH", "HOME", "LANG", "TMPDIR", "PGPASSWORD", "PGCONNECT_TIMEOUT"}
    env = {k: v for k, v in base.items() if k in keep or k.startswith(("LC_", "PYTHON"))}
    # as installed: Python's compiled modules cached (kept out of the source tree), not
    # compiled again on every run as PYTHONDONTWRITEBYTECODE would make it
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(PYCACHE)
    return env


class RunFailed(Exception):
    pass


class Bench:
    def __init__(self, cluster: Cluster, bindir: Path, tmp: Path, jobs: int):
        self.cluster, self.bindir, self.tmp, self.jobs = cluster, bindir, tmp, jobs
        self.env = cluster.target("postgres").tool_env()
        # ours signs with a key made for this run (the user's own key file stays untouched)
        self.ours_env = dict(scrubbed_env(self.env), BACKUP_SIGNING_KEY=secrets.token_hex(32))
        self.n = 0

    def url(self, db: str) -> str:
        return self.cluster.target(db).conninfo()

    def fresh(self) -> str:
        self.n += 1
        name = f"dst_{self.n}"
        self.cluster.create_database(name)
        return name

    def sh(self, *argv: str, out: Path | None = None) -> None:
        """Run a raw tool; with `out`, its stdout goes to that file, fsynced before returning
        (a backup is done when it is on disk)."""
        with open(out, "wb") if out else open(os.devnull, "wb") as f:
            done = subprocess.run(list(argv), env=self.env, stdout=f, stderr=subprocess.PIPE, text=True)
            if out:
                os.fsync(f.fileno())
        if done.returncode != 0:
            raise RunFailed(f"{Path(argv[0]).name} exited {done.returncode}: {pgtools.tail(done.stderr)}")

    def tool(self, name: str) -> str:
        return str(self.bindir / name)

    def invoke(self, *args: str, db: str, bdir: Path) -> dict:
        stats = self.tmp / "stats.json"
        env = dict(self.ours_env, DATABASE_URL=self.cluster.url(db), BACKUP_DIR=str(bdir), BENCH_STATS=str(stats))
        done = subprocess.run([sys.executable, str(WRAP), "--search-root", str(ROOT), *args], env=env, cwd=self.tmp, capture_output=True, text=True)
        if done.returncode != 0:
            raise RunFailed(f"invoke {args[0]} exited {done.returncode}: {pgtools.tail(done.stderr)}")
        return json.loads(stats.read_text())

    def warm_up(self, db: str) -> None:
        """Untimed: the first ever run compiles every module into the cache prefix."""
        self.invoke("--list", db=db, bdir=self.tmp / "backups")

    def settle(self) -> None:
        """Untimed, before every run: the previous method's files reach the disk, and the WAL
        it wrote is checkpointed, so neither is paid by the next method."""
        os.sync()
        with self.cluster.target().connect(autocommit=True) as conn:
            conn.execute("CHECKPOINT")

    def backup_folder(self) -> Path:
        return next(p for p in (self.tmp / "backups").iterdir() if p.is_dir() and not p.name.startswith("."))

    def run(self, method: str, src: str, source: Source) -> dict:
        """One timed run; returns wall, client/server CPU, memory, size, load, and for a restore
        `diff`: what differs from the source (empty: a faithful restore)."""
        t = self.tmp
        extra: dict = {}
        dst = self.fresh() if "restore" in method else None
        self.settle()
        load = float(Path("/proc/loadavg").read_text().split()[0])
        r0, s0, w0 = resource.getrusage(resource.RUSAGE_CHILDREN), server_cpu(self.cluster), time.perf_counter()
        failed = None
        try:
            if method == "raw backup":
                self.sh(self.tool("pg_dump"), "-f", str(t / "plain.sql"), f"--dbname={self.url(src)}")
                # plain-format pg_dump -f does not fsync its output (strace: no fsync call); a
                # backup is done when it is on disk, so the fsync is timed here
                fd = os.open(t / "plain.sql", os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
                extra["size"] = (t / "plain.sql").stat().st_size
            elif method == "split backup":
                self.sh(self.tool("pg_dump"), "--schema-only", f"--dbname={self.url(src)}", out=t / "schema.sql")
                self.sh(self.tool("pg_dump"), "--data-only", "--disable-triggers", f"--dbname={self.url(src)}", out=t / "data.sql")
                extra["size"] = (t / "schema.sql").stat().st_size + (t / "data.sql").stat().st_size
            elif method == "dir backup":
                shutil.rmtree(t / "dir", ignore_errors=True)
                # -Fd fsyncs its files itself
                self.sh(self.tool("pg_dump"), "-Fd", "-j", str(self.jobs), "-Z0", "-f", str(t / "dir"), f"--dbname={self.url(src)}")
                extra["size"] = sum(p.stat().st_size for p in (t / "dir").iterdir())
            elif method == "ours backup":
                shutil.rmtree(t / "backups", ignore_errors=True)
                extra.update(self.invoke("backup", db=src, bdir=t / "backups"))
                folder = self.backup_folder()
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
                jobs = ["--jobs", str(self.jobs)] if method.endswith("-j") else []
                args = ("restore", "--id", self.backup_folder().name, "--target", self.cluster.url(dst), "--yes", "--no-undo", *jobs)
                extra.update(self.invoke(*args, db=src, bdir=t / "backups"))
        except RunFailed as exc:
            if dst is None:
                raise  # nothing to restore from: the bench cannot go on
            failed = str(exc)
        r1, s1, w1 = resource.getrusage(resource.RUSAGE_CHILDREN), server_cpu(self.cluster), time.perf_counter()
        out = {"wall": w1 - w0, "client_cpu": r1.ru_utime + r1.ru_stime - r0.ru_utime - r0.ru_stime, "server_cpu": s1 - s0, "load": load, **extra}
        if dst is not None:
            out["diff"] = [failed] if failed else source.check(self.cluster, dst, self.bindir, self.env)
            self.cluster.drop_database(dst)
        return out


BACKUPS = ["raw backup", "split backup", "dir backup", "ours backup"]
RESTORES = ["raw restore", "split restore", "dir restore", "ours restore", "ours restore -j"]


def version(argv: list[str]) -> str:
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=20).stdout.strip() or "?"
    except (OSError, subprocess.SubprocessError):
        return "missing"


def machine() -> str:
    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines() if ln.startswith("model name")), "?")
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    tmp = tempfile.gettempdir()
    fs = version(["stat", "-f", "-c", "%T", tmp])
    return f"machine: {cpu}, {os.cpu_count()} cores, {memory:.0f} GiB, kernel {os.uname().release}; TMPDIR {tmp} on {fs}"


def header(cluster: Cluster, bindir: Path) -> str:
    zstd = re.search(r"v\d+\.\d+\.\d+", version(["zstd", "--version"]))
    names = ("fsync", "synchronous_commit", "full_page_writes", "shared_buffers", "max_wal_size")
    with cluster.target().connect() as conn:
        shown = [f"{n}={conn.execute(f'SHOW {n}').fetchone()[0]}" for n in names]  # type: ignore[index]
    return (
        f"server PostgreSQL {cluster.suite.version} ({'durable' if cluster.durable else 'NOT durable: --no-durable'}): {', '.join(shown)}\n"
        f"tools: {version([str(bindir / 'pg_dump'), '--version'])}; {version([str(bindir / 'psql'), '--version'])}; "
        f"zstd {zstd.group(0) if zstd else 'missing'}\n"
        "raw plain and split backups are timed up to an fsync of their files (pg_dump does not fsync plain output); "
        "-Fd and ours fsync their own"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--size", type=int, default=1024, help="MB per database, about (default 1024)")
    ap.add_argument("--rounds", type=int, default=3, help="rounds (default 3; 5 give a steadier median)")
    ap.add_argument("--pg", type=int, nargs="+", default=[15, 17])
    ap.add_argument("--db", nargs="+", default=["mixed", "wide", "big"], choices=["mixed", "wide", "big"])
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--no-durable", dest="durable", action="store_false", help="fsync, synchronous_commit, full_page_writes off (fast, unrealistic)")
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
    try:
        failures = bench(args)
    except (BackupError, RunFailed) as exc:
        raise SystemExit(f"error: {exc}") from None
    if failures:
        print("\nFAILED: these restores differ from their source (no ratio printed for them):", file=sys.stderr)
        for line in failures:
            print(f"  {line}", file=sys.stderr)
        raise SystemExit(1)


def bench(args: argparse.Namespace) -> list[str]:
    print(f"{machine()}\n{args.rounds} rounds; ratios are medians of per-round paired ratios [min-max]", flush=True)
    everything = []
    failures: list[str] = []
    warm = False
    for major in args.pg:
        suite = server_suite(major)
        tools = pgtools.pick(pgtools.discover(), at_least=major, prefer=major, tools=("pg_dump", "psql", "pg_restore", "pgbench"))
        with Cluster(suite, durable=args.durable) as cluster, tempfile.TemporaryDirectory(prefix="fortress-bench-") as tmp:
            print(header(cluster, tools.bindir), flush=True)
            compression_shown = False
            for kind in args.db:
                t0 = time.perf_counter()
                print(f"building {kind} on PostgreSQL {suite.version} ...", file=sys.stderr, flush=True)
                src = build(cluster, kind, args.size, tools.bindir)
                with cluster.target(src).connect() as c:
                    size = c.execute("SELECT pg_database_size(current_database())").fetchone()[0]  # type: ignore[index]
                built = time.perf_counter() - t0
                print(f"\nPostgreSQL {suite.version}, database {kind}: {size / 2**20:.0f} MiB (built in {built:.0f} s)", flush=True)
                b = Bench(cluster, tools.bindir, Path(tmp), args.jobs)
                source = Source(cluster, src, tools.bindir, b.env)
                if not warm:
                    b.warm_up(src)
                    warm = True
                backups = [m for m in BACKUPS if m in args.methods]
                restores = [m for m in RESTORES if m in args.methods]
                runs: dict[str, list[dict]] = {m: [] for m in backups + restores}
                for r in range(args.rounds):
                    order = backups[r % len(backups) :] + backups[: r % len(backups)]
                    order += restores[r % len(restores) :] + restores[: r % len(restores)] if restores else []
                    for m in order:  # every backup of this round, then every restore from them
                        one = b.run(m, src, source)
                        runs[m].append(one)
                        state = "" if "diff" not in one else (" ok" if not one["diff"] else " DIFFERS")
                        print(f"  PG{major} {kind} round {r + 1}/{args.rounds}: {m} {one['wall']:.2f} s{state}", file=sys.stderr, flush=True)
                        if m == "ours backup" and not compression_shown:
                            manifest = json.loads((b.backup_folder() / "manifest.json").read_text())
                            print(f"ours: compression {manifest.get('tools', {}).get('compression', '?')}", flush=True)
                            compression_shown = True
                failures += report(major, kind, runs)
                everything.append({"pg": major, "db": kind, "bytes": size, "runs": runs})
                cluster.drop_database(src)
    if args.json:
        args.json.write_text(json.dumps(everything, indent=1))
    return failures


def med(runs: list[dict], key: str) -> float:
    vals = [r[key] for r in runs if r.get(key) is not None]
    return statistics.median(vals) if vals else float("nan")


# the targets: label, numerator, denominator, comparison, bound, measure
TARGETS = [
    ("restore ours/psql -f", "ours restore", "raw restore", "<=", 1.05, "wall"),
    ("restore ours/split", "ours restore", "split restore", "<", 1.0, "wall"),
    ("restore ours -j/pg_restore -j", "ours restore -j", "dir restore", "<=", 1.05, "wall"),
    ("restore psql -f/ours -j", "raw restore", "ours restore -j", ">=", 1.3, "wall"),
    ("backup ours/pg_dump -f", "ours backup", "raw backup", "<=", 1.10, "wall"),
    ("size ours/plain", "ours backup", "raw backup", "<=", 0.2, "size"),
]


def report(major: int, kind: str, runs: dict[str, list[dict]]) -> list[str]:
    """Prints the table and the ratios; returns a line per restore run that differed."""
    print(f"{'method':<16}{'wall s':>8}{'client cpu':>11}{'server cpu':>11}{'tool MB':>9}{'kids MB':>9}{'output MB':>10}  checked")
    failures, bad = [], set()
    for m, rs in runs.items():
        tool = f"{med(rs, 'self_rss_mb'):9.0f}" if "self_rss_mb" in rs[0] else f"{'':>9}"
        child = f"{med(rs, 'children_rss_mb'):9.0f}" if "children_rss_mb" in rs[0] else f"{'':>9}"
        size_s = f"{med(rs, 'size') / 2**20:10.1f}" if "size" in rs[0] else f"{'':>10}"
        wrong = [(i, r["diff"]) for i, r in enumerate(rs) if r.get("diff")]
        ok = "" if "diff" not in rs[0] else ("ok" if not wrong else f"DIFFERS in {len(wrong)} of {len(rs)} runs")
        print(f"{m:<16}{med(rs, 'wall'):8.2f}{med(rs, 'client_cpu'):11.2f}{med(rs, 'server_cpu'):11.2f}{tool}{child}{size_s}  {ok}")
        if wrong:
            bad.add(m)
            failures += [f"PG{major} {kind} {m} round {i + 1}: {'; '.join(d)}" for i, d in wrong]
    cores = os.cpu_count() or 1
    peak = max(r["load"] for rs in runs.values() for r in rs)
    print(f"load average before runs: max {peak:.2f} ({cores} cores)" + (" WARNING: above the core count, numbers are noisy" if peak > cores else ""))
    parts = []
    for label, a, b, op, bound, key in TARGETS:
        if a not in runs or b not in runs:
            continue
        if a in bad or b in bad:
            parts.append(f"{label}: not computed, {a if a in bad else b} differs from its source")
            continue
        paired = [x[key] / y[key] for x, y in zip(runs[a], runs[b], strict=True) if y.get(key)]
        mid = statistics.median(paired)
        met = mid <= bound if op == "<=" else mid < bound if op == "<" else mid >= bound
        fmt = ".3f" if key == "size" else ".2f"
        parts.append(f"{label} {mid:{fmt}} [{min(paired):{fmt}}-{max(paired):{fmt}}] (target {op} {bound}: {'MET' if met else 'NOT MET'})")
    if "ours restore" in runs and "self_cpu" in runs["ours restore"][0]:
        parts.append(
            f"tool's own CPU in restore {med(runs['ours restore'], 'self_cpu'):.2f} s, its children's "
            f"{med(runs['ours restore'], 'children_cpu'):.2f} s (the tool's includes its 200 ms memory sampler)"
        )
    print(f"ratios PG{major} {kind}:\n  " + "\n  ".join(parts), flush=True)
    return failures


if __name__ == "__main__":
    main()
