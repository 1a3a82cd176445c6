"""Routing (host, path, version sets, operations), subscription keys and forwarding, end to end."""

from __future__ import annotations

import socket
import time
from typing import Any

import pytest

from tests.gateway.conftest import DOMAIN, RG, GatewayEnv, closed_port, eventually

pytestmark = pytest.mark.slow

MISSING = "Access denied due to missing subscription key. Make sure to include subscription key when making requests to an API."
INVALID = "Access denied due to invalid subscription key. Make sure to provide a valid key for an active subscription."


@pytest.fixture(scope="module")
def setup(gw: GatewayEnv, backend: str) -> dict[str, Any]:
    gw.api(
        "echo",
        "echo",
        backend + "/base",
        ops=[
            ("get-item", "GET", "/items/{id}"),
            ("get-order", "GET", "/items/{id}/orders/{orderId}"),
            ("get-search", "GET", "/search?q={q}"),
            ("post-items", "POST", "/items"),
            ("files", "GET", "/files/{*rest}"),
            ("any-misc", "PATCH", "/misc/*"),
            ("literal", "GET", "/items/special"),
        ],
    )
    gw.api("deep", "echo/deep", backend + "/deep", ops=[("all", "GET", "/*")])
    gw.api(
        "custom", "custom", backend, subscriptionKeyParameterNames={"header": "X-My-Key", "query": "mykey"}
    )
    gw.api("open", "open", backend, subscriptionRequired=False)
    gw.api("inproduct", "inproduct", backend)
    gw.api("other", "other", backend)
    gw.client.product.create_or_update(
        RG,
        gw.service,
        "gold",
        {"properties": {"displayName": "Gold", "state": "published", "subscriptionRequired": True}},
    )
    gw.client.product_api.create_or_update(RG, gw.service, "gold", "inproduct")
    gw.client.product.create_or_update(
        RG,
        gw.service,
        "free",
        {"properties": {"displayName": "Free", "state": "published", "subscriptionRequired": False}},
    )
    gw.api("freeapi", "freeapi", backend)
    gw.client.product_api.create_or_update(RG, gw.service, "free", "freeapi")
    keys = {
        "all": gw.subscription("all", "/apis"),
        "echo": gw.subscription("echo-only", "/apis/echo"),
        "gold": gw.subscription("gold-sub", "/products/gold"),
        "suspended": gw.subscription("susp", "/apis", state="suspended"),
    }
    keys["all2"] = str(gw.client.subscription.list_secrets(RG, gw.service, "all").secondary_key)
    # version sets: segment, query, header
    for vs, scheme in (("vseg", "Segment"), ("vq", "Query"), ("vh", "Header")):
        gw.client.api_version_set.create_or_update(
            RG,
            gw.service,
            vs,
            {
                "properties": {
                    "displayName": vs,
                    "versioningScheme": scheme,
                    "versionQueryName": "api-version",
                    "versionHeaderName": "Api-Version",
                }
            },
        )
        for v in ("v1", "v2"):
            gw.api(
                f"{vs}-{v}", vs, f"{backend}/{vs}/{v}", apiVersion=v, apiVersionSetId=f"/apiVersionSets/{vs}"
            )
    eventually(lambda: _ok(gw.get("/echo/items/1", key=keys["all"])), timeout=3)
    eventually(lambda: _ok(gw.get("/vh/x", key=keys["all"], headers={"Api-Version": "v2"})), timeout=3)
    return keys


def _ok(r: Any) -> Any:
    assert r.status_code == 200, r.text
    return r.json()


def test_host_routing_and_not_found_bodies(gw: GatewayEnv, setup: dict[str, Any]) -> None:
    k = setup["all"]
    assert gw.get("/echo/items/1", key=k, host=f"nosuch.{DOMAIN}").json() == {
        "statusCode": 404,
        "message": "Resource not found",
    }
    assert gw.get("/echo/items/1", key=k, host=f"{gw.service.upper()}.{DOMAIN.upper()}:80").status_code == 200
    r = gw.get("/nothing/here", key=k)
    assert r.status_code == 404 and r.json() == {"statusCode": 404, "message": "Resource not found"}
    r = gw.call("DELETE", "/echo/items/1", key=k)  # API found, no DELETE operation
    assert r.status_code == 404 and r.json()["message"] == "Resource not found"


