"""Flow-control and side-request policies end to end: configured through the Azure SDK, served by
the Portico gateway, against small local services (a token service, lookups, a flaky backend and
one that holds requests)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from azure.core.exceptions import HttpResponseError
from azure.mgmt.apimanagement import models as M

from tests.gateway.conftest import RG, GatewayEnv, eventually, unique

pytestmark = pytest.mark.slow


@dataclass
class Services:
    """What the local services saw, and the gate that holds /hold requests."""

    url: str = ""
    tokens: int = 0
    flaky: dict[str, list[bytes]] = field(default_factory=dict)
    lookups_in_flight: int = 0
    lookups_most: int = 0
    holding: int = 0
    release: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)


def _handler(state: Services) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:
            pass

        def _send(self, status: int, doc: Any) -> None:
            out = json.dumps(doc).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)

        def _handle(self) -> None:
            n = int(self.headers.get("content-length") or 0)
            body = self.rfile.read(n) if n else b""
            path = self.path.split("?")[0]
            if path == "/token":
                with state.lock:
                    state.tokens += 1
                    token = f"tok-{state.tokens}"
                self._send(200, {"access_token": token, "grant": body.decode(), "expires_in": 60})
            elif path.startswith("/lookup/"):
                with state.lock:
                    state.lookups_in_flight += 1
                    state.lookups_most = max(state.lookups_most, state.lookups_in_flight)
                time.sleep(0.5)
                with state.lock:
                    state.lookups_in_flight -= 1
                self._send(200, {"v": path.rsplit("/", 1)[-1].upper()})
            elif path.startswith("/flaky/"):
                with state.lock:
                    seen = state.flaky.setdefault(path, [])
                    seen.append(body)
                    tries = len(seen)
                self._send(503 if tries < 3 else 200, {"try": tries, "body": body.decode()})
            elif path.startswith("/hold"):
                with state.lock:
                    state.holding += 1
                state.release.wait(20)
                self._send(200, {"held": True})
            else:
                self._send(404, {})

        do_GET = do_POST = do_PUT = _handle

    return Handler


@pytest.fixture(scope="module")
def services() -> Iterator[Services]:
    state = Services()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    yield state
    state.release.set()
    server.shutdown()
    server.server_close()


def _ok(gw: GatewayEnv, method: str, path: str, key: str, **kw: Any) -> Any:
    r = gw.call(method, path, key=key, **kw)
    assert r.status_code == 200, (r.status_code, r.text)
    return r


MARK = '<outbound><base /><set-header name="X-Flow" exists-action="override"><value>on</value></set-header></outbound>'


def _live(gw: GatewayEnv, api: str, key: str) -> None:
    """Wait until the API's policy document (marked by MARK) reaches the gateway."""
    eventually(lambda: _assert_marked(_ok(gw, "GET", f"/{api}/token", key)), timeout=10, interval=0.1)


def _assert_marked(r: Any) -> None:
    assert r.headers.get("x-flow") == "on"


def _with_header(gw: GatewayEnv, api: str, key: str, name: str) -> Any:
    doc = _ok(gw, "GET", f"/{api}/x", key).json()
    assert name in doc["headers"], doc["headers"]
    return doc


def test_send_request_answer_goes_into_a_header(gw: GatewayEnv, backend: str, services: Services) -> None:
    key = gw.subscription(unique("flow"), "/apis")
    api = unique("flowtok")
    gw.api(api, api, backend)
    gw.policy(
        "<policies><inbound><base />"
        '<send-request mode="new" response-variable-name="tokenResponse" timeout="10" ignore-error="false">'
        f"<set-url>{services.url}/token</set-url><set-method>POST</set-method>"
        '<set-header name="Content-Type" exists-action="override"><value>application/x-www-form-urlencoded</value></set-header>'
        '<set-body>@("client=" + context.Api.Id)</set-body></send-request>'
        '<set-header name="Authorization" exists-action="override"><value>@("Bearer " + '
        '(string)((IResponse)context.Variables["tokenResponse"]).Body.As&lt;JObject&gt;()["access_token"])</value></set-header>'
        '<set-header name="X-Token-Status" exists-action="override"><value>@(((IResponse)context.Variables["tokenResponse"]).StatusCode.ToString())</value></set-header>'
        "</inbound><backend><base /></backend><outbound><base /></outbound></policies>",
        api=api,
    )
    seen = eventually(lambda: _with_header(gw, api, key, "authorization"), timeout=10)
    assert seen["headers"]["authorization"].startswith("Bearer tok-")
    assert seen["headers"]["x-token-status"] == "200"
    second = _ok(gw, "GET", f"/{api}/x", key).json()
    assert second["headers"]["authorization"] != seen["headers"]["authorization"]  # asked again


def test_retry_succeeds_on_the_third_try_and_replays_the_body(gw: GatewayEnv, services: Services) -> None:
    key = gw.subscription(unique("flow"), "/apis")
    api = unique("flowretry")
    gw.api(api, api, services.url)
    gw.policy(
        "<policies><inbound><base /></inbound><backend>"
        '<retry condition="@(context.Response.StatusCode &gt;= 500)" count="3" interval="0.1" first-fast-retry="true">'
        '<forward-request timeout="10" /></retry>'
        f"</backend>{MARK}</policies>",
        api=api,
    )
    _live(gw, api, key)
    path = f"/flaky/{api}/order"
    payload = json.dumps({"order": 42, "items": ["a" * 1000]}).encode()
    answer = _ok(gw, "POST", f"/{api}{path}", key, content=payload).json()
    assert answer["try"] == 3
    assert services.flaky[path] == [payload, payload, payload]


