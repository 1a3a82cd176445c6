"""Reading a service's store for the gateway: the SQL (through the database driver, no SQLAlchemy
rows: a service may hold 300,000 subscriptions and users), a full load into a fresh
`ServiceConfig`, the changed entities of an incremental update, and reading a restore's staging
store ahead while the restore fills it (`Staged`). The poller (poller.py) decides when."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from sqlalchemy import and_, or_, select, tuple_

from portico.gateway.config.model import (
    KINDS,
    ROUTING_KINDS,
    Json,
    PolicyCompiling,
    ServiceConfig,
    fragment_docs,
    named_values,
    parse_routing,
)
from portico.gateway.gql import is_resolver_policy
from portico.gateway.routing import Operation, compile_operation
from portico.names import fold_name
from portico.secret_fields import SECRET_KINDS
from portico.secrets_box import SecretBox
from portico.store import sealing
from portico.store.schema import config_changes, entities

log = logging.getLogger("portico.gateway")

# --- reading a store ---------------------------------------------------------------------------
# Through the driver, inside the poller's snapshot transaction (as portico/store/entities.py
# `stream_tuples` does for backups): no SQLAlchemy row objects for 300,000 rows. Each statement
# is (SQLite, PostgreSQL).
_IN_ROUTING = ", ".join(f"'{k}'" for k in ROUTING_KINDS)
_ROUTING = (  # in key order (PostgreSQL: sorted by `fetch_routing`, cheaper than on the server)
    "SELECT kind, parent, name, CAST(data AS BLOB) FROM entities"
    f" WHERE store_id = ? AND kind IN ({_IN_ROUTING}) ORDER BY kind, parent, name",
    f"SELECT kind, parent, name, data FROM entities WHERE store_id = $1 AND kind IN ({_IN_ROUTING})",
)
# Subscriptions and users: (name, JSON) of one kind, all of them...
_ALL_OF_KIND = (
    "SELECT name, CAST(data AS BLOB) FROM entities WHERE store_id = ? AND kind = ? AND parent = ''",
    "SELECT name, data FROM entities WHERE store_id = $1 AND kind = $2 AND parent = ''",
)
# ... or those after a name, in name order (reading a staging store while a restore fills it).
_AFTER = (
    "SELECT name, CAST(data AS BLOB) FROM entities WHERE store_id = ? AND kind = ? AND parent = ''"
    " AND name > ? ORDER BY name LIMIT ?",
    "SELECT name, data FROM entities WHERE store_id = $1 AND kind = $2 AND parent = ''"
    " AND name > $3 ORDER BY name LIMIT $4",
)
# How many subscriptions and users a store has (one statement: on PostgreSQL the server counts
# while the poller compiles; the counts visit every row there: a fresh store's visibility map is
# empty, so even an index-only scan reads the heap).
_COUNTS = (
    "SELECT (SELECT count(*) FROM entities WHERE store_id = ? AND kind = 'subscription' AND parent = ''),"
    " (SELECT count(*) FROM entities WHERE store_id = ? AND kind = 'user' AND parent = '')",
    "SELECT (SELECT count(*) FROM entities WHERE store_id = $1 AND kind = 'subscription' AND parent = ''),"
    " (SELECT count(*) FROM entities WHERE store_id = $1 AND kind = 'user' AND parent = '')",
)


# PostgreSQL: how many routing rows each transaction wrote (`xmin`: the one that wrote a row's
# version). Taken beside the rows compiled ahead (snapshot W) and again at the switch: equal ⇒ the
# same rows. Any insert or update after W writes rows with the xid of a transaction that W does
# not see, so no row visible in W has it (it is new, or its count grows); a delete lowers a count.
# A few rows instead of reading and comparing all their JSON again (large service: 0.2-0.4 s,
# measured). SQLite reads the rows themselves (cheap there).
_ROUTING_VERSIONS = (
    "",
    f"SELECT xmin::text, count(*) FROM entities WHERE store_id = $1 AND kind IN ({_IN_ROUTING})"
    " GROUP BY 1 ORDER BY 1",
)
# Once PostgreSQL has statistics for `entities` (autovacuum analyses it after a restore), it plans
# the counts and the unbounded tail reads of one store as sequential scans of the whole table (all
# stores; 0.25 s each, measured, and growing with other services): the switch's reads are ranges
# of one store's key, so they are kept on the indexes.
_INDEX_SCANS = ("SET LOCAL enable_seqscan = off", "SET LOCAL enable_seqscan TO DEFAULT")


class Driver:
    """The database driver's connection under a SQLAlchemy connection (same transaction).

    `start` runs queries while the caller compiles: PostgreSQL's server executes them meanwhile;
    SQLite's driver thread gets little done then (it needs the GIL for every row it builds), so
    there they mostly run when the caller awaits them."""

    def __init__(self, driver: Any, sqlite: bool, box: SecretBox | None = None) -> None:
        self.driver = driver
        self.sqlite = sqlite
        self.box = box  # opens the secrets of routing rows (portico/store/sealing.py)

    @classmethod
    async def of(cls, conn: Any) -> Driver:
        raw = await conn.get_raw_connection()
        return cls(raw.driver_connection, conn.dialect.name == "sqlite", sealing.box_of(conn))

    async def fetch(self, statement: tuple[str, str], *params: Any) -> list[Any]:
        """All rows, as the driver's tuples (SQLite) or records (PostgreSQL)."""
        if self.sqlite:
            return list(await self.driver.execute_fetchall(statement[0], params))
        return list(await self.driver.fetch(statement[1], *params))

    async def fetch_routing(self, store_id: int) -> list[tuple[Any, ...]]:
        """(kind, parent, name, JSON) of the routing kinds, in key order (SQLite's binary
        collation: code points), as tuples."""
        rows = await self.fetch(_ROUTING, store_id)
        if self.sqlite:
            return _opened(self.box, rows)
        out = [tuple(r) for r in rows]
        out.sort()  # keys are unique: JSON is never compared
        return _opened(self.box, out)

    async def fetch_routing_versions(self, store_id: int) -> list[tuple[Any, ...]]:
        """PostgreSQL only: (xmin, routing rows it wrote) of the store (`_ROUTING_VERSIONS`)."""
        assert not self.sqlite
        return [tuple(r) for r in await self.fetch(_ROUTING_VERSIONS, store_id)]

    async def start(
        self, *queries: tuple[tuple[str, str], tuple[Any, ...]], index_scans: bool = False
    ) -> asyncio.Future[list[list[Any]]]:
        """Send `queries` (SQLite: all queued on the driver's thread at once; PostgreSQL: one
        after the other, planned on indexes if `index_scans`); await the returned future for
        their rows."""
        if self.sqlite:
            parts = [asyncio.ensure_future(self.fetch(q, *params)) for q, params in queries]
            future: asyncio.Future[list[list[Any]]] = asyncio.ensure_future(_all(parts))
        else:

            async def chain() -> list[list[Any]]:
                if index_scans:
                    await self.driver.execute(_INDEX_SCANS[0])
                out = [await self.fetch(q, *params) for q, params in queries]
                if index_scans:
                    await self.driver.execute(_INDEX_SCANS[1])
                return out

            future = asyncio.ensure_future(chain())
        await asyncio.sleep(0)  # let the queries be sent before the caller blocks the loop
        return future


