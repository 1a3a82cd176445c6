"""Live configuration: each gateway node's compiled, in-memory tables of every service.

Nothing here runs on the request path except dictionary look-ups. A poller asks the database,
every `gateway_config_poll_seconds`, one small question: the id, etag and active store of every
service with its store's `config_version` (bumped by the triggers of migration 0002 on every
change to an active store). Then, per service:
- a new service or a new active store (a restore switched it) → full load of that store;
- a new service etag only (service PUT/PATCH: hostnames...) → the service row is re-read;
- a higher config_version → the changed keys are read from `config_changes` and only those
  entities are re-read and applied; a node too far behind (log trimmed) reloads the service.
Compiled tables are rebuilt by swapping whole objects, so a request in flight keeps a consistent
view: a full load builds a new `ServiceConfig` beside the one serving and swaps it in when it is
complete. Subscriptions and users (the big tables) are patched in place, key by key.

A restore must be served within a second, also for the BRIEF's large service (328,853 entities:
bench/gateway_reload.py). Reading 300,000 rows into Python takes longer than that on a small
machine, so:
- a full load reads through the database driver (no SQLAlchemy rows), keeps subscriptions and
  users as the JSON text the database holds (a subscription is parsed at its first request, a
  user when a policy reads `context.User`), reuses the previous generation's compiled operations
  whose JSON did not change, and leaves operations' URL regexes to their first match
  (portico/gateway/routing.py);
- while a restore fills its staging store, the poller reads that store's subscriptions and users
  ahead and compiles its routing tables once their rows are in (`Staged`), and polls every
  `RESTORE_POLL_SECONDS` to see the switch sooner: the switch then checks that the routing rows
  did not change since (SQLite: reads them; PostgreSQL: which transactions wrote them) and adopts
  the tables compiled ahead, reads the last subscriptions and users, and checks by counting that
  nothing was missed. On PostgreSQL the counts are most of the switch (0.3-0.7 s for the large
  service on a small, busy machine: every row is a heap visit in a store not vacuumed yet).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson
from sqlalchemy import and_, or_, select, tuple_

from portico.gateway.policies.base import CompileContext
from portico.gateway.policies.pipeline import Pipeline, PolicyDoc, compile_document, compose
from portico.gateway.policies.xmltree import PolicyDocumentError, substitute_named_values
from portico.gateway.routing import Api, Operation, Router, build_api, compile_operation
from portico.store.schema import config_changes, entities, services, stores

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from portico.gateway.jwks import JwksCache
    from portico.gateway.policies.limits import CounterStore
    from portico.store.db import Database

log = logging.getLogger("portico.gateway")

ROUTING_KINDS = (
    "api",
    "apiVersionSet",
    "backend",
    "namedValue",
    "operation",
    "policy",
    "product",
    "productApi",
)
KINDS = (*ROUTING_KINDS, "subscription", "user")

Json = bytes | str  # an entity's JSON as the database driver hands it over


@dataclass(eq=False, slots=True)
class Subscription:
    name: str
    display_name: str
    scope_kind: str  # all | api | product
    scope_id: str  # lower case
    state: str
    owner: str | None  # user id
    primary: str
    secondary: str
    data: dict[str, Any]


@dataclass(eq=False)
class Product:
    name: str
    display_name: str
    subscription_required: bool
    published: bool
    data: dict[str, Any]
    apis: set[str] = field(default_factory=set)  # lower-case API ids


def _subscription(name: str, data: dict[str, Any]) -> Subscription:
    scope = str(data.get("scope") or "")
    parts = scope.strip("/").split("/")
    if scope.lower() == "/apis" or scope == "":
        kind, sid = "all", ""
    elif len(parts) == 2 and parts[0].lower() == "apis":
        kind, sid = "api", parts[1].lower()
    elif len(parts) == 2 and parts[0].lower() == "products":
        kind, sid = "product", parts[1].lower()
    else:
        kind, sid = "none", ""
    owner = data.get("ownerId")
    return Subscription(
        name=name,
        display_name=str(data.get("displayName") or name),
        scope_kind=kind,
        scope_id=sid,
        state=str(data.get("state") or ""),
        owner=owner.rsplit("/", 1)[-1] if isinstance(owner, str) and owner else None,
        primary=str(data.get("primaryKey") or ""),
        secondary=str(data.get("secondaryKey") or ""),
        data=data,
    )


def _keys_of(text: Json) -> tuple[Any, Any]:
    data = orjson.loads(text)
    return data.get("primaryKey"), data.get("secondaryKey")


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

    def __init__(self, driver: Any, sqlite: bool) -> None:
        self.driver = driver
        self.sqlite = sqlite

    @classmethod
    async def of(cls, conn: Any) -> Driver:
        raw = await conn.get_raw_connection()
        return cls(raw.driver_connection, conn.dialect.name == "sqlite")

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
            return rows
        out = [tuple(r) for r in rows]
        out.sort()  # keys are unique: JSON is never compared
        return out

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


def parse_routing(
    rows: Iterable[Sequence[Any]], into: dict[str, dict[tuple[str, str], Any]] | None = None
) -> dict[str, dict[tuple[str, str], Any]]:
    """Routing rows (kind, parent, name, JSON) → kind → {(parent, name): parsed JSON}, except
    operations, which keep their JSON text (see `ServiceConfig.rebuild_routing`)."""
    raw = into if into is not None else {k: {} for k in ROUTING_KINDS}
    loads = orjson.loads
    for kind, parent, name, text in rows:
        raw[kind][(parent, name)] = text if kind == "operation" else loads(text)
    return raw


def named_values(raw: dict[str, dict[tuple[str, str], Any]]) -> dict[str, str]:
    """Lower-case id and display name → value."""
    out: dict[str, str] = {}
    for (_p, name), data in raw["namedValue"].items():
        value = data.get("value")
        if isinstance(value, str):
            out[name.lower()] = value
            dn = data.get("displayName")
            if isinstance(dn, str):
                out[dn.lower()] = value
    return out


PRELOAD_ROWS = 2000  # rows per query while reading a staging store (the loop is free in between)
# The poll interval while a restore loads into a service of this node: its switch is seen within
# this instead of `poll_seconds` (the reads ahead still run once per `poll_seconds`).
RESTORE_POLL_SECONDS = 0.05


@dataclass(eq=False)
class Staged:
    """The subscriptions and users of a restore's staging store, read while the restore fills it,
    and its routing tables, compiled then, so that its switch leaves little to do. A task of its
    own does it (`ConfigStore._follow`), beside the poller, which keeps serving every service.

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
    # loaded past them (`ConfigStore._warm`): the rows themselves (SQLite) or their versions
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


