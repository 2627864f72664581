"""Issue 6, as an attacker and as a careless user would try it: no name in a database and no edit
to a backup folder may make a restore run a command, grant a privilege, or touch an object the
plan did not list; the target is either restored exactly or left unchanged, with a message that
says which.

Every test backs up with the real engine, restores through the real CLI (exit codes are part of
the promise) into a real throwaway cluster, and checks what a user would notice: a file created
by a `\\!` shell command (a marker under tmp_path), a role that became SUPERUSER, REPLICATION or
BYPASSRLS, a restored database that differs from its source, or a target that changed although
the restore was refused. Restores and resets go through the CLI only, so nothing here imports the
restore engine (tasks.engine.load, being split into tasks.engine.restore); a tampered backup is
edited through what its manifest says (`files[].role`), whatever format the files have.
"""

from __future__ import annotations

import shutil
import uuid
from types import SimpleNamespace

import pytest

from tasks.engine.errors import ExitCode
from tests.fixtures_cli import SOURCE_SQL, TARGET_SQL, engine_backup
from tests.helpers import psql, scalar, seeded, state
from tests.hostile_helpers import (
    Marker,
    add_file_entry,
    assert_roles_kept,
    column_acls,
    drop_roles,
    env_for,
    ident,
    literal,
    mentions,
    plain_dump,
    read_manifest,
    rehash,
    roles,
    said,
    shown,
    supabase_state,
    tamper,
    undo_role_changes,
    write_manifest,
)

REFUSED = (ExitCode.INTEGRITY, ExitCode.RESTORE_FAILED)


@pytest.fixture
def marker(tmp_path):
    folder = tmp_path / "shell"
    folder.mkdir()
    m = Marker(folder)
    yield m
    m.close()


def no_shell(marker: Marker, res) -> None:
    assert not marker.exists(), "a `\\!` shell command ran on the restoring machine:\n" + shown(res)


# --- 1. names -----------------------------------------------------------------------------------

ADDITION_SQL = {
    # an RLS policy on the platform's storage.objects, as Supabase apps write them
    "policy": "CREATE POLICY {name} ON storage.objects FOR SELECT TO authenticated USING (bucket_id = 'avatars');",
    # an app trigger on auth.users (AFTER UPDATE: it cannot fire while rows load)
    "trigger": "CREATE FUNCTION public.touch_profile() RETURNS trigger LANGUAGE plpgsql"
    " AS $$ BEGIN RETURN NEW; END $$;\n"
    "CREATE TRIGGER {name} AFTER UPDATE ON auth.users FOR EACH ROW EXECUTE FUNCTION public.touch_profile();",
}
NAME_COLUMN = {"policy": "SELECT count(*) FROM pg_policy WHERE polname = {name}", "trigger": "SELECT count(*) FROM pg_trigger WHERE tgname = {name}"}


@pytest.mark.parametrize("kind", ["policy", "trigger"])
def test_addition_on_a_platform_table_named_like_a_shell_command_runs_nothing(kind, supa, project, invoke_cli, marker):
    name = f"own rows\n{marker.shell}\n--"
    source = supa.new_project()
    supa.load_app(source)
    psql(source, ADDITION_SQL[kind].format(name=ident(name)))
    bdir = project / "backups"
    backup_id = engine_backup(source, bdir)
    target = supa.new_project()
    roles_before = roles(supa.admin())

    res = invoke_cli("restore", "--id", backup_id, "--yes", env=env_for(supa.url(target), bdir))

    no_shell(marker, res)
    assert_roles_kept(supa.admin(), roles_before, may_add=False, context=shown(res))
    assert res.returncode == 0, shown(res)
    assert supabase_state(supa, target) == supabase_state(supa, source)
    assert scalar(target, NAME_COLUMN[kind].format(name=literal(name))) == 1


def restore_after_dropping_roles(dbs, project, invoke_cli, names: list[str], setup_sql: str):
    """The source database has roles the target's server never saw: create them, back up, drop
    the source and the roles, then restore into a new database. Returns (run, expected state,
    target, the server's roles before the restore)."""
    admin = dbs.cluster.target()
    for name in names:
        psql(admin, f"CREATE ROLE {ident(name)}")
    source = seeded(dbs, "src", SOURCE_SQL + setup_sql)
    expected = state(source)
    bdir = project / "backups"
    backup_id = engine_backup(source, bdir)
    dbs.cluster.drop_database(source.dbname)
    drop_roles(admin, *names)
    assert not set(names) & set(roles(admin))
    target = dbs.new("dst")
    before = roles(admin)
    res = invoke_cli("restore", "--id", backup_id, "--yes", env=env_for(dbs.url(target), bdir))
    return res, expected, target, before


