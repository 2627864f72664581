"""What a reset's CASCADE reaches outside the app's schemas (tasks/engine/reach.py), and a reset
that empties `public` on a Supabase-shaped target leaving nothing behind (dbinfo.schema_objects).

Real PostgreSQL 15 and 17, never mocked. PostgreSQL itself is the oracle: the same reset runs in a
transaction that is rolled back, with every cascade reported (client_min_messages = debug2), and
what it says it drops and empties must be exactly what reach.py computed without running it.
"""

from __future__ import annotations

import re

import psycopg

from tasks.engine import additions, dbinfo, reach
from tasks.engine.platform import SUPABASE, detect
from tasks.engine.restore import execute_reset, plan_reset, statements
from tests.helpers import psql, scalar, seeded, state


def reset_sql(conn, platform, *, drop_schemas, publications, large_objects, drop_additions=(), platform_tables=()):
    """The reset the restore writes for this target (as plan_restore assembles it)."""
    public = dbinfo.schema_contents_drop_sql(conn, "public") if platform.name == "supabase" else None
    return statements.reset_sql(
        drop_schemas=drop_schemas,
        publications=publications,
        large_objects=large_objects,
        public_contents=public,
        drop_additions=drop_additions,
        platform_tables=platform_tables,
    )


# Two app schemas (`public`, emptied object by object as on Supabase, and `app2`, dropped whole),
# a stand-in platform table (auth.users) the reset empties, and the app's neighbours in `billing`
# and `extensions` that CASCADE reaches in every way it can.
SCENARIO = """
CREATE SCHEMA auth; CREATE SCHEMA billing; CREATE SCHEMA extensions; CREATE SCHEMA app2;
CREATE TABLE auth.users (id int PRIMARY KEY, email text);
CREATE TABLE auth.identities (id int PRIMARY KEY, user_id int REFERENCES auth.users (id));
CREATE TABLE billing.orders (id int PRIMARY KEY, note text,
                             user_id int CONSTRAINT orders_user_fk REFERENCES auth.users (id));
CREATE TABLE billing.order_lines (id int, order_id int REFERENCES billing.orders (id));

CREATE TABLE public.items (id serial PRIMARY KEY, name text, g int GENERATED ALWAYS AS IDENTITY);
CREATE TABLE public.profiles (id int PRIMARY KEY REFERENCES auth.users (id));
CREATE FUNCTION public.f(int) RETURNS int LANGUAGE sql IMMUTABLE AS 'SELECT $1';
CREATE FUNCTION public.trg() RETURNS trigger LANGUAGE plpgsql AS 'BEGIN RETURN NEW; END';
CREATE FUNCTION public.on_ddl() RETURNS event_trigger LANGUAGE plpgsql AS 'BEGIN END';
CREATE TYPE public.mood AS ENUM ('calm', 'angry');
CREATE SEQUENCE public.standalone;
CREATE TABLE public.pt (id int, v text) PARTITION BY RANGE (id);
CREATE TABLE public.pt1 PARTITION OF public.pt FOR VALUES FROM (0) TO (10);
CREATE TABLE app2.t (id int REFERENCES public.items (id));
CREATE VIEW app2.v AS SELECT * FROM public.items;

CREATE VIEW extensions.app_summary AS SELECT count(*) AS n FROM public.items;
CREATE VIEW extensions.over_app2 AS SELECT * FROM app2.t;
ALTER TABLE billing.orders ADD COLUMN m public.mood;
ALTER TABLE billing.order_lines ADD COLUMN item_id int CONSTRAINT lines_item_fk REFERENCES public.items (id);
ALTER TABLE billing.order_lines ADD COLUMN d bigint DEFAULT nextval('public.standalone');
CREATE INDEX orders_f_idx ON billing.orders (public.f(id));
CREATE POLICY p ON billing.orders USING (public.f(id) > 0);
CREATE TRIGGER t BEFORE INSERT ON billing.orders FOR EACH ROW EXECUTE FUNCTION public.trg();
CREATE TABLE billing.pt2 PARTITION OF public.pt FOR VALUES FROM (10) TO (20);
CREATE EVENT TRIGGER app_ddl ON ddl_command_end EXECUTE FUNCTION public.on_ddl();

INSERT INTO auth.users VALUES (1, 'a@x.test');
INSERT INTO auth.identities VALUES (1, 1);
INSERT INTO billing.orders (id, user_id) VALUES (1, 1);
INSERT INTO billing.order_lines (id, order_id) VALUES (1, 1);
INSERT INTO public.pt VALUES (1, 'one'), (15, 'fifteen');
"""
APP = ["public", "app2"]
EMPTIED = [("auth", "users")]

