"""Review 4 findings (issues 8-11, 13): each test fails on main as merged, and passes once the
defect it names is fixed. Drop this file into tests/ as it is.

Nothing here mocks PostgreSQL or its tools.
"""

from __future__ import annotations

import datetime as dt
import json

from tests.fixtures_cli import SOURCE_SQL, closed_port, engine_backup, error_line
from tests.helpers import seeded

UTC = dt.UTC
NO_BUCKETS = ["--keep-daily", "0", "--keep-weekly", "0", "--keep-monthly", "0"]


def _days(n: int) -> list[dt.datetime]:
    """n past days (a few weeks back, so undo/pre-deploy grace periods play no part)."""
    start = dt.datetime.now(UTC).replace(hour=3, minute=0, second=0, microsecond=0) - dt.timedelta(days=20)
    return [start + dt.timedelta(days=i) for i in range(n)]


# --- prune -----------------------------------------------------------------------------------------


def test_prune_keeps_the_newest_verified_backup(dbs17, project, invoke_cli):
    """README: "Whatever the policy, it keeps the newest backup, the newest verified one". prune's
    engine looks for a `verified` key in the manifest, which `invoke verify` never writes (results go
    to verification.json), so the only drilled backup is removed."""
    src = seeded(dbs17, "prv", SOURCE_SQL)
    bdir = project / ".backups"
    days = _days(3)
    good = engine_backup(src, bdir, when=days[0])
    env = {"DATABASE_URL": dbs17.url(src)}
    res = invoke_cli("verify", "--id", good, "--level", "drill", env=env)
    assert res.returncode == 0, res.stderr
    newer = [engine_backup(src, bdir, when=d) for d in days[1:]]

    plan = invoke_cli("prune", "--keep-last", "1", *NO_BUCKETS, env=env)
    assert plan.returncode == 0, plan.stderr
    res = invoke_cli("prune", "--apply", "--keep-last", "1", *NO_BUCKETS, env=env)
    assert res.returncode == 0, res.stderr
    assert (bdir / newer[-1]).is_dir()
    assert (bdir / good).is_dir(), f"prune removed the only verified backup:\n{plan.stdout}"


def test_prune_does_not_let_unsigned_manifests_push_real_backups_out(dbs17, project, invoke_cli):
    """Hostile folder: three manifest-only folders dated in the future, unsigned, with no files.
    prune counts them as the newest backups, so `--keep-last 3 --apply` deletes every real,
    signed backup (and keeps the fakes). A manifest this machine cannot authenticate must not
    decide what is deleted (at the least, the newest authentic backup stays)."""
    src = seeded(dbs17, "prf", SOURCE_SQL)
    bdir = project / ".backups"
    real = [engine_backup(src, bdir, when=d) for d in _days(3)]
    manifest = json.loads((bdir / real[-1] / "manifest.json").read_text())
    for i in (1, 2, 3):
        fake = f"2099-01-0{i}T000000Z"
        (bdir / fake).mkdir(mode=0o700)
        (bdir / fake / "manifest.json").write_text(json.dumps(dict(manifest, id=fake, created_at=f"2099-01-0{i}T00:00:00Z", files=[])))

    res = invoke_cli("prune", "--apply", "--keep-last", "3", *NO_BUCKETS, env={"DATABASE_URL": dbs17.url(src)})
    kept = sorted(p.name for p in bdir.iterdir() if p.name[0].isdigit())
    assert all((bdir / r).is_dir() for r in real), f"real backups removed; left: {kept}\n{res.stdout}\n{res.stderr}"


