"""zstd around a custom-format archive, for pg_dump versions that cannot write zstd themselves.

pg_dump 15 compresses only with gzip (slow, and large). A newer pg_dump would write zstd, but
its output is not the server's own pg_dump's: pg_dump 17 against a PostgreSQL 15.20 server
writes `ALTER TABLE ONLY ... ALTER COLUMN ... SET (pg_attver=N)` for every column (an internal
column option that 15.20 keeps and its own pg_dump hides), which PostgreSQL 16+ rejects. So
the server's own pg_dump writes an uncompressed custom archive to a pipe, and the `zstd` tool
compresses it on its own core into the archive's file (same name; the manifest's format says
`custom+zstd`); Python only moves the pipe's pages across
(pipes.relay, counting the raw size) on a thread. A restore runs `zstd -d` into pg_restore's
standard input the same way (pg_restore reads such an archive front to back, which is the
order a restore asks for its entries).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import stat
import subprocess
import threading
import time
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path
from typing import IO

from . import pgtools, pipes
from .errors import ToolsMissing

MAGIC = b"\x28\xb5\x2f\xfd"
LEVEL = 1  # on the benchmark level 1 is as small as gzip 6 at a fraction of the time
FORMAT = "custom+zstd"


def tool() -> str | None:
    return shutil.which("zstd")


def need_tool() -> str:
    found = tool()
    if found is None:
        raise ToolsMissing(
            "This backup is compressed with zstd and the `zstd` tool is not installed",
            "install it (Debian/Ubuntu: apt-get install zstd; macOS: brew install zstd), then run the command again",
        )
    return found


def is_zstd(path: str | Path) -> bool:
    try:
        if stat.S_ISFIFO(os.stat(path).st_mode):
            return _fifo_is_zstd(str(path))
        with open(path, "rb") as f:
            return f.read(4) == MAGIC
    except OSError:
        return False


@lru_cache(maxsize=64)
def _fifo_is_zstd(path: str) -> bool:
    """An encrypted backup's file is a named pipe serving its plaintext anew to each reader
    (crypt.Served), which puts a fresh pipe at the path once a reader is done: peek once, and
    wait for that fresh pipe, so the next reader never opens the one just closed."""
    before = os.stat(path).st_ino
    with open(path, "rb") as f:
        head = f.read(4)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            if os.stat(path).st_ino != before:
                break
        except FileNotFoundError:
            pass
        time.sleep(0.002)
    return head == MAGIC


class Compressor:
    """`zstd` writing `out` from a pipe; `feed(fd)` starts moving the producer's output into it
    on a thread. `finish()` returns the raw byte count once the producer's output ended."""

    def __init__(self, out: Path, env: dict[str, str]):
        # A new file zstd names itself (-o: it refuses to overwrite one, and the process says what
        # it writes); a named pipe the store drains (encryption, upload) it writes as its stdout.
        fifo = out.is_fifo()
        argv = [need_tool(), f"-{LEVEL}", "-q", "--no-progress", *([] if fifo else ["-o", str(out)])]
        sink = open(out, "wb") if fifo else None
        try:
            self.proc = pgtools.popen(argv, env=env, stdin=subprocess.PIPE, stdout=sink or subprocess.DEVNULL, stderr=subprocess.PIPE)
        finally:
            if sink is not None:
                sink.close()
        assert self.proc.stdin is not None
        pipes.widen(self.proc.stdin.fileno())
        self.raw = 0
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None

    def feed(self, src: IO[bytes]) -> None:
        pipes.widen(src.fileno())

        def run() -> None:
            assert self.proc.stdin is not None
            try:
                self.raw = pipes.relay(src.fileno(), self.proc.stdin.fileno())
            except BaseException as exc:  # reported by finish()
                self._error = exc
            finally:
                self.proc.stdin.close()
                # nothing reads the producer's pipe any more: closed, so a producer still writing
                # (zstd having died: disk full, file size limit, killed) gets EPIPE and ends,
                # instead of blocking on a full pipe while it holds its snapshot and locks
                src.close()

        self._thread = threading.Thread(target=run, name="zstd-feed", daemon=True)
        self._thread.start()

    def finish(self) -> int:
        if self._thread is not None:
            self._thread.join()
        assert self.proc.stderr is not None
        err = self.proc.stderr.read()
        self.proc.wait()
        if self.proc.returncode != 0:  # first: zstd's own failure is why the relay broke
            raise pgtools.ToolError("zstd", self.proc.returncode, cause(self.proc.returncode, err))
        if self._error is not None:
            raise self._error
        return self.raw

    def failed(self) -> pgtools.ToolError | None:
        """Asked once the producer failed: zstd's error when it ended on its own with a failure
        (the producer then ends on a broken pipe, and this is the reason to report); None when it
        did not fail. The producer's end closed zstd's input, so zstd ends now either way: it is
        waited for (its pipe closes a moment before the kernel reports its exit, so a look
        without waiting could miss a zstd that has just died)."""
        if self._thread is not None:
            self._thread.join(timeout=10)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            return None
        if self.proc.returncode == 0:
            return None
        assert self.proc.stderr is not None
        return pgtools.ToolError("zstd", self.proc.returncode, cause(self.proc.returncode, self.proc.stderr.read()))

    def stop(self) -> None:
        pgtools.stop(self.proc)
        if self._thread is not None:
            self._thread.join(timeout=5)


