"""`restore` and `reset`: the runbook's `db reset` + `psql schema` + `psql data`, as one
all-or-nothing transaction.

Everything a restore does goes through ONE psql session that we feed on stdin:

    BEGIN
      roles                 missing ones created; roles the server already has left as they are
      reset                 the app's schemas, publications, large objects, its triggers and
                            policies on platform tables; platform tables the backup refills are
                            emptied (or, for --data-only, the backup's tables)
      pre-data + data       tables, then rows: no index, constraint or trigger exists yet
      platform data         auth users, storage rows: loaded quietly (quiet.py)
      privileges            GRANTs after the rows, as pg_restore orders them
      post-data             indexes, constraints, triggers, policies, matview refreshes; then
                            the app's triggers and policies on platform tables
      row-count check       raises, so a short restore rolls back
    COMMIT                  written only if every step succeeded

psql runs with ON_ERROR_STOP, so any failing statement ends the session; the server then rolls
back the open transaction and the target is exactly as it was. pg_restore only writes scripts
(exactly the TOC entries we select); the one transaction-control statement those scripts carry,
the BEGIN/COMMIT around large-object contents, is removed so it cannot commit us halfway.
On Ctrl-C psql is asked to cancel and its exit status says what happened.
"""

from __future__ import annotations

import re
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator

import psycopg

from . import additions, catalog, dbinfo, pgtools, quiet, roles, toc
from .catalog import Backup
from .conn import Target
from .errors import Interrupted, RestoreFailed, UsageError
from .platform import Platform, by_name, detect
from .storage import LocalStore

Step = Callable[[str], None]
CHUNK = 1 << 20
MODES = ("full", "schema", "data")


@dataclass
class RestorePlan:
    backup: Backup
    target: Target
    mode: str  # full | schema | data
    server: dbinfo.ServerInfo
    platform: Platform
    suite: pgtools.PgSuite
    drop_schemas: list[tuple[str, int]] = field(default_factory=list)  # (schema, tables in it)
    drop_publications: list[str] = field(default_factory=list)
    truncate_tables: list[tuple[str, str]] = field(default_factory=list)  # (schema, table)
    large_objects: int = 0
    replica_mode: bool = False
    temp_ok: bool = True  # may create temporary tables (where quiet loads keep their notes)
    checked_files: list[str] = field(default_factory=list)
    roles_sql: str = ""
    login_roles: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    checks: list[tuple[str, str, int]] = field(default_factory=list)  # (schema, table, rows)
    reset_sql: str = ""
    drop_additions: list[str] = field(default_factory=list)  # labels, for the plan shown
    additions_sql: str = ""
    platform_tables: list[tuple[str, str]] = field(default_factory=list)  # emptied, then loaded
    create_roles: list[str] = field(default_factory=list)
    existing_roles: list[str] = field(default_factory=list)  # the backup's roles the target has: left as they are
    # archive entries that would collide with what the target's platform already has
    skip_publications: set[str] = field(default_factory=set)
    skip_event_triggers: set[str] = field(default_factory=set)
    skip_acl_roles: set[str] = field(default_factory=set)
    skip_extension_comments: bool = False

    def summary_rows(self) -> list[tuple[str, str]]:
        b = self.backup
        rows = [
            ("backup", f"{b.id}" + (f"  [{b.label}]" if b.label else "")),
            ("created", b.created),
            ("source", (b.manifest.get("source") or {}).get("url", "runbook file")),
            ("contents", self.mode + (" (runbook files, no checksums)" if b.legacy else "")),
            ("checksums", f"{len(self.checked_files)} files verified" if self.checked_files else "none to verify"),
            ("target", f"{self.target.display()}  (PostgreSQL {self.server.version}, {self.platform.name})"),
            ("target database", self.target.dbname),
        ]
        if self.drop_schemas:
            rows.append(("will drop", ", ".join(f"schema {s} ({n} tables)" for s, n in self.drop_schemas)))
        if self.drop_publications:
            rows.append(("will drop", ", ".join(f"publication {p}" for p in self.drop_publications)))
        if self.large_objects:
            rows.append(("will drop", f"{self.large_objects} large objects (replaced by the backup's)"))
        if self.drop_additions:
            rows.append(("will drop", ", ".join(self.drop_additions)))
        if self.platform_tables:
            rows.append(("will replace", f"platform data in {len(self.platform_tables)} tables: {_shown(self.platform_tables)}"))
        if self.truncate_tables:
            rows.append(("will empty", f"{len(self.truncate_tables)} tables: {_shown(self.truncate_tables)}"))
        if self.create_roles:
            rows.append(("will create", "roles " + ", ".join(self.create_roles)))
        if self.existing_roles:
            rows.append(("keeps", "existing roles as they are: " + ", ".join(self.existing_roles)))
        if self.login_roles:
            rows.append(("roles", "login roles restored without passwords: " + ", ".join(self.login_roles)))
        return rows


