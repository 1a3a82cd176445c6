"""Template deployments of a resource group: start, run in the background, what-if, validate.

The body of `PUT .../providers/Microsoft.Resources/deployments/{name}` is checked and the template
planned before anything is recorded, so a broken template changes nothing. The run then deploys
on this node; its parameter values stay in memory only (the record keeps secure ones out).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from portico.deployments.client import ResourceClient
from portico.deployments.errors import TemplateError
from portico.deployments.runner import ResourceOperation, Runner, RunResult
from portico.deployments.template import SECURE_TYPES, Deployment, PlannedResource, ResourceGroupInfo
from portico.store import deployments as D
from portico.store import services as S
from portico.store.db import Database

log = logging.getLogger("portico.deployments")

MODES = ("Incremental", "Complete")
TERMINAL = ("Succeeded", "Failed", "Canceled")
PROVIDER = "Microsoft.Resources/deployments"
# ARM's complete-mode deletion table for Microsoft.ApiManagement: `service` is deleted when the
# template does not list it; child types are not.
COMPLETE_MODE_DELETES = ("microsoft.apimanagement/service",)
LIST_SERVICES_VERSION = "2024-05-01"


class DeploymentError(Exception):
    """A request about a deployment that cannot be honoured: status, ARM code, message, target."""

    def __init__(self, status: int, code: str, message: str, target: str | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.target = status, code, message, target


@dataclass(frozen=True)
class Request:
    """A parsed deployment body."""

    template: dict[str, Any]
    parameters: dict[str, Any]
    mode: str


def deployment_id(sub: str, group: str, name: str) -> str:
    return f"/subscriptions/{sub}/resourceGroups/{group}/providers/{PROVIDER}/{name}"


def parse_body(body: Any) -> Request:
    if not isinstance(body, dict) or not isinstance(body.get("properties"), dict):
        raise DeploymentError(
            400, "InvalidRequestContent", "The request body must be an object with 'properties'."
        )
    props = body["properties"]
    for unsupported in ("templateLink", "parametersLink", "onErrorDeployment"):
        if props.get(unsupported):
            raise DeploymentError(
                400,
                "UnsupportedDeploymentFeature",
                f"properties.{unsupported} is not supported by Portico; send the template and parameters inline.",
                f"properties.{unsupported}",
            )
    template = props.get("template")
    if not isinstance(template, dict):
        raise DeploymentError(
            400,
            "InvalidTemplate",
            "properties.template is required and must be an object.",
            "properties.template",
        )
    mode = str(props.get("mode") or "Incremental")
    match = next((m for m in MODES if m.lower() == mode.lower()), None)
    if match is None:
        raise DeploymentError(
            400,
            "InvalidDeploymentMode",
            f"The deployment mode '{mode[:40]}' is not valid: use Incremental or Complete.",
            "properties.mode",
        )
    params = props.get("parameters") or {}
    if not isinstance(params, dict):
        raise DeploymentError(
            400, "InvalidTemplate", "properties.parameters must be an object.", "properties.parameters"
        )
    return Request(template=template, parameters=params, mode=match)


def template_hash(template: dict[str, Any]) -> str:
    digest = hashlib.sha256(json.dumps(template, sort_keys=True).encode()).digest()
    return str(int.from_bytes(digest[:8], "big"))


def redacted_parameters(d: Deployment) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in d.parameters.items():
        ptype = d.parameter_types.get(name, "string")
        shown = {"securestring": "SecureString", "secureobject": "SecureObject"}.get(
            ptype, ptype.capitalize()
        )
        out[name] = {"type": shown} if ptype in SECURE_TYPES else {"type": shown, "value": value}
    return out


def public_outputs(outputs: dict[str, Any]) -> dict[str, Any]:
    return {
        k: ({"type": v["type"]} if v["type"] in ("SecureString", "SecureObject") else v)
        for k, v in outputs.items()
    }


def _iso(ts: datetime | None = None) -> str:
    return (ts or datetime.now(UTC)).isoformat().replace("+00:00", "Z")


def _dependencies(plan: list[PlannedResource]) -> list[dict[str, Any]]:
    by_key = {p.key: p for p in plan}
    out = []
    for p in plan:
        deps = [by_key[k] for k in sorted(p.depends_on) if k in by_key]
        if deps:
            out.append(
                {
                    "id": p.id,
                    "resourceType": p.type,
                    "resourceName": p.name,
                    "dependsOn": [{"id": d.id, "resourceType": d.type, "resourceName": d.name} for d in deps],
                }
            )
    return out


def _providers(plan: list[PlannedResource], location: str) -> list[dict[str, Any]]:
    types: dict[str, set[str]] = {}
    for p in plan:
        ns, _, rest = p.type.partition("/")
        types.setdefault(ns, set()).add(rest)
    return [
        {"namespace": ns, "resourceTypes": [{"resourceType": t, "locations": [location]} for t in sorted(ts)]}
        for ns, ts in sorted(types.items())
    ]


class Deployments:
    """Starts and runs deployments on this node; one per process, held by the runtime."""

    def __init__(self, db: Database, node_id: str, environment: dict[str, Any], tenant_id: str) -> None:
        self.db = db
        self.node_id = node_id
        self.environment = environment
        self.tenant_id = tenant_id
        self.tasks: dict[str, asyncio.Task[None]] = {}

    async def start(self) -> None:
        """Close the runs this node had in progress when it stopped: they cannot be resumed."""
        async with self.db.write() as conn:
            for row in await D.interrupted(conn, self.node_id):
                body = dict(row.body)
                props = dict(body.get("properties") or {})
                props["provisioningState"] = "Failed"
                props["error"] = {
                    "code": "DeploymentInterrupted",
                    "message": "The node running the deployment stopped before it completed.",
                }
                body["properties"] = props
                await D.save(
                    conn,
                    row.subscription_id,
                    row.group_key,
                    row.name,
                    row.run_id,
                    state="Failed",
                    body=body,
                    operations=row.operations,
                )

    async def stop(self) -> None:
        for task in list(self.tasks.values()):
            task.cancel()
        await asyncio.gather(*self.tasks.values(), return_exceptions=True)

    def prepare(
        self, sub: str, group: dict[str, Any], name: str, req: Request, client: ResourceClient
    ) -> tuple[Deployment, list[PlannedResource], Runner]:
        """Bind parameters, plan and validate: raises DeploymentError before anything changes."""
        info = ResourceGroupInfo(
            sub, str(group["name"]), str(group["location"]), dict(group.get("tags") or {}), self.tenant_id
        )
        try:
            d = Deployment(
                req.template,
                req.parameters,
                name=name,
                group=info,
                environment=self.environment,
                mode=req.mode,
            )
            plan = d.plan()
            runner = Runner(d, client)
            runner.validate(plan)
            for p in plan:  # what does not need a deployed resource must evaluate now
                runner.evaluate_body(p, tolerant=True)
        except TemplateError as exc:
            target = exc.target
            raise DeploymentError(
                400,
                exc.code,
                f"Deployment template validation failed: {exc.message}"
                + (f" (at '{target}')." if target else ""),
                target or None,
            ) from None
        return d, plan, runner

    def render(
        self,
        sub: str,
        group: str,
        name: str,
        d: Deployment,
        plan: list[PlannedResource],
        state: str,
        *,
        started: datetime,
        correlation_id: str,
        result: RunResult | None = None,
        validated: bool = False,
    ) -> dict[str, Any]:
        props: dict[str, Any] = {
            "templateHash": template_hash(d.template),
            "parameters": redacted_parameters(d),
            "mode": d.mode,
            "provisioningState": state,
            "timestamp": _iso(),
            "duration": f"PT{(datetime.now(UTC) - started).total_seconds():.3f}S",
            "correlationId": correlation_id,
            "providers": _providers(plan, d.group.location),
            "dependencies": _dependencies(plan),
        }
        if validated:
            props["validatedResources"] = [{"id": p.id} for p in plan]
        if result is not None:
            props["outputs"] = public_outputs(result.outputs)
            props["outputResources"] = [{"id": i} for i in result.output_resources]
            if result.error is not None:
                props["error"] = result.error
        return {"id": deployment_id(sub, group, name), "name": name, "type": PROVIDER, "properties": props}

    async def create(
        self,
        sub: str,
        group: dict[str, Any],
        name: str,
        req: Request,
        client: ResourceClient,
        *,
        top_level: bool,
    ) -> tuple[dict[str, Any], str]:
        """Record a new run and start it; the rendered deployment (Accepted) and the run id."""
        d, plan, runner = self.prepare(sub, group, name, req, client)
        gname = str(group["name"])
        run_id = uuid.uuid4().hex
        started = datetime.now(UTC)
        correlation = str(uuid.uuid4())
        body = self.render(sub, gname, name, d, plan, "Accepted", started=started, correlation_id=correlation)
        async with self.db.write() as conn:
            # Deployments to one group start one at a time: the group's row is the lock.
            if await S.get_group(conn, sub, gname, lock=True) is None:
                raise DeploymentError(
                    404, "ResourceGroupNotFound", f"Resource group '{gname}' could not be found."
                )
            if top_level:
                active = await D.active_in_group(conn, sub, gname)
                if active is not None:
                    raise DeploymentError(
                        409,
                        "DeploymentActive",
                        f"The deployment '{active.name}' is running in resource group '{gname}'; deployments to one resource group run one at a time. Try again when it completes.",
                    )
            else:
                existing = await D.get(conn, sub, gname, name)
                if existing is not None and existing.state in D.ACTIVE_STATES:
                    raise DeploymentError(
                        409, "DeploymentActive", f"The deployment '{name}' is already running."
                    )
            await D.start(
                conn, sub, gname, name, run_id=run_id, node=self.node_id, body=body, template=d.template
            )
        task = asyncio.get_running_loop().create_task(
            self._run(sub, gname, name, run_id, d, plan, runner, started, correlation, client)
        )
        self.tasks[run_id] = task
        task.add_done_callback(lambda _t: self.tasks.pop(run_id, None))
        return body, run_id

    async def _run(
        self,
        sub: str,
        group: str,
        name: str,
        run_id: str,
        d: Deployment,
        plan: list[PlannedResource],
        runner: Runner,
        started: datetime,
        correlation: str,
        client: ResourceClient,
    ) -> None:
        did = deployment_id(sub, group, name)
        cancel = {"requested": False}
        last_check = [0.0]

        def cancelled() -> bool:
            return cancel["requested"]

        async def progress(ops: list[ResourceOperation]) -> None:
            now = time.monotonic()
            if now - last_check[0] < 0.5:
                return
            last_check[0] = now
            async with self.db.write() as conn:
                cancel["requested"] = await D.cancel_requested(conn, sub, group, name, run_id)
                body = self.render(
                    sub, group, name, d, plan, "Running", started=started, correlation_id=correlation
                )
                await D.save(
                    conn, sub, group, name, run_id, state="Running", body=body, operations=_ops(did, ops)
                )

        runner.cancelled = cancelled
        runner.on_progress = progress
        try:
            async with self.db.write() as conn:
                body = self.render(
                    sub, group, name, d, plan, "Running", started=started, correlation_id=correlation
                )
                await D.save(conn, sub, group, name, run_id, state="Running", body=body, operations=[])
            result = await runner.run(plan)
            if result.state == "Succeeded" and d.mode == "Complete":
                await self._prune(sub, group, plan, client, result)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug must still end the run as Failed, never leave it Running
            log.error("deployment %s failed unexpectedly: %s", did, type(exc).__name__, exc_info=exc)
            result = RunResult(
                "Failed",
                [],
                error={"code": "InternalServerError", "message": "The deployment failed unexpectedly."},
            )
        body = self.render(
            sub,
            group,
            name,
            d,
            plan,
            result.state,
            started=started,
            correlation_id=correlation,
            result=result,
        )
        async with self.db.write() as conn:
            await D.save(
                conn,
                sub,
                group,
                name,
                run_id,
                state=result.state,
                body=body,
                operations=_ops(did, result.operations),
            )

    async def complete_mode_deletes(
        self, sub: str, group: str, plan: list[PlannedResource], client: ResourceClient
    ) -> list[dict[str, Any]]:
        """Resources of the group that Complete mode deletes: services the template does not list."""
        listed = {p.key for p in plan}
        reply = await client.request(
            "GET",
            f"/subscriptions/{sub}/resourceGroups/{group}/providers/Microsoft.ApiManagement/service",
            LIST_SERVICES_VERSION,
        )
        if not reply.ok:
            return []
        items = reply.body.get("value", []) if isinstance(reply.body, dict) else []
        return [s for s in items if isinstance(s, dict) and str(s.get("id", "")).lower() not in listed]

    async def _prune(
        self, sub: str, group: str, plan: list[PlannedResource], client: ResourceClient, result: RunResult
    ) -> None:
        for svc in await self.complete_mode_deletes(sub, group, plan, client):
            reply = await client.request("DELETE", str(svc["id"]), LIST_SERVICES_VERSION)
            if not reply.ok:
                result.state = "Failed"
                result.error = {
                    "code": "DeploymentFailed",
                    "message": f"Complete mode could not delete '{svc.get('name')}': {reply.error()['message']}",
                    "details": [{**reply.error(), "target": svc["id"]}],
                }
                return

    async def what_if(
        self, sub: str, group: dict[str, Any], name: str, req: Request, client: ResourceClient
    ) -> dict[str, Any]:
        _d, plan, runner = self.prepare(sub, group, name, req, client)
        deletes = (
            await self.complete_mode_deletes(sub, str(group["name"]), plan, client)
            if req.mode == "Complete"
            else []
        )
        try:
            changes = await runner.what_if(plan, deletes)
        except TemplateError as exc:
            raise DeploymentError(400, exc.code, str(exc), exc.target or None) from None
        return {"status": "Succeeded", "properties": {"changes": changes}}


def _ops(deployment: str, ops: list[ResourceOperation]) -> list[dict[str, Any]]:
    return [
        op.render(
            deployment, hashlib.sha1(op.resource.key.encode(), usedforsecurity=False).hexdigest()[:16].upper()
        )
        for op in ops
        if op.state != "Accepted"
    ]


def environment_document(public_url: str, tenant: str, audience: str) -> dict[str, Any]:
    """`environment()`: Portico's cloud, in the shape of Azure's."""
    base = public_url.rstrip("/")
    return {
        "name": "Portico",
        "gallery": "",
        "graph": "",
        "portal": base,
        "graphAudience": "",
        "activeDirectoryDataLake": "",
        "batch": "",
        "media": "",
        "sqlManagement": "",
        "vmImageAliasDoc": "",
        "resourceManager": base + "/",
        "authentication": {
            "loginEndpoint": base + "/",
            "audiences": [audience, audience.rstrip("/")],
            "tenant": tenant,
            "identityProvider": "AAD",
        },
        "suffixes": {
            "acrLoginServer": "",
            "keyvaultDns": "",
            "sqlServerHostname": "",
            "storage": "core.windows.net",
        },
    }
