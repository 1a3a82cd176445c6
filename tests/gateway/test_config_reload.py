"""The gateway's configuration store against a real database (SQLite and PostgreSQL), in process:
full loads, incremental changes, and restores — a staging store filled the way a restore fills it,
read ahead by the poller, then switched in (portico/gateway/config/)."""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson
import pytest
from sqlalchemy import insert, select, update

from portico.gateway.config import ConfigStore, ServiceConfig
from portico.gateway.config import loader as C
from portico.gateway.jwks import JwksCache
from portico.gateway.policies.limits import Counters
from portico.store import entities as E
from portico.store import services as S
from portico.store.db import Database
from portico.store.schema import services, stores
from tests.support.postgres import create_database

pytestmark = pytest.mark.slow

DOMAIN = "gw.test"
MakeStore = Callable[[Database], ConfigStore]
_n = itertools.count(1)


@pytest.fixture(params=["sqlite", "postgres"])
async def db(request: pytest.FixtureRequest, tmp_path: Any) -> AsyncIterator[Database]:
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'portico.db'}"
    else:
        url = create_database(request.getfixturevalue("pg_url"), f"gwcfg_{next(_n)}_{id(tmp_path) % 10**6}")
    database = Database(url)
    await database.start()
    yield database
    await database.close()


@pytest.fixture
async def store_of(db: Database) -> AsyncIterator[MakeStore]:
    made: list[ConfigStore] = []

    def make(database: Database) -> ConfigStore:
        made.append(ConfigStore(database, DOMAIN, 0.25, Counters(), JwksCache()))
        return made[-1]

    yield make
    for cs in made:
        await cs.stop()


async def poll(cs: ConfigStore) -> None:
    """One poll, then until the read-ahead tasks it woke (or started) have done their pass."""
    before = {k: s.passes for k, s in cs.staged.items()}
    await cs.poll()
    for _ in range(2000):
        behind = [
            s
            for k, s in cs.staged.items()
            if s.passes <= before.get(k, 0) and not (s.task is not None and s.task.done())
        ]
        if not behind:
            return
        await asyncio.sleep(0.005)
    raise AssertionError("read-ahead tasks did not catch up")


async def new_service(db: Database, name: str) -> tuple[int, int]:
    async with db.write() as conn:
        sid = await S.create_service(
            conn,
            subscription_id="sub",
            group="rg",
            name=name,
            values={
                "location": "westeurope",
                "sku_name": "Developer",
                "sku_capacity": 1,
                "properties": {},
                "identity": None,
                "tags": {},
            },
        )
        store = (
            await conn.execute(select(services.c.active_store_id).where(services.c.id == sid))
        ).scalar_one()
    return sid, int(store)


POLICY = (
    '<policies><inbound><base /><set-header name="x-gen" exists-action="override"><value>{{generation}}</value>'
    "</set-header></inbound><backend><base /></backend><outbound><base /></outbound><on-error><base /></on-error></policies>"
)


def content(store: int, gen: str, subs: int = 40, users: int = 20) -> list[tuple[Any, ...]]:
    """One generation of a service, as entity rows in key order (a backup's order)."""

    def row(kind: str, parent: str, name: str, data: dict[str, Any]) -> tuple[Any, ...]:
        return (store, kind, parent, name, None, f"{gen}-etag", orjson.dumps(data).decode())

    out = [
        row(
            "api", "", "orders", {"path": "orders", "protocols": ["http", "https"], "serviceUrl": "http://b"}
        ),
        row("namedValue", "", "generation", {"displayName": "generation", "value": gen}),
        row("operation", "apis/orders", "get-item", {"method": "GET", "urlTemplate": "/items/{id}"}),
        row("operation", "apis/orders", "post-item", {"method": "POST", "urlTemplate": "/items"}),
        row("operation", "apis/orders", f"only-{gen}", {"method": "GET", "urlTemplate": f"/{gen}/{{x}}"}),
        row("policy", "apis/orders", "policy", {"value": POLICY, "format": "xml"}),
        row(
            "product", "", "gold", {"displayName": "Gold", "state": "published", "subscriptionRequired": True}
        ),
        row("productApi", "products/gold", "orders", {}),
    ]
    for i in range(subs):
        out.append(
            row(
                "subscription",
                "",
                f"sub-{i:04d}",
                {
                    "scope": "/products/gold" if i % 2 else "/apis/orders",
                    "displayName": f"Sub {i}",
                    "ownerId": f"/users/user-{i % users:04d}",
                    "state": "active",
                    "primaryKey": f"{gen}-pk-{i}",
                    "secondaryKey": f"{gen}-sk-{i}",
                },
            )
        )
    for i in range(users):
        out.append(row("user", "", f"user-{i:04d}", {"email": f"user{i}@{gen}.example", "firstName": gen}))
    return sorted(out, key=lambda r: (r[1], r[2], r[3]))


