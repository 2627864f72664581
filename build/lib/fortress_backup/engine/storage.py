"""Where backups live. A backup is a folder of files named by its id; a store can list ids, read
and write a backup's files, and publish or delete a whole backup atomically.

Only the local folder store exists so far; object storage implements the same protocol. The
engine never touches paths of a store directly except through `local_path`, which a remote store
satisfies by downloading into a cache first.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import IO, Any, Protocol

from .errors import Busy, UsageError

STAGING_PREFIX = ".tmp-"
_ID = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{6}Z(?:-\d+)?$")  # catalog.ID_RE: other folders are not backups


class Store(Protocol):
    """What catalog, dump, restore and prune need of a store: LocalStore (a folder) and
    remote.RemoteStore (object storage, over objects.Blobs) implement it."""

    identity: Any  # crypt.Identity that decrypts, or None

    def ids(self) -> list[str]: ...
    def exists(self, backup_id: str) -> bool: ...
    def files(self, backup_id: str) -> list[str]: ...
    def loose_files(self) -> list[str]: ...
    def local_path(self, backup_id: str, name: str) -> Path: ...
    def staging(self, backup_id: str) -> AbstractContextManager[Path]: ...
    def writer(self, folder: Path) -> BackupWriter: ...
    def lock(self, *, reading: bool = False, step: Callable[[str], None] | None = None) -> AbstractContextManager[None]: ...
    def delete(self, backup_id: str) -> None: ...
    def ensure(self) -> bool: ...
    def describe(self) -> str: ...


def fsync_path(path: Path) -> None:
    """fsync a file, or a directory (so a rename in it is durable)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class LocalStore:
    """Backups as folders under one directory (BACKUP_DIR), created 0700, files 0600."""

    def __init__(self, root: Path, *, recipients: list[str] | None = None, identity: Any = None):
        self.root = Path(root)
        self.recipients = list(recipients or [])  # age public keys: every file is encrypted for them
        self.identity = identity  # crypt.Identity: decrypts for restore and verify

    def writer(self, folder: Path) -> BackupWriter:
        return BackupWriter(folder, recipients=self.recipients)

    def describe(self) -> str:
        return str(self.root)

    def ensure(self) -> bool:
        """Create the folder (0700) if missing; True when it was created."""
        if self.root.exists():
            if not self.root.is_dir():
                raise UsageError(f"BACKUP_DIR {self.root} exists and is not a folder", "point BACKUP_DIR elsewhere")
            return False
        self.root.mkdir(parents=True, mode=0o700)
        os.chmod(self.root, 0o700)
        return True

    def ids(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and _ID.match(p.name) and (p / "manifest.json").is_file())

    def loose_files(self) -> list[str]:
        """Plain files at the top level (the runbook's hand-made dumps live here)."""
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if p.is_file() and not p.name.startswith("."))

    def files(self, backup_id: str) -> list[str]:
        return sorted(p.name for p in (self.root / backup_id).iterdir() if p.is_file())

    def local_path(self, backup_id: str, name: str) -> Path:
        return self.root / backup_id / name if backup_id else self.root / name

    def writable(self) -> bool:
        """False for a folder this process cannot write (read-only media, a mounted archive)."""
        return os.access(self.root, os.W_OK)

    @contextmanager
    def lock(self, *, reading: bool = False, step: Callable[[str], None] | None = None) -> Iterator[None]:
        """One writer per backup folder: backup, restore and prune hold this lock. A reader
        (`reading`: restore) of a folder it cannot write skips it, and says so through `step`:
        a read-only folder cannot change under it, and has no room for the lock file."""
        from filelock import FileLock, Timeout

        if reading and self.root.is_dir() and not self.writable():
            if step:
                step(f"{self.root} is read-only: reading it without the folder's lock (nothing can change it)")
            yield
            return
        self.ensure()
        guard = FileLock(str(self.root / ".lock"), mode=0o600)
        try:
            guard.acquire(timeout=0)
        except Timeout:
            raise Busy(f"Another backup, restore or prune is using {self.root}", "wait for it to finish, then run this again") from None
        try:
            # holding the lock, no other run is writing here: what a staging folder holds now
            # is a killed run's
            from .toc import remove_orphan_lists

            remove_orphan_lists()
            self._remove_leftovers()
            yield
        finally:
            guard.release()

    def tidy(self) -> None:
        """Remove what killed runs left (staging folders, temporary files), unless another run
        holds the folder's lock right now: then its staging folder may be live and stays."""
        from filelock import FileLock, Timeout

        from .toc import remove_orphan_lists

        remove_orphan_lists()
        if not self.stale_staging():
            return
        guard = FileLock(str(self.root / ".lock"), mode=0o600)
        try:
            guard.acquire(timeout=0)
        except (Timeout, OSError):  # busy, or a folder we may not write to
            return
        try:
            self._remove_leftovers()
        finally:
            guard.release()

    def _remove_leftovers(self) -> None:
        for path in self.stale_staging():
            shutil.rmtree(path, ignore_errors=True)

    def exists(self, backup_id: str) -> bool:
        return (self.root / backup_id).exists()

    @contextmanager
    def staging(self, backup_id: str) -> Iterator[Path]:
        """A private temporary folder that becomes `backup_id` only if the block completes.

        Files are fsynced by the writer; here the folder is renamed into place and the parent
        directory fsynced, so a crash leaves either no backup or a whole one. A dot-prefixed
        staging folder is never listed, restored or mistaken for a backup.
        """
        self.ensure()
        tmp = Path(tempfile.mkdtemp(prefix=f"{STAGING_PREFIX}{backup_id}-", dir=self.root))
        os.chmod(tmp, 0o700)
        try:
            yield tmp
            fsync_path(tmp)
            final = self.root / backup_id
            if final.exists():
                raise Busy(f"A backup named {backup_id} appeared while writing", "run the backup again")
            os.rename(tmp, final)
            fsync_path(self.root)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise

    def delete(self, backup_id: str) -> None:
        path = self.root / backup_id
        # Rename first so a half-deleted backup is never listed as complete.
        if path.is_symlink():
            # a backup folder that is a link (to another disk): the link goes, never what it points at
            path.unlink()
            return
        doomed = self.root / f"{STAGING_PREFIX}deleting-{backup_id}"
        os.rename(path, doomed)
        shutil.rmtree(doomed)

    def stale_staging(self) -> list[Path]:
        if not self.root.is_dir():
            return []
        return [p for p in self.root.iterdir() if p.name.startswith(STAGING_PREFIX)]


