"""The one line an app's own tasks.py needs to get the backup tasks (`invoke backup`, ...):

    from fortress_backup.include import *  # noqa: F403

Invoke collects every task at a tasks.py's top level, so the app's own tasks and these sit side
by side. (An app that builds its own `ns = Collection(...)` adds them with
`ns.add_collection(fortress_backup.ns, name="db")` instead: `invoke db.backup`.)
"""

from . import backup, config, demo, diff, list_, predeploy, prune, reset, restore, schema, verify

__all__ = ["backup", "config", "demo", "diff", "list_", "predeploy", "prune", "reset", "restore", "schema", "verify"]
