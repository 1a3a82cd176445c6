"""Helpers shared by the identity tests."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx

from portico.settings import Settings
from portico.store.db import Database

PUBLIC_URL = "https://portico.test"
TENANT = "contoso"


async def open_db(path: Path) -> Database:
    db = Database(f"sqlite+aiosqlite:///{path}")
    await db.start()
    return db


def prepare_db_sync(path: Path) -> None:
    """For CLI tests (sync; the CLI runs its own event loop)."""

    async def main() -> None:
        db = await open_db(path)
        await db.close()

    asyncio.run(main())


def make_settings(tmp_path: Path, **kw: object) -> Settings:
    values: dict[str, object] = {
        "data_dir": tmp_path,
        "public_url": PUBLIC_URL,
        "tenant_id": TENANT,
        "trusted_issuers": "",
    }
    values.update(kw)
    return Settings(**values)  # type: ignore[arg-type]


async def get_token(client: httpx.AsyncClient, client_id: str, secret: str, **extra: str) -> httpx.Response:
    form = {
        "client_id": client_id,
        "client_secret": secret,
        "grant_type": "client_credentials",
        "scope": "https://management.azure.com/.default",
        "client_info": "1",
    }
    form.update(extra)
    return await client.post(f"/{TENANT}/oauth2/v2.0/token", data=form)