async def begin_staging(db: Database, service_id: int) -> int:
    async with db.write() as conn:
        return int(
            (
                await conn.execute(
                    insert(stores)
                    .values(service_id=service_id, state="staging", operation_id="op", created_at=S.utcnow())
                    .returning(stores.c.id)
                )
            ).scalar_one()
        )


async def serving(db: Database, store_of: MakeStore) -> tuple[int, int, ConfigStore]:
    """Service "svc" at generation "a", loaded by a new ConfigStore: (service id, its store, the
    ConfigStore)."""
    sid, store = await new_service(db, "svc")
    await E.bulk_insert(db, content(store, "a"))
    cs = store_of(db)
    await poll(cs)
    return sid, store, cs


async def restoring(db: Database, cs: ConfigStore, service_id: int, gen: str) -> int:
    """A restore's staging store, filled with generation `gen`, and `cs` having read it ahead."""
    staging = await begin_staging(db, service_id)
    await E.bulk_insert(db, content(staging, gen))
    await poll(cs)
    return staging


async def switch(db: Database, service_id: int, staging: int) -> None:
    """What portico/dr/operations.py `_switch` does to the database, in one transaction."""
    async with db.write() as conn:
        old = (
            await conn.execute(select(services.c.active_store_id).where(services.c.id == service_id))
        ).scalar_one()
        await S.update_service(conn, service_id, {"active_store_id": staging})
        await conn.execute(update(stores).where(stores.c.id == old).values(state="retired"))
        await conn.execute(update(stores).where(stores.c.id == staging).values(state="active"))


def serves(svc: ServiceConfig, gen: str) -> None:
    """`svc` is generation `gen`, complete: routing, policies (named value), keys, users."""
    hit = svc.router.resolve("/orders/items/7", "", [])
    assert hit is not None
    api, rest = hit
    found = api.find_operation("GET", rest, "")
    assert found is not None and found[0].name == "get-item" and found[1] == {"id": "7"}
    assert api.find_operation("GET", f"/{gen}/x", "") is not None
    assert svc.docs["apis/orders"] is not None and not isinstance(svc.docs["apis/orders"], str)
    assert svc.named_values["generation"] == gen
    for i in (0, 1, 39):
        for key in (f"{gen}-pk-{i}", f"{gen}-sk-{i}"):
            sub = svc.subscription_for_key(key)
            assert sub is not None and sub.name == f"sub-{i:04d}" and sub.state == "active"
            assert (sub.scope_kind, sub.scope_id) == (("product", "gold") if i % 2 else ("api", "orders"))
            assert sub.owner == f"user-{i % 20:04d}"
            user = svc.user(sub.owner)
            assert (
                user is not None
                and user["email"] == f"user{i % 20}@{gen}.example"
                and user["_id"] == sub.owner
            )
    assert len(svc.sub_json) == 40 and len(svc.user_json) == 20 and len(svc.keys) == 80
    assert svc.products["gold"].apis == {"orders"} and svc.api_products["orders"][0].name == "gold"


