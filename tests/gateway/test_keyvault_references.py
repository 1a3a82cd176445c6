"""Key Vault references end to end: certificates and named values created through the Azure SDK with
`keyVault.secretIdentifier` are read by Portico (azure-keyvault-secrets, client-secret credential)
from a fake Key Vault over HTTPS with its challenge and token endpoint (tests/support/fake_keyvault.py),
then used by the gateway like uploaded ones: a client certificate presented to a backend that
requires it (`authentication-certificate`), a named value in a policy. A secret rotated in the vault
is served after `refreshSecret` (and after the periodic refresh); an unreachable vault gives a clear
400 and `lastStatus`, and keeps the last secret read."""

from __future__ import annotations

import asyncio
import base64
import json
import ssl
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.mgmt.apimanagement import models as M
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, pkcs12
from pydantic import SecretStr

from portico.resources.keyvault import KeyVaultAccess, KeyVaultFailure
from portico.settings import Settings
from tests.gateway.conftest import (
    RG,
    GatewayEnv,
    eventually,
    gateway_env,
    make_certificate,
    make_service,
    presented,
    unique,
)
from tests.support.certs import CertificateAuthority
from tests.support.fake_keyvault import FakeKeyVault
from tests.support.server import PorticoServer

pytestmark = pytest.mark.slow

PFX = "application/x-pkcs12"
PEM = "application/x-pem-file"


class _WhoAmI(BaseHTTPRequestHandler):
    def log_message(self, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        peer = self.connection.getpeercert()  # type: ignore[attr-defined]
        cn = next((v for rdn in (peer or {}).get("subject", ()) for k, v in rdn if k == "commonName"), "")
        body = json.dumps({"client": cn}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def _client_cert(ca: CertificateAuthority, name: str, form: str) -> tuple[str, str]:
    """(the secret as Key Vault stores a certificate: base64 PFX without password or PEM, thumbprint)."""
    key, cert = ca.issue(name, client=True)
    thumb = cert.fingerprint(hashes.SHA1()).hex().upper()
    if form == PEM:
        pem = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()) + cert.public_bytes(
            Encoding.PEM
        )
        return pem.decode(), thumb
    pfx = pkcs12.serialize_key_and_certificates(None, key, cert, None, NoEncryption())
    return base64.b64encode(pfx).decode(), thumb


@pytest.fixture(scope="module")
def ca() -> CertificateAuthority:
    return CertificateAuthority()


@pytest.fixture(scope="module")
def kv_dir(tmp_path_factory: pytest.TempPathFactory, ca: CertificateAuthority) -> Path:
    d = tmp_path_factory.mktemp("keyvault")
    (d / "ca.pem").write_bytes(ca.pem)
    return d


@pytest.fixture(scope="module")
def vault(ca: CertificateAuthority, kv_dir: Path) -> Iterator[FakeKeyVault]:
    v = FakeKeyVault(ca, kv_dir).start()
    yield v
    v.stop()


@pytest.fixture(scope="module")
def mtls_backend(ca: CertificateAuthority, kv_dir: Path) -> Iterator[int]:
    """An HTTPS backend for `localhost` that refuses clients without a certificate of `ca`."""
    (kv_dir / "backend.pem").write_bytes(ca.server_pem("localhost"))
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(kv_dir / "backend.pem")
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_verify_locations(cadata=ca.pem.decode())
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _WhoAmI)
    httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield int(httpd.server_address[1])
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(scope="module")
def gw(
    server_factory: Callable[..., PorticoServer], vault: FakeKeyVault, kv_dir: Path
) -> Iterator[GatewayEnv]:
    server = server_factory(db="sqlite", env=gateway_env(**vault.env(kv_dir / "ca.pem")))
    name = unique("kv")
    client = make_service(server, name)
    with httpx.Client(timeout=30, verify=ssl.create_default_context(cafile=server.ca)) as http:
        yield GatewayEnv(server, client, http, name)


def _trust(gw: GatewayEnv, ca: CertificateAuthority) -> None:
    der = ca.cert.public_bytes(Encoding.DER)
    gw.client.api_management_service.begin_create_or_update(
        RG,
        gw.service,
        {
            "location": "westeurope",
            "sku": {"name": "Developer", "capacity": 1},
            "properties": {
                "publisherEmail": "ops@contoso.com",
                "publisherName": "Contoso",
                "certificates": [{"encodedCertificate": base64.b64encode(der).decode(), "storeName": "Root"}],
            },
        },
    ).result()


def _kv(identifier: str, identity: str | None = None) -> M.KeyVaultContractCreateProperties:
    return M.KeyVaultContractCreateProperties(secret_identifier=identifier, identity_client_id=identity)


