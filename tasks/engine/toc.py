"""The table of contents of a custom-format archive (`pg_restore -l`), so a restore can pick
exactly the entries it wants (`pg_restore -L`) instead of editing SQL text with sed."""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from . import pgtools, zstream
from .errors import IntegrityError

# Every entry type pg_dump writes; longest first so "TABLE DATA" wins over "TABLE".
DESCS = sorted(
    """ACCESS METHOD|ACL|AGGREGATE|BLOB|BLOB METADATA|BLOBS|CAST|CHECK CONSTRAINT|COLLATION|COMMENT|
    CONSTRAINT|CONVERSION|DATABASE|DATABASE PROPERTIES|DEFAULT|DEFAULT ACL|DOMAIN|DUMMY TYPE|ENCODING|
    EVENT TRIGGER|EXTENSION|FK CONSTRAINT|FOREIGN DATA WRAPPER|FOREIGN SERVER|FOREIGN TABLE|FUNCTION|
    INDEX|INDEX ATTACH|LARGE OBJECT|MATERIALIZED VIEW|MATERIALIZED VIEW DATA|OPERATOR|OPERATOR CLASS|
    OPERATOR FAMILY|POLICY|PROCEDURE|PROCEDURAL LANGUAGE|PUBLICATION|PUBLICATION TABLE|
    PUBLICATION TABLES IN SCHEMA|ROW SECURITY|RULE|SCHEMA|SEARCHPATH|SECURITY LABEL|SEQUENCE|
    SEQUENCE OWNED BY|SEQUENCE SET|SERVER|SHELL TYPE|STATISTICS|STATISTICS DATA|STDSTRINGS|SUBSCRIPTION|
    SUBSCRIPTION TABLE|TABLE|TABLE ATTACH|TABLE DATA|TEXT SEARCH CONFIGURATION|TEXT SEARCH DICTIONARY|
    TEXT SEARCH PARSER|TEXT SEARCH TEMPLATE|TRANSFORM|TRIGGER|TYPE|USER MAPPING|VIEW""".replace("\n", "").split("|"),
    key=len,
    reverse=True,
)
DESCS = [d.strip() for d in DESCS]
_LINE = re.compile(r"^(\d+); (\d+) (\d+) (.*)$")


@dataclass(frozen=True)
class Entry:
    line: str
    dump_id: int
    desc: str
    schema: str  # "-" when the object has none
    tag_owner: str  # the object's tag then its owner, as pg_restore prints them
    catalog: int = 0  # the catalog of the object (pg_trigger, pg_policy, ...) and its oid at the source
    oid: int = 0

    def names(self, tag: str) -> bool:
        """Whether this entry's tag is `tag`: names may hold spaces, so the tag is never split
        off the owner; it is compared with a name the caller knows."""
        return self.tag_owner == tag or self.tag_owner.startswith(tag + " ")

    def owned_by(self, role: str) -> bool:
        return self.tag_owner.endswith(" " + role)


def parse(listing: str) -> list[Entry]:
    entries = []
    for line in listing.splitlines():
        m = _LINE.match(line)
        if not m:
            continue
        rest = m.group(4)
        desc = next((d for d in DESCS if rest == d or rest.startswith(d + " ")), rest.split(" ", 1)[0])
        after = rest[len(desc) :].strip()
        schema, _, tag_owner = after.partition(" ")
        entries.append(Entry(line, int(m.group(1)), desc, schema, tag_owner, int(m.group(2)), int(m.group(3))))
    return entries


def read(suite: pgtools.PgSuite, archive: Path, sections: Iterable[str] = ()) -> list[Entry]:
    """The archive's entries (of `sections`), read once per archive file and reused: a restore
    asks several times, and an archive from pg_dump < 17 has an entry per large object."""
    st = Path(archive).stat()
    return list(_read(suite, str(archive), st.st_size, st.st_mtime_ns, st.st_ino, tuple(sections)))