def _shown(tables: list[tuple[str, str]], most: int = 8) -> str:
    names = [f"{s}.{t}" for s, t in tables[:most]]
    return ", ".join(names) + (" …" if len(tables) > most else "")


# --- planning ---------------------------------------------------------------------------

def _archive_major(backup: Backup) -> int:
    ver = (backup.manifest.get("tools") or {}).get("pg_dump", "0")
    return int(str(ver).split(".")[0] or 0)


def plan_restore(
    store: LocalStore,
    backup: Backup,
    target: Target,
    *,
    mode: str | None = None,
    pg_bin_dir: str | None = None,
    step: Step = lambda msg: None,
) -> RestorePlan:
    """Check everything that can be checked without touching the target, and say what the
    restore would do. Raises before any change when something is wrong."""
    mode = mode or backup.kind
    if mode not in MODES:
        raise UsageError(f"Unknown restore mode {mode!r}", "use --schema-only or --data-only or neither")
    if mode != backup.kind and backup.kind != "full":
        raise UsageError(f"Backup {backup.id} holds only {backup.kind}; cannot restore {mode}",
                         f"pick a full backup, or restore with --{backup.kind}-only")
    step("verifying checksums")
    checked = catalog.verify_checksums(store, backup)
    step(f"connecting to {target.display()}")
    with target.connect(autocommit=True) as conn:
        server = dbinfo.server_info(conn)
        platform = detect(conn)
        archive_major = _archive_major(backup)
        suite = pgtools.pick(
            pgtools.discover(pg_bin_dir),
            at_least=max(archive_major, 0),
            prefer=archive_major or server.major,
            tools=("pg_restore", "psql") if not backup.legacy else ("psql",),
            purpose=f"restoring a backup made with pg_dump {archive_major}" if archive_major else "this restore",
        )
        plan = RestorePlan(backup=backup, target=target, mode=mode, server=server, platform=platform,
                           suite=suite, checked_files=checked)
        plan.replica_mode = dbinfo.can_set_replication_role(conn)
        plan.temp_ok = conn.execute("SELECT has_database_privilege(current_database(), 'TEMP')").fetchone()[0]
        source_platform = by_name((backup.manifest.get("source") or {}).get("platform", "postgres"))
        if backup.manifest.get("platform_data_schemas") and mode != "schema" and platform.name != "supabase":
            raise UsageError(
                f"Backup {backup.id} holds Supabase platform data (auth users, storage rows) but "
                f"{target.display()} is not a Supabase project",
                "restore into a Supabase project (or one made with the same auth/storage schemas)",
            )
        if source_platform.name == "supabase" and platform.name != "supabase" and mode != "data":
            plan.warnings.append("backup comes from a Supabase project; its auth/storage schemas are not part of it")
        app_present = dbinfo.app_schemas(conn, platform)
        if mode in ("full", "schema"):
            tabs = dbinfo.tables(conn, app_present)
            plan.drop_schemas = [(s, sum(1 for t in tabs if t[0] == s)) for s in app_present]
            plan.drop_publications = [p for p in dbinfo.publications(conn) if not platform.is_platform_publication(p)]
            plan.large_objects = dbinfo.large_object_count(conn)
            found = additions.find(conn, platform)
            plan.drop_additions = [a.label for a in found]
            if backup.legacy and found:
                plan.warnings.append(
                    "the runbook's files carry no triggers or policies on platform tables (supabase db dump "
                    "leaves auth and storage out), so these will be gone: " + ", ".join(plan.drop_additions))
            if mode == "full" and not backup.legacy:
                plan.platform_tables = _platform_tables(conn, backup)
            elif mode == "full" and platform.name == "supabase":
                # The runbook's data file (supabase db dump --data-only) carries auth and storage
                # rows: empty those tables first so users are replaced, not duplicated.
                loaded = {t for name in backup.legacy_files if not name.startswith("schema-")
                          for t in legacy_copy_tables(store.local_path("", name))}
                plan.platform_tables = sorted(t for t in loaded if platform.is_managed(t[0]))
            plan.reset_sql = reset_sql(
                conn, platform, drop_schemas=app_present, publications=plan.drop_publications,
                large_objects=plan.large_objects > 0, drop_additions=[a.drop_sql for a in found],
                platform_tables=plan.platform_tables,
            )
            if not backup.legacy:
                # before the drops: an entry for a schema about to be dropped must still resolve
                plan.reset_sql = "\n".join(dbinfo.clear_own_default_privileges_sql(conn)) + "\n" + plan.reset_sql
        else:
            plan.truncate_tables = _tables_to_empty(conn, backup, store, platform)
            plan.large_objects = dbinfo.large_object_count(conn)  # data too: replaced
            partitioned = [(t["schema"], t["name"]) for t in backup.manifest.get("tables", [])
                           if t.get("kind") == "partitioned"]
            plan.reset_sql = truncate_sql(plan.truncate_tables, plan.large_objects > 0, partitioned)
        if not backup.legacy:
            _plan_skips(conn, plan, platform, server)
            if mode in ("full", "schema") and backup.file("additions"):
                plan.additions_sql = store.local_path(backup.id, backup.file("additions")["name"]).read_text()
        if mode in ("full", "schema") and not backup.legacy:
            kept = roles.split_statements(store.local_path(backup.id, "roles.sql").read_text()) \
                if backup.file("roles") else []
            created = roles.created_roles(kept)
            existing = dbinfo.existing_roles(conn, created)
            plan.create_roles = [r for r in created if r not in existing]
            plan.existing_roles = [r for r in created if r in existing]
            plan.roles_sql = roles.restore_sql(kept, target_major=server.major, target_superuser=server.is_superuser,
                                               current_user=server.current_user, existing=existing)
            plan.login_roles = [r for r in roles.login_roles(kept) if r not in existing]
            plan.warnings.extend(roles.downgrade_warnings(kept, server.major))
        if mode in ("full", "data") and not backup.legacy:
            plan.checks = [
                (t["schema"], t["name"], int(t["rows"]))
                for t in backup.manifest.get("tables", [])
                # partitioned parents are checked through their partitions; matviews are
                # refreshed from the restored rows, so a stale source matview may differ
                if t.get("rows") is not None and t.get("kind") == "table"
            ]
    return plan