EXPECTED = [
    "column m of table billing.orders (would be dropped)",
    "default value for column d of table billing.order_lines (would be dropped)",
    "foreign key lines_item_fk on table billing.order_lines (would be dropped)",
    "index billing.orders_f_idx (would be dropped)",
    "policy p on table billing.orders (would be dropped)",
    "table billing.pt2 (would be dropped)",
    "trigger t on table billing.orders (would be dropped)",
    "table auth.identities (would be emptied)",
    "table billing.order_lines (would be emptied)",
    "table billing.orders (would be emptied)",
    "view extensions.app_summary (would be dropped)",
    "view extensions.over_app2 (would be dropped)",
    "event trigger app_ddl (would be dropped)",
]


def reached(conn, app=APP, emptied=EMPTIED, found=()) -> list[reach.Reached]:
    """What the Supabase-shaped reset of `app` would reach, computed as the plan would."""
    return reach.reached_outside(
        conn,
        inside=app,
        drop_schemas=[s for s in app if s != "public"],
        drop_objects=dbinfo.schema_objects(conn, "public") if "public" in app else [],
        drop_additions=found,
        truncate_tables=emptied,
    )


def descriptions(found: list[reach.Reached]) -> list[str]:
    return [r.description for r in found]


# --- PostgreSQL as the oracle ---------------------------------------------------------------------

_CASCADE = re.compile(r"drop (?:auto-)?cascades to (.+)")
_TRUNCATE = re.compile(r'truncate cascades to table "(.+)"')


def postgres_says(conn: psycopg.Connection, script: str) -> tuple[set[str], set[str]]:
    """Run `script` in a transaction that is rolled back; return what PostgreSQL reports it
    dropped by cascade (descriptions) and emptied by cascade (table names)."""
    dropped: set[str] = set()
    emptied: set[str] = set()
    cut: list[str] = []

    def heard(diag: psycopg.errors.Diagnostic) -> None:
        for line in [diag.message_primary or ""] + (diag.message_detail or "").splitlines():
            if "see server log" in line:
                cut.append(line)
            elif m := _CASCADE.fullmatch(line):
                if not re.fullmatch(r"\d+ other objects?", m.group(1)):
                    dropped.add(m.group(1))
            elif m := _TRUNCATE.fullmatch(line):
                emptied.add(m.group(1))

    conn.add_notice_handler(heard)
    try:
        with conn.transaction(force_rollback=True):
            conn.execute("SET LOCAL client_min_messages = debug2")
            conn.execute("SET LOCAL search_path = ''")
            conn.execute(script.encode())
    finally:
        conn.remove_notice_handler(heard)
    assert not cut, "PostgreSQL shortened its list; the oracle needs a smaller fixture"
    return dropped, emptied


