"""Policies that write to loggers: `log-to-eventhub` (its message to the logger it names) and
`trace` (a message the request's diagnostics log when their verbosity admits its severity).
Where loggers write: portico/gateway/diagnostics.py."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from portico.gateway.outcome import Reject
from portico.gateway.policies.base import CompileContext, Policy, policy
from portico.gateway.policies.xmltree import Node, PolicyDocumentError
from portico.names import fold_name

if TYPE_CHECKING:
    from portico.gateway.context import Context
    from portico.gateway.expressions import Value

ANYWHERE = frozenset({"inbound", "backend", "outbound", "on-error"})
SEVERITY = {"verbose": 0, "information": 1, "error": 2}


@policy
class LogToEventHub(Policy):
    tag = "log-to-eventhub"
    sections = ANYWHERE

    def __init__(self, node: Node, section: str, cc: CompileContext) -> None:
        super().__init__(node, section, cc)
        node.check_attrs({"logger-id", "partition-id", "partition-key"})
        node.check_children(frozenset())
        node.require("logger-id")
        if "partition-id" in node.attrs and "partition-key" in node.attrs:
            raise PolicyDocumentError("only one of 'partition-id' and 'partition-key' may be given.", node)
        self.logger = node.value("logger-id")
        self.partition_key = node.value("partition-key")
        self.partition_id = node.value("partition-id")
        self.message = node.text_value()

    def run(self, ctx: Context) -> Any:
        assert self.logger is not None
        logger = self.logger.text(ctx)
        if fold_name(logger) not in ctx.service.loggers:
            raise Reject(
                500, f"Logger '{logger[:80]}' was not found.", source=self.tag, reason="LoggerNotFound"
            )
        sink = ctx.service.compiling.log_sink
        if sink is None:
            return None
        record: dict[str, Any] = {
            "type": "event",
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "requestId": ctx.request_id,
            "message": self.message.text(ctx),
        }
        if self.partition_key is not None:
            record["partitionKey"] = self.partition_key.text(ctx)
        if self.partition_id is not None:
            record["partitionId"] = self.partition_id.text(ctx)
        sink.write(ctx.service.name, fold_name(logger), record)
        return None


@policy
class Trace(Policy):
    tag = "trace"
    sections = ANYWHERE

    def __init__(self, node: Node, section: str, cc: CompileContext) -> None:
        super().__init__(node, section, cc)
        node.check_attrs({"source", "severity"})
        node.check_children(frozenset({"message", "metadata"}))
        self.source = node.require("source")
        severity = node.attrs.get("severity", "verbose")
        if severity not in SEVERITY:
            raise PolicyDocumentError("attribute 'severity' must be verbose, information or error.", node)
        self.severity = SEVERITY[severity]
        self.severity_name = severity
        messages = [c for c in node.children if c.tag == "message"]
        if len(messages) != 1:
            raise PolicyDocumentError("exactly one <message> is required.", node)
        self.message = messages[0].text_value()
        self.metadata: list[tuple[str, Value]] = []
        for m in node.children:
            if m.tag == "metadata":
                m.check_attrs({"name", "value"})
                value = m.value("value", required=True)
                assert value is not None
                self.metadata.append((m.require("name"), value))

    def run(self, ctx: Context) -> Any:
        if ctx.diag is None:  # no diagnostic applies: nowhere to go
            return None
        entry: dict[str, Any] = {
            "source": self.source,
            "severity": self.severity_name,
            "message": self.message.text(ctx),
        }
        if self.metadata:
            entry["metadata"] = {name: value.text(ctx) for name, value in self.metadata}
        ctx.diag.traces.append((self.severity, entry))
        return None


__all__ = ["LogToEventHub", "Trace"]
