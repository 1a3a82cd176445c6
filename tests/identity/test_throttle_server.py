"""End to end over HTTPS: a real server answers 429 + Retry-After after 10 wrong secrets for one
client id from one address, and other clients keep getting tokens."""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx
import pytest

from tests.support.server import PorticoServer

pytestmark = pytest.mark.slow


def test_failed_client_authentications_are_throttled(server_factory: Callable[..., PorticoServer]) -> None:
    server = server_factory()
    other = json.loads(server.cli("app", "create", "--name", "other", "--json").stdout)
    admin_id = server.admin()["client_id"]
    url = f"{server.url}/{server.tenant}/oauth2/v2.0/token"
    with httpx.Client(verify=server.ssl_context()) as http:

        def token(client_id: str, secret: str) -> httpx.Response:
            form = {
                "grant_type": "client_credentials",
                "client_id": client_id,
                "client_secret": secret,
                "scope": "https://management.azure.com/.default",
            }
            return http.post(url, data=form)

        assert [token(admin_id, f"wrong-{i}").status_code for i in range(10)] == [401] * 10
        r = token(admin_id, "wrong-again")
        assert r.status_code == 429, r.text
        assert r.json()["error"] == "temporarily_unavailable"
        assert 1 <= int(r.headers["Retry-After"]) <= 60
        for _ in range(3):
            assert token(other["client_id"], other["client_secret"]).status_code == 200
