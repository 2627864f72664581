-- An app built on tests/supabase/platform.sql, the way a Supabase user builds one: everything
-- below runs as `postgres` (not a superuser), in one transaction, in a project database.
--
-- What a backup/restore tool has to carry, and where Supabase's own tooling is known to drop it:
--   * custom roles fortress_app (NOLOGIN) and fortress_reporter (LOGIN, with a password that must
--     NOT travel) + a membership and a role setting;
--   * app tables in public with RLS policies using auth.uid(), FKs into auth.users, an identity
--     column, grants to anon/authenticated/fortress_app;
--   * a trigger ON auth.users (platform table) calling a SECURITY DEFINER function in public;
--   * policies ON storage.objects (platform table), bucket and object rows;
--   * a table added to the platform's supabase_realtime publication;
--   * the CLI's migration history in supabase_migrations;
--   * auth users/identities/sessions/refresh_tokens, projects, scenarios (unicode, jsonb, NULLs).
-- Loadable into several databases of one cluster (roles are created only if missing).

-- ---------------------------------------------------------------------------------------------
-- Custom roles
-- ---------------------------------------------------------------------------------------------
DO $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'fortress_app') THEN
    CREATE ROLE fortress_app NOLOGIN;
  END IF;
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'fortress_reporter') THEN
    CREATE ROLE fortress_reporter LOGIN PASSWORD 'reporter-Secret-4711' CONNECTION LIMIT 3;
  END IF;
END
$$;
GRANT fortress_app TO fortress_reporter;
ALTER ROLE fortress_reporter SET statement_timeout = '30s';
COMMENT ON ROLE fortress_app IS 'Fortress Modeler back office (read-only)';

-- ---------------------------------------------------------------------------------------------
-- Migration history, as the Supabase CLI keeps it
-- ---------------------------------------------------------------------------------------------
CREATE SCHEMA IF NOT EXISTS supabase_migrations;
CREATE TABLE IF NOT EXISTS supabase_migrations.schema_migrations (
    version text NOT NULL PRIMARY KEY,
    statements text[],
    name text
);
INSERT INTO supabase_migrations.schema_migrations (version, statements, name) VALUES
  ('20240301100000',
   ARRAY['create table public.profiles (id uuid primary key references auth.users on delete cascade, display_name text, created_at timestamptz not null default now())',
         'alter table public.profiles enable row level security'],
   'profiles'),
  ('20240315120000',
   ARRAY['create table public.projects (id uuid primary key default gen_random_uuid(), owner_id uuid not null default auth.uid() references auth.users on delete cascade, name text not null)',
         'create table public.scenarios (id bigint generated always as identity primary key, project_id uuid not null references public.projects on delete cascade, title text not null)',
         E'-- a statement with a comment line\nalter publication supabase_realtime add table public.projects'],
   'projects_and_scenarios');

