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
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import IO, Any, Protocol

from .errors import ConfigError, NotFound, StorageError

SCHEMES = ("s3", "gs", "az")
CHUNK = 8 << 20  # multipart part size and read size: memory stays a few parts, whatever the backup's size
# a bucket (container) name, then an optional prefix: no user, password, port or query (credentials
# come from the environment, never from the URL that is shown in listings and messages)
_URL = re.compile(r"^(s3|gs|az)://([A-Za-z0-9][A-Za-z0-9._-]*)(/[^?#@]*)?$")
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
FORMS = "s3://BUCKET/PREFIX, gs://BUCKET/PREFIX, az://CONTAINER/PREFIX, or a local folder"


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


def shown_store_url(url: str) -> str:
    """BACKUP_STORE as it may be shown in an error: the scheme, host and path only; a user or
    password before `@` and a query (`?aws_secret_access_key=...`) are left out."""
    text = url.strip()
    m = _SCHEME.match(text)
    rest = text[m.end() :] if m else text
    rest = re.split(r"[?#]", rest, maxsplit=1)[0] + ("?…" if re.search(r"[?#]", rest) else "")
    if "@" in rest:  # credentials end at the last '@' (a raw '/' in a password must not show it)
        rest = "…@" + rest.rpartition("@")[2]
    shown = (m.group(0) if m else "") + rest
    return shown[:100] + ("…" if len(shown) > 100 else "")


def check_store_url(value: str) -> None:
    """BACKUP_STORE is an object store URL of a known form or a local folder; anything else that
    looks like a URL (https://, s3://user:key@..., s3://bucket?secret=...) is a ConfigError that
    names the accepted forms and never echoes a credential."""
    m = _SCHEME.match(value.strip())
    if not m:
        return  # a local folder
    shown = shown_store_url(value)
    if m.group(1).lower() not in SCHEMES:
        raise ConfigError(
            f"BACKUP_STORE {shown!r} is not a store this tool can use",
            f"set it to {FORMS}; for an S3-compatible service (Supabase Storage, MinIO, R2) use s3://BUCKET/PREFIX "
            "and put its endpoint in AWS_ENDPOINT_URL",
        )
    if not _URL.match(value.strip()):
        raise ConfigError(
            f"BACKUP_STORE {shown!r} is not an object store URL (a bucket name and a prefix, nothing more)",
            f"set it to {FORMS}; credentials and options come from the environment "
            "(AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_ENDPOINT_URL, ...), never from the URL",
        )


# variables whose values are secrets in any cloud's configuration: a message that holds one
# shows **** instead
_SECRET_NAME = re.compile(r"^(AWS|AZURE|GOOGLE|GCS|GCP|MINIO|R2)_.*(SECRET|TOKEN|PASSWORD|KEY)(?!_ID$)")
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)([^/\s@]*)@")
_SECRET_PARAM = re.compile(r"(?i)([?&;][^=&\s]*(?:secret|signature|credential|token|password|passwd|sig|key)[^=&\s]*=)[^&\s#]*")


def redact(text: str, environ: Mapping[str, str] | None = None) -> str:
    """A storage library's message made safe to show: no password or token in a URL (obstore
    prints request URLs, with the user and password of AWS_ENDPOINT_URL), no signature or key in
    a query, and no value of a secret variable of the environment."""
    environ = os.environ if environ is None else environ

    def userinfo(m: re.Match[str]) -> str:
        user, colon, _ = m.group(2).partition(":")
        return f"{m.group(1)}{user}:****@" if colon else f"{m.group(1)}****@"

    text = _USERINFO.sub(userinfo, text)
    text = _SECRET_PARAM.sub(r"\1****", text)
    for name, value in environ.items():
        if not value:
            continue
        secrets = [value] if _SECRET_NAME.match(name) else []
        if "://" in value and "@" in value:  # AWS_ENDPOINT_URL=https://user:password@host: its password
            auth = value.partition("://")[2].rpartition("@")[0]
            secrets.append(auth.partition(":")[2])
        for secret in secrets:
            if len(secret) >= 4 and secret in text:
                text = text.replace(secret, "****")
    return text


ENDPOINT_VARS = ("AWS_ENDPOINT_URL", "AWS_ENDPOINT", "AWS_ENDPOINT_URL_S3", "AZURITE_BLOB_STORAGE_URL", "GOOGLE_STORAGE_URL")


def _check_endpoints(environ: Mapping[str, str]) -> None:
    """A custom endpoint that is not a plain http(s) URL: a clear error here, instead of the
    storage library stopping the process (obstore panics on a port it cannot parse, for example a
    password with a raw `/` in it)."""
    from urllib.parse import urlsplit

    for var in ENDPOINT_VARS:
        value = environ.get(var)
        if not value:
            continue
        try:
            parts = urlsplit(value)
            ok = parts.scheme in ("http", "https") and bool(parts.hostname) and (parts.port is None or parts.port > 0)
        except ValueError:
            ok = False
        if not ok:
            raise ConfigError(
                f"{var} {redact(shown_store_url(value))!r} is not an http(s) URL with a host and an optional port",
                "set it to the service's endpoint, for example https://PROJECT.supabase.co/storage/v1/s3; "
                "percent-encode a user or password in it (or use AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY)",
            )


def _why(exc: BaseException) -> str:
    """The first line of obstore's message, credentials removed (see redact)."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
    return redact(text)[:300]


class CloudBlobs:
    """One bucket (container) and prefix of S3, GCS or Azure, spoken to by obstore."""

    def __init__(self, url: str):
        check_store_url(url)
        if not _URL.match(url.strip()):
            raise ConfigError(f"BACKUP_STORE {shown_store_url(url)!r} is not an object store URL", f"set it to {FORMS}")
        self.url = url.strip().rstrip("/")
        _check_endpoints(os.environ)
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
            writer = obstore.open_writer(self.store, key, buffer_size=CHUNK)
            return _Upload(writer, lambda exc: self._fail("write", key, exc))  # type: ignore[return-value]
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


class _Upload:
    """obstore's writer, with its errors (a part or the completion refused) turned into
    StorageError, credentials removed from the message."""

    def __init__(self, writer: Any, fail: Any):
        self.writer = writer
        self.fail = fail

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        try:
            return self.writer.write(data)
        except Exception as exc:
            raise self.fail(exc) from None

    def flush(self) -> None:
        try:
            self.writer.flush()
        except Exception as exc:
            raise self.fail(exc) from None

    def close(self) -> None:
        try:
            self.writer.close()
        except Exception as exc:
            raise self.fail(exc) from None