class ServiceConfig:
    """The compiled configuration of one service at one (store, version)."""

    def __init__(self, store: ConfigStore, row: Any, previous: ServiceConfig | None = None) -> None:
        self.store = store
        self.id: int = row.id
        self.store_id: int = row.active_store_id
        self.version: int = 0
        self._service_row(row)
        # Routing kinds → {(parent, name): parsed JSON}; operations keep their JSON text (compiled
        # through `_op_cache`, which outlives a generation: see `rebuild_routing`).
        self.raw: dict[str, dict[tuple[str, str], Any]] = {k: {} for k in ROUTING_KINDS}
        self.sub_json: dict[str, Json] = {}  # subscription name → JSON (parsed on first use)
        self.user_json: dict[str, Json] = {}  # user id → JSON (parsed when a policy asks)
        self.subs: dict[str, Subscription] = {}  # built on first use (see subscription_for_key)
        self.keys: dict[Any, str] = {}  # key → subscription name
        self.apis: dict[str, Api] = {}
        self.router = Router([], {})
        self.products: dict[str, Product] = {}
        self.api_products: dict[str, list[Product]] = {}
        self.backends: dict[str, dict[str, Any]] = {}
        self.named_values: dict[str, str] = {}
        self.docs: dict[str, PolicyDoc | str | None] = {}
        self._pipelines: dict[tuple[str | None, str, str | None], Pipeline] = {}
        self._op_cache: dict[tuple[str, str], tuple[Json, Operation]] = (
            previous._op_cache if previous is not None else {}
        )
        self.stats: dict[str, float] = {}  # seconds spent by the last full load, by phase

    def _service_row(self, row: Any) -> None:
        self.row = row
        self.name: str = row.name
        self.etag: str = row.etag
        self.location: str = row.location
        props = row.properties or {}
        hosts = []
        for hc in props.get("hostnameConfigurations") or []:
            if isinstance(hc, dict) and hc.get("type") == "Proxy" and isinstance(hc.get("hostName"), str):
                hosts.append(hc["hostName"].lower())
        self.proxy_hosts: list[str] = hosts
        self.gateway_disabled = bool(props.get("disableGateway"))

    # --- building ------------------------------------------------------------------------------
    def load_routing(self, rows: Iterable[Sequence[Any]]) -> None:
        t = time.perf_counter()
        self.raw = parse_routing(rows)
        parse = time.perf_counter() - t
        t = time.perf_counter()
        op_parse = self.rebuild_routing()
        self.stats["parse_s"] = parse + op_parse
        self.stats["compile_s"] = time.perf_counter() - t - op_parse

    def take(self, staged: Staged) -> None:
        """The subscriptions and users collected from this store (complete: see `Staged`)."""
        self.sub_json, self.keys, self.subs, self.user_json = (
            staged.sub_json,
            staged.keys,
            {},
            staged.user_json,
        )

    def adopt_routing(self, other: ServiceConfig) -> None:
        """The routing tables `other` compiled from the same routing rows."""
        self.raw, self.named_values, self.backends = other.raw, other.named_values, other.backends
        self.apis, self.router, self.products, self.api_products = (
            other.apis,
            other.router,
            other.products,
            other.api_products,
        )
        self.docs, self._op_cache, self._pipelines = other.docs, other._op_cache, {}

    def _put_raw(self, kind: str, parent: str, name: str, text: Json | None) -> None:
        if kind == "subscription":
            if parent == "":
                self._put_subscription(name, text)
            return
        if kind == "user":
            if parent == "":
                if text is None:
                    self.user_json.pop(name, None)
                else:
                    self.user_json[name] = text
            return
        table = self.raw[kind]
        if text is None:
            table.pop((parent, name), None)
        else:
            table[(parent, name)] = text if kind == "operation" else orjson.loads(text)

    def _put_subscription(self, name: str, text: Json | None) -> None:
        old = self.sub_json.pop(name, None)
        if old is not None:
            for k in _keys_of(old):
                if k and self.keys.get(k) == name:
                    del self.keys[k]
        self.subs.pop(name, None)
        if text is not None:
            self.sub_json[name] = text
            for k in _keys_of(text):
                if k:
                    self.keys[k] = name

    def subscription_for_key(self, key: str) -> Subscription | None:
        name = self.keys.get(key)
        if name is None:
            return None
        sub = self.subs.get(name)
        if sub is None:
            text = self.sub_json.get(name)
            if text is None:
                return None
            sub = self.subs[name] = _subscription(name, orjson.loads(text))
        return sub

    def rebuild_routing(self) -> float:
        """Compile the routing tables from `raw` and swap them in; returns the seconds spent
        parsing operations' JSON (for the load's statistics)."""
        raw = self.raw
        self.named_values = named_values(raw)
        version_sets = {name.lower(): data for (_p, name), data in raw["apiVersionSet"].items()}
        apis: dict[str, Api] = {}
        for (_p, name), data in raw["api"].items():
            if ";rev=" in name or data.get("isCurrent") is False:
                continue  # only current revisions take traffic
            apis[name.lower()] = build_api(name, data)
        # Operations: unchanged JSON → the operation compiled before (also by the previous
        # generation of this service: a restore of the same content recompiles nothing).
        previous = self._op_cache
        op_cache: dict[tuple[str, str], tuple[Json, Operation]] = {}
        todo: list[tuple[tuple[str, str], Api, Json]] = []
        for key, text in raw["operation"].items():
            api = apis.get(key[0].split("/", 1)[-1].lower())
            if api is None:
                continue
            cached = previous.get(key)
            if cached is not None and cached[0] == text:
                op_cache[key] = cached
                api.operations.append(cached[1])
            else:
                todo.append((key, api, text))
        t1 = time.perf_counter()
        loads = orjson.loads
        parsed = [loads(text) for _key, _api, text in todo]
        t2 = time.perf_counter()
        for (key, api, text), data in zip(todo, parsed, strict=True):
            op = compile_operation(key[1], data)
            op_cache[key] = (text, op)
            api.operations.append(op)
        self._op_cache = op_cache
        for api in apis.values():
            api.index_operations()
        products: dict[str, Product] = {}
        for (_p, name), data in raw["product"].items():
            products[name.lower()] = Product(
                name,
                str(data.get("displayName") or name),
                bool(data.get("subscriptionRequired", True)),
                data.get("state") == "published",
                data,
            )
        api_products: dict[str, list[Product]] = {}
        for parent, name in raw["productApi"]:
            p = products.get(parent.split("/", 1)[-1].lower())
            if p is not None:
                p.apis.add(name.lower())
                api_products.setdefault(name.lower(), []).append(p)
        for lst in api_products.values():
            lst.sort(key=lambda p: p.name)
        self.backends = {name.lower(): data for (_p, name), data in raw["backend"].items()}
        docs: dict[str, PolicyDoc | str | None] = {}
        for (parent, _name), data in raw["policy"].items():
            docs[parent.lower()] = self._compile_policy(parent, str(data.get("value") or ""))
        self.apis, self.products, self.api_products, self.docs = apis, products, api_products, docs
        self.router = Router(list(apis.values()), version_sets)
        self._pipelines = {}
        return t2 - t1

    def _compile_policy(self, scope: str, xml: str, *, warn: bool = True) -> PolicyDoc | str:
        """The compiled document, or why it cannot be (logged unless `warn` is False)."""
        text, missing = substitute_named_values(xml, self.named_values)
        if missing:
            msg = f"named value(s) {', '.join(sorted(set(missing)))} not found"
            if warn:
                log.warning(
                    "service %s: policy at '%s' cannot be compiled: %s", self.name, scope or "(global)", msg
                )
            return msg
        cache = self.store.doc_cache
        key = (self.id, scope.lower(), text)
        doc = cache.get(key)
        if doc is not None:
            return doc
        cc = CompileContext(
            scope=f"{self.id}:{scope.lower() or 'global'}",
            limits=self.store.counters,
            jwks=self.store.jwks,
            backends=self.backends,
        )
        try:
            doc = compile_document(text, cc)
        except PolicyDocumentError as exc:
            if warn:
                log.warning(
                    "service %s: policy at '%s' cannot be compiled: %s", self.name, scope or "(global)", exc
                )
            return str(exc)
        except RecursionError:
            return "policy document too deeply nested"
        if len(cache) > 20000:
            cache.clear()
        cache[key] = doc
        return doc

    # --- request-time look-ups -----------------------------------------------------------------
    def pipeline(self, product: Product | None, api: Api, op_name: str | None) -> Pipeline:
        key = (product.name if product else None, api.name, op_name)
        p = self._pipelines.get(key)
        if p is not None:
            return p
        scopes = [
            "",
            f"products/{product.name}".lower() if product else None,
            f"apis/{api.name}".lower(),
            f"apis/{api.name}/operations/{op_name}".lower() if op_name else None,
        ]
        levels: list[PolicyDoc | None] = []
        error: str | None = None
        for s in scopes:
            if s is None:
                continue
            d = self.docs.get(s)
            if isinstance(d, str):
                error = d
                d = None
            levels.append(d)
        p = compose(levels)
        p.error = error
        if len(self._pipelines) > 50000:
            self._pipelines.clear()
        self._pipelines[key] = p
        return p

    def user(self, user_id: str) -> dict[str, Any] | None:
        text = self.user_json.get(user_id)
        if text is None:
            return None
        data = orjson.loads(text)
        data["_id"] = user_id
        return data  # type: ignore[no-any-return]


