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

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from portico.dr import schedules_store as Q
from portico.jobs import store as J
from portico.runtime import Runtime
from portico.store import services as S

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


async def render(rt: Runtime, now: datetime | None = None) -> str:
    now = now or datetime.now(UTC)
    out = _Out()
    async with rt.db.read() as conn:
        svcs = await S.list_all_services(conn)
        ok = await J.last_ended_by_service(conn, "backup", J.SUCCEEDED)
        failed = {
            k: ended for k, (ended, _) in (await J.last_ended_by_service(conn, "backup", J.FAILED)).items()
        }
        next_runs = await Q.next_runs_by_service(conn)
        hist = await J.durations(conn, BUCKETS)
        in_progress = await J.running_by_kind(conn)

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
    for d in hist:
        lab = {"kind": d.kind, "outcome": d.status.lower()}
        for le, n in zip(BUCKETS, d.at_most, strict=True):
            out.sample("portico_operation_duration_seconds_bucket", {**lab, "le": _num(le)}, n)
        out.sample("portico_operation_duration_seconds_bucket", {**lab, "le": "+Inf"}, d.count)
        out.sample("portico_operation_duration_seconds_sum", lab, round(d.total_seconds, 6))
        out.sample("portico_operation_duration_seconds_count", lab, d.count)
        totals.append((lab, d.count))
    out.family("portico_operations_total", "counter", "Finished long-running operations by kind and outcome.")
    for lab, n in totals:
        out.sample("portico_operations_total", lab, n)
    out.family("portico_operations_in_progress", "gauge", "Long-running operations running now, by kind.")
    for kind, n in in_progress.items():
        out.sample("portico_operations_in_progress", {"kind": kind}, n)
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
