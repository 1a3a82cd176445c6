"""Secrets of entities sealed at rest: the store seals the secret fields of a row (the table of
portico/secret_fields.py) when it writes it and opens them when it reads it, so that everything
above the store (the management API, the gateway's configuration, backups) sees clear values while a
copy of the database reveals none.

A sealed field holds the string ``portico-sealed:`` + base64 of the secrets box's sealed bytes
(portico/secrets_box.py) of the field's JSON value. The associated data binds it to the entity's
kind, parent, name and the field's path within the service, not to a store or a service: stores
are copied by restores and promotions, and the binding must survive that. A field without the
prefix is a clear value written before sealing existed: it reads as it is, and `seal_clear_rows`
(run by the server at start) seals it in place. (A schema migration cannot: the key is not in the
database.)

The box travels with the database engine (`Database(url, box)`), as an execution option every
connection carries, so that the store's functions keep taking just a connection.
"""

from __future__ import annotations

import base64
import binascii
import logging
from collections.abc import Sequence
from typing import Any, AnyStr

import orjson
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from portico.names import fold_name
from portico.secret_fields import SECRET_KINDS, SERVICE_SECRETS, candidate_paths, secret_paths
from portico.secrets_box import SecretBox, SecretBoxError
from portico.store.schema import deleted_services, entities, services

log = logging.getLogger("portico.store")

PREFIX = "portico-sealed:"
PREFIX_JSON_TEXT = '"' + PREFIX  # how a sealed field starts in a row's JSON
PREFIX_JSON = PREFIX_JSON_TEXT.encode()
BOX_OPTION = "portico_secrets_box"  # the engine's execution option that carries the box


class SealedSecretError(SecretBoxError):
    """A sealed field cannot be opened (another key, no key, damaged) or sealed (no key). Its
    message names the entity and field, never the value."""


def box_of(conn: AsyncConnection) -> SecretBox | None:
    box: SecretBox | None = conn.sync_engine.get_execution_options().get(BOX_OPTION)
    return box


def _aad(kind: str, parent: str, name: str, path: Sequence[str]) -> bytes:
    return "\0".join(("portico-entity", kind, parent, name, *path)).encode()


def _where(kind: str, parent: str, name: str, path: Sequence[str]) -> str:
    return f"{kind} '{parent + '/' if parent else ''}{name}' field '{'.'.join(path)}'"


def _get(data: dict[str, Any], path: Sequence[str]) -> Any:
    node: Any = data
    for k in path:
        node = node[k]
    return node


def _set(data: dict[str, Any], path: Sequence[str], value: Any) -> None:
    """Set the value at `path`, copying the objects along it (the caller's dict is not changed
    beneath it)."""
    node = data
    for k in path[:-1]:
        node[k] = dict(node[k])
        node = node[k]
    node[path[-1]] = value


def is_sealed(value: Any) -> bool:
    return isinstance(value, str) and value.startswith(PREFIX)


def seal_value(box: SecretBox, kind: str, parent: str, name: str, path: Sequence[str], value: Any) -> str:
    sealed = box.seal(orjson.dumps(value), _aad(kind, parent, name, path))
    return PREFIX + base64.b64encode(sealed).decode()


def open_value(
    box: SecretBox | None, kind: str, parent: str, name: str, path: Sequence[str], value: str
) -> Any:
    where = _where(kind, parent, name, path)
    if box is None:
        raise SealedSecretError(
            f"{where} is sealed, but this node has no server secret key; give it the same "
            "PORTICO_SECRET_KEY or data_dir/secret.key as the other nodes"
        )
    try:
        sealed = base64.b64decode(value[len(PREFIX) :], validate=True)
        return orjson.loads(box.open(sealed, _aad(kind, parent, name, path)))
    except (binascii.Error, ValueError, orjson.JSONDecodeError):
        raise SealedSecretError(f"{where}: the stored secret is damaged (not a sealed value)") from None
    except SecretBoxError as exc:
        raise SealedSecretError(f"{where}: {exc}") from None