def _platform_tables(conn: psycopg.Connection, backup: Backup) -> list[tuple[str, str]]:
    """Platform tables whose rows the backup carries (auth.users, storage.objects, ...): emptied
    first so a restore over the same project replaces its users instead of duplicating them."""
    wanted = [(t["schema"], t["name"]) for t in backup.manifest.get("tables", [])
              if t.get("section") == "platform" and t.get("kind") == "table"]
    present = {(s, t) for s, t, _ in dbinfo.tables(conn, sorted({w[0] for w in wanted}))}
    missing = [t for t in wanted if t not in present]
    if missing:
        raise UsageError(
            f"The target lacks platform tables the backup has data for: {_shown(missing, 5)}",
            "restore into a Supabase project of the same or a newer platform version",
        )
    return wanted


def reset_sql(conn: psycopg.Connection, platform: Platform, *, drop_schemas: Iterable[str],
              publications: Iterable[str], large_objects: bool, drop_additions: Iterable[str] = (),
              platform_tables: Iterable[tuple[str, str]] = ()) -> str:
    """The runbook's `db reset` for the app's objects only; platform schemas are left alone."""
    out = list(drop_additions)
    for pub in publications:
        out.append(f"DROP PUBLICATION IF EXISTS {_ident(pub)};")
    if large_objects:
        out.append("SELECT pg_catalog.lo_unlink(oid) FROM pg_catalog.pg_largeobject_metadata;")
    for schema in drop_schemas:
        if schema != "public":
            out.append(f"DROP SCHEMA IF EXISTS {_ident(schema)} CASCADE;")
    if platform.name == "supabase":
        # The platform configured `public` itself (grants to anon/authenticated, default
        # privileges of supabase_admin that the app's role cannot recreate): empty it, keep it.
        out.extend(dbinfo.schema_contents_drop_sql(conn, "public"))
    else:
        # pg_dump writes only differences from a default `public`, so recreate exactly that.
        out.append("DROP SCHEMA IF EXISTS public CASCADE;")
        out.append("CREATE SCHEMA public;")
        out.append("ALTER SCHEMA public OWNER TO pg_database_owner;")
        out.append("GRANT USAGE ON SCHEMA public TO PUBLIC;")
        out.append("COMMENT ON SCHEMA public IS 'standard public schema';")
    tables = list(platform_tables)
    if tables:
        # CASCADE: platform tables of a newer target that reference these are emptied too.
        out.append("TRUNCATE " + ", ".join(f"ONLY {_qualified(*t)}" for t in tables) + " CASCADE;")
    return "\n".join(out) + "\n"


