"""The store a command works on, from the settings: the local folder (BACKUP_DIR), or object
storage (BACKUP_STORE), each with the age keys configured (BACKUP_AGE_RECIPIENTS encrypts,
BACKUP_AGE_IDENTITY decrypts)."""

from __future__ import annotations

from pathlib import Path

from . import crypt
from .errors import ConfigError
from .objects import CloudBlobs, is_remote
from .remote import RemoteStore
from .settings import Settings
from .storage import LocalStore


def keys(settings: Settings) -> tuple[list[str], crypt.Identity | None]:
    return crypt.parse_recipients(settings.age_recipients), crypt.load_identity(settings.age_identity)


def local_store(settings: Settings) -> LocalStore:
    recipients, identity = keys(settings)
    if settings.store and not is_remote(settings.store):
        return LocalStore(Path(settings.store).expanduser(), recipients=recipients, identity=identity)
    return LocalStore(settings.backup_dir, recipients=recipients, identity=identity)


def remote_store(settings: Settings, *, keep_local: bool = False) -> RemoteStore:
    if not is_remote(settings.store):
        if settings.store:
            raise ConfigError(
                f"BACKUP_STORE is the local folder {settings.store}, not an object store, so there is nothing --remote can reach",
                "leave out --remote (that folder is used), or set BACKUP_STORE to s3://BUCKET/PREFIX, gs://BUCKET/PREFIX or az://CONTAINER/PREFIX",
            )
        raise ConfigError(
            "No object store configured (BACKUP_STORE)", "set BACKUP_STORE to s3://BUCKET/PREFIX, gs://BUCKET/PREFIX or az://CONTAINER/PREFIX"
        )
    recipients, identity = keys(settings)
    assert settings.store is not None
    local = LocalStore(settings.backup_dir, recipients=recipients, identity=identity) if keep_local else None
    return RemoteStore(CloudBlobs(settings.store), local=local, recipients=recipients, identity=identity)


def open_store(settings: Settings, *, remote: bool = False) -> LocalStore | RemoteStore:
    """`remote`: the object store (an error when none is configured); else the local folder."""
    return remote_store(settings) if remote else local_store(settings)


def write_store(settings: Settings, *, keep_local: bool = False) -> LocalStore | RemoteStore:
    """Where `backup` writes: the object store when BACKUP_STORE is one (with a local copy only
    when asked), else the local folder."""
    if is_remote(settings.store):
        return remote_store(settings, keep_local=keep_local)
    return local_store(settings)
