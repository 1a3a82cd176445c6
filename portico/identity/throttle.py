"""Throttling of failed client authentications at the token endpoint, decided before any secret is
hashed: every wrong secret costs ~50 ms of scrypt CPU, so guessing must not get to spend it freely.

Each key (a client id, a source address) has a token bucket of `capacity` failures that refills
over `window` seconds. An attempt takes one token up front (so a burst of concurrent guesses cannot
all pass the check before the first failure is counted); a success gives it back, so valid clients
never drain a bucket. An empty bucket answers 429 with Retry-After.

Which bucket an attempt draws on:
- a registered client id: its own bucket only. Guessing at one app's secret throttles that app's
  id and nothing else; failures from the same address on other ids never throttle it.
- an unknown client id: the source address's bucket (IPv6 by /64, what one host usually holds),
  so spraying made-up ids from one host is throttled without one bucket per made-up id.

Buckets untouched for a whole window are full, i.e. the same as absent: they are dropped as the
table is used, and the table never holds more than `max_keys` entries (least recently used go)."""

from __future__ import annotations

import ipaddress
import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass


class TokenBuckets:
    """Token buckets by key, bounded in memory; O(1) amortised per call."""

    def __init__(
        self,
        capacity: int,
        window: float,
        *,
        max_keys: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if capacity < 1 or window <= 0 or max_keys < 1:
            raise ValueError("capacity and max_keys must be at least 1 and window positive")
        self.capacity = capacity
        self.window = window
        self._rate = capacity / window  # tokens per second
        self._max_keys = max_keys
        self._clock = clock
        # key -> (tokens, last update); ordered by last update, oldest first.
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    def _sweep(self, now: float) -> None:
        while self._buckets:
            last = next(iter(self._buckets.values()))[1]
            if now - last < self.window and len(self._buckets) <= self._max_keys:
                break
            self._buckets.popitem(last=False)

    def _level(self, key: str, now: float) -> float:
        found = self._buckets.get(key)
        if found is None:
            return float(self.capacity)
        tokens, last = found
        return min(float(self.capacity), tokens + (now - last) * self._rate)

    def _store(self, key: str, tokens: float, now: float) -> None:
        if tokens >= self.capacity:
            self._buckets.pop(key, None)  # full is the same as absent
            return
        self._buckets[key] = (tokens, now)
        self._buckets.move_to_end(key)
        self._sweep(now)

    def take(self, key: str) -> float:
        """Take one token: 0.0 when taken, else the seconds until one is available (nothing taken)."""
        now = self._clock()
        tokens = self._level(key, now)
        if tokens < 1.0:
            return (1.0 - tokens) / self._rate
        self._store(key, tokens - 1.0, now)
        return 0.0

    def give_back(self, key: str) -> None:
        now = self._clock()
        self._store(key, self._level(key, now) + 1.0, now)


def address_key(host: str | None) -> str:
    """The throttling key of a source address: IPv4 as is, IPv6 by its /64 network."""
    if not host:
        return "-"
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return host[:100]
    if ip.version == 6:
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


@dataclass
class Attempt:
    """One client authentication that passed the throttle: report how it ended."""

    _buckets: TokenBuckets
    _key: str

    def succeeded(self) -> None:
        self._buckets.give_back(self._key)

    def failed(self) -> None:
        """Nothing to do: the token taken up front is the failure's cost."""


class Throttled(Exception):
    def __init__(self, retry_after: float) -> None:
        super().__init__(f"too many failed attempts; retry after {retry_after:.0f} s")
        self.retry_after = max(1, math.ceil(retry_after))


class ClientAuthThrottle:
    """Failed client authentications per registered client id, and per source address for ids
    that name no app. Defaults: 10 failures a minute per client id (a valid client never fails);
    100 a minute per address, generous for many clients behind one NAT or proxy."""

    def __init__(
        self,
        *,
        per_client: int = 10,
        per_address: int = 100,
        window: float = 60.0,
        max_keys: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._clients = TokenBuckets(per_client, window, max_keys=max_keys, clock=clock)
        self._addresses = TokenBuckets(per_address, window, max_keys=max_keys, clock=clock)

    def begin(self, client_id: str, address: str | None, *, registered: bool) -> Attempt:
        """Admit an attempt, or raise Throttled. Call before checking the secret."""
        buckets, key = (self._clients, client_id) if registered else (self._addresses, address_key(address))
        wait = buckets.take(key)
        if wait > 0:
            raise Throttled(wait)
        return Attempt(buckets, key)
