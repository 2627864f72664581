"""Connection targets: parsing, redaction, and handing credentials to psycopg and the pg tools.

A `Target` is built once from a URL (URI or key=value conninfo) plus an optional password from
the environment. The pg tools get the connection as a conninfo *without* the password in argv
(argv is visible to every user through `ps`) and the password through PGPASSWORD in their
environment only. Nothing here ever formats a password into a string meant for people.
"""

from __future__ import annotations

import atexit
import os
import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from .errors import ConfigError, ConnectionFailed

# libpq reads these from the environment; a caller's stray PGHOST or PGDATABASE must not
# silently redirect a restore, so tool environments are rebuilt without them.
_LIBPQ_ENV = (
    "PGHOST",
    "PGHOSTADDR",
    "PGPORT",
    "PGDATABASE",
    "PGUSER",
    "PGPASSWORD",
    "PGSERVICE",
    "PGOPTIONS",
    "PGSSLMODE",
    "PGTARGETSESSIONATTRS",
    "PGAPPNAME",
    "PGCONNECT_TIMEOUT",
)


_SECRET_PARAMS = ("sslpassword",)

# What libpq would take from the environment where the URL is silent. A Target resolves these
# once, into explicit parameters: psycopg (whose libpq reads the process environment) and the
# tools (whose environment is rebuilt without them) then connect to the same server as the same
# user, and what is shown is what is used.
_ENV_PARAMS = (
    ("PGHOST", "host"),
    ("PGHOSTADDR", "hostaddr"),
    ("PGPORT", "port"),
    ("PGUSER", "user"),
    ("PGDATABASE", "dbname"),
    ("PGSERVICE", "service"),
    ("PGOPTIONS", "options"),
    ("PGSSLMODE", "sslmode"),
    ("PGTARGETSESSIONATTRS", "target_session_attrs"),
    ("PGAPPNAME", "application_name"),
    ("PGCONNECT_TIMEOUT", "connect_timeout"),
)
ENV_VARS = tuple(var for var, _ in _ENV_PARAMS) + ("PGPASSWORD",)


@lru_cache(maxsize=8)
def _remove(path: str) -> None:
    if os.path.exists(path):
        os.remove(path)


def _service_file(secrets: tuple[tuple[str, str], ...]) -> str:
    fd, path = tempfile.mkstemp(prefix="fortress-pgservice-", suffix=".conf")
    with os.fdopen(fd, "w") as f:  # mkstemp creates it 0600
        f.write("[fortress]\n" + "".join(f"{k}={v}\n" for k, v in secrets))
    atexit.register(_remove, path)
    return path


def redact_url(url: str) -> str:
    """Hide the password of a URI or key=value conninfo; keep everything else readable."""
    if "://" in url:
        scheme, _, rest = url.partition("://")
        # Credentials end at the last '@', not where urlsplit would stop: libpq accepts a raw
        # '#', '?' or '@' in a password, and a raw '/' must not reveal it either.
        userinfo, at, hostpart = rest.rpartition("@")
        user, colon, _ = userinfo.partition(":")
        if at and colon and "@" not in user and "/" not in user:
            rest = f"{user}:****@{hostpart}"
        return f"{scheme}://" + re.sub(r"(?i)((?:ssl)?password=)[^&]*", r"\1****", rest)
    # an unterminated quote runs to the end: all of it is the password, none of it shown
    return re.sub(r"(?i)((?:ssl)?password\s*=\s*)('(?:[^'\\]|\\.)*(?:'|$)|\S+)", r"\1****", url)


