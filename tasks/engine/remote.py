"""Backups in object storage (BACKUP_STORE = s3://, gs://, az://), behind the same protocol as
the local folder (storage.LocalStore), so catalog, dump and restore work on either.

Layout: `<prefix>/<backup id>/<file>`, the files of the manifest first, then `manifest.hmac`,
then `manifest.json` last: a backup exists only once its manifest does. An upload cut off
midway (a killed runner) leaves files without a manifest, which never list, restore or count
(`list --remote` warns about them; `prune --remote` removes those last written longer ago than
BACKUP_UPLOAD_GRACE, never a younger one: that upload may still be running).

Reading: a backup's files are fetched into a private cache folder (0700) as a stream, part by
part, never whole in memory; an encrypted backup stays encrypted there (restore decrypts through
a pipe). The cache goes when the process ends.
"""

from __future__ import annotations

import atexit
import datetime as dt
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .catalog import ID_RE, MANIFEST
from .errors import Busy, IntegrityError
from .manifest import MAC_FILE
from .objects import Blobs
from .storage import BackupWriter, LocalStore

STALE_UPLOAD = dt.timedelta(days=1)


class RemoteStore:
    def __init__(self, blobs: Blobs, *, local: LocalStore | None = None, recipients: list[str] | None = None, identity: Any = None):
        self.blobs = blobs
        self.local = local  # also keep a local copy (backup --keep-local)
        self.recipients = list(recipients or [])
        self.identity = identity
        self._cache: Path | None = None
        self._listing: dict[str, set[str]] | None = None
        self._written: dict[str, dt.datetime] = {}  # backup id -> its newest object's time
        self._writing: str | None = None

    # --- what catalog and restore read -------------------------------------------------------

    def describe(self) -> str:
        return self.blobs.describe()

    @property
    def cache(self) -> Path:
        if self._cache is None:
            self._cache = Path(tempfile.mkdtemp(prefix="fortress-remote-"))
            os.chmod(self._cache, 0o700)
            atexit.register(shutil.rmtree, self._cache, True)
        return self._cache

    def _objects(self) -> dict[str, set[str]]:
        """backup id -> its file names, from one listing; objects that are not `<id>/<name>`
        (foreign files in the prefix) are ignored."""
        if self._listing is None:
            listing: dict[str, set[str]] = {}
            written: dict[str, dt.datetime] = {}
            for obj in self.blobs.list():
                parts = obj.key.split("/")
                if len(parts) == 2 and ID_RE.match(parts[0]) and parts[1]:
                    listing.setdefault(parts[0], set()).add(parts[1])
                    if obj.modified is not None:
                        when = obj.modified if obj.modified.tzinfo else obj.modified.replace(tzinfo=dt.UTC)
                        written[parts[0]] = max(written.get(parts[0], when), when)
            self._listing, self._written = listing, written
        return self._listing

    def refresh(self) -> None:
        self._listing = None

    def ids(self) -> list[str]:
        return sorted(i for i, names in self._objects().items() if MANIFEST in names)

    def incomplete(self) -> list[str]:
        """Ids with files but no manifest: uploads in progress now, or cut off."""
        return sorted(i for i, names in self._objects().items() if MANIFEST not in names)

    def loose_files(self) -> list[str]:
        return []

    def exists(self, backup_id: str) -> bool:
        return backup_id in self.ids()

    def files(self, backup_id: str) -> list[str]:
        return sorted(self._objects().get(backup_id, set()))

    def local_path(self, backup_id: str, name: str) -> Path:
        """The file fetched into the cache (streamed to disk); for name "" the backup's cache
        folder, with its manifest and signature fetched."""
        if not backup_id or not ID_RE.match(backup_id):
            return self.cache / "none" / name
        folder = self.cache / backup_id
        folder.mkdir(mode=0o700, exist_ok=True)
        if not name:
            for n in (MANIFEST, MAC_FILE):
                if n in self.files(backup_id):
                    self.local_path(backup_id, n)
            return folder
        path = folder / name
        if not path.exists() and name in self.files(backup_id):
            part = folder / f".{name}.part"
            fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as f:
                for chunk in self.blobs.get(f"{backup_id}/{name}"):
                    f.write(chunk)
            os.rename(part, path)
        return path

    def forget(self, backup_id: str) -> None:
        """Drop a backup's fetched files from the cache (after a verification: a store's worth of
        backups is never kept on this disk at once)."""
        if self._cache is not None and ID_RE.match(backup_id):
            shutil.rmtree(self._cache / backup_id, ignore_errors=True)

    def put_file(self, backup_id: str, name: str, data: bytes) -> None:
        """Write (replace) one small file beside a backup's manifest: its verification results.
        Never the manifest, its signature or a file the manifest lists."""
        assert ID_RE.match(backup_id) and name not in (MANIFEST, MAC_FILE) and "/" not in name
        self.blobs.put(f"{backup_id}/{name}", data)
        if self._listing is not None:
            self._listing.setdefault(backup_id, set()).add(name)
        if self._cache is not None:
            (self._cache / backup_id / name).unlink(missing_ok=True)

    # --- writing -----------------------------------------------------------------------------

    def ensure(self) -> bool:
        return False

    def writable(self) -> bool:
        return True

    @contextmanager
    def lock(self, *, reading: bool = False, step: Callable[[str], None] | None = None) -> Iterator[None]:
        """Object stores have no locks; the local folder's lock is held instead (one writer per
        machine). Two machines writing one prefix never collide: ids are times, and a backup
        exists only once its manifest is written."""
        if self.local is not None:
            with self.local.lock(reading=reading, step=step):
                yield
        else:
            yield

    def tidy(self) -> None:
        pass

    def stale_staging(self) -> list[Path]:
        return []

    def writer(self, folder: Path) -> BackupWriter:
        backup_id = self._writing
        assert backup_id is not None, "writer() outside staging()"

        def upload(name: str):
            return self.blobs.open_writer(f"{backup_id}/{name}")

        return BackupWriter(folder, recipients=self.recipients, upload=upload, keep_file=self.local is not None)

    @contextmanager
    def staging(self, backup_id: str) -> Iterator[Path]:
        """Files are uploaded as they are written (see writer); when the block completes, the
        signature and then the manifest go up, and only then does the backup exist."""
        if backup_id in self._objects():
            raise Busy(f"A backup named {backup_id} already has files in {self.describe()}", "run the backup again")
        ctx: Any = self.local.staging(backup_id) if self.local is not None else tempfile.TemporaryDirectory(prefix="fortress-upload-")
        with ctx as folder:
            folder = Path(folder)
            os.chmod(folder, 0o700)
            self._writing = backup_id
            try:
                yield folder
                for name in (MAC_FILE, MANIFEST):  # the manifest last
                    self.blobs.put(f"{backup_id}/{name}", (folder / name).read_bytes())
            except BaseException:
                self._remove_objects(backup_id, best_effort=True)
                raise
            finally:
                self._writing = None
                self._listing = None

    def _remove_objects(self, backup_id: str, *, best_effort: bool = False) -> None:
        keys = [o.key for o in self.blobs.list(f"{backup_id}/")] if not best_effort else []
        if best_effort:
            try:
                keys = [o.key for o in self.blobs.list(f"{backup_id}/")]
            except Exception:
                return
        # the manifest first: from then on the backup no longer lists, whatever else fails
        keys.sort(key=lambda k: (not k.endswith("/" + MANIFEST), not k.endswith("/" + MAC_FILE), k))
        for key in keys:
            try:
                self.blobs.delete(key)
            except Exception:
                if not best_effort:
                    raise

    def delete(self, backup_id: str) -> None:
        if not ID_RE.match(backup_id):
            raise IntegrityError(f"{backup_id!r} is not a backup id", "run `invoke list --remote`")
        self._remove_objects(backup_id)
        self._listing = None

    def last_written(self, backup_id: str) -> dt.datetime:
        """When anything of this backup was last written: its newest object, or the time its id
        names (when the upload started), whichever is later."""
        m = ID_RE.match(backup_id)
        assert m is not None
        started = dt.datetime.strptime(f"{m.group(1)}T{m.group(2)}", "%Y-%m-%dT%H%M%S").replace(tzinfo=dt.UTC)
        self._objects()
        return max(started, self._written.get(backup_id, started))

    def stale_uploads(self, now: dt.datetime, grace: dt.timedelta = STALE_UPLOAD) -> list[str]:
        """Incomplete uploads last written longer than `grace` ago: cut off, never to be finished."""
        return [i for i in self.incomplete() if now - self.last_written(i) > grace]

    def remove_upload(self, backup_id: str, now: dt.datetime, grace: dt.timedelta) -> bool:
        """Remove a cut-off upload's files, after listing it again: not if a manifest appeared (it
        completed) or anything of it was written within `grace` (it is running). Only its own
        files (`<id>/<name>`) go. True when removed."""
        if not ID_RE.match(backup_id):
            raise IntegrityError(f"{backup_id!r} is not a backup id", "run `invoke list --remote`")
        self.refresh()
        if backup_id not in self.incomplete() or now - self.last_written(backup_id) <= grace:
            return False
        for obj in self.blobs.list(f"{backup_id}/"):
            parts = obj.key.split("/")
            if len(parts) == 2 and parts[0] == backup_id and parts[1] != MANIFEST:
                self.blobs.delete(obj.key)
        self.refresh()
        return True
