"""`invoke verify`: how far a backup can be trusted, at three levels, each including the last.

quick    every file's size and sha256 against the manifest, and the manifest's signature;
archive  each archive is complete and readable: its table of contents (`pg_restore --list`) and
         every data block read to the end (`pg_restore --data-only`, decompressed, streamed), and
         every table's COPY block holds the manifest's row count. A truncated or damaged archive
         is caught even when its checksum was recomputed to match;
drill    the backup restored into a throwaway local PostgreSQL (sandbox.py; the archive's major
         where installed) by the same code a real restore runs (restore/plan + execute), then
         every table's row count and content hash (contenthash.py) compared with what the
         backup recorded in the dump's snapshot. A valid archive holding other rows (a data
         block swapped for another valid one) is caught only here. A Supabase backup is drilled
         on the platform it recorded (drillplatform.py).

The outcome (when, level, seconds, ok, per-table mismatches, notes) is appended to
`verification.json` next to the manifest (never the signed manifest itself), HMAC'd under the
signing key, and shown by `invoke list`. For a backup in object storage that file is uploaded
beside its manifest (`<id>/verification.json`), so `list --remote` and `prune --remote` see it.
Verification failures are results, not exceptions: verify_backup() returns them; errors that
stop a check from running (no server binaries, no key for an encrypted backup) raise.

Every level reads the backup's files as a restore does: opened once and checked (catalog.pin),
then read through those open files; a backup in object storage is fetched into a private cache
first (streamed to disk, never whole in memory) and dropped from it when its verification ends;
an encrypted backup's files are read through pipes that decrypt them (crypt.serve), so no
plaintext file is written (a drill's throwaway server holds the restored rows until it is
removed, at the end of the drill). `quick` of an encrypted backup needs no key: without one it
checks the stored (encrypted) bytes and says that their contents were not decrypted.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import hmac
import json
import os
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import catalog, contenthash, crypt, dbinfo, drillplatform, pgtools, toc, zstream
from . import manifest as manifest_mod
from .catalog import Backup
from .errors import BackupError, IntegrityError, RestoreFailed, UsageError
from .storage import LocalStore, Store

LEVELS = ("quick", "archive", "drill")
RESULTS = "verification.json"
KEEP_RESULTS = 20
Step = Callable[[str], None]


@dataclass
class VerifyResult:
    backup_id: str
    level: str
    ok: bool
    started_at: str
    seconds: float = 0.0
    tables: int = 0  # tables compared (archive: row counts; drill: counts and hashes)
    mismatches: list[str] = field(default_factory=list)  # "schema.table: what differs"
    notes: list[str] = field(default_factory=list)
    error: str = ""  # why it failed, one line
    strength: str = ""  # what was compared, e.g. "row counts and content hashes"

    def summary(self) -> str:
        if self.ok:
            what = f", {self.tables} table{'s' if self.tables != 1 else ''}: {self.strength}" if self.tables else ""
            return f"{self.level} passed{what} ({self.seconds:.1f} s)"
        first = self.error or "; ".join(self.mismatches[:3])
        more = f" (+{len(self.mismatches) - 3} more)" if len(self.mismatches) > 3 else ""
        return f"{self.level} FAILED: {first}{more}"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


# --- results next to the manifest ------------------------------------------------------------------


def _mac(key: manifest_mod.SigningKey, entry: dict[str, Any]) -> str:
    body = json.dumps({k: v for k, v in entry.items() if k != "mac"}, sort_keys=True).encode()
    return hmac.new(key.secret, b"fortress-verification:" + body, hashlib.sha256).hexdigest()


MAX_RESULTS_BYTES = 1 << 20  # a results file is small; a bigger one is not read


def read_results(store: Store, backup_id: str, key: manifest_mod.SigningKey | None = None) -> list[dict[str, Any]]:
    """The recorded results, oldest first; each gets "authentic": whether its MAC verifies under
    `key` (a results file is not signed with the manifest: anyone who can write the folder could
    write one). Unreadable files read as no results."""
    try:
        path = store.local_path(backup_id, RESULTS)  # a backup in object storage: fetched
        if path.stat().st_size > MAX_RESULTS_BYTES:
            return []
        data = json.loads(path.read_text())
    except (OSError, ValueError, BackupError):
        return []
    out = []
    for entry in data.get("results", []) if isinstance(data, dict) else []:
        if not isinstance(entry, dict) or entry.get("level") not in LEVELS or not isinstance(entry.get("ok"), bool):
            continue
        mac = entry.get("mac")
        entry = dict(entry)
        entry["authentic"] = bool(key and isinstance(mac, str) and hmac.compare_digest(mac, _mac(key, entry)))
        out.append(entry)
    return out


def latest_result(store: Store, backup_id: str, key: manifest_mod.SigningKey | None = None) -> dict[str, Any] | None:
    results = read_results(store, backup_id, key)
    return results[-1] if results else None


def _results_body(store: Store, result: VerifyResult, key: manifest_mod.SigningKey | None) -> str:
    previous = [{k: v for k, v in r.items() if k != "authentic"} for r in read_results(store, result.backup_id, key)]
    entry = result.to_dict()
    if key is not None:
        entry["mac"] = _mac(key, entry)
    return json.dumps({"results": (previous + [entry])[-KEEP_RESULTS:]}, indent=2) + "\n"


def write_result(store: Store, result: VerifyResult, key: manifest_mod.SigningKey | None) -> bool:
    """Append to the backup's verification.json (temporary name, fsync, rename; 0600). False when
    the folder cannot be written (read-only media): the result is then only reported. A backup in
    object storage gets the file uploaded beside its manifest (an object is replaced whole); False
    when the store refuses the write (read-only credentials)."""
    if not isinstance(store, LocalStore):
        from .errors import StorageError

        try:
            store.put_file(result.backup_id, RESULTS, _results_body(store, result, key).encode())  # type: ignore[attr-defined]
        except StorageError:
            return False
        return True
    folder = store.local_path(result.backup_id, "")
    if not os.access(folder, os.W_OK):
        return False
    from filelock import FileLock

    with FileLock(str(folder.parent / ".verification.lock"), mode=0o600, timeout=60):
        body = _results_body(store, result, key)
        fd, tmp = tempfile.mkstemp(prefix=".verification-", dir=folder)
        try:
            with os.fdopen(fd, "w") as f:
                f.write(body)
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, 0o600)
            os.replace(tmp, folder / RESULTS)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    return True


# --- levels ---------------------------------------------------------------------------------------


def _quick(
    store: Store,
    backup: Backup,
    key: manifest_mod.SigningKey | None,
    result: VerifyResult,
    allow_unsigned: bool = False,
    pinned: dict[str, int] | None = None,
) -> manifest_mod.Authenticity:
    """`pinned`: filled with the backup's files, opened and checked (catalog.pin: an encrypted
    file's first bytes also decrypted), for the levels above to read; None checks an encrypted
    backup without its key: the stored bytes' checksums only."""
    if not backup.record.files:
        raise IntegrityError(f"Backup {backup.id}: its manifest lists no files, so there is nothing to restore", "do not rely on this backup")
    if pinned is None:
        catalog.verify_checksums(store, backup)  # raises IntegrityError naming the file
        result.notes.append("age-encrypted and no key configured (BACKUP_AGE_IDENTITY): the stored bytes' checksums were checked, not their contents")
    else:
        pinned.update(catalog.pin(store, backup))  # raises IntegrityError naming the file
    auth = manifest_mod.check(store.local_path(backup.id, ""), key, backup.manifest_bytes)  # raises on a forged signature
    if not auth.ok:
        if not allow_unsigned:
            # whoever can write the folder can rewrite the manifest and every checksum in it
            raise IntegrityError(
                f"Backup {backup.id} is {auth.text}: its checksums prove nothing",
                "verify it with the signing key it was made with (BACKUP_SIGNING_KEY), or pass --allow-unsigned if you trust where it came from",
            )
        result.notes.append(auth.text)
    return auth


