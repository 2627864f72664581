"""`fortress-backup`: the tasks as a command of their own, for an app repository without a
tasks.py (`fortress-backup backup`, `fortress-backup restore --date ...`). It is Invoke's
`Program` over this package's collection, so flags, `--help TASK` and `--list` are Invoke's."""

from __future__ import annotations

from importlib import metadata

from invoke import Program

from . import ns
from ._flags import parse_tasks_or_exit_2


class BackupProgram(Program):
    parse_tasks = parse_tasks_or_exit_2


def _version() -> str:
    try:
        return metadata.version("fortress-backup")
    except metadata.PackageNotFoundError:
        return "unknown"


program = BackupProgram(namespace=ns, version=_version(), name="fortress-backup", binary="fortress-backup")


def main() -> None:
    program.run()
