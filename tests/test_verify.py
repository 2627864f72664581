"""`invoke verify` at its three levels, and what each one catches that the one before misses.

Real PostgreSQL 17 (and a hosted-Supabase-shaped platform) throughout; damaged backups are made
by editing real archives, with the checksum recomputed and the manifest re-signed
(tests/helpers.resign) so only the level under test can catch them.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import struct
import uuid
from pathlib import Path

import pytest

from tasks.engine import catalog, pgtools, toc, verify
from tasks.engine.dump import create_backup
from tasks.engine.storage import LocalStore
from tests.conftest import run_invoke
from tests.fixtures_cli import error_line
from tests.helpers import psql, resign

SOURCE = """
CREATE SCHEMA app;
CREATE TABLE app.items (id int PRIMARY KEY, v text NOT NULL, at timestamptz DEFAULT '2026-01-02 03:04:05+02', price float8);
INSERT INTO app.items SELECT g, md5(g::text), now(), g / 7.0 FROM generate_series(1, 400) g;
CREATE TABLE app.notes (id int, body text, tags text[]);
INSERT INTO app.notes SELECT g, E'line one\\nline two ' || g, ARRAY['a', g::text] FROM generate_series(1, 60) g;
"""


@pytest.fixture(scope="module")
def source(pg17):
    target = pg17.create_database(f"verify_{uuid.uuid4().hex[:6]}")
    psql(target, SOURCE)
    yield target
    pg17.drop_database(target.dbname)


@pytest.fixture(scope="module")
def good(source, tmp_path_factory):
    """One good backup with content hashes: (store, backup id)."""
    store = LocalStore(tmp_path_factory.mktemp("verify") / "backups")
    return store, create_backup(source, store, content_hashes=True).backup_id


def copy_of(good, tmp_path) -> tuple[LocalStore, Path]:
    store, backup_id = good
    copy = LocalStore(tmp_path / "backups")
    copy.ensure()
    shutil.copytree(store.root / backup_id, copy.root / backup_id)
    (copy.root / backup_id / verify.RESULTS).unlink(missing_ok=True)
    return copy, copy.root / backup_id


def rewrite(folder: Path, name: str, data: bytes) -> None:
    """Replace a backup file and make its manifest agree (size, sha256, signature)."""
    (folder / name).write_bytes(data)
    manifest = json.loads((folder / "manifest.json").read_text())
    for f in manifest["files"]:
        if f["name"] == name:
            f["size"], f["sha256"] = len(data), hashlib.sha256(data).hexdigest()
    (folder / "manifest.json").write_text(json.dumps(manifest))
    resign(folder)


def edit_manifest(folder: Path, table: str, **changes) -> None:
    manifest = json.loads((folder / "manifest.json").read_text())
    for t in manifest["tables"]:
        if f"{t['schema']}.{t['name']}" == table:
            t.update(changes)
    (folder / "manifest.json").write_text(json.dumps(manifest))
    resign(folder)


def run(store: LocalStore, backup_id: str, level: str) -> verify.VerifyResult:
    return verify.verify_backup(store, catalog.load(store, backup_id), level)


def test_every_level_passes_on_a_good_backup_and_list_shows_it(good, project):
    store, backup_id = good
    for level in verify.LEVELS:
        result = run(store, backup_id, level)
        assert result.ok, result
    assert result.tables == 2 and result.strength == "row counts and content hashes match"
    recorded = verify.read_results(store, backup_id)
    assert [r["level"] for r in recorded][-3:] == ["quick", "archive", "drill"]
    assert json.loads((store.root / backup_id / "manifest.json").read_text()).get("content_hash")  # the manifest itself is untouched
    res = run_invoke(["list"], cwd=project, env={"BACKUP_DIR": str(store.root)})
    assert res.returncode == 0, res.stderr
    assert "drill ok" in res.stdout


def test_verify_cli_drills_and_exits_zero(good, project):
    store, backup_id = good
    res = run_invoke(["verify", "--id", backup_id], cwd=project, env={"BACKUP_DIR": str(store.root)})
    assert res.returncode == 0, res.stderr
    assert f"{backup_id}: drill passed, 2 tables: row counts and content hashes match" in res.stdout


def _flip_in_last_data_block(folder: Path, major: int) -> None:
    raw = (folder / "app.dump").read_bytes()
    if raw.startswith(b"\x28\xb5\x2f\xfd"):  # the whole archive inside one zstd frame (PG15)
        flipped = bytearray(raw)
        flipped[len(raw) * 3 // 4] ^= 0x10
        rewrite(folder, "app.dump", bytes(flipped))
        return
    suite = pgtools.pick(pgtools.discover(), at_least=major, prefer=major, tools=("pg_restore",))
    last = [e for e in toc.read(suite, folder / "app.dump") if e.desc == "TABLE DATA"][-1]
    start = _data_block_start(folder / "app.dump", last.dump_id)
    data = bytearray((folder / "app.dump").read_bytes())
    data[(start + len(data)) // 2] ^= 0x10  # inside that table's compressed data block
    rewrite(folder, "app.dump", bytes(data))


def test_flipped_byte_with_recomputed_checksum_is_caught_by_archive(pg15, tmp_path):
    """A PG15 archive is wrapped in zstd by the zstd tool, whose frame checksum (on by default)
    makes any flipped bit a read error (gzip's stream checksum did the same for pg_dump 15's own
    compression): `archive` reads every block to the end, so it sees it."""
    target = pg15.create_database(f"flip_{uuid.uuid4().hex[:6]}")
    try:
        psql(target, SOURCE)
        store = LocalStore(tmp_path / "backups")
        backup_id = create_backup(target, store, content_hashes=True).backup_id
    finally:
        pg15.drop_database(target.dbname)
    _flip_in_last_data_block(store.root / backup_id, 15)
    assert run(store, backup_id, "quick").ok  # the checksum agrees: quick cannot tell
    result = run(store, backup_id, "archive")
    # inside one zstd frame the flip may already stop the table of contents from being read
    assert not result.ok and ("app.dump is damaged" in result.error or "contents of app.dump is unreadable" in result.error)


def test_flipped_byte_in_zstd_literals_is_caught_by_drill(good, tmp_path):
    """pg_dump 16+ writes zstd frames without a content checksum: a flipped byte among the
    literals decompresses fine into other text. Only the content hash catches that."""
    store, folder = copy_of(good, tmp_path)
    _flip_in_last_data_block(folder, 17)
    result = run(store, folder.name, "drill")
    assert not result.ok
    assert "app.notes" in (result.error + " ".join(result.mismatches))


def _data_block_start(dump: Path, dump_id: int) -> int:
    """Where the archive's data block of entry `dump_id` starts (pg_dump's BLK_DATA marker, then
    the entry's id as a sign byte and a little-endian int)."""
    marker = b"\x01\x00" + struct.pack("<i", dump_id)
    data = dump.read_bytes()
    assert data.count(marker) >= 1
    return data.rindex(marker)