def _raw_get(gw: GatewayEnv, path: str) -> dict[str, Any]:
    s = gw.server
    r = httpx.get(
        f"{s.url}/subscriptions/{gw.client._config.subscription_id}/resourceGroups/{RG}/providers/"
        f"Microsoft.ApiManagement/service/{gw.service}/{path}",
        params={"api-version": "2022-08-01"},
        headers={"Authorization": f"Bearer {s.token()}"},
        verify=s.ssl_context(),
    )
    r.raise_for_status()
    doc: dict[str, Any] = r.json()
    return doc


def test_certificate_from_key_vault_is_presented_to_the_backend(
    gw: GatewayEnv, vault: FakeKeyVault, ca: CertificateAuthority, mtls_backend: int
) -> None:
    c = gw.client
    secret, thumb = _client_cert(ca, "kv-client-one", PFX)
    vault.set_secret("client-cert", secret, PFX)
    made = c.certificate.create_or_update(
        RG,
        gw.service,
        "kvcert",
        M.CertificateCreateOrUpdateParameters(key_vault=_kv(vault.identifier("client-cert"))),
    )
    assert made.thumbprint == thumb and made.subject == "CN=kv-client-one"
    assert made.key_vault.secret_identifier == vault.identifier("client-cert")
    assert made.key_vault.last_status.code == "Success" and made.key_vault.last_status.time_stamp_utc
    # GET shows the reference and its status, never the certificate or a password
    props = _raw_get(gw, "certificates/kvcert")["properties"]
    assert (
        "data" not in props
        and "password" not in props
        and props["keyVault"]["lastStatus"]["code"] == "Success"
    )

    # a certificate Key Vault holds as PEM (key and certificate) serves the same way
    pem, pem_thumb = _client_cert(ca, "kv-client-pem", PEM)
    vault.set_secret("client-pem", pem, PEM)
    assert (
        c.certificate.create_or_update(
            RG,
            gw.service,
            "kvpem",
            M.CertificateCreateOrUpdateParameters(key_vault=_kv(vault.identifier("client-pem"))),
        ).thumbprint
        == pem_thumb
    )

    _trust(gw, ca)
    gw.api("kvmtls", "kvmtls", f"https://localhost:{mtls_backend}")
    gw.api("kvpem", "kvpem", f"https://localhost:{mtls_backend}")
    gw.policy(
        '<policies><inbound><base/><authentication-certificate certificate-id="kvcert"/></inbound></policies>',
        api="kvmtls",
    )
    gw.policy(
        f'<policies><inbound><base/><authentication-certificate thumbprint="{pem_thumb}"/></inbound></policies>',
        api="kvpem",
    )
    key = gw.subscription("kv-all", "/apis")

    def presents(path: str, client: str) -> None:
        r = gw.get(path, key=key)
        assert (r.status_code, r.json().get("client") if r.status_code == 200 else r.text) == (200, client)

    # a backend entity's credentials name it by id, as an uploaded one
    gw.api("kvbe", "kvbe", "http://127.0.0.1:9")
    c.backend.create_or_update(
        RG,
        gw.service,
        "kv-be",
        M.BackendContract(
            url=f"https://localhost:{mtls_backend}",
            protocol="http",
            credentials=M.BackendCredentialsContract(certificate_ids=["/certificates/kvpem"]),
        ),
    )
    gw.policy(
        '<policies><inbound><base/><set-backend-service backend-id="kv-be"/></inbound></policies>', api="kvbe"
    )
    eventually(lambda: presents("/kvmtls/x", "kv-client-one"), timeout=5)
    eventually(lambda: presents("/kvpem/x", "kv-client-pem"), timeout=5)
    eventually(lambda: presents("/kvbe/x", "kv-client-pem"), timeout=5)

    # rotated in the vault: served after refreshSecret (the identifier names no version: the latest)
    rotated, rotated_thumb = _client_cert(ca, "kv-client-two", PFX)
    vault.set_secret("client-cert", rotated, PFX)
    presents("/kvmtls/x", "kv-client-one")  # not before a refresh
    refreshed = c.certificate.refresh_secret(RG, gw.service, "kvcert")
    assert refreshed.thumbprint == rotated_thumb and refreshed.key_vault.last_status.code == "Success"
    eventually(lambda: presents("/kvmtls/x", "kv-client-two"), timeout=5)


