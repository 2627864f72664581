"""Off-site, encrypted backups end to end, as a user runs them: `invoke backup` with
BACKUP_STORE=s3://... (moto's server on loopback) and BACKUP_AGE_RECIPIENTS leaves only an
encrypted backup in the bucket and nothing local; `invoke restore --date` in another project
folder (a machine that never saw it) brings it back with BACKUP_AGE_IDENTITY; a wrong key fails
before the target is touched, naming the recipient; `invoke prune --remote` keeps exactly what
its plan said."""

from __future__ import annotations

import datetime as dt

import pytest

from tasks.engine.objects import CloudBlobs
from tests.conftest import run_invoke
from tests.fixtures_cli import SOURCE_SQL, TARGET_SQL
from tests.helpers import psql
from tests.storage_servers import s3_server  # noqa: F401
from tests.test_storage_contract import age_key

MARKER = "fortress-offsite-marker-7f3a"


def one(target, sql: str) -> str:
    with target.connect(autocommit=True) as conn:
        return str(conn.execute(sql).fetchone()[0])


@pytest.fixture(scope="module")
def source(pg15):
    src = pg15.create_database("offsite_src")
    psql(src, SOURCE_SQL + f"INSERT INTO public.settings VALUES ('marker', '{MARKER}');")
    yield src
    pg15.drop_database("offsite_src")


def test_encrypted_backup_to_s3_restores_elsewhere_and_prunes(source, pg15, s3_server, tmp_path, monkeypatch):  # noqa: F811
    public, keyfile = age_key(tmp_path, "ci.key")
    _, wrongfile = age_key(tmp_path, "other.key")
    url = s3_server.url()
    ci = tmp_path / "ci"
    ci.mkdir()
    env = {
        **s3_server.env,
        "DATABASE_URL": pg15.url(source.dbname),
        "BACKUP_STORE": url,
        "BACKUP_AGE_RECIPIENTS": public,
        "BACKUP_SIGNING_KEY": "s" * 40,
    }
    res = run_invoke(["backup", "--label", "pre-deploy 1"], cwd=ci, env=env)
    assert res.returncode == 0, res.stderr
    assert "encrypted for 1 age recipients" in res.stdout and url in res.stdout
    assert not (ci / ".backups").exists()  # no local copy unless asked

    for k, v in s3_server.env.items():
        monkeypatch.setenv(k, v)
    blobs = CloudBlobs(url)
    objects = blobs.list()
    names = sorted(o.key.split("/", 1)[1] for o in objects)
    assert names == ["app.dump", "manifest.hmac", "manifest.json", "roles.json"]
    for o in objects:
        data = b"".join(blobs.get(o.key))
        assert MARKER.encode() not in data
        if not o.key.endswith(("manifest.json", "manifest.hmac")):
            assert data.startswith(b"age-encryption.org/v1")

    listed = run_invoke(["list", "--remote"], cwd=ci, env=env)
    assert listed.returncode == 0, listed.stderr
    assert "age-encrypted" in listed.stdout and "pre-deploy 1" in listed.stdout

    # another machine: has the store, the signing key and the identity, never saw the backup
    other = tmp_path / "laptop"
    other.mkdir()
    target = pg15.create_database("offsite_tgt")
    try:
        psql(target, TARGET_SQL)
        today = dt.datetime.now(dt.UTC).date().isoformat()
        restore_env = {**env, "BACKUP_AGE_RECIPIENTS": "", "TARGET_DATABASE_URL": pg15.url(target.dbname), "BACKUP_AGE_IDENTITY": str(wrongfile)}
        wrong = run_invoke(["restore", "--date", today, "--yes", "--any-source", "--no-undo"], cwd=other, env=restore_env)
        assert wrong.returncode == 2, wrong.stderr
        assert public in wrong.stderr and "BACKUP_AGE_IDENTITY" in wrong.stderr
        assert one(target, "SELECT count(*) FROM precious.ledger") == "60"  # untouched

        restore_env["BACKUP_AGE_IDENTITY"] = str(keyfile)
        ok = run_invoke(["restore", "--date", today, "--yes", "--any-source", "--no-undo"], cwd=other, env=restore_env)
        assert ok.returncode == 0, ok.stderr
        assert one(target, "SELECT v FROM public.settings WHERE k = 'marker'") == MARKER
        assert one(target, "SELECT count(*) FROM app.items") == "300"
        assert not any(MARKER.encode() in p.read_bytes() for p in other.rglob("*") if p.is_file())
    finally:
        pg15.drop_database("offsite_tgt")

    # a second backup, then prune keeps the newest and the pre-deploy one (younger than 30 days)
    res = run_invoke(["backup"], cwd=ci, env=env)
    assert res.returncode == 0, res.stderr
    res = run_invoke(["backup"], cwd=ci, env=env)
    assert res.returncode == 0, res.stderr
    plan = run_invoke(["prune", "--remote", "--keep-last", "1", "--keep-daily", "0", "--keep-weekly", "0", "--keep-monthly", "0"], cwd=ci, env=env)
    assert plan.returncode == 0, plan.stderr
    assert plan.stdout.count("REMOVE") == 1 and "pass --apply" in plan.stdout
    ids = sorted({o.key.split("/")[0] for o in blobs.list()})
    assert len(ids) == 3  # the plan alone removed nothing
    applied = run_invoke(
        ["prune", "--remote", "--apply", "--keep-last", "1", "--keep-daily", "0", "--keep-weekly", "0", "--keep-monthly", "0"], cwd=ci, env=env
    )
    assert applied.returncode == 0, applied.stderr
    assert sorted({o.key.split("/")[0] for o in blobs.list()}) == [ids[0], ids[2]]  # the pre-deploy one and the newest