def test_role_named_like_a_shell_command_runs_nothing(dbs, project, invoke_cli, marker):
    role = f"x$fortress$\n{marker.shell}\n"
    admin = dbs.cluster.target()
    try:
        res, expected, target, before = restore_after_dropping_roles(dbs, project, invoke_cli, [role], "")
        no_shell(marker, res)
        assert res.returncode == 0, shown(res)
        assert role in roles(admin), "the role did not come back under its exact name"
        assert_roles_kept(admin, before, may_add=True)
        assert state(target) == expected
    finally:
        drop_roles(admin, role)


def test_honest_tables_named_like_the_tools_dollar_tags_restore(dbs, project, invoke_cli):
    tags = ["t$fortress_check$", "$fortress$", "q$fortress_quiet$x"]
    setup = "".join(
        f"CREATE TABLE public.{ident(t)} (id int PRIMARY KEY, v text);"
        f"INSERT INTO public.{ident(t)} SELECT g, 'row ' || g FROM generate_series(1, 30) g;"
        for t in tags
    )
    source = seeded(dbs, "src", SOURCE_SQL + setup)
    bdir = project / "backups"
    backup_id = engine_backup(source, bdir)
    target = seeded(dbs, "dst", TARGET_SQL)
    env = env_for(dbs.url(target), bdir)

    res = invoke_cli("restore", "--id", backup_id, "--yes", env=env)
    assert res.returncode == 0, shown(res)
    assert state(target) == state(source)

    # a data-only restore (rows reloaded quietly into the existing tables) too
    psql(target, "".join(f"DELETE FROM public.{ident(t)} WHERE id > 10;" for t in tags))
    res = invoke_cli("restore", "--id", backup_id, "--yes", "--data-only", env=env)
    assert res.returncode == 0, shown(res)
    assert state(target) == state(source)


def test_honest_role_named_like_the_tools_dollar_tag_restores(dbs, project, invoke_cli):
    role = "r$fortress$x"
    admin = dbs.cluster.target()
    setup = f"CREATE TABLE public.owned (id int); ALTER TABLE public.owned OWNER TO {ident(role)};GRANT SELECT ON app.items TO {ident(role)};"
    try:
        res, expected, target, before = restore_after_dropping_roles(dbs, project, invoke_cli, [role], setup)
        assert res.returncode == 0, shown(res)
        assert role in roles(admin)
        assert_roles_kept(admin, before, may_add=True)
        assert state(target) == expected
    finally:
        dbs.cleanup()  # the role owns a table there
        dbs.created.clear()
        drop_roles(admin, role)


def awkward(stem: str) -> str:
    """A 63-byte name (the limit) holding a quote, a newline, a backslash, `;`, `$$`, a psql
    meta-command at a line start and multibyte unicode."""
    name = stem + "\"q'\n\\! x;$$ ünï — 南 "
    while len((name + "z").encode()) <= 63:
        name += "z"
    assert len(name.encode()) == 63, len(name.encode())
    return name


def test_schema_and_column_names_with_awkward_characters_round_trip(dbs, project, invoke_cli, marker):
    schema, column, table = awkward("s"), awkward("c"), awkward("t")
    q = f"{ident(schema)}.{ident(table)}"
    setup = (
        f"CREATE SCHEMA {ident(schema)};"
        f"CREATE TABLE {q} (id int PRIMARY KEY, {ident(column)} text NOT NULL DEFAULT {literal(marker.shell)});"
        f"INSERT INTO {q} (id) SELECT generate_series(1, 20);"
        f"INSERT INTO {q} VALUES (21, {literal(schema + column)});"
        f"COMMENT ON COLUMN {q}.{ident(column)} IS {literal(column)};"
        f"GRANT SELECT ({ident(column)}) ON {q} TO PUBLIC;"
        f"CREATE INDEX ON {q} ({ident(column)});"
    )
    source = seeded(dbs, "src", SOURCE_SQL + setup)
    bdir = project / "backups"
    backup_id = engine_backup(source, bdir)
    target = seeded(dbs, "dst", TARGET_SQL)

    res = invoke_cli("restore", "--id", backup_id, "--yes", env=env_for(dbs.url(target), bdir))

    no_shell(marker, res)
    assert res.returncode == 0, shown(res)
    assert state(target) == state(source)
    assert column_acls(target, q) == column_acls(source, q)