def _plan_skips(conn: psycopg.Connection, plan: RestorePlan, platform: Platform, server: dbinfo.ServerInfo) -> None:
    """Archive entries for things the target's platform already owns: its realtime publication,
    its event triggers, default privileges of roles the restoring user cannot act for, and
    comments on extensions it does not own. Restoring them would fail ("already exists",
    "must be owner"); skipping them loses nothing of the app's."""
    plan.skip_publications = {p for p in dbinfo.publications(conn) if platform.is_platform_publication(p)}
    app = set(dbinfo.app_schemas(conn, platform))
    plan.skip_event_triggers = {name for name, fschema in dbinfo.event_triggers(conn) if fschema not in app}
    if not server.is_superuser:
        plan.skip_extension_comments = True
        app_roles = set((plan.backup.manifest.get("roles") or {}).get("app", []))
        # Roles whose default privileges the backup holds, recorded from the catalog at backup
        # time (a TOC line cannot tell a role name with spaces from the words before it).
        candidates = [r for r in plan.backup.manifest.get("default_acl_roles", []) if r not in app_roles]
        plan.skip_acl_roles = dbinfo.roles_not_usable(conn, candidates)


def _tables_to_empty(conn: psycopg.Connection, backup: Backup, store: LocalStore, platform: Platform) -> list[tuple[str, str]]:
    if backup.legacy:
        wanted = sorted({t for name in backup.legacy_files for t in legacy_copy_tables(store.local_path("", name))})
    else:
        wanted = [(t["schema"], t["name"]) for t in backup.manifest.get("tables", []) if t.get("kind") == "table"]
    present = {(s, t) for s, t, _ in dbinfo.tables(conn, dbinfo.schemas(conn))}
    missing = [t for t in wanted if t not in present]
    if missing:
        raise UsageError(f"The target has no table {_shown(missing, 5)} to load data into",
                         "restore the schema too (drop --data-only), or restore into the right database")
    return wanted


_QUALIFIED = r'(("(?:[^"]|"")+"|[^ .("]+)\.("(?:[^"]|"")+"|[^ ("]+))'
_COPY_RE = re.compile(r'^COPY ' + _QUALIFIED + ' ')
_INSERT_RE = re.compile(r'^INSERT INTO ' + _QUALIFIED + '[ (]')


def legacy_copy_tables(path: Path) -> Iterator[tuple[str, str]]:
    """Tables a plain-SQL data dump loads, from its `COPY t (...) FROM stdin;` lines and the
    `INSERT INTO t` lines `supabase db dump --data-only` writes. Rows inside a COPY block are
    skipped, so data that happens to start with "COPY " is not a table."""
    in_copy = False
    with open(path, "rb") as f:
        for raw in f:
            if in_copy:
                if raw.rstrip(b"\r\n") == b"\\.":
                    in_copy = False
                continue
            line = raw.decode("utf-8", "replace")
            m = _COPY_RE.match(line)
            if m and line.rstrip().endswith("FROM stdin;"):
                in_copy = True
            else:
                m = _INSERT_RE.match(line)
            if m:
                yield roles.unquote(m.group(2)), roles.unquote(m.group(3))


# --- SQL pieces ---------------------------------------------------------------------------

def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _qualified(schema: str, table: str) -> str:
    return f"{_ident(schema)}.{_ident(table)}"


def truncate_sql(tables: list[tuple[str, str]], large_objects: bool,
                 partitioned: Iterable[tuple[str, str]] = ()) -> str:
    out = "SELECT pg_catalog.lo_unlink(oid) FROM pg_catalog.pg_largeobject_metadata;\n" if large_objects else ""
    # ONLY before each table: an inheritance child the backup does not list keeps its rows.
    # A partitioned parent cannot be truncated ONLY; it goes whole, its partitions being its rows
    # (and a foreign key declared on it would otherwise block truncating what it references).
    names = [f"ONLY {_qualified(*t)}" for t in tables] + [_qualified(*t) for t in partitioned]
    if names:
        out += "TRUNCATE " + ", ".join(names) + ";\n"
    return out


def check_sql(checks: list[tuple[str, str, int]]) -> str:
    """A DO block that raises when any table's row count differs from the manifest."""
    if not checks:
        return ""
    lines = ["DO $fortress_check$ DECLARE n bigint; BEGIN"]
    for schema, table, rows in checks:
        q = _qualified(schema, table)
        lit = f"{schema}.{table}".replace("'", "''")
        lines.append(
            f"  SELECT count(*) INTO n FROM ONLY {q};"
            f" IF n <> {int(rows)} THEN RAISE EXCEPTION 'restore check failed: % has % rows, the backup has {int(rows)}', '{lit}', n; END IF;"
        )
    lines.append("END $fortress_check$;")
    return "\n".join(lines) + "\n"


# --- streaming ------------------------------------------------------------------------------

_PREAMBLE = re.compile(rb"^(--.*|\s*|\\restrict .*|SET .*|SELECT pg_catalog\.set_config\(.*)$")


