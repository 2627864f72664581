"""Restoring chosen tables of a backup: in place (`--table`, `--schema`) or beside the live
data in a new schema (`--into-schema`).

Both are one transaction on one connection, in which every statement is written by this tool:
rows travel from pg_restore to `COPY ... FROM STDIN` as data, never as SQL. For a copy beside
the live data, the table definitions are the archive's own statements, parsed by PostgreSQL's
parser (pglast), moved to the new schema on the parsed tree (the table, its owned sequences and
the `nextval()` defaults that name them) and printed again by that parser's printer, which
quotes every name; no SQL text is edited.

In place:
  foreign keys that touch a chosen table are set aside (their definitions read from the
  target's catalog), triggers are kept quiet (quiet.py), the tables are emptied with TRUNCATE
  ONLY, their rows and owned sequences' values are loaded, triggers come back, and each foreign
  key is added again, which validates it: a key the restored rows would break refuses the whole
  restore, naming the key and the `--table` to add.
Beside (`--into-schema NAME`):
  CREATE SCHEMA NAME, the tables (columns, defaults, checks, owned sequences), their rows, the
  sequences' values, then their primary keys, unique constraints and indexes; foreign keys only
  between tables restored together; no triggers, policies, grants or owners (the copy belongs to
  the restoring role and nothing else can read it).
Both end with the row counts checked against the manifest before COMMIT.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from pglast import ast
from pglast.enums import AlterTableType, ConstrType
from pglast.stream import RawStream

from .. import archivesql, catalog, dbinfo, pgtools, quiet, sqltext, toc
from .. import manifest as manifest_mod
from ..catalog import Backup
from ..conn import Target
from ..errors import Interrupted, NotFound, RestoreFailed, UsageError
from ..platform import Platform, detect
from ..storage import LocalStore
from . import statements
from .execute import BlockerWatch, _lock_timeout

Step = Callable[[str], None]
Name = tuple[str, str]


def shown(name: Name) -> str:
    return f"{name[0]}.{name[1]}"


def option(name: Name) -> str:
    """The flag that names this table, as it must be typed (quoted where the name needs it)."""
    import shlex

    plain = all(p and p == p.lower() and p.replace("_", "a").isalnum() and not p[0].isdigit() for p in name)
    return "--table " + shlex.quote(shown(name) if plain else sqltext.qualified(*name))


@dataclass(frozen=True)
class Link:
    """A foreign key of the target that joins a restored table to one the restore leaves alone."""

    name: str
    child: Name
    parent: Name
    definition: str
    outside: Name  # the table left alone

    def describe(self) -> str:
        return f"{self.name} ({shown(self.child)} -> {shown(self.parent)})"


@dataclass(frozen=True)
class ForeignKey:
    name: str
    child: Name
    definition: str
    comment: str | None = None  # set aside with the key, put back with it


@dataclass(frozen=True)
class TablePlan:
    backup: Backup
    target: Target
    server: dbinfo.ServerInfo
    platform: Platform
    suite: pgtools.PgSuite
    authenticity: manifest_mod.Authenticity
    tables: tuple[tuple[str, str, int], ...]  # (schema, table, rows in the backup)
    into_schema: str | None = None
    checked_files: tuple[str, ...] = ()
    pinned: dict[str, int] = field(default_factory=dict)
    pinned_stamps: dict[str, tuple[int, int, int]] = field(default_factory=dict)
    data: tuple[tuple[Name, toc.Entry], ...] = ()  # each table's TABLE DATA entry
    links: tuple[Link, ...] = ()  # in place: keys to tables left alone
    foreign_keys: tuple[ForeignKey, ...] = ()  # in place: every key touching a restored table
    sequences: tuple[tuple[Name, int, bool], ...] = ()  # owned sequences' values (setval)
    before: tuple[str, ...] = ()  # beside: the schema, tables and sequences
    after: tuple[str, ...] = ()  # beside: keys and indexes
    live_rows: tuple[int | None, ...] = ()  # in place: each table's rows now
    replica_mode: bool = False
    temp_ok: bool = True
    target_size: int = 0
    warnings: tuple[str, ...] = ()

    def names(self) -> list[Name]:
        return [(s, t) for s, t, _ in self.tables]

    def placed(self, name: Name) -> Name:
        return (self.into_schema, name[1]) if self.into_schema else name

    def summary_rows(self) -> list[tuple[str, str]]:
        b = self.backup
        rows = [
            ("backup", f"{b.id}" + (f"  [{b.label}]" if b.label else "")),
            ("created", b.created),
            ("source", str((b.manifest.get("source") or {}).get("url", ""))),
            ("checksums", f"{len(self.checked_files)} files verified" if self.checked_files else "none to verify"),
            ("signature", self.authenticity.text),
            ("target", f"{self.target.display()}  (PostgreSQL {self.server.version}, {self.platform.name})"),
            ("target database", self.target.dbname),
        ]
        if self.into_schema:
            rows.append(("will create", f"schema {self.into_schema} (new; nothing else changes)"))
            for (s, t, n), (_, placed) in zip(self.tables, (self.placed(x) for x in self.names()), strict=True):
                rows.append(("will create", f"{self.into_schema}.{placed}: the backup's {s}.{t}, {n} rows"))
            seqs = [shown(self.placed_seq(q)) for q, _, _ in self.sequences]
            if seqs:
                rows.append(("will create", "sequences " + ", ".join(seqs)))
            rows.append(("will not create", "triggers, policies, grants, foreign keys to other tables: only you can read the copy"))
            rows.append(("undo", f"DROP SCHEMA {sqltext.ident(self.into_schema)} CASCADE"))
        else:
            for (s, t, n), now in zip(self.tables, self.live_rows, strict=True):
                rows.append(("will replace", f"rows of {s}.{t}: {'?' if now is None else now} now, {n} from the backup"))
            if self.sequences:
                rows.append(("will set", "sequences " + ", ".join(shown(q) for q, _, _ in self.sequences) + " to the backup's values"))
            for link in self.links:
                rows.append(("foreign key", f"{link.describe()} joins a table left alone ({shown(link.outside)}): checked before COMMIT"))
            rows.append(("keeps", "every other table, the schema, triggers (none fire while rows load), grants"))
        return rows

    def placed_seq(self, name: Name) -> Name:
        return (self.into_schema, name[1]) if self.into_schema else name


# -- choosing tables ---------------------------------------------------------------------------


def choose(
    record: manifest_mod.Manifest, tables: tuple[str, ...], schemas: tuple[str, ...], partitions: dict[Name, list[Name]] | None = None
) -> list[tuple[str, str, int]]:
    """The backup's tables named by `--table` (`schema.table`, quoted where a name needs it,
    or a table name found in one schema only) and `--schema`, in the manifest's order. A
    partitioned table stands for its partitions (`partitions`: each partitioned table's own,
    from the archive), down to the ones that hold rows."""
    app = [t for t in record.tables if t.section == "app"]
    kinds = {(t.schema, t.name): t.kind for t in app}
    picked = _pick(record, app, tables, schemas)
    for name in sorted(n for n in picked if kinds.get(n) == "partitioned"):
        if partitions is None:
            raise UsageError(f"{shown(name)} is a partitioned table", "name its partitions with --table")
        picked.discard(name)
        todo, leaves = list(partitions.get(name, ())), []
        while todo:
            part = todo.pop(0)
            if kinds.get(part) == "partitioned":
                todo.extend(partitions.get(part, ()))
            elif kinds.get(part) == "table":
                leaves.append(part)
        if not leaves:
            raise UsageError(f"{shown(name)} is a partitioned table with no partitions in backup {record.id}", "there are no rows to restore")
        picked.update(leaves)
    out = []
    for t in app:
        if (t.schema, t.name) in picked:
            if t.kind != "table":
                raise UsageError(f"{shown((t.schema, t.name))} is a {t.kind}; table restores take tables", "restore the whole backup")
            out.append((t.schema, t.name, int(t.rows or 0)))
    return out


def _pick(record: manifest_mod.Manifest, app: list[manifest_mod.TableEntry], tables: tuple[str, ...], schemas: tuple[str, ...]) -> set[Name]:
    picked: set[Name] = set()
    for spec in tables:
        found = _find(app, spec)
        if not found:
            raise NotFound(
                f"Backup {record.id} has no table {spec!r}",
                'name it as schema.table (see the manifest\'s tables), quoting parts that need it: \'"My Schema"."Table"\'',
            )
        if len(found) > 1:
            raise UsageError(f"{spec!r} names several tables of backup {record.id}: " + ", ".join(shown(f) for f in found), "name it as schema.table")
        picked.add(found[0])
    for schema in schemas:
        inside = [(t.schema, t.name) for t in app if t.schema == schema]
        if not inside:
            raise NotFound(f"Backup {record.id} has no table in schema {schema!r}", "see `invoke list` and the backup's manifest")
        picked.update(inside)
    return picked


def _ancestors(partitions: dict[Name, list[Name]], names: list[Name]) -> list[Name]:
    """The partitioned tables above these partitions, nearest first."""
    parent_of = {child: parent for parent, children in partitions.items() for child in children}
    out: list[Name] = []
    for name in names:
        up = parent_of.get(name)
        while up is not None and up not in out:
            out.append(up)
            up = parent_of.get(up)
    return out


def _partitions(suite: pgtools.PgSuite, archive: Path) -> dict[Name, list[Name]]:
    """Each partitioned table's partitions, from the archive's `ALTER TABLE ONLY parent ATTACH
    PARTITION child` statements (parsed; the TOC's text is not exact for every name)."""
    attach = [e for e in toc.read(suite, archive) if e.desc == "TABLE ATTACH"]
    out: dict[Name, list[Name]] = {}
    if not attach:
        return out
    for raw in archivesql.parse(archivesql.render(suite, archive, attach), archive):
        st = raw.stmt
        if not isinstance(st, ast.AlterTableStmt) or (parent := archivesql.relname(st.relation)) is None:
            continue
        for cmd in st.cmds or ():
            if cmd.subtype == AlterTableType.AT_AttachPartition and isinstance(cmd.def_, ast.PartitionCmd):
                child = archivesql.relname(cmd.def_.name)
                if child is not None:
                    out.setdefault(parent, []).append(child)
    return out


def _find(app: list[manifest_mod.TableEntry], spec: str) -> list[Name]:
    names = [(t.schema, t.name) for t in app]
    if spec.startswith('"'):
        parts = archivesql.split_qualified(spec)
        cand = [n for n in names if (len(parts) == 2 and n == parts) or (len(parts) == 1 and n[1] == parts[0])]
        return cand
    exact = [n for n in names if shown(n) == spec]
    if exact:
        return exact
    return [n for n in names if n[1] == spec]


# -- planning ---------------------------------------------------------------------------------


def plan_tables(
    store: LocalStore,
    backup: Backup,
    target: Target,
    *,
    tables: tuple[str, ...] = (),
    schemas: tuple[str, ...] = (),
    into_schema: str | None = None,
    pg_bin_dir: str | None = None,
    signing_key: manifest_mod.SigningKey | None = None,
    step: Step = lambda m: None,
) -> TablePlan:
    """Everything a table restore will do, checked without changing the target."""
    if backup.legacy:
        raise UsageError("Table restores take backups made by this tool, not the runbook's files", "restore the whole file set, or back it up first")
    if backup.kind == "schema":
        raise UsageError(f"Backup {backup.id} holds no rows (schema only)", "pick a full or data backup")
    if into_schema is not None:
        into_schema = into_schema.strip()
        if not into_schema or "\x00" in into_schema or len(into_schema.encode()) > 63:
            raise UsageError("--into-schema needs a schema name of 1 to 63 bytes", "for example --into-schema restored_2026_11_24")
    record = backup.record
    app = [t for t in record.tables if t.section == "app"]
    _pick(record, app, tables, schemas)  # a name the backup lacks: said before any work
    key = signing_key if signing_key is not None else manifest_mod.signing_key(None, create=False)
    authenticity = manifest_mod.check(store.local_path(backup.id, ""), key, backup.manifest_bytes)
    step("verifying checksums")
    pinned = catalog.pin(store, backup)
    try:
        return _plan(backup, target, (tables, schemas), into_schema, pg_bin_dir, record, authenticity, pinned, step)
    except BaseException:
        catalog.unpin(pinned)
        raise


def _plan(backup, target, named, into_schema, pg_bin_dir, record, authenticity, pinned, step) -> TablePlan:
    app_file = record.file("app")
    if app_file is None:
        raise RestoreFailed(f"Backup {backup.id} has no app archive", "restore another backup")
    step(f"connecting to {target.display()}")
    with target.connect(autocommit=True) as conn:
        server = dbinfo.server_info(conn)
        platform = detect(conn)
        suite = pgtools.pick(
            pgtools.discover(pg_bin_dir),
            at_least=max(record.pg_dump_major, 0),
            prefer=record.pg_dump_major or server.major,
            tools=("pg_restore",),
            purpose=f"reading a backup made with pg_dump {record.pg_dump_major}",
        )
        archive = catalog.pinned_path(pinned[app_file.name])
        tables, schemas = named
        partitions = _partitions(suite, archive)
        chosen = choose(record, tables, schemas, partitions)
        names = [(s, t) for s, t, _ in chosen]
        step("reading the chosen tables from the archive")
        facts = _archive_facts(suite, archive, names)
        missing = [n for n in names if n not in facts.data]
        if missing:
            raise RestoreFailed(
                f"The archive of backup {backup.id} holds no rows for {', '.join(shown(n) for n in missing)}", "restore another backup"
            )
        kw: dict = {}
        warnings: list[str] = list(backup.notes)
        if into_schema:
            if conn.execute("SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = %s", (into_schema,)).fetchone():
                raise UsageError(
                    f"Schema {into_schema} already exists in {target.dbname}; nothing was changed",
                    "pick a new name with --into-schema (the restore creates it), or drop that schema first",
                )
            before, after = _beside(facts, names, into_schema, archive)
            kw.update(before=tuple(before), after=tuple(after))
            kw["sequences"] = tuple(((into_schema, q[1]), v, c) for q, v, c in facts.setvals if q in facts.owned)
        else:
            present = {(s, t): kind for s, t, kind in dbinfo.tables(conn, sorted({n[0] for n in names}))}
            absent = [n for n in names if n not in present]
            if absent:
                raise UsageError(
                    f"The target has no table {', '.join(shown(n) for n in absent)} to restore rows into; nothing was changed",
                    "restore it beside the live data with --into-schema NAME, or restore the whole backup",
                )
            # a key on (or to) a partitioned table that holds a restored partition is set aside too:
            # TRUNCATE refuses a partition whose partitioned table a key references
            scope = names + _ancestors(partitions, names)
            fks = _foreign_keys(conn, scope)
            kw["foreign_keys"] = tuple(ForeignKey(name, child, d, comment) for name, child, _, d, comment in fks)
            kw["links"] = tuple(
                Link(name, child, parent, d, parent if child in scope else child)
                for name, child, parent, d, _ in fks
                if not (child in scope and parent in scope)
            )
            kw["sequences"] = tuple((q, v, c) for q, v, c in facts.setvals if q in facts.owned)
            kw["live_rows"] = tuple(_count(conn, n) for n in names)
            kw["replica_mode"] = dbinfo.can_set_replication_role(conn)
            kw["temp_ok"] = bool(conn.execute("SELECT has_database_privilege(current_database(), 'TEMP')").fetchone()[0])
        kw["target_size"] = dbinfo.database_size(conn)
        return TablePlan(
            backup=backup,
            target=target,
            server=server,
            platform=platform,
            suite=suite,
            authenticity=authenticity,
            tables=tuple(chosen),
            into_schema=into_schema,
            checked_files=tuple(pinned),
            pinned=pinned,
            pinned_stamps=catalog.stamps(pinned),
            data=tuple((n, facts.data[n]) for n in names),
            warnings=tuple(warnings),
            **kw,
        )


def _count(conn: psycopg.Connection, name: Name) -> int | None:
    try:
        return int(conn.execute(f"SELECT count(*) FROM ONLY {sqltext.qualified(*name)}").fetchone()[0])
    except psycopg.Error:
        return None


_FK_SQL = """
SELECT k.conname, cn.nspname, c.relname, pn.nspname, p.relname, pg_catalog.pg_get_constraintdef(k.oid),
       pg_catalog.obj_description(k.oid, 'pg_constraint')
FROM pg_catalog.pg_constraint k
JOIN pg_catalog.pg_class c ON c.oid = k.conrelid JOIN pg_catalog.pg_namespace cn ON cn.oid = c.relnamespace
JOIN pg_catalog.pg_class p ON p.oid = k.confrelid JOIN pg_catalog.pg_namespace pn ON pn.oid = p.relnamespace
WHERE k.contype = 'f' AND k.conparentid = 0
  AND ((cn.nspname, c.relname) IN (SELECT u.s, u.t FROM ROWS FROM (pg_catalog.unnest(%s::text[]), pg_catalog.unnest(%s::text[])) AS u(s, t))
    OR (pn.nspname, p.relname) IN (SELECT u.s, u.t FROM ROWS FROM (pg_catalog.unnest(%s::text[]), pg_catalog.unnest(%s::text[])) AS u(s, t)))
ORDER BY 2, 3, 1
"""


def _foreign_keys(conn: psycopg.Connection, names: list[Name]) -> list[tuple[str, Name, Name, str, str | None]]:
    s, t = [n[0] for n in names], [n[1] for n in names]
    rows = conn.execute(_FK_SQL, (s, t, s, t)).fetchall()
    return [(r[0], (r[1], r[2]), (r[3], r[4]), r[5], r[6]) for r in rows]


# -- what the archive says about the chosen tables -------------------------------------------


@dataclass
class _Facts:
    statements: list[ast.Node]
    data: dict[Name, toc.Entry]
    owned: set[Name]  # sequences owned by a chosen table (serial or identity)
    setvals: list[tuple[Name, int, bool]]


_DDL = {"TABLE", "SEQUENCE", "SEQUENCE OWNED BY", "DEFAULT", "CONSTRAINT", "CHECK CONSTRAINT", "INDEX", "FK CONSTRAINT", "SEQUENCE SET"}


def _maybe(e: toc.Entry, schemas: set[str]) -> bool:
    """A cheap first cut of the TOC (its text is not exact for names with spaces or newlines:
    anything that might match is kept, and the parsed statement decides)."""
    return e.schema in schemas or any((" " in s or "\n" in s) and s.replace("\n", " ") in e.line for s in schemas)


def _archive_facts(suite: pgtools.PgSuite, archive: Path, names: list[Name]) -> _Facts:
    entries = toc.read(suite, archive)
    schemas = {n[0] for n in names}
    wanted = set(names)
    picked = [e for e in entries if e.desc in _DDL and _maybe(e, schemas)]
    stmts: list[ast.Node] = [r.stmt for r in archivesql.parse(archivesql.render(suite, archive, picked), archive) if r.stmt is not None]
    owned: set[Name] = set()
    for st in stmts:
        if isinstance(st, ast.AlterSeqStmt):
            for opt in st.options or ():
                parts = archivesql.string_list(opt.arg) if opt.defname == "owned_by" else ()
                if len(parts) == 3 and parts[:2] in wanted and (q := archivesql.relname(st.sequence)):
                    owned.add(q)
        if isinstance(st, ast.AlterTableStmt) and archivesql.relname(st.relation) in wanted:
            for cmd in st.cmds or ():
                if cmd.subtype == AlterTableType.AT_AddIdentity and isinstance(cmd.def_, ast.Constraint):
                    for opt in cmd.def_.options or ():
                        parts = archivesql.string_list(opt.arg) if opt.defname == "sequence_name" else ()
                        if len(parts) == 2:
                            owned.add((parts[0], parts[1]))
    setvals = []
    for st in stmts:
        sv = _setval(st)
        if sv:
            setvals.append(sv)
    data: dict[Name, toc.Entry] = {}
    for e in entries:
        if e.desc == "TABLE DATA" and _maybe(e, schemas) and any(n[1].replace("\n", " ") in e.tag_owner for n in names):
            stmt = archivesql.copy_statement(suite, archive, e)
            name = archivesql.relname(stmt.relation) if stmt is not None else None
            if name in wanted and name is not None:
                data[name] = e
    return _Facts(stmts, data, owned, setvals)


def _setval(st: Any) -> tuple[Name, int, bool] | None:
    """pg_dump's `SELECT pg_catalog.setval('s.n', 42, true);` as (name, value, is_called)."""
    if not isinstance(st, ast.SelectStmt) or not st.targetList or len(st.targetList) != 1:
        return None
    fn: Any = st.targetList[0].val
    if not isinstance(fn, ast.FuncCall) or archivesql.string_list(fn.funcname)[-1:] != ("setval",) or len(fn.args or ()) != 3:
        return None
    args: Any = fn.args
    a, b, c = args
    try:
        parts = archivesql.split_qualified(a.val.sval)
        raw: Any = b.val.ival if isinstance(b.val, ast.Integer) else b.val.fval
        value = int(raw)
        called = bool(c.val.boolval)
    except (AttributeError, TypeError, ValueError):
        return None
    return ((parts[0], parts[1]), value, called) if len(parts) == 2 else None


def _beside(facts: _Facts, names: list[Name], schema: str, archive: Path) -> tuple[list[str], list[str]]:
    """The archive's statements for the chosen tables and their owned sequences, moved to
    `schema` on the parsed tree and printed by pglast; keys and indexes come after the rows."""
    wanted = set(names)
    moved = wanted | facts.owned
    before = [f"CREATE SCHEMA {sqltext.ident(schema)};"]
    after: list[str] = []

    def move(node: ast.Node) -> None:
        for n in archivesql.walk(node):
            if isinstance(n, ast.RangeVar) and archivesql.relname(n) in moved:
                n.schemaname = schema
            elif isinstance(n, ast.DefElem) and n.defname in ("sequence_name", "owned_by"):
                parts = archivesql.string_list(n.arg)
                if len(parts) >= 2 and parts[:2] in moved:
                    n.arg = (ast.String(sval=schema),) + tuple(ast.String(sval=p) for p in parts[1:])
            elif isinstance(n, ast.FuncCall) and archivesql.string_list(n.funcname)[-1:] == ("nextval",):
                for arg in n.args or ():
                    const = arg.arg if isinstance(arg, ast.TypeCast) else arg
                    if isinstance(const, ast.A_Const) and isinstance(const.val, ast.String):
                        parts = archivesql.split_qualified(const.val.sval or "")
                        if len(parts) == 2 and parts in moved:
                            const.val = ast.String(sval=sqltext.qualified(schema, parts[1]))

    for st in facts.statements:
        keep: str | None = None
        if isinstance(st, ast.CreateStmt) and archivesql.relname(st.relation) in wanted:
            if st.inhRelations or st.partbound or st.partspec:
                raise UsageError(
                    f"{shown(archivesql.relname(st.relation) or ('', ''))} is part of an inheritance or partition tree; "
                    "--into-schema copies ordinary tables",
                    "restore it in place, or restore the whole backup into another database",
                )
            keep = "before"
        elif isinstance(st, ast.CreateSeqStmt) and archivesql.relname(st.sequence) in facts.owned:
            keep = "before"
        elif isinstance(st, ast.AlterSeqStmt) and archivesql.relname(st.sequence) in facts.owned:
            keep = "before"
        elif isinstance(st, ast.IndexStmt) and archivesql.relname(st.relation) in wanted:
            keep = "after"
        elif isinstance(st, ast.AlterTableStmt) and archivesql.relname(st.relation) in wanted:
            cmds = []
            for cmd in st.cmds or ():
                if cmd.subtype in (AlterTableType.AT_ColumnDefault, AlterTableType.AT_AddIdentity):
                    cmds.append(cmd)
                elif cmd.subtype == AlterTableType.AT_AddConstraint and isinstance(cmd.def_, ast.Constraint):
                    c = cmd.def_
                    if c.contype == ConstrType.CONSTR_FOREIGN and archivesql.relname(c.pktable) not in wanted:
                        continue  # a key to a table not restored with it
                    cmds.append(cmd)
            if cmds:
                st.cmds = tuple(cmds)
                late = any(c.subtype == AlterTableType.AT_AddConstraint for c in cmds)
                keep = "after" if late else "before"
        if keep:
            move(st)
            text = RawStream()(st) + ";"
            (before if keep == "before" else after).append(text)
    return before, after


# -- executing ------------------------------------------------------------------------------


@dataclass
class TableResult:
    backup_id: str
    target: str
    tables: list[Name]
    rows: int


class ForeignKeyRefused(RestoreFailed):
    pass


def execute_tables(plan: TablePlan, *, commit: bool = True, step: Step = lambda m: None, lock_timeout_ms: int = 30_000) -> TableResult:
    """Run the plan in one transaction; `commit=False` rehearses it and rolls back (to refuse a
    restore that would break a foreign key before anything is asked or changed)."""
    try:
        return _execute(plan, commit, step, lock_timeout_ms)
    finally:
        if commit:
            catalog.unpin(plan.pinned)


def _execute(plan: TablePlan, commit: bool, step: Step, lock_timeout_ms: int) -> TableResult:
    archive = catalog.pinned_path(plan.pinned[plan.backup.record.file("app").name])  # type: ignore[union-attr]
    names = plan.names()
    unchanged = f"rolled back, {plan.target.dbname} is unchanged"
    # found by this name, the sessions that block the restore's are named while it waits
    appname = "fortress-tables-" + sqltext.restrict_key()[:16]
    watch: BlockerWatch | None = None
    try:
        with plan.target.connect(autocommit=True) as monitor, plan.target.connect() as conn:
            conn.execute("SELECT pg_catalog.set_config('application_name', %s, false)", (appname,))
            conn.commit()
            watch = BlockerWatch(monitor, appname, step)
            with watch:
                total = _run(conn, plan, archive, names, step, lock_timeout_ms, unchanged, commit)
    except KeyboardInterrupt:
        raise Interrupted(f"Restore interrupted; {unchanged}") from None
    except psycopg.errors.LockNotAvailable:
        if watch is not None and watch.seen:
            raise _lock_timeout(plan.target.dbname, lock_timeout_ms, watch.seen) from None
        with plan.target.connect(autocommit=True) as c2:
            holders = ", ".join(dbinfo.lock_holders(c2)) or "a session that has ended since"
        raise RestoreFailed(
            f"Restore of {plan.target.dbname} waited {lock_timeout_ms / 1000:g} s (LOCK_TIMEOUT) for a lock held by {holders}; {unchanged}",
            "wait for that session to end, or end it with SELECT pg_terminate_backend(pid); then restore again",
        ) from None
    except psycopg.Error as exc:
        msg = (exc.diag.message_primary or str(exc)).strip()
        hint = "fix the cause and run the restore again"
        if "restore check failed" in msg:
            hint = "the backup's archive and its manifest disagree: restore another backup (see `invoke list`)"
        raise RestoreFailed(f"Restore failed, {unchanged}: {msg}", hint) from None
    return TableResult(plan.backup.id, plan.target.display(), [plan.placed(n) for n in names], total)


def _run(
    conn: psycopg.Connection, plan: TablePlan, archive: Path, names: list[Name], step: Step, lock_timeout_ms: int, unchanged: str, commit: bool
) -> int:
    conn.execute("SELECT pg_catalog.set_config('lock_timeout', %s, true)", (f"{lock_timeout_ms}ms",))
    conn.execute("SET LOCAL client_min_messages = warning")
    if plan.into_schema:
        step(f"creating schema {plan.into_schema} and {len(names)} tables")
        for text in plan.before:
            conn.execute(text)
    else:
        step(f"setting aside {len(plan.foreign_keys)} foreign keys; emptying {len(names)} tables")
        for fk in plan.foreign_keys:
            conn.execute(f"ALTER TABLE {sqltext.qualified(*fk.child)} DROP CONSTRAINT {sqltext.ident(fk.name)}")
        conn.execute(quiet.start_sql(names, replica=plan.replica_mode, temp_table=plan.temp_ok))
        conn.execute("TRUNCATE " + ", ".join(f"ONLY {sqltext.qualified(*n)}" for n in names))
    total = 0
    for name, entry in plan.data:
        step(f"loading {shown(name)}" + (f" into {shown(plan.placed(name))}" if plan.into_schema else ""))
        total += _load(conn, plan, archive, entry, plan.placed(name))
    for seq, value, called in plan.sequences:
        conn.execute("SELECT pg_catalog.setval(%s::regclass, %s, %s)", (sqltext.qualified(*seq), value, called))
    if plan.into_schema:
        step("adding keys and indexes")
        for text in plan.after:
            conn.execute(text)
    else:
        conn.execute(quiet.end_sql(names, replica=plan.replica_mode, temp_table=plan.temp_ok))
        step("adding the foreign keys again (each one checked)")
        for fk in plan.foreign_keys:
            _readd(conn, plan, fk, names)
    step("checking row counts against the manifest")
    check = statements.check_sql([(*plan.placed((s, t)), n) for s, t, n in plan.tables])
    if check:
        conn.execute(check)
    catalog.require_unchanged(plan.pinned, plan.pinned_stamps, plan.backup.id, unchanged)
    if commit:
        conn.commit()
    else:
        conn.rollback()
    return total


def _readd(conn: psycopg.Connection, plan: TablePlan, fk: ForeignKey, names: list[Name]) -> None:
    try:
        with conn.transaction():
            conn.execute(f"ALTER TABLE {sqltext.qualified(*fk.child)} ADD CONSTRAINT {sqltext.ident(fk.name)} {fk.definition}")
            if fk.comment is not None:
                conn.execute(f"COMMENT ON CONSTRAINT {sqltext.ident(fk.name)} ON {sqltext.qualified(*fk.child)} IS {sqltext.literal(fk.comment)}")
    except psycopg.errors.ForeignKeyViolation as exc:
        link = next((li for li in plan.links if li.name == fk.name and li.child == fk.child), None)
        detail = (exc.diag.message_detail or "").strip()
        other = link.outside if link else None
        raise ForeignKeyRefused(
            f"Refusing to restore {', '.join(shown(n) for n in names)}: foreign key {fk.name} of {shown(fk.child)} would be violated"
            + (f" ({detail})" if detail else "")
            + f"; rolled back, {plan.target.dbname} is unchanged",
            (f"restore {shown(other)} with it: add {option(other)}" if other else "restore the tables it joins together")
            + ", or restore beside the live data with --into-schema NAME",
        ) from None


def _load(conn: psycopg.Connection, plan: TablePlan, archive: Path, entry: toc.Entry, into: Name) -> int:
    with archivesql.copy_data(plan.suite, archive, entry, {}) as data:
        if data is None:
            return 0
        rel = data.stmt.relation
        if rel is None:
            return 0
        rel.schemaname, rel.relname = into
        rel.inh = True
        copy_sql = RawStream()(data.stmt)
        old = conn.execute("SELECT pg_catalog.current_setting('client_encoding')").fetchone()[0]
        conn.execute("SELECT pg_catalog.set_config('client_encoding', %s, true)", (data.encoding,))
        sent = 0
        with conn.cursor().copy(copy_sql) as cp:
            for chunk in data.chunks:
                cp.write(chunk)
                sent += chunk.count(b"\n")
        conn.execute("SELECT pg_catalog.set_config('client_encoding', %s, true)", (old,))
        return sent


__all__ = ["TablePlan", "TableResult", "plan_tables", "execute_tables", "choose", "ForeignKeyRefused"]
