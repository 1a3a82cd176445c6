"""A node serving one self-hosted gateway entity (`portico gateway --gateway-name NAME --token T`):
only the APIs linked to that gateway (`gateways/{name}/apis/{api}`) of the service that holds it,
authenticated by a token of the gateway's `generateToken` action.

Token: `GatewayKey {name}&{yyyyMMddHHmm expiry}&{base64 HMAC-SHA512(key, "{name}\\n{expiry}")}`,
the expiry signed as `yyyy-MM-ddTHH:mm:ss.0000000Z` (portico/resources/kind_actions.py); the token
carries the expiry to the minute only, so the seconds are searched. It is valid while it has not
expired and the gateway's primary or secondary key (the one it was made with) is unchanged: the
node checks it at start and on every configuration change of the gateway (a regenerated key stops
the node serving within the poll), and stops serving at the expiry."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import func, select

from portico.names import fold_name
from portico.store import sealing
from portico.store.schema import entities, services


class TokenError(Exception):
    """Why a token does not authenticate the node (no secret in the message)."""


@dataclass(frozen=True, slots=True)
class SelfHosted:
    name: str  # the gateway entity's id, lower case
    token: str
    service_id: int = 0
    expiry: float = 0.0  # epoch seconds


def verify(name: str, token: str, data: dict[str, Any], now: datetime | None = None) -> float:
    """The token's expiry (epoch seconds) when it authenticates gateway `name` (its entity's
    properties `data`); else TokenError."""
    value = token.removeprefix("GatewayKey ").strip()
    parts = value.split("&")
    if len(parts) != 3:
        raise TokenError("the token is not a gateway token (GatewayKey name&expiry&signature)")
    token_name, stamp, signature = parts
    if fold_name(token_name) != fold_name(name):
        raise TokenError(f"the token is for gateway '{token_name}', not '{name}'")
    try:
        minute = datetime.strptime(stamp, "%Y%m%d%H%M").replace(tzinfo=UTC)
        sig = base64.b64decode(signature, validate=True)
    except (ValueError, binascii.Error):
        raise TokenError("the token's expiry or signature is malformed") from None
    keys = [str(data.get(k) or "") for k in ("primaryKey", "secondaryKey")]
    for second in range(60):
        signed = minute.replace(second=second).strftime("%Y-%m-%dT%H:%M:%S.0000000Z")
        for key in keys:
            if not key:
                continue
            digest = hmac.new(key.encode(), f"{token_name}\n{signed}".encode(), hashlib.sha512).digest()
            if hmac.compare_digest(digest, sig):
                expiry = minute.replace(second=second)
                if expiry <= (now or datetime.now(UTC)):
                    raise TokenError(f"the token expired at {expiry.isoformat()}")
                return expiry.timestamp()
    raise TokenError("the token's signature does not match the gateway's keys (regenerated?)")


async def resolve(conn: Any, name: str, token: str) -> SelfHosted:
    """The service whose gateway `name` the token authenticates (a name may exist in several)."""
    e, s = entities.c, services.c
    rows = (
        await conn.execute(
            select(s.id, e.name, e.data)
            .select_from(services.join(entities, e.store_id == s.active_store_id))
            .where(e.kind == "gateway", e.parent == "", func.lower(e.name) == name.lower())
        )
    ).all()
    if not rows:
        raise TokenError(f"no service has a gateway '{name}'")
    why = ""
    for row in rows:
        try:
            data = sealing.open_fields(sealing.box_of(conn), "gateway", "", row.name, orjson.loads(row.data))
            expiry = verify(row.name, token, data)
        except TokenError as exc:
            why = str(exc)
            continue
        return SelfHosted(fold_name(row.name), token, row.id, expiry)
    raise TokenError(why)
