"""People sign in with the real MSAL (device code, interactive authorization code + PKCE, refresh),
then manage a service through the Azure SDK as themselves; RBAC names them; operations record them."""

from __future__ import annotations

import base64
import html
import json
import re
import threading
import time
import webbrowser
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import httpx
import msal
import pytest
import requests
from azure.core.exceptions import HttpResponseError
from azure.mgmt.apimanagement import ApiManagementClient

from tests.e2e.dr_support import SUB, Rest
from tests.support.server import PorticoServer

from .people_support import (
    ARM_SCOPE,
    MsalUserCredential,
    PageClient,
    create_user,
    hidden_fields,
    subprocess_cli,
)

pytestmark = pytest.mark.slow

AZURE_CLI = "04b07795-8ddb-461a-bbee-02f9e1bf7b46"
ALICE_PW = "correct horse battery"
BOB_PW = "bob's long password"


def claims(jwt: str) -> dict[str, Any]:
    part = jwt.split(".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))))


@pytest.fixture(autouse=True)
def no_env_ca_bundle(monkeypatch: pytest.MonkeyPatch) -> None:
    # requests lets these variables override MSAL's `verify=` (the server's own CA).
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)


@pytest.fixture(scope="module")
def people(server_factory: Callable[..., PorticoServer]) -> dict[str, Any]:
    server = server_factory(env={"PORTICO_DEVICE_CODE_INTERVAL_SECONDS": "1"})
    alice = create_user(server, "alice@contoso.test", ALICE_PW, "Alice Example")
    bob = create_user(server, "bob@contoso.test", BOB_PW)
    server.cli(
        "role", "assign", "--principal", alice["oid"], "--role", "Owner", "--scope", f"/subscriptions/{SUB}"
    )
    public = json.loads(
        server.cli(
            "app",
            "create",
            "--name",
            "DR runbook <tool>",
            "--public",
            "--redirect-uri",
            "http://localhost",
            "--json",
        ).stdout
    )
    Rest(server).service("rg-people", "people-svc")
    return {"server": server, "alice": alice, "bob": bob, "public": public}


class RecordingSession(requests.Session):
    """MSAL's HTTP client, keeping the paths it asks for."""

    def __init__(self, ca: str) -> None:
        super().__init__()
        self.verify = ca
        self.paths: list[str] = []

    def request(self, method: str | bytes, url: Any, *args: Any, **kwargs: Any) -> requests.Response:
        self.paths.append(f"{method!s} {urlsplit(str(url)).path}")
        return super().request(method, url, *args, **kwargs)


def msal_app(server: PorticoServer, client_id: str = AZURE_CLI) -> msal.PublicClientApplication:
    session = RecordingSession(server.ca)
    app = msal.PublicClientApplication(
        client_id, authority=f"{server.url}/{server.tenant}", instance_discovery=False, http_client=session
    )
    SESSIONS[id(app)] = session
    return app


SESSIONS: dict[int, RecordingSession] = {}


def device_sign_in(
    server: PorticoServer, app: msal.PublicClientApplication, upn: str, pw: str
) -> dict[str, Any]:
    flow = app.initiate_device_flow(scopes=[ARM_SCOPE])
    assert "user_code" in flow, flow
    assert flow["verification_uri"] == f"{server.url}/devicelogin"
    assert flow["user_code"] in flow["message"] and flow["interval"] == 1
    answers: list[httpx.Response] = []

    def person() -> None:
        time.sleep(1.5)  # MSAL polls meanwhile and is told authorization_pending
        pages = PageClient(server)
        try:
            answers.append(pages.device_sign_in(flow["user_code"], upn, pw))
        finally:
            pages.close()

    t = threading.Thread(target=person)
    t.start()
    result = app.acquire_token_by_device_flow(flow)
    t.join()
    assert answers and "You have signed in" in answers[0].text, answers
    return dict(result)


def sdk(
    server: PorticoServer, app: msal.PublicClientApplication, account: dict[str, Any]
) -> ApiManagementClient:
    return ApiManagementClient(
        MsalUserCredential(app, account),
        SUB,
        base_url=server.url,
        connection_verify=server.ca,
        polling_interval=0.2,
    )


