"""One contract for every backend a backup can live in: the local folder, and S3, Azure Blob and
GCS through emulators on loopback (tests/storage_servers.py), spoken to by the same code users
run. Backups are written the way `invoke backup` writes them (storage.BackupWriter: a tool
writes each file into the path it is given; here a child process does what pg_dump does), and
read the way restore reads them (catalog.pin / pinned_path)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tasks.engine import catalog, crypt, manifest
from tasks.engine.errors import ConfigError
from tasks.engine.objects import CloudBlobs
from tasks.engine.remote import RemoteStore
from tasks.engine.storage import LocalStore
from tests.conftest import REPO
from tests.storage_servers import az_server, gs_server, s3_server  # noqa: F401  (session fixtures)

BACKENDS = ["local", "s3", "az", "gs"]
KEY = manifest.SigningKey(b"k" * 40, "test")
SECRET_ROW = b"4111-1111-1111-1111 Jane Example"  # what must never be readable in an encrypted store


def age_key(tmp_path: Path, name: str = "key.txt") -> tuple[str, Path]:
    import pyrage

    ident = pyrage.x25519.Identity.generate()
    path = tmp_path / name
    path.write_text(f"# created for a test\n{ident}\n")
    return str(ident.to_public()), path


@pytest.fixture(params=BACKENDS)
def backend(request, tmp_path, monkeypatch):
    """make(recipients, identity) -> a store of this backend; `.url` the BACKUP_STORE value; `.env` its credentials."""
    name = request.param
    if name == "local":
        root = tmp_path / "store"

        def make(recipients=None, identity=None):
            return LocalStore(root, recipients=recipients, identity=identity)

        make.url, make.env = str(root), {}  # type: ignore[attr-defined]
        return make
    server = request.getfixturevalue(f"{name}_server")
    for k, v in server.env.items():
        monkeypatch.setenv(k, v)
    url = server.url()

    def make_remote(recipients=None, identity=None):
        return RemoteStore(CloudBlobs(url), recipients=recipients, identity=identity)

    make_remote.url, make_remote.env = url, server.env  # type: ignore[attr-defined]
    return make_remote


def write_backup(store, backup_id: str, payload: bytes, *, chunks: int = 1) -> dict:
    """A backup as dump.py writes one: roles.json by write_bytes, app.dump by a child process
    writing into the path it is given (as pg_dump does), then the manifest, signed, last."""
    files = [{"name": "roles.json", "role": "roles", "format": "json"}, {"name": "app.dump", "role": "app", "format": "custom"}]
    with store.staging(backup_id) as folder, store.writer(folder) as out:
        out.write_bytes("roles.json", b'{"roles": []}')
        path = out.path("app.dump")
        code = "import sys; d = open(sys.argv[1], 'rb').read(); f = open(sys.argv[2], 'wb'); [f.write(d) for _ in range(int(sys.argv[3]))]"
        src = folder.parent / f"payload-{backup_id}"
        src.write_bytes(payload)
        subprocess.run([sys.executable, "-c", code, str(src), str(path), str(chunks)], check=True)
        src.unlink()
        for f in files:
            f.update(out.finish(f["name"]))
        m = {"format": 2, "id": backup_id, "kind": "full", "label": "", "created_at": backup_id, "files": files, "tables": []}
        if out.manifest_fields():
            m.update(out.manifest_fields())
            m["format"] = manifest.FORMAT_ENCRYPTED
        catalog.write_manifest(folder, m)
        manifest.sign(folder, KEY)
    return m


def read_back(store, backup_id: str) -> dict[str, bytes]:
    b = catalog.load(store, backup_id)
    pinned = catalog.pin(store, b)
    try:
        return {name: catalog.pinned_path(fd).read_bytes() for name, fd in pinned.items()}
    finally:
        catalog.unpin(pinned)


def stored_bytes(make, backup_id: str) -> list[bytes]:
    """Every stored byte of a backup, as the store holds it (fetched fresh)."""
    store = make()
    return [store.local_path(backup_id, n).read_bytes() for n in store.files(backup_id) if n not in ("manifest.json", "manifest.hmac")]


def test_round_trip_lists_and_reads_back_exactly(backend):
    store = backend()
    payload = SECRET_ROW * 50_000  # 1.6 MB, several chunks
    m = write_backup(store, "2026-01-02T030405Z", payload, chunks=4)
    fresh = backend()  # another process, another machine: only what the store holds
    assert fresh.ids() == ["2026-01-02T030405Z"]
    assert catalog.all_backups(fresh)[1] == []
    got = read_back(fresh, "2026-01-02T030405Z")
    assert got == {"roles.json": b'{"roles": []}', "app.dump": payload * 4}
    assert {f["name"]: f["size"] for f in m["files"]}["app.dump"] == len(payload) * 4
    assert manifest.check(fresh.local_path("2026-01-02T030405Z", ""), KEY).ok


def test_encrypted_round_trip_stores_no_plaintext(backend, tmp_path):
    public, keyfile = age_key(tmp_path)
    store = backend(recipients=[public])
    payload = SECRET_ROW * 10_000
    m = write_backup(store, "2026-01-02T030405Z", payload)
    assert m["encryption"] == {"scheme": "age", "recipients": [public], "files": ["app.dump", "roles.json"]}
    assert all(f["encrypted"] == "age" for f in m["files"])
    for data in stored_bytes(backend, "2026-01-02T030405Z"):
        assert SECRET_ROW not in data and b'"roles"' not in data and data.startswith(b"age-encryption.org/v1")
    if isinstance(store, LocalStore):
        leftovers = [p for p in store.root.rglob("*") if p.is_file() and SECRET_ROW in p.read_bytes()]
        assert leftovers == []
    # the stored (encrypted) bytes are what the signed manifest's checksums cover
    assert catalog.verify_checksums(backend(), catalog.load(backend(), "2026-01-02T030405Z")) == ["roles.json", "app.dump"]
    got = read_back(backend(identity=crypt.load_identity(str(keyfile))), "2026-01-02T030405Z")
    assert got == {"roles.json": b'{"roles": []}', "app.dump": payload}


def test_a_wrong_or_missing_key_fails_before_reading_naming_the_recipient(backend, tmp_path):
    public, _ = age_key(tmp_path, "right.txt")
    _, wrong = age_key(tmp_path, "wrong.txt")
    write_backup(backend(recipients=[public]), "2026-01-02T030405Z", SECRET_ROW)
    for identity in (crypt.load_identity(str(wrong)), None):
        store = backend(identity=identity)
        with pytest.raises(ConfigError) as exc:
            catalog.pin(store, catalog.load(store, "2026-01-02T030405Z"))
        assert public in str(exc.value) and "BACKUP_AGE_IDENTITY" in str(exc.value)
        assert exc.value.exit_code == 2


def test_foreign_objects_in_the_prefix_never_list(backend):
    store = backend()
    write_backup(store, "2026-01-02T030405Z", b"x")
    if isinstance(store, LocalStore):
        (store.root / "README.txt").write_text("not a backup")
        (store.root / "2026-01-03T000000Z").mkdir()
        (store.root / "2026-01-03T000000Z" / "app.dump").write_bytes(b"half")
        (store.root / "notes").mkdir()
        (store.root / "notes" / "manifest.json").write_text("{}")
    else:
        blobs = store.blobs
        blobs.put("README.txt", b"not a backup")
        blobs.put("2026-01-03T000000Z/app.dump", b"half an upload, no manifest")
        blobs.put("notes/manifest.json", b"{}")
        blobs.put("2026-01-04T000000Z/deeper/manifest.json", b"{}")
    fresh = backend()
    assert fresh.ids() == ["2026-01-02T030405Z"]
    backups, problems = catalog.all_backups(fresh)
    assert [b.id for b in backups] == ["2026-01-02T030405Z"] and problems == []


KILLED_WRITER = """
import sys, time
sys.path.insert(0, {repo!r})
from tests.test_storage_contract import write_backup, backend_for
store = backend_for({url!r})
class Slow:
    pass
