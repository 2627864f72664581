"""Runbook files become a real backup through a throwaway cluster (tasks/engine/runbook.py), on
real PostgreSQL 15 and 17: what loads comes out exactly, what could run a command or commit
halfway is refused, and the target is never written."""

from __future__ import annotations

import glob
import json
import os
import shutil
import tempfile
import uuid
from pathlib import Path

import pytest

from tasks.engine import catalog, dbinfo, pgtools
from tasks.engine.errors import Interrupted, RestoreFailed, ToolsMissing, UsageError
from tasks.engine.restore import execute_restore, plan_restore
from tasks.engine.runbook import runbook_backup
from tests.helpers import fingerprints, psql, scalar, schema_dump, state
from tests.supabase_platform import APP_USERS

DAY = "2026-11-20"

SOURCE = """
CREATE SCHEMA app;
CREATE TABLE app.users (id int PRIMARY KEY, email text NOT NULL);
CREATE TABLE app.projects (id serial PRIMARY KEY, owner int REFERENCES app.users, name text,
                           updated_at timestamptz DEFAULT '2026-01-01');
CREATE TABLE app.audit (n serial, what text);
CREATE FUNCTION app.touch() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  NEW.updated_at := '2030-01-01';
  INSERT INTO app.audit (what) VALUES ('fired');
  RETURN NEW;
END $$;
CREATE TRIGGER projects_touch BEFORE INSERT ON app.projects FOR EACH ROW EXECUTE FUNCTION app.touch();
INSERT INTO app.users SELECT g, 'u' || g || '@x.test' FROM generate_series(1, 40) g;
ALTER TABLE app.projects DISABLE TRIGGER projects_touch;
INSERT INTO app.projects (owner, name) SELECT 1 + g % 40, 'p' || g FROM generate_series(1, 250) g;
ALTER TABLE app.projects ENABLE TRIGGER projects_touch;
CREATE TABLE public.notes (id int PRIMARY KEY, body text);
INSERT INTO public.notes VALUES (1, 'plain');
"""


def pg_dump(source, *flags: str) -> bytes:
    """The runbook's hand-made dump: plain SQL from the source's own major version."""
    with source.connect() as conn:
        major = conn.info.server_version // 10000
    suite = pgtools.pick(pgtools.discover(), at_least=major, prefer=major)
    return pgtools.run([suite.tool("pg_dump"), *flags, "--no-password", f"--dbname={source.conninfo()}"], env=source.tool_env())


def counts(target) -> dict[str, int]:
    with target.connect() as conn:
        return dbinfo.row_counts(conn, dbinfo.tables(conn, ["app", "public"]))


def manifest_counts(b) -> dict[str, int]:
    return {f"{t['schema']}.{t['name']}": t["rows"] for t in b.manifest["tables"] if t["section"] == "app"}


def restored(dbs, store, b, mode=None):
    """The backup restored by the engine's ordinary path into a new database."""
    out = dbs.new("out")
    execute_restore(plan_restore(store, b, out, mode=mode), store)
    return out


@pytest.fixture
def marker_dir():
    """A folder the throwaway server's user could write to as well (the server runs as
    `postgres`/`nobody` when the tests run as root), so a marker file proves nothing ran."""
    folder = Path(tempfile.mkdtemp(prefix="fortress-marker-"))
    os.chmod(folder, 0o1777)
    yield folder
    for p in folder.iterdir():
        p.unlink()
    folder.rmdir()


def sandboxes() -> set[str]:
    return set(glob.glob(os.path.join(tempfile.gettempdir(), "fortress-pg-*")))


# --- what loads comes out exactly ---------------------------------------------------------------


def test_pg_dump_plain_file_round_trips(dbs, tmp_path):
    source = dbs.new("src")
    psql(source, SOURCE)
    target = dbs.new("dst")
    psql(target, "CREATE SCHEMA precious; CREATE TABLE precious.keep (v text); INSERT INTO precious.keep VALUES ('mine');")
    before = state(target)
    (tmp_path / f"dump-{DAY}.sql").write_bytes(pg_dump(source))
    steps: list[str] = []
    store, b = runbook_backup([tmp_path / f"dump-{DAY}.sql"], target=target, store_root=tmp_path / "store", step=steps.append)
    assert b.kind == "full" and not b.legacy
    assert b.manifest["origin"]["runbook_files"] == [f"dump-{DAY}.sql"]
    assert b.label == f"runbook files: dump-{DAY}.sql"
    assert manifest_counts(b) == counts(source)
    assert catalog.verify_checksums(store, b)  # an ordinary backup: checksummed files
    assert state(target) == before  # only read
    assert fingerprints(restored(dbs, store, b)) == fingerprints(source)
    assert any("meta-commands disabled" in s for s in steps)


