"""The tasks as a person uses them: the real `invoke` CLI in a subprocess (no terminal), in a pty
(pexpect) where a prompt is asked, and questionary's real input handling for the guard prompt.
Every database is real: the session's PostgreSQL 15 and 17 clusters.
"""

from __future__ import annotations

import datetime as dt
import inspect
import os
import re
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import pexpect
import pytest

from tasks import _ui, ns
from tasks.engine.conn import Target
from tasks.engine.demo import sample_sql
from tasks.engine.errors import Declined, ExitCode
from tests.conftest import PASSWORD, REPO
from tests.helpers import psql, scalar, schema_dump, seeded, state

PG15_BIN = Path("/usr/lib/postgresql/15/bin")
TASKS = {"backup", "restore", "reset", "list", "config", "demo", "diff", "schema", "prune", "verify", "predeploy"}

# The demo's Fortress Modeler sample (users, projects, models, scenarios, line items; a trigger
# that bumps projects.updated_at on every new scenario). Its role is cluster-wide, so it is
# created idempotently here: many test databases share one cluster.
_ROLE = "CREATE ROLE fortress_analyst NOLOGIN;"
assert _ROLE in sample_sql()
SAMPLE = sample_sql().replace(_ROLE, "DO $$ BEGIN CREATE ROLE fortress_analyst NOLOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$;")
SAMPLE_TABLES = {"app.users": 4, "app.projects": 3, "app.models": 6, "app.scenarios": 18, "app.line_items": 1296}

# What a restore target holds before: other rows, an extra schema, a table in public.
OTHER_EXTRA = """
CREATE SCHEMA old_stuff;
CREATE TABLE old_stuff.junk (id int);
INSERT INTO old_stuff.junk SELECT generate_series(1, 50);
CREATE TABLE public.profiles (id int PRIMARY KEY, note text);
INSERT INTO public.profiles VALUES (1, 'stale');
CREATE FUNCTION public.stale() RETURNS int LANGUAGE sql AS 'SELECT 1';
"""
OTHER = (
    """
CREATE SCHEMA app;
CREATE TABLE app.users (id int PRIMARY KEY, email text);
INSERT INTO app.users VALUES (1, 'someone@else.test');
"""
    + OTHER_EXTRA
)


def today_utc() -> str:
    return dt.datetime.now(dt.UTC).date().isoformat()


def flat(text: str) -> str:
    """Output with rich's line wrapping undone."""
    return " ".join(text.split())


def squash(text: str) -> str:
    """A table cell with its wrapping and folding undone, for values without spaces."""
    return "".join(text.split())


def cli_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment `invoke_cli` gives its subprocess, for pexpect: no stray PG*/DATABASE_URL."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "DATABASE_URL", "SUPABASE_", "BACKUP_DIR"))}
    env.update(extra or {})
    return env


def table_rows(text: str) -> list[dict[str, str]]:
    """The rows of a rich table as {column: cell}, wrapped cells joined, as a person reads them.
    Each cell is also keyed by its column's name without spaces (a narrow column folds its header)."""
    header: list[str] = []
    rows: list[list[str]] = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("┃"):
            cells = [c.strip() for c in line.strip("┃").split("┃")]
            header = [f"{a} {b}".strip() for a, b in zip(header, cells, strict=False)] if header else cells
        elif line.startswith("│"):
            cells = [c.strip() for c in line.strip("│").split("│")]
            if rows and not cells[0]:
                rows[-1] = [f"{a} {b}".strip() for a, b in zip(rows[-1], cells, strict=False)]
            else:
                rows.append(cells)
    return [dict(zip(header, r, strict=False)) | {squash(h): c for h, c in zip(header, r, strict=False)} for r in rows]