# app.dump: written slowly, so the test can kill this process mid-upload
write_backup(store, "2026-01-05T000000Z", b"y" * (1 << 20), chunks=10_000)
"""


def backend_for(url: str):
    return LocalStore(Path(url)) if "://" not in url else RemoteStore(CloudBlobs(url))


def test_an_upload_killed_midway_leaves_nothing_that_lists(backend):
    write_backup(backend(), "2026-01-02T030405Z", b"kept")
    env = {**os.environ, **backend.env}
    proc = subprocess.Popen([sys.executable, "-c", KILLED_WRITER.format(repo=str(REPO), url=backend.url)], env=env, cwd=REPO)
    try:
        # wait until the killed backup has begun storing files (roles.json first)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            store = backend()
            started = any(p.name.startswith(".tmp-2026-01-05") for p in store.root.iterdir()) if isinstance(store, LocalStore) else store.incomplete()
            if started:
                break
            assert proc.poll() is None, "the writer ended before it was killed"
            time.sleep(0.1)
        else:
            pytest.fail("the writer never started storing")
        time.sleep(0.5)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
    fresh = backend()
    assert fresh.ids() == ["2026-01-02T030405Z"]
    assert [b.id for b in catalog.all_backups(fresh)[0]] == ["2026-01-02T030405Z"]
    if isinstance(fresh, RemoteStore):
        assert fresh.incomplete() == ["2026-01-05T000000Z"]  # files without a manifest: shown as a warning, never listed


def test_delete_removes_the_backup_whole(backend):
    store = backend()
    write_backup(store, "2026-01-02T030405Z", b"a")
    write_backup(store, "2026-01-03T030405Z", b"b")
    store.delete("2026-01-02T030405Z")
    fresh = backend()
    assert fresh.ids() == ["2026-01-03T030405Z"]
    if isinstance(fresh, RemoteStore):
        assert all(not o.key.startswith("2026-01-02") for o in fresh.blobs.list())
    assert json.loads(fresh.local_path("2026-01-03T030405Z", "manifest.json").read_text())["id"] == "2026-01-03T030405Z"
