"""Bearer-token validation for the management API: Portico's own tokens and trusted OIDC issuers."""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpx
from joserfc import jws
from joserfc.errors import JoseError
from joserfc.jwk import RSAKey

from portico.arm.errors import ArmError

if TYPE_CHECKING:
    from portico.identity.keys import SigningKeys
    from portico.settings import Settings

log = logging.getLogger("portico.identity")

ALGORITHM = "RS256"
CLOCK_SKEW = 60  # seconds of tolerated clock difference on exp / nbf
MAX_TOKEN_BYTES = 16 * 1024
# How role assignments name Portico's own issuer: its URL follows the public URL, which an operator
# may change, while assignments of its apps must stay theirs.
LOCAL_ISSUER = "local"


@dataclass(frozen=True)
class Principal:
    principal_id: str
    issuer: str
    tenant_id: str | None
    claims: dict[str, Any] = field(repr=False)
    local: bool = False  # issued by Portico itself (not by a trusted outside issuer)

    @property
    def assignment_issuer(self) -> str:
        """The issuer under which this principal's role assignments are stored."""
        return LOCAL_ISSUER if self.local else self.issuer


def _b64json(segment: str) -> Any:
    padded = segment + "=" * (-len(segment) % 4)
    return json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))


def _safe(value: Any, limit: int = 40) -> str:
    """Attacker-supplied header values shown in messages: short, printable, no quotes."""
    text = "".join(c for c in str(value) if c.isprintable() and c not in "\"'\\")
    return text[:limit]


def parse_trusted_issuers(spec: str) -> dict[str, str]:
    """`issuer|audience,issuer2|audience2` → {issuer: audience}."""
    out: dict[str, str] = {}
    for item in spec.split(","):
        item = item.strip()
        if not item:
            continue
        issuer, sep, audience = item.partition("|")
        if not sep or not issuer.strip() or not audience.strip():
            raise ValueError(f"trusted issuer entry {item!r} must look like 'issuer|audience'")
        if issuer.strip() == LOCAL_ISSUER:
            raise ValueError(f"trusted issuer {LOCAL_ISSUER!r} is reserved for Portico's own issuer")
        out[issuer.strip()] = audience.strip()
    return out


class ExternalIssuer:
    """Keys of one trusted OIDC issuer, found by discovery and cached for `ttl` seconds."""

    def __init__(
        self,
        issuer: str,
        audience: str,
        client: Callable[[], httpx.AsyncClient],
        ttl: float,
        min_refetch: float,
    ) -> None:
        self.issuer = issuer
        self.audience = audience
        self._client = client
        self._ttl = ttl
        self._min_refetch = min_refetch
        self._keys: dict[str, RSAKey] = {}
        self._fetched_at = float("-inf")
        self._attempted_at = float("-inf")
        self._lock = asyncio.Lock()

    async def _fetch(self) -> None:
        client = self._client()
        resp = await client.get(self.issuer.rstrip("/") + "/.well-known/openid-configuration")
        resp.raise_for_status()
        jwks_uri = resp.json()["jwks_uri"]
        resp = await client.get(jwks_uri)
        resp.raise_for_status()
        keys: dict[str, RSAKey] = {}
        for jwk in resp.json().get("keys", []):
            if jwk.get("kty") != "RSA" or jwk.get("use", "sig") != "sig":
                continue
            try:
                params = {k: jwk[k] for k in ("kty", "n", "e")}
                keys[str(jwk.get("kid", ""))] = RSAKey.import_key(params)
            except (JoseError, KeyError, ValueError, TypeError):
                log.warning("ignoring an unusable key in the JWKS of %s", self.issuer)
        self._keys = keys
        self._fetched_at = time.monotonic()

    def _fresh(self) -> bool:
        return time.monotonic() - self._fetched_at <= self._ttl

    async def key(self, kid: str | None) -> RSAKey | None:
        found = self._lookup(kid)
        if found is not None and self._fresh():
            return found
        async with self._lock:
            found = self._lookup(kid)
            if found is not None and self._fresh():
                return found  # a concurrent request refreshed meanwhile
            # Stale cache or unknown kid (the issuer may have rotated): refetch, but rate-limited
            # so forged kids or a down issuer cannot turn every request into two HTTP calls.
            if time.monotonic() - self._attempted_at >= self._min_refetch:
                self._attempted_at = time.monotonic()
                try:
                    await self._fetch()
                except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
                    # Keep the previous keys: stale keys beat refusing every token while it is down.
                    log.warning("key discovery for issuer %s failed: %s", self.issuer, type(exc).__name__)
            return self._lookup(kid)

    def _lookup(self, kid: str | None) -> RSAKey | None:
        if kid is None:
            # Tolerated only when unambiguous.
            return next(iter(self._keys.values())) if len(self._keys) == 1 else None
        return self._keys.get(kid)


