"""`GET /metrics`: Prometheus text exposition (format 0.0.4), computed from the database at scrape
time — every node of a multi-node deployment answers the same numbers.

Access: with `PORTICO_METRICS_TOKEN` set, a request must carry `Authorization: Bearer <token>`;
without it, only loopback clients (127.0.0.0/8, ::1) are answered (403 otherwise). The metrics
carry no secret: service names, times, counts and durations.

Metrics (labels `service`, `resource_group`, `subscription` for the per-service ones):
- `portico_backup_last_success_timestamp_seconds` — when the service's newest successful backup
  completed (0 if never);
- `portico_backup_rpo_seconds` — seconds since that backup's recovery point (its snapshot, taken at
  the start of the operation); `+Inf` when the service has never been backed up;
- `portico_backup_last_failure_timestamp_seconds` — when its newest failed backup ended (0 if none);
- `portico_backup_next_run_timestamp_seconds` — the soonest next run of its enabled schedules
  (absent without one);
- `portico_operation_duration_seconds` — histogram of finished operations by `kind`
  (backup/restore) and `outcome` (succeeded/failed);
- `portico_operations_total` — finished operations by `kind` and `outcome` (counter);
- `portico_operations_in_progress` — running operations by `kind`.
"""

from __future__ import annotations

import hmac
import math
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select, text
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from portico.dr.schedules_store import orphaned
from portico.runtime import Runtime
from portico.store import services as S
from portico.store.schema import backup_schedules, operations, services

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(**labels: str) -> str:
    return "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items()) + "}"


def _num(v: float) -> str:
    f = float(v)
    if math.isinf(f):
        return "+Inf" if f > 0 else "-Inf"
    return str(int(f)) if f.is_integer() and abs(f) < 1e15 else repr(f)


def _ts(dt: datetime | None) -> float:
    if dt is None:
        return 0.0
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()


class _Out:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def family(self, name: str, kind: str, help_text: str) -> None:
        self.lines.append(f"# HELP {name} {help_text}")
        self.lines.append(f"# TYPE {name} {kind}")

    def sample(self, name: str, labels: dict[str, str], value: float) -> None:
        self.lines.append(f"{name}{_labels(**labels) if labels else ''} {_num(value)}")

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


def _duration_sql(dialect: str) -> str:
    if dialect == "postgresql":
        return "EXTRACT(EPOCH FROM (ended_at - started_at))"
    return "((julianday(ended_at) - julianday(started_at)) * 86400.0)"


