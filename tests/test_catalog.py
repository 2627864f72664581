"""The engine's pure parts as a user meets them: backup ids, `--date`/`--id` resolution (our
backups and the runbook's hand-made files), settings precedence, secret redaction, and the role
statements a backup carries. Mostly pure and fast; where PostgreSQL decides (does the rewritten
role SQL run? does a second backup in the same second get `-2`?) a real server answers.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path
from urllib.parse import quote

import pytest

from tasks.engine import catalog, roles
from tasks.engine.conn import Target, redact_url
from tasks.engine.errors import ConfigError, ExitCode, IntegrityError, NotFound, UsageError
from tasks.engine.platform import POSTGRES
from tasks.engine.settings import load_settings, read_dotenv
from tasks.engine.storage import LocalStore
from tests.conftest import PASSWORD
from tests.helpers import psql

UTC = dt.timezone.utc


# --- fixtures: backup folders as `invoke backup` and the runbook leave them -----------------------

def make_backup(root: Path, backup_id: str, *, kind: str = "full", created_at: str | None = None,
                label: str = "") -> Path:
    """A published backup folder with a manifest (what `invoke backup` leaves after the rename)."""
    folder = root / backup_id
    folder.mkdir(parents=True)
    m = catalog.ID_RE.match(backup_id)
    if created_at is None:
        day, hms = m.group(1), m.group(2)
        created_at = f"{day}T{hms[:2]}:{hms[2:4]}:{hms[4:]}.000000Z"
    catalog.write_manifest(folder, {"format": catalog.FORMAT_VERSION, "id": backup_id, "kind": kind,
                                    "label": label, "created_at": created_at, "files": [], "tables": []})
    return folder


def runbook_file(root: Path, name: str, text: str = "-- hand-made by the runbook\n") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    path = root / name
    path.write_text(text)
    return path


@pytest.fixture
def store(tmp_path) -> LocalStore:
    return LocalStore(tmp_path / ".backups")


# --- backup ids ------------------------------------------------------------------------------------

def test_backup_id_is_the_utc_time_whatever_the_local_zone():
    # 23:30 in New York on the 25th is already the 26th in UTC: the id (and so `--date`) says UTC.
    ny = dt.timezone(dt.timedelta(hours=-5))
    assert catalog.new_id(dt.datetime(2026, 11, 25, 23, 30, 5, tzinfo=ny)) == "2026-11-26T043005Z"
    assert catalog.new_id(dt.datetime(2026, 11, 25, 15, 21, 39, tzinfo=UTC)) == "2026-11-25T152139Z"
    tokyo = dt.timezone(dt.timedelta(hours=9))
    assert catalog.new_id(dt.datetime(2026, 11, 25, 8, 0, 0, tzinfo=tokyo)) == "2026-11-24T230000Z"


def test_backup_ids_sort_in_time_order():
    times = [
        dt.datetime(2026, 9, 30, 23, 59, 59, tzinfo=UTC),
        dt.datetime(2026, 10, 1, 0, 0, 0, tzinfo=UTC),
        dt.datetime(2026, 10, 1, 9, 59, 59, tzinfo=UTC),
        dt.datetime(2026, 10, 1, 10, 0, 0, tzinfo=UTC),
        dt.datetime(2026, 12, 31, 23, 59, 59, tzinfo=UTC),
        dt.datetime(2027, 1, 1, 0, 0, 0, tzinfo=UTC),
    ]
    ids = [catalog.new_id(t) for t in times]
    assert sorted(ids) == ids
    assert all(catalog.ID_RE.match(i) for i in ids)


def test_second_backup_in_the_same_second_gets_a_suffix():
    now = dt.datetime(2026, 11, 25, 15, 21, 39, 250000, tzinfo=UTC)
    first = catalog.new_id(now)
    second = catalog.new_id(now, {first})
    third = catalog.new_id(now, {first, second})
    assert (first, second, third) == ("2026-11-25T152139Z", "2026-11-25T152139Z-2", "2026-11-25T152139Z-3")
    # the suffixed ids are still ids, of the same date, and sort after the plain one
    assert all(catalog.ID_RE.match(i).group(1) == "2026-11-25" for i in (second, third))
    assert sorted([third, first, second]) == [first, second, third]
    assert second < catalog.new_id(now + dt.timedelta(seconds=1))


def test_two_real_backups_in_the_same_second(dbs15, tmp_path):
    from tasks.engine.dump import create_backup

    source = dbs15.new("ids")
    psql(source, "CREATE TABLE t (id int); INSERT INTO t VALUES (1), (2);")
    store = LocalStore(tmp_path / "b")
    now = dt.datetime(2026, 11, 25, 15, 21, 39, tzinfo=UTC)
    a = create_backup(source, store, now=now, label="first")
    psql(source, "INSERT INTO t VALUES (3)")
    b = create_backup(source, store, now=now, label="second")
    assert (a.backup_id, b.backup_id) == ("2026-11-25T152139Z", "2026-11-25T152139Z-2")
    assert sorted(p.name for p in store.root.iterdir() if not p.name.startswith(".")) == [a.backup_id, b.backup_id]
    # `--date` of that day means the newer one; `--id` still reaches the older one
    newest = catalog.resolve(store, date="2026-11-25")
    assert (newest.id, newest.label) == (b.backup_id, "second")
    assert catalog.resolve(store, backup_id=a.backup_id).label == "first"


# --- parse_date ---------------------------------------------------------------------------------------

def test_parse_date_accepts_yyyy_mm_dd():
    assert catalog.parse_date("2026-11-24") == dt.date(2026, 11, 24)
    assert catalog.parse_date("2024-02-29") == dt.date(2024, 2, 29)


@pytest.mark.parametrize("text", [
    "2026-11-24T00:00:00", "24-11-2026", "2026/11/24", "2026-1-5", "20261124", "2026-13-01", "2026-02-29",
    "2026-11-24 ", " 2026-11-24", "yesterday", "", "２０２６-１１-２４",
])
def test_parse_date_rejects_anything_else(text):
    with pytest.raises(UsageError) as info:
        catalog.parse_date(text)
    assert info.value.exit_code == ExitCode.USAGE == 2
    assert repr(text) in str(info.value) and "YYYY-MM-DD" in str(info.value)


# --- resolve -------------------------------------------------------------------------------------------

def test_date_picks_the_newest_backup_of_that_utc_day(store):
    make_backup(store.root, "2026-11-24T230000Z", label="day before")
    make_backup(store.root, "2026-11-25T010203Z", label="early")
    make_backup(store.root, "2026-11-25T180000Z", label="evening")
    make_backup(store.root, "2026-11-25T093000Z", label="morning")
    make_backup(store.root, "2026-11-26T000001Z", label="next day")
    got = catalog.resolve(store, date="2026-11-25")
    assert (got.id, got.label, got.legacy) == ("2026-11-25T180000Z", "evening", False)
    assert catalog.resolve(store, date="2026-11-24").label == "day before"


def test_date_with_no_backup_says_which_dates_exist(store):
    make_backup(store.root, "2026-11-20T101010Z")
    runbook_file(store.root, "dump-2026-11-18.sql")
    with pytest.raises(NotFound) as info:
        catalog.resolve(store, date="2026-11-25")
    assert info.value.exit_code == ExitCode.NOT_FOUND == 3
    assert "2026-11-25" in str(info.value)
    assert "2026-11-18" in str(info.value) and "2026-11-20" in str(info.value)


def test_date_in_an_empty_or_missing_folder_is_not_found(store):
    with pytest.raises(NotFound, match="invoke backup"):
        catalog.resolve(store, date="2026-11-25")
    assert not store.root.exists()  # resolving never creates the folder


def test_interrupted_backup_staging_folder_is_never_listed_or_restored(store):
    make_backup(store.root, "2026-11-25T080000Z", label="complete")
    # A backup killed after writing everything but before its rename: the real staging folder,
    # manifest and all, left behind.
    staging = store.staging("2026-11-25T230000Z")
    folder = staging.__enter__()
    assert folder.name.startswith(".tmp-2026-11-25T230000Z")
    catalog.write_manifest(folder, {"format": catalog.FORMAT_VERSION, "id": "2026-11-25T230000Z", "kind": "full",
                                    "label": "interrupted", "created_at": "2026-11-25T23:00:00Z", "files": []})
    # also a hand-named dot folder and a folder with an id's name but no manifest (copy in progress)
    (store.root / ".tmp-2026-11-25T235959Z").mkdir()
    (store.root / "2026-11-25T235900Z").mkdir()
    (store.root / "2026-11-25T235900Z" / "app.dump").write_bytes(b"PGDMP partial")

    backups, problems = catalog.all_backups(store)
    assert [b.id for b in backups] == ["2026-11-25T080000Z"]
    assert problems == []
    assert catalog.resolve(store, date="2026-11-25").label == "complete"
    for bad in (folder.name, "2026-11-25T230000Z"):
        with pytest.raises(NotFound):
            catalog.resolve(store, backup_id=bad)
    # asked for by name, the manifest-less folder is refused as untrustworthy, not restored
    with pytest.raises(IntegrityError, match="2026-11-25T235900Z"):
        catalog.resolve(store, backup_id="2026-11-25T235900Z")


def test_id_is_exact(store):
    make_backup(store.root, "2026-11-25T101010Z", label="ten")
    make_backup(store.root, "2026-11-25T101010Z-2", label="ten again")
    make_backup(store.root, "2026-11-25T201010Z", label="twenty")
    assert catalog.resolve(store, backup_id="2026-11-25T101010Z").label == "ten"
    assert catalog.resolve(store, backup_id="2026-11-25T101010Z-2").label == "ten again"
    for partial in ("2026-11-25T1010", "2026-11-25", "2026-11-25T101010", "2026-11-25T101010Z-3", "../2026-11-25T201010Z"):
        with pytest.raises(NotFound):
            catalog.resolve(store, backup_id=partial)
    with pytest.raises(UsageError):
        catalog.resolve(store, backup_id="2026-11-25T101010Z", date="2026-11-25")
    with pytest.raises(UsageError):
        catalog.resolve(store)


def test_our_backups_win_over_runbook_files_of_the_same_date(store):
    runbook_file(store.root, "dump-2026-11-25.sql")
    runbook_file(store.root, "schema-2026-11-25.sql")
    runbook_file(store.root, "data-2026-11-25.sql")
    make_backup(store.root, "2026-11-25T000001Z", label="ours")
    got = catalog.resolve(store, date="2026-11-25")
    assert (got.id, got.legacy) == ("2026-11-25T000001Z", False)
    # the runbook's files are still reachable by their listed ids
    assert catalog.resolve(store, backup_id="dump-2026-11-25.sql").legacy_files == ["dump-2026-11-25.sql"]


def test_runbook_single_dump_file(store):
    runbook_file(store.root, "dump-2026-11-24.sql")
    got = catalog.resolve(store, date="2026-11-24")
    assert (got.kind, got.legacy_files, got.date) == ("full", ["dump-2026-11-24.sql"], dt.date(2026, 11, 24))
    assert got.legacy and got.label == ""
    assert got.size(store) == len("-- hand-made by the runbook\n")
    assert catalog.verify_checksums(store, got) == []  # nothing to check, nothing raised


def test_runbook_schema_and_data_pair_is_preferred_and_loaded_schema_first(store):
    runbook_file(store.root, "dump-2026-11-24.sql")
    runbook_file(store.root, "data-2026-11-24.sql")
    runbook_file(store.root, "schema-2026-11-24.sql")
    got = catalog.resolve(store, date="2026-11-24")
    assert got.kind == "full"
    assert got.legacy_files == ["schema-2026-11-24.sql", "data-2026-11-24.sql"]
    assert got.id == "schema-2026-11-24.sql+data-2026-11-24.sql"
    # the listing shows both restorable units of that day, each with its kind
    backups, _ = catalog.all_backups(store)
    assert {(b.id, b.kind) for b in backups} == {
        ("schema-2026-11-24.sql+data-2026-11-24.sql", "full"), ("dump-2026-11-24.sql", "full")}
    # the pair's listed id restores the pair
    assert catalog.resolve(store, backup_id=got.id).legacy_files == got.legacy_files


def test_lone_runbook_schema_or_data_file_has_that_kind(store):
    runbook_file(store.root, "schema-2026-11-24.sql")
    runbook_file(store.root, "data-2026-11-23.sql")
    schema = catalog.resolve(store, date="2026-11-24", mode="schema")
    data = catalog.resolve(store, date="2026-11-23", mode="data")
    assert (schema.kind, schema.legacy_files) == ("schema", ["schema-2026-11-24.sql"])
    assert (data.kind, data.legacy_files) == ("data", ["data-2026-11-23.sql"])
    # a plain (full) restore does not take a partial file for a whole backup
    for day in ("2026-11-24", "2026-11-23"):
        with pytest.raises(NotFound, match="-only"):
            catalog.resolve(store, date=day)


def test_files_that_only_look_like_runbook_files_are_ignored(store):
    for name in ("dump-2026-11-24.sql.gz", "dump-2026-11-24.SQL", "backup-2026-11-24.sql", "dump-24-11-2026.sql",
                 ".dump-2026-11-24.sql", "notes.txt"):
        runbook_file(store.root, name)
    (store.root / "dump-2026-11-25.sql").mkdir()  # a folder, not a file
    backups, problems = catalog.all_backups(store)
    assert backups == [] and problems == []
    with pytest.raises(NotFound):
        catalog.resolve(store, date="2026-11-24")


def test_a_broken_manifest_is_reported_not_hidden(store):
    make_backup(store.root, "2026-11-25T080000Z", label="good")
    bad = make_backup(store.root, "2026-11-25T090000Z")
    (bad / "manifest.json").write_text("{ not json")
    other = make_backup(store.root, "2026-11-25T100000Z")
    (other / "manifest.json").chmod(0o600)
    (other / "manifest.json").write_text(json.dumps({"format": 99}))
    backups, problems = catalog.all_backups(store)
    assert [b.id for b in backups] == ["2026-11-25T080000Z"]
    assert len(problems) == 2
    assert any("2026-11-25T090000Z" in p and "unreadable manifest" in p for p in problems)
    assert any("2026-11-25T100000Z" in p and "unknown format" in p for p in problems)


# --- settings --------------------------------------------------------------------------------------------

ENV_URL = "postgresql://env_user@env-host:5432/envdb"
DOTENV_URL = "postgresql://dotenv_user@dotenv-host:5432/dotenvdb"
FLAG_URL = "postgresql://flag_user@flag-host:5432/flagdb"


def test_settings_precedence_flag_environment_dotenv_default():
    environ = {"DATABASE_URL": ENV_URL, "BACKUP_DIR": "/env/backups", "PGPASSWORD": "env-pw"}
    dotenv = {"DATABASE_URL": DOTENV_URL, "BACKUP_DIR": "dotenv-backups", "PGPASSWORD": "dotenv-pw",
              "PG_BIN_DIR": "/dotenv/bin"}

    s = load_settings({"url": FLAG_URL, "backup_dir": "flag-backups"}, environ, dotenv)
    assert (s.database_url, s.backup_dir, s.password, s.pg_bin_dir) == (
        FLAG_URL, Path("flag-backups"), "env-pw", "/dotenv/bin")
    assert s.sources["database_url"] == "flag --url"
    assert s.sources["backup_dir"] == "flag --backup-dir"
    assert s.sources["password"] == "environment PGPASSWORD"
    assert s.sources["pg_bin_dir"] == ".env PG_BIN_DIR"

    s = load_settings({"url": None, "backup_dir": None}, environ, dotenv)
    assert (s.database_url, s.backup_dir) == (ENV_URL, Path("/env/backups"))
    assert s.sources["database_url"] == "environment DATABASE_URL"

    s = load_settings({}, {}, dotenv)
    assert (s.database_url, s.backup_dir, s.password) == (DOTENV_URL, Path("dotenv-backups"), "dotenv-pw")
    assert s.sources["database_url"] == ".env DATABASE_URL"
    assert s.sources["password"] == ".env PGPASSWORD"

    s = load_settings({}, {}, {})
    assert (s.database_url, s.password, s.backup_dir, s.pg_bin_dir) == (None, None, Path(".backups"), None)
    assert set(s.sources.values()) == {"default"}
    assert [row[2] for row in s.describe()] == ["default"] * 4


def test_supabase_variable_names_are_accepted():
    s = load_settings({}, {"SUPABASE_DB_URL": ENV_URL, "SUPABASE_DB_PASSWORD": "pw"}, {})
    assert (s.database_url, s.password) == (ENV_URL, "pw")
    assert s.sources["database_url"] == "environment SUPABASE_DB_URL"
    assert s.sources["password"] == "environment SUPABASE_DB_PASSWORD"
    # within one source DATABASE_URL wins; across sources the environment wins over .env
    s = load_settings({}, {"SUPABASE_DB_URL": ENV_URL, "DATABASE_URL": FLAG_URL}, {})
    assert s.database_url == FLAG_URL
    s = load_settings({}, {"SUPABASE_DB_URL": ENV_URL}, {"DATABASE_URL": DOTENV_URL})
    assert (s.database_url, s.sources["database_url"]) == (ENV_URL, "environment SUPABASE_DB_URL")
    s = load_settings({}, {}, {"SUPABASE_DB_URL": DOTENV_URL})
    assert s.sources["database_url"] == ".env SUPABASE_DB_URL"


def test_empty_values_fall_through_and_blank_url_is_a_usage_error():
    s = load_settings({"url": ""}, {"DATABASE_URL": ""}, {"DATABASE_URL": DOTENV_URL})
    assert (s.database_url, s.sources["database_url"]) == (DOTENV_URL, ".env DATABASE_URL")
    s = load_settings({}, {"DATABASE_URL": f"  {ENV_URL}\n"}, {})
    assert s.database_url == ENV_URL
    with pytest.raises(ConfigError) as info:
        load_settings({}, {"DATABASE_URL": "   "}, {})
    assert info.value.exit_code == ExitCode.USAGE


def test_settings_description_never_shows_the_password():
    url = f"postgresql://app:{quote(PASSWORD, safe='')}@db.example.com:5432/app"
    s = load_settings({}, {"DATABASE_URL": url, "PGPASSWORD": "other-" + PASSWORD}, {})
    shown = repr(s.describe())
    assert "app:****@db.example.com:5432/app" in shown
    for secret in (PASSWORD, quote(PASSWORD, safe=""), "s3cr3t"):
        assert secret not in shown


def test_read_dotenv_reads_only_the_working_directorys_file(tmp_path, monkeypatch):
    parent = tmp_path / "repo"
    child = parent / "sub"
    child.mkdir(parents=True)
    (parent / ".env").write_text(f"DATABASE_URL={DOTENV_URL}\n")
    monkeypatch.chdir(child)
    assert read_dotenv() == {}
    assert read_dotenv(child) == {}
    monkeypatch.chdir(parent)
    assert read_dotenv() == {"DATABASE_URL": DOTENV_URL}
    # a password with characters that mean something to shells and URLs survives quoting
    (child / ".env").write_text(
        "# project settings\n"
        f"DATABASE_URL='postgresql://app:{quote(PASSWORD, safe='')}@h:5432/app'\n"
        "BACKUP_DIR=\"my backups\"\n"
        "PGPASSWORD='pa#ss word'\n"
        "EMPTY=\n"
    )
    got = read_dotenv(child)
    assert got["DATABASE_URL"] == f"postgresql://app:{quote(PASSWORD, safe='')}@h:5432/app"
    assert got["BACKUP_DIR"] == "my backups"
    assert got["PGPASSWORD"] == "pa#ss word"
    s = load_settings({}, {}, got)
    assert Target.from_url(s.database_url, s.password).password == PASSWORD


# --- redaction ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("url, shown", [
    ("postgresql://app:secret@db.example.com:5432/app", "postgresql://app:****@db.example.com:5432/app"),
    ("postgres://app:secret@db.example.com/app?sslmode=require", "postgres://app:****@db.example.com/app?sslmode=require"),
    ("postgresql://app@db.example.com/app?password=secret&sslmode=require",
     "postgresql://app@db.example.com/app?password=****&sslmode=require"),
    ("postgresql://app@db.example.com/app?sslmode=require&PASSWORD=secret",
     "postgresql://app@db.example.com/app?sslmode=require&PASSWORD=****"),
    ("postgresql://app@db.example.com:5432/app", "postgresql://app@db.example.com:5432/app"),
    ("host=db.example.com user=app password=secret dbname=app", "host=db.example.com user=app password=**** dbname=app"),
    ("host=db.example.com password = secret dbname=app", "host=db.example.com password = **** dbname=app"),
    ("host=db.example.com password='se cret\\' x' dbname=app", "host=db.example.com password=**** dbname=app"),
    ("host=db.example.com user=app dbname=app", "host=db.example.com user=app dbname=app"),
])
def test_redact_url_forms(url, shown):
    assert redact_url(url) == shown


@pytest.mark.parametrize("password", [
    PASSWORD, "p@ss@word", "pa#ss", "pa?ss", "pa/ss", "pa:ss", "pa%ss", "pa ss", "pa[ss]", "p'a\"ss", "ünï©ødé",
])
@pytest.mark.parametrize("encode", [True, False], ids=["percent-encoded", "raw"])
def test_redact_url_hides_passwords_with_special_characters(password, encode):
    """Users paste Supabase passwords into URLs with and without percent-encoding; libpq accepts
    a raw '#', '?' or '@' in the password, so redaction must not stop at them either."""
    pw = quote(password, safe="") if encode else password
    shown = redact_url(f"postgresql://app:{pw}@db.example.com:5432/app")
    assert shown == "postgresql://app:****@db.example.com:5432/app"


@pytest.mark.parametrize("password", [
    PASSWORD, "kiwi@mango@lime", "kiwi#mango", "kiwi?mango", "kiwi/mango", "kiwi:mango", "kiwi%mango", "kiwi mango",
    "kiwi[mango]", "kiwi'mango\"", "ünïcødé/kiwi",
])
def test_target_never_shows_a_raw_special_password(password):
    """Pasted without percent-encoding, libpq may split a password into host, port or database
    name; whatever it makes of the URL, what the tool prints must not contain the password."""
    url = f"postgresql://app:{password}@db.example.com:5432/app"
    try:
        t = Target.from_url(url)
    except ConfigError as exc:
        assert exc.exit_code == ExitCode.USAGE
        shown = [str(exc)]
    else:
        assert t.password == password
        shown = [t.display(), t.conninfo()]
    pieces = [p for p in re.findall(r"\w{3,}", password) if p not in url.replace(password, "")]
    for text in shown:
        assert password not in text
        for piece in pieces:
            assert piece not in text, (piece, text)


def test_redact_url_key_value_with_special_characters():
    conninfo = "host=db.example.com port=5432 user=app password='" + PASSWORD.replace("\\", "\\\\").replace("'", "\\'") + "' dbname=app"
    shown = redact_url(conninfo)
    assert PASSWORD not in shown and "s3cr3t" not in shown
    assert shown.endswith("password=**** dbname=app")
    # the conninfo really carries that password: libpq reads it back
    assert Target.from_url(conninfo).password == PASSWORD


def test_target_with_percent_encoded_password_keeps_it_out_of_argv_and_display():
    url = f"postgresql://app:{quote(PASSWORD, safe='')}@db.example.com:6432/fortress?sslmode=require"
    t = Target.from_url(url)
    assert t.password == PASSWORD  # decoded for libpq
    assert (t.user, t.host, t.port, t.dbname) == ("app", "db.example.com", "6432", "fortress")
    for text in (t.conninfo(), t.display(), repr(dict(t.params))):
        for secret in (PASSWORD, quote(PASSWORD, safe=""), "s3cr3t"):
            assert secret not in text
    assert t.display() == "postgresql://app@db.example.com:6432/fortress"
    assert "sslmode=require" in t.conninfo()
    # the password reaches tools only through their environment
    env = t.tool_env({"PATH": "/usr/bin", "PGHOST": "elsewhere", "PGDATABASE": "other"})
    assert env["PGPASSWORD"] == PASSWORD and "PGHOST" not in env and "PGDATABASE" not in env
    # a password given separately (PGPASSWORD) is used only when the URL has none
    assert Target.from_url("postgresql://app@db.example.com/fortress", "from-env").password == "from-env"
    assert Target.from_url(url, "from-env").password == PASSWORD


def test_unparseable_url_error_does_not_echo_the_password():
    with pytest.raises(ConfigError) as info:
        Target.from_url(f"postgresql://app:{PASSWORD}@db.example.com:5432/app")
    assert info.value.exit_code == ExitCode.USAGE
    for secret in (PASSWORD, "s3cr3t", "p@ss"):
        assert secret not in str(info.value)


# --- roles ------------------------------------------------------------------------------------------------

# Real `pg_dumpall --roles-only --no-role-passwords` output of PostgreSQL 17 (the \restrict key
# shortened), for a cluster whose superuser is `postgres` and whose app connects as `fortress_admin`.
DUMPALL_17 = r'''--
-- PostgreSQL database cluster dump
--

\restrict vnqgmc2ibKcKrDjuB3rLJWhCT3NPhienFfYDCgQXmOmC20F0EkVP

SET default_transaction_read_only = off;

SET client_encoding = 'UTF8';
SET standard_conforming_strings = on;

--
-- Roles
--

CREATE ROLE "cat_We;ird ""Role""";
ALTER ROLE "cat_We;ird ""Role""" WITH NOSUPERUSER INHERIT NOCREATEROLE NOCREATEDB NOLOGIN NOREPLICATION NOBYPASSRLS;
CREATE ROLE cat_admin;
ALTER ROLE cat_admin WITH NOSUPERUSER INHERIT NOCREATEROLE NOCREATEDB NOLOGIN NOREPLICATION BYPASSRLS;
COMMENT ON ROLE cat_admin IS 'it''s; admin -- not a comment; "quoted"';
CREATE ROLE cat_member;
ALTER ROLE cat_member WITH NOSUPERUSER INHERIT NOCREATEROLE NOCREATEDB LOGIN NOREPLICATION NOBYPASSRLS CONNECTION LIMIT 3;
CREATE ROLE fortress_admin;
ALTER ROLE fortress_admin WITH NOSUPERUSER INHERIT CREATEROLE CREATEDB LOGIN NOREPLICATION NOBYPASSRLS;
COMMENT ON ROLE fortress_admin IS 'the app''s deploy user; not restored';
CREATE ROLE postgres;
ALTER ROLE postgres WITH SUPERUSER INHERIT CREATEROLE CREATEDB LOGIN REPLICATION BYPASSRLS;

