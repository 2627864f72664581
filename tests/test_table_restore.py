"""Issue 13: restoring chosen tables, in place (--table) and beside the live data (--into-schema),
through the CLI as a user runs it and, on the hosted-Supabase-shaped platform, through the engine."""

from __future__ import annotations

import time

import pytest

from tasks.engine import catalog
from tasks.engine.dump import create_backup
from tasks.engine.restore.tables import execute_tables, plan_tables
from tasks.engine.storage import LocalStore
from tests.fixtures_cli import error_line
from tests.helpers import fingerprints, psql, scalar, schema_dump, seeded

APP = """
CREATE SCHEMA app;
CREATE TABLE app.projects (id serial PRIMARY KEY, name text NOT NULL UNIQUE, budget numeric);
CREATE TABLE app.tasks (id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                        project_id int NOT NULL REFERENCES app.projects(id), title text CHECK (title <> ''));
CREATE INDEX tasks_title ON app.tasks (lower(title));
COMMENT ON CONSTRAINT tasks_project_id_fkey ON app.tasks IS 'every task has a project';
CREATE TABLE app."Odd ""name"" . x" (k text PRIMARY KEY);
CREATE FUNCTION app.touch() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN NEW.title := 'touched'; RETURN NEW; END $$;
CREATE TRIGGER touch BEFORE INSERT ON app.tasks FOR EACH ROW EXECUTE FUNCTION app.touch();
INSERT INTO app.projects (name, budget) SELECT 'project ' || g, g * 10 FROM generate_series(1, 5) g;
INSERT INTO app.tasks (project_id, title) SELECT 1 + g % 5, 'task ' || g FROM generate_series(1, 40) g;
UPDATE app.tasks SET title = 'task ' || id;
INSERT INTO app."Odd ""name"" . x" VALUES ('a'), (E'b\\nc');
CREATE TABLE app.other (id int PRIMARY KEY, v text);
INSERT INTO app.other VALUES (1, 'one');
"""

# after the backup: a project and its tasks are deleted, tasks changed, another table changed
DRIFT = """
DELETE FROM app.tasks WHERE project_id = 5;
DELETE FROM app.projects WHERE id = 5;
UPDATE app.tasks SET title = 'changed ' || id WHERE id < 10;
INSERT INTO app.tasks (project_id, title) VALUES (1, 'new');
UPDATE app.other SET v = 'changed';
"""


@pytest.fixture(scope="module")
def db17(pg17):
    from tests.conftest import Databases

    d = Databases(pg17)
    yield d
    d.cleanup()


def _env(db17, target, tmp_path):
    return {"DATABASE_URL": db17.url(target), "BACKUP_DIR": str(tmp_path / "backups")}


def _backup(target, tmp_path):
    store = LocalStore(tmp_path / "backups")
    return store, create_backup(target, store).backup_id


def test_one_table_with_a_parent_left_alone_is_refused_then_restored_with_the_parent(db17, tmp_path, invoke_cli):
    target = seeded(db17, "tbl", APP)
    store, bid = _backup(target, tmp_path)
    at_backup = fingerprints(target, schemas=["app"])
    psql(target, DRIFT)
    before = fingerprints(target, schemas=["app"]), schema_dump(target)
    env = _env(db17, target, tmp_path)

    refused = invoke_cli("restore", "--id", bid, "--table", "app.tasks", "--yes", env=env)

    assert refused.returncode == 6, refused.stderr
    line = error_line(refused)
    assert "tasks_project_id_fkey" in line and "--table app.projects" in line, line
    assert "unchanged" in line
    assert (fingerprints(target, schemas=["app"]), schema_dump(target)) == before
    assert "undo point" not in refused.stdout  # refused before the undo point was taken
    assert "tasks_project_id_fkey (app.tasks -> app.projects)" in refused.stderr  # the plan names the key

    done = invoke_cli("restore", "--id", bid, "--table", "app.tasks", "--table", "app.projects", "--yes", env=env)

    assert done.returncode == 0, done.stderr
    after = fingerprints(target, schemas=["app"])
    for t in ("app.tasks", "app.projects"):
        assert after[t] == at_backup[t]
    assert after["app.other"] == before[0]["app.other"]  # a table left alone keeps its rows
    assert schema_dump(target) == before[1]  # schema, triggers and keys exactly as they were
    # no trigger fired while rows loaded, and owned sequences (serial, identity) came back
    assert scalar(target, "SELECT count(*) FROM app.tasks WHERE title = 'touched'") == 0
    assert scalar(target, "SELECT last_value FROM app.tasks_id_seq") == 40
    assert scalar(target, "SELECT last_value FROM app.projects_id_seq") == 5
    assert "invoke restore --id" in done.stdout  # the undo point


