"""`invoke predeploy` as CI runs it (no terminal): exit codes, the one summary line, the time
budget, two at once, and BACKUP_NOTIFY_URL's JSON event on failure (a local http.server)."""

from __future__ import annotations

import json
import threading
import uuid
from http.server import BaseHTTPRequestHandler, HTTPServer
from urllib.parse import quote

import pytest

from tests.conftest import PASSWORD
from tests.fixtures_cli import assert_no_secret, closed_port, error_line, start_invoke
from tests.helpers import psql


@pytest.fixture(scope="module")
def app_db(pg17):
    db = pg17.create_database(f"pre_{uuid.uuid4().hex[:6]}")
    psql(db, "CREATE SCHEMA app; CREATE TABLE app.t (id int PRIMARY KEY, v text); INSERT INTO app.t SELECT g, 'v' || g FROM generate_series(1, 80) g")
    yield pg17.url(db.dbname)
    pg17.drop_database(db.dbname)


@pytest.fixture
def hook():
    """A local webhook: collects the JSON bodies POSTed to it; `status` is what it answers."""
    received: list[dict] = []
    state = {"status": 204}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 (http.server's name)
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            received.append({"content_type": self.headers.get("Content-Type"), "body": json.loads(body)})
            self.send_response(state["status"])
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook", received, state
    server.shutdown()


def test_predeploy_prints_one_summary_line_with_the_restore_command(invoke_cli, app_db, project):
    res = invoke_cli("predeploy", env={"DATABASE_URL": app_db, "GITHUB_SHA": "c0ffee" * 6 + "abcd", "GITHUB_RUN_ID": "77"})
    assert res.returncode == 0, res.stderr
    (line,) = res.stdout.splitlines()
    assert line.startswith("predeploy ok: backup ") and "drill passed" in line and "content hashes match" in line
    backup_id = line.split("backup ", 1)[1].split(" ", 1)[0]
    assert line.endswith(f"restore it with: invoke restore --id {backup_id}")
    manifest = json.loads((project / ".backups" / backup_id / "manifest.json").read_text())
    assert manifest["label"].startswith("pre-deploy c0ffee")
    assert manifest["context"]["ci_run"]["id"] == "77"
    assert_no_secret(res.stdout, res.stderr)


def test_predeploy_under_a_tight_budget_skips_the_drill_and_says_so(invoke_cli, app_db):
    res = invoke_cli("predeploy", "--budget", "1ms", env={"DATABASE_URL": app_db})
    assert res.returncode == 0, res.stderr
    assert "archive passed" in res.stdout and "drill skipped" in res.stdout


@pytest.mark.parametrize(
    ("args", "env", "code"),
    [
        ((), {}, 2),  # nothing configured
        (("--level", "thorough"), {"DATABASE_URL": "postgresql://u@127.0.0.1:5432/x"}, 2),
        (("--budget", "soon"), {"DATABASE_URL": "postgresql://u@127.0.0.1:5432/x"}, 2),
    ],
)
def test_predeploy_usage_errors(invoke_cli, args, env, code):
    res = invoke_cli("predeploy", *args, env=env)
    assert res.returncode == code, res.stderr
    error_line(res, only_line=True)


def test_failed_predeploy_exits_4_and_posts_a_json_event(invoke_cli, hook):
    url, received, _ = hook
    target = f"postgresql://postgres:{quote(PASSWORD, safe='')}@127.0.0.1:{closed_port()}/app"
    res = invoke_cli("predeploy", env={"DATABASE_URL": target, "BACKUP_NOTIFY_URL": url})
    assert res.returncode == 4, res.stderr
    line = error_line(res)
    assert len(received) == 1
    event = received[0]["body"]
    assert received[0]["content_type"] == "application/json"
    assert event["event"] == "predeploy.failed" and event["exit_code"] == 4
    assert event["message"] in line and event["text"]  # chat webhooks read "text" / "content"
    assert_no_secret(json.dumps(event), res.stderr)


def test_undeliverable_notification_warns_and_keeps_the_failure(invoke_cli, hook):
    url, received, state = hook
    state["status"] = 500
    res = invoke_cli("backup", env={"DATABASE_URL": f"postgresql://postgres@127.0.0.1:{closed_port()}/app", "BACKUP_NOTIFY_URL": url})
    assert res.returncode == 4
    error_line(res)  # still the last line
    assert "notification to BACKUP_NOTIFY_URL was refused (HTTP 500)" in res.stderr
    assert url not in res.stderr  # the webhook URL is a secret
    assert received[0]["body"]["event"] == "backup.failed"


def test_two_predeploys_at_once_both_succeed_with_their_own_backups(app_db, project):
    env = {"DATABASE_URL": app_db}
    procs = [start_invoke(["predeploy", "--level", "archive"], cwd=project, env=env) for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (_out, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err
    ids = {out.split("backup ", 1)[1].split(" ", 1)[0] for out, _ in outs}
    assert len(ids) == 2
    for backup_id in ids:
        results = json.loads((project / ".backups" / backup_id / "verification.json").read_text())["results"]
        assert [r["level"] for r in results] == ["archive"] and results[0]["ok"]
