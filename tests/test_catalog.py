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

from tasks.engine import catalog
from tasks.engine.conn import Target, redact_url
from tasks.engine.errors import ConfigError, ExitCode, IntegrityError, NotFound, UsageError
from tasks.engine.settings import load_settings, read_dotenv
from tasks.engine.storage import LocalStore
from tests.conftest import PASSWORD
from tests.helpers import psql

UTC = dt.UTC


# --- fixtures: backup folders as `invoke backup` and the runbook leave them -----------------------


def make_backup(root: Path, backup_id: str, *, kind: str = "full", created_at: str | None = None, label: str = "") -> Path:
    """A published backup folder with a manifest (what `invoke backup` leaves after the rename)."""
    folder = root / backup_id
    folder.mkdir(parents=True)
    m = catalog.ID_RE.match(backup_id)
    if created_at is None:
        day, hms = m.group(1), m.group(2)
        created_at = f"{day}T{hms[:2]}:{hms[2:4]}:{hms[4:]}.000000Z"
    catalog.write_manifest(
        folder, {"format": catalog.FORMAT_VERSION, "id": backup_id, "kind": kind, "label": label, "created_at": created_at, "files": [], "tables": []}
    )
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


@pytest.mark.parametrize(
    "text",
    [
        "2026-11-24T00:00:00",
        "24-11-2026",
        "2026/11/24",
        "2026-1-5",
        "20261124",
        "2026-13-01",
        "2026-02-29",
        "2026-11-24 ",
        " 2026-11-24",
        "yesterday",
        "",
        "２０２６-１１-２４",
    ],
)
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
    catalog.write_manifest(
        folder,
        {
            "format": catalog.FORMAT_VERSION,
            "id": "2026-11-25T230000Z",
            "kind": "full",
            "label": "interrupted",
            "created_at": "2026-11-25T23:00:00Z",
            "files": [],
        },
    )
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
    assert {(b.id, b.kind) for b in backups} == {("schema-2026-11-24.sql+data-2026-11-24.sql", "full"), ("dump-2026-11-24.sql", "full")}
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
    for name in (
        "dump-2026-11-24.sql.gz",
        "dump-2026-11-24.SQL",
        "backup-2026-11-24.sql",
        "dump-24-11-2026.sql",
        ".dump-2026-11-24.sql",
        "notes.txt",
    ):
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
    dotenv = {"DATABASE_URL": DOTENV_URL, "BACKUP_DIR": "dotenv-backups", "PGPASSWORD": "dotenv-pw", "PG_BIN_DIR": "/dotenv/bin"}

    s = load_settings({"url": FLAG_URL, "backup_dir": "flag-backups"}, environ, dotenv)
    assert (s.database_url, s.backup_dir, s.password, s.pg_bin_dir) == (FLAG_URL, Path("flag-backups"), "env-pw", "/dotenv/bin")
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
    assert {row[2] for row in s.describe()} == {"default"}
    assert {row[2] for row in s.describe()} == {"default"}


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
    assert "postgresql://app@db.example.com:5432/app" in shown
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
        'BACKUP_DIR="my backups"\n'
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


@pytest.mark.parametrize(
    "url, shown",
    [
        ("postgresql://app:secret@db.example.com:5432/app", "postgresql://app:****@db.example.com:5432/app"),
        ("postgres://app:secret@db.example.com/app?sslmode=require", "postgres://app:****@db.example.com/app?sslmode=require"),
        ("postgresql://app@db.example.com/app?password=secret&sslmode=require", "postgresql://app@db.example.com/app?password=****&sslmode=require"),
        ("postgresql://app@db.example.com/app?sslmode=require&PASSWORD=secret", "postgresql://app@db.example.com/app?sslmode=require&PASSWORD=****"),
        ("postgresql://app@db.example.com:5432/app", "postgresql://app@db.example.com:5432/app"),
        ("host=db.example.com user=app password=secret dbname=app", "host=db.example.com user=app password=**** dbname=app"),
        ("host=db.example.com password = secret dbname=app", "host=db.example.com password = **** dbname=app"),
        ("host=db.example.com password='se cret\\' x' dbname=app", "host=db.example.com password=**** dbname=app"),
        ("host=db.example.com user=app dbname=app", "host=db.example.com user=app dbname=app"),
    ],
)
def test_redact_url_forms(url, shown):
    assert redact_url(url) == shown


@pytest.mark.parametrize(
    "password",
    [
        PASSWORD,
        "p@ss@word",
        "pa#ss",
        "pa?ss",
        "pa/ss",
        "pa:ss",
        "pa%ss",
        "pa ss",
        "pa[ss]",
        "p'a\"ss",
        "ünï©ødé",
    ],
)
@pytest.mark.parametrize("encode", [True, False], ids=["percent-encoded", "raw"])
def test_redact_url_hides_passwords_with_special_characters(password, encode):
    """Users paste Supabase passwords into URLs with and without percent-encoding; libpq accepts
    a raw '#', '?' or '@' in the password, so redaction must not stop at them either."""
    pw = quote(password, safe="") if encode else password
    shown = redact_url(f"postgresql://app:{pw}@db.example.com:5432/app")
    assert shown == "postgresql://app:****@db.example.com:5432/app"