def test_into_schema_leaves_the_live_tables_alone_and_copies_the_backups(db17, tmp_path, invoke_cli):
    target = seeded(db17, "beside", APP)
    store, bid = _backup(target, tmp_path)
    at_backup = fingerprints(target, schemas=["app"])
    psql(target, DRIFT)
    live = fingerprints(target, schemas=["app"]), schema_dump(target)

    res = invoke_cli("restore", "--id", bid, "--schema", "app", "--into-schema", 'restored "old"', "--yes", env=_env(db17, target, tmp_path))

    assert res.returncode == 0, res.stderr
    assert fingerprints(target, schemas=["app"]) == live[0]
    assert schema_dump(target, "--exclude-schema=restored*") == live[1]
    copy = fingerprints(target, schemas=['restored "old"'])
    assert {k.split(".", 1)[1]: v for k, v in copy.items()} == {k.split(".", 1)[1]: v for k, v in at_backup.items()}
    # the copy's sequences continue after the backup's values, not the live ones
    assert scalar(target, 'SELECT nextval(\'"restored ""old""".projects_id_seq\')') == 6
    # no triggers in the copy; keys only between restored tables
    assert (
        scalar(
            target,
            """SELECT count(*) FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
                             JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'restored "old"' AND NOT t.tgisinternal""",
        )
        == 0
    )

    again = invoke_cli("restore", "--id", bid, "--table", "app.other", "--into-schema", 'restored "old"', "--yes", env=_env(db17, target, tmp_path))
    assert again.returncode == 2 and "already exists" in error_line(again)


@pytest.mark.parametrize("major", [17])
def test_into_schema_on_hosted_as_postgres(major, request, tmp_path):
    """Hosted Supabase: `postgres` is not a superuser; the copy still comes back beside the live
    table, which stays byte-identical."""
    platform = request.getfixturevalue(f"hosted{major}_a")
    project = platform.new_project("tables_hosted")
    with project.connect() as conn:
        conn.execute(
            """CREATE TABLE public.notes (id bigserial PRIMARY KEY, owner uuid DEFAULT auth.uid(), body text);
               ALTER TABLE public.notes ENABLE ROW LEVEL SECURITY;
               CREATE POLICY "own notes" ON public.notes FOR ALL TO authenticated USING (owner = (SELECT auth.uid()));
               INSERT INTO public.notes (body) SELECT 'note ' || g FROM generate_series(1, 50) g;"""
        )
        conn.commit()
    store = LocalStore(tmp_path / "backups")
    b = catalog.load(store, create_backup(project, store).backup_id)
    at_backup = fingerprints(project, schemas=["public"])["public.notes"]
    with project.connect() as conn:
        conn.execute("UPDATE public.notes SET body = 'edited' WHERE id < 20")
        conn.commit()
    live = fingerprints(project, schemas=["public"])["public.notes"]

    plan = plan_tables(store, b, project, tables=("public.notes",), into_schema="restored_copy")
    execute_tables(plan)

    assert fingerprints(project, schemas=["public"])["public.notes"] == live
    assert fingerprints(project, schemas=["restored_copy"])["restored_copy.notes"] == at_backup