def test_named_value_from_key_vault_in_a_policy(gw: GatewayEnv, vault: FakeKeyVault) -> None:
    c = gw.client
    vault.set_secret("greeting", "hello-from-vault-1")
    made = c.named_value.begin_create_or_update(
        RG,
        gw.service,
        "kvgreeting",
        M.NamedValueCreateContract(display_name="kvgreeting", key_vault=_kv(vault.identifier("greeting"))),
    ).result()
    assert made.secret is True and made.value is None
    assert made.key_vault.last_status.code == "Success"
    props = _raw_get(gw, "namedValues/kvgreeting")["properties"]
    assert "value" not in props and props["keyVault"]["secretIdentifier"] == vault.identifier("greeting")
    assert c.named_value.list_value(RG, gw.service, "kvgreeting").value == "hello-from-vault-1"

    gw.api("kvnv", "kvnv", "http://127.0.0.1:9")
    gw.policy(
        '<policies><inbound><base/><return-response><set-status code="200"/>'
        "<set-body>{{kvgreeting}}</set-body></return-response></inbound></policies>",
        api="kvnv",
    )
    key = gw.subscription("kv-nv", "/apis")

    def says(text: str) -> None:
        r = gw.get("/kvnv/x", key=key)
        assert (r.status_code, r.text) == (200, text)

    eventually(lambda: says("hello-from-vault-1"), timeout=5)

    vault.set_secret("greeting", "hello-from-vault-2")
    c.named_value.begin_refresh_secret(RG, gw.service, "kvgreeting").result()
    assert c.named_value.list_value(RG, gw.service, "kvgreeting").value == "hello-from-vault-2"
    eventually(lambda: says("hello-from-vault-2"), timeout=5)

    # a versioned identifier keeps its version through refreshes
    first = vault.secrets["greeting"][0].version
    c.named_value.begin_create_or_update(
        RG,
        gw.service,
        "kvgreeting",
        M.NamedValueCreateContract(
            display_name="kvgreeting", key_vault=_kv(vault.identifier("greeting", first))
        ),
        if_match="*",
    ).result()
    c.named_value.begin_refresh_secret(RG, gw.service, "kvgreeting").result()
    assert c.named_value.list_value(RG, gw.service, "kvgreeting").value == "hello-from-vault-1"

    # an uploaded value replaces the reference (PATCH)
    c.named_value.begin_update(
        RG, gw.service, "kvgreeting", "*", M.NamedValueUpdateParameters(value="uploaded", secret=True)
    ).result()
    props = _raw_get(gw, "namedValues/kvgreeting")["properties"]
    assert "keyVault" not in props
    assert c.named_value.list_value(RG, gw.service, "kvgreeting").value == "uploaded"


def test_what_cannot_be_read_is_refused_and_nothing_is_stored(gw: GatewayEnv, vault: FakeKeyVault) -> None:
    c = gw.client

    def refused(name: str, body: M.NamedValueCreateContract) -> str:
        with pytest.raises(HttpResponseError) as err:
            c.named_value.begin_create_or_update(RG, gw.service, name, body).result()
        assert err.value.status_code == 400, err.value
        with pytest.raises(ResourceNotFoundError):
            c.named_value.get(RG, gw.service, name)
        return str(err.value.message)

    msg = refused(
        "kvmissing",
        M.NamedValueCreateContract(display_name="kvmissing", key_vault=_kv(vault.identifier("nope"))),
    )
    assert "secret 'nope'" in msg and "not found" in msg
    msg = refused(
        "kvbadid", M.NamedValueCreateContract(display_name="kvbadid", key_vault=_kv(vault.url + "/keys/x"))
    )
    assert "secretIdentifier" in msg
    vault.set_secret("plain", "v")
    msg = refused(
        "kvother",
        M.NamedValueCreateContract(
            display_name="kvother",
            key_vault=_kv(vault.identifier("plain"), "11111111-2222-3333-4444-555555555555"),
        ),
    )
    assert "identityClientId" in msg and "PORTICO_KEYVAULT_CLIENT_ID" in msg
    # the configured client's own id is that identity
    c.named_value.begin_create_or_update(
        RG,
        gw.service,
        "kvsame",
        M.NamedValueCreateContract(
            display_name="kvsame", key_vault=_kv(vault.identifier("plain"), vault.client_id)
        ),
    ).result()
    msg = refused(
        "kvboth",
        M.NamedValueCreateContract(
            display_name="kvboth", value="x", key_vault=_kv(vault.identifier("plain"))
        ),
    )
    assert "properties.value" in msg
    with pytest.raises(HttpResponseError) as err:
        c.certificate.create_or_update(
            RG,
            gw.service,
            "kvnotcert",
            M.CertificateCreateOrUpdateParameters(key_vault=_kv(vault.identifier("plain"))),
        )
    assert err.value.status_code == 400 and "not a certificate" in str(err.value.message)
    # refreshSecret of an uploaded certificate has nothing to refresh
    c.named_value.begin_create_or_update(
        RG, gw.service, "kvuploaded", M.NamedValueCreateContract(display_name="kvuploaded", value="own")
    ).result()
    with pytest.raises(HttpResponseError) as err:
        c.named_value.begin_refresh_secret(RG, gw.service, "kvuploaded").result()
    assert err.value.status_code == 400 and "not a Key Vault reference" in str(err.value.message)