class ConfigStore:
    """All services of the database, kept current by polling (see the module docstring)."""

    def __init__(
        self, db: Database, gateway_domain: str, poll_seconds: float, counters: CounterStore, jwks: JwksCache
    ) -> None:
        self.db = db
        self.domain = gateway_domain.lower().strip(".")
        self.poll_seconds = poll_seconds
        self.counters = counters
        self.jwks = jwks
        self.services: dict[int, ServiceConfig] = {}
        self.by_host: dict[str, ServiceConfig] = {}
        self.wildcards: list[tuple[str, ServiceConfig]] = []
        self.doc_cache: dict[tuple[int, str, str], PolicyDoc] = {}
        self.generation = 0
        self.last_poll = 0.0
        self.last_error: str | None = None
        self._task: asyncio.Task[None] | None = None
        self.loads = 0
        self.staged: dict[int, Staged] = {}  # staging store id → what was read of it so far
        self._no_preload: set[int] = set()  # staging stores whose reading ahead failed

    async def start(self) -> None:
        await self.poll()
        self._task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        for store_id in list(self.staged):
            await self._take_staged(store_id)

    async def _loop(self) -> None:
        woken = time.monotonic()
        while True:
            fast = bool(self.staged) and RESTORE_POLL_SECONDS < self.poll_seconds
            await asyncio.sleep(RESTORE_POLL_SECONDS if fast else self.poll_seconds)
            now = time.monotonic()
            wake = now - woken >= self.poll_seconds - RESTORE_POLL_SECONDS / 2
            if wake:
                woken = now
            try:
                await self.poll(wake=wake)
                self.last_error = None
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the database may be briefly unavailable: keep serving
                if self.last_error != type(exc).__name__:
                    log.warning("gateway configuration poll failed: %s", type(exc).__name__, exc_info=exc)
                self.last_error = type(exc).__name__

    def lookup_host(self, host: str) -> ServiceConfig | None:
        svc = self.by_host.get(host)
        if svc is not None:
            return svc
        for suffix, s in self.wildcards:
            if host.endswith(suffix):
                return s
        return None

    def _index_hosts(self) -> None:
        by_host: dict[str, ServiceConfig] = {}
        wild: list[tuple[str, ServiceConfig]] = []
        for svc in sorted(self.services.values(), key=lambda s: s.id):
            if svc.gateway_disabled:
                continue
            by_host[f"{svc.name.lower()}.{self.domain}"] = svc
        for svc in sorted(self.services.values(), key=lambda s: s.id):
            if svc.gateway_disabled:
                continue
            for h in svc.proxy_hosts:
                if h.startswith("*."):
                    wild.append((h[1:], svc))
                else:
                    by_host.setdefault(h, svc)
        wild.sort(key=lambda w: len(w[0]), reverse=True)
        self.by_host, self.wildcards = by_host, wild

    async def poll(self, *, wake: bool = True) -> None:
        """One poll; `wake`: also let the reads ahead of staging stores (`Staged`) read again."""
        s, st = services.c, stores.c
        q = select(
            s.id, s.name, s.etag, s.location, s.properties, s.active_store_id, st.config_version
        ).select_from(services.outerjoin(stores, st.id == s.active_store_id))
        async with self.db.read() as conn:
            rows = (await conn.execute(q)).all()
            seen: set[int] = set()
            changed_hosts = False
            for row in rows:
                seen.add(row.id)
                current = self.services.get(row.id)
                version = int(row.config_version or 0)
                if current is None or current.store_id != row.active_store_id:
                    fresh = ServiceConfig(self, row, previous=current)
                    staged = await self._take_staged(row.active_store_id)
                    if staged is not None and staged.op_cache:
                        fresh._op_cache = staged.op_cache  # compiled ahead (maybe not all of them)
                    await self._full_load(conn, fresh, version, staged)
                    self.services[row.id] = fresh
                    changed_hosts = True
                    continue
                if current.etag != row.etag:
                    old_hosts = (current.proxy_hosts, current.name, current.gateway_disabled)
                    current._service_row(row)
                    changed_hosts = changed_hosts or old_hosts != (
                        current.proxy_hosts,
                        current.name,
                        current.gateway_disabled,
                    )
                if version != current.version:
                    await self._apply_changes(conn, current, version)
            for gone in set(self.services) - seen:
                del self.services[gone]
                changed_hosts = True
            if changed_hosts:
                self._index_hosts()
            await self._track_restores(conn, wake)
        self.last_poll = time.time()

    async def _track_restores(self, conn: Any, wake: bool) -> None:
        """Follow the staging stores that restores are loading into these services (`Staged`)."""
        st = stores.c
        rows = (await conn.execute(select(st.id, st.service_id).where(st.state == "staging"))).all()
        loading = {
            r.id: r.service_id
            for r in rows
            if r.service_id in self.services and self.services[r.service_id].store_id != r.id
        }
        for store_id in set(self.staged) - set(loading):
            await self._take_staged(store_id)  # the restore failed (a switched-in one was taken)
        self._no_preload &= set(loading)
        for store_id, service_id in loading.items():
            staged = self.staged.get(store_id)
            if staged is not None:
                if wake:
                    staged.wake.set()
            elif store_id not in self._no_preload:
                staged = self.staged[store_id] = Staged(service_id, store_id)
                staged.task = asyncio.get_running_loop().create_task(self._follow(staged))

    async def _take_staged(self, store_id: int) -> Staged | None:
        """Stop following a staging store; what was read of it (None: nothing usable)."""
        staged = self.staged.pop(store_id, None)
        if staged is not None and staged.task is not None:
            staged.stop.set()
            staged.wake.set()
            await staged.task  # at most one query or compile slice away
        return staged

    async def _follow(self, staged: Staged) -> None:
        """Read a staging store ahead after every poll, each time in a snapshot of its own, until
        `staged.stopping`; compile its routing tables once their rows are in."""
        try:
            while not staged.stopping:
                rows = versions = None
                async with self.db.read() as conn:
                    driver = await Driver.of(conn)
                    await self._read_ahead(driver, staged)
                    if (
                        staged.routing is None
                        and (staged.sub_json or staged.user_json)
                        and not staged.stopping
                    ):
                        # Rows arrive in key order and every routing kind sorts before
                        # "subscription": the restore has loaded the backup's routing rows.
                        rows = versions = await driver.fetch_routing(staged.store_id)
                        if not driver.sqlite:  # in the same snapshot as the rows
                            versions = await driver.fetch_routing_versions(staged.store_id)
                if rows is not None and versions is not None and not staged.stopping:
                    # outside the transaction: it takes a while
                    await self._warm(staged, rows, versions)
                staged.passes += 1
                await staged.wake.wait()
                staged.wake.clear()
        except Exception as exc:  # an optimisation only: the switch will read the store whole
            log.warning(
                "gateway: reading store %s ahead failed: %s",
                staged.store_id,
                type(exc).__name__,
                exc_info=exc,
            )
            if self.staged.get(staged.store_id) is staged:
                del self.staged[staged.store_id]
            self._no_preload.add(staged.store_id)

    async def _read_ahead(self, driver: Driver, staged: Staged) -> None:
        for kind in ("subscription", "user"):
            while True:
                part = await driver.fetch(_AFTER, staged.store_id, kind, staged.after(kind), PRELOAD_ROWS)
                if staged.stopping:
                    return
                staged.add(kind, part)
                if len(part) < PRELOAD_ROWS:
                    break

    async def _warm(
        self, staged: Staged, rows: list[tuple[Any, ...]], versions: list[tuple[Any, ...]]
    ) -> None:
        """Compile a staging store's routing tables ahead: operations and policies a slice at a
        time (the loop serves requests in between), then the tables from them. The switch adopts
        them if the store's routing rows are still the same then (else it compiles what changed
        since — named-value overrides, kept rows — finding the rest in the caches)."""
        current = self.services.get(staged.service_id)
        if current is None:
            return
        t = time.perf_counter()
        staged.routing = versions
        raw: dict[str, dict[tuple[str, str], Any]] = {k: {} for k in ROUTING_KINDS}
        for i in range(0, len(rows), 2000):
            parse_routing(rows[i : i + 2000], into=raw)
            await asyncio.sleep(0)
            if staged.stopping:
                return
        scratch = ServiceConfig(self, current.row)  # never serves by itself
        scratch.named_values = named_values(raw)
        scratch.backends = {name.lower(): data for (_p, name), data in raw["backend"].items()}
        for i, ((parent, _name), data) in enumerate(raw["policy"].items(), 1):
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

    async def _full_load(
        self, conn: Any, svc: ServiceConfig, version: int, staged: Staged | None = None
    ) -> None:
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
            await self._collect(svc, staged, subs, users)
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
            await self._collect(svc, staged, *results)
        svc.take(staged)
        svc.version = version
        svc.stats["read_s"] = read
        svc.stats["total_s"] = total = time.perf_counter() - t0
        self.generation += 1
        self.loads += 1
        log.info(
            "gateway: loaded service %s (store %s, %d entities%s) in %.0f ms"
            " (read %.0f (routing %.0f), parse %.0f, compile %.0f, index %.0f)",
            svc.name,
            store,
            sum(len(rows) for rows in svc.raw.values()) + len(svc.sub_json) + len(svc.user_json),
            f", {preloaded} read ahead" if preloaded else "",
            total * 1000,
            *(
                svc.stats.get(k, 0.0) * 1000
                for k in ("read_s", "routing_s", "parse_s", "compile_s", "index_s")
            ),
        )

    @staticmethod
    async def _collect(svc: ServiceConfig, staged: Staged, subs: list[Any], users: list[Any]) -> None:
        """Add subscription and user rows to `staged`, a slice at a time: the loop serves requests
        (with the service as it was) in between."""
        t = time.perf_counter()
        for kind, rows in (("subscription", subs), ("user", users)):
            for i in range(0, len(rows), 5000):
                staged.add(kind, rows[i : i + 5000])
                await asyncio.sleep(0)
        svc.stats["index_s"] = svc.stats.get("index_s", 0.0) + time.perf_counter() - t

    async def _apply_changes(self, conn: Any, svc: ServiceConfig, version: int) -> None:
        c = config_changes.c
        rows = (
            await conn.execute(
                select(c.version, c.kind, c.parent, c.name)
                .where(c.store_id == svc.store_id, c.version > svc.version, c.version <= version)
                .order_by(c.version)
            )
        ).all()
        if not rows or rows[0].version != svc.version + 1 or rows[-1].version != version:
            # the log was trimmed past what this node saw (or is inconsistent): reload everything
            fresh = ServiceConfig(self, svc.row, previous=svc)
            await self._full_load(conn, fresh, version)
            self.services[svc.id] = fresh
            self._index_hosts()
            return
        keys = {(r.kind, r.parent, r.name) for r in rows if r.kind in KINDS}
        found: dict[tuple[str, str, str], str] = {}
        e = entities.c
        key_list = list(keys)
        for i in range(0, len(key_list), 200):
            part = key_list[i : i + 200]
            q = select(e.kind, e.parent, e.name, e.data).where(
                e.store_id == svc.store_id,
                or_(*[and_(e.kind == k, e.parent == p, e.name == n) for k, p, n in part])
                if self.db.sqlite
                else tuple_(e.kind, e.parent, e.name).in_(part),
            )
            for r in (await conn.execute(q)).all():
                found[(r.kind, r.parent, r.name)] = r.data
        routing = False
        for kind, parent, name in keys:
            svc._put_raw(kind, parent, name, found.get((kind, parent, name)))
            if kind in ROUTING_KINDS:
                routing = True
        if routing:
            svc.rebuild_routing()
        svc.version = version
        self.generation += 1


__all__ = ["KINDS", "ConfigStore", "Product", "ServiceConfig", "Staged", "Subscription"]
