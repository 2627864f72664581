"""The quoting module: every name and value survives as itself, and nothing in one becomes SQL
or a psql meta-command. Unit cases, then a property test against a real server: any string
(that PostgreSQL can store) used as a name round-trips through create, pg_dump and a restore."""

from __future__ import annotations

import os
import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tasks.engine import sqltext
from tasks.engine.errors import IntegrityError

NASTY = [
    "plain",
    "Mixed Case",
    'quote"inside',
    "single'quote",
    "back\\slash",
    "semi;colon",
    "dollar$sign",
    "$fortress$",
    "$f$",
    "$do$",
    "new\nline",
    "cr\rreturn",
    "\\! touch /tmp/fortress-sqltext-pwned",
    "-- comment",
    "/* c */",
    "ünïcødé ✓",
    "a" * 63,
    ":psqlvar",
    ":'psqlvar'",
    "tab\there",
    "'; DROP TABLE t; --",
]


@pytest.mark.parametrize("name", NASTY)
def test_ident_and_literal_round_trip_on_a_real_server(pg15, name):
    with pg15.target().connect() as conn:
        assert conn.execute(f"SELECT {sqltext.literal(name)}").fetchone()[0] == name
        conn.execute("SET standard_conforming_strings = off")
        assert conn.execute(f"SELECT {sqltext.literal(name)}").fetchone()[0] == name
        conn.execute("RESET standard_conforming_strings")
        conn.execute(f"CREATE TEMP TABLE {sqltext.ident(name)} ({sqltext.ident(name + 'c')} int)")
        assert conn.execute("SELECT relname FROM pg_class WHERE relname = %s", (name,)).fetchone()[0] == name
        conn.rollback()


@pytest.mark.parametrize("body", ["x", "$f$", "$f", "ends with $f", "$f$ and $f1$ and $f2$", "$do$", "$do"])
def test_dollar_quote_picks_a_tag_absent_from_the_body(pg15, body):
    quoted = sqltext.dollar_quote(body)
    with pg15.target().connect() as conn:
        assert conn.execute(f"SELECT {quoted}").fetchone()[0] == body
        # and a DO block around such a body runs as one statement
        conn.execute(sqltext.do_block(f"BEGIN PERFORM {sqltext.literal(body)}; END"))


def test_nul_is_refused_not_truncated():
    for fn in (sqltext.ident, sqltext.literal, sqltext.dollar_quote):
        with pytest.raises(IntegrityError):
            fn("a\x00b")


def test_patterns_match_exactly_the_name():
    assert sqltext.pattern("s*", 'we"ird.t?') == '"s*"."we""ird.t?"'


# --- property: any storable name round-trips through create, dump and restore -------------------

names = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
    min_size=1,
    max_size=20,
).filter(lambda s: len(s.encode()) <= 60)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    schema=names.filter(lambda s: not s.startswith("pg_") and s not in ("public", "information_schema")),
    table=names,
    column=names,
    value=st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=30),
)
def test_any_name_round_trips_through_backup_and_restore(pg17, tmp_path_factory, schema, table, column, value):
    from tasks.engine import catalog
    from tasks.engine.dump import create_backup
    from tasks.engine.restore import execute_restore, plan_restore
    from tasks.engine.storage import LocalStore

    tag = uuid.uuid4().hex[:8]
    source, target = pg17.create_database(f"hs_{tag}"), pg17.create_database(f"ht_{tag}")
    try:
        q = sqltext
        with source.connect() as conn:
            conn.execute(f"CREATE SCHEMA {q.ident(schema)}")
            conn.execute(f"CREATE TABLE {q.qualified(schema, table)} ({q.ident(column)} text)")
            conn.execute(f"INSERT INTO {q.qualified(schema, table)} VALUES ({q.literal(value)})")
            conn.execute(f"COMMENT ON TABLE {q.qualified(schema, table)} IS {q.literal(value)}")
            conn.commit()
        store = LocalStore(tmp_path_factory.mktemp("b"))
        result = create_backup(source, store)
        execute_restore(plan_restore(store, catalog.load(store, result.backup_id), target), store)
        with target.connect() as conn:
            got = conn.execute(
                f"SELECT {q.ident(column)}, obj_description({q.literal(q.qualified(schema, table))}::regclass) FROM {q.qualified(schema, table)}"
            ).fetchall()
        assert got == [(value, value or None)]  # an empty comment is no comment
        assert not os.path.exists("/tmp/fortress-sqltext-pwned")
    finally:
        pg17.drop_database(f"hs_{tag}")
        pg17.drop_database(f"ht_{tag}")
