"""Object storage: S3 (and anything speaking its API: MinIO, Cloudflare R2, Supabase Storage),
Google Cloud Storage and Azure Blob Storage, through one library, obstore (Rust's
`object_store`, the crate Apache Arrow, DataFusion and Delta Lake use).

`Blobs` is the small interface the backup store needs: put from a stream (multipart, never the
whole object in memory), get as a stream, list, delete, each with its metadata. Credentials
come from the environment the way each cloud's tools read them: AWS_ACCESS_KEY_ID /
AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN / AWS_REGION / AWS_ENDPOINT_URL (S3 and custom
endpoints), GOOGLE_SERVICE_ACCOUNT / GOOGLE_APPLICATION_CREDENTIALS (GCS), AZURE_STORAGE_*
(Azure); obstore reads them itself.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, Protocol

from .errors import ConfigError, NotFound, StorageError

SCHEMES = ("s3", "gs", "az")
CHUNK = 8 << 20  # multipart part size and read size: memory stays a few parts, whatever the backup's size
_URL = re.compile(r"^(s3|gs|az)://([^/?#]+)(/[^?#]*)?$")


@dataclass(frozen=True)
class ObjectInfo:
    key: str  # relative to the store's prefix
    size: int
    modified: dt.datetime | None
    etag: str | None


class Blobs(Protocol):
    def open_writer(self, key: str) -> IO[bytes]: ...
    def put(self, key: str, data: bytes) -> None: ...
    def get(self, key: str) -> Iterator[bytes]: ...
    def head(self, key: str) -> ObjectInfo | None: ...
    def list(self, prefix: str = "") -> list[ObjectInfo]: ...
    def delete(self, key: str) -> None: ...
    def describe(self) -> str: ...


def is_remote(url: str | None) -> bool:
    return bool(url) and str(url).split("://", 1)[0].lower() in SCHEMES


def _why(exc: BaseException) -> str:
    """The first line of obstore's message, without request details (never a credential)."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
    return text[:300]


class CloudBlobs:
    """One bucket (container) and prefix of S3, GCS or Azure, spoken to by obstore."""

    def __init__(self, url: str):
        m = _URL.match(url)
        if not m:
            raise ConfigError(
                f"BACKUP_STORE {url[:80]!r} is not an object store URL",
                "use s3://BUCKET/PREFIX, gs://BUCKET/PREFIX, az://CONTAINER/PREFIX, or a local folder",
            )
        self.url = url.rstrip("/")
        from obstore.store import from_url

        try:
            self.store = from_url(self.url)
        except Exception as exc:  # obstore raises its own exception types for bad configuration
            raise ConfigError(
                f"Cannot use BACKUP_STORE {self.url}: {_why(exc)}",
                "check the URL and the cloud's credentials in the environment (see README, Off-site storage)",
            ) from None

    def describe(self) -> str:
        return self.url

    def _fail(self, what: str, key: str, exc: BaseException) -> StorageError:
        return StorageError(
            f"Could not {what} {self.url}/{key}: {_why(exc)}",
            "check the network, the bucket and the credentials in the environment; nothing was changed",
        )

    def open_writer(self, key: str) -> IO[bytes]:
        """A file to write an object into: parts are uploaded as they fill (multipart), and the
        object exists only once the writer is closed."""
        import obstore

        try:
            return obstore.open_writer(self.store, key, buffer_size=CHUNK)  # type: ignore[return-value]
        except Exception as exc:
            raise self._fail("write", key, exc) from None

    def put(self, key: str, data: bytes) -> None:
        import obstore

        try:
            obstore.put(self.store, key, data)
        except Exception as exc:
            raise self._fail("write", key, exc) from None

    def get(self, key: str) -> Iterator[bytes]:
        import obstore

        try:
            result = obstore.get(self.store, key)
            for chunk in result.stream(min_chunk_size=CHUNK):
                yield bytes(chunk)
        except FileNotFoundError:
            raise NotFound(f"{self.url}/{key} does not exist", "run `invoke list --remote` to see what the store holds") from None
        except Exception as exc:
            raise self._fail("read", key, exc) from None

    def head(self, key: str) -> ObjectInfo | None:
        import obstore

        try:
            meta = obstore.head(self.store, key)
        except FileNotFoundError:
            return None
        except Exception as exc:
            raise self._fail("read", key, exc) from None
        return ObjectInfo(str(meta["path"]), int(meta["size"]), meta.get("last_modified"), meta.get("e_tag"))

    def list(self, prefix: str = "") -> list[ObjectInfo]:
        import obstore

        try:
            out = []
            for batch in obstore.list(self.store, prefix=prefix or None):
                for meta in batch:
                    out.append(ObjectInfo(str(meta["path"]), int(meta["size"]), meta.get("last_modified"), meta.get("e_tag")))
            return out
        except Exception as exc:
            raise self._fail("list", prefix, exc) from None

    def delete(self, key: str) -> None:
        import obstore

        try:
            obstore.delete(self.store, key)
        except FileNotFoundError:
            pass
        except Exception as exc:
            raise self._fail("delete", key, exc) from None
