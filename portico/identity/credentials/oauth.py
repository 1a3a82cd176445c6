"""Token requests to an identity provider's token endpoint (RFC 6749 section 4.1.3, 4.4, 6).

Client credentials go in the form body (client_secret_post, what generic providers accept most
widely). Redirects are not followed. Failures become `CredentialFailure` with a message that names
the endpoint (without its query) and the provider's `error`/`error_description`, never a secret:
anything the request carried that is secret is masked out of whatever the provider answered.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx

from portico.identity.credentials.providers import Endpoints

TIMEOUT = 10.0
MAX_BYTES = 256 * 1024
DEFAULT_LIFETIME = 3600  # a token response without expires_in (RFC 6749 recommends sending it)


class CredentialFailure(Exception):
    """An authorization cannot get a token: `code` and `message` as the authorization's `error`."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def as_error(self) -> dict[str, str]:
        """As an authorization's `error` property."""
        return {"code": self.code, "message": self.message}


@dataclass
class TokenSet:
    access_token: str = field(repr=False)
    refresh_token: str | None = field(default=None, repr=False)
    expires_at: float | None = None
    claims: dict[str, Any] = field(default_factory=dict, repr=False)
    obtained_at: float = field(default_factory=time.time)

    @property
    def refresh_at(self) -> float | None:
        """When to get a new token: before expiry by half the lifetime, at most five minutes."""
        if self.expires_at is None:
            return None
        lifetime = max(0.0, self.expires_at - self.obtained_at)
        return self.expires_at - min(300.0, lifetime / 2)

    def as_json(self) -> dict[str, Any]:
        return {
            "access_token": self.access_token,
            "refresh_token": self.refresh_token,
            "claims": self.claims,
            "obtained_at": self.obtained_at,
            "expires_at": self.expires_at,
        }

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> TokenSet:
        return cls(
            str(doc["access_token"]),
            doc.get("refresh_token"),
            doc.get("expires_at"),
            dict(doc.get("claims") or {}),
            float(doc.get("obtained_at") or time.time()),
        )


def safe_url(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rsplit('@', 1)[-1]}{parts.path}"[:300]


def _mask(text: str, secrets: list[str]) -> str:
    for s in secrets:
        if s and len(s) >= 4:
            text = text.replace(s, "***")
    return text


async def _post(url: str, form: dict[str, str], secrets: list[str]) -> TokenSet:
    where = safe_url(url)
    try:
        async with httpx.AsyncClient(timeout=TIMEOUT, follow_redirects=False, trust_env=False) as client:
            async with client.stream("POST", url, data=form, headers={"Accept": "application/json"}) as resp:
                body = b""
                async for chunk in resp.aiter_bytes():
                    body += chunk
                    if len(body) > MAX_BYTES:
                        raise CredentialFailure(
                            "TokenRequestFailed",
                            f"The token endpoint {where} answered more than {MAX_BYTES} bytes.",
                        )
    except httpx.HTTPError as exc:
        raise CredentialFailure(
            "TokenRequestFailed", f"The token endpoint {where} could not be reached ({type(exc).__name__})."
        ) from None
    try:
        doc = json.loads(body) if body else None
    except ValueError:
        doc = None
    if resp.status_code >= 300 or not isinstance(doc, dict) or not doc.get("access_token"):
        detail = ""
        if isinstance(doc, dict) and doc.get("error"):
            detail = f": {str(doc['error'])[:100]}"
            if doc.get("error_description"):
                detail += f" ({str(doc['error_description'])[:300]})"
        elif resp.status_code < 300:
            detail = ": the answer has no access_token"
        raise CredentialFailure(
            "TokenRequestFailed",
            _mask(f"The token endpoint {where} answered HTTP {resp.status_code}{detail}.", secrets),
        )
    now = time.time()
    try:
        lifetime = float(doc.get("expires_in") or DEFAULT_LIFETIME)
    except (TypeError, ValueError):
        lifetime = DEFAULT_LIFETIME
    claims = {k: v for k, v in doc.items() if k not in ("access_token", "refresh_token")}
    refresh = doc.get("refresh_token")
    return TokenSet(
        str(doc["access_token"]),
        str(refresh) if refresh else None,
        now + max(lifetime, 1.0),
        claims,
        now,
    )


def _client_form(ep: Endpoints, grant_type: str) -> dict[str, str]:
    form = {"grant_type": grant_type, "client_id": ep.client_id, "client_secret": ep.client_secret}
    if ep.scopes:
        form["scope"] = ep.scopes
    if ep.resource:
        form["resource"] = ep.resource
    return form


async def client_credentials(ep: Endpoints) -> TokenSet:
    return await _post(ep.token_url, _client_form(ep, "client_credentials"), [ep.client_secret])


async def exchange_code(ep: Endpoints, code: str, redirect_uri: str, verifier: str | None) -> TokenSet:
    form = {**_client_form(ep, "authorization_code"), "code": code, "redirect_uri": redirect_uri}
    if verifier:
        form["code_verifier"] = verifier
    return await _post(ep.token_url, form, [ep.client_secret, code])


async def refresh(ep: Endpoints, refresh_token: str) -> TokenSet:
    form = {**_client_form(ep, "refresh_token"), "refresh_token": refresh_token}
    tokens = await _post(ep.refresh_url, form, [ep.client_secret, refresh_token])
    if tokens.refresh_token is None:  # the provider keeps the refresh token unchanged
        tokens.refresh_token = refresh_token
    return tokens
