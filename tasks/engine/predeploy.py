"""`invoke predeploy`: the CI hook. Back up (labelled `pre-deploy`, with the git commit and the CI
run in the signed manifest, content hashes always on), verify that backup (a restore drill by
default), and say in one line which backup it is and the exact command that restores it.

Unattended by design: it never prompts. Two at once (two deploys racing) are safe: the backup
folder's lock lets one backup run at a time; the other waits for it (up to its time budget), then
makes its own backup. Each verifies only its own backup.

Time budget (`--budget`, PREDEPLOY_BUDGET, default 15min): after the backup, the drill's time is
estimated (the last drill of a backup of the same database, else three times this backup's time
plus 10 s). When it would not fit in what is left of the budget, the backup is verified at
`archive` level instead, and the result says that the drill was skipped and why.

With an object store (BACKUP_STORE) the backup goes there (nothing kept locally) and the
verification reads it back from the store, so what is proven is what the store holds. With
encryption (BACKUP_AGE_RECIPIENTS), reading it back needs BACKUP_AGE_IDENTITY for one of the
recipients; without it only `--level quick` (the stored bytes' checksums) can run, and predeploy
refuses before backing up rather than make a backup it cannot verify.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from . import catalog, crypt, verify
from . import manifest as manifest_mod
from .conn import Target
from .dump import create_backup
from .errors import Busy, ConfigError
from .settings import DEFAULT_BACKUP_DIR
from .storage import LocalStore, Store

Step = Callable[[str], None]
DEFAULT_BUDGET = "15min"


@dataclass
class PredeployResult:
    backup_id: str
    label: str
    context: dict
    verification: verify.VerifyResult
    drill_skipped: str  # why the drill was not run ("" when it ran or was not asked for)
    restore_command: str
    seconds: float

    @property
    def ok(self) -> bool:
        return self.verification.ok


def git_commit(cwd: Path, environ: Mapping[str, str]) -> str | None:
    sha = environ.get("GITHUB_SHA") or environ.get("CI_COMMIT_SHA")
    if sha:
        return sha
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 and out.stdout.strip() else None


def ci_context(cwd: Path, environ: Mapping[str, str]) -> dict:
    """What deploy this backup was taken for: commit, and the CI run (GitHub Actions, GitLab)."""
    ctx: dict = {"purpose": "pre-deploy"}
    commit = git_commit(cwd, environ)
    if commit:
        ctx["git_commit"] = commit
    run_id = environ.get("GITHUB_RUN_ID")
    if run_id:
        server = environ.get("GITHUB_SERVER_URL", "https://github.com")
        repo = environ.get("GITHUB_REPOSITORY", "")
        ctx["ci_run"] = {"system": "github", "id": run_id, "attempt": environ.get("GITHUB_RUN_ATTEMPT", "")}
        if repo:
            ctx["ci_run"]["url"] = f"{server}/{repo}/actions/runs/{run_id}"
    elif environ.get("CI_PIPELINE_ID"):
        ctx["ci_run"] = {"system": "gitlab", "id": environ["CI_PIPELINE_ID"], "url": environ.get("CI_PIPELINE_URL", "")}
    return ctx


def restore_command(backup_id: str, store: LocalStore | Path | Store) -> str:
    """The command that restores this backup: `--backup-dir` for a folder other than the default;
    for a backup in object storage, the store it is in (restore looks there when a backup is not
    local). A store URL carries no credentials (settings refuse one that does)."""
    argv = ["invoke", "restore", "--id", backup_id]
    if isinstance(store, Path | LocalStore):
        backup_dir = store if isinstance(store, Path) else store.root
        if str(backup_dir) != DEFAULT_BACKUP_DIR:
            argv += ["--backup-dir", str(backup_dir)]
        return shlex.join(argv)
    return f"BACKUP_STORE={shlex.quote(store.describe())} " + shlex.join(argv)


def check_keys(store: Store, level: str) -> None:
    """Before the backup: one that will be encrypted is verified above `quick` only by reading it,
    which needs a key it is encrypted for."""
    recipients = list(getattr(store, "recipients", None) or [])
    if not recipients or level == "quick":
        return
    identity = getattr(store, "identity", None)
    names = ", ".join(recipients)
    if identity is None:
        raise ConfigError(
            f"predeploy --level {level} reads back the backup it makes, which is encrypted for {names}, "
            "and no key to decrypt it is configured (BACKUP_AGE_IDENTITY); nothing was backed up",
            "set BACKUP_AGE_IDENTITY to the key file of one of those recipients, or pass --level quick (checksums of the encrypted files only)",
        )
    try:
        crypt.require("predeploy", {"scheme": crypt.SCHEME, "recipients": recipients}, identity)
    except ConfigError:
        raise ConfigError(
            f"predeploy --level {level} reads back the backup it makes, which is encrypted for {names}; "
            f"the key in {identity.source} is none of them; nothing was backed up",
            "set BACKUP_AGE_IDENTITY to the key file of one of those recipients, or pass --level quick",
        ) from None


def _drill_estimate(store: Store, backup: catalog.Backup, backup_seconds: float) -> float:
    src = catalog.backup_source(backup)
    backups, _ = catalog.all_backups(store)
    for other in reversed(backups):
        if other.id == backup.id or other.legacy or catalog.backup_source(other) != src:
            continue
        for r in reversed(verify.read_results(store, other.id)):
            if r.get("level") == "drill" and isinstance(r.get("seconds"), int | float):
                return float(r["seconds"])
    return 3 * backup_seconds + 10


def run_predeploy(
    target: Target,
    store: Store,
    *,
    level: str = "drill",
    budget_s: float = 900.0,
    signing_key: manifest_mod.SigningKey | None = None,
    pg_bin_dir: str | None = None,
    lock_timeout_ms: int = 30_000,
    environ: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    step: Step = lambda m: None,
) -> PredeployResult:
    check_keys(store, level)
    environ = os.environ if environ is None else environ
    cwd = cwd or Path.cwd()
    started = time.monotonic()
    deadline = started + budget_s
    context = ci_context(cwd, environ)
    label = "pre-deploy" + (f" {context['git_commit'][:12]}" if context.get("git_commit") else "")
    waited = False
    while True:
        try:
            result = create_backup(
                target,
                store,
                kind="full",
                label=label,
                pg_bin_dir=pg_bin_dir,
                step=step,
                signing_key=signing_key,
                lock_timeout_ms=lock_timeout_ms,
                content_hashes=True,
                context=context,
            )
            break
        except Busy:
            if time.monotonic() + 1 > deadline:
                raise Busy(
                    f"Another backup, restore or prune held {store.describe()} for the whole time budget ({budget_s:g} s)",
                    "let it finish, or raise --budget, then run predeploy again",
                ) from None
            if not waited:
                step(f"another run is using {store.describe()}; waiting for it (up to the time budget)")
                waited = True
            time.sleep(1.0)
    backup_seconds = time.monotonic() - started
    backup = catalog.load(store, result.backup_id)
    skipped = ""
    if level == "drill":
        estimate = _drill_estimate(store, backup, backup_seconds)
        left = deadline - time.monotonic()
        if estimate > left:
            skipped = f"drill skipped: it would take about {estimate:.0f} s and {max(left, 0):.0f} s of the time budget are left"
            level = "archive"
            step(skipped + "; verifying at archive level instead")
    verification = verify.verify_backup(store, backup, level, signing_key=signing_key, pg_bin_dir=pg_bin_dir, step=step)
    return PredeployResult(
        backup_id=result.backup_id,
        label=label,
        context=context,
        verification=verification,
        drill_skipped=skipped,
        restore_command=restore_command(result.backup_id, store),
        seconds=time.monotonic() - started,
    )
