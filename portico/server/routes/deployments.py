"""Template deployments of a resource group (`Microsoft.Resources/deployments`), as ARM serves them."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from starlette.responses import Response

from portico.arm.call import Call, method_not_allowed
from portico.arm.errors import ArmError
from portico.arm.http import empty, json_response
from portico.deployments.service import DeploymentError, Deployments, deployment_id, parse_body
from portico.identity.validation import Principal
from portico.server.routes.internal import RouteClient, is_internal
from portico.store import deployments as D
from portico.store import services as S

ACTIONS = "Microsoft.Resources/deployments"
RETRY_AFTER = "1"


def _service(call: Call) -> Deployments:
    return call.rt.deployments


def _scope(call: Call) -> str:
    return f"/subscriptions/{call.subscription_id}/resourceGroups/{call.group_name}"


def _client(call: Call) -> RouteClient:
    assert isinstance(call.principal, Principal)
    return RouteClient(call.rt.routes, call.rt, call.principal, call.request.app)


async def _group(call: Call) -> dict[str, Any]:
    async with call.rt.db.read() as conn:
        g = await S.get_group(conn, call.subscription_id, call.group_name)
    if g is None:
        raise ArmError(
            404, "ResourceGroupNotFound", f"Resource group '{call.group_name}' could not be found."
        )
    return {"name": g.name, "location": g.location, "tags": g.tags}


def _error(exc: DeploymentError) -> ArmError:
    return ArmError(exc.status, exc.code, exc.message, target=exc.target)


async def _row(call: Call) -> D.DeploymentRow:
    name = call.params["deploymentName"]
    async with call.rt.db.read() as conn:
        row = await D.get(conn, call.subscription_id, call.group_name, name)
    if row is None:
        raise ArmError(404, "DeploymentNotFound", f"Deployment '{name}' could not be found.")
    return row


def _status_url(call: Call, name: str, run_id: str) -> str:
    return (
        f"{call.base_url()}{deployment_id(call.subscription_id, call.group_name, name)}"
        f"/operationStatuses/{run_id}?api-version={call.api_version}"
    )


async def list_deployments(call: Call) -> Response:
    if call.method != "GET":
        raise method_not_allowed(call.method)
    await call.authorize(f"{ACTIONS}/read", _scope(call))
    await _group(call)
    async with call.rt.db.read() as conn:
        rows = await D.list_in_group(conn, call.subscription_id, call.group_name)
    return json_response({"value": [r.body for r in rows]})


async def deployment(call: Call) -> Response:
    name = call.params["deploymentName"]
    if not 1 <= len(name) <= 64 or not all(c.isalnum() or c in "-_.()" for c in name):
        raise ArmError(
            400,
            "InvalidDeploymentName",
            f"The deployment name '{name[:80]}' is invalid: 1-64 letters, digits, '-', '_', '.', '(' or ')'.",
        )
    if call.method in ("GET", "HEAD"):
        await call.authorize(f"{ACTIONS}/read", _scope(call))
        try:
            row = await _row(call)
        except ArmError:
            if call.method == "HEAD":
                return empty(404)
            raise
        return empty(204) if call.method == "HEAD" else json_response(row.body)
    if call.method == "PUT":
        await call.authorize(f"{ACTIONS}/write", _scope(call))
        group = await _group(call)
        try:
            req = parse_body(await call.body(lenient=True))
            body, run_id = await _service(call).create(
                call.subscription_id, group, name, req, _client(call), top_level=not is_internal(call.request)
            )
        except DeploymentError as exc:
            raise _error(exc) from None
        return json_response(
            body,
            201,
            headers={"Azure-AsyncOperation": _status_url(call, name, run_id), "Retry-After": RETRY_AFTER},
        )
    if call.method == "DELETE":
        await call.authorize(f"{ACTIONS}/delete", _scope(call))
        async with call.rt.db.write() as conn:
            existing = await D.get(conn, call.subscription_id, call.group_name, name)
            if existing is None:
                return empty(204)
            if existing.state in D.ACTIVE_STATES:
                raise ArmError(
                    409,
                    "DeploymentActive",
                    f"The deployment '{name}' is running; cancel it or wait for it to complete before deleting it.",
                )
            await D.remove(conn, call.subscription_id, call.group_name, name)
        return empty(204)  # deleted at once: nothing to poll
    raise method_not_allowed(call.method)


async def operation_status(call: Call) -> Response:
    if call.method != "GET":
        raise method_not_allowed(call.method)
    await call.authorize(f"{ACTIONS}/read", _scope(call))
    row = await _row(call)
    if row.run_id != call.params["runId"]:
        raise ArmError(
            404,
            "OperationNotFound",
            "The deployment operation status was not found; the deployment has been run again since.",
        )
    out: dict[str, Any] = {"status": row.state}
    error = row.body.get("properties", {}).get("error")
    if error is not None:
        out["error"] = error
    headers = {"Retry-After": RETRY_AFTER} if row.state in D.ACTIVE_STATES else None
    return json_response(out, headers=headers)


async def cancel(call: Call) -> Response:
    if call.method != "POST":
        raise method_not_allowed(call.method)
    await call.authorize(f"{ACTIONS}/cancel/action", _scope(call))
    name = call.params["deploymentName"]
    async with call.rt.db.write() as conn:
        row = await D.get(conn, call.subscription_id, call.group_name, name)
        if row is None:
            raise ArmError(404, "DeploymentNotFound", f"Deployment '{name}' could not be found.")
        if not await D.request_cancel(conn, call.subscription_id, call.group_name, name):
            raise ArmError(
                409,
                "DeploymentCannotBeCancelled",
                f"The deployment '{name}' is {row.state}; only a running deployment can be canceled.",
            )
    return empty(204)


async def validate(call: Call) -> Response:
    if call.method != "POST":
        raise method_not_allowed(call.method)
    await call.authorize(f"{ACTIONS}/validate/action", _scope(call))
    group = await _group(call)
    service = _service(call)
    name = call.params["deploymentName"]
    try:
        req = parse_body(await call.body(lenient=True))
        d, plan, _runner = service.prepare(call.subscription_id, group, name, req, _client(call))
    except DeploymentError as exc:
        raise _error(exc) from None
    body = service.render(
        call.subscription_id,
        group["name"],
        name,
        d,
        plan,
        "Succeeded",
        started=datetime.now(UTC),
        correlation_id="",
        validated=True,
    )
    return json_response(body)


async def what_if(call: Call) -> Response:
    if call.method != "POST":
        raise method_not_allowed(call.method)
    await call.authorize(f"{ACTIONS}/whatIf/action", _scope(call))
    group = await _group(call)
    try:
        req = parse_body(await call.body(lenient=True))
        result = await _service(call).what_if(
            call.subscription_id, group, call.params["deploymentName"], req, _client(call)
        )
    except DeploymentError as exc:
        raise _error(exc) from None
    return json_response(result)


async def _authorized_row(call: Call, method: str, action: str) -> D.DeploymentRow:
    if call.method != method:
        raise method_not_allowed(call.method)
    await call.authorize(f"{ACTIONS}/{action}", _scope(call))
    return await _row(call)


async def export_template(call: Call) -> Response:
    row = await _authorized_row(call, "POST", "exportTemplate/action")
    return json_response({"template": row.template})


async def operations(call: Call) -> Response:
    row = await _authorized_row(call, "GET", "operations/read")
    return json_response({"value": row.operations})


async def operation(call: Call) -> Response:
    row = await _authorized_row(call, "GET", "operations/read")
    wanted = call.params["operationId"].lower()
    for op in row.operations:
        if str(op.get("operationId", "")).lower() == wanted:
            return json_response(op)
    raise ArmError(
        404,
        "DeploymentOperationNotFound",
        f"Deployment operation '{call.params['operationId'][:64]}' could not be found.",
    )
