"""WebSocket APIs (`type: websocket`) as Azure API Management shapes them: a `ws://`/`wss://`
serviceUrl, protocols `ws`/`wss`, and one system operation, `onHandshake`, created with the API,
which cannot be changed or removed and is the only place policies apply (the gateway runs them on
the opening handshake, portico/gateway/websocket.py)."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from portico.arm.errors import ArmError, invalid_field
from portico.gateway.policies.xmltree import Node, PolicyDocumentError, parse
from portico.gateway.websocket import UNSUPPORTED_ON_HANDSHAKE
from portico.names import fold_name
from portico.resources.kinds import Target
from portico.store import entities as E

HANDSHAKE = "onHandshake"
HANDSHAKE_PROPS: dict[str, Any] = {
    "displayName": HANDSHAKE,
    "method": "GET",
    "urlTemplate": "/",
    "templateParameters": [],
    "responses": [],
}
WS_PROTOCOLS = frozenset({"ws", "wss"})


def is_websocket(data: dict[str, Any] | None) -> bool:
    return bool(data) and str((data or {}).get("type") or "").lower() == "websocket"


def check_api(
    data: dict[str, Any], old: dict[str, Any] | None, *, given_protocols: bool, given_type: bool
) -> None:
    """A WebSocket API's own fields (after the generic API normalisation set defaults)."""
    if old is not None and is_websocket(old) and not given_type:
        data["type"] = "websocket"  # a PUT that does not name the type keeps it
    if old is not None and is_websocket(old) != is_websocket(data):
        raise invalid_field(
            "properties.type", "the type of an API cannot change between websocket and another type"
        )
    if not is_websocket(data):
        return
    url = str(data.get("serviceUrl") or "")
    if not url.lower().startswith(("ws://", "wss://")):
        raise invalid_field("properties.serviceUrl", "a WebSocket API needs a ws:// or wss:// serviceUrl")
    protocols = [str(p).lower() for p in data.get("protocols") or []]
    if not given_protocols:
        protocols = ["wss"]  # a WebSocket API's default (the generic one is https)
    wrong = sorted(set(protocols) - WS_PROTOCOLS)
    if wrong:
        raise invalid_field(
            "properties.protocols", f"a WebSocket API takes the protocols ws and wss, not {', '.join(wrong)}"
        )
    data["protocols"] = protocols


async def ensure_handshake(conn: AsyncConnection, store: int, api: str) -> None:
    """Create the API's onHandshake operation when it has none (Azure creates it with the API)."""
    parent = f"apis/{api}"
    if await E.find_name(conn, store, "operation", parent, HANDSHAKE) is None:
        await E.put(
            conn, store, "operation", parent, HANDSHAKE, HANDSHAKE, dict(HANDSHAKE_PROPS), exists=False
        )


async def _api_of(conn: AsyncConnection, store: int, parent: str) -> E.Row | None:
    parts = parent.split("/")
    if len(parts) < 2 or parts[0] != "apis":
        return None
    return await E.get(conn, store, "api", "", parts[1])


async def normalize_operation(
    conn: AsyncConnection, store: int, t: Target, data: dict[str, Any], old: dict[str, Any] | None
) -> dict[str, Any]:
    """Operations of a WebSocket API: only onHandshake, and only as the system made it."""
    api = await _api_of(conn, store, t.parent)
    if api is None or not is_websocket(api.data):
        return data
    if fold_name(t.name or "") != fold_name(HANDSHAKE):
        raise ArmError(
            400,
            "ValidationError",
            f"A WebSocket API has one operation, {HANDSHAKE}, created with it; operation '{t.name}' "
            "cannot be added.",
        )
    if str(data.get("method", "")).upper() != "GET" or str(data.get("urlTemplate", "")) not in ("/", ""):
        raise ArmError(
            400,
            "ValidationError",
            f"The {HANDSHAKE} operation of a WebSocket API is immutable (method GET, urlTemplate '/').",
        )
    return {**dict(HANDSHAKE_PROPS), **{k: v for k, v in data.items() if k in ("description",)}}


async def before_delete(conn: AsyncConnection, store: int, t: Target) -> None:
    if t.kind.kind != "operation" or fold_name(t.name or "") != fold_name(HANDSHAKE):
        return
    api = await _api_of(conn, store, t.parent)
    if api is not None and is_websocket(api.data):
        raise ArmError(
            400,
            "ValidationError",
            f"The {HANDSHAKE} operation of a WebSocket API cannot be deleted (delete the API instead).",
        )


# policies that hold other policies (a send-request's children shape its own request instead)
_CONTAINERS = frozenset({"choose", "when", "otherwise", "retry", "wait", "limit-concurrency"})


def _tags(node: Node) -> list[Node]:
    out = [node]
    if node.tag in _CONTAINERS or node.tag in ("inbound", "backend", "outbound", "on-error"):
        for child in node.children:
            out.extend(_tags(child))
    return out


async def check_policy(conn: AsyncConnection, store: int, parent: str, xml: str) -> None:
    """A WebSocket API's policies live on onHandshake only, without Azure's unsupported policies;
    the handshake has no backend request or response of its own, so its backend section may hold
    only forward-request and its outbound section only <base/>."""
    api = await _api_of(conn, store, parent)
    if api is None or not is_websocket(api.data):
        return
    parts = parent.split("/")
    if len(parts) == 2:
        raise invalid_field(
            "properties.value",
            f"a WebSocket API takes policies on its {HANDSHAKE} operation only, not at the API scope",
        )
    try:
        root = parse(xml)
    except PolicyDocumentError:
        return  # the generic check reports it
    for section in root.children:
        for node in _tags(section)[1:]:
            if node.tag in UNSUPPORTED_ON_HANDSHAKE:
                raise invalid_field(
                    "properties.value", f"policy <{node.tag}> cannot be applied to the {HANDSHAKE} operation"
                )
        allowed = {"backend": {"base", "forward-request"}, "outbound": {"base"}}.get(section.tag)
        if allowed is not None:
            for node in section.children:
                if node.tag not in allowed:
                    raise invalid_field(
                        "properties.value",
                        f"<{node.tag}> in <{section.tag}> of {HANDSHAKE}: the handshake's policies run in "
                        "<inbound> (and <on-error>); the backend section may hold only <forward-request>, "
                        "the outbound section only <base />",
                    )
