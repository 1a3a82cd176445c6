"""Entity rows of a service's store: the only code that writes SQL against `entities`."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import orjson
from sqlalchemy import LargeBinary, and_, bindparam, cast, delete, func, insert, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from portico.names import fold_name
from portico.secret_fields import SECRET_KINDS
from portico.secrets_box import SecretBox
from portico.store import sealing
from portico.store.schema import entities


class RawRow(NamedTuple):
    """A raw row whose JSON the store changed (its secrets opened), in place of the driver's."""

    kind: str
    parent: str
    name: str
    display_name: str | None
    etag: str
    data: Any


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


def _row(r: Any, box: SecretBox | None) -> Row:
    data = orjson.loads(r.data)
    if r.kind in SECRET_KINDS:
        data = sealing.open_fields(box, r.kind, r.parent, r.name, data)
    return Row(r.kind, r.parent, r.name, r.display_name, r.etag, data)


def _blob(box: SecretBox | None, kind: str, parent: str, name: str, data: dict[str, Any]) -> str:
    """A row's stored JSON: its secrets sealed (portico/store/sealing.py)."""
    return orjson.dumps(sealing.seal(box, kind, parent, name, data)).decode()


def _opened(box: SecretBox | None, rows: list[Any]) -> list[Any]:
    """Driver rows (kind, parent, name, display_name, etag, JSON) with their secrets opened,
    in place; the rows of kinds without secrets are left untouched (the backup hot path)."""
    kinds = SECRET_KINDS
    for i, r in enumerate(rows):
        if r[0] in kinds:
            text = sealing.open_json(box, r[0], r[1], r[2], r[5])
            if text is not r[5]:
                rows[i] = (*r[:5], text)
    return rows


def _key(store_id: int, kind: str, parent: str, name: str) -> Any:
    c = entities.c
    return and_(c.store_id == store_id, c.kind == kind, c.parent == parent, c.name == name)


# Statements of the per-request paths, built once: building SQLAlchemy expressions per call costs
# more CPU than SQLite takes to run them.
_c = entities.c
_BOUND_KEY = and_(
    _c.store_id == bindparam("k_store"),
    _c.kind == bindparam("k_kind"),
    _c.parent == bindparam("k_parent"),
    _c.name == bindparam("k_name"),
)
_GET = select(entities).where(_BOUND_KEY)
_GET_LOCKED = _GET.with_for_update()
_EXISTS = select(_c.etag).where(_BOUND_KEY)
_UPDATE = (
    update(entities)
    .where(_BOUND_KEY)
    .values(display_name=bindparam("v_display"), etag=bindparam("v_etag"), data=bindparam("v_data"))
)
_INSERT = insert(entities)
_PG_INSERT = pg_insert(entities).on_conflict_do_nothing()


def _params(store_id: int, kind: str, parent: str, name: str) -> dict[str, Any]:
    return {"k_store": store_id, "k_kind": kind, "k_parent": parent, "k_name": name}


async def get(
    conn: AsyncConnection, store_id: int, kind: str, parent: str, name: str, *, lock: bool = False
) -> Row | None:
    """`lock=True` (in a write transaction) holds the row until commit, so that a writer that checks
    an If-Match ETag and then writes cannot interleave with another one (PostgreSQL; SQLite
    transactions that write are serialised anyway)."""
    res = await conn.execute(_GET_LOCKED if lock else _GET, _params(store_id, kind, parent, name))
    r = res.first()
    return _row(r, sealing.box_of(conn)) if r else None


async def exists(conn: AsyncConnection, store_id: int, kind: str, parent: str, name: str) -> bool:
    res = await conn.execute(_EXISTS, _params(store_id, kind, parent, name))
    return res.first() is not None


async def find_name(conn: AsyncConnection, store_id: int, kind: str, parent: str, name: str) -> str | None:
    """The stored name of the entity `name` designates: ARM names match ignoring case, so an exact
    match, else the one whose name differs only by case (None: no such entity)."""
    if await exists(conn, store_id, kind, parent, name):
        return name
    return await other_case(conn, store_id, kind, parent, name)


async def other_case(conn: AsyncConnection, store_id: int, kind: str, parent: str, name: str) -> str | None:
    """The stored name that equals `name` ignoring case, for a caller whose exact look-up missed
    (on ix_entities_kind_name_key)."""
    c = entities.c
    q = select(c.name).where(
        c.store_id == store_id, c.kind == kind, c.name_key == fold_name(name), c.parent == parent
    )
    found = (await conn.execute(q.limit(1))).first()
    return str(found[0]) if found else None


async def list_children(
    conn: AsyncConnection, store_id: int, kind: str, parent: str, *, offset: int = 0, limit: int | None = None
) -> list[Row]:
    c = entities.c
    q = select(entities).where(c.store_id == store_id, c.kind == kind, c.parent == parent).order_by(c.name)
    if offset:
        q = q.offset(offset)
    if limit is not None:
        q = q.limit(limit)
    box = sealing.box_of(conn)
    return [_row(r, box) for r in (await conn.execute(q)).all()]


