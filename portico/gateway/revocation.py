"""Revocation of client certificates through the revocation lists (CRLs) their chain names.

As .NET's online check, which API Management runs: each certificate of the chain but its root must
name a revocation list (CRL distribution points, http/https) that its issuer signed and that is
current; a certificate on it is revoked; one whose status cannot be established (no list named,
the list unreachable, unsigned by the issuer, or stale) has status unknown, which fails the check
too. Lists are fetched by `validate-client-certificate` (off the fast path: the policy awaits
them) and kept until their nextUpdate, at most a day; `Verify()` in an expression, which cannot
wait, uses the lists held already (status unknown otherwise). OCSP is not queried.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime

import httpx
from cryptography import x509

log = logging.getLogger("portico.gateway")

_MAX_BYTES = 10 * 1024 * 1024
_MAX_SECONDS = 86400.0
_RETRY_SECONDS = 60.0  # a list that could not be fetched is asked for again after this long


def crl_urls(cert: x509.Certificate) -> list[str]:
    try:
        points = cert.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    except x509.ExtensionNotFound:
        return []
    urls = []
    for point in points:
        for name in point.full_name or []:
            if isinstance(name, x509.UniformResourceIdentifier) and name.value.lower().startswith(
                ("http://", "https://")
            ):
                urls.append(name.value)
    return urls


class RevocationLists:
    """Revocation lists by URL, fetched on demand (one fetch per URL at a time)."""

    def __init__(self, timeout: float = 10.0) -> None:
        self.timeout = timeout
        self._lists: dict[str, tuple[float, x509.CertificateRevocationList]] = {}
        self._failed: dict[str, float] = {}  # URL → when it may be fetched again
        self._inflight: dict[str, asyncio.Task[None]] = {}

    def cached(self, url: str) -> x509.CertificateRevocationList | None:
        entry = self._lists.get(url)
        return entry[1] if entry is not None and entry[0] > time.monotonic() else None

    async def fetch(self, chain: list[x509.Certificate]) -> None:
        """Fetch the lists the chain names that are not held (or are due), in parallel."""
        now = time.monotonic()
        wanted = [
            url
            for cert in chain[:-1]
            for url in crl_urls(cert)
            if self.cached(url) is None and self._failed.get(url, 0.0) <= now
        ]
        tasks = []
        for url in dict.fromkeys(wanted):
            task = self._inflight.get(url)
            if task is None:
                task = self._inflight[url] = asyncio.get_running_loop().create_task(self._fetch(url))
                task.add_done_callback(functools.partial(self._done, url))
            tasks.append(task)
        if tasks:
            await asyncio.wait([asyncio.shield(t) for t in tasks])

    def _done(self, url: str, task: asyncio.Task[None]) -> None:
        self._inflight.pop(url, None)
        if not task.cancelled() and task.exception() is not None:
            log.warning("fetching revocation list %s failed: %s", url[:200], type(task.exception()).__name__)
            self._failed[url] = time.monotonic() + _RETRY_SECONDS

    async def _fetch(self, url: str) -> None:
        async with httpx.AsyncClient(timeout=self.timeout, follow_redirects=True) as client:
            async with client.stream("GET", url) as response:
                response.raise_for_status()
                body = b""
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if len(body) > _MAX_BYTES:
                        raise ValueError("revocation list too large")
        crl = (
            x509.load_pem_x509_crl(body)
            if body.lstrip().startswith(b"-----")
            else x509.load_der_x509_crl(body)
        )
        keep = _MAX_SECONDS
        if crl.next_update_utc is not None:
            keep = min(keep, (crl.next_update_utc - datetime.now(UTC)).total_seconds())
        self._lists[url] = (time.monotonic() + max(keep, 0.0), crl)
        self._failed.pop(url, None)


def revocation_error(
    chain: list[x509.Certificate], lookup: Callable[[str], x509.CertificateRevocationList | None]
) -> tuple[str, str] | None:
    """(reason, why) when a certificate of `chain` (leaf first, root last) is revoked or its status
    unknown, from the lists `lookup` holds; None: none is revoked."""
    now = datetime.now(UTC)
    for cert, issuer in itertools.pairwise(chain):
        who = cert.subject.rfc4514_string()
        urls = crl_urls(cert)
        if not urls:
            return (
                "ClientCertificateRevocationUnknown",
                f"the revocation status of '{who}' is unknown: it names no revocation list",
            )
        crl = next(
            (
                c
                for c in map(lookup, urls)
                if c is not None
                and c.issuer == issuer.subject
                and c.is_signature_valid(issuer.public_key())  # type: ignore[arg-type]
                and (c.next_update_utc is None or c.next_update_utc >= now)
            ),
            None,
        )
        if crl is None:
            return (
                "ClientCertificateRevocationUnknown",
                f"the revocation status of '{who}' is unknown: its revocation list could not be obtained",
            )
        if crl.get_revoked_certificate_by_serial_number(cert.serial_number) is not None:
            return "ClientCertificateRevoked", f"the certificate '{who}' was revoked"
    return None


REVOCATION_LISTS = RevocationLists()  # the process's, shared by every service


__all__ = ["REVOCATION_LISTS", "RevocationLists", "crl_urls", "revocation_error"]