def _count_copy_rows(stream, result: VerifyResult, backup_id: str, name: str) -> list[int]:
    """Rows of each COPY block of a `pg_restore --data-only` script, in order. Outside COPY
    blocks such a script holds only pg_restore's own SET, comment and large-object lines; inside
    one every row is one line (COPY's text format escapes newlines) and `\\.` ends it."""
    counts: list[int] = []
    inside = False
    n = 0
    for line in stream:
        if inside:
            if line == b"\\.\n":
                counts.append(n)
                inside = False
            else:
                n += 1
        elif line.startswith(b"COPY ") and line.rstrip(b"\n").endswith(b" FROM stdin;"):
            inside, n = True, 0
    if inside:
        raise IntegrityError(f"Backup {backup_id}: {name} ends inside a table's data", "the archive is truncated; do not rely on this backup")
    return counts


def _archive(pinned: dict[str, int], backup: Backup, pg_bin_dir: str | None, result: VerifyResult, step: Step) -> None:
    record = backup.record
    suite = pgtools.pick(
        pgtools.discover(pg_bin_dir),
        at_least=max(record.pg_dump_major, 0),
        prefer=record.pg_dump_major or None,
        tools=("pg_restore",),
        purpose=f"reading archives made by pg_dump {record.pg_dump_major}",
    )
    expected = {(t.schema, t.name): t.rows for t in record.tables if t.kind == "table" and t.rows is not None}
    seen: set[tuple[str, str]] = set()
    for f in record.files:
        if f.format not in ("custom", zstream.FORMAT):
            continue
        path = catalog.pinned_path(pinned[f.name])  # the checked bytes (decrypted, when encrypted)
        step(f"reading {f.name} to the end (table of contents and every data block)")
        try:
            entries = toc.read(suite, path)
        except (IntegrityError, pgtools.ToolError) as exc:
            raise IntegrityError(
                f"Backup {backup.id}: the table of contents of {f.name} is unreadable ({exc})", "do not rely on this backup"
            ) from None
        data = [e for e in entries if e.desc == "TABLE DATA"]
        try:
            with tempfile.TemporaryFile() as errf, zstream.reading(path, dict(os.environ)) as (source, stdin):
                proc = pgtools.popen(
                    [suite.tool("pg_restore"), "--data-only", "--file=-", *source],
                    env=dict(os.environ),
                    stdin=stdin,
                    stdout=subprocess.PIPE,
                    stderr=errf,
                )
                truncated: IntegrityError | None = None
                try:
                    assert proc.stdout is not None
                    counts = _count_copy_rows(proc.stdout, result, backup.id, f.name)
                except IntegrityError as exc:
                    truncated, counts = exc, []
                except BaseException:
                    pgtools.stop(proc)
                    raise
                proc.wait()
                errf.seek(0)
                err = errf.read()
        except pgtools.ToolError as exc:  # zstd could not read the archive it wraps
            raise IntegrityError(
                f"Backup {backup.id}: {f.name} is damaged: {exc.stderr_tail}", "do not rely on this backup; take a new one"
            ) from None
        if proc.returncode != 0:
            raise IntegrityError(f"Backup {backup.id}: {f.name} is damaged: {pgtools.tail(err)}", "do not rely on this backup; take a new one")
        if truncated is not None:
            raise truncated
        if len(counts) != len(data):
            raise IntegrityError(
                f"Backup {backup.id}: {f.name} lists {len(data)} tables' data but holds {len(counts)}", "do not rely on this backup; take a new one"
            )
        for e, rows in zip(data, counts, strict=True):
            match = [k for k in expected if k[0] == e.schema and e.names(k[1]) and k not in seen]
            if not match:
                continue
            key = max(match, key=lambda k: len(k[1]))  # "a b" before "a" when a name holds a space
            seen.add(key)
            result.tables += 1
            if rows != expected[key]:
                result.mismatches.append(f"{key[0]}.{key[1]}: the archive holds {rows} rows, the manifest says {expected[key]}")
    if backup.record.kind != "schema":
        for key in sorted(set(expected) - seen):
            result.mismatches.append(f"{key[0]}.{key[1]}: no data for it in the archives")
    result.strength = "archives read to the end, row counts match"


