-- A HOSTED Supabase project's privilege model (the platform as of October 2026), on plain
-- PostgreSQL 15 or 17: the connecting role `postgres` is NOT a superuser and has, as exactly as
-- core PostgreSQL allows, the powers supautils and supabase/postgres's migrations give it.
--
-- Run as the bootstrap superuser `supabase_admin`, in a fresh project database, AFTER
-- tests/supabase/platform.sql and in the same transaction: that file supplies the shapes (roles,
-- auth/storage/realtime tables, extensions, publication, event trigger); this one replaces its
-- superuser-ish emulation (postgres as a member of supabase_auth_admin/supabase_storage_admin)
-- with hosted's grants. Roles are cluster-wide; every role statement here is re-runnable.
--
-- Written from facts read off the replica in /work/shared/hosted-supabase (supabase/postgres's
-- init scripts and migrations, supautils 2.5.0; 2024 and 2026 builds): pg_roles, pg_auth_members,
-- pg_namespace/pg_class/pg_proc ACLs, pg_default_acl, pg_init_privs, supautils.conf. Not copied.
--
-- What `postgres` has here (as on hosted):
--   NOSUPERUSER CREATEDB CREATEROLE REPLICATION BYPASSRLS; member of anon, authenticated,
--   service_role (WITH ADMIN OPTION on 16+), pg_read_all_data, pg_monitor, pg_signal_backend,
--   supabase_superuser, and duckdb_role WITH ADMIN OPTION; NOT a member of supabase_auth_admin,
--   supabase_storage_admin or supabase_realtime_admin. USAGE (no CREATE) on auth; USAGE WITH
--   GRANT OPTION (no CREATE) on storage and realtime; owner of schema `extensions` (replica fact);
--   arwdDxt on auth's tables but nothing on auth.schema_migrations; all privileges WITH GRANT
--   OPTION on storage.objects and storage.buckets, nothing on storage.migrations; X*/supabase_admin
--   on every function in `extensions` (the platform's default privileges), including the members
--   of pgcrypto and of a pgjwt-like set of functions, none of which has a pg_init_privs entry (so
--   pg_dump writes them as plain GRANTs: issue 7, failure 1); SET on session_replication_role;
--   EXECUTE on pg_reload_conf(). pg_cron, where the server has it, comes from
--   tests/supabase/hosted_pg_cron.sql (cron.job: SELECT only).
--
-- DEVIATIONS FROM THE REPLICA / A HOSTED PROJECT (plain PostgreSQL has no supautils):
--  * supautils.policy_grants + drop_trigger_grants (postgres may CREATE/ALTER/DROP POLICY and DROP
--    TRIGGER on auth.users, auth.identities, auth.sessions, auth.refresh_tokens,
--    auth.audit_log_entries, storage.objects, storage.buckets without owning them) are emulated by
--    OWNERSHIP: those seven tables belong to the stand-in role `supabase_policy_grants` (NOLOGIN,
--    made by supabase_admin, granted to postgres by supabase_admin) instead of
--    supabase_auth_admin / supabase_storage_admin; their ACL entries therefore name
--    supabase_policy_grants as grantor. Ownership gives more than supautils does, so the platform
--    event triggers `hosted_policy_grants_guard` (ddl_command_end) and
--    `hosted_policy_grants_drop_guard` (sql_drop), ENABLE ALWAYS (they also fire under
--    session_replication_role = replica), refuse for every non-superuser what hosted refuses with
--    "must be owner of table ...": any DDL on those tables or on anything attached to them except
--    CREATE POLICY, ALTER POLICY, CREATE TRIGGER, and dropping policies and triggers
--    (so ALTER TABLE auth.users ... (ENABLE ALWAYS TRIGGER, ENABLE RLS, ADD COLUMN), COMMENT ON
--    POLICY/TRIGGER/COLUMN, CREATE INDEX, CREATE RULE, ALTER TRIGGER, DROP TABLE, SECURITY
--    LABEL fail as on hosted). GRANT/REVOKE cannot be seen per object by an event trigger: the
--    guard compares the ACLs of the five auth tables with those frozen at project creation and
--    raises an ERROR where hosted gives "WARNING: no privileges were granted" and does nothing
--    (stricter, same end state: the grant is not made). On storage.objects/buckets postgres has
--    grant options on hosted too; grants it makes there are recorded with grantor
--    supabase_policy_grants instead of postgres, and a GRANT ... TO postgres WITH GRANT OPTION
--    there succeeds (a no-op) where hosted fails with "grant options cannot be granted back to your
--    own grantor". The stand-in also holds USAGE on auth and storage (foreign-key checks into
--    auth.users run as the referenced table's owner), visible in those schemas' ACLs. Not refused (no event trigger fires for them):
--    VACUUM, ANALYZE, CLUSTER, REINDEX of those tables. storage.migrations (in policy_grants on
--    hosted) is left out of the stand-in: owning it would let postgres write the platform's
--    migration history, which hosted refuses since April 2025.
--  * supautils.reserved_roles / reserved_memberships are not emulated for memberships: on 15,
--    CREATEROLE lets postgres GRANT/REVOKE memberships in any non-superuser role (also
--    supabase_auth_admin to itself) and ALTER/DROP them; on 17 core rules stop it except for roles it
--    holds ADMIN OPTION on (anon, authenticated, service_role, duckdb_role), where e.g.
--    `GRANT duckdb_role TO supabase_admin` succeeds (hosted: "supabase_admin is a reserved role").
--    Tests detect such replays by comparing pg_auth_members before and after.
--  * supautils.privileged_extensions: postgres can create only TRUSTED extensions itself (pgcrypto,
--    citext, pg_trgm, uuid-ossp ...; then owned by postgres, on hosted by supabase_admin) and never
--    pg_cron; tests enable pg_cron as supabase_admin (the dashboard's Extensions page).
--  * supautils.privileged_role_allowed_configs: only session_replication_role (GRANT SET ON
--    PARAMETER); no safeupdate (not preloaded for postgres/anon/authenticated), no pgaudit.*.
--  * The pgjwt-like functions are written here (not pgjwt's code) and made members of pgcrypto
--    with ALTER EXTENSION ADD (plain PostgreSQL cannot install the pgjwt extension without files in
--    the server's share directory); same names, signatures, owner, ACL and (absent) init privs.
--  * Not modelled: supabase_etl_admin's and authenticator's settings beyond platform.sql,
--    supabase_subscription_mgmt, pgsodium/vault, the issue_* event triggers (pg_cron's grants are
--    applied by hosted_pg_cron.sql instead), log_min_messages parameter ACL, pgsodium roles.
--  Everything platform.sql's header lists as left out (tables, pg_graphql, pooler, ...) still is.

-- ---------------------------------------------------------------------------------------------
-- Roles and memberships (cluster-wide)
-- ---------------------------------------------------------------------------------------------
ALTER ROLE postgres NOSUPERUSER CREATEDB CREATEROLE REPLICATION BYPASSRLS;
-- 20250421084701_revoke_admin_roles_from_postgres (platform.sql's pre-2025 stand-in undone)
REVOKE supabase_auth_admin, supabase_storage_admin, supabase_realtime_admin FROM postgres;
-- 20260821154147_revoke_createrole_from_auth_admin
ALTER ROLE supabase_auth_admin NOCREATEROLE;
-- 20240606060239_grant_predefined_roles_to_postgres and the image's pg_monitor grant
GRANT pg_read_all_data, pg_monitor, pg_signal_backend TO postgres;

DO $roles$
BEGIN
  -- 20251215120934_supabase_superuser (supabase_etl_admin is made by the image/platform.sh)
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'supabase_etl_admin') THEN
    CREATE ROLE supabase_etl_admin LOGIN REPLICATION BYPASSRLS;
  END IF;
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'supabase_superuser') THEN
    CREATE ROLE supabase_superuser;
    GRANT supabase_superuser TO postgres, supabase_etl_admin;
  END IF;
  -- 20260309201836_pg_duckdb_grants: a platform role postgres administers
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'duckdb_role') THEN
    CREATE ROLE duckdb_role;
    GRANT duckdb_role TO postgres WITH ADMIN OPTION;
    GRANT duckdb_role TO service_role, supabase_admin;
  END IF;
  -- Stand-in for supautils.policy_grants / drop_trigger_grants (see DEVIATIONS).
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'supabase_policy_grants') THEN
    CREATE ROLE supabase_policy_grants NOLOGIN NOINHERIT;
    GRANT supabase_policy_grants TO postgres;
  END IF;
END
$roles$;

-- supautils.privileged_role_allowed_configs: session_replication_role (platform.sql grants it;
-- repeated so this file states the whole model)
GRANT SET ON PARAMETER session_replication_role TO postgres;
-- 20251105172723_grant_pg_reload_conf_to_postgres
GRANT EXECUTE ON FUNCTION pg_catalog.pg_reload_conf() TO postgres;

-- ---------------------------------------------------------------------------------------------
-- Database
-- ---------------------------------------------------------------------------------------------
DO $db$
BEGIN
  -- 20251121141100_supabase_auth_admin_db_grants and realtime's
  EXECUTE format('GRANT CREATE ON DATABASE %I TO supabase_auth_admin, supabase_realtime_admin', current_database());
END
$db$;

-- ---------------------------------------------------------------------------------------------
-- Schemas
-- ---------------------------------------------------------------------------------------------
-- auth: USAGE only (20250421084701: no CREATE)
REVOKE CREATE ON SCHEMA auth FROM postgres;
GRANT USAGE ON SCHEMA auth TO postgres, supabase_realtime_admin;
-- storage: USAGE WITH GRANT OPTION, no CREATE (20250709135250)
REVOKE CREATE ON SCHEMA storage FROM postgres;
GRANT USAGE ON SCHEMA storage TO postgres WITH GRANT OPTION;
-- realtime: USAGE WITH GRANT OPTION (20260506172403), API roles USAGE
GRANT USAGE ON SCHEMA realtime TO postgres WITH GRANT OPTION;
GRANT USAGE ON SCHEMA realtime TO anon, authenticated, service_role;
GRANT USAGE, CREATE ON SCHEMA realtime TO supabase_realtime_admin WITH GRANT OPTION;
-- extensions: owned by postgres on the replica (made by the init scripts while postgres was
-- still the superuser); supabase_admin keeps no grant there
ALTER SCHEMA extensions OWNER TO postgres;
REVOKE ALL ON SCHEMA extensions FROM supabase_admin;
GRANT USAGE ON SCHEMA extensions TO supabase_realtime_admin;

-- ---------------------------------------------------------------------------------------------
-- pgjwt-like functions (written for this test platform; pgjwt's names and signatures), made
-- members of pgcrypto while their ACL is still NULL, so they get no pg_init_privs entry: on
-- hosted the members of pgjwt and pgcrypto have none either.
-- ---------------------------------------------------------------------------------------------
CREATE FUNCTION extensions.url_encode(data bytea) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
  SELECT rtrim(translate(encode(data, 'base64'), E'+/\n', '-_'), '=')
$$;

CREATE FUNCTION extensions.url_decode(data text) RETURNS bytea
LANGUAGE sql IMMUTABLE AS $$
  SELECT decode(t || repeat('=', (4 - length(t) % 4) % 4), 'base64')
  FROM (SELECT translate(data, '-_', '+/') AS t) AS s
$$;

CREATE FUNCTION extensions.algorithm_sign(signables text, secret text, algorithm text) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
  SELECT extensions.url_encode(extensions.hmac(signables, secret,
           CASE algorithm WHEN 'HS256' THEN 'sha256' WHEN 'HS384' THEN 'sha384'
                          WHEN 'HS512' THEN 'sha512' END))
$$;

CREATE FUNCTION extensions.sign(payload json, secret text, algorithm text DEFAULT 'HS256') RETURNS text
LANGUAGE sql IMMUTABLE AS $$
  SELECT s.signables || '.' || extensions.algorithm_sign(s.signables, secret, algorithm)
  FROM (SELECT extensions.url_encode(convert_to(json_build_object('alg', algorithm, 'typ', 'JWT')::text, 'utf8'))
               || '.' || extensions.url_encode(convert_to(payload::text, 'utf8')) AS signables) AS s
$$;

CREATE FUNCTION extensions.try_cast_double(inp text) RETURNS double precision
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
  RETURN inp::double precision;
EXCEPTION WHEN others THEN
  RETURN NULL;
END
$$;

CREATE FUNCTION extensions.verify(token text, secret text, algorithm text DEFAULT 'HS256')
RETURNS TABLE (header json, payload json, valid boolean)
LANGUAGE sql IMMUTABLE AS $$
  SELECT convert_from(extensions.url_decode(p[1]), 'utf8')::json,
         convert_from(extensions.url_decode(p[2]), 'utf8')::json,
         p[3] = extensions.algorithm_sign(p[1] || '.' || p[2], secret, algorithm)
  FROM (SELECT string_to_array(token, '.') AS p) AS parts
$$;

ALTER EXTENSION pgcrypto ADD FUNCTION extensions.url_encode(bytea);
ALTER EXTENSION pgcrypto ADD FUNCTION extensions.url_decode(text);
ALTER EXTENSION pgcrypto ADD FUNCTION extensions.algorithm_sign(text, text, text);
ALTER EXTENSION pgcrypto ADD FUNCTION extensions.sign(json, text, text);
ALTER EXTENSION pgcrypto ADD FUNCTION extensions.try_cast_double(text);
ALTER EXTENSION pgcrypto ADD FUNCTION extensions.verify(text, text, text);

-- ---------------------------------------------------------------------------------------------
-- Default privileges (pg_default_acl of the replica)
-- ---------------------------------------------------------------------------------------------
ALTER DEFAULT PRIVILEGES FOR ROLE supabase_admin IN SCHEMA extensions GRANT ALL ON TABLES    TO postgres WITH GRANT OPTION;
ALTER DEFAULT PRIVILEGES FOR ROLE supabase_admin IN SCHEMA extensions GRANT ALL ON SEQUENCES TO postgres WITH GRANT OPTION;
ALTER DEFAULT PRIVILEGES FOR ROLE supabase_admin IN SCHEMA extensions GRANT ALL ON FUNCTIONS TO postgres WITH GRANT OPTION;
ALTER DEFAULT PRIVILEGES FOR ROLE supabase_admin IN SCHEMA graphql_public GRANT ALL ON TABLES    TO postgres, anon, authenticated, service_role;
ALTER DEFAULT PRIVILEGES FOR ROLE supabase_admin IN SCHEMA graphql_public GRANT ALL ON SEQUENCES TO postgres, anon, authenticated, service_role;
ALTER DEFAULT PRIVILEGES FOR ROLE supabase_admin IN SCHEMA graphql_public GRANT ALL ON FUNCTIONS TO postgres, anon, authenticated, service_role;
ALTER DEFAULT PRIVILEGES FOR ROLE supabase_admin IN SCHEMA realtime GRANT ALL ON TABLES    TO postgres, dashboard_user;
ALTER DEFAULT PRIVILEGES FOR ROLE supabase_admin IN SCHEMA realtime GRANT ALL ON SEQUENCES TO postgres, dashboard_user;
ALTER DEFAULT PRIVILEGES FOR ROLE supabase_admin IN SCHEMA realtime GRANT ALL ON FUNCTIONS TO postgres, dashboard_user;
ALTER DEFAULT PRIVILEGES FOR ROLE supabase_auth_admin IN SCHEMA auth GRANT ALL ON TABLES    TO postgres, dashboard_user;
ALTER DEFAULT PRIVILEGES FOR ROLE supabase_auth_admin IN SCHEMA auth GRANT ALL ON SEQUENCES TO postgres, dashboard_user;
ALTER DEFAULT PRIVILEGES FOR ROLE supabase_auth_admin IN SCHEMA auth GRANT ALL ON FUNCTIONS TO postgres, dashboard_user;
-- storage: the replica's defaults are postgres's own (not supabase_admin's / storage admin's)
ALTER DEFAULT PRIVILEGES FOR ROLE supabase_admin IN SCHEMA storage REVOKE ALL ON TABLES    FROM postgres, anon, authenticated, service_role;
ALTER DEFAULT PRIVILEGES FOR ROLE supabase_admin IN SCHEMA storage REVOKE ALL ON FUNCTIONS FROM postgres, anon, authenticated, service_role;
ALTER DEFAULT PRIVILEGES FOR ROLE supabase_admin IN SCHEMA storage REVOKE ALL ON SEQUENCES FROM postgres, anon, authenticated, service_role;
ALTER DEFAULT PRIVILEGES FOR ROLE supabase_storage_admin IN SCHEMA storage REVOKE ALL ON TABLES    FROM postgres, anon, authenticated, service_role;
ALTER DEFAULT PRIVILEGES FOR ROLE supabase_storage_admin IN SCHEMA storage REVOKE ALL ON FUNCTIONS FROM postgres, anon, authenticated, service_role;
ALTER DEFAULT PRIVILEGES FOR ROLE supabase_storage_admin IN SCHEMA storage REVOKE ALL ON SEQUENCES FROM postgres, anon, authenticated, service_role;
ALTER DEFAULT PRIVILEGES FOR ROLE postgres IN SCHEMA storage GRANT ALL ON TABLES    TO postgres, anon, authenticated, service_role;
ALTER DEFAULT PRIVILEGES FOR ROLE postgres IN SCHEMA storage GRANT ALL ON FUNCTIONS TO postgres, anon, authenticated, service_role;
ALTER DEFAULT PRIVILEGES FOR ROLE postgres IN SCHEMA storage GRANT ALL ON SEQUENCES TO postgres, anon, authenticated, service_role;

-- What those default privileges gave everything supabase_admin created in `extensions` after
-- them on hosted (pgjwt, pgcrypto, pg_stat_statements members): X*/rwU*/arwdDxt* to postgres,
-- and the dashboard's grants. Granted outside any extension script: no pg_init_privs entry.
GRANT ALL ON ALL FUNCTIONS IN SCHEMA extensions TO postgres WITH GRANT OPTION;
GRANT ALL ON ALL TABLES IN SCHEMA extensions TO postgres WITH GRANT OPTION;
GRANT ALL ON ALL SEQUENCES IN SCHEMA extensions TO postgres WITH GRANT OPTION;
GRANT ALL ON ALL FUNCTIONS IN SCHEMA extensions TO dashboard_user;
GRANT ALL ON ALL TABLES IN SCHEMA extensions TO dashboard_user;

-- ---------------------------------------------------------------------------------------------
-- auth: arwdDxt on the tables (the image's demote-postgres grants), nothing on the migration
-- history (20250421084701), no EXECUTE of its own on auth's functions (PUBLIC has it)
-- ---------------------------------------------------------------------------------------------
REVOKE ALL ON TABLE auth.schema_migrations FROM postgres, dashboard_user;
REVOKE ALL ON ALL ROUTINES IN SCHEMA auth FROM postgres;
GRANT EXECUTE ON ALL ROUTINES IN SCHEMA auth TO dashboard_user;

-- ---------------------------------------------------------------------------------------------
-- storage: all privileges WITH GRANT OPTION on objects and buckets (20250623125453), nothing on
-- the migration history (20250421084701)
-- ---------------------------------------------------------------------------------------------
GRANT ALL ON storage.buckets, storage.objects TO postgres WITH GRANT OPTION;
REVOKE ALL ON TABLE storage.migrations FROM anon, authenticated, service_role, postgres;

-- ---------------------------------------------------------------------------------------------
-- Stand-in for supautils.policy_grants / drop_trigger_grants: ownership of exactly the tables
-- postgres may put policies and triggers on, narrowed by a guard (see DEVIATIONS).
-- ---------------------------------------------------------------------------------------------
-- (an owner needs USAGE on its schema: foreign-key checks run as the referenced table's owner)
GRANT USAGE ON SCHEMA auth, storage TO supabase_policy_grants;
ALTER TABLE auth.users OWNER TO supabase_policy_grants;
ALTER TABLE auth.identities OWNER TO supabase_policy_grants;
ALTER TABLE auth.sessions OWNER TO supabase_policy_grants;
ALTER TABLE auth.refresh_tokens OWNER TO supabase_policy_grants;
ALTER TABLE auth.audit_log_entries OWNER TO supabase_policy_grants;
ALTER TABLE storage.objects OWNER TO supabase_policy_grants;
ALTER TABLE storage.buckets OWNER TO supabase_policy_grants;

DO $guard$
DECLARE
  frozen jsonb;
BEGIN
  -- The auth tables' ACLs as the platform left them: postgres holds no grant option there, so on
  -- hosted nothing it GRANTs or REVOKEs changes them.
  SELECT jsonb_object_agg(format('%I.%I', n.nspname, c.relname), c.relacl::text) INTO frozen
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
  WHERE c.oid IN ('auth.users'::regclass, 'auth.identities'::regclass, 'auth.sessions'::regclass,
                  'auth.refresh_tokens'::regclass, 'auth.audit_log_entries'::regclass);

  EXECUTE format($fn$
    CREATE FUNCTION extensions.hosted_policy_grants_guard() RETURNS event_trigger
    LANGUAGE plpgsql SET search_path = '' AS $body$
    DECLARE
      cmd record;
      rel oid;
      frozen constant jsonb := %L;
      tbl text;
    BEGIN
      IF (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user) THEN
        RETURN;
      END IF;
      FOR cmd IN SELECT * FROM pg_catalog.pg_event_trigger_ddl_commands() LOOP
        IF cmd.command_tag IN ('GRANT', 'REVOKE') THEN
          FOR tbl IN SELECT jsonb_object_keys(frozen) LOOP
            IF (SELECT c.relacl::text FROM pg_catalog.pg_class c WHERE c.oid = tbl::regclass)
                 IS DISTINCT FROM frozen ->> tbl THEN
              RAISE EXCEPTION 'no privileges may be granted or revoked on %% by %%', tbl, current_user
                USING ERRCODE = '42501',
                      DETAIL = 'hosted Supabase: postgres holds no grant option there ("WARNING: no privileges were granted")';
            END IF;
          END LOOP;
          CONTINUE;
        END IF;
        IF cmd.command_tag IN ('CREATE POLICY', 'ALTER POLICY', 'CREATE TRIGGER') THEN
          CONTINUE;
        END IF;
        rel := CASE cmd.classid
          WHEN 'pg_catalog.pg_class'::regclass THEN
            coalesce((SELECT i.indrelid FROM pg_catalog.pg_index i WHERE i.indexrelid = cmd.objid), cmd.objid)
          WHEN 'pg_catalog.pg_trigger'::regclass THEN (SELECT t.tgrelid FROM pg_catalog.pg_trigger t WHERE t.oid = cmd.objid)
          WHEN 'pg_catalog.pg_policy'::regclass THEN (SELECT p.polrelid FROM pg_catalog.pg_policy p WHERE p.oid = cmd.objid)
          WHEN 'pg_catalog.pg_rewrite'::regclass THEN (SELECT r.ev_class FROM pg_catalog.pg_rewrite r WHERE r.oid = cmd.objid)
          WHEN 'pg_catalog.pg_constraint'::regclass THEN (SELECT c.conrelid FROM pg_catalog.pg_constraint c WHERE c.oid = cmd.objid)
          WHEN 'pg_catalog.pg_statistic_ext'::regclass THEN (SELECT s.stxrelid FROM pg_catalog.pg_statistic_ext s WHERE s.oid = cmd.objid)
          ELSE NULL END;
        IF rel IS NOT NULL AND (SELECT c.relowner FROM pg_catalog.pg_class c WHERE c.oid = rel)
             = 'supabase_policy_grants'::regrole THEN
          RAISE EXCEPTION 'must be owner of table %%', (SELECT c.relname FROM pg_catalog.pg_class c WHERE c.oid = rel)
            USING ERRCODE = '42501',
                  DETAIL = format('hosted Supabase lets %%s only create, alter and drop policies and triggers on %%s (%%s)',
                                  current_user, rel::regclass, cmd.command_tag);
        END IF;
      END LOOP;
    END
    $body$ $fn$, frozen::text);
END
$guard$;

CREATE FUNCTION extensions.hosted_policy_grants_drop_guard() RETURNS event_trigger
LANGUAGE plpgsql SET search_path = '' AS $$
DECLARE
  obj record;
BEGIN
  IF (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user) THEN
    RETURN;
  END IF;
  FOR obj IN SELECT * FROM pg_catalog.pg_event_trigger_dropped_objects() LOOP
    -- policies and triggers on those tables may be dropped (drop_trigger_grants, policy_grants);
    -- nothing else in auth/storage (the catalog rows are gone here: judged by schema)
    IF obj.object_type NOT IN ('policy', 'trigger') AND obj.schema_name IN ('auth', 'storage') THEN
      RAISE EXCEPTION 'must be owner of %', obj.object_identity
        USING ERRCODE = '42501',
              DETAIL = format('hosted Supabase lets %s only drop policies and triggers in schema %s', current_user, obj.schema_name);
    END IF;
  END LOOP;
END
$$;

REVOKE ALL ON FUNCTION extensions.hosted_policy_grants_guard() FROM PUBLIC, postgres, dashboard_user;
REVOKE ALL ON FUNCTION extensions.hosted_policy_grants_drop_guard() FROM PUBLIC, postgres, dashboard_user;
CREATE EVENT TRIGGER hosted_policy_grants_guard ON ddl_command_end
  EXECUTE FUNCTION extensions.hosted_policy_grants_guard();
CREATE EVENT TRIGGER hosted_policy_grants_drop_guard ON sql_drop
  EXECUTE FUNCTION extensions.hosted_policy_grants_drop_guard();
ALTER EVENT TRIGGER hosted_policy_grants_guard ENABLE ALWAYS;
ALTER EVENT TRIGGER hosted_policy_grants_drop_guard ENABLE ALWAYS;
