"""Fortress Modeler database backup & restore, as Invoke tasks.

Invoke loads this package (the `tasks/` folder) as its collection; it is the only place the
tasks are assembled. The task modules are thin: flags -> settings -> confirm -> one engine call.
The engine (`tasks/engine/`) holds plain functions that never prompt or print.
"""

from invoke import Collection

from .backup import backup
from .demo import demo
from .listing import config, list_
from .predeploy import predeploy
from .prune import prune
from .restore import reset, restore
from .schema import diff, schema
from .verify import verify

ns = Collection(backup, restore, reset, list_, config, demo, verify, predeploy, prune, diff, schema)