def _drill(
    store: Store,
    pinned: dict[str, int],
    backup: Backup,
    key: manifest_mod.SigningKey | None,
    pg_bin_dir: str | None,
    result: VerifyResult,
    step: Step,
) -> None:
    from .restore import execute_restore, plan_restore
    from .sandbox import Cluster, server_suite

    record = backup.record
    if record.kind == "data":
        raise UsageError(
            f"Backup {backup.id} is data-only: a drill has no schema to load it into", "verify it with --level archive, or drill a full backup"
        )
    src = backup.manifest.get("source") or {}
    num = src.get("server_version_num") if isinstance(src, dict) else None
    major = int(num) // 10000 if isinstance(num, int) and num >= 100000 else record.pg_dump_major
    try:
        suite = server_suite(major, pg_bin_dir)
    except BackupError:
        suite = server_suite(None, pg_bin_dir)
        if suite.major < major:
            raise
        result.notes.append(f"no PostgreSQL {major} server here: drilled on PostgreSQL {suite.version}")
    superuser = drillplatform.superuser_for(backup.manifest, backup.id)
    dbname = record.source_database or "postgres"
    step(f"starting a throwaway PostgreSQL {suite.version} server for the drill")
    with Cluster(suite, superuser=superuser) as cluster, tempfile.TemporaryDirectory(prefix="fortress-drill-") as tmp:
        admin = cluster.target("template1")
        if dbname == "postgres":
            with admin.connect(autocommit=True) as conn:
                conn.execute("DROP DATABASE IF EXISTS postgres")
        ddl = record.file(drillplatform.ROLE)
        notes = drillplatform.build(
            admin, dbname, backup.manifest, backup.id, catalog.pinned_path(pinned[ddl.name]) if ddl else None, suite, Path(tmp), step
        )
        result.notes.extend(notes)
        target = cluster.target(dbname)
        plan = plan_restore(store, backup, target, pg_bin_dir=pg_bin_dir, signing_key=key, step=step)
        # the drill compares every table itself (and names each one), so the restore's own
        # all-or-nothing count check is left out; pg_cron needs a preloaded library the
        # throwaway server does not have
        if plan.cron_jobs:
            result.notes.append(f"{len(plan.cron_jobs)} pg_cron jobs not drilled (the throwaway server has no pg_cron)")
        plan = dataclasses.replace(plan, checks=(), cron_sql="", cron_jobs=())
        step("restoring into the throwaway server (the restore's own code)")
        try:
            execute_restore(plan, store, step=step)
        except RestoreFailed as exc:
            raise RestoreFailed(f"the restore drill failed: {exc.message}", "do not rely on this backup; take a new one") from None
        step("comparing every table's rows and content with what the backup recorded")
        with target.connect(autocommit=True) as conn:
            tabs = dbinfo.tables(conn, sorted({t.schema for t in record.tables}))
            got = contenthash.database_hashes(conn, tabs)
    result.tables = 0
    algorithm = (backup.manifest.get("content_hash") or {}).get("algorithm")
    hashed = algorithm == contenthash.ALGORITHM
    for t in record.tables:
        if t.kind != "table" or t.rows is None:
            continue
        name = f"{t.schema}.{t.name}"
        result.tables += 1
        if name not in got:
            result.mismatches.append(f"{name}: missing after the restore")
            continue
        rows, digest = got[name]
        if rows != t.rows:
            result.mismatches.append(f"{name}: restored {rows} rows, the backup recorded {t.rows}")
        elif hashed and t.hash is not None and digest != t.hash:
            result.mismatches.append(f"{name}: restored rows differ in content from what the backup recorded (content hash)")
    if hashed:
        result.strength = "row counts and content hashes match"
    else:
        result.strength = "row counts match (no content hashes recorded)"
        result.notes.append(
            "this backup records no content hashes (made by an older version, or with BACKUP_CONTENT_HASHES=off): "
            "the drill compared row counts only, a lower strength"
        )


