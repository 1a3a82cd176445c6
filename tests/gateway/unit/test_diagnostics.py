"""Diagnostics without a server: which diagnostics apply to an API, what a message logs (headers
named, secrets masked, dataMasking, body bytes), and which requests are written (sampling,
alwaysLog) to the sink."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from portico.gateway.diagnostics import (
    Capture,
    Diagnostic,
    LogSink,
    Message,
    _masked_query,
    diagnostics_by_api,
    log_request,
)
from tests.gateway.unit.harness import FakeBackend, request, service

LOGGERS = {"mon": {"loggerType": "azureMonitor"}}


def _diag(**kw: Any) -> dict[str, Any]:
    return {"loggerId": "/loggers/mon", **kw}


def test_api_diagnostics_replace_the_services_of_the_same_id() -> None:
    raw = {
        ("", "azuremonitor"): _diag(sampling={"samplingType": "fixed", "percentage": 50}),
        ("", "applicationinsights"): _diag(),
        ("apis/echo", "azuremonitor"): _diag(sampling={"percentage": 0}),
        ("", "orphan"): {"loggerId": "/loggers/gone"},  # its logger is gone: logs nothing
    }
    by_api = diagnostics_by_api(raw, LOGGERS)
    assert sorted((d.name, d.sampling) for d in by_api[""]) == [
        ("applicationinsights", 100),
        ("azuremonitor", 50),
    ]
    assert sorted((d.name, d.sampling) for d in by_api["echo"]) == [
        ("applicationinsights", 100),
        ("azuremonitor", 0),
    ]
    assert diagnostics_by_api({}, LOGGERS) == {}


def test_messages_mask_secrets() -> None:
    m = Message.of(
        {
            "headers": ["X-A", "Authorization", "Cookie", "My-Key", "X-Hidden", "X-Masked"],
            "body": {"bytes": 3},
            "dataMasking": {
                "headers": [{"value": "X-Hidden", "mode": "Hide"}, {"value": "X-Masked", "mode": "Mask"}]
            },
        }
    )
    headers = [
        (b"x-a", b"1"),
        (b"X-A", b"2"),
        (b"authorization", b"Bearer t"),
        (b"cookie", b"c"),
        (b"my-key", b"k"),
        (b"x-hidden", b"h"),
        (b"x-masked", b"m"),
        (b"x-other", b"o"),
    ]
    out = m.render(headers, b"abcdef", "my-key")
    assert out == {
        "headers": {
            "x-a": "1, 2",
            "authorization": "***",
            "cookie": "***",
            "my-key": "***",
            "x-masked": "***",
        },
        "body": "abc",
    }
    assert m.render(None, object(), "")["bodyNotCaptured"] == "streamed"


def test_sampling_and_errors(tmp_path: Path) -> None:
    svc, be = service(), FakeBackend()
    sink = LogSink(tmp_path)
    never = Diagnostic.of("azuremonitor", _diag(sampling={"percentage": 0}, alwaysLog="allErrors"))
    quiet = Diagnostic.of("other", _diag(sampling={"percentage": 0}))
    for status in (200, 500):
        be.status = status
        ctx = request(svc, be)
        ctx.diag = Capture((never, quiet), ctx.raw_headers)
        ctx.backend.forward_nowait(ctx, None, lambda _r: None)
        log_request(ctx, sink)
    sink.close()
    lines = [json.loads(x) for x in (tmp_path / svc.name / "mon.jsonl").read_text().splitlines()]
    assert [(x["diagnostic"], x["status"]) for x in lines] == [("azuremonitor", 500)]


def test_query_parameters_masked_in_the_url() -> None:
    m = Message.of(
        {
            "dataMasking": {
                "queryParams": [{"value": "token", "mode": "Mask"}, {"value": "pii", "mode": "Hide"}]
            }
        }
    )
    q = "a=1&Subscription-Key=s3cret&token=t&pii=p&b"
    assert _masked_query(q, "subscription-key", m) == "a=1&Subscription-Key=***&token=***&b"
    assert _masked_query("a=1", "subscription-key", Message()) == "a=1"


def _logged(tmp_path: Path, diagnostics: list[Diagnostic], **kw: Any) -> tuple[dict[str, str], list[Any]]:
    """One request through the fake backend: the headers the backend got, the lines logged."""
    svc, be = service(), FakeBackend()
    sink = LogSink(tmp_path)
    ctx = request(svc, be, **kw)
    ctx.diag = Capture(tuple(diagnostics), ctx.raw_headers)
    ctx.backend.forward_nowait(ctx, None, lambda _r: None)
    log_request(ctx, sink)
    sink.close()
    lines = [json.loads(x) for x in (tmp_path / svc.name / "mon.jsonl").read_text().splitlines()]
    return be.sent[0].headers, lines


TRACEPARENT = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-0[01]")


def test_w3c_correlation_continues_the_callers_trace(tmp_path: Path) -> None:
    w3c = Diagnostic.of("applicationinsights", _diag(httpCorrelationProtocol="W3C"))
    inbound = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    sent, [rec] = _logged(tmp_path / "a", [w3c], headers={"traceparent": inbound, "tracestate": "k=v"})
    m = TRACEPARENT.fullmatch(sent["traceparent"])
    assert m is not None and m[1] == "4bf92f3577b34da6a3ce929d0e0e4736"  # the caller's trace...
    assert m[2] != "00f067aa0ba902b7" and sent["tracestate"] == "k=v"  # ...with the gateway's span
    assert rec["correlation"] == {
        "protocol": "W3C",
        "operationId": "4bf92f3577b34da6a3ce929d0e0e4736",
        "traceparent": sent["traceparent"],
    }
    assert "request-id" not in sent
    # No (or a malformed) traceparent: a new trace.
    for headers in ({}, {"traceparent": "00-" + "0" * 32 + "-00f067aa0ba902b7-01"}, {"traceparent": "junk"}):
        sent, [rec] = _logged(tmp_path / str(len(str(headers))), [w3c], headers=headers)
        m = TRACEPARENT.fullmatch(sent["traceparent"])
        assert m is not None and m[1] != "0" * 32 and rec["correlation"]["operationId"] == m[1]


def test_legacy_correlation_and_none(tmp_path: Path) -> None:
    legacy = Diagnostic.of("applicationinsights", _diag(httpCorrelationProtocol="Legacy"))
    sent, [rec] = _logged(tmp_path / "a", [legacy], headers={"request-id": "|abc123.1."})
    assert re.fullmatch(r"\|abc123\.[0-9a-f]{16}\.", sent["request-id"]), sent
    assert rec["correlation"] == {
        "protocol": "Legacy",
        "operationId": "abc123",
        "requestId": sent["request-id"],
    }
    assert "traceparent" not in sent
    none = Diagnostic.of("applicationinsights", _diag(httpCorrelationProtocol="None"))
    sent, [rec] = _logged(tmp_path / "b", [none], headers={"traceparent": "keep-as-sent"})
    assert sent["traceparent"] == "keep-as-sent" and "request-id" not in sent and "correlation" not in rec
    # The setting is Application Insights': another diagnostic's (Portico stores Legacy) sends nothing.
    monitor = Diagnostic.of("azuremonitor", _diag(httpCorrelationProtocol="Legacy"))
    sent, [rec] = _logged(tmp_path / "c", [monitor])
    assert "request-id" not in sent and "traceparent" not in sent and "correlation" not in rec


def test_operation_name_format(tmp_path: Path) -> None:
    by_name = Diagnostic.of("applicationinsights", _diag())
    by_url = Diagnostic.of("azuremonitor", _diag(operationNameFormat="Url"))
    _sent, lines = _logged(tmp_path, [by_name, by_url], method="POST", query="code=secret")
    names = {x["diagnostic"]: x["operationName"] for x in lines}
    assert names == {"applicationinsights": "echo;rev=1 - op", "azuremonitor": "POST /echo/items/7"}
