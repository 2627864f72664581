"""Planning a restore: gather facts about the backup and the target, decide with a pure function,
freeze the plan. The plan shown to the person is the plan executed: nothing is decided later.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from .. import additions, catalog, dbinfo, pgtools, quiet, reach, roles, sqltext, toc, undo
from .. import manifest as manifest_mod
from ..catalog import Backup
from ..conn import Target
from ..errors import RestoreFailed, UsageError
from ..platform import Platform, by_name, detect
from ..storage import Store
from . import statements

Step = Callable[[str], None]
MODES = ("full", "schema", "data")


@dataclass(frozen=True)
class RestorePlan:
    backup: Backup
    target: Target
    mode: str  # full | schema | data
    server: dbinfo.ServerInfo
    platform: Platform
    suite: pgtools.PgSuite
    authenticity: manifest_mod.Authenticity
    checked_files: tuple[str, ...] = ()
    # the backup's files, opened once when their checksums were checked (catalog.pin); the
    # restore reads only these, so a file swapped in the folder after the check is never used
    pinned: dict[str, int] = field(default_factory=dict)
    pinned_stamps: dict[str, tuple[int, int, int]] = field(default_factory=dict)
    drop_schemas: tuple[tuple[str, int], ...] = ()  # (schema, tables in it)
    app_objects: int = 0  # objects of any kind (functions, views, sequences, types ...) in the app's schemas now
    namespace_objects: int = 0  # every object that depends on one of those schemas (statements.NAMESPACE_OBJECTS)
    drop_publications: tuple[str, ...] = ()
    drop_additions: tuple[str, ...] = ()  # labels, for the plan shown
    truncate_tables: tuple[tuple[str, str], ...] = ()  # (schema, table)
    platform_tables: tuple[tuple[str, str], ...] = ()  # emptied, then loaded
    large_objects: int = 0
    replica_mode: bool = False
    temp_ok: bool = True  # may create temporary tables (where quiet loads keep their notes)
    roles: roles.RolePlan = field(default_factory=roles.RolePlan)
    warnings: tuple[str, ...] = ()
    checks: tuple[tuple[str, str, int], ...] = ()  # (schema, table, rows)
    reset_sql: str = ""
    # archive entries picked by the table of contents
    addition_oids: frozenset[int] = frozenset()
    skip_publications: frozenset[str] = frozenset()
    skip_event_triggers: frozenset[str] = frozenset()
    skip_acl_roles: frozenset[str] = frozenset()
    skip_extension_comments: bool = False
    reached: tuple[reach.Reached, ...] = ()  # outside the app's schemas, allowed by --also-reach
    target_size: int = 0  # the target database's size now: what an undo point costs, about
    # where the backup was made: privileges, default privileges and comments in its platform's
    # schemas (an extension's functions in `extensions`, the platform's defaults) are the
    # platform's, never replayed. Platform schema names are plain, so the TOC's text (which
    # blanks out line breaks in names) matches them exactly.
    source_platform: Platform = field(default_factory=lambda: by_name("postgres"))
    skip_extensions: frozenset[str] = frozenset()  # the target has them: their archive entries are skipped
    create_extensions: tuple[str, ...] = ()  # the target lacks them; this role may create them
    cron_jobs: tuple[str, ...] = ()  # for the plan shown
    cron_sql: str = ""
    # restoring an undo point: what the restore it preceded added (its signed aftermath), removed
    # again where nothing uses it any more
    undo_roles: tuple[str, ...] = ()
    undo_extensions: tuple[str, ...] = ()
    undo_cron_jobs: tuple[str, ...] = ()
    undo_sql: str = ""

    @property
    def target_empty(self) -> bool:
        """Nothing of the app's in the target: no tables, publications, large objects or rows
        of platform tables to replace (what a parallel restore without an undo point needs)."""
        return not (
            any(n for _, n in self.drop_schemas)
            or self.app_objects
            or self.drop_publications
            or self.large_objects
            or self.drop_additions
            or self.truncate_tables
        )

    @property
    def login_roles(self) -> list[str]:
        return self.roles.login_roles

    def summary_rows(self) -> list[tuple[str, str]]:
        b = self.backup
        source = (b.manifest.get("source") or {}).get("url", "")
        if b.runbook_files:
            source = "runbook files " + ", ".join(b.runbook_files) + " (loaded in a throwaway database)"
        contents = self.mode + (f" (made from the runbook files {', '.join(b.runbook_files)})" if b.runbook_files else "")
        rows = [
            ("backup", b.id),
            *([("label", b.label)] if b.label else []),
            ("created", b.created),
            ("source", str(source)),
            ("contents", contents),
            ("checksums", f"{len(self.checked_files)} files verified" if self.checked_files else "none to verify"),
            ("signature", self.authenticity.text),
            ("target", f"{self.target.display()}  (PostgreSQL {self.server.version}, {self.platform.name})"),
            ("target database", self.target.dbname),
        ]
        if self.drop_schemas:
            kept = set(b.record.app_schemas) if not b.legacy else set()
            rows.append(
                (
                    "will drop",
                    ", ".join(
                        f"schema {s} ({n} tables)" + ("" if s in kept else ", not in the backup: gone after the restore")
                        for s, n in self.drop_schemas
                    ),
                )
            )
        if self.drop_publications:
            rows.append(("will drop", ", ".join(f"publication {p}" for p in self.drop_publications)))
        if self.large_objects:
            rows.append(("will drop", f"{self.large_objects} large objects (replaced by the backup's)"))
        if self.drop_additions:
            rows.append(("will drop", ", ".join(self.drop_additions)))
        if self.platform_tables:
            rows.append(("will replace", f"platform data in {len(self.platform_tables)} tables: {shown(self.platform_tables)}"))
        for r in self.reached:
            rows.append(("also reaches", r.description))
        if self.truncate_tables:
            rows.append(("will empty", f"{len(self.truncate_tables)} tables: {shown(self.truncate_tables)}"))
        if self.create_extensions:
            rows.append(("will create", "extensions " + ", ".join(self.create_extensions)))
        if self.cron_jobs:
            rows.append(
                (
                    "will schedule",
                    f"{len(self.cron_jobs)} pg_cron jobs (replacing the target's of the same name): "
                    + ", ".join(self.cron_jobs[:8])
                    + (" …" if len(self.cron_jobs) > 8 else ""),
                )
            )
        if self.undo_roles or self.undo_extensions or self.undo_cron_jobs:
            added = [f"roles {', '.join(self.undo_roles)}"] if self.undo_roles else []
            added += [f"extensions {', '.join(self.undo_extensions)}"] if self.undo_extensions else []
            added += [f"pg_cron jobs {', '.join(self.undo_cron_jobs)}"] if self.undo_cron_jobs else []
            rows.append(("will remove", "what the undone restore added, each only if nothing uses it: " + "; ".join(added)))
        if self.roles.create:
            rows.append(("will create", "roles " + ", ".join(self.roles.shown())))
        if self.roles.keep:
            rows.append(("keeps", "existing roles as they are: " + ", ".join(self.roles.keep)))
        for refused in self.roles.refused:
            rows.append(("will not restore", refused))
        if self.roles.login_roles:
            rows.append(("roles", "login roles restored without passwords: " + ", ".join(self.roles.login_roles)))
        return rows


def shown(tables: tuple[tuple[str, str], ...] | list[tuple[str, str]], most: int = 8) -> str:
    names = [f"{s}.{t}" for s, t in list(tables)[:most]]
    return ", ".join(names) + (" …" if len(tables) > most else "")


def plan_restore(
    store: Store,
    backup: Backup,
    target: Target,
    *,
    mode: str | None = None,
    pg_bin_dir: str | None = None,
    signing_key: manifest_mod.SigningKey | None = None,
    also_reach: tuple[str, ...] = (),
    step: Step = lambda msg: None,
) -> RestorePlan:
    """Check everything that can be checked without touching the target, and say what the
    restore would do. Raises before any change when something is wrong."""
    mode = mode or backup.kind
    if mode not in MODES:
        raise UsageError(f"Unknown restore mode {mode!r}", "use --schema-only or --data-only or neither")
    if mode != backup.kind and backup.kind != "full":
        raise UsageError(
            f"Backup {backup.id} holds only {backup.kind}; cannot restore {mode}", f"pick a full backup, or restore with --{backup.kind}-only"
        )
    record = backup.record
    key = signing_key if signing_key is not None else manifest_mod.signing_key(None, create=False)
    authenticity = manifest_mod.check(store.local_path(backup.id, ""), key, backup.manifest_bytes)
    step("verifying checksums")
    pinned = catalog.pin(store, backup)
    try:
        return _plan(store, backup, target, mode, pg_bin_dir, also_reach, record, authenticity, pinned, step, key)
    except BaseException:
        catalog.unpin(pinned)
        raise


def _plan(
    store: Store,
    backup: Backup,
    target: Target,
    mode: str,
    pg_bin_dir: str | None,
    also_reach: tuple[str, ...],
    record: manifest_mod.Manifest,
    authenticity: manifest_mod.Authenticity,
    pinned: dict[str, int],
    step: Step,
    key: manifest_mod.SigningKey | None = None,
) -> RestorePlan:
    checked = tuple(pinned)
    if backup.runbook_files:
        # signed a moment ago by this process; what it holds came from files nobody signed
        authenticity = manifest_mod.Authenticity(
            False, f"unauthenticated: made from the runbook files {', '.join(backup.runbook_files)}, which carry no signature"
        )
    step(f"connecting to {target.display()}")
    warnings: list[str] = list(backup.notes)
    mismatch = catalog.source_mismatch(backup, catalog.source_key(target.host, target.port, target.dbname, target.user))
    if mismatch:
        warnings.append(mismatch)
    with target.connect(autocommit=True) as conn:
        server = dbinfo.server_info(conn)
        platform = detect(conn)
        archive_major = record.pg_dump_major
        if server.is_superuser and mode != "schema":
            warnings.append(
                f"restoring as {server.current_user}, a superuser: as with pg_restore, the backup's own functions "
                "(CHECK constraints, generated columns) run with superuser rights while rows load, and could run "
                "commands on the server; restore only backups of databases whose code you trust, or restore as the "
                "database's owner. The restore refuses to commit if roles, memberships or their powers changed "
                "beyond its plan"
            )
        suite = pgtools.pick(
            pgtools.discover(pg_bin_dir),
            at_least=max(archive_major, 0),
            prefer=archive_major or server.major,
            tools=("pg_restore", "psql"),
            restrict=True,
            purpose=f"restoring a backup made with pg_dump {archive_major}" if archive_major else "this restore",
        )
        if record.platform_data_schemas and mode != "schema" and platform.name != "supabase":
            raise UsageError(
                f"Backup {backup.id} holds Supabase platform data (auth users, storage rows) but {target.display()} is not a Supabase project",
                "restore into a Supabase project (or one made with the same auth/storage schemas)",
            )
        if by_name(record.source_platform).name == "supabase" and platform.name != "supabase" and mode != "data":
            warnings.append("backup comes from a Supabase project; its auth/storage schemas are not part of it")
        if record.format == 1 and mode != "data":
            warnings.append(
                "this backup was made by an older version of this tool: its roles.sql and "
                "platform-additions.sql are SQL text, which is never run; create its roles "
                f"({', '.join(record.app_roles) or 'none'}) and the app's triggers and policies on "
                "platform tables by hand"
            )
        app_present = dbinfo.app_schemas(conn, platform)
        kw: dict = {}
        if mode in ("full", "schema"):
            tabs = dbinfo.tables(conn, app_present)
            pubs = tuple(p for p in dbinfo.publications(conn) if not platform.is_platform_publication(p))
            los = dbinfo.large_object_count(conn)
            found = additions.find(conn, platform)
            if backup.runbook_files and found and not record.additions:
                warnings.append(
                    "the runbook's files carry no triggers or policies on platform tables (supabase db dump leaves "
                    "auth and storage out), so these will be gone: " + ", ".join(a.label for a in found)
                )
            platform_tables = tuple(_platform_tables(conn, record)) if mode == "full" else ()
            public_objects = dbinfo.schema_objects(conn, "public") if platform.name == "supabase" else None
            reached = reach.reached_outside(
                conn,
                inside=app_present,
                drop_schemas=app_present,
                drop_objects=public_objects or (),
                drop_additions=found,
                truncate_tables=platform_tables,
            )
            kw["reached"] = check_reach(reached, also_reach, "restore")
            reset = statements.reset_sql(
                drop_schemas=app_present,
                publications=pubs,
                large_objects=los > 0,
                public_contents=None if public_objects is None else [dbinfo.drop_sql(o) for o in public_objects],
                # A trigger whose function is in a schema the reset empties goes with that function
                # (CASCADE), which needs no ownership of the platform's table; dropping it by name
                # would (hosted `postgres` does not own auth.users).
                drop_additions=[a.drop_sql for a in found if a.function_schema not in app_present],
                platform_tables=platform_tables,
            )
            # before the drops: an entry for a schema about to be dropped must still resolve
            reset = "\n".join(dbinfo.clear_own_default_privileges_sql(conn, app_present)) + "\n" + reset
            kw.update(
                app_objects=sum(len(dbinfo.schema_objects(conn, s)) for s in app_present),
                namespace_objects=conn.execute(statements.NAMESPACE_OBJECTS, (list(app_present),)).fetchone()[0],
                drop_schemas=tuple((s, sum(1 for t in tabs if t[0] == s)) for s in app_present),
                drop_publications=pubs,
                large_objects=los,
                drop_additions=tuple(a.label for a in found),
                platform_tables=platform_tables,
                reset_sql=reset,
                addition_oids=frozenset(a.oid for a in record.additions),
            )
            own_roles: set[str] = set()
            roles_file = record.file("roles")
            if roles_file and roles_file.format == "json":
                # the pinned file itself, or (encrypted) the pipe serving its plaintext
                with open(catalog.pinned_path(pinned[roles_file.name]), "rb") as f:
                    role_set = roles.RoleSet.from_json(f.read().decode("utf-8", "replace"))
                kw["roles"] = roles.plan(role_set, roles.facts(conn, role_set.names()))
                warnings.extend(kw["roles"].warnings)
                own_roles = set(role_set.names())
            if backup.undo_point and mode == "full":
                kw.update(_aftermath(conn, store, backup, record, key, warnings, own_roles))
        else:
            truncate = tuple(_tables_to_empty(conn, record))
            los = dbinfo.large_object_count(conn)  # data too: replaced
            partitioned = [(t.schema, t.name) for t in record.tables if t.kind == "partitioned"]
            kw.update(truncate_tables=truncate, large_objects=los, reset_sql=statements.truncate_sql(list(truncate), los > 0, partitioned))
        kw.update(_skips(conn, record, platform, server))
        if mode in ("full", "schema"):
            # an extension in a schema the reset drops whole goes with it (plain PostgreSQL's
            # `public`): the archive's own entry creates it again
            dropped = set(app_present) - ({"public"} if platform.name == "supabase" else set())
            kw.update(_extensions(conn, record, server, dropped))
        if mode in ("full", "data") and record.cron_jobs:
            kw.update(_cron(conn, record, server))
        kw["source_platform"] = by_name(record.source_platform)
        kw["target_size"] = dbinfo.database_size(conn)
        if mode in ("full", "data"):
            # partitioned parents are checked through their partitions; matviews are refreshed
            # from the restored rows, so a stale source matview may differ
            kw["checks"] = tuple((t.schema, t.name, int(t.rows)) for t in record.tables if t.rows is not None and t.kind == "table")
        _list_archives(suite, record, pinned, mode)
        return RestorePlan(
            backup=backup,
            target=target,
            mode=mode,
            server=server,
            platform=platform,
            suite=suite,
            authenticity=authenticity,
            checked_files=checked,
            pinned=pinned,
            pinned_stamps=catalog.stamps(pinned),
            replica_mode=dbinfo.can_set_replication_role(conn),
            temp_ok=bool(conn.execute("SELECT has_database_privilege(current_database(), 'TEMP')").fetchone()[0]),
            warnings=tuple(warnings),
            **kw,
        )


def check_reach(reached: list[reach.Reached], allowed: tuple[str, ...], verb: str) -> tuple[reach.Reached, ...]:
    """Refuse (nothing changed) when CASCADE would reach objects outside the app's schemas that
    the person did not allow by naming their schema with --also-reach."""
    outside = [r for r in reached if not ("*" in allowed or (r.schema is not None and r.schema in allowed))]
    if outside:
        schemas = sorted({r.schema or "*" for r in outside})
        raise RestoreFailed(
            f"Refusing to {verb}: it would also reach objects outside the app's schemas, nothing was changed: "
            + "; ".join(r.description for r in outside[:8])
            + (" …" if len(outside) > 8 else ""),
            "move or drop them first, or allow it with --also-reach " + ",".join(schemas),
        )
    return tuple(reached)


def _extensions(
    conn: psycopg.Connection, record: manifest_mod.Manifest, server: dbinfo.ServerInfo, dropped: frozenset[str] | set[str] = frozenset()
) -> dict:
    """Extensions the backup's source had: skipped where the target has them, created (from the
    archive's own entry, before what needs them) where this role may; otherwise refused here,
    before anything changes, naming each one and where to enable it."""
    have = {name for name, schema, _ in dbinfo.extensions(conn) if schema not in dropped}
    missing = [e.name for e in record.extensions if e.name not in have]
    why = dbinfo.creatable_extensions(conn, missing, server.is_superuser)
    refused = [f"{name} ({why[name]})" for name in missing if why[name]]
    if refused:
        raise UsageError(
            f"The target lacks extensions the backup needs, which {server.current_user} cannot create: "
            + ", ".join(refused)
            + "; nothing was changed",
            "enable them first (Supabase: Dashboard -> Database -> Extensions; elsewhere: CREATE EXTENSION as a superuser), then restore again",
        )
    return {"skip_extensions": frozenset(have), "create_extensions": tuple(missing)}


def _cron(conn: psycopg.Connection, record: manifest_mod.Manifest, server: dbinfo.ServerInfo) -> dict:
    """pg_cron jobs come back through pg_cron's own functions, replacing the target's job of the
    same name and user (an unnamed one: of the same schedule, command, user and database). A job
    keeps its user where the target has that role (only a superuser may schedule for another
    role); a job of the source's user, where the target lacks that role, runs as the restoring
    user. A job of the source's database runs in the target's."""
    jobs = record.cron_jobs or ()
    present = dbinfo.existing_roles(conn, sorted({j.username for j in jobs}))
    lines, shown_jobs, refused = [], [], []
    for j in jobs:
        database = server.database if j.database == record.source_database else j.database
        if j.username in present:
            username = j.username
        elif j.username == record.source_user:
            username = server.current_user
        else:
            refused.append(f"{j.name or '(unnamed)'} runs as {j.username}, a role the target lacks")
            continue
        as_me = username == server.current_user
        if not as_me and not server.is_superuser:
            refused.append(f"{j.name or '(unnamed)'} runs as {username}; only a superuser may schedule jobs for another role")
            continue
        lit = sqltext.literal
        if j.name is None:
            if not as_me or database != server.database:
                refused.append(
                    f"an unnamed job ({j.schedule}) runs as {username} in {database}: pg_cron schedules "
                    "unnamed jobs only for the current user and database"
                )
                continue
            lines.append(
                f"PERFORM cron.unschedule(jobid) FROM cron.job WHERE jobname IS NULL AND schedule = {lit(j.schedule)}"
                f" AND command = {lit(j.command)} AND username = {lit(username)} AND database = {lit(database)};"
            )
            scheduled = f"cron.schedule({lit(j.schedule)}, {lit(j.command)})"
            lines.append(f"PERFORM cron.alter_job({scheduled}, active := false);" if not j.active else f"PERFORM {scheduled};")
        else:
            lines.append(f"PERFORM cron.unschedule(jobid) FROM cron.job WHERE jobname = {lit(j.name)} AND username = {lit(username)};")
            lines.append(
                # username NULL: the restoring user (pg_cron wants a superuser for any username given)
                f"PERFORM cron.schedule_in_database({lit(j.name)}, {lit(j.schedule)}, {lit(j.command)},"
                f" {lit(database)}, {'NULL' if as_me else lit(username)}, {'true' if j.active else 'false'});"
            )
        shown_jobs.append(f"{j.name or '(unnamed)'} ({j.schedule}, as {username} in {database}" + ("" if j.active else ", inactive") + ")")
    if refused:
        raise UsageError(
            "The backup's pg_cron jobs cannot all be scheduled here: " + "; ".join(refused) + "; nothing was changed",
            "restore as a superuser or into a project with those roles, or recreate those jobs by hand afterwards "
            "(the manifest's cron_jobs lists them)",
        )
    sql_text = sqltext.do_block("BEGIN\n" + "\n".join(lines) + "\nEND") + "\n" if lines else ""
    return {"cron_jobs": tuple(shown_jobs), "cron_sql": sql_text}


def _aftermath(
    conn: psycopg.Connection,
    store: Store,
    backup: Backup,
    record: manifest_mod.Manifest,
    key: manifest_mod.SigningKey | None,
    warnings: list[str],
    own_roles: set[str],
) -> dict:
    """Restoring an undo point: the roles, extensions and pg_cron jobs that the restore it
    preceded added (recorded, signed, before that restore ran) and that the undo point itself
    did not have; removed where nothing uses them any more."""
    after, why = undo.read(store.local_path(backup.id, ""), key)
    if why:
        warnings.append(f"undo point {backup.id}: {why}; roles, extensions and pg_cron jobs the undone restore added stay")
    if not after:
        return {}
    existing_roles = set(dbinfo.existing_roles(conn, list(after.roles)))
    drop_roles = tuple(r for r in after.roles if r in existing_roles and r not in own_roles)
    have = {name for name, _, _ in dbinfo.extensions(conn)}
    own_ext = {e.name for e in record.extensions}
    drop_ext = tuple(e for e in after.extensions if e in have and e not in own_ext)
    own_jobs = {j.name for j in record.cron_jobs or () if j.name}
    drop_jobs = tuple(j for j in after.cron_jobs if j not in own_jobs)
    return {
        "undo_roles": drop_roles,
        "undo_extensions": drop_ext,
        "undo_cron_jobs": drop_jobs,
        "undo_sql": undo.undo_sql(drop_roles, drop_ext, drop_jobs),
    }


def _platform_tables(conn: psycopg.Connection, record: manifest_mod.Manifest) -> list[tuple[str, str]]:
    """Platform tables whose rows the backup carries (auth.users, storage.objects, ...): emptied
    first so a restore over the same project replaces its users instead of duplicating them."""
    wanted = [(t.schema, t.name) for t in record.tables if t.section == "platform" and t.kind == "table"]
    return _present(
        conn,
        wanted,
        sorted({w[0] for w in wanted}),
        "The target lacks platform tables the backup has data for",
        "restore into a Supabase project of the same or a newer platform version",
    )


def _tables_to_empty(conn: psycopg.Connection, record: manifest_mod.Manifest) -> list[tuple[str, str]]:
    wanted = [(t.schema, t.name) for t in record.tables if t.kind == "table"]
    return _present(
        conn,
        wanted,
        dbinfo.schemas(conn),
        "The target has no table to load the backup's rows into",
        "restore the schema too (drop --data-only), or restore into the right database",
    )


def _present(conn: psycopg.Connection, wanted: list[tuple[str, str]], schemas: list[str], what: str, hint: str):
    """`wanted`, when the target has every one of those tables; else refused, naming them."""
    present = {(s, t) for s, t, _ in dbinfo.tables(conn, schemas)}
    missing = [t for t in wanted if t not in present]
    if missing:
        raise UsageError(f"{what}: {shown(missing, 5)}", hint)
    return wanted


def _skips(conn: psycopg.Connection, record: manifest_mod.Manifest, platform: Platform, server: dbinfo.ServerInfo) -> dict:
    """Archive entries for things the target's platform already owns: its realtime publication,
    its event triggers, default privileges of roles the restoring user cannot act for, and
    comments on extensions it does not own. Restoring them would fail ("already exists",
    "must be owner"); skipping them loses nothing of the app's."""
    out: dict = {
        "skip_publications": frozenset(p for p in dbinfo.publications(conn) if platform.is_platform_publication(p)),
    }
    app = set(dbinfo.app_schemas(conn, platform))
    out["skip_event_triggers"] = frozenset(name for name, fschema in dbinfo.event_triggers(conn) if fschema not in app)
    if not server.is_superuser:
        out["skip_extension_comments"] = True
        # Roles whose default privileges the backup holds, recorded from the catalog at backup
        # time (a TOC line cannot tell a role name with spaces from the words before it).
        candidates = [r for r in record.default_acl_roles if r not in set(record.app_roles)]
        out["skip_acl_roles"] = frozenset(dbinfo.roles_not_usable(conn, candidates))
    return out