def pg_dump_15(source: Target, out: Path, *flags: str) -> None:
    """The runbook's hand-made dump: PostgreSQL 15's pg_dump, plain SQL, password via PGPASSWORD."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["PGPASSWORD"] = source.password
    with open(out, "wb") as f:
        subprocess.run(
            [str(PG15_BIN / "pg_dump"), *flags, "--no-password", "-h", source.host, "-p", source.port, "-U", source.user, "-d", source.dbname],
            env=env,
            stdout=f,
            stderr=subprocess.PIPE,
            check=True,
            timeout=60,
        )


@pytest.fixture
def login_role(pg):
    """A LOGIN role with a password in the source's cluster (roles are cluster-wide)."""
    name = f"cli_login_{uuid.uuid4().hex[:8]}"
    psql(pg.target(), SAMPLE.split("CREATE SCHEMA app;")[0])  # the sample's own role, made idempotently
    psql(pg.target(), f"CREATE ROLE {name} LOGIN PASSWORD 'never-in-a-backup'; GRANT fortress_analyst TO {name}")
    yield name
    psql(pg.target(), f"DROP ROLE IF EXISTS {name}")


# --- discoverability ------------------------------------------------------------------------------


def test_list_shows_every_task_with_a_one_line_summary(invoke_cli):
    res = invoke_cli("--list")
    assert res.returncode == 0, res.stderr
    summaries: dict[str, str] = {}
    current = None
    for line in res.stdout.splitlines():
        m = re.match(r"^  (\S+)\s{2,}(\S.*)$", line)
        if m:
            current = m.group(1)
            summaries[current] = m.group(2).strip()
        elif current and line.startswith("    ") and line.strip():
            summaries[current] += " " + line.strip()  # invoke wraps long summaries
    assert set(summaries) == TASKS
    for name, summary in summaries.items():
        doc = inspect.getdoc(ns.tasks[name].body)
        # the summary is the docstring's first line, and that line is a whole sentence
        assert summary == doc.splitlines()[0], name
        assert len(summary) > 30 and summary.endswith("."), (name, summary)


@pytest.mark.parametrize("name", sorted(TASKS))
def test_every_flag_of_every_task_has_help(invoke_cli, name):
    res = invoke_cli("--help", name)
    assert res.returncode == 0, res.stderr
    assert inspect.getdoc(ns.tasks[name].body).splitlines()[0] in flat(res.stdout)
    options = res.stdout.split("Options:", 1)[1]
    helps: dict[str, str] = {}
    current = None
    for line in options.splitlines():
        m = re.match(r"^  (?:-\w(?: \w+)?, )?--(?:\[no-\])?([\w-]+)(?:=\w+)?(?:\s+(.*))?$", line) or re.match(
            r"^  -(\w)(?: [A-Z]+)?(?:\s+(.*))?$",
            line,  # a positional one-letter argument (diff A B)
        )
        if m:
            current = m.group(1)
            helps[current] = (m.group(2) or "").strip()
        elif current and line.strip():
            helps[current] += " " + line.strip()
    params = [p for p in inspect.signature(ns.tasks[name].body).parameters if p != "c"]
    assert set(helps) == {p.rstrip("_").replace("_", "-") for p in params}
    for flag, text in helps.items():
        assert len(text) > 15, f"invoke {name} --{flag} has no help text"


# --- backup and list ------------------------------------------------------------------------------------


