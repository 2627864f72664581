"""One error type for everything a user can get wrong or the world can break.

Every error carries an exit code (documented in the README) and a hint that says what to do next.
Messages never contain secrets: callers pass redacted URLs only.
"""

from __future__ import annotations


class ExitCode:
    OK = 0
    FAILED = 1  # unexpected failure of a tool or the database
    USAGE = 2  # bad flag, malformed date, missing configuration
    NOT_FOUND = 3  # no such backup
    CONNECTION = 4  # cannot reach or log in to the database
    INTEGRITY = 5  # checksum mismatch, incomplete or unreadable backup
    RESTORE_FAILED = 6  # restore rolled back: target unchanged
    DECLINED = 7  # confirmation declined or impossible (no terminal, no --yes)
    TOOLS = 8  # no suitable pg_dump / psql / pg_restore
    BUSY = 9  # another backup or restore holds the lock
    STORAGE = 10  # the object store (BACKUP_STORE) cannot be reached or refused a request
    INTERRUPTED = 130  # Ctrl-C


class BackupError(Exception):
    """Base error: `message` says what happened, `hint` what to do next."""

    exit_code = ExitCode.FAILED

    def __init__(self, message: str, hint: str | None = None, *, target_unchanged: bool = True):
        super().__init__(message)
        self.message = message.rstrip(". ")
        self.hint = hint
        # False only where a restore may have changed its target after all (a COMMIT from the
        # backup, or psql not answering after COMMIT was sent): its undo point must stay
        self.target_unchanged = target_unchanged

    def __str__(self) -> str:
        line = self.message + "."
        if self.hint:
            hint = self.hint.rstrip(".")
            line += " " + hint[:1].upper() + hint[1:] + "."
        # One line, always: stray newlines from tool output would break that contract.
        return " ".join(line.split())


class UsageError(BackupError):
    exit_code = ExitCode.USAGE


class ConfigError(BackupError):
    exit_code = ExitCode.USAGE


class NotFound(BackupError):
    exit_code = ExitCode.NOT_FOUND


class ConnectionFailed(BackupError):
    exit_code = ExitCode.CONNECTION


class IntegrityError(BackupError):
    exit_code = ExitCode.INTEGRITY


class RestoreFailed(BackupError):
    exit_code = ExitCode.RESTORE_FAILED


class Declined(BackupError):
    exit_code = ExitCode.DECLINED


class ToolsMissing(BackupError):
    exit_code = ExitCode.TOOLS


class Busy(BackupError):
    exit_code = ExitCode.BUSY


class Interrupted(BackupError):
    exit_code = ExitCode.INTERRUPTED


class StorageError(BackupError):
    """The object store could not be reached or refused a request."""

    exit_code = ExitCode.STORAGE