async def test_full_load_and_changes(db: Database, store_of: MakeStore) -> None:
    _sid, store = await new_service(db, "svc")
    await E.bulk_insert(db, content(store, "a"))
    cs = store_of(db)
    await poll(cs)
    svc = cs.lookup_host(f"svc.{DOMAIN}")
    assert svc is not None
    serves(svc, "a")
    assert set(svc.stats) >= {"read_s", "parse_s", "compile_s", "index_s", "total_s"}
    assert svc.subscription_for_key("nope") is None and svc.user("nobody") is None

    # incremental: a regenerated key, a deleted and a new subscription, a changed user, an op
    async with db.write() as conn:
        r = await E.get(conn, store, "subscription", "", "sub-0001")
        assert r is not None
        await E.put(conn, store, "subscription", "", "sub-0001", None, {**r.data, "primaryKey": "fresh"})
        await E.remove(conn, store, "subscription", "", "sub-0002")
        await E.put(
            conn,
            store,
            "subscription",
            "",
            "sub-new",
            None,
            {"scope": "/apis", "state": "active", "primaryKey": "k-new"},
        )
        await E.put(conn, store, "user", "", "user-0003", None, {"email": "changed@example"})
        await E.put(
            conn,
            store,
            "operation",
            "apis/orders",
            "post-item",
            None,
            {"method": "POST", "urlTemplate": "/orders2"},
        )
    get_item = svc.apis["orders"].by_method["GET"][0]
    await poll(cs)
    assert cs.lookup_host(f"svc.{DOMAIN}") is svc  # patched in place, not reloaded
    assert svc.subscription_for_key("a-pk-1") is None
    fresh = svc.subscription_for_key("fresh")
    assert fresh is not None and fresh.name == "sub-0001"
    assert svc.subscription_for_key("a-sk-1") is fresh
    assert svc.subscription_for_key("a-pk-2") is None and svc.subscription_for_key("a-sk-2") is None
    new = svc.subscription_for_key("k-new")
    assert new is not None and new.scope_kind == "all"
    assert svc.user("user-0003") == {"email": "changed@example", "_id": "user-0003"}
    api = svc.apis["orders"]
    assert (
        api.find_operation("POST", "/orders2", "") is not None
        and api.find_operation("POST", "/items", "") is None
    )
    assert get_item in api.by_method["GET"]  # unchanged operations are not recompiled