def pg_restore_output(suite: pgtools.PgSuite, archive: Path, args: list[str]) -> bytes:
    """What `pg_restore ARGS ARCHIVE` prints (a zstd-wrapped archive read through `zstd -d`);
    raises pgtools.ToolError with pg_restore's last lines when it fails."""
    env = dict(os.environ)
    with zstream.reading(archive, env) as (source, stdin):
        proc = pgtools.popen([suite.tool("pg_restore"), *args, *source], env=env, stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            out, err = proc.communicate()
        except BaseException:
            pgtools.stop(proc)
            raise
        if proc.returncode != 0:
            raise pgtools.ToolError("pg_restore", proc.returncode, pgtools.tail(err))
    return out


@lru_cache(maxsize=16)
def _read(suite: pgtools.PgSuite, archive: str, size: int, mtime: int, inode: int, sections: tuple[str, ...]) -> tuple[Entry, ...]:
    # size, mtime and inode only key the cache: a changed file is listed again
    try:
        listing = pg_restore_output(suite, Path(archive), ["--list", *[f"--section={s}" for s in sections]]).decode("utf-8", "replace")
    except pgtools.ToolError as exc:
        # a pinned archive is /dev/fd/N: name the file it is
        raise IntegrityError(
            f"pg_restore cannot read {Path(os.path.realpath(archive)).name}: {exc.stderr_tail}",
            "the backup is damaged or was made by a newer pg_dump; restore another backup",
        ) from None
    return tuple(parse(listing))


_LIST_PREFIX = "fortress-"


def write_list(entries: Iterable[Entry], folder: Path | None = None) -> Path:
    """A pg_restore --use-list file; named with our pid, so a later run can tell the files of
    a killed run (`remove_orphan_lists`)."""
    f = tempfile.NamedTemporaryFile("w", prefix=f"{_LIST_PREFIX}{os.getpid()}-", suffix=".list", delete=False, dir=folder)
    with f:
        for e in entries:
            f.write(e.line + "\n")
    return Path(f.name)


def load(suite: pgtools.PgSuite, archive: Path, entries: list[Entry], target, workdir: Path | None = None) -> bool:
    """Restore `entries` of `archive` into `target` with pg_restore: everything but privileges in
    one transaction that must succeed (raises pgtools.ToolError), then the privileges on their
    own, errors ignored (a platform's grants name members of extensions a throwaway server builds
    differently). False when some privileges could not be recreated."""
    acls = [e for e in entries if e.desc in ("ACL", "DEFAULT ACL")]
    complete = True
    for chosen, strict in (([e for e in entries if e not in acls], True), (acls, False)):
        if not chosen:
            continue
        listfile = write_list(chosen, workdir)
        argv = [suite.tool("pg_restore"), "--no-password"]
        argv += ["--single-transaction", "--exit-on-error"] if strict else []
        argv += [f"--use-list={listfile}", f"--dbname={target.conninfo()}", str(archive)]
        try:
            pgtools.run(argv, env=target.tool_env(), stdout=subprocess.DEVNULL)
        except pgtools.ToolError:
            if strict:
                raise
            complete = False
        finally:
            listfile.unlink(missing_ok=True)
    return complete


def remove_orphan_lists(folder: Path | None = None) -> None:
    """Delete list files (`write_list`) of processes that no longer run: a killed restore's."""
    root = Path(folder or tempfile.gettempdir())
    try:
        candidates = list(root.glob(f"{_LIST_PREFIX}*.list"))
    except OSError:
        return
    for path in candidates:
        pid = path.name[len(_LIST_PREFIX) :].split("-", 1)[0]
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            os.kill(int(pid), 0)
            continue  # still running (or a pid we may not signal: someone's, alive)
        except ProcessLookupError:
            pass
        except OSError:
            continue
        try:
            if path.stat().st_uid == os.getuid():
                path.unlink()
        except OSError:
            pass
