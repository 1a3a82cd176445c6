"""Secrets sealed at rest, end to end: a certificate (PFX with a password) and secret values created
through the management API are not in the database file, read back in clear through the API, travel
through a backup into another instance that has another server secret key, and a node whose key
differs from the database's refuses to start, saying so. Deleting a certificate a backend presents
is refused."""

from __future__ import annotations

import base64
import os
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from azure.mgmt.apimanagement import models as M
from azure.storage.blob import BlobServiceClient
from cryptography.hazmat.primitives import hashes

from tests.conftest import sdk_client
from tests.e2e.dr_support import SUB, Rest
from tests.support.azurite import AzuriteServer
from tests.support.certs import self_signed_pfx
from tests.support.server import REPO, PorticoServer, free_port

pytestmark = pytest.mark.slow

RG = "rg-sealed"
PASSWORD = "pfx-pw-7731"
SECRET_VALUE = "nv-secret-4471"
CLIENT_SECRET = "idp-secret-5521"


def _new_key() -> str:
    return base64.b64encode(os.urandom(32)).decode()


@pytest.fixture(scope="module")
def pair(
    server_factory: Callable[..., PorticoServer], azurite: AzuriteServer
) -> Iterator[tuple[PorticoServer, PorticoServer, str, str]]:
    """Two instances with their own databases and their own keys, and a container both reach."""
    env = {"PORTICO_STORAGE_BACKEND": "azure", "PORTICO_BLOB_ENDPOINT_TEMPLATE": azurite.endpoint_template}
    a = server_factory(env={**env, "PORTICO_SECRET_KEY": _new_key()})
    b = server_factory(env={**env, "PORTICO_SECRET_KEY": _new_key()})
    account = azurite.account_names[0]
    key = azurite.key(account)
    blobs = BlobServiceClient(
        azurite.endpoint(account), credential={"account_name": account, "account_key": key}
    )
    if not blobs.get_container_client("sealed").exists():
        blobs.create_container("sealed")
    blobs.close()
    yield a, b, account, key


def _database_bytes(server: PorticoServer) -> bytes:
    """The database as a copy of it would hold it: the file and its write-ahead log."""
    files = [server.data_dir / "portico.db", server.data_dir / "portico.db-wal"]
    return b"".join(f.read_bytes() for f in files if f.exists())


def _rows(server: PorticoServer, kind: str) -> list[str]:
    con = sqlite3.connect(server.data_dir / "portico.db")
    try:
        return [str(r[0]) for r in con.execute("SELECT data FROM entities WHERE kind = ?", (kind,))]
    finally:
        con.close()


