"""invoke diff / invoke schema: the app's schema, compared between backups or written to a file."""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path

from . import _ui
from ._flags import task
from .engine import catalog, pgtools
from .engine.conn import Target
from .engine.dump import create_backup
from .engine.errors import ConfigError, UsageError
from .engine.manifest import signing_key
from .engine.storage import LocalStore

_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def _printable(text: str) -> str:
    """Names are hostile: control characters shown as escapes, never sent to the terminal."""
    return "".join(c if c.isprintable() or c == "\t" else f"\\x{ord(c):02x}" for c in text)


@contextmanager
def _archive(which: str, settings, step) -> Iterator[tuple[str, pgtools.PgSuite, Path]]:
    """The app archive of a backup (by id or UTC date), or of the live database (`live`:
    a schema-only dump made the way `invoke backup` makes one, in a temporary folder)."""
    if which == "live":
        if not settings.database_url:
            raise ConfigError("`live` needs a database", "set DATABASE_URL in .env or the environment, or pass --url")
        target = Target.from_url(settings.database_url, settings.password, settings.pg_env)
        with tempfile.TemporaryDirectory(prefix="fortress-diff-") as tmp:
            store = LocalStore(Path(tmp))
            result = create_backup(
                target,
                store,
                kind="schema",
                pg_bin_dir=settings.pg_bin_dir,
                step=_live_steps(step),
                signing_key=signing_key(settings.signing_key, create=True),
                project=Path(tmp),  # nothing is kept: the app's .gitignore is left alone
            )
            backup = catalog.load(store, result.backup_id)
            with _pinned(store, backup, settings) as (suite, path):
                yield f"live {target.display()}", suite, path
        return
    store = LocalStore(settings.backup_dir)
    if _DATE.match(which):
        backup = catalog.resolve(store, date=which, mode="schema", any_source=True)
    else:
        backup = catalog.resolve(store, backup_id=which)
    if backup.legacy:
        raise UsageError(f"{which} is a set of runbook files", "diff backups made by `invoke backup`")
    with _pinned(store, backup, settings) as (suite, path):
        yield backup.id, suite, path


def _live_steps(step):
    """The backup engine's step lines, told as what really happens for `live`: the schema is
    read into a temporary folder and compared, nothing is kept."""

    def say(message: str) -> None:
        if message == "checksumming" or message.startswith("reading roles"):
            return
        if message.startswith("backup ") and message.endswith(" complete"):
            step("read the live schema (pg_dump --schema-only into a temporary folder; no backup is kept)")
        elif message.startswith("dumping schema of schemas: "):
            step("reading the live schema of schemas: " + message.removeprefix("dumping schema of schemas: "))
        else:
            step(message)

    return say


def _locked(settings, *which: str):
    """The backup folder's lock, once, while backups are read from it."""
    if all(w == "live" for w in which):
        return nullcontext()
    return LocalStore(settings.backup_dir).lock(reading=True, step=_ui.step)


@contextmanager
def _pinned(store: LocalStore, backup, settings) -> Iterator[tuple[pgtools.PgSuite, Path]]:
    pinned = catalog.pin(store, backup)  # checksums checked; read through these open files
    try:
        record = backup.record
        app = record.file("app")
        if app is None:
            raise UsageError(f"Backup {backup.id} has no app archive", "pick another backup")
        major = max(record.pg_dump_major, 0)
        suite = pgtools.pick(
            pgtools.discover(settings.pg_bin_dir), at_least=major, prefer=major or None, tools=("pg_restore",), purpose=f"reading backup {backup.id}"
        )
        yield suite, catalog.pinned_path(pinned[app.name])
    finally:
        catalog.unpin(pinned)


@task(
    help={
        "old": "A backup id or UTC date (the newest backup of that day): the schema compared from (first positional argument).",
        "new": "Another backup id or date, or `live` for the database itself (DATABASE_URL or --url): "
        "the schema compared to (second positional argument).",
        "json": "Print the report as JSON (for tools).",
        "url": "The database `live` means (default: DATABASE_URL).",
        "backup_dir": "Folder holding the backups (default: BACKUP_DIR or .backups).",
    },
    positional=["old", "new"],
)
@_ui.guarded
def diff(c, old, new, json_=False, url=None, backup_dir=None):
    """Compare the schema of two backups (or a backup and `live`) object by object: invoke diff OLD NEW."""
    settings = _ui.settings_from(url=url, backup_dir=backup_dir)
    with (
        _locked(settings, old, new),
        _archive(old, settings, _ui.step) as (a_name, a_suite, a_path),
        _archive(new, settings, _ui.step) as (b_name, b_suite, b_path),
    ):
        from .engine import schemadiff  # pglast: imported only by the commands that parse SQL

        report = schemadiff.compare(schemadiff.read(a_suite, a_path), schemadiff.read(b_suite, b_path), a_name, b_name)
    if json_:
        print(json.dumps(report.as_json(), indent=2, sort_keys=True, ensure_ascii=True))
        return
    for line in report.lines():
        style = "green" if line.startswith("+") else "red" if line.startswith("-") else None
        text = _ui.escape(_printable(line))
        _ui.out.print(f"[{style}]{text}[/{style}]" if style and _ui.out.is_terminal else text, soft_wrap=True)


@task(
    help={
        "out": "File to write (it is replaced atomically).",
        "id": "Take the schema from this backup instead of the live database.",
        "url": "Database to read (default: DATABASE_URL).",
        "backup_dir": "Folder holding the backups (default: BACKUP_DIR or .backups).",
    },
)
@_ui.guarded
def schema(c, out, id=None, url=None, backup_dir=None):
    """Write the app's schema (no data, no passwords) as one deterministic SQL file to commit."""
    settings = _ui.settings_from(url=url, backup_dir=backup_dir)
    dest = Path(out)
    # checked before the schema is read: the file is written next to where it goes, then renamed
    if dest.is_dir():
        raise UsageError(f"--out {out} is a folder; nothing was written", f"name a file, for example --out {Path(out) / 'schema.sql'}")
    parent = dest.parent if str(dest.parent) else Path(".")
    if not parent.is_dir():
        raise UsageError(f"--out {out}: folder {parent} does not exist; nothing was written", "create it first, or name a file in an existing folder")
    with _locked(settings, id or "live"), _archive(id or "live", settings, _ui.step) as (name, suite, path):
        from .engine import schemadiff

        text = schemadiff.schema_sql(suite, path)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", dir=parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _ui.out.print(_ui.escape(f"wrote the schema of {name} to {dest} ({len(text.splitlines())} lines)"))