def test_an_unreachable_vault_is_reported_and_the_last_secret_kept(
    gw: GatewayEnv, vault: FakeKeyVault, ca: CertificateAuthority, kv_dir: Path
) -> None:
    c = gw.client
    # a second vault host trusting the same authority (its tokens), stopped after the first read
    down = FakeKeyVault(
        ca, kv_dir, tenant=vault.tenant, client_id=vault.client_id, client_secret=vault.client_secret
    )
    down.tokens = vault.tokens
    down.start()
    down.set_secret("token", "secret-token-value")
    c.named_value.begin_create_or_update(
        RG,
        gw.service,
        "kvdown",
        M.NamedValueCreateContract(display_name="kvdown", key_vault=_kv(down.identifier("token"))),
    ).result()
    down.stop()
    with pytest.raises(HttpResponseError) as err:
        c.named_value.begin_refresh_secret(RG, gw.service, "kvdown").result()
    assert err.value.status_code == 400
    assert "could not be reached" in str(err.value.message) and "secret-token-value" not in str(err.value)
    got = c.named_value.get(RG, gw.service, "kvdown")
    assert got.key_vault.last_status.code == "VaultUnreachable"
    assert "could not be reached" in got.key_vault.last_status.message
    assert c.named_value.list_value(RG, gw.service, "kvdown").value == "secret-token-value"  # kept
    # a new reference to the unreachable vault is refused
    with pytest.raises(HttpResponseError) as err:
        c.named_value.begin_create_or_update(
            RG,
            gw.service,
            "kvdown2",
            M.NamedValueCreateContract(display_name="kvdown2", key_vault=_kv(down.identifier("token"))),
        ).result()
    assert err.value.status_code == 400 and "could not be reached" in str(err.value.message)
    log = gw.server.log_path.read_text()
    assert "secret-token-value" not in log and vault.client_secret not in log


def test_secrets_are_read_again_periodically(
    server_factory: Callable[..., PorticoServer], vault: FakeKeyVault, kv_dir: Path
) -> None:
    # on PostgreSQL (the other tests run on SQLite): the refresh's compare-and-write under row locks
    server = server_factory(
        db="postgres", env={**vault.env(kv_dir / "ca.pem"), "PORTICO_KEYVAULT_REFRESH_SECONDS": "2"}
    )
    name = unique("kvp")
    client = make_service(server, name)
    vault.set_secret("periodic", "first")
    client.named_value.begin_create_or_update(
        RG,
        name,
        "kvp",
        M.NamedValueCreateContract(display_name="kvp", key_vault=_kv(vault.identifier("periodic"))),
    ).result()
    vault.set_secret("periodic", "second")

    def rotated() -> None:
        assert client.named_value.list_value(RG, name, "kvp").value == "second"

    eventually(rotated, timeout=30, interval=0.5)


def test_backup_carries_the_reference_and_restore_reads_the_secret_again(
    gw: GatewayEnv, vault: FakeKeyVault, ca: CertificateAuthority
) -> None:
    c, server = gw.client, gw.server
    key = server.cli("storage", "account", "create", "kvbackups").stdout.strip().splitlines()[-1].strip()
    server.cli("storage", "container", "create", "kvbackups", "backups")
    vault.set_secret("carried", "carried-value-1")
    secret, thumb = _client_cert(ca, "kv-carried", PFX)
    vault.set_secret("carried-cert", secret, PFX)
    c.named_value.begin_create_or_update(
        RG,
        gw.service,
        "kvcarried",
        M.NamedValueCreateContract(display_name="kvcarried", key_vault=_kv(vault.identifier("carried"))),
    ).result()
    c.certificate.create_or_update(
        RG,
        gw.service,
        "kvcarried",
        M.CertificateCreateOrUpdateParameters(key_vault=_kv(vault.identifier("carried-cert"))),
    )
    target = unique("kvdst")
    make_service(server, target)
    params = M.ApiManagementServiceBackupRestoreParameters(
        storage_account="kvbackups", container_name="backups", backup_name="kv", access_key=key
    )
    c.api_management_service.begin_backup(RG, gw.service, params).result()
    backed_up = datetime.now(UTC)
    vault.set_secret("carried", "carried-value-2")  # rotated after the backup
    c.api_management_service.begin_restore(RG, target, params).result()
    restored = c.named_value.get(RG, target, "kvcarried")
    assert restored.key_vault.secret_identifier == vault.identifier("carried") and restored.secret
    # the backup held no read of the secret (value and lastStatus are left out together): the
    # restored entity was never read, or read by the restored service's refresh since
    last = restored.key_vault.last_status
    assert last is None or last.time_stamp_utc > backed_up, last
    # the restored service reads the secret from the vault (its current version), not from the backup
    c.named_value.begin_refresh_secret(RG, target, "kvcarried").result()
    assert c.named_value.list_value(RG, target, "kvcarried").value == "carried-value-2"
    assert c.certificate.refresh_secret(RG, target, "kvcarried").thumbprint == thumb


