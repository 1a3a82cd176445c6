"""Credential manager logic without a server: what providers and authorizations must configure,
the endpoints they name, access policies, token lifetimes, and the gateway's Authorization object
in expressions and policy documents."""

from __future__ import annotations

import time
from typing import Any

import pytest

from portico.arm.errors import ArmError
from portico.gateway.context import Variables
from portico.gateway.expressions import ExpressionError, compile_expression
from portico.gateway.policies import validate_policy_document
from portico.gateway.policies.credentials import Authorization
from portico.identity.credentials.oauth import TokenSet, _mask
from portico.identity.credentials.providers import (
    allowed,
    check_authorization,
    check_provider,
    endpoints,
)


def _generic(grant: str = "clientCredentials", **params: Any) -> dict[str, Any]:
    base = {"clientId": "app", "clientSecret": "s3cret", "tokenUrl": "https://idp.example/token"}
    if grant == "authorizationCode":
        base["authorizationUrl"] = "https://idp.example/authorize"
    return {"identityProvider": "oauth2", "oauth2": {"grantTypes": {grant: {**base, **params}}}}


def _refused(field: str, fn: Any, *args: Any) -> str:
    with pytest.raises(ArmError) as err:
        fn(*args)
    assert err.value.status == 400 and field in err.value.message, err.value.message
    return err.value.message


def test_provider_checks() -> None:
    msg = _refused("properties.identityProvider", check_provider, {"identityProvider": "github"}, None)
    assert "'github' is not supported" in msg
    _refused("grantTypes", check_provider, {"identityProvider": "oauth2"}, None)
    _refused("tokenUrl", check_provider, _generic(tokenUrl="ftp://x"), None)
    _refused("authorizationUrl", check_provider, _generic("authorizationCode", authorizationUrl=""), None)
    _refused("clientSecret", check_provider, _generic(clientSecret=""), None)
    _refused(
        "resourceUri",
        check_provider,
        {"identityProvider": "aad", "oauth2": {"grantTypes": {"clientCredentials": {}}}},
        None,
    )
    _refused(
        "cannot be changed", check_provider, {**_generic(), "identityProvider": "oauth2pkce"}, _generic()
    )
    # A PUT without the client secret keeps the stored one (GET never shows it).
    sent = _generic()
    del sent["oauth2"]["grantTypes"]["clientCredentials"]["clientSecret"]
    kept = check_provider(sent, _generic(clientSecret="old"))
    assert kept["oauth2"]["grantTypes"]["clientCredentials"]["clientSecret"] == "old"


def test_authorization_checks_and_status() -> None:
    cc = {"authorizationType": "OAuth2", "oauth2grantType": "ClientCredentials"}
    _refused("oauth2grantType", check_authorization, _generic("authorizationCode"), dict(cc), None)
    _refused(
        "authorizationType", check_authorization, _generic(), {"oauth2grantType": "ClientCredentials"}, None
    )
    no_client = _generic()
    no_client["oauth2"]["grantTypes"]["clientCredentials"].pop("clientId")
    _refused("parameters.clientId", check_authorization, no_client, dict(cc), None)
    new = check_authorization(_generic(), dict(cc), None)
    assert new["status"] == "Error" and new["error"]["code"] == "Unauthenticated"
    connected = {**cc, "status": "Connected"}
    assert check_authorization(_generic(), dict(cc), connected)["status"] == "Connected"
    changed = check_authorization(_generic(), {**cc, "parameters": {"clientId": "other"}}, connected)
    assert changed["status"] == "Error"
    # A provider stored before these checks (e.g. restored from an older backup) is named.
    legacy = {"identityProvider": "github"}
    _refused("update the provider first", check_authorization, legacy, dict(cc), None)
    _refused("'github' is not supported", endpoints, legacy, {})
    # Parameters sent back without their secret keep it.
    old = {**connected, "parameters": {"clientId": "a", "clientSecret": "x"}}
    again = check_authorization(_generic(), {**cc, "parameters": {"clientId": "a"}}, old)
    assert again["parameters"]["clientSecret"] == "x" and again["status"] == "Connected"


