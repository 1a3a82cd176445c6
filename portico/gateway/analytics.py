"""Usage records: every gateway request becomes a row of `usage`, written in batches.

`UsageWriter.record()` is a synchronous append to a bounded in-memory queue: it never waits and
never fails the request. A background task writes batches (every `interval` seconds or `batch`
rows) in one short transaction. When the queue is full (the database is slow or down), new records
are dropped and counted (`dropped`); a failed batch is retried once, then dropped and counted.

Gateway worker processes (portico/gateway/workers.py) do not write to the database: their
`UsageForwarder` sends batches of records over a pipe to the parent's `UsageSink`, which hands them
to the parent's one `UsageWriter`. A frame is a 4-byte little-endian length and an orjson array of
records; a worker whose pipe is backed up drops (and counts) records instead of buffering more.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import struct
import time
from collections import deque
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    from multiprocessing.connection import Connection

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
        self.queue: deque[Sequence[Any]] = deque()
        self.dropped = 0
        self.written = 0
        self.failed_batches = 0
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()

    def record(self, row: Sequence[Any]) -> None:
        if len(self.queue) >= self.max_queue:
            self.dropped += 1
            return
        self.queue.append(row)
        if len(self.queue) >= self.batch:
            self._wake.set()

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def open(self) -> None:
        self.start()

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
            stamped = _Stamps(self.db.sqlite).row
            values = [stamped(r) for r in rows]
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


class _Stamps:
    """A record's epoch seconds as the `ts` column takes it. SQLite: the text SQLAlchemy's DateTime
    reads back, its whole-second part formatted once per second (strftime per row cost more than
    the row's insert). PostgreSQL: a timestamptz. `ts_epoch` is the same whole second as `ts`."""

    def __init__(self, sqlite: bool) -> None:
        self.sqlite = sqlite
        self._second = -1
        self._prefix = ""

    def row(self, r: Sequence[Any]) -> tuple[Any, ...]:
        frac, whole = math.modf(r[1])  # rounded as datetime.fromtimestamp rounds
        second, micro = int(whole), round(frac * 1e6)
        if micro >= 1_000_000:
            second, micro = second + 1, micro - 1_000_000
        if not self.sqlite:
            return (r[0], datetime.fromtimestamp(second, UTC).replace(microsecond=micro), second, *r[2:])
        if second != self._second:
            self._prefix = datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%d %H:%M:%S.")
            self._second = second
        return (r[0], f"{self._prefix}{micro:06d}", second, *r[2:])


_FRAME = struct.Struct("<I")
_MAX_FRAME = 64 * 1024 * 1024


class UsageForwarder:
    """A worker's usage records, sent to the parent in batches (`record()` never blocks)."""

    def __init__(
        self, conn: Connection, batch: int = 1000, interval: float = 0.05, max_pending: int = 16 << 20
    ) -> None:
        self._conn = conn
        self.batch = batch
        self.interval = interval
        self.max_pending = max_pending
        self.rows: list[tuple[Any, ...]] = []
        self.dropped = 0
        self.sent = 0
        self._transport: asyncio.WriteTransport | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._warned = 0.0

    async def open(self) -> None:
        loop = asyncio.get_running_loop()
        pipe = os.fdopen(os.dup(self._conn.fileno()), "wb", buffering=0)
        self._conn.close()
        self._transport, _ = await loop.connect_write_pipe(asyncio.Protocol, pipe)
        self._timer = loop.call_later(self.interval, self._tick)

    def record(self, row: tuple[Any, ...]) -> None:
        self.rows.append(row)
        if len(self.rows) >= self.batch:
            self.flush()

    def _tick(self) -> None:
        self.flush()
        self._timer = asyncio.get_running_loop().call_later(self.interval, self._tick)

    def flush(self) -> None:
        rows, self.rows = self.rows, []
        if not rows:
            return
        t = self._transport
        if t is None or t.is_closing() or t.get_write_buffer_size() > self.max_pending:
            self.dropped += len(rows)
            now = time.monotonic()
            if now - self._warned > 10.0:
                self._warned = now
                log.warning(
                    "usage records dropped: the node's writer is not keeping up (%d so far)", self.dropped
                )
            return
        payload = orjson.dumps(rows)
        t.write(_FRAME.pack(len(payload)) + payload)
        self.sent += len(rows)

    async def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self.flush()
        t = self._transport
        if t is not None:
            for _ in range(100):  # let the pipe drain (bounded: the parent may be gone)
                if t.get_write_buffer_size() == 0:
                    break
                await asyncio.sleep(0.02)
            t.close()


class _SinkProtocol(asyncio.Protocol):
    def __init__(self, writer: UsageWriter, done: asyncio.Future[None]) -> None:
        self.writer = writer
        self.done = done
        self.buf = bytearray()
        self.transport: asyncio.BaseTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        pos = 0
        while len(buf) - pos >= 4:
            (n,) = _FRAME.unpack_from(buf, pos)
            if n > _MAX_FRAME:
                log.error("usage pipe: frame of %d bytes refused; closing this worker's pipe", n)
                buf.clear()
                if self.transport is not None:
                    self.transport.close()
                return
            if len(buf) - pos - 4 < n:
                break
            try:
                rows = orjson.loads(memoryview(buf)[pos + 4 : pos + 4 + n])
            except orjson.JSONDecodeError:
                log.error("usage pipe: undecodable frame dropped")
                rows = []
            pos += 4 + n
            record = self.writer.record
            for row in rows:
                record(row)  # a list: _Stamps.row makes the one tuple the insert binds
        del buf[:pos]

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_result(None)


class UsageSink:
    """The parent's end of every worker's usage pipe."""

    def __init__(self, writer: UsageWriter) -> None:
        self.writer = writer
        self._pipes: list[tuple[asyncio.BaseTransport, asyncio.Future[None]]] = []

    async def attach(self, conn: Connection) -> None:
        loop = asyncio.get_running_loop()
        pipe = os.fdopen(os.dup(conn.fileno()), "rb", buffering=0)
        conn.close()
        done: asyncio.Future[None] = loop.create_future()
        transport, _ = await loop.connect_read_pipe(lambda: _SinkProtocol(self.writer, done), pipe)
        self._pipes = [(t, d) for t, d in self._pipes if not d.done()]
        self._pipes.append((transport, done))

    async def close(self, wait_seconds: float = 2.0) -> None:
        """After the workers exited: take what is left in the pipes, then close them."""
        pending = [d for _t, d in self._pipes if not d.done()]
        if pending:
            await asyncio.wait(pending, timeout=wait_seconds)
        for t, _d in self._pipes:
            t.close()
        self._pipes = []