def check_key(store: Store, backup: Backup, level: str) -> bool:
    """Whether the verification reads the backup's contents (False: an encrypted backup checked
    at `quick` level without a key, by its stored bytes). Raises, before anything is read or
    recorded, when an encrypted backup needs a key that is missing or is not one it was
    encrypted for: a ConfigError (exit 2) naming the recipients it needs."""
    encryption = backup.manifest.get("encryption") if not backup.legacy and backup.record.format >= manifest_mod.FORMAT_ENCRYPTED else None
    identity = getattr(store, "identity", None)
    if not encryption or (level == "quick" and identity is None):
        return not encryption
    crypt.require(backup.id, encryption, identity)
    return True


def verify_backup(
    store: Store,
    backup: Backup,
    level: str = "drill",
    *,
    signing_key: manifest_mod.SigningKey | None = None,
    pg_bin_dir: str | None = None,
    allow_unsigned: bool = False,
    step: Step = lambda m: None,
    record_result: bool = True,
) -> VerifyResult:
    """Verify one backup up to `level`; the result is recorded next to its manifest (in the
    object store for a backup there). A backup that fails is a result with ok=False (the caller
    exits non-zero); raises only when the verification could not run (bad level, missing tools,
    a drill of an unsigned backup, no key or the wrong key for an encrypted one)."""
    try:
        return _verify(store, backup, level, signing_key, pg_bin_dir, allow_unsigned, step, record_result)
    finally:
        forget = getattr(store, "forget", None)
        if forget is not None:
            forget(backup.id)  # a remote backup's fetched files leave the cache now, not at exit


