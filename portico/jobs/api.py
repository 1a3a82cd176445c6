"""Long-running operations as ARM shows them: the status resource, and the error of a failed one."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from portico.arm.errors import ArmError
from portico.jobs import store as J
from portico.store import services as S


def _iso(ts: Any) -> str | None:
    return ts.isoformat().replace("+00:00", "Z") if ts else None


async def find(conn: AsyncConnection, op_id: str, service_scope: str) -> tuple[J.Operation, S.Service | None]:
    """Operation `op_id` of the service whose ARM id is `service_scope` (and that service, unless it
    was deleted since), or the ARM 404 for it."""
    op = await J.get(conn, op_id[:64])
    if op is None or op.service_path.lower() != service_scope.lower():
        name = service_scope.rsplit("/", 1)[-1]
        raise ArmError(
            404, "ResourceNotFound", f"Operation '{op_id[:64]}' was not found for service '{name}'."
        )
    return op, await S.get_service_by_id(conn, op.service_id)


def error_of(op: J.Operation) -> dict[str, str]:
    """The error of a failed operation: its ARM code and a message fit for the client."""
    return {
        "code": op.error_code or f"{op.kind.capitalize()}Failed",
        "message": op.error_message or "The operation failed.",
    }


def render_status(op: J.Operation) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": f"{op.service_path}/operationstatuses/{op.id}",
        "name": op.id,
        "status": op.status,
        "percentComplete": op.percent,
        "startTime": _iso(op.started_at),
        "endTime": _iso(op.ended_at),
        "properties": {
            "operation": op.kind,
            "phase": op.phase,
            "counters": op.counters,
            "bytes": op.bytes,
            **op.params,
        },
    }
    if op.status == J.FAILED:
        out["error"] = error_of(op)
    return out