--
-- User Configurations
--

--
-- User Config "cat_member"
--

ALTER ROLE cat_member SET search_path TO 'a;b', 'public';


--
-- Role memberships
--

GRANT "cat_We;ird ""Role""" TO cat_member WITH INHERIT FALSE, SET FALSE GRANTED BY postgres;
GRANT cat_admin TO cat_member WITH ADMIN OPTION, INHERIT TRUE GRANTED BY postgres;
GRANT cat_admin TO fortress_admin WITH INHERIT TRUE GRANTED BY postgres;
GRANT pg_monitor TO fortress_admin WITH INHERIT TRUE GRANTED BY postgres;
GRANT pg_read_all_data TO cat_admin WITH INHERIT TRUE GRANTED BY postgres;
GRANT pg_signal_backend TO postgres WITH INHERIT TRUE GRANTED BY postgres;




\unrestrict vnqgmc2ibKcKrDjuB3rLJWhCT3NPhienFfYDCgQXmOmC20F0EkVP

--
-- PostgreSQL database cluster dump complete
--

'''

WEIRD = '"cat_We;ird ""Role"""'


def skip_platform_and_me(role: str) -> bool:
    return POSTGRES.is_reserved_role(role) or role == "fortress_admin"


def test_split_statements_respects_quotes_and_skips_comments_and_meta_commands():
    stmts = roles.split_statements(DUMPALL_17)
    assert not any(s.startswith(("--", "\\")) for s in stmts)
    assert f"CREATE ROLE {WEIRD};" in stmts
    assert "COMMENT ON ROLE cat_admin IS 'it''s; admin -- not a comment; \"quoted\"';" in stmts
    assert "ALTER ROLE cat_member SET search_path TO 'a;b', 'public';" in stmts
    assert all(s.endswith(";") for s in stmts)
    assert len([s for s in stmts if s.startswith("GRANT ")]) == 6
    assert len(stmts) == 3 + 12 + 1 + 6  # SETs, role statements, user config, grants

    script = (
        "-- leading comment; with a semicolon and a quote '\n"
        "CREATE ROLE a;  -- trailing comment; it's fine\n"
        "\\connect template1\n"
        "COMMENT ON ROLE a IS E'';\n"
        "COMMENT ON ROLE \"b;\"\"c\" IS 'x;\n--y;\nz';\n"
        "ALTER ROLE a SET x TO 'unterminated at end"
    )
    assert roles.split_statements(script) == [
        "CREATE ROLE a;",
        "COMMENT ON ROLE a IS E'';",
        "COMMENT ON ROLE \"b;\"\"c\" IS 'x;\n--y;\nz';",
        "ALTER ROLE a SET x TO 'unterminated at end",
    ]


def test_filter_roles_drops_reserved_and_connecting_roles_but_keeps_app_grants():
    kept, app, skipped = roles.filter_roles(DUMPALL_17, skip_platform_and_me)
    assert app == ['cat_We;ird "Role"', "cat_admin", "cat_member"]
    assert skipped == ["fortress_admin", "postgres"]
    text = "\n".join(kept)
    assert "SET " not in text.replace("SET FALSE", "").replace(" SET search_path", "")
    assert "CREATE ROLE postgres" not in text and "ALTER ROLE postgres" not in text
    assert "CREATE ROLE fortress_admin" not in text and "COMMENT ON ROLE fortress_admin" not in text
    # grants with an app role on either side stay (including to the connecting user and from
    # the platform's pg_* roles); grants only among reserved roles go
    assert "GRANT cat_admin TO fortress_admin WITH INHERIT TRUE GRANTED BY postgres;" in kept
    assert "GRANT pg_read_all_data TO cat_admin WITH INHERIT TRUE GRANTED BY postgres;" in kept
    assert not any("pg_monitor" in s or "pg_signal_backend" in s for s in kept)
    assert "ALTER ROLE cat_member SET search_path TO 'a;b', 'public';" in kept
    assert roles.login_roles(kept) == ["cat_member"]


def test_restore_sql_for_pg15_rewrites_pg16_grant_options():
    kept, _, _ = roles.filter_roles(DUMPALL_17, skip_platform_and_me)
    sql15 = roles.restore_sql(kept, target_major=15, target_superuser=True)
    assert f"GRANT {WEIRD} TO cat_member;" in sql15
    assert "GRANT cat_admin TO cat_member WITH ADMIN OPTION;" in sql15
    assert "GRANT pg_read_all_data TO cat_admin;" in sql15
    for pg16_only in ("INHERIT TRUE", "INHERIT FALSE", "SET FALSE", "GRANTED BY"):
        assert pg16_only not in sql15
    sql17 = roles.restore_sql(kept, target_major=17, target_superuser=True)
    assert f"GRANT {WEIRD} TO cat_member WITH INHERIT FALSE, SET FALSE;" in sql17
    assert "GRANTED BY" not in sql17
    # CREATE ROLE is wrapped so an existing role is kept (and altered by the next statement)
    assert f"DO $fortress$ BEGIN CREATE ROLE {WEIRD}; EXCEPTION WHEN duplicate_object THEN NULL; END $fortress$;" in sql15
    # a non-superuser target cannot hand out SUPERUSER/REPLICATION/BYPASSRLS: those words go
    plain = roles.restore_sql(kept, target_major=17, target_superuser=False)
    assert "ALTER ROLE cat_admin WITH INHERIT NOCREATEROLE NOCREATEDB NOLOGIN;" in plain
    assert "BYPASSRLS" not in plain and "REPLICATION" not in plain and "SUPERUSER" not in plain
    assert "BYPASSRLS" in sql17


def test_restore_sql_runs_twice_on_a_real_server(pg):
    """What restore feeds psql: accepted by this server's version, and idempotent (a restore
    into the same cluster finds the roles already there). Rolled back: roles are cluster-wide."""
    with pg.target().connect() as conn:
        major = int(conn.execute("SHOW server_version_num").fetchone()[0]) // 10000
        kept, _, _ = roles.filter_roles(DUMPALL_17, skip_platform_and_me)
        sql = roles.restore_sql(kept, target_major=major, target_superuser=True)
        # the connecting app user exists on the target (it is never part of the backup)
        conn.execute("DO $$ BEGIN CREATE ROLE fortress_admin; EXCEPTION WHEN duplicate_object THEN NULL; END $$")
        conn.execute(sql)
        conn.execute(sql)
        rows = dict(conn.execute(
            "SELECT rolname, ARRAY[rolcanlogin::int, rolbypassrls::int, rolconnlimit] FROM pg_roles WHERE rolname LIKE 'cat\\_%'"
        ).fetchall())
        assert rows == {'cat_We;ird "Role"': [0, 0, -1], "cat_admin": [0, 1, -1],
                        "cat_member": [1, 0, 3]}
        assert conn.execute("SELECT pg_has_role('cat_member', 'cat_admin', 'MEMBER')").fetchone()[0]
        assert conn.execute("SELECT pg_has_role('cat_admin', 'pg_read_all_data', 'USAGE')").fetchone()[0]
        assert conn.execute(
            "SELECT description FROM pg_shdescription d JOIN pg_roles r ON r.oid = d.objoid WHERE rolname = 'cat_admin'"
        ).fetchone()[0] == "it's; admin -- not a comment; \"quoted\""
        assert conn.execute(
            "SELECT setconfig FROM pg_db_role_setting s JOIN pg_roles r ON r.oid = s.setrole WHERE rolname = 'cat_member'"
        ).fetchone()[0] == ["search_path=\"a;b\", public"]
        if major >= 16:
            inherit = conn.execute(
                "SELECT m.inherit_option FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.roleid"
                " JOIN pg_roles u ON u.oid = m.member WHERE r.rolname = 'cat_We;ird \"Role\"' AND u.rolname = 'cat_member'"
            ).fetchone()[0]
            assert inherit is False
        conn.rollback()
    with pg.target().connect() as conn:
        assert conn.execute("SELECT count(*) FROM pg_roles WHERE rolname LIKE 'cat\\_%'").fetchone()[0] == 0


def test_pg15_target_is_warned_when_a_non_inheriting_membership_would_inherit():
    stmts = ['GRANT "reader" TO "app" WITH INHERIT FALSE, SET TRUE GRANTED BY "postgres";',
             'GRANT "writer" TO "app" WITH INHERIT TRUE GRANTED BY "postgres";']
    warnings = roles.downgrade_warnings(stmts, target_major=15)
    assert warnings == ["app now inherits the privileges of reader (PostgreSQL 15 has no INHERIT FALSE grants)"]
    assert roles.downgrade_warnings(stmts, target_major=17) == []


def test_an_ssl_key_passphrase_never_reaches_argv_or_display():
    import os
    import stat

    t = Target.from_url("postgresql://u:pw@db.example:5432/app?sslmode=require&sslpassword=k3y%20pass")
    assert "k3y" not in t.conninfo() and "k3y" not in t.display()
    env = t.tool_env({})
    assert "k3y" not in " ".join(f"{k}={v}" for k, v in env.items() if k != "PGPASSWORD")
    service = env["PGSERVICEFILE"]
    assert env["PGSERVICE"] == "fortress"
    assert open(service).read() == "[fortress]\nsslpassword=k3y pass\n"
    assert stat.S_IMODE(os.stat(service).st_mode) == 0o600
    assert "k3y" not in redact_url("postgresql://u:pw@db.example/app?sslpassword=k3y")


def test_date_passing_over_a_damaged_newer_backup_says_so(tmp_path):
    import json as _json

    store = LocalStore(tmp_path)
    for backup_id, manifest in (("2026-11-24T010000Z", {"format": 1, "kind": "full", "files": []}),
                                ("2026-11-24T020000Z", None)):
        folder = tmp_path / backup_id
        folder.mkdir()
        (folder / "manifest.json").write_text(_json.dumps(manifest) if manifest else "{not json")
    chosen = catalog.resolve(store, date="2026-11-24")
    assert chosen.id == "2026-11-24T010000Z"
    assert any("2026-11-24T020000Z" in n and "damaged" in n for n in chosen.notes)


def test_memberships_between_roles_the_server_has_are_left_alone():
    stmts = ['CREATE ROLE "a";', 'ALTER ROLE "a" WITH NOLOGIN;', 'CREATE ROLE "b";',
             'GRANT "a" TO "b" WITH INHERIT TRUE GRANTED BY "postgres";', 'GRANT "a" TO "c";']
    out = roles.restore_sql(stmts, target_major=17, target_superuser=True, existing={"a", "b"})
    assert 'GRANT "a" TO "b"' not in out and 'ALTER ROLE "a"' not in out and 'CREATE ROLE "a"' not in out
    assert 'GRANT "a" TO "c"' in out  # c is created by this restore: its membership comes along


def test_quoted_role_names_keep_their_attributes():
    script = 'CREATE ROLE "AppUser";\nALTER ROLE "AppUser" WITH NOSUPERUSER INHERIT NOCREATEROLE NOCREATEDB LOGIN NOREPLICATION NOBYPASSRLS;\n'
    kept, app, skipped = roles.filter_roles(script, lambda r: False)
    assert kept == ['CREATE ROLE "AppUser";', 'ALTER ROLE "AppUser" WITH NOSUPERUSER INHERIT NOCREATEROLE NOCREATEDB LOGIN NOREPLICATION NOBYPASSRLS;']
    assert roles.login_roles(kept) == ["AppUser"]
    assert "SUPERUSER" not in roles.restore_sql(kept, target_major=15, target_superuser=False)
