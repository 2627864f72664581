"""Backups as the user sees them: ids, manifests, listing, `--date` resolution, checksums, and the
runbook's hand-made files (`dump-DATE.sql`, `schema-DATE.sql` + `data-DATE.sql`).

A backup id is its UTC creation time, `2026-11-25T152139Z`, so names sort by time; a second
backup in the same second gets `-2`, `-3`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import re
import stat
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from . import manifest as manifest_mod
from .errors import IntegrityError, NotFound, RestoreFailed, UsageError
from .storage import Store

MANIFEST = "manifest.json"
FORMAT_VERSION = manifest_mod.FORMAT_VERSION
ID_RE = re.compile(r"^(\d{4}-\d{2}-\d{2})T(\d{6})Z(?:-(\d+))?\Z")  # \Z: no trailing newline
LEGACY_RE = re.compile(r"^(dump|schema|data)-(\d{4}-\d{2}-\d{2})\.sql$")
CHUNK = 1 << 20


def new_id(now: dt.datetime, taken: set[str] | None = None) -> str:
    base = now.astimezone(dt.UTC).strftime("%Y-%m-%dT%H%M%SZ")
    taken = taken or set()
    if base not in taken:
        return base
    n = 2
    while f"{base}-{n}" in taken:
        n += 1
    return f"{base}-{n}"


def parse_date(text: str) -> dt.date:
    try:
        if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", text or ""):
            raise ValueError
        return dt.date.fromisoformat(text)
    except ValueError:
        raise UsageError(f"--date {text!r} is not a date", "use YYYY-MM-DD, for example --date 2026-11-24") from None


_LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1", "local socket", ""})
_DIRECT_REF_RE = re.compile(r"^db\.([a-z0-9]{20})\.supabase\.(?:co|red)$")
_POOLER_USER_RE = re.compile(r"^[^.]+\.([a-z0-9]{20})$")


def supabase_ref(host: str, user: str | None) -> str | None:
    """The Supabase project a connection reaches: the direct host `db.<ref>.supabase.co`, or a
    pooler host (`*.pooler.supabase.com`) with the user `postgres.<ref>`; None elsewhere."""
    host = (host or "").lower()
    m = _DIRECT_REF_RE.match(host)
    if m:
        return m.group(1)
    if host.endswith((".supabase.com", ".supabase.co", ".supabase.red")):
        m = _POOLER_USER_RE.match(user or "")
        if m:
            return m.group(1)
    return None


@dataclass(frozen=True)
class SourceKey:
    """Which database a backup came from (or a restore goes to), as far as `--date` cares: the
    same Supabase project, else the same host, port and database name. Local names of this
    machine (localhost, 127.0.0.1, ::1, a socket) count as one host."""

    host: str
    port: str
    database: str
    ref: str | None = None

    def matches(self, other: SourceKey) -> bool:
        if self.ref or other.ref:
            return self.ref == other.ref and self.database == other.database
        return (self.host, self.port, self.database) == (other.host, other.port, other.database)

    def describe(self) -> str:
        if self.ref:
            return f"Supabase project {self.ref}" + (f" (database {self.database})" if self.database != "postgres" else "")
        return f"{self.host}:{self.port}/{self.database}"


def source_key(host: str, port: str | int | None, database: str, user: str | None = None) -> SourceKey:
    """Pure: the key of a connection's host, port, database name and user."""
    ref = supabase_ref(host, user)
    h = (host or "").lower()
    h = "localhost" if h in _LOCAL_HOSTS or h.startswith("/") else h
    return SourceKey(host=h, port=str(port or "5432"), database=database, ref=ref)


def backup_source(backup: Backup) -> SourceKey | None:
    """Where a backup was made, from its manifest; None when unknown (runbook files, or a
    backup made from them in a throwaway database)."""
    if backup.legacy or backup.runbook_files:
        return None
    src = backup.manifest.get("source")
    if not isinstance(src, dict):
        return None
    url = str(src.get("url") or "")
    parts = urlsplit(url) if "://" in url else None
    host = str(src.get("host") or (parts.hostname if parts else "") or "")
    database = str(src.get("database") or (parts.path.lstrip("/") if parts else "") or "")
    if not host or not database:
        return None
    user = parts.username if parts else None
    return source_key(host, src.get("port") or (parts.port if parts else None), database, user or str(src.get("user") or ""))


