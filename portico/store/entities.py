"""Entity rows of a service's store: the only code that writes SQL against `entities`."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import and_, delete, func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from portico.store.schema import entities


@dataclass(frozen=True, slots=True)
class Row:
    kind: str
    parent: str
    name: str
    display_name: str | None
    etag: str
    data: dict[str, Any]


def new_etag() -> str:
    return secrets.token_hex(8)


def _row(r: Any) -> Row:
    return Row(r.kind, r.parent, r.name, r.display_name, r.etag, orjson.loads(r.data))


def _key(store_id: int, kind: str, parent: str, name: str) -> Any:
    c = entities.c
    return and_(c.store_id == store_id, c.kind == kind, c.parent == parent, c.name == name)


async def get(conn: AsyncConnection, store_id: int, kind: str, parent: str, name: str) -> Row | None:
    res = await conn.execute(select(entities).where(_key(store_id, kind, parent, name)))
    r = res.first()
    return _row(r) if r else None


async def exists(conn: AsyncConnection, store_id: int, kind: str, parent: str, name: str) -> bool:
    res = await conn.execute(select(entities.c.etag).where(_key(store_id, kind, parent, name)))
    return res.first() is not None


async def list_children(
    conn: AsyncConnection, store_id: int, kind: str, parent: str, *, offset: int = 0, limit: int | None = None
) -> list[Row]:
    c = entities.c
    q = select(entities).where(c.store_id == store_id, c.kind == kind, c.parent == parent).order_by(c.name)
    if offset:
        q = q.offset(offset)
    if limit is not None:
        q = q.limit(limit)
    return [_row(r) for r in (await conn.execute(q)).all()]


async def count_children(conn: AsyncConnection, store_id: int, kind: str, parent: str) -> int:
    c = entities.c
    q = select(func.count()).select_from(entities).where(c.store_id == store_id, c.kind == kind, c.parent == parent)
    return int((await conn.execute(q)).scalar_one())


async def names_by_kind(conn: AsyncConnection, store_id: int, kind: str, name: str) -> list[tuple[str, str]]:
    """(parent, name) of every entity of `kind` named `name`, whatever its parent (link look-ups)."""
    c = entities.c
    q = select(c.parent, c.name).where(c.store_id == store_id, c.kind == kind, c.name == name)
    return [(r.parent, r.name) for r in (await conn.execute(q)).all()]


async def put(
    conn: AsyncConnection, store_id: int, kind: str, parent: str, name: str, display_name: str | None, data: dict[str, Any]
) -> tuple[str, bool]:
    """Insert or replace; returns (new etag, created)."""
    etag = new_etag()
    blob = orjson.dumps(data).decode()
    res = await conn.execute(
        update(entities).where(_key(store_id, kind, parent, name)).values(display_name=display_name, etag=etag, data=blob)
    )
    if res.rowcount:
        return etag, False
    await conn.execute(
        insert(entities).values(
            store_id=store_id, kind=kind, parent=parent, name=name, display_name=display_name, etag=etag, data=blob
        )
    )
    return etag, True


async def remove(conn: AsyncConnection, store_id: int, kind: str, parent: str, name: str) -> bool:
    res = await conn.execute(delete(entities).where(_key(store_id, kind, parent, name)))
    return bool(res.rowcount)


async def remove_subtree(conn: AsyncConnection, store_id: int, path: str) -> int:
    """Delete every entity owned (directly or deeper) by the entity at relative `path`."""
    c = entities.c
    like = path.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "/%"
    res = await conn.execute(
        delete(entities).where(c.store_id == store_id, or_(c.parent == path, c.parent.like(like, escape="\\")))
    )
    return int(res.rowcount or 0)


async def remove_named(conn: AsyncConnection, store_id: int, kinds: Sequence[str], name: str) -> int:
    """Delete links of the given kinds that point at `name` (e.g. productApi rows for a deleted api)."""
    c = entities.c
    res = await conn.execute(delete(entities).where(c.store_id == store_id, c.kind.in_(kinds), c.name == name))
    return int(res.rowcount or 0)


async def counts(conn: AsyncConnection, store_id: int) -> dict[str, int]:
    c = entities.c
    q = select(c.kind, func.count()).where(c.store_id == store_id).group_by(c.kind)
    return {k: int(n) for k, n in (await conn.execute(q)).all()}


async def stream_raw(conn: AsyncConnection, store_id: int, batch: int = 5000) -> AsyncIterator[list[Any]]:
    """All rows of a store in key order, raw (data left as JSON text), in batches. For backups."""
    c = entities.c
    q = (
        select(c.kind, c.parent, c.name, c.display_name, c.etag, c.data)
        .where(c.store_id == store_id)
        .order_by(c.kind, c.parent, c.name)
    )
    result = await conn.stream(q.execution_options(yield_per=batch))
    async for part in result.partitions(batch):
        yield list(part)
