"""Entity secrets sealed at rest (portico/store/sealing.py): round trips through the store, what
the database holds, refusals (another key, tampering, no key) and rows written in clear."""

from __future__ import annotations

import itertools
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import insert, select, update

from portico.gateway.config.loader import Driver
from portico.secret_fields import HIDDEN_FIELDS, without_nested_secrets
from portico.secrets_box import SecretBox
from portico.store import entities as E
from portico.store import sealing
from portico.store import services as S
from portico.store.db import Database
from portico.store.schema import entities, services
from portico.store.sealing import SealedSecretError
from tests.support.postgres import create_database

BOX = SecretBox(os.urandom(32))
OTHER = SecretBox(os.urandom(32))
STORE = 1

PFX = "MIIKPAIBAzCCCfYGCSqGSIb3DQEHAaCCCecEggnjMIIJ3zCCBgAGCSqGSIb3"  # stands for a base64 PFX
CASES: list[tuple[str, str, str, dict[str, Any], list[str]]] = [
    # kind, parent, name, data, the secrets in it
    ("certificate", "", "c1", {"data": PFX, "password": "pfx-pw-1", "subject": "CN=x"}, [PFX, "pfx-pw-1"]),
    ("namedValue", "", "nv", {"displayName": "nv", "value": "nv-secret-1", "secret": True}, ["nv-secret-1"]),
    (
        "logger",
        "",
        "lg",
        {"loggerType": "applicationInsights", "credentials": {"instrumentationKey": "ik-secret-1"}},
        ["ik-secret-1"],
    ),
    (
        "authorizationProvider",
        "",
        "ap",
        {"oauth2": {"grantTypes": {"authorizationCode": {"clientId": "c", "clientSecret": "ap-secret-1"}}}},
        ["ap-secret-1"],
    ),
    (
        "authorization",
        "/authorizationProviders/ap",
        "az",
        {"parameters": {"clientId": "az-client", "clientSecret": "az-secret-1"}},
        ["az-secret-1"],
    ),
    ("gateway", "", "gw", {"primaryKey": "gw-key-1", "secondaryKey": "gw-key-2"}, ["gw-key-1", "gw-key-2"]),
    (
        "backend",
        "",
        "be",
        {"url": "https://b", "proxy": {"url": "http://p", "password": "proxy-pw-1"}},
        ["proxy-pw-1"],
    ),
]


_n = itertools.count()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.slow)])
async def db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    if request.param == "postgres":
        url = create_database(request.getfixturevalue("pg_url"), f"sealing_{next(_n)}_{os.getpid()}")
    else:
        url = f"sqlite+aiosqlite:///{tmp_path / 'p.db'}"
    database = Database(url, BOX)
    await database.start()
    yield database
    await database.close()


async def _raw(db: Database, kind: str, name: str) -> str:
    """The row's JSON as the database holds it (read beside the store, which would open it)."""
    c = entities.c
    async with db.read() as conn:
        return str((await conn.execute(select(c.data).where(c.kind == kind, c.name == name))).scalar_one())


@pytest.mark.parametrize("kind,parent,name,data,secrets", CASES, ids=[c[0] for c in CASES])
async def test_round_trip_through_the_store(
    db: Database, kind: str, parent: str, name: str, data: dict[str, Any], secrets: list[str]
) -> None:
    async with db.write() as conn:
        await E.put(conn, STORE, kind, parent, name, None, data)
    raw = await _raw(db, kind, name)
    for s in secrets:
        assert s not in raw
    assert sealing.PREFIX in raw
    async with db.read() as conn:
        row = await E.get(conn, STORE, kind, parent, name)
        listed = await E.list_all(conn, STORE, kind)
        batches = [b async for b in E.stream_tuples(conn, STORE)]
        raw_batches = [b async for b in E.stream_raw(conn, STORE, data_as_bytes=True)]
    assert row is not None and row.data == data
    assert [r.data for r in listed] == [data]
    # backups stream the rows with their secrets opened (the archive carries them in clear)
    [[streamed]] = batches
    assert orjson.loads(streamed[5]) == data
    [[streamed_raw]] = raw_batches
    assert orjson.loads(streamed_raw.data) == data