def _verify(
    store: Store,
    backup: Backup,
    level: str,
    signing_key: manifest_mod.SigningKey | None,
    pg_bin_dir: str | None,
    allow_unsigned: bool,
    step: Step,
    record_result: bool,
) -> VerifyResult:
    if level not in LEVELS:
        raise UsageError(f"Unknown verification level {level!r}", "use --level quick, archive or drill")
    if backup.legacy:
        raise UsageError(f"{backup.id} is a runbook file without a manifest: nothing to verify it against", "take a backup with `invoke backup`")
    if signing_key is None:
        signing_key = manifest_mod.signing_key(None, create=False)
    decrypt = check_key(store, backup, level)
    result = VerifyResult(backup.id, level, False, _now())
    started = time.monotonic()
    pinned: dict[str, int] = {}
    try:
        step(f"checking {len(backup.record.files)} files' checksums and the manifest's signature")
        auth = _quick(store, backup, signing_key, result, allow_unsigned, pinned if decrypt else None)
        result.strength = "checksums match"
        if level in ("archive", "drill"):
            _archive(pinned, backup, pg_bin_dir, result, step)
        if level == "drill" and not result.mismatches:
            if not auth.ok and not allow_unsigned:
                # a drill restores as the throwaway server's superuser: the backup's own functions
                # run with that power on this machine
                raise UsageError(
                    f"Backup {backup.id} is {auth.text}; a drill runs its code on this machine",
                    "drill it only if you trust where it came from: pass --allow-unsigned (or set the signing key it was made with)",
                )
            _drill(store, pinned, backup, signing_key, pg_bin_dir, result, step)
        result.ok = not result.mismatches
    except BackupError as exc:
        result.error = exc.message
        if not isinstance(exc, IntegrityError | RestoreFailed):
            # could not verify (tools, usage): recorded as failed, raised with its own exit code
            result.seconds = round(time.monotonic() - started, 2)
            if record_result:
                write_result(store, result, signing_key)
            raise
    finally:
        catalog.unpin(pinned)
        result.seconds = round(time.monotonic() - started, 2)
    if record_result and not write_result(store, result, signing_key):
        where = "the object store refused to write it" if not isinstance(store, LocalStore) else f"{store.local_path(backup.id, '')} is read-only"
        result.notes.append(f"{where}: this result was not recorded")
    return result
