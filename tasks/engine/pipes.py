"""Moving a stream from one process's pipe to another's without copying it through Python.

On Linux, splice(2) hands the pipe's pages from one pipe to the other inside the kernel: Python
makes one system call per megabyte and never sees the bytes. Elsewhere a plain read/write loop
in large chunks does the same job, slower. Pipes are widened to a megabyte where the system
allows, so the writer and reader switch less often (the default is 64 KiB).
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Callable

CHUNK = 1 << 20
_F_SETPIPE_SZ = 1031  # linux/fcntl.h; not exported by Python's fcntl before 3.10 on every build


def widen(fd: int, size: int = CHUNK) -> None:
    """Make the pipe behind `fd` hold `size` bytes, where the system allows; harmless if not."""
    try:
        fcntl.fcntl(fd, getattr(fcntl, "F_SETPIPE_SZ", _F_SETPIPE_SZ), size)
    except OSError:
        pass


def relay(src: int, dst: int, on_bytes: Callable[[int], None] | None = None) -> int:
    """Move everything from `src` until end of file into `dst` (one of them a pipe); return the
    byte count. `on_bytes(n)` is told each amount moved."""
    total = 0
    splice = getattr(os, "splice", None)
    while True:
        if splice is not None:
            try:
                n = splice(src, dst, CHUNK)
            except OSError as exc:
                if exc.errno not in (22, 38):  # EINVAL/ENOSYS: not spliceable here; copy instead
                    raise
                splice = None
                continue
        else:
            data = os.read(src, CHUNK)
            n = len(data)
            view = memoryview(data)
            while view:
                view = view[os.write(dst, view) :]
        if n == 0:
            return total
        total += n
        if on_bytes is not None:
            on_bytes(n)
