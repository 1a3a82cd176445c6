"""What an authorization provider and an authorization must configure, and the OAuth 2.0 endpoints
they name. Pure functions of the stored properties; the control plane calls the checks on PUT.

Portico obtains tokens from identity providers it can address generically:
- `oauth2` and `oauth2pkce` (generic OAuth 2.0, with PKCE): `tokenUrl`, `authorizationUrl` (for the
  authorization code grant), optional `refreshUrl` (default: the token URL) and `scopes`;
- `aad` (Microsoft Entra, its v1.0 endpoints as Azure uses them): `{loginUri}/{tenantId}/oauth2/token`
  and `/authorize` with `resourceUri`; `loginUri` (default https://login.windows.net) may name any
  compatible issuer.
Other identity providers (Azure's catalogue of SaaS presets) are refused with a 400 naming them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from portico.arm.errors import ArmError, invalid_field

GENERIC = ("oauth2", "oauth2pkce")
SUPPORTED = (*GENERIC, "aad")
# ARM's names of the grants: on the provider (grantTypes keys) and on an authorization.
GRANTS = {"authorizationCode": "AuthorizationCode", "clientCredentials": "ClientCredentials"}
AAD_LOGIN = "https://login.windows.net"
# Azure's answer for an authorization without a token yet.
NOT_AUTHENTICATED = {"code": "Unauthenticated", "message": "This connection is not authenticated."}


@dataclass(frozen=True)
class Endpoints:
    """Everything a token request of one authorization needs (secrets included: never log it)."""

    identity_provider: str
    grant: str  # "authorizationCode" | "clientCredentials"
    token_url: str
    refresh_url: str
    authorization_url: str | None
    client_id: str
    client_secret: str
    scopes: str | None
    resource: str | None  # aad (v1.0 endpoints): the resource the token is for
    pkce: bool

    def __repr__(self) -> str:  # never the secret
        return f"Endpoints({self.identity_provider}, {self.grant}, {self.token_url})"


def _url(value: Any, field: str) -> str:
    text = str(value or "").strip()
    parts = urlsplit(text)
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise invalid_field(field, "must be an absolute http or https URL")
    return text


def provider_grant(data: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The one grant type a provider is configured for, with its parameters."""
    grants = ((data.get("oauth2") or {}).get("grantTypes")) or {}
    present = [(g, p) for g, p in grants.items() if isinstance(p, dict)]
    if len(present) != 1:
        raise invalid_field(
            "properties.oauth2.grantTypes",
            "must configure exactly one grant type: authorizationCode or clientCredentials",
        )
    return present[0]


def check_provider(data: dict[str, Any], old: dict[str, Any] | None) -> dict[str, Any]:
    """A provider's properties as stored: its identity provider supported, its grant complete; a
    client secret not sent again is kept (GET never shows it)."""
    idp = str(data.get("identityProvider") or "")
    if not idp:
        raise invalid_field("properties.identityProvider", "is required")
    if old and old.get("identityProvider") != idp:
        raise invalid_field("properties.identityProvider", "cannot be changed once set")
    if idp not in SUPPORTED:
        raise invalid_field(
            "properties.identityProvider",
            f"identity provider '{idp[:80]}' is not supported: Portico obtains tokens from generic "
            f"OAuth 2.0 providers ({', '.join(GENERIC)}) and from 'aad' only",
        )
    grant, params = provider_grant(data)
    before = [g for g, p in ((((old or {}).get("oauth2") or {}).get("grantTypes")) or {}).items() if p]
    if len(before) == 1 and before[0] != grant:
        raise invalid_field(
            "properties.oauth2.grantTypes",
            f"the grant type cannot be changed once set (it is {before[0]}); create another provider",
        )
    old_params = (((old or {}).get("oauth2") or {}).get("grantTypes") or {}).get(grant) or {}
    if "clientSecret" not in params and "clientSecret" in old_params:
        params["clientSecret"] = old_params["clientSecret"]
    where = f"properties.oauth2.grantTypes.{grant}"
    if idp in GENERIC:
        for f in ("clientId", "clientSecret"):
            if not params.get(f):
                raise invalid_field(f"{where}.{f}", "is required")
        _url(params.get("tokenUrl"), f"{where}.tokenUrl")
        if params.get("refreshUrl"):
            _url(params["refreshUrl"], f"{where}.refreshUrl")
        if grant == "authorizationCode":
            _url(params.get("authorizationUrl"), f"{where}.authorizationUrl")
    else:
        if not params.get("resourceUri"):
            raise invalid_field(f"{where}.resourceUri", "is required")
        if params.get("loginUri"):
            _url(params["loginUri"], f"{where}.loginUri")
        if grant == "authorizationCode":
            for f in ("clientId", "clientSecret"):
                if not params.get(f):
                    raise invalid_field(f"{where}.{f}", "is required")
    return data


