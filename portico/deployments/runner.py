"""Running a planned template: validation, deployment in dependency order, what-if, complete mode.

Independent branches deploy concurrently (bounded); a resource starts when everything it depends
on has succeeded. When one fails, nothing new starts, what is in flight finishes, and resources
already deployed stay as they are (ARM's behaviour); the error names each failed resource.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

from portico.deployments.client import ResourceClient
from portico.deployments.errors import Pending, TemplateError
from portico.deployments.template import Deployment, PlannedResource
from portico.resources import policy_raw

T = TypeVar("T")
DEPLOYED_KEYS = ("location", "sku", "tags", "identity", "properties", "kind", "zones", "plan")
MAX_FETCHES = 200  # reference()/list*() look-ups one resource may wait for
APIM_DEFAULT_VERSION = "2024-05-01"
NESTED_TYPE = "microsoft.resources/deployments"
NESTED_POLL_SECONDS = 0.05


@dataclass
class ResourceOperation:
    resource: PlannedResource
    operation: str = "Create"  # Create | Delete | Read (existing)
    state: str = "Accepted"  # Accepted | Running | Succeeded | Failed | Canceled
    status_code: str = ""
    error: dict[str, Any] | None = None
    started: float = 0.0
    ended: float = 0.0
    timestamp: str = ""

    def render(self, deployment_id: str, operation_id: str) -> dict[str, Any]:
        props: dict[str, Any] = {
            "provisioningOperation": self.operation,
            "provisioningState": self.state,
            "timestamp": self.timestamp or _now_iso(),
            "duration": _duration(self.ended - self.started if self.ended else 0.0),
            "trackingId": operation_id,
            "statusCode": self.status_code,
            "targetResource": {
                "id": self.resource.id,
                "resourceType": self.resource.type,
                "resourceName": self.resource.name,
                "apiVersion": self.resource.api_version,
            },
        }
        if self.error is not None:
            props["statusMessage"] = {"status": "Failed", "error": self.error}
        return {
            "id": f"{deployment_id}/operations/{operation_id}",
            "operationId": operation_id,
            "properties": props,
        }


@dataclass
class RunResult:
    state: str  # Succeeded | Failed | Canceled
    operations: list[ResourceOperation]
    outputs: dict[str, Any] = field(default_factory=dict)
    error: dict[str, Any] | None = None
    output_resources: list[str] = field(default_factory=list)


def _now_iso() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def _duration(seconds: float) -> str:
    return f"PT{max(seconds, 0.0):.3f}S"


class Runner:
    def __init__(
        self,
        deployment: Deployment,
        client: ResourceClient,
        *,
        concurrency: int = 8,
        cancelled: Callable[[], bool] = lambda: False,
        on_progress: Callable[[list[ResourceOperation]], Awaitable[None]] | None = None,
    ) -> None:
        self.d = deployment
        self.client = client
        self.concurrency = concurrency
        self.cancelled = cancelled
        self.on_progress = on_progress
        self.done: dict[str, asyncio.Event] = {}
        self.failed: set[str] = set()
        self.planned: dict[str, PlannedResource] = {}

    # --- validation --------------------------------------------------------------------------------------
    def validate(self, plan: list[PlannedResource]) -> None:
        """Types and api-versions Portico serves; raises TemplateError at the first that is not."""
        for p in plan:
            problem = self.client.check(p.id, p.api_version)
            if problem is not None:
                raise TemplateError(
                    problem, p.path + (".apiVersion" if "api-version" in problem else ".type")
                )

    def evaluate_body(self, p: PlannedResource, *, tolerant: bool = False) -> dict[str, Any]:
        """The request body of a planned resource. `tolerant`: keep an expression that needs a
        resource not deployed yet as its text (what-if shows it so, as ARM's does)."""
        body: dict[str, Any] = {}
        inner = _inner_template(p)
        for key in DEPLOYED_KEYS:
            if key not in p.source:
                continue
            if inner is not None and key == "properties":
                # a nested deployment with inner scope evaluates its own template itself
                props = {k: v for k, v in p.source["properties"].items() if k != "template"}
                with self._loop(p):
                    evaluated = (
                        self._tolerant(props, f"{p.path}.properties")
                        if tolerant
                        else self.d.evaluate_value(props, f"{p.path}.properties")
                    )
                body["properties"] = {**evaluated, "template": inner}
                continue
            with self._loop(p):
                body[key] = (
                    self._tolerant(p.source[key], f"{p.path}.{key}")
                    if tolerant
                    else self.d.evaluate_value(p.source[key], f"{p.path}.{key}")
                )
        return body

    def _tolerant(self, value: Any, where: str) -> Any:
        try:
            return self.d.evaluate_value(value, where)
        except Pending:
            if isinstance(value, dict):
                return {k: self._tolerant(v, f"{where}.{k}") for k, v in value.items()}
            if isinstance(value, list):
                return [self._tolerant(v, f"{where}[{i}]") for i, v in enumerate(value)]
            return value

    def _loop(self, p: PlannedResource) -> Any:
        if p.copy_name is None or p.copy_index is None:
            return _NoLoop()
        return self.d.loop(p.copy_name, p.copy_index)

    # --- deployment --------------------------------------------------------------------------------------
    async def run(self, plan: list[PlannedResource]) -> RunResult:
        self.planned = {p.key: p for p in plan}
        self.done = {p.key: asyncio.Event() for p in plan}
        ops = [ResourceOperation(p, operation="Read" if p.existing else "Create") for p in plan]
        gate = asyncio.Semaphore(self.concurrency)
        stop = asyncio.Event()

        async def one(op: ResourceOperation) -> None:
            p = op.resource
            try:
                for dep in p.depends_on:
                    if dep in self.done:
                        await self.done[dep].wait()
                        if dep in self.failed:
                            op.state = "Canceled"
                            self.failed.add(p.key)
                            return
                if stop.is_set() or self.cancelled():
                    op.state = "Canceled"
                    self.failed.add(p.key)
                    stop.set()
                    return
                async with gate:
                    op.state, op.started, op.timestamp = "Running", time.monotonic(), _now_iso()
                    await self._deploy(op)
                    op.ended = time.monotonic()
                if op.state != "Succeeded":
                    self.failed.add(p.key)
                    stop.set()
                if self.on_progress is not None:
                    await self.on_progress(ops)
            finally:
                self.done[p.key].set()

        await asyncio.gather(*(one(op) for op in ops))
        failed = [op for op in ops if op.state == "Failed"]
        if failed:
            return RunResult("Failed", ops, error=_deployment_failed(failed))
        if any(op.state == "Canceled" for op in ops) or self.cancelled():
            return RunResult(
                "Canceled",
                ops,
                error={"code": "DeploymentCanceled", "message": "The deployment was canceled."},
            )
        try:
            outputs = await self.evaluating(self.d.outputs)
        except TemplateError as exc:
            return RunResult("Failed", ops, error=_template_error(exc))
        resources = [op.resource.id for op in ops if op.operation == "Create"]
        return RunResult("Succeeded", ops, outputs=outputs, output_resources=resources)

    async def _deploy(self, op: ResourceOperation) -> None:
        p = op.resource
        try:
            if p.existing:
                reply = await self.client.request("GET", p.id, p.api_version)
            else:
                body = await self.evaluating(lambda: self.evaluate_body(p))
                reply = await self.client.request("PUT", p.id, p.api_version, body)
        except TemplateError as exc:
            op.state, op.status_code, op.error = "Failed", "BadRequest", _template_error(exc)
            return
        op.status_code = {200: "OK", 201: "Created", 202: "Accepted"}.get(reply.status, str(reply.status))
        if not reply.ok:
            err = reply.error()
            op.state, op.error = "Failed", {**err, "target": p.id}
            return
        state = reply.body if isinstance(reply.body, dict) else {}
        if p.type.lower() == NESTED_TYPE:
            state = await self._finished(p)
            nested = state.get("properties", {})
            if nested.get("provisioningState") != "Succeeded":
                error = nested.get("error") or {
                    "code": "DeploymentFailed",
                    "message": "The nested deployment failed.",
                }
                op.state, op.error = "Failed", {**error, "target": p.id}
                return
        self.d.deployed[p.key] = state
        op.state = "Succeeded"

    async def _finished(self, p: PlannedResource) -> dict[str, Any]:
        """A nested deployment runs on its own: wait until it ends."""
        while True:
            reply = await self.client.request("GET", p.id, p.api_version)
            state = reply.body if reply.ok and isinstance(reply.body, dict) else {}
            if state.get("properties", {}).get("provisioningState") not in ("Accepted", "Running"):
                return state
            await asyncio.sleep(NESTED_POLL_SECONDS)

    async def evaluating(self, fn: Callable[[], T]) -> T:
        """Run a synchronous evaluation, fetching what it waits for (`Pending`) and trying again."""
        for _ in range(MAX_FETCHES):
            try:
                return fn()
            except Pending as pending:
                await self._fetch(pending.key)
        raise TemplateError("The expression needs too many resource look-ups.")

    async def _fetch(self, key: tuple[str, ...]) -> None:
        if key[0] == "reference":
            target, api_version = key[1], key[2]
            if target in self.done:  # a resource of this template: wait until it is deployed
                await self.done[target].wait()
                if target not in self.d.deployed:
                    raise TemplateError(f"reference(): '{self.planned[target].name}' was not deployed.")
                return
            version = api_version or self._version_for(target)
            reply = await self.client.request("GET", target, version)
            if not reply.ok:
                raise TemplateError(f"reference(): '{target}' cannot be read: {reply.error()['message']}")
            self.d.values[key] = reply.body
            return
        _, target, action, api_version, body_json = key
        if target in self.done:
            await self.done[target].wait()
        body = None if body_json == "null" else json.loads(body_json)
        reply = await self.client.request("POST", f"{target}/{action}", api_version, body)
        if not reply.ok:
            raise TemplateError(f"{action}(): '{target}' answered {reply.error()['message']}")
        self.d.values[key] = reply.body

    def _version_for(self, key: str) -> str:
        p = self.planned.get(key)
        return p.api_version if p is not None else APIM_DEFAULT_VERSION

    # --- what-if -----------------------------------------------------------------------------------------
    async def what_if(
        self, plan: list[PlannedResource], complete_deletes: list[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        self.planned = {p.key: p for p in plan}
        changes: list[dict[str, Any]] = []
        for c in complete_deletes:
            changes.append(
                {"resourceId": c["id"], "changeType": "Delete", "before": c, "after": None, "delta": []}
            )
        for p in plan:
            if p.existing:
                continue
            desired = await self.evaluating(lambda p=p: self.evaluate_body(p, tolerant=True))  # type: ignore[misc]
            current = await self.client.request("GET", p.id, p.api_version)
            after = {
                "id": p.id,
                "name": p.name.split("/")[-1],
                "type": p.type,
                "apiVersion": p.api_version,
                **desired,
            }
            if current.status == 404:
                changes.append(
                    {"resourceId": p.id, "changeType": "Create", "before": None, "after": after, "delta": []}
                )
                continue
            if not current.ok:
                changes.append(
                    {
                        "resourceId": p.id,
                        "changeType": "Unsupported",
                        "unsupportedReason": current.error()["message"],
                        "before": None,
                        "after": after,
                        "delta": [],
                    }
                )
                continue
            before = current.body if isinstance(current.body, dict) else {}
            delta = diff(before, desired)
            changes.append(
                {
                    "resourceId": p.id,
                    "changeType": "Modify" if delta else "NoChange",
                    "before": before,
                    "after": {**before, **desired} if delta else before,
                    "delta": delta,
                }
            )
        return changes


def _inner_template(p: PlannedResource) -> Any:
    """The template of a nested deployment evaluated in its own scope (Bicep modules), else None."""
    if p.type.lower() != NESTED_TYPE:
        return None
    props = p.source.get("properties")
    if not isinstance(props, dict):
        return None
    options = props.get("expressionEvaluationOptions")
    if isinstance(options, dict) and str(options.get("scope", "")).lower() == "inner":
        return props.get("template")
    return None


class _NoLoop:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def diff(before: Any, after: Any, path: str = "") -> list[dict[str, Any]]:
    """Property changes from the current state to the template's values.

    Only what the template sets is compared: properties the service fills in are not the template's
    to change, and properties the service never returns (secrets) cannot be compared.
    """
    out: list[dict[str, Any]] = []
    if isinstance(after, dict) and isinstance(before, dict):
        lower = {k.lower(): k for k in before}
        for k, v in after.items():
            key = lower.get(k.lower())
            sub = f"{path}.{k}" if path else k
            if key is None:
                if v not in (None, "", [], {}) and not _write_only(sub):
                    out.append({"path": sub, "propertyChangeType": "Create", "after": v})
                continue
            out.extend(diff(before[key], v, sub))
        return out
    if isinstance(after, list) and isinstance(before, list):
        if len(after) != len(before) or any(diff(b, a) for a, b in zip(after, before, strict=True)):
            return [
                {
                    "path": path,
                    "propertyChangeType": "Array",
                    "before": before,
                    "after": after,
                    "children": [],
                }
            ]
        return out
    if not _same(before, after, path):
        out.append({"path": path, "propertyChangeType": "Modify", "before": before, "after": after})
    return out


_WRITE_ONLY = (
    "value",
    "password",
    "secret",
    "clientsecret",
    "accesskey",
    "key",
    "connectionstring",
    "credentials",
)


def _write_only(path: str) -> bool:
    return path.rsplit(".", 1)[-1].lower() in _WRITE_ONLY


def _same(before: Any, after: Any, path: str) -> bool:
    if isinstance(before, str) and isinstance(after, str):
        last = path.rsplit(".", 1)[-1].lower()
        if last == "location":
            return before.replace(" ", "").lower() == after.replace(" ", "").lower()
        if last == "format":  # a policy given as rawxml reads back as xml: the same document
            return before.lower().replace("rawxml", "xml") == after.lower().replace("rawxml", "xml")
        if before.startswith("/subscriptions/") or last == "contenttype":
            return before.lower() == after.lower()
        if last == "value" and before.lstrip().startswith("<"):
            # a policy document: rawxml in the template, its xml encoding stored
            return " ".join(policy_raw.decode(before).split()) == " ".join(policy_raw.decode(after).split())
        return before == after
    if isinstance(before, bool) or isinstance(after, bool):
        return before is after
    return bool(before == after)


def _template_error(exc: TemplateError) -> dict[str, Any]:
    return {"code": exc.code, "message": str(exc), "target": exc.target}


def _deployment_failed(failed: list[ResourceOperation]) -> dict[str, Any]:
    names = ", ".join(f"'{op.resource.name}'" for op in failed[:5])
    details = [
        {
            "code": (op.error or {}).get("code", "Failed"),
            "message": f"{op.resource.type} '{op.resource.name}': {(op.error or {}).get('message', '')}",
            "target": op.resource.id,
        }
        for op in failed
    ]
    return {
        "code": "DeploymentFailed",
        "message": f"At least one resource deployment operation failed ({names}). List the deployment operations for details.",
        "details": details,
    }
