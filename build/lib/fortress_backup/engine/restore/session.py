"""One psql session, fed on stdin, running one transaction; and what its exit means.

psql runs with ON_ERROR_STOP, so any failing statement ends the session and the server rolls
the open transaction back. It runs under `\\restrict KEY` from its first line: no meta-command
(`\\!`, `\\copy`, `\\connect`, ...) is obeyed, whatever a name or an archive holds. Only this
process knows KEY; pg_restore scripts are written with the same key and lift the restriction
only around themselves, where their own `\\restrict KEY` holds.
"""

from __future__ import annotations

import re
import subprocess
import tempfile
from collections.abc import Callable, Iterable
from typing import IO

from .. import pgtools, sqltext
from ..conn import Target
from ..errors import Interrupted, RestoreFailed

Progress = Callable[[int], None]


class Session:
    def __init__(
        self, suite: pgtools.PgSuite, target: Target, errf: IO[bytes], progress: Progress | None = None, application_name: str | None = None
    ):
        """`application_name`: psql's server session is found by it (pg_stat_activity)."""
        self.key = sqltext.restrict_key()
        self.sent = 0
        self.progress = progress
        self.commit_sent = False
        self.lock_timeout: str | None = None  # pg_restore scripts' `SET lock_timeout` (execute.py)
        argv = pgtools.psql_argv(suite, target.conninfo())
        env = target.tool_env()
        if application_name:
            env["PGAPPNAME"] = application_name
        self.proc = pgtools.popen(argv, env=env, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=errf)
        self._write(f"\\restrict {self.key}\n".encode())

    def _write(self, data: bytes) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(data)
        self.sent += len(data)
        if self.progress:
            self.progress(self.sent)

    def sql(self, text: str) -> None:
        """SQL the tool wrote (through sqltext)."""
        if text:
            self._write(text.encode() + (b"" if text.endswith("\n") else b"\n"))

    def script(self, chunks: Iterable[bytes]) -> None:
        """A pg_restore script written with this session's key: it restricts psql itself."""
        self._write(f"\\unrestrict {self.key}\n".encode())
        for chunk in chunks:
            self._write(chunk)
        self._write(f"\\restrict {self.key}\n".encode())

    def commit(self) -> None:
        self._write(b"COMMIT;\n")
        self.commit_sent = True
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait()


def run(session_factory: Callable[[IO[bytes]], Session], body: Callable[[Session], None], dbname: str) -> Session:
    """Run `body` in a session and commit; any error, a broken pipe or Ctrl-C rolls back.

    COMMIT may already sit in psql's input when Ctrl-C arrives (the script is small, or psql is
    blocked): only psql's own exit status says whether it ran. psql exits 0 only when every
    statement, COMMIT included, succeeded; a cancelled statement makes it exit 3."""
    with tempfile.TemporaryFile() as errf:
        session = session_factory(errf)
        proc = session.proc
        try:
            body(session)
            session.commit()
        except BrokenPipeError:
            proc.wait()  # psql stopped on an error; its message is in errf
        except KeyboardInterrupt:
            clean = pgtools.stop(proc)
            if clean and proc.returncode == 0 and session.commit_sent:
                return session  # it had committed: complete
            if session.commit_sent and not clean:
                raise Interrupted(
                    "Restore interrupted while psql did not answer; the target holds either its old or the fully restored contents, never a mix",
                    "check the target before going on",
                    target_unchanged=False,
                ) from None
            raise Interrupted("Restore interrupted; the target is unchanged (the transaction was rolled back)") from None
        except BaseException:
            pgtools.stop(proc)
            raise
        finally:
            if proc.poll() is None and not session.commit_sent:
                pgtools.stop(proc)
        if proc.returncode != 0 or not session.commit_sent:
            errf.seek(0)
            raise RestoreFailed(
                f"Restore failed and was rolled back, {dbname} is unchanged: {psql_error(errf.read())}",
                "fix what this message names and run the restore again",
            )
    return session


def psql_error(stderr: bytes) -> str:
    text = stderr.decode("utf-8", "replace")
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    errors = [ln for ln in lines if "ERROR:" in ln or "FATAL:" in ln or "restricted" in ln]
    picked = errors[:1] or lines[-2:]
    msg = " ".join(picked)
    return re.sub(r"^psql:<stdin>:\d+: ", "", msg) or "psql exited early"
