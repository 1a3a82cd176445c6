"""Runs durable operations on this node: lease heartbeat, progress, and recovery of orphans.

Storage credentials exist only in the memory of the node that accepted the request, so an
operation whose node died cannot be resumed elsewhere: the node that finds it orphaned fails it
cleanly (a restore is rolled back, or confirmed if its atomic switch had already happened).
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Awaitable, Callable
from typing import Any

from portico.jobs import store as J
from portico.runtime import Runtime

log = logging.getLogger("portico.jobs")

Work = Callable[["Progress"], Awaitable[dict[str, Any] | None]]


class OperationFailed(Exception):
    """A failure with an ARM code and a message fit for the client (never carries secrets)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class Progress:
    """Handed to a worker: report phase/percent/counters; throttled writes to the operation row."""

    def __init__(self, runner: JobRunner, op: J.Operation) -> None:
        self.runner = runner
        self.op = op
        self._last = 0.0
        self.counters: dict[str, int] = {}
        self.phase = "Queued"
        self.percent = 0.0
        self.bytes = 0

    async def update(
        self, *, phase: str | None = None, percent: float | None = None, force: bool = False, **fields: Any
    ) -> None:
        if phase is not None:
            self.phase = phase
        if percent is not None:
            self.percent = max(0.0, min(100.0, percent))
        loop = asyncio.get_running_loop()
        if not force and phase is None and loop.time() - self._last < 0.25:
            return
        self._last = loop.time()
        async with self.runner.rt.db.write() as conn:
            await J.progress(
                conn,
                self.op.id,
                self.runner.node_id,
                phase=self.phase,
                percent=round(self.percent, 1),
                counters=dict(self.counters),
                bytes=self.bytes,
                **fields,
            )


class JobRunner:
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        s = rt.settings
        self.node_id = s.node_id or f"{socket.gethostname()}:{s.port}"
        self.lease = s.operation_lease_seconds
        self.tasks: dict[str, asyncio.Task[None]] = {}
        self._loop_task: asyncio.Task[None] | None = None
        self._gc_task: asyncio.Task[None] | None = None
        self.recoverers: dict[
            str, Callable[[J.Operation], Awaitable[tuple[str, str | None, str | None]]]
        ] = {}

    async def start(self) -> None:
        from portico.dr.operations import gc_retired
        from portico.dr.recovery import recover_operation

        self.recoverers["default"] = lambda op: recover_operation(self.rt, op)
        await self.recover(at_start=True)
        self._gc_task = asyncio.create_task(gc_retired(self.rt))
        self._loop_task = asyncio.create_task(self._heartbeat())

    async def stop(self) -> None:
        if self._loop_task:
            self._loop_task.cancel()
        for t in list(self.tasks.values()):
            t.cancel()
        if self._gc_task:
            self._gc_task.cancel()
        pending = [*self.tasks.values(), *(t for t in (self._loop_task, self._gc_task) if t)]
        await asyncio.gather(*pending, return_exceptions=True)

    def run(self, op: J.Operation, work: Work, on_end: Callable[[], Awaitable[None]]) -> None:
        self.tasks[op.id] = asyncio.create_task(self._run(op, work, on_end), name=f"operation-{op.id}")

    async def _run(self, op: J.Operation, work: Work, on_end: Callable[[], Awaitable[None]]) -> None:
        progress = Progress(self, op)
        status, code, message = J.SUCCEEDED, None, None
        extra: dict[str, Any] = {}
        try:
            extra = await work(progress) or {}
        except OperationFailed as exc:
            status, code, message = J.FAILED, exc.code, exc.message
        except asyncio.CancelledError:
            # Shutdown: leave the record to recovery (it runs the same clean-up a crash needs).
            self.tasks.pop(op.id, None)
            raise
        except Exception as exc:  # a bug: fail the operation, log without request data
            log.exception("operation %s (%s) failed unexpectedly", op.id, op.kind)
            status, code = J.FAILED, f"{op.kind.capitalize()}Failed"
            message = f"The {op.kind} failed because of an internal error ({type(exc).__name__}); the target was not changed."
        try:
            await on_end()
            async with self.rt.db.write() as conn:
                await J.finish(
                    conn,
                    op.id,
                    self.node_id,
                    status,
                    code=code,
                    message=message,
                    percent=100.0 if status == J.SUCCEEDED else progress.percent,
                    phase="Completed" if status == J.SUCCEEDED else "Failed",
                    counters=progress.counters,
                    bytes=progress.bytes,
                    **extra,
                )
        finally:
            self.tasks.pop(op.id, None)

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(max(0.2, self.lease / 3))
            try:
                async with self.rt.db.write() as conn:
                    await J.renew(conn, self.node_id, self.lease)
                await self.recover()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("operation heartbeat failed")

    async def recover(self, *, at_start: bool = False) -> None:
        async with self.rt.db.read() as conn:
            found = await J.orphans(conn, self.node_id, set(self.tasks), at_start=at_start)
        for op in found:
            async with self.rt.db.write() as conn:
                if not await J.claim(conn, op, self.node_id, self.lease):
                    continue  # another node got it first
            status, code, message = await self.recoverers["default"](op)
            async with self.rt.db.write() as conn:
                await J.finish(
                    conn,
                    op.id,
                    self.node_id,
                    status,
                    code=code,
                    message=message,
                    phase="Completed" if status == J.SUCCEEDED else "Failed",
                )
            log.warning("operation %s (%s) was orphaned and has been closed as %s", op.id, op.kind, status)
