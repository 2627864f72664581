"""`invoke restore --jobs N`: pg_restore --jobs for rows, indexes and constraints.

Not one transaction, so: allowed only with an undo point or into an empty target (refused
otherwise before anything changes), said in the plan, the same result as the default restore,
and a failure after the schema committed says the target is partly restored.
"""

from __future__ import annotations

import json

import pytest

from tasks.engine import catalog
from tasks.engine.dump import create_backup
from tasks.engine.errors import ExitCode, RestoreFailed
from tasks.engine.restore import execute_restore, plan_restore
from tasks.engine.storage import LocalStore
from tests.fixtures_cli import SOURCE_SQL, TARGET_SQL, engine_backup, error_line, tree
from tests.helpers import fingerprints, psql, resign, schema_dump, seeded, state

APP = (
    SOURCE_SQL
    + """
CREATE INDEX ON app.notes (body);
CREATE VIEW app.item_notes AS SELECT i.id, n.body FROM app.items i JOIN app.notes n ON n.item_id = i.id;
CREATE MATERIALIZED VIEW app.note_count AS SELECT count(*) AS n FROM app.notes;
CREATE ROLE fortress_reader_par NOLOGIN;
GRANT USAGE ON SCHEMA app TO fortress_reader_par;
GRANT SELECT ON app.items TO fortress_reader_par;
SELECT lo_from_bytea(0, 'large object');
"""
)


def test_jobs_restore_gives_what_the_one_transaction_restore_gives(dbs, tmp_path):
    source = seeded(dbs, "psrc", APP)
    store = LocalStore(tmp_path / "b")
    backup_id = create_backup(source, store).backup_id
    one, par = dbs.new("pone"), dbs.new("ppar")
    execute_restore(plan_restore(store, catalog.load(store, backup_id), one), store)
    result = execute_restore(plan_restore(store, catalog.load(store, backup_id), par), store, jobs=2)
    assert result.tables_checked == 3
    assert fingerprints(par) == fingerprints(one) == fingerprints(source)
    assert schema_dump(par) == schema_dump(one)


def test_jobs_without_undo_into_a_non_empty_target_is_refused(dbs, project, invoke_cli):
    source = seeded(dbs, "psrc", SOURCE_SQL)
    target = seeded(dbs, "pdst", TARGET_SQL)
    bdir = project / "backups"
    backup_id = engine_backup(source, bdir)
    before, files = state(target), tree(bdir)
    env = {"DATABASE_URL": dbs.url(target), "BACKUP_DIR": str(bdir)}

    res = invoke_cli("restore", "--id", backup_id, "--yes", "--no-undo", "--jobs", "2", env=env)

    assert res.returncode == ExitCode.USAGE, res.stdout + res.stderr
    line = error_line(res)
    assert "--jobs is not one transaction, so it needs the undo point" in line and "nothing was changed" in line
    assert state(target) == before
    assert tree(bdir) == files


def test_jobs_with_the_undo_point_says_so_in_the_plan_and_restores(dbs, project, invoke_cli):
    source = seeded(dbs, "psrc", SOURCE_SQL)
    target = seeded(dbs, "pdst", TARGET_SQL)
    bdir = project / "backups"
    backup_id = engine_backup(source, bdir)

    res = invoke_cli("restore", "--id", backup_id, "--yes", "--jobs", "2", env={"DATABASE_URL": dbs.url(target), "BACKUP_DIR": str(bdir)})

    assert res.returncode == 0, res.stdout + res.stderr
    assert "NOT one: schema and platform data commit first" in " ".join((res.stdout + res.stderr).split())
    assert "undo point" in res.stdout
    assert fingerprints(target) == fingerprints(source)


def test_a_failed_parallel_restore_says_the_target_is_partly_restored(dbs, tmp_path):
    source = seeded(dbs, "psrc", SOURCE_SQL)
    store = LocalStore(tmp_path / "b")
    backup_id = create_backup(source, store).backup_id
    path = store.local_path(backup_id, "manifest.json")
    m = json.loads(path.read_text())
    for t in m["tables"]:
        if (t["schema"], t["name"]) == ("app", "items"):
            t["rows"] += 1
    path.write_text(json.dumps(m))
    resign(path.parent)
    target = dbs.new("pempty")
    with pytest.raises(RestoreFailed) as info:
        execute_restore(plan_restore(store, catalog.load(store, backup_id), target), store, jobs=2)
    assert not info.value.target_unchanged
    assert "partly restored" in info.value.message
    assert "restore check failed: app.items has 300 rows, the backup has 301" in info.value.message
    psql(target, "SELECT 1")