def test_prune_with_a_symlinked_backup_folder_finishes_its_plan(dbs17, project, invoke_cli, tmp_path_factory):
    """A backup folder that is a symlink (a user's own `ln -s` to another disk, or hostile) is
    listed like any backup. prune renames the link to `.tmp-deleting-ID`, then shutil.rmtree
    refuses a symlink: prune stops halfway with "error: OSError. ... nothing was kept." (wrong:
    it had just hidden a backup), the rest of its plan is not applied, and the renamed link is
    left behind. Either skip symlinked folders or unlink them, never touching their target."""
    src = seeded(dbs17, "prs", SOURCE_SQL)
    bdir = project / ".backups"
    days = _days(3)
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    old = engine_backup(src, elsewhere, when=days[0])
    middle, newest = (engine_backup(src, bdir, when=d) for d in days[1:])
    (bdir / old).symlink_to(elsewhere / old, target_is_directory=True)
    before = sorted(p.name for p in (elsewhere / old).iterdir())

    res = invoke_cli("prune", "--apply", "--keep-last", "1", *NO_BUCKETS, env={"DATABASE_URL": dbs17.url(src)})
    assert sorted(p.name for p in (elsewhere / old).iterdir()) == before  # the link's target untouched
    assert res.returncode == 0, res.stderr
    assert (bdir / newest).is_dir() and not (bdir / middle).exists(), sorted(p.name for p in bdir.iterdir())
    assert not any(p.name.startswith(".tmp-deleting") for p in bdir.iterdir()), sorted(p.name for p in bdir.iterdir())


# --- notifications ---------------------------------------------------------------------------------


def test_a_malformed_notify_url_is_a_warning_not_a_traceback_with_its_token(project, invoke_cli):
    """BACKUP_NOTIFY_URL is a secret (README: never printed). A URL with a space, or a token
    where the port goes, makes http.client raise InvalidURL (a ValueError, not caught): the
    failed backup ends in a traceback that prints the token, and exits 1 instead of 4."""
    url = f"postgresql://u@127.0.0.1:{closed_port()}/x"
    for hook in ("https://hooks.example.com/services/T0/B0/SECRETTOKEN xyz", "https://hooks.example.com:SECRETTOKEN/x"):
        res = invoke_cli("backup", "--url", url, env={"BACKUP_NOTIFY_URL": hook})
        assert "SECRETTOKEN" not in res.stdout + res.stderr, res.stderr[-1500:]
        assert res.returncode == 4, res.stderr[-1500:]
        error_line(res)


# --- verify ----------------------------------------------------------------------------------------


def test_verify_quick_does_not_pass_an_unsigned_manifest(dbs17, project, invoke_cli):
    """README: `quick` proves "every file's size and sha256 match the manifest, and the manifest's
    signature". A backup whose manifest.hmac was removed (anyone who can write the folder can then
    rewrite the manifest and every checksum in it) is reported "quick passed", exit 0, with only a
    warning; `verify --all --level quick` in CI stays green."""
    src = seeded(dbs17, "vqu", SOURCE_SQL)
    bdir = project / ".backups"
    bid = engine_backup(src, bdir)
    (bdir / bid / "manifest.hmac").unlink()
    res = invoke_cli("verify", "--id", bid, "--level", "quick", env={"DATABASE_URL": dbs17.url(src)})
    assert "quick passed" not in res.stdout + res.stderr, res.stdout + res.stderr
    assert res.returncode != 0, res.stdout + res.stderr


def test_verify_quick_does_not_pass_a_full_backup_without_files(dbs17, project, invoke_cli):
    """A signed manifest (signed by this machine's key, e.g. a hand edit then `resign`, or a bug)
    whose `files` list is empty while it records tables: there is nothing to restore, yet quick
    checks "0 files' checksums" and says passed; `list` shows it as an ordinary 0 B full backup."""
    from tests.helpers import resign

    src = seeded(dbs17, "vqe", SOURCE_SQL)
    bdir = project / ".backups"
    bid = engine_backup(src, bdir)
    path = bdir / bid / "manifest.json"
    manifest = json.loads(path.read_text())
    assert manifest["tables"], "the backup records its tables"
    for f in manifest["files"]:
        (bdir / bid / f["name"]).unlink()
    path.write_text(json.dumps(dict(manifest, files=[]), indent=2))
    resign(bdir / bid)
    res = invoke_cli("verify", "--id", bid, "--level", "quick", env={"DATABASE_URL": dbs17.url(src)})
    assert res.returncode == 5, res.stdout + res.stderr


def test_a_bad_connection_parameter_is_a_configuration_error(project, invoke_cli):
    """`?connect_timeout=abc` in the URL: libpq refuses the parameter; that is bad configuration
    (exit 2, naming it), not an unexpected failure (exit 1)."""
    url = f"postgresql://u@127.0.0.1:{closed_port()}/x?connect_timeout=abc"
    res = invoke_cli("backup", "--url", url)
    assert res.returncode == 2, res.stderr
    assert "connect_timeout" in error_line(res)
