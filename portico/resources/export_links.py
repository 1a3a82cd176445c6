"""Short-lived links to an exported API definition, readable without a bearer token (as Azure's
SAS links to a blob are): the link names the service, API and format, and carries an expiry and
an HMAC-SHA256 over all of them, keyed from the server's secret key."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from urllib.parse import quote, urlencode

from portico.arm.errors import ArmError

PURPOSE = "api-export-link"


def _mac(key: bytes, scope: str, api: str, fmt: str, expires: int) -> str:
    msg = "\n".join((scope.lower(), api.lower(), fmt, str(expires))).encode()
    return base64.urlsafe_b64encode(hmac.new(key, msg, hashlib.sha256).digest()).decode().rstrip("=")


def make_link(
    key: bytes, base_url: str, scope: str, api: str, fmt: str, api_version: str, lifetime: int
) -> str:
    """`scope` is the service's ARM id; the link is `{scope}/apis/{api}/exportDocument?...`."""
    expires = int(time.time()) + lifetime
    query = urlencode(
        {"api-version": api_version, "format": fmt, "se": expires, "sig": _mac(key, scope, api, fmt, expires)}
    )
    return f"{base_url}{quote(scope)}/apis/{quote(api, safe='')}/exportDocument?{query}"


def check_link(key: bytes, scope: str, api: str, fmt: str, expires: str, sig: str) -> None:
    """403 unless the signature is right and the link has not expired (the same answer for both,
    so a probe learns nothing)."""
    ok = expires.isdigit() and hmac.compare_digest(_mac(key, scope, api, fmt, int(expires)), sig)
    if not ok or int(expires) < time.time():
        raise ArmError(403, "AuthenticationFailed", "The export link is invalid or has expired.")
