"""Runs durable operations on this node: lease heartbeat, progress, and recovery of orphans.

Storage credentials exist only in the memory of the node that accepted the request, so an
operation whose node died cannot be resumed elsewhere: the node that finds it orphaned closes it
with the recoverer registered for its kind (the composition root registers them; for a restore,
that rolls back, or confirms if its atomic switch had already happened). The runner knows no
kind of operation itself.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from typing import Any

from portico.jobs import store as J
from portico.settings import Settings
from portico.store.db import Database

log = logging.getLogger("portico.jobs")

Work = Callable[["Progress"], Awaitable[dict[str, Any] | None]]
Outcome = tuple[str, str | None, str | None]  # status, error code, error message
Recoverer = Callable[[J.Operation], Awaitable[Outcome]]
"""Closes an orphaned operation: undoes what it left behind and says how it ended."""
Background = Callable[[], Coroutine[Any, Any, None]]


class Recoverers:
    """The registry of recoverers by operation kind, filled by the composition root."""

    def __init__(self) -> None:
        self._by_kind: dict[str, Recoverer] = {}

    def register(self, kind: str, recoverer: Recoverer) -> None:
        self._by_kind[kind] = recoverer

    def get(self, kind: str) -> Recoverer | None:
        return self._by_kind.get(kind)

    def kinds(self) -> list[str]:
        return sorted(self._by_kind)


async def _no_recoverer(op: J.Operation) -> Outcome:
    return (
        J.FAILED,
        f"{op.kind.capitalize()}Failed",
        f"The {op.kind} was interrupted (the server running it stopped) before it completed.",
    )


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
        self.phase: str = J.Phase.QUEUED
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
        async with self.runner.db.write() as conn:
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
    def __init__(self, settings: Settings, db: Database) -> None:
        self.db = db
        self.node_id = settings.node_id or f"{socket.gethostname()}:{settings.port}"
        self.lease = settings.operation_lease_seconds
        self.tasks: dict[str, asyncio.Task[None]] = {}
        self.recoverers = Recoverers()
        self._background: list[Background] = []
        self._loop_task: asyncio.Task[None] | None = None
        self._background_tasks: list[asyncio.Task[None]] = []

    def add_background(self, work: Iterable[Background]) -> None:
        """Work started once orphans are recovered (e.g. deleting what they left behind)."""
        self._background.extend(work)

    async def start(self) -> None:
        await self.recover(at_start=True)
        self._background_tasks = [asyncio.create_task(work()) for work in self._background]
        self._loop_task = asyncio.create_task(self._heartbeat())

    async def stop(self) -> None:
        if self._loop_task:
            self._loop_task.cancel()
        for t in [*self.tasks.values(), *self._background_tasks]:
            t.cancel()
        pending = [*self.tasks.values(), *self._background_tasks, *(t for t in (self._loop_task,) if t)]
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
            async with self.db.write() as conn:
                await J.finish(
                    conn,
                    op.id,
                    self.node_id,
                    status,
                    code=code,
                    message=message,
                    percent=100.0 if status == J.SUCCEEDED else progress.percent,
                    phase=J.Phase.COMPLETED if status == J.SUCCEEDED else J.Phase.FAILED,
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
                async with self.db.write() as conn:
                    await J.renew(conn, self.node_id, self.lease)
                await self.recover()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("operation heartbeat failed")

    async def recover(self, *, at_start: bool = False) -> None:
        async with self.db.read() as conn:
            found = await J.orphans(conn, self.node_id, set(self.tasks), at_start=at_start)
        for op in found:
            async with self.db.write() as conn:
                if not await J.claim(conn, op, self.node_id, self.lease):
                    continue  # another node got it first
            recoverer = self.recoverers.get(op.kind) or _no_recoverer
            status, code, message = await recoverer(op)
            async with self.db.write() as conn:
                await J.finish(
                    conn,
                    op.id,
                    self.node_id,
                    status,
                    code=code,
                    message=message,
                    phase=J.Phase.COMPLETED if status == J.SUCCEEDED else J.Phase.FAILED,
                )
            log.warning("operation %s (%s) was orphaned and has been closed as %s", op.id, op.kind, status)
