"""Effective configuration: task flag > process environment > .env > built-in default.

`load_settings` is pure: it takes the flags, the environment and the parsed .env as mappings, so
tests and tasks get the same answer for the same inputs. `read_dotenv` reads `.env` from the
working directory only (never from the package's folder, which python-dotenv's find_dotenv would
search first).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from dotenv import dotenv_values

from .conn import ENV_VARS, redact_url
from .errors import ConfigError
from .objects import check_store_url

DEFAULT_BACKUP_DIR = ".backups"

# (setting, accepted variable names in order of preference)
URL_VARS = ("DATABASE_URL", "SUPABASE_DB_URL")
TARGET_URL_VARS = ("TARGET_DATABASE_URL",)
PASSWORD_VARS = ("PGPASSWORD", "SUPABASE_DB_PASSWORD")
BACKUP_DIR_VARS = ("BACKUP_DIR",)
PG_BIN_VARS = ("PG_BIN_DIR",)
SIGNING_KEY_VARS = ("BACKUP_SIGNING_KEY",)
PROTECTED_VARS = ("PROTECTED_TARGETS",)
LOCK_TIMEOUT_VARS = ("LOCK_TIMEOUT",)
CONTENT_HASH_VARS = ("BACKUP_CONTENT_HASHES",)
NOTIFY_VARS = ("BACKUP_NOTIFY_URL",)
DEFAULT_LOCK_TIMEOUT = "30s"
STORE_VARS = ("BACKUP_STORE",)
AGE_RECIPIENTS_VARS = ("BACKUP_AGE_RECIPIENTS",)
AGE_IDENTITY_VARS = ("BACKUP_AGE_IDENTITY",)
UPLOAD_GRACE_VARS = ("BACKUP_UPLOAD_GRACE",)
DEFAULT_UPLOAD_GRACE = "24h"
# retention (`invoke prune`): setting -> (variable, default)
RETENTION_VARS = {
    "keep_last": ("BACKUP_KEEP_LAST", 3),
    "keep_daily": ("BACKUP_KEEP_DAILY", 7),
    "keep_weekly": ("BACKUP_KEEP_WEEKLY", 4),
    "keep_monthly": ("BACKUP_KEEP_MONTHLY", 12),
    "keep_undo_days": ("BACKUP_KEEP_UNDO_DAYS", 14),
    "keep_predeploy_days": ("BACKUP_KEEP_PREDEPLOY_DAYS", 30),
}

_DURATION_RE = re.compile(r"^(\d+)\s*(ms|s|min|h)?$")
_UNIT_MS = {"ms": 1, "s": 1000, "min": 60_000, "h": 3_600_000}


def parse_duration(text: str) -> int:
    """A PostgreSQL-style duration (`30s`, `500ms`, `2min`, `1h`, or bare milliseconds) in
    milliseconds; zero or anything else is a ConfigError (no wait may be unbounded)."""
    m = _DURATION_RE.match(text.strip())
    ms = int(m.group(1)) * _UNIT_MS[m.group(2) or "ms"] if m else 0
    if ms <= 0:
        raise ConfigError(f"LOCK_TIMEOUT {text!r} is not a positive duration", "use for example 30s, 500ms or 2min")
    return ms


_GRACE_RE = re.compile(r"^(\d+)\s*(s|min|h|d)$")
_UNIT_S = {"s": 1, "min": 60, "h": 3600, "d": 86400}


def parse_grace(text: str) -> int:
    """BACKUP_UPLOAD_GRACE (`24h`, `2d`, `90min`, `30s`) in seconds: how old an upload without a
    manifest must be before `prune --remote` takes it for cut off. Zero or anything else is a
    ConfigError: a running upload must never be removed."""
    m = _GRACE_RE.match(text.strip())
    seconds = int(m.group(1)) * _UNIT_S[m.group(2)] if m else 0
    if seconds <= 0:
        raise ConfigError(
            f"BACKUP_UPLOAD_GRACE {text[:20]!r} is not a positive duration",
            "use for example 24h, 2d or 90min (longer than your longest backup takes to upload)",
        )
    return seconds


@dataclass(frozen=True)
class Settings:
    database_url: str | None
    password: str | None
    backup_dir: Path
    pg_bin_dir: str | None
    signing_key: str | None = None  # secret: never shown
    protected_targets: tuple[str, ...] = ()  # URLs (host, port, database) or Supabase project refs
    # how long DDL of a restore, and pg_dump, wait for a table lock: a PostgreSQL duration ("30s")
    lock_timeout: str = DEFAULT_LOCK_TIMEOUT
    target_url: str | None = None  # restore/reset target (--target, TARGET_DATABASE_URL); may hold its password
    # libpq's variables (PGHOST, PGPORT, PGUSER, PGPASSWORD, ...): environment, then .env. What a
    # URL lacks, these fill in, once (Target.from_url), for every connection of the run.
    pg_env: Mapping[str, str] = field(default_factory=dict)
    # object storage URL (s3://, gs://, az://) or a folder; None: backup_dir only
    store: str | None = None
    age_recipients: tuple[str, ...] = ()  # public keys (age1...) or recipient files: encrypt every file
    age_identity: str | None = None  # a key file that decrypts (path; the key itself is never shown)
    retention: Mapping[str, int] = field(default_factory=dict)
    # how old files without a manifest in the object store must be for prune to remove them
    upload_grace: str = DEFAULT_UPLOAD_GRACE
    # setting name -> where its value came from ("flag --x", "environment VAR", ".env VAR", "default")
    sources: Mapping[str, str] = field(default_factory=dict)
    content_hashes: bool = False  # BACKUP_CONTENT_HASHES: per-table content hashes for drills
    notify_url: str | None = None  # BACKUP_NOTIFY_URL: secret (a webhook URL carries its token)
    # the app repository (nearest folder with .git or pyproject.toml): its .gitignore keeps
    # backups and .env out of git
    project_root: Path | None = None

    def describe(self) -> list[tuple[str, str, str]]:
        """(name, shown value, source) rows; secrets redacted, suitable for printing."""
        rows = [
            ("database_url", shown_url(self.database_url) if self.database_url else "(not set)"),
            ("target_url", shown_url(self.target_url) if self.target_url else "(not set: restore and reset use database_url)"),
            ("password", self._password_shown()),
            ("backup_dir", str(self.backup_dir)),
            ("pg_bin_dir", self.pg_bin_dir or "(search PATH and standard folders)"),
            ("signing_key", "****" if self.signing_key else "(this user's key file)"),
            ("protected_targets", ", ".join(redact_url(t) for t in self.protected_targets) or "(none)"),
            ("lock_timeout", self.lock_timeout),
            ("store", shown_url(self.store) if self.store else "(not set: backups stay in backup_dir)"),
            ("age_recipients", ", ".join(self.age_recipients) or "(not set: backups are not encrypted)"),
            ("age_identity", self.age_identity or "(not set)"),
            ("content_hashes", "on" if self.content_hashes else "off"),
            ("notify_url", "****" if self.notify_url else "(not set)"),
        ]
        rows += [(name, str(self.retention.get(name, default))) for name, (_, default) in RETENTION_VARS.items()]
        rows.append(("upload_grace", self.upload_grace))
        sources = dict(self.sources)
        if self.database_url and url_has_password(self.database_url):
            sources["password"] = sources.get("database_url", "default")
        elif not self.password and _pgpass_file(self.pg_env):
            sources["password"] = f"password file {_pgpass_file(self.pg_env)}"
        return [(name, value, sources.get(name, "default")) for name, value in rows]

    def _password_shown(self) -> str:
        """Where the password comes from, never the password."""
        if self.database_url and url_has_password(self.database_url):
            return "in database_url (not shown)" + ("; the URL's wins over the variable" if self.password else "")
        if self.password:
            return "set (not shown)"
        if _pgpass_file(self.pg_env):
            return "looked up in the password file by libpq"
        return "(not set)"

    @property
    def lock_timeout_ms(self) -> int:
        return parse_duration(self.lock_timeout)

    @property
    def upload_grace_s(self) -> int:
        return parse_grace(self.upload_grace)


def url_has_password(url: str) -> bool:
    return redact_url(url) != url


def shown_url(url: str) -> str:
    """A URL as shown to people: user@host:port/db, the password left out (not even ****)."""
    return redact_url(url).replace(":****@", "@", 1)


def _pgpass_file(pg_env: Mapping[str, str]) -> str | None:
    path = Path(pg_env.get("PGPASSFILE") or os.environ.get("PGPASSFILE") or Path.home() / ".pgpass").expanduser()
    return str(path) if path.is_file() else None


def read_dotenv(cwd: Path | None = None) -> dict[str, str]:
    """Parse `.env` in the working directory; a missing file is an empty mapping, not an error."""
    path = (cwd or Path.cwd()) / ".env"
    if not path.is_file():
        return {}
    return {k: v for k, v in dotenv_values(path).items() if v is not None}


_REF_RE = re.compile(r"^[a-z]{20}$")


def linked_project_url(cwd: Path) -> str | None:
    """Where `supabase link` has run, the CLI keeps the project ref (and the pooler URL when the
    API gave one) under supabase/.temp/. Build the connection the CLI itself would use: the
    pooler's session mode (port 5432) when recorded, else the direct host. The password is not
    there (the CLI keeps it in the OS keyring): it comes from SUPABASE_DB_PASSWORD."""
    temp = cwd / "supabase" / ".temp"
    ref_file = temp / "project-ref"
    if not ref_file.is_file():
        return None
    ref = ref_file.read_text().strip()
    if not _REF_RE.match(ref):
        raise ConfigError(
            f"supabase/.temp/project-ref does not hold a project ref ({len(ref)} characters)",
            "run `supabase link --project-ref <ref>` again, or set DATABASE_URL",
        )
    pooler_file = temp / "pooler-url"
    pooler = pooler_file.read_text().strip() if pooler_file.is_file() else ""
    if pooler:
        pooler = pooler.replace(":[YOUR-PASSWORD]", "")
        parts = urlsplit(pooler)
        host = parts.hostname
        user = parts.username or f"postgres.{ref}"
        if host:
            # Session mode, as the CLI forces: the transaction pooler (6543) cannot hold the
            # single session a dump's snapshot or a restore's transaction needs.
            return f"postgresql://{user}@{host}:5432/postgres?sslmode=require"
    return f"postgresql://postgres@db.{ref}.supabase.co:5432/postgres?sslmode=require"


def _pick(
    name: str,
    flag_value: str | None,
    flag_name: str | None,
    names: tuple[str, ...],
    environ: Mapping[str, str],
    dotenv: Mapping[str, str],
    sources: dict[str, str],
) -> str | None:
    if flag_value not in (None, ""):
        sources[name] = f"flag --{flag_name}"
        return flag_value
    for label, mapping in (("environment", environ), (".env", dotenv)):
        for var in names:
            value = mapping.get(var)
            if value not in (None, ""):
                sources[name] = f"{label} {var}"
                return value
    sources[name] = "default"
    return None


def load_settings(
    flags: Mapping[str, str | None] | None = None,
    environ: Mapping[str, str] | None = None,
    dotenv: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> Settings:
    flags = flags or {}
    environ = os.environ if environ is None else environ
    dotenv = {} if dotenv is None else dotenv
    sources: dict[str, str] = {}
    url = _pick("database_url", flags.get("url"), "url", URL_VARS, environ, dotenv, sources)
    if url is None and cwd is not None:
        linked = linked_project_url(cwd)
        if linked:
            url = linked
            sources["database_url"] = "linked project (supabase/.temp)"
    password = _pick("password", None, None, PASSWORD_VARS, environ, dotenv, sources)
    backup_dir = _pick("backup_dir", flags.get("backup_dir"), "backup-dir", BACKUP_DIR_VARS, environ, dotenv, sources)
    pg_bin = _pick("pg_bin_dir", flags.get("pg_bin_dir"), "pg-bin-dir", PG_BIN_VARS, environ, dotenv, sources)
    signing = _pick("signing_key", None, None, SIGNING_KEY_VARS, environ, dotenv, sources)
    protected = _pick("protected_targets", None, None, PROTECTED_VARS, environ, dotenv, sources)
    lock_timeout = _pick("lock_timeout", flags.get("lock_timeout"), "lock-timeout", LOCK_TIMEOUT_VARS, environ, dotenv, sources)
    lock_timeout = (lock_timeout or DEFAULT_LOCK_TIMEOUT).strip()
    parse_duration(lock_timeout)
    hashes = _pick("content_hashes", None, None, CONTENT_HASH_VARS, environ, dotenv, sources)
    if hashes is not None and hashes.strip().lower() not in ("on", "off", "true", "false", "1", "0", "yes", "no"):
        raise ConfigError(f"BACKUP_CONTENT_HASHES {hashes[:20]!r} is not on or off", "set it to on or off")
    notify_url = _pick("notify_url", None, None, NOTIFY_VARS, environ, dotenv, sources)
    target_url = _pick("target_url", flags.get("target"), "target", TARGET_URL_VARS, environ, dotenv, sources)
    pg_env: dict[str, str] = {}
    for var in ENV_VARS:
        for mapping in (environ, dotenv):
            if mapping.get(var):
                pg_env[var] = mapping[var]
                break
    store = _pick("store", flags.get("store"), "store", STORE_VARS, environ, dotenv, sources)
    if store and store.strip():
        check_store_url(store)  # one clear error in every command, before anything runs
    recipients = _pick("age_recipients", None, None, AGE_RECIPIENTS_VARS, environ, dotenv, sources)
    identity = _pick("age_identity", None, None, AGE_IDENTITY_VARS, environ, dotenv, sources)
    grace = _pick("upload_grace", flags.get("upload_grace"), "upload-grace", UPLOAD_GRACE_VARS, environ, dotenv, sources)
    grace = (grace or DEFAULT_UPLOAD_GRACE).strip()
    parse_grace(grace)
    retention: dict[str, int] = {}
    for name, (var, default) in RETENTION_VARS.items():
        text = _pick(name, flags.get(name), name.replace("_", "-"), (var,), environ, dotenv, sources)
        retention[name] = default if text is None else _count(str(text), sources[name])
    if url is not None and not url.strip():
        raise ConfigError("DATABASE_URL is empty", "set it to postgresql://USER@HOST:5432/DBNAME")
    return Settings(
        database_url=url.strip() if url else None,
        password=password,
        backup_dir=Path(backup_dir or DEFAULT_BACKUP_DIR).expanduser(),
        pg_bin_dir=pg_bin,
        signing_key=signing,
        protected_targets=tuple(t.strip() for t in (protected or "").split(",") if t.strip()),
        lock_timeout=lock_timeout,
        target_url=target_url.strip() if target_url and target_url.strip() else None,
        pg_env=pg_env,
        store=store.strip() if store and store.strip() else None,
        age_recipients=tuple(r.strip() for r in re.split(r"[,\n]", recipients or "") if r.strip()),
        age_identity=identity.strip() if identity and identity.strip() else None,
        retention=retention,
        upload_grace=grace,
        sources=sources,
        content_hashes=hashes is not None and hashes.strip().lower() in ("on", "true", "1", "yes"),
        notify_url=notify_url.strip() if notify_url and notify_url.strip() else None,
    )


def _count(text: str, source: str) -> int:
    if not re.fullmatch(r"\s*\d+\s*", text):
        raise ConfigError(f"{source} is {text[:20]!r}, not a whole number", "use 0 or more, for example 7")
    return int(text)
