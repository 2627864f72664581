"""Undo brings back the server-wide things too: the roles, extensions (and, on the hosted
platform, pg_cron jobs) that a restore added are removed again when its undo point is restored,
each only if nothing uses it any more. Real clusters, the real CLI."""

from __future__ import annotations

import re
import uuid

from tests.fixtures_cli import TARGET_SQL, engine_backup
from tests.helpers import psql, scalar, seeded, state


def _env(dbs, target, bdir):
    return {"DATABASE_URL": dbs.url(target), "BACKUP_DIR": str(bdir)}


def _undo_id(res) -> str:
    m = re.search(r"invoke restore --id (\S+)", res.stdout)
    assert m, res.stdout
    return m.group(1)


def _source_with_new_role_and_extension(dbs, role: str):
    """A backup whose role and extension the target's server does not have (the role is dropped
    from the server after the backup, as if the backup came from elsewhere)."""
    source = seeded(
        dbs,
        "src",
        f"""
        CREATE ROLE "{role}" NOLOGIN;
        CREATE EXTENSION citext;
        CREATE SCHEMA app AUTHORIZATION "{role}";
        CREATE TABLE app.people (id int PRIMARY KEY, email citext);
        ALTER TABLE app.people OWNER TO "{role}";
        INSERT INTO app.people VALUES (1, 'A@x'), (2, 'b@X');
        """,
    )
    return source


def _role_exists(target, role: str) -> bool:
    return bool(scalar(target, f"SELECT count(*) FROM pg_roles WHERE rolname = '{role}'"))


def test_undo_removes_the_role_and_extension_the_restore_created(dbs, project, invoke_cli):
    role = f"undo role {uuid.uuid4().hex[:6]}"
    source = _source_with_new_role_and_extension(dbs, role)
    bdir = project / "backups"
    backup_id = engine_backup(source, bdir)
    dbs.cluster.drop_database(source.dbname)
    psql(dbs.cluster.target(), f'DROP ROLE "{role}"')
    target = seeded(dbs, "dst", TARGET_SQL)
    before = state(target)

    res = invoke_cli("restore", "--id", backup_id, "--yes", env=_env(dbs, target, bdir))
    assert res.returncode == 0, res.stderr
    assert _role_exists(target, role) and scalar(target, "SELECT count(*) FROM pg_extension WHERE extname = 'citext'") == 1
    assert "its undo point removes them again" in res.stderr
    undo = _undo_id(res)

    res = invoke_cli("restore", "--id", undo, "--yes", "--no-undo", env=_env(dbs, target, bdir))
    assert res.returncode == 0, res.stderr
    assert "will remove" in res.stderr and role in res.stderr and "citext" in res.stderr  # in the plan
    assert not _role_exists(target, role)
    assert scalar(target, "SELECT count(*) FROM pg_extension WHERE extname = 'citext'") == 0
    assert state(target) == before
    assert f"removed the roles the undone restore had created: {role}" in " ".join(res.stderr.split())


def test_undo_keeps_a_created_role_that_is_in_use_elsewhere(dbs, project, invoke_cli):
    role = f"undo_used_{uuid.uuid4().hex[:6]}"
    source = _source_with_new_role_and_extension(dbs, role)
    bdir = project / "backups"
    backup_id = engine_backup(source, bdir)
    dbs.cluster.drop_database(source.dbname)
    psql(dbs.cluster.target(), f'DROP ROLE "{role}"')
    target = seeded(dbs, "dst", TARGET_SQL)
    res = invoke_cli("restore", "--id", backup_id, "--yes", env=_env(dbs, target, bdir))
    assert res.returncode == 0, res.stderr
    undo = _undo_id(res)
    other = dbs.new("other")  # someone starts using the new role in another database
    psql(other, f'CREATE TABLE mine (id int); ALTER TABLE mine OWNER TO "{role}"')

    res = invoke_cli("restore", "--id", undo, "--yes", "--no-undo", env=_env(dbs, target, bdir))
    assert res.returncode == 0, res.stderr  # the undo itself is not failed by it
    assert _role_exists(target, role)
    assert f"kept {role}: still in use" in " ".join(res.stderr.split())
    psql(other, "DROP TABLE mine")
    psql(dbs.cluster.target(), f'DROP ROLE "{role}"')


