"""Comparison helpers used by several test modules."""

from __future__ import annotations

from tasks.engine import dbinfo, pgtools
from tasks.engine.conn import Target
from tasks.engine.platform import POSTGRES, Platform


def fingerprints(target: Target, platform: Platform = POSTGRES, schemas: list[str] | None = None) -> dict:
    with target.connect() as conn:
        names = schemas if schemas is not None else dbinfo.app_schemas(conn, platform)
        return dbinfo.fingerprints(conn, dbinfo.tables(conn, names))


def schema_dump(target: Target, *extra: str) -> str:
    """pg_dump --schema-only of a database, normalized: no comments, no blank lines, no
    \\restrict keys (random per run). Two databases with equal output have equal schemas."""
    with target.connect() as conn:
        major = dbinfo.server_info(conn).major
    suite = pgtools.pick(pgtools.discover(), at_least=major, prefer=major)
    out = pgtools.run(
        [suite.tool("pg_dump"), "--schema-only", "--no-password", f"--dbname={target.conninfo()}", *extra],
        env=target.tool_env(),
    ).decode()
    lines = [ln for ln in out.splitlines() if ln.strip() and not ln.startswith("--") and not ln.startswith("\\")]
    return "\n".join(lines)


def psql(target: Target, sql: str) -> None:
    """Run SQL as a user would, with the database's own search_path."""
    with target.connect(autocommit=True, search_path=None) as conn:
        conn.execute(sql)


def scalar(target: Target, sql: str):
    with target.connect(search_path=None) as conn:
        return conn.execute(sql).fetchone()[0]


def seeded(dbs, prefix: str, sql: str) -> Target:
    """A new database of the `dbs` factory with `sql` loaded."""
    target = dbs.new(prefix)
    psql(target, sql)
    return target


def state(target: Target) -> tuple[dict, str]:
    """Everything a user would miss: every table's rows (fingerprints) and the whole schema."""
    return fingerprints(target), schema_dump(target)


def resign(folder) -> None:
    """Sign a backup's edited manifest again with this user's key: for tests that need a backup
    that is broken in some other way (a wrong row count), not one that fails authentication."""
    from pathlib import Path

    from tasks.engine import manifest

    folder = Path(folder)
    (folder / manifest.MAC_FILE).unlink(missing_ok=True)
    manifest.sign(folder, manifest.signing_key(None, create=True))


def archive_bytes(path) -> bytes:
    """A custom-format archive's bytes, unwrapped from zstd where the backup wrapped it (PG15)."""
    import subprocess
    from pathlib import Path

    from tasks.engine import zstream

    raw = Path(path).read_bytes()
    if raw.startswith(zstream.MAGIC):
        raw = subprocess.run(["zstd", "-dc"], input=raw, capture_output=True, check=True).stdout
    return raw


def write_archive_bytes(path, data: bytes) -> None:
    """Write an archive back the way the backup stored it (zstd-wrapped if it was)."""
    import subprocess
    from pathlib import Path

    from tasks.engine import zstream

    if Path(path).read_bytes().startswith(zstream.MAGIC):
        data = subprocess.run(["zstd", "-1", "-c"], input=data, capture_output=True, check=True).stdout
    Path(path).write_bytes(data)
