-- pg_cron enabled in a hosted project, as the dashboard's Extensions page does it: supautils
-- creates the privileged extension as supabase_admin (in pg_catalog: its
-- extensions_parameter_overrides), then the platform's after-create script and the
-- issue_pg_cron_access event trigger grant `postgres` what it has on hosted. Run as
-- supabase_admin in the database named by cron.database_name (`postgres`), after hosted.sql.
-- Written from the replica's catalogs (pg_namespace, pg_class, pg_proc ACLs, pg_default_acl after
-- `create extension pg_cron`), not copied.
--
-- Deviation: TRIGGER on cron.job_run_details is revoked from postgres, as migration
-- 20260730000000_revoke_trigger_on_cron_tables_from_postgres intends; the 2026 replica still
-- shows it because its (2024) after-create script re-grants ALL after the event trigger ran.

CREATE EXTENSION pg_cron WITH SCHEMA pg_catalog;

GRANT USAGE ON SCHEMA cron TO postgres WITH GRANT OPTION;
GRANT ALL ON ALL FUNCTIONS IN SCHEMA cron TO postgres WITH GRANT OPTION;
ALTER DEFAULT PRIVILEGES FOR ROLE supabase_admin IN SCHEMA cron GRANT ALL ON SEQUENCES TO postgres WITH GRANT OPTION;
ALTER DEFAULT PRIVILEGES FOR ROLE supabase_admin IN SCHEMA cron GRANT ALL ON TABLES    TO postgres WITH GRANT OPTION;
ALTER DEFAULT PRIVILEGES FOR ROLE supabase_admin IN SCHEMA cron GRANT ALL ON FUNCTIONS TO postgres WITH GRANT OPTION;
GRANT ALL ON ALL TABLES IN SCHEMA cron TO postgres WITH GRANT OPTION;
-- jobs are written only through cron.schedule(), schedule_in_database(), alter_job(), unschedule()
REVOKE ALL ON TABLE cron.job FROM postgres;
GRANT SELECT ON TABLE cron.job TO postgres WITH GRANT OPTION;
REVOKE TRIGGER ON cron.job_run_details FROM postgres;
