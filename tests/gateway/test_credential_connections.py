"""Credential manager end to end: authorization providers and authorizations configured through the
Azure SDK obtain tokens from a real (tiny, local) OAuth 2.0 server, and the gateway's
get-authorization-context policy hands them to a backend."""

from __future__ import annotations

import sqlite3
import ssl
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from azure.core.exceptions import HttpResponseError
from azure.mgmt.apimanagement import models as M

from tests.gateway.conftest import DOMAIN, RG, eventually, gateway_env, make_service
from tests.support.fake_idp import FakeIdp
from tests.support.server import PorticoServer

pytestmark = pytest.mark.slow

SVC = "credsvc"
FORWARD_TOKEN = (
    '<set-header name="Authorization" exists-action="override">'
    '<value>@("Bearer " + ((Authorization)context.Variables["auth"]).AccessToken)</value></set-header>'
)


@dataclass
class Env:
    server: PorticoServer
    client: Any
    idp: FakeIdp
    gateway: httpx.Client
    backend: str

    def provider(self, name: str, idp_type: str, grant: str, **params: Any) -> None:
        self.client.authorization_provider.create_or_update(
            RG,
            SVC,
            name,
            M.AuthorizationProviderContract(
                display_name=name,
                identity_provider=idp_type,
                oauth2=M.AuthorizationProviderOAuth2Settings(
                    grant_types=M.AuthorizationProviderOAuth2GrantTypes(**{grant: params})
                ),
            ),
        )

    def authorization(self, provider: str, name: str, grant: str) -> Any:
        return self.client.authorization.create_or_update(
            RG,
            SVC,
            provider,
            name,
            M.AuthorizationContract(authorization_type="OAuth2", o_auth2_grant_type=grant),
        )

    def api_with_policy(self, name: str, inbound: str) -> None:
        self.client.api.begin_create_or_update(
            RG,
            SVC,
            name,
            {
                "properties": {
                    "path": name,
                    "displayName": name,
                    "serviceUrl": f"{self.backend}/{name}",
                    "protocols": ["http"],
                    "subscriptionRequired": False,
                }
            },
        ).result()
        self.client.api_operation.create_or_update(
            RG, SVC, name, "get", {"properties": {"displayName": "get", "method": "GET", "urlTemplate": "/*"}}
        )
        body = {
            "properties": {
                "format": "xml",
                "value": f"<policies><inbound><base/>{inbound}</inbound></policies>",
            }
        }
        self.client.api_policy.create_or_update(RG, SVC, name, "policy", body)

    def call(self, path: str, **headers: str) -> httpx.Response:
        return self.gateway.get(path, headers={"Host": f"{SVC}.{DOMAIN}", **headers})


@pytest.fixture(scope="module")
def env(server_factory: Callable[..., PorticoServer], backend: str) -> Iterator[Env]:
    idp = FakeIdp().start()
    server = server_factory(db="sqlite", env=gateway_env())
    client = make_service(server, SVC)
    port = int(server.env["PORTICO_GATEWAY_PORT"])
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as gateway:
        yield Env(server, client, idp, gateway, backend)
    idp.stop()


def _context_policy(provider: str, authorization: str, extra: str = "") -> str:
    return (
        f'<get-authorization-context provider-id="{provider}" authorization-id="{authorization}" '
        f'context-variable-name="auth" identity-type="managed" ignore-error="false" {extra}/>'
    )


