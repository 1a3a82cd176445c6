"""The sign-in pages and the device-code endpoint in process (ASGI): error pages versus redirects,
escaping, security headers, CSRF, and the per-address limit on wrong device codes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from fastapi import FastAPI

from portico.identity.apps import create_app
from portico.identity.issuer import build_identity_router
from portico.identity.keys import SigningKeys
from portico.identity.pages import CODE_GUESSES
from portico.identity.people import build_people
from portico.identity.public_clients import AZURE_CLI
from portico.settings import Settings
from portico.store.db import Database

from .util import PUBLIC_URL, TENANT

CHALLENGE = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
AUTHORIZE = f"/{TENANT}/oauth2/v2.0/authorize"


@pytest.fixture
async def web(settings: Settings, db: Database, keys: SigningKeys) -> AsyncIterator[httpx.AsyncClient]:
    people = build_people(settings, db, keys)
    app = FastAPI()
    app.include_router(people.router)
    app.include_router(
        build_identity_router(
            settings, db, keys, extra_grants=people.grants, extra_discovery=people.discovery
        )
    )
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=PUBLIC_URL) as c:
        yield c


def params(**kw: str) -> dict[str, str]:
    base = {
        "client_id": AZURE_CLI,
        "response_type": "code",
        "redirect_uri": "http://localhost:41234",
        "scope": "https://management.azure.com//.default openid offline_access",
        "state": "st-1",
        "code_challenge": CHALLENGE,
        "code_challenge_method": "S256",
    }
    return {**base, **kw}


async def test_unknown_client_or_redirect_is_an_error_page_not_a_redirect(web: httpx.AsyncClient) -> None:
    r = await web.get(AUTHORIZE, params=params(client_id="00000000-0000-0000-0000-00000000dead"))
    assert r.status_code == 400 and "AADSTS700016" in r.text and "location" not in r.headers
    r = await web.get(AUTHORIZE, params=params(redirect_uri="https://evil.test/cb"))
    assert r.status_code == 400 and "AADSTS50011" in r.text and "https://evil.test/cb" in r.text


async def test_other_errors_go_back_to_the_redirect_uri(web: httpx.AsyncClient) -> None:
    for bad, error in (
        ({"code_challenge": ""}, "invalid_request"),
        ({"code_challenge_method": "plain"}, "invalid_request"),
        ({"response_type": "token"}, "unsupported_response_type"),
        ({"scope": "https://graph.microsoft.com/.default"}, "invalid_scope"),
        ({"prompt": "none"}, "interaction_required"),
    ):
        r = await web.get(AUTHORIZE, params=params(**bad))
        assert r.status_code == 303, (bad, r.text)
        where = urlsplit(r.headers["location"])
        query = parse_qs(where.query)
        assert where.netloc == "localhost:41234" and query["error"] == [error] and query["state"] == ["st-1"]


async def test_page_escapes_headers_and_csrf(web: httpx.AsyncClient, db: Database) -> None:
    r = await web.get(AUTHORIZE, params=params(login_hint='"><script>alert(1)</script>'))
    assert r.status_code == 200
    assert "<script>alert(1)</script>" not in r.text and "&lt;script&gt;alert(1)&lt;/script&gt;" in r.text
    assert "default-src 'none'" in r.headers["content-security-policy"]
    assert r.headers["x-frame-options"] == "DENY" and r.headers["cache-control"] == "no-store"
    cookie = r.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Secure" in cookie
    # A post without the cookie's token: the page again, no code.
    web.cookies.clear()
    forged = await web.post(
        AUTHORIZE, data={**params(), "csrf_token": "x", "username": "a@b.c", "password": "p"}
    )
    assert forged.status_code == 200 and "another site" in forged.text and "location" not in forged.headers
    # A confidential app (it has a secret) cannot use the public-client grants.
    client_id, _ = await create_app(db, "daemon")
    r = await web.post(f"/{TENANT}/oauth2/v2.0/devicecode", data={"client_id": client_id, "scope": "openid"})
    assert r.status_code == 400 and r.json()["error"] == "unauthorized_client"


async def test_wrong_device_codes_are_limited_per_address(web: httpx.AsyncClient) -> None:
    page = await web.get("/devicelogin")
    token = page.headers["set-cookie"].split("portico_csrf=", 1)[1].split(";", 1)[0]
    for i in range(CODE_GUESSES):
        r = await web.post("/devicelogin", data={"csrf_token": token, "user_code": f"WRONG{i:04d}"})
        assert r.status_code == 200 and "not valid or has expired" in r.text
        token = r.headers["set-cookie"].split("portico_csrf=", 1)[1].split(";", 1)[0]
    r = await web.post("/devicelogin", data={"csrf_token": token, "user_code": "WRONG9999"})
    assert r.status_code == 429 and "Too many wrong codes" in r.text
