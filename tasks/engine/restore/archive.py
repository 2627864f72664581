"""pg_restore as the writer of exactly the archive entries a restore chose.

Entries are chosen by the archive's table of contents (`pg_restore --list` / `--use-list`),
never by matching lines of SQL. pg_restore writes each script with `--restrict-key=KEY` (psql
then obeys no meta-command until `\\unrestrict KEY`, a key no archive can know) and with
`--single-transaction`, so large-object contents carry no BEGIN/COMMIT of their own.

What pg_restore writes *outside* every entry is fixed text of its own, and only that is
checked and adapted (`guarded`): the preamble must be exactly pg_restore's (comments,
`\\restrict KEY`, BEGIN and the fixed SET lines); its `BEGIN;` is dropped (the restore's own
transaction is open), and `SET transaction_timeout` too where the server predates it
(PostgreSQL 17 added it); its `SET lock_timeout = 0;` becomes the restore's LOCK_TIMEOUT;
the trailer must be exactly `COMMIT;` + comments + `\\unrestrict KEY`,
and its COMMIT is dropped. Everything between passes through untouched, COPY data included.

Privileges for servers before 17 are the one place SQL from the archive is changed: MAINTAIN
(new in 17) is taken out of GRANT/REVOKE statements. That is done on the parsed statements
(pglast: PostgreSQL's own parser), never on lines, so no name can turn into SQL.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Protocol

from .. import pgtools, pipes, sqltext, toc, zstream
from ..errors import IntegrityError, RestoreFailed

CHUNK = 1 << 20
TAIL = 4096  # held back until a script ends: its trailer is checked before it is sent
MAX_PREAMBLE = 64 * 1024
MAX_ACL_SCRIPT = 256 * 1024 * 1024

# pg_restore's fixed preamble (pg_backup_archiver.c, _doSetFixedOutputState), in order of
# appearance; comment and blank lines may stand between them.
_PREAMBLE_LINES = (
    re.compile(rb"SET statement_timeout = 0;"),
    re.compile(rb"SET lock_timeout = 0;"),
    re.compile(rb"SET idle_in_transaction_session_timeout = 0;"),
    re.compile(rb"SET transaction_timeout = 0;"),
    re.compile(rb"SET client_encoding = '[A-Za-z0-9_]+';"),
    re.compile(rb"SET standard_conforming_strings = (on|off);"),
    re.compile(rb"SELECT pg_catalog\.set_config\('search_path', '', false\);"),
    re.compile(rb"SET check_function_bodies = false;"),
    re.compile(rb"SET xmloption = content;"),
    re.compile(rb"SET client_min_messages = warning;"),
    re.compile(rb"SET row_security = off;"),
)


def _refuse(what: str) -> IntegrityError:
    return IntegrityError(
        f"pg_restore wrote {what}; nothing of it was run", "the archive may be damaged or made by an unknown pg_dump; restore another backup"
    )


def guarded(chunks: Iterable[bytes], key: str, target_major: int, lock_timeout: str | None = None) -> Iterator[bytes]:
    """pg_restore's output with its own preamble and trailer checked and adapted (see module doc).
    `lock_timeout`: what pg_restore's `SET lock_timeout = 0;` becomes (the restore's setting, so
    no entry waits for a lock without end)."""
    it = iter(chunks)
    head = b""
    for chunk in it:
        head += chunk
        if b"\nSET row_security = off;\n" in head or len(head) > MAX_PREAMBLE:
            break
    end = head.find(b"\nSET row_security = off;\n")
    if end < 0:
        raise _refuse("no preamble")
    preamble, body = head[: end + len(b"\nSET row_security = off;\n")], head[end + len(b"\nSET row_security = off;\n") :]
    yield _preamble(preamble, key, target_major, lock_timeout)
    held = body
    for chunk in it:
        held += chunk
        if len(held) > TAIL + CHUNK:
            cut = len(held) - TAIL
            yield held[:cut]
            held = held[cut:]
    yield _trailer(held, key)


def _preamble(text: bytes, key: str, target_major: int, lock_timeout: str | None = None, begin: bool = True) -> bytes:
    """`begin`: the script was written as one transaction (its BEGIN is dropped)."""
    out: list[bytes] = []
    restricted, begun = False, not begin
    expected = list(_PREAMBLE_LINES)
    for line in text.split(b"\n"):
        if not line.strip() or line.startswith(b"--"):
            out.append(line)
        elif not restricted and line == b"\\restrict " + key.encode():
            restricted = True
            out.append(line)
        elif restricted and not begun and line == b"BEGIN;" and begin:
            begun = True  # the restore's own transaction is already open
        elif restricted and begun:
            while expected and not expected[0].fullmatch(line):
                expected.pop(0)
            if not expected:
                raise _refuse(f"an unexpected preamble line ({line[:60]!r})")
            expected.pop(0)
            if line == b"SET transaction_timeout = 0;" and target_major < 17:
                continue
            if line == b"SET lock_timeout = 0;" and lock_timeout is not None:
                line = f"SET lock_timeout = {sqltext.literal(lock_timeout)};".encode()
            out.append(line)
        else:
            raise _refuse(f"an unexpected preamble line ({line[:60]!r})")
    if not (restricted and begun):  # begun: also when no BEGIN was expected
        raise _refuse("a preamble without \\restrict")
    return b"\n".join(out)


def _trailer(text: bytes, key: str) -> bytes:
    closing = b"\n\\unrestrict " + key.encode() + b"\n"
    at = text.rfind(closing)
    if at < 0 or text[at + len(closing) :].strip():
        raise _refuse("no closing \\unrestrict")
    before = text[:at]
    commit = before.rfind(b"\nCOMMIT;\n")
    between = before[commit + len(b"\nCOMMIT;\n") :] if commit >= 0 else b""
    if commit < 0 or any(ln.strip() and not ln.startswith(b"--") for ln in between.split(b"\n")):
        raise _refuse("no closing COMMIT")
    return before[: commit + 1] + between + closing


def _argv(suite: pgtools.PgSuite, source: list[str], key: str, listfile: Path, single_transaction: bool) -> list[str]:
    """`source`: the archive's path, or nothing when it arrives on stdin (zstream.reading)."""
    txn = ["--single-transaction"] if single_transaction else ["--exit-on-error"]
    return [suite.tool("pg_restore"), "--file=-", *txn, f"--restrict-key={key}", f"--use-list={listfile}", *source]


