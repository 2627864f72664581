"""Reading an archive's entries as SQL, for what a table restore and `invoke diff` need to know
about them: pg_restore writes the entries a caller picked (by table of contents), and
PostgreSQL's own parser (pglast) reads the statements. Nothing here runs SQL; what it returns
is parsed statements, names, numbers and display text.

Names in an archive are hostile data: a table may be called `a b`, `x" ; DROP`, or hold a
newline. The TOC's text cannot always tell such names apart (it blanks out line breaks and does
not quote), so an entry found by its TOC line is confirmed on its parsed statement.
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pglast
from pglast import ast

from . import pgtools, sqltext, toc, zstream
from .errors import IntegrityError, RestoreFailed

CHUNK = 1 << 20


def _bad(archive: Path, what: str) -> IntegrityError:
    return IntegrityError(
        f"{Path(os.path.realpath(archive)).name}: {what}",
        "the backup is damaged or was made by an unknown pg_dump; restore another backup",
    )


def render(suite: pgtools.PgSuite, archive: Path, entries: Iterable[toc.Entry]) -> str:
    """The SQL pg_restore writes for exactly `entries`, without its `\\restrict` lines (the key
    is ours and random, so no line of an entry can be one of them)."""
    chosen = list(entries)
    if not chosen:
        return ""
    key = sqltext.restrict_key()
    listfile = toc.write_list(chosen)
    try:
        try:
            out = toc.pg_restore_output(suite, archive, ["--file=-", f"--restrict-key={key}", f"--use-list={listfile}"])
        except pgtools.ToolError as exc:
            raise _bad(archive, f"pg_restore cannot read it: {exc.stderr_tail}") from None
    finally:
        listfile.unlink(missing_ok=True)
    text = out.decode("utf-8", "replace")
    return "\n".join(ln for ln in text.split("\n") if ln not in (f"\\restrict {key}", f"\\unrestrict {key}"))


def parse(text: str, archive: Path) -> list[ast.RawStmt]:
    try:
        return list(pglast.parse_sql(text))
    except pglast.parser.ParseError as exc:
        raise _bad(archive, f"an entry does not parse ({exc})") from None


def split_qualified(text: str) -> tuple[str, ...]:
    """A qualified name as PostgreSQL reads one from text (regclass input, pg_dump's
    `nextval('s.n'::regclass)`): parts split on dots, double quotes keep case and dots, `""` is
    one quote, unquoted parts are lower-cased. () for anything else."""
    parts: list[str] = []
    i, n = 0, len(text)
    while i < n:
        if text[i] == '"':
            j, buf = i + 1, []
            while True:
                k = text.find('"', j)
                if k < 0:
                    return ()
                buf.append(text[j:k])
                if k + 1 < n and text[k + 1] == '"':
                    buf.append('"')
                    j = k + 2
                    continue
                i = k + 1
                break
            parts.append("".join(buf))
        else:
            m = re.match(r"[^.\"]+", text[i:])
            if not m:
                return ()
            parts.append(m.group(0).lower())
            i += m.end()
        if i < n:
            if text[i] != ".":
                return ()
            i += 1
            if i == n:
                return ()
    return tuple(parts)


def relname(rv: ast.RangeVar | None) -> tuple[str, str] | None:
    if rv is None or rv.relname is None:
        return None
    return (rv.schemaname or "", rv.relname)


def string_list(arg) -> tuple[str, ...]:
    """A DefElem's list of names (`OWNED BY s.t.c`, `SEQUENCE NAME s.n`)."""
    if isinstance(arg, tuple | list):
        return tuple(getattr(x, "sval", "") or "" for x in arg)
    return ()


def walk(node) -> Iterator[ast.Node]:
    """Every node under `node` (itself included)."""
    if isinstance(node, tuple | list):
        for x in node:
            yield from walk(x)
    elif isinstance(node, ast.Node):
        yield node
        for attr in node:
            yield from walk(getattr(node, attr))


# -- COPY data of one TABLE DATA entry -----------------------------------------------------


@dataclass
class CopyData:
    stmt: ast.CopyStmt
    encoding: str
    chunks: Iterator[bytes]


_ENCODING = re.compile(rb"\nSET client_encoding = '([A-Za-z0-9_]+)';\n")
_END = b"\\.\n"


