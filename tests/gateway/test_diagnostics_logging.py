"""Loggers and diagnostics applied by the gateway, configured through the Azure SDK: a service
diagnostic logging every request (headers named, bodies, secrets masked), an API diagnostic that
replaces it with errors only, `trace` messages filtered by verbosity, and `log-to-eventhub` writing
to its logger — all read back from the JSON-lines files of the local sink."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from azure.core.exceptions import HttpResponseError
from azure.mgmt.apimanagement import models as M

from tests.gateway.conftest import RG, GatewayEnv, eventually

pytestmark = pytest.mark.slow


def _lines(gw: GatewayEnv, logger: str) -> list[dict[str, Any]]:
    path = Path(gw.server.data_dir) / "gateway-logs" / gw.service / f"{logger}.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def _event_hub_logger(gw: GatewayEnv, name: str) -> None:
    hub = {"name": "h", "connectionString": "Endpoint=sb://x/;SharedAccessKey=s"}
    gw.client.logger.create_or_update(
        RG, gw.service, name, M.LoggerContract(logger_type="azureEventHub", credentials=hub)
    )


def _diagnostic(**kw: Any) -> M.DiagnosticContract:
    return M.DiagnosticContract(logger_id="/loggers/monitor", **kw)


def test_diagnostics_write_to_their_logger(gw: GatewayEnv, backend: str) -> None:
    c = gw.client
    c.logger.create_or_update(RG, gw.service, "monitor", M.LoggerContract(logger_type="azureMonitor"))
    _event_hub_logger(gw, "hub")
    message = M.HttpMessageDiagnostic(
        headers=["X-Trace", "Ocp-Apim-Subscription-Key", "Authorization", "Content-Type"],
        body=M.BodyDiagnosticSettings(bytes=5),
    )
    c.diagnostic.create_or_update(
        RG,
        gw.service,
        "azuremonitor",
        _diagnostic(
            sampling=M.SamplingSettings(sampling_type="fixed", percentage=100),
            verbosity="information",
            frontend=M.PipelineDiagnosticSettings(request=message, response=message),
            backend=M.PipelineDiagnosticSettings(request=message, response=message),
        ),
    )
    gw.api("logged", "logged", backend)
    gw.api("quiet", "quiet", backend)
    c.api_diagnostic.create_or_update(
        RG,
        gw.service,
        "quiet",
        "azuremonitor",
        _diagnostic(sampling=M.SamplingSettings(percentage=0), always_log="allErrors"),
    )
    gw.policy(
        "<policies><inbound><base/>"
        '<trace source="t" severity="information"><message>@("hello " + context.Request.Method)</message>'
        '<metadata name="who" value="me"/></trace>'
        '<trace source="t" severity="verbose"><message>too chatty</message></trace>'
        '<log-to-eventhub logger-id="hub" partition-key="k">@("event " + context.Request.Url.Path)</log-to-eventhub>'
        "</inbound></policies>",
        api="logged",
    )
    key = gw.subscription("diag-sub", "/apis")

    def logged() -> dict[str, Any]:
        r = gw.call(
            "POST",
            "/logged/x?subscription-key=" + key,
            headers={"X-Trace": "abc", "Authorization": "Bearer tok"},
            content=b"0123456789",
        )
        assert r.status_code == 200, r.text
        # lines are written after the answer: a refused try (the key not live yet) may be the last so far
        lines = [
            line for line in _lines(gw, "monitor") if line.get("api") == "logged" and line["status"] != 401
        ]
        assert lines
        return lines[-1]

    rec = eventually(logged, timeout=3)
    assert rec["type"] == "request" and rec["status"] == 200 and rec["method"] == "POST"
    assert key not in json.dumps(rec) and "tok" not in json.dumps(rec)
    assert "subscription-key=***" in rec["url"]
    fe_req = rec["frontend"]["request"]
    assert fe_req["headers"]["x-trace"] == "abc" and fe_req["headers"]["authorization"] == "***"
    assert fe_req["body"] == "01234"
    assert "x-trace" in rec["backend"]["request"]["headers"]  # forwarded to the backend
    assert rec["backend"]["response"]["headers"]["content-type"].startswith("application/json")
    assert rec["frontend"]["response"]["headers"]["content-type"].startswith("application/json")
    assert rec["traces"] == [
        {"source": "t", "severity": "information", "message": "hello POST", "metadata": {"who": "me"}}
    ]
    events = _lines(gw, "hub")
    assert events and events[-1]["message"] == "event /logged/x" and events[-1]["partitionKey"] == "k"

    # the API's own diagnostic: nothing sampled, errors always
    assert gw.get("/quiet/x", key=key).status_code == 200
    assert gw.get("/quiet/status/503", key=key).status_code == 503
    quiet = [line for line in _lines(gw, "monitor") if line.get("api") == "quiet"]
    assert [line["status"] for line in quiet] == [503]
    assert "frontend" not in quiet[0]  # this diagnostic names no headers or bodies


def test_log_to_eventhub_naming_a_missing_logger_is_refused_when_saved(gw: GatewayEnv, backend: str) -> None:
    c = gw.client
    gw.api("nolog", "nolog", backend)
    c.product.create_or_update(RG, gw.service, "nolog-p", M.ProductContract(display_name="P"))
    ghost = '<log-to-eventhub logger-id="ghost">x</log-to-eventhub>'
    policy = f"<policies><inbound>{ghost}</inbound></policies>"
    scopes: list[dict[str, str]] = [{}, {"api": "nolog"}, {"api": "nolog", "operation": "get-all"}]
    scopes.append({"product": "nolog-p"})
    for scope in scopes:
        with pytest.raises(HttpResponseError) as err:
            gw.policy(policy, **scope)
        assert err.value.status_code == 400, scope
        assert err.value.error is not None and err.value.error.code == "ValidationError"
        assert "logger 'ghost'" in err.value.message, err.value.message
    fragment = {"properties": {"value": f"<fragment>{ghost}</fragment>", "format": "xml"}}
    with pytest.raises(HttpResponseError) as err:
        c.policy_fragment.begin_create_or_update(RG, gw.service, "nolog-f", fragment).result()
    assert err.value.status_code == 400 and "logger 'ghost'" in err.value.message

    # Once the logger exists (named in another case) both save, and the logger cannot go while used.
    _event_hub_logger(gw, "Ghost")
    c.policy_fragment.begin_create_or_update(RG, gw.service, "nolog-f", fragment).result()
    gw.policy(policy, api="nolog", operation="get-all")
    for holder in ("apis/nolog/operations/get-all/policies/policy", "policyFragments/nolog-f"):
        with pytest.raises(HttpResponseError) as err:
            c.logger.delete(RG, gw.service, "ghost", if_match="*")
        assert err.value.status_code == 409 and err.value.error is not None
        assert err.value.error.code == "LoggerInUse" and holder in err.value.message, err.value.message
        if holder.startswith("apis/"):
            gw.delete_policy(api="nolog", operation="get-all")
        else:
            c.policy_fragment.delete(RG, gw.service, "nolog-f", if_match="*")
    c.logger.delete(RG, gw.service, "ghost", if_match="*")


def test_log_to_eventhub_whose_logger_expression_names_no_logger_fails_the_request(
    gw: GatewayEnv, backend: str
) -> None:
    gw.api("exprlog", "exprlog", backend)
    gw.policy(
        '<policies><inbound><log-to-eventhub logger-id="@(&quot;gh&quot; + &quot;ost&quot;)">x'
        "</log-to-eventhub></inbound></policies>",
        api="exprlog",
    )
    key = gw.subscription("exprlog-sub", "/apis")

    def refused() -> None:
        r = gw.get("/exprlog/x", key=key)
        assert r.status_code == 500 and "ghost" in r.text, r.text

    eventually(refused, timeout=3)


def test_w3c_correlation_reaches_the_backend_and_the_log(gw: GatewayEnv, backend: str) -> None:
    c = gw.client
    c.logger.create_or_update(RG, gw.service, "corr", M.LoggerContract(logger_type="azureMonitor"))
    gw.api("traced", "traced", backend)
    c.api_diagnostic.create_or_update(
        RG,
        gw.service,
        "traced",
        "applicationinsights",
        M.DiagnosticContract(
            logger_id="/loggers/corr",
            sampling=M.SamplingSettings(sampling_type="fixed", percentage=100),
            http_correlation_protocol="W3C",
            operation_name_format="Url",
        ),
    )
    key = gw.subscription("traced-sub", "/apis")
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"

    def traced() -> tuple[dict[str, Any], dict[str, Any]]:
        r = gw.get("/traced/x?y=1", key=key, headers={"traceparent": f"00-{trace_id}-00f067aa0ba902b7-01"})
        assert r.status_code == 200, r.text
        lines = [line for line in _lines(gw, "corr") if line.get("api") == "traced"]
        assert lines
        return r.json()["headers"], lines[-1]

    got, rec = eventually(traced, timeout=3)
    sent = got["traceparent"]
    assert sent.startswith(f"00-{trace_id}-") and sent != f"00-{trace_id}-00f067aa0ba902b7-01"
    assert rec["correlation"] == {"protocol": "W3C", "operationId": trace_id, "traceparent": sent}
    assert rec["operationName"] == "GET /traced/x"
