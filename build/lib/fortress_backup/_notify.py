"""BACKUP_NOTIFY_URL for the tasks that run unattended (backup, verify, predeploy): a failure
still ends with its one error line and exit code, and is also posted as a JSON event."""

from __future__ import annotations

import functools
from collections.abc import Callable

from invoke import Exit

from . import _ui
from .engine import notify
from .engine.errors import BackupError


def on_failure(kind: str) -> Callable[[Callable], Callable]:
    def wrap(fn: Callable) -> Callable:
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            try:
                return fn(*args, **kwargs)
            except Exit as exc:
                if exc.code:
                    send(f"{kind}.failed", str(exc.message or "").removeprefix("error: "), exit_code=int(exc.code))
                raise

        return wrapper

    return wrap


def send(kind: str, message: str, *, exit_code: int, backup_id: str | None = None, **extra) -> None:
    try:
        url = _ui.settings_from().notify_url
    except BackupError:
        return  # the configuration error is the failure being reported
    if not url:
        return
    problem = notify.post(url, notify.event(kind, message, exit_code=exit_code, backup_id=backup_id, **extra))
    if problem:
        _ui.warn(problem)
