"""What an undo point cannot hold by itself: server-wide things the restore it preceded creates.

An undo point is an ordinary backup of the target taken just before a restore. Restoring it puts
the target's schemas, rows and pg_cron jobs of the same names back; it cannot know, from its own
contents, which roles, extensions and pg_cron jobs the later restore *added*. So, before that
restore runs, its frozen plan's additions are written beside the undo point as `aftermath.json`,
signed like a manifest (HMAC with the same key, `aftermath.hmac`). Restoring the undo point reads
it back and removes them again, in the same transaction, each only if nothing uses it any more
(DROP without CASCADE, inside its own exception block: a role that owns or is granted something,
an extension something depends on, stays, and the restore says so).

Nothing here is acted on unless it is authenticated: dropping roles is not something a file in a
backup folder may ask for.
"""

from __future__ import annotations

import hmac
import json
import os
from dataclasses import dataclass
from pathlib import Path

from . import manifest as manifest_mod
from .sqltext import do_block, ident, literal

FILE = "aftermath.json"
MAC = "aftermath.hmac"


@dataclass(frozen=True)
class Aftermath:
    restore: str  # the backup id whose restore this undo point preceded
    roles: tuple[str, ...] = ()
    extensions: tuple[str, ...] = ()
    cron_jobs: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.roles or self.extensions or self.cron_jobs)


def write(folder: Path, after: Aftermath, key: manifest_mod.SigningKey) -> None:
    """Written (atomically) before the restore starts: a kill right after its COMMIT must not lose
    it. If that restore rolls back, its undo point (and this file) are deleted with it."""
    data = (
        json.dumps(
            {
                "format": 1,
                "restore": after.restore,
                "roles": list(after.roles),
                "extensions": list(after.extensions),
                "cron_jobs": list(after.cron_jobs),
            },
            indent=2,
        )
        + "\n"
    ).encode()
    mac = (json.dumps({"alg": "hmac-sha256", "key_id": key.key_id, "mac": key.mac(_signed(folder, data))}) + "\n").encode()
    for name, body in ((FILE, data), (MAC, mac)):
        tmp = folder / f".{name}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(body)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, folder / name)


def read(folder: Path, key: manifest_mod.SigningKey | None) -> tuple[Aftermath | None, str]:
    """(aftermath, "") when present and authentic; (None, why) when present but not usable;
    (None, "") when there is none."""
    try:
        data = (folder / FILE).read_bytes()
    except FileNotFoundError:
        return None, ""
    except OSError as exc:
        return None, f"its {FILE} is unreadable ({exc.strerror})"
    try:
        sig = json.loads((folder / MAC).read_text())
        mac = str(sig["mac"]) if isinstance(sig, dict) else ""
    except (OSError, ValueError, KeyError):
        mac = ""
    if key is None or not mac or not hmac.compare_digest(mac, key.mac(_signed(folder, data))):
        return None, f"its {FILE} is not signed with this machine's key, so it is ignored"
    try:
        raw = json.loads(data)
        after = Aftermath(
            restore=str(raw["restore"]),
            roles=_names(raw.get("roles")),
            extensions=_names(raw.get("extensions")),
            cron_jobs=_names(raw.get("cron_jobs")),
        )
    except (ValueError, KeyError, TypeError):
        return None, f"its {FILE} is damaged, so it is ignored"
    return after, ""


def _signed(folder: Path, data: bytes) -> bytes:
    """What the MAC covers: the undo point's id too, so a signed aftermath copied into another
    undo point's folder does not verify there."""
    return b"aftermath\0" + os.fsencode(folder.name) + b"\0" + data


def _names(value) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) and v and "\0" not in v for v in value):
        raise ValueError
    return tuple(value)


def undo_sql(roles: tuple[str, ...], extensions: tuple[str, ...], cron_jobs: tuple[str, ...]) -> str:
    """Statements, run inside the restore's transaction after its load, that remove what the
    undone restore added; each in its own block, so one that is still in use is kept (with a
    NOTICE) instead of failing the undo."""
    out: list[str] = []
    for job in cron_jobs:
        out.append(
            do_block(
                "BEGIN\n"
                "IF pg_catalog.to_regclass('cron.job') IS NOT NULL THEN\n"
                "  PERFORM cron.unschedule(j.jobid) FROM cron.job j\n"
                f"  WHERE j.jobname = {literal(job)} AND j.username = CURRENT_USER AND j.database = pg_catalog.current_database();\n"
                "END IF;\nEND"
            )
        )
    for ext in extensions:
        out.append(_guarded(f"DROP EXTENSION IF EXISTS {ident(ext)}"))
    for role in roles:
        out.append(_guarded(f"DROP ROLE IF EXISTS {ident(role)}"))
    return "\n".join(out) + ("\n" if out else "")


def _guarded(statement: str) -> str:
    return do_block(
        "BEGIN\n"
        f"EXECUTE {literal(statement)};\n"
        "EXCEPTION WHEN dependent_objects_still_exist OR insufficient_privilege OR object_in_use THEN\n"
        "  RAISE NOTICE '%', SQLERRM;\n"
        "END"
    )