def test_backup_then_list_shows_id_date_kind_size_and_label(dbs17, invoke_cli, project):
    source = seeded(dbs17, "src", SAMPLE)
    env = {"DATABASE_URL": dbs17.url(source)}
    made = {}
    for kind, flags in (("full", ["--label", "before v2.3 deploy"]), ("schema", ["--schema-only"]), ("data", ["--data-only"])):
        res = invoke_cli("backup", *flags, env=env)
        assert res.returncode == 0, res.stderr
        rows = 0 if kind == "schema" else sum(SAMPLE_TABLES.values())
        m = re.fullmatch(rf"backup (\S+): {kind}, 5 tables, {rows} rows, (\S+ \S+) in (\S+) \(\d+\.\d s\)", flat(res.stdout))
        assert m, res.stdout
        backup_id, size, path = m.groups()
        assert Path(path) == Path(".backups") / backup_id and (project / path).is_dir()
        made[backup_id] = (kind, size)
    ids = list(made)
    assert len(set(ids)) == 3 and ids == sorted(ids)
    assert all(i.startswith(today_utc() + "T") for i in ids)
    assert ".backups/" in (project / ".gitignore").read_text().splitlines()

    res = invoke_cli("list")  # piped, as in a CI log
    assert res.returncode == 0, res.stderr
    listed = {r["id"]: r for r in table_rows(res.stdout)}
    assert set(listed) == set(ids), res.stdout
    # and in a common 80-column terminal the ids (what `restore --id` takes) are whole too
    child, log = spawn_invoke(["list"], cwd=project, env={}, columns=80)
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    narrow = {r["id"]: r for r in table_rows(strip_ansi("".join(log)))}
    assert set(narrow) == set(ids), "".join(log)
    assert {i: squash(r["label"]) for i, r in narrow.items()} == {i: squash(r["label"]) for i, r in listed.items()}
    for backup_id, (kind, size) in made.items():
        row = listed[backup_id]
        files = [p for p in (project / ".backups" / backup_id).iterdir() if p.name not in ("manifest.json", "manifest.hmac")]
        assert row["date (UTC)"] == today_utc()
        assert row["kind"] == kind
        assert row["size"] == size == _ui.human_size(sum(p.stat().st_size for p in files))
        assert re.fullmatch(rf"{len(files)} files? recorded", row["checksums"]), row
    assert listed[ids[0]]["label"] == "before v2.3 deploy"
    assert listed[ids[1]]["label"] == listed[ids[2]]["label"] == ""