# --- 2. column names on a PostgreSQL 17 source restored into 15 -----------------------------------


def restore_17_into_15(dbs17, dbs15, project, invoke_cli, setup_sql: str, *, as_role: str | None = None):
    """A PostgreSQL 17 database (set up by `as_role` if given) backed up and restored into a new
    PostgreSQL 15 database as its superuser. Returns (run, source, target)."""
    source = dbs17.new("src")
    if as_role:
        setup_sql = f"GRANT CREATE ON SCHEMA public TO {as_role}; SET ROLE {as_role};" + setup_sql
    psql(source, setup_sql)
    bdir = project / "backups"
    backup_id = engine_backup(source, bdir)
    target = dbs15.new("dst")
    res = invoke_cli("restore", "--id", backup_id, "--yes", env=env_for(dbs15.url(target), bdir))
    return res, source, target


def test_column_names_cannot_smuggle_a_superuser_grant_into_an_older_target(dbs17, dbs15, project, invoke_cli):
    eve = f"eve{uuid.uuid4().hex[:4]}"  # an ordinary table owner
    admin15, admin17 = dbs15.cluster.target(), dbs17.cluster.target()
    roles15 = roles(admin15)
    psql(admin17, f"CREATE ROLE {eve} LOGIN")
    columns = [
        "c\nSET transaction_timeout = 0",
        f") ON TABLE public.t TO PUBLIC;ALTER ROLE {eve} SUPERUSER;--",
        # what a line filter would leave as the first column's name: the statement must not fail
        "c\n\n\n--\n-- Name: COLUMN t.",
    ]
    setup = f"CREATE TABLE public.t (id int, {', '.join(ident(c) + ' int' for c in columns)});" + "".join(
        f"GRANT SELECT ({ident(c)}) ON public.t TO PUBLIC;" for c in columns[:2]
    )
    try:
        res, source, target = restore_17_into_15(dbs17, dbs15, project, invoke_cli, setup, as_role=eve)
        assert not scalar(admin15, f"SELECT rolsuper FROM pg_roles WHERE rolname = '{eve}'"), f"{eve} became SUPERUSER on the target:\n" + shown(res)
        assert_roles_kept(admin15, roles15, may_add=True, context=shown(res))
        assert res.returncode == 0, shown(res)
        assert column_acls(target, "public.t") == column_acls(source, "public.t")
    finally:
        for d in (dbs15, dbs17):
            d.cleanup()
            d.created.clear()
        undo_role_changes(admin15, roles15)
        drop_roles(admin17, eve)


def test_a_column_grant_stays_on_its_column_across_versions(dbs17, dbs15, project, invoke_cli):
    admin15 = dbs15.cluster.target()
    roles15 = roles(admin15)
    setup = (
        'CREATE TABLE public.payroll (id int, "public,salary" int, "public, MAINTAIN ,salary" int, salary int);'
        'GRANT SELECT ("public, MAINTAIN ,salary"), UPDATE (salary) ON public.payroll TO PUBLIC;'
    )
    try:
        res, source, target = restore_17_into_15(dbs17, dbs15, project, invoke_cli, setup)
        assert column_acls(source, "public.payroll")["public, MAINTAIN ,salary"]  # the grant to keep
        assert_roles_kept(admin15, roles15, may_add=True, context=shown(res))
        assert res.returncode == 0, shown(res)
        acls = column_acls(target, "public.payroll")
        assert acls["public,salary"] is None, f"the grant landed on another column: {acls}"
        assert acls == column_acls(source, "public.payroll")
    finally:
        for d in (dbs15, dbs17):
            d.cleanup()
            d.created.clear()
        undo_role_changes(admin15, roles15)


# --- 3. a tampered backup folder ----------------------------------------------------------------


@pytest.fixture(scope="module", params=[15, 17], ids=["supa15", "supa17"])
def supa_backup(request, tmp_path_factory):
    """One backup of a Supabase-shaped project with the app (roles, additions on platform tables,
    platform data), per major; every test tampers with its own copy."""
    platform = request.getfixturevalue(f"supa{request.param}_a")
    source = platform.new_project()
    platform.load_app(source)
    folder = tmp_path_factory.mktemp("supa_backup")
    backup_id = engine_backup(source, folder)
    yield SimpleNamespace(platform=platform, source=source, folder=folder, id=backup_id)
    platform.drop_project(source.dbname)