def test_device_code_sdk_as_user_refresh_and_rbac(people: dict[str, Any]) -> None:
    server: PorticoServer = people["server"]
    alice = people["alice"]
    app = msal_app(server)
    result = device_sign_in(server, app, "Alice@Contoso.test", ALICE_PW)
    assert "access_token" in result, result
    at = claims(result["access_token"])
    assert at["oid"] == alice["oid"] and at["upn"] == "alice@contoso.test" and at["name"] == "Alice Example"
    assert at["idtyp"] == "user" and at["scp"] == "user_impersonation" and at["tid"] == server.tenant
    assert at["appid"] == AZURE_CLI and at["aud"] == "https://management.azure.com/"
    assert result["id_token_claims"]["preferred_username"] == "alice@contoso.test"
    (account,) = app.get_accounts()
    assert account["home_account_id"] == f"{alice['oid']}.{server.tenant}"  # from client_info
    assert account["username"] == "alice@contoso.test"
    # With instance_discovery=False MSAL reads the tenant's discovery document and nothing else.
    t = server.tenant
    assert set(SESSIONS[id(app)].paths) == {
        f"GET /{t}/v2.0/.well-known/openid-configuration",
        f"POST /{t}/oauth2/v2.0/devicecode",
        f"POST /{t}/oauth2/v2.0/token",
    }, SESSIONS[id(app)].paths

    client = sdk(server, app, account)
    assert client.api_management_service.get("rg-people", "people-svc").name == "people-svc"
    assert "people-svc" in [s.name for s in client.api_management_service.list_by_resource_group("rg-people")]

    # Refresh: a new access token through the rotating refresh token.
    refreshed = app.acquire_token_silent_with_error([ARM_SCOPE], account, force_refresh=True)
    assert refreshed and "access_token" in refreshed, refreshed
    assert refreshed["access_token"] != result["access_token"]
    assert claims(refreshed["access_token"])["oid"] == alice["oid"]
    assert client.api_management_service.get("rg-people", "people-svc").name == "people-svc"

    # Backup started by Alice: the operation status names her.
    key = server.cli("storage", "account", "create", "peoplebackups").stdout.strip().splitlines()[-1].strip()
    server.cli("storage", "container", "create", "peoplebackups", "backups")
    svc_path = (
        f"/subscriptions/{SUB}/resourceGroups/rg-people/providers/Microsoft.ApiManagement/service/people-svc"
    )
    with httpx.Client(base_url=server.url, verify=server.ssl_context()) as h:
        r = h.post(
            f"{svc_path}/backup?api-version=2024-05-01",
            headers={"Authorization": f"Bearer {refreshed['access_token']}"},
            json={
                "storageAccount": "peoplebackups",
                "containerName": "backups",
                "backupName": "by-alice",
                "accessKey": key,
            },
        )
        assert r.status_code == 202, r.text
        status = h.get(
            r.headers["Azure-AsyncOperation"],
            headers={"Authorization": f"Bearer {refreshed['access_token']}"},
        ).json()
    assert status["properties"]["startedBy"] == {
        "principalId": alice["oid"],
        "name": "alice@contoso.test",
        "type": "User",
    }


def test_user_without_role_gets_403_naming_them(people: dict[str, Any]) -> None:
    server: PorticoServer = people["server"]
    app = msal_app(server)
    result = device_sign_in(server, app, "bob@contoso.test", BOB_PW)
    (account,) = app.get_accounts()
    with pytest.raises(HttpResponseError) as err:
        sdk(server, app, account).api_management_service.get("rg-people", "people-svc")
    assert err.value.status_code == 403
    message = str(err.value.message)
    assert f"The user 'bob@contoso.test' with object id '{people['bob']['oid']}'" in message, message
    assert claims(result["access_token"])["oid"] == people["bob"]["oid"]