def test_secrets_are_sealed_at_rest_and_restore_under_another_key(
    pair: tuple[PorticoServer, PorticoServer, str, str], tmp_path: Path
) -> None:
    a, b, account, key = pair
    ra, rb = Rest(a), Rest(b)
    ra.service(RG, "sealed-src")
    rb.service(RG, "sealed-dst")
    pfx, cert = self_signed_pfx("sealed.example", PASSWORD)
    ra.put(RG, "sealed-src", "certificates/c1", {"data": pfx, "password": PASSWORD})
    ra.put(RG, "sealed-src", "namedValues/nv1", {"displayName": "nv1", "value": SECRET_VALUE, "secret": True})
    ra.put(RG, "sealed-src", "namedValues/nv2", {"displayName": "nv2", "value": "plain-9920"})
    ra.put(RG, "sealed-src", "identityProviders/google", {"clientId": "cid", "clientSecret": CLIENT_SECRET})

    def assert_sealed(server: PorticoServer) -> None:
        raw = _database_bytes(server)
        pfx_bytes = base64.b64decode(pfx)
        for secret in (pfx.encode(), pfx_bytes[100:132], PASSWORD.encode(), SECRET_VALUE.encode()):
            assert secret not in raw
        assert CLIENT_SECRET.encode() not in raw
        [cert_row] = _rows(server, "certificate")
        assert '"password":"portico-sealed:' in cert_row and '"data":"portico-sealed:' in cert_row
        assert any("plain-9920" in r for r in _rows(server, "namedValue"))  # not a secret: in clear

    assert_sealed(a)
    # through the API, everything reads as before
    assert ra.call("POST", ra.svc(RG, "sealed-src", "namedValues/nv1/listValue")).json() == {
        "value": SECRET_VALUE
    }
    thumbprint = ra.call("GET", ra.svc(RG, "sealed-src", "certificates/c1")).json()["properties"][
        "thumbprint"
    ]
    assert thumbprint == cert.fingerprint(hashes.SHA1()).hex().upper()

    # a backup carries the secrets opened; the other instance seals them with its own key
    params = M.ApiManagementServiceBackupRestoreParameters(
        storage_account=account, container_name="sealed", backup_name="sealed-1", access_key=key
    )
    sdk_client(a, SUB).api_management_service.begin_backup(RG, "sealed-src", params).result()
    sdk_client(b, SUB).api_management_service.begin_restore(RG, "sealed-dst", params).result()
    assert rb.call("POST", rb.svc(RG, "sealed-dst", "namedValues/nv1/listValue")).json() == {
        "value": SECRET_VALUE
    }
    secrets = rb.call("POST", rb.svc(RG, "sealed-dst", "identityProviders/google/listSecrets")).json()
    assert secrets == {"clientSecret": CLIENT_SECRET}
    restored = rb.call("GET", rb.svc(RG, "sealed-dst", "certificates/c1")).json()["properties"]
    assert restored["thumbprint"] == thumbprint
    assert_sealed(b)
    assert _rows(a, "certificate") != _rows(b, "certificate")  # sealed under different keys

    # a gateway-only node with another key than the database's refuses to start, saying why
    db_url = f"sqlite+aiosqlite:///{(a.data_dir / 'portico.db').resolve()}"
    refused = subprocess.run(
        [
            *(sys.executable, "-m", "portico.cli", "gateway", "--data-dir", str(tmp_path / "node")),
            *("--database-url", db_url, "--port", str(free_port()), "--https-port", "0"),
        ],
        env={**os.environ, "PORTICO_SECRET_KEY": b.env["PORTICO_SECRET_KEY"]},
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )
    said = refused.stdout + refused.stderr
    assert refused.returncode == 2 and "another server secret key" in said, said
    for secret in (PASSWORD, SECRET_VALUE, CLIENT_SECRET, pfx[:40]):
        assert secret not in said


def test_a_certificate_a_backend_presents_cannot_be_deleted(
    pair: tuple[PorticoServer, PorticoServer, str, str],
) -> None:
    a = pair[0]
    ra = Rest(a)
    ra.service(RG, "sealed-refs")
    pfx, _cert = self_signed_pfx("client.example", "pw")
    ra.put(RG, "sealed-refs", "certificates/client", {"data": pfx, "password": "pw"})
    # a full ARM id, as clients send it
    cert_id = (
        "/subscriptions/" + ra.svc(RG, "sealed-refs", "certificates/client").split("/subscriptions/", 1)[1]
    )
    ra.put(
        RG,
        "sealed-refs",
        "backends/be1",
        {"url": "https://b.example", "protocol": "http", "credentials": {"certificateIds": [cert_id]}},
    )
    url = ra.svc(RG, "sealed-refs", "certificates/client")
    r = ra.call("DELETE", url, expect=(409,), headers={"If-Match": "*"})
    error = r.json()["error"]
    assert error["code"] == "CertificateInUse" and "be1" in error["message"], error
    ra.call("GET", url)  # still there
    # by thumbprint too
    thumbprint = ra.call("GET", url).json()["properties"]["thumbprint"]
    ra.put(
        RG,
        "sealed-refs",
        "backends/be1",
        {"url": "https://b.example", "protocol": "http", "credentials": {"certificate": [thumbprint]}},
    )
    error = ra.call("DELETE", url, expect=(409,), headers={"If-Match": "*"}).json()["error"]
    assert error["code"] == "CertificateInUse" and "be1" in error["message"], error
    # once the backend no longer names it, the delete goes through
    ra.put(RG, "sealed-refs", "backends/be1", {"url": "https://b.example", "protocol": "http"})
    ra.call("DELETE", url, headers={"If-Match": "*"})
    ra.call("GET", url, expect=(404,))