def copy_statement(suite: pgtools.PgSuite, archive: Path, entry: toc.Entry) -> ast.CopyStmt | None:
    """The COPY statement that opens a TABLE DATA entry (None: the entry holds no COPY)."""
    with copy_data(suite, archive, entry, {}) as data:
        return data.stmt if data else None


@contextmanager
def _reading(archive: Path, env: dict[str, str]) -> Iterator[tuple[list[str], object]]:
    """pg_restore's input for `archive`, a zstd-wrapped one through `zstd -d` (zstream)."""
    try:
        with zstream.reading(archive, env) as got:
            yield got
    except pgtools.ToolError as exc:
        raise _bad(archive, f"it cannot be read: {exc.stderr_tail}") from None


@contextmanager
def copy_data(suite: pgtools.PgSuite, archive: Path, entry: toc.Entry, env: dict[str, str]) -> Iterator[CopyData | None]:
    """The entry's COPY statement, the archive's client encoding, and an iterator over the rows
    (COPY text format, up to but without the closing `\\.`); None when the entry holds no COPY.
    The rows are never SQL: a caller writes them to a COPY FROM STDIN it wrote itself."""
    key = sqltext.restrict_key()
    listfile = toc.write_list([entry])
    done: list[bool] = []
    with tempfile.TemporaryFile() as errf, _reading(archive, {**os.environ, **env}) as (source, stdin):
        argv = [suite.tool("pg_restore"), "--file=-", f"--restrict-key={key}", f"--use-list={listfile}", *source]
        proc = pgtools.popen(argv, env={**os.environ, **env}, stdin=stdin, stdout=subprocess.PIPE, stderr=errf)
        try:
            out = proc.stdout
            assert out is not None
            head = b""
            stmt: ast.CopyStmt | None = None
            while stmt is None:
                chunk = out.read(CHUNK)
                if not chunk:
                    break
                head += chunk
                stmt, rest = _copy_head(head, archive)
                if stmt is None and len(head) > 64 * CHUNK:
                    raise _bad(archive, "a data entry without a COPY statement")
            if stmt is None:
                yield None
                return
            m = _ENCODING.search(head)
            encoding = m.group(1).decode() if m else "UTF8"

            def rows(buf: bytes) -> Iterator[bytes]:
                # the rows end at the first line that is exactly `\\.`; a row's own backslashes
                # are doubled, so no row is that line
                pending, skip = b"\n" + buf, 1
                while True:
                    at = pending.find(b"\n" + _END)
                    if at >= 0:
                        if at + 1 > skip:
                            yield pending[skip : at + 1]
                        done.append(True)
                        return
                    if len(pending) - skip > len(_END):
                        cut = len(pending) - len(_END)
                        yield pending[skip:cut]
                        pending, skip = pending[cut:], 0
                    chunk = out.read(CHUNK)
                    if not chunk:
                        raise _bad(archive, "a data entry that ends before its rows do")
                    pending += chunk

            yield CopyData(stmt, encoding, rows(rest))
            if done:
                out.read()
                proc.wait()
        finally:
            pgtools.stop(proc)
            listfile.unlink(missing_ok=True)
        errf.seek(0)
        err = errf.read()
    if done and proc.returncode != 0:
        raise RestoreFailed(f"pg_restore could not read {Path(os.path.realpath(archive)).name}: {pgtools.tail(err)}", "the backup may be damaged")


def _copy_head(head: bytes, archive: Path) -> tuple[ast.CopyStmt | None, bytes]:
    """The first `COPY ... FROM stdin;` statement after pg_restore's preamble, and what follows
    its line. A name may hold ` FROM stdin;` and a newline: each candidate end is tried with
    the parser until one makes a whole COPY statement."""
    start = head.find(b"\nSET row_security = off;\n")
    if start < 0:
        return None, b""
    at = head.find(b"\nCOPY ", start)
    if at < 0:
        return None, b""
    pos = at + 1
    while True:
        end = head.find(b" FROM stdin;\n", pos)
        if end < 0:
            return None, b""
        text = head[at + 1 : end + len(b" FROM stdin;")].decode("utf-8", "replace")
        try:
            stmts = pglast.parse_sql(text)
        except pglast.parser.ParseError:
            pos = end + 1
            continue
        if len(stmts) == 1 and isinstance(stmts[0].stmt, ast.CopyStmt) and stmts[0].stmt.is_from:
            return stmts[0].stmt, head[end + len(b" FROM stdin;\n") :]
        raise _bad(archive, "a data entry whose first statement is not a COPY")
