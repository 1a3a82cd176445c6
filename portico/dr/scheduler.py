"""The backup scheduler: fires due schedules as durable backup operations, records their outcome,
and applies retention after each successful run.

Every node runs one `Scheduler` (started and stopped with the app). Each tick it:
1. closes runs whose operation has ended (normally done at once by a watcher on the node that
   started it; the tick covers restarts and other nodes), then applies retention;
2. fires the schedules whose `next_run_at` has passed. A node fires a run only after its
   conditional UPDATE moved `next_run_at` from the value it read to the next cron time after *now*
   (so on a multi-node PostgreSQL deployment exactly one node fires, and a schedule whose times
   passed while the server was down runs once, recorded as `Missed`, not once per missed time);
3. skips (and records) a run while the schedule's previous run is still in progress.

Runs go through `portico.dr.operations.begin` exactly as `POST .../backup` does, so they have the
same progress, status, `Location`, crash recovery and busy-service rules.

The clock: `Scheduler(now=...)` takes any callable; `PORTICO_SCHEDULER_CLOCK_FILE` (tests only)
names a file holding seconds added to the real clock, re-read at every tick; the tick interval is
`PORTICO_SCHEDULER_TICK_SECONDS`. Retention compares backups' catalog times with the real clock
(they were written by real clocks).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from portico.arm.errors import ArmError
from portico.dr import schedules_store as Q
from portico.dr.access import BackupRequest, check_identity, parse_encryption_key
from portico.dr.containers import open_request_container
from portico.dr.operations import begin, check_tier
from portico.dr.retention import prune
from portico.dr.schedules_model import backup_name, next_run
from portico.dr.storage import StorageError
from portico.jobs import store as J
from portico.jobs.runner import OperationFailed
from portico.runtime import Runtime
from portico.secrets_box import SecretBox, SecretBoxError, load_or_create
from portico.settings import Settings
from portico.store import services as S

log = logging.getLogger("portico.scheduler")

PENDING_STALE_SECONDS = 120.0


def make_clock(settings: Settings) -> Callable[[], datetime]:
    path = settings.scheduler_clock_file
    if path is None:
        return lambda: datetime.now(UTC)

    def now() -> datetime:
        try:
            offset = float(path.read_text().strip() or "0")
        except (OSError, ValueError):
            offset = 0.0
        return datetime.now(UTC) + timedelta(seconds=offset)

    return now


class RunRefused(Exception):
    """A run that could not start; `status` is Failed or Skipped, `code`/`message` say why."""

    def __init__(self, status: str, code: str, message: str, http_status: int = 400) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.http_status = http_status


class Scheduler:
    def __init__(
        self, rt: Runtime, now: Callable[[], datetime] | None = None, box: SecretBox | None = None
    ) -> None:
        self.rt = rt
        self.box = box or load_or_create(rt.settings)
        self._now = now or make_clock(rt.settings)
        self.tick_seconds = rt.settings.scheduler_tick_seconds
        self.node_id: str = rt.jobs.node_id
        self._task: asyncio.Task[None] | None = None
        self._watchers: set[asyncio.Task[None]] = set()
        self._wake = asyncio.Event()

    def now(self) -> datetime:
        return self._now()

    @property
    def grace(self) -> timedelta:
        """A run fired later than this after its time was missed (the server was down)."""
        return timedelta(seconds=max(60.0, 3 * self.tick_seconds))

    # --- lifecycle -----------------------------------------------------------------------------------
    async def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="backup-scheduler")

    async def stop(self) -> None:
        tasks = [t for t in (self._task, *self._watchers) if t is not None]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def wake(self) -> None:
        self._wake.set()

    async def _loop(self) -> None:
        while True:
            try:
                await self.tick()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("scheduler tick failed")
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=self.tick_seconds)
            except TimeoutError:
                pass

    async def tick(self) -> None:
        await self._remove_orphans()
        async with self.rt.db.read() as conn:
            running = await Q.with_running(conn)
        for s in running:
            await self._check_running(s)
        now = self.now()
        async with self.rt.db.read() as conn:
            due = await Q.due(conn, now)
        for s in due:
            await self._fire(s, now)

    async def _remove_orphans(self) -> None:
        async with self.rt.db.read() as conn:
            orphan = await Q.has_orphans(conn)
        if orphan:
            async with self.rt.db.write() as conn:
                n = await Q.remove_orphans(conn)
            log.info("removed %d backup schedule(s) of deleted services", n)

    # --- firing --------------------------------------------------------------------------------------
    async def _fire(self, s: Q.Schedule, now: datetime) -> None:
        scheduled = s.next_run_at
        assert scheduled is not None
        new_next = next_run(s.spec.cron, s.spec.time_zone, now)
        async with self.rt.db.write() as conn:
            if not await Q.claim(conn, s.id, scheduled, new_next):
                return  # another node fired it (or the schedule changed)
        trigger = "Missed" if now - scheduled > self.grace else "Schedule"
        try:
            await self.start_run(s, trigger, scheduled)
        except RunRefused:
            pass  # recorded on the schedule

    async def start_run(self, s: Q.Schedule, trigger: str, scheduled: datetime | None) -> J.Operation:
        """Start one run of `s` now. Raises `RunRefused` (after recording it) when it cannot start."""
        now = self.now()
        run = Q.new_run(trigger, now, scheduled)
        async with self.rt.db.read() as conn:
            svc = await S.get_service_by_id(conn, s.service_id)
        if svc is None:
            raise RunRefused(
                "Failed", "ServiceNotFound", "The service of this schedule no longer exists.", 404
            )
        marker = f"pending:{run['runId']}:{time.time():.0f}"
        async with self.rt.db.write() as conn:
            started = await Q.set_running(conn, s.id, None, marker)
        if not started:
            # The previous run may have ended without being closed yet: close it, then retry once.
            fresh = await self._reload(s.id)
            if fresh is not None and fresh.running:
                await self._check_running(fresh)
            async with self.rt.db.write() as conn:
                started = await Q.set_running(conn, s.id, None, marker)
        if not started:
            fresh = await self._reload(s.id)
            current = (fresh.running if fresh else None) or "?"
            what = "starting" if current.startswith("pending:") else f"operation {current}"
            run.update(
                status="Skipped",
                endTime=Q.iso(now),
                error={
                    "code": "PreviousRunInProgress",
                    "message": f"Skipped: the previous run of schedule '{s.name}' ({what}) was still in progress.",
                },
            )
            async with self.rt.db.write() as conn:
                await Q.record_run(conn, s.id, run)
            raise RunRefused("Skipped", "PreviousRunInProgress", run["error"]["message"], 409)
        # Names have a resolution of one second: a run right after the previous one (run-now)
        # waits for the next second rather than replace the previous run's backup.
        previous = {h.get("backupName") for h in (await self._reload(s.id) or s).history[:3]}
        if backup_name(s.spec.name_prefix, svc.name, now) in previous:
            await asyncio.sleep(1.02 - now.microsecond / 1e6)
            now = self.now()
            run["time"] = Q.iso(now)
        async with self.rt.db.write() as conn:
            await Q.record_run(conn, s.id, run)
        try:
            req = self._request(s, svc, now)
            op = await begin(self.rt, svc, "backup", req)
        except BaseException as exc:
            if isinstance(exc, RunRefused):
                refused = exc
            elif isinstance(exc, ArmError):
                busy = exc.code == "ServiceBusy"
                refused = RunRefused(
                    "Skipped" if busy else "Failed", exc.code, exc.message, 409 if busy else exc.status
                )
            elif isinstance(exc, Exception):
                log.exception("schedule %s: the run could not start", s.id)
                refused = RunRefused(
                    "Failed",
                    "BackupFailed",
                    f"The run could not start because of an internal error ({type(exc).__name__}).",
                )
            else:
                async with self.rt.db.write() as conn:
                    await Q.set_running(conn, s.id, marker, None)
                raise

            def failed(h: dict[str, Any]) -> None:
                h.update(
                    status=refused.status,
                    endTime=Q.iso(self.now()),
                    error={"code": refused.code, "message": refused.message},
                )

            async with self.rt.db.write() as conn:
                await Q.set_running(conn, s.id, marker, None)
                await Q.update_run(conn, s.id, run["runId"], failed)
            raise refused from None

        def started_op(h: dict[str, Any]) -> None:
            h.update(operationId=op.id, backupName=req.backup_name)

        async with self.rt.db.write() as conn:
            await Q.set_running(conn, s.id, marker, op.id)
            await Q.update_run(conn, s.id, run["runId"], started_op)
        log.info("schedule %s of service %s: %s run started (operation %s)", s.name, svc.name, trigger, op.id)
        self._watch(s.id, op.id)
        return op

    def _request(self, s: Q.Schedule, svc: S.Service, now: datetime) -> BackupRequest:
        spec = s.spec
        try:
            check_tier(svc, "backup")
        except ArmError as exc:
            raise RunRefused("Failed", exc.code, exc.message) from None
        try:
            secrets = Q.unseal(self.box, s)
        except SecretBoxError as exc:
            raise RunRefused(
                "Failed", "ScheduleSecretUnavailable", f"Cannot read the schedule's stored key: {exc}."
            ) from None
        key = secrets.get("accessKey")
        if spec.access_type == "AccessKey" and not key:
            raise RunRefused(
                "Failed",
                "ScheduleSecretUnavailable",
                "The schedule has no stored access key; set accessKey again.",
            )
        enc_text = secrets.get("encryptionKey")
        if enc_text is None and self.rt.settings.backup_encryption_key is not None:
            enc_text = self.rt.settings.backup_encryption_key.get_secret_value()
        enc = parse_encryption_key(enc_text, "encryptionKey") if enc_text else None
        req = BackupRequest(
            storage_account=spec.storage_account,
            container=spec.container,
            backup_name=backup_name(spec.name_prefix, svc.name, now),
            access_type=spec.access_type,
            access_key=key if spec.access_type == "AccessKey" else None,
            client_id=spec.client_id,
            encryption_key=enc,
        )
        check_identity(req, svc.identity, svc.name)
        return req

    # --- closing runs --------------------------------------------------------------------------------
    def _watch(self, schedule_id: int, op_id: str) -> None:
        async def watch() -> None:
            task = self.rt.jobs.tasks.get(op_id)
            if task is not None:
                await asyncio.gather(task, return_exceptions=True)
            for _ in range(100):
                if await self.finish(schedule_id, op_id) is not None:
                    return
                await asyncio.sleep(0.05)

        t = asyncio.create_task(watch(), name=f"schedule-run-{op_id}")
        self._watchers.add(t)
        t.add_done_callback(self._watchers.discard)

    async def _reload(self, schedule_id: int) -> Q.Schedule | None:
        async with self.rt.db.read() as conn:
            return await Q.get_by_id(conn, schedule_id)

    async def _check_running(self, s: Q.Schedule) -> None:
        running = s.running
        if not running:
            return
        if running.startswith("pending:"):
            _, run_id, stamp = [*running.split(":"), "", ""][:3]
            try:
                age = time.time() - float(stamp)
            except ValueError:
                age = PENDING_STALE_SECONDS + 1
            if age <= PENDING_STALE_SECONDS:
                return

            def interrupted(h: dict[str, Any]) -> None:
                h.update(
                    status="Failed",
                    endTime=Q.iso(self.now()),
                    error={
                        "code": "BackupFailed",
                        "message": "The run was interrupted before its backup started (the node stopped).",
                    },
                )

            async with self.rt.db.write() as conn:
                if await Q.set_running(conn, s.id, running, None):
                    await Q.update_run(conn, s.id, run_id, interrupted)
            return
        await self.finish(s.id, running)

    async def finish(self, schedule_id: int, op_id: str) -> bool | None:
        """Record the outcome of run `op_id` once its operation ended, then apply retention.
        None: still running; False: someone else closed it; True: closed here."""
        async with self.rt.db.read() as conn:
            op = await J.get(conn, op_id)
        if op is not None and op.status == J.IN_PROGRESS:
            return None

        def outcome(h: dict[str, Any]) -> None:
            if op is None:
                h.update(
                    status="Failed",
                    endTime=Q.iso(self.now()),
                    error={"code": "BackupFailed", "message": "The run's operation record is gone."},
                )
                return
            h.update(status=op.status, endTime=Q.iso(op.ended_at))
            if op.status == J.FAILED:
                h["error"] = {
                    "code": op.error_code or "BackupFailed",
                    "message": op.error_message or "The backup failed.",
                }

        async with self.rt.db.write() as conn:
            if not await Q.set_running(conn, schedule_id, op_id, None):
                return False
            run = await Q.update_run(
                conn, schedule_id, _run_id_of(await Q.get_by_id(conn, schedule_id), op_id), outcome
            )
        if op is not None and op.status == J.SUCCEEDED and run is not None:
            await self._retention(schedule_id, run)
        return True

    async def _retention(self, schedule_id: int, run: dict[str, Any]) -> None:
        s = await self._reload(schedule_id)
        if s is None:
            return
        async with self.rt.db.read() as conn:
            svc = await S.get_service_by_id(conn, s.service_id)
        if svc is None or not Q.belongs(s, svc):
            return
        summary: dict[str, Any]
        try:
            secrets = Q.unseal(self.box, s)
            req = BackupRequest(
                storage_account=s.spec.storage_account,
                container=s.spec.container,
                backup_name="",
                access_type=s.spec.access_type,
                access_key=secrets.get("accessKey") if s.spec.access_type == "AccessKey" else None,
                client_id=s.spec.client_id,
                encryption_key=None,
            )
            async with open_request_container(self.rt.settings, req, "BackupFailed") as container:
                result = await prune(
                    container,
                    prefix=s.spec.name_prefix,
                    service_name=svc.name,
                    service_arm_id=svc.arm_id,
                    retention=s.spec.retention,
                    now=datetime.now(UTC),
                    protect={run["backupName"]} if run.get("backupName") else set(),
                )
            summary = result.summary()
        except (SecretBoxError, StorageError, OperationFailed) as exc:
            message = getattr(exc, "message", None) or str(exc)
            summary = {"deleted": 0, "errors": [f"retention not applied: {message}"]}
        except Exception as exc:
            log.exception("retention of schedule %s failed", schedule_id)
            summary = {
                "deleted": 0,
                "errors": [f"retention not applied: internal error ({type(exc).__name__})"],
            }

        def with_retention(h: dict[str, Any]) -> None:
            h["retention"] = summary

        async with self.rt.db.write() as conn:
            await Q.update_run(conn, schedule_id, run["runId"], with_retention)


def _run_id_of(s: Q.Schedule | None, op_id: str) -> str:
    run = Q.run_for_operation(s, op_id) if s is not None else None
    return str(run["runId"]) if run else ""


def get_scheduler(rt: Runtime) -> Scheduler:
    sched: Scheduler | None = getattr(rt, "scheduler", None)
    if sched is None:
        raise ArmError(503, "SchedulerUnavailable", "The backup scheduler is not running on this node.")
    return sched
