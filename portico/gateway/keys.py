"""Subscription keys: where the gateway finds them, and whether one opens an API.

- A key is read from the API's header name (default `Ocp-Apim-Subscription-Key`), else from its
  query parameter (default `subscription-key`); it is never forwarded to the backend.
- A key is valid when its subscription is active and its scope covers the API: all APIs
  (`/apis`), the API itself, or a product that contains the API.
- Without a key, the request passes when the API does not require a subscription, or when the
  API belongs to an open product (published, subscription not required): that product applies.
- A key that is present but invalid is refused even where no key is required (as API Management).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from portico.gateway.outcome import Reject

if TYPE_CHECKING:
    from portico.gateway.config import Product, ServiceConfig
    from portico.gateway.context import Context
    from portico.gateway.routing import Api

MISSING = "Access denied due to missing subscription key. Make sure to include subscription key when making requests to an API."
INVALID = "Access denied due to invalid subscription key. Make sure to provide a valid key for an active subscription."


def find_key(ctx: Context, api: Api) -> str | None:
    want = api.key_header
    for name, value in ctx.raw_headers:
        if name == want:
            return value.decode("latin-1").strip()
    q = ctx.query_text
    if q and api.key_query in q:
        qm = ctx.query_map()
        v = qm.get(api.key_query)
        if v is not None:
            qm.delete(api.key_query)  # never forwarded
            return v.split(",")[0].strip()
    return None


def authenticate(ctx: Context, svc: ServiceConfig, api: Api) -> None:
    """Sets ctx.subscription / ctx.product, or raises Reject(401)."""
    key = find_key(ctx, api)
    if key is None:
        if not api.subscription_required:
            ctx.product = _open_product(svc, api)
            return
        product = _open_product(svc, api)
        if product is not None:
            ctx.product = product
            return
        raise Reject(401, MISSING, source="configuration", reason="SubscriptionKeyNotFound")
    sub = svc.subscription_for_key(key)
    if sub is None or sub.state != "active":
        raise Reject(401, INVALID, source="configuration", reason="SubscriptionKeyInvalid")
    kind = sub.scope_kind
    if kind == "all":
        pass
    elif kind == "api":
        if sub.scope_id != api.base_id:
            raise Reject(401, INVALID, source="configuration", reason="SubscriptionKeyInvalid")
    elif kind == "product":
        product = svc.products.get(sub.scope_id)
        if product is None or api.base_id not in product.apis:
            raise Reject(401, INVALID, source="configuration", reason="SubscriptionKeyInvalid")
        ctx.product = product
    else:
        raise Reject(401, INVALID, source="configuration", reason="SubscriptionKeyInvalid")
    ctx.subscription = sub
    ctx.subscription_key = key


def _open_product(svc: ServiceConfig, api: Api) -> Product | None:
    for p in svc.api_products.get(api.base_id, ()):
        if p.published and not p.subscription_required:
            return p
    return None