class Feeder:
    """Writes SQL into psql's stdin; tracks bytes for progress."""

    def __init__(self, proc: subprocess.Popen, target_major: int, progress: Callable[[int], None] | None):
        self.proc = proc
        self.target_major = target_major
        self.sent = 0
        self.progress = progress

    def write(self, data: bytes) -> None:
        self.proc.stdin.write(data)
        self.sent += len(data)
        if self.progress:
            self.progress(self.sent)

    def sql(self, text: str) -> None:
        if text:
            self.write(text.encode())

    def script(self, chunks: Iterator[bytes], line_filter: Callable[[bytes], bytes | None] | None = None) -> None:
        """Stream a pg_dump/pg_restore script. Only its preamble (SETs before the first real
        statement) is rewritten: pg_dump 17 writes `SET transaction_timeout`, which servers
        before 17 reject. The rest passes through untouched, COPY data included. With a
        `line_filter` (scripts that hold no data), every line goes through it instead."""
        if line_filter is not None:
            return self._filtered(chunks, line_filter)
        buf = b""
        in_preamble = True
        for chunk in chunks:
            if not in_preamble:
                self.write(chunk)
                continue
            buf += chunk
            lines = buf.split(b"\n")
            buf = lines.pop()  # a partial last line waits for the next chunk
            out = []
            for line in lines:
                if in_preamble and not _PREAMBLE.match(line):
                    in_preamble = False
                if in_preamble and self.target_major < 17 and line.startswith(b"SET transaction_timeout"):
                    continue
                out.append(line + b"\n")
            if not in_preamble:
                out.append(buf)
                buf = b""
            self.write(b"".join(out))
        if buf:
            self.write(buf)

    def _filtered(self, chunks: Iterator[bytes], line_filter: Callable[[bytes], bytes | None]) -> None:
        """Every line through `line_filter`: only for scripts of privilege statements, which
        hold no data and no function bodies."""
        def keep(line: bytes) -> bytes | None:
            if self.target_major < 17 and line.startswith(b"SET transaction_timeout"):
                return None  # these scripts hold no data: the preamble rule applies to every line
            return line_filter(line)

        buf = b""
        for chunk in chunks:
            buf += chunk
            lines = buf.split(b"\n")
            buf = lines.pop()
            out = [kept + b"\n" for line in lines if (kept := keep(line)) is not None]
            self.write(b"".join(out))
        if buf and (kept := keep(buf)) is not None:
            self.write(kept)


def _pg_restore_chunks(suite: pgtools.PgSuite, archive: Path, env: dict[str, str],
                       entries: list[toc.Entry]) -> Iterator[bytes]:
    """pg_restore as a script writer for exactly `entries` (pg_restore keeps its own order of
    passes: objects, then privileges, then default privileges)."""
    listfile = toc.write_list(entries)
    argv = [suite.tool("pg_restore"), "--file=-", f"--use-list={listfile}", str(archive)]
    # stderr to a file, not a pipe: a chatty pg_restore must never block on a full stderr pipe
    # while we wait on its stdout.
    with tempfile.TemporaryFile() as errf:
        proc = pgtools.popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=errf)
        try:
            while chunk := proc.stdout.read(CHUNK):
                yield chunk
            proc.wait()
        finally:
            pgtools.stop(proc)
            listfile.unlink(missing_ok=True)
        errf.seek(0)
        err = errf.read()
    if proc.returncode != 0:
        raise RestoreFailed(f"pg_restore could not read {archive.name}: {pgtools.tail(err)}",
                            "the backup may be damaged; nothing was changed")


def plan_entries(plan: RestorePlan, archive: Path) -> list[toc.Entry]:
    """The archive's entries, less those the target's platform already owns."""

    def keep(e: toc.Entry) -> bool:
        if e.desc == "PUBLICATION" and e.tag in plan.skip_publications:
            return False
        if e.desc == "EVENT TRIGGER" and e.tag in plan.skip_event_triggers:
            return False
        if e.desc == "COMMENT" and e.tag_owner.startswith("EVENT TRIGGER "):
            return e.tag.split(" ", 2)[-1] not in plan.skip_event_triggers
        if e.desc == "COMMENT" and e.tag_owner.startswith("EXTENSION ") and plan.skip_extension_comments:
            return False
        if e.desc == "DEFAULT ACL" and e.tag_owner.rsplit(" ", 1)[-1] in plan.skip_acl_roles:
            return False
        return True

    return [e for e in toc.read(plan.suite, archive) if keep(e)]


