"""`invoke ARGS` as a user runs it, then its own and its children's resource use into
$BENCH_STATS (bench.py reads it): peak RSS of this process, the peak of the sum of its
descendants' RSS (sampled from /proc every 200 ms: getrusage's figure for children counts the
parent's pages a child holds between fork and exec), and the CPU of each. The sampler thread's
own CPU (a /proc walk per sample) is counted in this process's: sampling every 200 ms rather
than 50 ms keeps that small, at the price of missing a child's peak shorter than 200 ms."""

from __future__ import annotations

import json
import os
import resource
import runpy
import sys
import threading
from pathlib import Path

_peak = 0
_stop = threading.Event()


def _descendants(pid: int) -> list[int]:
    out: list[int] = []
    todo = [pid]
    while todo:
        p = todo.pop()
        try:
            kids = [int(k) for t in Path(f"/proc/{p}/task").iterdir() for k in (t / "children").read_text().split()]
        except OSError:
            continue
        out += kids
        todo += kids
    return out


def _rss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _sample() -> None:
    global _peak
    me = os.getpid()
    while not _stop.wait(0.2):
        _peak = max(_peak, sum(_rss_kb(p) for p in _descendants(me)))


if __name__ == "__main__":
    sys.argv = ["invoke", *sys.argv[1:]]
    sampler = threading.Thread(target=_sample, daemon=True)
    sampler.start()
    try:
        runpy.run_module("invoke", run_name="__main__", alter_sys=True)
    finally:
        _stop.set()
        me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        with open(os.environ["BENCH_STATS"], "w") as f:
            json.dump(
                {
                    "self_rss_mb": me.ru_maxrss / 1024,
                    "children_rss_mb": _peak / 1024,
                    "self_cpu": me.ru_utime + me.ru_stime,
                    "children_cpu": kids.ru_utime + kids.ru_stime,
                },
                f,
            )
