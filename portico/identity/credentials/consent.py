"""Consent for authorization-code connections, as Azure's credential manager gives it:

1. `getLoginLinks` answers a login link served by Portico (`/authorization-manager/login?state=`);
2. the link redirects the browser to the provider's authorization URL with the same `state`
   (and a PKCE challenge for `oauth2pkce`);
3. the provider redirects back to the provider's `redirectUrl` (`/authorization-manager/redirect`,
   one for every service: the state says which authorization), where Portico exchanges the code,
   keeps them (refresh token included) and marks the authorization `Connected`;
4. the browser goes on to the `postLoginRedirectUrl` given to `getLoginLinks`.

The state is sealed with the server key (AES-GCM): it carries the service, the authorization, the
post-login URL and the PKCE verifier, expires after ten minutes, and cannot be forged or read.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import secrets
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode, urlsplit

from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from portico.arm.errors import invalid_field
from portico.identity.credentials import connect, oauth
from portico.identity.credentials.oauth import CredentialFailure, TokenSet
from portico.secrets_box import SecretBox, SecretBoxError
from portico.store import services as S
from portico.store.db import Database

log = logging.getLogger("portico.credentials")

LOGIN_PATH = "/authorization-manager/login"
REDIRECT_PATH = "/authorization-manager/redirect"
STATE_AAD = b"portico-credential-consent"
STATE_SECONDS = 600


def redirect_url(base_url: str) -> str:
    """Where providers send the browser back: the `redirectUrl` of every provider (the state names
    the service and the authorization, so one URL serves them all and survives a restore into
    another service)."""
    return f"{base_url}{REDIRECT_PATH}"


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def login_link(
    base_url: str, box: SecretBox, service_id: int, provider: str, authorization: str, post_login: str | None
) -> str:
    """The login link of an authorization-code connection (`getLoginLinks`)."""
    if post_login:
        parts = urlsplit(post_login)
        if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
            raise invalid_field("postLoginRedirectUrl", "must be an absolute http or https URL")
    state = {
        "s": service_id,
        "p": provider,
        "a": authorization,
        "r": post_login,
        "v": secrets.token_urlsafe(48),  # PKCE verifier (used when the provider takes PKCE)
        "x": time.time() + STATE_SECONDS,
    }
    sealed = box.seal(json.dumps(state).encode(), STATE_AAD)
    return f"{base_url}{LOGIN_PATH}?{urlencode({'state': _b64(sealed)})}"


def _open_state(box: SecretBox, text: str | None) -> dict[str, Any]:
    if not text:
        raise CredentialFailure("InvalidState", "The request has no state.")
    try:
        state: dict[str, Any] = json.loads(box.open(_unb64(text), STATE_AAD))
    except (SecretBoxError, ValueError, binascii.Error):
        raise CredentialFailure("InvalidState", "The state is not one this server issued.") from None
    if float(state.get("x") or 0) < time.time():
        raise CredentialFailure("InvalidState", "The login link has expired; ask for a new one.")
    return state


def _challenge(verifier: str) -> str:
    return _b64(hashlib.sha256(verifier.encode()).digest())


async def _connection(db: Database, state: dict[str, Any]) -> tuple[S.Service, connect.Connection]:
    async with db.read() as conn:
        svc = await S.get_service_by_id(conn, int(state["s"]))
        c = (
            await connect.read(conn, svc.active_store_id, str(state["p"]), str(state["a"]))
            if svc is not None
            else None
        )
    if svc is None or c is None:
        raise CredentialFailure("NotFound", "The authorization of this login link no longer exists.")
    if c.data.get("oauth2grantType") != "AuthorizationCode":
        raise CredentialFailure(
            "InvalidGrant", "The authorization does not use the authorization code grant."
        )
    return svc, c


def _page(status: int, text: str) -> Response:
    return PlainTextResponse(text, status, headers={"Cache-Control": "no-store"})


def build_consent_routes(base_url: str, db: Database, box: Callable[[], SecretBox]) -> list[Route]:
    """The browser's side of consent: the login link and the providers' redirect."""

    async def login(request: Request) -> Response:
        raw = request.query_params.get("state")
        try:
            state = _open_state(box(), raw)
            _svc, c = await _connection(db, state)
            ep = c.endpoints()
        except CredentialFailure as failure:
            return _page(400, failure.message)
        query = {
            "response_type": "code",
            "client_id": ep.client_id,
            "redirect_uri": redirect_url(base_url),
            "state": raw or "",
        }
        if ep.scopes:
            query["scope"] = ep.scopes
        if ep.resource:
            query["resource"] = ep.resource
        if ep.pkce:
            query["code_challenge"] = _challenge(str(state["v"]))
            query["code_challenge_method"] = "S256"
        target = str(ep.authorization_url or "")
        sep = "&" if urlsplit(target).query else "?"
        return RedirectResponse(
            f"{target}{sep}{urlencode(query)}", 302, headers={"Cache-Control": "no-store"}
        )

    async def redirect(request: Request) -> Response:
        q = request.query_params
        try:
            state = _open_state(box(), q.get("state"))
            _svc, c = await _connection(db, state)
        except CredentialFailure as failure:
            return _page(400, failure.message)
        outcome: TokenSet | CredentialFailure
        if q.get("error"):
            outcome = CredentialFailure(
                "ConsentDenied",
                f"The identity provider did not grant consent: {q['error'][:100]}"
                + (f" ({q['error_description'][:300]})" if q.get("error_description") else ""),
            )
        elif not q.get("code"):
            outcome = CredentialFailure("ConsentDenied", "The identity provider sent no authorization code.")
        else:
            try:
                ep = c.endpoints()
                outcome = await oauth.exchange_code(
                    ep, q["code"], redirect_url(base_url), str(state["v"]) if ep.pkce else None
                )
            except CredentialFailure as failure:
                outcome = failure
        async with db.write() as conn:
            recorded = await connect.record(conn, box(), c, outcome)
        if isinstance(outcome, CredentialFailure):
            log.info("authorization %s/%s: consent failed: %s", c.provider_name, c.name, outcome.message)
            return _page(400, outcome.message)
        if recorded is None:
            return _page(409, "The authorization changed during the login; ask for a new login link.")
        post = state.get("r")
        if post:
            return RedirectResponse(str(post), 302, headers={"Cache-Control": "no-store"})
        return _page(200, "The connection is authorized. You can close this window.")

    return [
        Route(LOGIN_PATH, login, methods=["GET"]),
        Route(REDIRECT_PATH, redirect, methods=["GET"]),
    ]
