"""Flags as every task shares them: one meaning per short flag across all tasks, and a mistyped
flag is a usage error (exit 2, Invoke's message and the task's usage), as the README says.

Invoke would give each task's flags short forms from their first free letter, so `-d` meant
`--data-only` for one task and `--date` for another. Here short flags come only from SHORT: a
task without that flag has no such short form.
"""

from __future__ import annotations

from typing import Any

import invoke
from invoke.exceptions import Exit, ParseError
from invoke.program import Program

# long flag -> its one short form, the same in every task (pg_dump's -a/-s where they exist)
SHORT = {
    "yes": "y",
    "label": "l",
    "date": "d",
    "id": "i",
    "target": "t",
    "backup-dir": "b",
    "url": "u",
    "schema-only": "s",
    "data-only": "a",
    "verify": "v",
    "json": "j",
}

USAGE_EXIT = 2


class Task(invoke.Task):
    """An Invoke task whose short flags come from SHORT only."""

    def arg_opts(self, name: str, default: Any, taken_names: set) -> dict:
        self.auto_shortflags = False
        opts = super().arg_opts(name, default, taken_names)
        short = SHORT.get(opts["names"][0])
        if short and short not in taken_names:
            opts["names"].append(short)
        return opts


def task(*args: Any, **kwargs: Any) -> Any:
    kwargs.setdefault("klass", Task)
    return invoke.task(*args, **kwargs)


def usage_lines(binary: str, context: Any) -> list[str]:
    """`Usage: invoke backup [--options]` and each flag with its help, for a parse error."""
    lines = [f"Usage: {binary} {context.name} [--options]"]
    for flags, help_text in context.help_tuples():
        lines.append(f"  {flags}  {help_text}".rstrip())
    lines.append(f"({binary} --help {context.name} shows the same)")
    return lines


def parse_tasks_or_exit_2(self: Program) -> None:
    """Program.parse_tasks, but a bad flag or value is a usage error: Invoke's one-line message,
    the task's usage, exit 2 (Invoke itself exits 1)."""
    try:
        _original_parse_tasks(self)
    except ParseError as exc:
        ctx = getattr(exc, "context", None)
        lines = [f"error: {exc}"]
        if ctx is not None and getattr(ctx, "name", None):
            lines += usage_lines(self.called_as or "invoke", ctx)
        else:
            lines.append(f"run `{self.called_as or 'invoke'} --list` to see the tasks")
        raise Exit("\n".join(lines), code=USAGE_EXIT) from None


_original_parse_tasks = Program.parse_tasks


def install_usage_exit() -> None:
    """Make the running `invoke` program (loaded our collection) exit 2 on a bad flag. Invoke
    parses task flags only after loading the collection, so this takes effect for this run."""
    if Program.parse_tasks is not parse_tasks_or_exit_2:
        Program.parse_tasks = parse_tasks_or_exit_2  # type: ignore[method-assign]