async def list_all(conn: AsyncConnection, store_id: int, kind: str) -> list[Row]:
    """Every entity of `kind`, whatever its parent (policies of every scope, diagnostics of every API)."""
    c = entities.c
    q = select(entities).where(c.store_id == store_id, c.kind == kind).order_by(c.parent, c.name)
    box = sealing.box_of(conn)
    return [_row(r, box) for r in (await conn.execute(q)).all()]


async def count_children(conn: AsyncConnection, store_id: int, kind: str, parent: str) -> int:
    c = entities.c
    q = (
        select(func.count())
        .select_from(entities)
        .where(c.store_id == store_id, c.kind == kind, c.parent == parent)
    )
    return int((await conn.execute(q)).scalar_one())


def _named(store_id: int, kinds: Sequence[str], name: str) -> Any:
    """Entities of `kinds` whose name is `name` ignoring case, on ix_entities_kind_name_key. The
    caller keeps the exact matches."""
    c = entities.c
    return select(c.kind, c.parent, c.name).where(
        c.store_id == store_id, c.kind.in_(kinds), c.name_key == fold_name(name)
    )


async def names_by_kind(conn: AsyncConnection, store_id: int, kind: str, name: str) -> list[tuple[str, str]]:
    """(parent, name) of every entity of `kind` named `name`, whatever its parent (link look-ups)."""
    rows = (await conn.execute(_named(store_id, [kind], name))).all()
    return [(r.parent, r.name) for r in rows if r.name == name]


async def put(
    conn: AsyncConnection,
    store_id: int,
    kind: str,
    parent: str,
    name: str,
    display_name: str | None,
    data: dict[str, Any],
    *,
    exists: bool | None = None,
) -> tuple[str, bool]:
    """Insert or replace; returns (new etag, created). `exists` is what the caller already read in
    this transaction (None: unknown), which saves a statement."""
    etag = new_etag()
    blob = _blob(sealing.box_of(conn), kind, parent, name, data)
    key = _params(store_id, kind, parent, name)
    if exists is not False:
        res = await conn.execute(_UPDATE, {**key, "v_display": display_name, "v_etag": etag, "v_data": blob})
        if res.rowcount:
            return etag, False
    values = dict(
        store_id=store_id,
        kind=kind,
        parent=parent,
        name=name,
        name_key=fold_name(name),
        display_name=display_name,
        etag=etag,
        data=blob,
    )
    if conn.dialect.name == "postgresql":
        # Two writers may both have found no row: the second one replaces the first one's instead
        # of failing on the primary key (SQLite writers are serialised, so no race there).
        res = await conn.execute(_PG_INSERT, values)
        if not res.rowcount:
            await conn.execute(_UPDATE, {**key, "v_display": display_name, "v_etag": etag, "v_data": blob})
            return etag, False
        return etag, True
    await conn.execute(_INSERT, values)
    return etag, True


async def put_many(
    conn: AsyncConnection,
    store_id: int,
    kind: str,
    parent: str,
    rows: Sequence[tuple[str, str | None, dict[str, Any]]],
    existing: set[str],
) -> None:
    """Insert or replace many (name, display name, data) children of one parent, each statement
    executed once for all rows (an API import writes a thousand operations); `existing` holds the
    names already stored, read by the caller in this transaction."""
    updates, inserts = [], []
    box = sealing.box_of(conn)
    for name, display, data in rows:
        blob = _blob(box, kind, parent, name, data)
        if name in existing:
            updates.append(
                {
                    **_params(store_id, kind, parent, name),
                    "v_display": display,
                    "v_etag": new_etag(),
                    "v_data": blob,
                }
            )
        else:
            inserts.append(
                dict(
                    store_id=store_id,
                    kind=kind,
                    parent=parent,
                    name=name,
                    display_name=display,
                    etag=new_etag(),
                    data=blob,
                )
            )
    if updates:
        await conn.execute(_UPDATE, updates)
    if inserts:
        await conn.execute(_INSERT, inserts)


async def remove(conn: AsyncConnection, store_id: int, kind: str, parent: str, name: str) -> bool:
    res = await conn.execute(delete(entities).where(_key(store_id, kind, parent, name)))
    return bool(res.rowcount)


async def remove_subtree(conn: AsyncConnection, store_id: int, path: str) -> int:
    """Delete every entity owned (directly or deeper) by the entity at relative `path`."""
    c = entities.c
    like = path.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "/%"
    res = await conn.execute(
        delete(entities).where(
            c.store_id == store_id, or_(c.parent == path, c.parent.like(like, escape="\\"))
        )
    )
    return int(res.rowcount or 0)


async def list_subtree(conn: AsyncConnection, store_id: int, path: str) -> list[Row]:
    """Every entity owned (directly or deeper) by the entity at relative `path` (API revisions
    copy and move them)."""
    c = entities.c
    like = path.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "/%"
    q = select(entities).where(
        c.store_id == store_id, or_(c.parent == path, c.parent.like(like, escape="\\"))
    )
    box = sealing.box_of(conn)
    return [_row(r, box) for r in (await conn.execute(q.order_by(c.parent, c.kind, c.name))).all()]


