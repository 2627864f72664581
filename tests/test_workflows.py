"""The GitHub workflows (.github/workflows/backup.yml and deploy-example.yml) cannot rot: their
files are read as YAML, checked for secrets on command lines, and their `run:` steps are run
here, in order, in a copy of this repository, against a throwaway database, as a runner would
(bash -e, the job's environment with `${{ }}` expressions filled in, secrets from the
environment only). `uses:` steps (checkout, setup-uv, upload-artifact) are GitHub's own and are
checked for shape only.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import uuid
from pathlib import Path

import pytest
import yaml

from tests.conftest import PASSWORD, REPO
from tests.helpers import psql

WORKFLOWS = REPO / ".github" / "workflows"
EXPR = re.compile(r"\$\{\{\s*([^}]*?)\s*\}\}")
SIGNING_KEY = "workflow-test-signing-key-0123456789abcdef"


def load(name: str) -> dict:
    data = yaml.safe_load((WORKFLOWS / name).read_text())
    # YAML 1.1 reads the key `on` as True
    data["on"] = data.pop(True, data.get("on"))
    return data


def steps(workflow: dict) -> list[tuple[str, dict]]:
    return [(job_name, step) for job_name, job in workflow["jobs"].items() for step in job["steps"]]


@pytest.mark.parametrize("name", ["backup.yml", "deploy-example.yml"])
def test_no_secret_on_a_command_line(name):
    workflow = load(name)
    runs = [step["run"] for _, step in steps(workflow) if "run" in step]
    assert runs
    for run in runs:
        assert "secrets." not in run, f"{name}: a secret on a command line: {run!r}"
        assert "PASSWORD" not in run and "SIGNING_KEY" not in run, run
    for job in workflow["jobs"].values():
        for var, value in job.get("env", {}).items():
            if "secrets." in str(value):
                assert str(value) == f"${{{{ secrets.{var} }}}}", f"{var} must come from the secret of its own name"


def test_backup_workflow_shape():
    workflow = load("backup.yml")
    assert "workflow_dispatch" in workflow["on"]
    assert workflow["on"]["schedule"][0]["cron"]
    all_steps = [s for _, s in steps(workflow)]
    assert any("uv sync --frozen" in s.get("run", "") for s in all_steps), "installs from the lock file"
    uploads = [s for s in all_steps if str(s.get("uses", "")).startswith("actions/upload-artifact")]
    assert uploads and uploads[0]["with"]["retention-days"] and "BACKUP_STORE == ''" in uploads[0]["if"]
    deploy = load("deploy-example.yml")
    runs = [s.get("run", "") for _, s in steps(deploy)]
    first_real = next(r for r in runs if "invoke" in r)
    assert "invoke predeploy" in first_real, "the deploy example runs predeploy before anything else"


def _copy_repo(dest: Path) -> None:
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO, capture_output=True, text=True, check=True).stdout.split("\n")
    for rel in filter(None, files):
        src = REPO / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            (dest / rel).write_bytes(src.read_bytes())


def _fill(text: str, context: dict[str, str]) -> str:
    def sub(m: re.Match) -> str:
        expr = m.group(1)
        assert expr in context, f"the test does not know the expression {expr!r}: teach it, or simplify the workflow"
        return context[expr]

    return EXPR.sub(sub, str(text))


def _run_steps(workflow: dict, repo: Path, context: dict[str, str], extra_env: dict[str, str]) -> list[subprocess.CompletedProcess]:
    results = []
    for job in workflow["jobs"].values():
        # what a runner's own environment gives every step: paths, and the machine's TLS trust
        # (uv fetches the build backend from the package index)
        kept = ("PATH", "HOME", "LANG", "TMPDIR", "UV_CACHE_DIR", "XDG_CONFIG_HOME", "SSL_CERT_FILE", "SSL_CERT_DIR")
        base = {k: v for k, v in os.environ.items() if k in kept or k.startswith(("UV_INDEX", "UV_DEFAULT_INDEX", "PIP_"))}
        base |= {"CI": "true", "GITHUB_ACTIONS": "true", **extra_env}
        job_env = {k: _fill(v, context) for k, v in job.get("env", {}).items()}
        for step in job["steps"]:
            if "run" not in step:
                continue
            assert "if" not in step, "a run step with a condition would not be tested"
            env = base | job_env | {k: _fill(v, context) for k, v in step.get("env", {}).items()}
            proc = subprocess.run(["bash", "-e", "-c", _fill(step["run"], context)], cwd=repo, env=env, capture_output=True, text=True, timeout=600)
            assert proc.returncode == 0, f"step {step.get('name')!r} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
            results.append(proc)
    return results


@pytest.fixture(scope="module")
def checkout(tmp_path_factory):
    """This repository as actions/checkout leaves it, installed once by the workflows' own step."""
    root = tmp_path_factory.mktemp("runner")
    repo = root / "workspace"
    _copy_repo(repo)
    return repo


def test_workflow_run_steps_work_against_a_throwaway_database(pg17, checkout):
    db = pg17.create_database(f"ci_{uuid.uuid4().hex[:6]}")
    try:
        psql(
            db,
            "CREATE SCHEMA app; CREATE TABLE app.t (id int PRIMARY KEY, v text); INSERT INTO app.t SELECT g, 'v' || g FROM generate_series(1, 50) g",
        )
        secrets = {
            "DATABASE_URL": f"postgresql://postgres@127.0.0.1:{pg17.port}/{db.dbname}",
            "PGPASSWORD": PASSWORD,
            "BACKUP_SIGNING_KEY": SIGNING_KEY,
            "BACKUP_STORE": "",
            "BACKUP_NOTIFY_URL": "",
        }
        context = {f"secrets.{k}": v for k, v in secrets.items()}
        context |= {"github.workspace": str(checkout), "github.run_id": "4242", "github.sha": "0123456789abcdef0123456789abcdef01234567"}
        github = {
            "GITHUB_SHA": context["github.sha"],
            "GITHUB_RUN_ID": "4242",
            "GITHUB_REPOSITORY": "fortress/modeler",
            "GITHUB_WORKSPACE": str(checkout),
        }
        backup_dir = checkout.parent / "fortress-backups"

        nightly = _run_steps(load("backup.yml"), checkout, context, github)
        for proc in nightly:
            assert PASSWORD not in proc.stdout + proc.stderr and SIGNING_KEY not in proc.stdout + proc.stderr
        (backup_id,) = [p.name for p in backup_dir.iterdir() if not p.name.startswith(".")]
        manifest = json.loads((backup_dir / backup_id / "manifest.json").read_text())
        assert manifest["label"] == "nightly" and manifest["tables"][0].get("hash")
        results = json.loads((backup_dir / backup_id / "verification.json").read_text())["results"]
        assert results[-1]["level"] == "drill" and results[-1]["ok"]

        deploy = _run_steps(load("deploy-example.yml"), checkout, context, github)
        summary = [ln for p in deploy for ln in p.stdout.splitlines() if ln.startswith("predeploy ok")]
        assert len(summary) == 1, [p.stdout for p in deploy]
        new_id = summary[0].split("backup ", 1)[1].split(" ", 1)[0]
        manifest = json.loads((backup_dir / new_id / "manifest.json").read_text())
        assert manifest["context"]["git_commit"] == context["github.sha"]
        assert manifest["context"]["ci_run"]["url"] == "https://github.com/fortress/modeler/actions/runs/4242"
        assert summary[0].endswith(f"restore it with: invoke restore --id {new_id} --backup-dir {checkout}/../fortress-backups")
    finally:
        pg17.drop_database(db.dbname)
