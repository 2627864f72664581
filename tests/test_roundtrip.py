"""Round trips on real PostgreSQL 15 and 17: what comes back must be what went in."""

from __future__ import annotations

from pathlib import Path

from tasks.engine import catalog
from tasks.engine.dump import create_backup
from tasks.engine.restore import execute_restore, plan_restore
from tasks.engine.storage import LocalStore
from tests.helpers import fingerprints, psql, scalar, schema_dump

VARIETY = (Path(__file__).parent / "sql" / "variety.sql").read_text()

OTHER_DATA = """
CREATE SCHEMA old_stuff;
CREATE TABLE old_stuff.junk (id int);
INSERT INTO old_stuff.junk SELECT generate_series(1, 50);
CREATE TABLE public.profiles (id int PRIMARY KEY, note text);
INSERT INTO public.profiles VALUES (1, 'stale');
CREATE PUBLICATION old_pub FOR ALL TABLES;
SELECT lo_from_bytea(0, 'stale large object');
"""


def backup_restore(source, target, tmp_path: Path, *, kind="full", mode=None):
    store = LocalStore(tmp_path / "backups")
    result = create_backup(source, store, kind=kind)
    backup = catalog.load(store, result.backup_id)
    plan = plan_restore(store, backup, target, mode=mode)
    execute_restore(plan, store)
    return result, plan


def large_objects(target):
    with target.connect() as conn:
        return conn.execute("SELECT m.oid::bigint, md5(lo_get(m.oid)) FROM pg_largeobject_metadata m ORDER BY 1").fetchall()


def test_variety_round_trip_over_different_data(dbs, tmp_path):
    source = dbs.new("src")
    target = dbs.new("dst")
    psql(source, VARIETY)
    psql(target, OTHER_DATA)

    result, plan = backup_restore(source, target, tmp_path)

    assert dict(plan.drop_schemas).keys() >= {"old_stuff", "public"}
    src, dst = fingerprints(source), fingerprints(target)
    tables = {k for k in src if k not in ("kit.mood_counts", "kit.never_filled")}
    assert tables <= dst.keys()
    for name in sorted(tables):
        assert dst[name] == src[name], name
    assert "old_stuff.junk" not in dst
    assert schema_dump(target) == schema_dump(source)
    assert large_objects(target) == large_objects(source)
    assert scalar(target, "SELECT count(*) FROM pg_publication WHERE pubname = 'old_pub'") == 0
    assert scalar(target, "SELECT count(*) FROM pg_publication_tables WHERE pubname = 'kit_pub'") == 2
    # the trigger on auth.users did not fire during the load: 3 users, still exactly 4 profiles
    assert scalar(target, "SELECT count(*) FROM public.profiles") == 4
    # sequences continue where the source left off
    for seq in ("kit.everything_id_seq", "kit.invoice_no", "public.profiles_id_seq"):
        assert scalar(target, f"SELECT nextval('{seq}')") == scalar(source, f"SELECT nextval('{seq}')")
    # the matview was populated again from the restored rows (the source's copy was stale)
    assert scalar(target, "SELECT n FROM kit.mood_counts WHERE mood = 'happy'") == scalar(
        target, "SELECT count(*) FROM kit.everything WHERE mood = 'happy'"
    )
    assert scalar(target, "SELECT ispopulated FROM pg_matviews WHERE matviewname = 'never_filled'") is False
    # NOT VALID constraints stayed NOT VALID, with their old rows
    assert scalar(target, "SELECT count(*) FROM pg_constraint WHERE conname LIKE 'legacy_%' AND NOT convalidated") == 2
    # the manifest counted every table in the same snapshot the dump read
    counts = {f"{t['schema']}.{t['name']}": t["rows"] for t in result.manifest["tables"]}
    assert counts["kit.everything"] == src["kit.everything"][0]
    assert counts["auth.users"] == 3


def test_restore_into_fresh_cluster_recreates_roles(pg15, tmp_path):
    from tasks.engine.sandbox import Cluster, server_suite
    from tests.conftest import PASSWORD

    source = pg15.create_database("roles_src")
    try:
        psql(source, VARIETY)
        with Cluster(server_suite(15), password=PASSWORD) as fresh:
            target = fresh.create_database("roles_dst")
            _, plan = backup_restore(source, target, tmp_path)
            assert "v_login" in plan.login_roles
            with target.connect() as conn:
                rows = {
                    r[0]: r[1:]
                    for r in conn.execute("SELECT rolname, rolcanlogin, rolbypassrls, rolconnlimit FROM pg_roles WHERE rolname LIKE 'v\\_%'")
                }
                # BYPASSRLS (like SUPERUSER and REPLICATION) is never handed out by a restore,
                # even a superuser's; the plan said so before anything changed
                assert rows == {
                    "v_owner": (False, False, -1),
                    "v_reader": (False, False, -1),
                    "v_app": (False, False, -1),
                    "v_login": (True, False, 5),
                }
                assert any("BYPASSRLS for role v_app" in r for r in plan.roles.refused)
                # no password travelled with the role
                assert conn.execute("SELECT rolpassword FROM pg_authid WHERE rolname = 'v_login'").fetchone()[0] is None
                assert conn.execute("SELECT pg_has_role('v_login', 'v_reader', 'MEMBER')").fetchone()[0]
                assert conn.execute(
                    "SELECT setconfig FROM pg_db_role_setting s JOIN pg_roles r ON r.oid = s.setrole WHERE rolname = 'v_reader'"
                ).fetchone()[0] == ["statement_timeout=5s"]
            assert schema_dump(target) == schema_dump(source)
            assert fingerprints(target).keys() == fingerprints(source).keys()
    finally:
        pg15.drop_database("roles_src")


def test_schema_only_then_data_only(dbs, tmp_path):
    source = dbs.new("src")
    target = dbs.new("dst")
    psql(source, VARIETY)
    store = LocalStore(tmp_path / "b")
    full = create_backup(source, store, kind="full")
    backup = catalog.load(store, full.backup_id)
    execute_restore(plan_restore(store, backup, target, mode="schema"), store)
    assert scalar(target, "SELECT count(*) FROM kit.everything") == 0
    assert schema_dump(target) == schema_dump(source)
    execute_restore(plan_restore(store, backup, target, mode="data"), store)
    src, dst = fingerprints(source), fingerprints(target)
    for name in src:
        if name not in ("kit.mood_counts", "kit.never_filled"):
            assert dst[name] == src[name], name
    # data-only over existing rows replaces them, triggers stay quiet
    execute_restore(plan_restore(store, backup, target, mode="data"), store)
    assert scalar(target, "SELECT count(*) FROM public.profiles") == 4
    assert fingerprints(target)["kit.everything"] == src["kit.everything"]