def data_entries(suite: pgtools.PgSuite, archive: Path) -> list[toc.Entry]:
    """The data section, plus the large objects' own entries: archives before PostgreSQL 17
    create large objects in pre-data ("BLOB") and only fill them in the data section."""
    data_ids = {e.dump_id for e in toc.read(suite, archive, ["data"])}
    lo_extras = lambda e: e.desc in ("COMMENT", "SECURITY LABEL") and e.tag.startswith("LARGE OBJECT ")
    return [e for e in toc.read(suite, archive)
            if e.dump_id in data_ids or e.desc in ("BLOB", "BLOB METADATA") or lo_extras(e)]


def _file_chunks(path: Path) -> Iterator[bytes]:
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            yield chunk


def _psql(plan: RestorePlan, stderr_file) -> subprocess.Popen:
    argv = [
        plan.suite.tool("psql"), "--no-psqlrc", "--quiet", "--no-password",
        "--set=ON_ERROR_STOP=1", "--set=VERBOSITY=default", f"--dbname={plan.target.conninfo()}",
    ]
    return pgtools.popen(argv, env=plan.target.tool_env(), stdin=subprocess.PIPE,
                         stdout=subprocess.DEVNULL, stderr=stderr_file)


@dataclass
class RestoreResult:
    backup_id: str
    target: str
    tables_checked: int
    bytes_sent: int
    login_roles: list[str]


def execute_restore(plan: RestorePlan, store: LocalStore, *, step: Step = lambda m: None,
                    progress: Callable[[int], None] | None = None) -> RestoreResult:
    backup = plan.backup
    env = plan.target.tool_env()
    with tempfile.TemporaryFile() as errf:
        proc = _psql(plan, errf)
        feed = Feeder(proc, plan.server.major, progress)
        commit_sent = False
        interrupted_after_commit = False
        try:
            feed.sql("SET client_min_messages = warning;\nBEGIN;\n")
            if plan.roles_sql:
                step("roles")
                feed.sql(plan.roles_sql)
            if plan.mode == "data":
                # quiet before the TRUNCATE: an ON TRUNCATE trigger must not fire either
                feed.sql(quiet.start_sql(plan.truncate_tables, replica=plan.replica_mode, temp_table=plan.temp_ok))
            step("resetting the app's schemas" if plan.mode != "data" else f"emptying {len(plan.truncate_tables)} tables")
            feed.sql(plan.reset_sql)
            if backup.legacy:
                _feed_legacy(plan, store, feed, step)
            else:
                _feed_archives(plan, store, feed, env, step)
            if plan.mode == "data":
                feed.sql(quiet.end_sql(plan.truncate_tables, replica=plan.replica_mode, temp_table=plan.temp_ok))
            step("checking row counts against the manifest")
            feed.sql(check_sql(plan.checks))
            feed.sql("COMMIT;\n")
            commit_sent = True
            proc.stdin.close()
            proc.wait()
        except BrokenPipeError:
            proc.wait()  # psql stopped on an error; its message is in errf
        except KeyboardInterrupt:
            # COMMIT may already sit in psql's input (the script is small, or psql is blocked):
            # only psql's own exit status says whether it ran. psql exits 0 only when every
            # statement, COMMIT included, succeeded; a cancelled statement makes it exit 3.
            clean = pgtools.stop(proc)
            if clean and proc.returncode == 0 and commit_sent:
                interrupted_after_commit = True
            elif commit_sent and not clean:
                raise Interrupted("Restore interrupted while psql did not answer; the target holds either its old "
                                  "or the fully restored contents, never a mix", "check the target before going on") from None
            else:
                raise Interrupted("Restore interrupted; the target is unchanged (the transaction was rolled back)") from None
        except BaseException:
            pgtools.stop(proc)
            raise
        finally:
            if proc.poll() is None and not commit_sent:
                pgtools.stop(proc)
        if proc.returncode != 0 or not commit_sent:
            errf.seek(0)
            raise RestoreFailed(
                f"Restore failed and was rolled back, {plan.target.dbname} is unchanged: {_psql_error(errf.read())}",
                "fix the cause above and run the restore again",
            )
    if interrupted_after_commit:
        step("Ctrl-C arrived after the restore had committed; it is complete")
    return RestoreResult(backup.id, plan.target.display(), len(plan.checks), feed.sent, plan.login_roles)


def _psql_error(stderr: bytes) -> str:
    text = stderr.decode("utf-8", "replace")
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    errors = [ln for ln in lines if "ERROR:" in ln or "FATAL:" in ln]
    picked = errors[:1] or lines[-2:]
    msg = " ".join(picked)
    return re.sub(r"^psql:<stdin>:\d+: ", "", msg) or "psql exited early"