def test_interactive_auth_code_pkce_loopback(people: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    server: PorticoServer = people["server"]
    client_id = people["public"]["client_id"]
    seen: list[str] = []

    def browser(url: str, *_: Any, **__: Any) -> bool:
        def person() -> None:
            pages = PageClient(server)
            try:
                answer = pages.authorize(url, "alice@contoso.test", ALICE_PW)
                # MSAL asks for response_mode=form_post: the page's form posts the code to its listener.
                assert answer.status_code == 200 and 'id="answer"' in answer.text, answer.text
                target = re.search(r'<form method="post" action="([^"]+)"', answer.text)
                assert target is not None
                fields = hidden_fields(answer.text)
                seen.append(target.group(1) + " " + " ".join(sorted(fields)))
                httpx.post(html.unescape(target.group(1)), data=fields, timeout=10)
            finally:
                pages.close()

        threading.Thread(target=person, daemon=True).start()
        return True

    monkeypatch.setattr(webbrowser, "open", browser)
    app = msal_app(server, client_id)
    result = app.acquire_token_interactive([ARM_SCOPE], timeout=60)
    assert "access_token" in result, result
    assert seen and seen[0].startswith("http://localhost:") and " code " in seen[0] + " ", seen
    at = claims(result["access_token"])
    assert at["oid"] == people["alice"]["oid"] and at["appid"] == client_id
    (account,) = app.get_accounts()
    assert (
        sdk(server, app, account).api_management_service.get("rg-people", "people-svc").name == "people-svc"
    )


def test_device_code_errors_and_refresh_replay(people: dict[str, Any]) -> None:
    """Polling answers as Entra gives them, a declined sign-in, and refresh-token replay."""
    server: PorticoServer = people["server"]
    token_url = f"{server.url}/{server.tenant}/oauth2/v2.0/token"
    grant = "urn:ietf:params:oauth:grant-type:device_code"
    with httpx.Client(verify=server.ssl_context()) as h:
        start = h.post(
            f"{server.url}/{server.tenant}/oauth2/v2.0/devicecode",
            data={"client_id": AZURE_CLI, "scope": ARM_SCOPE + " offline_access"},
        ).json()
        poll = {"grant_type": grant, "client_id": AZURE_CLI, "device_code": start["device_code"]}
        assert h.post(token_url, data=poll).json()["error"] == "authorization_pending"
        assert h.post(token_url, data=poll).json()["error"] == "slow_down"
        bad = h.post(token_url, data={**poll, "device_code": "nope"})
        assert bad.status_code == 400 and bad.json()["error"] == "bad_verification_code"
        pages = PageClient(server)
        declined = pages.device_sign_in(start["user_code"], "alice@contoso.test", "", action="cancel")
        pages.close()
        assert "declined" in declined.text
        time.sleep(1)
        assert h.post(token_url, data=poll).json()["error"] == "authorization_declined"
        unknown = h.post(
            f"{server.url}/{server.tenant}/oauth2/v2.0/devicecode",
            data={"client_id": "11111111-1111-1111-1111-111111111111", "scope": ARM_SCOPE},
        )
        assert unknown.status_code == 400 and "was not found" in unknown.json()["error_description"]

    app = msal_app(server)
    result = device_sign_in(server, app, "alice@contoso.test", ALICE_PW)
    first = result["refresh_token"]
    with httpx.Client(verify=server.ssl_context()) as h:
        form = {
            "grant_type": "refresh_token",
            "client_id": AZURE_CLI,
            "refresh_token": first,
            "scope": ARM_SCOPE,
        }
        ok = h.post(token_url, data=form)
        assert ok.status_code == 200 and ok.json()["refresh_token"] != first
        second = ok.json()["refresh_token"]
        replay = h.post(token_url, data=form)
        assert replay.status_code == 400 and replay.json()["error"] == "invalid_grant"
        # The replay revoked the whole session, including the token that replaced the first one.
        gone = h.post(token_url, data={**form, "refresh_token": second})
        assert gone.status_code == 400 and gone.json()["error"] == "invalid_grant"


def test_sign_in_page_throttles_and_checks_csrf(people: dict[str, Any]) -> None:
    server: PorticoServer = people["server"]
    create_user(server, "carol@contoso.test", "carol's password!")
    with httpx.Client(verify=server.ssl_context()) as h:
        start = h.post(
            f"{server.url}/{server.tenant}/oauth2/v2.0/devicecode",
            data={"client_id": people["public"]["client_id"], "scope": ARM_SCOPE},
        ).json()
    pages = PageClient(server)
    try:
        # No cookie (another site posting the form): refused, nothing approved.
        forged = httpx.post(
            f"{server.url}/devicelogin",
            verify=server.ssl_context(),
            data={"csrf_token": "x", "user_code": start["user_code"]},
        )
        assert "another site" in forged.text
        page = pages.enter_device_code(start["user_code"])
        assert "DR runbook &lt;tool&gt;" in page.text and "<tool>" not in page.text  # escaped
        for _ in range(5):
            wrong = pages.device_sign_in(start["user_code"], "carol@contoso.test", "wrong password")
            assert "Incorrect user name or password." in wrong.text
        locked = pages.device_sign_in(start["user_code"], "carol@contoso.test", "carol's password!")
        assert "locked" in locked.text and "signed in" not in locked.text
        assert "carol's password!" not in (server.data_dir / "server.log").read_text()
        assert "wrong password" not in (server.data_dir / "server.log").read_text()
    finally:
        pages.close()
    disc = httpx.get(
        f"{server.url}/{server.tenant}/v2.0/.well-known/openid-configuration", verify=server.ssl_context()
    ).json()
    assert disc["device_authorization_endpoint"].endswith("/oauth2/v2.0/devicecode")
    # app-only claims, as the issuer lists them, plus those of people's tokens
    assert {"appid", "idtyp", "jti", "name", "upn", "scp", "preferred_username"} <= set(
        disc["claims_supported"]
    )
    assert {"authorization_code", "refresh_token", "urn:ietf:params:oauth:grant-type:device_code"} <= set(
        disc["grant_types_supported"]
    )


def test_user_commands_end_sessions(people: dict[str, Any]) -> None:
    """reset-password and delete end the person's sessions; delete also removes their roles."""
    server: PorticoServer = people["server"]
    frank = create_user(server, "frank@contoso.test", "frank's password", "Frank")
    server.cli("role", "assign", "--principal", frank["oid"], "--role", "Reader", "--scope", "/")
    listed = json.loads(server.cli("user", "list", "--json").stdout)
    assert {"oid": frank["oid"], "upn": "frank@contoso.test", "display_name": "Frank"}.items() <= next(
        u for u in listed if u["oid"] == frank["oid"]
    ).items()
    assert all("password" not in json.dumps(u) for u in listed)
    duplicate = server.cli("user", "create", "--upn", "FRANK@contoso.test", "--password-stdin", check=False)
    assert duplicate.returncode != 0
    token_url = f"{server.url}/{server.tenant}/oauth2/v2.0/token"

    def refresh(rt: str) -> httpx.Response:
        form = {
            "grant_type": "refresh_token",
            "client_id": AZURE_CLI,
            "refresh_token": rt,
            "scope": ARM_SCOPE,
        }
        return httpx.post(token_url, data=form, verify=server.ssl_context())

    first = device_sign_in(server, msal_app(server), "frank@contoso.test", "frank's password")
    reset = subprocess_cli(
        server,
        "user",
        "reset-password",
        "frank@contoso.test",
        "--password-stdin",
        stdin="frank's new password",
    )
    assert reset.returncode == 0 and "frank's new password" not in reset.stdout + reset.stderr
    assert refresh(first["refresh_token"]).json()["error"] == "invalid_grant"
    second = device_sign_in(server, msal_app(server), "frank@contoso.test", "frank's new password")
    assert refresh(second["refresh_token"]).status_code == 200
    server.cli("user", "delete", frank["oid"])
    assert json.loads(server.cli("role", "list", "--principal", frank["oid"], "--json").stdout) == []
    assert refresh(second["refresh_token"]).json()["error"] == "invalid_grant"
