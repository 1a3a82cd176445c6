"""Fixtures: a temp-dir SQLite database, signing keys, and an ASGI client serving the identity router."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from portico.identity.apps import create_app
from portico.identity.issuer import build_identity_router
from portico.identity.keys import SigningKeys
from portico.settings import Settings
from portico.store.db import Database

from .util import PUBLIC_URL, make_settings, open_db


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path)


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = await open_db(tmp_path / "portico.db")
    yield database
    await database.close()


@pytest.fixture
async def keys(db: Database) -> SigningKeys:
    k = SigningKeys(db)
    await k.start()
    return k


@pytest.fixture
async def client(settings: Settings, db: Database, keys: SigningKeys) -> AsyncIterator[httpx.AsyncClient]:
    app = FastAPI()
    app.include_router(build_identity_router(settings, db, keys))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=PUBLIC_URL) as c:
        yield c


@pytest.fixture
async def creds(db: Database) -> tuple[str, str]:
    return await create_app(db, "test-app")