def tampered_restore(supa_backup, invoke_cli, backup_dir, edit, *, superuser: bool = False):
    """Copy the module's backup into `backup_dir`, let `edit(folder)` tamper with it, and restore
    it into a new project with the app. Returns (run, target, state before, roles before)."""
    platform = supa_backup.platform
    folder = backup_dir / supa_backup.id
    shutil.copytree(supa_backup.folder / supa_backup.id, folder)
    edit(folder)
    target = platform.new_project()
    platform.load_app(target)
    before, roles_before = supabase_state(platform, target), roles(platform.admin())
    url = platform.cluster.url(target.dbname) if superuser else platform.url(target)
    res = invoke_cli("restore", "--id", supa_backup.id, "--yes", env=env_for(url, backup_dir))
    return res, target, before, roles_before


def refused_or_flagged(res, platform, target, before) -> None:
    """Refused with the target unchanged, or (restored) with the plan saying the backup is
    unauthenticated."""
    if res.returncode in REFUSED:
        assert supabase_state(platform, target) == before
    else:
        assert res.returncode == 0 and "unauthenticated" in said(res).lower(), shown(res)


def test_tampered_additions_run_nothing(supa_backup, tmp_path, invoke_cli, marker):
    payload = f"\n{marker.shell}\n"
    platform = supa_backup.platform

    def edit(folder):
        # The additions travel as manifest entries (kind, table, name, oid) that pick entries of
        # platform-schema.dump by oid: hostile text goes into every field of those entries, and
        # the archive gets the payload appended; checksums are fixed, the signature cannot be.
        manifest = read_manifest(folder)
        assert manifest["platform_additions"], "the backup should carry the app's additions"
        for a in manifest["platform_additions"]:
            for k in ("kind", "schema", "table", "name"):
                a[k] = str(a[k]) + payload
        write_manifest(folder, manifest)
        with open(folder / "platform-schema.dump", "ab") as f:
            f.write(payload.encode())
        rehash(folder)

    res, target, before, roles_before = tampered_restore(supa_backup, invoke_cli, tmp_path / "backups", edit)
    try:
        no_shell(marker, res)
        assert_roles_kept(platform.admin(), roles_before, may_add=False, context=shown(res))
        refused_or_flagged(res, platform, target, before)
    finally:
        undo_role_changes(platform.admin(), roles_before)


def test_tampered_roles_change_no_role(supa_backup, tmp_path, invoke_cli):
    evil = f"evil{uuid.uuid4().hex[:4]}"
    sql = f"CREATE ROLE {evil}; ALTER ROLE {evil} SUPERUSER LOGIN; ALTER ROLE anon SUPERUSER;"
    as_json = f'"; {sql} --'  # appended to every string of a structured roles file
    platform = supa_backup.platform
    admin = platform.admin()
    roles_before = roles(admin)
    try:
        # restored by the platform's superuser: the one account that could hand out SUPERUSER
        res, target, before, _ = tampered_restore(
            supa_backup, invoke_cli, tmp_path / "backups", lambda folder: tamper(folder, "roles", f"\n{sql}\n", as_json), superuser=True
        )
        assert_roles_kept(admin, roles_before, may_add=res.returncode == 0, context=shown(res))
        refused_or_flagged(res, platform, target, before)
    finally:
        undo_role_changes(admin, roles_before)


def test_manifest_entry_outside_the_backup_folder_is_not_trusted(supa_backup, tmp_path, invoke_cli):
    # BACKUP_DIR/<id>/../../../../etc/hostname lands on tmp_path/r/etc/hostname
    outside = tmp_path / "r" / "etc" / "hostname"
    outside.parent.mkdir(parents=True)
    outside.write_text("not part of any backup\n")
    backup_dir = tmp_path / "r" / "x" / "y" / "backups"
    backup_dir.mkdir(parents=True)
    platform = supa_backup.platform
    res, target, before, roles_before = tampered_restore(
        supa_backup, invoke_cli, backup_dir, lambda folder: add_file_entry(folder, "../../../../etc/hostname")
    )
    assert (backup_dir / supa_backup.id / "../../../../etc/hostname").resolve() == outside
    assert_roles_kept(platform.admin(), roles_before, may_add=False, context=shown(res))
    refused_or_flagged(res, platform, target, before)


