"""Roles travel as data and come back only as the restore writes them: hostile names stay names,
superuser powers are never handed out, roles the target has are never changed."""

from __future__ import annotations

import uuid

import pytest

from tasks.engine import roles
from tasks.engine.errors import IntegrityError
from tests.helpers import psql

HOSTILE = [
    "x$fortress$\n\\! touch /tmp/fortress-marker\n",
    "r$fortress$x",
    'We;ird "Role" -- not a comment',
    "it's\\",
    "ünïcødé ✓",
    "n" * 63,
]


def _names(prefix: str) -> list[str]:
    return [f"{prefix}{n}"[:63] for n in HOSTILE]


def test_hostile_role_names_round_trip_as_data_and_run_nothing(pg, tmp_path):
    prefix = uuid.uuid4().hex[:4]
    names = _names(prefix)
    admin = pg.target()
    with admin.connect() as conn:
        for n in names:
            conn.execute(f"CREATE ROLE {roles.sqltext.ident(n)} LOGIN CONNECTION LIMIT 4")
            conn.execute(f"COMMENT ON ROLE {roles.sqltext.ident(n)} IS {roles.sqltext.literal(n)}")
        conn.execute(f"ALTER ROLE {roles.sqltext.ident(names[0])} SET search_path TO 'a;b', public")
        conn.execute(f"GRANT {roles.sqltext.ident(names[1])} TO {roles.sqltext.ident(names[2])}")
        conn.commit()
        data = roles.read(conn, names).to_json()
        for n in names:
            conn.execute(f"DROP ROLE {roles.sqltext.ident(n)}")
        conn.commit()
    back = roles.RoleSet.from_json(data)
    with admin.connect() as conn:
        plan = roles.plan(back, roles.facts(conn, back.names()))
        assert sorted(r.name for r in plan.create) == sorted(names)
        conn.execute(plan.sql)
        got = dict(conn.execute("SELECT rolname, ARRAY[rolcanlogin::int, rolconnlimit] FROM pg_roles WHERE rolname = ANY(%s)", (names,)).fetchall())
        assert got == {n: [1, 4] for n in names}
        assert conn.execute(
            "SELECT setconfig FROM pg_db_role_setting s JOIN pg_roles r ON r.oid = s.setrole WHERE rolname = %s", (names[0],)
        ).fetchone()[0] == ['search_path="a;b", public']
        assert conn.execute("SELECT pg_has_role(%s, %s, 'MEMBER')", (names[2], names[1])).fetchone()[0]
        for n in names:
            assert conn.execute("SELECT shobj_description(oid, 'pg_authid') FROM pg_roles WHERE rolname = %s", (n,)).fetchone()[0] == n
        conn.rollback()
    assert not __import__("os").path.exists("/tmp/fortress-marker")


def test_superuser_powers_are_never_handed_out(pg):
    prefix = f"su_{uuid.uuid4().hex[:4]}"
    data = roles.RoleSet(
        roles=(
            roles.Role(
                f"{prefix}_evil", login=True, superuser=True, replication=True, bypassrls=True, settings=(("session_preload_libraries", "evil"),)
            ),
        ),
        memberships=(
            roles.Membership("postgres", f"{prefix}_evil"),
            roles.Membership("pg_execute_server_program", f"{prefix}_evil"),
            roles.Membership("pg_read_all_stats", f"{prefix}_evil"),
        ),
    )
    with pg.target().connect() as conn:
        plan = roles.plan(roles.RoleSet.from_json(data.to_json()), roles.facts(conn, [f"{prefix}_evil"]))
        assert any("SUPERUSER REPLICATION BYPASSRLS" in r for r in plan.refused)
        assert any("in postgres" in r for r in plan.refused)
        assert any("pg_execute_server_program" in r for r in plan.refused)
        assert any("session_preload_libraries" in r for r in plan.refused)
        conn.execute(plan.sql)
        row = conn.execute(
            "SELECT rolsuper, rolreplication, rolbypassrls, pg_has_role(oid, 'postgres', 'MEMBER'),"
            " pg_has_role(oid, 'pg_execute_server_program', 'MEMBER'),"
            " pg_has_role(oid, 'pg_read_all_stats', 'MEMBER')"
            " FROM pg_roles WHERE rolname = %s",
            (f"{prefix}_evil",),
        ).fetchone()
        assert row == (False, False, False, False, False, True)
        conn.rollback()


def test_roles_the_target_has_are_never_changed(pg):
    name = f"kept_{uuid.uuid4().hex[:4]}"
    psql(pg.target(), f"CREATE ROLE {name} NOLOGIN")
    try:
        data = roles.RoleSet(
            roles=(roles.Role(name, login=True, createrole=True, comment="changed"),), memberships=(roles.Membership("pg_monitor", name),)
        )
        with pg.target().connect() as conn:
            plan = roles.plan(data, roles.facts(conn, [name]))
            assert plan.keep == (name,) and plan.create == () and plan.grants == () and plan.sql == ""
    finally:
        psql(pg.target(), f"DROP ROLE {name}")


def test_pg15_target_is_warned_when_a_non_inheriting_membership_would_inherit():
    data = roles.RoleSet(roles=(roles.Role("app"),), memberships=(roles.Membership("reader", "app", inherit=False),))
    facts15 = roles.TargetRoles(frozenset({"reader"}), frozenset(), "postgres", 15)
    facts17 = roles.TargetRoles(frozenset({"reader"}), frozenset(), "postgres", 17)
    assert roles.plan(data, facts15).warnings == ("app now inherits the privileges of reader (PostgreSQL 15 has no INHERIT FALSE grants)",)
    assert "INHERIT FALSE" in roles.plan(data, facts17).sql and "WITH INHERIT" not in roles.plan(data, facts15).sql


@pytest.mark.parametrize(
    "text",
    [
        '{"format": 1, "roles": [{"name": 1}], "memberships": []}',
        '{"format": 1, "roles": [{"name": "a", "login": "yes"}], "memberships": []}',
        '{"format": 1, "roles": [], "memberships": [{"role": "a"}]}',
        '{"format": 9, "roles": [], "memberships": []}',
        "CREATE ROLE evil SUPERUSER;",
    ],
)
def test_a_damaged_or_edited_roles_file_is_refused(text):
    with pytest.raises(IntegrityError, match="roles.json"):
        roles.RoleSet.from_json(text)


def test_list_settings_split_like_pg_dumpall():
    assert roles.split_list('"$user", public, "a,b"') == ["$user", "public", "a,b"]
    assert roles.split_list('"x""y"') == ['x"y']