def source_mismatch(backup: Backup, target: SourceKey) -> str | None:
    """A line for the plan when the backup was made from another database than the target."""
    src = backup_source(backup)
    if src is None or src.matches(target):
        return None
    return f"source mismatch: this backup was made from {src.describe()}, not from the target {target.describe()}"


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


@dataclass
class Backup:
    """A restorable unit: one of our backups (with manifest) or a legacy runbook file set."""

    id: str
    date: dt.date
    kind: str  # full | schema | data
    manifest: dict[str, Any] = field(default_factory=dict)
    legacy_files: list[str] = field(default_factory=list)  # for runbook files, in load order
    notes: list[str] = field(default_factory=list)  # what a person should know about this pick
    runbook_files: list[str] = field(default_factory=list)  # made from these runbook files (in a sandbox)
    manifest_bytes: bytes | None = None  # exactly what was parsed: what the signature must cover

    @property
    def undo_point(self) -> bool:
        origin = self.manifest.get("origin")
        return isinstance(origin, dict) and bool(origin.get("undo_for"))

    @cached_property
    def record(self) -> manifest_mod.Manifest:
        """The manifest, typed and validated (read_manifest already refused an invalid one)."""
        return manifest_mod.parse(self.manifest, self.id)

    @property
    def legacy(self) -> bool:
        return bool(self.legacy_files)

    @property
    def created(self) -> str:
        return self.manifest.get("created_at") or f"{self.date.isoformat()} (date from file name)"

    @property
    def label(self) -> str:
        return self.manifest.get("label") or ""

    def files(self) -> list[dict[str, Any]]:
        return list(self.manifest.get("files") or [])

    def file(self, role: str) -> dict[str, Any] | None:
        for f in self.files():
            if f.get("role") == role:
                return f
        return None

    def size(self, store: Store) -> int:
        if self.legacy:
            return sum(store.local_path("", n).stat().st_size for n in self.legacy_files)
        return sum(int(f.get("size", 0)) for f in self.files())


def write_manifest(folder: Path, manifest: dict[str, Any]) -> Path:
    path = folder / MANIFEST
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(manifest, f, indent=2, sort_keys=False)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    return path


def read_manifest(store: Store, backup_id: str) -> dict[str, Any]:
    return _read_manifest(store, backup_id)[0]


def _read_manifest(store: Store, backup_id: str) -> tuple[dict[str, Any], bytes]:
    path = store.local_path(backup_id, MANIFEST)
    try:
        raw = path.read_bytes()
        data = json.loads(raw)
    except (OSError, ValueError) as exc:
        raise IntegrityError(
            f"Backup {backup_id} has an unreadable manifest ({exc.__class__.__name__})", "restore another backup; this one cannot be trusted"
        ) from None
    try:
        manifest_mod.parse(data, backup_id)  # raises on a wrong type, an unsafe file name, ...
    except (TypeError, ValueError, AttributeError, KeyError, IndexError) as exc:
        # a field of a shape parse does not expect (a number where a list belongs, ...)
        raise IntegrityError(
            f"Backup {backup_id} has a malformed manifest ({exc.__class__.__name__})", "restore another backup; this one cannot be trusted"
        ) from None
    return data, raw


def load(store: Store, backup_id: str) -> Backup:
    m = ID_RE.match(backup_id)
    if not m or not store.exists(backup_id):
        raise NotFound(f"No backup with id {backup_id!r} in {store.describe()}", "run `invoke list` to see the ids")
    manifest, raw = _read_manifest(store, backup_id)
    origin = manifest.get("origin")
    origin = origin if isinstance(origin, dict) else {}
    runbook = [str(n) for n in origin.get("runbook_files", []) if isinstance(n, str)]
    return Backup(
        id=backup_id,
        date=dt.date.fromisoformat(m.group(1)),
        kind=manifest.get("kind", "full"),
        manifest=manifest,
        runbook_files=runbook,
        manifest_bytes=raw,
    )


def _legacy_backups(store: Store) -> list[Backup]:
    by_date: dict[str, dict[str, str]] = {}
    for name in store.loose_files():
        m = LEGACY_RE.match(name)
        if m:
            by_date.setdefault(m.group(2), {})[m.group(1)] = name
    out: list[Backup] = []
    for day, names in sorted(by_date.items()):
        date = dt.date.fromisoformat(day)
        if "schema" in names and "data" in names:
            out.append(Backup(id=f"{names['schema']}+{names['data']}", date=date, kind="full", legacy_files=[names["schema"], names["data"]]))
        elif "schema" in names:
            out.append(Backup(id=names["schema"], date=date, kind="schema", legacy_files=[names["schema"]]))
        elif "data" in names:
            out.append(Backup(id=names["data"], date=date, kind="data", legacy_files=[names["data"]]))
        if "dump" in names:
            out.append(Backup(id=names["dump"], date=date, kind="full", legacy_files=[names["dump"]]))
    return out


