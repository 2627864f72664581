"""What a user gets wrong, and what the world breaks, through the real `invoke` CLI.

Every case asserts the documented exit code, one `error: <message>. <hint>.` line on stderr
that says what to do next, and that nothing was lost or changed: the restore target keeps its
rows and schema, the backup folder keeps its bytes.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import uuid
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import quote

import pytest

from tasks.engine.errors import ExitCode
from tests.conftest import PASSWORD
from tests.fixtures_cli import (
    SOURCE_SQL,
    TARGET_SQL,
    assert_no_secret,
    closed_port,
    engine_backup,
    error_line,
    tree,
)
from tests.helpers import psql, resign, seeded, state

PG15_BIN = Path("/usr/lib/postgresql/15/bin")
TODAY = dt.datetime.now(dt.UTC).date().isoformat()


@pytest.fixture
def world(dbs15, project):
    """A source with a backup, a target with different data, and the env that points at them.
    The cases that use it do not depend on the server version, so they run on one (15)."""
    dbs = dbs15
    source = seeded(dbs, "src", SOURCE_SQL)
    target = seeded(dbs, "dst", TARGET_SQL)
    bdir = project / "backups"
    w = SimpleNamespace(
        source=source,
        target=target,
        bdir=bdir,
        id=engine_backup(source, bdir),
        dbs=dbs,
        env={"DATABASE_URL": dbs.url(target), "BACKUP_DIR": str(bdir)},
        before=state(target),
        files=tree(bdir),
    )

    def unchanged():
        assert state(target) == w.before, "the target database changed"
        assert tree(bdir) == w.files, "the backup folder changed"

    w.unchanged = unchanged
    return w


# --- which backup ---------------------------------------------------------------------------


@pytest.mark.parametrize("date", ["2026-13-01", "24-11-2026", "2026-11-5", "yesterday"])
def test_malformed_date_is_a_usage_error(world, invoke_cli, date):
    res = invoke_cli("restore", "--date", date, "--yes", env=world.env)
    assert res.returncode == ExitCode.USAGE, res.stderr
    line = error_line(res, only_line=True)
    assert line.lower() == f"error: --date '{date}' is not a date. use yyyy-mm-dd, for example --date 2026-11-24."
    world.unchanged()


def test_empty_date_is_a_usage_error(world, invoke_cli):
    res = invoke_cli("restore", "--date", "", "--yes", env=world.env)
    assert res.returncode == ExitCode.USAGE, res.stderr
    line = error_line(res, only_line=True)
    assert "--date YYYY-MM-DD" in line and "invoke list" in line
    world.unchanged()


def test_date_without_backup_lists_the_dates_that_exist(dbs15, project, invoke_cli):
    dbs = dbs15
    source = seeded(dbs, "src", SOURCE_SQL)
    target = seeded(dbs, "dst", TARGET_SQL)
    bdir = project / "backups"
    utc = dt.UTC
    engine_backup(source, bdir, dt.datetime(2026, 11, 20, 9, 30, tzinfo=utc))
    engine_backup(source, bdir, dt.datetime(2026, 11, 22, 18, 0, tzinfo=utc))
    before, files = state(target), tree(bdir)

    res = invoke_cli("restore", "--date", "2026-11-21", "--yes", env={"DATABASE_URL": dbs.url(target), "BACKUP_DIR": str(bdir)})

    assert res.returncode == ExitCode.NOT_FOUND, res.stderr
    line = error_line(res, only_line=True)
    assert line.lower() == f"error: no backup from 2026-11-21 in {bdir}. backups exist for: 2026-11-20, 2026-11-22."
    assert state(target) == before and tree(bdir) == files


def test_no_backups_at_all(dbs15, project, invoke_cli):
    dbs = dbs15
    target = seeded(dbs, "dst", TARGET_SQL)
    before = state(target)
    bdir = project / "nothing-here"
    env = {"DATABASE_URL": dbs.url(target), "BACKUP_DIR": str(bdir)}

    res = invoke_cli("restore", "--date", TODAY, "--yes", env=env)

    assert res.returncode == ExitCode.NOT_FOUND, res.stderr
    line = error_line(res, only_line=True)
    assert f"there are no backups in {bdir} yet; run `invoke backup`" in line.lower()
    assert not bdir.exists(), "a failed restore created the backup folder"
    assert state(target) == before
    listing = invoke_cli("list", env=env)
    assert listing.returncode == 0 and "no backups in" in listing.stdout


# --- cannot connect -------------------------------------------------------------------------

WRONG_PASSWORD = "Wr0ng pw#%&"


def _bad_url(case: str, cluster, dbname: str) -> tuple[str, str]:
    """(URL, what the error must say) for a connection mistake against `cluster`."""
    if case == "closed_port":
        port = closed_port()
        return (f"postgresql://postgres:{quote(PASSWORD, safe='')}@127.0.0.1:{port}/{dbname}", f"Nothing is listening on 127.0.0.1:{port}")
    if case == "misspelled_database":
        return cluster.url(dbname + "_typo"), f"Database '{dbname}_typo' does not exist on 127.0.0.1:{cluster.port}"
    if case == "misspelled_user":
        # Under scram-sha-256 the server does not say whether a role exists; the message must
        # still name the user so the typo can be seen.
        return cluster.url(dbname, user="postgress"), "user 'postgress'"
    if case == "wrong_password":
        return cluster.url(dbname, password=WRONG_PASSWORD), "wrong or missing password for user 'postgres'"
    raise AssertionError(case)


CONNECTION_CASES = ["closed_port", "misspelled_database", "misspelled_user", "wrong_password"]


@pytest.mark.parametrize("case", CONNECTION_CASES)
def test_backup_cannot_connect(dbs15, project, invoke_cli, case):
    dbs = dbs15
    source = seeded(dbs, "src", SOURCE_SQL)
    url, says = _bad_url(case, dbs.cluster, source.dbname)
    bdir = project / "backups"

    res = invoke_cli("backup", env={"DATABASE_URL": url, "BACKUP_DIR": str(bdir)})

    assert res.returncode == ExitCode.CONNECTION, res.stderr
    line = error_line(res)
    assert says in line
    assert "DATABASE_URL" in line  # where to fix it
    assert_no_secret(res.stdout, res.stderr, extra=(WRONG_PASSWORD, quote(WRONG_PASSWORD, safe="")))
    # no backup, no half-written one
    leftovers = [p.name for p in bdir.iterdir() if p.name != ".lock"] if bdir.exists() else []
    assert leftovers == []
    listing = invoke_cli("list", env={"BACKUP_DIR": str(bdir)})
    assert "no backups in" in listing.stdout


@pytest.mark.parametrize("case", CONNECTION_CASES)
def test_restore_target_cannot_connect(world, invoke_cli, case):
    url, says = _bad_url(case, world.dbs.cluster, world.target.dbname)

    # DATABASE_URL points at a real database: --target must win, and nothing may fall back to it.
    res = invoke_cli("restore", "--id", world.id, "--target", url, "--yes", env=world.env)

    assert res.returncode == ExitCode.CONNECTION, res.stderr
    line = error_line(res)
    assert says in line
    assert_no_secret(res.stdout, res.stderr, extra=(WRONG_PASSWORD, quote(WRONG_PASSWORD, safe="")))
    world.unchanged()


# --- configuration --------------------------------------------------------------------------


def test_no_configuration_says_how_to_configure(project, invoke_cli):
    res = invoke_cli("backup", env={})
    assert res.returncode == ExitCode.USAGE, res.stderr
    line = error_line(res, only_line=True)
    assert line.lower() == "error: no database configured. set database_url in .env or the environment, or pass --url."
    # nothing was created in the project
    assert sorted(p.name for p in project.iterdir()) == []

    res = invoke_cli("reset", "--yes", env={})
    assert res.returncode == ExitCode.USAGE, res.stderr
    assert "--target" in error_line(res, only_line=True)

    res = invoke_cli("config", env={"COLUMNS": "300"})
    assert res.returncode == 0, res.stderr
    rows = _config_rows(res.stdout)
    assert rows["database_url"] == ("(not set)", "default")
    assert rows["password"] == ("(not set)", "default")
    assert rows["backup_dir"] == (".backups", "default")
    assert rows["pg_bin_dir"][1] == "default"
    assert sorted(p.name for p in project.iterdir()) == []


def _config_rows(stdout: str) -> dict[str, tuple[str, str]]:
    rows = {}
    for ln in stdout.splitlines():
        cells = [c.strip() for c in ln.split("│")]
        if len(cells) == 5 and cells[1] in ("database_url", "password", "backup_dir", "pg_bin_dir"):
            rows[cells[1]] = (cells[2], cells[3])
    assert rows.keys() == {"database_url", "password", "backup_dir", "pg_bin_dir"}, stdout
    return rows


def _manifest_of(bdir: Path) -> dict:
    ids = [p for p in bdir.iterdir() if not p.name.startswith(".")]
    assert len(ids) == 1, ids
    return json.loads((ids[0] / "manifest.json").read_text())


def test_settings_precedence_flag_environment_dotenv(dbs15, project, invoke_cli):
    dbs = dbs15
    from_dotenv, from_env, from_flag = (seeded(dbs, n, SOURCE_SQL) for n in ("dotenv", "envvar", "flag"))
    (project / ".env").write_text(f"DATABASE_URL={dbs.url(from_dotenv)}\nBACKUP_DIR=b_dotenv\nSUPABASE_DB_PASSWORD=dotenv-pw-123\n")
    environment = {"DATABASE_URL": dbs.url(from_env), "BACKUP_DIR": "b_env", "PGPASSWORD": "env-pw-456", "COLUMNS": "300"}

    # what `invoke config` says ...
    res = invoke_cli("config", "--backup-dir", "b_flag", env=environment)
    assert res.returncode == 0, res.stderr
    rows = _config_rows(res.stdout)
    assert rows["backup_dir"] == ("b_flag", "flag --backup-dir")
    assert rows["database_url"] == (f"postgresql://postgres@127.0.0.1:{dbs.cluster.port}/{from_env.dbname}", "environment DATABASE_URL")
    # the URL carries its password, which wins over PGPASSWORD: config says so, never showing either
    assert rows["password"] == ("in database_url (not shown); the URL's wins over the variable", "environment DATABASE_URL")
    assert rows["pg_bin_dir"][1] == "default"
    res = invoke_cli("config", env={"COLUMNS": "300"})
    rows = _config_rows(res.stdout)
    assert rows["backup_dir"] == ("b_dotenv", ".env BACKUP_DIR")
    assert rows["database_url"] == (f"postgresql://postgres@127.0.0.1:{dbs.cluster.port}/{from_dotenv.dbname}", ".env DATABASE_URL")
    assert rows["password"] == ("in database_url (not shown); the URL's wins over the variable", ".env DATABASE_URL")
    assert_no_secret(res.stdout, res.stderr, extra=("dotenv-pw-123", "env-pw-456"))

    # ... is what `invoke backup` does: flag > environment > .env
    res = invoke_cli("backup", "--url", dbs.url(from_flag), "--backup-dir", "b_flag", env=environment)
    assert res.returncode == 0, res.stderr
    assert _manifest_of(project / "b_flag")["source"]["database"] == from_flag.dbname
    res = invoke_cli("backup", env=environment)
    assert res.returncode == 0, res.stderr
    assert _manifest_of(project / "b_env")["source"]["database"] == from_env.dbname
    res = invoke_cli("backup", env={})
    assert res.returncode == 0, res.stderr
    assert _manifest_of(project / "b_dotenv")["source"]["database"] == from_dotenv.dbname


# --- tools ----------------------------------------------------------------------------------


@pytest.mark.skipif(not (PG15_BIN / "pg_dump").exists(), reason="PostgreSQL 15 client tools not installed")
def test_pg_dump_older_than_the_server(dbs17, project, invoke_cli):
    source = seeded(dbs17, "src", SOURCE_SQL)
    target = seeded(dbs17, "dst", TARGET_SQL)
    bdir = project / "backups"

    res = invoke_cli("backup", env={"DATABASE_URL": dbs17.url(source), "BACKUP_DIR": str(bdir), "PG_BIN_DIR": str(PG15_BIN)})

    assert res.returncode == ExitCode.TOOLS, res.stdout + res.stderr
    line = error_line(res)
    assert "PostgreSQL 17" in line and "15." in line, line
    assert "install postgresql 17 client tools" in line.lower()
    leftovers = [p.name for p in bdir.iterdir() if p.name != ".lock"] if bdir.exists() else []
    assert leftovers == []

    # and a pg_restore too old for the archive (made by pg_dump 17) refuses before touching anything
    backup_id = engine_backup(source, bdir)
    before, files = state(target), tree(bdir)
    res = invoke_cli(
        "restore", "--id", backup_id, "--yes", env={"DATABASE_URL": dbs17.url(target), "BACKUP_DIR": str(bdir), "PG_BIN_DIR": str(PG15_BIN)}
    )
    assert res.returncode == ExitCode.TOOLS, res.stdout + res.stderr
    assert "17" in error_line(res)
    assert state(target) == before and tree(bdir) == files


# --- damaged backups ------------------------------------------------------------------------


def _flip_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def test_checksum_mismatch_refuses_before_touching_the_target(world, invoke_cli):
    _flip_byte(world.bdir / world.id / "app.dump")
    world.files = tree(world.bdir)

    res = invoke_cli("restore", "--id", world.id, "--yes", env=world.env)

    assert res.returncode == ExitCode.INTEGRITY, res.stderr
    line = error_line(res)
    assert line.lower() == (
        f"error: backup {world.id.lower()}: app.dump does not match its checksum. the file was changed or damaged; restore another backup."
    )
    world.unchanged()
    # the damage is visible in the listing too
    listing = invoke_cli("list", "--verify", env={"BACKUP_DIR": str(world.bdir), "COLUMNS": "300"})
    assert "MISMATCH" in listing.stdout


def test_missing_file_refuses(world, invoke_cli):
    (world.bdir / world.id / "app.dump").unlink()
    world.files = tree(world.bdir)

    res = invoke_cli("restore", "--date", world.id[:10], "--any-source", "--yes", env=world.env)

    assert res.returncode == ExitCode.INTEGRITY, res.stderr
    assert error_line(res).lower() == (
        f"error: backup {world.id.lower()} is missing its file app.dump. restore another backup; this one is incomplete."
    )
    world.unchanged()


@pytest.mark.parametrize("how", ["--id", "--date"])
def test_unreadable_manifest_refuses(world, invoke_cli, how):
    (world.bdir / world.id / "manifest.json").write_text('{"format": 1, "files": [')
    world.files = tree(world.bdir)

    res = invoke_cli("restore", how, world.id if how == "--id" else world.id[:10], "--yes", env=world.env)

    # The only backup of that day is damaged: say so, do not claim there are no backups.
    assert res.returncode == ExitCode.INTEGRITY, res.stderr
    line = error_line(res, only_line=True)
    assert f"Backup {world.id} has an unreadable manifest" in line
    assert "restore another backup" in line.lower()
    world.unchanged()


# --- restores that fail midway roll back ---------------------------------------------------

BIG_SOURCE_SQL = (
    SOURCE_SQL
    + """