@dataclass(frozen=True)
class Target:
    """A database to connect to. `params` never includes the password."""

    params: Mapping[str, str]
    password: str | None = None
    # Other secrets a conninfo may carry (the passphrase of an encrypted client key). Like the
    # password they never go into argv; tools read them from a private service file.
    secrets: Mapping[str, str] = field(default_factory=dict)
    # parameter -> the variable it was filled in from (the URL lacked it), to show
    resolved_from: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_url(cls, url: str, password: str | None = None, environ: Mapping[str, str] | None = None) -> Target:
        """Parse the URL; what it lacks, libpq's variables fill in (`environ`: the process
        environment by default, or the settings' environment-then-.env view), once. The password:
        the URL's, else `password`, else PGPASSWORD."""
        if not url or not url.strip():
            raise ConfigError("No database URL given", "set DATABASE_URL in .env or pass --url")
        try:
            params = {k: str(v) for k, v in conninfo_to_dict(url.strip()).items() if v is not None}
        except psycopg.ProgrammingError as exc:
            # psycopg's message may echo the conninfo; never show it.
            raise ConfigError(
                f"Cannot parse the database URL {redact_url(url)!r}",
                "use postgresql://USER:PASSWORD@HOST:5432/DBNAME; percent-encode special characters",
            ) from exc
        if "://" in url and any("@" in params.get(k, "") for k in ("host", "port", "dbname")):
            # libpq ends the password at the first '@' before a '/': the rest of a raw '/' or '@'
            # in it spilled into the host, port or database name, and would be shown as such.
            raise ConfigError(
                f"Cannot parse the database URL {redact_url(url)!r}: the password holds a raw '/' or '@'",
                "percent-encode special characters in the password ('/' is %2F, '@' is %40)",
            )
        url_password = params.pop("password", None)
        secrets = {k: params.pop(k) for k in _SECRET_PARAMS if k in params}
        env = os.environ if environ is None else environ
        resolved: dict[str, str] = {}
        for var, key in _ENV_PARAMS:
            value = env.get(var)
            if not params.get(key) and value:
                params[key] = value
                resolved[key] = var
        if not params.get("dbname"):
            params["dbname"] = params.get("user") or "postgres"
        if not params.get("port") and not params.get("service"):
            params["port"] = "5432"  # explicit: the tools' libpq and psycopg's may have other defaults
        if not url_password and not password and env.get("PGPASSWORD"):
            password = env["PGPASSWORD"]
            resolved["password"] = "PGPASSWORD"
        target = cls(params=params, password=url_password if url_password else password, secrets=secrets, resolved_from=resolved)
        target.check_session_mode()
        return target

    def check_session_mode(self) -> None:
        """Supabase's transaction pooler (port 6543) hands each transaction to any server
        connection: pg_dump's snapshot, its session settings and a restore's session SETs do not
        survive that. Refuse it with the fix, rather than fail halfway or dump inconsistently."""
        supabase = self.host.endswith(".supabase.com") or self.host.endswith(".supabase.co") or ((self.user or "").startswith("postgres."))
        if self.port == "6543" and supabase:
            raise ConfigError(
                f"{self.display()} is Supabase's transaction pooler (port 6543), which cannot carry a dump "
                "or a restore: both need one database session from start to end",
                "use the session pooler (same host, port 5432) or the direct connection string",
            )

    def with_dbname(self, dbname: str) -> Target:
        return Target(params={**self.params, "dbname": dbname}, password=self.password, secrets=self.secrets, resolved_from=self.resolved_from)

    def resolution(self) -> str:
        """What the environment filled in, for a step line: 'port from PGPORT, user from PGUSER'."""
        return ", ".join(f"{k} from {v}" for k, v in self.resolved_from.items())

    @property
    def dbname(self) -> str:
        return self.params["dbname"]

    @property
    def host(self) -> str:
        return self.params.get("host") or self.params.get("hostaddr") or "local socket"

    @property
    def port(self) -> str:
        return self.params.get("port") or "5432"

    @property
    def user(self) -> str | None:
        return self.params.get("user")

    def is_named_by(self, spec: str) -> bool:
        """Whether `spec` (a URL or conninfo, or a Supabase project ref) names this target, the way
        `--date` matches sources: this machine's local names are one host; a Supabase project is
        the same through its direct host or its pooler. For PROTECTED_TARGETS."""
        from .catalog import source_key  # catalog does not import conn: no cycle

        spec = spec.strip()
        mine = source_key(self.host, self.port, self.dbname, self.user)
        if "://" not in spec and "=" not in spec:
            return bool(spec) and mine.ref == spec.lower()
        try:
            params = {k: str(v) for k, v in conninfo_to_dict(spec).items() if v is not None}
        except psycopg.ProgrammingError:
            return False
        other = Target(params={**params, "dbname": (params.get("dbname") or params.get("user") or "postgres").rstrip("/")})
        return source_key(other.host, other.port, other.dbname, other.user).matches(mine)

    def resolved(self) -> Target:
        """This target with host, port, user and database as a first connection really found
        them (a service file, libpq's defaults): every tool then uses exactly those, and the
        plan shows them."""
        with self.connect() as conn:
            info = conn.info
            found = {"host": info.host, "port": str(info.port), "user": info.user, "dbname": info.dbname}
        changed = {k: v for k, v in found.items() if v and self.params.get(k) != v}
        if not changed:
            return self
        # explicit values override a service file's; its other settings (sslmode, ...) still apply
        params = {**self.params, **changed}
        note = dict(self.resolved_from)
        for k in changed:
            note.setdefault(k, "the connection (service file or libpq default)")
        return Target(params=params, password=self.password, secrets=self.secrets, resolved_from=note)

    def display(self) -> str:
        """What a person sees: postgresql://user@host:port/db, never the password."""
        user = f"{self.user}@" if self.user else ""
        return f"postgresql://{user}{self.host}:{self.port}/{self.dbname}"

    def conninfo(self) -> str:
        """key=value conninfo without the password: safe for argv."""
        return make_conninfo(**self.params)

    def tool_env(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        env = {k: v for k, v in (os.environ if base is None else base).items() if k not in _LIBPQ_ENV}
        if self.password:
            env["PGPASSWORD"] = self.password
        if self.secrets:
            # libpq has no environment variable for these: a service file (mode 0600, removed at
            # exit) supplies them as defaults under the connection given in argv.
            env["PGSERVICEFILE"] = _service_file(tuple(sorted(self.secrets.items())))
            env["PGSERVICE"] = "fortress"
        env.setdefault("PGCONNECT_TIMEOUT", "10")
        return env

    def connect(self, *, search_path: str | None = "", **kwargs: Any) -> psycopg.Connection:
        """A connection whose search_path is empty (only pg_catalog) before any query: the
        database's owner may have set a search_path that puts their own `current_setting()` or
        `count()` first, and every query of this tool would then run their code as us. Pass
        `search_path=None` to keep the database's own (tests that create unqualified objects)."""
        kw: dict[str, Any] = {**self.params, **self.secrets}
        if self.password:
            kw["password"] = self.password
        kw.setdefault("connect_timeout", 10)
        kw.setdefault("application_name", "fortress-backup")
        try:
            conn = psycopg.connect(**kw, **kwargs)
        except psycopg.OperationalError as exc:
            raise explain_connect_error(self, exc) from None
        except psycopg.ProgrammingError as exc:  # libpq refused a parameter: bad value for connect_timeout, an unknown option
            raise ConfigError(
                f"The connection settings are invalid: {' '.join(str(exc).split())}",
                "fix that parameter in the URL (DATABASE_URL, TARGET_DATABASE_URL, --url/--target) or in the PG* variables",
            ) from None
        if search_path is not None:
            try:
                # a SET after connecting rather than libpq's `options`, which poolers may refuse
                conn.execute("SELECT pg_catalog.set_config('search_path', %s, false)", (search_path,))
                if not conn.autocommit:
                    conn.commit()
            except BaseException:
                conn.close()
                raise
        return conn


def explain_connect_error(target: Target, exc: Exception) -> ConnectionFailed:
    """Turn libpq's multi-line complaint into one line with the next step."""
    text = " ".join(str(exc).split())
    where = target.display()
    low = text.lower()
    if "password authentication failed" in low or "no password supplied" in low:
        return ConnectionFailed(
            f"Login to {where} failed: wrong or missing password for user {target.user!r}",
            "check the user name and the password in the URL (DATABASE_URL or --target/--url), PGPASSWORD or SUPABASE_DB_PASSWORD",
        )
    if "does not exist" in low and "database" in low:
        return ConnectionFailed(
            f"Database {target.dbname!r} does not exist on {target.host}:{target.port}",
            "check the database name at the end of the URL (DATABASE_URL or --target/--url) (Supabase uses 'postgres')",
        )
    if "role" in low and "does not exist" in low:
        return ConnectionFailed(
            f"User {target.user!r} does not exist on {target.host}:{target.port}",
            "check the user name in the URL (DATABASE_URL or --target/--url)",
        )
    direct_supabase = target.host.startswith("db.") and target.host.endswith((".supabase.co", ".supabase.red"))
    ipv6_hint = (
        "Supabase's direct host db.<ref>.supabase.co has only an IPv6 address; on a network without "
        "IPv6 use the session pooler URL (Dashboard > Connect > Session pooler, port 5432)"
    )
    if "could not translate host name" in low or "name or service not known" in low:
        return ConnectionFailed(
            f"Host {target.host!r} cannot be resolved",
            ipv6_hint if direct_supabase else "check the host in the URL (DATABASE_URL or --target/--url) for a typo",
        )
    if "network is unreachable" in low or "cannot assign requested address" in low or "no route to host" in low:
        return ConnectionFailed(
            f"Cannot reach {target.host}:{target.port}: network unreachable",
            ipv6_hint if direct_supabase else "check the network between here and the database",
        )
    if "connection refused" in low:
        return ConnectionFailed(
            f"Nothing is listening on {target.host}:{target.port}",
            "check the host and port in the URL (DATABASE_URL or --target/--url), or start the database",
        )
    if "timeout" in low or "timed out" in low:
        return ConnectionFailed(
            f"Connecting to {target.host}:{target.port} timed out",
            "check the host, port and firewall",
        )
    return ConnectionFailed(f"Cannot connect to {where}: {text}", "check the URL (DATABASE_URL or --target/--url)")
