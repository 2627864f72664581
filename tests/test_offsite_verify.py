"""`invoke predeploy` and `invoke verify` on backups that live only in object storage (moto's S3
server on loopback) and are age-encrypted, as CI and a second machine run them: predeploy backs
up to the bucket and drills what the bucket holds; verify finds a backup that is not local in
the store, at every level, with the key it needs (a missing or wrong key fails first, naming the
recipient); results are recorded beside the backup in the bucket and shown by `list --remote`;
nothing decrypted is left on disk."""

from __future__ import annotations

import json
import time
import uuid

import pytest

from tasks.engine.objects import CloudBlobs
from tests.conftest import run_invoke
from tests.fixtures_cli import error_line
from tests.helpers import psql
from tests.storage_servers import s3_server  # noqa: F401  (session fixture)
from tests.test_storage_contract import age_key

MARKER = "fortress-verify-offsite-5c1d"


@pytest.fixture(scope="module")
def source(pg17):
    db = pg17.create_database(f"offv_{uuid.uuid4().hex[:6]}")
    psql(
        db,
        "CREATE SCHEMA app; CREATE TABLE app.items (id int PRIMARY KEY, v text NOT NULL);"
        "INSERT INTO app.items SELECT g, md5(g::text) FROM generate_series(1, 200) g;"
        f"CREATE TABLE app.settings (k text PRIMARY KEY, v text); INSERT INTO app.settings VALUES ('marker', '{MARKER}');",
    )
    yield pg17.url(db.dbname)
    pg17.drop_database(db.dbname)


def results_in_bucket(blobs: CloudBlobs, backup_id: str) -> list[dict]:
    if blobs.head(f"{backup_id}/verification.json") is None:
        return []
    return json.loads(b"".join(blobs.get(f"{backup_id}/verification.json")))["results"]


def holds_marker(folder) -> list[str]:
    return [str(p) for p in folder.rglob("*") if p.is_file() and MARKER.encode() in p.read_bytes()]


