"""BACKUP_NOTIFY_URL: one JSON event per failed backup, verification or pre-deploy run.

A plain HTTP POST of a small JSON object, which chat webhooks accept as it is: Slack and
Mattermost read "text", Discord reads "content"; anything else (a monitoring endpoint, a
serverless function) gets the structured fields. The standard library's urllib is enough for
one POST; a notification library would add a dependency for nothing.

The URL itself is a secret (a webhook URL carries its token): it is never printed, logged or put
in an error. A notification that cannot be delivered never hides the failure it reports.
"""

from __future__ import annotations

import datetime as dt
import json
import socket
import urllib.error
import urllib.request
from typing import Any

TIMEOUT = 10.0


def event(kind: str, message: str, *, exit_code: int, backup_id: str | None = None, **extra: Any) -> dict[str, Any]:
    """`kind`: backup.failed | verify.failed | predeploy.failed (and .ok where asked for)."""
    text = f"fortress-backup on {socket.gethostname()}: {kind}: {message}"
    body: dict[str, Any] = {
        "text": text,
        "content": text[:2000],
        "event": kind,
        "message": message,
        "exit_code": exit_code,
        "host": socket.gethostname(),
        "time": dt.datetime.now(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
    }
    if backup_id:
        body["backup_id"] = backup_id
    body.update({k: v for k, v in extra.items() if v is not None})
    return body


def post(url: str, body: dict[str, Any]) -> str | None:
    """POST `body` as JSON to `url`. None when delivered (2xx), else one line saying why not,
    without the URL."""
    if not url.startswith(("https://", "http://")):
        return "BACKUP_NOTIFY_URL is not an http(s) URL; no notification was sent"
    try:
        req = urllib.request.Request(
            url, data=json.dumps(body).encode(), method="POST", headers={"Content-Type": "application/json", "User-Agent": "fortress-backup"}
        )
        with urllib.request.urlopen(req, timeout=TIMEOUT) as resp:  # noqa: S310 (http(s) only, checked above)
            resp.read(1 << 16)
        return None
    except urllib.error.HTTPError as exc:
        return f"the notification to BACKUP_NOTIFY_URL was refused (HTTP {exc.code})"
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        return f"the notification to BACKUP_NOTIFY_URL could not be delivered ({type(reason).__name__})"
    except Exception as exc:  # a malformed URL (InvalidURL, a ValueError): its text would show the token
        return f"BACKUP_NOTIFY_URL is not a valid URL ({type(exc).__name__}); no notification was sent"