def _feed_archives(plan: RestorePlan, store: LocalStore, feed: Feeder, env: dict[str, str], step: Step) -> None:
    backup = plan.backup
    app = store.local_path(backup.id, "app.dump")
    platform_file = backup.file("platform")
    platform_data = platform_file and plan.mode in ("full", "data")
    entries = plan_entries(plan, app)
    is_acl = lambda e: e.desc in ("ACL", "DEFAULT ACL")
    lo_acl = lambda e: e.desc == "ACL" and e.tag.startswith("LARGE OBJECT ")
    if plan.mode == "schema":
        # Large objects are data: like pg_restore --schema-only, create none (archives before
        # 17 would otherwise make empty ones) and so none of their privileges or comments.
        entries = [e for e in entries if e.desc not in ("BLOB", "BLOB METADATA")
                   and not (e.desc in ("ACL", "COMMENT", "SECURITY LABEL") and e.tag.startswith("LARGE OBJECT "))]
    if plan.mode == "data":
        step("loading data")
        wanted = {e.dump_id for e in data_entries(plan.suite, app)}
        _feed_entries(plan, app, feed, env, [e for e in entries if e.dump_id in wanted])
    else:
        # The app's tables are new: their triggers and constraints come only in post-data.
        sections = ["pre-data", "data"] if plan.mode == "full" else ["pre-data"]
        wanted = {e.dump_id for e in toc.read(plan.suite, app, sections)}
        step("loading schema and data" if plan.mode == "full" else "loading schema")
        _feed_entries(plan, app, feed, env, [e for e in entries if e.dump_id in wanted and not is_acl(e)])
    if platform_data:
        step("loading platform data")
        platform_archive = store.local_path(backup.id, platform_file["name"])
        if plan.mode != "data":
            # Platform tables (auth.users, ...) keep their triggers and constraints.
            feed.sql(quiet.start_sql(plan.platform_tables, replica=plan.replica_mode, temp_table=plan.temp_ok))
        _feed_entries(plan, platform_archive, feed, env, toc.read(plan.suite, platform_archive, ["data"]))
        if plan.mode != "data":
            feed.sql(quiet.end_sql(plan.platform_tables, replica=plan.replica_mode, temp_table=plan.temp_ok))
    # Privileges after the rows, as pg_restore itself orders them; large objects' only when
    # this restore created them.
    acls = [e for e in entries if is_acl(e) and (plan.mode != "data" or lo_acl(e))]
    if acls:
        feed.script(_pg_restore_chunks(plan.suite, app, env, acls), line_filter=acl_filter(plan.server.major))
    if plan.mode != "data":
        step("building indexes, constraints, triggers and policies")
        wanted = {e.dump_id for e in toc.read(plan.suite, app, ["post-data"])}
        _feed_entries(plan, app, feed, env, [e for e in entries if e.dump_id in wanted and not is_acl(e)])
        if plan.additions_sql:
            step("re-adding the app's triggers and policies on platform tables")
            feed.sql(plan.additions_sql)


def _feed_entries(plan: RestorePlan, archive: Path, feed: Feeder, env: dict[str, str], entries: list[toc.Entry]) -> None:
    """Large-object contents ("BLOBS") go through a script of their own: pg_restore wraps them
    in its own BEGIN; ... COMMIT;, and that COMMIT would commit our whole transaction halfway.
    That script holds only one-line lo_open/lowrite/lo_close calls, so dropping exactly those
    two lines is safe; everything else streams untouched."""
    lo_data = [e for e in entries if e.desc == "BLOBS"]
    rest = [e for e in entries if e.desc != "BLOBS"]
    if rest:
        feed.script(_pg_restore_chunks(plan.suite, archive, env, rest))
    if lo_data:
        feed.script(_pg_restore_chunks(plan.suite, archive, env, lo_data), line_filter=_no_transaction_control)


def _no_transaction_control(line: bytes) -> bytes | None:
    return None if line.rstrip(b"\r") in (b"BEGIN;", b"COMMIT;") else line


_PRIV_LIST = re.compile(rb"^((?:ALTER DEFAULT PRIVILEGES .*?)?(?:GRANT|REVOKE) )([A-Z(),_ \w\"]+?)( ON .*)$")


def acl_filter(target_major: int) -> Callable[[bytes], bytes | None]:
    """For servers before 17: drop the MAINTAIN privilege (new in 17, part of a PG17 table's
    ALL) from GRANT/REVOKE lines; a statement left with no privilege is dropped."""
    if target_major >= 17:
        return lambda line: line

    def rewrite(line: bytes) -> bytes | None:
        if b"MAINTAIN" not in line:
            return line
        m = _PRIV_LIST.match(line)
        if not m:
            return line
        privs = [p for p in m.group(2).split(b",") if p.strip() != b"MAINTAIN"]
        if not privs:
            return None
        return m.group(1) + b",".join(privs) + m.group(3)

    return rewrite


