"""Throttling of failed client authentications: the token buckets, and the token endpoint through
HTTP (ASGI) with a real scrypt check counted."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI

from portico.identity import apps as apps_mod
from portico.identity.apps import create_app
from portico.identity.issuer import build_identity_router
from portico.identity.keys import SigningKeys
from portico.identity.throttle import ClientAuthThrottle, Throttled, TokenBuckets, address_key
from portico.settings import Settings
from portico.store.db import Database

from .util import PUBLIC_URL, get_token


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_token_buckets_refill_and_give_back() -> None:
    clock = Clock()
    b = TokenBuckets(3, 30.0, clock=clock)  # 3 failures per 30 s: one token back every 10 s
    assert b.unfailed("k")
    assert [b.take("k") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert b.unfailed("k")  # three attempts under way, none failed yet
    for _ in range(3):
        b.settle("k", failed=True)
    assert not b.unfailed("k")
    assert b.take("k") == pytest.approx(10.0)
    assert b.take("other") == 0.0  # keys are independent
    clock.now += 4
    assert b.take("k") == pytest.approx(6.0)  # a refused take costs nothing
    clock.now += 6
    assert b.take("k") == 0.0 and b.take("k") > 0
    b.settle("k", failed=False)  # a success gives its token back
    assert b.take("k") == 0.0
    b.settle("k", failed=True)
    clock.now += 30
    assert b.unfailed("k")
    assert [b.take("k") for _ in range(3)] == [0.0, 0.0, 0.0]  # never more than the capacity
    assert b.take("k") > 0


def test_token_buckets_are_bounded() -> None:
    clock = Clock()
    b = TokenBuckets(2, 60.0, max_keys=100, clock=clock)
    for i in range(1000):
        b.take(f"k{i}")
        b.settle(f"k{i}", failed=True)
        assert len(b) <= 100
    assert b.take("k999") == 0.0 and b.take("k999") > 0  # the most recent keep their state
    b.settle("k999", failed=True)
    clock.now += 60
    b.take("fresh")
    assert len(b) == 1  # everything a window old is full again, so dropped
    b.settle("fresh", failed=False)
    assert len(b) == 0  # full is the same as absent
    with pytest.raises(ValueError):
        TokenBuckets(0, 60.0)


def test_address_key() -> None:
    assert address_key("192.0.2.7") == "192.0.2.7"
    assert address_key("2001:db8:1:2::5") == address_key("2001:db8:1:2:ffff::1") == "2001:db8:1:2::/64"
    assert address_key("2001:db8:1:3::5") != address_key("2001:db8:1:2::5")
    assert address_key(None) == address_key("") == "-"
    assert address_key("testclient") == "testclient"


def test_client_auth_throttle() -> None:
    clock = Clock()
    t = ClientAuthThrottle(per_client=2, per_address=3, window=60.0, clock=clock)
    # A registered id's failures count per source address: the guessing address is throttled...
    t.begin("app-a", "192.0.2.1", registered=True).failed()
    for _ in range(2):
        t.begin("app-a", "198.51.100.9", registered=True).failed()
    with pytest.raises(Throttled) as info:
        t.begin("app-a", "198.51.100.9", registered=True)
    assert info.value.retry_after == 30
    # ...not the app where it runs with its right secret, nor where it failed less.
    t.begin("app-a", "203.0.113.5", registered=True).succeeded()
    t.begin("app-a", "192.0.2.1", registered=True).succeeded()
    for _ in range(5):
        t.begin("app-b", "192.0.2.1", registered=True).succeeded()  # successes never drain it
    # The address's bucket counts failures on every id, made-up ones included.
    t.begin("nope-1", "192.0.2.1", registered=False).failed()
    t.begin("nope-2", "192.0.2.1", registered=False).failed()  # 3rd failure from 192.0.2.1
    with pytest.raises(Throttled):
        t.begin("nope-3", "192.0.2.1", registered=False)
    t.begin("nope-3", "192.0.2.2", registered=False).failed()  # another address
    # A registered id without failures of its own is exempt from its address's limit...
    t.begin("app-b", "192.0.2.1", registered=True).succeeded()
    t.begin("app-c", "192.0.2.1", registered=True).failed()
    # ...until it fails: then the exhausted address throttles it too.
    with pytest.raises(Throttled):
        t.begin("app-c", "192.0.2.1", registered=True)
    for _ in range(2):  # from elsewhere, its own limit there
        t.begin("app-c", "192.0.2.2", registered=True).failed()
    with pytest.raises(Throttled):
        t.begin("app-c", "192.0.2.2", registered=True)
    clock.now += 60
    t.begin("nope-4", "192.0.2.1", registered=False).failed()  # a window later, all refilled


def test_refused_attempt_keeps_nothing() -> None:
    clock = Clock()
    t = ClientAuthThrottle(per_client=2, per_address=1, window=60.0, clock=clock)
    t.begin("app-a", "192.0.2.1", registered=True).failed()  # address exhausted, app-a failed once
    for _ in range(3):
        with pytest.raises(Throttled) as info:
            t.begin("app-a", "192.0.2.1", registered=True)
        # refused by the address (a token a minute), never by app-a's own bucket (two a minute),
        # which a kept token would have emptied
        assert info.value.retry_after == 60
    t.begin("app-a", "192.0.2.9", registered=True).failed()  # elsewhere: not refused


# --- the token endpoint -------------------------------------------------------------------------


@pytest.fixture
def scrypt_checks(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Counts every scrypt secret check the token endpoint runs."""
    calls: list[str] = []
    real = apps_mod.check_secret

    def counting(secret: str, stored: str) -> bool:
        calls.append(secret)
        return real(secret, stored)

    monkeypatch.setattr(apps_mod, "check_secret", counting)
    return calls


