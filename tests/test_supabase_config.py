"""Supabase connection handling through the real CLI: linked projects, the transaction pooler,
IPv6-only direct hosts, and a whole backup/restore of a Supabase-shaped project by URL."""

from __future__ import annotations

import datetime as dt
import json
from urllib.parse import quote

from tests.conftest import PASSWORD
from tests.helpers import scalar
from tests.supabase_platform import APP_LOGIN_PASSWORD, APP_USERS

REF = "abcdefghijklmnopqrst"


def link(project, pooler: str | None = None):
    temp = project / "supabase" / ".temp"
    temp.mkdir(parents=True)
    (temp / "project-ref").write_text(REF)
    if pooler:
        (temp / "pooler-url").write_text(pooler)


def stderr_line(proc) -> str:
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, proc.stderr
    return lines[0]


def test_linked_project_uses_session_pooler_and_password_from_env(project, invoke_cli):
    link(project, f"postgresql://postgres.{REF}:[YOUR-PASSWORD]@aws-0-eu-west-2.pooler.supabase.com:6543/postgres")
    out = invoke_cli("config", env={"SUPABASE_DB_PASSWORD": "pw-from-env"})
    assert out.returncode == 0, out.stderr
    assert f"postgres.{REF}@aws-0-eu-west-2.pooler.supabase.com:5432/postgres" in out.stdout
    assert "linked project" in out.stdout
    assert "pw-from-env" not in out.stdout + out.stderr


def test_linked_project_without_pooler_uses_direct_host(project, invoke_cli):
    link(project)
    out = invoke_cli("config", env={"SUPABASE_DB_PASSWORD": "x"})
    assert f"db.{REF}.supabase.co:5432/postgres" in out.stdout


def test_database_url_wins_over_linked_project(project, invoke_cli):
    link(project)
    out = invoke_cli("config", env={"DATABASE_URL": "postgresql://me@127.0.0.1:5432/mine"})
    assert "127.0.0.1:5432/mine" in out.stdout and REF not in out.stdout


def test_malformed_project_ref_is_a_clear_error(project, invoke_cli):
    (project / "supabase" / ".temp").mkdir(parents=True)
    (project / "supabase" / ".temp" / "project-ref").write_text("not-a-ref")
    out = invoke_cli("backup")
    assert out.returncode == 2
    assert "supabase link" in stderr_line(out)


def test_transaction_pooler_is_refused_before_connecting(project, invoke_cli):
    url = f"postgresql://postgres.{REF}:{quote(PASSWORD, safe='')}@aws-0-eu-west-2.pooler.supabase.com:6543/postgres"
    for args in (["backup"], ["restore", "--date", "2026-11-24", "--yes"]):
        if args[0] == "restore":
            (project / ".backups").mkdir(exist_ok=True)
        out = invoke_cli(*args, env={"DATABASE_URL": url})
        line = stderr_line(out)
        assert out.returncode in (2, 3), line
        if args[0] == "backup":
            assert out.returncode == 2 and "6543" in line and "session pooler" in line and "5432" in line
    assert not any((project / ".backups").iterdir()) if (project / ".backups").exists() else True


def test_direct_host_failure_explains_ipv6(project, invoke_cli):
    # No DNS here (and on IPv4-only networks the AAAA-only host does not resolve either).
    out = invoke_cli("backup", env={"DATABASE_URL": f"postgresql://postgres:pw@db.{REF}.supabase.co:5432/postgres"})
    line = stderr_line(out)
    assert out.returncode == 4
    assert "IPv6" in line and "session pooler" in line
    assert ":pw@" not in out.stdout + out.stderr


def test_cli_round_trip_of_a_supabase_project(supa15_a, project, invoke_cli, request):
    from tests.supabase_platform import SupabasePlatform

    source = supa15_a.new_project()
    supa15_a.load_app(source)
    # a new project on a server that has never seen the app's roles
    supa15_b = SupabasePlatform(supa15_a.suite, label="cli")
    supa15_b.start()
    request.addfinalizer(supa15_b.stop)
    target = supa15_b.new_project()
    env = {"DATABASE_URL": supa15_a.url(source)}  # the password needs percent-encoding

    made = invoke_cli("backup", "--label", "supabase", env=env)
    assert made.returncode == 0, made.stderr
    manifest = json.loads(next((project / ".backups").glob("*/manifest.json")).read_text())
    assert manifest["source"]["platform"] == "supabase"
    assert PASSWORD not in json.dumps(manifest)

    today = dt.datetime.now(dt.UTC).date().isoformat()
    done = invoke_cli("restore", "--date", today, "--any-source", "--target", supa15_b.url(target), "--yes", env=env)
    assert done.returncode == 0, done.stderr
    assert "fortress_reporter" in done.stderr and "without passwords" in done.stderr
    assert "tables match the manifest" in done.stdout
    for text in (made.stdout, made.stderr, done.stdout, done.stderr):
        assert PASSWORD not in text and APP_LOGIN_PASSWORD not in text
    assert scalar(target, "SELECT count(*) FROM auth.users") == len(APP_USERS)
    assert scalar(target, "SELECT count(*) FROM pg_policies WHERE schemaname = 'storage'") == 3