@pytest.mark.parametrize(
    "password",
    [
        PASSWORD,
        "kiwi@mango@lime",
        "kiwi#mango",
        "kiwi?mango",
        "kiwi/mango",
        "kiwi:mango",
        "kiwi%mango",
        "kiwi mango",
        "kiwi[mango]",
        "kiwi'mango\"",
        "ünïcødé/kiwi",
    ],
)
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
    for backup_id, manifest in (("2026-11-24T010000Z", {"format": 1, "kind": "full", "files": []}), ("2026-11-24T020000Z", None)):
        folder = tmp_path / backup_id
        folder.mkdir()
        (folder / "manifest.json").write_text(_json.dumps(manifest) if manifest else "{not json")
    chosen = catalog.resolve(store, date="2026-11-24")
    assert chosen.id == "2026-11-24T010000Z"
    assert any("2026-11-24T020000Z" in n and "damaged" in n for n in chosen.notes)


# --- which database a backup came from (restore --date picks only the target's own) -----------------


def sourced(root: Path, backup_id: str, url: str, database: str | None = None) -> Path:
    """A backup whose manifest records its source as `invoke backup` does."""
    folder = make_backup(root, backup_id)
    m = json.loads((folder / catalog.MANIFEST).read_text())
    t = Target.from_url(url, environ={})
    m["source"] = {"url": t.display(), "host": t.host, "port": t.port, "database": database or t.dbname, "user": "postgres"}
    (folder / catalog.MANIFEST).unlink()
    catalog.write_manifest(folder, m)
    return folder


def key(url: str) -> catalog.SourceKey:
    t = Target.from_url(url, environ={})
    return catalog.source_key(t.host, t.port, t.dbname, t.user)


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        ("postgresql://u@db.example.com:5432/app", "postgresql://other@DB.example.com/app", True),  # user and case do not matter
        ("postgresql://u@db.example.com:5432/app", "postgresql://u@db.example.com:5432/app_staging", False),
        ("postgresql://u@db.example.com:5432/app", "postgresql://u@db.example.com:5433/app", False),
        ("postgresql://u@db.example.com:5432/app", "postgresql://u@db2.example.com:5432/app", False),
        ("postgresql://u@localhost:5432/app", "postgresql://u@127.0.0.1:5432/app", True),  # this machine, however named
        ("host=/var/run/postgresql dbname=app", "postgresql://u@localhost/app", True),
        # Supabase: the direct host and the session pooler reach the same project
        (
            "postgresql://postgres@db.abcdefghijklmnopqrst.supabase.co:5432/postgres",
            "postgresql://postgres.abcdefghijklmnopqrst@aws-0-eu-central-1.pooler.supabase.com:5432/postgres",
            True,
        ),
        (
            "postgresql://postgres@db.abcdefghijklmnopqrst.supabase.co:5432/postgres",
            "postgresql://postgres.zyxwvutsrqponmlkjihg@aws-0-eu-central-1.pooler.supabase.com:5432/postgres",
            False,
        ),
    ],
)
def test_source_key_matches_the_same_database_only(a, b, same):
    assert key(a).matches(key(b)) is same
    assert key(b).matches(key(a)) is same


def test_supabase_ref_from_the_direct_host_or_the_pooler_user():
    assert catalog.supabase_ref("db.abcdefghijklmnopqrst.supabase.co", "postgres") == "abcdefghijklmnopqrst"
    assert catalog.supabase_ref("aws-0-us-east-1.pooler.supabase.com", "postgres.abcdefghijklmnopqrst") == "abcdefghijklmnopqrst"
    assert catalog.supabase_ref("db.example.com", "postgres.abcdefghijklmnopqrst") is None  # not Supabase
    assert catalog.supabase_ref("aws-0-us-east-1.pooler.supabase.com", "postgres") is None


def test_date_picks_only_the_targets_own_backups(store):
    prod, staging = "postgresql://u@db.example.com:5432/app", "postgresql://u@db.example.com:5432/app_staging"
    sourced(store.root, "2026-11-30T080000Z", prod)
    sourced(store.root, "2026-11-30T090000Z", staging)  # newer, but of another database
    assert catalog.resolve(store, date="2026-11-30", target=key(prod)).id == "2026-11-30T080000Z"
    assert catalog.resolve(store, date="2026-11-30", target=key(staging)).id == "2026-11-30T090000Z"
    # --any-source: the newest of the day, whatever its source; the plan then warns
    picked = catalog.resolve(store, date="2026-11-30", target=key(prod), any_source=True)
    assert picked.id == "2026-11-30T090000Z"
    warning = catalog.source_mismatch(picked, key(prod))
    assert warning == "source mismatch: this backup was made from db.example.com:5432/app_staging, not from the target db.example.com:5432/app"
    assert catalog.source_mismatch(catalog.resolve(store, backup_id="2026-11-30T080000Z"), key(prod)) is None


