"""emit-metric: metric lines to the logger of the request's Application Insights diagnostic when its
`metrics` is on (no server: a recording sink in place of the JSON-lines files)."""

from __future__ import annotations

from typing import Any

from portico.gateway.diagnostics import Capture, Diagnostic
from tests.gateway.unit.harness import FakeBackend, pipeline, request, run, service, subscription


class Sink:
    def __init__(self) -> None:
        self.lines: list[tuple[str, str, dict[str, Any]]] = []

    def write(self, service: str, logger: str, record: dict[str, Any]) -> None:
        self.lines.append((service, logger, record))


POLICY = (
    '<emit-metric name="Requests" value="@(context.Request.Method == &quot;GET&quot; ? 2.5 : 1)" namespace="shop">'
    '<dimension name="API ID" /><dimension name="Subscription ID" />'
    '<dimension name="Client IP" value="@(context.Request.IpAddress)" /></emit-metric>'
)


def _diagnostic(name: str, metrics: bool) -> Diagnostic:
    return Diagnostic.of(name, {"loggerId": "/loggers/insights", "metrics": metrics})


async def test_metric_goes_to_the_application_insights_logger() -> None:
    svc, sink = service(), Sink()
    svc.compiling.log_sink = sink  # type: ignore[assignment]
    ctx = request(svc, FakeBackend(), sub=subscription())
    ctx.diag = Capture((_diagnostic("applicationinsights", True), _diagnostic("azuremonitor", True)), [])
    await run(pipeline(svc, inbound=POLICY), ctx)
    [(service_name, logger, record)] = sink.lines
    assert (service_name, logger) == ("contoso", "insights")
    assert record["type"] == "metric" and record["namespace"] == "shop" and record["name"] == "Requests"
    assert record["value"] == 2.5
    assert record["dimensions"] == {"API ID": "echo", "Subscription ID": "sub1", "Client IP": "10.0.0.1"}


async def test_no_metric_without_a_metrics_diagnostic() -> None:
    svc, sink = service(), Sink()
    svc.compiling.log_sink = sink  # type: ignore[assignment]
    for diag in (None, Capture((_diagnostic("applicationinsights", False),), [])):
        ctx = request(svc, FakeBackend())
        ctx.diag = diag
        assert (await run(pipeline(svc, inbound=POLICY), ctx)).status == 200
    assert sink.lines == []
