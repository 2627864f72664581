"""Encryption at rest with age (pyrage: the Rust `age` crate's Python binding, streaming).

BACKUP_AGE_RECIPIENTS (public keys `age1...`, comma-separated, or files of them) encrypts every
file of a backup as it is written, so a CI runner can make backups it cannot read.
BACKUP_AGE_IDENTITY (a key file, `AGE-SECRET-KEY-1...` lines) decrypts them for restore.

Plaintext never lands on disk: a backup's tools write into a pipe that is encrypted on the way
to its file or upload; a restore reads each encrypted file through a named pipe (FIFO) that a
thread fills by decrypting the checked, stored bytes (see `serve`).
"""

from __future__ import annotations

import os
import tempfile
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import ConfigError, IntegrityError

SCHEME = "age"


def _pyrage():
    import pyrage

    return pyrage


def parse_recipients(specs: Iterable[str]) -> list[str]:
    """Public keys given directly, or files holding one per line (comments allowed)."""
    out: list[str] = []
    for spec in specs:
        spec = spec.strip()
        if not spec:
            continue
        if spec.startswith("age1"):
            lines = [spec]
        else:
            path = Path(spec).expanduser()
            if not path.is_file():
                raise ConfigError(
                    f"BACKUP_AGE_RECIPIENTS has {spec[:60]!r}, which is neither an age public key (age1...) nor a file",
                    "give public keys from `age-keygen -y KEYFILE`, comma-separated",
                )
            lines = [ln.strip() for ln in path.read_text().splitlines() if ln.strip() and not ln.startswith("#")]
        for line in lines:
            try:
                _pyrage().x25519.Recipient.from_str(line)
            except Exception:
                raise ConfigError(
                    f"BACKUP_AGE_RECIPIENTS has {line[:20]!r}…, which is not an age public key",
                    "give public keys (age1...) from `age-keygen -y KEYFILE`; the secret key belongs only on machines that restore",
                ) from None
            out.append(line)
    return out


@dataclass(frozen=True)
class Identity:
    keys: tuple[Any, ...]  # pyrage identities
    publics: tuple[str, ...]  # their recipients (age1...)
    source: str  # the file, for messages


def load_identity(path_text: str | None) -> Identity | None:
    if not path_text:
        return None
    path = Path(path_text).expanduser()
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(
            f"BACKUP_AGE_IDENTITY {path} cannot be read ({exc.strerror})", "point it at the age key file (age-keygen -o FILE)"
        ) from None
    keys, publics = [], []
    for line in text.splitlines():
        line = line.strip()
        if not line.startswith("AGE-SECRET-KEY-"):
            continue
        try:
            key = _pyrage().x25519.Identity.from_str(line)
        except Exception:
            raise ConfigError(f"BACKUP_AGE_IDENTITY {path} holds a damaged key", "point it at a key file made by age-keygen") from None
        keys.append(key)
        publics.append(str(key.to_public()))
    if not keys:
        raise ConfigError(f"BACKUP_AGE_IDENTITY {path} holds no age secret key (AGE-SECRET-KEY-1...)", "point it at a key file made by age-keygen")
    return Identity(tuple(keys), tuple(publics), str(path))


def _short(recipient: str) -> str:
    return recipient if len(recipient) <= 24 else f"{recipient[:12]}…{recipient[-8:]}"


def require(backup_id: str, encryption: dict[str, Any] | None, identity: Identity | None) -> None:
    """Refuse, before anything is touched, a restore of an encrypted backup without a key it
    was encrypted for, naming the recipients it needs."""
    if not encryption:
        return
    if encryption.get("scheme") != SCHEME:
        raise IntegrityError(f"Backup {backup_id} is encrypted with {str(encryption.get('scheme'))[:20]!r}", "upgrade this tool")
    wanted = [str(r) for r in encryption.get("recipients") or []]
    names = ", ".join(wanted) or "(none recorded)"
    if identity is None:
        raise ConfigError(
            f"Backup {backup_id} is encrypted (age) for {names}, and no key to decrypt it is configured; nothing was changed",
            "set BACKUP_AGE_IDENTITY to the key file of one of those recipients",
        )
    if not set(wanted) & set(identity.publics):
        raise ConfigError(
            f"Backup {backup_id} is encrypted for {names}; the key in {identity.source} is {', '.join(_short(p) for p in identity.publics)}; "
            "nothing was changed",
            "set BACKUP_AGE_IDENTITY to the key file of one of the recipients the backup names",
        )


