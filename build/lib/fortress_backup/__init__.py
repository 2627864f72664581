"""Fortress Modeler database backup & restore, as Invoke tasks.

Invoke loads this package (the `tasks/` folder) as its collection; it is the only place the
tasks are assembled. The task modules are thin: flags -> settings -> confirm -> one engine call.
The engine (`tasks/engine/`) holds plain functions that never prompt or print.
"""

from invoke import Collection

from ._flags import install_usage_exit
from .backup import backup
from .demo import demo
from .listing import config, list_
from .predeploy import predeploy
from .prune import prune
from .restore import reset, restore
from .schema import diff, schema
from .verify import verify

ns = Collection(backup, restore, reset, list_, config, demo, verify, predeploy, prune, diff, schema)

# a mistyped flag exits 2 with the task's usage, also under the plain `invoke` program
install_usage_exit()

__all__ = ["backup", "config", "demo", "diff", "list_", "ns", "predeploy", "prune", "reset", "restore", "schema", "verify"]