def _feed_legacy(plan: RestorePlan, store: LocalStore, feed: Feeder, step: Step) -> None:
    for name in plan.backup.legacy_files:
        kind = name.split("-", 1)[0]
        if plan.mode == "schema" and kind == "data":
            continue
        if plan.mode == "data" and kind == "schema":
            continue
        step(f"loading {name}")
        path = store.local_path("", name)
        # A data file loads into tables that already have their triggers and constraints (from
        # the schema file, or the target's own): quietly, as our own data-only restores do, or
        # the app's triggers fire on every row (touch updated_at, insert profiles twice).
        tables = sorted(set(legacy_copy_tables(path))) if kind == "data" and plan.mode != "data" else []
        feed.sql(quiet.start_sql(tables, replica=plan.replica_mode, temp_table=plan.temp_ok))
        feed.script(_legacy_lines(_file_chunks(path)))
        feed.sql(quiet.end_sql(tables, replica=plan.replica_mode, temp_table=plan.temp_ok))


def _legacy_lines(chunks: Iterator[bytes]) -> Iterator[bytes]:
    """A plain pg_dump file, minus the BEGIN;/COMMIT; pair pg_dump wraps around large-object
    contents (it would commit the restore's transaction halfway). Only that exact pattern is
    dropped (BEGIN; right before lo_open, COMMIT; right after lo_close); COPY data passes as is.
    Any other top-level transaction control cannot be told apart from a procedure body here,
    so it is left alone."""
    in_copy = False
    pending: list[bytes] = []  # a BEGIN; line and the blank lines after it
    last = b""
    buf = b""
    for chunk in chunks:
        buf += chunk
        lines = buf.split(b"\n")
        buf = lines.pop()
        out: list[bytes] = []
        for line in lines:
            bare = line.rstrip(b"\r")  # psql accepts CRLF files; so must this filter
            if in_copy:
                out.append(line)
                if bare == b"\\.":
                    in_copy = False
                continue
            if pending:
                if not bare.strip():
                    pending.append(line)
                    continue
                if bare.startswith(b"SELECT pg_catalog.lo_open("):
                    pending = pending[1:]  # drop the BEGIN;
                out.extend(pending)
                pending = []
            if bare == b"BEGIN;":
                pending = [line]
                continue
            if bare == b"COMMIT;" and last.startswith(b"SELECT pg_catalog.lo_close("):
                last = bare
                continue
            if bare.startswith(b"COPY ") and bare.rstrip().endswith(b"FROM stdin;"):
                in_copy = True
            if bare.strip():
                last = bare
            out.append(line)
        if out:
            yield b"".join(ln + b"\n" for ln in out)
    tail = b"".join(ln + b"\n" for ln in pending) + buf
    if tail:
        yield tail


# --- reset on its own -------------------------------------------------------------------------

@dataclass
class ResetPlan:
    target: Target
    server: dbinfo.ServerInfo
    platform: Platform
    drop_schemas: list[tuple[str, int]]
    drop_publications: list[str]
    drop_additions: list[str]
    large_objects: int
    sql: str


def plan_reset(target: Target) -> ResetPlan:
    """`invoke reset` alone: the app's schemas, publications, large objects and its triggers and
    policies on platform tables. Platform data (auth users, storage rows) is kept."""
    with target.connect(autocommit=True) as conn:
        server = dbinfo.server_info(conn)
        platform = detect(conn)
        present = dbinfo.app_schemas(conn, platform)
        tabs = dbinfo.tables(conn, present)
        pubs = [p for p in dbinfo.publications(conn) if not platform.is_platform_publication(p)]
        found = additions.find(conn, platform)
        los = dbinfo.large_object_count(conn)
        sql = reset_sql(conn, platform, drop_schemas=present, publications=pubs, large_objects=los > 0,
                        drop_additions=[a.drop_sql for a in found])
        return ResetPlan(
            target=target, server=server, platform=platform,
            drop_schemas=[(s, sum(1 for t in tabs if t[0] == s)) for s in present],
            drop_publications=pubs, drop_additions=[a.label for a in found], large_objects=los, sql=sql,
        )


def execute_reset(plan: ResetPlan) -> None:
    try:
        with plan.target.connect() as conn:
            with conn.transaction():
                conn.execute("SET LOCAL client_min_messages = warning")
                conn.execute(plan.sql.encode())
    except psycopg.Error as exc:
        raise RestoreFailed(f"Reset failed and was rolled back: {' '.join(str(exc).split())}",
                            "nothing was dropped; check the message") from None
