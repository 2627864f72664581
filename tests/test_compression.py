"""zstd on every server version (issue 11, item 3), and the pg_attver trap.

pg_dump 15 writes only gzip. A newer pg_dump would write zstd, but pg_dump 17 against a
PostgreSQL 15.20 server writes `ALTER TABLE ONLY ... SET (pg_attver=N)` for every column, which
PostgreSQL 17 rejects. So a 15 server is dumped by its own pg_dump, uncompressed, through the
zstd tool; the archive must restore identically on 15 itself and on 17.
"""

from __future__ import annotations

import hashlib
import json
import shutil

import pytest

from tasks.engine import catalog, zstream
from tasks.engine.dump import create_backup
from tasks.engine.errors import IntegrityError, RestoreFailed
from tasks.engine.restore import execute_restore, plan_restore
from tasks.engine.storage import LocalStore
from tests.conftest import Databases
from tests.helpers import psql, resign, scalar, state
from tests.test_versions import VARIETY, assert_restored_like


@pytest.fixture(scope="module")
def pg15_backup(pg15, tmp_path_factory):
    source = Databases(pg15).new("zsrc")
    psql(source, VARIETY)
    store = LocalStore(tmp_path_factory.mktemp("zstd") / "b")
    result = create_backup(source, store)
    return source, store, result


def test_pg15_backup_is_zstd_from_its_own_pg_dump(pg15_backup):
    _, store, result = pg15_backup
    app = next(f for f in result.manifest["files"] if f["role"] == "app")
    assert result.manifest["tools"]["pg_dump"].startswith("15.")
    assert app["name"] == "app.dump" and app["format"] == "custom+zstd"
    assert zstream.is_zstd(store.local_path(result.backup_id, app["name"]))
    # the manifest records both sizes: stored (compressed) and the archive's raw size
    assert app["raw_size"] > 3 * app["size"]


@pytest.mark.parametrize("where", ["dbs15", "dbs17"])
def test_pg15_zstd_backup_restores_identically_on_15_and_17(pg15_backup, where, request):
    source, store, result = pg15_backup
    dbs = request.getfixturevalue(where)
    native, target = dbs.new("znative"), dbs.new("zdst")
    psql(native, VARIETY)
    plan = plan_restore(store, catalog.load(store, result.backup_id), target)
    execute_restore(plan, store)
    assert_restored_like(source, target, native)
    # no column option only the 15.20 server knows came along (pg_dump 17 would have written them)
    if where == "dbs17":
        assert scalar(target, "SELECT count(*) FROM pg_attribute WHERE array_to_string(attoptions, ',') LIKE '%pg_attver%'") == 0


def test_damaged_zstd_archive_fails_before_commit(pg15_backup, dbs15, tmp_path):
    source, store, result = pg15_backup
    copy = LocalStore(tmp_path / "b")
    folder = copy.root / result.backup_id
    folder.parent.mkdir(parents=True)
    shutil.copytree(store.root / result.backup_id, folder)
    app = folder / "app.dump"
    data = app.read_bytes()
    app.write_bytes(data[: len(data) * 2 // 3])
    manifest = json.loads((folder / "manifest.json").read_text())
    for f in manifest["files"]:
        if f["name"] == "app.dump":
            f["size"] = app.stat().st_size
            f["sha256"] = hashlib.sha256(app.read_bytes()).hexdigest()
    (folder / "manifest.json").write_text(json.dumps(manifest))
    resign(folder)
    target = dbs15.new("zbroken")
    psql(target, "CREATE TABLE public.keep (v text); INSERT INTO public.keep VALUES ('mine');")
    before = state(target)
    # found while listing the archive (plan) or while loading it (rolled back): either way first
    with pytest.raises((IntegrityError, RestoreFailed)) as info:
        plan = plan_restore(copy, catalog.load(copy, result.backup_id), target)
        execute_restore(plan, copy)
    assert "read app.dump: zstd:" in info.value.message
    assert info.value.target_unchanged
    assert state(target) == before
