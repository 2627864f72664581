"""Loading rows into tables that already have triggers and constraints, without side effects.

Used by data-only restores, by a full restore's platform data (auth.users keeps the platform's
triggers), and by the runbook's data files. Inside the restore's transaction:

- no trigger may fire (a `handle_new_user` trigger would insert profiles twice, a BEFORE trigger
  would rewrite `updated_at`, an AFTER TRUNCATE trigger would log the reset): with
  session_replication_role = replica ordinary triggers are silent, but ENABLE ALWAYS / ENABLE
  REPLICA ones still fire, so those are disabled by name; without replica mode, ordinary and
  ALWAYS ones are;
- rows that passed NOT VALID constraints at the source must load, so those constraints are set
  aside and re-added NOT VALID; without replica mode foreign keys would be checked row by row in
  an order pg_dump does not promise (and cycles could never load), so they are set aside too and
  re-added, validating everything at the end. Constraints declared on a partitioned parent are
  handled there, where they live.

What was set aside is read from the catalog at that moment (a runbook schema file may have just
created it) and kept in a temporary table, which survives the `RESET ALL` a `supabase db dump`
data file ends with; without the TEMP privilege, in a transaction-local setting instead. Every
trigger and constraint comes back exactly as it was (state, comment). The session's search_path
is left as it was.
"""

from __future__ import annotations

from collections.abc import Iterable

from .sqltext import do_block, literal


def start_sql(tables: Iterable[tuple[str, str]], *, replica: bool, temp_table: bool = True) -> str:
    pairs = list(tables)
    if not pairs:
        return ""
    values = ", ".join(f"({literal(s)}, {literal(t)})" for s, t in pairs)
    firing = "('A', 'R')" if replica else "('O', 'A')"
    foreign_keys = "" if replica else " OR k.contype = 'f'"
    keep = "CREATE TEMP TABLE fortress_quiet (state jsonb) ON COMMIT DROP;\n" if temp_table else ""
    return (
        keep
        + do_block(f"""
DECLARE
  r record;
  old_path text := pg_catalog.current_setting('search_path');
  saved jsonb := '{{"constraints": [], "triggers": []}}';
BEGIN
  PERFORM pg_catalog.set_config('search_path', '', true);  -- fully qualified definitions
  FOR r IN
    WITH listed AS (
      SELECT c.oid FROM (VALUES {values}) AS v(s, t)
      JOIN pg_catalog.pg_namespace n ON n.nspname = v.s
      JOIN pg_catalog.pg_class c ON c.relnamespace = n.oid AND c.relname = v.t),
    rels AS (SELECT oid FROM listed UNION SELECT a.relid FROM listed, pg_catalog.pg_partition_ancestors(listed.oid) AS a)
    SELECT n.nspname, c.relname, k.conname, pg_catalog.pg_get_constraintdef(k.oid) AS def,
           pg_catalog.obj_description(k.oid, 'pg_constraint') AS note
      FROM pg_catalog.pg_constraint k JOIN pg_catalog.pg_class c ON c.oid = k.conrelid
      JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
     WHERE k.conrelid IN (SELECT oid FROM rels) AND k.coninhcount = 0 AND k.conparentid = 0
       AND (NOT k.convalidated{foreign_keys})
  LOOP
    saved := pg_catalog.jsonb_set(saved, '{{constraints}}', saved->'constraints' ||
      pg_catalog.jsonb_build_object('s', r.nspname, 't', r.relname, 'n', r.conname, 'd', r.def, 'c', r.note));
    EXECUTE pg_catalog.format('ALTER TABLE %I.%I DROP CONSTRAINT %I', r.nspname, r.relname, r.conname);
  END LOOP;
  FOR r IN
    SELECT n.nspname, c.relname, g.tgname, g.tgenabled::text AS state
      FROM (VALUES {values}) AS v(s, t)
      JOIN pg_catalog.pg_namespace n ON n.nspname = v.s
      JOIN pg_catalog.pg_class c ON c.relnamespace = n.oid AND c.relname = v.t
      JOIN pg_catalog.pg_trigger g ON g.tgrelid = c.oid
     WHERE NOT g.tgisinternal AND g.tgenabled IN {firing}
  LOOP
    saved := pg_catalog.jsonb_set(saved, '{{triggers}}', saved->'triggers' ||
      pg_catalog.jsonb_build_object('s', r.nspname, 't', r.relname, 'n', r.tgname, 'e', r.state));
    EXECUTE pg_catalog.format('ALTER TABLE %I.%I DISABLE TRIGGER %I', r.nspname, r.relname, r.tgname);
  END LOOP;
  {"INSERT INTO pg_temp.fortress_quiet VALUES (saved);" if temp_table else "PERFORM pg_catalog.set_config('fortress.quiet', saved::text, true);"}
  PERFORM pg_catalog.set_config('search_path', old_path, true);
END""")
        + "\n"
        + ("SET session_replication_role = replica;\n" if replica else "")
    )


def end_sql(tables: Iterable[tuple[str, str]], *, replica: bool, temp_table: bool = True) -> str:
    if not list(tables):
        return ""
    source = "(SELECT state FROM pg_temp.fortress_quiet)" if temp_table else "NULLIF(pg_catalog.current_setting('fortress.quiet', true), '')::jsonb"
    return (
        ("SET session_replication_role = DEFAULT;\n" if replica else "")
        + do_block(
            """
DECLARE
  x jsonb;
  old_path text := pg_catalog.current_setting('search_path');
  saved jsonb := """
            + source
            + """;
BEGIN
  IF saved IS NULL THEN
    RAISE EXCEPTION 'the triggers and constraints set aside for the data load were lost (a RESET ALL in the data file?); nothing is kept';
  END IF;
  PERFORM pg_catalog.set_config('search_path', '', true);
  FOR x IN SELECT * FROM pg_catalog.jsonb_array_elements(saved->'constraints') LOOP
    EXECUTE pg_catalog.format('ALTER TABLE %I.%I ADD CONSTRAINT %I %s', x->>'s', x->>'t', x->>'n', x->>'d');
    IF x->>'c' IS NOT NULL THEN
      EXECUTE pg_catalog.format('COMMENT ON CONSTRAINT %I ON %I.%I IS %L', x->>'n', x->>'s', x->>'t', x->>'c');
    END IF;
  END LOOP;
  FOR x IN SELECT * FROM pg_catalog.jsonb_array_elements(saved->'triggers') LOOP
    EXECUTE pg_catalog.format('ALTER TABLE %I.%I %s TRIGGER %I', x->>'s', x->>'t',
      CASE x->>'e' WHEN 'A' THEN 'ENABLE ALWAYS' WHEN 'R' THEN 'ENABLE REPLICA' ELSE 'ENABLE' END, x->>'n');
  END LOOP;
  PERFORM pg_catalog.set_config('search_path', old_path, true);
END"""
        )
        + "\n"
        + ("DROP TABLE pg_temp.fortress_quiet;\n" if temp_table else "")
    )
