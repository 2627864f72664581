"""`invoke restore --target sandbox`: a throwaway local PostgreSQL that the restore fills and
then leaves running, for a development copy of a backup. It lives in a temporary folder; its
URL (with a random password) is written to a file only this user can read, never printed."""

from __future__ import annotations

import os
import shlex
from dataclasses import dataclass
from pathlib import Path

from .sandbox import Cluster, server_suite


@dataclass(frozen=True)
class DevCluster:
    url: str  # with the password: for DATABASE_URL, never shown
    display: str
    url_file: Path
    stop_command: str


def start(pg_bin_dir: str | None = None, major: int | None = None) -> DevCluster:
    cluster = Cluster(server_suite(major, pg_bin_dir))
    cluster.start()
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
    return DevCluster(url, f"postgresql://{cluster.superuser}@127.0.0.1:{cluster.port}/postgres", url_file, stop_cmd)