def test_list_verify_reports_ok_then_the_flipped_byte(dbs15, invoke_cli, project):
    source = seeded(dbs15, "src", SAMPLE)
    env = {"DATABASE_URL": dbs15.url(source)}
    ids = []
    for label in ("one", "two"):
        res = invoke_cli("backup", "--label", label, env=env)
        assert res.returncode == 0, res.stderr
        ids.append(re.match(r"backup (\S+):", res.stdout).group(1))
    res = invoke_cli("list", "--verify")
    assert res.returncode == 0, res.stderr
    assert {r["id"]: r["checksums"] for r in table_rows(res.stdout)} == {ids[0]: "ok", ids[1]: "ok"}

    dump = project / ".backups" / ids[0] / "app.dump"
    data = bytearray(dump.read_bytes())
    data[len(data) // 2] ^= 0x01
    dump.write_bytes(bytes(data))

    res = invoke_cli("list", "--verify")
    status = {r["id"]: r["checksums"] for r in table_rows(res.stdout)}
    # a CI health check can rely on the exit status
    assert res.returncode == 5 and "1 backup failed verification" in res.stderr, res.stderr
    assert status[ids[1]] == "ok"
    assert status[ids[0]].startswith("MISMATCH"), res.stdout
    assert "app.dump does not match its checksum" in status[ids[0]]
    # without --verify nothing is read, so nothing is claimed
    res = invoke_cli("list")
    assert "MISMATCH" not in res.stdout and " ok " not in res.stdout


# --- restore ---------------------------------------------------------------------------------------------


def test_restore_round_trip_with_dotenv_and_target(dbs, invoke_cli, project, login_role):
    source = seeded(dbs, "src", SAMPLE)
    other = seeded(dbs, "other", OTHER)
    (project / ".env").write_text(f"DATABASE_URL={dbs.url(source)}\n")
    before = state(source)
    assert {k: v[0] for k, v in before[0].items()} == SAMPLE_TABLES

    res = invoke_cli("backup")
    assert res.returncode == 0, res.stderr
    backup_id = re.match(r"backup (\S+):", res.stdout).group(1)

    # break the source the way a bad deploy would
    psql(
        source,
        "DELETE FROM app.line_items WHERE id % 3 = 0; DROP TABLE app.scenarios CASCADE;"
        " UPDATE app.users SET display_name = 'oops'; CREATE SCHEMA junk; CREATE TABLE junk.t (x int);",
    )
    assert state(source) != before

    # DATABASE_URL from .env is the default target
    res = invoke_cli("restore", "--date", today_utc(), "--yes")
    assert res.returncode == 0, res.stderr
    out = flat(res.stdout)
    assert re.search(
        rf"restored {re.escape(backup_id)} into postgresql://postgres@127\.0\.0\.1:\d+/{source.dbname} in \d+\.\d s; "
        r"5 tables match the manifest's row counts",
        out,
    ), out
    assert state(source) == before
    assert "junk" not in schema_dump(source)
    note = flat(res.stderr)
    # the login role exists on this server already: the restore leaves it as it is, and says so
    assert "existing roles as they are" in note and login_role in note
    assert "without passwords" not in note

    # --target another database: --date picks only backups of that database, and says why not
    other_before = state(other)
    res = invoke_cli("restore", "--date", today_utc(), "--yes", "--target", dbs.url(other))
    assert res.returncode == ExitCode.NOT_FOUND, res.stderr
    line = flat(res.stderr)
    assert f"No backup of localhost:{dbs.cluster.port}/{other.dbname} from {today_utc()}" in line, line
    assert f"that day has backups only of localhost:{dbs.cluster.port}/{source.dbname}" in line and "--any-source" in line, line
    assert state(other) == other_before
    # --any-source: the newest backup of the day from any database, the mismatch a warning of its own
    res = invoke_cli("restore", "--date", today_utc(), "--any-source", "--yes", "--target", dbs.url(other))
    assert res.returncode == 0, res.stderr
    warning = [flat(ln) for ln in res.stderr.splitlines() if "source mismatch" in ln]
    assert warning == [
        f"warning: source mismatch: this backup was made from localhost:{dbs.cluster.port}/{source.dbname}, "
        f"not from the target localhost:{dbs.cluster.port}/{other.dbname}"
    ], res.stderr
    assert f"/{other.dbname} in " in flat(res.stdout) and "s; 5 tables match the manifest's row counts" in flat(res.stdout)
    assert state(other) == before
    assert scalar(other, "SELECT count(*) FROM pg_namespace WHERE nspname = 'old_stuff'") == 0
    assert scalar(other, "SELECT to_regclass('public.profiles') IS NULL")
    # the role came back, as a login role, still without the source's password in any output
    assert scalar(other, f"SELECT rolcanlogin FROM pg_roles WHERE rolname = '{login_role}'")
    for text in (res.stdout, res.stderr, (project / ".backups" / backup_id / "roles.json").read_text()):
        assert "never-in-a-backup" not in text and PASSWORD not in text

    # a backup of the target itself, made the same day, is what --date then picks, without a warning;
    # `list` shows each backup's source
    res = invoke_cli("backup", "--label", "other's own", env={"DATABASE_URL": dbs.url(other)})
    assert res.returncode == 0, res.stderr
    own_id = re.match(r"backup (\S+):", res.stdout).group(1)
    listed = {r["id"]: r for r in table_rows(invoke_cli("list", env={"COLUMNS": "300"}).stdout)}
    assert squash(listed[backup_id]["source"]) == squash(f"postgresql://postgres@127.0.0.1:{dbs.cluster.port}/{source.dbname}")
    assert squash(listed[own_id]["source"]) == squash(f"postgresql://postgres@127.0.0.1:{dbs.cluster.port}/{other.dbname}")
    res = invoke_cli("restore", "--date", today_utc(), "--yes", "--target", dbs.url(other))
    assert res.returncode == 0, res.stderr
    assert f"restored {own_id} into" in flat(res.stdout) and "source mismatch" not in res.stderr


def test_config_shows_sources_and_never_the_password(invoke_cli, project):
    raw = "pa#ss?word"  # libpq takes a raw '#' and '?' in a URL's password
    (project / ".env").write_text(f"DATABASE_URL=postgresql://app:{raw}@db.example.com:5432/app\nSUPABASE_DB_PASSWORD=dotenv-secret\n")
    res = invoke_cli("config", env={"BACKUP_DIR": str(project / "kept")})
    assert res.returncode == 0, res.stderr
    rows = {r["setting"]: (squash(r["value"]), r["from"]) for r in table_rows(res.stdout)}
    assert rows["database_url"] == ("postgresql://app@db.example.com:5432/app", ".env DATABASE_URL")
    # the URL's password is the one used: config says so, without showing it
    assert rows["password"] == (squash("in database_url (not shown); the URL's wins over the variable"), ".env DATABASE_URL")
    assert rows["backup_dir"] == (str(project / "kept"), "environment BACKUP_DIR")
    res2 = invoke_cli("config", "--backup-dir", "elsewhere")
    assert {r["setting"]: r["from"] for r in table_rows(res2.stdout)}["backup_dir"] == "flag --backup-dir"
    for text in (res.stdout, res.stderr, res2.stdout):
        assert raw not in text and "pa#ss" not in text and "dotenv-secret" not in text


# --- the runbook's hand-made files ----------------------------------------------------------------


def test_runbook_files_restore_over_other_data(dbs15, invoke_cli, project):
    source = seeded(dbs15, "src", SAMPLE)
    backups = project / ".backups"
    backups.mkdir()
    pg_dump_15(source, backups / "schema-2026-11-24.sql", "--schema-only")
    pg_dump_15(source, backups / "data-2026-11-24.sql", "--data-only")
    pg_dump_15(source, backups / "dump-2026-11-23.sql")
    expected = state(source)

    res = invoke_cli("list")
    listed = {r["id"]: r for r in table_rows(res.stdout)}
    assert {i: (squash(r["date(UTC)"]), squash(r["kind"]), squash(r["checksums"])) for i, r in listed.items()} == {
        "schema-2026-11-24.sql+data-2026-11-24.sql": ("2026-11-24", "full", "nomanifest(runbookfile)"),
        "dump-2026-11-23.sql": ("2026-11-23", "full", "nomanifest(runbookfile)"),
    }, res.stdout

    for date in ("2026-11-24", "2026-11-23"):
        target = seeded(dbs15, "dst", OTHER)
        # runbook files carry no signature: with --yes a restore asks for --allow-unsigned too
        res = invoke_cli("restore", "--date", date, "--yes", "--target", dbs15.url(target))
        assert res.returncode == ExitCode.DECLINED and "--allow-unsigned" in res.stderr, res.stderr
        res = invoke_cli("restore", "--date", date, "--yes", "--allow-unsigned", "--target", dbs15.url(target))
        assert res.returncode == 0, res.stderr
        # loaded in a throwaway database first, so its row counts are known and checked
        assert "tables match the manifest's row counts" in flat(res.stdout)
        assert "made from the runbook files" in flat(res.stderr)
        got = state(target)
        assert got[1] == expected[1], date
        for table in expected[0]:
            assert got[0].get(table) == expected[0][table], (date, table)
        assert got[0].keys() == expected[0].keys()
        assert scalar(target, "SELECT count(*) FROM pg_namespace WHERE nspname = 'old_stuff'") == 0

    # a lone data file reloads the rows of a database that has the schema (and changed rows);
    # the app's trigger (projects.updated_at) stays quiet, as it does for our own backups.
    # A plain restore never takes a data-only backup for a full one: it must be asked for.
    (backups / "data-2026-11-22.sql").write_bytes((backups / "data-2026-11-24.sql").read_bytes())
    psql(target, "UPDATE app.projects SET name = 'renamed'; DELETE FROM app.line_items WHERE id > 100;")
    res = invoke_cli("restore", "--date", "2026-11-22", "--yes", "--allow-unsigned", "--target", dbs15.url(target))
    assert res.returncode == 3 and "--data-only" in res.stderr, res.stderr
    res = invoke_cli("restore", "--date", "2026-11-22", "--data-only", "--yes", "--allow-unsigned", "--target", dbs15.url(target))
    assert res.returncode == 0, res.stderr
    assert state(target) == expected


def test_runbook_data_file_failing_midway_leaves_target_unchanged(dbs15, invoke_cli, project):
    source = seeded(dbs15, "src", SAMPLE)
    target = seeded(dbs15, "dst", OTHER)
    backups = project / ".backups"
    backups.mkdir()
    pg_dump_15(source, backups / "schema-2026-11-24.sql", "--schema-only")
    data_file = backups / "data-2026-11-24.sql"
    pg_dump_15(source, data_file, "--data-only")
    # one bad row in the middle of the biggest COPY block: earlier tables have loaded by then
    lines = data_file.read_text().splitlines(keepends=True)
    start = next(i for i, ln in enumerate(lines) if ln.startswith("COPY app.line_items "))
    bad = start + 600
    cols = lines[bad].rstrip("\n").split("\t")
    cols[-1] = "not-a-number"
    lines[bad] = "\t".join(cols) + "\n"
    data_file.write_text("".join(lines))
    before = state(target)

    res = invoke_cli("restore", "--date", "2026-11-24", "--yes", "--allow-unsigned", "--target", dbs15.url(target))
    assert res.returncode == ExitCode.RESTORE_FAILED, (res.stdout, res.stderr)
    err = flat(res.stderr)
    # refused while loading into the throwaway database, before the target was touched
    assert "data-2026-11-24.sql" in err and "does not load" in err and "the target was not touched" in err
    assert "not-a-number" in err
    assert state(target) == before


# --- the guard prompt, through questionary's real input handling --------------------------------------


@pytest.mark.parametrize(
    "typed, proceeds",
    [
        ("fortress\r", True),
        ("  fortress  \r", True),
        ("Fortress\r", False),
        ("postgres\r", False),
        ("fortres\r", False),
        ("\r", False),
        ("y\r", False),
        ("\x03", False),  # Ctrl-C at the prompt
    ],
)
def test_confirm_by_name_with_real_prompt_input(typed, proceeds):
    from prompt_toolkit.input import create_pipe_input
    from prompt_toolkit.output import DummyOutput

    with create_pipe_input() as inp:
        inp.send_text(typed)
        if proceeds:
            assert _ui.confirm_by_name("fortress", "replace everything", yes=False, input=inp, output=DummyOutput()) is None
        else:
            with pytest.raises(Declined) as info:
                _ui.confirm_by_name("fortress", "replace everything", yes=False, input=inp, output=DummyOutput())
            assert info.value.exit_code == ExitCode.DECLINED == 7
            assert "nothing was changed" in str(info.value)


def test_confirm_by_name_yes_never_reads_input():
    from prompt_toolkit.input import create_pipe_input
    from prompt_toolkit.output import DummyOutput

    with create_pipe_input() as inp:
        inp.send_text("wrong\r")
        _ui.confirm_by_name("fortress", "replace everything", yes=True, input=inp, output=DummyOutput())


# --- the real terminal ------------------------------------------------------------------------------------


def strip_ansi(text: str) -> str:
    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text).replace("\r", "")