class _Tee:
    """Where one stored file's bytes go: hashed and counted (what the manifest records is
    what is stored), then into each output (a local file, an upload)."""

    def __init__(self, outputs: list[IO[bytes]]):
        self.outputs = outputs
        self.hash = hashlib.sha256()
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        data = bytes(data)
        self.hash.update(data)
        self.size += len(data)
        for out in self.outputs:
            out.write(data)
        return len(data)

    def flush(self) -> None:
        pass


class BackupWriter:
    """Where the files of a backup being written go (dump.py asks it for each file's path).

    Plain: files in the staging folder, as the tools write them. Encrypting (`recipients`) or
    uploading (`upload`): each file's path is a named pipe (FIFO) that a thread drains into age
    encryption, then the upload and/or the file in the staging folder (`keep_file`); no
    plaintext touches the disk and nothing waits for the whole file. `finish(name)` gives what
    the manifest records of the stored bytes."""

    def __init__(
        self,
        folder: Path,
        *,
        recipients: list[str] | None = None,
        upload: Callable[[str], IO[bytes]] | None = None,
        keep_file: bool = True,
    ):
        self.folder = folder
        self.recipients = list(recipients or [])
        self.upload = upload
        self.keep_file = keep_file
        self.streaming = bool(self.recipients or upload)
        self.results: dict[str, dict[str, Any]] = {}
        self.errors: dict[str, BaseException] = {}
        self.threads: dict[str, threading.Thread] = {}
        self.aborted = False

    def __enter__(self) -> BackupWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.abort()
            failed = next(iter(self.errors.values()), None)
            if failed is not None and not isinstance(failed, BrokenPipeError):
                # the tool's error (a broken pipe) came from this one: say what really failed
                raise failed from None

    def path(self, name: str) -> Path:
        """Where a tool writes the file `name`."""
        path = self.folder / name
        if not self.streaming:
            return path
        os.mkfifo(path, 0o600)
        t = threading.Thread(target=self._drain, args=(name, path), name=f"store-{name}", daemon=True)
        self.threads[name] = t
        t.start()
        return path

    def write_bytes(self, name: str, data: bytes) -> None:
        if not self.streaming:
            fd = os.open(self.folder / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            return
        import io

        self._store(name, io.BytesIO(data))

    def _outputs(self, name: str) -> tuple[list[IO[bytes]], IO[bytes] | None]:
        outputs: list[IO[bytes]] = []
        local = None
        if self.keep_file:
            stored = self.folder / (name if not self.streaming else f".{name}.part")
            local = os.fdopen(os.open(stored, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb")
            outputs.append(local)
        if self.upload is not None:
            outputs.append(self.upload(name))
        return outputs, local

    def _store(self, name: str, source: IO[bytes]) -> None:
        outputs, local = self._outputs(name)
        tee = _Tee(outputs)
        try:
            if self.recipients:
                from .crypt import Encrypting

                enc = Encrypting(tee, self.recipients)
                try:
                    while chunk := source.read(1 << 20):
                        enc.write(chunk)
                finally:
                    enc.close()
            else:
                while chunk := source.read(1 << 20):
                    tee.write(chunk)
            if self.aborted:
                raise BrokenPipeError("aborted")
            for out in outputs:
                if out is local:
                    out.flush()
                    os.fsync(out.fileno())
                out.close()  # an upload exists only now, complete
        except BaseException:
            if local is not None:
                local.close()
            # an unclosed upload is never completed: nothing of it lists
            raise
        if local is not None and self.streaming:
            os.rename(self.folder / f".{name}.part", self.folder / f"{name}.stored")
        self.results[name] = {"size": tee.size, "sha256": tee.hash.hexdigest()}

    def _drain(self, name: str, fifo: Path) -> None:
        try:
            with open(fifo, "rb", buffering=0) as source:
                self._store(name, source)
        except BaseException as exc:
            self.errors[name] = exc

    def finish(self, name: str) -> dict[str, Any]:
        """Size and sha256 of the stored file (and `encrypted` when it is); raises what went
        wrong storing it."""
        if not self.streaming:
            path = self.folder / name
            os.chmod(path, 0o600)
            fsync_path(path)
            from .catalog import sha256_file

            return {"size": path.stat().st_size, "sha256": sha256_file(path)}
        t = self.threads.get(name)
        if t is not None:
            t.join()
            (self.folder / name).unlink(missing_ok=True)  # the FIFO
        if name in self.errors:
            raise self.errors[name]
        if self.keep_file and (self.folder / f"{name}.stored").exists():
            os.rename(self.folder / f"{name}.stored", self.folder / name)
        out = dict(self.results[name])
        if self.recipients:
            out["encrypted"] = "age"
        return out

    def manifest_fields(self) -> dict[str, Any]:
        if not self.recipients:
            return {}
        return {"encryption": {"scheme": "age", "recipients": list(self.recipients), "files": sorted(self.results)}}

    def abort(self) -> None:
        """Stop every file still being written; nothing of them is kept or completed."""
        self.aborted = True
        for name, t in self.threads.items():
            if t.is_alive():
                try:  # a drain still waiting for its writer: open and close the write end, it ends
                    os.close(os.open(self.folder / name, os.O_WRONLY | os.O_NONBLOCK))
                except OSError:
                    pass
                t.join(timeout=30)