def seal(box: SecretBox | None, kind: str, parent: str, name: str, data: dict[str, Any]) -> dict[str, Any]:
    """`data` with its secret fields sealed (a copy where anything changes; `data` is left as is)."""
    if kind not in SECRET_KINDS:
        return data
    paths = secret_paths(kind, data)
    # A clear value that merely looks sealed (a non-secret named value's text) is sealed too, so
    # that every value with the prefix is a genuine sealed one.
    paths += [p for p in candidate_paths(kind, data) if p not in paths and is_sealed(_get(data, p))]
    if not paths:
        return data
    if box is None:
        raise SealedSecretError(
            f"{_where(kind, parent, name, paths[0])} is a secret, but the database was opened without "
            "the server secret key: it is not stored in clear"
        )
    out = dict(data)
    for p in paths:
        value = _get(out, p)
        _set(out, p, seal_value(box, kind, parent, name, p, value))
    return out


def open_fields(
    box: SecretBox | None, kind: str, parent: str, name: str, data: dict[str, Any]
) -> dict[str, Any]:
    """Open the sealed fields of `data`, a row's freshly parsed JSON (changed in place)."""
    if kind not in SECRET_KINDS:
        return data
    for p in candidate_paths(kind, data):
        value = _get(data, p)
        if is_sealed(value):
            _set(data, p, open_value(box, kind, parent, name, p, value))
    return data


def open_json(box: SecretBox | None, kind: str, parent: str, name: str, text: AnyStr) -> AnyStr:
    """A row's JSON with its sealed fields opened: as it is (same object) when it has none."""
    if kind not in SECRET_KINDS:
        return text
    if isinstance(text, bytes):
        if PREFIX_JSON not in text:
            return text
        return orjson.dumps(open_fields(box, kind, parent, name, orjson.loads(text)))
    if PREFIX_JSON_TEXT not in text:
        return text
    return orjson.dumps(open_fields(box, kind, parent, name, orjson.loads(text))).decode()


def seal_json(box: SecretBox | None, kind: str, parent: str, name: str, text: AnyStr) -> AnyStr:
    """A row's JSON with its secret fields sealed: as it is (same object) when it has none."""
    if kind not in SECRET_KINDS:
        return text
    data = orjson.loads(text)
    sealed = seal(box, kind, parent, name, data)
    if sealed is data:
        return text
    if isinstance(text, bytes):
        return orjson.dumps(sealed)
    return orjson.dumps(sealed).decode()


# --- a service's own properties (custom-domain and CA certificates) -------------------------------
def _service_paths(props: dict[str, Any]) -> list[tuple[str, str, str]]:
    out = []
    for list_field, fields in SERVICE_SECRETS.items():
        items = props.get(list_field)
        if isinstance(items, list):
            for i, item in enumerate(items):
                if isinstance(item, dict):
                    out += [(list_field, str(i), f) for f in fields if item.get(f) is not None]
    return out


def _service_props(
    props: dict[str, Any], name: str, paths: list[tuple[str, str, str]], change: Any
) -> dict[str, Any]:
    out = dict(props)
    for list_field in {p[0] for p in paths}:
        out[list_field] = [dict(x) if isinstance(x, dict) else x for x in out[list_field]]
    for list_field, i, f in paths:
        item = out[list_field][int(i)]
        item[f] = change(fold_name(name), (list_field, i, f), item[f])
    return out


def seal_service(box: SecretBox | None, name: str, props: dict[str, Any]) -> dict[str, Any]:
    """A service's properties (service `name`) with the certificates' PFX and passwords sealed:
    a copy where anything changes. Values sealed already are kept (a PFX in base64 never has the
    prefix), so properties read raw may be written back as they are."""
    paths = [p for p in _service_paths(props) if not is_sealed(props[p[0]][int(p[1])][p[2]])]
    if not paths:
        return props
    if box is None:
        raise SealedSecretError(
            f"service '{name}' property '{'.'.join(paths[0])}' is a secret, but the database was opened "
            "without the server secret key: it is not stored in clear"
        )
    return _service_props(
        props, name, paths, lambda key, path, v: seal_value(box, "service", "", key, path, v)
    )