def _opened(box: SecretBox | None, rows: list[Any]) -> list[Any]:
    """Routing rows (kind, parent, name, JSON) with their sealed secrets opened, in place."""
    for i, (kind, parent, name, text) in enumerate(rows):
        if kind in SECRET_KINDS:
            opened = sealing.open_json(box, kind, parent, name, text)
            if opened is not text:
                rows[i] = (kind, parent, name, opened)
    return rows


async def _all(parts: Sequence[asyncio.Future[list[Any]]]) -> list[list[Any]]:
    try:
        return [await p for p in parts]
    finally:
        await asyncio.gather(*parts, return_exceptions=True)


def add_subscriptions(sub_json: dict[str, Json], keys: dict[Any, str], rows: Iterable[Sequence[Any]]) -> None:
    """Rows (name, JSON) into the JSON-by-name table and the key index."""
    loads = orjson.loads
    for name, text in rows:
        sub_json[name] = text
        data = loads(text)
        pk, sk = data.get("primaryKey"), data.get("secondaryKey")
        if pk:
            keys[pk] = name
        if sk:
            keys[sk] = name


PRELOAD_ROWS = 2000  # rows per query while reading a staging store (the loop is free in between)
# The poll interval while a restore loads into a service of this node: its switch is seen within
# this instead of `poll_seconds` (the reads ahead still run once per `poll_seconds`).
RESTORE_POLL_SECONDS = 0.05


