"""The manifest: a typed, versioned record of one backup, and its authentication.

`manifest.json` lists every file of the backup with its size and sha256; `manifest.hmac` holds an
HMAC-SHA256 of the manifest's exact bytes under the signing key (BACKUP_SIGNING_KEY, or a key
this tool keeps for the user). A backup whose manifest verifies under the configured key is
*authenticated*: nothing in it was changed since it was written. Any other backup is shown as
unauthenticated in the plan, and a restore asks for `--allow-unsigned` to go on.

File names in a manifest are plain names inside the backup folder: no path separators, no
`..`, nothing hidden; anything else is refused before a file is opened.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .additions import Addition
from .errors import ConfigError, IntegrityError

FORMAT_VERSION = 2  # 2: roles.json and platform-schema.dump (1 had roles.sql and platform-additions.sql)
FORMAT_ENCRYPTED = 3  # 2 + age encryption (`encryption` and each file's `encrypted`): older tools refuse it
READABLE = (1, 2, 3)
MAC_FILE = "manifest.hmac"
_FILE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")
ROLES = ("roles", "app", "platform", "platform-schema")


def _bad(backup_id: str, what: str) -> IntegrityError:
    return IntegrityError(f"Backup {backup_id} has a manifest with {what}", "restore another backup; this one is damaged or was edited")


@dataclass(frozen=True)
class FileEntry:
    name: str
    role: str
    format: str
    size: int
    sha256: str  # of the stored bytes (the ciphertext, when encrypted)
    encrypted: str = ""  # "age" when the stored file is encrypted
    raw_size: int | None = None  # a zstd-wrapped archive's size before compression (signed with the rest)


@dataclass(frozen=True)
class TableEntry:
    schema: str
    name: str
    kind: str  # table | partitioned | matview
    rows: int | None
    section: str  # app | platform
    hash: str | None = None  # content hash in the dump's snapshot (contenthash.py); absent in older backups


@dataclass(frozen=True)
class Extension:
    name: str
    schema: str
    version: str


@dataclass(frozen=True)
class CronJob:
    name: str | None
    schedule: str
    command: str
    database: str
    username: str
    active: bool


@dataclass(frozen=True)
class Manifest:
    raw: dict[str, Any]
    id: str
    kind: str
    files: tuple[FileEntry, ...]
    tables: tuple[TableEntry, ...]
    app_schemas: tuple[str, ...]
    platform_data_schemas: tuple[str, ...]
    additions: tuple[Addition, ...]
    default_acl_roles: tuple[str, ...]
    app_roles: tuple[str, ...]
    pg_dump_major: int
    source_platform: str
    format: int
    extensions: tuple[Extension, ...] = ()
    cron_jobs: tuple[CronJob, ...] | None = None  # None: pg_cron absent (or unreadable) at the source
    source_database: str = ""
    source_user: str = ""

    def file(self, role: str) -> FileEntry | None:
        return next((f for f in self.files if f.role == role), None)


def _str(value: Any, backup_id: str, what: str) -> str:
    if not isinstance(value, str):
        raise _bad(backup_id, f"a {what} that is not text")
    return value


def _strs(value: Any, backup_id: str, what: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise _bad(backup_id, f"{what} that is not a list")
    return tuple(_str(v, backup_id, what) for v in value)


def parse(data: Any, backup_id: str) -> Manifest:
    """Validate a manifest's JSON: every field the tool reads has its type, every file name is
    a plain name. Raises IntegrityError naming what is wrong."""
    if not isinstance(data, dict) or data.get("format") not in READABLE:
        raise IntegrityError(f"Backup {backup_id} has a manifest of an unknown format", "upgrade this tool or restore another backup")
    files = []
    for f in data.get("files") or []:
        if not isinstance(f, dict):
            raise _bad(backup_id, "a file entry that is not an object")
        name = _str(f.get("name"), backup_id, "file name")
        if not _FILE_NAME.fullmatch(name) or name in ("manifest.json", MAC_FILE):
            raise _bad(backup_id, f"a file name that is not a plain name in the backup folder ({name[:40]!r})")
        size, digest = f.get("size"), f.get("sha256")
        if (
            not isinstance(size, int)
            or isinstance(size, bool)
            or size < 0
            or not isinstance(digest, str)
            or not re.fullmatch(r"[0-9a-f]{64}", digest)
        ):
            raise _bad(backup_id, f"no valid size or sha256 for {name}")
        encrypted = _str(f.get("encrypted", ""), backup_id, "encryption") if data["format"] >= FORMAT_ENCRYPTED else ""
        raw_size = f.get("raw_size")
        if raw_size is not None and (not isinstance(raw_size, int) or isinstance(raw_size, bool) or raw_size < 0):
            raise _bad(backup_id, f"no valid raw size for {name}")
        if encrypted not in ("", "age"):
            raise IntegrityError(f"Backup {backup_id} is encrypted with {encrypted[:20]!r}", "upgrade this tool or restore another backup")
        files.append(
            FileEntry(
                name,
                _str(f.get("role", ""), backup_id, "file role"),
                _str(f.get("format", ""), backup_id, "file format"),
                size,
                digest,
                encrypted,
                raw_size,
            )
        )
    enc = data.get("encryption")
    if data["format"] >= FORMAT_ENCRYPTED and enc is not None:
        if not isinstance(enc, dict) or enc.get("scheme") != "age" or not isinstance(enc.get("recipients"), list):
            raise _bad(backup_id, "an encryption record of the wrong shape")
        _strs(enc["recipients"], backup_id, "recipients")
    if len({f.name for f in files}) != len(files) or len({f.role for f in files}) != len(files):
        raise _bad(backup_id, "a file listed twice")
    tables = []
    for t in data.get("tables") or []:
        if not isinstance(t, dict):
            raise _bad(backup_id, "a table entry that is not an object")
        rows = t.get("rows")
        if rows is not None and (not isinstance(rows, int) or isinstance(rows, bool)):
            raise _bad(backup_id, "a row count that is not a number")
        digest = t.get("hash")
        if digest is not None and not (isinstance(digest, str) and re.fullmatch(r"[0-9a-f]{32}", digest)):
            raise _bad(backup_id, "a content hash that is not 32 hex digits")
        tables.append(
            TableEntry(
                _str(t.get("schema"), backup_id, "schema"),
                _str(t.get("name"), backup_id, "table"),
                _str(t.get("kind"), backup_id, "table kind"),
                rows,
                _str(t.get("section", "app"), backup_id, "section"),
                digest,
            )
        )
    for name in ("label", "created_at", "completed_at"):
        if data.get(name) is not None:
            _str(data[name], backup_id, name)
    if not isinstance(data.get("origin") or {}, dict):
        raise _bad(backup_id, "an origin that is not an object")
    source = data.get("source") or {}
    tools = data.get("tools") or {}
    roles = data.get("roles") or {}
    if not all(isinstance(x, dict) for x in (source, tools, roles)):
        raise _bad(backup_id, "a source, tools or roles field that is not an object")
    version = str(tools.get("pg_dump", "0"))
    major = int(version.split(".")[0]) if version.split(".")[0].isdigit() else 0
    return Manifest(
        raw=data,
        id=backup_id,
        kind=_str(data.get("kind", "full"), backup_id, "kind"),
        files=tuple(files),
        tables=tuple(tables),
        app_schemas=_strs(data.get("app_schemas"), backup_id, "app_schemas"),
        platform_data_schemas=_strs(data.get("platform_data_schemas"), backup_id, "platform_data_schemas"),
        additions=tuple(
            Addition.from_dict(a) for a in data.get("platform_additions") or [] if not isinstance(a, str)
        ),  # format 1 backups listed labels only
        default_acl_roles=_strs(data.get("default_acl_roles"), backup_id, "default_acl_roles"),
        app_roles=_strs(roles.get("app"), backup_id, "roles"),
        pg_dump_major=major,
        source_platform=_str(source.get("platform", "postgres"), backup_id, "platform"),
        format=data["format"],
        extensions=tuple(_extension(e, backup_id) for e in data.get("extensions") or []),
        cron_jobs=None if data.get("cron_jobs") is None else tuple(_job(j, backup_id) for j in data["cron_jobs"]),
        source_database=_str(source.get("database", ""), backup_id, "database"),
        source_user=_str(source.get("user", ""), backup_id, "user"),
    )


def _extension(e: Any, backup_id: str) -> Extension:
    if not isinstance(e, dict):
        raise _bad(backup_id, "an extension that is not an object")
    return Extension(
        _str(e.get("name"), backup_id, "extension name"),
        _str(e.get("schema"), backup_id, "extension schema"),
        _str(e.get("version"), backup_id, "extension version"),
    )


def _job(j: Any, backup_id: str) -> CronJob:
    if not isinstance(j, dict) or not isinstance(j.get("active"), bool):
        raise _bad(backup_id, "a cron job of the wrong shape")
    name = j.get("name")
    return CronJob(
        None if name is None else _str(name, backup_id, "job name"),
        _str(j.get("schedule"), backup_id, "schedule"),
        _str(j.get("command"), backup_id, "command"),
        _str(j.get("database"), backup_id, "database"),
        _str(j.get("username"), backup_id, "username"),
        j["active"],
    )


# --- authentication ----------------------------------------------------------------------


def default_key_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "fortress-backup" / "signing.key"


@dataclass(frozen=True)
class SigningKey:
    secret: bytes
    source: str  # where it came from, for messages (never the key itself)
    created: bool = False  # made just now (the first backup on this machine)

    @property
    def key_id(self) -> str:
        return hashlib.sha256(b"fortress-key-id:" + self.secret).hexdigest()[:12]

    def mac(self, manifest_bytes: bytes) -> str:
        return hmac.new(self.secret, manifest_bytes, hashlib.sha256).hexdigest()


def signing_key(configured: str | None, *, create: bool) -> SigningKey | None:
    """BACKUP_SIGNING_KEY when set (at least 32 characters), else this user's own key file,
    created (0600) on the first backup."""
    if configured:
        if len(configured) < 32:
            raise ConfigError(
                "BACKUP_SIGNING_KEY is shorter than 32 characters",
                "use a long random value, e.g. `python3 -c 'import secrets; print(secrets.token_hex(32))'`",
            )
        return SigningKey(configured.encode(), "BACKUP_SIGNING_KEY")
    path = default_key_path()
    if path.is_file():
        text = path.read_text().strip()
        if len(text) >= 32:
            return SigningKey(text.encode(), str(path))
        raise ConfigError(f"The signing key file {path} is damaged", "remove it (backups it signed become unauthenticated) or set BACKUP_SIGNING_KEY")
    if not create:
        return None
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    # Written whole under a temporary name, then linked into place (which fails if the file
    # exists): two first backups at once (two CI jobs) never see a half-written key, and both
    # end up with the same one.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32) + "\n")
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(tmp, path)
            created = True
        except FileExistsError:
            created = False  # another process made it first: use theirs
    finally:
        tmp.unlink(missing_ok=True)
    made = signing_key(None, create=False)
    assert made is not None
    return SigningKey(made.secret, made.source, created=created)


def sign(folder: Path, key: SigningKey) -> None:
    data = (folder / "manifest.json").read_bytes()
    body = json.dumps({"alg": "hmac-sha256", "key_id": key.key_id, "mac": key.mac(data)}) + "\n"
    fd = os.open(folder / MAC_FILE, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(body)
        f.flush()
        os.fsync(f.fileno())


@dataclass(frozen=True)
class Authenticity:
    ok: bool
    text: str  # for the plan


def check(folder: Path, key: SigningKey | None, data: bytes | None = None) -> Authenticity:
    """Whether the manifest in `folder` (or `data`, the exact bytes that were parsed) verifies
    under `key`."""
    try:
        if data is None:
            data = (folder / "manifest.json").read_bytes()
        sig = json.loads((folder / MAC_FILE).read_text())
        if not isinstance(sig, dict):
            raise ValueError
        key_id, mac = str(sig.get("key_id", "")), str(sig.get("mac", ""))
    except FileNotFoundError:
        return Authenticity(False, "unauthenticated: the backup is not signed")
    except (OSError, ValueError):
        return Authenticity(False, "unauthenticated: its signature file is unreadable")
    if key is None:
        return Authenticity(
            False, f"unauthenticated: signed with a key this machine does not have ({key_id[:12]}); no signing key is configured here"
        )
    if key_id != key.key_id:
        return Authenticity(False, f"unauthenticated: signed with a key this machine does not have ({key_id[:12]}; this machine's is {key.key_id})")
    if not hmac.compare_digest(mac, key.mac(data)):
        raise IntegrityError(
            f"The manifest of {folder.name} does not match its signature (key {key.key_id})",
            "the backup was changed after it was written; restore another backup",
        )
    return Authenticity(True, f"authenticated (HMAC key {key.key_id}, from {key.source})")
