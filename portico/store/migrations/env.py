"""Alembic environment: runs on the connection Portico hands over (see portico.store.db.migrate)."""

from alembic import context

from portico.store.schema import metadata

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - only for `alembic revision --autogenerate` by developers
    raise SystemExit("run migrations through portico.store.db.migrate()")
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