def test_endpoints() -> None:
    ep = endpoints(_generic(scopes="a b"), {"parameters": {"clientId": "own", "clientSecret": "own-s"}})
    assert (ep.client_id, ep.client_secret, ep.refresh_url, ep.scopes) == (
        "own",
        "own-s",
        "https://idp.example/token",
        "a b",
    )
    assert "own-s" not in repr(ep)
    assert endpoints({**_generic("authorizationCode"), "identityProvider": "oauth2pkce"}, {}).pkce
    aad = {
        "identityProvider": "aad",
        "oauth2": {
            "grantTypes": {
                "clientCredentials": {"resourceUri": "https://graph", "loginUri": "https://login.example/"}
            }
        },
    }
    ep = endpoints(aad, {"parameters": {"clientId": "c", "clientSecret": "s"}})
    assert ep.token_url == "https://login.example/common/oauth2/token" and ep.resource == "https://graph"


def test_access_policies() -> None:
    policies = [{"tenantId": "T", "objectId": "o1"}, {"tenantId": "T", "objectId": "x", "appIds": ["app2"]}]
    assert allowed(policies, "O1", "t", None)
    assert allowed(policies, "zzz", "T", "app2")
    assert not allowed(policies, "o1", "other", None)
    assert not allowed(policies, "zzz", "T", None)
    assert not allowed([], "o1", "T", None)


def test_token_lifetimes_and_masking() -> None:
    now = time.time()
    assert TokenSet("a", expires_at=now + 3600, obtained_at=now).refresh_at == pytest.approx(now + 3300)
    assert TokenSet("a", expires_at=now + 60, obtained_at=now).refresh_at == pytest.approx(now + 30)
    assert TokenSet("a").refresh_at is None
    assert "tok" not in repr(TokenSet("tok", "refresh"))
    assert _mask("bad secret 'hunter22' given", ["hunter22", ""]) == "bad secret '***' given"


class _Ctx:
    def __init__(self, variables: dict[str, Any]) -> None:
        self.variables = variables

    def expr_member(self, name: str) -> Any:
        assert name == "Variables"
        return Variables(self.variables)


def test_authorization_object_in_expressions() -> None:
    ctx = _Ctx({"auth": Authorization("tok", {"scope": "s1"}), "none": None, "text": "x"})
    assert (
        compile_expression('@(((Authorization)context.Variables["auth"]).AccessToken)').evaluate(ctx) == "tok"
    )
    assert (
        compile_expression(
            '@(((Authorization)context.Variables["auth"]).Claims.GetValueOrDefault("scope", ""))'
        ).evaluate(ctx)
        == "s1"
    )
    src = '@(((Authorization)context.Variables.GetValueOrDefault("none"))?.AccessToken)'
    assert compile_expression(src).evaluate(ctx) is None
    with pytest.raises(ExpressionError):
        compile_expression('@(((Authorization)context.Variables["text"]).AccessToken)').evaluate(ctx)
    with pytest.raises(ExpressionError):  # checked when the policy is compiled
        compile_expression('@(((Authorization)context.Variables["auth"]).Token)')
    assert "***" in repr(Authorization("tok", {}))


@pytest.mark.parametrize(
    ("attrs", "problem"),
    [
        (
            'provider-id="p" authorization-id="a" context-variable-name="v" identity-type="user"',
            "identity-type",
        ),
        ('provider-id="p" authorization-id="a" context-variable-name="v" identity-type="jwt"', "identity"),
        ('authorization-id="a" context-variable-name="v"', "provider-id"),
        (
            'provider-id="p" authorization-id="a" context-variable-name="v" ignore-error="maybe"',
            "ignore-error",
        ),
        ('provider-id="p" authorization-id="a" context-variable-name="v" color="red"', "color"),
    ],
)
def test_policy_document_checks(attrs: str, problem: str) -> None:
    with pytest.raises(ArmError) as err:
        validate_policy_document(
            f"<policies><inbound><get-authorization-context {attrs} /></inbound></policies>"
        )
    assert problem in err.value.message


def test_policy_document_accepted_in_inbound_only() -> None:
    ok = '<get-authorization-context provider-id="p" authorization-id="a" context-variable-name="v" />'
    validate_policy_document(f"<policies><inbound>{ok}</inbound></policies>")
    with pytest.raises(ArmError) as err:
        validate_policy_document(f"<policies><outbound>{ok}</outbound></policies>")
    assert "inbound" in err.value.message