def test_schema_and_data_files_load_in_one_go_with_the_apps_triggers_quiet(dbs, tmp_path):
    source = dbs.new("src")
    psql(source, SOURCE)
    (tmp_path / f"schema-{DAY}.sql").write_bytes(pg_dump(source, "--schema-only"))
    (tmp_path / f"data-{DAY}.sql").write_bytes(pg_dump(source, "--data-only"))
    store, b = runbook_backup([tmp_path / f"data-{DAY}.sql", tmp_path / f"schema-{DAY}.sql"], target=dbs.new("dst"), store_root=tmp_path / "store")
    assert b.kind == "full"
    assert b.manifest["origin"]["runbook_files"] == [f"schema-{DAY}.sql", f"data-{DAY}.sql"]
    # projects_touch did not fire for the 250 loaded rows (no audit rows, no rewritten dates)
    assert manifest_counts(b) == counts(source)
    assert fingerprints(restored(dbs, store, b)) == fingerprints(source)


def test_a_lone_data_file_loads_into_the_targets_schema(dbs, tmp_path):
    source = dbs.new("src")
    psql(source, SOURCE)
    target = dbs.new("dst")
    psql(
        target,
        SOURCE.split("INSERT INTO app.users")[0] + "CREATE TABLE public.notes (id int PRIMARY KEY, body text);"
        "INSERT INTO app.users VALUES (99, 'other@x.test');",
    )
    before = state(target)
    (tmp_path / f"data-{DAY}.sql").write_bytes(pg_dump(source, "--data-only"))
    store, b = runbook_backup([tmp_path / f"data-{DAY}.sql"], target=target, store_root=tmp_path / "store")
    assert b.kind == "data"
    assert manifest_counts(b) == counts(source)
    assert state(target) == before
    execute_restore(plan_restore(store, b, target, mode="data"), store)
    assert fingerprints(target) == fingerprints(source)


def test_objects_a_superuser_gave_to_other_roles_load_without_a_superuser(dbs, tmp_path):
    """The source's superuser gave tables to a role without CREATE on their schemas (which only a
    superuser may) and granted for it; the files load as a non-superuser, and what was lent for
    that is gone again before the backup reads the roles."""
    owner = f"rb_owner_{uuid.uuid4().hex[:6]}"
    source = dbs.new("src")
    try:
        psql(
            source,
            f"CREATE ROLE {owner} NOLOGIN; CREATE SCHEMA app;"
            f" CREATE TABLE app.t (id int PRIMARY KEY); INSERT INTO app.t VALUES (1), (2);"
            f" CREATE TABLE public.p (id int); INSERT INTO public.p VALUES (3);"
            f" ALTER TABLE app.t OWNER TO {owner}; ALTER TABLE public.p OWNER TO {owner};"
            f" GRANT SELECT ON app.t TO PUBLIC;"
            f" ALTER DEFAULT PRIVILEGES FOR ROLE {owner} GRANT SELECT ON TABLES TO PUBLIC;",
        )
        (tmp_path / f"dump-{DAY}.sql").write_bytes(pg_dump(source))
        dst = dbs.new("dst")
        store, b = runbook_backup([tmp_path / f"dump-{DAY}.sql"], target=dst, store_root=tmp_path / "store")
        roles_json = json.loads(store.local_path(b.id, "roles.json").read_text())
        with dst.connect() as conn:
            on_target = {r[0] for r in conn.execute("SELECT rolname FROM pg_roles")}
        # the sandbox's loading helper (a role the target never had) does not travel
        assert {r["name"] for r in roles_json["roles"]} <= on_target
        assert not any(m["role"] == owner for m in roles_json["memberships"]), roles_json["memberships"]
        assert set(b.manifest["roles"]["app"]) <= on_target
        out = restored(dbs, store, b)
        assert fingerprints(out) == fingerprints(source)
        assert schema_dump(out) == schema_dump(source)
    finally:
        for name in list(dbs.created):
            dbs.cluster.drop_database(name)
        psql(dbs.cluster.target(), f"DROP ROLE IF EXISTS {owner}")