# --- 4. data outside the plan --------------------------------------------------------------------


@pytest.fixture
def app_project(supa, project):
    """A Supabase-shaped project with the app, and the test's project folder (cwd)."""
    db = supa.new_project()
    supa.load_app(db)
    return SimpleNamespace(db=db, folder=project)


def backup_and_restore_same(supa, app_project, invoke_cli, extra_schemas=()):
    bdir = app_project.folder / "backups"
    backup_id = engine_backup(app_project.db, bdir)
    before = supabase_state(supa, app_project.db, extra_schemas)
    res = invoke_cli("restore", "--id", backup_id, "--yes", env=env_for(supa.url(app_project.db), bdir))
    return res, before


def test_truncate_cascading_into_another_schema_is_refused(supa, app_project, invoke_cli):
    db = app_project.db
    # a schema the app does not own (the platform's admin made it, as for platform_extra), with a
    # table the project's user keeps there that references auth.users
    psql(supa.admin(db), "CREATE SCHEMA billing AUTHORIZATION supabase_admin;GRANT USAGE, CREATE ON SCHEMA billing TO postgres;")
    psql(
        db,
        "CREATE TABLE billing.orders (id int PRIMARY KEY, amount numeric,"
        " user_id uuid NOT NULL REFERENCES auth.users (id));"
        "INSERT INTO billing.orders SELECT g, g * 9.5, '11111111-1111-4111-8111-111111111111'"
        " FROM generate_series(1, 40) g;",
    )

    res, before = backup_and_restore_same(supa, app_project, invoke_cli, ("billing",))

    assert scalar(db, "SELECT count(*) FROM billing.orders") == 40, "billing.orders was emptied:\n" + shown(res)
    assert res.returncode == ExitCode.RESTORE_FAILED, shown(res)
    assert mentions(res, "billing.orders"), shown(res)
    assert supabase_state(supa, db, ("billing",)) == before


def test_view_in_extensions_over_an_app_table_is_refused(supa, app_project, invoke_cli):
    db = app_project.db
    psql(db, "CREATE VIEW extensions.project_names AS SELECT id, name FROM public.projects;")

    res, before = backup_and_restore_same(supa, app_project, invoke_cli)

    view = "SELECT count(*) FROM pg_views WHERE schemaname = 'extensions' AND viewname = 'project_names'"
    assert scalar(db, view) == 1, "extensions.project_names was dropped:\n" + shown(res)
    assert res.returncode == ExitCode.RESTORE_FAILED, shown(res)
    assert mentions(res, "extensions.project_names"), shown(res)
    assert supabase_state(supa, db) == before


PARTITIONED = """
CREATE TABLE public.cash_flow_entries (id bigint NOT NULL, booked_on date NOT NULL, direction text NOT NULL,
    amount numeric(12, 2), PRIMARY KEY (id, booked_on, direction)) PARTITION BY RANGE (booked_on);
CREATE TABLE public.cash_flow_entries_2024 PARTITION OF public.cash_flow_entries
    FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
CREATE TABLE public.cash_flow_entries_2025 PARTITION OF public.cash_flow_entries
    FOR VALUES FROM ('2025-01-01') TO ('2026-01-01') PARTITION BY LIST (direction);
CREATE TABLE public.cash_flow_entries_2025_in PARTITION OF public.cash_flow_entries_2025 FOR VALUES IN ('in');
CREATE TABLE public.cash_flow_entries_2025_out PARTITION OF public.cash_flow_entries_2025 FOR VALUES IN ('out');
CREATE TABLE public.cash_flow_entries_rest PARTITION OF public.cash_flow_entries DEFAULT;
INSERT INTO public.cash_flow_entries
  SELECT g, date '2024-01-01' + g % 1000, CASE WHEN g % 3 = 0 THEN 'out' ELSE 'in' END, g / 7.0
  FROM generate_series(1, 1200) g;
"""


def test_partitioned_table_in_public_restores_over_the_same_project(supa, app_project, invoke_cli):
    psql(app_project.db, PARTITIONED)

    res, before = backup_and_restore_same(supa, app_project, invoke_cli)

    assert res.returncode == 0, shown(res)
    assert supabase_state(supa, app_project.db) == before
    assert scalar(app_project.db, "SELECT count(*) FROM public.cash_flow_entries") == 1200


