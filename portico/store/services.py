"""Resource groups, services and their stores: the SQL behind the ARM top-level resources."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import bindparam, delete, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from portico.names import fold_name
from portico.secrets_box import SecretBox
from portico.store import sealing
from portico.store import stores as ST
from portico.store.entities import Row, new_etag
from portico.store.schema import deleted_services, entities, resource_groups, services


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class ResourceGroup:
    subscription_id: str
    name: str
    location: str
    tags: dict[str, str]


@dataclass(frozen=True, kw_only=True)
class ServiceFacts:
    """What a live service and a soft-deleted one both record."""

    subscription_id: str
    resource_group: str  # as the group spells its name
    name: str
    location: str
    sku_name: str
    sku_capacity: int
    properties: dict[str, Any]
    identity: dict[str, Any] | None
    tags: dict[str, str]
    created_at: datetime

    @property
    def arm_id(self) -> str:
        return (
            f"/subscriptions/{self.subscription_id}/resourceGroups/{self.resource_group}"
            f"/providers/Microsoft.ApiManagement/service/{self.name}"
        )

    def facts(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(ServiceFacts)}


@dataclass(frozen=True, kw_only=True)
class Service(ServiceFacts):
    id: int
    etag: str
    active_store_id: int
    busy: str | None


def _group_is(subscription_id: str, name: str) -> Any:
    """The resource group `name` of a subscription, in any case (its key column)."""
    rg = resource_groups.c
    return (rg.subscription_id == subscription_id) & (rg.name_key == fold_name(name))


# A service's resource group (which spells the group's name as the caller created it).
_GROUP_OF_SERVICE = (resource_groups.c.subscription_id == services.c.subscription_id) & (
    resource_groups.c.name_key == services.c.resource_group_key
)


async def get_group(
    conn: AsyncConnection, subscription_id: str, name: str, *, lock: bool = False
) -> ResourceGroup | None:
    """`lock`: hold the group's row until the transaction ends (PostgreSQL; SQLite writers are serial)."""
    q = select(resource_groups).where(_group_is(subscription_id, name))
    r = (await conn.execute(q.with_for_update() if lock else q)).first()
    return ResourceGroup(r.subscription_id, r.name, r.location, r.tags or {}) if r else None


async def list_groups(conn: AsyncConnection, subscription_id: str) -> list[ResourceGroup]:
    rg = resource_groups.c
    rows = (
        await conn.execute(
            select(resource_groups).where(rg.subscription_id == subscription_id).order_by(rg.name_key)
        )
    ).all()
    return [ResourceGroup(r.subscription_id, r.name, r.location, r.tags or {}) for r in rows]


async def group_subscriptions(conn: AsyncConnection) -> list[str]:
    """The subscription ids that hold resource groups."""
    rg = resource_groups.c
    return list((await conn.execute(select(rg.subscription_id).distinct())).scalars())


async def put_group(
    conn: AsyncConnection, subscription_id: str, name: str, location: str, tags: dict[str, str]
) -> bool:
    """Create or update; returns True when created."""
    res = await conn.execute(
        update(resource_groups).where(_group_is(subscription_id, name)).values(tags=tags)
    )
    if res.rowcount:
        return False
    values = dict(
        subscription_id=subscription_id,
        name_key=fold_name(name),
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
                update(resource_groups).where(_group_is(subscription_id, name)).values(tags=tags)
            )
            return False
        return True
    await conn.execute(insert(resource_groups).values(**values))
    return True


async def delete_group(conn: AsyncConnection, subscription_id: str, name: str) -> bool:
    res = await conn.execute(delete(resource_groups).where(_group_is(subscription_id, name)))
    return bool(res.rowcount)


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _facts_of(r: Any, resource_group: str, box: SecretBox | None) -> dict[str, Any]:
    """The `ServiceFacts` fields of a `services` or `deleted_services` row (properties opened)."""
    return dict(
        subscription_id=r.subscription_id,
        resource_group=resource_group,
        name=r.name,
        location=r.location,
        sku_name=r.sku_name,
        sku_capacity=r.sku_capacity,
        properties=sealing.open_service(box, r.name, r.properties or {}),
        identity=r.identity,
        tags=r.tags or {},
        created_at=_aware(r.created_at),
    )


