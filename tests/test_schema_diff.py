"""Issue 13: `invoke diff` between two backups, and `invoke schema --out`."""

from __future__ import annotations

import json

from tests.fixtures_cli import engine_backup, error_line
from tests.helpers import psql, seeded

SCHEMA = """
CREATE TABLE public.projects (id int PRIMARY KEY, name text, owner text);
CREATE INDEX projects_name ON public.projects (name);
ALTER TABLE public.projects ENABLE ROW LEVEL SECURITY;
CREATE POLICY "mine" ON public.projects USING (owner = current_user);
CREATE TABLE public."odd
name" (x int);
"""

CHANGE = """
ALTER TABLE public.projects ADD COLUMN budget numeric;
DROP POLICY "mine" ON public.projects;
CREATE POLICY "mine" ON public.projects USING (owner = session_user);
DROP INDEX public.projects_name;
CREATE FUNCTION public.total() RETURNS bigint LANGUAGE sql AS 'SELECT count(*) FROM public.projects';
"""


def test_diff_between_two_backups_names_each_change(dbs17, tmp_path, invoke_cli):
    db = seeded(dbs17, "diff", SCHEMA)
    env = {"DATABASE_URL": dbs17.url(db), "BACKUP_DIR": str(tmp_path / "b")}
    a = engine_backup(db, tmp_path / "b")
    same = engine_backup(db, tmp_path / "b")
    psql(db, CHANGE)
    b = engine_backup(db, tmp_path / "b")

    res = invoke_cli("diff", a, b, env=env)

    assert res.returncode == 0, res.stderr
    out = res.stdout
    assert "+ added    function public.total()" in out
    assert "- removed  index public.projects_name" in out
    assert "~ changed  table public.projects (columns added: budget)" in out
    assert "~ changed  policy public.projects mine" in out
    assert "+    budget numeric" in out and "CURRENT_USER" in out and "SESSION_USER" in out
    assert invoke_cli("diff", a, b, env=env).stdout == out  # deterministic

    js = json.loads(invoke_cli("diff", a, b, "--json", env=env).stdout)
    assert [x["name"] for x in js["added"]] == ["total()"]
    assert [x["name"] for x in js["removed"]] == ["projects_name"]

    empty = invoke_cli("diff", a, same, env=env)
    assert empty.returncode == 0 and empty.stdout.strip() == f"no schema differences between {a} and {same}"
    live = invoke_cli("diff", b, "live", env=env)
    assert live.returncode == 0 and "no schema differences" in live.stdout, live.stdout + live.stderr


def test_schema_out_is_deterministic_sql_without_data(dbs17, tmp_path, invoke_cli):
    db = seeded(dbs17, "schemaout", SCHEMA + "INSERT INTO public.projects VALUES (1, 'secret row', 'x');")
    env = {"DATABASE_URL": dbs17.url(db), "BACKUP_DIR": str(tmp_path / "b")}
    first = invoke_cli("schema", "--out", str(tmp_path / "schema.sql"), env=env)
    assert first.returncode == 0, first.stderr
    text = (tmp_path / "schema.sql").read_text()
    assert "CREATE TABLE public.projects" in text and "secret row" not in text and "\\restrict" not in text
    invoke_cli("schema", "--out", str(tmp_path / "again.sql"), env=env)
    assert (tmp_path / "again.sql").read_text() == text


def test_live_says_it_reads_the_schema_and_keeps_no_backup(dbs17, tmp_path, invoke_cli, project):
    db = seeded(dbs17, "difflive", SCHEMA)
    env = {"DATABASE_URL": dbs17.url(db), "BACKUP_DIR": str(tmp_path / "b")}

    res = invoke_cli("diff", "live", "live", env=env)

    assert res.returncode == 0, res.stderr
    assert "no schema differences" in res.stdout
    assert "reading the live schema of schemas: public" in res.stderr, res.stderr
    assert "no backup is kept" in res.stderr
    assert "backup " not in res.stderr.replace("no backup is kept", ""), res.stderr  # no "backup <id> complete", no checksumming
    assert "checksumming" not in res.stderr
    # nothing kept, nothing written into the app's repository
    assert not (tmp_path / "b").exists()
    assert not (project / ".gitignore").exists()


def test_schema_out_a_folder_or_a_missing_folder_is_one_clear_line(dbs17, tmp_path, invoke_cli):
    db = seeded(dbs17, "schemadir", SCHEMA)
    env = {"DATABASE_URL": dbs17.url(db), "BACKUP_DIR": str(tmp_path / "b")}
    folder = tmp_path / "out"
    folder.mkdir()

    res = invoke_cli("schema", "--out", str(folder), env=env)

    assert res.returncode == 2, res.stderr
    line = error_line(res, only_line=True)  # refused before the database is read
    assert f"--out {folder} is a folder" in line and f"--out {folder / 'schema.sql'}" in line, line
    assert "nothing was written" in line and "/." not in line  # no hidden temp file named
    assert list(folder.iterdir()) == []

    missing = invoke_cli("schema", "--out", str(tmp_path / "nope" / "s.sql"), env=env)
    assert missing.returncode == 2, missing.stderr
    assert f"folder {tmp_path / 'nope'} does not exist" in error_line(missing, only_line=True)
    assert not (tmp_path / "nope").exists()
