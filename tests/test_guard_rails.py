"""Issue 8's guard rails that a tired person relies on: an undo point before every restore and
reset, and protected targets that --yes alone never changes. Real clusters, the real CLI."""

from __future__ import annotations

import re

from tasks.engine.errors import ExitCode
from tests.fixtures_cli import SOURCE_SQL, TARGET_SQL, engine_backup, error_line
from tests.helpers import seeded, state


def _env(dbs, target, bdir, **extra):
    return {"DATABASE_URL": dbs.url(target), "BACKUP_DIR": str(bdir), **extra}


def _undo_id(res) -> str:
    m = re.search(r"undo point (\S+); to put the target back: invoke restore --id (\S+)", res.stdout)
    assert m and m.group(1) == m.group(2), res.stdout
    return m.group(1)


def test_a_restore_leaves_an_undo_point_that_puts_the_target_back(dbs, project, invoke_cli):
    source, target = seeded(dbs, "src", SOURCE_SQL), seeded(dbs, "dst", TARGET_SQL)
    bdir = project / "backups"
    backup_id = engine_backup(source, bdir)
    before = state(target)

    res = invoke_cli("restore", "--id", backup_id, "--yes", env=_env(dbs, target, bdir))
    assert res.returncode == 0, res.stderr
    assert "undo point" in res.stderr and "a backup of the target first" in res.stderr  # said in the plan
    undo = _undo_id(res)
    assert state(target) == state(source)

    res = invoke_cli("restore", "--id", undo, "--yes", "--no-undo", env=_env(dbs, target, bdir))
    assert res.returncode == 0, res.stderr
    assert state(target) == before
    listed = invoke_cli("list", env=_env(dbs, target, bdir))
    assert "undo point" in listed.stdout


def test_no_undo_takes_no_backup_and_says_so(dbs, project, invoke_cli):
    source, target = seeded(dbs, "src", SOURCE_SQL), seeded(dbs, "dst", TARGET_SQL)
    bdir = project / "backups"
    backup_id = engine_backup(source, bdir)
    res = invoke_cli("restore", "--id", backup_id, "--yes", "--no-undo", env=_env(dbs, target, bdir))
    assert res.returncode == 0, res.stderr
    assert "none (--no-undo)" in res.stderr
    assert [p.name for p in bdir.iterdir() if not p.name.startswith(".")] == [backup_id]


def test_a_reset_leaves_an_undo_point(dbs, project, invoke_cli):
    target = seeded(dbs, "dst", SOURCE_SQL)
    bdir = project / "backups"
    before = state(target)
    res = invoke_cli("reset", "--yes", env=_env(dbs, target, bdir))
    assert res.returncode == 0, res.stderr
    undo = _undo_id(res)
    assert state(target) != before
    res = invoke_cli("restore", "--id", undo, "--yes", "--no-undo", env=_env(dbs, target, bdir))
    assert res.returncode == 0, res.stderr
    assert state(target) == before


def test_a_protected_target_needs_its_name_as_well_as_yes(dbs, project, invoke_cli):
    source, target = seeded(dbs, "src", SOURCE_SQL), seeded(dbs, "dst", TARGET_SQL)
    bdir = project / "backups"
    backup_id = engine_backup(source, bdir)
    before = state(target)
    env = _env(dbs, target, bdir, PROTECTED_TARGETS=f"postgresql://x@127.0.0.1:{dbs.cluster.port}/{target.dbname}")

    for extra in ([], ["--confirm-target", "postgres"]):
        res = invoke_cli("restore", "--id", backup_id, "--yes", *extra, env=env)
        assert res.returncode == ExitCode.DECLINED, res.stderr
        assert "protected target" in error_line(res) and f"--confirm-target {target.dbname}" in error_line(res)
        res = invoke_cli("reset", "--yes", *extra, env=env)
        assert res.returncode == ExitCode.DECLINED, res.stderr
    assert state(target) == before

    res = invoke_cli("restore", "--id", backup_id, "--yes", "--confirm-target", target.dbname, env=env)
    assert res.returncode == 0, res.stderr
    assert state(target) == state(source)
