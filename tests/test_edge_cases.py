"""Edge cases that once broke the all-or-nothing promise or a restore's fidelity (found in
review), each on real PostgreSQL 15 and 17."""

from __future__ import annotations

import json
import uuid
from contextlib import contextmanager

import pytest

from tasks.engine import catalog, pgtools
from tasks.engine.conn import Target
from tasks.engine.dump import create_backup
from tasks.engine.errors import NotFound, RestoreFailed
from tasks.engine.restore import execute_restore, plan_restore, source
from tasks.engine.storage import LocalStore
from tests.helpers import fingerprints, psql, resign, scalar, schema_dump, state


def backup_of(source, tmp_path, **kw):
    store = LocalStore(tmp_path / "b")
    result = create_backup(source, store, **kw)
    return store, catalog.load(store, result.backup_id)


def restore(store, b, target, **kw):
    """As `invoke restore` does it: runbook files become a backup in a throwaway database first."""
    with source(store, b, target) as (store, b):
        plan = plan_restore(store, b, target, **kw)
        execute_restore(plan, store)
    return plan


def break_row_count(store, b, table="app.t"):
    """Make the final row-count check fail: everything before it has been sent by then."""
    path = store.local_path(b.id, "manifest.json")
    m = json.loads(path.read_text())
    for t in m["tables"]:
        if f"{t['schema']}.{t['name']}" == table:
            t["rows"] += 1
    path.write_text(json.dumps(m))
    resign(path.parent)
    return catalog.load(store, b.id)


def test_large_objects_do_not_commit_the_restore_halfway(dbs, tmp_path):
    # pg_restore wraps large-object contents in its own BEGIN/COMMIT; that COMMIT must never
    # reach the server, or a later failure leaves the target half replaced.
    source, target = dbs.new("src"), dbs.new("dst")
    psql(
        source,
        "CREATE SCHEMA app; CREATE TABLE app.t (id int PRIMARY KEY); INSERT INTO app.t SELECT generate_series(1, 10);"
        " SELECT lo_from_bytea(0, 'large object');",
    )
    psql(target, "CREATE SCHEMA precious; CREATE TABLE precious.keep (v text); INSERT INTO precious.keep VALUES ('mine');")
    before = state(target)
    store, b = backup_of(source, tmp_path)
    manifest = store.local_path(b.id, "manifest.json")
    intact = manifest.read_text()
    with pytest.raises(RestoreFailed, match="restore check failed"):
        restore(store, break_row_count(store, b), target)
    assert state(target) == before
    assert scalar(target, "SELECT count(*) FROM pg_largeobject_metadata") == 0
    # and the intact backup restores, large object included
    manifest.write_text(intact)
    resign(manifest.parent)
    ok = dbs.new("ok")
    restore(store, catalog.load(store, b.id), ok)
    assert scalar(ok, "SELECT count(*) FROM pg_largeobject_metadata") == 1


@pytest.mark.parametrize("newline", ["\n", "\r\n"], ids=["lf", "crlf"])
def test_runbook_plain_dump_with_large_objects_stays_atomic(dbs, tmp_path, newline):
    source, target = dbs.new("src"), dbs.new("dst")
    psql(
        source,
        "CREATE TABLE public.t (id int PRIMARY KEY); INSERT INTO public.t VALUES (1);"
        " SELECT lo_from_bytea(0, 'lo');"
        " CREATE TABLE public.later (id int); INSERT INTO public.later VALUES (1);",
    )
    psql(target, "CREATE SCHEMA precious; CREATE TABLE precious.keep (v text); INSERT INTO precious.keep VALUES ('mine');")
    with source.connect() as conn:
        major = conn.info.server_version // 10000
    suite = pgtools.pick(pgtools.discover(), at_least=major, prefer=major)
    folder = tmp_path / "backups"
    folder.mkdir()
    dump = pgtools.run([suite.tool("pg_dump"), f"--dbname={source.conninfo()}"], env=source.tool_env()).decode()
    assert "\nBEGIN;\n" in dump and "\nCOMMIT;\n" in dump  # pg_dump's own wrapping of large objects
    # a statement after the large objects fails: everything must roll back
    crlf = lambda text: text.replace("\n", newline)
    (folder / "dump-2026-11-20.sql").write_bytes(crlf(dump + "\nSELECT 1/0;\n").encode())
    before = state(target)
    store = LocalStore(folder)
    with pytest.raises(RestoreFailed, match="division by zero"):
        restore(store, catalog.resolve(store, date="2026-11-20"), target)
    assert state(target) == before
    (folder / "dump-2026-11-20.sql").write_bytes(crlf(dump).encode())
    restore(store, catalog.resolve(store, date="2026-11-20"), target)
    assert scalar(target, "SELECT count(*) FROM pg_largeobject_metadata") == 1


