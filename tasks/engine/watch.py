"""What the server says it is doing, for the progress line: rows copied (pg_stat_progress_copy,
PostgreSQL 14+) and indexes being built (pg_stat_progress_create_index), in one database.

A `ServerWatch` polls from its own short connection in a thread while a backup or restore runs,
so the dump and restore pipelines need no change: the task starts one around the engine call and
reads `describe()`. Progress is best effort: a watcher that cannot connect, or a server without
these views, reports nothing and never fails the run.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from .conn import Target

COPY_SQL = """
SELECT p.relid::bigint, n.nspname, c.relname, p.command, p.tuples_processed
  FROM pg_catalog.pg_stat_progress_copy p
  LEFT JOIN pg_catalog.pg_class c ON c.oid = p.relid
  LEFT JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
 WHERE p.datname = pg_catalog.current_database() AND p.pid <> pg_catalog.pg_backend_pid()
"""

INDEX_SQL = """
SELECT p.phase, p.blocks_done, p.blocks_total, p.tuples_done, p.tuples_total
  FROM pg_catalog.pg_stat_progress_create_index p
 WHERE p.datname = pg_catalog.current_database() AND p.pid <> pg_catalog.pg_backend_pid()
"""

ESTIMATE_SQL = """
SELECT pg_catalog.sum(GREATEST(c.reltuples, 0))::bigint
  FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relkind = 'r' AND n.nspname <> 'information_schema' AND n.nspname !~ '^pg_'

"""


@dataclass
class Snapshot:
    """Rows copied so far (all tables), the expected total if known, what is copying now, and
    the index being built."""

    rows_done: int = 0
    rows_total: int | None = None
    copying: list[str] = field(default_factory=list)
    index: str | None = None
    rate: float | None = None  # rows per second over the last polls


def _count(n: float) -> str:
    return f"{n:,.0f}"


class ServerWatch:
    def __init__(self, target: Target, *, rows_total: int | None = None, estimate: bool = False, interval: float = 1.0):
        """`rows_total`: the rows expected (a backup's manifest, for a restore); `estimate`: ask
        the server's statistics instead (a backup: reltuples of every table)."""
        self.target = target
        self.rows_total = rows_total
        self.estimate = estimate
        self.interval = interval
        self._seen: dict[int, int] = {}  # relid -> most rows seen copied
        self._samples: list[tuple[float, int]] = []
        self._now = Snapshot(rows_total=rows_total)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="server-progress", daemon=True)
        self._lock = threading.Lock()

    def __enter__(self) -> ServerWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=2 * self.interval + 1)

    def snapshot(self) -> Snapshot:
        with self._lock:
            return Snapshot(self._now.rows_done, self._now.rows_total, list(self._now.copying), self._now.index, self._now.rate)

    def describe(self) -> str:
        """`1,200,000 of ~5,000,000 rows (24%), 80,000 rows/s, about 48 s left; copying public.orders`"""
        return describe(self.snapshot())

    def _run(self) -> None:
        try:
            conn = self.target.connect(autocommit=True)
        except Exception:  # progress is best effort: no connection, no numbers
            return
        try:
            conn.execute("SET statement_timeout = 2000")
            if self.rows_total is None and self.estimate:
                est = conn.execute(ESTIMATE_SQL).fetchone()[0]
                self.rows_total = int(est) if est else None
            while not self._stop.is_set():
                self._poll(conn)
                self._stop.wait(self.interval)
        except Exception:
            return
        finally:
            try:
                conn.close()
            except Exception:
                pass

    def _poll(self, conn) -> None:
        copying = []
        for relid, schema, name, _command, tuples in conn.execute(COPY_SQL).fetchall():
            self._seen[relid] = max(self._seen.get(relid, 0), int(tuples or 0))
            # a table created in the restore's own transaction has no name visible from here yet
            what = f"{schema}.{name}" if name else "a table being restored"
            copying.append(f"{what} ({_count(tuples or 0)} rows)")
        index = None
        for phase, blocks_done, blocks_total, tuples_done, tuples_total in conn.execute(INDEX_SQL).fetchall():
            pct = ""
            if blocks_total:
                pct = f" {100 * (blocks_done or 0) / blocks_total:.0f}%"
            elif tuples_total:
                pct = f" {100 * (tuples_done or 0) / tuples_total:.0f}%"
            index = f"building an index: {phase}{pct}"
        done = sum(self._seen.values())
        now = time.monotonic()
        self._samples = [s for s in self._samples if now - s[0] <= 15] + [(now, done)]
        first = self._samples[0]
        rate = (done - first[1]) / (now - first[0]) if now - first[0] >= 1 else None
        with self._lock:
            self._now = Snapshot(done, self.rows_total, copying, index, rate)


def describe(s: Snapshot) -> str:
    parts = []
    if s.rows_done or s.copying:
        if s.rows_total:
            done = min(s.rows_done, s.rows_total)
            parts.append(f"{_count(done)} of ~{_count(s.rows_total)} rows ({100 * done / s.rows_total:.0f}%)")
        else:
            parts.append(f"{_count(s.rows_done)} rows")
        if s.rate:
            parts.append(f"{_count(s.rate)} rows/s")
            if s.rows_total and s.rows_total > s.rows_done:
                parts.append(f"about {(s.rows_total - s.rows_done) / s.rate:.0f} s left")
    text = ", ".join(parts)
    if s.copying:
        text += ("; " if text else "") + "copying " + ", ".join(s.copying)
    if s.index:
        text += ("; " if text else "") + s.index
    return text


def total_rows(tables: Mapping[str, int | None]) -> int | None:
    values = [v for v in tables.values() if v is not None]
    return sum(values) if values else None
