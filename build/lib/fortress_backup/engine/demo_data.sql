-- A small Fortress Modeler: users, projects, financial models, scenarios and line items.
-- Loaded into a throwaway database by `invoke demo`.
CREATE ROLE fortress_analyst NOLOGIN;
CREATE SCHEMA app;

CREATE TABLE app.users (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    email text NOT NULL UNIQUE,
    display_name text,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE app.projects (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    owner_id uuid NOT NULL REFERENCES app.users(id),
    name text NOT NULL,
    currency char(3) NOT NULL DEFAULT 'GBP',
    settings jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE app.models (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    project_id bigint NOT NULL REFERENCES app.projects(id) ON DELETE CASCADE,
    name text NOT NULL,
    horizon_months int NOT NULL CHECK (horizon_months BETWEEN 1 AND 240),
    tags text[] NOT NULL DEFAULT '{}'
);

CREATE TABLE app.scenarios (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    model_id bigint NOT NULL REFERENCES app.models(id) ON DELETE CASCADE,
    name text NOT NULL,
    growth_rate numeric(7,4) NOT NULL,
    is_base boolean NOT NULL DEFAULT false
);

CREATE TABLE app.line_items (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    scenario_id bigint NOT NULL REFERENCES app.scenarios(id) ON DELETE CASCADE,
    category text NOT NULL CHECK (category IN ('revenue','cost','capex')),
    label text NOT NULL,
    month date NOT NULL,
    amount numeric(14,2) NOT NULL
);
CREATE INDEX line_items_scenario_month ON app.line_items (scenario_id, month);

-- Keeps projects.updated_at fresh: it must NOT fire while a restore loads rows.
CREATE FUNCTION app.touch_project() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE app.projects SET updated_at = now() WHERE id = (SELECT m.project_id FROM app.models m WHERE m.id = NEW.model_id);
    RETURN NEW;
END $$;
CREATE TRIGGER scenarios_touch_project AFTER INSERT ON app.scenarios FOR EACH ROW EXECUTE FUNCTION app.touch_project();

CREATE VIEW app.project_totals AS
    SELECT p.id AS project_id, p.name, sum(li.amount) FILTER (WHERE li.category = 'revenue') AS revenue,
           sum(li.amount) FILTER (WHERE li.category <> 'revenue') AS costs
    FROM app.projects p JOIN app.models m ON m.project_id = p.id
    JOIN app.scenarios s ON s.model_id = m.id AND s.is_base JOIN app.line_items li ON li.scenario_id = s.id
    GROUP BY p.id, p.name;

GRANT USAGE ON SCHEMA app TO fortress_analyst;
GRANT SELECT ON ALL TABLES IN SCHEMA app TO fortress_analyst;

INSERT INTO app.users (id, email, display_name, created_at) VALUES
    ('9f1c2a4e-0000-4000-8000-000000000001', 'ada@fortress.test', 'Ada Lovelace', '2026-01-05 09:00:00+00'),
    ('9f1c2a4e-0000-4000-8000-000000000002', 'grace@fortress.test', 'Grace Hopper', '2026-02-11 14:30:00+00'),
    ('9f1c2a4e-0000-4000-8000-000000000003', 'zoë@fortress.test', 'Zoë Ünïcode', '2026-03-01 08:15:00+00'),
    ('9f1c2a4e-0000-4000-8000-000000000004', 'ops@fortress.test', NULL, '2026-03-02 10:00:00+00');

INSERT INTO app.projects (owner_id, name, currency, settings, created_at, updated_at)
SELECT u.id, p.name, p.cur, p.settings::jsonb, '2026-04-01 00:00:00+00', '2026-04-01 00:00:00+00'
FROM (VALUES
    ('ada@fortress.test', 'Analytical Engine Ltd', 'GBP', '{"fiscal_year_start": 4, "vat": 0.2}'),
    ('grace@fortress.test', 'COBOL Consulting', 'USD', '{"fiscal_year_start": 1}'),
    ('zoë@fortress.test', 'Café Ünïcorn', 'EUR', '{"notes": "naïve façade ☕"}')
) AS p(email, name, cur, settings) JOIN app.users u ON u.email = p.email;

INSERT INTO app.models (project_id, name, horizon_months, tags)
SELECT p.id, m.name, m.horizon, m.tags FROM app.projects p
CROSS JOIN (VALUES ('Operating plan', 36, ARRAY['plan','board']), ('Fundraise', 24, ARRAY['seed']::text[])) AS m(name, horizon, tags);

INSERT INTO app.scenarios (model_id, name, growth_rate, is_base)
SELECT m.id, s.name, s.rate, s.base FROM app.models m
CROSS JOIN (VALUES ('Base', 0.0350, true), ('Bull', 0.0800, false), ('Bear', -0.0200, false)) AS s(name, rate, base);

INSERT INTO app.line_items (scenario_id, category, label, month, amount)
SELECT s.id, c.category, c.label, (date '2026-01-01' + make_interval(months => g))::date,
       round((c.base * power(1 + s.growth_rate, g))::numeric, 2)
FROM app.scenarios s
CROSS JOIN (VALUES ('revenue', 'Subscriptions', 12000.0), ('cost', 'Salaries', 8000.0), ('capex', 'Servers', 1500.0)) AS c(category, label, base)
CROSS JOIN generate_series(0, 23) AS g;
