"""What the task modules share: settings from flags, printing, the guard prompt, and turning
engine errors into `invoke.Exit` with one line and a documented exit code."""

from __future__ import annotations

import functools
import os
import re
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

# Piped output (CI logs, grep) gets whole lines instead of tables wrapped at 80 columns, and no
# padding (see `emit`) nor escape codes (rich adds none without a terminal).
PIPED_WIDTH = 4096
out = Console(highlight=False, width=None if sys.stdout.isatty() else PIPED_WIDTH)
err = Console(stderr=True, highlight=False, width=None if sys.stderr.isatty() else PIPED_WIDTH)

# ANSI/OSC escape sequences, then any other control character (C0, DEL, C1)
_ESCAPE_SEQ_RE = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)?|[@-Z\\-_])")
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def plain(value: object) -> str:
    """A value from a database or a backup (a label, a name, a URL), made safe to show: escape
    sequences removed, other control characters (newlines included) shown as one space."""
    text = _ESCAPE_SEQ_RE.sub("", str(value))
    return _CONTROL_RE.sub(" ", text)


def clean(value: object) -> str:
    """`plain`, and escaped for rich: `[red]x` and `[/]` print as themselves."""
    return escape(plain(value))


def emit(console: Console, renderable: Any) -> None:
    """Print a table: in a terminal as rich draws it; piped, the same lines without the
    trailing padding rich adds to every cell."""
    if Output.json:
        rows = getattr(renderable, "raw_rows", None)
        columns = getattr(renderable, "raw_columns", None)
        title = renderable.title if isinstance(renderable, Table) else None
        Output.event("table", title=str(title or ""), columns=columns, rows=[[plain(x) for x in r] for r in rows or []])
        return
    if console.is_terminal:
        console.print(renderable)
        return
    with console.capture() as captured:
        console.print(renderable)
    text = "\n".join(line.rstrip() for line in captured.get().splitlines())
    console.file.write(text + "\n")
    console.file.flush()


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
    if Output.json:
        Output.event("step", message=message)
        return
    err.print(f"[dim]•[/dim] {clean(message)}")


def warn(message: str) -> None:
    """A warning line; names in it are data, never markup."""
    if Output.json:
        Output.event("warning", message=message)
        return
    err.print(f"[yellow]warning:[/yellow] {clean(message)}")


def say(message: str) -> None:
    """A result line on stdout; the values in it are data, never markup."""
    if Output.json:
        Output.event("result", message=message)
        return
    out.print(clean(message))


def note(message: str) -> None:
    if Output.json:
        Output.event("note", message=message)
        return
    err.print(f"[yellow]note:[/yellow] {clean(message)}")


class Output:
    """How this run reports: lines for people (default), or JSON events on stdout, one object a
    line (`--json` or BACKUP_OUTPUT=json), for CI."""

    json = False

    @staticmethod
    def event(name: str, /, **fields: Any) -> None:
        import json as _json

        record = {"event": name, **{k: (plain(v) if isinstance(v, str) else v) for k, v in fields.items()}}
        sys.stdout.write(_json.dumps(record, default=str) + "\n")
        sys.stdout.flush()


def json_mode(flag: Any = False) -> bool:
    return bool(flag) or os.environ.get("BACKUP_OUTPUT", "").strip().lower() == "json"


class Activity:
    """A long step as people follow it: each phase as a line; in a terminal a live line whose
    clock ticks every second (also while the server is silent, building indexes) with what the
    server reports (rows copied of the total, rate, time left, index builds) and the megabytes
    of SQL sent; without a terminal, the same as a plain line every PLAIN_EVERY seconds; with
    --json, those as `progress` events."""

    PLAIN_EVERY = 10.0

    def __init__(self, label: str, watch: Any = None):
        self.label = label
        self.sent = 0
        self.current = ""
        self.started = 0.0
        self.status: Any = None
        self.watch = watch  # engine.watch.ServerWatch, or None
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None

    def __enter__(self) -> Activity:
        import time

        self.started = time.monotonic()
        if self.watch is not None:
            self.watch.__enter__()
        if err.is_terminal and not Output.json:
            self.status = err.status(clean(self.label))
            self.status.__enter__()
        self._ticker = threading.Thread(target=self._tick, name="progress-clock", daemon=True)
        self._ticker.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join(timeout=2)
        if self.watch is not None:
            self.watch.__exit__(*exc)
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

    def line(self) -> str:
        """`restoring: loading data (42 s, 1,200 of ~5,000 rows (24%), ...; 310 MB of SQL sent)`"""
        extra = [f"{self.elapsed:.0f} s"]
        detail = self.watch.describe() if self.watch is not None else ""
        if detail:
            extra.append(detail)
        if self.sent:
            extra.append(f"{self.sent / 2**20:.0f} MB of SQL sent")
        return f"{self.label}: {self.current} ({', '.join(extra)})"

    def _tick(self) -> None:
        last_plain = 0.0
        while not self._stop.wait(1.0):
            if self.status is not None:
                self._refresh()
            elif self.elapsed - last_plain >= self.PLAIN_EVERY:
                last_plain = self.elapsed
                if Output.json:
                    snap = self.watch.snapshot() if self.watch is not None else None
                    Output.event(
                        "progress",
                        phase=self.current,
                        elapsed=round(self.elapsed, 1),
                        rows_done=snap.rows_done if snap else None,
                        rows_total=snap.rows_total if snap else None,
                        rows_per_second=round(snap.rate) if snap and snap.rate else None,
                        detail=self.line(),
                    )
                else:
                    err.print(f"[dim]…[/dim] {clean(self.line())}")

    def _refresh(self) -> None:
        if self.status is not None:
            self.status.update(clean(self.line()))