def test_date_with_backups_only_of_another_source_names_them_and_the_flag(store):
    sourced(store.root, "2026-11-30T090000Z", "postgresql://u@db.example.com:5432/app_staging")
    with pytest.raises(NotFound) as info:
        catalog.resolve(store, date="2026-11-30", target=key("postgresql://u@db.example.com:5432/app"))
    assert info.value.message == (
        "No backup of db.example.com:5432/app from 2026-11-30; that day has backups only of db.example.com:5432/app_staging"
    )
    assert "--any-source" in info.value.hint and "--id 2026-11-30T090000Z" in info.value.hint
    # --id is exact, whatever the source
    assert catalog.resolve(store, backup_id="2026-11-30T090000Z").id == "2026-11-30T090000Z"


def test_backups_of_unknown_source_are_not_refused(store):
    runbook_file(store.root, "dump-2026-11-30.sql")
    make_backup(store.root, "2026-11-29T080000Z")  # a manifest without a source
    target = key("postgresql://u@db.example.com:5432/app")
    assert catalog.resolve(store, date="2026-11-30", target=target).id == "dump-2026-11-30.sql"
    picked = catalog.resolve(store, date="2026-11-29", target=target)
    assert picked.id == "2026-11-29T080000Z" and catalog.source_mismatch(picked, target) is None


# --- one connection target: what the URL lacks, libpq's variables fill in, once -----------------------------


def test_pg_variables_fill_in_what_the_url_lacks_and_are_shown():
    env = {"PGPORT": "57002", "PGUSER": "envuser", "PGHOST": "elsewhere", "PGDATABASE": "envdb"}
    t = Target.from_url("postgresql://app@db.example.com/fortress", environ=env)
    # the URL wins where it speaks; PGPORT fills the port it lacks, for psycopg and the tools alike
    assert t.params == {"host": "db.example.com", "port": "57002", "user": "app", "dbname": "fortress"}
    assert t.display() == "postgresql://app@db.example.com:57002/fortress"
    assert "port=57002" in t.conninfo() and t.resolution() == "port from PGPORT"
    assert "PGPORT" not in t.tool_env({"PGPORT": "1"})  # the tools get it through argv only
    # without any variable the port is still explicit: 5432, as shown
    bare = Target.from_url("postgresql://app@db.example.com/fortress", environ={})
    assert bare.params["port"] == "5432" and bare.resolved_from == {}
    # a URL with nothing but a host takes user and database from the environment
    t = Target.from_url("postgresql://db.example.com", environ=env)
    assert (t.user, t.dbname, t.port) == ("envuser", "envdb", "57002")


def test_password_comes_from_the_url_then_the_given_one_then_pgpassword():
    env = {"PGPASSWORD": "from-pgpassword"}
    assert Target.from_url("postgresql://app@db/x", environ=env).password == "from-pgpassword"
    assert Target.from_url("postgresql://app@db/x", "given", environ=env).password == "given"
    assert Target.from_url(f"postgresql://app:{quote(PASSWORD, safe='')}@db/x", "given", environ=env).password == PASSWORD
    assert Target.from_url("postgresql://app@db/x", environ=env).tool_env({})["PGPASSWORD"] == "from-pgpassword"


def test_target_database_url_setting_and_pg_variables_flag_environment_dotenv():
    url = f"postgresql://app:{quote(PASSWORD, safe='')}@db.example.com/app"
    s = load_settings({}, {"TARGET_DATABASE_URL": url, "PGPORT": "6000"}, {"PGPORT": "7000", "PGUSER": "dotenvuser"})
    assert s.target_url == url and s.sources["target_url"] == "environment TARGET_DATABASE_URL"
    assert s.pg_env == {"PGPORT": "6000", "PGUSER": "dotenvuser"}
    assert load_settings({"target": "postgresql://x@h/d"}, {"TARGET_DATABASE_URL": url}, {}).sources["target_url"] == "flag --target"
    assert load_settings({}, {}, {"TARGET_DATABASE_URL": url}).sources["target_url"] == ".env TARGET_DATABASE_URL"
    shown = repr(s.describe())
    assert "postgresql://app@db.example.com/app" in shown and PASSWORD not in shown and quote(PASSWORD, safe="") not in shown


# --- read-only media ----------------------------------------------------------------------------------------


def test_lock_on_a_folder_that_cannot_be_written_is_skipped_and_said(store, monkeypatch):
    make_backup(store.root, "2026-11-30T080000Z")
    said: list[str] = []
    monkeypatch.setattr(LocalStore, "writable", lambda self: False)
    with store.lock(reading=True, step=said.append):
        pass
    assert said == [f"{store.root} is read-only: reading it without the folder's lock (nothing can change it)"]
    assert not (store.root / ".lock").exists()