def all_backups(store: Store) -> tuple[list[Backup], list[str]]:
    """(backups oldest first, problems) — a backup with a broken manifest is reported, not hidden."""
    backups: list[Backup] = []
    problems: list[str] = []
    for backup_id in store.ids():
        if not ID_RE.match(backup_id):
            continue
        try:
            backups.append(load(store, backup_id))
        except IntegrityError as exc:
            problems.append(str(exc))
    backups.sort(key=lambda b: (b.manifest.get("created_at", ""), b.id))
    legacy = _legacy_backups(store)
    return sorted(legacy, key=lambda b: b.date) + backups, problems


def resolve(
    store: Store,
    *,
    date: str | None = None,
    backup_id: str | None = None,
    mode: str = "full",
    target: SourceKey | None = None,
    any_source: bool = False,
) -> Backup:
    """The backup a restore means: `--id` exactly, else the newest complete one of `--date`
    that holds what the restore needs (a full backup, or one of the `mode` asked for), our own
    backups before the runbook's hand-made files of that date. A plain restore never picks a
    schema-only or data-only backup just because it is newer. Given the `target`, `--date` only
    considers backups made from that database (or of unknown source: runbook files), unless
    `any_source`."""
    if backup_id and date:
        raise UsageError("--id and --date both given", "pass only one of them")
    if backup_id:
        legacy = [b for b in _legacy_backups(store) if b.id == backup_id or backup_id in b.legacy_files]
        if legacy:
            return legacy[0]
        return load(store, backup_id)
    if not date:
        raise UsageError("Which backup? No --date or --id given", "pass --date YYYY-MM-DD (see `invoke list`)")
    day = parse_date(date)
    backups, _ = all_backups(store)
    # undo points are restored by --id (the restore that made one says which), never picked by a date
    of_day = [b for b in backups if b.date == day and not b.undo_point]
    if target is not None and not any_source:
        elsewhere = [b for b in of_day if (src := backup_source(b)) is not None and not src.matches(target)]
        skipped = {b.id for b in elsewhere}
        of_day = [b for b in of_day if b.id not in skipped]
        if elsewhere and not of_day:
            others = sorted({src.describe() for b in elsewhere if (src := backup_source(b)) is not None})
            raise NotFound(
                f"No backup of {target.describe()} from {day.isoformat()}; that day has backups only of {', '.join(others)}",
                f"to restore one of those into this target pass --any-source (or --id {elsewhere[-1].id}); see `invoke list`",
            )
    # A runbook dump-DATE.sql is one plain script: it cannot be split into schema or data.
    fits = [b for b in of_day if b.kind == mode or (b.kind == "full" and (mode == "full" or not (b.legacy and len(b.legacy_files) == 1)))]
    ours = [b for b in fits if not b.legacy]
    if ours:
        chosen = ours[-1]
        loaded = {b.id for b in backups}
        for damaged in (i for i in store.ids() if i.startswith(f"{day.isoformat()}T") and i not in loaded):
            if damaged > chosen.id:
                chosen.notes.append(
                    f"the newer backup {damaged} of that date is damaged (unreadable manifest) and was passed over; restoring {chosen.id} instead"
                )
        return chosen
    legacy = [b for b in fits if b.legacy]
    if legacy:
        # A schema+data pair is the runbook's complete form; prefer it over a lone file.
        legacy.sort(key=lambda b: (len(b.legacy_files), b.kind == "full"))
        return legacy[-1]
    if of_day:
        kinds = sorted({b.kind for b in of_day})
        flags = " or ".join(f"--{k}-only" for k in kinds if k != "full")
        raise NotFound(
            f"No {'full' if mode == 'full' else mode + '-only or full'} backup from {day.isoformat()}; "
            f"that day has only {' and '.join(k + '-only' for k in kinds)} backups",
            f"pass {flags} to restore one of those, or pick another date (see `invoke list`)",
        )
    # A backup of that day whose manifest cannot be read is damaged, not absent: say so (exit 5)
    # instead of claiming there is none. Every id of the day failed to load above.
    unreadable = [i for i in store.ids() if i.startswith(f"{day.isoformat()}T") and ID_RE.match(i)]
    if unreadable:
        load(store, unreadable[-1])  # raises the IntegrityError that names the backup and the problem
    dates = sorted({b.date.isoformat() for b in backups})
    if dates:
        shown = ", ".join(dates[-10:]) + (" …" if len(dates) > 10 else "")
        hint = f"backups exist for: {shown}"
    else:
        hint = f"there are no backups in {store.describe()} yet; run `invoke backup`"
    raise NotFound(f"No backup from {day.isoformat()} in {store.describe()}", hint)