class TokenValidator:
    """Turns an `Authorization` header into a `Principal`, or raises ARM's 401 errors."""

    def __init__(
        self,
        settings: Settings,
        keys: SigningKeys,
        *,
        http_client: httpx.AsyncClient | None = None,
        jwks_ttl: float = 3600.0,
        jwks_min_refetch: float = 5.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._settings = settings
        self._keys = keys
        self._clock = clock
        self._own_client = http_client is None
        self._http = http_client
        self._issuer = settings.issuer
        self._audience = settings.audience
        self._challenge_uri = f"{settings.resolved_public_url}/{settings.tenant_id}"
        self._external = {
            iss: ExternalIssuer(iss, aud, self._client, jwks_ttl, jwks_min_refetch)
            for iss, aud in parse_trusted_issuers(settings.trusted_issuers).items()
        }
        # sha256(token) → (principal, exp): skips the RSA check for a token seen before.
        self._seen: dict[bytes, tuple[Principal, float]] = {}

    def _client(self) -> httpx.AsyncClient:
        if self._http is None:
            self._http = httpx.AsyncClient(timeout=10.0, follow_redirects=False)
        return self._http

    async def aclose(self) -> None:
        if self._own_client and self._http is not None:
            await self._http.aclose()
            self._http = None

    def _fail(self, code: str, message: str) -> ArmError:
        desc = message.replace('"', "'")
        challenge = f'Bearer authorization_uri="{self._challenge_uri}", error="invalid_token", error_description="{desc}"'
        return ArmError(401, code, message, headers={"WWW-Authenticate": challenge})

    def _invalid(self, message: str) -> ArmError:
        return self._fail("InvalidAuthenticationToken", message)

    async def validate(self, authorization_header: str | None) -> Principal:
        if not authorization_header or not authorization_header.strip():
            raise self._fail(
                "AuthenticationFailed", "Authentication failed. The 'Authorization' header is missing."
            )
        scheme, _, token = authorization_header.strip().partition(" ")
        token = token.strip()
        if scheme.casefold() != "bearer" or not token:
            raise self._invalid("The 'Authorization' header must use the Bearer scheme with an access token.")
        if len(token) > MAX_TOKEN_BYTES:
            raise self._invalid("The access token is too large.")

        now = self._clock()
        digest = hashlib.sha256(token.encode("utf-8", "replace")).digest()
        seen = self._seen.get(digest)
        if seen is not None:
            if now <= seen[1] + CLOCK_SKEW:
                return seen[0]
            del self._seen[digest]

        principal, exp = await self._verify(token, now)
        if len(self._seen) > 4096:  # bounded; a full reset is cheaper than LRU bookkeeping
            self._seen.clear()
        self._seen[digest] = (principal, exp)
        return principal

    async def _verify(self, token: str, now: float) -> tuple[Principal, float]:
        parts = token.split(".")
        if len(parts) != 3:
            raise self._invalid("The access token is malformed: it is not a JWT.")
        try:
            header = _b64json(parts[0])
            claims = _b64json(parts[1])
        except (ValueError, UnicodeError, binascii.Error):
            raise self._invalid(
                "The access token is malformed: its header or payload cannot be decoded."
            ) from None
        if not isinstance(header, dict) or not isinstance(claims, dict):
            raise self._invalid("The access token is malformed: header and payload must be JSON objects.")

        alg = header.get("alg")
        if alg != ALGORITHM:
            # Rejects `none` and HS256-with-the-public-key before any key is touched.
            raise self._invalid(
                f"The access token uses the signing algorithm '{_safe(alg)}'; only RS256 is accepted."
            )
        kid = header.get("kid")
        if kid is not None and not isinstance(kid, str):
            raise self._invalid("The access token has an invalid 'kid' header.")

        iss = claims.get("iss")
        external = self._external.get(iss) if isinstance(iss, str) else None
        if iss == self._issuer:
            audience = self._audience
            key = await self._keys.verification_key(kid) if kid else None
        elif external is not None:
            audience = external.audience
            key = await external.key(kid)
        else:
            raise self._fail(
                "InvalidAuthenticationTokenIssuer",
                f"The access token is from an issuer that is not trusted: '{_safe(iss, 200)}'.",
            )
        if key is None:
            raise self._invalid(
                "The access token is signed with an unknown key (kid); it cannot be verified."
            )

        try:
            jws.deserialize_compact(token, key, algorithms=[ALGORITHM])
        except JoseError:
            raise self._invalid("The access token signature is invalid.") from None

        exp = claims.get("exp")
        if not isinstance(exp, int | float) or isinstance(exp, bool):
            raise self._invalid("The access token has no valid 'exp' claim.")
        if now > exp + CLOCK_SKEW:
            raise self._fail(
                "ExpiredAuthenticationToken", "The access token has expired. Get a new token and retry."
            )
        nbf = claims.get("nbf")
        if isinstance(nbf, int | float) and not isinstance(nbf, bool) and now + CLOCK_SKEW < nbf:
            raise self._invalid("The access token is not valid yet (nbf is in the future).")

        if not _audience_ok(claims.get("aud"), audience):
            raise self._fail(
                "InvalidAuthenticationTokenAudience",
                f"The access token has an invalid audience; expected '{audience}'.",
            )

        pid = claims.get("oid") or claims.get("sub")
        if not isinstance(pid, str) or not pid:
            raise self._invalid("The access token names no principal (no 'oid' or 'sub' claim).")
        tid = claims.get("tid")
        tenant = tid if isinstance(tid, str) else (self._settings.tenant_id if external is None else None)
        principal = Principal(
            principal_id=pid, issuer=str(iss), tenant_id=tenant, claims=claims, local=external is None
        )
        return principal, float(exp)


def _audience_ok(aud: Any, expected: str) -> bool:
    # ARM compares resource URIs loosely about the trailing slash.
    want = expected.rstrip("/")
    values = aud if isinstance(aud, list) else [aud]
    return any(isinstance(v, str) and v.rstrip("/") == want for v in values)
