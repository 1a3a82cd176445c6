"""The compiled model of the gateway's configuration: per service, its routing tables (APIs and
operations, products, backends, named values), its policy documents compiled into pipelines, and
its subscriptions and users, kept as their JSON and parsed at first use. Built and patched by the
loader and the poller (loader.py, poller.py); read on the request path by dictionary look-ups."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import orjson

from portico.gateway.client_certificate import ClientTrust
from portico.gateway.config.certificates import (
    Certificates,
    GatewayHostname,
    backend_tls,
    certificate_entity,
    certificate_table,
    gateway_ca_certificates,
    gateway_hostnames,
    service_ca_certificates,
    service_cas,
)
from portico.gateway.diagnostics import Diagnostic, LogSink, diagnostics_by_api
from portico.gateway.gql import DataSource, GraphqlEndpoint, graphql_endpoints, is_resolver_policy
from portico.gateway.odata import ODataSchemas, odata_schemas
from portico.gateway.policies.base import CompileContext
from portico.gateway.policies.pipeline import Pipeline, PolicyDoc, compile_document, compose
from portico.gateway.policies.xmltree import PolicyDocumentError, inline_fragments, substitute_named_values
from portico.gateway.quotas import QuotaLedger
from portico.gateway.routing import REV, Api, Operation, Router, build_api, compile_operation
from portico.gateway.schemas import SchemaSet
from portico.gateway.selfhosted import SelfHosted, TokenError, verify
from portico.names import fold_name

_Compiled = TypeVar("_Compiled", PolicyDoc, DataSource)  # what a document compiles to

if TYPE_CHECKING:
    from portico.gateway.jwks import JwksCache
    from portico.gateway.policies.limits import CounterStore
    from portico.gateway.upstream import BackendTls

log = logging.getLogger("portico.gateway")

ROUTING_KINDS = (
    "api",
    "apiVersionSet",
    "backend",
    "certificate",
    "diagnostic",
    "gateway",
    "gatewayApi",
    "gatewayCertificateAuthority",
    "gatewayHostnameConfiguration",
    "globalSchema",
    "logger",
    "namedValue",
    "operation",
    "policy",
    "product",
    "productApi",
    "policyFragment",
    "resolver",
    "schema",
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
        kind, sid = "api", fold_name(parts[1])
    elif len(parts) == 2 and parts[0].lower() == "products":
        kind, sid = "product", fold_name(parts[1])
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


def parse_routing(
    rows: Iterable[Sequence[Any]], into: dict[str, dict[tuple[str, str], Any]] | None = None
) -> dict[str, dict[tuple[str, str], Any]]:
    """Routing rows (kind, parent, name, JSON) → kind → {(parent, name): parsed JSON}, except
    operations and API schemas, which keep their JSON text (see `ServiceConfig.rebuild_routing`;
    a schema is parsed when a GraphQL API or a validation policy first reads it)."""
    raw = into if into is not None else {k: {} for k in ROUTING_KINDS}
    loads = orjson.loads
    for kind, parent, name, text in rows:
        raw[kind][(parent, name)] = text if kind in _KEPT_AS_TEXT else loads(text)
    return raw


_KEPT_AS_TEXT = frozenset({"operation", "schema"})


def fragment_docs(raw: dict[str, dict[tuple[str, str], Any]]) -> dict[str, str]:
    """Policy fragment id (folded) → its `<fragment>` document."""
    return {
        fold_name(name): str(data.get("value") or "") for (_p, name), data in raw["policyFragment"].items()
    }


def named_values(raw: dict[str, dict[tuple[str, str], Any]]) -> dict[str, str]:
    """Lower-case id and display name → value."""
    out: dict[str, str] = {}
    for (_p, name), data in raw["namedValue"].items():
        value = data.get("value")
        if isinstance(value, str):
            out[fold_name(name)] = value
            dn = data.get("displayName")
            if isinstance(dn, str):
                out[fold_name(dn)] = value
    return out


class PolicyCompiling:
    """What compiling policy documents needs from the node, shared by all its services: the
    counters and key sets policies use, and the compiled documents by (service, scope, text)."""

    def __init__(
        self,
        counters: CounterStore,
        jwks: JwksCache,
        log_sink: LogSink | None = None,
        quotas: QuotaLedger | None = None,
    ) -> None:
        self.counters = counters
        self.quotas = quotas if quotas is not None else QuotaLedger()
        self.jwks = jwks
        self.log_sink = log_sink  # where loggers write (portico/gateway/diagnostics.py); None: nowhere
        self.selfhosted: SelfHosted | None = None  # a node of one self-hosted gateway (selfhosted.py)
        self.doc_cache: dict[tuple[int, str, str], PolicyDoc] = {}
        self.resolver_cache: dict[tuple[int, str, str], DataSource] = {}
        self.credentials: Any = None  # CredentialSource: tokens of credential connections


class ServiceConfig:
    """The compiled configuration of one service at one (store, version)."""

    def __init__(self, compiling: PolicyCompiling, row: Any, previous: ServiceConfig | None = None) -> None:
        self.compiling = compiling
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
        self.certificates = Certificates()
        # a self-hosted gateway's hostname configurations (its node's TLS listener): host → config
        self.gateway_hosts: dict[str, GatewayHostname] = {}
        self.loggers: dict[str, dict[str, Any]] = {}  # logger id (lower) → its properties
        self.diagnostics: dict[str, tuple[Diagnostic, ...]] = {}  # see diagnostics_by_api
        self.backend_tls: dict[str, BackendTls | str | None] = {}  # backend id (lower) → profile or why not
        self.named_values: dict[str, str] = {}
        self.fragments: dict[str, str] = {}  # policy fragment id (lower case) → its document
        self.docs: dict[str, PolicyDoc | str | None] = {}
        self.graphql: dict[str, GraphqlEndpoint] = {}  # GraphQL API id (lower case) → endpoint
        self.odata = ODataSchemas()  # OData APIs' metadata (validate-odata-request)
        self.schemas = SchemaSet({}, {})  # what validation policies validate against (schemas.py)
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
        self.backend_cas: str | None = service_cas(props)
        self._client_trust: ClientTrust | None = None

    # --- building ------------------------------------------------------------------------------
    def load_routing(self, rows: Iterable[Sequence[Any]]) -> None:
        t = time.perf_counter()
        self.raw = parse_routing(rows)
        parse = time.perf_counter() - t
        t = time.perf_counter()
        op_parse = self.rebuild_routing()
        self.stats["parse_s"] = parse + op_parse
        self.stats["compile_s"] = time.perf_counter() - t - op_parse

    def take(self, sub_json: dict[str, Json], keys: dict[Any, str], user_json: dict[str, Json]) -> None:
        """The subscriptions (JSON by name, and the key index) and users (JSON by id) collected from
        this store (complete: see loader.py's `Staged`)."""
        self.sub_json, self.keys, self.subs, self.user_json = sub_json, keys, {}, user_json

    def adopt_routing(self, other: ServiceConfig) -> None:
        """The routing tables `other` compiled from the same routing rows."""
        self.raw, self.named_values, self.backends = other.raw, other.named_values, other.backends
        self.certificates, self.backend_tls = other.certificates, other.backend_tls
        self.gateway_hosts, self._client_trust = other.gateway_hosts, None
        self.loggers, self.diagnostics = other.loggers, other.diagnostics
        self.fragments = other.fragments
        self.apis, self.router, self.products, self.api_products = (
            other.apis,
            other.router,
            other.products,
            other.api_products,
        )
        self.docs, self._op_cache, self._pipelines = other.docs, other._op_cache, {}
        self.graphql, self.schemas = other.graphql, other.schemas
        self.odata = other.odata

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
            table[(parent, name)] = text if kind in _KEPT_AS_TEXT else orjson.loads(text)

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
        self.fragments = fragment_docs(raw)
        version_sets = {fold_name(name): data for (_p, name), data in raw["apiVersionSet"].items()}
        apis: dict[str, Api] = {}
        linked = self._linked_apis()
        for (_p, name), data in raw["api"].items():
            if REV in name:
                # Another revision answers on its revision URL (routing.addresses), unless it is
                # offline: Azure then refuses it even there. The current one is always online.
                if data.get("isOnline") is False:
                    continue
            elif data.get("isCurrent") is False:
                continue  # not current yet stored under the API's id: nowhere to answer
            if linked is not None and fold_name(name.split(REV, 1)[0]) not in linked:
                continue
            apis[fold_name(name)] = build_api(name, data)
        # Operations: unchanged JSON → the operation compiled before (also by the previous
        # generation of this service: a restore of the same content recompiles nothing).
        previous = self._op_cache
        op_cache: dict[tuple[str, str], tuple[Json, Operation]] = {}
        todo: list[tuple[tuple[str, str], Api, Json]] = []
        for key, text in raw["operation"].items():
            api = apis.get(fold_name(key[0].split("/", 1)[-1]))
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
            products[fold_name(name)] = Product(
                name,
                str(data.get("displayName") or name),
                bool(data.get("subscriptionRequired", True)),
                data.get("state") == "published",
                data,
            )
        api_products: dict[str, list[Product]] = {}
        for parent, name in raw["productApi"]:
            p = products.get(fold_name(parent.split("/", 1)[-1]))
            if p is not None:
                p.apis.add(fold_name(name))
                api_products.setdefault(fold_name(name), []).append(p)
        for lst in api_products.values():
            lst.sort(key=lambda p: p.name)
        self.backends = {fold_name(name): data for (_p, name), data in raw["backend"].items()}
        self.certificates = certificate_table(raw["certificate"], self.name)
        self.backend_tls = {k: backend_tls(b, self.certificates) for k, b in self.backends.items()}
        sh = self.compiling.selfhosted
        self.gateway_hosts = (
            {} if sh is None else gateway_hostnames(raw, sh.name, self.certificates, self.name)
        )
        self._client_trust = None
        self.loggers = {fold_name(name): data for (_p, name), data in raw["logger"].items()}
        self.diagnostics = diagnostics_by_api(raw["diagnostic"], self.loggers)
        docs: dict[str, PolicyDoc | str | None] = {}
        for (parent, _name), data in raw["policy"].items():
            if not is_resolver_policy(parent):  # resolvers' are data sources (graphql_endpoints)
                docs[fold_name(parent)] = self._compile_policy(parent, str(data.get("value") or ""))
        self.graphql = graphql_endpoints(apis, raw, self._compile_resolver)
        self.odata = odata_schemas(apis, raw["schema"])
        self.schemas = SchemaSet(
            raw["schema"], {name: data for (_p, name), data in raw["globalSchema"].items()}
        )
        self.apis, self.products, self.api_products, self.docs = apis, products, api_products, docs
        self.router = Router(list(apis.values()), version_sets)
        self._pipelines = {}
        return t2 - t1

    def _linked_apis(self) -> set[str] | None:
        """A self-hosted gateway's node serves the APIs linked to its gateway, and none once its
        token no longer authenticates it (a regenerated key); None: every API."""
        sh = self.compiling.selfhosted
        if sh is None:
            return None
        entity = next((d for (_p, n), d in self.raw["gateway"].items() if fold_name(n) == sh.name), None)
        try:
            verify(sh.name, sh.token, entity or {})
        except TokenError as exc:
            log.warning("self-hosted gateway %s: serving nothing: %s", sh.name, exc)
            return set()
        prefix = f"gateways/{sh.name}"
        return {fold_name(n) for (p, n) in self.raw["gatewayApi"] if fold_name(p) == prefix}

    def _compile_policy(self, scope: str, xml: str, *, warn: bool = True) -> PolicyDoc | str:
        """The compiled document, or why it cannot be (logged unless `warn` is False)."""
        return self._compiled(
            self.compiling.doc_cache,
            20000,
            compile_document,
            xml,
            scope,
            f"policy at '{scope or '(global)'}'",
            warn,
        )

    def _compile_resolver(self, scope: str, xml: str) -> DataSource | str:
        """A resolver's compiled `<http-data-source>`, or why it cannot be (logged)."""
        return self._compiled(
            self.compiling.resolver_cache, 5000, DataSource, xml, scope, f"resolver policy at '{scope}'", True
        )

    def _compiled(
        self,
        cache: dict[tuple[int, str, str], _Compiled],
        cache_max: int,
        build: Callable[[str, CompileContext], _Compiled],
        xml: str,
        scope: str,
        what: str,
        warn: bool,
    ) -> _Compiled | str:
        """`xml` with fragments and named values substituted, built at `scope` (cached by its text),
        or why it cannot be (logged unless `warn` is False)."""
        text, missing = substitute_named_values(inline_fragments(xml, self.fragments), self.named_values)
        if missing:
            why = f"named value(s) {', '.join(sorted(set(missing)))} not found"
        else:
            key = (self.id, scope.lower(), text)
            found = cache.get(key)
            if found is not None:
                return found
            try:
                built = build(text, self._compile_context(scope.lower() or "global"))
            except PolicyDocumentError as exc:
                why = str(exc)
            except RecursionError:
                return "policy document too deeply nested"
            else:
                if len(cache) > cache_max:
                    cache.clear()
                cache[key] = built
                return built
        if warn:
            log.warning("service %s: %s cannot be compiled: %s", self.name, what, why)
        return why

    def _compile_context(self, scope: str) -> CompileContext:
        """What policies compiled at `scope` (a policy's scope, or a resolver's) share with the node."""
        return CompileContext(
            scope=f"{self.id}:{scope}",
            limits=self.compiling.counters,
            quotas=self.compiling.quotas,
            jwks=self.compiling.jwks,
            backends=self.backends,
            credentials=self.compiling.credentials,
        )

    # --- request-time look-ups -----------------------------------------------------------------
    @property
    def client_trust(self) -> ClientTrust:
        """The CA certificates this node trusts for client certificates (portico/gateway/client_certificate.py)."""
        trust = self._client_trust
        if trust is None:
            sh, raw = self.compiling.selfhosted, self.raw
            cas = (
                gateway_ca_certificates(raw, sh.name)
                if sh is not None
                else service_ca_certificates(self.row.properties or {})
            )
            trust = self._client_trust = ClientTrust(cas, lambda cert_id: certificate_entity(raw, cert_id))
        return trust

    def pipeline(self, product: Product | None, api: Api, op_name: str | None) -> Pipeline:
        key = (product.name if product else None, api.name, op_name)
        p = self._pipelines.get(key)
        if p is not None:
            return p
        scopes = [
            "",
            fold_name(f"products/{product.name}") if product else None,
            fold_name(f"apis/{api.name}"),
            fold_name(f"apis/{api.name}/operations/{op_name}") if op_name else None,
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


__all__ = [
    "KINDS",
    "ROUTING_KINDS",
    "Json",
    "PolicyCompiling",
    "Product",
    "ServiceConfig",
    "Subscription",
    "named_values",
    "parse_routing",
]