def test_data_only_keeps_inheritance_children_the_backup_does_not_list(dbs, tmp_path):
    source, target = dbs.new("src"), dbs.new("dst")
    ddl = "CREATE SCHEMA app; CREATE TABLE app.a_first (id int); CREATE TABLE app.events (id int, at date);"
    psql(source, ddl + "INSERT INTO app.events VALUES (1, '2026-01-01');")
    psql(
        target,
        ddl + "CREATE TABLE app.events_2027 () INHERITS (app.events);"
        "INSERT INTO app.events_2027 SELECT g, '2027-01-01' FROM generate_series(1, 100) g;",
    )
    store, b = backup_of(source, tmp_path)
    restore(store, b, target, mode="data")
    assert scalar(target, "SELECT count(*) FROM ONLY app.events") == 1
    assert scalar(target, "SELECT count(*) FROM app.events_2027") == 100


def test_roles_the_target_server_has_are_left_as_they_are(pg15, tmp_path):
    name = f"shared_{uuid.uuid4().hex[:6]}"
    source = pg15.create_database(f"s_{name}")
    target = pg15.create_database(f"t_{name}")
    try:
        psql(source, f"CREATE ROLE {name} NOLOGIN; CREATE TABLE public.t (id int); ALTER TABLE public.t OWNER TO {name};")
        store, b = backup_of(source, tmp_path)
        # another service on the target server changes the role meanwhile
        psql(target, f"ALTER ROLE {name} LOGIN CONNECTION LIMIT 7")
        plan = restore(store, b, target)
        assert name in plan.roles.keep and name not in [r.name for r in plan.roles.create]
        assert scalar(target, f"SELECT rolcanlogin AND rolconnlimit = 7 FROM pg_roles WHERE rolname = '{name}'")
        assert scalar(target, "SELECT pg_get_userbyid(relowner) FROM pg_class WHERE relname = 't'") == name
    finally:
        pg15.drop_database(source.dbname)
        pg15.drop_database(target.dbname)
        psql(pg15.target(), f"DROP ROLE IF EXISTS {name}")


DATA_ONLY_SCHEMA = """
CREATE SCHEMA app;
CREATE TABLE public.parent (id int PRIMARY KEY);
CREATE TABLE app.b_parent (id int PRIMARY KEY);
CREATE TABLE app.a_child (id int PRIMARY KEY, parent int REFERENCES app.b_parent(id));
CREATE TABLE app.refs (id int, p int);
CREATE TABLE app.tree (v int);
CREATE TABLE app.tree_child () INHERITS (app.tree);
CREATE TABLE app.profiles (n int);
CREATE FUNCTION app.bump() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN INSERT INTO app.profiles VALUES (1); RETURN NEW; END $$;
CREATE TRIGGER always_on AFTER INSERT ON app.b_parent FOR EACH ROW EXECUTE FUNCTION app.bump();
ALTER TABLE app.b_parent ENABLE ALWAYS TRIGGER always_on;
CREATE TRIGGER switched_off AFTER INSERT ON app.a_child FOR EACH ROW EXECUTE FUNCTION app.bump();
ALTER TABLE app.a_child DISABLE TRIGGER switched_off;
CREATE TRIGGER replica_only AFTER INSERT ON app.refs FOR EACH ROW EXECUTE FUNCTION app.bump();
ALTER TABLE app.refs ENABLE REPLICA TRIGGER replica_only;
"""
DATA_ONLY_ROWS = """
INSERT INTO public.parent VALUES (1);
INSERT INTO app.b_parent VALUES (1), (2);
INSERT INTO app.a_child VALUES (10, 1), (20, 2);
INSERT INTO app.refs VALUES (1, 99);  -- would fail the NOT VALID foreign key below
INSERT INTO app.tree_child VALUES (-1);  -- would fail the inherited NOT VALID check below
ALTER TABLE app.refs ADD CONSTRAINT refs_parent FOREIGN KEY (p) REFERENCES public.parent(id) NOT VALID;
ALTER TABLE app.tree ADD CONSTRAINT tree_positive CHECK (v > 0) NOT VALID;
DELETE FROM app.profiles;
"""


