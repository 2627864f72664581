"""Supabase runs PostgreSQL 15 and 17: backups cross between them in both directions.

pg_dump 17 writes `SET transaction_timeout` (which 15 rejects) and PG16+ role grants carry
INHERIT/SET options that 15 does not know; a restore must handle both. The check: restoring a
backup taken on one version gives the same database as loading the same SQL natively on the other.
"""

from __future__ import annotations

from pathlib import Path

from tasks.engine import catalog
from tasks.engine.dump import create_backup
from tasks.engine.restore import execute_restore, plan_restore
from tasks.engine.storage import LocalStore
from tests.helpers import fingerprints, psql, schema_dump

VARIETY = (Path(__file__).parent / "sql" / "variety.sql").read_text()
STALE = ("kit.mood_counts", "kit.never_filled")


def assert_restored_like(source, target, native) -> None:
    """`target`, restored from a backup of `source`, holds source's rows (less the matviews the
    restore refreshes) and the schema that loading VARIETY natively gives (`native`)."""
    src, dst = fingerprints(source), fingerprints(target)
    for name in src:
        if name not in STALE:
            assert dst[name] == src[name], name
    assert schema_dump(target) == schema_dump(native)


def _cross(source_dbs, target_dbs, tmp_path):
    source = source_dbs.new("src")
    native = target_dbs.new("native")
    target = target_dbs.new("dst")
    psql(source, VARIETY)
    psql(native, VARIETY)
    psql(target, "CREATE TABLE public.leftover (id int); INSERT INTO public.leftover VALUES (1);")
    store = LocalStore(tmp_path / "b")
    result = create_backup(source, store)
    plan = plan_restore(store, catalog.load(store, result.backup_id), target)
    execute_restore(plan, store)
    assert_restored_like(source, target, native)
    assert "public.leftover" not in fingerprints(target)
    return result, plan


def test_pg17_backup_restores_into_pg15(dbs17, dbs15, tmp_path):
    result, plan = _cross(dbs17, dbs15, tmp_path)
    assert result.manifest["tools"]["pg_dump"].startswith("17.")
    assert plan.server.major == 15
    # the archive written by pg_dump 17 needs pg_restore 17, even for a 15 server
    assert plan.suite.major == 17


def test_pg15_backup_restores_into_pg17(dbs15, dbs17, tmp_path):
    result, plan = _cross(dbs15, dbs17, tmp_path)
    assert result.manifest["tools"]["pg_dump"].startswith("15.")
    assert plan.server.major == 17
