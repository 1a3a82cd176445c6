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
view. Subscriptions and users (the big tables) are patched in place, key by key.
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
from portico.gateway.routing import Api, Router, build_api, compile_operation
from portico.store.schema import config_changes, entities, services, stores

if TYPE_CHECKING:
    from portico.gateway.jwks import JwksCache
    from portico.gateway.policies.limits import Counters
    from portico.store.db import Database

log = logging.getLogger("portico.gateway")

KINDS = (
    "api",
    "operation",
    "policy",
    "product",
    "productApi",
    "subscription",
    "user",
    "namedValue",
    "backend",
    "apiVersionSet",
)
ROUTING_KINDS = frozenset(KINDS) - {"subscription", "user"}


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


class ServiceConfig:
    """The compiled configuration of one service at one (store, version)."""

    def __init__(self, store: ConfigStore, row: Any) -> None:
        self.store = store
        self.id: int = row.id
        self.store_id: int = row.active_store_id
        self.version: int = 0
        self._service_row(row)
        # raw entity data by kind → {(parent, name): data}; users keep their JSON text (parsed on use)
        self.raw: dict[str, dict[tuple[str, str], Any]] = {k: {} for k in KINDS}
        self.subs: dict[str, Subscription] = {}  # built on first use (see rebuild_subscriptions)
        self.keys: dict[str, str] = {}  # key → subscription name
        self.sub_keys: dict[str, tuple[str, str]] = {}
        self.apis: dict[str, Api] = {}
        self.router = Router([], {})
        self.products: dict[str, Product] = {}
        self.api_products: dict[str, list[Product]] = {}
        self.backends: dict[str, dict[str, Any]] = {}
        self.named_values: dict[str, str] = {}
        self.docs: dict[str, PolicyDoc | str | None] = {}
        self._pipelines: dict[tuple[str | None, str, str | None], Pipeline] = {}
        self._op_cache: dict[tuple[str, str], tuple[Any, Any]] = {}

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
    def load_rows(self, rows: list[Any]) -> None:
        raw = self.raw
        loads = orjson.loads
        for kind, parent, name, text in rows:
            raw[kind][(parent, name)] = text if kind == "user" else loads(text)
        self.rebuild_routing()
        self.rebuild_subscriptions()

    def _put_raw(self, kind: str, parent: str, name: str, text: str | None) -> None:
        table = self.raw[kind]
        if text is None:
            table.pop((parent, name), None)
        else:
            table[(parent, name)] = text if kind == "user" else orjson.loads(text)

    # Subscriptions are the biggest table (200,000 in the "large service"): only the key index is
    # built eagerly; a Subscription object is made on its first request and cached.
    def rebuild_subscriptions(self) -> None:
        keys: dict[str, str] = {}
        sub_keys: dict[str, tuple[str, str]] = {}
        for (_p, name), data in self.raw["subscription"].items():
            pk, sk = data.get("primaryKey") or "", data.get("secondaryKey") or ""
            sub_keys[name] = (pk, sk)
            if pk:
                keys[pk] = name
            if sk:
                keys[sk] = name
        self.keys, self.sub_keys, self.subs = keys, sub_keys, {}

    def patch_subscription(self, name: str) -> None:
        for k in self.sub_keys.pop(name, ()):
            if self.keys.get(k) == name:
                del self.keys[k]
        self.subs.pop(name, None)
        data = self.raw["subscription"].get(("", name))
        if data is not None:
            pk, sk = data.get("primaryKey") or "", data.get("secondaryKey") or ""
            self.sub_keys[name] = (pk, sk)
            if pk:
                self.keys[pk] = name
            if sk:
                self.keys[sk] = name

    def subscription_for_key(self, key: str) -> Subscription | None:
        name = self.keys.get(key)
        if name is None:
            return None
        sub = self.subs.get(name)
        if sub is None:
            data = self.raw["subscription"].get(("", name))
            if data is None:
                return None
            sub = self.subs[name] = _subscription(name, data)
        return sub

    def rebuild_routing(self) -> None:
        raw = self.raw
        self.named_values = {}
        for (_p, name), data in raw["namedValue"].items():
            value = data.get("value")
            if isinstance(value, str):
                self.named_values[name.lower()] = value
                dn = data.get("displayName")
                if isinstance(dn, str):
                    self.named_values[dn.lower()] = value
        version_sets = {name.lower(): data for (_p, name), data in raw["apiVersionSet"].items()}
        apis: dict[str, Api] = {}
        for (_p, name), data in raw["api"].items():
            if ";rev=" in name or data.get("isCurrent") is False:
                continue  # only current revisions take traffic
            apis[name.lower()] = build_api(name, data)
        op_cache: dict[tuple[str, str], tuple[Any, Any]] = {}
        for (parent, name), data in raw["operation"].items():
            api = apis.get(parent.split("/", 1)[-1].lower())
            if api is None:
                continue
            key = (parent, name)
            cached = self._op_cache.get(key)
            op = cached[1] if cached is not None and cached[0] is data else compile_operation(name, data)
            op_cache[key] = (data, op)
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

    def _compile_policy(self, scope: str, xml: str) -> PolicyDoc | str:
        text, missing = substitute_named_values(xml, self.named_values)
        if missing:
            msg = f"named value(s) {', '.join(sorted(set(missing)))} not found"
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
        text = self.raw["user"].get(("", user_id))
        if text is None:
            return None
        data = orjson.loads(text) if isinstance(text, str) else text
        data["_id"] = user_id
        return data  # type: ignore[no-any-return]


class ConfigStore:
    """All services of the database, kept current by polling (see the module docstring)."""

    def __init__(
        self, db: Database, gateway_domain: str, poll_seconds: float, counters: Counters, jwks: JwksCache
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

    async def start(self) -> None:
        await self.poll()
        self._task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.poll_seconds)
            try:
                await self.poll()
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

    async def poll(self) -> None:
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
                    fresh = ServiceConfig(self, row)
                    await self._full_load(conn, fresh, version)
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
        self.last_poll = time.time()

    async def _full_load(self, conn: Any, svc: ServiceConfig, version: int) -> None:
        e = entities.c
        t0 = time.perf_counter()
        result = await conn.execute(
            select(e.kind, e.parent, e.name, e.data).where(e.store_id == svc.store_id, e.kind.in_(KINDS))
        )
        rows = result.tuples().all()
        svc.version = version
        svc.load_rows(rows)
        self.generation += 1
        self.loads += 1
        log.info(
            "gateway: loaded service %s (store %s, %d entities) in %.0f ms",
            svc.name,
            svc.store_id,
            len(rows),
            (time.perf_counter() - t0) * 1000,
        )

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
            fresh = ServiceConfig(self, svc.row)
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
        subs: list[str] = []
        for kind, parent, name in keys:
            svc._put_raw(kind, parent, name, found.get((kind, parent, name)))
            if kind in ROUTING_KINDS:
                routing = True
            elif kind == "subscription":
                subs.append(name)
        if routing:
            svc.rebuild_routing()
        for name in subs:
            svc.patch_subscription(name)
        svc.version = version
        self.generation += 1


__all__ = ["ConfigStore", "Product", "ServiceConfig", "Subscription"]
