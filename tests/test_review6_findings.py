"""Review 6 (the speed paths, as an attacker): `restore --jobs` must change nothing until its
seekable copy of a PG 15 archive is made and checked, must never write an encrypted backup's
plaintext to disk, must say "partly restored" for anything that stops it after its first step
commits, must not drop what appeared in an "empty" target while its plan was shown, and must
notice a backup file written to while it runs."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from pathlib import Path

import pytest

from tasks.engine import catalog, crypt
from tasks.engine.dump import create_backup
from tasks.engine.errors import IntegrityError, Interrupted, RestoreFailed, UsageError
from tasks.engine.restore import execute_restore, parallel, plan_restore, statements
from tasks.engine.storage import LocalStore
from tests.fixtures_cli import SOURCE_SQL, error_line
from tests.helpers import fingerprints, psql, resign, scalar, seeded, state
from tests.test_storage_contract import age_key

# a few MB before compression: the PG 15 archive is zstd-wrapped and must be decompressed for --jobs
BULK = (
    SOURCE_SQL
    + "CREATE TABLE app.bulk (id int PRIMARY KEY, t text);\n"
    + "INSERT INTO app.bulk SELECT g, repeat(md5(g::text), 8) FROM generate_series(1, 20000) g;\n"
)


def _backup(dbs, tmp_path, sql=SOURCE_SQL, **store_kw):
    source = seeded(dbs, "r6src", sql)
    store = LocalStore(tmp_path / "b", **store_kw)
    return source, store, create_backup(source, store).backup_id


def _manifest(store, backup_id):
    path = store.local_path(backup_id, "manifest.json")
    return path, json.loads(path.read_text())


@pytest.fixture
def small_tmp(tmp_path):
    """TMPDIR on a 16 MB tmpfs (root only), for the duration of the test."""
    mnt = tmp_path / "smalltmp"
    mnt.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mnt)], capture_output=True).returncode != 0:
        pytest.skip("needs root to mount a small tmpfs")
    old = os.environ.get("TMPDIR")
    os.environ["TMPDIR"] = str(mnt)
    tempfile.tempdir = None
    try:
        yield mnt
    finally:
        if old is None:
            os.environ.pop("TMPDIR", None)
        else:
            os.environ["TMPDIR"] = old
        tempfile.tempdir = None
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_jobs_without_room_for_the_decompressed_archive_changes_nothing(dbs15, tmp_path, small_tmp):
    source, store, backup_id = _backup(dbs15, tmp_path, BULK)
    _, m = _manifest(store, backup_id)
    assert next(f for f in m["files"] if f["name"] == "app.dump").get("raw_size"), "a PG 15 archive is zstd-wrapped"
    target = seeded(dbs15, "r6dst", "CREATE SCHEMA app; CREATE TABLE app.keep (id int); INSERT INTO app.keep VALUES (1);")
    before = state(target)
    with pytest.raises(RestoreFailed) as info:
        execute_restore(plan_restore(store, catalog.load(store, backup_id), target), store, jobs=2)
    assert info.value.target_unchanged
    assert "free" in info.value.message and "nothing was changed" in info.value.message
    assert state(target) == before


def test_jobs_refuses_an_archive_that_decompresses_beyond_its_signed_raw_size(dbs15, tmp_path):
    source, store, backup_id = _backup(dbs15, tmp_path, BULK)
    path, m = _manifest(store, backup_id)
    f = next(f for f in m["files"] if f["name"] == "app.dump")
    f["raw_size"] = f["raw_size"] // 4  # what a zstd bomb's manifest would claim
    path.write_text(json.dumps(m))
    resign(path.parent)
    target = seeded(dbs15, "r6dst", "CREATE SCHEMA app; CREATE TABLE app.keep (id int); INSERT INTO app.keep VALUES (1);")
    before = state(target)
    with pytest.raises(IntegrityError) as info:
        execute_restore(plan_restore(store, catalog.load(store, backup_id), target), store, jobs=2)
    assert "decompresses to more than" in info.value.message and "nothing was changed" in info.value.message
    assert state(target) == before


def test_jobs_never_writes_an_encrypted_backups_plaintext(dbs, tmp_path, monkeypatch):
    public, keyfile = age_key(tmp_path)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setenv("TMPDIR", str(scratch))
    monkeypatch.setattr(tempfile, "tempdir", None)
    source, store, backup_id = _backup(dbs, tmp_path, SOURCE_SQL, recipients=[public], identity=crypt.load_identity(str(keyfile)))
    target = dbs.new("r6dst")
    before = state(target)
    with pytest.raises(UsageError) as info:
        execute_restore(plan_restore(store, catalog.load(store, backup_id), target), store, jobs=2)
    assert "never written to disk" in info.value.message and "nothing was changed" in info.value.message
    assert state(target) == before
    assert not any(p.is_file() and p.stat().st_size > 1000 for p in scratch.rglob("*"))


def _step_hook(when: str, action):
    def step(message: str) -> None:
        if message.startswith(when):
            action()

    return step


def test_jobs_stopped_after_its_first_step_says_partly_restored(dbs, tmp_path):
    source, store, backup_id = _backup(dbs, tmp_path)
    target = dbs.new("r6dst")

    def ctrl_c():
        raise KeyboardInterrupt

    with pytest.raises(Interrupted) as info:
        execute_restore(plan_restore(store, catalog.load(store, backup_id), target), store, jobs=2, step=_step_hook("loading rows", ctrl_c))
    assert not info.value.target_unchanged
    assert "partly restored" in info.value.message


@pytest.mark.parametrize("undo_taken", [True, False], ids=["undo", "no-undo"])
def test_jobs_failing_to_start_pg_restore_after_its_first_step_says_partly_restored(dbs, tmp_path, monkeypatch, undo_taken):
    """A full disk when pg_restore starts: partly restored; the hint points at the undo point only
    where one was taken."""
    source, store, backup_id = _backup(dbs, tmp_path)
    target = dbs.new("r6dst")

    def no_tool():
        monkeypatch.setattr(parallel.pgtools, "popen", _fails)

    plan = plan_restore(store, catalog.load(store, backup_id), target)
    with pytest.raises(RestoreFailed) as info:
        execute_restore(plan, store, jobs=2, undo_taken=undo_taken, step=_step_hook("loading rows", no_tool))
    assert not info.value.target_unchanged
    assert "partly restored" in info.value.message and "No space left" in info.value.message
    assert info.value.hint is not None
    assert ("its undo point" in info.value.hint) == undo_taken
    assert ("no undo point was taken" in info.value.hint) == (not undo_taken)


def _fails(*a, **k):
    raise OSError(28, "No space left on device")


def test_jobs_without_undo_does_not_drop_what_appeared_while_the_plan_was_shown(dbs, tmp_path):
    source, store, backup_id = _backup(dbs, tmp_path)
    target = dbs.new("r6dst")
    plan = plan_restore(store, catalog.load(store, backup_id), target)
    assert plan.target_empty
    psql(target, "CREATE TABLE public.arrived (id int); INSERT INTO public.arrived VALUES (7);")
    with pytest.raises(RestoreFailed) as info:
        execute_restore(plan, store, jobs=2, undo_taken=False)
    assert info.value.target_unchanged
    assert statements.TARGET_NO_LONGER_EMPTY in info.value.message
    assert scalar(target, "SELECT id FROM public.arrived") == 7


def test_jobs_with_an_undo_point_does_not_recheck_emptiness(dbs, tmp_path):
    source, store, backup_id = _backup(dbs, tmp_path)
    target = seeded(dbs, "r6dst", "CREATE TABLE public.old (id int);")
    execute_restore(plan_restore(store, catalog.load(store, backup_id), target), store, jobs=2, undo_taken=True)
    assert fingerprints(target) == fingerprints(source)


def test_jobs_notices_a_backup_file_written_while_it_runs(dbs, tmp_path):
    source, store, backup_id = _backup(dbs, tmp_path)
    target = dbs.new("r6dst")
    app = Path(store.local_path(backup_id, "app.dump"))

    touch = _step_hook("loading rows", lambda: os.utime(app))
    with pytest.raises(RestoreFailed) as info:
        execute_restore(plan_restore(store, catalog.load(store, backup_id), target), store, jobs=2, step=touch)
    assert "app.dump" in info.value.message and "changed while it was being restored" in info.value.message


def test_jobs_with_an_encrypted_backup_is_refused_before_the_prompt_and_the_undo_point(dbs, project, invoke_cli):
    public, keyfile = age_key(project)
    source = seeded(dbs, "r6src", SOURCE_SQL)
    target = seeded(dbs, "r6dst", "CREATE TABLE public.old (id int);")
    bdir = project / "backups"
    env = {"DATABASE_URL": dbs.url(source), "BACKUP_DIR": str(bdir), "BACKUP_AGE_RECIPIENTS": public, "BACKUP_AGE_IDENTITY": str(keyfile)}
    assert invoke_cli("backup", env=env).returncode == 0
    before, ids = state(target), sorted(p.name for p in bdir.iterdir())
    backup_id = next(i for i in ids if not i.startswith("."))

    res = invoke_cli("restore", "--id", backup_id, "--target", dbs.url(target), "--yes", "--jobs", "2", env=env)

    assert res.returncode == 2, res.stdout + res.stderr
    assert "an encrypted backup's plaintext is never written to disk" in error_line(res)
    assert state(target) == before
    assert "Restore plan" not in res.stderr and "dumping" not in res.stderr  # refused before the plan and the undo point
    assert sorted(p.name for p in bdir.iterdir()) == ids