def computed(conn: psycopg.Connection, seeds: list[reach.Address], tables: list[tuple[str, str]]):
    """reach.py's closures, described the way PostgreSQL's notices describe them."""
    with conn.transaction(force_rollback=True):
        conn.execute("SET LOCAL search_path = ''")
        closure = reach.drop_closure(conn, seeds)
        oids = [conn.execute("SELECT %s::regclass::oid", (f'"{s}"."{t}"',)).fetchone()[0] for s, t in tables]
        cascaded = reach.truncate_closure(conn, oids, closure)

        def describe(objs):
            objs = list(objs)
            return {
                r[0]
                for r in conn.execute(
                    "SELECT pg_catalog.pg_describe_object(c, o, s) FROM unnest(%s::oid[], %s::oid[], %s::int[]) AS t(c, o, s)",
                    ([a.classid for a in objs], [a.objid for a in objs], [a.subid for a in objs]),
                )
            }

        named = describe(seeds)
        dropped = describe(closure) - named
        emptied = {r[0] for r in conn.execute("SELECT relname FROM pg_class WHERE oid = ANY(%s::oid[])", (sorted(cascaded),))}
    return dropped, emptied, named


def seeds_of(conn, app, found=()) -> list[reach.Address]:
    pg_namespace = conn.execute("SELECT 'pg_namespace'::regclass::oid").fetchone()[0]
    out = [
        reach.Address(pg_namespace, oid)
        for (oid,) in conn.execute("SELECT oid FROM pg_namespace WHERE nspname = ANY(%s) AND nspname <> 'public'", (app,))
    ]
    out += [reach.Address(o.classid, o.objid) for o in dbinfo.schema_objects(conn, "public")]
    out += reach._addition_addresses(conn, list(found))
    return out


# --- reach ------------------------------------------------------------------------------------------


def test_a_table_with_a_foreign_key_to_an_emptied_table_is_reported(dbs):
    target = seeded(
        dbs,
        "reach",
        """
        CREATE SCHEMA auth; CREATE SCHEMA billing;
        CREATE TABLE auth.users (id int PRIMARY KEY);
        CREATE TABLE billing.orders (id int PRIMARY KEY, user_id int CONSTRAINT orders_user_fk REFERENCES auth.users);
        CREATE TABLE billing.order_lines (order_id int REFERENCES billing.orders);
        CREATE TABLE public.profiles (id int REFERENCES auth.users);
    """,
    )
    with target.connect(autocommit=True) as conn:
        found = reached(conn, app=["public"])
    assert descriptions(found) == ["table billing.order_lines (would be emptied)", "table billing.orders (would be emptied)"]
    assert found[1] == reach.Reached("billing", "table billing.orders (would be emptied)", "table", "billing.orders", "emptied")


def test_a_view_in_another_schema_over_an_app_table_is_reported(dbs):
    target = seeded(
        dbs,
        "reach",
        """
        CREATE SCHEMA extensions; CREATE SCHEMA billing;
        CREATE TABLE public.items (id int PRIMARY KEY);
        CREATE VIEW extensions.app_summary AS SELECT count(*) FROM public.items;
        CREATE TABLE billing.orders (item_id int CONSTRAINT orders_item_fk REFERENCES public.items);
    """,
    )
    with target.connect(autocommit=True) as conn:
        found = reached(conn, app=["public"], emptied=[])
    assert descriptions(found) == [
        "foreign key orders_item_fk on table billing.orders (would be dropped)",
        "view extensions.app_summary (would be dropped)",
    ]
    assert [(r.schema, r.kind, r.identity) for r in found] == [
        ("billing", "table constraint", "orders_item_fk on billing.orders"),
        ("extensions", "view", "extensions.app_summary"),
    ]


def test_objects_inside_the_app_schemas_are_not_reported(dbs):
    target = seeded(dbs, "reach", SCENARIO)
    with target.connect(autocommit=True) as conn:
        found = reached(conn)
        everything = reached(conn, app=["public", "app2", "billing", "extensions", "auth"])
    assert not [r for r in found if r.schema in APP]
    # app2's foreign key to public.items, its view over it, public.profiles' foreign key to the
    # emptied auth.users: all the app's own, none listed
    assert not [d for d in descriptions(found) if " app2." in d or " public." in d]
    # with every schema the app's, only what belongs to no schema is left
    assert descriptions(everything) == ["event trigger app_ddl (would be dropped)"]