def test_client_credentials_token_reaches_the_backend(env: Env) -> None:
    idp = env.idp
    env.provider(
        "backend-idp",
        "oauth2",
        "client_credentials",
        clientId=idp.client_id,
        clientSecret=idp.client_secret,
        tokenUrl=f"{idp.url}/token",
        scopes="api.read",
    )
    shown = env.client.authorization_provider.get(RG, SVC, "backend-idp")
    assert shown.oauth2.redirect_url == f"{env.server.url}/authorization-manager/redirect"
    assert "clientSecret" not in shown.oauth2.grant_types.client_credentials
    before = len(idp.requests)
    created = env.authorization("backend-idp", "app", "ClientCredentials")
    assert created.status == "Connected" and created.error is None
    assert idp.grants()[before:] == ["client_credentials"]
    assert idp.requests[-1]["scope"] == "api.read"

    env.api_with_policy(
        "cc",
        _context_policy("backend-idp", "app")
        + FORWARD_TOKEN
        + '<set-header name="X-Scope" exists-action="override"><value>@(((Authorization)context.Variables'
        '.GetValueOrDefault("auth"))?.Claims.GetValueOrDefault("scope", "none"))</value></set-header>',
    )

    def forwarded() -> dict[str, Any]:
        doc: dict[str, Any] = _status(env.call("/cc/items"), 200, "authorization").json()
        return doc

    got = eventually(forwarded, timeout=5)
    token = got["headers"]["authorization"]
    assert token.startswith("Bearer at-client_credentials-")
    assert got["headers"]["x-scope"] == "api.read"
    # Served from the worker's cache: no token request per call.
    asked = len(idp.requests)
    for _ in range(3):
        assert forwarded()["headers"]["authorization"] == token
    assert len(idp.requests) == asked

    # The token is runtime state: sealed in its own table, in no entity (what backups read), and
    # never in a GET.
    raw = env.client.authorization.get(RG, SVC, "backend-idp", "app")
    assert raw.status == "Connected" and not (raw.parameters or {}).get("clientSecret")
    with sqlite3.connect(env.server.data_dir / "portico.db") as db:
        entity_text = " ".join(r[0] for r in db.execute("SELECT data FROM entities"))
        sealed = [bytes(r[0]) for r in db.execute("SELECT sealed FROM credential_tokens")]
    assert token[7:] not in entity_text and idp.client_secret not in entity_text  # sealed at rest
    assert sealed and all(token[7:].encode() not in s for s in sealed)


def test_wrong_client_secret_is_an_error_without_the_secret(env: Env) -> None:
    idp = env.idp
    wrong = "wrong-Secret-Value-42"
    env.provider(
        "bad-idp",
        "oauth2",
        "client_credentials",
        clientId=idp.client_id,
        clientSecret=wrong,
        tokenUrl=f"{idp.url}/token",
    )
    created = env.authorization("bad-idp", "app", "ClientCredentials")
    assert created.status == "Error"
    assert created.error.code == "TokenRequestFailed"
    assert "401" in created.error.message and "invalid_client" in created.error.message
    assert wrong not in created.error.message  # the provider echoed it; Portico masks it
    env.api_with_policy("bad", _context_policy("bad-idp", "app") + FORWARD_TOKEN)
    r = eventually(lambda: _status(env.call("/bad/x"), 500), timeout=5)
    assert "invalid_client" in r.text and wrong not in r.text
    assert (env.server.log_path.read_text()).count(wrong) == 0

    # The authorization's own client credentials override the provider's; GET shows the client id only.
    fixed = env.client.authorization.create_or_update(
        RG,
        SVC,
        "bad-idp",
        "fixed",
        M.AuthorizationContract(
            authorization_type="OAuth2",
            o_auth2_grant_type="ClientCredentials",
            parameters={"clientId": idp.client_id, "clientSecret": idp.client_secret},
        ),
    )
    assert fixed.status == "Connected" and fixed.parameters == {"clientId": idp.client_id}
    # A PUT without the secret keeps it (GET never shows it): still connected.
    again = env.client.authorization.create_or_update(
        RG,
        SVC,
        "bad-idp",
        "fixed",
        M.AuthorizationContract(
            authorization_type="OAuth2",
            o_auth2_grant_type="ClientCredentials",
            parameters={"clientId": idp.client_id},
        ),
    )
    assert again.status == "Connected"
    listed = {
        a.name: a.status for a in env.client.authorization.list_by_authorization_provider(RG, SVC, "bad-idp")
    }
    assert listed == {"app": "Error", "fixed": "Connected"}

    # ignore-error: the variable is null, the request goes on.
    env.api_with_policy(
        "lenient",
        _context_policy("bad-idp", "app").replace('ignore-error="false"', 'ignore-error="true"')
        + '<set-header name="X-Has-Token" exists-action="override"><value>@(context.Variables["auth"] == null ? "no" : "yes")</value></set-header>',
    )
    r = eventually(lambda: _status(env.call("/lenient/x"), 200, "x-has-token"), timeout=5)
    assert r.json()["headers"]["x-has-token"] == "no"


