"""Quota counters of the `quota` and `quota-by-key` policies, shared through the database.

A quota's period lasts from seconds to years, so its counter must outlive a process and be one
for every gateway process and node. Each gateway process keeps a `QuotaLedger`: per counter, the
total as last read from the `quota_counters` table plus what this process counted since (pending,
and in flight while a flush runs). A policy enforces against that sum, in memory: no database call
on a request. The `QuotaFlusher` adds the pending deltas to the table every `interval` seconds (and
at once when a process meets a counter it has not read yet, and on shutdown), reading the new
totals back in the same statements, and re-reads the totals of the other counters it keeps (those
used in the last `idle_seconds`), so what other processes counted, and a reset through the
management API, show within one interval.

Bound on overshoot: a process sees what the others counted only at its flushes, so during one
interval each process may admit up to the limit on its own view. With P gateway processes (all
nodes' workers) sharing a counter, the calls admitted in a period exceed the limit by at most what
the other P-1 processes admit between two flushes: at most (P-1) x (calls per process per interval
+ flush time), and never more than (P-1) x limit. A process that meets a counter for the first time
admits on its own view until its first read, which it asks for at once (a database round trip); a
starting process reads the current counters before it serves (`QuotaFlusher.preload`), so a restart
forgets nothing.

Periods: counter + period key identify a counter row. The period key is
`{index}_{ISO 8601 duration}`, the index counted from the policy's first period start
(`first-period-start` of quota-by-key, the subscription's start for quota) in renewal periods;
`renewal-period="0"` is one period that never ends (`0_PT0S`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache

from portico.store import quotas as Q
from portico.store.db import Database

log = logging.getLogger("portico.gateway")

Key = tuple[int, str, str]  # (store id, stored counter key, period key)
PRUNE_SECONDS = 600.0  # how often a process deletes counters of long-ended periods
KEEP_ENDED = timedelta(days=1)  # ended periods kept this long (listed only while current)


def iso_duration(seconds: int) -> str:
    """ISO 8601 duration of a renewal period: 3600 → PT1H, 86400 → P1D, 90061 → P1DT1H1M1S."""
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    date = f"{days}D" if days else ""
    clock = "".join(f"{v}{u}" for v, u in ((hours, "H"), (minutes, "M"), (secs, "S")) if v)
    if not date and not clock:
        return "PT0S"
    return f"P{date}" + (f"T{clock}" if clock else "")


@dataclass(frozen=True, slots=True)
class Period:
    index: int
    key: str
    start: float  # epoch seconds
    end: float | None  # None: never ends


NEVER_LEFT = 366 * 86400 * 100.0  # "seconds until the quota renews" of a period that never ends


@lru_cache(maxsize=64)
def _duration(renewal: int) -> str:
    return iso_duration(renewal)


def period_at(renewal: int, first: float, now: float) -> Period:
    """The period of a quota renewing every `renewal` seconds (0: never) from `first` (epoch
    seconds), at `now`."""
    if renewal <= 0:
        return Period(0, "0_PT0S", first, None)
    index = math.floor((now - first) / renewal)
    start = first + index * renewal
    return Period(index, f"{index}_{_duration(renewal)}", start, start + renewal)


EPOCH_ZERO = datetime(1, 1, 1, tzinfo=UTC).timestamp()  # API Management's default first-period-start
ANONYMOUS = "(anonymous)"  # the `quota` counter key of requests without a subscription


@lru_cache(maxsize=4096)
def instant(text: str | None) -> float:
    """Epoch seconds of an ISO 8601 date-time (no zone: UTC); year 1 when absent or unreadable."""
    if not text:
        return EPOCH_ZERO
    try:
        when = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        return EPOCH_ZERO
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()


def _moment(epoch: float | None) -> datetime | None:
    return None if epoch is None else datetime.fromtimestamp(epoch, UTC)


class Entry:
    """One counter as this process sees it."""

    __slots__ = (
        "calls",
        "flying_calls",
        "flying_kb",
        "kb",
        "known",
        "pending_calls",
        "pending_kb",
        "period",
        "used",
    )

    def __init__(self, period: Period) -> None:
        self.period = period
        self.calls = 0  # total in the table when last read (with what this process flushed)
        self.kb = 0.0
        self.pending_calls = 0  # counted here, not yet flushed
        self.pending_kb = 0.0
        self.flying_calls = 0  # being flushed
        self.flying_kb = 0.0
        self.known = False  # read from the table at least once
        self.used = True  # looked at since the last flush

    def total_calls(self) -> int:
        return self.calls + self.flying_calls + self.pending_calls

    def total_kb(self) -> float:
        return self.kb + self.flying_kb + self.pending_kb


class QuotaLedger:
    """The counters of one gateway process (see the module docstring). Not thread-safe: used from
    the event loop only."""

    def __init__(self, idle_seconds: float = 120.0, max_batch: int = 5000) -> None:
        self.entries: dict[Key, Entry] = {}
        self.idle_seconds = idle_seconds
        self.max_batch = max_batch
        self.wake: Callable[[], None] | None = None  # the flusher's: a counter needs reading
        self._idle: dict[Key, float] = {}  # key → monotonic time it was last seen unused at a flush
        self._cold: set[Key] = set()  # preloaded, not used since: not re-read until used

    def entry(self, store_id: int, counter_key: str, period_key: str, period: Period) -> Entry:
        """The counter of this key and period, created (to be read at once) on first use."""
        key = (store_id, Q.storage_key(counter_key), Q.storage_key(period_key, Q.MAX_PERIOD_KEY))
        e = self.entries.get(key)
        if e is None:
            e = self.entries[key] = Entry(period)
            if self.wake is not None:
                self.wake()
        else:
            e.used = True
        return e

    @staticmethod
    def add(e: Entry, calls: int = 0, kb: float = 0.0) -> None:
        e.pending_calls += calls
        e.pending_kb += kb

    # --- the flusher's side ------------------------------------------------------------------
    def drain(self) -> tuple[list[Q.Delta], list[Q.CounterId]]:
        """Move pending counts in flight: (deltas to add, counters only to re-read: every other one
        this process keeps, so a reset shows within one flush). Forgets counters unused for
        `idle_seconds` and those of ended periods, once they have nothing to flush."""
        deltas: list[Q.Delta] = []
        reads: list[Q.CounterId] = []
        now, wall = time.monotonic(), time.time()
        dead: list[Key] = []
        for key, e in self.entries.items():
            if e.pending_calls or e.pending_kb:
                if len(deltas) >= self.max_batch:
                    continue  # the rest at the next flush
                e.flying_calls, e.flying_kb = e.pending_calls, e.pending_kb
                e.pending_calls, e.pending_kb = 0, 0.0
                period = e.period
                deltas.append(
                    Q.Delta(
                        Q.CounterId(*key),
                        _moment(period.start) or datetime.now(UTC),
                        _moment(period.end),
                        e.flying_calls,
                        e.flying_kb,
                    )
                )
                self._idle.pop(key, None)
            elif e.period.end is not None and e.period.end <= wall and not e.used:
                dead.append(key)
            elif e.used:
                reads.append(Q.CounterId(*key))
                self._idle.pop(key, None)
                self._cold.discard(key)
            else:
                since = self._idle.setdefault(key, now)
                if now - since >= self.idle_seconds:
                    dead.append(key)
                elif key not in self._cold:
                    reads.append(Q.CounterId(*key))
            e.used = False
        for key in dead:
            del self.entries[key]
            self._idle.pop(key, None)
            self._cold.discard(key)
        return deltas, reads

    def preload(self, counters: list[Q.Counter]) -> None:
        """Counters read from the table at start: a process restarting (or joining) knows what was
        counted before it at once, rather than after its first flush of each counter."""
        now = time.monotonic()
        for c in counters:
            i = c.counter
            key = (i.store_id, i.counter_key, i.period_key)
            if key in self.entries:
                continue
            index = c.counter.period_key.split("_", 1)[0]
            start = c.period_start.timestamp()
            end = None if c.period_end is None else c.period_end.timestamp()
            e = Entry(Period(int(index) if index.lstrip("-").isdigit() else 0, i.period_key, start, end))
            e.calls, e.kb, e.known, e.used = c.calls, c.kb, True, False
            self.entries[key] = e
            self._idle[key] = now
            self._cold.add(key)

    def settle(self, deltas: list[Q.Delta], totals: dict[Q.CounterId, tuple[int, float]]) -> None:
        """After the deltas were added: the totals the table answered (a counter missing from them
        belonged to a store no longer active; its counts are dropped)."""
        for d in deltas:
            c = d.counter
            e = self.entries.get((c.store_id, c.counter_key, c.period_key))
            if e is None:
                continue
            got = totals.get(c)
            if got is not None:
                e.calls, e.kb = got
            e.flying_calls, e.flying_kb = 0, 0.0
            e.known = True

    def unflown(self, deltas: list[Q.Delta]) -> None:
        """The deltas could not be written: count them as pending again."""
        for d in deltas:
            c = d.counter
            e = self.entries.get((c.store_id, c.counter_key, c.period_key))
            if e is not None:
                e.pending_calls += e.flying_calls
                e.pending_kb += e.flying_kb
                e.flying_calls, e.flying_kb = 0, 0.0

    def refreshed(self, reads: list[Q.CounterId], totals: dict[Q.CounterId, tuple[int, float]]) -> None:
        """Totals re-read for counters this process had nothing to add to (absent: no row, 0)."""
        for c in reads:
            e = self.entries.get((c.store_id, c.counter_key, c.period_key))
            if e is not None:
                e.calls, e.kb = totals.get(c, (0, 0.0))
                e.known = True


class QuotaFlusher:
    """Writes a ledger's deltas to the database and reads totals back, in the background."""

    def __init__(
        self, db: Database, ledger: QuotaLedger, interval: float = 1.0, min_gap: float = 0.05
    ) -> None:
        self.db = db
        self.ledger = ledger
        self.interval = interval
        self.min_gap = min_gap  # between two flushes, however often counters need reading
        self.failures = 0
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._last_prune = time.monotonic()

    async def preload(self, limit: int = 100_000) -> None:
        """Read the current counters (the most recently counted `limit`) into the ledger."""
        async with self.db.read() as conn:
            self.ledger.preload(await Q.current_of_active_stores(conn, limit))

    def start(self) -> None:
        self.ledger.wake = self._wake.set
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        """Stop the loop and write what is pending (once; a failure is logged)."""
        self.ledger.wake = None
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        try:
            await self.flush()
        except Exception as exc:
            log.warning("quota counters: the last flush failed (%s); its counts are lost", type(exc).__name__)

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.interval)
            self._wake.clear()
            try:
                await self.flush()
                self.failures = 0
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the database is down or busy: counts stay pending
                self.failures += 1
                if self.failures in (1, 10) or self.failures % 100 == 0:
                    log.warning(
                        "quota counters: flush failed %d time(s): %s", self.failures, type(exc).__name__
                    )
            await asyncio.sleep(self.min_gap)

    async def flush(self) -> None:
        deltas, reads = self.ledger.drain()
        if deltas:
            try:
                async with self.db.write() as conn:
                    totals = await Q.add(conn, deltas)
            except BaseException:
                self.ledger.unflown(deltas)
                raise
            self.ledger.settle(deltas, totals)
        if reads:
            async with self.db.read() as conn:
                self.ledger.refreshed(reads, await Q.read(conn, reads))
        if time.monotonic() - self._last_prune >= PRUNE_SECONDS:
            self._last_prune = time.monotonic()
            async with self.db.write() as conn:
                await Q.prune(conn, datetime.now(UTC) - KEEP_ENDED)
