-- What tests/supabase/app.sql lacks of issue 7's "Done when" app, run as `postgres` after it on a
-- hosted platform (tests/supabase/hosted.sql): a partitioned table, large objects, a materialized
-- view, and a policy on storage.buckets. pg_cron jobs are scheduled by the tests (pg_cron is not
-- available everywhere).

-- Partitioned: monthly revenue lines per scenario (declarative partitions and a default one)
CREATE TABLE public.revenue_lines (
    scenario_id bigint NOT NULL REFERENCES public.scenarios (id) ON DELETE CASCADE,
    month date NOT NULL,
    amount numeric(14, 2) NOT NULL,
    PRIMARY KEY (scenario_id, month)
) PARTITION BY RANGE (month);
CREATE TABLE public.revenue_lines_2024 PARTITION OF public.revenue_lines
    FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
CREATE TABLE public.revenue_lines_2025 PARTITION OF public.revenue_lines
    FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
CREATE TABLE public.revenue_lines_rest PARTITION OF public.revenue_lines DEFAULT;
ALTER TABLE public.revenue_lines ENABLE ROW LEVEL SECURITY;
CREATE POLICY "Revenue follows its scenario" ON public.revenue_lines
    FOR SELECT TO authenticated
    USING (EXISTS (SELECT 1 FROM public.scenarios s JOIN public.projects p ON p.id = s.project_id
                   WHERE s.id = revenue_lines.scenario_id AND p.owner_id = (SELECT auth.uid())));
REVOKE ALL ON public.revenue_lines FROM anon;
GRANT SELECT ON public.revenue_lines TO fortress_app;

INSERT INTO public.revenue_lines (scenario_id, month, amount)
SELECT s.id, d::date, round((s.id * 100 + extract(month FROM d))::numeric, 2)
FROM public.scenarios s,
     generate_series('2024-10-01'::date, '2026-03-01'::date, '1 month') AS d;

-- Materialized view over it (refreshed by the restore from the restored rows)
CREATE MATERIALIZED VIEW public.project_revenue AS
SELECT p.id AS project_id, p.name, sum(r.amount) AS revenue, count(*) AS lines
FROM public.projects p
JOIN public.scenarios s ON s.project_id = p.id
JOIN public.revenue_lines r ON r.scenario_id = s.id
GROUP BY p.id, p.name;
CREATE UNIQUE INDEX project_revenue_project_id_idx ON public.project_revenue (project_id);
REVOKE ALL ON public.project_revenue FROM anon, authenticated;
GRANT SELECT ON public.project_revenue TO service_role, fortress_app;

-- Large objects: exported scenario reports, referenced by oid, one with a comment and a grant
CREATE TABLE public.report_files (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    scenario_id bigint NOT NULL REFERENCES public.scenarios (id) ON DELETE CASCADE,
    content oid NOT NULL
);
INSERT INTO public.report_files (scenario_id, content)
SELECT s.id, lo_from_bytea(0, convert_to('report of scenario ' || s.title || repeat(' ·', s.id::int * 50), 'utf8'))
FROM public.scenarios s ORDER BY s.id LIMIT 3;
DO $lo$
DECLARE
  first oid := (SELECT content FROM public.report_files ORDER BY id LIMIT 1);
BEGIN
  EXECUTE format('COMMENT ON LARGE OBJECT %s IS %L', first, 'first report');
  EXECUTE format('GRANT SELECT ON LARGE OBJECT %s TO fortress_app', first);
END
$lo$;

-- Storage: a policy on buckets too
CREATE POLICY "Anyone lists public buckets" ON storage.buckets
    FOR SELECT TO anon, authenticated USING (public);