def _status(r: httpx.Response, code: int, header: str | None = None) -> httpx.Response:
    """`r` if it has status `code` (and, for a 200, the backend saw `header`: the API's policy
    applies; the gateway may route a new API a moment before its policy)."""
    assert r.status_code == code, (r.status_code, r.text[:300])
    if header is not None:
        assert header in r.json()["headers"], r.text[:300]
    return r


def test_tokens_are_refreshed_before_they_expire(env: Env) -> None:
    idp = env.idp
    idp.expires_in = 4  # refreshed after half its lifetime
    try:
        env.provider(
            "short-idp",
            "oauth2",
            "client_credentials",
            clientId=idp.client_id,
            clientSecret=idp.client_secret,
            tokenUrl=f"{idp.url}/token",
        )
        assert env.authorization("short-idp", "app", "ClientCredentials").status == "Connected"
        env.api_with_policy("short", _context_policy("short-idp", "app") + FORWARD_TOKEN)
        first = eventually(lambda: _status(env.call("/short/x"), 200, "authorization"), timeout=5).json()[
            "headers"
        ]["authorization"]
        time.sleep(2.5)
        second = env.call("/short/x").json()["headers"]["authorization"]
        assert second != first and second.startswith("Bearer at-client_credentials-")
    finally:
        idp.expires_in = 3600


def test_authorization_code_consent_through_login_link(env: Env) -> None:
    idp = env.idp
    env.provider(
        "consent-idp",
        "oauth2pkce",
        "authorization_code",
        clientId=idp.client_id,
        clientSecret=idp.client_secret,
        authorizationUrl=f"{idp.url}/authorize",
        tokenUrl=f"{idp.url}/token",
        scopes="files.read offline_access",
    )
    created = env.authorization("consent-idp", "alice", "AuthorizationCode")
    assert created.status == "Error" and created.error.code == "Unauthenticated"
    env.api_with_policy("user", _context_policy("consent-idp", "alice") + FORWARD_TOKEN)
    r = eventually(lambda: _status(env.call("/user/x"), 500), timeout=5)
    assert "not authenticated" in r.text

    done = f"{env.backend}/after-login"
    link = env.client.authorization_login_links.post(
        RG, SVC, "consent-idp", "alice", M.AuthorizationLoginRequestContract(post_login_redirect_url=done)
    ).login_link
    assert link.startswith(f"{env.server.url}/authorization-manager/login?state=")
    idp.expires_in = 4  # so that the gateway refreshes with the refresh token below
    try:
        with httpx.Client(
            verify=ssl.create_default_context(cafile=env.server.ca), follow_redirects=True
        ) as browser:
            final = browser.get(link)
        assert final.status_code == 200 and final.json()["path"] == "/after-login"
        asked = idp.authorize_requests[-1]
        assert asked["code_challenge_method"] == "S256" and asked["scope"] == "files.read offline_access"
        assert asked["redirect_uri"] == f"{env.server.url}/authorization-manager/redirect"
        assert idp.requests[-1]["grant_type"] == "authorization_code" and idp.requests[-1]["code_verifier"]
        assert env.client.authorization.get(RG, SVC, "consent-idp", "alice").status == "Connected"

        first = eventually(lambda: _status(env.call("/user/x"), 200, "authorization"), timeout=5).json()[
            "headers"
        ]["authorization"]
        assert first.startswith("Bearer at-authorization_code-")
        time.sleep(2.5)
        second = env.call("/user/x").json()["headers"]["authorization"]
        assert second.startswith("Bearer at-refresh_token-")
        assert idp.grants()[-1] == "refresh_token"
    finally:
        idp.expires_in = 3600
    # Tokens are never backed up: a connection restored without its token (here: the token row
    # removed) shows that it needs consent again.
    with sqlite3.connect(env.server.data_dir / "portico.db") as db:
        db.execute("DELETE FROM credential_tokens WHERE provider_key = 'consent-idp'")
    shown = env.client.authorization.get(RG, SVC, "consent-idp", "alice")
    assert shown.status == "Error" and shown.error.code == "Unauthenticated"
    listed = list(env.client.authorization.list_by_authorization_provider(RG, SVC, "consent-idp"))
    assert [a.status for a in listed] == ["Error"]
    # A state Portico did not seal is refused.
    with httpx.Client(verify=ssl.create_default_context(cafile=env.server.ca)) as browser:
        assert browser.get(link.replace("state=", "state=x")).status_code == 400


