"""The gateway's token source against a real SQLite database and a local OAuth 2.0 server: tokens
shared between nodes through the database, one refresh when several nodes find a token due,
failures answered from memory for a while, unconsented connections refused."""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from portico.identity.credentials import tokens as TK
from portico.identity.credentials.oauth import CredentialFailure
from portico.identity.credentials.runtime import CredentialSource
from portico.secrets_box import SecretBox
from portico.store import entities as E
from portico.store import stores
from portico.store.db import Database
from tests.support.fake_idp import FakeIdp
from tests.support.postgres import create_database

BOX = SecretBox(os.urandom(32))


@pytest.fixture(scope="module")
def idp() -> Iterator[FakeIdp]:
    server = FakeIdp().start()
    yield server
    server.stop()


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.slow)])
async def db(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> AsyncIterator[Database]:
    if request.param == "postgres":
        url = create_database(request.getfixturevalue("pg_url"), "portico_credentials")
    else:
        url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('creds') / 'portico.db'}"
    database = Database(url, BOX)  # secrets are sealed at rest
    await database.start()
    yield database
    await database.close()


async def _store(
    db: Database, idp: FakeIdp, grant: str = "clientCredentials", status: str = "Connected"
) -> int:
    params = {"clientId": idp.client_id, "clientSecret": idp.client_secret, "tokenUrl": f"{idp.url}/token"}
    if grant == "authorizationCode":
        params["authorizationUrl"] = f"{idp.url}/authorize"
    async with db.write() as conn:
        store = await stores.create_active(conn)
        await E.put(
            conn,
            store,
            "authorizationProvider",
            "",
            "Prov",
            None,
            {"identityProvider": "oauth2", "oauth2": {"grantTypes": {grant: params}}},
        )
        await E.put(
            conn,
            store,
            "authorization",
            "authorizationProviders/Prov",
            "Conn",
            None,
            {
                "authorizationType": "OAuth2",
                "oauth2grantType": "ClientCredentials"
                if grant == "clientCredentials"
                else "AuthorizationCode",
                "status": status,
            },
        )
    return store


def _source(db: Database, offset: float = 0.0) -> CredentialSource:
    return CredentialSource(db, lambda: BOX, None, clock=lambda: time.time() + offset)


async def _token(source: CredentialSource, store: int) -> str:
    got = await source.context((1, store, 1), "prov", "CONN", "managed", None)
    return str(got["AccessToken"])


async def test_nodes_share_tokens_and_refresh_once(db: Database, idp: FakeIdp) -> None:
    store = await _store(db, idp)
    start = len(idp.requests)
    first = await _token(_source(db), store)  # names ignore case
    assert first.startswith("at-client_credentials-") and len(idp.requests) == start + 1
    assert await _token(_source(db), store) == first  # another node: from the database
    assert len(idp.requests) == start + 1

    # Due for refresh (after 3300 s of 3600): while another node holds the claim, the current
    # token is still served; once the claim is free, exactly one node gets a new one.
    key = TK.TokenKey.of(store, "Prov", "Conn")
    async with db.write() as conn:
        assert await TK.claim(conn, key, 30)
    assert await _token(_source(db, 3400), store) == first
    assert len(idp.requests) == start + 1
    async with db.write() as conn:  # the other node's claim lapses
        await conn.execute(
            TK.T.update().where(TK.T.c.store_id == store).values(claimed_until=time.time() - 1)
        )
    second = await _token(_source(db, 3400), store)
    assert second != first and len(idp.requests) == start + 2


async def test_failures_are_remembered_briefly(db: Database, idp: FakeIdp) -> None:
    store = await _store(db, idp)
    right = idp.client_secret
    idp.client_secret = "changed-at-the-provider"
    try:
        source = _source(db)
        start = len(idp.requests)
        for _ in range(3):
            with pytest.raises(CredentialFailure) as err:
                await _token(source, store)
            assert err.value.code == "TokenRequestFailed" and right not in err.value.message
        assert len(idp.requests) == start + 1
        assert (await _status(db, store))["status"] == "Error"  # the connection shows it
    finally:
        idp.client_secret = right
    assert await _token(_source(db), store)
    assert (await _status(db, store)) == {"status": "Connected"}


async def _status(db: Database, store: int) -> dict[str, Any]:
    async with db.read() as conn:
        row = await E.get(conn, store, "authorization", "authorizationProviders/Prov", "Conn")
    assert row is not None
    return {k: v for k, v in row.data.items() if k in ("status", "error")}


async def test_unconsented_and_missing_connections(db: Database, idp: FakeIdp) -> None:
    store = await _store(db, idp, "authorizationCode", status="Error")
    with pytest.raises(CredentialFailure) as err:
        await _token(_source(db), store)
    assert err.value.code == "Unauthenticated"
    # Connected by its configuration (e.g. restored) but holding no token: consent again.
    store = await _store(db, idp, "authorizationCode", status="Connected")
    with pytest.raises(CredentialFailure) as err:
        await _token(_source(db), store)
    assert err.value.code == "Unauthenticated" and "login link" in err.value.message
    with pytest.raises(CredentialFailure) as err:
        await _source(db).context((1, store, 1), "prov", "nope", "managed", None)
    assert err.value.code == "NotFound"
    with pytest.raises(CredentialFailure) as err:
        await _source(db).context((1, store, 1), "prov", "conn", "jwt", None)
    assert err.value.code == "InvalidIdentity"
