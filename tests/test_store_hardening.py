"""BACKUP_STORE and the object store's errors never show a credential, and a store URL this tool
cannot use is one clear configuration error (exit 2) in every command, naming the accepted forms.
No database needed: these fail before one would be reached."""

from __future__ import annotations

import pytest

from tasks.engine.objects import redact
from tests.conftest import run_invoke
from tests.fixtures_cli import error_line
from tests.storage_servers import s3_server  # noqa: F401  (session fixture)

FORMS = "s3://BUCKET/PREFIX, gs://BUCKET/PREFIX, az://CONTAINER/PREFIX, or a local folder"


def test_https_store_is_one_clear_error_in_every_command(tmp_path):
    """`config` used to show it as the store, `list --remote` to say none was configured, and
    `list` and `backup` to use a local folder named `https:`."""
    env = {"BACKUP_STORE": "https://s3.example.com/backups", "DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none"}
    lines = set()
    for args in (["list", "--remote"], ["list"], ["config"], ["backup"]):
        res = run_invoke(args, cwd=tmp_path, env=env)
        lines.add(error_line(res))
        assert res.returncode == 2, (args, res.stderr)
    assert len(lines) == 1, lines  # the same error, whatever the command
    line = lines.pop()
    assert "BACKUP_STORE 'https://s3.example.com/backups'" in line and FORMS in line and "AWS_ENDPOINT_URL" in line
    assert not list(tmp_path.iterdir())  # no folder named after the URL, no .gitignore


@pytest.mark.parametrize(
    "store, secret",
    [
        ("s3://backups/prod?aws_secret_access_key=SEKRIT-IN-QUERY", "SEKRIT-IN-QUERY"),
        ("s3://AKIAEXAMPLE:SEKRIT-IN-USERINFO@backups/prod", "SEKRIT-IN-USERINFO"),
        ("https://minio:SEKRIT-HTTPS@s3.example.com/backups", "SEKRIT-HTTPS"),
    ],
)
def test_invalid_store_url_is_never_echoed_with_its_secret(store, secret, tmp_path):
    res = run_invoke(["list", "--remote"], cwd=tmp_path, env={"BACKUP_STORE": store})
    line = error_line(res)
    assert res.returncode == 2, res.stderr
    assert "BACKUP_STORE" in line and FORMS in line
    assert secret not in res.stderr + res.stdout, line


def test_storage_error_never_echoes_the_endpoints_password(s3_server, tmp_path):  # noqa: F811
    """obstore's messages carry the request URL, with the user and password of AWS_ENDPOINT_URL."""
    endpoint = s3_server.env["AWS_ENDPOINT_URL"].replace("http://", "http://minio:Endpoint-Pass-77@")
    env = {**s3_server.env, "AWS_ENDPOINT_URL": endpoint, "BACKUP_STORE": "s3://no-such-bucket/prod"}
    res = run_invoke(["list", "--remote"], cwd=tmp_path, env=env)
    line = error_line(res)
    assert res.returncode == 10, res.stderr
    assert "no-such-bucket" in line and "404" in line  # still says what went wrong
    assert "Endpoint-Pass-77" not in res.stderr
    assert "minio:****@" in line


def test_endpoint_the_storage_library_cannot_parse_is_a_clear_error_not_a_crash(tmp_path):
    # a raw '/' in the password: obstore's client panics on the "port" it then reads
    env = {"AWS_ENDPOINT_URL": "http://minio:pa/ss-word-9@127.0.0.1:9000", "BACKUP_STORE": "s3://backups/prod", "AWS_REGION": "us-east-1"}
    res = run_invoke(["list", "--remote"], cwd=tmp_path, env=env)
    line = error_line(res)
    assert res.returncode == 2, res.stderr
    assert "AWS_ENDPOINT_URL" in line and "percent-encode" in line
    assert "ss-word-9" not in res.stderr and "panicked" not in res.stderr


def test_redact_removes_signatures_tokens_and_secret_variables():
    text = (
        "GET https://bucket.s3.amazonaws.com/x?X-Amz-Credential=AKIA%2F1&X-Amz-Signature=abcdef0123&list-type=2 "
        "with key Secret-From-Env-1 and https://tok3n@host/p and sv=2021&sig=SAS-SIG-VALUE"
    )
    out = redact(text, {"AWS_SECRET_ACCESS_KEY": "Secret-From-Env-1", "AWS_ACCESS_KEY_ID": "AKIA"})
    for secret in ("abcdef0123", "AKIA%2F1", "Secret-From-Env-1", "tok3n", "SAS-SIG-VALUE"):
        assert secret not in out, out
    assert "list-type=2" in out and "bucket.s3.amazonaws.com" in out
