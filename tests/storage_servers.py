"""Object-store emulators for the storage tests, started once per session on loopback and spoken to
over HTTP by the same client code users run (obstore, configured from the environment):

- S3: moto's standalone server (PyPI `moto[server]`, a dev dependency);
- Azure Blob: Azurite (npm `azurite`; installed into a cache folder with npm on first use, skipped
  with the reason when npm is missing or the registry cannot be reached);
- GCS: none that works (see gs_server); those tests are skipped, saying why.

Each fixture yields (url, environment) for BACKUP_STORE; tests set the environment with
monkeypatch (or pass it to a CLI run)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent
AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
NPM_CACHE = Path(os.environ.get("FORTRESS_TEST_NPM", Path.home() / ".cache" / "fortress-test-npm"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, proc: subprocess.Popen, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"{what} did not listen on {port} within {timeout} s")


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


class Server:
    def __init__(self, name: str, url_base: str, env: dict[str, str]):
        self.name = name
        self.url_base = url_base  # s3://bucket
        self.env = env

    def url(self) -> str:
        """A fresh prefix per test: tests never see each other's backups."""
        return f"{self.url_base}/t-{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory) -> Iterator[Server]:
    port = free_port()
    log = open(tmp_path_factory.mktemp("moto") / "log", "wb")
    proc = subprocess.Popen([str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)], stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_port(port, proc, "moto_server")
        env = {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_REGION": "us-east-1",
            "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
            "AWS_ALLOW_HTTP": "true",
        }
        import boto3

        boto3.client(
            "s3", endpoint_url=env["AWS_ENDPOINT_URL"], aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1"
        ).create_bucket(Bucket="backups")
        yield Server("s3", "s3://backups", env)
    finally:
        _stop(proc)
        log.close()


def _azurite_bin() -> Path | None:
    exe = NPM_CACHE / "node_modules" / ".bin" / "azurite-blob"
    if exe.exists():
        return exe
    if not shutil.which("npm"):
        return None
    NPM_CACHE.mkdir(parents=True, exist_ok=True)
    res = subprocess.run(
        ["npm", "install", "--no-audit", "--no-fund", "--silent", "--prefix", str(NPM_CACHE), "azurite@3"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    return exe if res.returncode == 0 and exe.exists() else None


@pytest.fixture(scope="session")
def az_server(tmp_path_factory) -> Iterator[Server]:
    exe = _azurite_bin()
    if exe is None:
        pytest.skip("Azurite is not installed and npm could not install it (npm missing or no registry): Azure tests skipped")
    port = free_port()
    where = tmp_path_factory.mktemp("azurite")
    log = open(where / "log", "wb")
    proc = subprocess.Popen(
        [str(exe), "--blobHost", "127.0.0.1", "--blobPort", str(port), "--location", str(where), "--skipApiVersionCheck", "--silent"],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_port(port, proc, "azurite")
        env = {
            "AZURE_STORAGE_ACCOUNT_NAME": "devstoreaccount1",
            "AZURE_STORAGE_ACCOUNT_KEY": AZURITE_KEY,
            "AZURE_STORAGE_USE_EMULATOR": "true",
            "AZURITE_BLOB_STORAGE_URL": f"http://127.0.0.1:{port}",
            "AZURE_ALLOW_HTTP": "true",
        }
        _azure_container(port, "backups")
        yield Server("az", "az://backups", env)
    finally:
        _stop(proc)
        log.close()


def _azure_container(port: int, name: str) -> None:
    """Create a container with a Shared Key signed request (what `az storage container create` sends)."""
    import base64
    import hashlib
    import hmac
    import http.client
    from email.utils import formatdate

    date = formatdate(usegmt=True)
    version = "2021-08-06"
    account = "devstoreaccount1"
    canonical = f"PUT\n\n\n\n\n\n\n\n\n\n\n\nx-ms-date:{date}\nx-ms-version:{version}\n/{account}/{account}/{name}\nrestype:container"
    sig = base64.b64encode(hmac.new(base64.b64decode(AZURITE_KEY), canonical.encode(), hashlib.sha256).digest()).decode()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request(
        "PUT",
        f"/{account}/{name}?restype=container",
        headers={"x-ms-date": date, "x-ms-version": version, "Authorization": f"SharedKey {account}:{sig}", "Content-Length": "0"},
    )
    res = conn.getresponse()
    body = res.read()
    if res.status not in (201, 409):
        raise RuntimeError(f"azurite refused to create the container: {res.status} {body[:200]!r}")


@pytest.fixture(scope="session")
def gs_server() -> Iterator[Server]:
    # Tried: gcp-storage-emulator (PyPI) speaks only the JSON API; fake-gcs-server (bundled in a
    # PyPI wheel) has no XML multipart upload. obstore speaks GCS's XML API (lists, multipart),
    # so neither can stand in for GCS; a real bucket is the only test of gs:// for now.
    pytest.skip("no GCS emulator from PyPI or npm speaks the XML API obstore uses (multipart uploads, lists); gs:// is untested here")
    yield Server("gs", "gs://backups", {})
