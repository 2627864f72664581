"""Fifth review (restore speed work i12, remote verify i11b, sandbox/table restores i13b): each test a
reproduction that fails for the reason of its finding. Real clusters, real CLI, nothing mocked."""

from __future__ import annotations

from tests.fixtures_cli import SOURCE_SQL, TARGET_SQL, engine_backup
from tests.helpers import scalar, seeded, state
from tests.hostile_helpers import env_for, shown, unsigned_with_sql_in_comment

# A post-data entry (an index's comment: no table's `\.` follows it in the script) that opens a
# COPY FROM stdin and never ends it. CSV with delimiter and quote bytes that appear nowhere, so
# every later line is a valid row of the one-column temp table.
_OPEN_COPY = b"CREATE TEMP TABLE z(t text);COPY z FROM stdin (FORMAT csv, DELIMITER E'\\x01', QUOTE E'\\x02');--"


# --- 1. a COPY opened by an entry and never ended swallows the rest of the session, COMMIT included ---


def test_an_unended_copy_in_the_archive_does_not_pass_for_a_restore(dbs, project, invoke_cli):
    """psql reads everything after the open COPY as its data: pg_restore's `\\unrestrict KEY`, the
    session's `\\restrict KEY`, the row-count, power, roles and transaction checks and the closing
    COMMIT. At end of input psql ends the COPY normally and exits 0; the server rolls the open
    transaction back. The tool looks only at psql's exit status, so it reports a restore that
    completed (step line 'checking row counts') although nothing was restored and no check ran."""
    source, bdir, backup_id = unsigned_with_sql_in_comment(dbs, project, _OPEN_COPY)
    target = seeded(dbs, "dst", TARGET_SQL)
    before = state(target)
    res = invoke_cli("restore", "--id", backup_id, "--yes", "--allow-unsigned", "--no-undo", env=env_for(dbs.url(target), bdir))
    if res.returncode == 0:
        assert scalar(target, "SELECT count(*) FROM app.items") == 300, (
            "restore exited 0 and reported success, but nothing was restored (its checks and COMMIT were read as COPY data):\n" + shown(res)
        )
    else:
        assert state(target) == before, shown(res)


def test_an_early_commit_then_an_unended_copy_is_not_reported_as_a_checked_restore(dbs, project, invoke_cli):
    """The same with a COMMIT first: the reset and everything up to the post-data entry is committed
    (the NOTIFY that reveals an early COMMIT is delivered), then the open COPY swallows the
    transaction check, the rest of post-data (primary keys, foreign keys) and the final COMMIT. psql
    exits 0 and the tool reports success: the target is half restored (no keys), said to be done;
    the NOTIFY is only looked at when the restore fails."""
    source, bdir, backup_id = unsigned_with_sql_in_comment(dbs, project, b"COMMIT;" + _OPEN_COPY)
    target = seeded(dbs, "dst", TARGET_SQL)
    res = invoke_cli("restore", "--id", backup_id, "--yes", "--allow-unsigned", "--no-undo", env=env_for(dbs.url(target), bdir))
    assert res.returncode != 0, "restore exited 0 after a statement in the archive committed part of it and the rest never ran:\n" + shown(res)
    assert "NOT unchanged" in res.stderr, shown(res)


# --- 2. --jobs --no-undo calls a target "empty" that holds the app's functions, views, sequences ------


def test_jobs_without_undo_point_is_refused_into_a_target_holding_app_objects(dbs, project, invoke_cli):
    """`target_empty` counts only tables (plus publications, large objects, platform rows): an app
    schema holding functions, views and sequences (their values) but no table passes as empty, so
    `--jobs 2 --no-undo` runs. Its first step commits the reset, which drops all of them; a failure
    in the parallel step then leaves a partly restored target and no undo point to get them back."""
    source = seeded(dbs, "src", SOURCE_SQL)
    bdir = project / "backups"
    backup_id = engine_backup(source, bdir)
    target = seeded(
        dbs,
        "dst",
        "CREATE SCHEMA app;\n"
        "CREATE FUNCTION app.price(n int) RETURNS int LANGUAGE sql AS 'SELECT n * 42';\n"
        "CREATE SEQUENCE app.invoice_no START 1000; SELECT nextval('app.invoice_no');\n"
        "CREATE VIEW app.answer AS SELECT app.price(1) AS v;\n",
    )
    res = invoke_cli("restore", "--id", backup_id, "--yes", "--jobs", "2", "--no-undo", env=env_for(dbs.url(target), bdir))
    assert res.returncode == 2 and "nothing was changed" in res.stderr, (
        "--jobs with --no-undo ran into a target whose app schema held functions, a view and a sequence "
        "(dropped by the committed first step, with no undo point):\n" + shown(res)
    )


def test_a_backup_id_with_a_trailing_newline_is_no_backup_id():
    """An object key `<id>\\n/manifest.json` in a hostile bucket prefix must not become a backup
    id of its own (it would sort after the real one, so --date would pick it)."""
    from tasks.engine import catalog

    assert catalog.ID_RE.match("2026-11-24T031500Z")
    assert catalog.ID_RE.match("2026-11-24T031500Z\n") is None
    assert catalog.ID_RE.match("2026-11-24T031500Z-2\n") is None