def test_everything_reached_outside_is_reported_as_postgresql_drops_it(dbs):
    target = seeded(dbs, "reach", SCENARIO)
    with target.connect(autocommit=True) as conn:
        found = reached(conn)
        assert sorted(descriptions(found)) == sorted(EXPECTED)
        assert [r.schema for r in found if r.kind == "event trigger"] == [None]

        # PostgreSQL runs the reset itself (rolled back) and lists what it drops and empties
        script = reset_sql(conn, SUPABASE, drop_schemas=APP, publications=[], large_objects=False, platform_tables=EMPTIED)
        said_dropped, said_emptied = postgres_says(conn, script)
        dropped, emptied, named = computed(conn, seeds_of(conn, APP), EMPTIED)
    assert said_dropped - named == dropped
    assert said_emptied == emptied == {"identities", "orders", "order_lines"}


def test_the_database_is_unchanged_and_no_table_is_locked(dbs):
    target = seeded(dbs, "reach", SCENARIO)
    before = state(target)
    # Another session holds what the reset would lock; reading the catalog must not wait for it.
    holder = target.connect()
    holder.execute(
        "LOCK TABLE auth.users, billing.orders, billing.order_lines, public.items, public.pt, extensions.app_summary IN ACCESS EXCLUSIVE MODE"
    )
    try:
        # a session that cannot write at all
        with target.connect(autocommit=True, options="-c default_transaction_read_only=on -c lock_timeout=2s") as conn:
            assert sorted(descriptions(reached(conn))) == sorted(EXPECTED)
        # inside a caller's open transaction: its work, settings and writability are untouched
        with target.connect(options="-c lock_timeout=2s") as conn:
            conn.execute("CREATE TABLE app2.scratch (x int)")
            search_path = conn.execute("SHOW search_path").fetchone()[0]
            assert sorted(descriptions(reached(conn))) == sorted(EXPECTED)
            assert conn.execute("SHOW search_path").fetchone()[0] == search_path
            assert conn.execute("SHOW transaction_read_only").fetchone()[0] == "off"
            assert conn.execute("SELECT to_regclass('app2.scratch') IS NOT NULL").fetchone()[0]
            conn.rollback()
    finally:
        holder.rollback()
        holder.close()
    assert state(target) == before
    assert scalar(target, "SELECT count(*) FROM billing.orders") == 1


# --- Supabase-shaped ------------------------------------------------------------------------------

SUPABASE_NEIGHBOURS = """
CREATE SCHEMA platform_extra AUTHORIZATION supabase_admin;
CREATE TABLE platform_extra.accounts (user_id uuid CONSTRAINT accounts_user_fk REFERENCES auth.users (id));
INSERT INTO platform_extra.accounts SELECT id FROM auth.users;
CREATE VIEW extensions.project_names AS SELECT name FROM public.projects;
"""


def test_a_supabase_reset_reaches_platform_neighbours(supa):
    project = supa.new_project()
    supa.load_app(project)
    with supa.admin(project).connect() as conn:
        conn.execute(SUPABASE_NEIGHBOURS)
        conn.commit()
    with project.connect(autocommit=True) as conn:
        platform = detect(conn)
        app = dbinfo.app_schemas(conn, platform)
        found = additions.find(conn, platform)
        platform_tables = [
            (s, t) for s, t, kind in dbinfo.tables(conn, ["auth", "storage"]) if kind == "r" and f"{s}.{t}" not in platform.excluded_data_tables
        ]
        result = reached(conn, app, platform_tables, found)
    assert descriptions(result) == ["view extensions.project_names (would be dropped)", "table platform_extra.accounts (would be emptied)"]

    # what PostgreSQL does with the reset the restore would run (as the superuser: `postgres` may
    # not empty platform_extra.accounts at all, and the restore would fail and roll back there)
    with supa.admin(project).connect() as conn:
        script = reset_sql(
            conn,
            platform,
            drop_schemas=app,
            publications=[],
            large_objects=False,
            drop_additions=[a.drop_sql for a in found],
            platform_tables=platform_tables,
        )
        said_dropped, said_emptied = postgres_says(conn, script)
        dropped, emptied, named = computed(conn, seeds_of(conn, app, found), platform_tables)
    assert said_dropped - named == dropped
    assert said_emptied == emptied == {"accounts"}


