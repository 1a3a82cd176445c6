"""The `deployments` table: one row per template deployment name in a resource group."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from portico.names import fold_name
from portico.store.schema import deployments as T

ACTIVE_STATES = ("Accepted", "Running")


@dataclass
class DeploymentRow:
    subscription_id: str
    group_key: str
    name: str
    state: str
    run_id: str
    node: str
    cancel_requested: bool
    body: dict[str, Any]
    template: dict[str, Any]
    operations: list[dict[str, Any]]
    created_at: datetime
    updated_at: datetime


def _row(r: Any) -> DeploymentRow:
    return DeploymentRow(
        subscription_id=r.subscription_id,
        group_key=r.group_key,
        name=r.name,
        state=r.state,
        run_id=r.run_id,
        node=r.node,
        cancel_requested=bool(r.cancel_requested),
        body=r.body,
        template=r.template,
        operations=r.operations,
        created_at=r.created_at,
        updated_at=r.updated_at,
    )


def _key(sub: str, group: str, name: str) -> Any:
    return (
        (T.c.subscription_id == sub) & (T.c.group_key == fold_name(group)) & (T.c.name_key == fold_name(name))
    )


async def get(conn: AsyncConnection, sub: str, group: str, name: str) -> DeploymentRow | None:
    r = (await conn.execute(select(T).where(_key(sub, group, name)))).first()
    return _row(r) if r is not None else None


async def list_in_group(conn: AsyncConnection, sub: str, group: str) -> list[DeploymentRow]:
    rows = await conn.execute(
        select(T)
        .where((T.c.subscription_id == sub) & (T.c.group_key == fold_name(group)))
        .order_by(T.c.name_key)
    )
    return [_row(r) for r in rows]


async def active_in_group(conn: AsyncConnection, sub: str, group: str) -> DeploymentRow | None:
    r = (
        await conn.execute(
            select(T).where(
                (T.c.subscription_id == sub)
                & (T.c.group_key == fold_name(group))
                & T.c.state.in_(ACTIVE_STATES)
            )
        )
    ).first()
    return _row(r) if r is not None else None


async def start(
    conn: AsyncConnection,
    sub: str,
    group: str,
    name: str,
    *,
    run_id: str,
    node: str,
    body: dict[str, Any],
    template: dict[str, Any],
) -> None:
    """Create or replace the row for a new run (a deployment name is reused by redeploying)."""
    now = datetime.now(UTC)
    await conn.execute(delete(T).where(_key(sub, group, name)))
    await conn.execute(
        insert(T).values(
            subscription_id=sub,
            group_key=fold_name(group),
            name_key=fold_name(name),
            name=name,
            state="Accepted",
            run_id=run_id,
            node=node,
            cancel_requested=False,
            body=body,
            template=template,
            operations=[],
            created_at=now,
            updated_at=now,
        )
    )


async def save(
    conn: AsyncConnection,
    sub: str,
    group: str,
    name: str,
    run_id: str,
    *,
    state: str,
    body: dict[str, Any],
    operations: list[dict[str, Any]],
) -> None:
    """Record a run's progress; a row since replaced by another run is left alone."""
    await conn.execute(
        update(T)
        .where(_key(sub, group, name) & (T.c.run_id == run_id))
        .values(state=state, body=body, operations=operations, updated_at=datetime.now(UTC))
    )


async def request_cancel(conn: AsyncConnection, sub: str, group: str, name: str) -> bool:
    result = await conn.execute(
        update(T).where(_key(sub, group, name) & T.c.state.in_(ACTIVE_STATES)).values(cancel_requested=True)
    )
    return bool(result.rowcount)


async def cancel_requested(conn: AsyncConnection, sub: str, group: str, name: str, run_id: str) -> bool:
    r = (
        await conn.execute(
            select(T.c.cancel_requested).where(_key(sub, group, name) & (T.c.run_id == run_id))
        )
    ).first()
    return bool(r is not None and r[0])


async def remove(conn: AsyncConnection, sub: str, group: str, name: str) -> bool:
    result = await conn.execute(delete(T).where(_key(sub, group, name)))
    return bool(result.rowcount)


async def remove_group(conn: AsyncConnection, sub: str, group: str) -> None:
    await conn.execute(delete(T).where((T.c.subscription_id == sub) & (T.c.group_key == fold_name(group))))


async def interrupted(conn: AsyncConnection, node: str) -> list[DeploymentRow]:
    """Runs this node had in progress when it stopped."""
    rows = await conn.execute(select(T).where((T.c.node == node) & T.c.state.in_(ACTIVE_STATES)))
    return [_row(r) for r in rows]
