"""Loading rows into tables that already have triggers and constraints, without side effects.

Used by data-only restores, by a full restore's platform data (auth.users keeps the platform's
triggers), and by the runbook's data files. Inside the restore's transaction:

- no user trigger may fire (a `handle_new_user` trigger would insert profiles twice, a BEFORE
  trigger would rewrite `updated_at`): with session_replication_role = replica ordinary
  triggers are silent, but ENABLE ALWAYS / ENABLE REPLICA ones still fire, so those are disabled
  by name; without replica mode, ordinary and ALWAYS triggers are;
- rows that passed NOT VALID constraints at the source must load, so those constraints are set
  aside and re-added NOT VALID; without replica mode foreign keys would also be checked row by
  row in an order pg_dump does not promise (and cycles could never load), so they are set aside
  too and re-added, validating everything at the end.

Everything is read from the catalog at that moment in the transaction (a runbook schema file may
have just created the triggers) into temporary tables, and every trigger and constraint comes
back exactly as it was: disabled triggers stay disabled, ALWAYS stays ALWAYS.
"""

from __future__ import annotations

from typing import Iterable


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def start_sql(tables: Iterable[tuple[str, str]], *, replica: bool) -> str:
    pairs = list(tables)
    if not pairs:
        return ""
    values = ", ".join(f"({_literal(s)}, {_literal(t)})" for s, t in pairs)
    firing = "('A', 'R')" if replica else "('O', 'A')"
    foreign_keys = "" if replica else " OR k.contype = 'f'"
    return f"""SELECT pg_catalog.set_config('search_path', '', false);
CREATE TEMP TABLE fortress_quiet_tables ON COMMIT DROP AS
  SELECT pg_catalog.to_regclass(pg_catalog.format('%I.%I', s, t)) AS rel FROM (VALUES {values}) AS v(s, t);
CREATE TEMP TABLE fortress_quiet_triggers ON COMMIT DROP AS
  SELECT g.tgrelid::pg_catalog.regclass AS rel, g.tgname, g.tgenabled FROM pg_catalog.pg_trigger g
   WHERE NOT g.tgisinternal AND g.tgenabled IN {firing} AND g.tgrelid IN (SELECT rel FROM fortress_quiet_tables);
CREATE TEMP TABLE fortress_quiet_constraints ON COMMIT DROP AS
  SELECT k.conrelid::pg_catalog.regclass AS rel, k.conname, pg_catalog.pg_get_constraintdef(k.oid) AS def
    FROM pg_catalog.pg_constraint k
   WHERE k.conrelid IN (SELECT rel FROM fortress_quiet_tables) AND k.coninhcount = 0 AND k.conparentid = 0
     AND (NOT k.convalidated{foreign_keys});
DO $fortress_quiet$ DECLARE r record; BEGIN
  FOR r IN SELECT * FROM fortress_quiet_triggers LOOP
    EXECUTE pg_catalog.format('ALTER TABLE %s DISABLE TRIGGER %I', r.rel, r.tgname);
  END LOOP;
  FOR r IN SELECT * FROM fortress_quiet_constraints LOOP
    EXECUTE pg_catalog.format('ALTER TABLE %s DROP CONSTRAINT %I', r.rel, r.conname);
  END LOOP;
END $fortress_quiet$;
""" + ("SET session_replication_role = replica;\n" if replica else "")


def end_sql(tables: Iterable[tuple[str, str]], *, replica: bool) -> str:
    if not list(tables):
        return ""
    return ("SET session_replication_role = DEFAULT;\n" if replica else "") + """SELECT pg_catalog.set_config('search_path', '', false);
DO $fortress_quiet$ DECLARE r record; BEGIN
  FOR r IN SELECT * FROM fortress_quiet_constraints LOOP
    EXECUTE pg_catalog.format('ALTER TABLE %s ADD CONSTRAINT %I %s', r.rel, r.conname, r.def);
  END LOOP;
  FOR r IN SELECT * FROM fortress_quiet_triggers LOOP
    EXECUTE pg_catalog.format('ALTER TABLE %s %s TRIGGER %I', r.rel,
      CASE r.tgenabled WHEN 'A' THEN 'ENABLE ALWAYS' WHEN 'R' THEN 'ENABLE REPLICA' ELSE 'ENABLE' END, r.tgname);
  END LOOP;
END $fortress_quiet$;
DROP TABLE fortress_quiet_tables, fortress_quiet_triggers, fortress_quiet_constraints;
"""