def test_keys_missing_invalid_and_valid(gw: GatewayEnv, setup: dict[str, Any]) -> None:
    r = gw.get("/echo/items/1")
    assert r.status_code == 401 and r.json() == {"statusCode": 401, "message": MISSING}
    r = gw.get("/echo/items/1", key="not-a-key")
    assert r.status_code == 401 and r.json() == {"statusCode": 401, "message": INVALID}
    assert gw.get("/echo/items/1", key=setup["suspended"]).json()["message"] == INVALID
    # header or query, primary or secondary; the key never reaches the backend
    doc = _ok(gw.get("/echo/items/1", key=setup["all2"]))
    assert "ocp-apim-subscription-key" not in doc["headers"]
    doc = _ok(gw.get(f"/echo/items/1?subscription-key={setup['all']}&keep=1"))
    assert doc["query"] == {"keep": "1"}
    # the API's own names
    assert gw.get("/custom/x", key=setup["all"]).status_code == 401  # default header name is not the API's
    doc = _ok(gw.get("/custom/x", headers={"X-My-Key": setup["all"]}))
    assert "x-my-key" not in doc["headers"]
    doc = _ok(gw.get(f"/custom/x?mykey={setup['all']}"))
    assert doc["query"] == {}


def test_key_scopes(gw: GatewayEnv, setup: dict[str, Any]) -> None:
    assert gw.get("/echo/items/1", key=setup["echo"]).status_code == 200
    assert gw.get("/other/x", key=setup["echo"]).json()["message"] == INVALID  # API scope covers only its API
    assert gw.get("/inproduct/x", key=setup["gold"]).status_code == 200  # product containing the API
    assert gw.get("/other/x", key=setup["gold"]).json()["message"] == INVALID
    assert gw.get("/open/x").status_code == 200  # subscription not required
    assert gw.get("/open/x", key="bogus").status_code == 401  # ... but a wrong key is still refused
    assert gw.get("/freeapi/x").status_code == 200  # open product


def test_operation_matching(gw: GatewayEnv, setup: dict[str, Any], backend: str) -> None:
    k = setup["all"]
    assert _ok(gw.get("/echo/items/42", key=k))["path"] == "/base/items/42"
    assert _ok(gw.get("/echo/items/42/orders/7?x=1", key=k))["path"] == "/base/items/42/orders/7"
    assert _ok(gw.get("/echo/files/a/b/c.txt", key=k))["path"] == "/base/files/a/b/c.txt"
    assert _ok(gw.call("PATCH", "/echo/misc/anything/here", key=k))["method"] == "PATCH"  # wildcard path
    assert gw.get("/echo/search", key=k).status_code == 404  # required query parameter missing
    assert _ok(gw.get("/echo/search?q=abc", key=k))["query"] == {"q": "abc"}
    assert gw.get("/echo/items", key=k).status_code == 404  # GET /items is no operation; POST is
    assert _ok(gw.call("POST", "/echo/items", key=k, content=b"hello"))["bodyLength"] == 5
    # longest API path wins
    assert _ok(gw.get("/echo/deep/x", key=k))["path"] == "/deep/x"
    assert _ok(gw.get("/ECHO/Items/5", key=k))["path"] == "/base/Items/5"  # case-insensitive match, path kept


def test_version_sets(gw: GatewayEnv, setup: dict[str, Any]) -> None:
    k = setup["all"]
    assert _ok(gw.get("/vseg/v1/a", key=k))["path"] == "/vseg/v1/a"
    assert _ok(gw.get("/vseg/v2/a", key=k))["path"] == "/vseg/v2/a"
    assert gw.get("/vseg/v3/a", key=k).status_code == 404
    assert _ok(gw.get("/vq/a?api-version=v2", key=k))["path"] == "/vq/v2/a"
    assert gw.get("/vq/a", key=k).status_code == 404
    assert _ok(gw.get("/vh/a", key=k, headers={"Api-Version": "v1"}))["path"] == "/vh/v1/a"