def trigger_states(target):
    with target.connect() as conn:
        return dict(conn.execute("SELECT tgname, tgenabled::text FROM pg_trigger WHERE NOT tgisinternal ORDER BY 1").fetchall())


def test_data_only_restore_is_quiet_and_leaves_triggers_and_constraints_as_they_were(dbs, tmp_path):
    source, target = dbs.new("src"), dbs.new("dst")
    psql(source, DATA_ONLY_SCHEMA + DATA_ONLY_ROWS)
    psql(
        target,
        DATA_ONLY_SCHEMA + "ALTER TABLE app.refs ADD CONSTRAINT refs_parent FOREIGN KEY (p) REFERENCES public.parent(id) NOT VALID;"
        "ALTER TABLE app.tree ADD CONSTRAINT tree_positive CHECK (v > 0) NOT VALID;",
    )
    states, schema = trigger_states(target), schema_dump(target)
    store, b = backup_of(source, tmp_path)
    restore(store, b, target, mode="data")
    assert fingerprints(target) == fingerprints(source)
    assert scalar(target, "SELECT count(*) FROM app.profiles") == 0  # no trigger fired, ALWAYS included
    assert trigger_states(target) == states == {"always_on": "A", "replica_only": "R", "switched_off": "D"}
    assert schema_dump(target) == schema


@contextmanager
def owned_by_a_plain_role(dbs, *, temp: bool = True):
    """A new database owned by a new LOGIN role that is no superuser and may not SET
    session_replication_role (optionally not create temporary tables either): (as owner, as
    superuser). Dropped afterwards."""
    target = dbs.new("dst")
    role = f"owner_{uuid.uuid4().hex[:6]}"
    admin = dbs.cluster.target()
    psql(admin, f"CREATE ROLE {role} LOGIN PASSWORD 'pw-{role}'")
    try:
        psql(admin, f'ALTER DATABASE "{target.dbname}" OWNER TO {role}')
        if not temp:
            psql(admin, f'REVOKE TEMP ON DATABASE "{target.dbname}" FROM PUBLIC, {role}')
        yield Target(params={**target.params, "user": role}, password=f"pw-{role}"), target
    finally:
        dbs.cluster.drop_database(target.dbname)
        psql(admin, f"DROP ROLE IF EXISTS {role}")


@pytest.mark.parametrize("temp", [True, False], ids=["temp", "no-temp"])
def test_data_only_as_a_plain_owner_loads_foreign_keys_in_any_order(dbs, tmp_path, temp):
    """Without replica mode foreign keys are set aside; without TEMP the notes go elsewhere."""
    source = dbs.new("src")
    psql(source, DATA_ONLY_SCHEMA + DATA_ONLY_ROWS)
    with owned_by_a_plain_role(dbs, temp=temp) as (as_owner, target):
        psql(as_owner, DATA_ONLY_SCHEMA)
        store, b = backup_of(source, tmp_path, kind="data")
        plan = restore(store, b, as_owner, mode="data")
        assert plan.replica_mode is False and plan.temp_ok is temp
        assert fingerprints(target) == fingerprints(source)
        assert scalar(target, "SELECT count(*) FROM app.profiles") == 0
        assert trigger_states(target) == {"always_on": "A", "replica_only": "R", "switched_off": "D"}
        assert scalar(target, "SELECT count(*) FROM pg_constraint WHERE conname = 'a_child_parent_fkey' AND convalidated") == 1


