"""Usage reports of a service (`.../service/{name}/reports/{byApi|byOperation|byProduct|
bySubscription|byUser|byTime|byRequest}`, served by `portico/server/routes/reports.py`), answered
from the `usage` rows the gateway writes.

Answers are shaped like Azure's `ReportCollection` / `RequestReportCollection`
(`{value, count, nextLink}`) so `client.reports.list_by_api(...)` works unchanged.
`$filter` accepts `timestamp ge|gt|le|lt datetime'...'` and `apiId|operationId|productId|
subscriptionId|userId eq '...'`, joined by `and`; `$top`/`$skip` page; `$orderby` sorts by a
count or time column; `interval` (ISO 8601 duration, whole minutes) buckets byTime.
Usage rows belong to the service id, never to a store: a restore neither carries nor erases them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import and_, case, func, literal, select

from portico.arm.errors import ArmError
from portico.arm.paging import MAX_PAGE, Page
from portico.store import services as S
from portico.store.db import Database
from portico.store.schema import entities, usage

REPORTS = ("byapi", "byoperation", "byproduct", "bysubscription", "byuser", "bytime", "byrequest")
NAMES = {r: r[:2] + r[2:].capitalize() for r in REPORTS}
U = usage.c

_COND = re.compile(
    r"\s*(?P<field>[A-Za-z]+)\s+(?P<op>eq|ne|ge|gt|le|lt)\s+(?P<value>datetime'[^']*'|'(?:[^']|'')*'|[-\w.:+]+)\s*",
    re.IGNORECASE,
)
_ID_FIELDS = {
    "apiid": U.api_id,
    "operationid": U.operation_id,
    "productid": U.product_id,
    "subscriptionid": U.subscription_id,
    "userid": U.user_id,
}


@dataclass
class Query:
    conds: list[Any] = field(default_factory=list)
    start: datetime | None = None
    end: datetime | None = None


def _bad(message: str, target: str = "$filter") -> ArmError:
    return ArmError(400, "ValidationError", message, target=target)


def parse_datetime(text: str) -> datetime:
    t = text.strip()
    if t.endswith("Z"):
        t = t[:-1] + "+00:00"
    try:
        dt = datetime.fromisoformat(t)
    except ValueError:
        raise _bad(f"Invalid $filter: '{text[:40]}' is not an ISO 8601 date and time.") from None
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


def _id_value(field_name: str, raw: str) -> str:
    v = raw.strip("/")
    return v.rsplit("/", 1)[-1] if "/" in v else v


def parse_filter(text: str | None) -> Query:
    q = Query()
    if not text or not text.strip():
        return q
    parts = re.split(r"\s+and\s+", text.strip(), flags=re.IGNORECASE)
    for part in parts:
        m = _COND.fullmatch(part)
        if m is None:
            raise _bad(
                f"Invalid $filter near '{part[:60]}': expected `field op value` terms joined by 'and', e.g. timestamp ge datetime'2024-01-01T00:00:00'."
            )
        field_name, op, value = m.group("field").lower(), m.group("op").lower(), m.group("value")
        if field_name == "timestamp":
            if not value.lower().startswith("datetime'"):
                raise _bad("Invalid $filter: timestamp must be compared with datetime'...'.")
            when = parse_datetime(value[9:-1])
            col = U.ts
            if op == "ge":
                q.conds.append(col >= when)
                q.start = when
            elif op == "gt":
                q.conds.append(col > when)
                q.start = when
            elif op == "le":
                q.conds.append(col <= when)
                q.end = when
            elif op == "lt":
                q.conds.append(col < when)
                q.end = when
            else:
                raise _bad("Invalid $filter: timestamp supports ge, gt, le and lt.")
        elif field_name in _ID_FIELDS:
            if op not in ("eq", "ne") or not value.startswith("'"):
                raise _bad(f"Invalid $filter: {m.group('field')} supports eq and ne with a quoted value.")
            v = _id_value(field_name, value[1:-1].replace("''", "'"))
            col = _ID_FIELDS[field_name]
            q.conds.append(col == v if op == "eq" else col != v)
        elif field_name in ("apiregion", "country", "region", "zip", "cache", "method"):
            continue  # single-region deployment: accepted and ignored
        else:
            raise _bad(
                f"Invalid $filter: field '{m.group('field')}' is not supported (timestamp, apiId, operationId, productId, subscriptionId, userId)."
            )
    return q


def parse_interval(text: str | None) -> int:
    if not text:
        raise _bad(
            "The 'interval' query parameter is required for byTime (ISO 8601 duration, e.g. PT15M).",
            "interval",
        )
    m = re.fullmatch(r"P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?)?", text.strip().upper())
    if m is None or not any(m.groups()):
        raise _bad(f"'interval' must be an ISO 8601 duration such as PT15M, got '{text[:30]}'.", "interval")
    d, h, mi, s = (int(x or 0) for x in m.groups())
    seconds = ((d * 24 + h) * 60 + mi) * 60 + s
    if seconds <= 0 or seconds % 60:
        raise _bad(
            "'interval' must be a positive whole number of minutes (Azure requires multiples of 15 minutes).",
            "interval",
        )
    return seconds


def iso_duration(seconds: int) -> str:
    d, rem = divmod(seconds, 86400)
    h, rem = divmod(rem, 3600)
    m = rem // 60
    out = "P" + (f"{d}D" if d else "")
    if h or m or not d:
        out += "T" + (f"{h}H" if h else "") + (f"{m}M" if m or not h else "")
    return out


def _iso(dt: Any) -> str | None:
    if dt is None:
        return None
    if isinstance(dt, str):
        dt = datetime.fromisoformat(dt)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return str(dt.astimezone(UTC).isoformat().replace("+00:00", "Z"))


def _aggregates() -> list[Any]:
    st = U.status
    success = case((st <= 301, 1), (st == 304, 1), (st == 307, 1), else_=0)
    blocked = case((st.in_((401, 403, 429)), 1), else_=0)
    failed = case((st == 400, 1), (and_(st >= 500, st < 600), 1), else_=0)
    return [
        func.count().label("total"),
        func.sum(success).label("success"),
        func.sum(blocked).label("blocked"),
        func.sum(failed).label("failed"),
        func.sum(U.bytes_in + U.bytes_out).label("bandwidth"),
        func.sum(case((U.backend_status.is_not(None), 1), else_=0)).label("backend_calls"),
        func.avg(U.total_ms).label("api_avg"),
        func.min(U.total_ms).label("api_min"),
        func.max(U.total_ms).label("api_max"),
        func.avg(U.backend_ms).label("svc_avg"),
        func.min(U.backend_ms).label("svc_min"),
        func.max(U.backend_ms).label("svc_max"),
    ]


_ORDER = {
    "callcounttotal": "total",
    "callcountsuccess": "success",
    "callcountblocked": "blocked",
    "callcountfailed": "failed",
    "bandwidth": "bandwidth",
    "apitimeavg": "api_avg",
    "servicetimeavg": "svc_avg",
}


def _record(r: Any) -> dict[str, Any]:
    total = int(r.total or 0)
    success, blocked, failed = int(r.success or 0), int(r.blocked or 0), int(r.failed or 0)
    return {
        "callCountSuccess": success,
        "callCountBlocked": blocked,
        "callCountFailed": failed,
        "callCountOther": total - success - blocked - failed,
        "callCountTotal": total,
        "bandwidth": int(r.bandwidth or 0),
        "cacheHitCount": 0,
        "cacheMissCount": int(r.backend_calls or 0),
        "apiTimeAvg": float(r.api_avg or 0.0),
        "apiTimeMin": float(r.api_min or 0.0),
        "apiTimeMax": float(r.api_max or 0.0),
        "serviceTimeAvg": float(r.svc_avg or 0.0),
        "serviceTimeMin": float(r.svc_min or 0.0),
        "serviceTimeMax": float(r.svc_max or 0.0),
    }


async def _names(conn: Any, store_id: int, kind: str, ids: set[str]) -> dict[tuple[str, str], Any]:
    """(parent, name) → display name (users: "First Last") for the entities on this page."""
    if not ids:
        return {}
    e = entities.c
    out: dict[tuple[str, str], Any] = {}
    id_list = sorted(ids)
    for i in range(0, len(id_list), 500):
        rows = (
            await conn.execute(
                select(e.parent, e.name, e.display_name, e.data).where(
                    e.store_id == store_id, e.kind == kind, e.name.in_(id_list[i : i + 500])
                )
            )
        ).all()
        for r in rows:
            if kind == "user":
                d = orjson.loads(r.data)
                out[(r.parent, r.name)] = (
                    f"{d.get('firstName', '')} {d.get('lastName', '')}".strip() or r.name
                )
            else:
                out[(r.parent, r.name)] = r.display_name or r.name
    return out


def _order(params: dict[str, str], allowed_time: bool) -> tuple[str, bool] | None:
    raw = params.get("$orderby")
    if not raw:
        return None
    parts = raw.strip().split()
    col = parts[0].lower()
    desc = len(parts) > 1 and parts[1].lower() == "desc"
    if col == "timestamp" and allowed_time:
        return "timestamp", desc
    if col not in _ORDER:
        raise _bad(
            f"$orderby '{parts[0][:40]}' is not supported (use {', '.join(sorted(['callCountTotal', 'callCountSuccess', 'callCountBlocked', 'callCountFailed', 'bandwidth', 'apiTimeAvg', 'serviceTimeAvg']))}{', timestamp' if allowed_time else ''}).",
            "$orderby",
        )
    return _ORDER[col], desc


def _page(params: dict[str, str]) -> Page:
    def num(name: str, default: int, minimum: int) -> int:
        raw = params.get(name)
        if raw in (None, ""):
            return default
        try:
            v = int(raw)
        except ValueError:
            raise _bad(f"'{name}' must be an integer.", name) from None
        if v < minimum:
            raise _bad(f"'{name}' must be at least {minimum}.", name)
        return v

    return Page(top=min(num("$top", 100, 1), MAX_PAGE), skip=num("$skip", 0, 0), filter=None)


def check_report(report_name: str) -> str:
    """The report's key (lower case), or the ARM error for a report Portico does not have."""
    report = report_name.lower()
    if report not in REPORTS:
        if report == "bygeo":
            raise ArmError(
                400,
                "ReportNotSupported",
                "The byGeo report is not available: Portico records no geolocation.",
            )
        raise ArmError(
            404,
            "ResourceNotFound",
            f"Unknown report '{report_name[:40]}'; available: {', '.join(NAMES.values())}.",
        )
    return report