@contextlib.contextmanager
def _reading(archive: Path, env: dict[str, str], name: str | None):
    try:
        with zstream.reading(archive, env) as got:
            yield got
    except pgtools.ToolError as exc:
        raise RestoreFailed(
            f"pg_restore could not read {name or archive.name}: {exc.stderr_tail}", "the backup may be damaged; nothing was changed"
        ) from None


def _failed(proc: subprocess.Popen, errf, name: str) -> None:
    errf.seek(0)
    err = errf.read()
    if proc.returncode != 0:
        raise RestoreFailed(f"pg_restore could not read {name}: {pgtools.tail(err)}", "the backup may be damaged; nothing was changed")


def stream(
    suite: pgtools.PgSuite, archive: Path, env: dict[str, str], entries: list[toc.Entry], key: str, name: str | None = None
) -> Iterator[bytes]:
    """pg_restore as a script writer for exactly `entries` (pg_restore keeps its own order of
    passes: objects, then privileges, then default privileges)."""
    listfile = toc.write_list(entries)
    # stderr to a file, not a pipe: a chatty pg_restore must never block on a full stderr pipe
    # while we wait on its stdout.
    with tempfile.TemporaryFile() as errf, _reading(archive, env, name) as (source, stdin):
        argv = _argv(suite, source, key, listfile, single_transaction=True)
        proc = pgtools.popen(argv, env=env, stdin=stdin, stdout=subprocess.PIPE, stderr=errf)
        try:
            assert proc.stdout is not None
            while chunk := proc.stdout.read(CHUNK):
                yield chunk
            proc.wait()
        finally:
            pgtools.stop(proc)
            listfile.unlink(missing_ok=True)
        _failed(proc, errf, name or archive.name)


def needs_relay(entries: Iterable[toc.Entry]) -> bool:
    """Large objects' contents come wrapped in pg_restore's own BEGIN/COMMIT unless it writes one
    transaction (--single-transaction), whose closing COMMIT must then be taken out of the
    stream: such a script goes through `guarded`, the others straight through `direct`."""
    return any("BLOB" in e.desc or e.desc == "LARGE OBJECT" for e in entries)


class ScriptSink(Protocol):
    key: str

    def script_start(self, head: bytes) -> None: ...
    def script_splice(self, fd: int) -> None: ...
    def script_end(self) -> None: ...