async def remove_named(conn: AsyncConnection, store_id: int, kinds: Sequence[str], name: str) -> int:
    """Delete links of the given kinds that point at `name` (e.g. productApi rows for a deleted api)."""
    rows = [r for r in (await conn.execute(_named(store_id, kinds, name))).all() if r.name == name]
    for r in rows:
        await conn.execute(delete(entities).where(_key(store_id, r.kind, r.parent, r.name)))
    return len(rows)


async def counts(conn: AsyncConnection, store_id: int) -> dict[str, int]:
    c = entities.c
    q = select(c.kind, func.count()).where(c.store_id == store_id).group_by(c.kind)
    return {k: int(n) for k, n in (await conn.execute(q)).all()}


async def stream_raw(
    conn: AsyncConnection, store_id: int, batch: int = 5000, *, data_as_bytes: bool = False
) -> AsyncIterator[list[Any]]:
    """All rows of a store in key order, raw (data as stored JSON, its secrets opened), in batches.

    Rows have attributes kind, parent, name, display_name, etag, data; with `data_as_bytes` the
    database hands `data` over as UTF-8 bytes, so rows can go to the archive encoder as they are."""
    c = entities.c
    data: Any = c.data
    if data_as_bytes:
        data = cast(c.data, LargeBinary) if conn.dialect.name == "sqlite" else func.convert_to(c.data, "UTF8")
    q = (
        select(c.kind, c.parent, c.name, c.display_name, c.etag, data.label("data"))
        .where(c.store_id == store_id)
        .order_by(c.kind, c.parent, c.name)
    )
    result = await conn.stream(q.execution_options(yield_per=batch))
    box = sealing.box_of(conn)
    async for part in result.partitions(batch):
        rows: list[Any] = list(part)
        for i, r in enumerate(rows):
            if r.kind in SECRET_KINDS:
                text = sealing.open_json(box, r.kind, r.parent, r.name, r.data)
                if text is not r.data:
                    rows[i] = RawRow(r.kind, r.parent, r.name, r.display_name, r.etag, text)
        yield rows


async def stream_tuples(conn: AsyncConnection, store_id: int, batch: int = 5000) -> AsyncIterator[list[Any]]:
    """Like `stream_raw(data_as_bytes=True)` but rows are the driver's own tuples/records
    `(kind, parent, name, display_name, etag, data)`: no per-row objects, for the backup hot path.
    Runs on `conn`'s driver connection, so inside its transaction (the backup's snapshot). Secrets
    are opened: an archive carries them in clear (it has its own encryption), so that it restores
    into a server with another key."""
    # SQLAlchemy begins the transaction (and so the snapshot) lazily, at its first statement: make
    # sure that has happened before reading through the driver.
    await conn.execute(select(1))
    box = sealing.box_of(conn)
    raw = await conn.get_raw_connection()
    driver: Any = raw.driver_connection
    if conn.dialect.name == "sqlite":
        cursor = await driver.execute(
            "SELECT kind, parent, name, display_name, etag, CAST(data AS BLOB) FROM entities"
            " WHERE store_id = ? ORDER BY kind, parent, name",
            (store_id,),
        )
        try:
            # Read ahead: the next batch is fetched (in aiosqlite's thread, outside the GIL) while
            # the caller encodes this one.
            pending = asyncio.ensure_future(cursor.fetchmany(batch))
            try:
                while rows := await pending:
                    pending = asyncio.ensure_future(cursor.fetchmany(batch))
                    yield _opened(box, rows)
            finally:
                if not pending.done():
                    pending.cancel()
                    await asyncio.gather(pending, return_exceptions=True)
        finally:
            await cursor.close()
        return
    cur = await driver.cursor(
        "SELECT kind, parent, name, display_name, etag, convert_to(data, 'UTF8') FROM entities"
        " WHERE store_id = $1 ORDER BY kind, parent, name",
        store_id,
    )
    while rows := await cur.fetch(batch):
        yield _opened(box, rows)


ENTITY_COLUMNS = ("store_id", "kind", "parent", "name", "display_name", "etag", "data")
_INSERTED_COLUMNS = (*ENTITY_COLUMNS, "name_key")


async def bulk_insert(db: Any, rows: list[tuple[Any, ...]]) -> None:
    """Insert rows (tuples in ENTITY_COLUMNS order) in one transaction by the driver's fastest path:
    executemany on SQLite, COPY on PostgreSQL. Used to load a restore's staging store. Each row's
    name key (`fold_name` of its name) is added here, and its secrets are sealed with `db`'s box."""
    box = db.box
    keyed = [
        (*r[:6], sealing.seal_json(box, r[1], r[2], r[3], r[6]), fold_name(r[3]))
        if r[1] in SECRET_KINDS
        else (*r, fold_name(r[3]))
        for r in rows
    ]
    async with db.write() as conn:
        if db.sqlite:
            await conn.exec_driver_sql(
                f"INSERT INTO entities ({', '.join(_INSERTED_COLUMNS)}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                keyed,
            )
            return
        raw = await conn.get_raw_connection()
        driver = raw.driver_connection
        assert driver is not None
        await driver.copy_records_to_table("entities", records=keyed, columns=list(_INSERTED_COLUMNS))