def test_custom_hostname_certificate_from_key_vault(
    gw: GatewayEnv, vault: FakeKeyVault, tmp_path: Path
) -> None:
    host = f"kv.{gw.service}.test"
    pfx, pem = make_certificate(host, tmp_path, None)
    vault.set_secret("tls-cert", pfx, PFX)
    gw.api("kvtls", "kvtls", "http://127.0.0.1:9")
    gw.policy(
        '<policies><inbound><base/><return-response><set-status code="200"/></return-response></inbound></policies>',
        api="kvtls",
    )
    key = gw.subscription("kv-tls", "/apis")
    gw.hostnames([{"type": "Proxy", "hostName": host, "keyVaultId": vault.identifier("tls-cert")}])
    shown = gw.client.api_management_service.get(RG, gw.service).hostname_configurations
    assert [
        (h.host_name, h.certificate_source, h.certificate_status, h.certificate.subject) for h in shown
    ] == [(host, "KeyVault", "Completed", f"CN={host}")]
    assert shown[0].encoded_certificate is None and shown[0].key_vault_id == vault.identifier("tls-cert")
    raw = json.dumps(_raw_get(gw, "")["properties"]["hostnameConfigurations"])
    assert "keyVaultReadAt" not in raw and pfx[:40] not in raw
    cn, _status = eventually(lambda: presented(gw, host, pem, key, path="/kvtls/x"), timeout=5)
    assert cn == host

    # rotated in the vault: read again with the service's next write of its hostnames
    (tmp_path / "rotated").mkdir()
    new_pfx, new_pem = make_certificate(host, tmp_path / "rotated", None)
    vault.set_secret("tls-cert", new_pfx, PFX)
    gw.hostnames([{"type": "Proxy", "hostName": host, "keyVaultId": vault.identifier("tls-cert")}])
    eventually(lambda: presented(gw, host, new_pem, key, path="/kvtls/x"), timeout=5)

    # a secret that cannot be read: 400 naming the item, the hostnames unchanged
    with pytest.raises(HttpResponseError) as err:
        gw.hostnames([{"type": "Proxy", "hostName": host, "keyVaultId": vault.identifier("no-such-cert")}])
    assert err.value.status_code == 400 and "hostnameConfigurations[0].keyVaultId" in str(err.value.message)
    shown = gw.client.api_management_service.get(RG, gw.service).hostname_configurations
    assert shown[0].key_vault_id == vault.identifier("tls-cert")
    presented(gw, host, new_pem, key, path="/kvtls/x")


def test_what_the_vault_refuses_is_named(vault: FakeKeyVault, kv_dir: Path) -> None:
    """The client inside Portico against the fake vault, without a server: each refusal's code."""
    env = vault.env(kv_dir / "ca.pem")
    settings = Settings(**{k.removeprefix("PORTICO_").lower(): v for k, v in env.items()})
    vault.set_secret("locked", "locked-value")
    vault.forbidden.add("locked")

    def failure(s: Settings, identifier: str) -> KeyVaultFailure:
        with pytest.raises(KeyVaultFailure) as err:
            asyncio.run(KeyVaultAccess(s).fetch(identifier, None))
        assert "locked-value" not in err.value.message and vault.client_secret not in err.value.message
        return err.value

    assert failure(settings, vault.identifier("locked")).code == "Forbidden"
    # the challenge names https://vault.azure.net, which localhost is not under
    strict = settings.model_copy(update={"keyvault_verify_challenge_resource": True})
    assert failure(strict, vault.identifier("locked")).code == "InvalidChallenge"
    wrong = settings.model_copy(update={"keyvault_client_secret": SecretStr("not-the-secret")})
    assert failure(wrong, vault.identifier("locked")).code == "Unauthorized"
