"""Throttling of failed client authentications at the token endpoint, decided before any secret is
hashed: every wrong secret costs ~50 ms of scrypt CPU, so guessing must not get to spend it freely.

Each key (a client id, a source address) has a token bucket of `capacity` failures that refills
over `window` seconds. An attempt takes one token up front (so a burst of concurrent guesses cannot
all pass the check before the first failure is counted); a success gives it back, so valid clients
never drain a bucket. An empty bucket answers 429 with Retry-After.

- Per registered client id and source address: guessing at one app's secret throttles that app
  from the guessing address only, so a noisy source (a misconfigured job, an attacker) cannot lock
  the app out where it runs with its right secret.
- Per source address (IPv6 by /64, what one host usually holds), over all client ids, made-up ones
  included: spraying ids from one host is throttled without one bucket per made-up id. A
  registered client with no failure of its own in the window is exempt, so others' failures on
  other ids behind the same address (a NAT, a proxy) never throttle a valid client; a guesser gets
  at most one try per app past an exhausted address.

Buckets untouched for a whole window are full, i.e. the same as absent: they are dropped as the
table is used, and the table never holds more than `max_keys` entries (least recently used go)."""

from __future__ import annotations

import ipaddress
import math
import time
from collections import OrderedDict
from collections.abc import Callable


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
        # key -> attempts that took a token and have not ended yet (bounded by concurrency).
        self._pending: dict[str, int] = {}

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
        """Take one token for an attempt: 0.0 when taken (end the attempt with `settle`), else the
        seconds until one is available (nothing taken)."""
        now = self._clock()
        tokens = self._level(key, now)
        if tokens < 1.0:
            return (1.0 - tokens) / self._rate
        self._store(key, tokens - 1.0, now)
        self._pending[key] = self._pending.get(key, 0) + 1
        return 0.0

    def settle(self, key: str, *, failed: bool) -> None:
        """End an attempt that took a token: a failure keeps it spent, anything else gives it back."""
        left = self._pending.get(key, 0) - 1
        if left > 0:
            self._pending[key] = left
        else:
            self._pending.pop(key, None)
        if not failed:
            now = self._clock()
            self._store(key, self._level(key, now) + 1.0, now)

    def unfailed(self, key: str) -> bool:
        """No failure of `key` within the window (attempts still under way do not count)."""
        return self._level(key, self._clock()) + self._pending.get(key, 0) >= self.capacity - 1e-9


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


class Attempt:
    """One client authentication that passed the throttle: report how it ended (once)."""

    def __init__(self, claims: list[tuple[TokenBuckets, str]]) -> None:
        self._claims = claims

    def _end(self, *, failed: bool) -> None:
        claims, self._claims = self._claims, []
        for buckets, key in claims:
            buckets.settle(key, failed=failed)

    def succeeded(self) -> None:
        self._end(failed=False)

    def failed(self) -> None:
        self._end(failed=True)


class Throttled(Exception):
    def __init__(self, retry_after: float) -> None:
        super().__init__(f"too many failed attempts; retry after {retry_after:.0f} s")
        self.retry_after = max(1, math.ceil(retry_after))


class ClientAuthThrottle:
    """Failed client authentications per registered client id from one source address, and per
    source address. Defaults: 10 failures a minute per client id and address (a valid client never
    fails); 100 a minute per address."""

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
        """Admit an attempt, or raise Throttled. Call before checking the secret; end the attempt
        with `succeeded()` or `failed()`. Ids that name no app get no bucket of their own (made-up
        ids would fill the table); the address's bucket limits them."""
        claims: list[tuple[TokenBuckets, str]] = []
        exempt = False
        addr = address_key(address)
        if registered:
            pair = f"{client_id} {addr}"  # registered client ids are GUIDs: no space in them
            exempt = self._clients.unfailed(pair)
            wait = self._clients.take(pair)
            if wait > 0:
                raise Throttled(wait)
            claims.append((self._clients, pair))
        wait = self._addresses.take(addr)
        if wait == 0:
            claims.append((self._addresses, addr))
        elif not exempt:
            Attempt(claims).succeeded()  # nothing was tried: give back what was taken
            raise Throttled(wait)
        return Attempt(claims)