def table(title: str | None, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> Table:
    t = Table(title=clean(title) if title else None, title_justify="left", show_lines=False)
    for c in columns:
        # fold, never cut: without a terminal (CI logs, pipes) rich renders 80 columns wide and
        # would otherwise end long ids, URLs and paths with "…"
        t.add_column(c, overflow="fold")
    for r in rows:
        t.add_row(*[clean(x) for x in r])
    t.raw_columns = list(columns)  # type: ignore[attr-defined]  # for --json
    t.raw_rows = [list(r) for r in rows]  # type: ignore[attr-defined]
    return t


def show_plan(rows: Sequence[tuple[str, str]], title: str) -> None:
    t = Table(title=clean(title), title_justify="left", show_header=False, box=None, padding=(0, 2))
    t.add_column(style="bold", no_wrap=True)
    # wrapped at spaces, a long URL folded: never cut short, whatever the width
    t.add_column(overflow="fold")
    for k, v in rows:
        t.add_row(clean(k), clean(v))
    t.raw_columns = ["item", "value"]  # type: ignore[attr-defined]  # for --json
    t.raw_rows = [list(r) for r in rows]  # type: ignore[attr-defined]
    emit(err, t)


def confirm_by_name(dbname: str, action: str, *, yes: bool, input=None, output=None, what: str = "the database name") -> None:
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
    # rich wraps the sentence at spaces (a prompt line would break inside words); names shown
    # whole and safe, the short prompt stays on one line
    err.print(f"This will {clean(action)}.")
    err.print(f"Type {clean(what)} '{clean(dbname)}' to continue (Enter cancels):")
    answer = questionary.text(f"{what.removeprefix('the ')}:", default="", **kwargs).ask()
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
        if _in_fork_callback(frame):
            # Raised here, the exception would be printed and dropped ("Exception ignored in
            # _releaseLock") and the task would go on as if nothing had been pressed: deliver
            # the signal again a moment later, once subprocess is back in ordinary code.
            threading.Timer(0.05, os.kill, (os.getpid(), signum)).start()
            return
        if signum == signal.SIGINT:
            raise KeyboardInterrupt
        if not received:
            received.append(signum)
            raise Stopped()

    previous = {sig: signal.signal(sig, handler) for sig in (*STOP_SIGNALS, signal.SIGINT)}
    try:
        yield received
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _in_fork_callback(frame: Any) -> bool:
    """Whether `frame` is a callback that subprocess's fork runs from C (logging's at-fork lock
    handlers, run in this process right after every fork): an exception raised there is printed
    and ignored, so a Ctrl-C arriving at that moment would be lost."""
    return (
        frame is not None
        and frame.f_code.co_name != "_execute_child"
        and frame.f_back is not None
        and frame.f_back.f_code.co_name == "_execute_child"
    )


def guarded(fn: Callable) -> Callable:
    """Engine errors -> one line on stderr + documented exit code; Ctrl-C -> 130, SIGTERM ->
    143, SIGHUP -> 129 (each handled as Ctrl-C is)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        Output.json = json_mode(kwargs.get("json"))
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
        return _run_plain(fn, args, kwargs)
    except Exit as exc:
        if Output.json:
            Output.event("error", message=str(exc.message or ""), exit_code=exc.code)
        raise


def _run_plain(fn: Callable, args: Any, kwargs: Any) -> Any:
    try:
        return fn(*args, **kwargs)
    except BackupError as exc:
        raise Exit(f"error: {plain(exc)}", code=exc.exit_code) from None
    except OSError as exc:
        where = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
        raise Exit(
            f"error: {plain(exc.strerror or exc.__class__.__name__)}{plain(where)}. "
            "Check the path, its permissions and the free disk space; nothing was kept.",
            code=ExitCode.FAILED,
        ) from None
    except (ToolError, psycopg.Error) as exc:
        text = " ".join(plain(exc).split())
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