def test_reset_leaves_no_table_in_public(supa, app_project, invoke_cli):
    db = app_project.db
    psql(db, PARTITIONED)
    users = scalar(db, "SELECT count(*) FROM auth.users")

    res = invoke_cli("reset", "--yes", env=env_for(supa.url(db), app_project.folder / "backups"))

    assert res.returncode == 0, shown(res)
    left = scalar(
        db,
        "SELECT string_agg(c.relname, ', ') FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')",
    )
    assert left is None, f"reset left in public: {left}\n" + shown(res)
    assert scalar(db, "SELECT count(*) FROM auth.users") == users


# --- 5. the runbook's hand-made files ----------------------------------------------------------

BIG_TARGET = (
    TARGET_SQL
    + """
CREATE TABLE public.big (id int PRIMARY KEY, v text);
INSERT INTO public.big SELECT g, md5(g::text) FROM generate_series(1, 1000) g;
"""
)
DAY = "2026-11-20"


def runbook_restore(dbs, project, invoke_cli, text: str, target):
    bdir = project / "backups"
    bdir.mkdir(exist_ok=True)
    (bdir / f"dump-{DAY}.sql").write_text(text)
    return invoke_cli("restore", "--date", DAY, "--yes", "--allow-unsigned", env=env_for(dbs.url(target), bdir))


def test_runbook_file_with_a_top_level_commit_leaves_the_target_unchanged(dbs, project, invoke_cli):
    source = seeded(dbs, "src", SOURCE_SQL)
    target = seeded(dbs, "dst", BIG_TARGET)
    before = state(target)
    text = plain_dump(source) + "\nCOMMIT;\n\nSELECT 1/0;\n"

    res = runbook_restore(dbs, project, invoke_cli, text, target)

    assert scalar(target, "SELECT count(to_regclass('public.big'))") == 1, "the 1,000-row table is gone:\n" + shown(res)
    assert res.returncode == ExitCode.RESTORE_FAILED, shown(res)
    assert state(target) == before


def test_runbook_file_with_a_shell_command_is_refused(dbs, project, invoke_cli, marker):
    source = seeded(dbs, "src", SOURCE_SQL)
    target = seeded(dbs, "dst", BIG_TARGET)
    before = state(target)
    text = plain_dump(source) + f"\n{marker.shell}\n"

    res = runbook_restore(dbs, project, invoke_cli, text, target)

    no_shell(marker, res)
    assert res.returncode in REFUSED, shown(res)
    assert state(target) == before


# What pg_dump writes around large-object contents, here as plain text inside a value and a body.
LO_LINES = "BEGIN;\nSELECT pg_catalog.lo_open('16385', 131072);\nSELECT pg_catalog.lowrite(0, '\\x6c6f');\nSELECT pg_catalog.lo_close(0);\nCOMMIT;\n"
NOTES = "restore notes:\n" + LO_LINES + "end of notes"
TRANSACTION_LINES = f"""
CREATE TABLE public.memos (id int PRIMARY KEY, body text NOT NULL);
INSERT INTO public.memos VALUES (1, {literal(NOTES)}), (2, {literal(LO_LINES)}), (3, 'BEGIN;
COMMIT;');
CREATE FUNCTION public.lo_script() RETURNS text LANGUAGE sql IMMUTABLE AS $body$
SELECT {literal(chr(10) + LO_LINES)}::text
$body$;
CREATE FUNCTION public.logged_touch() RETURNS trigger LANGUAGE plpgsql AS $body$
BEGIN
/*
{LO_LINES}*/
  RETURN NEW;
END
$body$;
"""


def test_runbook_file_with_transaction_lines_inside_values_and_bodies_restores_identically(dbs, project, invoke_cli):
    source = seeded(dbs, "src", SOURCE_SQL + TRANSACTION_LINES)
    target = seeded(dbs, "dst", TARGET_SQL)
    text = plain_dump(source, "--inserts")
    assert "\nBEGIN;\nSELECT pg_catalog.lo_open(" in text and "lo_close(0);\nCOMMIT;\n" in text  # the trap is set

    res = runbook_restore(dbs, project, invoke_cli, text, target)

    assert res.returncode == 0, shown(res)
    memos = "SELECT string_agg(body, ' | ' ORDER BY id) FROM public.memos"
    assert scalar(target, memos) == scalar(source, memos)
    assert scalar(target, "SELECT public.lo_script()") == scalar(source, "SELECT public.lo_script()")
    assert state(target) == state(source)