TRANSACTION_WORDS = r"""
CREATE SCHEMA app;
CREATE TABLE app.ticks (n int);
CREATE TABLE app.texts (id int PRIMARY KEY, body text);
-- lines that are exactly "BEGIN;" / "COMMIT;", next to the large-object calls the old line
-- filter keyed on, inside values and function bodies
INSERT INTO app.texts VALUES
  (1, E'one\nBEGIN;\nSELECT pg_catalog.lo_open(''16400'', 131072);\ntwo'),
  (2, E'SELECT pg_catalog.lo_close(0);\nCOMMIT;\nthree'),
  (3, E'\nBEGIN;\n\nCOMMIT;\n');
CREATE FUNCTION app.words() RETURNS text LANGUAGE plpgsql AS $$
BEGIN
  RETURN '
BEGIN;
SELECT pg_catalog.lo_open(''16400'', 131072);
SELECT pg_catalog.lo_close(0);
COMMIT;
';
END $$;
CREATE PROCEDURE app.tick() LANGUAGE plpgsql AS $$
BEGIN
INSERT INTO app.ticks VALUES (1);
SELECT pg_catalog.lo_close(0);
COMMIT;
END $$;
"""


def test_begin_and_commit_inside_values_and_function_bodies_load_exactly(dbs, tmp_path):
    source = dbs.new("src")
    psql(source, TRANSACTION_WORDS)
    dump = pg_dump(source, "--inserts")
    assert b"\nBEGIN;\nSELECT pg_catalog.lo_open(" in dump and b"lo_close(0);\nCOMMIT;\n" in dump
    (tmp_path / f"dump-{DAY}.sql").write_bytes(dump)
    store, b = runbook_backup([tmp_path / f"dump-{DAY}.sql"], target=dbs.new("dst"), store_root=tmp_path / "store")
    out = restored(dbs, store, b)
    assert fingerprints(out) == fingerprints(source)
    assert schema_dump(out) == schema_dump(source)  # function bodies to the byte


def test_pg_dump_inserts_with_large_objects_loads(dbs, tmp_path):
    source = dbs.new("src")
    psql(
        source,
        "CREATE TABLE public.docs (id int PRIMARY KEY, blob oid, note text);"
        " INSERT INTO public.docs SELECT 1, lo_from_bytea(0, decode(repeat('ab', 70000), 'hex')), 'big';"
        " INSERT INTO public.docs SELECT 2, lo_from_bytea(0, 'small'), E'it''s\\nmulti-line';",
    )
    dump = pg_dump(source, "--inserts")
    assert b"lo_open" in dump and b"\nCOMMIT;\n" in dump  # pg_dump's own BEGIN/COMMIT around their contents
    (tmp_path / f"dump-{DAY}.sql").write_bytes(dump)
    store, b = runbook_backup([tmp_path / f"dump-{DAY}.sql"], target=dbs.new("dst"), store_root=tmp_path / "store")
    out = restored(dbs, store, b)
    assert fingerprints(out) == fingerprints(source)
    query = "SELECT string_agg(md5(lo_get(oid)), ',' ORDER BY oid) FROM pg_largeobject_metadata"
    assert scalar(out, "SELECT count(*) FROM pg_largeobject_metadata") == 2
    assert scalar(out, query) == scalar(source, query)


def test_supabase_cli_files_become_a_supabase_backup_with_its_users(supa, tmp_path):
    from tests.test_supabase import cli_dump, contents

    project = supa.new_project()
    supa.load_app(project)
    folder = tmp_path / "backups"
    cli_dump(project, folder, DAY)
    before = contents(supa, project)
    store, b = runbook_backup([folder / f"schema-{DAY}.sql", folder / f"data-{DAY}.sql"], target=project, store_root=tmp_path / "store")
    assert contents(supa, project) == before  # only read
    m = b.manifest
    assert m["source"]["platform"] == "supabase" and b.file("platform")
    assert {"auth", "storage"} <= set(m["platform_data_schemas"])
    rows = {f"{t['schema']}.{t['name']}": t["rows"] for t in m["tables"]}
    assert rows["auth.users"] == len(APP_USERS)
    for name in ("auth.users", "auth.identities", "storage.objects", "public.projects", "public.scenarios", "public.profiles"):
        assert rows[name] == before[name][0], name
    # and it restores like any backup into a new project of the platform
    fresh = supa.new_project()
    execute_restore(plan_restore(store, b, fresh), store)
    after = contents(supa, fresh)
    for name in ("auth.users", "auth.identities", "storage.objects", "public.projects", "public.scenarios", "public.profiles"):
        assert after[name] == before[name], name