def test_predeploy_to_an_encrypted_store_then_verify_elsewhere(source, s3_server, tmp_path, monkeypatch):  # noqa: F811
    public, keyfile = age_key(tmp_path, "ci.key")
    _, wrongfile = age_key(tmp_path, "other.key")
    url = s3_server.url()
    for k, v in s3_server.env.items():
        monkeypatch.setenv(k, v)
    blobs = CloudBlobs(url)
    ci = tmp_path / "ci"
    ci.mkdir()
    env = {**s3_server.env, "DATABASE_URL": source, "BACKUP_STORE": url, "BACKUP_AGE_RECIPIENTS": public, "BACKUP_SIGNING_KEY": "s" * 40}

    # CI that can encrypt but not decrypt cannot drill: refused before a backup is made
    res = run_invoke(["predeploy"], cwd=ci, env=env)
    assert res.returncode == 2, res.stderr
    assert public in error_line(res) and "BACKUP_AGE_IDENTITY" in error_line(res) and "--level quick" in error_line(res)
    assert blobs.list() == []

    res = run_invoke(["predeploy"], cwd=ci, env={**env, "BACKUP_AGE_IDENTITY": str(keyfile)})
    assert res.returncode == 0, res.stderr
    (line,) = res.stdout.splitlines()
    backup_id = line.split("backup ", 1)[1].split(" ", 1)[0]
    assert line.startswith(f"predeploy ok: backup {backup_id}") and "drill passed" in line and "content hashes match" in line
    assert line.endswith(f"restore it with: BACKUP_STORE={url} invoke restore --id {backup_id}")
    assert not (ci / ".backups").exists()  # only in the store
    stored = {o.key.split("/", 1)[1] for o in blobs.list()}
    assert stored == {"app.dump", "roles.json", "manifest.json", "manifest.hmac", "verification.json"}
    assert not any(MARKER.encode() in b"".join(blobs.get(f"{backup_id}/{n}")) for n in stored)
    (drilled,) = results_in_bucket(blobs, backup_id)
    assert drilled["level"] == "drill" and drilled["ok"] is True and drilled["mac"]

    listed = run_invoke(["list", "--remote"], cwd=ci, env=env)
    assert listed.returncode == 0, listed.stderr
    assert "drill ok" in listed.stdout and "unsigned result" not in listed.stdout

    # a laptop that never saw the backup: verify finds it in the store (not local)
    laptop = tmp_path / "laptop"
    laptop.mkdir()
    scratch = tmp_path / "scratch"  # the run's temporary folders (fetched files, decryption pipes)
    scratch.mkdir()
    lenv = {**env, "BACKUP_AGE_RECIPIENTS": "", "TMPDIR": str(scratch)}
    for identity, level in ((None, "archive"), (wrongfile, "quick")):
        res = run_invoke(["verify", "--id", backup_id, "--level", level], cwd=laptop, env={**lenv, "BACKUP_AGE_IDENTITY": str(identity or "")})
        assert res.returncode == 2, res.stderr
        assert public in error_line(res) and "BACKUP_AGE_IDENTITY" in error_line(res)
    assert len(results_in_bucket(blobs, backup_id)) == 1  # refused before anything ran: nothing recorded

    # quick needs no key: the stored bytes' checksums, saying the contents were not decrypted
    res = run_invoke(["verify", "--remote", "--id", backup_id, "--level", "quick"], cwd=laptop, env=lenv)
    assert res.returncode == 0, res.stderr
    assert "quick passed" in res.stdout and "not their contents" in res.stderr

    for level in ("quick", "archive"):
        res = run_invoke(["verify", "--id", backup_id, "--level", level], cwd=laptop, env={**lenv, "BACKUP_AGE_IDENTITY": str(keyfile)})
        assert res.returncode == 0, res.stderr
        assert f"{backup_id}: {level} passed" in res.stdout and f"{url}/{backup_id}/verification.json" in res.stderr
    assert "archives read to the end" in res.stdout
    assert [r["level"] for r in results_in_bucket(blobs, backup_id)] == ["drill", "quick", "quick", "archive"]
    assert list(scratch.iterdir()) == [] and not holds_marker(laptop)  # nothing fetched or decrypted stays

    res = run_invoke(["verify", "--remote", "--all"], cwd=laptop, env={**lenv, "BACKUP_AGE_IDENTITY": str(keyfile), "TMPDIR": "/tmp"})
    assert res.returncode == 0, res.stderr
    assert "drill passed, 2 tables: row counts and content hashes match" in res.stdout

    # the bucket's copy damaged: verify reads the store, fails, records it; list shows it
    blobs.put(f"{backup_id}/app.dump", b"age-encryption.org/v1\nnot what was backed up")
    res = run_invoke(["verify", "--id", backup_id, "--level", "quick"], cwd=laptop, env={**lenv, "BACKUP_AGE_IDENTITY": str(keyfile)})
    assert res.returncode == 5, res.stderr
    assert "app.dump does not match its checksum" in error_line(res)
    listed = run_invoke(["list", "--remote"], cwd=laptop, env=lenv)
    assert "quick FAILED" in listed.stdout


def test_verify_reads_a_local_encrypted_backup_through_its_key(source, tmp_path):
    public, keyfile = age_key(tmp_path)
    env = {"DATABASE_URL": source, "BACKUP_AGE_RECIPIENTS": public, "BACKUP_SIGNING_KEY": "s" * 40}
    res = run_invoke(["backup"], cwd=tmp_path, env=env)
    assert res.returncode == 0, res.stderr
    res = run_invoke(["verify", "--level", "archive"], cwd=tmp_path, env={**env, "BACKUP_AGE_IDENTITY": str(keyfile)})
    assert res.returncode == 0, res.stderr
    assert "archive passed, 2 tables" in res.stdout


