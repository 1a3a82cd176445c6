"""Database logging never shows statement parameters or rows, whatever the log levels."""

from __future__ import annotations

import logging
import secrets
from datetime import UTC, datetime
from pathlib import Path

import pytest

from portico.store.db import Database
from portico.store.schema import apps


async def test_sql_logging_hides_parameters(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    secret = f"secret-{secrets.token_hex(16)}"
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'p.db'}")
    try:
        await db.start()
        # The most an operator could turn on: everything at DEBUG, SQLAlchemy's statement log too.
        caplog.set_level(logging.DEBUG)
        caplog.set_level(logging.INFO, logger="sqlalchemy.engine")
        async with db.write() as conn:
            await conn.execute(
                apps.insert().values(
                    client_id="c1", display_name="x", secret_hash=secret, created_at=datetime.now(UTC)
                )
            )
        async with db.read() as conn:
            assert (await conn.execute(apps.select())).first() is not None
    finally:
        await db.close()
    text = caplog.text
    assert "INSERT INTO apps" in text  # statements are logged...
    assert secret not in text  # ...without their parameters