def test_jwt_identity_is_checked_against_access_policies(env: Env) -> None:
    idp = env.idp
    env.provider(
        "jwt-idp",
        "oauth2",
        "client_credentials",
        clientId=idp.client_id,
        clientSecret=idp.client_secret,
        tokenUrl=f"{idp.url}/token",
    )
    env.authorization("jwt-idp", "app", "ClientCredentials")
    admin = env.server.admin()["client_id"]
    env.client.authorization_access_policy.create_or_update(
        RG,
        SVC,
        "jwt-idp",
        "app",
        "someone",
        M.AuthorizationAccessPolicyContract(tenant_id=env.server.tenant, object_id="someone-else"),
    )
    env.api_with_policy(
        "jwt",
        '<get-authorization-context provider-id="jwt-idp" authorization-id="app" context-variable-name="auth" '
        'identity-type="jwt" identity="@(context.Request.Headers.GetValueOrDefault(&quot;X-Caller&quot;, &quot;&quot;))" />'
        + FORWARD_TOKEN,
    )
    caller = env.server.token()
    r = eventually(lambda: _status(env.call("/jwt/x", **{"X-Caller": caller}), 500), timeout=5)
    assert "No access policy" in r.text
    assert "not valid" in _status(env.call("/jwt/x", **{"X-Caller": "not-a-jwt"}), 500).text
    env.client.authorization_access_policy.create_or_update(
        RG,
        SVC,
        "jwt-idp",
        "app",
        "admin",
        M.AuthorizationAccessPolicyContract(tenant_id=env.server.tenant, object_id=admin),
    )
    r = eventually(
        lambda: _status(env.call("/jwt/x", **{"X-Caller": caller}), 200, "authorization"), timeout=5
    )
    assert r.json()["headers"]["authorization"].startswith("Bearer at-client_credentials-")


def test_aad_provider_at_a_configured_login_uri(env: Env) -> None:
    idp = env.idp
    env.provider(
        "entra",
        "aad",
        "client_credentials",
        resourceUri="https://graph.example",
        loginUri=idp.url,
        tenantId="contoso",
    )
    created = env.client.authorization.create_or_update(
        RG,
        SVC,
        "entra",
        "daemon",
        M.AuthorizationContract(
            authorization_type="OAuth2",
            o_auth2_grant_type="ClientCredentials",
            parameters={"clientId": idp.client_id, "clientSecret": idp.client_secret},
        ),
    )
    assert created.status == "Connected"
    asked = idp.requests[-1]
    assert asked["path"] == "/contoso/oauth2/token" and asked["resource"] == "https://graph.example"


def test_unsupported_identity_providers_and_grants_are_refused(env: Env) -> None:
    with pytest.raises(HttpResponseError) as err:
        env.client.authorization_provider.create_or_update(
            RG, SVC, "gh", M.AuthorizationProviderContract(display_name="GitHub", identity_provider="github")
        )
    assert err.value.status_code == 400 and "github" in str(err.value.message)
    with pytest.raises(HttpResponseError) as err:
        env.authorization("backend-idp", "wrong-grant", "AuthorizationCode")
    assert err.value.status_code == 400 and "clientCredentials" in str(err.value.message)
    with pytest.raises(HttpResponseError) as err:
        env.client.authorization_login_links.post(
            RG,
            SVC,
            "backend-idp",
            "app",
            M.AuthorizationLoginRequestContract(post_login_redirect_url="https://x.example"),
        )
    assert err.value.status_code == 400 and "AuthorizationCode" in str(err.value.message)


def test_deleting_forgets_tokens(env: Env) -> None:
    def tokens_of(provider: str) -> int:
        with sqlite3.connect(env.server.data_dir / "portico.db") as db:
            q = "SELECT count(*) FROM credential_tokens WHERE provider_key = ?"
            return int(db.execute(q, (provider,)).fetchone()[0])

    assert tokens_of("short-idp") == 1
    env.client.authorization_provider.delete(RG, SVC, "short-idp", if_match="*")
    assert tokens_of("short-idp") == 0
    r = eventually(lambda: _status(env.call("/short/x"), 500), timeout=5)
    assert "was not found" in r.text
    assert tokens_of("backend-idp") == 1
    env.client.authorization.delete(RG, SVC, "backend-idp", "app", if_match="*")
    assert tokens_of("backend-idp") == 0
