"""The OAuth2 / OIDC endpoints MSAL (azure-identity) needs for the client-credentials flow."""

from __future__ import annotations

import base64
import binascii
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Any
from urllib.parse import parse_qs, unquote_plus

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from portico.identity.apps import secret_matches, stored_secret_hash
from portico.identity.keys import ALGORITHM, SigningKeys
from portico.identity.throttle import ClientAuthThrottle, Throttled
from portico.settings import Settings
from portico.store.db import Database

log = logging.getLogger("portico.identity")

MAX_FORM_BYTES = 64 * 1024
_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
# MSAL may add these OIDC scopes; they carry no audience and are ignored for client credentials.
_RESERVED_SCOPES = {"openid", "profile", "offline_access"}


class OAuthError(Exception):
    def __init__(
        self, status: int, error: str, description: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(description)
        self.status = status
        self.error = error
        self.description = description
        self.headers = headers or {}

    def response(self) -> JSONResponse:
        body = {"error": self.error, "error_description": self.description}
        return JSONResponse(body, status_code=self.status, headers={**_NO_STORE, **self.headers})


def accepted_scopes(audience: str) -> set[str]:
    """The forms Entra accepts for one resource, compared case-insensitively: `{resource}/.default`
    with one or two slashes (az asks `{audience}/.default`, so `https://management.azure.com//.default`),
    `{audience}.default`, and the bare resource (v1 style) with or without its trailing slash."""
    bare = audience.rstrip("/")
    forms = {audience + ".default", bare + "/.default", bare + "//.default", bare, bare + "/"}
    return {f.casefold() for f in forms}


# Multi-tenant aliases: their discovery documents are served (az reads `organizations` at logout,
# MSAL uses `common` for people sign-in); tokens come from the tenant's own endpoint.
TENANT_ALIASES = ("organizations", "common")
# Claims of the app-only tokens this issuer signs; people sign-in (portico.identity.people) adds its own.
CLAIMS_SUPPORTED = (
    "iss",
    "aud",
    "sub",
    "oid",
    "appid",
    "azp",
    "tid",
    "iat",
    "nbf",
    "exp",
    "idtyp",
    "jti",
    "ver",
)


def _parse_form(body: bytes) -> dict[str, str]:
    try:
        raw = parse_qs(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
    except (UnicodeDecodeError, ValueError):
        raise OAuthError(400, "invalid_request", "The request body is not valid form data.") from None
    dup = sorted(k for k, v in raw.items() if len(v) > 1)
    if dup:
        raise OAuthError(400, "invalid_request", f"Parameter '{dup[0]}' must not be repeated.")
    return {k: v[0] for k, v in raw.items()}


def _basic_credentials(header: str | None) -> tuple[str, str] | None:
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    if scheme.casefold() != "basic":
        raise OAuthError(
            400, "invalid_request", "Only HTTP Basic client authentication is supported in the header."
        )
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise OAuthError(
            401, "invalid_client", "The HTTP Basic credentials are malformed.", {"WWW-Authenticate": "Basic"}
        ) from None
    user, sep, password = decoded.partition(":")
    if not sep:
        raise OAuthError(
            401, "invalid_client", "The HTTP Basic credentials are malformed.", {"WWW-Authenticate": "Basic"}
        )
    # RFC 6749 §2.3.1: both parts are form-urlencoded before Basic encoding.
    return unquote_plus(user), unquote_plus(password)


# A further grant type of the token endpoint: the parsed form in, the token response out.
GrantHandler = Callable[[dict[str, str]], Awaitable[dict[str, Any]]]


def build_identity_router(
    settings: Settings,
    db: Database,
    keys: SigningKeys,
    throttle: ClientAuthThrottle | None = None,
    *,
    extra_grants: Mapping[str, GrantHandler] | None = None,
    extra_discovery: Mapping[str, Any] | None = None,
) -> APIRouter:
    """Discovery, JWKS and token endpoints of tenant `settings.tenant_id` under `/{tenant}/...`.
    `extra_grants` / `extra_discovery` plug in people sign-in (portico.identity.people)."""
    router = APIRouter(tags=["identity"])
    throttle = throttle or ClientAuthThrottle()
    tenant_id = settings.tenant_id
    scopes = accepted_scopes(settings.audience)

    def check_tenant(tenant: str) -> None:
        if tenant.casefold() != tenant_id.casefold():
            raise OAuthError(
                404, "invalid_tenant", "Tenant not found. Check the tenant id in the authority URL."
            )

    def check_tenant_or_alias(tenant: str) -> str:
        """The tenant segment as the documents use it: this tenant's id, or an alias."""
        if tenant.casefold() in TENANT_ALIASES:
            return tenant.casefold()
        check_tenant(tenant)
        return tenant_id

    def discovery(tenant: str) -> dict[str, Any]:
        at = f"{settings.resolved_public_url}/{tenant}"
        # As Entra: an alias's document names the issuer with a `{tenantid}` placeholder.
        issuer = (
            settings.issuer if tenant == tenant_id else f"{settings.resolved_public_url}/{{tenantid}}/v2.0"
        )
        return {
            "issuer": issuer,
            "authorization_endpoint": f"{at}/oauth2/v2.0/authorize",
            "token_endpoint": f"{at}/oauth2/v2.0/token",
            "jwks_uri": f"{at}/discovery/v2.0/keys",
            "response_types_supported": ["token"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": [ALGORITHM],
            "token_endpoint_auth_methods_supported": ["client_secret_post", "client_secret_basic"],
            "grant_types_supported": ["client_credentials"],
            "scopes_supported": [settings.audience.rstrip("/") + "/.default"],
            "claims_supported": list(CLAIMS_SUPPORTED),
            "tenant_region_scope": None,
            **(extra_discovery or {}),
        }

    @router.get("/{tenant}/v2.0/.well-known/openid-configuration")
    async def openid_configuration(tenant: str) -> JSONResponse:
        try:
            segment = check_tenant_or_alias(tenant)
        except OAuthError as e:
            return e.response()
        return JSONResponse(discovery(segment))

    @router.get("/{tenant}/discovery/v2.0/keys")
    async def jwks(tenant: str) -> JSONResponse:
        try:
            check_tenant_or_alias(tenant)
        except OAuthError as e:
            return e.response()
        return JSONResponse(keys.jwks(), headers={"Cache-Control": "public, max-age=300"})

    @router.get("/{tenant}/oauth2/v2.0/authorize")
    async def authorize(tenant: str) -> JSONResponse:
        try:
            check_tenant(tenant)
        except OAuthError as e:
            return e.response()
        return OAuthError(
            400, "unsupported_response_type", "Interactive sign-in is not supported; use client credentials."
        ).response()

    @router.post("/{tenant}/oauth2/v2.0/token")
    async def token(tenant: str, request: Request) -> JSONResponse:
        try:
            alias = tenant.casefold() if tenant.casefold() in TENANT_ALIASES else None
            if alias is None:
                check_tenant(tenant)
            return JSONResponse(await issue(request, alias), headers=_NO_STORE)
        except OAuthError as e:
            return e.response()

    async def authenticate_client(request: Request, client_id: str, secret: str) -> bool:
        """Check a client secret, unless failures for this client (or address) are throttled: that
        is decided before any scrypt CPU is spent."""
        stored = await stored_secret_hash(db, client_id)
        address = request.client.host if request.client else None
        try:
            attempt = throttle.begin(client_id, address, registered=stored is not None)
        except Throttled as e:
            log.debug("token request throttled for client_id %r from %s", client_id[:64], address)
            raise OAuthError(
                429,
                "temporarily_unavailable",
                f"Too many failed authentication attempts. Retry after {e.retry_after} seconds.",
                {"Retry-After": str(e.retry_after)},
            ) from None
        ok = False
        try:
            ok = await secret_matches(secret, stored)
        finally:
            if ok:
                attempt.succeeded()
            else:
                attempt.failed()  # also when cancelled: the token stays spent
        return ok

    async def issue(request: Request, alias: str | None = None) -> dict[str, Any]:
        ctype = request.headers.get("content-type", "").split(";", 1)[0].strip().casefold()
        if ctype != "application/x-www-form-urlencoded":
            raise OAuthError(400, "invalid_request", "The body must be application/x-www-form-urlencoded.")
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_FORM_BYTES:
                raise OAuthError(400, "invalid_request", "The request body is too large.")
        form = _parse_form(body)

        grant = form.get("grant_type")
        if not grant:
            raise OAuthError(
                400, "invalid_request", "The request body must contain the parameter 'grant_type'."
            )
        # --- delegated grants of people (device code, authorization code, refresh token) ---
        # A person signs in through an alias too (`organizations`, az's default): single tenant.
        if extra_grants and grant in extra_grants:
            return await extra_grants[grant](form)
        # --- end delegated grants ---
        if alias is not None:
            raise OAuthError(
                400,
                "invalid_request",
                f"The '{alias}' endpoint cannot issue application tokens: use the tenant's "
                f"token endpoint, /{tenant_id}/oauth2/v2.0/token.",
            )
        if grant != "client_credentials":
            raise OAuthError(
                400, "unsupported_grant_type", "Only the 'client_credentials' grant type is supported."
            )

        client_id, secret, via_basic = _client_credentials(request, form)
        if not await authenticate_client(request, client_id, secret):
            log.info("token request rejected: invalid client credentials for client_id %r", client_id[:64])
            raise OAuthError(
                401,
                "invalid_client",
                "Invalid client secret provided, or no application with this client id exists in the tenant.",
                {"WWW-Authenticate": "Basic"} if via_basic else None,
            )

        # v1 clients name the resource instead of a scope.
        scope = form.get("scope") or form.get("resource", "")
        requested = [s for s in scope.split() if s.casefold() not in _RESERVED_SCOPES]
        if len(requested) != 1 or requested[0].casefold() not in scopes:
            want = settings.audience.rstrip("/") + "/.default"
            raise OAuthError(
                400, "invalid_scope", f"The scope must be '{want}' for the client credentials flow."
            )

        now = int(time.time())
        lifetime = settings.token_lifetime_seconds
        claims = {
            "aud": settings.audience,
            "iss": settings.issuer,
            "iat": now,
            "nbf": now,
            "exp": now + lifetime,
            "sub": client_id,
            "oid": client_id,
            "appid": client_id,
            "azp": client_id,
            "tid": tenant_id,
            "idtyp": "app",
            "ver": "2.0",
            "jti": str(uuid.uuid4()),
        }
        return {
            "token_type": "Bearer",
            "expires_in": lifetime,
            "ext_expires_in": lifetime,
            "access_token": keys.sign(claims),
        }

    return router


def _client_credentials(request: Request, form: dict[str, str]) -> tuple[str, str, bool]:
    basic = _basic_credentials(request.headers.get("authorization"))
    if basic is not None:
        if form.get("client_secret"):
            raise OAuthError(400, "invalid_request", "Use one client authentication method, not both.")
        if form.get("client_id") and form["client_id"] != basic[0]:
            raise OAuthError(
                400, "invalid_request", "The client_id does not match the HTTP Basic credentials."
            )
        return basic[0], basic[1], True
    client_id = form.get("client_id", "")
    if not client_id:
        raise OAuthError(400, "invalid_request", "The request body must contain the parameter 'client_id'.")
    secret = form.get("client_secret", "")
    if not secret:
        raise OAuthError(
            401, "invalid_client", "The request body must contain the parameter 'client_secret'."
        )
    return client_id, secret, False