@dataclass
class ReportPage:
    items: list[dict[str, Any]]
    total: int
    page: Page

    @property
    def more(self) -> bool:
        return self.page.skip + len(self.items) < self.total


async def run(db: Database, svc: S.Service, report: str, params: dict[str, str]) -> ReportPage:
    """One page of report `report` (a key from `check_report`) for `svc`; `params` are the query's
    `$filter`, `$top`, `$skip`, `$orderby` and `interval`."""
    q = parse_filter(params.get("$filter"))
    page = _page(params)
    where = [U.service_id == svc.id, *q.conds]
    async with db.read() as conn:
        if report == "byrequest":
            items, total = await _by_request(conn, svc, where, page, params)
        elif report == "bytime":
            items, total = await _by_time(conn, where, page, params, q)
        else:
            items, total = await _grouped(conn, svc, report, where, page, params)
    return ReportPage(items, total, page)


_GROUPS = {
    "byapi": (U.api_id,),
    "byoperation": (U.api_id, U.operation_id),
    "byproduct": (U.product_id,),
    "bysubscription": (U.subscription_id, U.user_id, U.product_id),
    "byuser": (U.user_id,),
}


async def _grouped(
    conn: Any, svc: S.Service, report: str, where: list[Any], page: Page, params: dict[str, str]
) -> tuple[list[dict[str, Any]], int]:
    keys = _GROUPS[report]
    lead = keys[0]
    where = [*where, lead.is_not(None)]
    if report == "byoperation":
        where.append(U.operation_id.is_not(None))
    grouped = select(*keys, *_aggregates()).where(*where).group_by(*keys)
    total = int((await conn.execute(select(func.count()).select_from(grouped.subquery()))).scalar_one())
    order = _order(params, allowed_time=False)
    sub = grouped.subquery()
    stmt = select(sub)
    if order is not None:
        col = sub.c[order[0]]
        stmt = stmt.order_by(col.desc() if order[1] else col.asc(), *[sub.c[k.name] for k in keys])
    else:
        stmt = stmt.order_by(*[sub.c[k.name] for k in keys])
    rows = (await conn.execute(stmt.offset(page.skip).limit(page.top))).all()
    store = svc.active_store_id
    api_names = (
        await _names(conn, store, "api", {r.api_id for r in rows if getattr(r, "api_id", None)})
        if report in ("byapi", "byoperation")
        else {}
    )
    op_names = (
        await _names(
            conn, store, "operation", {r.operation_id for r in rows if getattr(r, "operation_id", None)}
        )
        if report == "byoperation"
        else {}
    )
    prod_names = (
        await _names(conn, store, "product", {r.product_id for r in rows if getattr(r, "product_id", None)})
        if report == "byproduct"
        else {}
    )
    sub_names = (
        await _names(
            conn,
            store,
            "subscription",
            {r.subscription_id for r in rows if getattr(r, "subscription_id", None)},
        )
        if report == "bysubscription"
        else {}
    )
    user_names = (
        await _names(conn, store, "user", {r.user_id for r in rows if getattr(r, "user_id", None)})
        if report == "byuser"
        else {}
    )
    items = []
    for r in rows:
        rec: dict[str, Any]
        if report == "byapi":
            rec = {"name": api_names.get(("", r.api_id), r.api_id), "apiId": f"/apis/{r.api_id}"}
        elif report == "byoperation":
            rec = {
                "name": op_names.get((f"apis/{r.api_id}", r.operation_id), r.operation_id),
                "apiId": f"/apis/{r.api_id}",
                "operationId": f"/apis/{r.api_id}/operations/{r.operation_id}",
            }
        elif report == "byproduct":
            rec = {
                "name": prod_names.get(("", r.product_id), r.product_id),
                "productId": f"/products/{r.product_id}",
            }
        elif report == "bysubscription":
            rec = {
                "name": sub_names.get(("", r.subscription_id), r.subscription_id),
                "subscriptionId": f"/subscriptions/{r.subscription_id}",
            }
            if r.user_id:
                rec["userId"] = f"/users/{r.user_id}"
            if r.product_id:
                rec["productId"] = f"/products/{r.product_id}"
        else:
            rec = {"name": user_names.get(("", r.user_id), r.user_id), "userId": f"/users/{r.user_id}"}
        rec.update(_record(r))
        items.append(rec)
    return items, total