@pytest.fixture
async def throttled_client(
    settings: Settings, db: Database, keys: SigningKeys
) -> AsyncIterator[httpx.AsyncClient]:
    app = FastAPI()
    throttle = ClientAuthThrottle(per_client=4, per_address=6, window=60.0)
    app.include_router(build_identity_router(settings, db, keys, throttle))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=PUBLIC_URL) as c:
        yield c


def assert_throttled(r: httpx.Response) -> None:
    assert r.status_code == 429, r.text
    body = r.json()
    assert set(body) == {"error", "error_description"}
    assert body["error"] == "temporarily_unavailable"
    retry_after = int(r.headers["Retry-After"])
    assert 1 <= retry_after <= 60 and f"Retry after {retry_after} seconds" in body["error_description"]
    assert r.headers["Cache-Control"] == "no-store"


async def test_wrong_secrets_for_an_app_are_throttled_before_scrypt(
    throttled_client: httpx.AsyncClient, db: Database, scrypt_checks: list[str]
) -> None:
    victim, _ = await create_app(db, "victim")
    other, other_secret = await create_app(db, "other")
    for _ in range(4):
        assert (await get_token(throttled_client, victim, "wrong")).status_code == 401
    assert len(scrypt_checks) == 4
    for _ in range(20):
        assert_throttled(await get_token(throttled_client, victim, "wrong"))
    assert len(scrypt_checks) == 4  # no scrypt CPU spent on throttled attempts
    # Another client, same address: never throttled by those failures, and its successes are free.
    for _ in range(10):
        assert (await get_token(throttled_client, other, other_secret)).status_code == 200


async def test_a_noisy_source_does_not_lock_the_app_out_elsewhere(
    settings: Settings, db: Database, keys: SigningKeys, scrypt_checks: list[str]
) -> None:
    app = FastAPI()
    app.include_router(build_identity_router(settings, db, keys, ClientAuthThrottle(per_client=4)))
    client_id, secret = await create_app(db, "shared")

    def source(host: str) -> httpx.AsyncClient:
        transport = httpx.ASGITransport(app=app, client=(host, 50000))
        return httpx.AsyncClient(transport=transport, base_url=PUBLIC_URL)

    async with source("198.51.100.7") as noisy, source("203.0.113.20") as elsewhere:
        for _ in range(4):
            assert (await get_token(noisy, client_id, "stale-secret")).status_code == 401
        # The noisy source is throttled, even with the right secret (no scrypt is spent)...
        assert_throttled(await get_token(noisy, client_id, "stale-secret"))
        assert_throttled(await get_token(noisy, client_id, secret))
        assert len(scrypt_checks) == 4
        # ...while the app, where it runs, keeps getting its tokens.
        for _ in range(3):
            r = await get_token(elsewhere, client_id, secret)
            assert r.status_code == 200 and "access_token" in r.json(), r.text


async def test_failures_on_many_apps_are_throttled_per_address(
    throttled_client: httpx.AsyncClient, db: Database, scrypt_checks: list[str]
) -> None:
    a, _ = await create_app(db, "a")
    b, _ = await create_app(db, "b")
    c, _ = await create_app(db, "c")
    good, good_secret = await create_app(db, "good")
    for app in (a, a, a, b, b, b):
        assert (await get_token(throttled_client, app, "wrong")).status_code == 401
    assert (await get_token(throttled_client, c, "wrong")).status_code == 401  # its one free try
    for app in (a, b, c):
        assert_throttled(await get_token(throttled_client, app, "wrong"))
    assert len(scrypt_checks) == 7
    assert (await get_token(throttled_client, good, good_secret)).status_code == 200


async def test_made_up_client_ids_are_throttled_per_address(
    throttled_client: httpx.AsyncClient, db: Database, scrypt_checks: list[str]
) -> None:
    good, good_secret = await create_app(db, "good")
    for i in range(6):
        assert (await get_token(throttled_client, f"made-up-{i}", "x")).status_code == 401
    assert_throttled(await get_token(throttled_client, "made-up-99", "x"))
    assert len(scrypt_checks) == 6
    # A registered client behind the same address still gets its tokens.
    r = await get_token(throttled_client, good, good_secret)
    assert r.status_code == 200 and "access_token" in r.json()


async def test_concurrent_guesses_cannot_pass_together(
    throttled_client: httpx.AsyncClient, db: Database, scrypt_checks: list[str]
) -> None:
    victim, _ = await create_app(db, "victim")
    results = await asyncio.gather(*(get_token(throttled_client, victim, f"guess-{i}") for i in range(16)))
    statuses = sorted(r.status_code for r in results)
    assert statuses == [401] * 4 + [429] * 12
    assert len(scrypt_checks) == 4


async def test_default_limits_keep_valid_clients_unthrottled(
    client: httpx.AsyncClient, creds: tuple[str, str]
) -> None:
    # The default router's throttle (10 failures a minute per client): successes are never counted.
    for _ in range(12):
        assert (await get_token(client, *creds)).status_code == 200
