"""A reset that empties `public` on a Supabase-shaped target leaves nothing behind
(dbinfo.schema_objects): partitioned tables with their partitions, sequences, every top-level
object. Real PostgreSQL 15 and 17, never mocked.
"""

from __future__ import annotations

from tasks.engine import dbinfo
from tasks.engine.load import execute_reset, plan_reset
from tests.helpers import psql, scalar


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
    assert scalar(project, "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
                           " WHERE n.nspname = 'public'") == 0  # tables, partitions, sequences, indexes, views
    assert scalar(project, "SELECT count(*) FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace"
                           " WHERE n.nspname = 'public'") == 0
    assert scalar(project, "SELECT count(*) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace"
                           " WHERE n.nspname = 'public'") == 0
    # `public` itself, and what the platform configured on it, stays
    assert scalar(project, "SELECT has_schema_privilege('anon', 'public', 'USAGE')")


def test_restore_over_the_same_project_with_a_partitioned_table(supa, tmp_path):
    from tasks.engine import catalog
    from tasks.engine.dump import create_backup
    from tasks.engine.load import execute_restore, plan_restore
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