def spawn_invoke(args: list[str], *, cwd: Path, env: dict[str, str], columns: int = 200) -> tuple[pexpect.spawn, list[str]]:
    log: list[str] = []

    class Log:
        def write(self, s):
            log.append(s)

        def flush(self):
            pass

    child = pexpect.spawn(
        sys.executable,
        ["-m", "invoke", "--search-root", str(REPO), *args],
        cwd=str(cwd),
        env=cli_env(env),
        encoding="utf-8",
        timeout=90,
        dimensions=(50, columns),
    )
    child.logfile_read = Log()
    return child, log


CPR = r"\x1b\[6n"  # prompt_toolkit asks the terminal where the cursor is; a real terminal answers


def answer_prompt(child: pexpect.spawn, dbname: str, typed: str) -> int:
    while child.expect([CPR, re.escape(f"Type the database name '{dbname}' to continue")]) == 0:
        child.send("\x1b[1;1R")
    child.send(typed + "\r")
    while child.expect([CPR, pexpect.EOF]) == 0:
        child.send("\x1b[1;1R")
    child.close()
    return child.exitstatus


def test_restore_in_a_terminal_asks_for_the_database_name(dbs17, invoke_cli, project):
    source = seeded(dbs17, "src", SAMPLE)
    target = seeded(dbs17, "dst", OTHER)
    env = {"DATABASE_URL": dbs17.url(source)}
    assert invoke_cli("backup", env=env).returncode == 0
    before, expected = state(target), state(source)
    args = ["restore", "--date", today_utc(), "--any-source", "--target", dbs17.url(target)]

    child, log = spawn_invoke(args, cwd=project, env=env)
    assert answer_prompt(child, target.dbname, source.dbname) == ExitCode.DECLINED, "".join(log)
    assert "Not confirmed; nothing was changed" in "".join(log)
    assert state(target) == before

    child, log = spawn_invoke(args, cwd=project, env=env)
    assert answer_prompt(child, target.dbname, target.dbname) == 0, "".join(log)
    assert "5 tables match the manifest's row counts" in flat("".join(log))
    assert state(target) == expected