def test_a_hand_made_file_on_supabase_gets_the_grants_the_platform_gives(supa15_a, tmp_path):
    """On Supabase, postgres's default privileges in `public` grant new tables to the API roles,
    and its search_path reaches the `extensions` schema; a hand-written file relying on both
    loads and comes out with those grants."""
    project = supa15_a.new_project()
    (tmp_path / f"dump-{DAY}.sql").write_text(
        "CREATE TABLE public.hand_made (id int, salt bytea);\nINSERT INTO public.hand_made VALUES (1, gen_random_bytes(4));\n"
    )
    store, b = runbook_backup([tmp_path / f"dump-{DAY}.sql"], target=project, store_root=tmp_path / "store")
    fresh = supa15_a.new_project()
    execute_restore(plan_restore(store, b, fresh), store)
    assert scalar(fresh, "SELECT has_table_privilege('anon', 'public.hand_made', 'SELECT')")
    assert scalar(fresh, "SELECT count(*) FROM public.hand_made") == 1


# --- what is refused --------------------------------------------------------------------------------


def _pg_dump_shaped(body: str, key: str = "Pz3kQv9XbD2m") -> str:
    return (
        f"--\n-- PostgreSQL database dump\n--\n\n\\restrict {key}\n\nSET client_encoding = 'UTF8';\n{body}"
        f"--\n-- PostgreSQL database dump complete\n--\n\n\\unrestrict {key}\n\n"
    )


META = {
    "plain": "CREATE TABLE t (i int);\n\\! touch {m}\nINSERT INTO t VALUES (1);\n",
    "mid-line": "CREATE TABLE t (i int); \\! touch {m}\n",
    "in pg_dump's restricted part": _pg_dump_shaped("CREATE TABLE t (i int);\n\\! touch {m}\n"),
    "after pg_dump's unrestrict": _pg_dump_shaped("CREATE TABLE t (i int);\n") + "\\! touch {m}\n",
    "unrestrict with backticks": "SELECT 1;\n\\unrestrict `touch {m}`\n\\! touch {m}\n",
    "unrestrict with an escaped key": _pg_dump_shaped("SELECT 1; \\unrestrict 'Pz3kQv9X\\x62D2m'\n\\! touch {m}\n"),
    "server-side program": "COPY (SELECT 1) TO PROGRAM 'touch {m}';\n",
}


# psql 17.10 is the one that runs backticks in \unrestrict's argument; what psql refuses is the
# same in 15, checked there for two cases.
CASES = [(case, 17) for case in META] + [("plain", 15), ("in pg_dump's restricted part", 15)]


@pytest.mark.parametrize("case,major", CASES, ids=[f"pg{m}-{c}" for c, m in CASES])
def test_commands_in_a_file_never_run(case, major, request, tmp_path, marker_dir):
    dbs = request.getfixturevalue(f"dbs{major}")
    marker = marker_dir / "MARKER"
    (tmp_path / f"dump-{DAY}.sql").write_text(META[case].replace("{m}", str(marker)))
    with pytest.raises(RestoreFailed, match=f"dump-{DAY}.sql") as exc:
        runbook_backup([tmp_path / f"dump-{DAY}.sql"], target=dbs.new("dst"), store_root=tmp_path / "store")
    assert "\n" not in str(exc.value) and "target was not touched" in str(exc.value)
    assert not marker.exists()
    assert not (tmp_path / "store").exists() or not list((tmp_path / "store").iterdir())


def test_a_comment_left_open_cannot_carry_a_command_into_the_next_file(dbs17, tmp_path, marker_dir):
    """The schema file hides pg_dump's closing line in a comment, so psql stays restricted under
    its key; the data file closes the comment and tries a command: psql must refuse it."""
    marker = marker_dir / "MARKER"
    (tmp_path / f"schema-{DAY}.sql").write_text("\\restrict Kq81\nCREATE TABLE t (i int);\n/*\n\\unrestrict Kq81\n")
    (tmp_path / f"data-{DAY}.sql").write_text(f"*/\nINSERT INTO t VALUES (1);\n\\! touch {marker}\n")
    with pytest.raises(RestoreFailed, match="meta-command|unfinished"):
        runbook_backup([tmp_path / f"schema-{DAY}.sql", tmp_path / f"data-{DAY}.sql"], target=dbs17.new("dst"), store_root=tmp_path / "store")
    assert not marker.exists()


