"""Discovery document, JWKS and the client-credentials token endpoint."""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path

import httpx
from sqlalchemy import select

from portico.identity.apps import (
    check_secret,
    create_app,
    delete_app,
    ensure_bootstrap_admin,
    get_app,
    list_apps,
    verify_secret,
)
from portico.identity.keys import SigningKeys
from portico.identity.rbac import list_assignments
from portico.settings import Settings
from portico.store.db import Database
from portico.store.schema import apps, signing_keys

from .util import PUBLIC_URL, TENANT, get_token, open_db

TOKEN_URL = f"/{TENANT}/oauth2/v2.0/token"


def _claims(token: str) -> dict:
    seg = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(seg + "=" * (-len(seg) % 4)))


def _header(token: str) -> dict:
    seg = token.split(".")[0]
    return json.loads(base64.urlsafe_b64decode(seg + "=" * (-len(seg) % 4)))


async def test_discovery_document(client: httpx.AsyncClient, settings: Settings) -> None:
    r = await client.get(f"/{TENANT}/v2.0/.well-known/openid-configuration")
    assert r.status_code == 200
    doc = r.json()
    assert doc["issuer"] == settings.issuer == f"{PUBLIC_URL}/{TENANT}/v2.0"
    assert doc["token_endpoint"] == f"{PUBLIC_URL}/{TENANT}/oauth2/v2.0/token"
    assert doc["jwks_uri"] == f"{PUBLIC_URL}/{TENANT}/discovery/v2.0/keys"
    assert doc["authorization_endpoint"].startswith(f"{PUBLIC_URL}/{TENANT}/")
    assert doc["id_token_signing_alg_values_supported"] == ["RS256"]
    assert set(doc["token_endpoint_auth_methods_supported"]) == {"client_secret_post", "client_secret_basic"}
    assert doc["grant_types_supported"] == ["client_credentials"]
    assert "response_types_supported" in doc


async def test_other_tenant_is_404(client: httpx.AsyncClient) -> None:
    for path in ("/other/v2.0/.well-known/openid-configuration", "/other/discovery/v2.0/keys"):
        r = await client.get(path)
        assert r.status_code == 404
        assert r.json()["error"] == "invalid_tenant"
    r = await client.post("/other/oauth2/v2.0/token", data={"grant_type": "client_credentials"})
    assert r.status_code == 404


async def test_jwks(client: httpx.AsyncClient, keys: SigningKeys) -> None:
    r = await client.get(f"/{TENANT}/discovery/v2.0/keys")
    assert r.status_code == 200
    [jwk] = r.json()["keys"]
    assert jwk["kid"] == keys.active_kid
    assert jwk["kty"] == "RSA" and jwk["use"] == "sig" and jwk["alg"] == "RS256"
    assert jwk["e"] == "AQAB" and len(jwk["n"]) > 300
    assert "d" not in jwk and "p" not in jwk  # never the private parts


async def test_token_success(
    client: httpx.AsyncClient, creds: tuple[str, str], settings: Settings, keys: SigningKeys
) -> None:
    client_id, secret = creds
    r = await get_token(client, client_id, secret)
    assert r.status_code == 200, r.text
    assert r.headers["cache-control"] == "no-store"
    body = r.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == settings.token_lifetime_seconds == body["ext_expires_in"]
    assert isinstance(body["expires_in"], int)
    header, claims = _header(body["access_token"]), _claims(body["access_token"])
    assert header["alg"] == "RS256" and header["kid"] == keys.active_kid
    assert claims["iss"] == settings.issuer
    assert claims["aud"] == settings.audience
    for c in ("sub", "oid", "appid", "azp"):
        assert claims[c] == client_id
    assert claims["tid"] == TENANT and claims["idtyp"] == "app" and claims["jti"]
    assert claims["exp"] - claims["iat"] == settings.token_lifetime_seconds
    assert claims["nbf"] <= claims["iat"]
    doc = (await client.get(f"/{TENANT}/v2.0/.well-known/openid-configuration")).json()
    assert set(claims) <= set(doc["claims_supported"]), set(claims) - set(doc["claims_supported"])


async def test_token_with_basic_auth_and_scope_variants(
    client: httpx.AsyncClient, creds: tuple[str, str]
) -> None:
    client_id, secret = creds
    basic = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    r = await client.post(
        TOKEN_URL,
        data={"grant_type": "client_credentials", "scope": "https://management.azure.com//.default"},
        headers={"Authorization": f"Basic {basic}"},
    )
    # "{audience}/.default" with the trailing slash kept: what az asks for; Entra accepts it too.
    assert r.status_code == 200, r.text
    for scope in ("https://management.azure.com/.default", "HTTPS://management.azure.com/.default"):
        r = await client.post(
            TOKEN_URL,
            data={"grant_type": "client_credentials", "scope": scope},
            headers={"Authorization": f"Basic {basic}"},
        )
        assert r.status_code == 200, r.text


async def test_audience_without_trailing_slash(tmp_path: Path, db: Database, keys: SigningKeys) -> None:
    from fastapi import FastAPI

    from portico.identity.issuer import build_identity_router

    from .util import make_settings

    s = make_settings(tmp_path, audience="api://portico")
    app = FastAPI()
    app.include_router(build_identity_router(s, db, keys))
    client_id, secret = await create_app(db, "x")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=PUBLIC_URL) as c:
        for scope, ok in (
            ("api://portico/.default", True),
            ("api://portico.default", True),
            ("api://other/.default", False),
        ):
            r = await get_token(c, client_id, secret, scope=scope)
            assert (r.status_code == 200) is ok, (scope, r.text)