def test_reset_in_a_terminal_drops_app_schemas_and_keeps_an_empty_public(dbs15, project):
    target = seeded(dbs15, "dst", SAMPLE + OTHER_EXTRA)
    child, log = spawn_invoke(["reset", "--target", dbs15.url(target)], cwd=project, env={})
    assert answer_prompt(child, target.dbname, target.dbname) == 0, "".join(log)
    out = flat("".join(log))
    assert f"reset postgresql://postgres@127.0.0.1:{dbs15.cluster.port}/{target.dbname}" in out
    with target.connect() as conn:
        schemas = {r[0] for r in conn.execute("SELECT nspname FROM pg_namespace WHERE nspname !~ '^(pg_|information_schema)'")}
        assert schemas == {"public"}
        assert (
            conn.execute("SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public'").fetchone()[0]
            == 0
        )
        assert (
            conn.execute("SELECT count(*) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = 'public'").fetchone()[0] == 0
        )
        # the schema is the one CREATE DATABASE makes: usable by everyone again
        assert conn.execute("SELECT has_schema_privilege('public', 'public', 'USAGE')").fetchone()[0]
        assert conn.execute("SELECT nspowner::regrole::text FROM pg_namespace WHERE nspname = 'public'").fetchone()[0] == "pg_database_owner"
    # the roles the app had are kept
    assert scalar(target, "SELECT count(*) FROM pg_roles WHERE rolname = 'fortress_analyst'") == 1