def verify_checksums(store: Store, backup: Backup) -> list[str]:
    """Check every file's size and sha256 against the manifest. Raises on the first mismatch;
    returns the names checked. Legacy files have no checksums and return []."""
    if backup.legacy:
        return []
    checked = []
    for f in backup.record.files:
        path = store.local_path(backup.id, f.name)
        if path.is_symlink() or not path.is_file():
            raise IntegrityError(f"Backup {backup.id} is missing its file {f.name}", "restore another backup; this one is incomplete")
        if path.stat().st_size != f.size or sha256_file(path) != f.sha256:
            raise IntegrityError(
                f"Backup {backup.id}: {f.name} does not match its checksum", "the file was changed or damaged; restore another backup"
            )
        checked.append(f.name)
    return checked


def pin(store: Store, backup: Backup) -> dict[str, int]:
    """Open every file of the backup once and check its size and sha256 through that open file:
    the restore then reads exactly those bytes (pg_restore gets /dev/fd/N), so a file swapped
    in the folder after this check is never restored. Returns name -> file descriptor; the
    caller closes them (`unpin`)."""
    from . import crypt

    encryption = backup.manifest.get("encryption") if backup.record.format >= manifest_mod.FORMAT_ENCRYPTED else None
    # a key that cannot decrypt the backup fails here, before anything is read or touched
    crypt.require(backup.id, encryption, getattr(store, "identity", None))
    pinned: dict[str, int] = {}
    try:
        for f in backup.record.files:
            path = store.local_path(backup.id, f.name)
            try:
                fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
            except OSError:
                raise IntegrityError(f"Backup {backup.id} is missing its file {f.name}", "restore another backup; this one is incomplete") from None
            pinned[f.name] = fd
            st = os.fstat(fd)
            h = hashlib.sha256()
            with open(fd, "rb", closefd=False) as stream:
                while chunk := stream.read(CHUNK):
                    h.update(chunk)
            if not stat.S_ISREG(st.st_mode) or st.st_size != f.size or h.hexdigest() != f.sha256:
                raise IntegrityError(
                    f"Backup {backup.id}: {f.name} does not match its checksum", "the file was changed or damaged; restore another backup"
                )
        encrypted = [f.name for f in backup.record.files if f.encrypted]
        if encrypted:
            identity = getattr(store, "identity", None)
            assert identity is not None  # crypt.require
            for name in encrypted:
                crypt.check_decrypts(pinned[name], identity, name, backup.id)
            crypt.serve(pinned, encrypted, identity)
    except BaseException:
        unpin(pinned)
        raise
    return pinned


def stamps(pinned: dict[str, int]) -> dict[str, tuple[int, int, int]]:
    """What the kernel says of each pinned file (inode change time, size, inode): any write to
    it, even in place, changes the change time."""
    out = {}
    for name, fd in pinned.items():
        st = os.fstat(fd)
        out[name] = (st.st_ctime_ns, st.st_size, st.st_ino)
    return out


def require_unchanged(pinned: dict[str, int], taken: dict[str, tuple[int, int, int]], backup_id: str, then: str) -> None:
    """Refuse (RestoreFailed) when a pinned file was written to, even in place, since its
    checksum was checked (`taken`: its `stamps` then); `then` says what that left of the target."""
    changed = [n for n, st in stamps(pinned).items() if st != taken.get(n)]
    if changed:
        raise RestoreFailed(
            f"{', '.join(changed)} of backup {backup_id} changed while it was being restored; {then}",
            "find out who writes to the backup folder, then restore again",
        )


def unpin(pinned: dict[str, int]) -> None:
    from . import crypt

    crypt.unserve(pinned)
    for fd in pinned.values():
        try:
            os.close(fd)
        except OSError:
            pass
    pinned.clear()


def pinned_path(fd: int) -> Path:
    """Where a tool reads a pinned file: /dev/fd/N, or for an encrypted file the named pipe
    that serves its plaintext, decrypted from the pinned bytes."""
    from . import crypt

    return crypt.plain_path(fd) or Path(f"/dev/fd/{fd}")