def public_may_execute(target, function: str) -> bool:
    return scalar(
        target, f"SELECT bool_or(grantee = 0) FROM pg_proc, aclexplode(coalesce(proacl, acldefault('f', proowner))) WHERE proname = '{function}'"
    )


@pytest.mark.parametrize(
    "target_defaults",
    [
        "ALTER DEFAULT PRIVILEGES GRANT EXECUTE ON FUNCTIONS TO reporter_{n}",  # an extra grantee
        "ALTER DEFAULT PRIVILEGES REVOKE EXECUTE ON FUNCTIONS FROM PUBLIC",  # a built-in removed
    ],
    ids=["extra-grantee", "public-revoked"],
)
def test_target_default_privileges_do_not_change_restored_privileges(pg15, tmp_path, target_defaults):
    n = uuid.uuid4().hex[:6]
    source = pg15.create_database(f"s_{n}")
    target = pg15.create_database(f"t_{n}")
    try:
        psql(source, "CREATE SCHEMA app; CREATE FUNCTION app.f() RETURNS int LANGUAGE sql AS 'SELECT 1';")
        psql(target, f"CREATE ROLE reporter_{n}; " + target_defaults.format(n=n))
        store, b = backup_of(source, tmp_path)
        restore(store, b, target)
        assert public_may_execute(target, "f")  # as on the source
        if "GRANT" in target_defaults:
            # the restoring role's own defaults are back to built-in: PUBLIC still executes new functions
            psql(target, "CREATE FUNCTION public.g() RETURNS int LANGUAGE sql AS 'SELECT 2'")
            assert public_may_execute(target, "g")
    finally:
        pg15.drop_database(source.dbname)
        pg15.drop_database(target.dbname)
        psql(pg15.target(), f"DROP ROLE IF EXISTS reporter_{n}")


def test_schema_and_table_names_with_dots_quotes_and_spaces(dbs, tmp_path):
    source, target = dbs.new("src"), dbs.new("dst")
    psql(
        source,
        """CREATE SCHEMA "my.app"; CREATE TABLE "my.app"."odd ""t"".x" (id int PRIMARY KEY, v text);
                    INSERT INTO "my.app"."odd ""t"".x" VALUES (1, 'a'), (2, 'b');""",
    )
    store, b = backup_of(source, tmp_path)
    restore(store, b, target)
    assert fingerprints(target) == fingerprints(source)
    psql(target, """DELETE FROM "my.app"."odd ""t"".x" WHERE id = 1""")
    restore(store, b, target, mode="data")
    assert fingerprints(target) == fingerprints(source)


def test_a_runbook_dump_file_cannot_be_restored_as_schema_or_data_only(tmp_path):
    folder = tmp_path / "b"
    folder.mkdir()
    (folder / "dump-2026-11-20.sql").write_text("SELECT 1;\n")
    store = LocalStore(folder)
    assert catalog.resolve(store, date="2026-11-20").legacy_files == ["dump-2026-11-20.sql"]
    for mode in ("schema", "data"):
        with pytest.raises(NotFound, match="full"):
            catalog.resolve(store, date="2026-11-20", mode=mode)


def test_an_unusable_backup_dir_is_one_line(dbs, invoke_cli):
    source = dbs.new("src")  # reachable: the backup folder is what fails
    res = invoke_cli("backup", env={"DATABASE_URL": dbs.url(source), "BACKUP_DIR": "/dev/null/sub"})
    errors = [line for line in res.stderr.strip().splitlines() if line.startswith("error: ")]
    assert res.returncode in (1, 2) and len(errors) == 1 and "/dev/null" in errors[0], res.stderr
    assert "Traceback" not in res.stderr


def test_list_removes_what_a_killed_backup_left(project, invoke_cli):
    leftover = project / ".backups" / ".tmp-2026-11-20T101010Z-x1y2"
    leftover.mkdir(parents=True)
    (leftover / "app.dump").write_bytes(b"half")
    res = invoke_cli("list")
    assert res.returncode == 0
    assert "no backups" in res.stdout
    # nobody holds the folder's lock: what a killed backup left is removed (and said)
    assert not leftover.exists()


