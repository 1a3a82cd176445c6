from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from portico.store.db import Database


@pytest.fixture(scope="session")
async def db(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Database]:
    """One SQLite database for the module's tests; each test makes its own services."""
    database = Database(f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('jobs') / 'portico.db'}")
    await database.start()
    yield database
    await database.close()