async def test_non_secret_values_stay_clear_and_a_lookalike_still_round_trips(db: Database) -> None:
    plain = {"displayName": "p", "value": "visible-1", "secret": False}
    lookalike = {"displayName": "l", "value": sealing.PREFIX + "not really", "secret": False}
    async with db.write() as conn:
        await E.put(conn, STORE, "namedValue", "", "plain", None, plain)
        await E.put(conn, STORE, "namedValue", "", "lookalike", None, lookalike)
        await E.put(conn, STORE, "api", "", "a1", None, {"path": "a", "value": "x"})
    assert "visible-1" in await _raw(db, "namedValue", "plain")
    assert '"path":"a"' in await _raw(db, "api", "a1")
    async with db.read() as conn:
        assert (await E.get(conn, STORE, "namedValue", "", "lookalike")).data == lookalike  # type: ignore[union-attr]
        assert (await E.get(conn, STORE, "namedValue", "", "plain")).data == plain  # type: ignore[union-attr]


async def test_another_key_is_refused_clearly(db: Database) -> None:
    await sealing.check_key(db)  # nothing sealed yet: any key will do
    async with db.write() as conn:
        await E.put(conn, STORE, "certificate", "", "c1", None, {"data": PFX, "password": "pfx-pw-1"})
    await sealing.check_key(db)
    for box, said in ((OTHER, "another server secret key"), (None, "no server secret key")):
        other = Database(db.url, box)
        try:
            async with other.read() as conn:
                with pytest.raises(SealedSecretError) as err:
                    await E.get(conn, STORE, "certificate", "", "c1")
            with pytest.raises(SealedSecretError, match=said):  # what a node checks at start
                await sealing.check_key(other)
        finally:
            await other.close()
        message = str(err.value)
        assert said in message and "certificate 'c1'" in message, message
        assert PFX not in message and "pfx-pw-1" not in message


def test_tampered_or_moved_values_are_refused() -> None:
    sealed = sealing.seal(BOX, "namedValue", "", "nv", {"value": "nv-secret-1", "secret": True})
    value = sealed["value"]
    # bound to its entity and field: on another entity it does not open
    with pytest.raises(SealedSecretError, match="damaged"):
        sealing.open_fields(BOX, "namedValue", "", "other", {"value": value, "secret": True})
    flipped = value[:-8] + ("A" if value[-8] != "A" else "B") + value[-7:]
    with pytest.raises(SealedSecretError, match="damaged") as err:
        sealing.open_fields(BOX, "namedValue", "", "nv", {"value": flipped, "secret": True})
    assert "nv-secret-1" not in str(err.value)
    with pytest.raises(SealedSecretError, match="damaged"):
        sealing.open_fields(BOX, "namedValue", "", "nv", {"value": sealing.PREFIX + "!!", "secret": True})
    # the caller's dict is never changed beneath it
    original = {"oauth2": {"grantTypes": {"g": {"clientSecret": "s"}}}}
    sealing.seal(BOX, "authorizationProvider", "", "ap", original)
    assert original == {"oauth2": {"grantTypes": {"g": {"clientSecret": "s"}}}}


async def test_a_secret_is_not_written_without_the_key(tmp_path: Path) -> None:
    keyless = Database(f"sqlite+aiosqlite:///{tmp_path / 'k.db'}", None)
    await keyless.start()
    try:
        async with keyless.write() as conn:
            await E.put(conn, STORE, "api", "", "a1", None, {"path": "a"})  # no secret: fine
            with pytest.raises(SealedSecretError, match="not stored in clear") as err:
                await E.put(conn, STORE, "certificate", "", "c1", None, {"data": PFX, "password": "pfx-pw-1"})
        assert PFX not in str(err.value)
    finally:
        await keyless.close()


async def test_rows_written_in_clear_read_and_are_sealed_at_start(db: Database) -> None:
    clear = [
        (kind, parent, name, data)
        for kind, parent, name, data, _ in CASES
        if kind in ("certificate", "namedValue", "gateway")
    ]
    async with db.write() as conn:
        for kind, parent, name, data in clear:
            await conn.execute(
                insert(entities).values(
                    store_id=STORE,
                    kind=kind,
                    parent=parent,
                    name=name,
                    display_name=None,
                    etag="e-" + name,
                    data=orjson.dumps(data).decode(),
                )
            )
    assert "pfx-pw-1" in await _raw(db, "certificate", "c1")
    async with db.read() as conn:  # a clear row reads as it is
        assert (await E.get(conn, STORE, "certificate", "", "c1")).data == clear[0][3]  # type: ignore[union-attr]
    assert await sealing.seal_clear_rows(db, BOX) == len(clear)
    assert await sealing.seal_clear_rows(db, BOX) == 0  # idempotent
    assert "pfx-pw-1" not in await _raw(db, "certificate", "c1")
    async with db.read() as conn:
        for kind, parent, name, data in clear:
            row = await E.get(conn, STORE, kind, parent, name)
            assert row is not None and row.data == data and row.etag == "e-" + name  # the entity is unchanged