def cause(returncode: int, stderr: bytes) -> str:
    """Why zstd stopped, in words: from its exit status (a signal) or its last lines of stderr."""
    said = pgtools.tail(stderr)
    low = said.lower()
    if returncode == -signal.SIGXFSZ or "file too large" in low:
        why = "the file is too large: the file size limit (ulimit -f) was reached"
    elif "no space left" in low:
        why = "the disk is full (no space left on device)"
    elif returncode == -signal.SIGKILL:
        why = "it was killed (SIGKILL: out of memory, or stopped by someone)"
    elif returncode < 0:
        why = (
            f"it was killed by {signal.Signals(-returncode).name}"
            if -returncode in signal.valid_signals()
            else f"it was killed by signal {-returncode}"
        )
    else:
        why = f"it exited with {returncode}"
    return f"zstd stopped: {why}" + (f" ({said})" if said else "")


@contextlib.contextmanager
def reading(archive: Path, env: dict[str, str]) -> Iterator[tuple[list[str], int | IO[bytes]]]:
    """What pg_restore is given to read `archive`: (its file argument, its stdin). For a zstd
    file, a `zstd -d` process whose output is pg_restore's stdin; an error of zstd's (other than
    pg_restore having stopped reading early, which a listing does) raises ToolError("zstd")."""
    if not is_zstd(archive):
        yield [str(archive)], subprocess.DEVNULL
        return
    # on stdin: zstd ignores a file named through a symbolic link (/dev/fd/N, catalog.pin)
    with open(archive, "rb") as f:
        proc = pgtools.popen([need_tool(), "-d", "-q", "-c", "--no-progress"], env=env, stdin=f, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None
    pipes.widen(proc.stdout.fileno())
    try:
        try:
            yield [], proc.stdout
        except Exception as exc:
            # zstd dying mid-stream (killed, a damaged file, a read error) ends pg_restore's input
            # early: zstd's cause is the error to report, not pg_restore's "end of file". Its
            # exit is waited for (its pipe closes a moment before the kernel reports it); a zstd
            # still writing into the pipe nobody reads now ends on SIGPIPE, which is not its fault.
            proc.stdout.close()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)
            if proc.returncode not in (None, 0, -signal.SIGPIPE):
                assert proc.stderr is not None
                raise pgtools.ToolError("zstd", proc.returncode, cause(proc.returncode, proc.stderr.read())) from exc
            raise
        proc.stdout.close()
        _, err = proc.communicate()
    finally:
        pgtools.stop(proc)
    if proc.returncode not in (0, -signal.SIGPIPE):
        said = pgtools.tail(err)
        raise pgtools.ToolError("zstd", proc.returncode, "zstd: " + said if said else cause(proc.returncode, err))
