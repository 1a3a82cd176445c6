"""Key Vault references, pure parts: secret identifiers, certificates as Key Vault stores them
(PFX without password, PEM), named value limits, what a backup leaves out, when a refresh is due."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, pkcs12

from portico.arm.errors import ArmError
from portico.dr.drill import _without_read_status
from portico.resources.keyvault import (
    PEM_CONTENT_TYPE,
    PFX_CONTENT_TYPE,
    Fetched,
    KeyVaultAccess,
    KeyVaultFailure,
    certificate_material,
    named_value_material,
    parse_identifier,
)
from portico.resources.keyvault_refresh import is_due, without_read_secrets
from portico.settings import Settings
from tests.support.certs import CertificateAuthority


def test_secret_identifiers() -> None:
    ref = parse_identifier("https://v1.vault.azure.net/secrets/db-pass")
    assert (ref.vault_url, ref.name, ref.version) == ("https://v1.vault.azure.net", "db-pass", None)
    ref = parse_identifier("https://v1.vault.azure.net:8443/secrets/db-pass/0123abcd")
    assert (ref.vault_url, ref.name, ref.version) == (
        "https://v1.vault.azure.net:8443",
        "db-pass",
        "0123abcd",
    )
    for bad in (
        None,
        "",
        "http://v1.vault.azure.net/secrets/x",
        "https://v1.vault.azure.net/keys/x",
        "https://v1.vault.azure.net/secrets",
        "https://v1.vault.azure.net/secrets/x/y/z",
        "https://v1.vault.azure.net/secrets/x?version=1",
    ):
        with pytest.raises(ArmError) as err:
            parse_identifier(bad)
        assert err.value.status == 400 and "secretIdentifier" in err.value.message


def test_certificates_as_key_vault_stores_them() -> None:
    ca = CertificateAuthority()
    key, cert = ca.issue("kv.example", client=True)
    thumb = cert.fingerprint(hashes.SHA1()).hex().upper()
    pfx = base64.b64encode(
        pkcs12.serialize_key_and_certificates(None, key, cert, None, NoEncryption())
    ).decode()
    got = certificate_material(Fetched(pfx, PFX_CONTENT_TYPE, "1"))
    assert got["data"] == pfx and got["thumbprint"] == thumb and got["subject"] == "CN=kv.example"
    pem = (
        cert.public_bytes(Encoding.PEM)
        + key.private_bytes(Encoding.PEM, PrivateFormat.TraditionalOpenSSL, NoEncryption())
        + ca.pem
    ).decode()
    for content_type in (PEM_CONTENT_TYPE, None):
        got = certificate_material(Fetched(pem, content_type, "1"))
        k, c, chain = pkcs12.load_key_and_certificates(base64.b64decode(got["data"]), None)
        assert k is not None and c == cert and [x.subject for x in chain] == [ca.cert.subject]
        assert got["thumbprint"] == thumb
    for bad in ("some-api-key-value", base64.b64encode(b"junk").decode(), "-----BEGIN CERTIFICATE-----\nxx"):
        with pytest.raises(KeyVaultFailure) as err:
            certificate_material(Fetched(bad, None, "1"))
        assert err.value.code == "InvalidSecret" and bad not in err.value.message


def test_named_value_limits() -> None:
    assert named_value_material(Fetched("x" * 4096, None, "1")) == {"value": "x" * 4096, "secret": True}
    with pytest.raises(KeyVaultFailure):
        named_value_material(Fetched("x" * 4097, None, "1"))


def test_backups_leave_read_secrets_out() -> None:
    ref = {
        "secretIdentifier": "https://v/secrets/s",
        "identityClientId": None,
        "lastStatus": {"code": "Success"},
    }
    rows: list[Any] = [
        (
            "certificate",
            "",
            "kv",
            None,
            "e1",
            orjson.dumps({"data": "PFX", "thumbprint": "T", "keyVault": ref}),
        ),
        ("certificate", "", "own", None, "e2", orjson.dumps({"data": "PFX2", "password": "pw"})),
        (
            "namedValue",
            "",
            "kv",
            "kv",
            "e3",
            orjson.dumps({"value": "s3cret", "secret": True, "keyVault": ref}).decode(),
        ),
        ("namedValue", "", "own", "own", "e4", orjson.dumps({"value": "mine", "secret": True}).decode()),
        ("api", "", "keyVault", None, "e5", b'{"path":"keyVault"}'),
    ]
    before = list(rows)

    async def batches() -> AsyncIterator[list[Any]]:
        yield rows

    async def collect() -> list[Any]:
        return [r async for batch in without_read_secrets(batches()) for r in batch]

    out = asyncio.run(collect())
    kv_cert, own_cert, kv_nv, own_nv, api = out
    assert orjson.loads(kv_cert[5]) == {
        "thumbprint": "T",
        "keyVault": {"secretIdentifier": "https://v/secrets/s", "identityClientId": None},
    }
    assert isinstance(kv_cert[5], bytes) and isinstance(kv_nv[5], str)
    assert orjson.loads(kv_nv[5]) == {
        "secret": True,
        "keyVault": {"secretIdentifier": "https://v/secrets/s", "identityClientId": None},
    }
    assert (own_cert, own_nv, api) == (before[1], before[3], before[4])


def test_when_a_refresh_is_due() -> None:
    now = datetime.now(UTC)
    stamp = (now - timedelta(hours=3)).isoformat().replace("+00:00", "Z")
    data = {
        "keyVault": {
            "secretIdentifier": "https://v/secrets/s",
            "lastStatus": {"code": "Success", "timeStampUtc": stamp},
        }
    }
    assert not is_due(data, 4 * 3600, now) and is_due(data, 2 * 3600, now)
    assert is_due({"keyVault": {"secretIdentifier": "https://v/secrets/s"}}, 4 * 3600, now)  # never read
    assert not is_due({"value": "own"}, 1, now) and not is_due({"keyVault": None}, 1, now)


def test_a_drill_compares_references_not_read_status() -> None:
    ref = {"secretIdentifier": "https://v/secrets/s", "identityClientId": None}
    primary = {"secret": True, "keyVault": {**ref, "lastStatus": {"code": "Success", "timeStampUtc": "a"}}}
    standby = {"secret": True, "keyVault": {**ref, "lastStatus": {"code": "Success", "timeStampUtc": "b"}}}
    assert _without_read_status(primary) == _without_read_status(standby) == {"secret": True, "keyVault": ref}
    assert _without_read_status({"value": "v"}) == {"value": "v"}


def test_an_incomplete_credential_is_refused_with_its_settings_named() -> None:
    access = KeyVaultAccess(Settings(keyvault_client_id="reader", keyvault_client_secret="never-shown"))
    with pytest.raises(KeyVaultFailure) as failure:
        access.check_configuration()
    assert "PORTICO_KEYVAULT_TENANT_ID" in failure.value.message
    with pytest.raises(ArmError) as err:
        access.check_identity(None, "properties.keyVault.identityClientId")
    assert err.value.status == 400 and "never-shown" not in str(err.value.body())
    with pytest.raises(KeyVaultFailure) as failure:
        asyncio.run(access.fetch("https://v.vault.azure.net/secrets/s", None))
    assert failure.value.code == "CredentialNotConfigured"


def test_identity_client_ids_under_a_client_secret_credential() -> None:
    access = KeyVaultAccess(
        Settings(keyvault_tenant_id="t", keyvault_client_id="Reader-Id", keyvault_client_secret="s")
    )
    access.check_identity(None, "f")
    access.check_identity("reader-id", "f")  # the configured client itself, any case
    with pytest.raises(ArmError) as err:
        access.check_identity("other-id", "properties.keyVault.identityClientId")
    assert err.value.status == 400 and "identityClientId" in err.value.message