def open_service(box: SecretBox | None, name: str, props: dict[str, Any]) -> dict[str, Any]:
    """A service's properties with their sealed values opened (a copy where anything changes)."""
    paths = [p for p in _service_paths(props) if is_sealed(props[p[0]][int(p[1])][p[2]])]
    if not paths:
        return props
    return _service_props(
        props, name, paths, lambda key, path, v: open_value(box, "service", "", key, path, v)
    )


def needs_sealing(kind: str, data: dict[str, Any]) -> bool:
    return any(not is_sealed(_get(data, p)) for p in secret_paths(kind, data))


async def check_key(db: Any) -> None:
    """`SealedSecretError` when this node's key (`db.box`) cannot open the secrets the database
    holds: another key, or none. Nodes check at start, before serving or sealing anything with a key
    the others do not share."""
    c = entities.c
    async with db.read() as conn:
        r = (
            await conn.execute(
                select(c.kind, c.parent, c.name, c.data)
                .where(c.kind.in_(sorted(SECRET_KINDS)), c.data.contains(PREFIX_JSON_TEXT, autoescape=True))
                .limit(1)
            )
        ).first()
    if r is not None:
        open_fields(db.box, r.kind, r.parent, r.name, orjson.loads(r.data))


async def seal_clear_rows(db: Any, box: SecretBox) -> int:
    """Seal, in place, the secrets of rows written in clear (before sealing existed, or restored
    raw); returns how many rows were sealed. Run at the server's start: idempotent, and a row
    changed meanwhile by someone else is left to its writer (compare-and-set on its JSON). The
    ETag stays: the entity itself has not changed."""
    c = entities.c
    async with db.read() as conn:
        rows = (
            await conn.execute(
                select(c.store_id, c.kind, c.parent, c.name, c.data).where(c.kind.in_(sorted(SECRET_KINDS)))
            )
        ).all()
    todo = []
    for r in rows:
        data = orjson.loads(r.data)
        if needs_sealing(r.kind, data):
            todo.append((r, orjson.dumps(seal(box, r.kind, r.parent, r.name, data)).decode()))
    sealed = 0
    for i in range(0, len(todo), 500):
        async with db.write() as conn:
            for r, blob in todo[i : i + 500]:
                res = await conn.execute(
                    update(entities)
                    .where(
                        c.store_id == r.store_id,
                        c.kind == r.kind,
                        c.parent == r.parent,
                        c.name == r.name,
                        c.data == r.data,
                    )
                    .values(data=blob)
                )
                sealed += int(res.rowcount or 0)
    sealed += await _seal_clear_services(db, box)
    if sealed:
        log.info("sealed the secrets of %d entities and services stored in clear", sealed)
    return sealed


async def _seal_clear_services(db: Any, box: SecretBox) -> int:
    """The services' (and soft-deleted services') certificates stored in clear, sealed in place;
    a service changed meanwhile (another ETag) is left to its writer."""
    s, d = services.c, deleted_services.c
    sealed = 0
    async with db.write() as conn:
        for r in (await conn.execute(select(s.id, s.name, s.etag, s.properties))).all():
            props = r.properties or {}
            new = seal_service(box, r.name, props)
            if new is not props:
                q = update(services).where(s.id == r.id, s.etag == r.etag).values(properties=new)
                sealed += int((await conn.execute(q)).rowcount or 0)
        for r in (await conn.execute(select(d.name_key, d.name, d.properties))).all():
            props = r.properties or {}
            new = seal_service(box, r.name, props)
            if new is not props:
                q = update(deleted_services).where(d.name_key == r.name_key).values(properties=new)
                sealed += int((await conn.execute(q)).rowcount or 0)
    return sealed