def check_authorization(
    provider: dict[str, Any], data: dict[str, Any], old: dict[str, Any] | None
) -> dict[str, Any]:
    """An authorization's properties as stored. Its status stays what it was while nothing that
    decides the token changed; otherwise it is not authenticated until a token is obtained."""
    if data.get("authorizationType") != "OAuth2":
        raise invalid_field("properties.authorizationType", "must be OAuth2")
    wanted = data.get("oauth2grantType")
    if not wanted:
        raise invalid_field("properties.oauth2grantType", "is required")
    try:
        grant, params = provider_grant(provider)
    except ArmError:
        raise invalid_field(
            "properties.oauth2grantType",
            "the authorization provider configures no single grant type: update the provider first",
        ) from None
    if GRANTS.get(grant) != wanted:
        raise invalid_field(
            "properties.oauth2grantType",
            f"must be {GRANTS.get(grant, grant)}: the authorization provider is configured for the "
            f"{grant} grant type",
        )
    given = data.get("parameters") or {}
    if old and "clientSecret" not in given and "clientSecret" in (old.get("parameters") or {}):
        data["parameters"] = given = {**given, "clientSecret": old["parameters"]["clientSecret"]}
    if wanted == "ClientCredentials":
        for f in ("clientId", "clientSecret"):
            if not (given.get(f) or params.get(f)):
                raise invalid_field(
                    f"properties.parameters.{f}", "is required (the provider does not configure it)"
                )
    if (
        old
        and old.get("status")
        and all(old.get(f) == data.get(f) for f in ("oauth2grantType", "parameters"))
    ):
        data["status"] = old["status"]
        if old.get("error"):
            data["error"] = old["error"]
        else:
            data.pop("error", None)
    else:
        data["status"] = "Error"
        data["error"] = dict(NOT_AUTHENTICATED)
    return data


def endpoints(provider: dict[str, Any], authorization: dict[str, Any]) -> Endpoints:
    """The endpoints and client credentials of `authorization` (parameters override the
    provider's client id and secret)."""
    idp = str(provider.get("identityProvider") or "")
    if idp not in SUPPORTED:  # stored before Portico obtained tokens, or restored from such a backup
        raise invalid_field("properties.identityProvider", f"identity provider '{idp[:80]}' is not supported")
    grant, params = provider_grant(provider)
    given = authorization.get("parameters") or {}
    client_id = str(given.get("clientId") or params.get("clientId") or "")
    client_secret = str(given.get("clientSecret") or params.get("clientSecret") or "")
    scopes = params.get("scopes") or None
    if idp in GENERIC:
        token_url = str(params.get("tokenUrl") or "")
        return Endpoints(
            idp,
            grant,
            token_url,
            str(params.get("refreshUrl") or token_url),
            params.get("authorizationUrl"),
            client_id,
            client_secret,
            scopes,
            None,
            idp == "oauth2pkce",
        )
    base = f"{str(params.get('loginUri') or AAD_LOGIN).rstrip('/')}/{params.get('tenantId') or 'common'}"
    return Endpoints(
        idp,
        grant,
        f"{base}/oauth2/token",
        f"{base}/oauth2/token",
        f"{base}/oauth2/authorize",
        client_id,
        client_secret,
        scopes,
        params.get("resourceUri"),
        False,
    )


def allowed(
    policies: list[dict[str, Any]], object_id: str | None, tenant_id: str | None, app_id: str | None
) -> bool:
    """Whether an access policy of an authorization admits the caller: its tenant and object id,
    or its tenant and one of the policy's application ids."""
    for p in policies:
        if tenant_id is None or str(p.get("tenantId") or "").lower() != tenant_id.lower():
            continue
        if object_id and str(p.get("objectId") or "").lower() == object_id.lower():
            return True
        if app_id and app_id.lower() in {str(a).lower() for a in p.get("appIds") or []}:
            return True
    return False
