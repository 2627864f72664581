"""`invoke restore --target sandbox`: a throwaway local PostgreSQL that the restore fills and
then leaves running, for a development copy of a backup. It lives in a temporary folder; its
URL (with a random password) is written to a file only this user can read, never printed.

The server is of the backup's own major version when that one is installed (a development copy
should behave like the database it came from), else the newest found, and it says which. A
restore into it that fails removes it again: a half-filled copy is of no use to anyone."""

from __future__ import annotations

import os
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from .catalog import Backup
from .errors import ToolsMissing
from .pgtools import PgSuite
from .sandbox import Cluster, server_suite


@dataclass(frozen=True)
class DevCluster:
    url: str  # with the password: for DATABASE_URL, never shown
    display: str
    url_file: Path
    stop_command: str
    version: str
    why: str  # why this version: the backup's own, or the newest found
    cluster: Cluster = field(repr=False, compare=False)

    def remove(self) -> None:
        """Stop the server and remove its folder (a restore into it failed)."""
        self.cluster.stop()


def backup_major(backup: Backup) -> int | None:
    """The major version of the server a backup was made from (its manifest's source), else of
    the pg_dump that made it; None when it does not say (the runbook's files)."""
    if backup.legacy:
        return None
    record = backup.record
    source = record.raw.get("source")
    num = source.get("server_version_num") if isinstance(source, dict) else None
    if isinstance(num, int) and not isinstance(num, bool) and 90000 <= num < 10_000_000:
        return num // 10000
    return record.pg_dump_major or None


def choose(major: int | None, pg_bin_dir: str | None = None) -> tuple[PgSuite, str]:
    """Server binaries for the copy, and why those."""
    if major:
        try:
            return server_suite(major, pg_bin_dir), f"the backup's own major version, {major}"
        except ToolsMissing:
            suite = server_suite(None, pg_bin_dir)
            return suite, f"the newest installed: the backup's PostgreSQL {major} server binaries are not installed here"
    return server_suite(None, pg_bin_dir), "the newest installed (the backup does not record its version)"


def start(pg_bin_dir: str | None = None, major: int | None = None) -> DevCluster:
    suite, why = choose(major, pg_bin_dir)
    cluster = Cluster(suite)
    cluster.start()
    try:
        assert cluster.root is not None
        url = cluster.url("postgres")
        url_file = cluster.root / "url"
        fd = os.open(url_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(url + "\n")
        data = cluster.root / "data"
        stop = [str(cluster._bindir_used / "pg_ctl"), "-D", str(data), "stop"]
        if cluster._user is not None:
            stop = ["runuser", "-u", cluster._user.pw_name, "--", *stop]
        stop_cmd = " ".join(shlex.quote(a) for a in stop) + f" && rm -rf {shlex.quote(str(cluster.root))}"
    except BaseException:
        cluster.stop()
        raise
    display = f"postgresql://{cluster.superuser}@127.0.0.1:{cluster.port}/postgres"
    return DevCluster(url, display, url_file, stop_cmd, suite.version, why, cluster)
