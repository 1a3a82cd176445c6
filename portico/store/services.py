"""Resource groups, services and their stores: the SQL behind the ARM top-level resources."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import bindparam, delete, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from portico.store.entities import Row, new_etag
from portico.store.schema import entities, resource_groups, services, stores


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class ResourceGroup:
    subscription_id: str
    name: str
    location: str
    tags: dict[str, str]


@dataclass(frozen=True)
class Service:
    id: int
    subscription_id: str
    resource_group: str  # as the group spells its name
    name: str
    location: str
    sku_name: str
    sku_capacity: int
    properties: dict[str, Any]
    identity: dict[str, Any] | None
    tags: dict[str, str]
    etag: str
    created_at: datetime
    active_store_id: int
    busy: str | None

    @property
    def arm_id(self) -> str:
        return (
            f"/subscriptions/{self.subscription_id}/resourceGroups/{self.resource_group}"
            f"/providers/Microsoft.ApiManagement/service/{self.name}"
        )


async def get_group(conn: AsyncConnection, subscription_id: str, name: str) -> ResourceGroup | None:
    rg = resource_groups.c
    r = (
        await conn.execute(
            select(resource_groups).where(rg.subscription_id == subscription_id, rg.name_key == name.lower())
        )
    ).first()
    return ResourceGroup(r.subscription_id, r.name, r.location, r.tags or {}) if r else None


async def list_groups(conn: AsyncConnection, subscription_id: str) -> list[ResourceGroup]:
    rg = resource_groups.c
    rows = (
        await conn.execute(
            select(resource_groups).where(rg.subscription_id == subscription_id).order_by(rg.name_key)
        )
    ).all()
    return [ResourceGroup(r.subscription_id, r.name, r.location, r.tags or {}) for r in rows]


async def put_group(
    conn: AsyncConnection, subscription_id: str, name: str, location: str, tags: dict[str, str]
) -> bool:
    """Create or update; returns True when created."""
    rg = resource_groups.c
    res = await conn.execute(
        update(resource_groups)
        .where(rg.subscription_id == subscription_id, rg.name_key == name.lower())
        .values(tags=tags)
    )
    if res.rowcount:
        return False
    values = dict(
        subscription_id=subscription_id,
        name_key=name.lower(),
        name=name,
        location=location,
        tags=tags,
        created_at=utcnow(),
    )
    if conn.dialect.name == "postgresql":
        # A concurrent PUT of the same new group: the later one updates instead of failing on the key.
        res = await conn.execute(pg_insert(resource_groups).values(**values).on_conflict_do_nothing())
        if not res.rowcount:
            await conn.execute(
                update(resource_groups)
                .where(rg.subscription_id == subscription_id, rg.name_key == name.lower())
                .values(tags=tags)
            )
            return False
        return True
    await conn.execute(insert(resource_groups).values(**values))
    return True


async def delete_group(conn: AsyncConnection, subscription_id: str, name: str) -> bool:
    rg = resource_groups.c
    res = await conn.execute(
        delete(resource_groups).where(rg.subscription_id == subscription_id, rg.name_key == name.lower())
    )
    return bool(res.rowcount)


def _service(r: Any, group_name: str | None = None) -> Service:
    return Service(
        id=r.id,
        subscription_id=r.subscription_id,
        resource_group=group_name or r.resource_group_key,
        name=r.name,
        location=r.location,
        sku_name=r.sku_name,
        sku_capacity=r.sku_capacity,
        properties=r.properties or {},
        identity=r.identity,
        tags=r.tags or {},
        etag=r.etag,
        created_at=r.created_at if r.created_at.tzinfo else r.created_at.replace(tzinfo=UTC),
        active_store_id=r.active_store_id,
        busy=r.busy,
    )


def _with_group_name() -> Any:
    s, rg = services.c, resource_groups.c
    return select(services, rg.name.label("group_name")).join(
        resource_groups, (rg.subscription_id == s.subscription_id) & (rg.name_key == s.resource_group_key)
    )


# The per-request look-up of a service, built once (see portico.store.entities).
_SVC_WHERE = (
    (services.c.subscription_id == bindparam("q_sub"))
    & (services.c.resource_group_key == bindparam("q_group"))
    & (services.c.name_key == bindparam("q_name"))
)
_GET_SERVICE = _with_group_name().where(_SVC_WHERE)
_GET_SERVICE_SHARE = _GET_SERVICE.with_for_update(read=True, of=services)
_GET_SERVICE_UPDATE = _GET_SERVICE.with_for_update(of=services)
_ec = entities.c
_GET_SERVICE_AND_ENTITY = (
    select(
        services,
        resource_groups.c.name.label("group_name"),
        _ec.etag.label("entity_etag"),
        _ec.display_name.label("entity_display_name"),
        _ec.data.label("entity_data"),
    )
    .select_from(
        services.join(
            resource_groups,
            (resource_groups.c.subscription_id == services.c.subscription_id)
            & (resource_groups.c.name_key == services.c.resource_group_key),
        ).outerjoin(
            entities,
            (_ec.store_id == services.c.active_store_id)
            & (_ec.kind == bindparam("q_kind"))
            & (_ec.parent == bindparam("q_parent"))
            & (_ec.name == bindparam("q_entity")),
        )
    )
    .where(_SVC_WHERE)
)


def _svc_params(subscription_id: str, group: str, name: str) -> dict[str, Any]:
    return {"q_sub": subscription_id, "q_group": group.lower(), "q_name": name.lower()}


async def get_service(
    conn: AsyncConnection,
    subscription_id: str,
    group: str,
    name: str,
    *,
    lock: bool = False,
    exclusive: bool = False,
) -> Service | None:
    """`lock=True` (inside a write transaction) holds a share lock on the row until commit, so a
    restore or backup that marks the service busy waits for this writer and vice versa.
    `exclusive=True` (for writers of the service row itself: read, merge, update) takes an update
    lock instead, so that two such writers queue rather than lose an update or deadlock."""
    q = _GET_SERVICE_UPDATE if exclusive else _GET_SERVICE_SHARE if lock else _GET_SERVICE
    r = (await conn.execute(q, _svc_params(subscription_id, group, name))).first()
    return _service(r, r.group_name) if r else None


async def get_service_and_entity(
    conn: AsyncConnection, subscription_id: str, group: str, name: str, kind: str, parent: str, entity: str
) -> tuple[Service | None, Row | None]:
    """A service and one entity of its active store in one statement (the GET fast path)."""
    params = {
        **_svc_params(subscription_id, group, name),
        "q_kind": kind,
        "q_parent": parent,
        "q_entity": entity,
    }
    r = (await conn.execute(_GET_SERVICE_AND_ENTITY, params)).first()
    if r is None:
        return None, None
    svc = _service(r, r.group_name)
    if r.entity_etag is None:
        return svc, None
    return svc, Row(kind, parent, entity, r.entity_display_name, r.entity_etag, orjson.loads(r.entity_data))


async def get_service_by_id(conn: AsyncConnection, service_id: int, *, lock: bool = False) -> Service | None:
    """`lock=True` (in a write transaction) holds the row exclusively until commit: the restore's
    switch and the recovery of an orphaned restore serialise on it."""
    q = _with_group_name().where(services.c.id == service_id)
    if lock:
        q = q.with_for_update(of=services)
    r = (await conn.execute(q)).first()
    return _service(r, r.group_name) if r else None


async def name_taken(conn: AsyncConnection, name: str) -> bool:
    r = (await conn.execute(select(services.c.id).where(services.c.name_key == name.lower()))).first()
    return r is not None


async def list_services(
    conn: AsyncConnection, subscription_id: str, group: str | None = None
) -> list[Service]:
    s = services.c
    q = _with_group_name().where(s.subscription_id == subscription_id)
    if group is not None:
        q = q.where(s.resource_group_key == group.lower())
    rows = (await conn.execute(q.order_by(s.name_key))).all()
    return [_service(r, r.group_name) for r in rows]


async def list_all_services(conn: AsyncConnection) -> list[Service]:
    rows = (await conn.execute(_with_group_name().order_by(services.c.id))).all()
    return [_service(r, r.group_name) for r in rows]


async def create_service(
    conn: AsyncConnection, *, subscription_id: str, group: str, name: str, values: dict[str, Any]
) -> int:
    now = utcnow()
    store_id = (
        await conn.execute(insert(stores).values(state="active", created_at=now).returning(stores.c.id))
    ).scalar_one()
    service_id = (
        await conn.execute(
            insert(services)
            .values(
                subscription_id=subscription_id,
                resource_group_key=group.lower(),
                name_key=name.lower(),
                name=name,
                etag=new_etag(),
                created_at=now,
                active_store_id=store_id,
                busy=None,
                **values,
            )
            .returning(services.c.id)
        )
    ).scalar_one()
    await conn.execute(update(stores).where(stores.c.id == store_id).values(service_id=service_id))
    return int(service_id)


async def update_service(conn: AsyncConnection, service_id: int, values: dict[str, Any]) -> str:
    etag = new_etag()
    await conn.execute(update(services).where(services.c.id == service_id).values(etag=etag, **values))
    return etag


async def delete_service(conn: AsyncConnection, service_id: int) -> None:
    """Remove the service; its stores are retired and their rows deleted."""
    store_ids = [
        r.id for r in (await conn.execute(select(stores.c.id).where(stores.c.service_id == service_id))).all()
    ]
    if store_ids:
        # Retire first: the gateway's change-log triggers track active stores only, and one
        # change-log bump per deleted row is quadratic within a transaction on PostgreSQL.
        await conn.execute(update(stores).where(stores.c.id.in_(store_ids)).values(state="retired"))
        await conn.execute(delete(entities).where(entities.c.store_id.in_(store_ids)))
        await conn.execute(delete(stores).where(stores.c.id.in_(store_ids)))
    await conn.execute(delete(services).where(services.c.id == service_id))


async def set_busy(
    conn: AsyncConnection, service_id: int, marker: str | None, *, expect: str | None = None
) -> bool:
    """Compare-and-set of the busy marker: True when this caller now owns (or released) it."""
    s = services.c
    res = await conn.execute(
        update(services)
        .where(s.id == service_id, s.busy.is_(None) if expect is None else s.busy == expect)
        .values(busy=marker)
    )
    return bool(res.rowcount)