def test_limit_concurrency_answers_429_over_the_limit(gw: GatewayEnv, services: Services) -> None:
    key = gw.subscription(unique("flow"), "/apis")
    api = unique("flowlim")
    gw.api(api, api, services.url)
    gw.policy(
        "<policies><inbound><base /></inbound><backend>"
        '<limit-concurrency key="@(context.Api.Id)" max-count="1"><forward-request timeout="30" /></limit-concurrency>'
        f"</backend>{MARK}</policies>",
        api=api,
    )
    _live(gw, api, key)
    with ThreadPoolExecutor(max_workers=2) as pool:
        first = pool.submit(gw.call, "GET", f"/{api}/hold", key=key)
        try:
            eventually(lambda: _assert_holding(services), timeout=15, interval=0.05)
            r = gw.call("GET", f"/{api}/token", key=key)
            assert r.status_code == 429, (r.status_code, r.text)
            assert r.json()["statusCode"] == 429
        finally:
            services.release.set()
        assert first.result(timeout=30).status_code == 200
    _assert_marked(_ok(gw, "GET", f"/{api}/token", key))  # the slot is free again


def _assert_holding(services: Services) -> None:
    assert services.holding >= 1


def test_wait_runs_two_send_requests_side_by_side(gw: GatewayEnv, backend: str, services: Services) -> None:
    key = gw.subscription(unique("flow"), "/apis")
    api = unique("flowwait")
    gw.api(api, api, backend)
    one = (
        '<send-request mode="new" response-variable-name="{0}" timeout="10">'
        f"<set-url>{services.url}/lookup/{{0}}</set-url><set-method>GET</set-method></send-request>"
    )
    value = '(string)((IResponse)context.Variables["{0}"]).Body.As&lt;JObject&gt;()["v"]'
    gw.policy(
        "<policies><inbound><base />"
        f'<wait for="all">{one.format("a")}{one.format("b")}</wait>'
        '<set-header name="X-Both" exists-action="override">'
        f"<value>@({value.format('a')} + {value.format('b')})</value></set-header>"
        "</inbound><backend><base /></backend><outbound><base /></outbound></policies>",
        api=api,
    )
    seen = eventually(lambda: _with_header(gw, api, key, "x-both"), timeout=10)
    assert seen["headers"]["x-both"] == "AB"
    assert services.lookups_most == 2  # both lookups were in flight at once


def test_invalid_flow_policies_are_refused_by_the_control_plane(gw: GatewayEnv, backend: str) -> None:
    api = unique("flowbad")
    gw.api(api, api, backend)
    for bad, named in [
        ('<send-request response-variable-name="r" mode="new" />', "set-url"),
        (
            '<send-request response-variable-name="r"><set-url>http://x/</set-url><proxy url="http://p/" /></send-request>',
            "proxy",
        ),
        ('<limit-concurrency key="k" max-count="0" />', "max-count"),
        ('<emit-metric name="calls"><dimension name="Region" /></emit-metric>', "needs a 'value'"),
    ]:
        with pytest.raises(HttpResponseError) as err:
            gw.policy(f"<policies><inbound>{bad}</inbound></policies>", api=api)
        assert err.value.status_code == 400 and named in str(err.value)


def test_emit_metric_writes_to_the_application_insights_logger(gw: GatewayEnv, backend: str) -> None:
    c = gw.client
    logger = unique("insights")
    c.logger.create_or_update(RG, gw.service, logger, M.LoggerContract(logger_type="azureMonitor"))
    key = gw.subscription(unique("flow"), "/apis")
    api = unique("flowmetric")
    gw.api(api, api, backend)
    c.api_diagnostic.create_or_update(
        RG,
        gw.service,
        api,
        "applicationinsights",
        M.DiagnosticContract(
            logger_id=f"/loggers/{logger}",
            sampling=M.SamplingSettings(sampling_type="fixed", percentage=0),
            metrics=True,
        ),
    )
    gw.policy(
        "<policies><inbound><base />"
        '<emit-metric name="Orders" value="@(context.Request.Headers.GetValueOrDefault(&quot;X-Count&quot;, &quot;1&quot;))" namespace="shop">'
        '<dimension name="API ID" /><dimension name="Channel" value="web" /></emit-metric>'
        "</inbound><backend><base /></backend><outbound><base /></outbound></policies>",
        api=api,
    )
    path = Path(gw.server.data_dir) / "gateway-logs" / gw.service / f"{logger}.jsonl"

    def metric() -> dict[str, Any]:
        _ok(gw, "GET", f"/{api}/x", key, headers={"X-Count": "3"})
        lines = [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []
        metrics = [x for x in lines if x.get("type") == "metric"]
        assert metrics, lines
        return metrics[-1]

    record = eventually(metric, timeout=10, interval=0.2)
    assert (record["namespace"], record["name"], record["value"]) == ("shop", "Orders", 3.0)
    assert record["dimensions"] == {"API ID": api, "Channel": "web"}