-- ---------------------------------------------------------------------------------------------
-- App schema (public)
-- ---------------------------------------------------------------------------------------------
CREATE TABLE public.profiles (
    id uuid PRIMARY KEY REFERENCES auth.users (id) ON DELETE CASCADE,
    display_name text,
    created_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE public.profiles IS 'One row per auth user, made by on_auth_user_created';

CREATE TABLE public.projects (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    owner_id uuid NOT NULL DEFAULT auth.uid() REFERENCES auth.users (id) ON DELETE CASCADE,
    name text NOT NULL,
    settings jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX projects_owner_id_idx ON public.projects (owner_id);

CREATE TABLE public.scenarios (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    project_id uuid NOT NULL REFERENCES public.projects (id) ON DELETE CASCADE,
    title text NOT NULL,
    assumptions jsonb,
    revenue numeric(14, 2),
    notes text,
    tags text[],
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX scenarios_project_id_idx ON public.scenarios (project_id);

ALTER TABLE public.profiles ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.projects ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.scenarios ENABLE ROW LEVEL SECURITY;

CREATE POLICY "Profiles are viewable by everyone" ON public.profiles
    FOR SELECT TO anon, authenticated USING (true);
CREATE POLICY "Users update own profile" ON public.profiles
    FOR UPDATE TO authenticated
    USING ((SELECT auth.uid()) = id) WITH CHECK ((SELECT auth.uid()) = id);
CREATE POLICY "Owners read own projects" ON public.projects
    FOR SELECT TO authenticated USING (owner_id = (SELECT auth.uid()));
CREATE POLICY "Owners write own projects" ON public.projects
    FOR ALL TO authenticated
    USING (owner_id = (SELECT auth.uid())) WITH CHECK (owner_id = (SELECT auth.uid()));
CREATE POLICY "Scenarios follow their project" ON public.scenarios
    FOR ALL TO authenticated
    USING (EXISTS (SELECT 1 FROM public.projects p
                   WHERE p.id = scenarios.project_id AND p.owner_id = (SELECT auth.uid())));
CREATE POLICY "Back office reads scenarios" ON public.scenarios
    FOR SELECT TO fortress_app USING (true);

-- Default privileges (platform) already gave anon/authenticated/service_role ALL; narrow anon.
REVOKE ALL ON public.scenarios FROM anon;
REVOKE INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER ON public.profiles, public.projects FROM anon;
GRANT SELECT ON public.profiles TO anon;
GRANT SELECT, INSERT, UPDATE, DELETE ON public.profiles, public.projects, public.scenarios TO authenticated;
GRANT SELECT ON public.profiles, public.projects, public.scenarios TO fortress_app;
GRANT USAGE ON SCHEMA public TO fortress_app;

-- New auth user -> profile. Lives in public, fires from auth (a platform schema).
CREATE FUNCTION public.handle_new_user() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = '' AS $$
BEGIN
  INSERT INTO public.profiles (id, display_name)
  VALUES (NEW.id, NEW.raw_user_meta_data ->> 'display_name');
  RETURN NEW;
END
$$;
REVOKE EXECUTE ON FUNCTION public.handle_new_user() FROM anon, authenticated;
CREATE TRIGGER on_auth_user_created
    AFTER INSERT ON auth.users
    FOR EACH ROW EXECUTE FUNCTION public.handle_new_user();

-- ---------------------------------------------------------------------------------------------
-- Storage: buckets are rows; access rules are policies on the platform's storage.objects
-- ---------------------------------------------------------------------------------------------
INSERT INTO storage.buckets (id, name, public, file_size_limit, allowed_mime_types) VALUES
  ('avatars', 'avatars', true, 1048576, ARRAY['image/png', 'image/jpeg']),
  ('reports', 'reports', false, NULL, NULL);

CREATE POLICY "Avatars are public" ON storage.objects
    FOR SELECT TO anon, authenticated USING (bucket_id = 'avatars');
CREATE POLICY "Users read own files" ON storage.objects
    FOR SELECT TO authenticated
    USING (bucket_id = 'reports' AND owner_id = ((SELECT auth.uid()))::text);
CREATE POLICY "Users upload to own folder" ON storage.objects
    FOR INSERT TO authenticated
    WITH CHECK (bucket_id = 'reports' AND (storage.foldername(name))[1] = ((SELECT auth.uid()))::text);

-- Realtime
ALTER PUBLICATION supabase_realtime ADD TABLE public.projects;

-- ---------------------------------------------------------------------------------------------
-- Data
-- ---------------------------------------------------------------------------------------------
INSERT INTO auth.users (instance_id, id, aud, role, email, encrypted_password, email_confirmed_at,
                        phone, phone_confirmed_at, raw_app_meta_data, raw_user_meta_data,
                        created_at, updated_at, last_sign_in_at,
                        confirmation_token, recovery_token, email_change_token_new, email_change)
VALUES
  ('00000000-0000-0000-0000-000000000000', '11111111-1111-4111-8111-111111111111',
   'authenticated', 'authenticated', 'alice@example.com',
   extensions.crypt('alice-password', extensions.gen_salt('bf', 4)), '2024-03-01 10:00:00+00',
   NULL, NULL, '{"provider": "email", "providers": ["email"]}',
   '{"display_name": "Alice"}',
   '2024-03-01 10:00:00+00', '2024-03-01 10:00:00+00', '2024-03-10 08:30:00+00', '', '', '', ''),
  ('00000000-0000-0000-0000-000000000000', '22222222-2222-4222-8222-222222222222',
   'authenticated', 'authenticated', 'zoe@example.com',
   extensions.crypt('zoe-password', extensions.gen_salt('bf', 4)), '2024-03-02 11:00:00+00',
   '15550002', '2024-03-02 11:05:00+00', '{"provider": "email", "providers": ["email", "github"]}',
   '{"display_name": "Zoë Ångström 🚀 \"Z\"", "langs": ["sv", "日本語"]}',
   '2024-03-02 11:00:00+00', '2024-03-05 12:00:00+00', NULL, '', '', '', ''),
  ('00000000-0000-0000-0000-000000000000', '33333333-3333-4333-8333-333333333333',
   'authenticated', 'authenticated', 'carol@example.com',
   NULL, NULL,
   '15550003', '2024-03-03 09:00:00+00', '{"provider": "phone", "providers": ["phone"]}',
   NULL,
   '2024-03-03 09:00:00+00', '2024-03-03 09:00:00+00', NULL, '', '', '', '');

INSERT INTO auth.identities (id, provider_id, user_id, identity_data, provider, last_sign_in_at, created_at, updated_at)
VALUES
  ('a1111111-0000-4000-8000-000000000001', '11111111-1111-4111-8111-111111111111',
   '11111111-1111-4111-8111-111111111111',
   '{"sub": "11111111-1111-4111-8111-111111111111", "email": "Alice@Example.com", "email_verified": true}',
   'email', '2024-03-10 08:30:00+00', '2024-03-01 10:00:00+00', '2024-03-01 10:00:00+00'),
  ('a2222222-0000-4000-8000-000000000002', '22222222-2222-4222-8222-222222222222',
   '22222222-2222-4222-8222-222222222222',
   '{"sub": "22222222-2222-4222-8222-222222222222", "email": "zoe@example.com", "email_verified": true}',
   'email', NULL, '2024-03-02 11:00:00+00', '2024-03-02 11:00:00+00'),
  ('a2222222-0000-4000-8000-000000000003', '9876543',
   '22222222-2222-4222-8222-222222222222',
   '{"sub": "9876543", "email": "zoe@users.noreply.github.com", "user_name": "zöe", "avatar_url": null}',
   'github', '2024-03-05 12:00:00+00', '2024-03-05 12:00:00+00', '2024-03-05 12:00:00+00'),
  ('a3333333-0000-4000-8000-000000000004', '33333333-3333-4333-8333-333333333333',
   '33333333-3333-4333-8333-333333333333',
   '{"sub": "33333333-3333-4333-8333-333333333333", "phone": "15550003"}',
   'phone', NULL, '2024-03-03 09:00:00+00', '2024-03-03 09:00:00+00');

INSERT INTO auth.sessions (id, user_id, created_at, updated_at, aal, user_agent, ip)
VALUES ('5e551011-0000-4000-8000-000000000001', '11111111-1111-4111-8111-111111111111',
        '2024-03-10 08:30:00+00', '2024-03-10 08:30:00+00', 'aal1', 'Mozilla/5.0 (X11)', '203.0.113.7');
INSERT INTO auth.refresh_tokens (instance_id, token, user_id, revoked, created_at, updated_at, parent, session_id)
VALUES
  ('00000000-0000-0000-0000-000000000000', 'rt-alice-1', '11111111-1111-4111-8111-111111111111', true,
   '2024-03-10 08:30:00+00', '2024-03-10 09:30:00+00', NULL, '5e551011-0000-4000-8000-000000000001'),
  ('00000000-0000-0000-0000-000000000000', 'rt-alice-2', '11111111-1111-4111-8111-111111111111', false,
   '2024-03-10 09:30:00+00', '2024-03-10 09:30:00+00', 'rt-alice-1', '5e551011-0000-4000-8000-000000000001');
INSERT INTO auth.audit_log_entries (instance_id, id, payload, created_at, ip_address)
VALUES ('00000000-0000-0000-0000-000000000000', 'a0d17000-0000-4000-8000-000000000001',
        '{"action": "login", "actor_id": "11111111-1111-4111-8111-111111111111"}',
        '2024-03-10 08:30:00+00', '203.0.113.7');

INSERT INTO public.projects (id, owner_id, name, settings, created_at) VALUES
  ('b0000000-0000-4000-8000-000000000001', '11111111-1111-4111-8111-111111111111',
   'Fortress North', '{"currency": "EUR", "horizon_months": 36}', '2024-03-04 10:00:00+00'),
  ('b0000000-0000-4000-8000-000000000002', '11111111-1111-4111-8111-111111111111',
   'Fortress Süd — 南', '{}', '2024-03-05 10:00:00+00'),
  ('b0000000-0000-4000-8000-000000000003', '22222222-2222-4222-8222-222222222222',
   'Zoë''s "tower"', '{"currency": "SEK", "flags": [true, false, null]}', '2024-03-06 10:00:00+00');
-- owner_id from the column default auth.uid(), as PostgREST requests would fill it
SELECT set_config('request.jwt.claims', '{"sub": "33333333-3333-4333-8333-333333333333", "role": "authenticated"}', true);
INSERT INTO public.projects (id, name, created_at)
VALUES ('b0000000-0000-4000-8000-000000000004', 'Carol''s keep', '2024-03-07 10:00:00+00');
SELECT set_config('request.jwt.claims', '', true);

INSERT INTO public.scenarios (project_id, title, assumptions, revenue, notes, tags, created_at) VALUES
  ('b0000000-0000-4000-8000-000000000001', 'Base case',
   '{"growth": 0.05, "months": [1, 2, 3], "nested": {"a": null, "b": [{}]}}', 12345.67,
   NULL, ARRAY['base'], '2024-03-04 11:00:00+00'),
  ('b0000000-0000-4000-8000-000000000001', 'Überoptimistisch — 楽観的 ✨',
   '{"growth": 0.5, "label": "naïve \"quoted\" \\ backslash"}', NULL,
   E'line one\nline two\twith tab and a \\ backslash', ARRAY['a,b', 'c"d', NULL], '2024-03-04 12:00:00+00'),
  ('b0000000-0000-4000-8000-000000000002', 'Empty things', NULL, 0,
   '', '{}', '2024-03-05 11:00:00+00'),
  ('b0000000-0000-4000-8000-000000000003', 'Zoë''s plan', 'null', -99999999.99,
   'emoji 🏰 and RTL שלום', NULL, '2024-03-06 11:00:00+00'),
  ('b0000000-0000-4000-8000-000000000004', 'Carol''s only scenario', '[1, "two", 3.0]', 1.5,
   NULL, ARRAY[]::text[], '2024-03-07 11:00:00+00');

INSERT INTO storage.objects (id, bucket_id, name, owner, owner_id, created_at, updated_at,
                             last_accessed_at, metadata, user_metadata, version) VALUES
  ('c0000000-0000-4000-8000-000000000001', 'avatars', '11111111-1111-4111-8111-111111111111/avatar.png',
   '11111111-1111-4111-8111-111111111111', '11111111-1111-4111-8111-111111111111',
   '2024-03-04 10:00:00+00', '2024-03-04 10:00:00+00', '2024-03-04 10:00:00+00',
   '{"size": 2048, "mimetype": "image/png", "eTag": "\"d41d8cd98f00b204e9800998ecf8427e\""}', NULL, 'v1'),
  ('c0000000-0000-4000-8000-000000000002', 'reports', '11111111-1111-4111-8111-111111111111/Q1 report – ünïcode.pdf',
   '11111111-1111-4111-8111-111111111111', '11111111-1111-4111-8111-111111111111',
   '2024-03-05 10:00:00+00', '2024-03-05 10:00:00+00', NULL,
   '{"size": 734003, "mimetype": "application/pdf"}', '{"label": "Quartal 1"}', 'v2'),
  ('c0000000-0000-4000-8000-000000000003', 'reports', '22222222-2222-4222-8222-222222222222/notes/2024/summary.pdf',
   NULL, '22222222-2222-4222-8222-222222222222',
   '2024-03-06 10:00:00+00', '2024-03-06 10:00:00+00', NULL,
   '{"size": 1, "mimetype": "application/pdf"}', NULL, NULL);
