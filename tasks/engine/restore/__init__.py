"""Restore and reset, each step in a small module:

  plan        facts about the backup and the target -> a frozen RestorePlan (what the person sees)
  execute     runs exactly that plan in one psql session, one transaction
  session     the psql process: \\restrict, ON_ERROR_STOP, Ctrl-C, what its exit means
  archive     pg_restore as the writer of the archive entries the plan chose (by TOC)
  statements  the SQL the restore writes itself (through sqltext)
  reset       `invoke reset`
"""

from .execute import RestoreResult, execute_restore
from .plan import RestorePlan, plan_restore
from .reset import ResetPlan, execute_reset, plan_reset

__all__ = ["RestorePlan", "RestoreResult", "ResetPlan", "plan_restore", "execute_restore", "plan_reset",
           "execute_reset"]