def _list_archives(suite: pgtools.PgSuite, record: manifest_mod.Manifest, pinned: dict[str, int], mode: str) -> None:
    """Read the archives' tables of contents now, side by side, as the restore will ask for
    them (toc.read caches them): an archive pg_restore (or zstd) cannot read is refused here,
    before the plan is shown and before any undo point, not once the restore has begun."""
    from concurrent.futures import ThreadPoolExecutor

    jobs: list[tuple[Path, list[tuple[str, ...]]]] = []
    for f in record.files:
        if f.role in ("app", "platform", "platform-schema") and f.name in pinned:
            path = catalog.pinned_path(pinned[f.name])
            sections: list[tuple[str, ...]] = [("data",)] if f.role == "platform" else [()]
            if f.role == "app" and mode == "full":
                sections += [("pre-data", "data"), ("post-data",)]
            elif f.role == "app":
                sections += [("data",)] if mode == "data" else [("pre-data",), ("post-data",)]
            if stat.S_ISFIFO(os.stat(path).st_mode):
                # an encrypted file's plaintext pipe serves one reader at a time (crypt.Served)
                jobs.append((path, sections))
            else:
                jobs += [(path, [s]) for s in sections]

    def listed(job: tuple[Path, list[tuple[str, ...]]]) -> None:
        for sections in job[1]:
            toc.read(suite, job[0], sections)

    with ThreadPoolExecutor(3) as pool:
        list(pool.map(listed, jobs))