def test_an_unsigned_aftermath_is_never_acted_on(dbs, project, invoke_cli):
    """A file dropped into an undo point's folder cannot make a restore drop roles."""
    victim = f"victim_{uuid.uuid4().hex[:6]}"
    try:
        target = seeded(dbs, "dst", TARGET_SQL)
        bdir = project / "backups"
        res = invoke_cli("reset", "--yes", env=_env(dbs, target, bdir))
        assert res.returncode == 0, res.stderr
        undo = _undo_id(res)
        psql(dbs.cluster.target(), f'CREATE ROLE "{victim}" NOLOGIN')  # made after the undo point: not its own
        (bdir / undo / "aftermath.json").write_text(f'{{"format": 1, "restore": "x", "roles": ["{victim}"]}}\n')
        res = invoke_cli("restore", "--id", undo, "--yes", "--no-undo", env=_env(dbs, target, bdir))
        assert res.returncode == 0, res.stderr
        assert "not signed with this machine's key, so it is ignored" in " ".join(res.stderr.split())
        assert _role_exists(target, victim)
    finally:
        psql(dbs.cluster.target(), f'DROP ROLE IF EXISTS "{victim}"')


def test_restore_over_a_target_with_an_extension_in_public(dbs, project, invoke_cli):
    """Plain PostgreSQL keeps extensions in `public`, which a restore drops whole: the extension
    goes with it and comes back from the backup, instead of the restore being refused for the
    extension's casts."""
    sql = "CREATE EXTENSION citext; CREATE TABLE people (id int PRIMARY KEY, email citext); INSERT INTO people VALUES (1, 'A@x');"
    source, target = seeded(dbs, "src", sql), seeded(dbs, "dst", sql + "INSERT INTO people VALUES (2, 'b@x');")
    bdir = project / "backups"
    backup_id = engine_backup(source, bdir)
    res = invoke_cli("restore", "--id", backup_id, "--yes", env=_env(dbs, target, bdir))
    assert res.returncode == 0, res.stderr
    assert state(target) == state(source)
    undo = _undo_id(res)
    res = invoke_cli("restore", "--id", undo, "--yes", "--no-undo", env=_env(dbs, target, bdir))
    assert res.returncode == 0, res.stderr
    assert scalar(target, "SELECT count(*) FROM people") == 2


def test_a_signed_aftermath_copied_into_another_undo_point_is_ignored(tmp_path):
    """The signature covers the undo point's id: an aftermath taken from one undo point (say one
    that lists a role still wanted elsewhere) cannot be replayed by copying it into another."""
    from tasks.engine import manifest, undo

    key = manifest.SigningKey(b"k" * 32, "test")
    first, second = tmp_path / "2026-11-30T101010Z", tmp_path / "2026-11-30T111111Z"
    first.mkdir(), second.mkdir()
    undo.write(first, undo.Aftermath("b1", roles=("app_writer",)), key)
    assert undo.read(first, key)[0] == undo.Aftermath("b1", roles=("app_writer",))
    for name in (undo.FILE, undo.MAC):
        (second / name).write_bytes((first / name).read_bytes())
    after, why = undo.read(second, key)
    assert after is None and "not signed" in why


def test_the_printed_undo_command_works_where_the_target_came_from_the_environment(dbs, project, invoke_cli):
    """The target's password is in TARGET_DATABASE_URL; the undo command the restore prints names
    the target with --target URL and no password (argv is visible to all): run as printed, in the
    same environment, it takes the password of TARGET_DATABASE_URL, which names the same target."""
    source, target = seeded(dbs, "src", TARGET_SQL), seeded(dbs, "dst", TARGET_SQL + "INSERT INTO precious.ledger SELECT 1000;")
    bdir = project / "backups"
    backup_id = engine_backup(source, bdir)
    before = state(target)
    env = {"DATABASE_URL": dbs.url(source), "TARGET_DATABASE_URL": dbs.url(target), "BACKUP_DIR": str(bdir)}
    res = invoke_cli("restore", "--id", backup_id, "--yes", "--any-source", env=env)
    assert res.returncode == 0, res.stderr
    printed = " ".join(res.stdout.split()).split("to put the target back: ")[1].split()
    assert printed[:2] == ["invoke", "restore"] and "--target" in printed, printed
    assert dbs.cluster.password not in " ".join(printed)
    res = invoke_cli(*printed[1:], "--yes", "--no-undo", env=env)
    assert res.returncode == 0, res.stderr
    assert state(target) == before