async def test_invalid_client(client: httpx.AsyncClient, creds: tuple[str, str]) -> None:
    client_id, secret = creds
    wrong = "not-the-secret-" + secret[:5]
    r = await get_token(client, client_id, wrong)
    assert r.status_code == 401
    assert r.json()["error"] == "invalid_client"
    assert wrong not in r.text and secret not in r.text
    r = await get_token(client, "00000000-0000-0000-0000-000000000000", secret)
    assert r.status_code == 401 and r.json()["error"] == "invalid_client"
    assert secret not in r.text
    r = await get_token(client, client_id, "")
    assert r.status_code == 401 and r.json()["error"] == "invalid_client"
    # Basic auth failures also tell the client which scheme to use.
    basic = base64.b64encode(f"{client_id}:{wrong}".encode()).decode()
    r = await client.post(
        TOKEN_URL,
        data={"grant_type": "client_credentials", "scope": "https://management.azure.com/.default"},
        headers={"Authorization": f"Basic {basic}"},
    )
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Basic"


async def test_invalid_scope(client: httpx.AsyncClient, creds: tuple[str, str]) -> None:
    for scope in (
        "https://graph.microsoft.com/.default",
        "",
        "https://management.azure.com/user_impersonation",
    ):
        r = await get_token(client, *creds, scope=scope)
        assert r.status_code == 400, scope
        assert r.json()["error"] == "invalid_scope"
    # Reserved OIDC scopes next to the resource scope are ignored.
    r = await get_token(
        client, *creds, scope="https://management.azure.com/.default offline_access openid profile"
    )
    assert r.status_code == 200


async def test_unsupported_grant_and_bad_requests(client: httpx.AsyncClient, creds: tuple[str, str]) -> None:
    r = await get_token(client, *creds, grant_type="password")
    assert r.status_code == 400 and r.json()["error"] == "unsupported_grant_type"
    r = await get_token(client, *creds, grant_type="")
    assert r.status_code == 400 and r.json()["error"] == "invalid_request"
    r = await client.post(TOKEN_URL, json={"grant_type": "client_credentials"})
    assert r.status_code == 400 and r.json()["error"] == "invalid_request"
    r = await client.post(TOKEN_URL, data={"grant_type": "client_credentials", "client_secret": "x"})
    assert r.status_code == 400 and r.json()["error"] == "invalid_request"
    r = await client.post(
        TOKEN_URL,
        content=f"grant_type=client_credentials&client_id={creds[0]}&client_id=x&client_secret=y",
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert r.status_code == 400 and r.json()["error"] == "invalid_request"


async def test_secret_stored_hashed(db: Database) -> None:
    client_id, secret = await create_app(db, "hashed")
    async with db.read() as conn:
        rows = (await conn.execute(select(apps))).all()
    dump = repr(rows)
    assert secret not in dump
    [row] = [r for r in rows if r.client_id == client_id]
    assert row.secret_hash.startswith("scrypt$")
    assert check_secret(secret, row.secret_hash)
    # The raw bytes of the database file do not contain it either.
    path = Path(db.url.split("///", 1)[1])
    raw = b"".join(p.read_bytes() for p in path.parent.glob(path.name + "*"))
    assert secret.encode() not in raw
    assert await verify_secret(db, client_id, secret)
    assert not await verify_secret(db, client_id, secret + "x")
    assert not await verify_secret(db, "unknown", secret)


async def test_app_lifecycle_and_bootstrap(tmp_path: Path, db: Database) -> None:
    path = await ensure_bootstrap_admin(db, tmp_path / "data", tenant_id=TENANT)
    assert path == tmp_path / "data" / "admin-credentials.json"
    assert path.stat().st_mode & 0o777 == 0o600
    data = json.loads(path.read_text())
    assert data["tenant_id"] == TENANT
    assert await verify_secret(db, data["client_id"], data["client_secret"])
    [a] = await list_assignments(db, data["client_id"])
    assert (a.role, a.scope) == ("Owner", "/")
    # Apps exist now: nothing more is created.
    assert await ensure_bootstrap_admin(db, tmp_path / "data") is None
    assert [x.display_name for x in await list_apps(db)] == ["admin"]
    assert (await get_app(db, data["client_id"])) is not None
    assert await delete_app(db, data["client_id"])
    assert await list_assignments(db, data["client_id"]) == []
    assert not await delete_app(db, data["client_id"])


async def test_keys_shared_between_nodes(tmp_path: Path) -> None:
    """Two nodes on one database, starting together, agree on one signing key."""
    db1 = await open_db(tmp_path / "shared.db")
    db2 = Database(db1.url)
    try:
        k1, k2 = SigningKeys(db1), SigningKeys(db2)
        await asyncio.gather(k1.start(), k2.start())
        assert k1.active_kid == k2.active_kid
        assert k1.jwks() == k2.jwks()
        async with db1.read() as conn:
            rows = (await conn.execute(select(signing_keys.c.kid, signing_keys.c.private_pem))).all()
        assert len(rows) == 1 and rows[0].private_pem.startswith(b"-----BEGIN PRIVATE KEY-----")
        k3 = SigningKeys(db1)
        await k3.start()
        assert k3.active_kid == k1.active_kid
    finally:
        await db1.close()
        await db2.close()
