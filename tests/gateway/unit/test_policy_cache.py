"""Caching policies against a hand-built request and a fake backend (no server)."""

from __future__ import annotations

from tests.gateway.unit.harness import FakeBackend, pipeline, request, run, service

NONCE = '<set-header name="{}" exists-action="override"><value>@(context.Request.Headers.GetValueOrDefault(&quot;x-nonce&quot;, &quot;&quot;))</value></set-header>'


async def test_response_cache() -> None:
    svc, be = service(), FakeBackend()
    pipe = pipeline(
        svc,
        inbound='<cache-lookup vary-by-developer="false" vary-by-developer-groups="false" downstream-caching-type="public">'
        "<vary-by-header>Accept</vary-by-header><vary-by-query-parameter>v;w</vary-by-query-parameter></cache-lookup>",
        outbound=NONCE.format("X-Before") + '<cache-store duration="60" />' + NONCE.format("X-After"),
    )

    async def get(query: str, nonce: str, **headers: str) -> dict[str, str]:
        answer = await run(pipe, request(svc, be, query=query, headers={"x-nonce": nonce, **headers}))
        assert answer.status == 200 and answer.body == b'{"ok":true}'
        return answer.headers

    miss = await get("v=1", "a")
    assert len(be.sent) == 1 and miss["cache-control"] == "public, max-age=60, must-revalidate"
    hit = await get("v=1&other=z", "b")  # 'other' is not part of the key
    assert len(be.sent) == 1
    # outbound policies before cache-store are in the cached response; those after it run again
    assert (hit["x-before"], hit["x-after"]) == ("a", "b")
    await get("v=2", "c")  # another value of a vary-by parameter
    await get("v=1&w=x", "d")
    await get("v=1", "e", Accept="text/plain")
    await get("v=1", "g", Authorization="Bearer t")  # private: not cached
    assert len(be.sent) == 5
    await get("v=1", "h")
    assert len(be.sent) == 5  # still cached
    await run(pipe, request(svc, be, method="POST", query="v=1"))  # only GET is cached
    await run(pipe, request(svc, be, method="POST", query="v=1"))
    assert len(be.sent) == 7


async def test_cache_values() -> None:
    svc, be = service(), FakeBackend()
    who = "@(&quot;greeting-&quot; + context.Request.Headers.GetValueOrDefault(&quot;x-who&quot;, &quot;anon&quot;))"
    pipe = pipeline(
        svc,
        inbound='<choose><when condition="@(context.Request.Headers.ContainsKey(&quot;x-set&quot;))">'
        f'<cache-store-value key="{who}" value="@(context.Request.Headers.GetValueOrDefault(&quot;x-set&quot;, &quot;&quot;))" duration="60" />'
        '</when><when condition="@(context.Request.Headers.ContainsKey(&quot;x-del&quot;))">'
        f'<cache-remove-value key="{who}" /></when></choose>'
        f'<cache-lookup-value key="{who}" variable-name="greeting" default-value="none" />'
        '<set-header name="X-Greeting" exists-action="override"><value>@((string)context.Variables[&quot;greeting&quot;])</value></set-header>',
    )

    async def greeting(**headers: str) -> str:
        await run(pipe, request(svc, be, headers=headers))
        return be.sent[-1].headers["x-greeting"]

    assert await greeting() == "none"
    assert await greeting(**{"x-who": "ann", "x-set": "hi ann"}) == "hi ann"
    assert await greeting(**{"x-who": "ann"}) == "hi ann"
    assert await greeting(**{"x-who": "bob"}) == "none"
    await greeting(**{"x-who": "ann", "x-del": "1"})
    assert await greeting(**{"x-who": "ann"}) == "none"
