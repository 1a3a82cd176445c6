"""TokenValidator: Portico's own tokens, every rejection path, and trusted external issuers."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import RSAKey

from portico.arm.errors import ArmError
from portico.identity.keys import SigningKeys
from portico.identity.validation import TokenValidator, parse_trusted_issuers
from portico.settings import Settings

from .util import TENANT, get_token, make_settings


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def claims_for(settings: Settings, **over: Any) -> dict[str, Any]:
    now = int(time.time())
    c: dict[str, Any] = {
        "iss": settings.issuer,
        "aud": settings.audience,
        "sub": "app-1",
        "oid": "app-1",
        "tid": TENANT,
        "iat": now,
        "nbf": now,
        "exp": now + 600,
    }
    c.update(over)
    return {k: v for k, v in c.items() if v is not None}


async def expect(validator: TokenValidator, header: str | None, code: str) -> ArmError:
    with pytest.raises(ArmError) as info:
        await validator.validate(header)
    err = info.value
    assert err.status == 401 and err.code == code, (err.code, err.message)
    challenge = err.headers["WWW-Authenticate"]
    assert challenge.startswith('Bearer authorization_uri="') and 'error="invalid_token"' in challenge
    if header and " " in header:
        token = header.split(" ", 1)[1]
        if len(token) > 8:
            assert token not in err.message and token not in challenge
    return err


@pytest.fixture
def validator(settings: Settings, keys: SigningKeys) -> TokenValidator:
    return TokenValidator(settings, keys)


async def test_accepts_issued_token(
    client: httpx.AsyncClient, creds: tuple[str, str], validator: TokenValidator, settings: Settings
) -> None:
    token = (await get_token(client, *creds)).json()["access_token"]
    p = await validator.validate(f"Bearer {token}")
    assert p.principal_id == creds[0]
    assert p.issuer == settings.issuer and p.tenant_id == TENANT
    assert p.local and p.assignment_issuer == "local"  # role assignments of local apps
    assert p.claims["appid"] == creds[0]
    # Second time comes from the cache and gives the same answer.
    assert await validator.validate(f"bearer {token}") == p


async def test_missing_and_malformed(
    validator: TokenValidator, keys: SigningKeys, settings: Settings
) -> None:
    err = await expect(validator, None, "AuthenticationFailed")
    assert "'Authorization' header is missing" in err.message
    await expect(validator, "", "AuthenticationFailed")
    good = keys.sign(claims_for(settings))
    await expect(validator, f"Basic {good}", "InvalidAuthenticationToken")
    await expect(validator, good, "InvalidAuthenticationToken")  # no scheme
    await expect(validator, "Bearer ", "InvalidAuthenticationToken")
    await expect(validator, "Bearer garbage", "InvalidAuthenticationToken")
    await expect(validator, "Bearer a.b.c", "InvalidAuthenticationToken")
    await expect(validator, "Bearer " + b64(b"[1]") + "." + b64(b"{}") + ".x", "InvalidAuthenticationToken")


async def test_expired_and_not_yet_valid(
    validator: TokenValidator, keys: SigningKeys, settings: Settings
) -> None:
    now = int(time.time())
    expired = keys.sign(claims_for(settings, iat=now - 4000, nbf=now - 4000, exp=now - 120))
    err = await expect(validator, f"Bearer {expired}", "ExpiredAuthenticationToken")
    assert "expired" in err.message
    within_skew = keys.sign(claims_for(settings, exp=now - 30))
    assert (await validator.validate(f"Bearer {within_skew}")).principal_id == "app-1"
    future = keys.sign(claims_for(settings, nbf=now + 600, exp=now + 1200))
    await expect(validator, f"Bearer {future}", "InvalidAuthenticationToken")
    no_exp = keys.sign(claims_for(settings, exp=None))
    await expect(validator, f"Bearer {no_exp}", "InvalidAuthenticationToken")


async def test_cached_token_still_expires(settings: Settings, keys: SigningKeys) -> None:
    now = [time.time()]
    v = TokenValidator(settings, keys, clock=lambda: now[0])
    token = keys.sign(claims_for(settings, exp=int(now[0]) + 100))
    await v.validate(f"Bearer {token}")
    now[0] += 100 + 61
    await expect(v, f"Bearer {token}", "ExpiredAuthenticationToken")


async def test_wrong_audience_and_issuer(
    validator: TokenValidator, keys: SigningKeys, settings: Settings
) -> None:
    t = keys.sign(claims_for(settings, aud="https://graph.microsoft.com/"))
    err = await expect(validator, f"Bearer {t}", "InvalidAuthenticationTokenAudience")
    assert settings.audience in err.message
    t = keys.sign(claims_for(settings, aud=["https://other/", settings.audience.rstrip("/")]))
    assert (await validator.validate(f"Bearer {t}")).principal_id == "app-1"
    t = keys.sign(claims_for(settings, iss="https://evil.example/contoso/v2.0"))
    await expect(validator, f"Bearer {t}", "InvalidAuthenticationTokenIssuer")
    t = keys.sign(claims_for(settings, iss=None))
    await expect(validator, f"Bearer {t}", "InvalidAuthenticationTokenIssuer")


async def test_unknown_kid_and_foreign_key(validator: TokenValidator, settings: Settings) -> None:
    other = RSAKey.generate_key(2048, parameters={"kid": "unknown-kid"})
    t = jwt.encode({"alg": "RS256", "kid": "unknown-kid"}, claims_for(settings), other, algorithms=["RS256"])
    err = await expect(validator, f"Bearer {t}", "InvalidAuthenticationToken")
    assert "unknown key" in err.message
    t = jwt.encode({"alg": "RS256"}, claims_for(settings), other, algorithms=["RS256"])  # no kid at all
    await expect(validator, f"Bearer {t}", "InvalidAuthenticationToken")


async def test_signed_by_other_key_with_our_kid(
    validator: TokenValidator, keys: SigningKeys, settings: Settings
) -> None:
    other = RSAKey.generate_key(2048)
    t = jwt.encode(
        {"alg": "RS256", "kid": keys.active_kid}, claims_for(settings), other, algorithms=["RS256"]
    )
    err = await expect(validator, f"Bearer {t}", "InvalidAuthenticationToken")
    assert "signature" in err.message


async def test_alg_none(validator: TokenValidator, keys: SigningKeys, settings: Settings) -> None:
    for alg in ("none", "None", "NONE"):
        header = b64(json.dumps({"alg": alg, "kid": keys.active_kid, "typ": "JWT"}).encode())
        payload = b64(json.dumps(claims_for(settings)).encode())
        for sig in ("", "AAAA"):
            err = await expect(validator, f"Bearer {header}.{payload}.{sig}", "InvalidAuthenticationToken")
            assert "RS256" in err.message


async def test_hs256_with_public_key_as_secret(
    validator: TokenValidator, keys: SigningKeys, settings: Settings
) -> None:
    pub_pem = keys.cached_key(keys.active_kid).as_pem(private=False)  # type: ignore[union-attr]
    jwk = json.dumps(keys.jwks()["keys"][0]).encode()
    for secret in (pub_pem, jwk):
        header = b64(json.dumps({"alg": "HS256", "kid": keys.active_kid, "typ": "JWT"}).encode())
        payload = b64(json.dumps(claims_for(settings)).encode())
        sig = b64(hmac.new(secret, f"{header}.{payload}".encode(), hashlib.sha256).digest())
        await expect(validator, f"Bearer {header}.{payload}.{sig}", "InvalidAuthenticationToken")


async def test_tampered_payload(validator: TokenValidator, keys: SigningKeys, settings: Settings) -> None:
    t = keys.sign(claims_for(settings))
    header, _, sig = t.split(".")
    forged = b64(json.dumps(claims_for(settings, sub="admin", oid="admin")).encode())
    err = await expect(validator, f"Bearer {header}.{forged}.{sig}", "InvalidAuthenticationToken")
    assert "signature" in err.message
    # Tampered signature too.
    bad_sig = sig[:-4] + ("AAAA" if not sig.endswith("AAAA") else "BBBB")
    await expect(validator, f"Bearer {t.rsplit('.', 1)[0]}.{bad_sig}", "InvalidAuthenticationToken")


async def test_key_added_by_another_node_is_found(
    tmp_path: Path, keys: SigningKeys, settings: Settings, db: Any
) -> None:
    """A token signed with a key another node inserted later is verified after one DB reload."""
    from datetime import UTC, datetime

    from portico.identity.keys import _generate_pem, _import
    from portico.store.schema import signing_keys

    pem = _generate_pem()
    kid = _import(pem).thumbprint()
    async with db.write() as conn:
        await conn.execute(
            signing_keys.insert().values(kid=kid, private_pem=pem, created_at=datetime.now(UTC), active=False)
        )
    keys._last_reload = 0.0  # as if the last reload was long ago
    t = jwt.encode(
        {"alg": "RS256", "kid": kid}, claims_for(settings), _import(pem, kid), algorithms=["RS256"]
    )
    v = TokenValidator(settings, keys)
    assert (await v.validate(f"Bearer {t}")).principal_id == "app-1"
    assert {k["kid"] for k in keys.jwks()["keys"]} == {kid, keys.active_kid}


# --- external issuers ---------------------------------------------------------------------------

IDP = "https://idp.example/tenant-x/v2.0"
EXT_AUD = "api://portico"


class FakeIdp:
    def __init__(self) -> None:
        self.keys = [RSAKey.generate_key(2048, parameters={"kid": "ext1"})]
        self.calls: list[str] = []

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.calls.append(request.url.path)
        if str(request.url) == f"{IDP}/.well-known/openid-configuration":
            return httpx.Response(200, json={"issuer": IDP, "jwks_uri": "https://idp.example/keys"})
        if str(request.url) == "https://idp.example/keys":
            return httpx.Response(
                200, json={"keys": [{**k.as_dict(private=False), "use": "sig"} for k in self.keys]}
            )
        return httpx.Response(404)

    def token(self, key: RSAKey, **over: Any) -> str:
        now = int(time.time())
        claims = {
            "iss": IDP,
            "aud": EXT_AUD,
            "sub": "subject-1",
            "oid": "object-1",
            "tid": "tenant-x",
            "iat": now,
            "exp": now + 600,
        }
        claims.update(over)
        claims = {k: v for k, v in claims.items() if v is not None}
        return jwt.encode({"alg": "RS256", "kid": key.kid}, claims, key, algorithms=["RS256"])


async def test_external_issuer(tmp_path: Path, keys: SigningKeys) -> None:
    idp = FakeIdp()
    s = make_settings(tmp_path, trusted_issuers=f" {IDP}|{EXT_AUD} , https://other.example|api://x")
    async with httpx.AsyncClient(transport=httpx.MockTransport(idp.handler)) as http:
        v = TokenValidator(s, keys, http_client=http, jwks_min_refetch=0)
        p = await v.validate(f"Bearer {idp.token(idp.keys[0])}")
        assert (p.principal_id, p.issuer, p.tenant_id) == ("object-1", IDP, "tenant-x")
        assert not p.local and p.assignment_issuer == IDP
        assert idp.calls == ["/tenant-x/v2.0/.well-known/openid-configuration", "/keys"]
        # Keys are cached: a second token costs no HTTP call.
        p = await v.validate(f"Bearer {idp.token(idp.keys[0], oid=None, sub='only-sub')}")
        assert p.principal_id == "only-sub"
        assert len(idp.calls) == 2
        # Wrong audience for this issuer (Portico's own audience does not count).
        t = idp.token(idp.keys[0], aud=s.audience)
        await expect(v, f"Bearer {t}", "InvalidAuthenticationTokenAudience")
        # Rotation: an unknown kid triggers one refetch, then the new key verifies.
        idp.keys.append(RSAKey.generate_key(2048, parameters={"kid": "ext2"}))
        assert (await v.validate(f"Bearer {idp.token(idp.keys[1])}")).principal_id == "object-1"
        assert len(idp.calls) == 4
        # A key the issuer does not publish stays unknown after the one refetch.
        rogue = RSAKey.generate_key(2048, parameters={"kid": "rogue"})
        await expect(v, f"Bearer {idp.token(rogue)}", "InvalidAuthenticationToken")
        assert len(idp.calls) == 6


async def test_external_issuer_refetch_is_rate_limited(tmp_path: Path, keys: SigningKeys) -> None:
    idp = FakeIdp()
    s = make_settings(tmp_path, trusted_issuers=f"{IDP}|{EXT_AUD}")
    async with httpx.AsyncClient(transport=httpx.MockTransport(idp.handler)) as http:
        v = TokenValidator(s, keys, http_client=http)  # default: at most one refetch per 5 s
        await v.validate(f"Bearer {idp.token(idp.keys[0])}")
        for i in range(5):
            rogue = RSAKey.generate_key(2048, parameters={"kid": f"rogue{i}"})
            await expect(v, f"Bearer {idp.token(rogue)}", "InvalidAuthenticationToken")
        assert len(idp.calls) == 2


async def test_external_issuer_unreachable(tmp_path: Path, keys: SigningKeys) -> None:
    def down(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("down", request=request)

    idp = FakeIdp()
    s = make_settings(tmp_path, trusted_issuers=f"{IDP}|{EXT_AUD}")
    async with httpx.AsyncClient(transport=httpx.MockTransport(down)) as http:
        v = TokenValidator(s, keys, http_client=http)
        await expect(v, f"Bearer {idp.token(idp.keys[0])}", "InvalidAuthenticationToken")


def test_parse_trusted_issuers() -> None:
    assert parse_trusted_issuers("") == {}
    assert parse_trusted_issuers("a|b, c|d ,") == {"a": "b", "c": "d"}
    with pytest.raises(ValueError):
        parse_trusted_issuers("no-audience")
    with pytest.raises(ValueError, match="reserved"):
        parse_trusted_issuers("local|api://x")  # the name role assignments give Portico's own issuer