class Encrypting:
    """A writable file that encrypts what is written into `out` (age, streamed). pyrage
    encrypts from a readable, so the writes go through an OS pipe into a thread."""

    def __init__(self, out: Any, recipients: list[str]):
        self.r, self.w = os.pipe()
        self.error: BaseException | None = None
        keys = [_pyrage().x25519.Recipient.from_str(r) for r in recipients]

        def run() -> None:
            try:
                with open(self.r, "rb", buffering=1 << 20) as src:
                    _pyrage().encrypt_io(src, out, keys)
            except BaseException as exc:  # reported by close()
                self.error = exc

        self.thread = threading.Thread(target=run, name="age-encrypt", daemon=True)
        self.thread.start()
        self.file = open(self.w, "wb", buffering=1 << 20)

    def write(self, data: bytes) -> int:
        self.file.write(data)
        return len(data)

    def close(self) -> None:
        self.file.close()
        self.thread.join()
        if self.error is not None:
            raise self.error


class Served:
    """Named pipes through which a restore reads encrypted files as plaintext: each open of
    the pipe gets the whole file again, decrypted from the stored bytes (read with pread from
    the pinned descriptor, so the bytes whose checksum was checked are the bytes decrypted)."""

    def __init__(self, identity: Identity):
        self.identity = identity
        self.folder = Path(tempfile.mkdtemp(prefix="fortress-age-"))
        os.chmod(self.folder, 0o700)
        self.paths: dict[int, Path] = {}
        self.stopping = False
        self.threads: list[threading.Thread] = []

    def add(self, fd: int, name: str) -> Path:
        path = self.folder / name
        os.mkfifo(path, 0o600)
        self.paths[fd] = path
        t = threading.Thread(target=self._serve, args=(fd, path), name=f"age-decrypt-{name}", daemon=True)
        t.start()
        self.threads.append(t)
        return path

    def _serve(self, fd: int, path: Path) -> None:
        while not self.stopping:
            try:
                out = os.open(path, os.O_WRONLY)  # waits for a reader
            except OSError:
                return
            if self.stopping:
                os.close(out)
                return
            # The next open of the path gets a new pipe, put in place as soon as this reader has
            # its own: a reader that opens the file again (pg_restore opens an archive twice)
            # waits for that pipe's fresh stream instead of attaching to this one, whose buffer
            # may still hold bytes from the middle of the file after this reader stopped.
            fresh = path.with_name(f".{path.name}.next")
            os.mkfifo(fresh, 0o600)
            os.rename(fresh, path)
            sink = open(out, "wb", buffering=1 << 20)
            try:
                _pyrage().decrypt_io(_Pread(fd), sink, list(self.identity.keys))
                sink.flush()
            except Exception:
                # the reader stopped early (pg_restore --list reads only the table of contents),
                # or the file does not decrypt: the reader sees a short file and fails
                pass
            finally:
                try:
                    sink.close()
                except OSError:
                    pass

    def stop(self) -> None:
        self.stopping = True
        for path in self.paths.values():
            try:  # wake a server waiting for a reader; it sees `stopping` and ends
                os.close(os.open(path, os.O_RDONLY | os.O_NONBLOCK))
            except OSError:
                pass
        for t in self.threads:
            t.join(timeout=5)
        for path in self.paths.values():
            path.unlink(missing_ok=True)
        try:
            self.folder.rmdir()
        except OSError:
            pass


class _Pread:
    """A readable over a descriptor from offset 0, independent of its file position."""

    def __init__(self, fd: int):
        self.fd = fd
        self.pos = 0

    def read(self, n: int = -1) -> bytes:
        n = 1 << 20 if n is None or n < 0 else n
        data = os.pread(self.fd, n, self.pos)
        self.pos += len(data)
        return data

    def readinto(self, buf: Any) -> int:
        data = self.read(len(buf))
        buf[: len(data)] = data
        return len(data)

    def readable(self) -> bool:
        return True


_served: dict[int, Served] = {}  # pinned descriptor -> its server


def serve(pinned: dict[str, int], encrypted: Iterable[str], identity: Identity) -> Served:
    server = Served(identity)
    for name in encrypted:
        fd = pinned[name]
        server.add(fd, name)
        _served[fd] = server
    return server


def plain_path(fd: int) -> Path | None:
    """The named pipe serving the plaintext of a pinned encrypted file; None when not encrypted."""
    server = _served.get(fd)
    return server.paths.get(fd) if server else None


def unserve(pinned: dict[str, int]) -> None:
    servers = {id(s): s for fd in pinned.values() if (s := _served.pop(fd, None)) is not None}
    for s in servers.values():
        s.stop()


def check_decrypts(fd: int, identity: Identity, name: str, backup_id: str) -> None:
    """Decrypt the first bytes of a file: a key that does not fit fails here, before anything."""
    import io

    class _Stop(Exception):
        pass

    class _Head(io.RawIOBase):
        def writable(self) -> bool:
            return True

        def write(self, b: Any) -> int:
            raise _Stop

    try:
        _pyrage().decrypt_io(_Pread(fd), _Head(), list(identity.keys))
    except _Stop:
        return
    except Exception as exc:
        if "_Stop" in repr(exc):
            return
        raise IntegrityError(
            f"Backup {backup_id}: {name} does not decrypt with the key in {identity.source} ({exc})", "restore another backup, or check the key"
        ) from None
