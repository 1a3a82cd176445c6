"""Quota counters as the management API shows them (Azure's `QuotaCounterContract`,
`QuotaCounterCollection`) and sets them (`QuotaCounterValueUpdateContract`). The gateway's `quota`
and `quota-by-key` policies count them (portico/gateway/quotas.py); they are runtime data of the
service's active store, never part of a backup."""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from portico.arm.errors import ArmError
from portico.store import quotas as Q
from portico.store.services import Service

_FIELDS = ("callsCount", "kbTransferred")


def _time(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def render(c: Q.Counter) -> dict[str, Any]:
    out: dict[str, Any] = {
        "counterKey": c.counter.counter_key,
        "periodKey": c.counter.period_key,
        "periodStartTime": _time(c.period_start),
    }
    if c.period_end is not None:  # a period that never ends has no end time
        out["periodEndTime"] = _time(c.period_end)
    out["value"] = {"callsCount": c.calls, "kbTransferred": c.kb}
    return out


def collection(counters: list[Q.Counter]) -> dict[str, Any]:
    return {"value": [render(c) for c in counters], "count": len(counters)}


def parse_update(body: Any) -> tuple[int | None, float | None]:
    """(callsCount, kbTransferred) of a PATCH body, each None when absent. Azure's clients send
    `{"properties": {"callsCount": .., "kbTransferred": ..}}`; the bare object is accepted too."""
    if not isinstance(body, dict):
        raise ArmError(400, "InvalidRequestContent", "The request body must be a JSON object.")
    props = body
    if "properties" in body:
        extra = sorted(set(body) - {"properties"})
        if extra:
            raise ArmError(
                400,
                "InvalidRequestContent",
                f"Unknown field(s) beside 'properties': {', '.join(extra)[:200]}.",
            )
        props = body["properties"]
        if not isinstance(props, dict):
            raise ArmError(400, "InvalidRequestContent", "'properties' must be a JSON object.")
    unknown = sorted(set(props) - set(_FIELDS))
    if unknown:
        raise ArmError(
            400,
            "InvalidRequestContent",
            f"Unknown field(s) {', '.join(unknown)[:200]}: a quota counter update takes callsCount and kbTransferred.",
        )
    calls = props.get("callsCount")
    kb = props.get("kbTransferred")
    if calls is None and kb is None:
        raise ArmError(400, "InvalidRequestContent", "Give callsCount and/or kbTransferred to set.")
    if calls is not None and (
        isinstance(calls, bool) or not isinstance(calls, int) or not 0 <= calls < 2**62
    ):
        raise ArmError(400, "InvalidRequestContent", "'callsCount' must be a non-negative integer.")
    if kb is not None and (
        isinstance(kb, bool)
        or not isinstance(kb, int | float)
        or not math.isfinite(kb)
        or not 0 <= kb < 1e300
    ):
        raise ArmError(400, "InvalidRequestContent", "'kbTransferred' must be a non-negative number.")
    return calls, None if kb is None else float(kb)


def _missing(counter_key: str, period_key: str | None) -> ArmError:
    if period_key is None:
        return ArmError(
            404, "ResourceNotFound", f"No quota counter '{counter_key[:80]}' exists in a current period."
        )
    return ArmError(
        404, "ResourceNotFound", f"No quota counter '{counter_key[:80]}' period '{period_key[:80]}' exists."
    )


async def read(
    conn: AsyncConnection, svc: Service, counter_key: str, period_key: str | None
) -> list[Q.Counter]:
    """The counters of a key in its current periods (one period's, with `period_key`); 404 if none."""
    found = await Q.list_current(conn, svc.active_store_id, counter_key, period_key)
    if not found:
        raise _missing(counter_key, period_key)
    return found


async def update(
    conn: AsyncConnection,
    svc: Service,
    counter_key: str,
    period_key: str | None,
    values: tuple[int | None, float | None],
) -> list[Q.Counter]:
    """Set the counters of a key (one period's, with `period_key`); 404 if there are none. The
    gateway processes see the new values at their next flush (portico/gateway/quotas.py)."""
    found = await Q.set_values(conn, svc.active_store_id, counter_key, period_key, *values)
    if not found:
        raise _missing(counter_key, period_key)
    return found
