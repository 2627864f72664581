"""Where backups live. A backup is a folder of files named by its id; a store can list ids, read
and write a backup's files, and publish or delete a whole backup atomically.

Only the local folder store exists so far; object storage implements the same protocol. The
engine never touches paths of a store directly except through `local_path`, which a remote store
satisfies by downloading into a cache first.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Protocol

from .errors import Busy, UsageError

STAGING_PREFIX = ".tmp-"


class Store(Protocol):
    def ids(self) -> list[str]: ...
    def files(self, backup_id: str) -> list[str]: ...
    def local_path(self, backup_id: str, name: str) -> Path: ...
    def staging(self, backup_id: str) -> AbstractContextManager[Path]: ...
    def delete(self, backup_id: str) -> None: ...
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

    def __init__(self, root: Path):
        self.root = Path(root)

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
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and not p.name.startswith(".") and (p / "manifest.json").is_file())

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
        doomed = self.root / f"{STAGING_PREFIX}deleting-{backup_id}"
        os.rename(path, doomed)
        shutil.rmtree(doomed)

    def stale_staging(self) -> list[Path]:
        if not self.root.is_dir():
            return []
        return [p for p in self.root.iterdir() if p.name.startswith(STAGING_PREFIX)]