CREATE TABLE app.blobs (id int PRIMARY KEY, payload text);
INSERT INTO app.blobs SELECT g, md5(g::text) || md5((g * 7)::text) || md5((g * 13)::text)
  FROM generate_series(1, 20000) g;
"""
)


def test_truncated_archive_fails_while_streaming_and_rolls_back(dbs, project, invoke_cli):
    source = seeded(dbs, "src", BIG_SOURCE_SQL)
    target = seeded(dbs, "dst", TARGET_SQL)
    bdir = project / "backups"
    backup_id = engine_backup(source, bdir)
    folder = bdir / backup_id
    dump = folder / "app.dump"
    data = dump.read_bytes()
    zstd = data.startswith(b"\x28\xb5\x2f\xfd")  # PG15: the archive inside zstd
    dump.write_bytes(data[: len(data) // 2])
    # make the checksums agree, so only pg_restore can notice
    manifest = json.loads((folder / "manifest.json").read_text())
    for f in manifest["files"]:
        if f["name"] == "app.dump":
            f["size"] = dump.stat().st_size
            f["sha256"] = hashlib.sha256(dump.read_bytes()).hexdigest()
    (folder / "manifest.json").write_text(json.dumps(manifest))
    resign(folder)
    before, files = state(target), tree(bdir)

    res = invoke_cli("restore", "--id", backup_id, "--yes", env={"DATABASE_URL": dbs.url(target), "BACKUP_DIR": str(bdir)})

    line = error_line(res)
    if zstd and res.returncode == ExitCode.INTEGRITY:
        # zstd may reach the cut already while the plan lists the archive: refused before the plan
        assert "pg_restore cannot read app.dump: zstd:" in line, line
    else:
        assert res.returncode == ExitCode.RESTORE_FAILED, res.stdout + res.stderr
        assert "pg_restore could not read app.dump" in line, line
        assert "nothing was changed" in line
    assert state(target) == before
    assert tree(bdir) == files


def test_row_count_check_fails_after_loading_and_rolls_back(dbs, project, invoke_cli):
    source = seeded(dbs, "src", SOURCE_SQL)
    target = seeded(dbs, "dst", TARGET_SQL)
    bdir = project / "backups"
    backup_id = engine_backup(source, bdir)
    mpath = bdir / backup_id / "manifest.json"
    manifest = json.loads(mpath.read_text())
    for t in manifest["tables"]:
        if (t["schema"], t["name"]) == ("app", "items"):
            assert t["rows"] == 300
            t["rows"] = 301
    mpath.write_text(json.dumps(manifest))
    resign(mpath.parent)
    before, files = state(target), tree(bdir)

    res = invoke_cli("restore", "--id", backup_id, "--yes", env={"DATABASE_URL": dbs.url(target), "BACKUP_DIR": str(bdir)})

    assert res.returncode == ExitCode.RESTORE_FAILED, res.stdout + res.stderr
    line = error_line(res)
    assert f"Restore failed and was rolled back, {target.dbname} is unchanged" in line
    assert "restore check failed: app.items has 300 rows, the backup has 301" in line
    assert state(target) == before
    assert tree(bdir) == files


def test_restore_as_owner_without_role_privileges_rolls_back(dbs, project, invoke_cli):
    cluster = dbs.cluster
    suffix = uuid.uuid4().hex[:8]
    owner, restorer = f"app_owner_{suffix}", f"restorer_{suffix}"
    admin = cluster.target()
    psql(admin, f"CREATE ROLE {owner} NOLOGIN; CREATE ROLE {restorer} LOGIN PASSWORD 'r3storer pw!'")
    try:
        source = seeded(dbs, "src", SOURCE_SQL)
        psql(source, f"ALTER SCHEMA app OWNER TO {owner}; ALTER TABLE app.items OWNER TO {owner}; ALTER TABLE app.notes OWNER TO {owner};")
        target = dbs.new("dst")
        psql(admin, f'ALTER DATABASE "{target.dbname}" OWNER TO {restorer}')
        as_restorer = target.__class__(params={**target.params, "user": restorer}, password="r3storer pw!")
        psql(
            as_restorer,
            "CREATE TABLE public.mine (id int PRIMARY KEY, v text); INSERT INTO public.mine SELECT g, 'mine' FROM generate_series(1, 30) g;",
        )
        bdir = project / "backups"
        backup_id = engine_backup(source, bdir)
        before, files = state(target), tree(bdir)

        url = cluster.url(target.dbname, user=restorer, password="r3storer pw!")
        res = invoke_cli("restore", "--id", backup_id, "--target", url, "--yes", env={"BACKUP_DIR": str(bdir)})

        assert res.returncode == ExitCode.RESTORE_FAILED, res.stdout + res.stderr
        line = error_line(res)
        assert f"Restore failed and was rolled back, {target.dbname} is unchanged" in line
        # existing roles are left alone, so the first thing that fails is handing an object to
        # a role the restorer cannot act for
        assert re.search(r"permission denied to (create|alter) role|must be (a )?member of role|must be able to SET ROLE", line), line
        assert_no_secret(res.stdout, res.stderr, extra=("r3storer pw!",))
        assert state(target) == before
        assert tree(bdir) == files
    finally:
        for name in list(dbs.created):
            cluster.drop_database(name)
        psql(admin, f"DROP ROLE IF EXISTS {owner}; DROP ROLE IF EXISTS {restorer}")


# --- flags that exclude each other, modes that cannot work ----------------------------------


@pytest.mark.parametrize(
    "args, says",
    [
        (["restore", "--schema-only", "--data-only", "--yes"], "--schema-only and --data-only exclude each other"),
        (["backup", "--schema-only", "--data-only"], "--schema-only and --data-only exclude each other"),
        (["restore", "--id", "ID", "--date", "DATE", "--yes"], "--id and --date both given"),
    ],
)
def test_conflicting_flags(world, invoke_cli, args, says):
    args = [world.id if a == "ID" else world.id[:10] if a == "DATE" else a for a in args]
    res = invoke_cli(*args, env={**world.env, "DATABASE_URL": world.dbs.url(world.source)})
    assert res.returncode == ExitCode.USAGE, res.stderr
    line = error_line(res, only_line=True)
    assert says in line and "pass" in line.lower()
    world.unchanged()


def test_data_only_into_a_database_without_the_tables(world, invoke_cli):
    bare = seeded(world.dbs, "bare", "CREATE TABLE public.other (id int); INSERT INTO public.other VALUES (1), (2);")
    before = state(bare)

    res = invoke_cli("restore", "--id", world.id, "--data-only", "--target", world.dbs.url(bare), "--yes", env=world.env)

    assert res.returncode == ExitCode.USAGE, res.stderr
    line = error_line(res)
    assert "The target has no table to load the backup's rows into: app.items" in line
    assert "restore the schema too" in line.lower()
    assert state(bare) == before
    world.unchanged()


# --- confirmation -----------------------------------------------------------------------------


@pytest.mark.parametrize("stdin", [None, "DBNAME\n"], ids=["no-terminal", "name-piped-in"])
def test_restore_without_terminal_or_yes_is_declined(world, invoke_cli, stdin):
    res = invoke_cli("restore", "--id", world.id, env=world.env, input=None if stdin is None else stdin.replace("DBNAME", world.target.dbname))
    assert res.returncode == ExitCode.DECLINED, res.stderr
    line = error_line(res)
    assert "without confirmation" in line and "pass --yes" in line.lower()
    world.unchanged()


def test_reset_without_terminal_or_yes_is_declined(world, invoke_cli):
    res = invoke_cli("reset", env=world.env)
    assert res.returncode == ExitCode.DECLINED, res.stderr
    line = error_line(res)
    assert "without confirmation" in line and "pass --yes" in line.lower()
    world.unchanged()
