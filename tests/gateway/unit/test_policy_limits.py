"""Rate limits and quotas against a hand-built request and a fake backend (no server): counted in
the service's own counters, refused with API Management's messages and Retry-After."""

from __future__ import annotations

from tests.gateway.unit.harness import FakeBackend, pipeline, rejected, request, run, service, subscription


async def test_rate_limit_per_subscription() -> None:
    svc, be = service(), FakeBackend()
    pipe = pipeline(
        svc, inbound='<rate-limit calls="2" renewal-period="60" remaining-calls-header-name="x-remaining" />'
    )
    ann, bob = subscription("ann"), subscription("bob")
    first = await run(pipe, request(svc, be, sub=ann))
    assert first.headers["x-remaining"] == "1"
    assert (await run(pipe, request(svc, be, sub=ann))).status == 200
    rej = await rejected(pipe, request(svc, be, sub=ann))
    assert rej.status == 429 and rej.message.startswith("Rate limit is exceeded. Try again in ")
    assert 1 <= int(rej.headers["Retry-After"]) <= 60
    assert (await run(pipe, request(svc, be, sub=bob))).status == 200  # per subscription
    assert len(be.sent) == 3


async def test_quota_per_subscription() -> None:
    svc, be = service(), FakeBackend()
    pipe = pipeline(svc, inbound='<quota calls="1" renewal-period="3600" />')
    assert (await run(pipe, request(svc, be, sub=subscription()))).status == 200
    rej = await rejected(pipe, request(svc, be, sub=subscription()))
    assert rej.status == 403 and rej.message.startswith(
        "Out of call volume quota. Quota will be replenished in "
    )


async def test_quota_counters_are_keyed_by_subscription_and_nested_scope() -> None:
    svc, be = service(), FakeBackend()
    pipe = pipeline(
        svc,
        inbound='<quota calls="10" bandwidth="100" renewal-period="86400">'
        '<api id="echo" calls="5" renewal-period="3600"><operation id="op" calls="1" renewal-period="3600" />'
        "</api></quota>",
    )
    ann = subscription("ann")
    ann.data["startDate"] = "2026-01-01T00:00:00Z"  # periods count from the subscription's start
    assert (await run(pipe, request(svc, be, sub=ann))).status == 200
    rej = await rejected(pipe, request(svc, be, sub=ann))  # the operation's limit
    assert rej.status == 403
    ledger = svc.compiling.quotas
    counted = {(k[1], k[2].split("_", 1)[1]): e.total_calls() for k, e in ledger.entries.items()}
    assert counted == {("ann", "P1D"): 1, ("ann", "PT1H_echo"): 1, ("ann", "PT1H_echo_op"): 1}
    day = next(e for k, e in ledger.entries.items() if k[2].endswith("_P1D"))
    assert (day.period.start - 1767225600) % 86400 == 0  # days from 2026-01-01T00:00:00Z
    assert (await run(pipe, request(svc, be, sub=subscription("bob")))).status == 200  # per subscription


CLIENT = "context.Request.Headers.GetValueOrDefault(&quot;x-client&quot;, &quot;none&quot;)"


async def test_rate_limit_by_key() -> None:
    svc, be = service(), FakeBackend()
    pipe = pipeline(
        svc, inbound=f'<rate-limit-by-key calls="1" renewal-period="60" counter-key="@({CLIENT})" />'
    )
    assert (await run(pipe, request(svc, be, headers={"x-client": "a"}))).status == 200
    assert (await rejected(pipe, request(svc, be, headers={"x-client": "a"}))).status == 429
    assert (await run(pipe, request(svc, be, headers={"x-client": "b"}))).status == 200


async def test_quota_by_key_counts_each_key_once_and_after_the_response() -> None:
    svc = service()
    quota = f'<quota-by-key calls="2" renewal-period="3600" counter-key="@({CLIENT})" />'
    pipe = pipeline(svc, inbound=quota + quota)  # the same key twice on one request counts once
    ok = FakeBackend()
    for _ in range(2):
        assert (await run(pipe, request(svc, ok, headers={"x-client": "a"}))).status == 200
    rej = await rejected(pipe, request(svc, ok, headers={"x-client": "a"}))
    assert rej.status == 403 and 1 <= int(rej.headers["Retry-After"]) <= 3600
    assert (await run(pipe, request(svc, ok, headers={"x-client": "b"}))).status == 200
    judged = pipeline(
        svc,
        inbound=f'<quota-by-key calls="1" renewal-period="3600" counter-key="@(&quot;c&quot; + {CLIENT})"'
        ' increment-condition="@(context.Response.StatusCode == 200)" />',
    )
    missing = FakeBackend(status=404, body=b"")
    for _ in range(3):  # only 200s count
        assert (await run(judged, request(svc, missing, headers={"x-client": "z"}))).status == 404
    assert (await run(judged, request(svc, ok, headers={"x-client": "z"}))).status == 200
    assert (await rejected(judged, request(svc, ok, headers={"x-client": "z"}))).status == 403
