"""`invoke diff A B` and `invoke schema --out FILE`: the app's schema, object by object.

A schema is read from a backup's archive (or from a schema-only dump of a live database, made
the way `invoke backup` makes one): every entry that is not data, as pg_restore writes it, keyed
by what pg_restore's own header names it (type, schema, name). pg_dump's output is deterministic
for a given schema, so the same two backups always give the same report. Nothing is run.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from pathlib import Path

import pglast
from pglast import ast
from pglast.stream import RawStream

from . import archivesql, pgtools, toc

# entries that are data, or settings of the dump rather than objects
_NOT_SCHEMA = {
    "TABLE DATA",
    "SEQUENCE SET",
    "BLOB",
    "BLOBS",
    "BLOB METADATA",
    "LARGE OBJECT",
    "MATERIALIZED VIEW DATA",
    "ENCODING",
    "STDSTRINGS",
    "SEARCHPATH",
    "DATABASE",
    "DATABASE PROPERTIES",
    "STATISTICS DATA",
}
KINDS = {
    "TABLE": "table",
    "INDEX": "index",
    "CONSTRAINT": "constraint",
    "FK CONSTRAINT": "constraint",
    "CHECK CONSTRAINT": "constraint",
    "POLICY": "policy",
    "ROW SECURITY": "row security",
    "TRIGGER": "trigger",
    "FUNCTION": "function",
    "PROCEDURE": "function",
    "AGGREGATE": "function",
    "ACL": "grant",
    "DEFAULT ACL": "default grant",
    "DEFAULT": "column default",
}
_HEADER = re.compile(r"^--\n-- (?:Data for )?Name: (.*); Type: (.*); Schema: (.*); Owner: (.*)\n--\n", re.M)
_SETS = re.compile(r"^SET (default_tablespace|default_table_access_method) = [^;\n]*;$", re.M)


@dataclass(frozen=True)
class Obj:
    kind: str
    schema: str
    name: str
    owner: str
    definition: str

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.kind, self.schema, self.name)

    def label(self) -> str:
        where = f"{self.schema}." if self.schema and self.schema != "-" else ""
        return f"{self.kind} {where}{self.name}"


def read(suite: pgtools.PgSuite, archive: Path) -> dict[tuple[str, str, str], Obj]:
    """Every schema object of an archive, by (kind, schema, name)."""
    entries = [e for e in toc.read(suite, archive) if e.desc not in _NOT_SCHEMA]
    chunks = _split(archivesql.render(suite, archive, entries), entries)
    if chunks is None:  # a definition holds text like pg_restore's header: one entry at a time
        chunks = []
        for e in entries:
            one = _split(archivesql.render(suite, archive, [e]), [e])
            chunks.extend(one or [])
    out: dict[tuple[str, str, str], Obj] = {}
    for name, desc, schema, owner, text in chunks:
        obj = Obj(KINDS.get(desc, desc.lower()), schema, name, owner, text)
        if obj.key in out:  # same name and kind twice (a grant to several roles): one object
            obj = Obj(obj.kind, schema, name, owner, out[obj.key].definition + "\n" + text)
        out[obj.key] = obj
    return out


def _split(script: str, entries: list[toc.Entry]) -> list[tuple[str, str, str, str, str]] | None:
    heads = list(_HEADER.finditer(script))
    if len(heads) != len(entries) or any(m.group(2) != e.desc for m, e in zip(heads, entries, strict=True)):
        return None
    out = []
    for i, m in enumerate(heads):
        end = heads[i + 1].start() if i + 1 < len(heads) else script.find("\n--\n-- PostgreSQL database dump complete", m.end())
        body = script[m.end() : end if end >= 0 else len(script)]
        body = _SETS.sub("", body)
        lines = [ln.rstrip() for ln in body.strip("\n").split("\n")]
        text = "\n".join(ln for i, ln in enumerate(lines) if ln or (i and lines[i - 1])).strip()
        out.append((m.group(1), m.group(2), m.group(3), m.group(4), text))
    return out


@dataclass
class Change:
    obj: Obj
    old: Obj | None = None
    details: list[str] = field(default_factory=list)
    diff: list[str] = field(default_factory=list)


@dataclass
class Report:
    a: str
    b: str
    added: list[Obj] = field(default_factory=list)
    removed: list[Obj] = field(default_factory=list)
    changed: list[Change] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (self.added or self.removed or self.changed)

    def as_json(self) -> dict:
        def o(x: Obj) -> dict:
            return {"kind": x.kind, "schema": x.schema, "name": x.name, "definition": x.definition}

        return {
            "a": self.a,
            "b": self.b,
            "added": [o(x) for x in self.added],
            "removed": [o(x) for x in self.removed],
            "changed": [{**o(c.obj), "details": c.details, "diff": "\n".join(c.diff)} for c in self.changed],
        }

    def lines(self) -> list[str]:
        if self.empty:
            return [f"no schema differences between {self.a} and {self.b}"]
        out = [f"schema of {self.a} -> {self.b}: {len(self.added)} added, {len(self.removed)} removed, {len(self.changed)} changed", ""]
        for x in self.added:
            out.append(f"+ added    {x.label()}")
        for x in self.removed:
            out.append(f"- removed  {x.label()}")
        for c in self.changed:
            out.append(f"~ changed  {c.obj.label()}" + (f" ({'; '.join(c.details)})" if c.details else ""))
        for c in self.changed:
            out += ["", *c.diff]
        return out


def compare(a: dict[tuple[str, str, str], Obj], b: dict[tuple[str, str, str], Obj], a_name: str, b_name: str) -> Report:
    rep = Report(a_name, b_name)
    for key in sorted(set(a) | set(b)):
        old, new = a.get(key), b.get(key)
        if old is None and new is not None:
            rep.added.append(new)
        elif new is None and old is not None:
            rep.removed.append(old)
        elif old is not None and new is not None and (old.definition != new.definition or old.owner != new.owner):
            details = _columns(old.definition, new.definition) if key[0] == "table" else []
            if old.owner != new.owner:
                details.append(f"owner {old.owner} -> {new.owner}")
            diff = list(
                difflib.unified_diff(
                    old.definition.split("\n"), new.definition.split("\n"), f"{a_name}: {old.label()}", f"{b_name}: {new.label()}", lineterm=""
                )
            )
            rep.changed.append(Change(new, old, details, diff))
    return rep


def _columns(old: str, new: str) -> list[str]:
    """Columns added, removed or changed between two CREATE TABLE statements."""

    def cols(text: str) -> dict[str, str]:
        try:
            stmts = pglast.parse_sql(text)
        except pglast.parser.ParseError:
            return {}
        for s in stmts:
            if isinstance(s.stmt, ast.CreateStmt):
                return {e.colname: RawStream()(e) for e in s.stmt.tableElts or () if isinstance(e, ast.ColumnDef) and e.colname}
        return {}

    a, b = cols(old), cols(new)
    out = []
    if added := [c for c in b if c not in a]:
        out.append("columns added: " + ", ".join(added))
    if removed := [c for c in a if c not in b]:
        out.append("columns removed: " + ", ".join(removed))
    if changed := [c for c in a if c in b and a[c] != b[c]]:
        out.append("columns changed: " + ", ".join(changed))
    return out


def schema_sql(suite: pgtools.PgSuite, archive: Path) -> str:
    """The app's schema as one SQL file, deterministic: objects in pg_restore's order (its
    dependency order, then names), without data, pg_dump's version lines or owners' passwords
    (a dump never holds those)."""
    entries = [e for e in toc.read(suite, archive) if e.desc not in _NOT_SCHEMA]
    text = archivesql.render(suite, archive, entries)
    text = re.sub(r"^-- Dumped (from database|by pg_dump) version .*\n", "", text, flags=re.M)
    return text.strip("\n") + "\n"