async def test_restore_is_read_ahead_and_switched_whole(
    db: Database, store_of: MakeStore, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(C, "PRELOAD_ROWS", 7)
    sid, _, cs = await serving(db, store_of)
    old = cs.lookup_host(f"svc.{DOMAIN}")
    assert old is not None

    staging = await begin_staging(db, sid)
    rows = content(staging, "b")
    for i in range(0, len(rows) - 10, 10):  # committed batches in key order, polls in between
        await E.bulk_insert(db, rows[i : i + 10])
        await poll(cs)
        assert cs.lookup_host(f"svc.{DOMAIN}") is old  # nothing of the restore is visible
        serves(old, "a")
    await E.bulk_insert(db, rows[i + 10 :])  # the last batch: left to the switch
    staged = cs.staged[staging]
    compiled = staged.compiled
    assert compiled is not None and len(compiled._op_cache) == 3  # compiled ahead
    assert compiled.router.resolve("/orders/b/1", "", []) is not None
    assert compiled.named_values["generation"] == "b"
    assert 0 < len(staged.sub_json) + len(staged.user_json) < 60  # read ahead, not all of it yet

    await switch(db, sid, staging)
    with caplog.at_level(logging.INFO, logger="portico.gateway"):
        await poll(cs)
    new = cs.lookup_host(f"svc.{DOMAIN}")
    assert new is not None and new is not old and new.store_id == staging
    serves(new, "b")
    serves(old, "a")  # a request still holding the old service sees it whole and unchanged
    assert not cs.staged
    assert any("read ahead" in r.getMessage() for r in caplog.records)
    assert new.router is compiled.router and new.docs is compiled.docs  # adopted, not recompiled

    # the same tables as a full load of the same store
    other = store_of(db)
    await poll(other)
    full = other.lookup_host(f"svc.{DOMAIN}")
    assert full is not None
    assert full.keys == new.keys and full.sub_json == new.sub_json and full.user_json == new.user_json
    assert full.named_values == new.named_values and set(full.apis) == set(new.apis)


async def test_routing_changed_after_it_was_compiled_ahead_is_compiled_again(
    db: Database, store_of: MakeStore
) -> None:
    sid, _, cs = await serving(db, store_of)
    staging = await restoring(db, cs, sid, "b")
    compiled = cs.staged[staging].compiled
    assert compiled is not None
    async with db.write() as conn:  # a named-value override, as a promotion applies one
        await E.put(
            conn, staging, "namedValue", "", "generation", None, {"displayName": "generation", "value": "b2"}
        )
    await switch(db, sid, staging)
    await poll(cs)
    svc = cs.lookup_host(f"svc.{DOMAIN}")
    assert svc is not None and svc.router is not compiled.router
    assert svc.named_values["generation"] == "b2"
    doc = svc.docs["apis/orders"]
    assert doc is not None and doc is not compiled.docs["apis/orders"]  # recompiled with the new value
    ops = {op.name: op for op in svc.apis["orders"].operations}
    assert all(ops[name] is compiled._op_cache[("apis/orders", name)][1] for name in ops)  # reused


async def test_read_ahead_falls_back_when_rows_come_out_of_order(
    db: Database, store_of: MakeStore, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(C, "PRELOAD_ROWS", 5)
    sid, _, cs = await serving(db, store_of)
    staging = await begin_staging(db, sid)
    rows = content(staging, "b")
    await E.bulk_insert(db, rows)
    await poll(cs)
    assert cs.staged[staging].sub_after > "sub-0000"
    late = {"scope": "/apis", "state": "active", "primaryKey": "late-key"}
    await E.bulk_insert(
        db, [(staging, "subscription", "", "sub-0000a", None, "e", orjson.dumps(late).decode())]
    )
    await switch(db, sid, staging)
    with caplog.at_level(logging.INFO, logger="portico.gateway"):
        await poll(cs)
    svc = cs.lookup_host(f"svc.{DOMAIN}")
    assert svc is not None and svc.store_id == staging
    sub = svc.subscription_for_key("late-key")
    assert sub is not None and sub.name == "sub-0000a"
    assert len(svc.sub_json) == 41
    assert any("not filled in key order" in r.getMessage() for r in caplog.records)


async def test_failed_restore_is_forgotten_and_failures_do_not_stop_polling(
    db: Database, store_of: MakeStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    sid, _, cs = await serving(db, store_of)
    staging = await restoring(db, cs, sid, "b")
    assert staging in cs.staged
    async with db.write() as conn:  # the restore failed: its staging store is retired
        await conn.execute(update(stores).where(stores.c.id == staging).values(state="retired"))
    await poll(cs)
    assert not cs.staged

    async def broken(*_args: Any) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(cs, "_warm", broken)
    staging = await begin_staging(db, sid)
    await E.bulk_insert(db, content(staging, "c"))
    await poll(cs)  # logged, not raised
    assert not cs.staged and staging in cs._no_preload
    await poll(cs)
    assert not cs.staged  # not retried for this store
    await switch(db, sid, staging)
    await poll(cs)
    svc = cs.lookup_host(f"svc.{DOMAIN}")
    assert svc is not None
    serves(svc, "c")
    assert not cs._no_preload


async def test_unchanged_operations_are_reused_by_the_next_generation(
    db: Database, store_of: MakeStore
) -> None:
    sid, _, cs = await serving(db, store_of)
    old = cs.lookup_host(f"svc.{DOMAIN}")
    assert old is not None
    staging = await begin_staging(db, sid)
    rows = content(staging, "a")
    await E.bulk_insert(db, rows)
    await switch(db, sid, staging)  # before any poll saw the staging store: a plain full load
    await poll(cs)
    new = cs.lookup_host(f"svc.{DOMAIN}")
    assert new is not None and new is not old
    serves(new, "a")
    before = {op.name: op for op in old.apis["orders"].operations}
    after = {op.name: op for op in new.apis["orders"].operations}
    assert all(after[n] is before[n] for n in before)
    assert new.apis["orders"] is not old.apis["orders"]


async def test_a_user_arriving_behind_the_read_ahead_is_served(
    db: Database, store_of: MakeStore, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The switch's count check (users, as for subscriptions above): a row inserted before the
    read-ahead's position, after it passed there, is found, and the store is read whole."""
    monkeypatch.setattr(C, "PRELOAD_ROWS", 5)
    sid, _, cs = await serving(db, store_of)
    staging = await restoring(db, cs, sid, "b")
    staged = cs.staged[staging]
    assert staged.user_after == "user-0019" and len(staged.user_json) == 20
    late = {"email": "late@b.example"}
    await E.bulk_insert(db, [(staging, "user", "", "user-0000a", None, "e", orjson.dumps(late).decode())])
    await switch(db, sid, staging)
    with caplog.at_level(logging.INFO, logger="portico.gateway"):
        await poll(cs)
    svc = cs.lookup_host(f"svc.{DOMAIN}")
    assert svc is not None and svc.store_id == staging
    assert svc.user("user-0000a") == {"email": "late@b.example", "_id": "user-0000a"}
    assert len(svc.user_json) == 21 and len(svc.sub_json) == 40
    assert any("not filled in key order" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("change", ["delete", "insert"])
async def test_routing_rows_deleted_or_added_after_they_were_compiled_ahead_are_seen(
    db: Database, store_of: MakeStore, change: str
) -> None:
    """The switch's check that the routing rows are still those compiled ahead (on PostgreSQL by
    the transactions that wrote them): a delete alone, or an insert alone, is noticed."""
    sid, _, cs = await serving(db, store_of)
    staging = await restoring(db, cs, sid, "b")
    compiled = cs.staged[staging].compiled
    assert compiled is not None
    async with db.write() as conn:
        if change == "delete":
            assert await E.remove(conn, staging, "operation", "apis/orders", "post-item")
        else:
            await E.put(
                conn,
                staging,
                "operation",
                "apis/orders",
                "put-item",
                None,
                {"method": "PUT", "urlTemplate": "/items/{id}"},
            )
    await switch(db, sid, staging)
    await poll(cs)
    svc = cs.lookup_host(f"svc.{DOMAIN}")
    assert svc is not None and svc.store_id == staging and svc.router is not compiled.router
    api = svc.apis["orders"]
    assert (api.find_operation("POST", "/items", "") is None) == (change == "delete")
    assert (api.find_operation("PUT", "/items/1", "") is not None) == (change == "insert")
    serves(svc, "b")


async def test_a_node_following_a_restore_polls_often_and_reads_ahead_at_its_pace(db: Database) -> None:
    """While a restore loads into one of its services, a node sees the switch within
    `RESTORE_POLL_SECONDS`, not its poll interval (here 60 s); the reads ahead still wait for it."""
    sid, store = await new_service(db, "svc")
    await E.bulk_insert(db, content(store, "a"))
    staging = await begin_staging(db, sid)
    await E.bulk_insert(db, content(staging, "b"))
    cs = ConfigStore(db, DOMAIN, 60.0, Counters(), JwksCache())
    await cs.start()  # its first poll starts following the staging store
    try:
        staged = cs.staged[staging]
        for _ in range(200):
            if staged.passes:
                break
            await asyncio.sleep(0.01)
        await asyncio.sleep(5 * C.RESTORE_POLL_SECONDS)
        assert staged.passes == 1  # the fast polls did not wake it
        await switch(db, sid, staging)
        for _ in range(200):
            svc = cs.lookup_host(f"svc.{DOMAIN}")
            if svc is not None and svc.store_id == staging:
                break
            await asyncio.sleep(0.01)
        assert svc is not None and svc.store_id == staging
        serves(svc, "b")
        assert not cs.staged
    finally:
        await cs.stop()
