"""Authorization code grant with PKCE (S256) for public clients redirecting to a loopback or
registered redirect URI: `GET /{tenant}/oauth2/v2.0/authorize` shows the sign-in page
(portico.identity.pages), then the token endpoint redeems the code once."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

from portico.identity import grants
from portico.identity.flows.common import public_client, wants_client_info
from portico.identity.issuer import OAuthError
from portico.identity.public_clients import PublicClient, get_public_client
from portico.identity.user_tokens import Issuer, resource_scopes, token_response
from portico.identity.users import User, get_user

LIFETIME = timedelta(minutes=10)
MODES = ("query", "form_post")
_CHALLENGE = re.compile(r"^[A-Za-z0-9_-]{43}$")
_VERIFIER = re.compile(r"^[A-Za-z0-9._~-]{43,128}$")
# The request parameters the sign-in form carries from the GET to the POST.
FORWARDED = (
    "client_id",
    "response_type",
    "redirect_uri",
    "scope",
    "state",
    "nonce",
    "code_challenge",
    "code_challenge_method",
    "response_mode",
    "prompt",
    "login_hint",
    "client_info",
)


class PageError(Exception):
    """A request that cannot be sent back to the client (unknown client or redirect URI): the page
    shows the error and does not redirect (RFC 6749 §4.1.2.1)."""


@dataclass(frozen=True)
class AuthRequest:
    client: PublicClient
    redirect_uri: str
    scope: str
    state: str | None
    nonce: str | None
    code_challenge: str
    login_hint: str
    response_mode: str
    params: dict[str, str]


def redirect_with(uri: str, values: dict[str, str]) -> str:
    parts = urlsplit(uri)
    query = (parts.query + "&" if parts.query else "") + urlencode(values)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, ""))


@dataclass(frozen=True)
class Answer:
    """What goes back to the client's redirect URI: in its query (`query`) or as a form the browser
    posts there (`form_post`, what MSAL's loopback listener accepts)."""

    redirect_uri: str
    values: dict[str, str]
    response_mode: str

    @property
    def location(self) -> str:
        return redirect_with(self.redirect_uri, self.values)


class RedirectError(Exception):
    """An error the client learns through its redirect URI."""

    def __init__(self, redirect_uri: str, state: str | None, mode: str, error: str, description: str) -> None:
        super().__init__(description)
        values = {"error": error, "error_description": description}
        if state is not None:
            values["state"] = state
        self.answer = Answer(redirect_uri, values, mode)


async def parse_request(iss: Issuer, params: dict[str, str]) -> AuthRequest:
    client_id = params.get("client_id", "")
    client = await get_public_client(iss.db, client_id) if client_id else None
    if client is None:
        raise PageError(
            f"AADSTS700016: Application with identifier '{client_id[:64]}' was not found as a public client "
            "of this directory."
        )
    redirect_uri = params.get("redirect_uri", "")
    if not redirect_uri or not client.allows_redirect(redirect_uri):
        raise PageError(
            f"AADSTS50011: The redirect URI '{redirect_uri[:200]}' does not match the redirect URIs "
            f"registered for the application '{client.display_name}'."
        )
    state = params.get("state")
    mode = params.get("response_mode") or "query"

    def fail(error: str, description: str) -> RedirectError:
        return RedirectError(redirect_uri, state, mode if mode in MODES else "query", error, description)

    if mode not in MODES:
        raise fail("invalid_request", f"response_mode must be one of {', '.join(MODES)}.")
    if params.get("response_type") != "code":
        raise fail("unsupported_response_type", "AADSTS700054: Only response_type 'code' is supported.")
    challenge = params.get("code_challenge", "")
    if not challenge:
        raise fail(
            "invalid_request", "AADSTS9002325: Proof Key for Code Exchange (code_challenge) is required."
        )
    if params.get("code_challenge_method", "plain") != "S256" or not _CHALLENGE.match(challenge):
        raise fail(
            "invalid_request", "The code_challenge must be an S256 challenge (code_challenge_method=S256)."
        )
    prompt = params.get("prompt", "")
    if prompt == "none":
        raise fail(
            "interaction_required", "AADSTS50058: A sign-in page is needed; prompt=none cannot be honoured."
        )
    try:
        resource_scopes(iss.settings, params.get("scope", ""))
    except OAuthError as e:
        raise fail(e.error, e.description) from None
    return AuthRequest(
        client=client,
        redirect_uri=redirect_uri,
        scope=params.get("scope", ""),
        state=state,
        nonce=params.get("nonce") or None,
        code_challenge=challenge,
        login_hint=params.get("login_hint", ""),
        response_mode=mode,
        params={k: params[k] for k in FORWARDED if k in params},
    )


async def issue_code(iss: Issuer, req: AuthRequest, user: User) -> Answer:
    """The answer carrying a fresh single-use code."""
    code = await grants.create(
        iss.db,
        kind=grants.CODE,
        client_id=req.client.client_id,
        user_oid=user.oid,
        lifetime=LIFETIME,
        status="pending",
        data={
            "scope": req.scope,
            "redirect_uri": req.redirect_uri,
            "code_challenge": req.code_challenge,
            "nonce": req.nonce,
        },
    )
    values = {"code": code}
    if req.state is not None:
        values["state"] = req.state
    return Answer(req.redirect_uri, values, req.response_mode)


def s256(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode("ascii")).digest()).decode().rstrip("=")


async def redeem(iss: Issuer, form: dict[str, str]) -> dict[str, Any]:
    client = await public_client(iss.db, form)
    code = form.get("code", "")
    if not code:
        raise OAuthError(400, "invalid_request", "The request body must contain the parameter 'code'.")
    invalid = OAuthError(
        400,
        "invalid_grant",
        "AADSTS70008: The provided authorization code is invalid, expired or already redeemed.",
    )
    grant = await grants.find(iss.db, grants.CODE, code)
    if grant is None or grant.client_id != client.client_id or grant.status != "pending":
        raise invalid
    if form.get("redirect_uri", "") != grant.data.get("redirect_uri"):
        raise OAuthError(
            400,
            "invalid_grant",
            "AADSTS50148: The redirect_uri does not match the one of the authorization request.",
        )
    verifier = form.get("code_verifier", "")
    if not _VERIFIER.match(verifier) or not hmac.compare_digest(s256(verifier), grant.data["code_challenge"]):
        raise OAuthError(
            400, "invalid_grant", "AADSTS501481: The code_verifier does not match the code_challenge."
        )
    if grant.expires_at.timestamp() <= time.time():
        raise invalid
    if not await grants.transition(iss.db, grant.id, "pending", status="used"):
        raise invalid
    user = await get_user(iss.db, grant.user_oid or "")
    if user is None:
        raise OAuthError(400, "invalid_grant", "The user who signed in no longer exists.")
    return await token_response(
        iss,
        user,
        client.client_id,
        form.get("scope") or grant.data.get("scope", ""),
        nonce=grant.data.get("nonce"),
        want_client_info=wants_client_info(form),
    )