def test_forwarding_headers_body_and_streams(gw: GatewayEnv, setup: dict[str, Any]) -> None:
    k = setup["all"]
    r = gw.get(
        "/echo/items/1?a=1&b=two%20words",
        key=k,
        headers={
            "Connection": "keep-alive, X-Hop",
            "X-Hop": "drop me",
            "X-Keep": "kept",
            "X-Forwarded-For": "10.9.9.9",
            "Keep-Alive": "timeout=5",
            "TE": "trailers",
        },
    )
    doc = _ok(r)
    h = doc["headers"]
    assert h["x-keep"] == "kept" and "x-hop" not in h and "te" not in h and "keep-alive" not in h
    assert h["x-forwarded-for"] == "10.9.9.9, 127.0.0.1"
    assert h["host"].startswith("127.0.0.1:")
    assert doc["rawQuery"] == "a=1&b=two%20words"
    assert r.headers["x-backend"] == "yes" and "keep-alive" not in r.headers
    # request body streamed (chunked from the client) and a chunked response streamed back
    body = (b"0123456789" * 1000 for _ in range(10))
    assert _ok(gw.call("POST", "/echo/items", key=k, content=body))["bodyLength"] == 100_000
    assert gw.get("/echo/files/stream", key=k).text == "part0;part1;part2;part3;part4;"
    assert len(gw.get("/echo/files/big?n=3000000", key=k).content) == 3_000_000
    # HTTPS listener with the server's TLS material
    assert _ok(gw.get("/echo/items/1", key=k, https=True))["path"] == "/base/items/1"


def test_backend_failures_and_timeouts(gw: GatewayEnv, setup: dict[str, Any], backend: str) -> None:
    k = setup["all"]
    gw.api("down", "down", f"http://127.0.0.1:{closed_port()}")
    gw.api("slow", "slow", backend)
    gw.policy(
        '<policies><inbound><base /></inbound><backend><forward-request timeout="1" /></backend><outbound><base /></outbound><on-error><base /></on-error></policies>',
        api="slow",
    )
    r = eventually(lambda: _status(gw.get("/down/x", key=k), 502))
    assert r.json()["statusCode"] == 502
    eventually(lambda: _status(gw.get("/slow/x", key=k), 200))
    # the API and its policy are two writes: the gateway may load the API a poll before the policy
    eventually(lambda: _status(gw.get("/slow/slow?s=2", key=k), 504), timeout=10)
    t0 = time.monotonic()
    r = gw.get("/slow/slow?s=6", key=k)
    assert r.status_code == 504 and time.monotonic() - t0 < 4.5  # the 1 s timeout, not the 6 s backend
    assert gw.get("/echo/files/status/503", key=k).status_code == 503  # backend errors pass through


def _status(r: Any, code: int) -> Any:
    assert r.status_code == code, r.text
    return r


def test_bad_inputs(gw: GatewayEnv, setup: dict[str, Any]) -> None:
    k = setup["all"]
    # huge headers → 431, before any routing
    r = gw.get("/echo/items/1", key=k, headers={"X-Big": "a" * 40_000})
    assert r.status_code in (400, 431)
    # declared body over the limit → 413 at once; streamed (chunked) body over the limit → 413 too
    r = gw.call("POST", "/echo/items", key=k, content=b"x" * (1024 * 1024 + 10))
    assert r.status_code == 413
    r = gw.call("POST", "/echo/items", key=k, content=(b"y" * 65536 for _ in range(20)))
    assert r.status_code == 413
    # malformed request line / header over a raw socket → 400 from the HTTP layer, server stays up
    for raw in (
        b"GET /echo/items/1 HTTP/1.1\r\nHost: x\r\nBad Header Without Colon\r\n\r\n",
        b"\x00\x01garbage\r\n\r\n",
    ):
        with socket.create_connection(("127.0.0.1", gw.port), timeout=5) as s:
            s.sendall(raw)
            data = s.recv(4096)
        assert data.startswith(b"HTTP/1.1 400"), data[:100]
    assert gw.get("/echo/items/1", key=k).status_code == 200
