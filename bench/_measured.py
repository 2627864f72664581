"""`invoke ARGS` as a user runs it, then its own and its children's resource use into
$BENCH_STATS (bench.py reads it): peak RSS of this process, of its largest child, CPU of each."""

from __future__ import annotations

import json
import os
import resource
import runpy
import sys

if __name__ == "__main__":
    sys.argv = ["invoke", *sys.argv[1:]]
    try:
        runpy.run_module("invoke", run_name="__main__", alter_sys=True)
    finally:
        me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        with open(os.environ["BENCH_STATS"], "w") as f:
            json.dump(
                {
                    "self_rss_mb": me.ru_maxrss / 1024,
                    "children_rss_mb": kids.ru_maxrss / 1024,
                    "self_cpu": me.ru_utime + me.ru_stime,
                    "children_cpu": kids.ru_utime + kids.ru_stime,
                },
                f,
            )