def _service(r: Any, group_name: str | None, box: SecretBox | None) -> Service:
    return Service(
        **_facts_of(r, group_name or r.resource_group_key, box),
        id=r.id,
        etag=r.etag,
        active_store_id=r.active_store_id,
        busy=r.busy,
    )


def _with_group_name() -> Any:
    return select(services, resource_groups.c.name.label("group_name")).join(
        resource_groups, _GROUP_OF_SERVICE
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
        services.join(resource_groups, _GROUP_OF_SERVICE).outerjoin(
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
    return {"q_sub": subscription_id, "q_group": fold_name(group), "q_name": fold_name(name)}


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
    return _service(r, r.group_name, sealing.box_of(conn)) if r else None


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
    svc = _service(r, r.group_name, sealing.box_of(conn))
    if r.entity_etag is None:
        return svc, None
    data = sealing.open_fields(sealing.box_of(conn), kind, parent, entity, orjson.loads(r.entity_data))
    return svc, Row(kind, parent, entity, r.entity_display_name, r.entity_etag, data)


async def get_service_by_id(conn: AsyncConnection, service_id: int, *, lock: bool = False) -> Service | None:
    """`lock=True` (in a write transaction) holds the row exclusively until commit: the restore's
    switch and the recovery of an orphaned restore serialise on it."""
    q = _with_group_name().where(services.c.id == service_id)
    if lock:
        q = q.with_for_update(of=services)
    r = (await conn.execute(q)).first()
    return _service(r, r.group_name, sealing.box_of(conn)) if r else None


async def name_taken(conn: AsyncConnection, name: str) -> bool:
    """True while a service, or a soft-deleted one not yet past its purge date, holds the name."""
    r = (await conn.execute(select(services.c.id).where(services.c.name_key == fold_name(name)))).first()
    if r is not None:
        return True
    d = deleted_services.c
    q = select(d.name_key).where(d.name_key == fold_name(name), d.purge_at > utcnow())
    return (await conn.execute(q)).first() is not None


async def list_services(
    conn: AsyncConnection, subscription_id: str, group: str | None = None
) -> list[Service]:
    s = services.c
    q = _with_group_name().where(s.subscription_id == subscription_id)
    if group is not None:
        q = q.where(s.resource_group_key == fold_name(group))
    rows = (await conn.execute(q.order_by(s.name_key))).all()
    box = sealing.box_of(conn)
    return [_service(r, r.group_name, box) for r in rows]


async def list_all_services(conn: AsyncConnection) -> list[Service]:
    rows = (await conn.execute(_with_group_name().order_by(services.c.id))).all()
    box = sealing.box_of(conn)
    return [_service(r, r.group_name, box) for r in rows]


async def create_service(
    conn: AsyncConnection, *, subscription_id: str, group: str, name: str, values: dict[str, Any]
) -> int:
    now = utcnow()
    store_id = await ST.create_active(conn)
    service_id = (
        await conn.execute(
            insert(services)
            .values(
                subscription_id=subscription_id,
                resource_group_key=fold_name(group),
                name_key=fold_name(name),
                name=name,
                etag=new_etag(),
                created_at=now,
                active_store_id=store_id,
                busy=None,
                **_sealed(conn, name, values),
            )
            .returning(services.c.id)
        )
    ).scalar_one()
    await ST.assign(conn, store_id, int(service_id))
    return int(service_id)


def _sealed(conn: AsyncConnection, name: str, values: dict[str, Any]) -> dict[str, Any]:
    """`values` of a service row with the certificates of its properties sealed."""
    if "properties" not in values:
        return values
    return {**values, "properties": sealing.seal_service(sealing.box_of(conn), name, values["properties"])}


async def update_service(conn: AsyncConnection, service_id: int, values: dict[str, Any]) -> str:
    etag = new_etag()
    if "properties" in values:
        q = select(services.c.name).where(services.c.id == service_id)
        name = (await conn.execute(q)).scalar_one_or_none()
        values = _sealed(conn, name or "", values)
    await conn.execute(update(services).where(services.c.id == service_id).values(etag=etag, **values))
    return etag


async def delete_service(conn: AsyncConnection, service_id: int) -> None:
    """Remove the service; its stores are retired and their rows deleted."""
    await ST.delete_of_service(conn, service_id)
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


# --- soft-deleted services ------------------------------------------------------------------------

# ARM keeps a deleted API Management service this long before purging it.
SOFT_DELETE_RETENTION = timedelta(hours=48)


@dataclass(frozen=True, kw_only=True)
class DeletedService(ServiceFacts):
    deleted_at: datetime
    purge_at: datetime
    store_id: int


def _deleted(r: Any, box: SecretBox | None) -> DeletedService:
    return DeletedService(
        **_facts_of(r, r.resource_group, box),
        deleted_at=_aware(r.deleted_at),
        purge_at=_aware(r.purge_at),
        store_id=r.store_id,
    )


async def soft_delete_service(conn: AsyncConnection, svc: Service) -> DeletedService:
    """Move the service to `deleted_services`, keeping its active store (state "deleted") for a
    restore; its other stores (retired generations) go now. The gateway stops serving it at once:
    it serves services joined to their active store."""
    now = utcnow()
    await ST.delete_of_service(conn, svc.id, keep=svc.active_store_id)
    await ST.mark_deleted(conn, svc.active_store_id)
    await conn.execute(delete(services).where(services.c.id == svc.id))
    await purge_deleted(conn, svc.name)  # one past its purge date may still hold the name
    deleted = DeletedService(
        **svc.facts(),
        deleted_at=now,
        purge_at=now + SOFT_DELETE_RETENTION,
        store_id=svc.active_store_id,
    )
    row = _sealed(conn, svc.name, dataclasses.asdict(deleted))
    await conn.execute(insert(deleted_services).values(name_key=fold_name(svc.name), **row))
    return deleted


async def list_deleted(conn: AsyncConnection, subscription_id: str) -> list[DeletedService]:
    d = deleted_services.c
    q = (
        select(deleted_services)
        .where(d.subscription_id == subscription_id, d.purge_at > utcnow())
        .order_by(d.name_key)
    )
    box = sealing.box_of(conn)
    return [_deleted(r, box) for r in (await conn.execute(q)).all()]


async def get_deleted(conn: AsyncConnection, name: str) -> DeletedService | None:
    """The soft-deleted service of this name (any subscription), unless past its purge date."""
    d = deleted_services.c
    q = select(deleted_services).where(d.name_key == fold_name(name), d.purge_at > utcnow())
    r = (await conn.execute(q)).first()
    return _deleted(r, sealing.box_of(conn)) if r else None


async def purge_deleted(conn: AsyncConnection, name: str) -> bool:
    """Remove a soft-deleted service and its store for good (also one past its purge date)."""
    d = deleted_services.c
    r = (await conn.execute(select(d.store_id).where(d.name_key == fold_name(name)))).first()
    if r is None:
        return False
    await ST.drop(conn, [r.store_id])
    await conn.execute(delete(deleted_services).where(d.name_key == fold_name(name)))
    return True


async def purge_expired(conn: AsyncConnection) -> int:
    d = deleted_services.c
    names = [r.name_key for r in (await conn.execute(select(d.name_key).where(d.purge_at <= utcnow()))).all()]
    for name in names:
        await purge_deleted(conn, name)
    return len(names)


async def undelete_service(conn: AsyncConnection, deleted: DeletedService) -> int:
    """Bring a soft-deleted service back with its configuration (its kept store becomes active)."""
    service_id = (
        await conn.execute(
            insert(services)
            .values(
                subscription_id=deleted.subscription_id,
                resource_group_key=fold_name(deleted.resource_group),
                name_key=fold_name(deleted.name),
                name=deleted.name,
                location=deleted.location,
                sku_name=deleted.sku_name,
                sku_capacity=deleted.sku_capacity,
                properties=sealing.seal_service(sealing.box_of(conn), deleted.name, deleted.properties),
                identity=deleted.identity,
                tags=deleted.tags,
                etag=new_etag(),
                created_at=deleted.created_at,
                active_store_id=deleted.store_id,
                busy=None,
            )
            .returning(services.c.id)
        )
    ).scalar_one()
    await ST.reactivate(conn, deleted.store_id, int(service_id))
    await conn.execute(delete(deleted_services).where(deleted_services.c.name_key == fold_name(deleted.name)))
    return int(service_id)
