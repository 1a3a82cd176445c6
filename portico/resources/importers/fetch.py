"""Fetching a linked definition (`*-link` formats) from a URL the caller chose, defensively: http(s)
only, public addresses only (loopback is allowed; other private networks only when configured),
every redirect hop checked again, a bounded number of redirects, a deadline and a size limit."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin, urlsplit, urlunsplit

import httpx

from portico.resources.importers.model import ImportFailed

MAX_REDIRECTS = 5


@dataclass(frozen=True)
class FetchLimits:
    timeout: float = 10.0
    max_bytes: int = 20 * 1024 * 1024
    allow_private_networks: bool = False


async def _check_target(url: str, limits: FetchLimits) -> str:
    """The address to connect to for `url`, after checking every address its host resolves to."""
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https"):
        raise ImportFailed(f"the link must be an http or https URL, not '{parts.scheme[:20]}:'")
    host = parts.hostname
    if not host:
        raise ImportFailed("the link has no host")
    try:
        port = parts.port or (443 if parts.scheme.lower() == "https" else 80)
    except ValueError:
        raise ImportFailed("the link has an invalid port") from None
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError:
        raise ImportFailed(f"the link's host '{host[:200]}' cannot be resolved") from None
    if not infos:
        raise ImportFailed(f"the link's host '{host[:200]}' cannot be resolved")
    for info in infos:
        addr = ipaddress.ip_address(info[4][0])
        if addr.is_loopback or limits.allow_private_networks:
            continue
        if (
            addr.is_private
            or addr.is_link_local
            or addr.is_reserved
            or addr.is_multicast
            or addr.is_unspecified
        ):
            raise ImportFailed(
                f"the link's host '{host[:200]}' is on a private network ({addr}); set "
                "PORTICO_IMPORT_ALLOW_PRIVATE_NETWORKS=true to allow such links"
            )
    return str(infos[0][4][0])


def _pinned(url: str, address: str) -> tuple[str, dict[str, str], dict[str, Any]]:
    """`url` with its host replaced by the checked address, so that a second DNS answer cannot
    send the connection elsewhere; with the Host header and the TLS name the certificate must
    match (the original host)."""
    parts = urlsplit(url)
    ip = f"[{address}]" if ":" in address else address
    netloc = ip if parts.port is None else f"{ip}:{parts.port}"
    pinned = urlunsplit((parts.scheme, netloc, parts.path or "/", parts.query, ""))
    headers = {"Host": parts.netloc.rsplit("@", 1)[-1]}
    extensions: dict[str, Any] = {"sni_hostname": parts.hostname} if parts.scheme.lower() == "https" else {}
    return pinned, headers, extensions


async def fetch_text(url: str, limits: FetchLimits, *, json_body: Any = None) -> tuple[str, str]:
    """(text, final URL) of a GET (or a JSON POST when `json_body` is given); 400 on any failure."""
    try:
        return await asyncio.wait_for(_fetch(url, limits, json_body), timeout=limits.timeout)
    except TimeoutError:
        raise ImportFailed(
            f"the link did not answer within {limits.timeout:g} seconds: {_safe(url)}"
        ) from None


async def _fetch(url: str, limits: FetchLimits, json_body: Any) -> tuple[str, str]:
    timeout = httpx.Timeout(limits.timeout)
    method = "POST" if json_body is not None else "GET"
    async with httpx.AsyncClient(timeout=timeout, follow_redirects=False, trust_env=False) as client:
        for _ in range(MAX_REDIRECTS + 1):
            address = await _check_target(url, limits)
            target, headers, extensions = _pinned(url, address)
            request = client.build_request(
                method, target, json=json_body, headers=headers, extensions=extensions
            )
            try:
                resp = await client.send(request, stream=True)
                try:
                    if resp.is_redirect and "location" in resp.headers:
                        url = urljoin(url, resp.headers["location"])
                        continue
                    return await _read(resp, url, limits), url
                finally:
                    await resp.aclose()
            except httpx.HTTPError as exc:
                raise ImportFailed(
                    f"the link cannot be fetched ({type(exc).__name__}): {_safe(url)}"
                ) from None
    raise ImportFailed(f"the link redirects more than {MAX_REDIRECTS} times")


async def _read(resp: httpx.Response, url: str, limits: FetchLimits) -> str:
    if resp.status_code >= 400:
        raise ImportFailed(f"the link answered HTTP {resp.status_code}: {_safe(url)}")
    declared = resp.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limits.max_bytes:
        raise _too_large(limits)
    chunks: list[bytes] = []
    size = 0
    async for chunk in resp.aiter_bytes():
        size += len(chunk)
        if size > limits.max_bytes:
            raise _too_large(limits)
        chunks.append(chunk)
    try:
        return b"".join(chunks).decode(resp.encoding or "utf-8")
    except (UnicodeDecodeError, LookupError):
        raise ImportFailed("the linked document is not text in a known encoding") from None


def _too_large(limits: FetchLimits) -> ImportFailed:
    return ImportFailed(f"the linked document is larger than {limits.max_bytes} bytes")


def _safe(url: str) -> str:
    """The URL without its query (it may carry a token) for error messages."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rsplit('@', 1)[-1]}{parts.path}"[:300]
