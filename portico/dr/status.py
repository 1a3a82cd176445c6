"""Recovery-point visibility, as `GET .../service/{name}/backupStatus` shows it (Portico extension).

Computed from the database when asked (any node answers the same):
- `lastSuccess`: the newest successful backup operation of the service, manual or scheduled —
  `time` (when it completed), `recoveryPoint` (its snapshot: the start of the operation; changes
  after it are not in the backup), operation id, blob, storage, and the schedule that ran it;
- `rpoSeconds`: seconds from that recovery point to now — the configuration changes a restore of
  the newest backup would lose (null when the service has never been backed up);
- `nextScheduledRun`: the soonest next run of an enabled schedule;
- `lastFailure`: the newest failed backup (an operation that failed, or a scheduled run that could
  not start) with its cause;
- `inProgress`: a backup operation running now; `schedules`: name, enabled, next and last run.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from portico.dr import schedules_store as Q
from portico.jobs import store as J
from portico.store import services as S


def _op_summary(op: J.Operation, schedule_of: dict[str, str]) -> dict[str, Any]:
    p = op.params
    out: dict[str, Any] = {
        "time": Q.iso(op.ended_at),
        "recoveryPoint": Q.iso(op.started_at),
        "operationId": op.id,
        "backupName": p.get("backupName"),
        "storageAccount": p.get("storageAccount"),
        "containerName": p.get("containerName"),
        "schedule": schedule_of.get(op.id),
    }
    if op.started_at and op.ended_at:
        out["durationSeconds"] = round((op.ended_at - op.started_at).total_seconds(), 3)
    return out


async def _latest(conn: AsyncConnection, svc: S.Service, status: str) -> J.Operation | None:
    return await J.latest(conn, svc.id, svc.created_at, "backup", status)


async def service_status(
    conn: AsyncConnection, svc: S.Service, now: datetime | None = None
) -> dict[str, Any]:
    now = now or datetime.now(UTC)
    schedules = await Q.list_for_service(conn, svc)
    schedule_of = {h["operationId"]: s.name for s in schedules for h in s.history if h.get("operationId")}
    ok = await _latest(conn, svc, J.SUCCEEDED)
    bad = await _latest(conn, svc, J.FAILED)
    running = await _latest(conn, svc, J.IN_PROGRESS)

    last_failure: dict[str, Any] | None = None
    if bad is not None:
        last_failure = {
            "time": Q.iso(bad.ended_at),
            "operationId": bad.id,
            "backupName": bad.params.get("backupName"),
            "schedule": schedule_of.get(bad.id),
            "error": {
                "code": bad.error_code or "BackupFailed",
                "message": bad.error_message or "The backup failed.",
            },
        }
    # A scheduled run that failed before any operation started (e.g. the stored key cannot be read).
    for s in schedules:
        for h in s.history:
            if h.get("status") == "Failed" and not h.get("operationId"):
                when = h.get("endTime") or h.get("time")
                if last_failure is None or (when or "") > (last_failure.get("time") or ""):
                    last_failure = {
                        "time": when,
                        "operationId": None,
                        "backupName": None,
                        "schedule": s.name,
                        "error": h.get("error"),
                    }
    upcoming = [(s.next_run_at, s.name) for s in schedules if s.spec.enabled and s.next_run_at is not None]
    nxt = min(upcoming) if upcoming else None
    return {
        "id": f"{svc.arm_id}/backupStatus",
        "name": "backupStatus",
        "type": "Microsoft.ApiManagement/service/backupStatus",
        "properties": {
            "service": svc.name,
            "now": Q.iso(now),
            "lastSuccess": _op_summary(ok, schedule_of) if ok else None,
            "rpoSeconds": round((now - ok.started_at).total_seconds(), 3) if ok else None,
            "nextScheduledRun": {"time": Q.iso(nxt[0]), "schedule": nxt[1]} if nxt else None,
            "lastFailure": last_failure,
            "inProgress": (
                {
                    "operationId": running.id,
                    "startTime": Q.iso(running.started_at),
                    "percentComplete": running.percent,
                    "phase": running.phase,
                    "schedule": schedule_of.get(running.id),
                }
                if running
                else None
            ),
            "schedules": [
                {
                    "name": s.name,
                    "enabled": s.spec.enabled,
                    "cron": s.spec.cron,
                    "timeZone": s.spec.time_zone,
                    "nextRun": Q.iso(s.next_run_at) if s.spec.enabled else None,
                    "lastRun": s.last_run,
                }
                for s in schedules
            ],
        },
    }