# --- the demo -----------------------------------------------------------------------------------------------


def postgres_processes() -> dict[int, tuple[int, str]]:
    """pid -> (parent pid, command line) of every running postgres process."""
    out = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            if Path(f"/proc/{pid}/comm").read_text().strip() != "postgres":
                continue
            ppid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, ValueError):
            continue
        out[int(pid)] = (ppid, cmd)
    return out


@pytest.mark.parametrize("major", ["15", "17"])
def test_demo_compares_every_table_and_cleans_up(invoke_cli, major, pg15, pg17):
    # The session clusters are up already. Other test sessions on this machine may start and
    # stop their own clusters meanwhile, so what the demo leaves is recognised by its port.
    tmp = Path(tempfile.gettempdir())
    before = postgres_processes()
    res = invoke_cli("demo", "--pg", major)
    assert res.returncode == 0, res.stderr
    rows = table_rows(res.stdout)
    assert {r["table"]: (r["source rows"], r["restored rows"]) for r in rows} == {t: (str(n), str(n)) for t, n in SAMPLE_TABLES.items()}
    assert all(r["contents"] == "identical" for r in rows)
    assert "DIFFERENT" not in res.stdout
    assert f"PostgreSQL {major}." in flat(res.stdout)
    assert f"starting a throwaway PostgreSQL {major}." in res.stderr
    port = re.search(r"connecting to postgresql://postgres@127\.0\.0\.1:(\d+)/fortress_demo", res.stderr).group(1)
    backup_id = re.search(r"backup (\S+) complete", res.stderr).group(1)

    # no server of the demo's is left: none listening, no postgres process it started
    after = postgres_processes()
    ours = {pid for pid, (_, cmd) in after.items() if f"port={port} " in cmd + " "}
    ours |= {pid for pid, (ppid, _) in after.items() if ppid in ours}
    assert not ours, f"the demo's server is still running: {ours}"
    assert ours <= set(after) - set(before)  # (what would be ours is new by construction)
    with pytest.raises(OSError):
        import socket

        socket.create_connection(("127.0.0.1", int(port)), timeout=2).close()
    # and no folder: neither the cluster's nor the backups'
    for folder in tmp.glob("fortress-pg-*"):
        opts = folder / "data" / "postmaster.opts"
        if opts.exists():
            assert f"port={port}" not in opts.read_text(errors="replace"), f"{folder} was left behind"
    assert not list(tmp.glob(f"fortress-demo-*/backups/{backup_id}")), "the demo's backup was left behind"