def test_second_restore_with_default_privileges_in_an_app_schema(dbs, tmp_path):
    source, target = dbs.new("src"), dbs.new("dst")
    psql(source, "CREATE SCHEMA app; ALTER DEFAULT PRIVILEGES IN SCHEMA app GRANT SELECT ON TABLES TO PUBLIC; CREATE TABLE app.t (id int);")
    store, b = backup_of(source, tmp_path)
    restore(store, b, target)
    restore(store, b, target)  # the target now has those default privileges itself
    assert schema_dump(target) == schema_dump(source)


def test_schema_only_restore_creates_no_large_objects(dbs, tmp_path):
    source, target = dbs.new("src"), dbs.new("dst")
    psql(
        source,
        "CREATE TABLE public.t (id int); SELECT lo_from_bytea(4242, 'x');"
        " GRANT SELECT ON LARGE OBJECT 4242 TO PUBLIC; COMMENT ON LARGE OBJECT 4242 IS 'note';",
    )
    store, b = backup_of(source, tmp_path)
    restore(store, b, target, mode="schema")
    assert scalar(target, "SELECT count(*) FROM pg_largeobject_metadata") == 0
    restore(store, b, target, mode="data")
    assert scalar(target, "SELECT obj_description(4242, 'pg_largeobject')") == "note"
    assert scalar(target, "SELECT lomacl::text FROM pg_largeobject_metadata WHERE oid = 4242").find("=r/") >= 0


PARTITIONED = """
CREATE SCHEMA app;
CREATE TABLE app.z_users (id int PRIMARY KEY);
CREATE TABLE app.events (id int, user_id int REFERENCES app.z_users(id), v int, at date) PARTITION BY RANGE (at);
CREATE TABLE app.events_p1 PARTITION OF app.events FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
CREATE TABLE app.log (n text);
CREATE FUNCTION app.log_truncate() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN INSERT INTO app.log VALUES ('truncated'); RETURN NULL; END $$;
CREATE TRIGGER on_truncate AFTER TRUNCATE ON app.z_users FOR EACH STATEMENT EXECUTE FUNCTION app.log_truncate();
"""


def test_data_only_with_partitions_foreign_keys_and_truncate_triggers(dbs, tmp_path):
    source, target = dbs.new("src"), dbs.new("dst")
    psql(
        source,
        PARTITIONED + "INSERT INTO app.z_users VALUES (1); INSERT INTO app.events VALUES (1, 1, -5, '2026-05-01');"
        " ALTER TABLE app.events ADD CONSTRAINT events_v_positive CHECK (v > 0) NOT VALID;"
        " COMMENT ON CONSTRAINT events_v_positive ON app.events IS 'old rows exempt';"
        " DELETE FROM app.log;",
    )
    psql(
        target,
        PARTITIONED + "ALTER TABLE app.events ADD CONSTRAINT events_v_positive CHECK (v > 0) NOT VALID;"
        " COMMENT ON CONSTRAINT events_v_positive ON app.events IS 'old rows exempt';",
    )
    schema = schema_dump(target)
    store, b = backup_of(source, tmp_path)
    restore(store, b, target, mode="data")
    assert fingerprints(target) == fingerprints(source)
    assert scalar(target, "SELECT count(*) FROM app.log") == 0  # the TRUNCATE trigger stayed quiet
    assert schema_dump(target) == schema  # constraints, their comments, triggers: as they were


def test_runbook_data_file_relying_on_search_path(dbs, tmp_path):
    target = dbs.new("dst")
    psql(target, "CREATE TABLE public.items (id serial PRIMARY KEY, v text);")
    folder = tmp_path / "b"
    folder.mkdir()
    (folder / "data-2026-11-20.sql").write_text("INSERT INTO public.items (id, v) VALUES (1, 'a');\nSELECT setval('items_id_seq', 1);\n")
    store = LocalStore(folder)
    restore(store, catalog.resolve(store, date="2026-11-20", mode="data"), target, mode="data")
    assert scalar(target, "SELECT count(*) FROM public.items") == 1