@dataclass(eq=False)
class Staged:
    """The subscriptions and users of a restore's staging store, read while the restore fills it,
    and its routing tables, compiled then, so that its switch leaves little to do. A task of its
    own does it (poller.py's `ConfigStore._follow`), beside the poller, which keeps serving every service.

    Sound because a restore fills its staging store in key order (the backup's order), one
    committed batch after another, and never updates or deletes a subscription or user there
    (portico/dr/operations.py: promotion inserts the target's kept rows, overrides change named
    values only): reading "after the last name read" sees every row once, and when, at the
    switch, the store has as many subscriptions and users as were read, none was missed.
    When rows arrive in another order (a backup from a database that sorts names differently),
    the counts differ and the service is read whole. (A full load collects into one too.)"""

    service_id: int
    store_id: int
    sub_json: dict[str, Json] = field(default_factory=dict)
    keys: dict[Any, str] = field(default_factory=dict)
    user_json: dict[str, Json] = field(default_factory=dict)
    sub_after: str = ""  # names are never empty
    user_after: str = ""
    # What the store's routing rows were when their tables were compiled, once the restore had
    # loaded past them (`warm`): the rows themselves (SQLite) or their versions
    # (PostgreSQL: `_ROUTING_VERSIONS`). The switch adopts the tables when it reads the same.
    routing: list[tuple[Any, ...]] | None = None
    compiled: ServiceConfig | None = None
    op_cache: dict[tuple[str, str], tuple[Json, Operation]] = field(default_factory=dict)  # so far
    task: asyncio.Task[None] | None = None
    wake: asyncio.Event = field(default_factory=asyncio.Event)  # set by every poll: read again
    stop: asyncio.Event = field(default_factory=asyncio.Event)  # the task leaves it all as it is
    passes: int = 0  # reads completed by the task

    @property
    def stopping(self) -> bool:
        return self.stop.is_set()

    def add(self, kind: str, rows: list[Any]) -> None:
        if not rows:
            return
        if kind == "subscription":
            add_subscriptions(self.sub_json, self.keys, rows)
            self.sub_after = rows[-1][0]
        else:
            self.user_json.update(rows)
            self.user_after = rows[-1][0]

    def after(self, kind: str) -> str:
        return self.sub_after if kind == "subscription" else self.user_after


async def read_ahead(driver: Driver, staged: Staged) -> None:
    """Read the staging store's subscriptions and users added since the last read."""
    for kind in ("subscription", "user"):
        while True:
            part = await driver.fetch(_AFTER, staged.store_id, kind, staged.after(kind), PRELOAD_ROWS)
            if staged.stopping:
                return
            staged.add(kind, part)
            if len(part) < PRELOAD_ROWS:
                break