def entries(plan: RestorePlan, suite: pgtools.PgSuite, archive: Path) -> list[toc.Entry]:
    """The archive's entries, less those the target's platform already owns."""

    def keep(e: toc.Entry) -> bool:
        if e.desc == "PUBLICATION" and any(e.names(p) for p in plan.skip_publications):
            return False
        if e.desc == "EVENT TRIGGER" and any(e.names(t) for t in plan.skip_event_triggers):
            return False
        if e.desc == "COMMENT" and any(e.names(f"EVENT TRIGGER {t}") for t in plan.skip_event_triggers):
            return False
        if e.desc == "COMMENT" and e.tag_owner.startswith("EXTENSION ") and plan.skip_extension_comments:
            return False
        if e.desc == "DEFAULT ACL" and any(e.owned_by(r) for r in plan.skip_acl_roles):
            return False
        managed = lambda s: plan.source_platform.is_managed(s) or plan.platform.is_managed(s)  # noqa: E731
        if e.desc in ("ACL", "DEFAULT ACL", "COMMENT", "SECURITY LABEL") and (
            (e.schema != "-" and managed(e.schema))
            or (e.schema == "-" and e.tag_owner.startswith("SCHEMA ") and managed(e.tag_owner[len("SCHEMA ") :].rsplit(" ", 1)[0]))
        ):
            return False  # on an extension's member or a platform schema (pg_cron's `cron`): the platform's
        if e.desc == "EXTENSION" and any(e.names(x) for x in plan.skip_extensions):
            return False
        if e.desc == "COMMENT" and any(e.names(f"EXTENSION {x}") for x in plan.skip_extensions):
            return False
        return True

    return [e for e in toc.read(suite, archive) if keep(e)]


def quiet_tables(plan: RestorePlan) -> list[tuple[str, str]]:
    return list(plan.truncate_tables if plan.mode == "data" else plan.platform_tables)


__all__ = ["RestorePlan", "plan_restore", "entries", "quiet", "quiet_tables"]
