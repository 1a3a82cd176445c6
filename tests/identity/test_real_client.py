"""The real azure-identity ClientSecretCredential against the issuer served by uvicorn over TLS."""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import uvicorn
from azure.core.exceptions import ClientAuthenticationError
from azure.identity import ClientSecretCredential
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from fastapi import FastAPI

from portico.identity.apps import create_app
from portico.identity.issuer import build_identity_router
from portico.identity.keys import SigningKeys
from portico.identity.validation import TokenValidator
from portico.store.db import Database

from .util import TENANT, make_settings

pytestmark = pytest.mark.slow


def self_signed(dir_: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "portico-test")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = dir_ / "cert.pem", dir_ / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


@pytest.fixture
async def tls_server(tmp_path: Path, db: Database) -> AsyncIterator[tuple[str, Path, TokenValidator]]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    settings = make_settings(tmp_path, public_url=f"https://127.0.0.1:{port}")
    keys = SigningKeys(db)
    await keys.start()
    app = FastAPI()
    app.include_router(build_identity_router(settings, db, keys))
    cert, key = self_signed(tmp_path)
    config = uvicorn.Config(
        app,
        ssl_certfile=str(cert),
        ssl_keyfile=str(key),
        log_level="warning",
        lifespan="off",
        timeout_graceful_shutdown=1,
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    for _ in range(200):
        if server.started:
            break
        await asyncio.sleep(0.02)
    assert server.started
    try:
        yield f"https://127.0.0.1:{port}", cert, TokenValidator(settings, keys)
    finally:
        server.should_exit = True
        await task
        sock.close()


async def test_client_secret_credential(tls_server: tuple[str, Path, TokenValidator], db: Database) -> None:
    authority, ca, validator = tls_server
    client_id, secret = await create_app(db, "sdk")

    def get(secret_: str) -> str:
        cred = ClientSecretCredential(
            TENANT,
            client_id,
            secret_,
            authority=authority,
            disable_instance_discovery=True,
            connection_verify=str(ca),
        )
        try:
            return cred.get_token("https://management.azure.com/.default").token
        finally:
            cred.close()

    token = await asyncio.to_thread(get, secret)
    principal = await validator.validate(f"Bearer {token}")
    assert principal.principal_id == client_id

    with pytest.raises(ClientAuthenticationError) as info:
        await asyncio.to_thread(get, "wrong-secret")
    assert "invalid_client" in str(info.value) or "Invalid client secret" in str(info.value)
    assert "wrong-secret" not in str(info.value)