def test_in_place_restore_behind_a_lock_names_the_blocker_while_waiting_and_rolls_back(db17, tmp_path, invoke_cli):
    target = seeded(db17, "tbllock", APP)
    store, bid = _backup(target, tmp_path)
    psql(target, DRIFT)
    before = fingerprints(target, schemas=["app"])
    holder = target.connect()
    try:
        holder.execute("SET application_name = 'nightly-report'")
        holder.execute("LOCK TABLE app.other IN ACCESS SHARE MODE")  # a reader, mid-transaction
        started = time.monotonic()
        env = {**_env(db17, target, tmp_path), "LOCK_TIMEOUT": "2s"}
        res = invoke_cli("restore", "--id", bid, "--table", "app.other", "--yes", env=env, timeout=60)
        took = time.monotonic() - started
        pid = holder.info.backend_pid
        assert res.returncode == 6, res.stdout + res.stderr
        # the status line named the blocker while the restore waited, as a full restore's does
        assert f"waiting for a lock held by pid {pid} (nightly-report, idle in transaction since " in res.stderr, res.stderr
        line = error_line(res)
        assert f"pid {pid} (nightly-report" in line and "waited 2 s (LOCK_TIMEOUT)" in line and "unchanged" in line, line
        assert f"pg_terminate_backend(pid) for pid {pid}" in line, line
        assert took < 25, f"the restore took {took:.0f} s"
        assert holder.execute("SELECT v FROM app.other").fetchone()[0] == "changed"  # the holder is unharmed
        holder.commit()
    finally:
        holder.close()
    assert fingerprints(target, schemas=["app"]) == before


PARTITIONED = """
CREATE SCHEMA app;
CREATE TABLE app.events (id int, k int, v text, PRIMARY KEY (id, k)) PARTITION BY RANGE (k);
CREATE TABLE app.events_low PARTITION OF app.events FOR VALUES FROM (0) TO (10);
CREATE TABLE app.events_high PARTITION OF app.events FOR VALUES FROM (10) TO (20) PARTITION BY RANGE (k);
CREATE TABLE app.events_high_a PARTITION OF app.events_high FOR VALUES FROM (10) TO (15);
CREATE TABLE app.events_high_b PARTITION OF app.events_high FOR VALUES FROM (15) TO (20);
CREATE TABLE app.marks (id int PRIMARY KEY, event_id int, event_k int, FOREIGN KEY (event_id, event_k) REFERENCES app.events);
INSERT INTO app.events SELECT g, g % 20, 'event ' || g FROM generate_series(1, 60) g;
INSERT INTO app.marks SELECT g, g, g % 20 FROM generate_series(1, 5) g;
"""


def test_a_partitioned_table_named_restores_the_rows_of_all_its_partitions(db17, tmp_path, invoke_cli):
    target = seeded(db17, "parted", PARTITIONED)
    store, bid = _backup(target, tmp_path)
    at_backup = fingerprints(target, schemas=["app"])
    psql(target, "DELETE FROM app.events WHERE id > 50; UPDATE app.events SET v = 'changed' WHERE id < 30")
    psql(target, "UPDATE app.marks SET event_id = 7, event_k = 7 WHERE id = 1")
    marks, schema = fingerprints(target, schemas=["app"])["app.marks"], schema_dump(target)

    res = invoke_cli("restore", "--id", bid, "--table", "app.events", "--yes", "--no-undo", env=_env(db17, target, tmp_path))

    assert res.returncode == 0, res.stdout + res.stderr
    for leaf in ("app.events_low", "app.events_high_a", "app.events_high_b"):  # every partition, also a level down
        assert f"rows of {leaf}:" in res.stderr, res.stderr
    after = fingerprints(target, schemas=["app"])
    assert {k: v for k, v in after.items() if k != "app.marks"} == {k: v for k, v in at_backup.items() if k != "app.marks"}
    assert after["app.marks"] == marks and schema_dump(target) == schema  # the key to the partitioned table came back
    assert scalar(target, "SELECT count(*) FROM app.events") == 60