async def test_a_restore_load_seals_what_the_archive_carries_in_clear(db: Database) -> None:
    data = {"displayName": "nv", "value": "nv-secret-1", "secret": True}
    rows = [(STORE, "namedValue", "", "nv", "nv", "e1", orjson.dumps(data).decode())]
    await E.bulk_insert(db, rows)
    assert "nv-secret-1" not in await _raw(db, "namedValue", "nv")
    async with db.read() as conn:
        assert (await E.get(conn, STORE, "namedValue", "", "nv")).data == data  # type: ignore[union-attr]


async def test_the_gateway_reads_the_secrets_opened(db: Database) -> None:
    cert = {"data": PFX, "password": "pfx-pw-1"}
    async with db.write() as conn:
        await E.put(conn, STORE, "certificate", "", "c1", None, cert)
        await E.put(conn, STORE, "api", "", "a1", None, {"path": "a"})
    async with db.read() as conn:
        rows = await (await Driver.of(conn)).fetch_routing(STORE)
    by_kind = {kind: orjson.loads(text) for kind, _parent, _name, text in rows}
    assert by_kind == {"api": {"path": "a"}, "certificate": cert}


async def test_a_services_certificates_are_sealed(db: Database) -> None:
    """Custom-domain and CA certificates of the service resource itself (its properties)."""
    name = f"svc-{next(_n)}"
    hosts = [
        {
            "type": "Proxy",
            "hostName": "a.example",
            "encodedCertificate": PFX,
            "certificatePassword": "host-pw-1",
        },
        {"type": "Proxy", "hostName": "b.example"},
    ]
    props = {"publisherEmail": "p@example.com", "hostnameConfigurations": hosts}
    values = {
        "location": "westeurope",
        "sku_name": "Developer",
        "sku_capacity": 1,
        "properties": props,
        "identity": None,
        "tags": {},
    }

    async def raw() -> str:
        async with db.read() as conn:
            q = select(services.c.properties).where(services.c.name == name)
            return orjson.dumps((await conn.execute(q)).scalar_one()).decode()

    async with db.write() as conn:
        await S.put_group(conn, "sub", "rg", "westeurope", {})
        sid = await S.create_service(conn, subscription_id="sub", group="rg", name=name, values=values)
    assert PFX not in await raw() and "host-pw-1" not in await raw() and "b.example" in await raw()
    async with db.write() as conn:
        svc = await S.get_service_by_id(conn, sid)
        assert svc is not None and svc.properties == props
        await S.update_service(conn, sid, {"properties": {**svc.properties, "publisherName": "P"}})
    assert PFX not in await raw()
    async with db.write() as conn:
        svc = await S.get_service_by_id(conn, sid)
        assert svc is not None and svc.properties == {**props, "publisherName": "P"}
        deleted = await S.soft_delete_service(conn, svc)
    async with db.write() as conn:
        again = await S.get_deleted(conn, name)
        assert again is not None and again.properties == deleted.properties
        await S.undelete_service(conn, again)
    assert PFX not in await raw()
    # a service written in clear (before sealing existed) reads as it is and is sealed at start
    async with db.write() as conn:
        await conn.execute(update(services).where(services.c.name == name).values(properties=props))
    assert PFX in await raw()
    assert await sealing.seal_clear_rows(db, BOX) >= 1
    assert PFX not in await raw()
    async with db.read() as conn:
        svc = await S.get_service(conn, "sub", "rg", name)
        assert svc is not None and svc.properties["hostnameConfigurations"] == hosts


def test_what_is_sealed_is_what_a_get_hides() -> None:
    """One table (portico/secret_fields.py): the paths sealed at rest are the ones GET drops."""
    for kind, _parent, _name, data, secrets in CASES:
        shown = without_nested_secrets(kind, data)
        for f in HIDDEN_FIELDS.get(kind, ()):
            shown.pop(f, None)
        if kind == "namedValue":
            shown.pop("value", None)
        text = orjson.dumps(shown).decode()
        for s in secrets:
            assert s not in text, (kind, s)
        assert orjson.dumps(data).decode() != text or not secrets
    ap = CASES[3][3]
    assert without_nested_secrets("authorizationProvider", ap) == {
        "oauth2": {"grantTypes": {"authorizationCode": {"clientId": "c"}}}
    }
    assert ap["oauth2"]["grantTypes"]["authorizationCode"]["clientSecret"] == "ap-secret-1"  # not changed
