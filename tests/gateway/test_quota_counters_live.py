"""Quota counters end to end, on SQLite and PostgreSQL: a real server's gateway enforces a
quota-by-key policy, the Azure SDK's quotaByCounterKeys / quotaByPeriodKeys operations read and
reset the counter, the reset reaches the gateway, and the counter outlives a restart."""

from __future__ import annotations

import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.mgmt.apimanagement.models import QuotaCounterValueUpdateContract

from portico.store.db import Database
from tests.gateway import test_quota_counters as units
from tests.gateway.conftest import RG, SUB, GatewayEnv, eventually, gateway_env, make_service, unique
from tests.support.postgres import create_database
from tests.support.server import PorticoServer

pytestmark = pytest.mark.slow

CALLS = 3
CLIENT = "context.Request.Headers.GetValueOrDefault(&quot;x-client&quot;, &quot;none&quot;)"


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def qgw(
    request: pytest.FixtureRequest, server_factory: Callable[..., PorticoServer], backend: str
) -> Iterator[GatewayEnv]:
    server = server_factory(db=request.param, env=gateway_env(PORTICO_GATEWAY_QUOTA_FLUSH_SECONDS="0.2"))
    name = unique("quotasvc")
    client = make_service(server, name)
    with httpx.Client(timeout=30, verify=ssl.create_default_context(cafile=server.ca)) as http:
        gw = GatewayEnv(server, client, http, name)
        gw.api("metered", "metered", backend, subscriptionRequired=True)
        gw.policy(
            '<policies><inbound><base /><quota-by-key calls="3" bandwidth="1000000" renewal-period="86400" '
            f'counter-key="@({CLIENT})" first-period-start="2026-01-01T00:00:00Z" /></inbound>'
            "<backend><base /></backend><outbound><base /></outbound><on-error><base /></on-error></policies>",
            api="metered",
        )
        gw.api("plan", "plan", backend, subscriptionRequired=True)
        gw.policy(
            '<policies><inbound><base /><quota calls="2" renewal-period="3600" /></inbound>'
            "<backend><base /></backend><outbound><base /></outbound><on-error><base /></on-error></policies>",
            api="plan",
        )
        yield gw


def _call(gw: GatewayEnv, key: str, client: str) -> httpx.Response:
    return gw.get("/metered/items", key=key, headers={"x-client": client})


def _counters(gw: GatewayEnv, counter_key: str) -> Any:
    """The counters of a key; until the gateway's first flush of it there are none (404): the
    caller's `eventually` retries that as it does a wrong count."""
    try:
        return gw.client.quota_by_counter_keys.list_by_service(RG, gw.service, counter_key)
    except ResourceNotFoundError as exc:
        raise AssertionError(f"no counter '{counter_key}' yet") from exc


def _serves(gw: GatewayEnv, key: str) -> None:
    try:
        status = _call(gw, key, "warmup").status_code
    except httpx.HTTPError as exc:  # not listening yet, or a connection of the stopped server
        raise AssertionError(str(exc)) from None
    assert status == 200


def test_quota_by_key_counts_in_the_database_and_the_sdk_reads_and_resets_it(qgw: GatewayEnv) -> None:
    gw, sdk = qgw, qgw.client
    key = gw.subscription(unique("qsub"), "/apis/metered")
    eventually(lambda: _serves(gw, key), timeout=10)
    client = unique("client-")
    for _ in range(CALLS):
        assert _call(gw, key, client).status_code == 200
    over = _call(gw, key, client)
    assert over.status_code == 403, over.text  # Azure's status for an exhausted quota
    assert over.json()["message"].startswith("Out of call volume quota. Quota will be replenished in ")
    assert _call(gw, key, unique("other-")).status_code == 200  # per counter key

    def listed() -> Any:
        got = _counters(gw, client)
        assert len(got.value) == 1 and got.value[0].value.calls_count == CALLS, got.as_dict()
        return got.value[0]

    counter = eventually(listed, timeout=15)
    assert counter.counter_key == client and counter.period_key.endswith("_P1D")
    assert counter.period_end_time - counter.period_start_time == timedelta(days=1)
    assert counter.period_start_time.hour == 0 and counter.value.kb_transferred > 0  # both counted
    period = sdk.quota_by_period_keys.get(RG, gw.service, client, counter.period_key)
    assert (period.counter_key, period.period_key, period.value.calls_count) == (
        client,
        counter.period_key,
        CALLS,
    )

    # a reset through the SDK reaches the gateway within its flush interval
    reset = sdk.quota_by_counter_keys.update(
        RG, gw.service, client, QuotaCounterValueUpdateContract(calls_count=0, kb_transferred=0)
    )
    assert [(c.value.calls_count, c.value.kb_transferred) for c in reset.value] == [(0, 0)]
    eventually(lambda: _check(_call(gw, key, client).status_code == 200), timeout=5)
    for _ in range(CALLS - 1):
        assert _call(gw, key, client).status_code == 200
    assert _call(gw, key, client).status_code == 403
    eventually(listed, timeout=15)  # flushed (counts flushed after a PATCH add to what it set)
    one = sdk.quota_by_period_keys.update(
        RG, gw.service, client, counter.period_key, QuotaCounterValueUpdateContract(calls_count=CALLS - 1)
    )
    assert one.value.calls_count == CALLS - 1
    eventually(lambda: _check(_call(gw, key, client).status_code == 200), timeout=5)
    assert _call(gw, key, client).status_code == 403

    # the counter is in the database: a restarted server still refuses
    gw.server.stop()
    gw.server.start()
    eventually(lambda: _serves(gw, key), timeout=10)
    assert _call(gw, key, client).status_code == 403
    assert (
        sdk.quota_by_counter_keys.list_by_service(RG, gw.service, client).value[0].value.calls_count == CALLS
    )