async def warm(
    compiling: PolicyCompiling,
    current: ServiceConfig,
    staged: Staged,
    rows: list[tuple[Any, ...]],
    versions: list[tuple[Any, ...]],
) -> None:
    """Compile a staging store's routing tables ahead: operations and policies a slice at a
    time (the loop serves requests in between), then the tables from them. The switch adopts
    them if the store's routing rows are still the same then (else it compiles what changed
    since — named-value overrides, kept rows — finding the rest in the caches)."""
    t = time.perf_counter()
    staged.routing = versions
    raw: dict[str, dict[tuple[str, str], Any]] = {k: {} for k in ROUTING_KINDS}
    for i in range(0, len(rows), 2000):
        parse_routing(rows[i : i + 2000], into=raw)
        await asyncio.sleep(0)
        if staged.stopping:
            return
    scratch = ServiceConfig(compiling, current.row)  # never serves by itself
    scratch.named_values = named_values(raw)
    scratch.fragments = fragment_docs(raw)
    scratch.backends = {fold_name(name): data for (_p, name), data in raw["backend"].items()}
    for i, ((parent, _name), data) in enumerate(raw["policy"].items(), 1):
        if not is_resolver_policy(parent):
            scratch._compile_policy(parent, str(data.get("value") or ""), warn=False)  # → doc cache
        if i % 100 == 0:
            await asyncio.sleep(0)
            if staged.stopping:
                return
    op_cache = staged.op_cache
    loads = orjson.loads
    for i, (key, text) in enumerate(raw["operation"].items(), 1):
        op_cache[key] = (text, compile_operation(key[1], loads(text)))
        if i % 1000 == 0:
            await asyncio.sleep(0)
            if staged.stopping:
                return
    scratch.raw, scratch._op_cache = raw, op_cache
    scratch.rebuild_routing()  # from the caches: no operation or policy is compiled again
    staged.compiled = scratch
    log.info(
        "gateway: service %s: compiled %d operations and %d policies of store %s ahead in %.0f ms",
        current.name,
        len(op_cache),
        len(raw["policy"]),
        staged.store_id,
        (time.perf_counter() - t) * 1000,
    )


async def full_load(conn: Any, svc: ServiceConfig, version: int, staged: Staged | None = None) -> None:
    """Build `svc` (not yet visible to requests) from its whole store, in this snapshot;
    `staged`: its subscriptions and users as read ahead while a restore filled the store."""
    t0 = time.perf_counter()
    store = svc.store_id
    driver = await Driver.of(conn)
    compiled = staged.compiled if staged is not None else None
    routing: list[tuple[Any, ...]] | None = None
    if compiled is not None and not driver.sqlite:
        assert staged is not None
        if await driver.fetch_routing_versions(store) != staged.routing:
            compiled = None
    if compiled is None or driver.sqlite:
        routing = await driver.fetch_routing(store)
        if driver.sqlite and (staged is None or routing != staged.routing):
            compiled = None
    read = svc.stats["routing_s"] = time.perf_counter() - t0
    queries: list[tuple[tuple[str, str], tuple[Any, ...]]]
    if staged is not None:  # the rest of it, and whether it is complete
        counts = (store, store) if driver.sqlite else (store,)
        queries = [
            (_COUNTS, counts),
            (_AFTER, (store, "subscription", staged.sub_after, 1 << 62)),
            (_AFTER, (store, "user", staged.user_after, 1 << 62)),
        ]
    else:
        queries = [(_ALL_OF_KIND, (store, "subscription")), (_ALL_OF_KIND, (store, "user"))]
    rest = await driver.start(*queries, index_scans=staged is not None)
    try:
        if compiled is not None:
            svc.adopt_routing(compiled)  # compiled while the restore was loading
        else:
            assert routing is not None
            svc.load_routing(routing)  # meanwhile the database works on the rest
        t = time.perf_counter()
        results = await rest
        read += time.perf_counter() - t
    except BaseException:
        await asyncio.gather(rest, return_exceptions=True)
        raise
    preloaded = 0
    if staged is not None:
        [(sub_count, user_count)], subs, users = results
        await collect(svc, staged, subs, users)
        if len(staged.sub_json) == sub_count and len(staged.user_json) == user_count:
            preloaded = len(staged.sub_json) + len(staged.user_json) - len(subs) - len(users)
        else:
            log.info(
                "gateway: service %s: store %s was not filled in key order; reading it whole",
                svc.name,
                store,
            )
            staged = None
            t = time.perf_counter()
            results = [
                await driver.fetch(_ALL_OF_KIND, store, "subscription"),
                await driver.fetch(_ALL_OF_KIND, store, "user"),
            ]
            read += time.perf_counter() - t
    if staged is None:
        staged = Staged(svc.id, store)
        await collect(svc, staged, *results)
    svc.take(staged.sub_json, staged.keys, staged.user_json)
    svc.version = version
    svc.stats["read_s"] = read
    svc.stats["total_s"] = total = time.perf_counter() - t0
    log.info(
        "gateway: loaded service %s (store %s, %d entities%s) in %.0f ms"
        " (read %.0f (routing %.0f), parse %.0f, compile %.0f, index %.0f)",
        svc.name,
        store,
        sum(len(rows) for rows in svc.raw.values()) + len(svc.sub_json) + len(svc.user_json),
        f", {preloaded} read ahead" if preloaded else "",
        total * 1000,
        *(svc.stats.get(k, 0.0) * 1000 for k in ("read_s", "routing_s", "parse_s", "compile_s", "index_s")),
    )


