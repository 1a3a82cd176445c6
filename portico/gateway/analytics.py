"""The usage writer: every gateway request becomes a row of `usage`, written in batches.

`record()` is a synchronous append to a bounded in-memory queue: it never waits and never fails
the request. A background task writes batches (every `interval` seconds or `batch` rows) in one
short transaction. When the queue is full (the database is slow or down), new records are
dropped and counted (`dropped`); a failed batch is retried once, then dropped and counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from portico.store.db import Database

log = logging.getLogger("portico.gateway")

FIELDS = (
    "service_id",
    "ts_epoch_f",
    "api_id",
    "operation_id",
    "product_id",
    "subscription_id",
    "user_id",
    "method",
    "status",
    "backend_ms",
    "total_ms",
    "bytes_in",
    "bytes_out",
    "client_ip",
    "request_id",
    "url",
    "backend_status",
)


class UsageWriter:
    def __init__(
        self, db: Database, max_queue: int = 100_000, batch: int = 2000, interval: float = 0.5
    ) -> None:
        self.db = db
        self.max_queue = max_queue
        self.batch = batch
        self.interval = interval
        self.queue: deque[tuple[Any, ...]] = deque()
        self.dropped = 0
        self.written = 0
        self.failed_batches = 0
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()

    def record(self, row: tuple[Any, ...]) -> None:
        if len(self.queue) >= self.max_queue:
            self.dropped += 1
            return
        self.queue.append(row)
        if len(self.queue) >= self.batch:
            self._wake.set()

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        with contextlib.suppress(Exception):
            await self.flush()

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.interval)
            self._wake.clear()
            try:
                await self.flush()
            except asyncio.CancelledError:
                raise
            except Exception:  # never let the writer die
                log.exception("usage writer failed")

    async def flush(self) -> None:
        while self.queue:
            n = min(len(self.queue), self.batch)
            rows = [self.queue.popleft() for _ in range(n)]
            values = [_as_row(r, self.db.sqlite) for r in rows]
            for attempt in (0, 1):
                try:
                    async with self.db.write() as conn:
                        # straight to the driver's executemany: SQLAlchemy's per-row parameter
                        # processing cost more than the insert itself
                        await conn.exec_driver_sql(_SQLITE_INSERT if self.db.sqlite else _PG_INSERT, values)
                    self.written += n
                    break
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    if attempt == 1:
                        self.dropped += n
                        self.failed_batches += 1
                        log.warning("usage batch of %d records dropped: %s", n, type(exc).__name__)
                    else:
                        await asyncio.sleep(0.2)


COLUMNS = ("service_id", "ts", "ts_epoch", *FIELDS[2:])
_SQLITE_INSERT = f"INSERT INTO usage ({', '.join(COLUMNS)}) VALUES ({', '.join('?' for _ in COLUMNS)})"
_PG_INSERT = (
    f"INSERT INTO usage ({', '.join(COLUMNS)}) VALUES ({', '.join(f'${i + 1}' for i in range(len(COLUMNS)))})"
)


def _as_row(r: tuple[Any, ...], sqlite: bool) -> tuple[Any, ...]:
    ts = r[1]
    when = datetime.fromtimestamp(ts, UTC)
    # SQLite: the text format SQLAlchemy's DateTime reads back; PostgreSQL: a timestamptz
    stamp: Any = when.strftime("%Y-%m-%d %H:%M:%S.%f") if sqlite else when
    return (r[0], stamp, int(ts), *r[2:])
