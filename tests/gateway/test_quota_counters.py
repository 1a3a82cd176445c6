"""Quota counters shared through the database (portico/gateway/quotas.py, portico/store/quotas.py):
periods, a process's ledger (pending, in flight, totals read back) and flushes of several ledgers
into one SQLite table, without a server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import update

from portico.gateway.quotas import QuotaFlusher, QuotaLedger, instant, iso_duration, period_at
from portico.store import quotas as Q
from portico.store import stores as ST
from portico.store.db import Database
from portico.store.schema import stores


def test_iso_durations_of_renewal_periods() -> None:
    assert [iso_duration(s) for s in (0, 1, 60, 3600, 86400, 90061, 30 * 86400)] == [
        "PT0S",
        "PT1S",
        "PT1M",
        "PT1H",
        "P1D",
        "P1DT1H1M1S",
        "P30D",
    ]


def test_periods_count_from_the_first_period_start() -> None:
    first = instant("2026-01-01T00:00:00Z")
    at = instant("2026-01-03T12:00:00Z")
    p = period_at(86400, first, at)
    assert (p.index, p.key) == (2, "2_P1D")
    assert (p.start, p.end) == (instant("2026-01-03T00:00:00Z"), instant("2026-01-04T00:00:00Z"))
    assert period_at(86400, first, p.end or 0).index == 3  # the end is the next period's start
    assert period_at(3600, first, first - 1).index == -1  # before the first period: the one before it
    never = period_at(0, first, at)
    assert (never.key, never.start, never.end) == ("0_PT0S", first, None)
    assert instant(None) == instant("garbage") == datetime(1, 1, 1, tzinfo=UTC).timestamp()
    assert instant("2026-01-01T00:00:00") == first  # no zone: UTC


def test_a_ledger_counts_pending_and_in_flight_until_the_table_answers() -> None:
    ledger = QuotaLedger()
    woken: list[bool] = []
    ledger.wake = lambda: woken.append(True)
    p = period_at(3600, 0.0, 7200.5)
    e = ledger.entry(1, "k", p.key, p)
    assert woken == [True] and ledger.entry(1, "k", p.key, p) is e and woken == [True]  # once, when new
    ledger.add(e, calls=2, kb=1.5)
    deltas, reads = ledger.drain()
    assert reads == [] and [(d.counter, d.calls, d.kb) for d in deltas] == [
        (Q.CounterId(1, "k", "2_PT1H"), 2, 1.5)
    ]
    assert deltas[0].period_start == datetime.fromtimestamp(7200, UTC)
    ledger.add(e, calls=1)  # counted while the flush runs
    assert (e.total_calls(), e.total_kb()) == (3, 1.5)
    ledger.unflown(deltas)  # the write failed: everything is pending again
    assert (e.pending_calls, e.flying_calls, e.total_calls()) == (3, 0, 3)
    deltas, _ = ledger.drain()
    ledger.add(e, calls=1)
    ledger.settle(deltas, {deltas[0].counter: (10, 4.0)})  # the table's total has others' counts too
    assert (e.calls, e.kb, e.total_calls(), e.known) == (10, 4.0, 11, True)
    deltas, reads = ledger.drain()
    ledger.settle(deltas, {})  # a store no longer active: its counts are dropped
    assert e.total_calls() == 10
    ledger.drain()  # not used since: not read again
    assert ledger.drain() == ([], [])
    ledger.entry(1, "k", p.key, p)
    assert ledger.drain()[1] == [Q.CounterId(1, "k", "2_PT1H")]  # used: re-read (resets, others)


def test_a_ledger_forgets_idle_and_ended_counters() -> None:
    ledger = QuotaLedger(idle_seconds=3600.0)
    old = period_at(60, 0.0, 120.0)  # ended long ago
    now = period_at(86400, 0.0, datetime.now(UTC).timestamp())
    ledger.entry(1, "a", old.key, old)
    ledger.entry(1, "b", now.key, now)
    _deltas, reads = ledger.drain()  # both new: read
    ledger.refreshed(reads, {})
    ledger.drain()  # unused since: the ended one goes, the current one idles
    assert [k[1] for k in ledger.entries] == ["b"]
    ledger.idle_seconds = 0.0
    ledger.drain()
    assert ledger.entries == {}


def test_long_counter_keys_are_stored_as_prefix_and_digest() -> None:
    short = "k" * Q.MAX_KEY
    assert Q.storage_key(short) == short
    long_a, long_b = "a" * 5000, "a" * 4999 + "b"
    assert len(Q.storage_key(long_a)) <= Q.MAX_KEY and Q.storage_key(long_a) != Q.storage_key(long_b)
    assert Q.storage_key(long_a) == Q.storage_key("a" * 5000)
    assert len(Q.storage_key(long_a, Q.MAX_PERIOD_KEY)) == Q.MAX_PERIOD_KEY


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = Database(f"sqlite+aiosqlite:///{tmp_path / 'portico.db'}")
    await database.start()
    yield database
    await database.close()


async def _store(db: Database) -> int:
    async with db.write() as conn:
        return await ST.create_active(conn)


async def test_processes_share_one_counter_through_their_flushes(db: Database) -> None:
    store = await _store(db)
    p = period_at(3600, 0.0, datetime.now(UTC).timestamp())
    ledgers = [QuotaLedger(), QuotaLedger()]
    flushers = [QuotaFlusher(db, ledger) for ledger in ledgers]
    entries = [ledger.entry(store, "client-1", p.key, p) for ledger in ledgers]
    QuotaLedger.add(entries[0], calls=3, kb=2.0)
    QuotaLedger.add(entries[1], calls=4, kb=0.5)
    await flushers[0].flush()
    assert entries[0].total_calls() == 3  # it has not seen the other's yet
    await flushers[1].flush()
    await flushers[0].flush()  # nothing to add: re-reads the total
    assert [(e.total_calls(), e.total_kb()) for e in entries] == [(7, 2.5), (7, 2.5)]
    async with db.read() as conn:
        [row] = await Q.list_current(conn, store, "client-1")
    assert (row.counter.period_key, row.calls, row.kb, row.period_end) == (
        p.key,
        7,
        2.5,
        datetime.fromtimestamp(p.end or 0, UTC),
    )

    # a reset through the management API reaches both at their next flush
    async with db.write() as conn:
        [reset] = await Q.set_values(conn, store, "client-1", None, 0, None)
    assert (reset.calls, reset.kb) == (0, 2.5)
    QuotaLedger.add(entries[1], calls=1)  # counted before the reset, flushed after it: kept
    await flushers[0].flush()
    assert entries[0].total_calls() == 0  # the reset shows at the next flush, without any request
    await flushers[1].flush()
    await flushers[0].flush()
    assert [e.total_calls() for e in entries] == [1, 1]


async def test_only_active_stores_get_counters_and_they_follow_the_store(db: Database) -> None:
    store, staging = await _store(db), await _store(db)
    p = period_at(0, 0.0, 0.0)
    ledger = QuotaLedger()
    flusher = QuotaFlusher(db, ledger)
    QuotaLedger.add(ledger.entry(store, "k", p.key, p), calls=5)
    await flusher.flush()
    async with db.write() as conn:
        await conn.execute(update(stores).where(stores.c.id == staging).values(state=ST.STAGING))
        assert await ST.switch_active(conn, store, staging)  # a restore's switch moves the counters
    async with db.read() as conn:
        assert [c.calls for c in await Q.list_current(conn, staging, "k")] == [5]
        assert await Q.list_current(conn, store, "k") == []
    e = ledger.entry(store, "k", p.key, p)  # a process still counting for the replaced store
    QuotaLedger.add(e, calls=1)
    await flusher.flush()
    async with db.read() as conn:
        assert await Q.list_current(conn, store, "k") == []  # nothing created for a retired store
    async with db.write() as conn:
        await ST.drop(conn, [staging])
        assert await Q.list_current(conn, staging, "k") == []


async def test_a_starting_process_knows_the_counters_before_it_serves(db: Database) -> None:
    store = await _store(db)
    p = period_at(3600, 0.0, datetime.now(UTC).timestamp())
    before = QuotaLedger()
    QuotaLedger.add(before.entry(store, "k", p.key, p), calls=4, kb=1.0)
    await QuotaFlusher(db, before).flush()
    ended = period_at(60, 0.0, 120.0)
    QuotaLedger.add(before.entry(store, "old", ended.key, ended), calls=1)
    await QuotaFlusher(db, before).flush()

    after = QuotaLedger()
    await QuotaFlusher(db, after).preload()
    assert [k for k in after.entries if k[0] == store] == [(store, "k", p.key)]  # current periods only
    e = after.entries[(store, "k", p.key)]
    assert (e.total_calls(), e.total_kb(), e.known, e.period) == (4, 1.0, True, p)
    assert [r for r in after.drain()[1] if r.store_id == store] == []  # not re-read until used
    assert after.entry(store, "k", p.key, p) is e
    assert after.drain()[1] == [Q.CounterId(store, "k", p.key)]


async def test_counters_of_long_ended_periods_are_pruned(db: Database) -> None:
    store = await _store(db)
    ledger = QuotaLedger()
    ended, current = period_at(60, 0.0, 120.0), period_at(0, 0.0, 0.0)
    QuotaLedger.add(ledger.entry(store, "k", ended.key, ended), calls=1)
    QuotaLedger.add(ledger.entry(store, "k", current.key, current), calls=1)
    await QuotaFlusher(db, ledger).flush()
    async with db.write() as conn:
        assert await Q.prune(conn, datetime.now(UTC)) == 1  # the period that never ends stays
        assert [c.counter.period_key for c in await Q.list_current(conn, store, "k")] == ["0_PT0S"]


async def test_a_flush_writes_many_counters_in_a_few_statements(db: Database) -> None:
    store = await _store(db)
    p = period_at(3600, 0.0, datetime.now(UTC).timestamp())
    ledger = QuotaLedger()
    for i in range(1200):  # more than one statement's worth (500)
        QuotaLedger.add(ledger.entry(store, f"client-{i}", p.key, p), calls=i % 3 + 1)
    await QuotaFlusher(db, ledger).flush()
    assert all(
        e.known and e.total_calls() == int(k[1].split("-")[1]) % 3 + 1 for k, e in ledger.entries.items()
    )
    async with db.read() as conn:
        got = await Q.read(conn, [Q.CounterId(store, f"client-{i}", p.key) for i in range(1200)])
    assert sum(calls for calls, _kb in got.values()) == sum(i % 3 + 1 for i in range(1200))