async def collect(svc: ServiceConfig, staged: Staged, subs: list[Any], users: list[Any]) -> None:
    """Add subscription and user rows to `staged`, a slice at a time: the loop serves requests
    (with the service as it was) in between."""
    t = time.perf_counter()
    for kind, rows in (("subscription", subs), ("user", users)):
        for i in range(0, len(rows), 5000):
            staged.add(kind, rows[i : i + 5000])
            await asyncio.sleep(0)
    svc.stats["index_s"] = svc.stats.get("index_s", 0.0) + time.perf_counter() - t


async def apply_changes(conn: Any, svc: ServiceConfig, version: int) -> bool:
    """Re-read the entities changed from `svc.version` to `version` (the store's change log) and
    apply them to `svc`; False, having changed nothing, when the log cannot tell (trimmed past
    `svc.version`, or inconsistent): then the service must be loaded whole."""
    c = config_changes.c
    rows = (
        await conn.execute(
            select(c.version, c.kind, c.parent, c.name)
            .where(c.store_id == svc.store_id, c.version > svc.version, c.version <= version)
            .order_by(c.version)
        )
    ).all()
    if not rows or rows[0].version != svc.version + 1 or rows[-1].version != version:
        return False
    keys = {(r.kind, r.parent, r.name) for r in rows if r.kind in KINDS}
    found: dict[tuple[str, str, str], str] = {}
    e = entities.c
    box = sealing.box_of(conn)
    key_list = list(keys)
    for i in range(0, len(key_list), 200):
        part = key_list[i : i + 200]
        q = select(e.kind, e.parent, e.name, e.data).where(
            e.store_id == svc.store_id,
            or_(*[and_(e.kind == k, e.parent == p, e.name == n) for k, p, n in part])
            if conn.dialect.name == "sqlite"
            else tuple_(e.kind, e.parent, e.name).in_(part),
        )
        for r in (await conn.execute(q)).all():
            found[(r.kind, r.parent, r.name)] = sealing.open_json(box, r.kind, r.parent, r.name, r.data)
    routing = False
    for kind, parent, name in keys:
        svc._put_raw(kind, parent, name, found.get((kind, parent, name)))
        if kind in ROUTING_KINDS:
            routing = True
    if routing:
        svc.rebuild_routing()
    svc.version = version
    return True


__all__ = [
    "PRELOAD_ROWS",
    "RESTORE_POLL_SECONDS",
    "Driver",
    "Staged",
    "apply_changes",
    "full_load",
    "read_ahead",
    "warm",
]