def test_data_block_replaced_by_another_valid_one_is_caught_only_by_drill(pg17, tmp_path):
    target = pg17.create_database(f"swap_{uuid.uuid4().hex[:6]}")
    try:
        psql(target, "CREATE TABLE public.t (id int, v text); INSERT INTO public.t SELECT g, 'alpha-' || g FROM generate_series(1, 200) g")
        store = LocalStore(tmp_path / "backups")
        a = create_backup(target, store, content_hashes=True).backup_id
        psql(target, "UPDATE public.t SET v = 'omega-' || id")  # same rows, same sizes, other content
        b = create_backup(target, store, content_hashes=True).backup_id
    finally:
        pg17.drop_database(target.dbname)
    dump_a, dump_b = store.root / a / "app.dump", store.root / b / "app.dump"
    suite = pgtools.pick(pgtools.discover(), at_least=17, prefer=17, tools=("pg_restore",))
    (entry,) = [e for e in toc.read(suite, dump_a) if e.desc == "TABLE DATA"]
    start = _data_block_start(dump_a, entry.dump_id)
    assert _data_block_start(dump_b, entry.dump_id) == start
    swapped = dump_a.read_bytes()[:start] + dump_b.read_bytes()[start:]
    assert swapped != dump_a.read_bytes()
    rewrite(store.root / a, "app.dump", swapped)

    assert run(store, a, "quick").ok
    assert run(store, a, "archive").ok  # a valid archive with the right row count
    result = run(store, a, "drill")
    assert not result.ok
    assert result.mismatches == ["public.t: restored rows differ in content from what the backup recorded (content hash)"]


def test_manifest_lying_about_a_row_count(good, tmp_path, project):
    store, folder = copy_of(good, tmp_path)
    edit_manifest(folder, "app.notes", rows=61)
    archive = run(store, folder.name, "archive")
    assert archive.mismatches == ["app.notes: the archive holds 60 rows, the manifest says 61"]
    res = run_invoke(["verify", "--id", folder.name], cwd=project, env={"BACKUP_DIR": str(store.root)})
    assert res.returncode == 5, res.stderr
    assert "app.notes" in error_line(res)
    assert "drill FAILED" in run_invoke(["list"], cwd=project, env={"BACKUP_DIR": str(store.root)}).stdout


def test_manifest_lying_about_a_content_hash_is_caught_by_drill(good, tmp_path, project):
    store, folder = copy_of(good, tmp_path)
    edit_manifest(folder, "app.items", hash="0" * 32)
    assert run(store, folder.name, "archive").ok
    res = run_invoke(["verify", "--id", folder.name, "--level", "drill"], cwd=project, env={"BACKUP_DIR": str(store.root)})
    assert res.returncode == 5, res.stderr
    line = error_line(res)
    assert "app.items" in line and "content" in line


def test_backup_without_hashes_verifies_at_lower_strength_and_says_so(source, tmp_path):
    store = LocalStore(tmp_path / "backups")
    backup_id = create_backup(source, store).backup_id  # the default: no content hashes
    assert "content_hash" not in json.loads((store.root / backup_id / "manifest.json").read_text())
    result = run(store, backup_id, "drill")
    assert result.ok
    assert result.strength == "row counts match (no content hashes recorded)"
    assert any("lower strength" in n for n in result.notes)


def test_supabase_backup_is_drilled_on_its_recorded_platform(hosted15_a, tmp_path):
    project = hosted15_a.new_project()
    hosted15_a.load_app(project)
    store = LocalStore(tmp_path / "backups")
    backup_id = create_backup(project, store, content_hashes=True).backup_id
    manifest = json.loads((store.root / backup_id / "manifest.json").read_text())
    assert any(f["role"] == "platform-ddl" for f in manifest["files"])
    assert "auth" in manifest["drill_platform"]["schemas"]
    result = run(store, backup_id, "drill")
    assert result.ok, result
    platform_tables = [t for t in manifest["tables"] if t["schema"] == "auth" and t.get("hash")]
    assert platform_tables and result.tables >= len(platform_tables)  # auth users compared too