def test_the_quota_policy_counts_per_subscription_from_its_start(qgw: GatewayEnv) -> None:
    gw = qgw
    sid = unique("plansub")
    key = gw.subscription(sid, "/apis/plan")
    eventually(lambda: _check(gw.get("/plan/x", key=key).status_code == 200), timeout=10)
    assert gw.get("/plan/x", key=key).status_code == 200
    assert gw.get("/plan/x", key=key).status_code == 403

    def listed() -> Any:
        [c] = _counters(gw, sid).value
        assert c.value.calls_count == 2
        return c

    counter = eventually(listed, timeout=15)
    created = gw.client.subscription.get(RG, gw.service, sid).created_date
    assert counter.period_key == "0_PT1H"  # the subscription's first hour
    assert abs((counter.period_start_time - created).total_seconds()) < 1


def test_unknown_counters_and_bad_bodies(qgw: GatewayEnv) -> None:
    gw, sdk = qgw, qgw.client
    with pytest.raises(ResourceNotFoundError):
        sdk.quota_by_counter_keys.list_by_service(RG, gw.service, "nobody")
    with pytest.raises(ResourceNotFoundError):
        sdk.quota_by_period_keys.get(RG, gw.service, "nobody", "0_P1D")
    with pytest.raises(ResourceNotFoundError):
        sdk.quota_by_counter_keys.update(
            RG, gw.service, "nobody", QuotaCounterValueUpdateContract(calls_count=0)
        )
    url = f"{gw.server.url}/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.ApiManagement/service/{gw.service}/quotas/nobody"
    headers = {"Authorization": f"Bearer {gw.server.token()}"}
    for body, field in (
        ({"properties": {"callsCount": -1}}, "callsCount"),
        ({"properties": {"callsCount": "5"}}, "callsCount"),
        ({"kbTransferred": "lots"}, "kbTransferred"),
        ({"properties": {"calls": 1}}, "calls"),
        ({}, "callsCount"),
    ):
        r = gw.http.patch(url, params={"api-version": "2024-05-01"}, json=body, headers=headers)
        assert r.status_code == 400 and field in r.json()["error"]["message"], (body, r.text)
    with pytest.raises(HttpResponseError) as err:
        sdk.quota_by_counter_keys.update(RG, gw.service, "nobody", QuotaCounterValueUpdateContract())
    assert err.value.status_code == 400


def test_worker_processes_share_one_quota(qgw: GatewayEnv) -> None:
    """Each call on a new connection (the kernel spreads them over the worker processes), after
    the previous one was flushed: the quota holds across processes."""
    gw = qgw
    key = gw.subscription(unique("qsub"), "/apis/metered")
    eventually(lambda: _serves(gw, key), timeout=10)
    client, statuses = unique("shared-"), []
    for _ in range(2 * CALLS):
        with httpx.Client(timeout=10) as fresh:
            r = fresh.get(
                f"http://127.0.0.1:{gw.port}/metered/items",
                headers={"Host": gw.host, "Ocp-Apim-Subscription-Key": key, "x-client": client},
            )
        statuses.append(r.status_code)
        time.sleep(0.5)  # more than a flush interval (0.2 s)
    assert statuses == [200] * CALLS + [403] * CALLS
    got = gw.client.quota_by_counter_keys.list_by_service(RG, gw.service, client)
    assert got.value[0].value.calls_count == CALLS


def _check(ok: bool) -> None:
    assert ok


@pytest.fixture(scope="module")
async def pg_db(pg_url: str) -> AsyncIterator[Database]:
    database = Database(create_database(pg_url, unique("quota_store_")))
    await database.start()
    yield database
    await database.close()


@pytest.mark.parametrize(
    "scenario",
    [
        units.test_processes_share_one_counter_through_their_flushes,
        units.test_only_active_stores_get_counters_and_they_follow_the_store,
        units.test_a_starting_process_knows_the_counters_before_it_serves,
        units.test_a_flush_writes_many_counters_in_a_few_statements,
    ],
    ids=lambda f: f.__name__.removeprefix("test_"),
)
async def test_the_counter_table_on_postgresql(
    pg_db: Database, scenario: Callable[[Database], Awaitable[None]]
) -> None:
    """The store-level scenarios of test_quota_counters.py (SQLite there) on PostgreSQL."""
    await scenario(pg_db)