async def _by_time(
    conn: Any, where: list[Any], page: Page, params: dict[str, str], q: Query
) -> tuple[list[dict[str, Any]], int]:
    interval = parse_interval(params.get("interval"))
    where = [*where, U.ts_epoch.is_not(None)]
    if q.start is not None:
        origin = int(q.start.timestamp())
    else:
        first = (await conn.execute(select(func.min(U.ts_epoch)).where(*where))).scalar_one()
        if first is None:
            return [], 0
        origin = int(first) - int(first) % interval
    bucket = ((U.ts_epoch - literal(origin)) // literal(interval)).label("bucket")
    grouped = select(bucket, *_aggregates()).where(*where).group_by(bucket)
    total = int((await conn.execute(select(func.count()).select_from(grouped.subquery()))).scalar_one())
    sub = grouped.subquery()
    order = _order(params, allowed_time=True)
    if order is None or order[0] == "timestamp":
        stmt = select(sub).order_by(sub.c.bucket.desc() if order and order[1] else sub.c.bucket.asc())
    else:
        col = sub.c[order[0]]
        stmt = select(sub).order_by(col.desc() if order[1] else col.asc(), sub.c.bucket)
    rows = (await conn.execute(stmt.offset(page.skip).limit(page.top))).all()
    text = iso_duration(interval)
    items = []
    for r in rows:
        start = datetime.fromtimestamp(origin + int(r.bucket) * interval, UTC)
        rec: dict[str, Any] = {
            "name": start.isoformat().replace("+00:00", "Z"),
            "timestamp": _iso(start),
            "interval": text,
        }
        rec.update(_record(r))
        items.append(rec)
    return items, total


async def _by_request(
    conn: Any, svc: S.Service, where: list[Any], page: Page, params: dict[str, str]
) -> tuple[list[dict[str, Any]], int]:
    total = int((await conn.execute(select(func.count()).select_from(usage).where(*where))).scalar_one())
    order = _order(params, allowed_time=True)
    desc = bool(order and order[1])
    stmt = (
        select(usage)
        .where(*where)
        .order_by(U.ts.desc() if desc else U.ts.asc(), U.id.desc() if desc else U.id.asc())
    )
    rows = (await conn.execute(stmt.offset(page.skip).limit(page.top))).all()
    items = []
    for r in rows:
        rec: dict[str, Any] = {
            "apiId": f"/apis/{r.api_id}" if r.api_id else None,
            "operationId": f"/apis/{r.api_id}/operations/{r.operation_id}" if r.operation_id else None,
            "productId": f"/products/{r.product_id}" if r.product_id else None,
            "userId": f"/users/{r.user_id}" if r.user_id else None,
            "subscriptionId": f"/subscriptions/{r.subscription_id}" if r.subscription_id else None,
            "method": r.method,
            "url": r.url,
            "ipAddress": r.client_ip,
            "backendResponseCode": str(r.backend_status) if r.backend_status is not None else "",
            "responseCode": r.status,
            "responseSize": int(r.bytes_out),
            "requestSize": int(r.bytes_in),
            "timestamp": _iso(r.ts),
            "cache": "none",
            "apiTime": float(r.total_ms),
            "serviceTime": float(r.backend_ms or 0.0),
            "apiRegion": svc.location,
            "requestId": r.request_id,
        }
        items.append({k: v for k, v in rec.items() if v is not None})
    return items, total


__all__ = ["ReportPage", "check_report", "parse_filter", "parse_interval", "run", "timedelta"]
