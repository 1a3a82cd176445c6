"""Quota counters (the `quota_counters` table): every read and write of it goes through this module.

A row is what the gateway's `quota` / `quota-by-key` policies counted for one counter key in one
period of one store: calls and kilobytes. Gateway processes add their deltas (`add`, one upsert per
counter, creating the row on first use) and read the totals back (`read`); the management API lists
(`list_current`) and sets (`set_values`) them. A row is only ever created for an active store, so a
gateway flushing late for a store a restore replaced leaves nothing behind; the rows of a store go
with it (`delete_of_stores`) and follow a restore's switch to the new store (`move`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import and_, delete, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.elements import ColumnElement

from portico.store.schema import quota_counters, stores

_C = quota_counters.c
# Longer keys are stored as a prefix and a digest (storage_key): both fit PostgreSQL's index entry
# limit even in 4-byte characters.
MAX_KEY = 400
MAX_PERIOD_KEY = 200
_ACTIVE = "active"  # stores.ACTIVE (stores.py imports this module)


def storage_key(key: str, limit: int = MAX_KEY) -> str:
    """The stored form of a counter (or period) key: itself, or when longer than `limit` characters
    (a whole token used as a key, say) its beginning, '~' and a digest of the whole key, so the
    management API finds it by the same key the policy computed."""
    if len(key) <= limit:
        return key
    digest = hashlib.blake2b(key.encode("utf-8", "surrogatepass"), digest_size=24).hexdigest()
    return f"{key[: limit - 49]}~{digest}"


@dataclass(frozen=True, slots=True)
class CounterId:
    """Which counter: store, (stored) counter key, period key."""

    store_id: int
    counter_key: str
    period_key: str


@dataclass(frozen=True, slots=True)
class Delta:
    """What a gateway process counted for one counter since its last flush."""

    counter: CounterId
    period_start: datetime
    period_end: datetime | None
    calls: int
    kb: float


@dataclass(frozen=True, slots=True)
class Counter:
    counter: CounterId
    period_start: datetime
    period_end: datetime | None
    calls: int
    kb: float


def _aware(moment: datetime | None) -> datetime | None:
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)  # SQLite gives naive datetimes back


def _counter(r: Any) -> Counter:
    start = _aware(r.period_start)
    assert start is not None
    return Counter(
        CounterId(int(r.store_id), str(r.counter_key), str(r.period_key)),
        start,
        _aware(r.period_end),
        int(r.calls),
        float(r.kb),
    )


async def add(
    conn: AsyncConnection, deltas: Sequence[Delta], chunk: int = 500
) -> dict[CounterId, tuple[int, float]]:
    """Add each delta to its counter (creating the row, if its store is active) and return the new
    totals. A counter of a store that is no longer active is absent from the answer."""
    store_ids = sorted({d.counter.store_id for d in deltas})
    if not store_ids:
        return {}
    # The stores stay active until this transaction ends: a restore's switch (which retires the
    # store and moves its counters) waits for it, so no row lands in a store already moved.
    q = select(stores.c.id).where(stores.c.id.in_(store_ids), stores.c.state == _ACTIVE).order_by(stores.c.id)
    active = {int(r.id) for r in (await conn.execute(q.with_for_update(read=True))).all()}
    now = datetime.now(UTC)
    rows = [
        {
            "store_id": d.counter.store_id,
            "counter_key": d.counter.counter_key,
            "period_key": d.counter.period_key,
            "period_start": d.period_start,
            "period_end": d.period_end,
            "calls": d.calls,
            "kb": d.kb,
            "updated_at": now,
        }
        # in key order (code point order, as `_lock`): two processes flushing the same counters,
        # or a flush and a reset, lock rows in the same order (no deadlock on PostgreSQL)
        for d in sorted(
            deltas, key=lambda d: (d.counter.store_id, d.counter.counter_key, d.counter.period_key)
        )
        if d.counter.store_id in active
    ]
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    out: dict[CounterId, tuple[int, float]] = {}
    for i in range(0, len(rows), chunk):
        stmt = dialect.insert(quota_counters).values(rows[i : i + chunk])
        stmt = stmt.on_conflict_do_update(
            index_elements=[_C.store_id, _C.counter_key, _C.period_key],
            set_={
                "calls": _C.calls + stmt.excluded.calls,
                "kb": _C.kb + stmt.excluded.kb,
                "updated_at": stmt.excluded.updated_at,
            },
        ).returning(_C.store_id, _C.counter_key, _C.period_key, _C.calls, _C.kb)
        for r in (await conn.execute(stmt)).all():
            out[CounterId(int(r.store_id), r.counter_key, r.period_key)] = (int(r.calls), float(r.kb))
    return out


def _matching(ids: Iterable[CounterId]) -> ColumnElement[bool]:
    by_store: dict[tuple[int, str], list[str]] = {}
    for i in ids:
        by_store.setdefault((i.store_id, i.counter_key), []).append(i.period_key)
    return or_(
        *(
            and_(_C.store_id == store, _C.counter_key == key, _C.period_key.in_(periods))
            for (store, key), periods in by_store.items()
        )
    )


async def read(
    conn: AsyncConnection, ids: Sequence[CounterId], chunk: int = 200
) -> dict[CounterId, tuple[int, float]]:
    """The totals of these counters; one that has no row is absent."""
    out: dict[CounterId, tuple[int, float]] = {}
    for i in range(0, len(ids), chunk):
        part = ids[i : i + chunk]
        q = select(_C.store_id, _C.counter_key, _C.period_key, _C.calls, _C.kb).where(_matching(part))
        for r in (await conn.execute(q)).all():
            out[CounterId(int(r.store_id), r.counter_key, r.period_key)] = (int(r.calls), float(r.kb))
    return out


def _current(now: datetime) -> ColumnElement[bool]:
    return or_(_C.period_end.is_(None), _C.period_end > now)


async def list_current(
    conn: AsyncConnection, store_id: int, counter_key: str, period_key: str | None = None
) -> list[Counter]:
    """The counters of a key whose period has not ended (one period's, with `period_key`), ordered
    by period key."""
    q = (
        select(quota_counters)
        .where(_C.store_id == store_id, _C.counter_key == storage_key(counter_key))
        .where(_current(datetime.now(UTC)))
        .order_by(_C.period_key)
    )
    if period_key is not None:
        q = q.where(_C.period_key == period_key)
    return [_counter(r) for r in (await conn.execute(q)).all()]


async def _lock(conn: AsyncConnection, *where: Any) -> None:
    """On PostgreSQL, lock the rows `where` selects in the order `add` locks rows (code point
    order, which is the "C" collation's), so a statement changing many rows never deadlocks with
    a flush. SQLite has one writer at a time."""
    if conn.dialect.name == "postgresql":
        order = (_C.store_id, _C.counter_key.collate("C"), _C.period_key.collate("C"))
        await conn.execute(select(_C.store_id).where(*where).order_by(*order).with_for_update())


async def set_values(
    conn: AsyncConnection,
    store_id: int,
    counter_key: str,
    period_key: str | None,
    calls: int | None,
    kb: float | None,
) -> list[Counter]:
    """Set the current counters of a key (one period's, with `period_key`) to these values (None:
    unchanged); the counters as they are now. Gateways see the change at their next flush."""
    values: dict[str, object] = {"updated_at": datetime.now(UTC)}
    if calls is not None:
        values["calls"] = calls
    if kb is not None:
        values["kb"] = kb
    where: list[ColumnElement[bool]] = [
        _C.store_id == store_id,
        _C.counter_key == storage_key(counter_key),
        _current(datetime.now(UTC)),
    ]
    if period_key is not None:
        where.append(_C.period_key == period_key)
    await _lock(conn, *where)
    await conn.execute(update(quota_counters).where(*where).values(**values))
    return await list_current(conn, store_id, counter_key, period_key)


async def current_of_active_stores(conn: AsyncConnection, limit: int) -> list[Counter]:
    """The counters of active stores whose period has not ended, the most recently counted first
    (at most `limit`): what a starting gateway process needs to know."""
    q = (
        select(quota_counters)
        .join(stores, stores.c.id == _C.store_id)
        .where(stores.c.state == _ACTIVE)
        .where(_current(datetime.now(UTC)))
        .order_by(_C.updated_at.desc())
        .limit(limit)
    )
    return [_counter(r) for r in (await conn.execute(q)).all()]


async def delete_of_stores(conn: AsyncConnection, store_ids: Sequence[int]) -> None:
    if store_ids:
        await conn.execute(delete(quota_counters).where(_C.store_id.in_(store_ids)))


async def move(conn: AsyncConnection, from_store: int, to_store: int) -> None:
    """A restore's switch: the counters stay with the service, in its new active store."""
    await _lock(conn, _C.store_id == from_store)
    await conn.execute(delete(quota_counters).where(_C.store_id == to_store))
    await conn.execute(update(quota_counters).where(_C.store_id == from_store).values(store_id=to_store))


async def prune(conn: AsyncConnection, ended_before: datetime) -> int:
    """Delete counters whose period ended before `ended_before`; how many."""
    res = await conn.execute(delete(quota_counters).where(_C.period_end < ended_before))
    return int(res.rowcount or 0)