def test_two_pg_dump_blocks_with_one_key_are_refused(tmp_path, dbs15):
    (tmp_path / f"schema-{DAY}.sql").write_text(_pg_dump_shaped("CREATE TABLE t (i int);\n"))
    (tmp_path / f"data-{DAY}.sql").write_text(_pg_dump_shaped("INSERT INTO t VALUES (1);\n"))
    with pytest.raises(RestoreFailed, match=f"data-{DAY}.sql line 5 reuses the psql key"):
        runbook_backup([tmp_path / f"schema-{DAY}.sql", tmp_path / f"data-{DAY}.sql"], target=dbs15.new("dst"), store_root=tmp_path / "store")


def test_a_top_level_commit_then_an_error_is_refused(dbs, tmp_path):
    (tmp_path / f"dump-{DAY}.sql").write_text("CREATE TABLE t (i int);\nINSERT INTO t VALUES (1);\nCOMMIT;\nINSERT INTO t VALUES (2);\nSELECT 1/0;\n")
    with pytest.raises(RestoreFailed, match=rf"dump-{DAY}\.sql line 5 does not load: ERROR: division by zero"):
        runbook_backup([tmp_path / f"dump-{DAY}.sql"], target=dbs.new("dst"), store_root=tmp_path / "store")


def test_a_pg_dump_file_cut_short_is_refused(dbs15, tmp_path):
    source = dbs15.new("src")
    psql(source, SOURCE)
    dump = pg_dump(source)
    (tmp_path / f"dump-{DAY}.sql").write_bytes(dump[: len(dump) // 2])
    with pytest.raises(RestoreFailed, match="without its closing"):
        runbook_backup([tmp_path / f"dump-{DAY}.sql"], target=dbs15.new("dst"), store_root=tmp_path / "store")


def test_an_extension_the_throwaway_server_lacks_is_named(dbs15, pg17, tmp_path):
    """PG_BIN_DIR holds only PostgreSQL 17 (the wheel, which has no uuid-ossp): the files would
    load into 17, which is said, and the target's uuid-ossp cannot be made there, which is refused."""
    target = dbs15.new("dst")
    psql(target, 'CREATE EXTENSION IF NOT EXISTS "uuid-ossp"')
    (tmp_path / f"dump-{DAY}.sql").write_text("SELECT 1;\n")
    steps: list[str] = []
    with pytest.raises(ToolsMissing, match="cannot create extensions the target has: uuid-ossp"):
        runbook_backup(
            [tmp_path / f"dump-{DAY}.sql"], target=target, store_root=tmp_path / "store", pg_bin_dir=str(pg17.suite.bindir), step=steps.append
        )
    assert any("no PostgreSQL 15 server binaries here" in s and "17" in s for s in steps), steps


def test_file_names_that_are_not_a_runbook_set_are_refused(tmp_path, dbs15):
    for names in (["notes.sql"], [f"dump-{DAY}.sql", f"data-{DAY}.sql"], [f"data-{DAY}.sql", "data-2026-11-21.sql"]):
        for n in names:
            (tmp_path / n).write_text("SELECT 1;\n")
        with pytest.raises(UsageError):
            runbook_backup([tmp_path / n for n in names], target=dbs15.new("dst"), store_root=tmp_path / "store")


def test_ctrl_c_stops_the_throwaway_server(dbs15, tmp_path, monkeypatch):
    (tmp_path / f"dump-{DAY}.sql").write_text("CREATE TABLE t (i int);\n")
    # this run's throwaway servers go to a folder of their own: other test workers start theirs
    # in the shared temporary folder meanwhile
    private = Path(tempfile.mkdtemp(prefix="fortress-test-tmp-"))
    private.chmod(0o755)  # the server runs as an unprivileged user, who must reach its folder
    monkeypatch.setattr(tempfile, "tempdir", str(private))
    try:

        def step(message: str) -> None:
            if message.startswith("loading"):
                raise KeyboardInterrupt

        with pytest.raises(Interrupted, match="target was not touched"):
            runbook_backup([tmp_path / f"dump-{DAY}.sql"], target=dbs15.new("dst"), store_root=tmp_path / "store", step=step)
        assert sandboxes() == set()
    finally:
        monkeypatch.undo()
        shutil.rmtree(private, ignore_errors=True)