def test_an_encrypted_archive_opened_again_is_read_from_its_start(source, tmp_path):
    """pg_restore opens an archive twice (the header, then the whole); the decrypting pipe once
    let the second open attach to the first one's stream, whose buffer held bytes from the middle
    of the file: "did not find magic string in file header", about one time in three."""
    from tasks.engine import catalog, crypt, pgtools, toc
    from tasks.engine.conn import Target
    from tasks.engine.dump import create_backup
    from tasks.engine.storage import LocalStore

    public, keyfile = age_key(tmp_path)
    store = LocalStore(tmp_path / "b", recipients=[public], identity=crypt.load_identity(str(keyfile)))
    backup = catalog.load(store, create_backup(Target.from_url(source, None, {}), store).backup_id)
    suite = pgtools.pick(pgtools.discover(None), at_least=backup.record.pg_dump_major, tools=("pg_restore",), purpose="the test")
    for _ in range(15):
        pinned = catalog.pin(store, backup)
        try:
            toc._read.cache_clear()
            assert toc.read(suite, catalog.pinned_path(pinned["app.dump"]))
        finally:
            catalog.unpin(pinned)


def test_prune_remote_removes_cut_off_uploads_older_than_the_grace_only(source, s3_server, tmp_path, monkeypatch):  # noqa: F811
    for k, v in s3_server.env.items():
        monkeypatch.setenv(k, v)
    url = s3_server.url()
    blobs = CloudBlobs(url)
    env = {**s3_server.env, "DATABASE_URL": source, "BACKUP_STORE": url, "BACKUP_SIGNING_KEY": "s" * 40}
    res = run_invoke(["backup"], cwd=tmp_path, env=env)
    assert res.returncode == 0, res.stderr
    # a runner killed midway months ago, whose files were written just now (a slow upload: the id is
    # when it started), and objects that are not this tool's
    cut = "2026-01-01T000000Z"
    for name in ("roles.json", "app.dump", "manifest.hmac"):
        blobs.put(f"{cut}/{name}", b"partial")
    foreign = ["notes/readme.txt", "2026-01-02T000000Z/sub/other.bin"]
    for key in foreign:
        blobs.put(key, b"not ours")
    before = sorted(o.key for o in blobs.list())
    policy = ["--keep-last", "1", "--keep-daily", "0", "--keep-weekly", "0", "--keep-monthly", "0"]

    young = run_invoke(["prune", "--remote", "--apply", "--upload-grace", "1h", *policy], cwd=tmp_path, env=env)
    assert young.returncode == 0, young.stderr
    assert "may still be running" in young.stdout and "nothing to remove" in young.stdout
    assert sorted(o.key for o in blobs.list()) == before  # younger than the grace: never removed

    time.sleep(2.5)
    plan = run_invoke(["prune", "--remote", "--upload-grace", "2s", *policy], cwd=tmp_path, env=env)
    assert plan.returncode == 0, plan.stderr
    assert "upload cut off" in plan.stdout and "1 cut-off upload would be removed; pass --apply" in plan.stdout
    assert sorted(o.key for o in blobs.list()) == before

    applied = run_invoke(["prune", "--remote", "--apply", "--upload-grace", "2s", *policy], cwd=tmp_path, env=env)
    assert applied.returncode == 0, applied.stderr
    assert "removed 1 cut-off upload" in applied.stdout
    after = sorted(o.key for o in blobs.list())
    assert after == sorted(k for k in before if not k.startswith(f"{cut}/"))  # the backup and foreign objects stay
    listed = run_invoke(["list", "--remote"], cwd=tmp_path, env=env)
    assert listed.returncode == 0 and "no manifest" not in listed.stderr

    bad = run_invoke(["prune", "--remote", "--upload-grace", "0", *policy], cwd=tmp_path, env=env)
    assert bad.returncode == 2 and "BACKUP_UPLOAD_GRACE" in error_line(bad)
