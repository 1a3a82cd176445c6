"""Helpers of the people sign-in tests: users made with the server-side CLI, the sign-in pages
played over HTTP as a browser would (cookies, hidden fields, CSRF token), and an azure-core
credential over an MSAL account."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from html.parser import HTMLParser
from typing import Any

import httpx
import msal
from azure.core.credentials import AccessToken

from tests.support.server import REPO, PorticoServer

ARM_SCOPE = "https://management.azure.com//.default"  # the form az sends


def subprocess_cli(server: PorticoServer, *args: str, stdin: str) -> subprocess.CompletedProcess[str]:
    """`portico ARGS` with a line on standard input (passwords never go on the command line)."""
    env = {**os.environ, **server.env, "PORTICO_DATA_DIR": str(server.data_dir)}
    return subprocess.run(
        [sys.executable, "-m", "portico.cli", *args],
        env=env,
        input=stdin + "\n",
        capture_output=True,
        text=True,
        cwd=REPO,
    )


def create_user(server: PorticoServer, upn: str, password: str, name: str = "") -> dict[str, Any]:
    out = subprocess_cli(
        server,
        "user",
        "create",
        "--upn",
        upn,
        "--name",
        name or upn,
        "--password-stdin",
        "--json",
        stdin=password,
    )
    assert out.returncode == 0, out.stderr
    return dict(json.loads(out.stdout))


class _Forms(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.forms: list[dict[str, str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "form":
            self.forms.append({})
        elif tag == "input" and a.get("type") == "hidden" and self.forms:
            self.forms[-1][a.get("name") or ""] = a.get("value") or ""


def hidden_fields(html: str) -> dict[str, str]:
    p = _Forms()
    p.feed(html)
    assert p.forms, html[:2000]
    return p.forms[0]


class PageClient:
    """A cookie-keeping HTTP client playing the person at the sign-in pages."""

    def __init__(self, server: PorticoServer) -> None:
        self.http = httpx.Client(base_url=server.url, verify=server.ssl_context(), timeout=30)

    def close(self) -> None:
        self.http.close()

    def enter_device_code(self, user_code: str) -> httpx.Response:
        page = self.http.get("/devicelogin")
        assert page.status_code == 200, page.text
        return self.http.post("/devicelogin", data={**hidden_fields(page.text), "user_code": user_code})

    def device_sign_in(
        self, user_code: str, upn: str, password: str, action: str = "signin"
    ) -> httpx.Response:
        page = self.enter_device_code(user_code)
        assert page.status_code == 200 and 'name="password"' in page.text, page.text
        return self.http.post(
            "/devicelogin",
            data={**hidden_fields(page.text), "username": upn, "password": password, "action": action},
        )

    def authorize(self, url: str, upn: str, password: str) -> httpx.Response:
        """Open the authorization URL (after MSAL's local redirect, if any) and sign in; returns the
        answer to the form: a 303 to the app's redirect URI, or the page again with an error."""
        page = self.http.get(url, follow_redirects=True)
        assert page.status_code == 200 and 'name="password"' in page.text, page.text
        action = str(page.url.copy_with(query=None))
        return self.http.post(
            action,
            data={**hidden_fields(page.text), "username": upn, "password": password, "action": "signin"},
        )


class MsalUserCredential:
    """azure-core TokenCredential over an MSAL public client's signed-in account."""

    def __init__(self, app: msal.PublicClientApplication, account: dict[str, Any]) -> None:
        self.app, self.account = app, account

    def get_token(self, *scopes: str, **_: Any) -> AccessToken:
        result = self.app.acquire_token_silent_with_error([ARM_SCOPE], self.account)
        assert result and "access_token" in result, result
        return AccessToken(result["access_token"], int(time.time()) + int(result["expires_in"]))