PARTITIONED = """
CREATE TABLE public.events (id bigint GENERATED ALWAYS AS IDENTITY, at date NOT NULL, what text)
    PARTITION BY RANGE (at);
CREATE TABLE public.events_2025 PARTITION OF public.events FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
CREATE TABLE public.events_2026 PARTITION OF public.events FOR VALUES FROM ('2026-01-01') TO ('2027-01-01')
    PARTITION BY LIST (what);
CREATE TABLE public.events_2026_a PARTITION OF public.events_2026 FOR VALUES IN ('a');
CREATE TABLE public.events_2026_rest PARTITION OF public.events_2026 DEFAULT;
CREATE INDEX ON public.events (at);
INSERT INTO public.events (at, what) VALUES ('2025-05-01', 'a'), ('2026-05-01', 'a'), ('2026-06-01', 'b');
CREATE SEQUENCE public.invoice_no;
CREATE TABLE public.generated (a int, b int GENERATED ALWAYS AS (a * 2) STORED);
"""


def test_a_supabase_reset_drops_partitioned_tables_and_leaves_public_empty(supa):
    project = supa.new_project()
    supa.load_app(project)
    psql(project, PARTITIONED)
    with project.connect(autocommit=True) as conn:
        statements = dbinfo.schema_contents_drop_sql(conn, "public")
    assert "DROP TABLE IF EXISTS public.events CASCADE;" in statements
    assert "DROP SEQUENCE IF EXISTS public.invoice_no CASCADE;" in statements
    # parts go with their owner: no partition, identity or serial sequence, row type by name
    assert not [s for s in statements if "events_20" in s or "_seq " in s]

    plan = plan_reset(project)
    execute_reset(plan)
    assert (
        scalar(project, "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public'") == 0
    )  # tables, partitions, sequences, indexes, views
    assert scalar(project, "SELECT count(*) FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace WHERE n.nspname = 'public'") == 0
    assert scalar(project, "SELECT count(*) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = 'public'") == 0
    # `public` itself, and what the platform configured on it, stays
    assert scalar(project, "SELECT has_schema_privilege('anon', 'public', 'USAGE')")


def test_restore_over_the_same_project_with_a_partitioned_table(supa, tmp_path):
    from tasks.engine import catalog
    from tasks.engine.dump import create_backup
    from tasks.engine.restore import execute_restore, plan_restore
    from tasks.engine.storage import LocalStore

    project = supa.new_project()
    supa.load_app(project)
    psql(project, PARTITIONED)
    store = LocalStore(tmp_path / "backups")
    b = catalog.load(store, create_backup(project, store).backup_id)
    psql(project, "INSERT INTO public.events (at, what) VALUES ('2025-07-01', 'late')")
    execute_restore(plan_restore(store, b, project), store)
    assert scalar(project, "SELECT count(*) FROM public.events") == 3
    assert scalar(project, "SELECT count(*) FROM public.events_2026_rest") == 1


def test_schema_names_that_need_quotes_are_inside_when_they_are_the_apps(dbs):
    """pg_identify_object quotes schema names ("Billing", "[/]"): an app schema named so must
    still count as the app's, and --also-reach must match it as typed."""
    target = seeded(
        dbs,
        "reach",
        'CREATE SCHEMA "Billing"; CREATE TABLE "Billing".t (id int PRIMARY KEY);'
        'CREATE SCHEMA "[/]"; CREATE TABLE "[/]".u (id int REFERENCES "Billing".t);',
    )
    with target.connect(autocommit=True) as conn:
        assert reach.reached_outside(conn, inside=["Billing", "[/]"], drop_schemas=["Billing", "[/]"]) == []
        outside = reach.reached_outside(conn, inside=["Billing"], drop_schemas=["Billing", "[/]"])
    assert {r.schema for r in outside} == {"[/]"}
