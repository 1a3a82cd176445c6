"""Signing keys of OpenID providers named by validate-jwt's <openid-config url=...>, cached.

Fetched off the request path when a policy is compiled, refreshed after `ttl`; a request only
waits for a fetch when the keys were never fetched (or a refresh is overdue and failed)."""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from typing import Any

import httpx
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

log = logging.getLogger("portico.gateway")


class JwksCache:
    def __init__(self, ttl: float = 3600.0, timeout: float = 10.0, verify: Any = True) -> None:
        self.ttl = ttl
        self.timeout = timeout
        self.verify = verify
        self._entries: dict[str, tuple[float, list[Any], str | None]] = {}
        self._inflight: dict[str, asyncio.Task[tuple[list[Any], str | None]]] = {}

    def prefetch(self, url: str) -> None:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return
        entry = self._entries.get(url)
        if entry is None or entry[0] < time.monotonic():
            self._start(url)

    def _start(self, url: str) -> asyncio.Task[tuple[list[Any], str | None]]:
        task = self._inflight.get(url)
        if task is None:
            task = asyncio.get_running_loop().create_task(self._fetch(url))
            self._inflight[url] = task
            task.add_done_callback(functools.partial(self._done, url))
        return task

    def _done(self, url: str, task: asyncio.Task[tuple[list[Any], str | None]]) -> None:
        self._inflight.pop(url, None)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            log.warning("fetching OpenID configuration %s failed: %s", url, type(exc).__name__)
            return
        keys, issuer = task.result()
        self._entries[url] = (time.monotonic() + self.ttl, keys, issuer)

    async def get(self, url: str) -> tuple[list[Any], str | None]:
        entry = self._entries.get(url)
        if entry is not None:
            if entry[0] < time.monotonic():
                self._start(url)  # refresh in the background, keep serving the cached keys
            return entry[1], entry[2]
        return await asyncio.shield(self._start(url))

    async def _fetch(self, url: str) -> tuple[list[Any], str | None]:
        async with httpx.AsyncClient(timeout=self.timeout, verify=self.verify) as client:
            doc = (await client.get(url)).raise_for_status().json()
            jwks_uri = doc.get("jwks_uri")
            if not isinstance(jwks_uri, str):
                raise ValueError("OpenID configuration has no jwks_uri")
            jwks = (await client.get(jwks_uri)).raise_for_status().json()
        keys = []
        for k in jwks.get("keys", []):
            try:
                keys.extend(KeySet.import_key_set({"keys": [k]}).keys)
            except (JoseError, ValueError, TypeError, KeyError):
                continue
        issuer = doc.get("issuer") if isinstance(doc.get("issuer"), str) else None
        return keys, issuer
