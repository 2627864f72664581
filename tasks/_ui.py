"""What the task modules share: settings from flags, printing, the guard prompt, and turning
engine errors into `invoke.Exit` with one line and a documented exit code."""

from __future__ import annotations

import functools
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
from invoke import Exit
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from .engine.errors import BackupError, Declined, ExitCode
from .engine.pgtools import ToolError
from .engine.settings import Settings, load_settings, read_dotenv

# Piped output (CI logs, grep) gets wide lines instead of tables wrapped at 80 columns.
out = Console(highlight=False, width=None if sys.stdout.isatty() else 200)
err = Console(stderr=True, highlight=False, width=None if sys.stderr.isatty() else 200)


def settings_from(**flags: Any) -> Settings:
    """Settings of the app repository the working directory is in (see engine/project.py):
    `.env` and a relative BACKUP_DIR from the environment or `.env` are taken at its root; a
    relative --backup-dir flag is where the person typed it."""
    import dataclasses

    from .engine.project import find_root

    cwd = Path.cwd()
    root = find_root(cwd)
    settings = load_settings(flags, os.environ, read_dotenv(root), cwd=root)
    folder = settings.backup_dir
    if root != cwd and not folder.is_absolute() and not settings.sources.get("backup_dir", "").startswith("flag"):
        settings = dataclasses.replace(settings, backup_dir=root / folder)
    return dataclasses.replace(settings, project_root=root)


def step(message: str) -> None:
    err.print(f"[dim]•[/dim] {escape(message)}")


def warn(message: str) -> None:
    """A warning line; names in it are data, never markup."""
    err.print(f"[yellow]warning:[/yellow] {escape(message)}")


class Activity:
    """Steps as lines, plus, in a terminal, a live line with elapsed time and the megabytes of
    SQL streamed so far, so a long restore visibly moves. Piped output gets the lines only."""

    def __init__(self, label: str):
        self.label = label
        self.sent = 0
        self.current = ""
        self.started = 0.0
        self.status: Any = None

    def __enter__(self) -> Activity:
        import time

        self.started = time.monotonic()
        if err.is_terminal:
            self.status = err.status(self.label)
            self.status.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        if self.status is not None:
            self.status.__exit__(*exc)

    @property
    def elapsed(self) -> float:
        import time

        return time.monotonic() - self.started

    def step(self, message: str) -> None:
        step(message)
        self.current = message
        self._refresh()

    def progress(self, sent: int) -> None:
        self.sent = sent
        if self.status is not None and self.elapsed - getattr(self, "_shown_at", 0.0) >= 0.2:
            self._shown_at = self.elapsed
            self._refresh()

    def _refresh(self) -> None:
        if self.status is not None:
            mb = f", {self.sent / 2**20:.0f} MB of SQL sent" if self.sent else ""
            self.status.update(f"{self.label}: {self.current} ({self.elapsed:.0f} s{mb})")


def table(title: str | None, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> Table:
    t = Table(title=title, title_justify="left", show_lines=False)
    for c in columns:
        # fold, never cut: without a terminal (CI logs, pipes) rich renders 80 columns wide and
        # would otherwise end long ids, URLs and paths with "…"
        t.add_column(c, overflow="fold")
    for r in rows:
        t.add_row(*[str(x) for x in r])
    return t


def show_plan(rows: Sequence[tuple[str, str]], title: str) -> None:
    t = Table(title=title, title_justify="left", show_header=False, box=None, padding=(0, 2))
    t.add_column(style="bold")
    t.add_column()
    for k, v in rows:
        t.add_row(escape(k), escape(v))
    err.print(t)


def confirm_by_name(dbname: str, action: str, *, yes: bool, input=None, output=None) -> None:
    """Ask the person to type the target database's name; the default answer is no.

    `input`/`output` are prompt_toolkit objects, given only by tests that drive the real prompt.
    """
    if yes:
        return
    if input is None and not sys.stdin.isatty():
        raise Declined(f"Refusing to {action} without confirmation: no terminal to ask on", "pass --yes to confirm in scripts and CI")
    import questionary  # prompt_toolkit is slow to import; only prompts need it

    kwargs: dict[str, Any] = {}
    if input is not None:
        kwargs.update(input=input, output=output)
    answer = questionary.text(
        f"This will {action}. Type the database name '{dbname}' to continue (Enter cancels):",
        default="",
        **kwargs,
    ).ask()
    if answer is None or answer.strip() != dbname:
        raise Declined("Not confirmed; nothing was changed", None)


class Stopped(KeyboardInterrupt):
    """SIGTERM or SIGHUP, raised where Ctrl-C's KeyboardInterrupt would be, so the same
    clean-up runs: child tools stopped, psql's transaction rolled back, staging removed."""


# handled like Ctrl-C; the exit code is 128 + the signal's number, as a shell reports it
STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


@contextmanager
def _stop_signals_interrupt() -> Iterator[list[int]]:
    """While a task runs, SIGTERM and SIGHUP raise `Stopped` in the main thread; the list
    yielded holds the signal that arrived (the engine turns KeyboardInterrupt into its own
    Interrupted error, so the code is decided here, from what was received)."""
    received: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield received
        return

    def handler(signum: int, frame: Any) -> None:
        if not received:
            received.append(signum)
            raise Stopped()

    previous = {sig: signal.signal(sig, handler) for sig in STOP_SIGNALS}
    try:
        yield received
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def guarded(fn: Callable) -> Callable:
    """Engine errors -> one line on stderr + documented exit code; Ctrl-C -> 130, SIGTERM ->
    143, SIGHUP -> 129 (each handled as Ctrl-C is)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with _stop_signals_interrupt() as received:
            try:
                return _run(fn, args, kwargs)
            except Exit as exc:
                if received and exc.code == ExitCode.INTERRUPTED:
                    name = signal.Signals(received[0]).name
                    raise Exit(str(exc.message).replace("interrupted", f"interrupted by {name}", 1), code=128 + received[0]) from None
                raise

    return wrapper


def _run(fn: Callable, args: Any, kwargs: Any) -> Any:
    try:
        return fn(*args, **kwargs)
    except BackupError as exc:
        raise Exit(f"error: {exc}", code=exc.exit_code) from None
    except OSError as exc:
        where = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
        raise Exit(
            f"error: {exc.strerror or exc.__class__.__name__}{where}. Check the path, its permissions and the free disk space; nothing was kept.",
            code=ExitCode.FAILED,
        ) from None
    except (ToolError, psycopg.Error) as exc:
        text = " ".join(str(exc).split())
        raise Exit(f"error: {text}. Nothing was changed; fix the cause and run this again.", code=ExitCode.FAILED) from None
    except KeyboardInterrupt:
        raise Exit("error: interrupted; nothing was changed", code=ExitCode.INTERRUPTED) from None


def human_size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if size < 1024 or unit == "TB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"
