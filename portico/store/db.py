"""Database engine set-up and migrations (SQLite embedded default, PostgreSQL by URL)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import event
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from portico.secrets_box import SecretBox
from portico.store.sealing import BOX_OPTION

_MIGRATIONS = Path(__file__).parent / "migrations"


def is_sqlite(engine: AsyncEngine) -> bool:
    return engine.dialect.name == "sqlite"


def quiet_driver_logs() -> None:
    """Rows and statement parameters hold secrets (subscription keys, secret named values, backend
    credentials): no log level may print them. aiosqlite logs every call with its parameters at
    DEBUG, so its logger stays at INFO whatever the root level."""
    driver = logging.getLogger("aiosqlite")
    if driver.level < logging.INFO:  # NOTSET too: the root level may be lowered later
        driver.setLevel(logging.INFO)


def create_engine(url: str, box: SecretBox | None = None) -> AsyncEngine:
    """`box`: the server's secrets box, which the store seals and opens entity secrets with
    (portico/store/sealing.py); every connection of the engine carries it."""
    quiet_driver_logs()
    options = {BOX_OPTION: box}
    # hide_parameters: should SQLAlchemy's own logging be turned on, or a statement fail, the
    # statement is shown without its parameters.
    if url.startswith("sqlite"):
        # Every use is an explicit begin() that commits or rolls back, so the pool's rollback on
        # return is pure overhead (about half the CPU of a one-statement read, measured).
        engine = create_async_engine(
            url,
            connect_args={"timeout": 30},
            pool_reset_on_return=None,
            hide_parameters=True,
            execution_options=options,
        )

        @event.listens_for(engine.sync_engine, "connect")
        def _sqlite_connect(dbapi_conn: Any, _record: Any) -> None:
            # Let pysqlite stop managing transactions; the "begin" hook below does it, so that a
            # transaction is a real snapshot from its first statement.
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            # WAL gives readers a stable snapshot while a writer commits (point-in-time backups).
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        @event.listens_for(engine.sync_engine, "begin")
        def _sqlite_begin(conn: Connection) -> None:
            # Writers take the write lock up front: a deferred transaction that reads and then
            # writes fails at once with SQLITE_BUSY instead of waiting for the lock.
            mode = conn.get_execution_options().get("sqlite_begin", "DEFERRED")
            conn.exec_driver_sql(f"BEGIN {mode}")

        return engine
    return create_async_engine(
        url,
        pool_size=10,
        max_overflow=20,
        pool_pre_ping=True,
        hide_parameters=True,
        execution_options=options,
    )


class Database:
    """The engine plus the two ways code uses it: snapshot reads and serialised writes."""

    def __init__(self, url: str, box: SecretBox | None = None) -> None:
        """`box`: the server's secrets box (portico/secrets_box.py `load_or_create`); without it
        the store refuses to write an entity secret and cannot read a sealed one."""
        self.url = url
        self.box = box
        self.engine = create_engine(url, box)
        self.sqlite = is_sqlite(self.engine)
        self._writer = self.engine.execution_options(sqlite_begin="IMMEDIATE") if self.sqlite else self.engine
        # SQLite has one writer at a time; queueing this process's writers here instead of in
        # SQLite's busy handler (which sleeps with back-off) cut write p99 from ~1 s to ~70 ms.
        self._write_lock = asyncio.Lock() if self.sqlite else None

    def read(self) -> Any:
        """`async with db.read() as conn`: one consistent snapshot (REPEATABLE READ on PostgreSQL)."""
        if self.sqlite:
            return self.engine.begin()
        return self.engine.execution_options(isolation_level="REPEATABLE READ").begin()

    def write(self) -> Any:
        """`async with db.write() as conn`: a read-write transaction, committed on exit.
        Never nest two write() blocks: SQLite writers are serialised."""
        if self._write_lock is None:
            return self._writer.begin()
        return self._locked_write()

    @asynccontextmanager
    async def _locked_write(self) -> AsyncIterator[AsyncConnection]:
        assert self._write_lock is not None
        async with self._write_lock, self._writer.begin() as conn:
            yield conn

    async def start(self, *, migrate_schema: bool = True) -> None:
        """`migrate_schema=False`: a process whose parent brought the schema up to date already."""
        if migrate_schema:
            await migrate(self.engine)

    async def close(self) -> None:
        await self.engine.dispose()


def _alembic_config(connection: Connection) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(_MIGRATIONS))
    cfg.attributes["connection"] = connection
    return cfg


def _upgrade(connection: Connection) -> None:
    command.upgrade(_alembic_config(connection), "head")


async def migrate(engine: AsyncEngine) -> None:
    """Bring the schema to the newest revision (idempotent; safe on every start)."""
    async with engine.begin() as conn:
        await conn.run_sync(_upgrade)