def direct(
    suite: pgtools.PgSuite,
    archive: Path,
    env: dict[str, str],
    entries: list[toc.Entry],
    sink: ScriptSink,
    target_major: int,
    lock_timeout: str | None = None,
    name: str | None = None,
) -> None:
    """pg_restore's script for `entries` into the session with its bytes moved by the kernel
    (pipes.relay), not by Python. Written without --single-transaction (so it holds no
    BEGIN or COMMIT of pg_restore's: no large objects, `needs_relay`), its preamble is read
    here and checked and adapted like `guarded`'s; everything after it passes untouched, the
    closing `\\unrestrict KEY` included: a script cut short leaves psql restricted, and the
    session's next meta-command then stops it (ON_ERROR_STOP) before any COMMIT. pg_restore's
    exit status is checked before the session goes on."""
    listfile = toc.write_list(entries)
    with tempfile.TemporaryFile() as errf, _reading(archive, env, name) as (source, stdin):
        argv = _argv(suite, source, sink.key, listfile, single_transaction=False)
        proc = pgtools.popen(argv, env=env, stdin=stdin, stdout=subprocess.PIPE, stderr=errf, bufsize=0)
        try:
            assert proc.stdout is not None
            fd = proc.stdout.fileno()
            pipes.widen(fd)
            head = b""
            marker = b"\nSET row_security = off;\n"
            while marker not in head and len(head) <= MAX_PREAMBLE:
                chunk = os.read(fd, 65536)
                if not chunk:
                    break
                head += chunk
            end = head.find(marker)
            if end < 0:
                if len(head) > MAX_PREAMBLE:
                    # still writing, maybe blocked on the full pipe: stopped, never waited on
                    # (the restore's transaction holds its locks meanwhile)
                    pgtools.stop(proc)
                    raise _refuse("no preamble")
                proc.wait()
                _failed(proc, errf, name or archive.name)
                raise _refuse("no preamble")
            cut = end + len(marker)
            sink.script_start(_preamble(head[:cut], sink.key, target_major, lock_timeout, begin=False) + head[cut:])
            sink.script_splice(fd)
            proc.wait()
        finally:
            pgtools.stop(proc)
            listfile.unlink(missing_ok=True)
        _failed(proc, errf, name or archive.name)
    sink.script_end()


def without_maintain(chunks: Iterable[bytes], key: str) -> Iterator[bytes]:
    """A privileges-only script for a server before 17: MAINTAIN taken out of every GRANT and
    REVOKE (and ALTER DEFAULT PRIVILEGES), on statements parsed by PostgreSQL's own parser;
    a statement left with no privilege is dropped, every other one passes as written."""
    import pglast
    from pglast import ast
    from pglast.stream import RawStream

    text = b"".join(_bounded(chunks))
    start = text.find(b"\nSET row_security = off;\n")
    closing = text.rfind(b"\n\\unrestrict " + key.encode() + b"\n")
    commit = text.rfind(b"\nCOMMIT;\n", 0, closing)
    if start < 0 or closing < 0 or commit < 0:
        raise _refuse("a privileges script of an unexpected shape")
    body_start = start + len(b"\nSET row_security = off;\n")
    body = text[body_start : commit + 1].decode("utf-8")
    try:
        statements = pglast.parse_sql(body)
    except pglast.parser.ParseError as exc:
        raise _refuse(f"privileges that do not parse ({exc})") from None
    out: list[bytes] = []
    for s in statements:
        node = s.stmt
        grant = node.action if isinstance(node, ast.AlterDefaultPrivilegesStmt) else node
        start = s.stmt_location or 0  # pglast counts characters of the str it parsed, not bytes
        piece = body[start : start + s.stmt_len] if s.stmt_len else body[start:]
        if node is not None and isinstance(grant, ast.GrantStmt) and grant.privileges and any(p.priv_name == "maintain" for p in grant.privileges):
            kept = tuple(p for p in grant.privileges if p.priv_name != "maintain")
            if not kept:
                continue
            grant.privileges = kept
            piece = RawStream()(node)
        out.append(piece.strip().encode("utf-8") + b";\n")
    yield text[:body_start] + b"".join(out) + text[commit + 1 :]


def _bounded(chunks: Iterable[bytes]) -> Iterator[bytes]:
    total = 0
    for chunk in chunks:
        total += len(chunk)
        if total > MAX_ACL_SCRIPT:
            raise _refuse("a privileges script larger than 256 MB")
        yield chunk