async def render(rt: Runtime, now: datetime | None = None) -> str:
    now = now or datetime.now(UTC)
    out = _Out()
    c = operations.c
    async with rt.db.read() as conn:
        svcs = await S.list_all_services(conn)
        # Joined to the service and started after its creation: SQLite may reuse a deleted
        # service's id, and the history of the deleted service is not this one's.
        live = select(c.service_id).join(
            services, (services.c.id == c.service_id) & (c.started_at >= services.c.created_at)
        )
        ok = {
            r.service_id: (r.ended, r.started)
            for r in (
                await conn.execute(
                    live.add_columns(
                        func.max(c.ended_at).label("ended"), func.max(c.started_at).label("started")
                    )
                    .where(c.kind == "backup", c.status == "Succeeded")
                    .group_by(c.service_id)
                )
            ).all()
        }
        failed = {
            r.service_id: r.ended
            for r in (
                await conn.execute(
                    live.add_columns(func.max(c.ended_at).label("ended"))
                    .where(c.kind == "backup", c.status == "Failed")
                    .group_by(c.service_id)
                )
            ).all()
        }
        b = backup_schedules.c
        schedules = (
            await conn.execute(select(b.service_id, b.next_run_at, b.properties).where(~orphaned()))
        ).all()
        dur = _duration_sql(conn.dialect.name)
        bucket_sql = ", ".join(
            f"SUM(CASE WHEN d <= {le!r} THEN 1 ELSE 0 END) AS b{i}" for i, le in enumerate(BUCKETS)
        )
        hist = (
            await conn.execute(
                text(
                    f"SELECT kind, status, COUNT(*) AS n, SUM(d) AS total, {bucket_sql} FROM "
                    f"(SELECT kind, status, {dur} AS d FROM operations WHERE status <> 'InProgress' "
                    "AND ended_at IS NOT NULL) AS finished GROUP BY kind, status ORDER BY kind, status"
                )
            )
        ).all()
        in_progress = (
            await conn.execute(
                select(c.kind, func.count().label("n")).where(c.status == "InProgress").group_by(c.kind)
            )
        ).all()
    next_runs: dict[int, datetime] = {}
    for r in schedules:
        if r.next_run_at is None or not (r.properties or {}).get("enabled", True):
            continue
        t = r.next_run_at if r.next_run_at.tzinfo else r.next_run_at.replace(tzinfo=UTC)
        if r.service_id not in next_runs or t < next_runs[r.service_id]:
            next_runs[r.service_id] = t

    def labels(s: S.Service) -> dict[str, str]:
        return {"service": s.name, "resource_group": s.resource_group, "subscription": s.subscription_id}

    out.family(
        "portico_backup_last_success_timestamp_seconds",
        "gauge",
        "Unix time when the service's newest successful backup completed (0: never).",
    )
    for s in svcs:
        out.sample(
            "portico_backup_last_success_timestamp_seconds", labels(s), _ts(ok.get(s.id, (None, None))[0])
        )
    out.family(
        "portico_backup_rpo_seconds",
        "gauge",
        "Seconds since the recovery point (snapshot) of the service's newest successful backup (+Inf: never backed up).",
    )
    for s in svcs:
        started = ok.get(s.id, (None, None))[1]
        rpo = max(0.0, now.timestamp() - _ts(started)) if started is not None else math.inf
        out.sample("portico_backup_rpo_seconds", labels(s), round(rpo, 3) if not math.isinf(rpo) else rpo)
    out.family(
        "portico_backup_last_failure_timestamp_seconds",
        "gauge",
        "Unix time when the service's newest failed backup ended (0: none).",
    )
    for s in svcs:
        out.sample("portico_backup_last_failure_timestamp_seconds", labels(s), _ts(failed.get(s.id)))
    out.family(
        "portico_backup_next_run_timestamp_seconds",
        "gauge",
        "Unix time of the soonest next run of the service's enabled backup schedules.",
    )
    for s in svcs:
        if s.id in next_runs:
            out.sample("portico_backup_next_run_timestamp_seconds", labels(s), _ts(next_runs[s.id]))

    out.family(
        "portico_operation_duration_seconds",
        "histogram",
        "Duration of finished long-running operations (backup, restore) by outcome.",
    )
    totals: list[tuple[dict[str, str], int]] = []
    for r in hist:
        lab = {"kind": str(r.kind), "outcome": str(r.status).lower()}
        row: Any = r._mapping
        for i, le in enumerate(BUCKETS):
            out.sample(
                "portico_operation_duration_seconds_bucket", {**lab, "le": _num(le)}, int(row[f"b{i}"] or 0)
            )
        out.sample("portico_operation_duration_seconds_bucket", {**lab, "le": "+Inf"}, int(r.n))
        out.sample("portico_operation_duration_seconds_sum", lab, round(float(r.total or 0.0), 6))
        out.sample("portico_operation_duration_seconds_count", lab, int(r.n))
        totals.append((lab, int(r.n)))
    out.family("portico_operations_total", "counter", "Finished long-running operations by kind and outcome.")
    for lab, n in totals:
        out.sample("portico_operations_total", lab, n)
    out.family("portico_operations_in_progress", "gauge", "Long-running operations running now, by kind.")
    for r in in_progress:
        out.sample("portico_operations_in_progress", {"kind": str(r.kind)}, int(r.n))
    return out.text()


def _loopback(host: str | None) -> bool:
    return bool(host) and (host == "::1" or host.startswith("127.") or host == "localhost")  # type: ignore[union-attr]


def build_metrics_route(rt: Runtime) -> Callable[[Request], Awaitable[Response]]:
    async def metrics(request: Request) -> Response:
        token = rt.settings.metrics_token
        if token is not None:
            sent = request.headers.get("authorization", "")
            expected = f"Bearer {token.get_secret_value()}"
            if not hmac.compare_digest(sent.encode(), expected.encode()):
                return PlainTextResponse(
                    "401 Unauthorized: /metrics needs 'Authorization: Bearer <PORTICO_METRICS_TOKEN>'.\n",
                    401,
                    headers={"WWW-Authenticate": "Bearer"},
                )
        elif not _loopback(request.client.host if request.client else None):
            return PlainTextResponse(
                "403 Forbidden: /metrics answers loopback clients only; set PORTICO_METRICS_TOKEN to scrape it remotely.\n",
                403,
            )
        return Response(await render(rt), media_type=CONTENT_TYPE)

    return metrics
